// fpn/1 over WebTransport for browsers: the wire format v1 (docs/wire.md), the session
// preamble (docs/transport.md) and a session object (docs/webtransport.md). No dependencies;
// an ES module that runs in browsers and in node (the codec; `connect` needs WebTransport).
//
// Every u64 field is a BigInt when decoded; encoders take a BigInt or a safe integer.

export const FRAME_HEADER_LEN = 12;
export const RECORD_HEADER_LEN = 8;
/** Frames for datagrams are at most this long unless the welcome says less. */
export const DATAGRAM_FRAME_LEN_MAX = 1200;
/** Frames packed for a stream are at most this long. */
export const STREAM_FRAME_LEN_MAX = 64 * 1024;
export const MAX_AMOUNT = (1n << 44n) - 1n;
export const INTENT_KEYS_MAX = 64;

/** Record kinds by name, and names by kind. */
export const KIND = Object.freeze({ intent: 0x01, bid: 0x02, cancel: 0x03, receipt: 0x81, block: 0x82, clearing: 0x83, proof: 0x84, watermark: 0x85 });
const KIND_NAME = new Map(Object.entries(KIND).map(([name, kind]) => [kind, name]));
const FIXED_LEN = { intent: 48, bid: 48, cancel: 32, receipt: 56, block: 72, clearing: 40, proof: 168, watermark: 40 };
/** Record version per kind (docs/wire.md, "Versions"): the block is at 2, every other kind at 1. */
export const RECORD_VERSION = Object.freeze({ intent: 1, bid: 1, cancel: 1, receipt: 1, block: 2, clearing: 1, proof: 1, watermark: 1 });
/** Bytes of one block entry (version 2: seq, client id, profit, payout, rx_ns). */
export const BLOCK_ENTRY_LEN = 40;

/** Reason names by code (docs/wire.md, "Reason codes"); index 0 is "accepted". */
export const REASONS = Object.freeze([
  null, 'bad_magic', 'unsupported_version', 'unknown_kind', 'truncated', 'trailing_bytes', 'bad_length',
  'reserved_nonzero', 'zero_amount', 'no_resources', 'too_many_resources', 'duplicate_resource',
  'amount_too_large', 'duplicate_nonce', 'overloaded', 'rate_limited', 'unauthorized', 'not_found', 'too_late',
  'shutting_down', 'empty_frame', 'bad_cancel_mode', 'client_mismatch', 'book_full', 'oversized',
  'nonce_expired', 'storage_unavailable', 'slow_consumer',
]);
export const REASON = Object.freeze(Object.fromEntries(REASONS.map((name, code) => [name, code]).filter(([n]) => n)));

export const CANCEL_BY_NONCE = 1;
export const CANCEL_BY_SEQ = 2;
export const PROOF_BYTES_LEN = 128;
/** Watermark paths (docs/wire.md, kind 0x85). */
export const WATERMARK_PATHS = Object.freeze(['datagram', 'stream']);

/** A frame refused whole, with its reason code and name. */
export class WireError extends Error {
  constructor(reason) {
    super(`frame refused: ${reason}`);
    this.reason = reason;
    this.code = REASON[reason];
  }
}

// ---- encoding ----

class Writer {
  constructor(len) { this.bytes = new Uint8Array(len); this.view = new DataView(this.bytes.buffer); this.at = 0; }
  u8(v) { this.view.setUint8(this.at, Number(v)); this.at += 1; }
  u16(v) { this.view.setUint16(this.at, Number(v), true); this.at += 2; }
  u32(v) { this.view.setUint32(this.at, Number(v), true); this.at += 4; }
  u64(v) { this.view.setBigUint64(this.at, BigInt(v), true); this.at += 8; }
  zeros(n) { this.at += n; }
  raw(b) { this.bytes.set(b, this.at); this.at += b.length; }
}

/** Bytes a record takes on the wire. */
export function recordLength(rec) {
  switch (rec.kind) {
    case 'intent': return 48 + 8 * rec.keys.length;
    case 'block': return 72 + BLOCK_ENTRY_LEN * rec.entries.length;
    case 'clearing': return 40 + 32 * rec.winners.length;
    case 'watermark': return 40 + 16 * rec.ranges.length;
    default:
      if (!(rec.kind in FIXED_LEN)) throw new TypeError(`unknown record kind ${rec.kind}`);
      return FIXED_LEN[rec.kind];
  }
}

