//! The daemon's metric descriptions (the runtime adds its ring, idle and publish metrics).
//! Names follow `fpn_<subject>_<action>_<unit>`; counters end in `_total`, latencies are
//! histograms in seconds. `docs/daemon.md` lists them with their labels.

use fpn_runtime::metrics::{Labels, MetricDesc};
use fpn_wire::Reason;

pub static INTAKE_FRAMES_TOTAL: MetricDesc =
    MetricDesc::counter("fpn_intake_frames_total", "Frames handed to an intake core.");
pub static RECORDS_ACCEPTED_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_records_accepted_total",
    "Records answered ok (intakes; the merger for book cancels).",
);
pub static RECORDS_REJECTED_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_records_rejected_total",
    "Records refused, by reason (intakes; the merger for book cancels).",
);
pub static WINDOWS_CLOSED_TOTAL: MetricDesc =
    MetricDesc::counter("fpn_windows_closed_total", "Windows closed by the window clock (intake 0).");
pub static WINDOWS_PUBLISHED_TOTAL: MetricDesc =
    MetricDesc::counter("fpn_merger_windows_published_total", "Window results finalized by the merger.");
pub static BUILD_WINDOWS_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_build_windows_total",
    "Windows a build worker built for its shard (the shard builds the rest itself).",
);
pub static RESULT_BUFFERS_ALLOCATED_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_merger_result_buffers_allocated_total",
    "Result buffers allocated beyond the start-up pool because the journal held them all.",
);
pub static JOURNAL_WINDOWS_WRITTEN_TOTAL: MetricDesc =
    MetricDesc::counter("fpn_journal_windows_written_total", "Window lines appended to the journal.");
pub static JOURNAL_WRITTEN_BYTES_TOTAL: MetricDesc =
    MetricDesc::counter("fpn_journal_written_bytes_total", "Bytes appended to the journal.");
pub static JOURNAL_WRITE_ERRORS_TOTAL: MetricDesc =
    MetricDesc::counter("fpn_journal_write_errors_total", "Journal appends that failed.");
pub static SUBMIT_FRAMES_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_submit_frames_total",
    "POST /submit requests, by outcome (ok, refused, shutting_down, overloaded, timeout).",
);
pub static INTAKE_LATENCY_SECONDS: MetricDesc = MetricDesc::histogram(
    "fpn_intake_handle_latency_seconds",
    "From receipt of a frame (rx) until its intake handled it.",
);
pub static RING_TRANSIT_SECONDS: MetricDesc = MetricDesc::histogram(
    "fpn_ring_transit_latency_seconds",
    "From push into a ring (stamp) until the consumer popped it, by ring.",
);
pub static WINDOW_PUBLISH_SECONDS: MetricDesc = MetricDesc::histogram(
    "fpn_window_publish_latency_seconds",
    "From a window's close until the merger published its block and clearing.",
);
pub static SUBMIT_RECEIPT_SECONDS: MetricDesc = MetricDesc::histogram(
    "fpn_submit_receipt_latency_seconds",
    "From receipt of a POST /submit frame until every receipt of it was back on the admin side.",
);

pub static DAEMON_METRICS: [&MetricDesc; 15] = [
    &INTAKE_FRAMES_TOTAL,
    &BUILD_WINDOWS_TOTAL,
    &RECORDS_ACCEPTED_TOTAL,
    &RECORDS_REJECTED_TOTAL,
    &WINDOWS_CLOSED_TOTAL,
    &WINDOWS_PUBLISHED_TOTAL,
    &RESULT_BUFFERS_ALLOCATED_TOTAL,
    &JOURNAL_WINDOWS_WRITTEN_TOTAL,
    &JOURNAL_WRITTEN_BYTES_TOTAL,
    &JOURNAL_WRITE_ERRORS_TOTAL,
    &SUBMIT_FRAMES_TOTAL,
    &INTAKE_LATENCY_SECONDS,
    &RING_TRANSIT_SECONDS,
    &WINDOW_PUBLISH_SECONDS,
    &SUBMIT_RECEIPT_SECONDS,
];

/// Receipt counts by status, counted locally; labels made once at start-up.
#[derive(Debug)]
pub struct ReceiptCounters {
    pub accepted_total: u64,
    /// Indexed by `Reason::code() - 1`.
    pub rejected_total: [u64; Reason::ALL.len()],
    reason_labels: Vec<Labels>,
}

impl Default for ReceiptCounters {
    fn default() -> ReceiptCounters {
        ReceiptCounters {
            accepted_total: 0,
            rejected_total: [0; Reason::ALL.len()],
            reason_labels: Reason::ALL.iter().map(|r| Labels::new(&[("reason", r.as_str())])).collect(),
        }
    }
}

impl ReceiptCounters {
    #[inline]
    pub fn count(&mut self, status: Result<(), Reason>) {
        match status {
            Ok(()) => self.accepted_total += 1,
            Err(reason) => self.rejected_total[reason.code() as usize - 1] += 1,
        }
    }

    pub fn publish(&self, s: &mut fpn_runtime::metrics::Snapshot, none: &Labels) {
        s.counter(&RECORDS_ACCEPTED_TOTAL, none, self.accepted_total);
        for (i, labels) in self.reason_labels.iter().enumerate() {
            s.counter(&RECORDS_REJECTED_TOTAL, labels, self.rejected_total[i]);
        }
    }
}
