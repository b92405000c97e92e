// aiosocker.js: the browser client of socker. A dependency-free ES module, no build step.
//
//   import * as aiosocker from "/aiosocker.js";        // every socker server serves it there
//   const conn = await aiosocker.connect("/");      // same host as the page, WebSocket path "/"
//   conn.stage("scene", async (message) => { ...; await rtc.ready(); return true; });
//   const rtc = aiosocker.rtc.clientStages(conn);    // adds the stages rtc_offer, rtc_open
//   conn.stage("play", (message) => false);       // the final stage stays
//   rtc.onMessage("game", (bytes) => { ... });
//
// The model is Python's (docs/browser.md): a connection walks a chain of stages; the
// current stage's handler gets each binary message (a Uint8Array) and returns true
// (advance), false (stay) or a stage name (jump). Handlers may be async; messages are
// handled strictly one at a time, in order; conn.defer(message) hands one to the next
// stage entered. Timeouts here are in milliseconds.
//
// Wire formats (docs/protocol.md) match aiosocker.rtc.envelope and aiosocker.rtc.batch byte
// for byte; tests/browser checks both directions against the Python codecs.

// -- errors and close codes -------------------------------------------------------------

/** Base class of the errors aiosocker.js throws on purpose. */
export class SockerError extends Error {
  get name() { return this.constructor.name; }
}

/** A signaling frame was malformed or out of order (the connection closes with 4400). */
export class SignalingError extends SockerError {}

/** A received DataChannel frame is not a valid batch frame. */
export class BatchError extends SockerError {}

/** A stage's timeout expired (the connection closes with 4408). */
export class StageTimeoutError extends SockerError {
  constructor(stage, timeout) {
    super(`stage '${stage}' timed out after ${timeout / 1000} s`);
    this.stage = stage;
    this.timeout = timeout;
  }
}

/** A handler returned true in the last stage: there is nothing to advance to. */
export class OutOfStagesError extends SockerError {
  constructor(stage) {
    super(`stage '${stage}' returned true but it is the last stage: nothing to advance to` +
      " (return false from a final stage to stay on it)");
    this.stage = stage;
  }
}

/** More than maxDeferred messages were deferred (the connection closes with 4011). */
export class QueueFullError extends SockerError {}

/** send() on a connection that is not open. */
export class ConnectionClosedError extends SockerError {
  constructor(code, reason) {
    super(`connection closed (code ${code}, reason '${reason}')`);
    this.code = code;
    this.reason = reason;
  }
}

/** Close codes. Browsers may only send 1000 and 3000-4999, so where the Python side
 *  uses 1003 and 1011 the browser client sends 4003 and 4011 instead. */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  UNSUPPORTED_DATA: 1003,
  ABNORMAL: 1006,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  CLIENT_UNSUPPORTED_DATA: 4003,
  CLIENT_ERROR: 4011,
  BAD_SIGNALING: 4400,
  STAGE_TIMEOUT: 4408,
});

// -- bytes and text -----------------------------------------------------------------------

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true }); // bad UTF-8 throws, as in Python

/** A Uint8Array view of bytes; strings are refused (aiosocker is binary only). */
function asBytes(data, what = "data") {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (typeof data === "string") {
    throw new TypeError(`${what} must be bytes, got a string: aiosocker is binary only` +
      " (encode text first, e.g. new TextEncoder().encode(text))");
  }
  throw new TypeError(`${what} must be a Uint8Array, ArrayBuffer or ArrayBufferView, got ${typeName(data)}`);
}

function typeName(value) {
  if (value === null) return "null";
  if (typeof value === "object") return value.constructor?.name ?? "object";
  return typeof value;
}

function concat(parts, size) {
  const out = new Uint8Array(size ?? parts.reduce((n, p) => n + p.length, 0));
  let pos = 0;
  for (const part of parts) { out.set(part, pos); pos += part.length; }
  return out;
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
}

/** UTF-8 of a string, checked like Python's str.encode(): no lone surrogates, size limit. */
function utf8(value, what, limit) {
  if (typeof value !== "string") throw new TypeError(`${what} must be a string, got ${typeName(value)}`);
  // TextEncoder would silently turn a lone surrogate into U+FFFD; Python refuses it.
  if (!isWellFormed(value)) throw new RangeError(`${what} cannot be encoded as UTF-8: it has a lone surrogate`);
  const data = utf8Encoder.encode(value);
  if (data.length > limit) throw new RangeError(`${what} is ${data.length} bytes of UTF-8; the limit is ${limit}`);
  return data;
}

const isWellFormed = String.prototype.isWellFormed
  ? (s) => s.isWellFormed()
  : (s) => !/[\ud800-\udbff](?![\udc00-\udfff])|(?:^|[^\ud800-\udbff])[\udc00-\udfff]/.test(s);

function uint(value, what, maximum) {
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new TypeError(`${what} must be an integer, got ${typeName(value)} ${String(value)}`);
  }
  if (value < 0) throw new RangeError(`${what} must not be negative, got ${value}`);
  if (value > maximum) throw new RangeError(`${what} must be at most ${maximum}, got ${value}`);
  return value;
}

function u16(n) { return Uint8Array.of(n >> 8, n & 0xff); }

// -- the signaling envelope (aiosocker.rtc.envelope) ------------------------------------------

const MAGIC = Uint8Array.of(0xff, 0x53);
const VERSION = 1;
const MAX_SDP_SIZE = 64 * 1024;
const MAX_TEXT_SIZE = 4096;
const MAX_CHANNEL_ID = 65534;
const U16_MAX = 0xffff;
const HEADER_SIZE = 4; // magic (2), version (1), type (1)

/** The type byte of a signaling frame, by name. */
const MessageType = Object.freeze({
  READY: 0x01, OFFER: 0x02, ANSWER: 0x03, CANDIDATE: 0x04,
  OPEN: 0x05, RENEGOTIATE: 0x06, ERROR: 0x07, BYE: 0x08,
});
const TYPE_NAMES = Object.fromEntries(Object.entries(MessageType).map(([k, v]) => [v, k]));

// Channel flag bits; each optional field has a presence bit, so 0 and "absent" differ.
const ORDERED = 0x01, NEGOTIATED = 0x02, HAS_RETRANSMITS = 0x04, HAS_LIFETIME = 0x08;
const CHANNEL_FLAGS = ORDERED | NEGOTIATED | HAS_RETRANSMITS | HAS_LIFETIME;
const HAS_MID = 0x01, HAS_MLINE_INDEX = 0x02;
const CANDIDATE_FLAGS = HAS_MID | HAS_MLINE_INDEX;

/**
 * A validated channel description (Python's ChannelSpec), with every field present and
 * null for "absent". Defaults make a UDP-like channel: unordered, maxRetransmits 0 (or,
 * when maxPacketLifeTime is given, no retransmit limit, since WebRTC allows only one).
 */