function writeRecord(w, rec) {
  const len = recordLength(rec);
  w.u8(KIND[rec.kind]); w.u8(RECORD_VERSION[rec.kind]); w.u16(0); w.u32(len);
  switch (rec.kind) {
    case 'intent':
      w.u64(rec.clientId); w.u64(rec.nonce); w.u64(rec.sentNs ?? 0); w.u64(rec.profit);
      w.u32(rec.priority ?? 0); w.u16(rec.keys.length); w.u16(0);
      for (const k of rec.keys) w.u64(k);
      break;
    case 'bid':
      w.u64(rec.clientId); w.u64(rec.nonce); w.u64(rec.sentNs ?? 0); w.u64(rec.amount);
      w.u32(rec.priority ?? 0); w.u32(0);
      break;
    case 'cancel': {
      const bySeq = rec.seq !== undefined;
      w.u64(rec.clientId); w.u8(bySeq ? CANCEL_BY_SEQ : CANCEL_BY_NONCE); w.zeros(7);
      w.u64(bySeq ? rec.seq : rec.targetNonce);
      break;
    }
    case 'receipt':
      w.u64(rec.clientId); w.u64(rec.nonce); w.u64(rec.seq); w.u64(rec.windowId); w.u64(rec.rxNs);
      w.u8(rec.status); w.u8(rec.forKind === null ? 0 : KIND[rec.forKind]); w.zeros(6);
      break;
    case 'block':
      w.u64(rec.windowId); w.u64(rec.total); w.u64(rec.fifoTotal); w.u64(rec.surplus); w.u64(rec.fee);
      w.u64(rec.upperBound); w.u32(rec.feePpm); w.u32(rec.entries.length); w.u8(rec.builder); w.u8(rec.exact ? 1 : 0);
      w.u8(rec.scope ?? 0); w.zeros(5);
      for (const e of rec.entries) { w.u64(e.seq); w.u64(e.clientId); w.u64(e.profit); w.u64(e.payout); w.u64(e.rxNs); }
      break;
    case 'clearing':
      w.u64(rec.windowId); w.u64(rec.uniformPrice); w.u64(rec.revenue); w.u32(rec.winners.length);
      w.u8(rec.pricing); w.u8(rec.order); w.u16(0);
      for (const x of rec.winners) { w.u64(x.seq); w.u64(x.clientId); w.u64(x.amount); w.u64(x.price); }
      break;
    case 'proof':
      w.u64(rec.windowFirst); w.u64(rec.windowLast); w.u64(rec.jobId); w.u8(rec.proof ? 0 : 1); w.zeros(7);
      if (rec.proof) w.raw(rec.proof); else w.zeros(PROOF_BYTES_LEN);
      break;
    case 'watermark':
      w.u8(WATERMARK_PATHS.indexOf(rec.path)); w.u8(0); w.u16(rec.ranges.length); w.u32(0);
      w.u64(rec.acceptedTotal); w.u64(rec.answeredTotal); w.u64(rec.seqLast);
      for (const r of rec.ranges) { w.u64(r.first); w.u64(r.last); }
      break;
    default: throw new TypeError(`unknown record kind ${rec.kind}`);
  }
}

/** One frame holding `records`, in order. */
export function encodeFrame(records) {
  if (records.length === 0 || records.length > 0xffff) throw new RangeError('a frame holds 1..=65535 records');
  const len = FRAME_HEADER_LEN + records.reduce((n, r) => n + recordLength(r), 0);
  const w = new Writer(len);
  w.u8(0x46); w.u8(0x50); w.u8(1); w.u8(0); w.u16(records.length); w.u16(0); w.u32(len);
  for (const r of records) writeRecord(w, r);
  return w.bytes;
}

