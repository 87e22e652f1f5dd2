//! The server's counters: counted in place on the hot path, published by the driver.

/// Transport counters (published by the driver as `fpn_quic_*`).
#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub udp_datagrams_total: u64,
    pub udp_bytes_total: u64,
    /// UDP payloads that cannot be QUIC (empty, or the fixed bit clear).
    pub udp_garbage_total: u64,
    pub conns_accepted_total: u64,
    pub conns_refused_max_total: u64,
    pub conns_refused_ip_total: u64,
    pub retries_total: u64,
    pub handshakes_failed_total: u64,
    pub alpn_refused_total: u64,
    pub sessions_opened_total: u64,
    pub sessions_refused_unauthorized_total: u64,
    pub sessions_refused_overloaded_total: u64,
    pub sessions_refused_bad_hello_total: u64,
    /// Connections closed for sending no hello within `Limits::hello_timeout`.
    pub sessions_hello_timeout_total: u64,
    pub conns_closed_total: u64,
    pub conns_idle_timeout_total: u64,
    pub frames_datagram_total: u64,
    pub frames_stream_total: u64,
    pub frames_refused_total: u64,
    pub streams_stopped_total: u64,
    pub records_rate_limited_total: u64,
    /// Datagram records answered `overloaded` because the engine could not take a frame.
    pub records_overloaded_total: u64,
    pub records_client_mismatch_total: u64,
    pub records_unauthorized_total: u64,
    pub receipts_datagram_total: u64,
    pub receipts_stream_total: u64,
    /// Datagram receipts that went on the result stream (datagram send buffer full).
    pub receipts_fallback_total: u64,
    pub windows_pushed_total: u64,
    /// Proof announcement frames written to result streams.
    pub proofs_pushed_total: u64,
    /// Sessions closed `slow_consumer`: their result stream stayed `Limits::result_backlog_max`
    /// bytes behind although they had stopped reading records.
    pub sessions_backlog_closed_total: u64,
    /// Times a session stopped reading records because its result stream was more than half
    /// of `Limits::result_backlog_max` behind (the client reads its answers too slowly).
    pub sessions_backlog_paused_total: u64,
    /// Watermark records written (receipt mode `refusals`).
    pub watermarks_total: u64,
    pub late_receipts_orphaned_total: u64,
    /// Times a session stopped reading a path (its datagrams, or its streams) because
    /// `Limits::receipts_held_max` receipts waited behind a record the engine had not answered
    /// yet, or for the input log;
    /// the frames wait in QUIC's buffers meanwhile.
    pub receipt_queue_full_total: u64,
    /// DATAGRAM frames QUIC took for a session that the session never read, counted when the
    /// session ends: dropped oldest-first from the connection's datagram receive buffer
    /// (1 MiB) while the session had stopped reading (`receipt_queue_full_total`,
    /// `sessions_backlog_paused_total`), or still in it at the close. Their records got no
    /// answer: to the client, datagrams lost on the way (in mode `refusals` it resends them).
    pub datagrams_unread_total: u64,
}

impl Counters {
    /// A sum that moves whenever a session did something visible (a hello answered, a frame
    /// taken, a receipt, window or proof written): how `Server::poll_records` tells work
    /// from frames that only wait for the engine.
    pub(super) fn progress(&self) -> u64 {
        self.frames_datagram_total
            + self.frames_stream_total
            + self.sessions_opened_total
            + self.sessions_refused_unauthorized_total
            + self.sessions_refused_overloaded_total
            + self.sessions_refused_bad_hello_total
            + self.receipts_datagram_total
            + self.receipts_stream_total
            + self.receipts_fallback_total
            + self.watermarks_total
            + self.windows_pushed_total
            + self.proofs_pushed_total
    }
}