function channelSpec(spec) {
  if (spec === null || typeof spec !== "object") throw new TypeError(`a channel must be an object, got ${typeName(spec)}`);
  const {
    label, ordered = false, maxPacketLifeTime = null, protocol = "", negotiated = false, id = null,
  } = spec;
  let { maxRetransmits } = spec;
  if (maxRetransmits === undefined) maxRetransmits = maxPacketLifeTime === null ? 0 : null;
  if (utf8(label, "label", U16_MAX).length === 0) throw new RangeError("label must not be empty: handlers are attached by label");
  utf8(protocol, `protocol of channel '${label}'`, U16_MAX);
  for (const [flag, value] of [["ordered", ordered], ["negotiated", negotiated]]) {
    if (typeof value !== "boolean") throw new TypeError(`${flag} must be a boolean, got ${typeName(value)}`);
  }
  if (maxRetransmits !== null) uint(maxRetransmits, "maxRetransmits", U16_MAX);
  if (maxPacketLifeTime !== null) {
    uint(maxPacketLifeTime, "maxPacketLifeTime", U16_MAX);
    if (maxRetransmits !== null) {
      throw new RangeError(`channel '${label}' sets both maxRetransmits (${maxRetransmits}) and` +
        ` maxPacketLifeTime (${maxPacketLifeTime}); WebRTC allows one: pass maxRetransmits: null`);
    }
  }
  if (negotiated) {
    if (id === null) throw new RangeError(`channel '${label}' is negotiated but has no id: both sides must create it with the same id (0..65534)`);
    uint(id, "id", MAX_CHANNEL_ID);
  } else if (id !== null) {
    throw new RangeError(`channel '${label}' has id ${id} but negotiated is false: an id is only used for negotiated channels`);
  }
  return Object.freeze({ label, ordered, maxRetransmits, maxPacketLifeTime, protocol, negotiated, id });
}

/** Check a list of channels as a set (unique labels and ids); returns validated specs. */
function validateChannels(channels) {
  if (!Array.isArray(channels)) throw new TypeError(`channels must be an array, got ${typeName(channels)}`);
  if (channels.length > U16_MAX) throw new RangeError(`${channels.length} channels; at most ${U16_MAX} fit in an offer`);
  const labels = new Map(), ids = new Map();
  return channels.map((raw, index) => {
    const spec = channelSpec(raw);
    if (labels.has(spec.label)) {
      throw new RangeError(`duplicate channel label '${spec.label}' (channels ${labels.get(spec.label)} and ${index}): labels must be unique`);
    }
    labels.set(spec.label, index);
    if (spec.id !== null) {
      if (ids.has(spec.id)) throw new RangeError(`channels '${ids.get(spec.id)}' and '${spec.label}' both use id ${spec.id}`);
      ids.set(spec.id, spec.label);
    }
    return spec;
  });
}

/** Options for RTCPeerConnection.createDataChannel(label, options): absent fields left
 *  out (WebIDL would turn a null maxRetransmits into 0). */
function channelOptions(spec) {
  const options = { ordered: spec.ordered, protocol: spec.protocol, negotiated: spec.negotiated };
  if (spec.maxRetransmits !== null) options.maxRetransmits = spec.maxRetransmits;
  if (spec.maxPacketLifeTime !== null) options.maxPacketLifeTime = spec.maxPacketLifeTime;
  if (spec.id !== null) options.id = spec.id;
  return options;
}

function isReliable(spec) { return spec.maxRetransmits === null && spec.maxPacketLifeTime === null; }

function sdpBytes(sdp, kind) {
  const data = utf8(sdp, `${kind} SDP`, MAX_SDP_SIZE);
  if (data.length === 0) throw new RangeError(`${kind} SDP must not be empty`);
  return data;
}

function encodeChannel(spec) {
  const label = utf8Encoder.encode(spec.label), protocol = utf8Encoder.encode(spec.protocol);
  const flags = (spec.ordered ? ORDERED : 0) | (spec.negotiated ? NEGOTIATED : 0) |
    (spec.maxRetransmits !== null ? HAS_RETRANSMITS : 0) | (spec.maxPacketLifeTime !== null ? HAS_LIFETIME : 0);
  return concat([
    Uint8Array.of(flags), u16(spec.maxRetransmits ?? 0), u16(spec.maxPacketLifeTime ?? 0),
    u16(spec.id ?? 0), u16(label.length), label, u16(protocol.length), protocol,
  ]);
}

/**
 * The binary frame carrying a message, e.g. encode({type: "READY"}). Messages:
 *   {type: "READY"} | {type: "OPEN"}
 *   {type: "OFFER", sdp, channels: [{label, ordered?, maxRetransmits?, ...}]}
 *   {type: "ANSWER", sdp}
 *   {type: "CANDIDATE", candidate, sdpMid?: string|null, sdpMLineIndex?: number|null}
 *   {type: "RENEGOTIATE", reason?} | {type: "BYE", reason?} | {type: "ERROR", code, reason?}
 * Invalid fields throw TypeError or RangeError, so it never makes a frame the peer rejects.
 */
function encode(message) {
  if (message === null || typeof message !== "object") throw new TypeError(`not a signaling message: ${typeName(message)}`);
  const kind = MessageType[message.type];
  if (kind === undefined) {
    throw new TypeError(`unknown signaling message type '${message.type}'; the types are ${Object.keys(MessageType).join(", ")}`);
  }
  let payload;
  switch (message.type) {
    case "READY": case "OPEN":
      payload = [];
      break;
    case "OFFER": {
      const sdp = sdpBytes(message.sdp, "OFFER");
      const channels = validateChannels(message.channels ?? []);
      payload = [u16(channels.length), ...channels.map(encodeChannel), sdp];
      break;
    }
    case "ANSWER":
      payload = [sdpBytes(message.sdp, "ANSWER")];
      break;
    case "CANDIDATE": {
      const { candidate, sdpMid = null, sdpMLineIndex = null } = message;
      const line = utf8(candidate, "CANDIDATE candidate", MAX_TEXT_SIZE);
      const mid = sdpMid === null ? new Uint8Array(0) : utf8(sdpMid, "CANDIDATE sdpMid", MAX_TEXT_SIZE);
      if (sdpMLineIndex !== null) uint(sdpMLineIndex, "CANDIDATE sdpMLineIndex", U16_MAX);
      const flags = (sdpMid === null ? 0 : HAS_MID) | (sdpMLineIndex === null ? 0 : HAS_MLINE_INDEX);
      payload = [Uint8Array.of(flags), u16(sdpMLineIndex ?? 0), u16(mid.length), mid, line];
      break;
    }
    case "RENEGOTIATE": case "BYE":
      payload = [utf8(message.reason ?? "", `${message.type} reason`, MAX_TEXT_SIZE)];
      break;
    case "ERROR":
      payload = [u16(uint(message.code, "ERROR code", U16_MAX)), utf8(message.reason ?? "", "ERROR reason", MAX_TEXT_SIZE)];
      break;
  }
  return concat([MAGIC, Uint8Array.of(VERSION, kind), ...payload]);
}

