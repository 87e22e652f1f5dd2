// node --test js/fpn.test.mjs — holds js/fpn.js to docs/wire.md (every hex example, the reason
// table) and to the session preamble of docs/transport.md; drives a session over a fake
// WebTransport.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as fpn from './fpn.js';

const wireMd = readFileSync(fileURLToPath(new URL('../../../docs/wire.md', import.meta.url)), 'utf8');

/** Every ```hex example=NAME block of docs/wire.md, by name. */
function docExamples() {
  const out = new Map();
  const lines = wireMd.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = lines[i].match(/^```hex example=(\S+)/);
    if (!m) continue;
    const hex = [];
    for (i++; !lines[i].startsWith('```'); i++) hex.push(lines[i]);
    out.set(m[1], fpn.hexToBytes(hex.join(' ')));
  }
  return out;
}

const examples = docExamples();
const example = (name) => {
  assert.ok(examples.has(name), `docs/wire.md has example ${name}`);
  return examples.get(name);
};
/** Decodes, checks the encoder writes the same bytes back, and returns the records. */
function roundTrip(name) {
  const bytes = example(name);
  const records = fpn.decodeFrame(bytes);
  assert.deepEqual(fpn.encodeFrame(records), bytes, `${name}: the encoder writes the documented bytes`);
  for (const r of records) assert.equal(fpn.validateRecord(r), null, `${name}: ${r.kind} is valid`);
  return records;
}

test('the document has the seven examples this test knows', () => {
  assert.deepEqual([...examples.keys()].sort(), ['bid-and-cancel', 'block', 'clearing', 'intent', 'proof', 'receipts', 'watermark']);
});

test('intent example', () => {
  const [i] = roundTrip('intent');
  assert.equal(example('intent').length, 76);
  assert.deepEqual(i, {
    kind: 'intent', reservedZero: true, clientId: 7n, nonce: 1n, sentNs: 1_763_700_000_000_000_000n, profit: 2500n,
    priority: 3, keys: [0xa1n, 0xb2n],
  });
});

test('bid-and-cancel example', () => {
  const [bid, cancel] = roundTrip('bid-and-cancel');
  assert.equal(example('bid-and-cancel').length, 92);
  assert.deepEqual([bid.kind, bid.clientId, bid.nonce, bid.amount, bid.priority], ['bid', 7n, 2n, 900n, 1]);
  assert.deepEqual([cancel.kind, cancel.clientId, cancel.mode, cancel.targetNonce], ['cancel', 7n, fpn.CANCEL_BY_NONCE, 1n]);
});

test('receipts example', () => {
  const [ok, dup] = roundTrip('receipts');
  assert.deepEqual([ok.seq, ok.windowId, ok.status, ok.reason, ok.forKind], [42n, 5n, 0, null, 'intent']);
  assert.deepEqual([dup.seq, dup.windowId, dup.status, dup.reason], [0n, 0n, 13, 'duplicate_nonce']);
  assert.deepEqual([ok.rxNs, dup.rxNs], [1_763_700_000_000_040_000n, 1_763_700_000_000_090_000n]);
});

test('block example balances', () => {
  const [b] = roundTrip('block');
  assert.deepEqual([b.windowId, b.total, b.fifoTotal, b.surplus, b.fee, b.feePpm, b.builder, b.exact], [5n, 3000n, 2500n, 500n, 50n, 100_000, 2, false]);
  assert.deepEqual(b.entries[0], { seq: 42n, clientId: 7n, profit: 2500n, payout: 2458n, rxNs: 1_763_700_000_000_040_000n });
  assert.equal(b.entries[1].rxNs, 1_763_700_000_000_060_000n);
  assert.equal(b.entries.reduce((s, e) => s + e.payout, 0n) + b.fee, b.total);
  assert.equal(example('block').length, 12 + 72 + 2 * fpn.BLOCK_ENTRY_LEN);
});

test('a block excerpt (scope 1) decodes with clientOnly; the bytes after it stay reserved', () => {
  const block = Uint8Array.from(example('block'));
  assert.equal(fpn.decodeFrame(block)[0].clientOnly, false);
  block[12 + 66] = 1;
  const [b] = fpn.decodeFrame(block);
  assert.deepEqual([b.scope, b.clientOnly, b.total], [1, true, 3000n]);
  assert.deepEqual(fpn.decodeFrame(fpn.encodeFrame([b])), [b]);
  assert.equal(fpn.validateRecord(b), null);
  block[12 + 67] = 1;
  assert.equal(fpn.validateRecord(fpn.decodeFrame(block)[0]), 'reserved_nonzero');
});

test('record versions are per kind: a block is version 2, a version-1 block is refused', () => {
  const block = example('block');
  assert.equal(block[13], fpn.RECORD_VERSION.block);
  const at = (v) => { const b = Uint8Array.from(block); b[13] = v; return b; };
  for (const v of [0, 1, 3]) {
    assert.throws(() => fpn.decodeFrame(at(v)), (e) => e.reason === 'unsupported_version', `block version ${v}`);
  }
  const intent = Uint8Array.from(example('intent'));
  intent[13] = 2;
  assert.throws(() => fpn.decodeFrame(intent), (e) => e.reason === 'unsupported_version');
  intent[13] = 1; intent[12] = 0x7f;
  assert.throws(() => fpn.decodeFrame(intent), (e) => e.reason === 'unknown_kind');
});

