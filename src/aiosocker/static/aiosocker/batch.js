// batch.js: the DataChannel batching codec (aiosocker.rtc.batch; docs/protocol.md,
// section 5), making the same frames as Python's. Usable alone:
//
//   import { pack, unpack } from "/aiosocker/batch.js";

import { BatchError } from "./errors.js";
import { asBytes, concat, typeName } from "./bytes.js";

export const SINGLE = 0xb0; // one message, no length
export const BATCH = 0xb1;  // (varint length, message) repeated
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