/** A cursor over one frame's payload that names the field when the frame runs short. */
class Reader {
  constructor(data, kind) {
    this.data = data;
    this.kind = kind;
    this.pos = HEADER_SIZE;
  }

  fail(problem) { return new SignalingError(`bad ${this.kind}: ${problem}`); }

  take(size, field) {
    const start = this.pos, end = start + size;
    if (end > this.data.length) {
      throw this.fail(`truncated: ${field} needs ${size} bytes at offset ${start}, ${this.data.length - start} left`);
    }
    this.pos = end;
    return this.data.subarray(start, end);
  }

  u16(field) { const b = this.take(2, field); return (b[0] << 8) | b[1]; }

  text(data, field, limit) {
    // Size first: never decode a megabyte only to reject it.
    if (data.length > limit) throw this.fail(`${field} is ${data.length} bytes; the limit is ${limit}`);
    try {
      return utf8Decoder.decode(data);
    } catch {
      throw this.fail(`${field} is not valid UTF-8`);
    }
  }

  rest(field, limit) {
    const data = this.data.subarray(this.pos);
    this.pos = this.data.length;
    return this.text(data, field, limit);
  }

  end() {
    const extra = this.data.length - this.pos;
    if (extra) throw this.fail(`${extra} unexpected bytes after the payload at offset ${this.pos}`);
  }
}

function decodeChannel(reader, field) {
  // Fixed part: flags, maxRetransmits, maxPacketLifeTime, id, label length.
  const b = reader.take(9, field);
  const flags = b[0], retransmits = (b[1] << 8) | b[2], lifetime = (b[3] << 8) | b[4];
  const id = (b[5] << 8) | b[6], labelSize = (b[7] << 8) | b[8];
  if (flags & ~CHANNEL_FLAGS) throw reader.fail(`${field} sets unknown flag bits 0x${(flags & ~CHANNEL_FLAGS).toString(16).padStart(2, "0")}`);
  // Absent fields must be zero: one encoding per message.
  for (const [bit, value, name] of [[HAS_RETRANSMITS, retransmits, "maxRetransmits"], [HAS_LIFETIME, lifetime, "maxPacketLifeTime"], [NEGOTIATED, id, "id"]]) {
    if (value && !(flags & bit)) throw reader.fail(`${field} has ${name}=${value} but not its flag: absent must be 0`);
  }
  const label = reader.text(reader.take(labelSize, `${field} label`), `${field} label`, U16_MAX);
  const protocolSize = reader.u16(`${field} protocol length`);
  const protocol = reader.text(reader.take(protocolSize, `${field} protocol`), `${field} protocol`, U16_MAX);
  try {
    return channelSpec({
      label,
      ordered: Boolean(flags & ORDERED),
      maxRetransmits: flags & HAS_RETRANSMITS ? retransmits : null,
      maxPacketLifeTime: flags & HAS_LIFETIME ? lifetime : null,
      protocol,
      negotiated: Boolean(flags & NEGOTIATED),
      id: flags & NEGOTIATED ? id : null,
    });
  } catch (err) {
    throw reader.fail(`${field}: ${err.message}`);
  }
}

const DECODERS = {
  READY(r) { r.end(); return { type: "READY" }; },
  OPEN(r) { r.end(); return { type: "OPEN" }; },
  OFFER(r) {
    const count = r.u16("channel count");
    const channels = [];
    for (let i = 0; i < count; i++) channels.push(decodeChannel(r, `channel ${i + 1} of ${count}`));
    const sdp = r.rest("SDP", MAX_SDP_SIZE);
    if (!sdp) throw r.fail("SDP is empty");
    try {
      validateChannels(channels); // duplicate labels or ids
    } catch (err) {
      throw r.fail(err.message);
    }
    return { type: "OFFER", sdp, channels };
  },
  ANSWER(r) {
    const sdp = r.rest("SDP", MAX_SDP_SIZE);
    if (!sdp) throw r.fail("SDP is empty");
    return { type: "ANSWER", sdp };
  },
  CANDIDATE(r) {
    const b = r.take(5, "header"); // flags, sdp_mline_index, sdp_mid length
    const flags = b[0], index = (b[1] << 8) | b[2], midSize = (b[3] << 8) | b[4];
    if (flags & ~CANDIDATE_FLAGS) throw r.fail(`unknown flag bits 0x${(flags & ~CANDIDATE_FLAGS).toString(16).padStart(2, "0")}`);
    if (index && !(flags & HAS_MLINE_INDEX)) throw r.fail(`sdp_mline_index=${index} but not its flag: absent must be 0`);
    if (midSize && !(flags & HAS_MID)) throw r.fail(`sdp_mid of ${midSize} bytes but not its flag: absent must be 0`);
    const mid = r.text(r.take(midSize, "sdp_mid"), "sdp_mid", MAX_TEXT_SIZE);
    const candidate = r.rest("candidate", MAX_TEXT_SIZE);
    return {
      type: "CANDIDATE",
      candidate,
      sdpMid: flags & HAS_MID ? mid : null,
      sdpMLineIndex: flags & HAS_MLINE_INDEX ? index : null,
    };
  },
  RENEGOTIATE(r) { return { type: "RENEGOTIATE", reason: r.rest("reason", MAX_TEXT_SIZE) }; },
  ERROR(r) {
    const code = r.u16("code");
    return { type: "ERROR", code, reason: r.rest("reason", MAX_TEXT_SIZE) };
  },
  BYE(r) { return { type: "BYE", reason: r.rest("reason", MAX_TEXT_SIZE) }; },
};

/** Whether a binary frame is signaling (starts with ff 53) rather than an app message. */
function isSignaling(frame) {
  const data = asBytes(frame, "frame");
  return data.length >= 2 && data[0] === MAGIC[0] && data[1] === MAGIC[1];
}

/** The message in a signaling frame; throws SignalingError naming what is wrong. */
function decode(frame) {
  if (typeof frame === "string") throw new SignalingError("a signaling frame is bytes, got a string (a text frame?)");
  const data = asBytes(frame, "frame");
  const head = data.subarray(0, 2);
  if (!head.every((b, i) => b === MAGIC[i])) {
    throw new SignalingError(`not a signaling frame: it starts with ${hex(head)}, not the magic ff 53`);
  }
  if (data.length < HEADER_SIZE) {
    throw new SignalingError(`truncated signaling frame: ${data.length} bytes, shorter than the 4-byte header (magic, version, type)`);
  }
  if (data[2] !== VERSION) {
    throw new SignalingError(`unsupported signaling version ${data[2]}; this peer speaks version ${VERSION}`);
  }
  const kind = TYPE_NAMES[data[3]];
  if (kind === undefined) {
    throw new SignalingError(`unknown signaling message type 0x${data[3].toString(16).padStart(2, "0")}; version ${VERSION} has 0x01..0x08`);
  }
  return DECODERS[kind](new Reader(data, kind));
}