/** Packs records into frames of at most `frameLenMax` bytes each. */
export function packFrames(records, frameLenMax) {
  const frames = [];
  let batch = [], len = FRAME_HEADER_LEN;
  for (const r of records) {
    const n = recordLength(r);
    if (FRAME_HEADER_LEN + n > frameLenMax) throw new RangeError(`a ${n}-byte record does not fit a ${frameLenMax}-byte frame`);
    if (len + n > frameLenMax || batch.length === 0xffff) { frames.push(encodeFrame(batch)); batch = []; len = FRAME_HEADER_LEN; }
    batch.push(r); len += n;
  }
  if (batch.length) frames.push(encodeFrame(batch));
  return frames;
}

// ---- decoding ----

function expectedLength(kind, view, at, rest) {
  const need = (n) => { if (rest < n) throw new WireError('bad_length'); };
  switch (kind) {
    case 'intent': need(48); return 48 + 8 * view.getUint16(at + 44, true);
    case 'block': need(72); return 72 + BLOCK_ENTRY_LEN * view.getUint32(at + 60, true);
    case 'clearing': need(40); return 40 + 32 * view.getUint32(at + 32, true);
    case 'watermark': need(40); return 40 + 16 * view.getUint16(at + 10, true);
    default: return FIXED_LEN[kind];
  }
}

/** The frame's declared length from its first bytes (a stream reader's next frame size). */
export function peekFrameLength(bytes) {
  if (bytes.length < FRAME_HEADER_LEN) throw new WireError('truncated');
  if (bytes[0] !== 0x46 || bytes[1] !== 0x50) throw new WireError('bad_magic');
  if (bytes[2] !== 1) throw new WireError('unsupported_version');
  const len = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(8, true);
  if (len < FRAME_HEADER_LEN) throw new WireError('bad_length');
  return len;
}

/** Checks a frame's structure (the first level of refusal) and returns its records. */
export function decodeFrame(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < FRAME_HEADER_LEN) throw new WireError('truncated');
  if (bytes[0] !== 0x46 || bytes[1] !== 0x50) throw new WireError('bad_magic');
  if (bytes[2] !== 1) throw new WireError('unsupported_version');
  if (bytes[3] !== 0 || view.getUint16(6, true) !== 0) throw new WireError('reserved_nonzero');
  const count = view.getUint16(4, true);
  if (count === 0) throw new WireError('empty_frame');
  const frameLen = view.getUint32(8, true);
  if (frameLen < FRAME_HEADER_LEN) throw new WireError('bad_length');
  if (frameLen > bytes.length) throw new WireError('truncated');
  if (frameLen < bytes.length) throw new WireError('trailing_bytes');
  const spans = [];
  let at = FRAME_HEADER_LEN;
  for (let i = 0; i < count; i++) {
    const rest = bytes.length - at;
    if (rest < RECORD_HEADER_LEN) throw new WireError('truncated');
    const len = view.getUint32(at + 4, true);
    if (len > rest) throw new WireError('truncated');
    // Each kind has its own version; an unknown kind is judged against version 1.
    const kind = KIND_NAME.get(bytes[at]);
    if (bytes[at + 1] !== (kind ? RECORD_VERSION[kind] : 1)) throw new WireError('unsupported_version');
    if (!kind) throw new WireError('unknown_kind');
    if (len !== expectedLength(kind, view, at, rest)) throw new WireError('bad_length');
    spans.push([kind, at]);
    at += len;
  }
  if (at !== bytes.length) throw new WireError('trailing_bytes');
  return spans.map(([kind, at]) => readRecord(kind, view, at, bytes));
}

