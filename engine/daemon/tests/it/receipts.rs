//! One admission path: the same refused records through every entry point of the daemon
//! (`POST /submit`, a QUIC datagram, a QUIC stream) and through the offline models (the
//! `fpn_engine::Engine` the CLI runs, and the test oracle) get the same receipts, byte for
//! byte, in record order, whichever layer refused each record. The receive time is the one
//! field an entry point stamps itself, so it is set to zero before comparing.

use std::time::{Duration, Instant};

use fpn_engine::oracle::OracleEngine;
use fpn_engine::{Engine, EngineConfig};
use fpn_quic::client::{Client, ClientOptions};
use fpn_wire::session::ALPN;
use fpn_wire::{
    Bid, Cancel, CancelTarget, FrameWriter, Intent, MAX_AMOUNT, Receipt, RecordRef, decode_frame,
};

use crate::daemon::{Daemon, config_text, scratch_dir};

const CLIENT: u64 = 7;

fn intent(nonce: u64, profit: u64, keys: &[u64]) -> Intent<'_> {
    Intent { client_id: CLIENT, nonce, sent_ns: 1, profit, priority: 0, keys }
}

/// The accepted intent the refusals refer to (its nonce is then a duplicate).
fn accepted_frame() -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = FrameWriter::new(&mut buf, 1_200);
    w.push_intent(&intent(1, 10, &[1, 2])).unwrap();
    w.finish();
    buf
}

/// Records each refused by a different rule, two of them (cancels of nonces never sent)
/// answered by the merger after the records behind them.
fn refusals_frame() -> Vec<u8> {
    let many: Vec<u64> = (0..65).collect();
    let mut buf = Vec::new();
    let mut w = FrameWriter::new(&mut buf, 1_400);
    w.push_intent(&intent(2, 0, &[1])).unwrap(); // zero_amount
    w.push_intent(&intent(3, 5, &[])).unwrap(); // no_resources
    w.push_cancel(&Cancel { client_id: CLIENT, target: CancelTarget::Nonce(999) }).unwrap(); // not_found, merger
    w.push_intent(&intent(4, 5, &[9, 9])).unwrap(); // duplicate_resource
    w.push_intent(&intent(1, 5, &[3])).unwrap(); // duplicate_nonce
    w.push_bid(&Bid { client_id: CLIENT, nonce: 5, sent_ns: 1, amount: 0, priority: 0 }).unwrap(); // zero_amount
    w.push_intent(&intent(6, MAX_AMOUNT + 1, &[4])).unwrap(); // amount_too_large
    w.push_cancel(&Cancel { client_id: CLIENT, target: CancelTarget::Seq(1 << 40) }).unwrap(); // not_found
    w.push_cancel(&Cancel { client_id: CLIENT, target: CancelTarget::Nonce(998) }).unwrap(); // not_found, merger
    w.push_intent(&intent(7, 5, &many)).unwrap(); // too_many_resources
    w.push_receipt(&Receipt::frame_refused(fpn_wire::Reason::BadMagic, 1)).unwrap(); // unknown_kind
    w.push_bid(&Bid { client_id: CLIENT, nonce: 8, sent_ns: 1, amount: MAX_AMOUNT + 1, priority: 0 })
        .unwrap();
    w.finish();
    buf
}

/// Receipts with the receive time zeroed, encoded as one frame.
fn normalized(receipts: &[Receipt]) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = FrameWriter::new(&mut buf, u32::MAX as usize);
    for r in receipts {
        w.push_receipt(&Receipt { rx_ns: 0, ..*r }).unwrap();
    }
    w.finish();
    buf
}

fn receipts_of(frame: &[u8]) -> Vec<Receipt> {
    decode_frame(frame)
        .unwrap()
        .map(|r| match r {
            RecordRef::Receipt(w) => Receipt::from_wire(w).expect("a known reason"),
            other => panic!("not a receipt: {other:?}"),
        })
        .collect()
}

/// The refusals' receipts from an offline model, after the accepted intent.
fn offline(mut handle: impl FnMut(&[u8], &mut dyn FnMut(Receipt))) -> Vec<Receipt> {
    let mut out = Vec::new();
    handle(&accepted_frame(), &mut |_| {});
    handle(&refusals_frame(), &mut |r| out.push(r));
    out
}