/** The signaling envelope codec (docs/protocol.md, section 1). */
export const envelope = Object.freeze({
  MAGIC, VERSION, MAX_SDP_SIZE, MAX_TEXT_SIZE, MAX_CHANNEL_ID, MessageType,
  encode, decode, isSignaling, channelSpec, validateChannels, channelOptions,
});

// -- batching (aiosocker.rtc.batch) -----------------------------------------------------------

const SINGLE = 0xb0; // one message, no length
const BATCH = 0xb1;  // (varint length, message) repeated
const DEFAULT_MAX_SIZE = 16 * 1024;
const MAX_MAX_SIZE = 1 << 28; // batched lengths then fit the 4-byte varints receivers accept
const MAX_VARINT = 4;

function varint(n) {
  const out = [];
  while (n >= 0x80) { out.push((n & 0x7f) | 0x80); n >>>= 7; }
  out.push(n);
  return Uint8Array.from(out);
}

function checkMaxSize(maxSize) {
  if (typeof maxSize !== "number" || !Number.isInteger(maxSize)) throw new TypeError(`maxSize must be an integer, got ${typeName(maxSize)}`);
  if (maxSize < 1 || maxSize > MAX_MAX_SIZE) throw new RangeError(`maxSize must be in 1..${MAX_MAX_SIZE} bytes, got ${maxSize}`);
}

/**
 * Pack messages, in order, into as few frames of at most maxSize bytes as order allows
 * (greedy, exactly as Python's pack(), so both make the same frames). A message too big
 * to share a frame goes alone in a b0 frame, which may exceed maxSize by one byte.
 */
function pack(messages, maxSize = DEFAULT_MAX_SIZE) {
  checkMaxSize(maxSize);
  const frames = [];
  let group = [], size = 1; // size of group as a b1 frame
  const finish = () => {
    // group is [prefix, message, prefix, message, ...]; one message needs no length.
    frames.push(group.length === 2 ? concat([Uint8Array.of(SINGLE), group[1]]) : concat([Uint8Array.of(BATCH), ...group], size));
  };
  for (const raw of messages) {
    const message = asBytes(raw, "message");
    const prefix = varint(message.length);
    const cost = prefix.length + message.length;
    if (size + cost > maxSize && size > 1) { finish(); group = []; size = 1; }
    group.push(prefix, message);
    size += cost;
  }
  if (size > 1) finish();
  return frames;
}

/** The messages of one batch frame (views into it); throws BatchError naming the problem. */
function unpack(frame) {
  if (typeof frame === "string") throw new BatchError("got a text message; batch frames are binary");
  const data = asBytes(frame, "frame");
  if (data.length === 0) throw new BatchError("empty frame: a batch frame starts with a marker byte (b0 or b1)");
  if (data[0] === SINGLE) return [data.subarray(1)];
  if (data[0] !== BATCH) throw new BatchError(`unknown batch marker 0x${data[0].toString(16).padStart(2, "0")}; expected 0xb0 or 0xb1`);
  const messages = [];
  let pos = 1;
  while (pos < data.length) {
    const start = pos;
    let size = 0, shift = 0;
    for (;;) {
      if (pos - start === MAX_VARINT) throw new BatchError(`length at offset ${start} is longer than ${MAX_VARINT} bytes`);
      if (pos >= data.length) throw new BatchError(`truncated length at offset ${start}: the frame ends inside it`);
      const byte = data[pos++];
      size += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) {
        if (byte === 0 && pos - start > 1) throw new BatchError(`non-minimal length at offset ${start}: a trailing 00 byte`);
        break;
      }
      shift += 7;
    }
    if (pos + size > data.length) {
      throw new BatchError(`truncated batch: message ${messages.length + 1} at offset ${pos} needs ${size} bytes, ${data.length - pos} left`);
    }
    messages.push(data.subarray(pos, pos + size));
    pos += size;
  }
  if (messages.length === 0) throw new BatchError("empty batch: a b1 frame holds at least one message");
  return messages;
}

/** The DataChannel batching codec (docs/protocol.md, section 5). */
export const batch = Object.freeze({ SINGLE, BATCH, DEFAULT_MAX_SIZE, MAX_MAX_SIZE, pack, unpack });

// -- hooks ----------------------------------------------------------------------------------

function addHook(list, fn, what) {
  if (typeof fn !== "function") throw new TypeError(`${what} needs a function, got ${typeName(fn)}`);
  list.push(fn);
  return () => { const i = list.indexOf(fn); if (i >= 0) list.splice(i, 1); };
}

// Hooks must not break the caller: errors and rejected promises are logged.
function runHooks(list, ...args) {
  for (const fn of [...list]) {
    try {
      const result = fn(...args);
      if (result && typeof result.then === "function") result.then(undefined, (err) => console.error("aiosocker: hook failed", err));
    } catch (err) {
      console.error("aiosocker: hook failed", err);
    }
  }
}

/** Cut a close reason to the 123 bytes of UTF-8 a close frame carries. */
function truncateReason(reason) {
  const data = utf8Encoder.encode(reason);
  if (data.length <= 123) return reason;
  // Decoding a cut multi-byte character yields U+FFFD; drop it.
  return new TextDecoder().decode(data.subarray(0, 120)).replace(/\uFFFD$/, "") + "...";
}

/** ws:// URL for url, resolved against the page: "/" is the page's own server. */
function webSocketUrl(url) {
  const base = typeof location === "undefined" ? undefined : location.href;
  const resolved = new URL(url, base);
  if (resolved.protocol === "http:") resolved.protocol = "ws:";
  else if (resolved.protocol === "https:") resolved.protocol = "wss:";
  if (resolved.protocol !== "ws:" && resolved.protocol !== "wss:") {
    throw new SyntaxError(`a socker URL is ws://, wss://, http://, https:// or a path, got ${url}`);
  }
  return resolved.href;
}

// -- the connection -------------------------------------------------------------------------

/**
 * One WebSocket connection and its chain of stages.
 *
 *   const conn = new aiosocker.Connection("/");
 *   conn.stage("scene", (message) => true).stage("play", (message) => false);
 *   await conn.open();
 */
