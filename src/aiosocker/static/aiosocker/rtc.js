// rtc.js: the client side of socker's rtc stages (aiosocker.rtc.channel and
// aiosocker.rtc.session): Channel, one DataChannel; RtcSession, the peer connection of
// one Connection; and the rtc namespace with clientStages().

import { SignalingError } from "./errors.js";
import { asBytes, typeName } from "./bytes.js";
import { addHook, callLogged, runHooks } from "./hooks.js";
import { channelOptions, decode, encode, isReliable, isSignaling, rtcIceServers } from "./envelope.js";
import { DEFAULT_MAX_LATEST, DEFAULT_MAX_SIZE, Latest, checkMaxKeys, PING, PONG, control, pack, ping, pong, unpack } from "./batch.js";
import { Connection } from "./connection.js";

const MAX_OUTSTANDING = 64; // unanswered PING ids remembered (a PONG names one of them)
const MAX_THRESHOLD = 2 ** 32 - 1; // bufferedAmountLowThreshold's range

const nowUs = () => BigInt(Math.round(performance.now() * 1000));

function checkMs(name, value) {
  if (value === null) return null;
  if (typeof value !== "number" || !(value > 0) || value === Infinity) {
    throw new RangeError(`${name} must be a number of milliseconds > 0 (or null: off), got ${value}`);
  }
  return value;
}

/**
 * One DataChannel: send bytes (batched per task), receive bytes via the session's
 * onMessage handler for its label. sendLatest keeps only the newest unsent message per
 * key while the channel is congested. The channel pings its peer (PING/PONG control
 * frames, answered here and never passed to the application): rtt is the round trip,
 * and a peer that stops answering for channelTimeout ms closes the channel.
 */
export class Channel {
  constructor(dc, spec, session, {
    batch = true, maxFrame = DEFAULT_MAX_SIZE, maxBuffered = 256 * 1024,
    pingInterval = 2000, channelTimeout = 10000, maxLatest = DEFAULT_MAX_LATEST,
  } = {}) {
    /** The RTCDataChannel. */
    this.dc = dc;
    /** The options it was created with (as in the OFFER). */
    this.spec = spec;
    this.batch = batch;
    this.maxFrame = maxFrame;
    this._latest = new Latest(maxLatest);
    this.maxBuffered = maxBuffered;
    /** Milliseconds between PINGs while the peer answers (null: none from this side). */
    this.pingInterval = checkMs("pingInterval", pingInterval);
    /** Milliseconds without a PONG before the peer counts as gone (null: never). */
    this.channelTimeout = checkMs("channelTimeout", channelTimeout);
    /** Messages accepted by send() (and of sendLatest(), handed to the stack),
     *  delivered to the handler, and not sent (refused, or waiting when it closed). */
    this.sent = 0;
    this.received = 0;
    this.dropped = 0;
    /** Messages of sendLatest() replaced by a newer one for their key before they went. */
    this.staleDropped = 0;
    /** The last round trip a PING measured, in ms (null before the first). */
    this.rtt = null;
    this.pingsSent = 0;
    this.pongsReceived = 0;
    /** Why the channel closed (null while it has not). */
    this.closeReason = null;
    this._session = session;
    this._pending = [];
    this._flushScheduled = false;
    this._closed = false;
    // PING state: ids (our clock in us) not answered yet, oldest first; when the first
    // PING since the last PONG went; whether the peer speaks PING/PONG at all.
    this._outstanding = [];
    this._waitingSince = null;
    this._lastPing = -Infinity;
    this._armed = false;
    this._pingTimer = null;
    dc.binaryType = "arraybuffer";
    dc.addEventListener("message", (event) => this._receive(event.data));
    dc.addEventListener("bufferedamountlow", () => { if (this._latest.size && this.isOpen) this._scheduleFlush(); });
    dc.addEventListener("open", () => this._startPinging());
    dc.addEventListener("close", () => {
      this.closeReason ??= `channel '${this.label}' closed`;
      this._stop();
    });
    if (dc.readyState === "open") this._startPinging();
  }

  get label() { return this.spec.label; }
  get isOpen() { return !this._closed && this.dc.readyState === "open"; }
  get reliable() { return isReliable(this.spec); }
  /** Bytes queued in the WebRTC stack, not yet sent (not counting this task's batch). */
  get bufferedAmount() { return this.dc.bufferedAmount; }
  /** Bytes the stack may hold before the channel counts as congested: then send() drops
   *  (unreliable channels) and sendLatest() holds back. */
  get maxBuffered() { return this._maxBuffered; }
  set maxBuffered(value) {
    this._maxBuffered = value;
    // "bufferedamountlow" fires when bufferedAmount falls to this or below: the moment
    // sendLatest's waiting messages may go.
    this.dc.bufferedAmountLowThreshold = Math.min(Math.max(Math.floor(value), 0), MAX_THRESHOLD);
    if (this._latest.size) this._scheduleFlush();
  }
  /** Whether more than maxBuffered bytes wait in the WebRTC stack. */
  get congested() { return this.dc.bufferedAmount > this._maxBuffered; }
  /** Keys sendLatest keeps a waiting message for at most (1024). */
  get maxLatest() { return this._latest.maxKeys; }
  set maxLatest(value) {
    this._latest.maxKeys = checkMaxKeys(value, "maxLatest");
  }
  /** Keys whose newest message waits for the link to drain. */
  get latestPending() { return this._latest.size; }

