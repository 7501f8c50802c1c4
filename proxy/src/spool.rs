//! A durable, bounded, ordered on-disk queue of events that could not be published (NATS
//! unreachable). Survives a restart; drained oldest-first when NATS is back.
//!
//! Layout: segment files `seg-<n>.log` of records `[u32 len][u32 crc32][payload]`, payload
//! `[u8 id len][id][u16 subject len][subject][event JSON]`, and a `cursor` file naming the
//! segment and offset up to which records were published. A torn record at a segment's end (a
//! crash mid-write) ends that segment.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Segments are rolled at this size.
const SEGMENT_BYTES: u64 = 1 << 20;

/// One spooled event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Event id (the `Nats-Msg-Id`).
    pub id: String,
    /// Subject to publish to.
    pub subject: String,
    /// Event JSON.
    pub payload: Vec<u8>,
}

impl Record {
    fn encoded_len(&self) -> u64 {
        (8 + 1 + self.id.len() + 2 + self.subject.len() + self.payload.len()) as u64
    }

    fn encode(&self, out: &mut Vec<u8>) -> io::Result<()> {
        let id_len = u8::try_from(self.id.len()).map_err(|_| invalid("event id too long"))?;
        let subj_len = u16::try_from(self.subject.len()).map_err(|_| invalid("subject too long"))?;
        let mut payload = Vec::with_capacity(self.encoded_len() as usize);
        payload.push(id_len);
        payload.extend_from_slice(self.id.as_bytes());
        payload.extend_from_slice(&subj_len.to_le_bytes());
        payload.extend_from_slice(self.subject.as_bytes());
        payload.extend_from_slice(&self.payload);
        let len = u32::try_from(payload.len()).map_err(|_| invalid("event too large"))?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        Ok(())
    }

    fn decode(payload: &[u8]) -> Option<Self> {
        let (&id_len, rest) = payload.split_first()?;
        let (id, rest) = rest.split_at_checked(id_len as usize)?;
        let (subj_len, rest) = rest.split_at_checked(2)?;
        let subj_len = u16::from_le_bytes([subj_len[0], subj_len[1]]) as usize;
        let (subject, body) = rest.split_at_checked(subj_len)?;
        Some(Self {
            id: String::from_utf8(id.to_vec()).ok()?,
            subject: String::from_utf8(subject.to_vec()).ok()?,
            payload: body.to_vec(),
        })
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

/// The spool is full; the records were not written.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Over `max_bytes`.
    #[error("the spool is full ({max_bytes} bytes)")]
    Full {
        /// The configured bound.
        max_bytes: u64,
    },
    /// Disk error.
    #[error("spool I/O: {0}")]
    Io(#[from] io::Error),
}

/// The on-disk queue.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Segment paths, oldest first.
    segments: VecDeque<PathBuf>,
    next_segment: u64,
    /// Offset into the oldest segment up to which records are published.
    cursor: u64,
    /// Bytes in all segments (minus the consumed part of the oldest).
    bytes: u64,
    /// Records not yet published.
    records: u64,
}

impl Spool {
    /// Opens (creating) the spool in `dir`, bounded to `max_bytes`.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut names: Vec<(u64, PathBuf)> = fs::read_dir(dir)?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let n = name.strip_prefix("seg-")?.strip_suffix(".log")?.parse::<u64>().ok()?;
                Some((n, e.path()))
            })
            .collect();
        names.sort();
        let next_segment = names.last().map_or(0, |(n, _)| n + 1);
        let segments: VecDeque<PathBuf> = names.into_iter().map(|(_, p)| p).collect();
        let cursor = match (fs::read_to_string(dir.join("cursor")), segments.front()) {
            (Ok(text), Some(front)) => {
                let mut parts = text.split_whitespace();
                let name = parts.next().unwrap_or_default();
                let offset = parts.next().and_then(|o| o.parse().ok()).unwrap_or(0);
                if front.file_name().is_some_and(|f| f.to_string_lossy() == name) {
                    offset
                } else {
                    0
                }
            }
            _ => 0,
        };
        // A crash mid-append leaves a torn record at the end of the last segment: cut it off, or
        // records appended after it could never be read.
        if let Some(last) = segments.back() {
            let (_, end) = read_records(last, 0, usize::MAX)?;
            let file = OpenOptions::new().write(true).open(last)?;
            if file.metadata()?.len() > end {
                tracing::warn!(segment = %last.display(), intact_bytes = end, "cutting a torn record off the spool");
                file.set_len(end)?;
                file.sync_all()?;
            }
        }
        let mut spool = Self { dir: dir.to_owned(), max_bytes, segments, next_segment, cursor, bytes: 0, records: 0 };
        spool.recount()?;
        Ok(spool)
    }

    fn recount(&mut self) -> io::Result<()> {
        self.bytes = 0;
        self.records = 0;
        for (i, seg) in self.segments.iter().enumerate() {
            let from = if i == 0 { self.cursor } else { 0 };
            let (records, end) = read_records(seg, from, usize::MAX)?;
            self.records += records.len() as u64;
            self.bytes += end.saturating_sub(from);
        }
        Ok(())
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Events waiting.
    pub fn len(&self) -> u64 {
        self.records
    }

    /// Bytes waiting.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends records durably (fsync). All or nothing: a batch that does not fit is refused.
    pub fn append(&mut self, records: &[Record]) -> Result<(), SpoolError> {
        if records.is_empty() {
            return Ok(());
        }
        let size: u64 = records.iter().map(Record::encoded_len).sum();
        if self.bytes + size > self.max_bytes {
            return Err(SpoolError::Full { max_bytes: self.max_bytes });
        }
        let mut buf = Vec::with_capacity(size as usize);
        for r in records {
            r.encode(&mut buf)?;
        }
        let path = match self.segments.back() {
            Some(p) if fs::metadata(p).map(|m| m.len()).unwrap_or(u64::MAX) < SEGMENT_BYTES => p.clone(),
            _ => {
                let p = self.dir.join(format!("seg-{:020}.log", self.next_segment));
                self.next_segment += 1;
                self.segments.push_back(p.clone());
                p
            }
        };
        let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
        let before = file.metadata()?.len();
        if let Err(e) = file.write_all(&buf).and_then(|()| file.sync_data()) {
            // Leave no partial record behind (it would hide everything appended after it).
            let _ = file.set_len(before);
            return Err(e.into());
        }
        self.bytes += size;
        self.records += records.len() as u64;
        Ok(())
    }

    /// Up to `max` of the oldest records, without removing them.
    pub fn peek(&self, max: usize) -> io::Result<Vec<Record>> {
        match self.segments.front() {
            Some(front) => Ok(read_records(front, self.cursor, max)?.0),
            None => Ok(Vec::new()),
        }
    }

    /// Marks the first `n` records returned by [`Spool::peek`] as published.
    pub fn consume(&mut self, n: usize) -> io::Result<()> {
        let Some(front) = self.segments.front().cloned() else {
            return Ok(());
        };
        let (records, end) = read_records(&front, self.cursor, n)?;
        self.records = self.records.saturating_sub(records.len() as u64);
        self.bytes = self.bytes.saturating_sub(end - self.cursor);
        self.cursor = end;
        let (_, segment_end) = read_records(&front, self.cursor, usize::MAX)?;
        if segment_end == self.cursor && self.segments.len() > 1 || self.records == 0 {
            fs::remove_file(&front)?;
            self.segments.pop_front();
            self.cursor = 0;
        }
        let name = self.segments.front().and_then(|p| p.file_name()).map(|f| f.to_string_lossy().into_owned());
        let cursor_path = self.dir.join("cursor");
        let tmp = self.dir.join("cursor.tmp");
        fs::write(&tmp, format!("{} {}\n", name.unwrap_or_default(), self.cursor))?;
        File::open(&tmp)?.sync_all()?;
        fs::rename(tmp, cursor_path)?;
        Ok(())
    }
}