export class Connection {
  /**
   * @param url ws(s):// URL, or a path/URL resolved against the page ("/" by default).
   * @param options {protocols, openTimeout = 10000 ms, historyLimit = 256, maxDeferred = 1024}
   */
  constructor(url = "/", { protocols = undefined, openTimeout = 10000, historyLimit = 256, maxDeferred = 1024 } = {}) {
    if (!Number.isInteger(maxDeferred) || maxDeferred < 1) {
      throw new RangeError(`maxDeferred must be an integer of at least 1, got ${String(maxDeferred)}`);
    }
    this.url = webSocketUrl(url);
    this.protocols = protocols;
    this.openTimeout = openTimeout;
    this.historyLimit = historyLimit;
    /** How many messages may wait in defer() at once. */
    this.maxDeferred = maxDeferred;
    /** The underlying WebSocket (once open() is called). */
    this.socket = null;
    /** "new", "connecting", "open", "closing" or "closed". */
    this.state = "new";
    /** How the connection ended (null while open) and why. */
    this.closeCode = null;
    this.closeReason = "";
    /** The error that made aiosocker.js close the connection, if one did. */
    this.error = null;
    this._stages = [];
    this._byName = new Map();
    this._index = 0;
    this._history = [];
    this._inbox = [];
    this._deferred = [];
    this._pumping = false;
    this._timer = null;
    this._intercept = null;
    this._closeSent = null;
    this._opened = false;
    this._opening = null;
    this._hooks = { open: [], close: [], error: [], stage: [] };
    this._closed = new Promise((resolve) => { this._resolveClosed = resolve; });
  }

  // -- the chain --

  /** Append a stage running handler(message, conn); name defaults to handler.name,
   *  timeout (ms) closes with 4408 when the stage lasts longer. Returns this. */
  add(handler, { name = undefined, timeout = null } = {}) {
    if (typeof handler !== "function") throw new TypeError(`a stage handler must be a function, got ${typeName(handler)}`);
    name ??= handler.name;
    if (typeof name !== "string" || !name) throw new TypeError("give the stage a name: add(handler, {name}) or stage(name, handler)");
    if (this._byName.has(name)) throw new RangeError(`a stage named '${name}' already exists; stage names are unique`);
    if (timeout !== null && !(typeof timeout === "number" && timeout > 0)) {
      throw new RangeError(`timeout must be a positive number of milliseconds, got ${String(timeout)}`);
    }
    this._byName.set(name, this._stages.length);
    this._stages.push(Object.freeze({ name, handler, timeout }));
    if (this._stages.length === 1) {
      this._enter(0, "start");
      if (this._inbox.length) this._pump(); // messages that came before any stage
    }
    return this;
  }

  /** add() with the name first, for arrow functions: conn.stage("play", (m) => false). */
  stage(name, handler, { timeout = null } = {}) {
    return this.add(handler, { name, timeout });
  }

  /** Move to stage name from outside a handler (e.g. a timer, a dead channel). */
  jump(name) {
    const target = this._byName.get(name);
    if (target === undefined) throw new RangeError(`no stage named '${name}'; the stages are ${this.names.join(", ")}`);
    this._enter(target, "jump");
  }

  /** From a handler (or intercept): hand message to the next stage entered instead of
   *  this one (e.g. an app message that arrives during the rtc handshake). On the next
   *  stage change, deferred messages come first, in order, before anything newer; one
   *  deferred again waits for the change after that. At most maxDeferred wait: one more
   *  throws QueueFullError (from a handler, the connection closes with 4011). */
  defer(message) {
    const bytes = asBytes(message, "message");
    if (this._deferred.length >= this.maxDeferred) {
      throw new QueueFullError(`${this._deferred.length} messages deferred in stage '${this.current}'` +
        ` (maxDeferred=${this.maxDeferred})`);
    }
    this._deferred.push(bytes);
  }

  /** Run fn(message) on each binary message before the stages; it returns true when it
   *  consumed the message. One per connection (the rtc layer uses it); null removes it. */
  intercept(fn) {
    if (fn !== null && this._intercept !== null) throw new Error("this connection already has an intercept handler");
    this._intercept = fn;
  }

  /** Name of the current stage. */
  get current() { return this._stages[this._index]?.name ?? null; }

  /** Position of the current stage in the chain. */
  get index() { return this._index; }

  /** Names of all stages, in order. */
  get names() { return this._stages.map((s) => s.name); }

  /** Stages entered, oldest first: {stage, index, at: performance.now(), via}. */
  get history() { return [...this._history]; }

  get closed() { return this.state === "closed"; }

  /** Bytes queued in the WebSocket, not yet sent. */
  get bufferedAmount() { return this.socket?.bufferedAmount ?? 0; }

  // -- hooks (each returns a function that removes it) --

  /** fn(conn) once the WebSocket is open. */
  onOpen(fn) { return addHook(this._hooks.open, fn, "onOpen"); }
  /** fn(code, reason, conn) once when the connection ends (after it was open). */
  onClose(fn) { return addHook(this._hooks.close, fn, "onClose"); }
  /** fn(error, conn) when a handler throws or a stage times out (the connection closes). */
  onError(fn) { return addHook(this._hooks.error, fn, "onError"); }
  /** fn(entry, conn) on each stage entered; entry is as in history. */
  onStage(fn) { return addHook(this._hooks.stage, fn, "onStage"); }

  // -- lifecycle --