/// Receipts of `frame` over QUIC, in arrival order, until `n` came.
fn over_quic(c: &mut Client, frame: &[u8], datagram: bool, n: usize) -> Vec<Receipt> {
    if datagram {
        c.send_datagram(frame).unwrap();
    } else {
        c.send_stream(frame).unwrap();
    }
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < n {
        assert!(Instant::now() < deadline, "{} of {n} receipts after 30 s", out.len());
        if let Some((_, f)) = c.next_frame(Duration::from_millis(50)).unwrap() {
            for r in decode_frame(&f).unwrap() {
                if let RecordRef::Receipt(w) = r {
                    out.push(Receipt::from_wire(w).expect("a known reason"));
                }
            }
        }
    }
    out
}

#[test]
fn refused_records_get_the_same_receipts_through_every_entry_point() {
    // Long windows keep the accepted intent's nonce inside the de-duplication horizon for
    // the whole test (16 windows of 1 s).
    let dir = scratch_dir("receipts-same");
    let text = config_text(&dir.join("data"), 1_000, 1)
        .replace("[quic]\nlisten = \"127.0.0.1:0\"\n", "[quic]\nlisten = \"127.0.0.1:0\"\nrate_per_s = 0\n");
    let mut d = Daemon::start_text(dir, &text, &[]);
    let records = decode_frame(&refusals_frame()).unwrap().count();

    let (status, _) = d.request("POST", "/submit", &accepted_frame());
    assert_eq!(status, 200);
    let (status, body) = d.request("POST", "/submit", &refusals_frame());
    assert_eq!(status, 200);
    let submit = receipts_of(&body);

    let data = d.dir.join("data");
    let addr = std::fs::read_to_string(data.join("quic.addr")).unwrap().trim().parse().unwrap();
    let pin =
        fpn_quic::tls::parse_pin(&std::fs::read_to_string(data.join("tls/cert.sha256")).unwrap()).unwrap();
    let options = ClientOptions {
        pin,
        alpn: ALPN.to_vec(),
        api_key: CLIENT.to_string().into_bytes(),
        flags: 0,
        timeout: Duration::from_secs(30),
    };
    let mut c = Client::connect(addr, &options).unwrap();
    let datagram = over_quic(&mut c, &refusals_frame(), true, records);
    let stream = over_quic(&mut c, &refusals_frame(), false, records);
    c.close();
    assert_eq!(d.terminate(), Some(0), "{}", d.stderr());

    let config = EngineConfig::default();
    let mut engine = Engine::new(config.clone(), 0).unwrap();
    let engine = offline(|f, r| engine.handle_frame(1, 1, f, r).unwrap());
    let mut oracle = OracleEngine::new(config, 0).unwrap();
    let oracle = offline(|f, r| oracle.handle_frame(1, 1, f, r).unwrap());

    assert_eq!(oracle.len(), records);
    let want = normalized(&oracle);
    for (entry, got) in
        [("engine", &engine), ("submit", &submit), ("datagram", &datagram), ("stream", &stream)]
    {
        assert_eq!(got.len(), records, "{entry}: one receipt per record");
        for (k, (a, b)) in got.iter().zip(&oracle).enumerate() {
            assert_eq!(Receipt { rx_ns: 0, ..*a }, Receipt { rx_ns: 0, ..*b }, "{entry}: receipt {k}");
        }
        assert_eq!(normalized(got), want, "{entry}: bytes");
    }
    // Every rule answered once, in record order.
    let reasons: Vec<_> = oracle.iter().map(|r| r.status.err().map(|e| e.as_str())).collect();
    assert_eq!(
        reasons,
        [
            "zero_amount",
            "no_resources",
            "not_found",
            "duplicate_resource",
            "duplicate_nonce",
            "zero_amount",
            "amount_too_large",
            "not_found",
            "not_found",
            "too_many_resources",
            "unknown_kind",
            "amount_too_large",
        ]
        .map(Some)
    );
}
