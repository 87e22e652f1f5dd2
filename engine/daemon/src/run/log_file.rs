//! The input log's files: appends by io_uring (a write linked to an `fdatasync`, submitted
//! without blocking the log role's executor and polled for completion), segment creation,
//! and the few synchronous calls around them (`docs/log.md`, "Files").
//!
//! Why the `io-uring` crate and not glommio's DMA files: the log appends small batches
//! (a group commit is whatever arrived while the previous one was on its way to disk, often
//! a few kilobytes), and direct I/O needs block-aligned writes: every batch would rewrite its
//! segment's last partial block, or pad it. Buffered writes with an `fdatasync` per group do
//! neither, and io_uring keeps them off the executor: the role submits a write and its sync
//! as one linked pair and keeps running its loop while the kernel works.
//!
//! This module holds the log's `unsafe`: handing io_uring a buffer that must stay alive and
//! unchanged until the kernel has used it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use io_uring::{IoUring, opcode, squeue, types};

const WRITE: u64 = 1;
const SYNC: u64 = 2;

/// What a completed append did.
#[derive(Debug, PartialEq, Eq)]
pub enum Appended {
    /// Every byte is written and the sync succeeded: durable.
    Durable,
    /// The kernel wrote only the first `n` bytes (the sync was cancelled): append the rest.
    Short(usize),
}

/// One write + sync in flight.
#[derive(Debug, Clone, Copy)]
struct Flight {
    len: usize,
    write: Option<i32>,
    sync: Option<i32>,
}

/// The segment being appended to.
pub struct SegmentWriter {
    ring: IoUring,
    dir: PathBuf,
    file: File,
    index: u64,
    offset: u64,
    flight: Option<Flight>,
}

impl std::fmt::Debug for SegmentWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentWriter").field("index", &self.index).field("offset", &self.offset).finish()
    }
}

/// Makes `path`'s creation (or removal) durable: `fsync` on its directory.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates segment `path` with `first` (its header and segment-start entries) written and
/// synced, and its directory entry synced.
/// Creates the segment file `path` with `first` in it, synced, and syncs its directory
/// (blocking: `LogRole` runs it on a thread of its own at rotation).
pub fn create(path: &Path, first: &[u8]) -> io::Result<File> {
    let mut file = OpenOptions::new().create_new(true).write(true).open(path)?;
    file.write_all(first)?;
    file.sync_data()?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(file)
}

impl SegmentWriter {
    /// A new segment `index` in `dir`, starting with `first` (header, segment-start entries).
    pub fn create(dir: &Path, index: u64, first: &[u8]) -> io::Result<SegmentWriter> {
        let file = create(&dir.join(fpn_log::segment_file_name(index)), first)?;
        Ok(SegmentWriter {
            ring: IoUring::new(8)?,
            dir: dir.to_path_buf(),
            file,
            index,
            offset: first.len() as u64,
            flight: None,
        })
    }

    /// Continues in segment `index`, whose file [`create`] made with `first_len` bytes (the
    /// current one must have nothing in flight).
    pub fn install(&mut self, index: u64, file: File, first_len: u64) {
        assert!(self.flight.is_none(), "rotate with an append in flight");
        self.file = file;
        self.index = index;
        self.offset = first_len;
    }

    pub fn index(&self) -> u64 {
        self.index
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes in the current segment (what is durable, plus nothing in flight).
    pub fn bytes(&self) -> u64 {
        self.offset
    }

    pub fn in_flight(&self) -> bool {
        self.flight.is_some()
    }

    /// Submits `bytes` for appending at the segment's end, linked to an `fdatasync`.
    ///
    /// # Safety
    /// The kernel reads `bytes` until [`SegmentWriter::poll`] reports the append done (or
    /// the writer is dropped, which waits for it): the caller must neither move, free nor
    /// change that memory before then.
    pub unsafe fn submit(&mut self, bytes: &[u8]) -> io::Result<()> {
        assert!(self.flight.is_none(), "one append in flight");
        let fd = types::Fd(self.file.as_raw_fd());
        let len = u32::try_from(bytes.len()).map_err(|_| io::Error::other("an append over 4 GiB"))?;
        let write = opcode::Write::new(fd, bytes.as_ptr(), len)
            .offset(self.offset)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(WRITE);
        let sync = opcode::Fsync::new(fd).flags(types::FsyncFlags::DATASYNC).build().user_data(SYNC);
        // SAFETY: both entries are valid (a live fd, and a buffer the caller keeps alive and
        // unchanged until completion, per this function's contract); the queue has room: it
        // holds 8 and at most these 2 are ever in it.
        unsafe {
            let mut sq = self.ring.submission();
            sq.push(&write).map_err(|_| io::Error::other("io_uring submission queue full"))?;
            sq.push(&sync).map_err(|_| io::Error::other("io_uring submission queue full"))?;
        }
        self.ring.submit()?;
        self.flight = Some(Flight { len: bytes.len(), write: None, sync: None });
        Ok(())
    }

    /// The in-flight append's outcome, once both its write and its sync completed; `None`
    /// while they run (or with nothing in flight). Never blocks.
    pub fn poll(&mut self) -> Option<io::Result<Appended>> {
        let flight = self.flight.as_mut()?;
        for cqe in self.ring.completion() {
            match cqe.user_data() {
                WRITE => flight.write = Some(cqe.result()),
                SYNC => flight.sync = Some(cqe.result()),
                _ => {}
            }
        }
        let (Some(w), Some(s)) = (flight.write, flight.sync) else { return None };
        let len = flight.len;
        self.flight = None;
        Some(if w < 0 {
            Err(io::Error::from_raw_os_error(-w))
        } else if (w as usize) < len {
            self.offset += w as u64;
            Ok(Appended::Short(w as usize))
        } else if s < 0 {
            // The bytes are in the page cache but not known to be on disk: the caller writes
            // the batch again (at the same offset) and syncs again.
            Err(io::Error::from_raw_os_error(-s))
        } else {
            self.offset += len as u64;
            Ok(Appended::Durable)
        })
    }

    /// Waits for the in-flight append (shutdown). `None` with nothing in flight.
    pub fn wait(&mut self) -> Option<io::Result<Appended>> {
        while self.flight.is_some() {
            if let Some(r) = self.poll() {
                return Some(r);
            }
            if let Err(e) = self.ring.submit_and_wait(1) {
                self.flight = None;
                return Some(Err(e));
            }
        }
        None
    }
}

impl Drop for SegmentWriter {
    fn drop(&mut self) {
        // The kernel may still read the caller's buffer: wait for it.
        let _ = self.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_are_durable_in_order_and_rotate() {
        let dir = std::env::temp_dir().join(format!("fpn-log-file-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut w = SegmentWriter::create(&dir, 1, b"head").unwrap();
        for chunk in [b"one ".as_slice(), b"two ", b"three"] {
            // SAFETY: `chunk` is a static slice, alive and unchanged until `wait` returns.
            unsafe { w.submit(chunk).unwrap() };
            assert_eq!(w.wait().unwrap().unwrap(), Appended::Durable);
        }
        assert_eq!(std::fs::read(dir.join(fpn_log::segment_file_name(1))).unwrap(), b"headone two three");
        let file = create(&dir.join(fpn_log::segment_file_name(2)), b"h2").unwrap();
        w.install(2, file, 2);
        assert_eq!((w.index(), w.bytes()), (2, 2));
        assert!(SegmentWriter::create(&dir, 2, b"x").is_err(), "a segment is created once");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