  /** Open the WebSocket; resolves with the connection once open, rejects if it cannot. */
  open() {
    if (this._opening) return this._opening;
    if (this.state !== "new") return Promise.reject(new SockerError("this connection was closed before it opened"));
    this._opening = new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url, this.protocols);
      ws.binaryType = "arraybuffer";
      this.socket = ws;
      this.state = "connecting";
      const timer = setTimeout(() => {
        reject(new SockerError(`opening ${this.url} timed out after ${this.openTimeout} ms`));
        ws.close();
      }, this.openTimeout);
      ws.onopen = () => {
        clearTimeout(timer);
        if (this.state !== "connecting") return; // close() was called meanwhile
        this.state = "open";
        this._opened = true;
        this._arm();
        runHooks(this._hooks.open, this);
        resolve(this);
        this._pump();
      };
      ws.onmessage = (event) => this._receive(event.data);
      ws.onclose = (event) => {
        clearTimeout(timer);
        // A browser says nothing about why a handshake failed (HTTP 403, 404, no server).
        if (!this._opened) reject(new SockerError(`could not connect to ${this.url} (close code ${event.code})`));
        this._ended(event.code, event.reason);
      };
    });
    return this._opening;
  }

  /** Send one binary message (Uint8Array, ArrayBuffer or view). Throws
   *  ConnectionClosedError unless open, TypeError for a string. */
  send(data) {
    const bytes = asBytes(data);
    if (this.state !== "open") throw new ConnectionClosedError(this.closeCode, this.closeReason);
    this.socket.send(bytes);
  }

  /** Close with code (1000 or 3000-4999: what browsers allow) and reason (cut to 123
   *  bytes); resolves with {code, reason} once closed. */
  close(code = CloseCode.NORMAL, reason = "") {
    if (code !== 1000 && !(Number.isInteger(code) && code >= 3000 && code <= 4999)) {
      throw new RangeError(`a browser may close only with 1000 or 3000-4999, got ${code}`);
    }
    if (this.state === "new") {
      this._ended(code, reason);
    } else if (this.state === "connecting" || this.state === "open") {
      reason = truncateReason(reason);
      this._closeSent = { code, reason };
      this.state = "closing";
      this._disarm();
      this.socket.close(code, reason);
    }
    return this._closed;
  }

  /** Resolves with {code, reason} once the connection has ended. */
  waitClosed() { return this._closed; }

  // -- internals --

  _receive(data) {
    if (this.state !== "open") return;
    if (typeof data === "string") {
      this._fail(new SockerError("got a text frame; aiosocker speaks binary frames only"), CloseCode.CLIENT_UNSUPPORTED_DATA,
        "text frames are not supported; send binary");
      return;
    }
    this._inbox.push(new Uint8Array(data));
    this._pump();
  }

  // Handle queued messages one at a time, in order. Sync handlers run inline; an async
  // handler is awaited before the next message is handed over.
  async _pump() {
    if (this._pumping) return;
    this._pumping = true;
    try {
      while (this._inbox.length && this._stages.length && this.state === "open") {
        const pending = this._dispatch(this._inbox.shift());
        if (pending) await pending;
      }
    } finally {
      this._pumping = false;
    }
  }

  _dispatch(message) {
    let index, result;
    try {
      if (this._intercept !== null && this._intercept(message)) return null;
      index = this._index; // after intercept, which may have jumped
      result = this._stages[index].handler(message, this);
    } catch (err) {
      this._fail(err);
      return null;
    }
    if (result !== null && typeof result === "object" && typeof result.then === "function") {
      return result.then((value) => this._settle(index, value)).catch((err) => this._fail(err));
    }
    try {
      this._settle(index, result);
    } catch (err) {
      this._fail(err);
    }
    return null;
  }

  _settle(index, result) {
    if (result === false || this.state !== "open") return;
    const name = this._stages[index].name;
    if (result === true) {
      if (index + 1 >= this._stages.length) throw new OutOfStagesError(name);
      this._enter(index + 1, "advance");
    } else if (typeof result === "string") {
      const target = this._byName.get(result);
      if (target === undefined) {
        throw new RangeError(`stage '${name}' returned '${result}', which names no stage; the stages are ${this.names.join(", ")}`);
      }
      this._enter(target, "jump");
    } else {
      throw new TypeError(`stage '${name}' returned ${typeof result === "object" ? typeName(result) : String(result)};` +
        " a handler returns true (advance), false (stay) or the name of a stage (jump)");
    }
  }

  _enter(index, via) {
    this._index = index;
    const entry = Object.freeze({ stage: this._stages[index].name, index, at: performance.now(), via });
    this._history.push(entry);
    if (this._history.length > this.historyLimit) this._history.shift();
    this._arm();
    this._replay();
    runHooks(this._hooks.stage, entry, this);
  }

  // A stage was entered: what the previous one deferred goes to the front of the inbox,
  // in order, before anything newer. What the new stage defers again waits for the next
  // change. Inside a handler the running pump picks them up; after a jump from outside
  // one starts in a microtask (not inside jump() itself).
  _replay() {
    const deferred = this._deferred;
    if (!deferred.length) return;
    this._deferred = [];
    this._inbox.unshift(...deferred);
    if (!this._pumping) queueMicrotask(() => this._pump());
  }

  // A timer per stage entry: entering any stage (even the same one) restarts it.
  _arm() {
    this._disarm();
    const stage = this._stages[this._index];
    if (this.state !== "open" || !stage || stage.timeout === null) return;
    this._timer = setTimeout(() => {
      this._timer = null;
      this._fail(new StageTimeoutError(stage.name, stage.timeout), CloseCode.STAGE_TIMEOUT);
    }, stage.timeout);
  }

  _disarm() {
    if (this._timer !== null) clearTimeout(this._timer);
    this._timer = null;
  }

  // Close because of err, with the code its kind maps to (docs/close-codes.md; browsers
  // cannot send 1011, so unexpected errors close with 4011).
  _fail(err, code = undefined, reason = undefined) {
    if (this.state !== "open") return;
    const stage = this.current ?? "?";
    if (code === undefined) {
      if (err instanceof SignalingError) {
        [code, reason] = [CloseCode.BAD_SIGNALING, `stage '${stage}': ${err.message}`];
      } else if (err instanceof OutOfStagesError) {
        [code, reason] = [CloseCode.CLIENT_ERROR, `stage '${stage}' ran past the last stage`];
      } else {
        [code, reason] = [CloseCode.CLIENT_ERROR, `stage '${stage}' raised ${err?.name ?? typeName(err)}`];
      }
    }
    this.error ??= err;
    if (this._hooks.error.length) runHooks(this._hooks.error, err, this);
    else if (code === CloseCode.CLIENT_ERROR) console.error(`aiosocker: stage '${stage}' failed`, err);
    this.close(code, reason ?? err.message);
  }

  _ended(code, reason) {
    if (this.state === "closed") return;
    this.state = "closed";
    this._disarm();
    this._inbox.length = 0;
    this._deferred.length = 0;
    // What we sent wins, as in Python: the reason is ours, the echo may be cut.
    if (this._closeSent !== null) ({ code, reason } = this._closeSent);
    this.closeCode = code;
    this.closeReason = reason;
    if (this._opened) runHooks(this._hooks.close, code, reason, this);
    this._resolveClosed({ code, reason });
  }
}

/** Open a connection: await aiosocker.connect("/") resolves once the WebSocket is open.
 *  Add stages right after (before your next await) or in options.setup(conn); messages
 *  that arrive before the first stage exists wait for it. */
export async function connect(url = "/", options = {}) {
  const { setup, ...rest } = options;
  const conn = new Connection(url, rest);
  if (setup) await setup(conn);
  return conn.open();
}

// -- WebRTC DataChannels: the client side of socker's rtc stages -----------------------------

/**
 * One DataChannel: send bytes (batched per task), receive bytes via the session's
 * onMessage handler for its label.
 */
export class Channel {
  constructor(dc, spec, session, { batch = true, maxFrame = DEFAULT_MAX_SIZE, maxBuffered = 256 * 1024 } = {}) {
    /** The RTCDataChannel. */
    this.dc = dc;
    /** The options it was created with (as in the OFFER). */
    this.spec = spec;
    this.batch = batch;
    this.maxFrame = maxFrame;
    this.maxBuffered = maxBuffered;
    /** Messages accepted by send(), delivered to the handler, and dropped by send(). */
    this.sent = 0;
    this.received = 0;
    this.dropped = 0;
    this._session = session;
    this._pending = [];
    this._flushScheduled = false;
    dc.binaryType = "arraybuffer";
    dc.addEventListener("message", (event) => this._receive(event.data));
  }