function readRecord(kind, view, at, bytes) {
  const u64 = (o) => view.getBigUint64(at + o, true);
  const u32 = (o) => view.getUint32(at + o, true);
  const u16 = (o) => view.getUint16(at + o, true);
  const u8 = (o) => view.getUint8(at + o);
  const zero = (o, n) => bytes.subarray(at + o, at + o + n).every((b) => b === 0);
  const rec = { kind, reservedZero: u16(2) === 0 };
  switch (kind) {
    case 'intent': {
      Object.assign(rec, { clientId: u64(8), nonce: u64(16), sentNs: u64(24), profit: u64(32), priority: u32(40), keys: [] });
      for (let i = 0; i < u16(44); i++) rec.keys.push(u64(48 + 8 * i));
      rec.reservedZero &&= u16(46) === 0;
      break;
    }
    case 'bid':
      Object.assign(rec, { clientId: u64(8), nonce: u64(16), sentNs: u64(24), amount: u64(32), priority: u32(40) });
      rec.reservedZero &&= u32(44) === 0;
      break;
    case 'cancel':
      Object.assign(rec, { clientId: u64(8), mode: u8(16) });
      if (rec.mode === CANCEL_BY_SEQ) rec.seq = u64(24); else rec.targetNonce = u64(24);
      rec.reservedZero &&= zero(17, 7);
      break;
    case 'receipt': {
      const status = u8(48);
      Object.assign(rec, {
        clientId: u64(8), nonce: u64(16), seq: u64(24), windowId: u64(32), rxNs: u64(40), status,
        reason: REASONS[status] ?? (status === 0 ? null : `code_${status}`), forKind: KIND_NAME.get(u8(49)) ?? null,
      });
      rec.reservedZero &&= zero(50, 6);
      break;
    }
    case 'block': {
      Object.assign(rec, {
        windowId: u64(8), total: u64(16), fifoTotal: u64(24), surplus: u64(32), fee: u64(40), upperBound: u64(48),
        feePpm: u32(56), builder: u8(64), exact: u8(65) === 1,
        // 1: this session's client's entries only, with the whole block's totals (docs/wire.md).
        scope: u8(66), clientOnly: u8(66) === 1, entries: [],
      });
      for (let i = 0; i < u32(60); i++) {
        const o = 72 + BLOCK_ENTRY_LEN * i;
        rec.entries.push({ seq: u64(o), clientId: u64(o + 8), profit: u64(o + 16), payout: u64(o + 24), rxNs: u64(o + 32) });
      }
      rec.reservedZero &&= zero(67, 5);
      break;
    }
    case 'clearing': {
      Object.assign(rec, {
        windowId: u64(8), uniformPrice: u64(16), revenue: u64(24), pricing: u8(36), order: u8(37), winners: [],
      });
      for (let i = 0; i < u32(32); i++) {
        const o = 40 + 32 * i;
        rec.winners.push({ seq: u64(o), clientId: u64(o + 8), amount: u64(o + 16), price: u64(o + 24) });
      }
      rec.reservedZero &&= u16(38) === 0;
      break;
    }
    case 'proof':
      Object.assign(rec, {
        windowFirst: u64(8), windowLast: u64(16), jobId: u64(24), status: u8(32),
        proof: u8(32) === 0 ? bytes.slice(at + 40, at + 168) : null,
      });
      rec.reservedZero &&= zero(33, 7);
      break;
    case 'watermark': {
      Object.assign(rec, {
        path: WATERMARK_PATHS[u8(8)] ?? null, acceptedTotal: u64(16), answeredTotal: u64(24), seqLast: u64(32), ranges: [],
      });
      for (let i = 0; i < u16(10); i++) rec.ranges.push({ first: u64(40 + 16 * i), last: u64(48 + 16 * i) });
      rec.reservedZero &&= u8(9) === 0 && u32(12) === 0;
      break;
    }
  }
  return rec;
}

/** The record's content rules (the second level of refusal): null, or a reason name. */
export function validateRecord(rec) {
  if (!rec.reservedZero) return 'reserved_nonzero';
  const amount = (a) => (a === 0n ? 'zero_amount' : a > MAX_AMOUNT ? 'amount_too_large' : null);
  switch (rec.kind) {
    case 'intent': {
      const bad = amount(rec.profit);
      if (bad) return bad;
      if (rec.keys.length === 0) return 'no_resources';
      if (rec.keys.length > INTENT_KEYS_MAX) return 'too_many_resources';
      return new Set(rec.keys).size === rec.keys.length ? null : 'duplicate_resource';
    }
    case 'bid': return amount(rec.amount);
    case 'cancel': return rec.mode === CANCEL_BY_NONCE || rec.mode === CANCEL_BY_SEQ ? null : 'bad_cancel_mode';
    case 'proof':
      if (rec.status === 1) return rec.proof === null ? null : 'reserved_nonzero';
      return rec.status === 0 ? null : 'reserved_nonzero';
    case 'watermark':
      return rec.path !== null && rec.ranges.every((r) => r.first <= r.last) ? null : 'bad_length';
    default: return null;
  }
}

