// connection.js: Connection, one WebSocket walking a chain of stages, and connect()
// (aiosocker.connection). The chain itself is stages.js; this module owns the socket,
// the message queue, the stage timers, the hooks and the session's resume token.

import {
  CloseCode, checkCloseCode, ConnectionClosedError, OutOfStagesError, QueueFullError, SignalingError, SockerError, StageTimeoutError,
} from "./errors.js";
import { asBytes, typeName, utf8Encoder } from "./bytes.js";
import { MessageType, VERSION, decode as decodeSignaling, isSignaling, resumeToken as checkToken } from "./envelope.js";
import { addHook, runHooks } from "./hooks.js";
import { Stages } from "./stages.js";

/** The query parameter a reconnecting client puts its token in (aiosocker.resume.QUERY_KEY). */
const RESUME_QUERY_KEY = "resume";

/** Close codes after which a session may be resumed (aiosocker.connection.RESUMABLE);
 *  also 1011 with the reason "keepalive ping timeout". */
const RESUMABLE = Object.freeze([CloseCode.GOING_AWAY, CloseCode.ABNORMAL]);
const KEEPALIVE = "keepalive ping timeout";

/** Cut a close reason to the 123 bytes of UTF-8 a close frame carries. */
function truncateReason(reason) {
  const data = utf8Encoder.encode(reason);
  if (data.length <= 123) return reason;
  // Decoding a cut multi-byte character yields U+FFFD; drop it.
  return new TextDecoder().decode(data.subarray(0, 120)).replace(/\uFFFD$/, "") + "...";
}

/** ws:// URL for url, resolved against the page: "/" is the page's own server. With a
 *  resume token, ?resume=TOKEN is added (or replaces one already there). */