  get label() { return this.spec.label; }
  get isOpen() { return this.dc.readyState === "open"; }
  get reliable() { return isReliable(this.spec); }
  /** Bytes queued in the WebRTC stack, not yet sent (not counting this task's batch). */
  get bufferedAmount() { return this.dc.bufferedAmount; }

  /**
   * Send one message; never blocks. Returns false if it was dropped: the channel is not
   * open, or (unreliable channels) more than maxBuffered bytes already wait, so this
   * update would arrive stale. Messages sent in one task go out in one frame at its end.
   */
  send(data) {
    const bytes = asBytes(data);
    if (!this.isOpen || (!this.reliable && this.dc.bufferedAmount > this.maxBuffered)) {
      this.dropped++;
      return false;
    }
    this.sent++;
    if (!this.batch) {
      for (const frame of pack([bytes], this.maxFrame)) this.dc.send(frame);
      return true;
    }
    // Copied: a game often reuses its buffer before the batch is flushed.
    this._pending.push(bytes.slice());
    if (!this._flushScheduled) {
      this._flushScheduled = true;
      queueMicrotask(() => this.flush());
    }
    return true;
  }

  /** Send what is batched now (done automatically at the end of the current task). */
  flush() {
    this._flushScheduled = false;
    const messages = this._pending;
    if (!messages.length) return;
    this._pending = [];
    if (!this.isOpen) return;
    for (const frame of pack(messages, this.maxFrame)) this.dc.send(frame);
  }

  close() { this.dc.close(); }

  _receive(data) {
    if (typeof data === "string") {
      console.warn(`aiosocker: channel '${this.label}' ignored a text message`);
      return;
    }
    let messages;
    try {
      messages = unpack(data);
    } catch (err) {
      // A DataChannel has no close reason to carry the complaint: drop and log.
      console.warn(`aiosocker: channel '${this.label}' dropped a malformed frame: ${err.message}`);
      return;
    }
    this.received += messages.length;
    const handler = this._session._handlerFor(this.label);
    if (!handler) return;
    for (const message of messages) {
      try {
        const result = handler(message, this.label);
        if (result && typeof result.then === "function") result.then(undefined, (err) => console.error(`aiosocker: channel '${this.label}' handler failed`, err));
      } catch (err) {
        console.error(`aiosocker: channel '${this.label}' handler failed`, err);
      }
    }
  }
}

/** Resolves true when ICE gathering is complete, false after ms: the wait can hang. */
function iceGathered(pc, ms) {
  if (pc.iceGatheringState === "complete") return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok) => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", changed);
      pc.removeEventListener("icecandidate", candidate);
      resolve(ok);
    };
    const changed = () => { if (pc.iceGatheringState === "complete") done(true); };
    const candidate = (event) => { if (!event.candidate) done(true); }; // null: the end
    const timer = setTimeout(() => done(false), ms);
    pc.addEventListener("icegatheringstatechange", changed);
    pc.addEventListener("icecandidate", candidate);
  });
}

const CLIENT_STAGES = Object.freeze(["rtc_offer", "rtc_open"]);

/**
 * The WebRTC side of one connection: its RTCPeerConnection and channels. Made by
 * rtc.clientStages(conn, options), which adds the stages rtc_offer and rtc_open to the
 * chain where it is called:
 *
 *   rtc_offer <- OFFER: create the peer connection, answer (after ICE gathering, bounded
 *                by gatherTimeout), send ANSWER; send OPEN once every channel is open
 *   rtc_open  <- OPEN: the channels are open on both sides; onOpen hooks run
 */
export class RtcSession {
  constructor(conn, {
    iceServers = [], timeout = 5000, batch = true, gatherTimeout = 2000,
    maxBuffered = 256 * 1024, maxFrame = DEFAULT_MAX_SIZE,
  } = {}) {
    if (!(conn instanceof Connection)) throw new TypeError(`clientStages needs a socker Connection, got ${typeName(conn)}`);
    this.conn = conn;
    /** Passed to RTCPeerConnection as is; default none: no public STUN server unasked. */
    this.iceServers = iceServers;
    this.timeout = timeout;
    this.gatherTimeout = gatherTimeout;
    this.channelOptions = { batch, maxFrame, maxBuffered };
    /** The RTCPeerConnection, once an offer came (null after close). */
    this.pc = null;
    /** The channels of the last offer, as validated specs. */
    this.specs = [];
    /** Channels by label, as they arrive. */
    this.channels = new Map();
    /** How many times the channels have opened (renegotiations count). */
    this.opened = 0;
    /** Whether the last ICE gathering completed within gatherTimeout. */
    this.gatherComplete = null;
    this._handlers = new Map();
    this._hooks = { open: [], close: [] };
    this._lostReported = false;
    this._answered = false;
    this._openSent = false;
    // A fresh negotiation was asked for and has not started: READY sent, OFFER awaited.
    this._asked = false;
    this._first = conn.names.length;
    conn.stage("rtc_offer", (message) => this._rtcOffer(message), { timeout });
    conn.stage("rtc_open", (message) => this._rtcOpen(message), { timeout });
    this._last = conn.names.length - 1;
    conn.intercept((message) => this._intercept(message));
    conn.onClose(() => this._closePeer()); // the peer connection lives no longer than the WebSocket
  }

  // -- what the app uses --

  /** Handle messages of channel label (null: the first channel): handler(bytes, label).
   *  One handler per label; a later call replaces it. Returns a function removing it. */
  onMessage(label, handler) {
    if (typeof label === "function") [label, handler] = [null, label];
    if (typeof handler !== "function") throw new TypeError(`onMessage needs a function, got ${typeName(handler)}`);
    const key = label ?? null; // null resolves to the first channel at delivery
    this._handlers.set(key, handler);
    return () => { if (this._handlers.get(key) === handler) this._handlers.delete(key); };
  }

  /** fn(session) each time every channel is open on both sides. */
  onOpen(fn) { return addHook(this._hooks.open, fn, "onOpen"); }

  /** fn(session, why) once when a channel or the peer connection dies while the
   *  WebSocket lives on (await session.renegotiate() starts over). */
  onClose(fn) { return addHook(this._hooks.close, fn, "onClose"); }

  /** Tell the server we are ready for an offer: call it from the stage before the rtc
   *  stages (e.g. once the scene is built), then return true. */
  async ready() {
    this._asked = true;
    this.conn.send(encode({ type: "READY" }));
  }

  /** Send on channel label (default: the first); false if dropped (see Channel.send). */
  send(data, label = null) {
    const channel = this.channels.get(label ?? this.specs[0]?.label);
    if (!channel) {
      asBytes(data); // a string is a bug even before the channel opens
      return false;
    }
    return channel.send(data);
  }

  /** The channel called label (default: the first); throws if it has not arrived. */
  channel(label = null) {
    const name = label ?? this.specs[0]?.label;
    const channel = this.channels.get(name);
    if (!channel) throw new RangeError(`channel '${name}' is not open yet (stage '${this.conn.current}')`);
    return channel;
  }