// ---- session preamble ----

export const HELLO_SUBSCRIBE_ALL = 0x01;
export const WELCOME_LEN = 32;

/** The hello that opens the control stream. `apiKey`: a string (UTF-8) or bytes, 1..=256. */
export function encodeHello({ apiKey, subscribeAll = false }) {
  const key = typeof apiKey === 'string' ? new TextEncoder().encode(apiKey) : apiKey;
  if (key.length < 1 || key.length > 256) throw new RangeError('an API key is 1..=256 bytes');
  const w = new Writer(8 + key.length);
  w.raw([0x46, 0x50, 0x4e, 0x48]); w.u8(1); w.u8(subscribeAll ? HELLO_SUBSCRIBE_ALL : 0); w.u16(key.length); w.raw(key);
  return w.bytes;
}

/** Reads the 32-byte welcome; `status` is null when accepted, else the reason name. */
export function decodeWelcome(bytes) {
  if (bytes.length < WELCOME_LEN) throw new WireError('truncated');
  if (bytes[0] !== 0x46 || bytes[1] !== 0x50 || bytes[2] !== 0x4e || bytes[3] !== 0x57) throw new WireError('bad_magic');
  if (bytes[4] !== 1) throw new WireError('unsupported_version');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    status: bytes[5] === 0 ? null : REASONS[bytes[5]] ?? `code_${bytes[5]}`,
    clientId: view.getBigUint64(8, true),
    ratePerS: view.getUint32(16, true),
    burst: view.getUint32(20, true),
    datagramFrameMax: view.getUint16(24, true),
  };
}

export function hexToBytes(hex) {
  const clean = hex.replace(/[\s:]/g, '');
  if (clean.length % 2) throw new RangeError('odd number of hex digits');
  return Uint8Array.from(clean.match(/../g) ?? [], (h) => parseInt(h, 16));
}

export function bytesToHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

// ---- the session ----

/** The session was refused in its welcome (`reason`: a reason name). */
export class SessionRefused extends Error {
  constructor(reason) { super(`session refused: ${reason}`); this.reason = reason; }
}

/** The WebTransport application code a refused stream frame stops the stream with. */
export const streamErrorCode = (reason) => 0x100 + REASON[reason];

/**
 * Opens an fpn/1 session: `url` is the endpoint's (`https://host:port/fpn/1`), `hashes` the
 * SHA-256 hex of its certificate(s) for `serverCertificateHashes` (omit for a CA-issued
 * certificate), `apiKey` the key of the hello. Resolves once the welcome accepted it.
 */
export async function connect(url, { hashes = [], hash, apiKey, subscribeAll = false, WebTransport: WT } = {}) {
  const Impl = WT ?? globalThis.WebTransport;
  if (!Impl) throw new Error('this runtime has no WebTransport');
  const list = hash ? [hash, ...hashes] : hashes;
  const options = list.length ? { serverCertificateHashes: list.map((h) => ({ algorithm: 'sha-256', value: hexToBytes(h) })) } : {};
  const wt = new Impl(url, options);
  await wt.ready;
  const control = await wt.createBidirectionalStream();
  const writer = control.writable.getWriter();
  await writer.write(encodeHello({ apiKey, subscribeAll }));
  const reader = control.readable.getReader();
  const got = new Uint8Array(WELCOME_LEN);
  let n = 0;
  while (n < WELCOME_LEN) {
    const { value, done } = await reader.read();
    if (done) throw new Error('the control stream ended before the welcome');
    const take = value.subarray(0, WELCOME_LEN - n);
    got.set(take, n);
    n += take.length;
  }
  const welcome = decodeWelcome(got);
  if (welcome.status) {
    wt.close();
    throw new SessionRefused(welcome.status);
  }
  return new Session(wt, welcome, writer, reader);
}

/**
 * An open session. Events (`addEventListener`): `receipt` ({receipt, via}), `block`,
 * `clearing`, `proof` (detail: the decoded record), `badframe` ({reason, via}), `close`.
 */
