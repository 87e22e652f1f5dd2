//! The WebTransport intake for browsers (`docs/webtransport.md`), on intake 0.
//!
//! The endpoint (`fpn_webtransport::Endpoint`: quinn, h3 and a current-thread tokio runtime)
//! runs on a thread of its own, started by `run` before the executors ([`start`]) from a
//! thread pinned to the admin CPU, so it never runs on a pinned executor nor on the record
//! path's CPU. Intake 0's loop drives its engine side ([`EngineSide`]): two bounded SPSC
//! rings polled like the submit ring, every record admitted through the one admission path
//! (`admission.rs`, with [`Origin::WebTransport`], so the merger's late answers come back
//! here in order), published windows from the merger (`merger_wt`, with its buffer pool
//! `wt_merger`) and proof announcements (`prover_wt`) out to the sessions.
//!
//! Why intake 0 and not a role of its own: admission state (the open window, de-duplication,
//! sequence ids, the rings to the builders) belongs to an intake core. A role of its own
//! would need an `IntakeCore` of its own, so it would be one more intake in the window-close
//! protocol and in the core map, for a ring poll that costs one atomic load per iteration
//! while idle. Like the raw QUIC intake, a client must keep to one intake: WebTransport
//! clients are on intake 0 (`docs/sharding.md`).

use std::sync::OnceLock;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use fpn_runtime::clock::now_ns;
use fpn_runtime::metrics::{Histogram, Labels, MetricDesc, MetricKind, MetricsHub, Snapshot};
use fpn_webtransport::{
    CertSource, Counters, Endpoint, EndpointHandle, EndpointWatch, EngineSide, QueueConfig, StartError,
};

use super::admission::{Admission, Origin};
use super::merger::ResultMsg;
use super::quic::QuicAdmit;
use crate::config::{Settings, WebTransportCert};
use crate::prover::{PROOF_FRAME_LEN, ProofAnnouncement};
use crate::run::RunError;
use crate::run::links::{RxLink, TxLink};
use crate::run::shared::Shared;
use crate::run::topology::Wiring;

/// File the bound WebTransport address is written to, under `engine.data_dir`.
pub const WEBTRANSPORT_ADDR_FILE: &str = "webtransport.addr";

/// What the topology gets of a started endpoint: the engine's ends of its rings and what it
/// publishes (its counters, for intake 0's housekeeping).
pub struct WebTransportIo {
    pub side: EngineSide,
    pub watch: EndpointWatch,
}

/// Starts the endpoint (`webtransport.enabled`) on `webtransport.listen`, with `[quic]`'s API
/// keys and limits and the daemon's clock, on a thread that inherits the admin CPU. None when
/// disabled. An address in use stops the start (exit 1), a bad certificate too (exit 2).
pub fn start(settings: &Settings) -> Result<Option<(EndpointHandle, WebTransportIo)>, RunError> {
    let w = &settings.webtransport;
    if !w.enabled {
        return Ok(None);
    }
    let (endpoint_side, side) = fpn_webtransport::queues(QueueConfig {
        frames_len: w.frames_capacity,
        answers_len: w.answers_capacity,
        results_pending_max: w.results_pending_max,
        // Intake 0 forwards at most this many records the merger answers later, all
        // entry points together (`admission.rs`).
        late_max: settings.rings.capacity,
    });
    let cert = match &w.cert {
        WebTransportCert::SelfSigned { validity, renew_before } => CertSource::SelfSigned {
            names: vec!["localhost".into(), w.listen.ip().to_string()],
            validity: *validity,
            renew_before: *renew_before,
        },
        WebTransportCert::Pem { cert, key } => CertSource::Pem { cert: cert.clone(), key: key.clone() },
    };
    let config = fpn_webtransport::Config {
        bind: w.listen,
        url_host: w.url_host.clone(),
        path: w.path.clone(),
        cert,
        auth: settings.quic.auth(),
        limits: settings.quic.limits(),
        clock: now_ns,
    };
    let cpu = settings.cores.admin.first().copied();
    let started = std::thread::scope(|scope| {
        let starter = scope.spawn(move || {
            if let Some(id) = cpu {
                // Best effort, as for the admin threads: unpinned, it still never runs on an
                // executor.
                let _ = core_affinity::set_for_current(core_affinity::CoreId { id });
            }
            Endpoint::start(config, endpoint_side)
        });
        starter.join().expect("starting the endpoint does not panic")
    });
    let handle = started.map_err(|e| match e {
        StartError::Cert(e) => RunError::Config(format!("webtransport certificate: {e}")),
        source => RunError::WebTransport { addr: w.listen, source },
    })?;
    let watch = handle.watch();
    Ok(Some((handle, WebTransportIo { side, watch })))
}