  /** Whether every channel of the offer is open. */
  get isOpen() {
    return this.pc !== null && this.channels.size === this.specs.length &&
      [...this.channels.values()].every((ch) => ch.isOpen);
  }

  /** Start over with a fresh offer: close the peer connection, go back to rtc_offer,
   *  send READY. Called on a server's RENEGOTIATE too. Does nothing before the rtc
   *  stages or while a fresh offer is already coming (so it is safe to call from
   *  onClose). From inside a stage handler, return false afterwards (true would advance
   *  from the handler's stage). */
  async renegotiate() {
    if (this._asked || this.conn.index < this._first) return;
    this._asked = true; // a second call meanwhile does nothing
    this._closePeer();
    this.conn.jump("rtc_offer");
    this.conn.send(encode({ type: "READY" }));
  }

  /** Close the peer connection (the WebSocket stays open). */
  /** Close the peer connection on purpose (the WebSocket stays open). The server is
   *  told with a BYE, so it closes its side too without taking it for a failure. */
  close(reason = "") {
    if (this.pc && this.conn.state === "open") {
      try { this.conn.send(encode({ type: "BYE", reason })); } catch (err) { /* closing */ }
    }
    this._closePeer();
  }

  // -- stages --

  async _rtcOffer(message) {
    const offer = this._expect(message, "OFFER");
    this._asked = false;
    this._closePeer();
    this.specs = offer.channels;
    const pc = this.pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this._lostReported = this._answered = this._openSent = false;
    const bySpec = new Map(this.specs.map((spec) => [spec.label, spec]));
    pc.addEventListener("datachannel", (event) => {
      const spec = bySpec.get(event.channel.label);
      if (!spec || spec.negotiated) {
        console.warn(`aiosocker: ignoring channel '${event.channel.label}': the offer did not announce it`);
        return;
      }
      this._attach(pc, event.channel, spec);
    });
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "failed") this._lost(pc, "the peer connection failed");
    });
    // docs/protocol.md: create the negotiated channels, then apply the offer.
    for (const spec of this.specs) {
      if (spec.negotiated) this._attach(pc, pc.createDataChannel(spec.label, channelOptions(spec)), spec);
    }
    try {
      await pc.setRemoteDescription({ type: "offer", sdp: offer.sdp });
      await pc.setLocalDescription(await pc.createAnswer());
    } catch (err) {
      if (pc !== this.pc) return false; // closed meanwhile (the connection ended)
      throw new SignalingError(`the offer SDP was rejected: ${err.message}`);
    }
    // No trickle: the answer carries every candidate gathered within gatherTimeout.
    this.gatherComplete = await iceGathered(pc, this.gatherTimeout);
    if (pc !== this.pc || this.conn.state !== "open") return false;
    this.conn.send(encode({ type: "ANSWER", sdp: pc.localDescription.sdp }));
    this._answered = true;
    this._checkOpen(pc);
    return true;
  }

  _rtcOpen(message) {
    this._expect(message, "OPEN");
    this.opened++;
    runHooks(this._hooks.open, this);
    return true;
  }

  // -- plumbing --

  _expect(frame, type) {
    const message = decode(frame); // SignalingError on garbage: the connection closes 4400
    if (message.type === type) return message;
    if (message.type === "ERROR") throw new SignalingError(`peer reported error ${message.code}: ${message.reason}`);
    throw new SignalingError(`expected ${type} in stage '${this.conn.current}', got ${message.type}`);
  }

  // Signaling outside the rtc stages: renegotiation, BYE, ERROR, or a protocol error.
  // App frames during the rtc stages wait for the stage after them.
  _intercept(frame) {
    const index = this.conn.index;
    const handshaking = index >= this._first && index <= this._last;
    if (!isSignaling(frame)) {
      if (!handshaking) return false;
      // An app message mid-handshake (e.g. a broadcast that crossed a renegotiation):
      // the stage after the rtc stages gets it once the channels are open, in order.
      // (A frame starting with ff 53 is signaling: garbage there still closes 4400.)
      this.conn.defer(frame);
      return true;
    }
    if (handshaking) {
      // Our READY crossed the server's RENEGOTIATE: the OFFER answering our READY
      // follows, so drop it. Anything else goes to the stage (and is checked there).
      return this._asked && decode(frame).type === "RENEGOTIATE";
    }
    const message = decode(frame);
    if (index < this._first) throw new SignalingError(`${message.type} before the rtc stages`);
    switch (message.type) {
      case "BYE":
        this._closePeer();
        return true;
      case "ERROR":
        console.warn(`aiosocker: peer reported error ${message.code}: ${message.reason}`);
        return true;
      case "RENEGOTIATE":
        this.renegotiate().catch((err) => this.conn._fail(err));
        return true;
      default:
        throw new SignalingError(`unexpected ${message.type} in stage '${this.conn.current}'`);
    }
  }

  _attach(pc, dc, spec) {
    const channel = new Channel(dc, spec, this, this.channelOptions);
    this.channels.set(spec.label, channel);
    // Events of a closed peer connection's channels are ignored: pc is no longer current.
    dc.addEventListener("open", () => this._checkOpen(pc));
    dc.addEventListener("close", () => this._lost(pc, `channel '${spec.label}' closed`));
    this._checkOpen(pc); // announced channels usually arrive already open
  }

  // The client sends OPEN once every channel of the offer is open on its side, and
  // never before its ANSWER.
  _checkOpen(pc) {
    if (pc !== this.pc || !this._answered || this._openSent || this.conn.state !== "open" || !this.isOpen) return;
    this._openSent = true;
    this.conn.send(encode({ type: "OPEN" }));
  }

  _handlerFor(label) {
    return this._handlers.get(label) ?? (label === this.specs[0]?.label ? this._handlers.get(null) : undefined);
  }

  _lost(pc, why) {
    if (pc !== this.pc || this._lostReported || this.conn.state !== "open") return;
    this._lostReported = true;
    runHooks(this._hooks.close, this, why);
  }

  _closePeer() {
    const pc = this.pc;
    this.pc = null;
    const channels = [...this.channels.values()];
    this.channels = new Map();
    for (const channel of channels) channel._pending = [];
    if (pc) pc.close(); // its channels close with it; their events are ignored (pc not current)
  }
}

/** The client side of socker's rtc flow. */
export const rtc = Object.freeze({
  /** Add the client's rtc stages (rtc_offer, rtc_open) to conn's chain, here; returns
   *  the RtcSession. Options: {iceServers = [], timeout = 5000 ms per stage, batch =
   *  true, gatherTimeout = 2000 ms, maxBuffered = 262144 bytes, maxFrame = 16384}. */
  clientStages(conn, options = {}) { return new RtcSession(conn, options); },
  RtcSession,
  Channel,
  STAGES: CLIENT_STAGES,
});
