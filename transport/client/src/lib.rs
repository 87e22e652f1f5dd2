//! `fpn-client`: a Flashpoint client over QUIC, the `fpn/1` protocol of `docs/transport.md`.
//!
//! - [`Client`] (tokio) and [`BlockingClient`] (plain threads) open a session: QUIC handshake
//!   with ALPN `fpn/1`, the server authenticated by a certificate pin ([`Trust::Pin`], the
//!   SHA-256 of its DER) or a CA file; then a hello on the first bidirectional stream and the
//!   server's welcome. A refused welcome is [`ConnectError::Refused`] with its
//!   [`fpn_wire::Reason`].
//! - Records go out as datagrams ([`Client::send_datagram`], one frame each, at most the
//!   welcome's `datagram_frame_max` and what the path carries) or on one unidirectional
//!   records stream ([`Client::send_stream`]). [`pack_frames`] and
//!   [`Client::send_records`] pack intents, bids and cancels with `fpn_wire::FrameWriter`.
//! - Everything the server sends arrives as owned [`Event`]s on one bounded receiver:
//!   receipts (from datagrams and from the result stream), blocks and clearings (from the
//!   result stream), and the session's comings and goings.
//!
//! ```no_run
//! use fpn_client::{BlockingClient, ClientConfig, Event, Fingerprint, Intent, Record, Trust, Via};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The daemon writes its address and certificate pin into its data directory.
//! let addr = std::fs::read_to_string("data/quic.addr")?.trim().parse()?;
//! let pin = Fingerprint::parse_hex(&std::fs::read_to_string("data/tls/cert.sha256")?)?;
//! let client = BlockingClient::connect(ClientConfig::new(addr, Trust::Pin(pin), "7"))?;
//! let keys = [0xA1, 0xB2];
//! let intent = Intent { client_id: 7, nonce: 1, sent_ns: 0, profit: 2_500, priority: 3, keys: &keys };
//! client.send_records(&[Record::Intent(intent)], Via::Datagram)?;
//! while let Some(event) = client.recv_event() {
//!     if let Event::Receipt { receipt, .. } = event {
//!         println!("nonce {}: {:?}, seq {}", receipt.nonce, receipt.status, receipt.seq);
//!         break;
//!     }
//! }
//! client.close();
//! # Ok(())
//! # }
//! ```
//!
//! # Receipt modes
//!
//! With [`ClientConfig::receipts`] = [`ReceiptMode::Refusals`] the server sends a receipt
//! only for a refused record (and for every cancel), on the result stream, and confirms the
//! accepted intents and bids with [`Event::Watermark`]s: nonce ranges per path, every few
//! milliseconds. Record what you send in a [`Ledger`] (`ledger.sent(via.path(), nonce)`) and
//! hand it the receipts and watermarks: it says which nonce was accepted or refused, and
//! which are still unanswered (a datagram lost on the way is in no watermark). The
//! WebTransport endpoint does not run this mode (`docs/webtransport.md`).
//!
//! # Slow consumers
//!
//! A client that reads its events too slowly makes the server stop reading its records
//! (streams slow down through flow control; datagrams wait, and past the server's buffer
//! are lost as in the network). If the answers still back up, the server closes the session
//! with `slow_consumer`: [`Event::Disconnected`] with `reason: Some(Reason::SlowConsumer)`
//! ([`Event::is_slow_consumer`]) and sends fail with [`SendError::SlowConsumer`]. After the
//! reconnect, resend every record without an answer, with its same nonce.
//!
//! With tokio, [`Client::connect`] returns the client and its [`Events`] receiver; the calls
//! are the same, `async`.
//!
//! # Reconnect, and what may be lost
//!
//! When the connection is lost (idle timeout, the server restarting, a network change), the
//! driver emits [`Event::Disconnected`], reconnects with capped exponential backoff
//! ([`Backoff`]), says hello again and emits [`Event::Connected`] with the next epoch. Sends
//! in between fail with [`SendError::NotConnected`]. The client keeps no copy of what it sent,
//! so after a reconnect the caller decides what to resend:
//!
//! - **Datagrams** are unreliable even on a healthy connection: a record sent in a datagram,
//!   or its receipt, may be lost. Any record without a receipt may or may not have reached
//!   the engine.
//! - **Stream records** are delivered in order while the connection lives, but a record
//!   written just before a loss may never have been read, and its receipt (on the result
//!   stream) may never arrive.
//!
//! In both cases resend every record that has no receipt, with its **same nonce**. The
//! engine de-duplicates (client, nonce): a resend of a record that did get in is refused
//! `duplicate_nonce`, which the caller reads as "accepted before". A cancel resent after its
//! target was cancelled answers `not_found`. Window results (blocks and clearings) published
//! while disconnected are not replayed.

mod blocking;
mod client;
mod event;
mod pack;
mod tls;

pub use blocking::BlockingClient;
pub use client::{Backoff, Client, ClientConfig, ConnectError, Events, ReceiptMode, SendError, SessionInfo};
pub use event::{Block, BlockEntry, Clearing, Event, Via, Watermark, Winner, decode_server_frame};
pub use pack::{Record, RecordTooLarge, STREAM_FRAME_LEN_MAX, pack_frames};
pub use tls::{Fingerprint, PinVerifier, Trust};

pub use fpn_wire::confirm::{Ledger, Outcome};
pub use fpn_wire::session::Welcome;
pub use fpn_wire::{Bid, Cancel, CancelTarget, Intent, Kind, Reason, Receipt, WatermarkPath};
