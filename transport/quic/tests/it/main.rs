//! The UDP driver on real loopback sockets, the part of the crate an in-memory test cannot
//! reach: batched reads (`recvmmsg`) with GRO, kernel receive timestamps, GSO sends, and the
//! sans-IO server behind the driver answering the blocking client. Everything above the
//! socket is tested in memory, with a fake clock, in `src/tests`.

mod driver;
mod udp;
