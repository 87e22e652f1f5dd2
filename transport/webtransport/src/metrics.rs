//! The endpoint's counters. The endpoint thread counts in a plain struct and copies it to a
//! shared snapshot in its housekeeping (every [`crate::endpoint::HOUSEKEEPING`]); the daemon
//! reads the snapshot ([`crate::EndpointHandle::counters`]) and publishes each field as
//! `fpn_webtransport_<field>` ([`Counters::metrics`]).

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        /// Endpoint counters; fields ending in `_total` only grow.
        #[derive(Debug, Default, Clone, PartialEq, Eq)]
        pub struct Counters {
            $( $(#[$doc])* pub $name: u64, )*
        }

        impl Counters {
            /// Every counter with its Prometheus name (`fpn_webtransport_<field>`).
            pub fn metrics(&self) -> Vec<(&'static str, u64)> {
                vec![$( (concat!("fpn_webtransport_", stringify!($name)), self.$name), )*]
            }
        }
    };
}

counters! {
    /// QUIC connections accepted (handshake started).
    conns_accepted_total,
    /// Refused at the connection limit (`connections_max`) or per IP (`conns_per_ip`).
    conns_refused_max_total,
    conns_refused_ip_total,
    /// Initial packets answered with a Retry (more handshakes in flight than `retry_above`).
    retries_total,
    handshakes_failed_total,
    /// Connections open now (a gauge).
    conns_open,
    /// HTTP/3 requests that were not a WebTransport CONNECT on the configured path (404).
    requests_refused_total,
    sessions_opened_total,
    sessions_refused_unauthorized_total,
    sessions_refused_overloaded_total,
    sessions_refused_bad_hello_total,
    sessions_hello_timeout_total,
    /// Sessions closed because their result stream fell `result_backlog_max` behind.
    sessions_backlog_closed_total,
    sessions_closed_total,
    frames_datagram_total,
    frames_stream_total,
    /// Frames refused whole (structure, oversized): one receipt each.
    frames_refused_total,
    /// Streams stopped after a frame refused whole.
    streams_stopped_total,
    /// Times a stream's next frame waited for room in the engine's ring.
    stream_waits_total,
    /// Records handed to the engine.
    records_forwarded_total,
    records_rate_limited_total,
    /// Datagram records answered `overloaded` because the engine's ring was full.
    records_overloaded_total,
    records_client_mismatch_total,
    records_unauthorized_total,
    receipts_datagram_total,
    receipts_stream_total,
    /// Datagram receipts that went on the result stream (no room for a datagram).
    receipts_fallback_total,
    /// Receipts whose session had ended.
    receipts_orphaned_total,
    windows_pushed_total,
    proofs_pushed_total,
    cert_rotations_total,
    /// Receive time of the latest frame, ns since the Unix epoch (a gauge).
    rx_ns_last,
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_counter_has_a_prefixed_name() {
        let c = super::Counters { frames_datagram_total: 3, ..Default::default() };
        let m = c.metrics();
        assert!(m.iter().all(|(name, _)| name.starts_with("fpn_webtransport_")));
        assert!(m.contains(&("fpn_webtransport_frames_datagram_total", 3)));
        assert_eq!(m.len(), 32);
    }
}
