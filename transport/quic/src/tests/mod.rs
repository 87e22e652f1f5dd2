//! The sans-IO server against the crate's sans-IO client, wired in memory with a fake clock
//! ([`pair`]), with a toy engine behind [`crate::Admit`]. The UDP driver's own tests (real
//! sockets) are the integration tests in `tests/it`.

mod pair;
mod receipt_modes;
mod receipt_order;
mod records;
mod sessions;