test('clearing example', () => {
  const [c] = roundTrip('clearing');
  assert.deepEqual([c.windowId, c.revenue, c.pricing, c.order], [5n, 900n, 0, 0]);
  assert.deepEqual(c.winners, [{ seq: 44n, clientId: 7n, amount: 900n, price: 900n }]);
});

test('proof example', () => {
  const [p] = roundTrip('proof');
  assert.equal(example('proof').length, 180);
  assert.deepEqual([p.windowFirst, p.windowLast, p.jobId, p.status], [5n, 6n, 3n, 0]);
  assert.deepEqual(p.proof, Uint8Array.from({ length: 128 }, (_, i) => i));
});

test('watermark example', () => {
  const [w] = roundTrip('watermark');
  assert.equal(example('watermark').length, 84);
  assert.deepEqual([w.path, w.acceptedTotal, w.answeredTotal, w.seqLast], ['datagram', 6n, 7n, 48n]);
  assert.deepEqual(w.ranges, [{ first: 1n, last: 5n }, { first: 7n, last: 8n }]);
  const bad = Uint8Array.from(example('watermark'));
  bad[12 + 8] = 2;
  assert.equal(fpn.validateRecord(fpn.decodeFrame(bad)[0]), 'bad_length', 'an unknown path');
});

test('the reason table matches docs/wire.md', () => {
  const table = wireMd.slice(wireMd.indexOf('## Reason codes')).split('\n')
    .map((l) => l.split('|').map((c) => c.trim()))
    .filter((cells) => /^\d+$/.test(cells[1] ?? ''))
    .map((cells) => [Number(cells[1]), cells[2]]);
  assert.deepEqual(table, fpn.REASONS.map((name, code) => [code, name]).slice(1));
});

test('frames refused whole carry the decoder reasons, in its order', () => {
  const good = example('intent');
  const refused = (mutate) => {
    const b = Uint8Array.from(good);
    const out = mutate(b) ?? b;
    assert.throws(() => fpn.decodeFrame(out), fpn.WireError);
    try { fpn.decodeFrame(out); } catch (e) { return e.reason; }
  };
  assert.equal(refused((b) => { b[0] = 0x58; }), 'bad_magic');
  assert.equal(refused((b) => { b[2] = 2; }), 'unsupported_version');
  assert.equal(refused((b) => { b[3] = 1; }), 'reserved_nonzero');
  assert.equal(refused((b) => { b[4] = 0; }), 'empty_frame');
  assert.equal(refused((b) => b.subarray(0, 40)), 'truncated');
  assert.equal(refused((b) => Uint8Array.of(...b, 0)), 'trailing_bytes');
  assert.equal(refused((b) => { b[12] = 0x7f; }), 'unknown_kind');
  assert.equal(refused((b) => { b[13] = 2; }), 'unsupported_version');
  assert.equal(refused((b) => { b[16] = 0x38; b[8] = 68; return b.subarray(0, 68); }), 'bad_length');
  assert.equal(refused((b) => { b[4] = 2; }), 'truncated');
  assert.equal(fpn.peekFrameLength(good), 76);
});

test('content rules of records', () => {
  const intent = (over) => fpn.decodeFrame(fpn.encodeFrame([{ kind: 'intent', clientId: 7, nonce: 1, profit: 5, keys: [1, 2], ...over }]))[0];
  assert.equal(fpn.validateRecord(intent({})), null);
  assert.equal(fpn.validateRecord(intent({ profit: 0 })), 'zero_amount');
  assert.equal(fpn.validateRecord(intent({ profit: fpn.MAX_AMOUNT + 1n })), 'amount_too_large');
  assert.equal(fpn.validateRecord(intent({ keys: [] })), 'no_resources');
  assert.equal(fpn.validateRecord(intent({ keys: Array.from({ length: 65 }, (_, i) => i) })), 'too_many_resources');
  assert.equal(fpn.validateRecord(intent({ keys: [3, 3] })), 'duplicate_resource');
  const bySeq = fpn.decodeFrame(fpn.encodeFrame([{ kind: 'cancel', clientId: 7, seq: 42 }]))[0];
  assert.deepEqual([bySeq.mode, bySeq.seq], [fpn.CANCEL_BY_SEQ, 42n]);
});

test('records pack into frames under the limit', () => {
  const records = Array.from({ length: 50 }, (_, i) => ({ kind: 'intent', clientId: 7, nonce: i + 1, profit: 1, keys: [i] }));
  const frames = fpn.packFrames(records, fpn.DATAGRAM_FRAME_LEN_MAX);
  assert.ok(frames.every((f) => f.length <= fpn.DATAGRAM_FRAME_LEN_MAX));
  assert.equal(frames.flatMap((f) => fpn.decodeFrame(f)).length, 50);
  assert.equal(frames.length, Math.ceil(50 / Math.floor((1200 - 12) / 56)));
  assert.throws(() => fpn.packFrames(records, 60), RangeError);
});

