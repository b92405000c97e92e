// aiosocker.js: the browser client of socker. Dependency-free ES modules, no build step.
//
//   import * as aiosocker from "/aiosocker.js";        // every socker server serves it there
//   const conn = await aiosocker.connect("/");      // same host as the page, WebSocket path "/"
//   conn.stage("scene", async (message) => { ...; await rtc.ready(); return true; });
//   const rtc = aiosocker.rtc.clientStages(conn);    // adds the stages rtc_offer, rtc_open
//   conn.stage("play", (message) => false);       // the final stage stays
//   rtc.onMessage("game", (bytes) => { ... });
//
//   aiosocker.reconnecting("/", setup);           // or: a session that reconnects and
//                                                 // resumes by itself (reconnect.js)
//
// The model is Python's (docs/browser.md): a connection walks a chain of stages; the
// current stage's handler gets each binary message (a Uint8Array) and returns true
// (advance), false (stay) or a stage name (jump). Handlers may be async; messages are
// handled strictly one at a time, in order; conn.defer(message) hands one to the next
// stage entered. Timeouts here are in milliseconds.
//
// This file only gathers the public API of the modules beside it (served at
// /aiosocker/<name>.js), which mirror the Python modules; imports point one way only:
//
//   errors.js, bytes.js, hooks.js  <-  envelope.js, batch.js, stages.js  <-  connection.js  <-  rtc.js, reconnect.js
//
// Wire formats (docs/protocol.md) match aiosocker.rtc.envelope and aiosocker.rtc.batch byte
// for byte; tests/browser checks both directions against the Python codecs.

export {
  BatchError, CloseCode, ConnectionClosedError, OutOfStagesError, QueueFullError, SignalingError, SockerError,
  StageTimeoutError,
} from "./aiosocker/errors.js";
export { envelope } from "./aiosocker/envelope.js";
export { batch } from "./aiosocker/batch.js";
export { Connection, connect } from "./aiosocker/connection.js";
export { reconnecting } from "./aiosocker/reconnect.js";
export { Channel, RtcSession, rtc } from "./aiosocker/rtc.js";
