// rtc.js: the client side of socker's rtc stages (aiosocker.rtc.channel and
// aiosocker.rtc.session): Channel, one DataChannel; RtcSession, the peer connection of
// one Connection; and the rtc namespace with clientStages().

import { SignalingError } from "./errors.js";
import { asBytes, typeName } from "./bytes.js";
import { addHook, runHooks } from "./hooks.js";
import { channelOptions, decode, encode, isReliable, isSignaling, rtcIceServers } from "./envelope.js";
import { DEFAULT_MAX_SIZE, pack, unpack } from "./batch.js";
import { Connection } from "./connection.js";

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
    maxBuffered = 256 * 1024, maxFrame = DEFAULT_MAX_SIZE, iceTransportPolicy = "all",
  } = {}) {
    if (!(conn instanceof Connection)) throw new TypeError(`clientStages needs a socker Connection, got ${typeName(conn)}`);
    this.conn = conn;
    /** Passed to RTCPeerConnection as is; default none: no public STUN server unasked. */
    this.iceServers = iceServers;
    /** "all", or "relay": only TURN relay candidates (the players' addresses stay hidden). */
    this.iceTransportPolicy = iceTransportPolicy;
    /** The ICE servers the server sent for this handshake (ICE_SERVERS: e.g. TURN
     *  credentials minted for this player), used after iceServers. */
    this.offeredIceServers = [];
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
    this.offeredIceServers = [];
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
    this.offeredIceServers = [];
    this.conn.send(encode({ type: "READY" }));
  }

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
    const servers = decode(message); // SignalingError on garbage: the connection closes 4400
    if (servers.type === "ICE_SERVERS") { // for the OFFER that follows
      this.offeredIceServers = rtcIceServers(servers.servers);
      return false;
    }
    const offer = this._expect(message, "OFFER");
    this._asked = false;
    this._closePeer();
    this.specs = offer.channels;
    const pc = this.pc = new RTCPeerConnection({
      iceServers: [...this.iceServers, ...this.offeredIceServers],
      iceTransportPolicy: this.iceTransportPolicy,
    });
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
   *  true, gatherTimeout = 2000 ms, maxBuffered = 262144 bytes, maxFrame = 16384,
   *  iceTransportPolicy = "all"}. */
  clientStages(conn, options = {}) { return new RtcSession(conn, options); },
  RtcSession,
  Channel,
  STAGES: CLIENT_STAGES,
});
