// reconnect.js: reconnecting(), a session that outlives its connections: the browser's
// twin of Python's `async for conn in aiosocker.connect(url, setup)` (aiosocker.client).
//
//   const session = aiosocker.reconnecting("/", (conn) => {
//     conn.stage("lobby", (m) => true).stage("play", (m) => false);
//     conn.onResume((resumed) => { if (resumed) conn.jump("play"); });
//   });
//   session.onConnect((conn) => conn.send(hello));
//   session.stop();
//
// Each connection runs setup(conn) before it opens. After a connection ends, the next one
// resumes the session (?resume=TOKEN) when the close may resume (conn.mayResume), and
// starts a fresh one otherwise. Failures to open wait an exponential backoff with jitter;
// browsers hide why a handshake failed (a 403 and a dead server look the same), so
// instead of stopping on a refusal it stops after maxFailures failures in a row.

import { CloseCode, checkCloseCode, SockerError } from "./errors.js";
import { typeName } from "./bytes.js";
import { resumeToken as checkToken } from "./envelope.js";
import { addHook, runHooks } from "./hooks.js";
import { Connection, webSocketUrl } from "./connection.js";

/** Delays between attempts, in ms, as Python's Backoff (which uses seconds). */
const DEFAULT_BACKOFF = Object.freeze({ initial: 500, maximum: 30000, factor: 2, jitter: 0.5 });

/** A validated backoff: defaults filled in; RangeError as Python's Backoff. */
function backoffOf(backoff = {}) {
  if (backoff === null || typeof backoff !== "object") throw new TypeError(`backoff must be an object, got ${typeName(backoff)}`);
  const { initial, maximum, factor, jitter } = { ...DEFAULT_BACKOFF, ...backoff };
  for (const [name, value] of Object.entries({ initial, maximum, factor, jitter })) {
    if (typeof value !== "number" || Number.isNaN(value)) throw new TypeError(`backoff.${name} must be a number, got ${typeName(value)}`);
  }
  if (!(initial > 0 && initial <= maximum)) throw new RangeError(`backoff needs 0 < initial <= maximum, got initial ${initial}, maximum ${maximum}`);
  if (!(factor >= 1 && jitter >= 0 && jitter <= 1)) throw new RangeError(`backoff needs factor >= 1 and 0 <= jitter <= 1, got factor ${factor}, jitter ${jitter}`);
  return Object.freeze({ initial, maximum, factor, jitter });
}

/** An endless series of delays (ms): initial, growing by factor up to maximum, each
 *  shortened by up to jitter (a fraction) at random so clients don't reconnect in step. */
function* backoffDelays(backoff = {}, random = Math.random) {
  const { initial, maximum, factor, jitter } = backoffOf(backoff);
  let delay = initial;
  for (;;) {
    yield delay * (1 - jitter * random());
    delay = Math.min(delay * factor, maximum);
  }
}

/** A session that reconnects by itself; made by reconnecting(). */
export class Reconnecting {
  constructor(url = "/", setup = null, {
    backoff = {}, maxFailures = 10, resumeToken = null, ...options
  } = {}) {
    if (setup !== null && typeof setup !== "function") throw new TypeError(`setup must be a function, got ${typeName(setup)}`);
    if (!(maxFailures === Infinity || (Number.isInteger(maxFailures) && maxFailures >= 1))) {
      throw new RangeError(`maxFailures must be an integer of at least 1 or Infinity, got ${String(maxFailures)}`);
    }
    resumeToken ??= null;
    if (resumeToken !== null) checkToken(resumeToken);
    /** The resolved ws:// URL (without ?resume=). */
    this.url = webSocketUrl(url);
    this.setup = setup;
    this.backoff = backoffOf(backoff);
    /** Failures to open in a row after which it stops for good. */
    this.maxFailures = maxFailures;
    /** Options of each Connection (protocols, openTimeout, historyLimit, maxDeferred). */
    this.options = options;
    /** The token the next connection resumes with (null: a fresh session). */
    this.resumeToken = resumeToken;
    /** The current connection (or the last one), null before the first attempt. */
    this.conn = null;
    /** How many connections opened. */
    this.connections = 0;
    /** Attempts in a row that failed before the WebSocket opened. */
    this.failures = 0;
    /** Whether it has stopped for good (stop(), or it gave up: see error). */
    this.stopped = false;
    /** Why it gave up (null while running and after stop()). */
    this.error = null;
    this._hooks = { connect: [], stop: [] };
    this._wake = null;
    // Started in a microtask: setup may refer to the session reconnecting() returns.
    this._done = Promise.resolve().then(() => this._run());
  }

