//! The results journal's files (`docs/daemon.md`, "Journal"): lines are appended to
//! `<data_dir>/journal.jsonl`; once it passes `journal.segment_bytes_max` it is renamed
//! `journal.<index, 10 digits>.jsonl` and a new one begins; retention
//! (`journal.retain_bytes_max`, `journal.retain_age_s`) deletes the oldest renamed ones.
//! Every append is followed by an `fdatasync` before the window counts as journaled.
//!
//! Read by recovery (the last journaled window) and by `fpn replay` (every line).

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::config::JournalSettings;

/// The journal file being appended to, under `engine.data_dir`.
pub const JOURNAL_FILE: &str = "journal.jsonl";

/// The name of rotated journal file `index`.
pub fn rotated_name(index: u64) -> String {
    format!("journal.{index:010}.jsonl")
}

fn rotated_index(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("journal.")?.strip_suffix(".jsonl")?;
    (digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok())?
}

/// The rotated files, oldest first, with their indices.
fn rotated(data_dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(data_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if let Some(i) = entry.file_name().to_str().and_then(rotated_index) {
            out.push((i, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Every journal file, oldest first (the rotated ones, then `journal.jsonl` if present).
pub fn files(data_dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = rotated(data_dir)?.into_iter().map(|(_, p)| p).collect();
    let current = data_dir.join(JOURNAL_FILE);
    if current.exists() {
        out.push(current);
    }
    Ok(out)
}

/// The last complete line of `path` (ending in a newline), if any.
fn last_line(path: &Path) -> io::Result<Option<String>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    // A line is at most a window's block: read back in growing chunks from the end.
    let mut chunk = 64 * 1024u64;
    loop {
        let from = len.saturating_sub(chunk);
        file.seek(SeekFrom::Start(from))?;
        let mut buf = Vec::with_capacity((len - from) as usize);
        file.read_to_end(&mut buf)?;
        let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
            if from == 0 {
                return Ok(None);
            }
            chunk *= 4;
            continue;
        };
        let start = buf[..end].iter().rposition(|&b| b == b'\n').map(|p| p + 1);
        match start {
            Some(s) => return Ok(Some(String::from_utf8_lossy(&buf[s..end]).into_owned())),
            None if from == 0 => return Ok(Some(String::from_utf8_lossy(&buf[..end]).into_owned())),
            None => chunk *= 4,
        }
    }
}

/// Cuts a partial last line (no newline: a crash during its append) off `journal.jsonl`;
/// the bytes cut, if any.
pub fn repair_tail(data_dir: &Path) -> io::Result<u64> {
    let path = data_dir.join(JOURNAL_FILE);
    let mut file = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let mut keep = len;
    let mut buf = [0u8; 4096];
    while keep > 0 {
        let from = keep.saturating_sub(buf.len() as u64);
        let n = (keep - from) as usize;
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut buf[..n])?;
        if let Some(p) = buf[..n].iter().rposition(|&b| b == b'\n') {
            keep = from + p as u64 + 1;
            break;
        }
        keep = from;
    }
    if keep < len {
        file.set_len(keep)?;
        file.sync_data()?;
    }
    Ok(len - keep)
}

/// The newest window the journal has (0: none), from its newest complete line.
pub fn last_window(data_dir: &Path) -> io::Result<u64> {
    for path in files(data_dir)?.iter().rev() {
        if let Some(line) = last_line(path)? {
            return fpn_log::journal::line_last_window(&line).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: last line is not a journal line", path.display()),
                )
            });
        }
    }
    Ok(0)
}

/// Every line of every journal file, oldest first, to `f` (the line without its newline).
pub fn for_each_line(data_dir: &Path, mut f: impl FnMut(&str) -> io::Result<()>) -> io::Result<()> {
    for path in files(data_dir)? {
        let reader = BufReader::new(File::open(&path)?);
        for line in reader.lines() {
            f(&line?)?;
        }
    }
    Ok(())
}

/// The journal's appender (its writer thread owns it).
#[derive(Debug)]
pub struct JournalWriter {
    dir: PathBuf,
    file: File,
    len: u64,
    settings: JournalSettings,
}

impl JournalWriter {
    pub fn open(data_dir: &Path, settings: JournalSettings) -> io::Result<JournalWriter> {
        let file = OpenOptions::new().create(true).append(true).open(data_dir.join(JOURNAL_FILE))?;
        let len = file.metadata()?.len();
        Ok(JournalWriter { dir: data_dir.to_path_buf(), file, len, settings })
    }

    /// Appends `lines` (each ending in a newline) and makes them durable (`fdatasync`),
    /// or, on any error, cuts the file back to where it was (so a retry writes no line
    /// twice); then rotation and retention when due.
    pub fn append_group<'a>(&mut self, lines: impl Iterator<Item = &'a [u8]>) -> io::Result<()> {
        let before = self.len;
        let written = (|| {
            for line in lines {
                self.file.write_all(line)?;
                self.len += line.len() as u64;
            }
            self.file.sync_data()
        })();
        if let Err(e) = written {
            self.len = before;
            let _ = self.file.set_len(before);
            return Err(e);
        }
        if self.len >= self.settings.segment_bytes_max {
            self.rotate()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let next = rotated(&self.dir)?.last().map_or(1, |(i, _)| i + 1);
        std::fs::rename(self.dir.join(JOURNAL_FILE), self.dir.join(rotated_name(next)))?;
        self.file = OpenOptions::new().create(true).append(true).open(self.dir.join(JOURNAL_FILE))?;
        self.len = 0;
        crate::run::sync_dir(&self.dir)?;
        self.retain()
    }

    /// Deletes the oldest rotated files beyond the size and age limits.
    fn retain(&mut self) -> io::Result<()> {
        let mut files: Vec<(PathBuf, u64, SystemTime)> = Vec::new();
        for (_, path) in rotated(&self.dir)? {
            let m = std::fs::metadata(&path)?;
            files.push((path, m.len(), m.modified()?));
        }
        let mut total: u64 = files.iter().map(|f| f.1).sum::<u64>() + self.len;
        let now = SystemTime::now();
        for (path, len, modified) in files {
            let age = now.duration_since(modified).unwrap_or_default().as_nanos() as u64;
            let old = self.settings.retain_age_ns > 0 && age > self.settings.retain_age_ns;
            if total <= self.settings.retain_bytes_max && !old {
                break;
            }
            std::fs::remove_file(&path)?;
            total -= len;
        }
        Ok(())
    }
}