export class Session extends EventTarget {
  constructor(wt, welcome, controlWriter, controlReader) {
    super();
    this.wt = wt;
    this.welcome = welcome;
    this.clientId = welcome.clientId;
    this._control = [controlWriter, controlReader];
    // Receipts come in datagrams; a browser drops incoming datagrams past this queue length
    // while the page is busy (Chromium's default is small).
    if ('incomingHighWaterMark' in wt.datagrams) wt.datagrams.incomingHighWaterMark = 4096;
    this._datagrams = wt.datagrams.writable.getWriter();
    this._stream = null;
    this.closed = wt.closed.then(() => null, (e) => e).then((e) => { this.dispatchEvent(new CustomEvent('close', { detail: e })); });
    this._readDatagrams();
    this._acceptStreams();
  }

  /** Largest frame a datagram carries on this session. */
  get datagramFrameMax() {
    const path = this.wt.datagrams.maxDatagramSize ?? this.welcome.datagramFrameMax;
    return Math.min(this.welcome.datagramFrameMax, path);
  }

  /**
   * Sends client records (`intent`, `bid`, `cancel`; `clientId` defaults to the session's),
   * packed into frames, over `via`: 'datagram' (fast, may be lost) or 'stream' (reliable).
   * Returns the number of frames sent.
   */
  async submit(records, { via = 'datagram' } = {}) {
    const filled = records.map((r) => ({ clientId: this.clientId, ...r }));
    const max = via === 'datagram' ? this.datagramFrameMax : STREAM_FRAME_LEN_MAX;
    const frames = packFrames(filled, max);
    for (const f of frames) await this.sendFrame(f, { via });
    return frames.length;
  }

  /** Sends one frame as it is (tests use it for malformed frames). */
  async sendFrame(frame, { via = 'datagram' } = {}) {
    if (via === 'datagram') return this._datagrams.write(frame);
    if (!this._stream) {
      const s = await this.wt.createUnidirectionalStream();
      this._stream = s.getWriter();
    }
    return this._stream.write(frame);
  }

  /** The records stream's writer's `closed` promise (rejects with the stream error). */
  get streamClosed() {
    return this._stream ? this._stream.closed : null;
  }

  close() {
    this.wt.close();
  }

  _emitFrame(bytes, via) {
    let records;
    try {
      records = decodeFrame(bytes);
    } catch (e) {
      if (!(e instanceof WireError)) throw e;
      this.dispatchEvent(new CustomEvent('badframe', { detail: { reason: e.reason, via } }));
      return;
    }
    for (const rec of records) {
      if (rec.kind === 'receipt') this.dispatchEvent(new CustomEvent('receipt', { detail: { receipt: rec, via } }));
      else if (rec.kind === 'block' || rec.kind === 'clearing' || rec.kind === 'proof' || rec.kind === 'watermark') this.dispatchEvent(new CustomEvent(rec.kind, { detail: rec }));
      else this.dispatchEvent(new CustomEvent('badframe', { detail: { reason: 'unknown_kind', via } }));
    }
  }

  async _readDatagrams() {
    const reader = this.wt.datagrams.readable.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        this._emitFrame(value, 'datagram');
      }
    } catch { /* the session ended */ }
  }

  async _acceptStreams() {
    const streams = this.wt.incomingUnidirectionalStreams.getReader();
    try {
      for (;;) {
        const { value, done } = await streams.read();
        if (done) return;
        this._readResults(value);
      }
    } catch { /* the session ended */ }
  }

  async _readResults(stream) {
    const reader = stream.getReader();
    let buf = new Uint8Array(0);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        const joined = new Uint8Array(buf.length + value.length);
        joined.set(buf);
        joined.set(value, buf.length);
        buf = joined;
        while (buf.length >= FRAME_HEADER_LEN) {
          const len = peekFrameLength(buf);
          if (buf.length < len) break;
          this._emitFrame(buf.subarray(0, len), 'stream');
          buf = buf.slice(len);
        }
      }
    } catch (e) {
      if (e instanceof WireError) this.dispatchEvent(new CustomEvent('badframe', { detail: { reason: e.reason, via: 'stream' } }));
    }
  }
}
