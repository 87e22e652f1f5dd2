//! Cache prefetch hints. None of them changes a result: a prefetch only starts loading a
//! cache line, it never faults and writes nothing.

/// Bytes of a frame [`prefetch_frame`] starts loading at most: a full QUIC datagram's worth,
/// more than any frame the benches send (16 intents of 4 keys are about 1.3 KB).
pub const FRAME_PREFETCH_BYTES: usize = 2048;

/// Starts loading the cache line of `x`.
#[inline(always)]
pub(crate) fn prefetch<T>(x: &T) {
    prefetch_ptr(std::ptr::from_ref(x).cast());
}

#[inline(always)]
fn prefetch_ptr(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` is only a hint: it never faults and changes no memory, for any
    // address, and SSE is in the x86_64 baseline.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Starts loading the first [`FRAME_PREFETCH_BYTES`] of `frame`, one hint per 64-byte line.
///
/// For an intake that holds the next frame while it decodes this one (the daemon's submit
/// path peeks at its ring): decoding reads a frame once, front to back, and its first read
/// of each line otherwise waits on memory. Measured on one intake thread
/// (`cargo bench -p fpn-engine --bench intake`, which calls this as the daemon does): see
/// `BENCHMARKS.md`, "One intake core".
#[inline]
pub fn prefetch_frame(frame: &[u8]) {
    let len = frame.len().min(FRAME_PREFETCH_BYTES);
    let p = frame.as_ptr();
    let mut off = 0;
    while off < len {
        prefetch_ptr(p.wrapping_add(off));
        off += 64;
    }
}
