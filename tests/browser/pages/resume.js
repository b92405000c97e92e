// The page side of tests/browser/test_browser_resume.py, loaded into the flow page with
// `await import("/resume.js")`: a game client on aiosocker.reconnecting(). Stage "lobby"
// waits for the server's "welcome", stage "game" records what arrives; a resumed
// connection jumps straight to "game" (the server kept its stage), a fresh one says its
// name. Everything observed lands on window.resume.

import * as aiosocker from "/aiosocker.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

let gate = null; // while set, setup waits: the page stays away from the server

/** Hold the next connection before it opens, until release(). */
export function hold() {
  let open;
  gate = new Promise((resolve) => { open = resolve; });
  gate.open = open;
}

export function release() {
  const opened = gate;
  gate = null;
  opened?.open();
}

export function start(name, url = "/", options = {}) {
  const r = window.resume = {
    got: [], resumed: [], closes: [], connects: [], stops: [], urls: [], histories: [],
  };
  const session = window.session = aiosocker.reconnecting(url, async (conn) => {
    r.urls.push(conn.url);
    if (gate) await gate;
    conn.stage("lobby", (message) => {
      const text = decoder.decode(message);
      r.got.push(text);
      return text === "welcome";
    });
    conn.stage("game", (message) => {
      r.got.push(decoder.decode(message));
      return false;
    });
    conn.onResume((resumed) => {
      r.resumed.push(resumed);
      if (resumed) conn.jump("game"); // where the server is
      else conn.send(encoder.encode(name)); // a fresh session starts in the lobby
    });
    conn.onClose((code, reason, c) => {
      r.closes.push({ code, reason, mayResume: c.mayResume, token: c.resumeToken !== null });
      r.histories.push(c.history.map((entry) => `${entry.via}:${entry.stage}`));
    });
  }, { backoff: { initial: 50, maximum: 200 }, ...options });
  session.onConnect((conn, s) => r.connects.push({ connections: s.connections, failures: s.failures }));
  session.onStop((error) => r.stops.push(error === null ? null : `${error.name}: ${error.message}`));
  return session.url;
}

export function send(text) { window.session.conn.send(encoder.encode(text)); }
