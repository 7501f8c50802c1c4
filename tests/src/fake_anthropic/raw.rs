//! The bytes of each connection as received, so that a recorded request keeps its header lines
//! in received order and with their original case (actix's header map has neither).

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_rt::net::TcpStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read from one connection and not yet claimed by a request.
#[derive(Clone, Default)]
pub(crate) struct RawLog(Rc<RefCell<Vec<u8>>>);

/// A TCP stream that copies every byte read into a [`RawLog`].
pub(crate) struct RecordingIo {
    inner: TcpStream,
    log: RawLog,
}

impl RecordingIo {
    pub(crate) fn new(inner: TcpStream) -> Self {
        Self { inner, log: RawLog::default() }
    }

    pub(crate) fn log(&self) -> RawLog {
        self.log.clone()
    }
}

impl AsyncRead for RecordingIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            if let Some(new) = buf.filled().get(before..) {
                this.log.0.borrow_mut().extend_from_slice(new);
            }
        }
        res
    }
}

impl AsyncWrite for RecordingIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl RawLog {
    /// Removes the next request (head and body) from the log and returns its header lines as
    /// received. `None` (and the log is dropped) when the log does not start with a complete
    /// request head for `method` and `target`, so that a later request cannot be mismatched.
    pub(crate) fn take_request(&self, method: &str, target: &str) -> Option<Vec<(String, String)>> {
        let mut buf = self.0.borrow_mut();
        let parsed = parse_request(&buf, method, target);
        match parsed {
            Some((headers, end)) => {
                let end = end.min(buf.len());
                buf.drain(..end);
                Some(headers)
            }
            None => {
                buf.clear();
                None
            }
        }
    }
}

/// The header lines of the request at the start of `buf` and where that request (with its
/// body) ends.
fn parse_request(buf: &[u8], method: &str, target: &str) -> Option<(Vec<(String, String)>, usize)> {
    let mut slots = [httparse::EMPTY_HEADER; 256];
    let mut req = httparse::Request::new(&mut slots);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return None,
    };
    if req.method != Some(method) || req.path != Some(target) {
        return None;
    }
    let headers: Vec<(String, String)> =
        req.headers.iter().map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned())).collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked"));
    let body_len = if chunked {
        chunked_len(buf.get(head_len..)?)?
    } else {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .unwrap_or(0)
    };
    Some((headers, head_len.checked_add(body_len)?))
}

/// The length of a chunked body (with its last chunk and trailers) at the start of `data`.
fn chunked_len(data: &[u8]) -> Option<usize> {
    let mut pos = 0usize;
    loop {
        let (n, size) = match httparse::parse_chunk_size(data.get(pos..)?) {
            Ok(httparse::Status::Complete(found)) => found,
            _ => return None,
        };
        pos = pos.checked_add(n)?;
        if size == 0 {
            loop {
                let rest = data.get(pos..)?;
                let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
                pos = pos.checked_add(line_end + 2)?;
                if line_end == 0 {
                    return Some(pos);
                }
            }
        }
        pos = pos.checked_add(usize::try_from(size).ok()?)?.checked_add(2)?;
        if pos > data.len() {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heads_in_order_with_case() {
        let raw = b"POST /v1/messages?beta=true HTTP/1.1\r\nX-B: 1\r\nContent-Length: 2\r\na-a: 2\r\n\r\n{}GET /x HTTP/1.1\r\n\r\n";
        let (headers, end) = parse_request(raw, "POST", "/v1/messages?beta=true").unwrap();
        assert_eq!(
            headers,
            vec![
                ("X-B".to_owned(), "1".to_owned()),
                ("Content-Length".to_owned(), "2".to_owned()),
                ("a-a".to_owned(), "2".to_owned())
            ]
        );
        assert_eq!(&raw[end..], b"GET /x HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn skips_chunked_bodies() {
        let raw = b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let (_, end) = parse_request(raw, "POST", "/a").unwrap();
        assert_eq!(&raw[end..], b"NEXT");
    }
}
