// stages.js: the stage machine (aiosocker.stages), an ordered chain of message handlers
// with a cursor. It owns no socket, no queue and no timer: Connection feeds it messages,
// enforces its timeouts and runs its hooks. Usable alone:
//
//   import { Stages } from "/aiosocker/stages.js";
//   const stages = new Stages().add((m) => true, { name: "hello" }).add((m) => false, { name: "play" });
//   stages.settle(stages.index, stages.currentStage.handler(message));   // now in "play"
//
// A handler returns true (advance), false (stay) or the name of a stage (jump; naming the
// current stage re-enters it). Advancing past the last stage throws OutOfStagesError.

import { OutOfStagesError } from "./errors.js";
import { typeName } from "./bytes.js";

/** An ordered chain of stages and a cursor on the current one. */
export class Stages {
  /**
   * @param options {historyLimit = 256 entries kept, onEnter(entry): called on each stage
   *   entered, clock = performance.now}
   */
  constructor({ historyLimit = 256, onEnter = null, clock = () => performance.now() } = {}) {
    /** How many entries history keeps. */
    this.historyLimit = historyLimit;
    this._onEnter = onEnter;
    this._clock = clock;
    this._stages = [];
    this._byName = new Map();
    this._index = 0;
    this._history = [];
  }

  /** Append a stage running handler(message, ...); name defaults to handler.name,
   *  timeout is in ms (null: none; the owner of the clock enforces it). The first stage
   *  added is entered (via "start"). Returns this. */
  add(handler, { name = undefined, timeout = null } = {}) {
    if (typeof handler !== "function") throw new TypeError(`a stage handler must be a function, got ${typeName(handler)}`);
    name ??= handler.name;
    if (typeof name !== "string" || !name) throw new TypeError("give the stage a name: add(handler, {name}) or stage(name, handler)");
    if (this._byName.has(name)) throw new RangeError(`a stage named '${name}' already exists; stage names are unique`);
    if (timeout !== null && !(typeof timeout === "number" && timeout > 0)) {
      throw new RangeError(`timeout must be a positive number of milliseconds, got ${String(timeout)}`);
    }
    this._byName.set(name, this._stages.length);
    this._stages.push(Object.freeze({ name, handler, timeout }));
    if (this._stages.length === 1) this._enter(0, "start");
    return this;
  }

  /** Move to stage name. */
  jump(name) {
    const target = this._byName.get(name);
    if (target === undefined) throw new RangeError(`no stage named '${name}'; the stages are ${this.names.join(", ")}`);
    this._enter(target, "jump");
  }

  /** Apply what the handler of stage index returned: false stays, true advances, a
   *  stage name jumps. Throws OutOfStagesError past the last stage, RangeError for an
   *  unknown name, TypeError for anything else (the cursor does not move). */
  settle(index, result) {
    if (result === false) return;
    const name = this._stages[index].name;
    if (result === true) {
      if (index + 1 >= this._stages.length) throw new OutOfStagesError(name);
      this._enter(index + 1, "advance");
    } else if (typeof result === "string") {
      const target = this._byName.get(result);
      if (target === undefined) {
        throw new RangeError(`stage '${name}' returned '${result}', which names no stage; the stages are ${this.names.join(", ")}`);
      }
      this._enter(target, "jump");
    } else {
      throw new TypeError(`stage '${name}' returned ${typeof result === "object" ? typeName(result) : String(result)};` +
        " a handler returns true (advance), false (stay) or the name of a stage (jump)");
    }
  }

  /** The current stage ({name, handler, timeout}), null before any is added. */
  get currentStage() { return this._stages[this._index] ?? null; }

  /** Name of the current stage (null before any is added). */
  get current() { return this._stages[this._index]?.name ?? null; }

  /** Position of the current stage in the chain. */
  get index() { return this._index; }

  /** How many stages the chain has. */
  get length() { return this._stages.length; }

  /** Names of all stages, in order. */
  get names() { return this._stages.map((s) => s.name); }

  /** Stages entered, oldest first: {stage, index, at, via} (a copy). */
  get history() { return [...this._history]; }

  _enter(index, via) {
    this._index = index;
    const entry = Object.freeze({ stage: this._stages[index].name, index, at: this._clock(), via });
    this._history.push(entry);
    if (this._history.length > this.historyLimit) this._history.shift();
    if (this._onEnter !== null) this._onEnter(entry);
  }
}