/// Intake 0's part of the WebTransport intake. See the module doc.
pub struct WebTransportIntake {
    pub side: EngineSide,
    watch: EndpointWatch,
    /// Published windows from the merger, and their buffers back.
    results: RxLink<ResultMsg>,
    results_back: TxLink<ResultMsg>,
    /// Proof announcements from the prover (`None` with the prover off).
    announcements: Option<RxLink<ProofAnnouncement>>,
    proof_buf: Vec<u8>,
    /// No window-close stamps are kept for WebTransport records (capacity 0).
    stamps: Vec<u64>,
    rx_to_ring: Histogram,
    none: Labels,
}

impl WebTransportIntake {
    /// Intake `i`'s part: intake 0's, when the topology has an endpoint.
    pub fn build(w: &mut Wiring<'_>, i: usize) -> Option<WebTransportIntake> {
        if i != 0 {
            return None;
        }
        let WebTransportIo { side, watch } = w.take_webtransport()?;
        Some(WebTransportIntake {
            side,
            watch,
            results: w.links.plain_rx("merger_wt"),
            results_back: w.links.plain_tx("wt_merger"),
            announcements: w.links.try_plain_rx("prover_wt"),
            proof_buf: Vec::with_capacity(PROOF_FRAME_LEN),
            stamps: Vec::new(),
            rx_to_ring: Histogram::new(),
            none: Labels::none(),
        })
    }

    /// One iteration: published windows and proofs to the endpoint, the receipts whose
    /// records are now on disk, then the frames it has read, each record through `admission`
    /// (answered `shutting_down` once draining).
    /// `gate`: receipts of accepted records wait for the log (`log.durability = "group"`).
    pub fn poll(&mut self, now: u64, admission: &mut Admission, shared: &Shared, gate: bool) -> bool {
        let mut did_work = self.poll_results();
        if gate {
            self.side.set_durable(shared.log_durable[0].0.load(Ordering::Acquire));
        }
        let (stamps, rx_to_ring) = (&mut self.stamps, &mut self.rx_to_ring);
        let mut admit =
            QuicAdmit::new(admission, Origin::WebTransport, stamps, rx_to_ring, now, shared, gate);
        did_work |= self.side.poll_records(&mut admit);
        did_work
    }

    fn poll_results(&mut self) -> bool {
        let mut did_work = false;
        while let Some(msg) = self.results.rx.pop() {
            // The endpoint's thread writes the frame to its sessions later: a copy of its
            // own (one allocation per published window), and the buffer back to the pool.
            self.side.handle_window(msg.window.window_id, Bytes::copy_from_slice(&msg.bytes));
            let back = self.results_back.tx.try_push(msg);
            debug_assert!(back.is_ok(), "the pool ring holds every buffer");
            did_work = true;
        }
        while let Some(a) = self.announcements.as_mut().and_then(|r| r.rx.pop()) {
            a.write_frame(&mut self.proof_buf);
            self.side.handle_proof(Bytes::copy_from_slice(&self.proof_buf));
            did_work = true;
        }
        did_work
    }