  /**
   * Send one message; never blocks. Returns false if it was dropped: the channel is not
   * open, or (unreliable channels) more than maxBuffered bytes already wait, so this
   * update would arrive stale. Messages sent in one task go out in one frame at its end.
   */
  send(data) {
    const bytes = asBytes(data);
    if (!this.isOpen || (!this.reliable && this.dc.bufferedAmount > this._maxBuffered)) {
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
    this._scheduleFlush();
    return true;
  }

  /**
   * Send data as the newest state of key (latest wins); never blocks. While the channel
   * is congested, only the newest unsent message per key waits; an older one for the
   * same key is dropped and counted (staleDropped). When the stack drains
   * ("bufferedamountlow"), the waiting messages go, the longest-waiting key first.
   * Uncongested, the message goes at the end of the task (a newer one for the same key
   * within the task replaces it). Keys are Map keys: use strings or numbers. Returns
   * false if it was dropped at once: the channel is not open, or maxLatest other keys
   * wait already.
   */
  sendLatest(key, data) {
    const bytes = asBytes(data);
    if (!this.isOpen || (!this._latest.has(key) && this._latest.full)) {
      this.dropped++;
      return false;
    }
    if (this._latest.put(key, bytes.slice())) this.staleDropped++;
    this._scheduleFlush();
    return true;
  }

  /** Send what is batched now (done automatically at the end of the current task), then
   *  the messages of sendLatest, unless the channel is congested. */
  flush() {
    this._flushScheduled = false;
    const messages = this._pending;
    this._pending = [];
    if (!this.isOpen) return;
    if (messages.length) for (const frame of pack(messages, this.maxFrame)) this.dc.send(frame);
    // Oldest key first, a frame at a time, while the stack holds at most maxBuffered.
    const latest = this._latest;
    while (latest.size && !this.congested) {
      const before = latest.size;
      this.dc.send(latest.take(this.maxFrame));
      this.sent += before - latest.size;
    }
  }

  close() {
    this._stop();
    this.dc.close();
  }

  _scheduleFlush() {
    if (this._flushScheduled) return;
    this._flushScheduled = true;
    queueMicrotask(() => this.flush());
  }

  // Timers off; what waits is dropped (counted, for sendLatest's).
  _stop() {
    clearTimeout(this._pingTimer);
    this._pingTimer = null;
    this._pending = [];
    this.dropped += this._latest.clear();
  }

  // -- PING and PONG --

  _startPinging() {
    if (this.pingInterval !== null && this._pingTimer === null && !this._closed) {
      this._pingTimer = setTimeout(() => this._pingTick(), 0);
    }
  }

  _pingTick() {
    this._pingTimer = null;
    const interval = this.pingInterval;
    if (interval === null || !this.isOpen) return;
    const now = performance.now();
    const timeout = this.channelTimeout;
    const since = this._waitingSince;
    const deadline = since !== null && timeout !== null && this._armed ? since + timeout : null;
    if (deadline !== null && now >= deadline) {
      this._timedOut(now - since);
      return;
    }
    let delay;
    if (since === null && now < this._lastPing + interval) {
      delay = this._lastPing + interval - now; // answered: the next regular PING
    } else {
      this._sendPing(now);
      // Unanswered PINGs are repeated sooner: a few lost ones are no dead peer.
      delay = timeout === null ? interval : Math.min(interval, timeout / 8);
    }
    if (deadline !== null) delay = Math.min(delay, deadline - now);
    this._pingTimer = setTimeout(() => this._pingTick(), Math.max(delay, 0));
  }

  _sendPing(now) {
    let id = nowUs();
    const outstanding = this._outstanding;
    if (outstanding.length && id <= outstanding[outstanding.length - 1]) id = outstanding[outstanding.length - 1] + 1n;
    outstanding.push(id);
    if (outstanding.length > MAX_OUTSTANDING) outstanding.shift();
    this._lastPing = now;
    this._waitingSince ??= now;
    this.dc.send(ping(id));
    this.pingsSent++;
  }

  _control(data) {
    let message;
    try {
      message = control(data);
    } catch (err) {
      console.warn(`aiosocker: channel '${this.label}' dropped a malformed control frame: ${err.message}`);
      return;
    }
    if (!this._armed) {
      // The peer speaks PING/PONG: from now on, silence counts.
      this._armed = true;
      if (this._waitingSince !== null) this._waitingSince = performance.now();
    }
    if (message.kind === PING) {
      if (this.dc.readyState === "open") this.dc.send(pong(message.id));
      return;
    }
    const index = this._outstanding.indexOf(message.id);
    if (index < 0) return; // late (an older PING answered after a newer one) or not ours
    this._outstanding.splice(0, index + 1); // this PING and every older one: done
    this.pongsReceived++;
    this.rtt = Number(nowUs() - message.id) / 1000;
    // Still waiting for the PINGs sent after this one, if any (their id: their time).
    this._waitingSince = this._outstanding.length ? Number(this._outstanding[0]) / 1000 : null;
    this._session._measured(this.rtt);
  }

  _timedOut(silence) {
    this.closeReason = `channel '${this.label}' did not answer PINGs for ${(silence / 1000).toPrecision(3)} s (channelTimeout=${this.channelTimeout} ms)`;
    console.warn(`aiosocker: ${this.closeReason}: counting it as closed`);
    this._closed = true;
    this._stop();
    this._session._channelLost(this, this.closeReason);
    this.dc.close(); // the peer, if it still hears us, learns it too
  }

  _receive(data) {
    if (typeof data === "string") {
      console.warn(`aiosocker: channel '${this.label}' ignored a text message`);
      return;
    }
    const marker = data.byteLength ? new Uint8Array(data, 0, 1)[0] : -1;
    if (marker === PING || marker === PONG) {
      this._control(data);
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
    for (const message of messages) callLogged(`channel '${this.label}' handler`, handler, message, this.label);
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
    pingInterval = 2000, channelTimeout = 10000,
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
    this.channelOptions = {
      batch, maxFrame, maxBuffered,
      pingInterval: checkMs("pingInterval", pingInterval), channelTimeout: checkMs("channelTimeout", channelTimeout),
    };
    /** The last round trip a channel's PING measured, in ms (null before the first). */
    this.rtt = null;
    /** Why the onClose hooks last ran (null until they have). */
    this.closeReason = null;
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
    const channel = this.channels.get(this._labelOf(label));
    if (!channel) {
      asBytes(data); // a string is a bug even before the channel opens
      return false;
    }
    return channel.send(data);
  }

  /** Send data as the newest state of key on channel label (default: the first): while
   *  the link is congested only the newest unsent message per key waits (see
   *  Channel.sendLatest); false if dropped. */
  sendLatest(key, data, label = null) {
    const channel = this.channels.get(this._labelOf(label));
    if (!channel) {
      asBytes(data);
      return false;
    }
    return channel.sendLatest(key, data);
  }

  /** The channel called label (default: the first); throws if it has not arrived. */
  channel(label = null) {
    const name = this._labelOf(label);
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
    const frame = decode(message); // SignalingError on garbage: the connection closes 4400
    if (frame.type === "ICE_SERVERS") { // for the OFFER that follows
      this.offeredIceServers = rtcIceServers(frame.servers);
      return false;
    }
    const offer = this._expect(frame, "OFFER");
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
    this._expect(decode(message), "OPEN"); // SignalingError on garbage: the connection closes 4400
    this.opened++;
    runHooks(this._hooks.open, this);
    return true;
  }

  // -- plumbing --

  // The decoded signaling message, if it is of type; else SignalingError.
  _expect(message, type) {
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

  // A label, or null: the first channel of the offer.
  _labelOf(label) { return label ?? this.specs[0]?.label; }

  _handlerFor(label) {
    return this._handlers.get(label) ?? (label === this.specs[0]?.label ? this._handlers.get(null) : undefined);
  }

  _lost(pc, why) {
    if (pc !== this.pc || this._lostReported || this.conn.state !== "open") return;
    this._lostReported = true;
    this.closeReason = why;
    runHooks(this._hooks.close, this, why);
  }

  _channelLost(channel, why) {
    if (this.channels.get(channel.label) === channel) this._lost(this.pc, why);
  }

  _measured(rtt) { this.rtt = rtt; }

  _closePeer() {
    const pc = this.pc;
    this.pc = null;
    const channels = [...this.channels.values()];
    this.channels = new Map();
    for (const channel of channels) channel._stop();
    if (pc) pc.close(); // its channels close with it; their events are ignored (pc not current)
  }
}

/** The client side of socker's rtc flow. */
export const rtc = Object.freeze({
  /** Add the client's rtc stages (rtc_offer, rtc_open) to conn's chain, here; returns
   *  the RtcSession. Options: {iceServers = [], timeout = 5000 ms per stage, batch =
   *  true, gatherTimeout = 2000 ms, maxBuffered = 262144 bytes, maxFrame = 16384,
   *  iceTransportPolicy = "all", pingInterval = 2000 ms, channelTimeout = 10000 ms}. */
  clientStages(conn, options = {}) { return new RtcSession(conn, options); },
  RtcSession,
  Channel,
  STAGES: CLIENT_STAGES,
});
