// envelope.js: the signaling envelope codec (aiosocker.rtc.envelope; docs/protocol.md,
// section 1), byte for byte as Python's. Usable alone:
//
//   import { encode, decode } from "/aiosocker/envelope.js";
//   const frame = encode({ type: "READY" });   // ff 53 01 01

import { SignalingError } from "./errors.js";
import { asBytes, concat, hex, typeName, u16, uint, utf8, utf8Decoder, utf8Encoder } from "./bytes.js";

export const MAGIC = Uint8Array.of(0xff, 0x53);
export const VERSION = 1;
export const MAX_SDP_SIZE = 64 * 1024;
export const MAX_TEXT_SIZE = 4096;
export const MAX_CHANNEL_ID = 65534;
export const MAX_TOKEN_SIZE = 256;
export const MAX_ICE_SERVERS = 8; // servers per ICE_SERVERS message, and URLs per server
export const MAX_ICE_FIELD = 1024; // bytes of a URL, user name or credential
const ICE_SCHEMES = ["stun:", "stuns:", "turn:", "turns:"];
const U16_MAX = 0xffff;
const HEADER_SIZE = 4; // magic (2), version (1), type (1)

/** The type byte of a signaling frame, by name. */
export const MessageType = Object.freeze({
  READY: 0x01, OFFER: 0x02, ANSWER: 0x03, CANDIDATE: 0x04,
  OPEN: 0x05, RENEGOTIATE: 0x06, ERROR: 0x07, BYE: 0x08, RESUME: 0x09, ICE_SERVERS: 0x0a,
});
const TYPE_NAMES = Object.fromEntries(Object.entries(MessageType).map(([k, v]) => [v, k]));
const typeHex = (n) => `0x${n.toString(16).padStart(2, "0")}`;
const TYPE_RANGE = `${typeHex(Math.min(...Object.values(MessageType)))}..${typeHex(Math.max(...Object.values(MessageType)))}`;

// Channel flag bits; each optional field has a presence bit, so 0 and "absent" differ.
const ORDERED = 0x01, NEGOTIATED = 0x02, HAS_RETRANSMITS = 0x04, HAS_LIFETIME = 0x08;
const CHANNEL_FLAGS = ORDERED | NEGOTIATED | HAS_RETRANSMITS | HAS_LIFETIME;
const HAS_MID = 0x01, HAS_MLINE_INDEX = 0x02;
const CANDIDATE_FLAGS = HAS_MID | HAS_MLINE_INDEX;
const RESUMED = 0x01; // RESUME flags: this connection took over an earlier session
const TOKEN = /^[A-Za-z0-9_-]+$/;

/** Check a RESUME token as Python's Resume does: 1-256 URL-safe ASCII characters
 *  (A-Z a-z 0-9 - _). Returns its bytes; TypeError or RangeError otherwise. */
export function resumeToken(token) {
  const data = utf8(token, "RESUME token", MAX_TOKEN_SIZE);
  if (!TOKEN.test(token)) throw new RangeError(`RESUME token must be 1-256 URL-safe characters, got ${JSON.stringify(token)}`);
  return data;
}

/**
 * A validated channel description (Python's ChannelSpec), with every field present and
 * null for "absent". Defaults make a UDP-like channel: unordered, maxRetransmits 0 (or,
 * when maxPacketLifeTime is given, no retransmit limit, since WebRTC allows only one).
 */
