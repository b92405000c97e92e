// hooks.js: lists of callbacks (onOpen, onClose, ...) shared by Connection and
// RtcSession. Internal: not part of the public API.

import { typeName } from "./bytes.js";

/** Add fn to list; returns a function that removes it. */
export function addHook(list, fn, what) {
  if (typeof fn !== "function") throw new TypeError(`${what} needs a function, got ${typeName(fn)}`);
  list.push(fn);
  return () => { const i = list.indexOf(fn); if (i >= 0) list.splice(i, 1); };
}

// Call fn(...args) without breaking the caller: an error it throws, or a promise it
// returns that rejects, is logged as "aiosocker: <what> failed".
export function callLogged(what, fn, ...args) {
  try {
    const result = fn(...args);
    if (result && typeof result.then === "function") result.then(undefined, (err) => console.error(`aiosocker: ${what} failed`, err));
  } catch (err) {
    console.error(`aiosocker: ${what} failed`, err);
  }
}

// Hooks must not break the caller: errors and rejected promises are logged.
export function runHooks(list, ...args) {
  for (const fn of [...list]) callLogged("hook", fn, ...args);
}
