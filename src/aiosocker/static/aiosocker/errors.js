// errors.js: the errors aiosocker.js throws and the close codes (aiosocker.errors).
// Imports nothing.

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

/** RangeError unless code is one a browser may close with: 1000 or 3000-4999.
 *  Internal: Connection.close and Reconnecting.stop check their code with it. */
export function checkCloseCode(code) {
  if (code !== 1000 && !(Number.isInteger(code) && code >= 3000 && code <= 4999)) {
    throw new RangeError(`a browser may close only with 1000 or 3000-4999, got ${code}`);
  }
}
