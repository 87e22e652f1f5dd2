//! A batch under construction: entries appended after room for its header, sealed into the
//! bytes one group commit writes (`docs/log.md`, "Batch").

use crate::format::{BATCH_HEADER_LEN, BatchHeader, ENTRY_LEN_MAX, EntryWriter};

/// One batch's bytes. Sized once; appending never reallocates while
/// [`BatchBuffer::has_room`] was checked first.
#[derive(Debug)]
pub struct BatchBuffer {
    buf: Vec<u8>,
    entries: u32,
    sealed: bool,
}

impl BatchBuffer {
    /// Room for `payload_max` bytes of entries, plus one more entry of the largest size (a
    /// batch is sealed once it reaches `payload_max`).
    pub fn with_capacity(payload_max: usize) -> BatchBuffer {
        let mut buf = Vec::with_capacity(BATCH_HEADER_LEN + payload_max + ENTRY_LEN_MAX);
        buf.resize(BATCH_HEADER_LEN, 0);
        BatchBuffer { buf, entries: 0, sealed: false }
    }

    /// Entry bytes so far.
    pub fn payload_len(&self) -> usize {
        self.buf.len() - BATCH_HEADER_LEN
    }

    pub fn entries(&self) -> u32 {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Whether one more entry of up to `len` bytes fits without reallocating.
    pub fn has_room(&self, len: usize) -> bool {
        !self.sealed && self.buf.len() + len <= self.buf.capacity()
    }

    /// Appends one entry with `write`.
    pub fn push(&mut self, write: impl FnOnce(&mut EntryWriter<'_>)) {
        assert!(!self.sealed, "append to a sealed batch");
        write(&mut EntryWriter::new(&mut self.buf));
        self.entries += 1;
    }

    /// Fills in the header (length, crc32c of the payload, count); the batch's bytes.
    pub fn seal(&mut self) -> &[u8] {
        if !self.sealed {
            let payload = &self.buf[BATCH_HEADER_LEN..];
            let h = BatchHeader {
                payload_len: payload.len() as u32,
                crc: crc32c::crc32c(payload),
                entries: self.entries,
            };
            self.buf[..BATCH_HEADER_LEN].copy_from_slice(&h.encode());
            self.sealed = true;
        }
        &self.buf
    }

    /// The sealed bytes (after [`BatchBuffer::seal`]).
    pub fn bytes(&self) -> &[u8] {
        debug_assert!(self.sealed);
        &self.buf
    }

    /// Empty again, for the next batch.
    pub fn clear(&mut self) {
        self.buf.truncate(BATCH_HEADER_LEN);
        self.entries = 0;
        self.sealed = false;
    }
}
