//! Any datagram payload into the QUIC intake's record handler (`fpn_quic::handle_frame`, the
//! session checks and the token bucket) with a real `IntakeCore` behind it: never a panic,
//! one answer per record of a frame that decodes and none for a frame refused whole,
//! accepted records carry a seq and a window, and every receipt encodes.
//!
//! The first byte picks the session: bit 0 clear = open session of client 7, set = no
//! session yet (records refused `unauthorized`); bits 1.. = tokens left in the bucket.
#![no_main]

use fpn_engine::shard::{Full, IntakeSink, ToBuilder, ToMerger};
use fpn_engine::{EngineConfig, IntakeCore, ShardConfig};
use fpn_quic::{Admit, Counters, handle_frame};
use fpn_wire::{FrameWriter, Reason, Receipt, RecordRef, decode_frame};
use libfuzzer_sys::fuzz_target;

struct Discard;

impl IntakeSink for Discard {
    fn to_builder(&mut self, _shard: usize, _msg: ToBuilder) -> Result<(), Full<ToBuilder>> {
        Ok(())
    }

    fn to_merger(&mut self, _msg: ToMerger) -> Result<(), Full<ToMerger>> {
        Ok(())
    }

    fn builder_room(&self, _shard: usize) -> usize {
        usize::MAX
    }

    fn merger_room(&self) -> usize {
        usize::MAX
    }
}

struct Engine {
    core: IntakeCore,
    refused: usize,
}

impl Admit for Engine {
    fn ready(&mut self) -> bool {
        true
    }

    fn admit(&mut self, rx_ns: u64, record: RecordRef<'_>) -> Option<Receipt> {
        self.core.handle_record(rx_ns, record, &mut Discard)
    }

    fn refused(&mut self, receipt: &Receipt) {
        assert!(receipt.status.is_err());
        self.refused += 1;
    }
}

fn core() -> IntakeCore {
    let mut config = EngineConfig::default();
    config.window.records_max = 256;
    config.window.keys_max = 2_048;
    config.window.bids_max = 256;
    config.window.dedup_horizon_windows = 2;
    config.book_bids_max = 256;
    IntakeCore::new(&ShardConfig::new(config, 1, 1), 0, 1)
}

fuzz_target!(|data: &[u8]| {
    let Some((&session, payload)) = data.split_first() else { return };
    // Larger datagrams are refused `oversized` before any decoding.
    if payload.len() > fpn_wire::DATAGRAM_FRAME_LEN_MAX {
        return;
    }
    let client = (session & 1 == 0).then_some(7);
    let mut tokens = u32::from(session >> 1);
    let mut take = || {
        if tokens == 0 {
            return false;
        }
        tokens -= 1;
        true
    };
    let mut engine = Engine { core: core(), refused: 0 };
    let mut counters = Counters::default();
    let mut answers: Vec<Option<Receipt>> = Vec::new();
    let result =
        handle_frame(payload, 1_000, client, &mut counters, &mut take, &mut engine, |a, _| answers.push(a));
    match result {
        Ok(()) => assert_eq!(answers.len(), decode_frame(payload).expect("it decoded").count()),
        Err(reason) => {
            assert!(answers.is_empty());
            assert_eq!(decode_frame(payload).err(), Some(reason));
        }
    }
    let mut buf = Vec::new();
    let mut w = FrameWriter::new(&mut buf, u32::MAX as usize);
    for r in answers.iter().flatten() {
        match r.status {
            Ok(()) => assert!(r.seq != 0 && r.window_id == 1 && client.is_some()),
            Err(Reason::Unauthorized) => assert!(client.is_none()),
            Err(_) => {}
        }
        w.push_receipt(r).expect("a u32 frame holds them");
    }
    w.finish();
    if client.is_none() {
        assert!(answers.iter().all(|a| matches!(a, Some(r) if r.status == Err(Reason::Unauthorized))));
    }
    assert!(engine.refused <= answers.len());
});
