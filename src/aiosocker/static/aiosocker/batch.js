// batch.js: the DataChannel batching codec (aiosocker.rtc.batch; docs/protocol.md,
// section 5), making the same frames as Python's, with the PING/PONG control frames and
// Latest, the newest unsent message per key (latest-wins sending). Usable alone:
//
//   import { pack, unpack, control } from "/aiosocker/batch.js";

import { BatchError } from "./errors.js";
import { asBytes, concat, typeName } from "./bytes.js";

export const SINGLE = 0xb0; // one message, no length
export const BATCH = 0xb1;  // (varint length, message) repeated
export const PING = 0xb2;   // control: 8-byte id, which the peer echoes in a PONG
export const PONG = 0xb3;   // control: the 8-byte id of the PING it answers
export const CONTROL_SIZE = 9;
export const DEFAULT_MAX_LATEST = 1024; // keys Latest keeps a message for at most
export const DEFAULT_MAX_SIZE = 16 * 1024;
export const MAX_MAX_SIZE = 1 << 28; // batched lengths then fit the 4-byte varints receivers accept
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
export function pack(messages, maxSize = DEFAULT_MAX_SIZE) {
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
export function unpack(frame) {
  if (typeof frame === "string") throw new BatchError("got a text message; batch frames are binary");
  const data = asBytes(frame, "frame");
  if (data.length === 0) throw new BatchError("empty frame: a batch frame starts with a marker byte (b0 or b1)");
  if (data[0] === SINGLE) return [data.subarray(1)];
  if (data[0] === PING || data[0] === PONG) {
    throw new BatchError(`a ${CONTROL_NAMES[data[0]]} control frame (0x${data[0].toString(16)}) carries no messages`);
  }
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

// -- control frames: PING and PONG --

const CONTROL_NAMES = { [PING]: "PING", [PONG]: "PONG" };
const MAX_ID = (1n << 64n) - 1n;

function controlFrame(kind, id) {
  let value = id;
  if (typeof value === "number" && Number.isSafeInteger(value)) value = BigInt(value);
  if (typeof value !== "bigint") throw new TypeError(`a control frame's id is a bigint or a safe integer, got ${typeName(id)}`);
  if (value < 0n || value > MAX_ID) throw new RangeError(`a control frame's id is in 0..2**64-1, got ${value}`);
  const frame = new Uint8Array(CONTROL_SIZE);
  frame[0] = kind;
  new DataView(frame.buffer).setBigUint64(1, value);
  return frame;
}

/** A PING frame: b2 + id as 8 bytes, big-endian (the id means something to the sender
 *  only; socker's channels put their clock there, in microseconds). */
export function ping(id) { return controlFrame(PING, id); }

/** The PONG answering the PING with id: b3 + the same 8 bytes. */
export function pong(id) { return controlFrame(PONG, id); }

/** The control frame frame is, {type: "PING" | "PONG", kind, id: bigint}, or null if it
 *  is not one (unpack reads it); BatchError for a control marker followed by anything
 *  but exactly 8 bytes. */
export function control(frame) {
  if (typeof frame === "string") return null;
  const data = asBytes(frame, "frame");
  if (data.length === 0 || (data[0] !== PING && data[0] !== PONG)) return null;
  if (data.length !== CONTROL_SIZE) {
    throw new BatchError(`a ${CONTROL_NAMES[data[0]]} frame is ${CONTROL_SIZE} bytes (marker and 8-byte id), got ${data.length}`);
  }
  const id = new DataView(data.buffer, data.byteOffset, data.byteLength).getBigUint64(1);
  return { type: CONTROL_NAMES[data[0]], kind: data[0], id };
}

// -- latest-wins sending --

/** maxKeys of a Latest, checked: an integer >= 1 (RangeError naming it name). Internal:
 *  Channel's maxLatest setter checks with it too. */
export function checkMaxKeys(value, name = "maxKeys") {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be an integer >= 1, got ${value}`);
  return value;
}

const cost = (n) => n + (n < 0x80 ? 1 : n < 0x4000 ? 2 : varint(n).length);

/**
 * The newest unsent message per key, oldest key first (Python's aiosocker.rtc.batch.Latest).
 * put() keeps one message per key; a newer one replaces the older and keeps its key's
 * place in line. take() packs the oldest keys' messages into one frame and forgets them.
 * At most maxKeys keys wait: put() throws RangeError for a new key beyond that.
 */
export class Latest {
  constructor(maxKeys = DEFAULT_MAX_LATEST) {
    this.maxKeys = checkMaxKeys(maxKeys);
    this._messages = new Map(); // insertion order: a replaced value keeps its place
    this._bytes = 0;
  }

  get size() { return this._messages.size; }
  get pendingBytes() { return this._bytes; }
  get full() { return this._messages.size >= this.maxKeys; }
  has(key) { return this._messages.has(key); }

  /** Keep message as key's newest; true if it replaced an unsent one. */
  put(key, message) {
    const bytes = asBytes(message, "message");
    const old = this._messages.get(key);
    if (old === undefined) {
      if (this._messages.size >= this.maxKeys) throw new RangeError(`${this._messages.size} keys wait already (maxKeys)`);
      this._bytes += bytes.length;
      this._messages.set(key, bytes);
      return false;
    }
    this._bytes += bytes.length - old.length;
    this._messages.set(key, bytes);
    return true;
  }

  /** One frame (as pack() makes them) of the oldest keys' messages, which are
   *  forgotten; null if none wait. At least one message, as many as fit maxSize. */
  take(maxSize = DEFAULT_MAX_SIZE) {
    if (this._messages.size === 0) return null;
    const taken = [];
    let size = 1;
    for (const [key, message] of this._messages) {
      const c = cost(message.length);
      if (taken.length && size + c > maxSize) break;
      this._messages.delete(key);
      this._bytes -= message.length;
      taken.push(message);
      size += c;
    }
    return pack(taken, maxSize)[0]; // the same arithmetic as pack(): exactly one frame
  }

  /** Forget every waiting message; returns how many there were. */
  clear() {
    const count = this._messages.size;
    this._messages.clear();
    this._bytes = 0;
    return count;
  }
}

/** The DataChannel batching codec (docs/protocol.md, section 5). */
export const batch = Object.freeze({
  SINGLE, BATCH, PING, PONG, CONTROL_SIZE, DEFAULT_MAX_SIZE, MAX_MAX_SIZE, DEFAULT_MAX_LATEST,
  pack, unpack, ping, pong, control, Latest,
});
