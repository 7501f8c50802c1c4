//! The content codings the tap reads (`Content-Encoding`), and decoding a kept body at its end.

use std::io::Read;

/// Content coding of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// Plain bytes.
    Identity,
    /// gzip.
    Gzip,
    /// zlib/deflate.
    Deflate,
    /// brotli.
    Brotli,
    /// zstd.
    Zstd,
    /// A coding the tap cannot read.
    Unknown,
}

impl Coding {
    /// From a `Content-Encoding` header value.
    pub fn from_header(value: Option<&str>) -> Self {
        match value.map(|v| v.trim().to_ascii_lowercase()) {
            None => Self::Identity,
            Some(v) => match v.as_str() {
                "" | "identity" => Self::Identity,
                "gzip" | "x-gzip" => Self::Gzip,
                "deflate" => Self::Deflate,
                "br" => Self::Brotli,
                "zstd" => Self::Zstd,
                _ => Self::Unknown,
            },
        }
    }
}

/// Largest decoded body (a small compressed body must not inflate without bound).
const MAX_DECODED_BYTES: u64 = 64 << 20;

/// Decodes as much of a compressed body as is intact (a cut body yields its prefix), at most
/// [`MAX_DECODED_BYTES`].
pub fn decode(coding: Coding, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = match coding {
        Coding::Gzip => flate2::read::MultiGzDecoder::new(bytes).take(MAX_DECODED_BYTES).read_to_end(&mut out),
        Coding::Deflate => {
            // `deflate` is zlib-wrapped per RFC 9110, raw in the wild: try both.
            let r = flate2::read::ZlibDecoder::new(bytes).take(MAX_DECODED_BYTES).read_to_end(&mut out);
            if r.is_err() && out.is_empty() {
                flate2::read::DeflateDecoder::new(bytes).take(MAX_DECODED_BYTES).read_to_end(&mut out)
            } else {
                r
            }
        }
        Coding::Brotli => {
            brotli_decompressor::Decompressor::new(bytes, 4096).take(MAX_DECODED_BYTES).read_to_end(&mut out)
        }
        Coding::Zstd => match ruzstd::decoding::StreamingDecoder::new(bytes) {
            Ok(d) => d.take(MAX_DECODED_BYTES).read_to_end(&mut out),
            Err(_) => Ok(0),
        },
        Coding::Identity => {
            out.extend_from_slice(bytes);
            Ok(0)
        }
        Coding::Unknown => Ok(0),
    };
    out
}
