//! Byte-level input: open plain or gzip files, hash them, and cut line-oriented files into
//! blocks of whole lines for parallel parsing. In: a path. Out: blocks that know their first
//! line number, and, when a gzip stream ends early, where it broke and the partial line, so the
//! truncation is quarantined instead of silently shortening the file.

use super::IngestError;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

pub fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IngestError + '_ {
    move |err| IngestError::Io {
        path: path.to_path_buf(),
        err,
    }
}

pub fn is_gz(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// Open a file, decompressing `.gz` transparently.
pub fn open(path: &Path) -> Result<Box<dyn Read + Send>, IngestError> {
    let f = File::open(path).map_err(io_err(path))?;
    if is_gz(path) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(
            BufReader::with_capacity(1 << 20, f),
        )))
    } else {
        Ok(Box::new(f))
    }
}

/// BLAKE3 content hash and size of a file's bytes as stored (compressed or not). BLAKE3, not
/// SHA-256: it runs at several GB/s, so hashing a 1 GB export costs a fraction of reading it.
pub fn content_hash(path: &Path) -> Result<(String, u64), IngestError> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(io_err(path))?;
        if k == 0 {
            break;
        }
        n += k as u64;
        h.update(&buf[..k]);
    }
    Ok((h.finalize().to_hex().to_string(), n))
}

/// A run of whole lines.
pub struct Block {
    /// 1-based number of the first line in `data`.
    pub first_line: u64,
    pub data: Vec<u8>,
}

/// Where a compressed stream broke.
#[derive(Debug, Clone)]
pub struct Truncation {
    pub line: u64,
    pub partial: String,
    pub error: String,
}

/// Reads a line-oriented file in blocks of about `target` bytes.
pub struct LineBlocks {
    reader: BufReader<Box<dyn Read + Send>>,
    next_line: u64,
    target: usize,
    done: bool,
    pub truncation: Option<Truncation>,
}

impl LineBlocks {
    pub fn new(reader: Box<dyn Read + Send>, target: usize) -> Self {
        LineBlocks {
            reader: BufReader::with_capacity(1 << 20, reader),
            next_line: 1,
            target,
            done: false,
            truncation: None,
        }
    }

    /// The next block, or `None` at the end (check `truncation` then).
    pub fn next_block(&mut self) -> Option<Block> {
        if self.done {
            return None;
        }
        let mut data = Vec::with_capacity(self.target + 4096);
        let first_line = self.next_line;
        while data.len() < self.target {
            let before = data.len();
            match self.reader.read_until(b'\n', &mut data) {
                Ok(0) => {
                    self.done = true;
                    break;
                }
                Ok(_) => {
                    self.next_line += 1;
                    if *data.last().expect("read at least one byte") != b'\n' {
                        // last line without a newline: complete at EOF
                        data.push(b'\n');
                    }
                }
                Err(e) => {
                    let partial = String::from_utf8_lossy(&data[before..]).into_owned();
                    data.truncate(before);
                    self.truncation = Some(Truncation {
                        line: self.next_line,
                        partial,
                        error: e.to_string(),
                    });
                    self.done = true;
                    break;
                }
            }
        }
        if data.is_empty() && self.done {
            return None;
        }
        Some(Block { first_line, data })
    }
}

/// Split a block into about `parts` pieces at line boundaries, each with its first line number.
pub fn split_lines(block: &Block, parts: usize) -> Vec<(u64, &[u8])> {
    let data = &block.data[..];
    let mut out = Vec::with_capacity(parts);
    let step = (data.len() / parts.max(1)).max(1);
    let mut start = 0;
    let mut line = block.first_line;
    while start < data.len() {
        let mut end = (start + step).min(data.len());
        if end < data.len() {
            end = match memchr::memchr(b'\n', &data[end..]) {
                Some(i) => end + i + 1,
                None => data.len(),
            };
        }
        let piece = &data[start..end];
        out.push((line, piece));
        line += memchr::memchr_iter(b'\n', piece).count() as u64;
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_keep_line_numbers() {
        let text = b"a\nbb\nccc\ndddd".to_vec();
        let mut lb = LineBlocks::new(Box::new(std::io::Cursor::new(text)), 4);
        let b1 = lb.next_block().unwrap();
        assert_eq!((b1.first_line, &b1.data[..]), (1, &b"a\nbb\n"[..]));
        let b2 = lb.next_block().unwrap();
        assert_eq!(b2.first_line, 3);
        let b3 = lb.next_block().unwrap();
        assert_eq!((b3.first_line, &b3.data[..]), (4, &b"dddd\n"[..]));
        assert!(lb.next_block().is_none());
        let parts = split_lines(&b2, 2);
        assert_eq!(parts[0].0, 3);
    }

    #[test]
    fn truncated_gzip_is_reported() {
        use flate2::{Compression, write::GzEncoder};
        use std::io::Write;
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        for i in 0..2000 {
            writeln!(enc, "{{\"line\":{i},\"pad\":\"{}\"}}", "x".repeat(i % 50)).unwrap();
        }
        let full = enc.finish().unwrap();
        let cut = full[..full.len() / 2].to_vec();
        let dec = flate2::read::MultiGzDecoder::new(std::io::Cursor::new(cut));
        let mut lb = LineBlocks::new(Box::new(dec), 1 << 20);
        let mut lines = 0;
        while let Some(b) = lb.next_block() {
            lines += memchr::memchr_iter(b'\n', &b.data).count();
        }
        let t = lb.truncation.expect("truncation detected");
        assert_eq!(t.line as usize, lines + 1);
        assert!(lines > 100 && lines < 2000);
    }
}