test('hello and welcome match the session preamble', () => {
  const hello = fpn.encodeHello({ apiKey: 'k-123', subscribeAll: true });
  assert.deepEqual(hello, Uint8Array.from([...Buffer.from('FPNH'), 1, 1, 5, 0, ...Buffer.from('k-123')]));
  const welcome = new Uint8Array(32);
  welcome.set(Buffer.from('FPNW'));
  welcome[4] = 1;
  const v = new DataView(welcome.buffer);
  v.setBigUint64(8, 7n, true); v.setUint32(16, 100_000, true); v.setUint32(20, 4096, true); v.setUint16(24, 1350, true);
  assert.deepEqual(fpn.decodeWelcome(welcome), { status: null, clientId: 7n, ratePerS: 100_000, burst: 4096, datagramFrameMax: 1350 });
  welcome[5] = 16;
  assert.equal(fpn.decodeWelcome(welcome).status, 'unauthorized');
  assert.throws(() => fpn.decodeWelcome(welcome.subarray(0, 31)), fpn.WireError);
  assert.throws(() => fpn.encodeHello({ apiKey: '' }), RangeError);
  assert.equal(fpn.streamErrorCode('bad_magic'), 0x101);
});

/** A WebTransport stand-in: records what the session sends, lets the test push to it. */
class FakeWebTransport {
  constructor(url, options) {
    this.url = url; this.options = options; this.sentDatagrams = []; this.streamChunks = [];
    this.ready = Promise.resolve();
    this.closed = new Promise((resolve) => { this._close = resolve; });
    let pushDatagram, pushStream;
    this.datagrams = {
      maxDatagramSize: 1000,
      readable: new ReadableStream({ start: (c) => { pushDatagram = c; } }),
      writable: new WritableStream({ write: (chunk) => { this.sentDatagrams.push(chunk); } }),
    };
    this.incomingUnidirectionalStreams = new ReadableStream({ start: (c) => { pushStream = c; } });
    this.pushDatagram = (b) => pushDatagram.enqueue(b);
    this.pushStream = (chunks) => pushStream.enqueue(new ReadableStream({ start: (c) => { for (const x of chunks) c.enqueue(x); } }));
  }
  async createBidirectionalStream() {
    let answer;
    const readable = new ReadableStream({ start: (c) => { answer = c; } });
    const writable = new WritableStream({
      write: (hello) => {
        this.hello = hello;
        const w = new Uint8Array(32);
        w.set(Buffer.from('FPNW')); w[4] = 1;
        new DataView(w.buffer).setBigUint64(8, 7n, true);
        new DataView(w.buffer).setUint16(24, 1200, true);
        answer.enqueue(w.subarray(0, 10)); answer.enqueue(w.subarray(10));
      },
    });
    return { readable, writable };
  }
  async createUnidirectionalStream() {
    return new WritableStream({ write: (chunk) => { this.streamChunks.push(chunk); } });
  }
  close() { this._close(); }
}

test('a session over a fake WebTransport: hello, submits, receipts and blocks', async () => {
  let wt;
  const WebTransport = class extends FakeWebTransport { constructor(...a) { super(...a); wt = this; } };
  const session = await fpn.connect('https://127.0.0.1:1/fpn/1', { hash: 'ab'.repeat(32), apiKey: '7', WebTransport });
  assert.equal(wt.options.serverCertificateHashes[0].value.length, 32);
  assert.deepEqual(wt.hello, fpn.encodeHello({ apiKey: '7' }));
  assert.equal(session.clientId, 7n);
  assert.equal(session.datagramFrameMax, 1000, 'the path is smaller than the welcome');
  const intents = Array.from({ length: 30 }, (_, i) => ({ kind: 'intent', nonce: i + 1, profit: 10, keys: [i] }));
  assert.equal(await session.submit(intents, { via: 'datagram' }), 2);
  assert.equal(await session.submit(intents.slice(0, 3), { via: 'stream' }), 1);
  const sent = wt.sentDatagrams.flatMap((d) => fpn.decodeFrame(d));
  assert.equal(sent.length, 30);
  assert.ok(sent.every((r) => r.clientId === 7n));
  assert.equal(fpn.decodeFrame(wt.streamChunks[0]).length, 3);
  const events = [];
  for (const type of ['receipt', 'block', 'badframe']) session.addEventListener(type, (e) => events.push([type, e.detail]));
  wt.pushDatagram(example('receipts'));
  const result = Uint8Array.of(...example('block'), ...example('clearing'));
  wt.pushStream([result.subarray(0, 100), result.subarray(100)]);
  wt.pushDatagram(Uint8Array.of(1, 2, 3));
  await new Promise((r) => setTimeout(r, 20));
  const seen = events.map(([t, d]) => `${t}:${d.via ?? d.windowId}`).sort();
  assert.deepEqual(seen, ['badframe:datagram', 'block:5', 'receipt:datagram', 'receipt:datagram']);
  assert.equal(events.find(([t]) => t === 'badframe')[1].reason, 'truncated');
  session.close();
});
