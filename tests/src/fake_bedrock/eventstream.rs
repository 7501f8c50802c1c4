//! The AWS event-stream binary framing (`application/vnd.amazon.eventstream`), as Bedrock's
//! `InvokeModelWithResponseStream` sends it.
//!
//! A message is
//! - the prelude: total length (u32 BE, the whole message), headers length (u32 BE), and the
//!   CRC32 of those 8 bytes (u32 BE);
//! - the headers: per header, the name length (u8), the name, the value type (u8) and the value
//!   (type 7, a string: u16 BE length and the UTF-8 bytes);
//! - the payload;
//! - the CRC32 (u32 BE) of everything before it.
//!
//! Only string headers are written; [`decode`] skips other value types by their size.

/// Value type 7: a UTF-8 string with a u16 BE length.
const TYPE_STRING: u8 = 7;
/// Prelude (12) plus message CRC (4).
const OVERHEAD: usize = 16;

/// One decoded message: its string headers in order and its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// `(name, value)` of the string headers, in order.
    pub headers: Vec<(String, String)>,
    /// The payload bytes.
    pub payload: Vec<u8>,
}

impl Frame {
    /// The value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Encodes one message with string `headers` and `payload`.
pub fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut head = Vec::new();
    for (name, value) in headers {
        let name = &name.as_bytes()[..name.len().min(255)];
        let value = &value.as_bytes()[..value.len().min(usize::from(u16::MAX))];
        head.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
        head.extend_from_slice(name);
        head.push(TYPE_STRING);
        head.extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_be_bytes());
        head.extend_from_slice(value);
    }
    let total = OVERHEAD + head.len() + payload.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&u32::try_from(total).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&u32::try_from(head.len()).unwrap_or(u32::MAX).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Decodes the complete messages at the start of `buf`; returns them and the number of bytes
/// they took (a trailing partial message is left). Fails on a bad length or CRC.
pub fn decode(buf: &[u8]) -> Result<(Vec<Frame>, usize), String> {
    let mut frames = Vec::new();
    let mut at = 0;
    while let Some(rest) = buf.get(at..) {
        if rest.len() < 12 {
            break;
        }
        let total = be32(rest, 0)?;
        let headers_len = be32(rest, 4)?;
        if total < OVERHEAD || headers_len > total - OVERHEAD {
            return Err(format!("message at {at}: bad lengths total {total}, headers {headers_len}"));
        }
        if crc32fast::hash(&rest[..8]) != u32::try_from(be32(rest, 8)?).unwrap_or(0) {
            return Err(format!("message at {at}: prelude CRC mismatch"));
        }
        if rest.len() < total {
            break;
        }
        let msg = &rest[..total];
        let crc_at = total - 4;
        if crc32fast::hash(&msg[..crc_at]) != u32::try_from(be32(msg, crc_at)?).unwrap_or(0) {
            return Err(format!("message at {at}: message CRC mismatch"));
        }
        let headers = decode_headers(&msg[12..12 + headers_len]).map_err(|e| format!("message at {at}: {e}"))?;
        frames.push(Frame { headers, payload: msg[12 + headers_len..crc_at].to_vec() });
        at += total;
    }
    Ok((frames, at))
}

fn be32(buf: &[u8], at: usize) -> Result<usize, String> {
    let bytes: [u8; 4] =
        buf.get(at..at + 4).and_then(|b| b.try_into().ok()).ok_or_else(|| format!("truncated at {at}"))?;
    usize::try_from(u32::from_be_bytes(bytes)).map_err(|e| e.to_string())
}

fn decode_headers(mut buf: &[u8]) -> Result<Vec<(String, String)>, String> {
    fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if buf.len() < n {
            return Err("truncated header".to_owned());
        }
        let (head, rest) = buf.split_at(n);
        *buf = rest;
        Ok(head)
    }
    let mut out = Vec::new();
    while !buf.is_empty() {
        let name_len = usize::from(take(&mut buf, 1)?[0]);
        let name = String::from_utf8_lossy(take(&mut buf, name_len)?).into_owned();
        let kind = take(&mut buf, 1)?[0];
        let fixed = match kind {
            0 | 1 => Some(0),
            2 => Some(1),
            3 => Some(2),
            4 => Some(4),
            5 | 8 => Some(8),
            9 => Some(16),
            6 | 7 => None,
            other => return Err(format!("header {name}: unknown value type {other}")),
        };
        match fixed {
            Some(n) => {
                take(&mut buf, n)?;
            }
            None => {
                let len = take(&mut buf, 2)?;
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                let value = take(&mut buf, len)?;
                if kind == TYPE_STRING {
                    out.push((name, String::from_utf8_lossy(value).into_owned()));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_partial() {
        let a = encode(&[(":message-type", "event"), (":event-type", "chunk")], b"{}");
        let b = encode(&[(":message-type", "exception")], b"{\"message\":\"x\"}");
        let mut both = a.clone();
        both.extend_from_slice(&b);
        let (frames, used) = decode(&both).unwrap();
        assert_eq!(used, both.len());
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].header(":event-type"), Some("chunk"));
        assert_eq!(frames[0].payload, b"{}");
        assert_eq!(frames[1].header(":message-type"), Some("exception"));
        let (frames, used) = decode(&both[..a.len() + 5]).unwrap();
        assert_eq!((frames.len(), used), (1, a.len()));
    }

    #[test]
    fn known_vector() {
        // The empty message: total 16, no headers, prelude CRC of 8 bytes.
        let m = encode(&[], b"");
        assert_eq!(&m[..8], &[0, 0, 0, 16, 0, 0, 0, 0]);
        assert_eq!(&m[8..12], &0x05c2_48ebu32.to_be_bytes());
        let mut bad = m.clone();
        bad[15] ^= 1;
        assert!(decode(&bad).is_err());
    }
}
