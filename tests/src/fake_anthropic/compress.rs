//! Content encodings of response bodies: whole bodies at once, and streams flushed after every
//! SSE event so that a paced stream still arrives event by event.

use std::io::{self, Write};

use super::Compression;

/// Compresses a whole body.
pub(crate) fn compress_all(c: Compression, data: &[u8]) -> io::Result<Vec<u8>> {
    match c {
        Compression::Zstd => Ok(ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)),
        other => {
            let mut enc = StreamEncoder::new(other);
            let mut out = enc.chunk(data)?;
            out.extend(enc.finish()?);
            Ok(out)
        }
    }
}

/// An encoder whose output is handed out after every chunk.
pub(crate) enum StreamEncoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Deflate(flate2::write::ZlibEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    /// One zstd frame of raw (stored) blocks, one block per chunk: zstd has no pure-Rust
    /// streaming compressor with flush, and raw blocks are valid zstd that every decoder reads.
    Zstd {
        header_sent: bool,
    },
}

/// Largest zstd block (128 KiB).
const ZSTD_MAX_BLOCK: usize = 128 * 1024;

impl StreamEncoder {
    pub(crate) fn new(c: Compression) -> Self {
        match c {
            Compression::Gzip => Self::Gzip(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast())),
            Compression::Deflate => {
                Self::Deflate(flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast()))
            }
            Compression::Br => Self::Br(Box::new(brotli::CompressorWriter::new(Vec::new(), 4096, 5, 22))),
            Compression::Zstd => Self::Zstd { header_sent: false },
        }
    }

    /// Compresses `data` and flushes: the returned bytes decode to everything given so far.
    pub(crate) fn chunk(&mut self, data: &[u8]) -> io::Result<Vec<u8>> {
        match self {
            Self::Gzip(e) => {
                e.write_all(data)?;
                e.flush()?;
                Ok(std::mem::take(e.get_mut()))
            }
            Self::Deflate(e) => {
                e.write_all(data)?;
                e.flush()?;
                Ok(std::mem::take(e.get_mut()))
            }
            Self::Br(e) => {
                e.write_all(data)?;
                e.flush()?;
                Ok(std::mem::take(e.get_mut()))
            }
            Self::Zstd { header_sent } => {
                let mut out = Vec::with_capacity(data.len() + 16);
                if !*header_sent {
                    *header_sent = true;
                    // Magic, frame header descriptor (no content size, no checksum, not
                    // single-segment), window descriptor 2^20 bytes.
                    out.extend_from_slice(&[0x28, 0xB5, 0x2F, 0xFD, 0x00, 0x50]);
                }
                for block in data.chunks(ZSTD_MAX_BLOCK) {
                    push_raw_block(&mut out, block, false);
                }
                Ok(out)
            }
        }
    }

    /// Ends the stream; returns its last bytes.
    pub(crate) fn finish(self) -> io::Result<Vec<u8>> {
        match self {
            Self::Gzip(e) => e.finish(),
            Self::Deflate(e) => e.finish(),
            Self::Br(e) => Ok(e.into_inner()),
            Self::Zstd { header_sent } => {
                let mut out = Vec::new();
                if !header_sent {
                    out.extend_from_slice(&[0x28, 0xB5, 0x2F, 0xFD, 0x00, 0x50]);
                }
                push_raw_block(&mut out, &[], true);
                Ok(out)
            }
        }
    }
}

fn push_raw_block(out: &mut Vec<u8>, block: &[u8], last: bool) {
    // Block header: 3 bytes little-endian, bit 0 last block, bits 1-2 type (0 = raw),
    // bits 3.. size.
    let header = (u32::try_from(block.len()).unwrap_or(0) << 3) | u32::from(last);
    out.extend_from_slice(&header.to_le_bytes()[..3]);
    out.extend_from_slice(block);
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn decode(c: Compression, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match c {
            Compression::Gzip => {
                flate2::read::GzDecoder::new(data).read_to_end(&mut out).unwrap();
            }
            Compression::Deflate => {
                flate2::read::ZlibDecoder::new(data).read_to_end(&mut out).unwrap();
            }
            Compression::Br => {
                brotli_decompressor::Decompressor::new(data, 4096).read_to_end(&mut out).unwrap();
            }
            Compression::Zstd => {
                ruzstd::decoding::StreamingDecoder::new(data).unwrap().read_to_end(&mut out).unwrap();
            }
        }
        out
    }

    #[test]
    fn round_trips() {
        for c in [Compression::Gzip, Compression::Deflate, Compression::Br, Compression::Zstd] {
            let all = compress_all(c, b"hello hello hello").unwrap();
            assert_eq!(decode(c, &all), b"hello hello hello", "{c:?}");
            let mut enc = StreamEncoder::new(c);
            let mut stream = enc.chunk(b"event: a\n\n").unwrap();
            assert!(!stream.is_empty());
            stream.extend(enc.chunk(b"").unwrap());
            stream.extend(enc.chunk(b"event: b\n\n").unwrap());
            stream.extend(enc.finish().unwrap());
            assert_eq!(decode(c, &stream), b"event: a\n\nevent: b\n\n", "{c:?}");
        }
    }
}