  /** fn(conn, session) each time a connection opens (conn.resumed is known once the
   *  RESUME frame arrives: use conn.onResume in setup). */
  onConnect(fn) { return addHook(this._hooks.connect, fn, "onConnect"); }

  /** fn(error, session) once it stops for good: error is null after stop(), else why
   *  it gave up (maxFailures failures to open in a row, or setup threw). */
  onStop(fn) { return addHook(this._hooks.stop, fn, "onStop"); }

  /** Stop reconnecting and close the current connection with code (1000 by default, or
   *  3000-4999) and reason; resolves once stopped. A 1000 close is final: the server
   *  does not keep the session. */
  stop(code = CloseCode.NORMAL, reason = "") {
    checkCloseCode(code);
    if (!this.stopped) {
      this.stopped = true;
      this._wake?.();
      if (this.conn !== null && !this.conn.closed) this.conn.close(code, reason);
    }
    return this._done;
  }

  async _run() {
    let error = null;
    try {
      error = await this._loop();
    } catch (err) {
      error = err;
    }
    this.stopped = true;
    this.error = error;
    if (error !== null && !this._hooks.stop.length) console.warn("aiosocker: stopped reconnecting", error);
    runHooks(this._hooks.stop, error, this);
  }

  // One connection after another until stopped; returns why it gave up (null: stop()).
  async _loop() {
    let delays = backoffDelays(this.backoff);
    let wait = 0;
    while (!this.stopped) {
      if (wait > 0) await this._sleep(wait);
      if (this.stopped) break;
      const conn = this.conn = new Connection(this.url, { ...this.options, resumeToken: this.resumeToken });
      if (this.setup !== null) {
        try {
          await this.setup(conn);
        } catch (err) {
          conn.close();
          return err; // a bug in the page: retrying would fail the same way
        }
        if (this.stopped) break;
      }
      try {
        await conn.open();
      } catch (err) {
        if (this.stopped) break;
        this.failures += 1;
        if (this.failures >= this.maxFailures) {
          return new SockerError(`gave up after ${this.failures} failed attempts in a row: ${err.message}`);
        }
        wait = delays.next().value;
        continue;
      }
      this.failures = 0;
      this.connections += 1;
      delays = backoffDelays(this.backoff); // a success resets the backoff
      runHooks(this._hooks.connect, conn, this);
      await conn.waitClosed();
      // Come back as the same session if the server keeps it for us: at once, since the
      // grace period runs; a fresh session after a final close waits a delay first.
      this.resumeToken = conn.mayResume ? conn.resumeToken : null;
      wait = this.resumeToken !== null ? 0 : delays.next().value;
    }
    return null;
  }

  _sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() { clearTimeout(timer); resolve(); }
      this._wake = done;
    }).finally(() => { this._wake = null; });
  }
}

/**
 * A session that outlives its connections, as Python's `async for conn in connect(url,
 * setup)`: setup(conn) builds each new Connection's chain and hooks before it opens;
 * after a connection ends, the next resumes the session when the close may resume.
 *
 * @param url ws(s):// URL, or a path or http(s) URL resolved against the page.
 * @param setup fn(conn), sync or async; throwing stops for good.
 * @param options {backoff: {initial = 500 ms, maximum = 30000 ms, factor = 2, jitter = 0.5},
 *   maxFailures = 10, resumeToken, and Connection's options}
 */
export function reconnecting(url = "/", setup = null, options = {}) {
  return new Reconnecting(url, setup, options);
}