    /// The endpoint's counters (as of its last housekeeping) and this side's.
    pub fn publish(&self, s: &mut Snapshot) {
        let none = &self.none;
        for (desc, value) in endpoint_metrics().iter().zip(self.watch.counters().values()) {
            match desc.kind {
                MetricKind::Counter => s.counter(desc, none, value),
                _ => s.gauge(desc, none, i64::try_from(value).unwrap_or(i64::MAX)),
            }
        }
        let c = &self.side.counters;
        s.counter(&WT_INTAKE_FRAMES_TOTAL, none, c.frames_total);
        s.counter(&WT_INTAKE_RECORDS_TOTAL, none, c.records_admitted_total);
        s.counter(&WT_LATE_RECEIPTS_TOTAL, none, c.late_receipts_total);
        s.counter(&WT_LATE_RECEIPTS_ORPHANED_TOTAL, none, c.late_receipts_orphaned_total);
        s.counter(&WT_RESULTS_DROPPED_TOTAL, none, c.results_dropped_total);
        s.gauge(&WT_FRAMES_WAITING, none, self.side.frames_waiting() as i64);
        s.gauge(&WT_RECEIPTS_HELD, none, self.side.receipts_held() as i64);
        s.histogram(&WT_RX_TO_RING_SECONDS, none, &self.rx_to_ring);
        self.results.publish(s);
        self.results_back.publish(s);
        if let Some(a) = &self.announcements {
            a.publish(s);
        }
    }
}

/// One metric per field of the endpoint's [`Counters`] (`fpn_webtransport_<field>`), made
/// once.
fn endpoint_metrics() -> &'static [MetricDesc] {
    static DESCS: OnceLock<Vec<MetricDesc>> = OnceLock::new();
    DESCS.get_or_init(|| {
        let desc = |&(name, help): &(&'static str, &'static str)| {
            let help = help.trim();
            if name.ends_with("_total") {
                MetricDesc::counter(name, help)
            } else {
                MetricDesc::gauge(name, help)
            }
        };
        Counters::DESCRIPTIONS.iter().map(desc).collect()
    })
}

pub static WT_INTAKE_FRAMES_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_webtransport_intake_frames_total",
    "WebTransport frames intake 0 took from the endpoint's ring.",
);
pub static WT_INTAKE_RECORDS_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_webtransport_intake_records_total",
    "WebTransport records intake 0 admitted (the transport's refusals not included).",
);
pub static WT_LATE_RECEIPTS_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_webtransport_late_receipts_total",
    "Merger answers (book cancels) sent back to WebTransport sessions.",
);
pub static WT_LATE_RECEIPTS_ORPHANED_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_webtransport_late_receipts_orphaned_total",
    "Merger answers for WebTransport records nobody waited for.",
);
pub static WT_RESULTS_DROPPED_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_webtransport_results_dropped_total",
    "Windows and proofs dropped because the answer ring to the endpoint and its queue were full.",
);
pub static WT_FRAMES_WAITING: MetricDesc = MetricDesc::gauge(
    "fpn_webtransport_frames_waiting",
    "Frames in the endpoint's ring waiting for intake 0, at the last publish.",
);
pub static WT_RECEIPTS_HELD: MetricDesc = MetricDesc::gauge(
    "fpn_webtransport_receipts_held",
    "WebTransport receipts waiting for their records' log group commit (and those behind them), at the last publish.",
);
pub static WT_RX_TO_RING_SECONDS: MetricDesc = MetricDesc::histogram(
    "fpn_webtransport_rx_to_ring_latency_seconds",
    "Per record: from the endpoint's read of its datagram or stream chunk until intake 0 admitted it.",
);

/// Registers every `fpn_webtransport_*` metric with `hub`.
pub fn describe(hub: &MetricsHub) {
    let endpoint: Vec<&'static MetricDesc> = endpoint_metrics().iter().collect();
    hub.describe(&endpoint);
    hub.describe(&[
        &WT_INTAKE_FRAMES_TOTAL,
        &WT_INTAKE_RECORDS_TOTAL,
        &WT_LATE_RECEIPTS_TOTAL,
        &WT_LATE_RECEIPTS_ORPHANED_TOTAL,
        &WT_RESULTS_DROPPED_TOTAL,
        &WT_FRAMES_WAITING,
        &WT_RECEIPTS_HELD,
        &WT_RX_TO_RING_SECONDS,
    ]);
}
