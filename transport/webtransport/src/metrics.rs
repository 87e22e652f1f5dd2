//! The endpoint's counters. The endpoint thread counts in a plain struct and copies it to a
//! shared snapshot in its housekeeping (every [`crate::endpoint::HOUSEKEEPING`]); the daemon
//! reads the snapshot ([`crate::EndpointWatch::counters`]) and publishes each field as
//! `fpn_webtransport_<field>` ([`Counters::DESCRIPTIONS`], [`Counters::values`]): fields
//! ending in `_total` are counters, the others gauges.

macro_rules! counters {
    ($( #[doc = $doc:literal] $(#[doc = $more:literal])* $name:ident ),* $(,)?) => {
        /// Endpoint counters; fields ending in `_total` only grow.
        #[derive(Debug, Default, Clone, PartialEq, Eq)]
        pub struct Counters {
            $( #[doc = $doc] $(#[doc = $more])* pub $name: u64, )*
        }

        impl Counters {
            /// How many fields there are.
            pub const COUNT: usize = [$(stringify!($name)),*].len();

            /// Every field's Prometheus name (`fpn_webtransport_<field>`) and help text (its
            /// doc comment, with a leading space), in the order of [`Counters::values`].
            pub const DESCRIPTIONS: [(&'static str, &'static str); Self::COUNT] =
                [$( (concat!("fpn_webtransport_", stringify!($name)), concat!($doc $(, $more)*)), )*];

            /// Every field's value, in the order of [`Counters::DESCRIPTIONS`].
            pub fn values(&self) -> [u64; Self::COUNT] {
                [$( self.$name, )*]
            }
        }
    };
}

counters! {
    /// QUIC connections accepted (handshake started).
    conns_accepted_total,
    /// Connections refused at the connection limit (`quic.connections_max`).
    conns_refused_max_total,
    /// Connections refused at the per-IP limit (`quic.conns_per_ip`).
    conns_refused_ip_total,
    /// Initial packets answered with a Retry (more handshakes in flight than `retry_above`).
    retries_total,
    /// Handshakes that failed.
    handshakes_failed_total,
    /// Connections open now (a gauge).
    conns_open,
    /// HTTP/3 requests that were not a WebTransport CONNECT on the configured path (404).
    requests_refused_total,
    /// Hellos accepted: sessions opened.
    sessions_opened_total,
    /// Hellos refused `unauthorized` (an unknown API key).
    sessions_refused_unauthorized_total,
    /// Hellos refused `overloaded` (the client holds `conns_per_client` sessions).
    sessions_refused_overloaded_total,
    /// Hellos refused as malformed.
    sessions_refused_bad_hello_total,
    /// Sessions closed `unauthorized` for sending no hello in time.
    sessions_hello_timeout_total,
    /// Sessions closed because their result stream fell `result_backlog_max` behind.
    sessions_backlog_closed_total,
    /// Sessions that ended.
    sessions_closed_total,
    /// Wire frames read from HTTP datagrams.
    frames_datagram_total,
    /// Wire frames read from unidirectional streams.
    frames_stream_total,
    /// Frames refused whole (structure, oversized): one receipt each.
    frames_refused_total,
    /// Streams stopped after a frame refused whole.
    streams_stopped_total,
    /// Times a stream's next frame waited for room in the engine's ring.
    stream_waits_total,
    /// Records handed to the engine.
    records_forwarded_total,
    /// Records refused `rate_limited` (the client's token bucket).
    records_rate_limited_total,
    /// Datagram records answered `overloaded` because the engine's ring was full.
    records_overloaded_total,
    /// Records refused `client_mismatch` (another client id than the session's).
    records_client_mismatch_total,
    /// Records refused `unauthorized` (before the welcome).
    records_unauthorized_total,
    /// Receipts sent in HTTP datagrams.
    receipts_datagram_total,
    /// Receipts of stream records, on the result stream.
    receipts_stream_total,
    /// Datagram receipts that went on the result stream (no room for a datagram).
    receipts_fallback_total,
    /// Receipts whose session had ended.
    receipts_orphaned_total,
    /// Block and clearing frames written to result streams.
    windows_pushed_total,
    /// Proof announcement frames written to result streams.
    proofs_pushed_total,
    /// Self-signed certificates replaced (renewed before expiry, or on request).
    cert_rotations_total,
    /// Receive time of the latest frame, ns since the Unix epoch (a gauge).
    rx_ns_last,
}

#[cfg(test)]
mod tests {
    use super::Counters;

    #[test]
    fn every_counter_has_a_prefixed_name_and_one_line_of_help() {
        let c = Counters { frames_datagram_total: 3, ..Default::default() };
        assert_eq!(Counters::COUNT, 32);
        let values = c.values();
        for ((name, help), value) in Counters::DESCRIPTIONS.iter().zip(values) {
            assert!(name.starts_with("fpn_webtransport_"), "{name}");
            assert!(!help.trim().is_empty() && !help.contains('\n'), "{name}: {help:?}");
            assert_eq!(value, u64::from(*name == "fpn_webtransport_frames_datagram_total") * 3);
        }
    }
}