export function webSocketUrl(url, resumeToken = null) {
  const base = typeof location === "undefined" ? undefined : location.href;
  const resolved = new URL(url, base);
  if (resolved.protocol === "http:") resolved.protocol = "ws:";
  else if (resolved.protocol === "https:") resolved.protocol = "wss:";
  if (resolved.protocol !== "ws:" && resolved.protocol !== "wss:") {
    throw new SyntaxError(`a socker URL is ws://, wss://, http://, https:// or a path, got ${url}`);
  }
  if (resumeToken !== null) resolved.searchParams.set(RESUME_QUERY_KEY, resumeToken);
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
   * @param options {protocols, openTimeout = 10000 ms, historyLimit = 256, maxDeferred = 1024,
   *   resumeToken: an earlier connection's conn.resumeToken, to resume that session}
   */
  constructor(url = "/", {
    protocols = undefined, openTimeout = 10000, historyLimit = 256, maxDeferred = 1024, resumeToken = null,
  } = {}) {
    if (!Number.isInteger(maxDeferred) || maxDeferred < 1) {
      throw new RangeError(`maxDeferred must be an integer of at least 1, got ${String(maxDeferred)}`);
    }
    resumeToken ??= null;
    if (resumeToken !== null) checkToken(resumeToken);
    this.url = webSocketUrl(url, resumeToken);
    this.protocols = protocols;
    this.openTimeout = openTimeout;
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
    /** The token to resume this session with (from the server's RESUME frame; null
     *  until it arrives, and with a server without resume=). */
    this.resumeToken = null;
    /** Whether this connection took over the session it asked for (RESUME frame). */
    this.resumed = false;
    this._first = true;
    this._chain = new Stages({ historyLimit, onEnter: (entry) => this._entered(entry) });
    this._inbox = [];
    this._deferred = [];
    this._pumping = false;
    this._timer = null;
    this._intercept = null;
    this._closeSent = null;
    this._opened = false;
    this._opening = null;
    this._hooks = { open: [], close: [], error: [], stage: [], resume: [] };
    this._closed = new Promise((resolve) => { this._resolveClosed = resolve; });
  }

  // -- the chain --

  /** Append a stage running handler(message, conn); name defaults to handler.name,
   *  timeout (ms) closes with 4408 when the stage lasts longer. Returns this. */
  add(handler, { name = undefined, timeout = null } = {}) {
    this._chain.add(handler, { name, timeout }); // the first stage added is entered
    if (this._chain.length === 1 && this._inbox.length) this._pump(); // messages that came before any stage
    return this;
  }

  /** add() with the name first, for arrow functions: conn.stage("play", (m) => false). */
  stage(name, handler, { timeout = null } = {}) {
    return this.add(handler, { name, timeout });
  }

  /** Move to stage name from outside a handler (e.g. a timer, a dead channel). */
  jump(name) { this._chain.jump(name); }

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
  get current() { return this._chain.current; }

  /** Position of the current stage in the chain. */
  get index() { return this._chain.index; }

  /** Names of all stages, in order. */
  get names() { return this._chain.names; }

  /** Stages entered, oldest first: {stage, index, at: performance.now(), via}. */
  get history() { return this._chain.history; }

  /** How many entries history keeps. */
  get historyLimit() { return this._chain.historyLimit; }
  set historyLimit(limit) { this._chain.historyLimit = limit; }

  get closed() { return this.state === "closed"; }

  /** Bytes queued in the WebSocket, not yet sent. */
  get bufferedAmount() { return this.socket?.bufferedAmount ?? 0; }

  /** Whether this session may be resumed now that the connection has ended: the server
   *  has resume= (a token came) and the end was not final (1006: the peer vanished;
   *  1001: going away; 1011 "keepalive ping timeout"). As Python's Connection.may_resume;
   *  useful in onClose hooks. */
  get mayResume() {
    return this.resumeToken !== null && (RESUMABLE.includes(this.closeCode) ||
      (this.closeCode === CloseCode.INTERNAL_ERROR && this.closeReason === KEEPALIVE));
  }

  // -- hooks (each returns a function that removes it) --

  /** fn(conn) once the WebSocket is open. */
  onOpen(fn) { return addHook(this._hooks.open, fn, "onOpen"); }
  /** fn(code, reason, conn) once when the connection ends (after it was open). */
  onClose(fn) { return addHook(this._hooks.close, fn, "onClose"); }
  /** fn(error, conn) when a handler throws or a stage times out (the connection closes). */
  onError(fn) { return addHook(this._hooks.error, fn, "onError"); }
  /** fn(entry, conn) on each stage entered; entry is as in history. */
  onStage(fn) { return addHook(this._hooks.stage, fn, "onStage"); }
  /** fn(resumed, conn) when a server with resume= sends its RESUME frame (the first
   *  frame, before any message reaches the stages): resumed says whether this connection
   *  took over the session it asked for, at the stage the server had reached; jump
   *  the chain to match there. Never called by a server without resume=. */
  onResume(fn) { return addHook(this._hooks.resume, fn, "onResume"); }

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
    checkCloseCode(code);
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
    const message = new Uint8Array(data);
    if (this._first) {
      this._first = false;
      if (this._takeResume(message)) return;
    }
    this._inbox.push(message);
    this._pump();
  }

  // The first frame from a server with resume= is RESUME: consumed here, never seen by
  // the stages. A frame that is not one (or is malformed) goes to the chain as usual,
  // as in Python's take_resume.
  _takeResume(message) {
    if (!isSignaling(message) || message.length < 4 || message[2] !== VERSION || message[3] !== MessageType.RESUME) {
      return false;
    }
    let frame;
    try {
      frame = decodeSignaling(message);
    } catch (err) {
      if (err instanceof SignalingError) return false; // not ours to judge: the chain sees it
      throw err;
    }
    this.resumeToken = frame.token;
    this.resumed = frame.resumed;
    if (frame.freshReason) console.info(`aiosocker: the server started a fresh session: ${frame.freshReason}`);
    runHooks(this._hooks.resume, frame.resumed, this);
    return true;
  }

  // Handle queued messages one at a time, in order. Sync handlers run inline; an async
  // handler is awaited before the next message is handed over.
  async _pump() {
    if (this._pumping) return;
    this._pumping = true;
    try {
      while (this._inbox.length && this._chain.length && this.state === "open") {
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
      index = this._chain.index; // after intercept, which may have jumped
      result = this._chain.currentStage.handler(message, this);
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
    this._chain.settle(index, result); // enters the next stage (via _entered) or throws
  }

  // The chain entered a stage (start, advance or jump): restart its timer, replay what
  // was deferred, tell the onStage hooks.
  _entered(entry) {
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
    const stage = this._chain.currentStage;
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
 *  that arrive before the first stage exists wait for it. options.resumeToken (an
 *  earlier conn.resumeToken) asks the server for that session back. */
export async function connect(url = "/", options = {}) {
  const { setup, ...rest } = options;
  const conn = new Connection(url, rest);
  if (setup) await setup(conn);
  return conn.open();
}