export function channelSpec(spec) {
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
export function validateChannels(channels) {
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

/** Check an ICE_SERVERS message's servers as Python's IceServers does: 1-8 servers,
 *  each {urls: string | string[] (1-8 stun:/stuns:/turn:/turns: URLs), username?,
 *  credential?}. Returns them as {urls: string[], username, credential}, an empty or
 *  missing user name or credential as null; TypeError or RangeError otherwise. */
export function iceServers(servers) {
  if (!Array.isArray(servers)) throw new TypeError(`ICE_SERVERS servers must be an array, got ${typeName(servers)}`);
  if (servers.length < 1 || servers.length > MAX_ICE_SERVERS) {
    throw new RangeError(`ICE_SERVERS carries 1 to ${MAX_ICE_SERVERS} servers, not ${servers.length}`);
  }
  return servers.map((server, index) => {
    const what = `ICE server ${index + 1}`;
    if (server === null || typeof server !== "object") throw new TypeError(`${what} must be an object, got ${typeName(server)}`);
    const urls = typeof server.urls === "string" ? [server.urls] : server.urls;
    if (!Array.isArray(urls)) throw new TypeError(`${what} urls must be a string or an array, got ${typeName(server.urls)}`);
    if (urls.length < 1 || urls.length > MAX_ICE_SERVERS) throw new RangeError(`${what} has ${urls.length} URLs; 1 to ${MAX_ICE_SERVERS} fit`);
    for (const url of urls) {
      if (utf8(url, `${what} URL`, MAX_ICE_FIELD).length === 0 || !ICE_SCHEMES.some((s) => url.startsWith(s))) {
        throw new RangeError(`${what} URL '${url}' is not a stun:, stuns:, turn: or turns: URL`);
      }
    }
    const fields = ["username", "credential"].map((name) => {
      const value = server[name] ?? null;
      if (value !== null) utf8(value, `${what} ${name}`, MAX_ICE_FIELD);
      return value || null; // "" is absent: one encoding per message
    });
    return Object.freeze({ urls: [...urls], username: fields[0], credential: fields[1] });
  });
}

/** ICE servers as RTCPeerConnection takes them: absent fields left out (WebIDL would
 *  turn a null user name into "null"). */
export function rtcIceServers(servers) {
  return servers.map(({ urls, username, credential }) => {
    const server = { urls: [...urls] };
    if (username !== null) server.username = username;
    if (credential !== null) server.credential = credential;
    return server;
  });
}

/** Options for RTCPeerConnection.createDataChannel(label, options): absent fields left
 *  out (WebIDL would turn a null maxRetransmits into 0). */
export function channelOptions(spec) {
  const options = { ordered: spec.ordered, protocol: spec.protocol, negotiated: spec.negotiated };
  if (spec.maxRetransmits !== null) options.maxRetransmits = spec.maxRetransmits;
  if (spec.maxPacketLifeTime !== null) options.maxPacketLifeTime = spec.maxPacketLifeTime;
  if (spec.id !== null) options.id = spec.id;
  return options;
}

export function isReliable(spec) { return spec.maxRetransmits === null && spec.maxPacketLifeTime === null; }

function sdpBytes(sdp, kind) {
  const data = utf8(sdp, `${kind} SDP`, MAX_SDP_SIZE);
  if (data.length === 0) throw new RangeError(`${kind} SDP must not be empty`);
  return data;
}

function field(text) {
  const data = utf8Encoder.encode(text ?? "");
  return concat([u16(data.length), data]);
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
 *   {type: "RESUME", token, resumed?: boolean, freshReason?: string}   (server -> client)
 *   {type: "ICE_SERVERS", servers: [{urls, username?, credential?}]}   (server -> client)
 * Invalid fields throw TypeError or RangeError, so it never makes a frame the peer rejects.
 */
export function encode(message) {
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
    case "RESUME": {
      const { token, resumed = false, freshReason = "" } = message;
      if (typeof resumed !== "boolean") throw new TypeError(`RESUME resumed must be a boolean, got ${typeName(resumed)}`);
      const bytes = resumeToken(token);
      payload = [Uint8Array.of(resumed ? RESUMED : 0), u16(bytes.length), bytes, utf8(freshReason, "RESUME reason", MAX_TEXT_SIZE)];
      break;
    }
    case "ICE_SERVERS": {
      const servers = iceServers(message.servers);
      payload = [Uint8Array.of(servers.length)];
      for (const { urls, username, credential } of servers) {
        payload.push(Uint8Array.of(urls.length), ...urls.map(field), field(username), field(credential));
      }
      break;
    }
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
  RESUME(r) {
    const flags = r.take(1, "flags")[0];
    if (flags & ~RESUMED) throw r.fail(`flags sets unknown bits 0x${(flags & ~RESUMED).toString(16).padStart(2, "0")}`);
    const size = r.u16("token size");
    const token = r.text(r.take(size, "token"), "token", MAX_TOKEN_SIZE);
    const freshReason = r.rest("reason", MAX_TEXT_SIZE);
    try {
      resumeToken(token);
    } catch (err) {
      throw r.fail(err.message);
    }
    return { type: "RESUME", token, resumed: Boolean(flags & RESUMED), freshReason };
  },
  ICE_SERVERS(r) {
    const count = r.take(1, "server count")[0];
    if (count < 1 || count > MAX_ICE_SERVERS) throw r.fail(`server count ${count}; 1 to ${MAX_ICE_SERVERS} fit`);
    const servers = [];
    for (let i = 0; i < count; i++) {
      const where = `server ${i + 1} of ${count}`;
      const urls = r.take(1, `${where} URL count`)[0];
      if (urls < 1 || urls > MAX_ICE_SERVERS) throw r.fail(`${where} has ${urls} URLs; 1 to ${MAX_ICE_SERVERS} fit`);
      const names = [...Array.from({ length: urls }, (_, u) => `URL ${u + 1}`), "username", "credential"];
      const texts = names.map((name) => {
        const what = `${where} ${name}`;
        return r.text(r.take(r.u16(`${what} length`), what), what, MAX_ICE_FIELD);
      });
      const credential = texts.pop(), username = texts.pop();
      servers.push({ urls: texts, username, credential });
    }
    r.end();
    try {
      return { type: "ICE_SERVERS", servers: iceServers(servers) };
    } catch (err) {
      throw r.fail(err.message); // an empty URL, or another scheme
    }
  },
};

/** Whether a binary frame is signaling (starts with ff 53) rather than an app message. */
export function isSignaling(frame) {
  const data = asBytes(frame, "frame");
  return data.length >= 2 && data[0] === MAGIC[0] && data[1] === MAGIC[1];
}

/** The message in a signaling frame; throws SignalingError naming what is wrong. */
export function decode(frame) {
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
    throw new SignalingError(`unknown signaling message type ${typeHex(data[3])}; version ${VERSION} has ${TYPE_RANGE}`);
  }
  return DECODERS[kind](new Reader(data, kind));
}

/** The signaling envelope codec (docs/protocol.md, section 1). */
export const envelope = Object.freeze({
  MAGIC, VERSION, MAX_SDP_SIZE, MAX_TEXT_SIZE, MAX_CHANNEL_ID, MAX_TOKEN_SIZE, MAX_ICE_SERVERS,
  MAX_ICE_FIELD, MessageType, encode, decode, isSignaling, channelSpec, validateChannels,
  channelOptions, iceServers, rtcIceServers,
});