/// Reads up to `max` whole, intact records from `offset`; returns them and the offset after them.
fn read_records(path: &Path, offset: u64, max: usize) -> io::Result<(Vec<Record>, u64)> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(offset))?;
    let mut data = Vec::new();
    file.read_to_end(&mut data)?;
    let mut out = Vec::new();
    let mut pos = 0usize;
    while out.len() < max && pos + 8 <= data.len() {
        let len = u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        let crc = u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
        let Some(payload) = data.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some(record) = Record::decode(payload) else {
            break;
        };
        out.push(record);
        pos += 8 + len;
    }
    Ok((out, offset + pos as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: usize) -> Record {
        Record { id: format!("01JDQ{i:021}"), subject: format!("ccp.request.k{i}"), payload: vec![b'x'; i % 50] }
    }

    fn dir() -> PathBuf {
        std::env::temp_dir().join(format!("ccp-spool-{}", ulid::Ulid::new()))
    }

    #[test]
    fn records_come_back_in_order_across_reopen() {
        let d = dir();
        let mut s = Spool::open(&d, 1 << 30).unwrap();
        let all: Vec<Record> = (0..500).map(rec).collect();
        for chunk in all.chunks(7) {
            s.append(chunk).unwrap();
        }
        assert_eq!(s.len(), 500);
        assert_eq!(s.peek(3).unwrap(), all[..3]);
        s.consume(3).unwrap();
        drop(s);
        let mut s = Spool::open(&d, 1 << 30).unwrap();
        assert_eq!(s.len(), 497);
        let mut seen = Vec::new();
        while !s.is_empty() {
            let batch = s.peek(64).unwrap();
            assert!(!batch.is_empty());
            s.consume(batch.len()).unwrap();
            seen.extend(batch);
        }
        assert_eq!(seen, all[3..]);
        assert_eq!(s.bytes(), 0);
        fs::remove_dir_all(d).ok();
    }

    #[test]
    fn the_bound_refuses_whole_batches() {
        let d = dir();
        let mut s = Spool::open(&d, 200).unwrap();
        s.append(&[rec(10)]).unwrap();
        assert!(matches!(s.append(&(0..20).map(rec).collect::<Vec<_>>()), Err(SpoolError::Full { .. })));
        assert_eq!(s.len(), 1);
        fs::remove_dir_all(d).ok();
    }

    #[test]
    fn a_torn_tail_is_cut_off_so_later_appends_are_read() {
        let d = dir();
        let mut s = Spool::open(&d, 1 << 20).unwrap();
        s.append(&[rec(1)]).unwrap();
        let seg = s.segments.front().unwrap().clone();
        drop(s);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[200, 0, 0, 0, 9, 9]).unwrap();
        let mut s = Spool::open(&d, 1 << 20).unwrap();
        s.append(&[rec(2)]).unwrap();
        assert_eq!(s.peek(10).unwrap(), vec![rec(1), rec(2)]);
        fs::remove_dir_all(d).ok();
    }

    #[test]
    fn a_torn_tail_is_ignored() {
        let d = dir();
        let mut s = Spool::open(&d, 1 << 20).unwrap();
        s.append(&[rec(1), rec(2)]).unwrap();
        let seg = s.segments.front().unwrap().clone();
        drop(s);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
        let s = Spool::open(&d, 1 << 20).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.peek(10).unwrap(), vec![rec(1), rec(2)]);
        fs::remove_dir_all(d).ok();
    }
}
