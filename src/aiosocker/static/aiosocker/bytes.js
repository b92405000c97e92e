// bytes.js: bytes, UTF-8 text and value checks shared by the other modules. Internal:
// not part of the public API (/aiosocker.js does not re-export it). Imports nothing.

export const utf8Encoder = new TextEncoder();
export const utf8Decoder = new TextDecoder("utf-8", { fatal: true }); // bad UTF-8 throws, as in Python

/** A Uint8Array view of bytes; strings are refused (aiosocker is binary only). */
export function asBytes(data, what = "data") {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (typeof data === "string") {
    throw new TypeError(`${what} must be bytes, got a string: aiosocker is binary only` +
      " (encode text first, e.g. new TextEncoder().encode(text))");
  }
  throw new TypeError(`${what} must be a Uint8Array, ArrayBuffer or ArrayBufferView, got ${typeName(data)}`);
}

export function typeName(value) {
  if (value === null) return "null";
  if (typeof value === "object") return value.constructor?.name ?? "object";
  return typeof value;
}

export function concat(parts, size) {
  const out = new Uint8Array(size ?? parts.reduce((n, p) => n + p.length, 0));
  let pos = 0;
  for (const part of parts) { out.set(part, pos); pos += part.length; }
  return out;
}

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
}

/** UTF-8 of a string, checked like Python's str.encode(): no lone surrogates, size limit. */
export function utf8(value, what, limit) {
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

export function uint(value, what, maximum) {
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new TypeError(`${what} must be an integer, got ${typeName(value)} ${String(value)}`);
  }
  if (value < 0) throw new RangeError(`${what} must not be negative, got ${value}`);
  if (value > maximum) throw new RangeError(`${what} must be at most ${maximum}, got ${value}`);
  return value;
}

export function u16(n) { return Uint8Array.of(n >> 8, n & 0xff); }
