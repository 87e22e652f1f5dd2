//! `Receipt::for_record`, the one receipt builder: what a receipt says before the engine
//! decides, for every kind of input record.

use fpn_wire::*;

fn one_record(encode: impl FnOnce(&mut FrameWriter<'_>)) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = FrameWriter::new(&mut buf, DATAGRAM_FRAME_LEN_MAX);
    encode(&mut w);
    w.finish();
    buf
}

fn template(frame: &[u8]) -> Receipt {
    let record = decode_frame(frame).unwrap().next().unwrap();
    Receipt::for_record(record, 99)
}

#[test]
fn every_input_kind_names_its_client_nonce_and_kind() {
    let intent = one_record(|w| {
        w.push_intent(&Intent { client_id: 7, nonce: 3, sent_ns: 1, profit: 5, priority: 0, keys: &[1] })
            .unwrap();
    });
    let bid = one_record(|w| {
        w.push_bid(&Bid { client_id: 8, nonce: 4, sent_ns: 1, amount: 5, priority: 0 }).unwrap();
    });
    let by_nonce =
        one_record(|w| w.push_cancel(&Cancel { client_id: 9, target: CancelTarget::Nonce(5) }).unwrap());
    let by_seq =
        one_record(|w| w.push_cancel(&Cancel { client_id: 9, target: CancelTarget::Seq(77) }).unwrap());
    let cases = [
        (&intent, 7, 3, 0, Kind::Intent),
        (&bid, 8, 4, 0, Kind::Bid),
        (&by_nonce, 9, 5, 0, Kind::Cancel),
        // A cancel by sequence id echoes its target, with nonce 0, whatever the answer.
        (&by_seq, 9, 0, 77, Kind::Cancel),
    ];
    for (frame, client_id, nonce, seq, kind) in cases {
        let r = template(frame);
        assert_eq!(
            r,
            Receipt { client_id, nonce, seq, window_id: 0, rx_ns: 99, status: Ok(()), for_kind: Some(kind) }
        );
    }
}

#[test]
fn output_kinds_get_an_anonymous_receipt_of_their_kind() {
    let receipt = one_record(|w| w.push_receipt(&Receipt::frame_refused(Reason::BadMagic, 1)).unwrap());
    let r = template(&receipt);
    assert_eq!((r.client_id, r.nonce, r.seq, r.for_kind), (0, 0, 0, Some(Kind::Receipt)));
}
