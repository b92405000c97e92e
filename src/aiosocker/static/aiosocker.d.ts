// Types for aiosocker.js, the browser client of socker (served at /aiosocker.js and
// /aiosocker.d.ts by every socker server). Timeouts are in milliseconds.
//
// These declare the public API of the entry, /aiosocker.js. It gathers the modules it
// imports from /aiosocker/ (errors.js, envelope.js, batch.js, connection.js, reconnect.js,
// rtc.js, and the internal bytes.js, hooks.js, stages.js); each section below names its
// module.

// -- errors and close codes (aiosocker/errors.js) --

/** Base class of the errors aiosocker.js throws on purpose. */
export declare class SockerError extends Error {}
/** A signaling frame was malformed or out of order (the connection closes with 4400). */
export declare class SignalingError extends SockerError {}
/** A received DataChannel frame is not a valid batch frame. */
export declare class BatchError extends SockerError {}
/** A stage's timeout expired (the connection closes with 4408). */
export declare class StageTimeoutError extends SockerError {
  constructor(stage: string, timeout: number);
  readonly stage: string;
  /** Milliseconds. */
  readonly timeout: number;
}
/** A handler returned true in the last stage. */
export declare class OutOfStagesError extends SockerError {
  constructor(stage: string);
  readonly stage: string;
}
/** More than maxDeferred messages were deferred (from a handler: the connection closes
 *  with 4011). */
export declare class QueueFullError extends SockerError {}
/** send() on a connection that is not open. */
export declare class ConnectionClosedError extends SockerError {
  constructor(code: number | null, reason: string);
  readonly code: number | null;
  readonly reason: string;
}

/** Close codes. Browsers may only send 1000 and 3000-4999: where Python sends 1003 and
 *  1011, aiosocker.js sends 4003 and 4011. */
export declare const CloseCode: {
  readonly NORMAL: 1000;
  readonly GOING_AWAY: 1001;
  readonly UNSUPPORTED_DATA: 1003;
  readonly ABNORMAL: 1006;
  readonly MESSAGE_TOO_BIG: 1009;
  readonly INTERNAL_ERROR: 1011;
  readonly CLIENT_UNSUPPORTED_DATA: 4003;
  readonly CLIENT_ERROR: 4011;
  readonly BAD_SIGNALING: 4400;
  readonly STAGE_TIMEOUT: 4408;
};

/** What aiosocker.js accepts as bytes (strings are refused: aiosocker is binary only). */
export type Bytes = Uint8Array | ArrayBuffer | ArrayBufferView;

// -- stages and the connection (aiosocker/stages.js, aiosocker/connection.js) --

/** What a handler returns: true (advance), false (stay) or a stage name (jump). */
export type StageResult = boolean | string;
/** A stage handler, sync or async. The message is a view the handler may keep. */
export type StageHandler = (message: Uint8Array, conn: Connection) => StageResult | Promise<StageResult>;

/** A record of Connection.history: the connection entered `stage`. */
export interface HistoryEntry {
  readonly stage: string;
  readonly index: number;
  /** performance.now() when entered. */
  readonly at: number;
  readonly via: "start" | "advance" | "jump";
}

export interface ConnectionOptions {
  /** WebSocket subprotocols. */
  protocols?: string | string[];
  /** Milliseconds the WebSocket handshake may take (default 10000). */
  openTimeout?: number;
  /** Entries kept in history (default 256). */
  historyLimit?: number;
  /** Messages that may wait in defer() at once (default 1024); one more throws
   *  QueueFullError. */
  maxDeferred?: number;
  /** An earlier connection's resumeToken: the URL gets ?resume=TOKEN and a server with
   *  resume= gives that session back (within its grace period; once). */
  resumeToken?: string | null;
}

export interface ConnectOptions extends ConnectionOptions {
  /** Called before the socket opens: add stages and hooks here. */
  setup?: (conn: Connection) => void | Promise<void>;
}

export interface Closed {
  code: number;
  reason: string;
}

export type ConnectionState = "new" | "connecting" | "open" | "closing" | "closed";

/** Removes the hook it was returned for. */
export type Unsubscribe = () => void;

/** One WebSocket connection and its chain of stages. */
export declare class Connection {
  /** @param url ws(s):// URL, or a path or http(s) URL resolved against the page
   *  (default "/": the page's own server). */
  constructor(url?: string, options?: ConnectionOptions);
  /** The resolved ws:// or wss:// URL. */
  readonly url: string;
  /** The WebSocket subprotocols open() passes (options.protocols). */
  readonly protocols: string | string[] | undefined;
  /** Milliseconds the WebSocket handshake may take (options.openTimeout). */
  readonly openTimeout: number;
  /** The WebSocket, once open() was called. */
  readonly socket: WebSocket | null;
  readonly state: ConnectionState;
  /** How the connection ended (null while open), and why. */
  readonly closeCode: number | null;
  readonly closeReason: string;
  /** The error that made aiosocker.js close the connection, if one did. */
  readonly error: unknown;
  /** How many messages may wait in defer() at once. */
  readonly maxDeferred: number;
  /** The token to resume this session with, from the server's RESUME frame (null until
   *  it arrives, and always with a server without resume=). */
  readonly resumeToken: string | null;
  /** Whether this connection took over the session it asked for (RESUME frame). */
  readonly resumed: boolean;
  /** Whether the session may be resumed now that the connection has ended: a token
   *  came and the close was 1001, 1006 or 1011 "keepalive ping timeout". */
  readonly mayResume: boolean;

  /** Append a stage; the name defaults to handler.name. Returns this (chainable). */
  add(handler: StageHandler, options?: { name?: string; timeout?: number | null }): this;
  /** Append a stage, name first: conn.stage("play", (m) => false). Returns this. */
  stage(name: string, handler: StageHandler, options?: { timeout?: number | null }): this;
  /** Move to a stage from outside a handler. */
  jump(name: string): void;
  /** From a handler or intercept: hand message to the next stage entered instead of
   *  this one. On the next stage change (a handler's return or jump()) deferred messages
   *  are delivered first, in order, before anything newer; a message deferred again
   *  waits for the change after that. At most maxDeferred wait: one more throws
   *  QueueFullError (from a handler, the connection closes with 4011). The rtc stages
   *  defer app frames that arrive during the handshake. */
  defer(message: Bytes): void;
  /** Run fn on each message before the stages; true means consumed. One per
   *  connection (rtc.clientStages uses it); null removes it. */
  intercept(fn: ((message: Uint8Array) => boolean) | null): void;

  /** Name of the current stage (null before any stage is added). */
  readonly current: string | null;
  /** Position of the current stage. */
  readonly index: number;
  /** Names of all stages, in order. */
  readonly names: string[];
  /** Stages entered, oldest first (a copy). */
  readonly history: HistoryEntry[];
  /** How many entries history keeps. */
  historyLimit: number;
  readonly closed: boolean;
  /** Bytes queued in the WebSocket. */
  readonly bufferedAmount: number;

  onOpen(fn: (conn: Connection) => void): Unsubscribe;
  onClose(fn: (code: number, reason: string, conn: Connection) => void): Unsubscribe;
  onError(fn: (error: unknown, conn: Connection) => void): Unsubscribe;
  onStage(fn: (entry: HistoryEntry, conn: Connection) => void): Unsubscribe;
  /** When a server with resume= sends its RESUME frame (the first frame, before any
   *  message reaches the stages): resumed says whether the session came back, at the
   *  stage the server had reached (jump the chain to match here). */
  onResume(fn: (resumed: boolean, conn: Connection) => void): Unsubscribe;

  /** Open the WebSocket; resolves with this once open, rejects if it cannot. */
  open(): Promise<this>;
  /** Send one binary message; throws ConnectionClosedError unless open. */
  send(data: Bytes): void;
  /** Close (1000 or 3000-4999; the reason is cut to 123 bytes); resolves once closed. */
  close(code?: number, reason?: string): Promise<Closed>;
  /** Resolves once the connection has ended. */
  waitClosed(): Promise<Closed>;
}

/** Open a connection (default "/": the page's own server); resolves once open. */
export declare function connect(url?: string, options?: ConnectOptions): Promise<Connection>;

// -- reconnect and resume (aiosocker/reconnect.js) --

/** Delays between attempts, in milliseconds (Python's Backoff, in seconds there). */
export interface Backoff {
  /** First delay (default 500); 0 < initial <= maximum. */
  initial?: number;
  /** Delays never grow past this (default 30000). */
  maximum?: number;
  /** Each failed attempt multiplies the delay by this (default 2; >= 1). */
  factor?: number;
  /** Fraction of each delay taken off at random, 0..1 (default 0.5). */
  jitter?: number;
}

export interface ReconnectingOptions extends ConnectionOptions {
  backoff?: Backoff;
  /** Failures to open in a row after which it stops for good (default 10; Infinity:
   *  never). Browsers hide why a handshake failed, so this stands in for "refused". */
  maxFailures?: number;
}

/** A session that outlives its connections (reconnecting()). */
export interface Reconnecting {
  /** The resolved ws:// URL (without ?resume=). */
  readonly url: string;
  /** Runs on each new connection before it opens. */
  readonly setup: ((conn: Connection) => void | Promise<void>) | null;
  /** The backoff between attempts, defaults filled in. */
  readonly backoff: Readonly<Required<Backoff>>;
  /** Failures to open in a row after which it stops for good. */
  readonly maxFailures: number;
  /** Options of each Connection (protocols, openTimeout, historyLimit, maxDeferred). */
  readonly options: Omit<ConnectionOptions, "resumeToken">;
  /** The current connection (or the last one); null before the first attempt. */
  readonly conn: Connection | null;
  /** The token the next connection resumes with (null: a fresh session). */
  readonly resumeToken: string | null;
  /** How many connections opened. */
  readonly connections: number;
  /** Attempts in a row that failed before the WebSocket opened. */
  readonly failures: number;
  /** Whether it has stopped for good. */
  readonly stopped: boolean;
  /** Why it gave up (null while running and after stop()). */
  readonly error: unknown;
  /** Each time a connection opens. */
  onConnect(fn: (conn: Connection, session: Reconnecting) => void): Unsubscribe;
  /** Once, when it stops for good: error null after stop(); else why it gave up
   *  (maxFailures failures to open in a row, or setup threw). */
  onStop(fn: (error: unknown, session: Reconnecting) => void): Unsubscribe;
  /** Stop and close the current connection (1000 by default: final, the server keeps
   *  no session); resolves once stopped. */
  stop(code?: number, reason?: string): Promise<void>;
}

/** A session that reconnects by itself, as Python's `async for conn in connect(url,
 *  setup)`: setup(conn) builds each new connection before it opens; after a connection
 *  ends, the next one resumes the session at once when the close may resume
 *  (conn.mayResume), else starts fresh after a backoff delay; failures to open back off
 *  exponentially with jitter. */
export declare function reconnecting(
  url?: string,
  setup?: ((conn: Connection) => void | Promise<void>) | null,
  options?: ReconnectingOptions,
): Reconnecting;

// -- the signaling envelope (aiosocker/envelope.js) --

/** A data channel as the OFFER describes it: W3C option names, null for absent. */
export interface ChannelSpec {
  readonly label: string;
  readonly ordered: boolean;
  readonly maxRetransmits: number | null;
  readonly maxPacketLifeTime: number | null;
  readonly protocol: string;
  readonly negotiated: boolean;
  readonly id: number | null;
}

/** Input form of a channel: defaults as Python's ChannelSpec (unordered, maxRetransmits
 *  0, or no limit when maxPacketLifeTime is given). */
export interface ChannelInit {
  label: string;
  ordered?: boolean;
  maxRetransmits?: number | null;
  maxPacketLifeTime?: number | null;
  protocol?: string;
  negotiated?: boolean;
  id?: number | null;
}

export type MessageTypeName =
  | "READY" | "OFFER" | "ANSWER" | "CANDIDATE" | "OPEN" | "RENEGOTIATE" | "ERROR" | "BYE" | "RESUME"
  | "ICE_SERVERS";

/** One ICE server of an ICE_SERVERS message (null: absent). */
export interface IceServerSpec {
  urls: string[];
  username: string | null;
  credential: string | null;
}

/** ICE_SERVERS, server -> client, right before an OFFER: ICE servers (a server with
 *  turn= sends TURN credentials it minted for this player) for the peer connection
 *  that OFFER makes, after the client's own iceServers. */
export interface IceServersMessage {
  type: "ICE_SERVERS";
  servers: IceServerSpec[];
}

/** RESUME, server -> client, the first frame of a server with resume=: the token for
 *  the next reconnect (1-256 of A-Z a-z 0-9 - _; single use), whether this connection
 *  resumed an earlier session, and why not when a token was given but not used. */
export interface ResumeMessage {
  type: "RESUME";
  token: string;
  resumed: boolean;
  freshReason: string;
}

/** A decoded signaling message. */
export type SignalingMessage =
  | { type: "READY" }
  | { type: "OPEN" }
  | { type: "OFFER"; sdp: string; channels: ChannelSpec[] }
  | { type: "ANSWER"; sdp: string }
  | { type: "CANDIDATE"; candidate: string; sdpMid: string | null; sdpMLineIndex: number | null }
  | { type: "RENEGOTIATE"; reason: string }
  | { type: "ERROR"; code: number; reason: string }
  | { type: "BYE"; reason: string }
  | ResumeMessage
  | IceServersMessage;

/** What encode() accepts: optional fields may be left out. */
export type SignalingMessageInit =
  | { type: "READY" }
  | { type: "OPEN" }
  | { type: "OFFER"; sdp: string; channels?: ChannelInit[] }
  | { type: "ANSWER"; sdp: string }
  | { type: "CANDIDATE"; candidate: string; sdpMid?: string | null; sdpMLineIndex?: number | null }
  | { type: "RENEGOTIATE"; reason?: string }
  | { type: "ERROR"; code: number; reason?: string }
  | { type: "BYE"; reason?: string }
  | { type: "RESUME"; token: string; resumed?: boolean; freshReason?: string }
  | {
      type: "ICE_SERVERS";
      servers: { urls: string | string[]; username?: string | null; credential?: string | null }[];
    };

/** The signaling envelope codec (docs/protocol.md), byte for byte as Python's. */
export declare const envelope: {
  readonly MAGIC: Uint8Array;
  readonly VERSION: 1;
  readonly MAX_SDP_SIZE: number;
  readonly MAX_TEXT_SIZE: number;
  readonly MAX_CHANNEL_ID: number;
  /** Largest RESUME token, in bytes (256). */
  readonly MAX_TOKEN_SIZE: number;
  /** Most servers in an ICE_SERVERS message, and URLs per server (8). */
  readonly MAX_ICE_SERVERS: number;
  /** Largest ICE server URL, user name or credential, in bytes (1024). */
  readonly MAX_ICE_FIELD: number;
  readonly MessageType: { readonly [K in MessageTypeName]: number };
  /** The frame of a message; TypeError or RangeError for invalid fields. */
  encode(message: SignalingMessageInit): Uint8Array;
  /** The message of a frame; SignalingError naming what is wrong. */
  decode(frame: Bytes): SignalingMessage;
  /** Whether a frame starts with the magic ff 53. */
  isSignaling(frame: Bytes): boolean;
  /** Validate one channel and fill in its defaults. */
  channelSpec(spec: ChannelInit): ChannelSpec;
  /** Validate channels as a set (unique labels and ids). */
  validateChannels(channels: ChannelInit[]): ChannelSpec[];
  /** Options for RTCPeerConnection.createDataChannel(). */
  channelOptions(spec: ChannelSpec): RTCDataChannelInit;
  /** Validate an ICE_SERVERS message's servers (empty fields become null). */
  iceServers(
    servers: { urls: string | string[]; username?: string | null; credential?: string | null }[],
  ): IceServerSpec[];
  /** ICE servers as RTCPeerConnection takes them (absent fields left out). */
  rtcIceServers(servers: IceServerSpec[]): RTCIceServer[];
};

// -- batching (aiosocker/batch.js) --

/** A PING or PONG control frame, as batch.control() reads it. */
export interface ControlFrame {
  type: "PING" | "PONG";
  kind: 0xb2 | 0xb3;
  /** The 8-byte id, big-endian (a PONG echoes its PING's). */
  id: bigint;
}

/** The newest unsent message per key, oldest key first (latest-wins sending): batch.Latest. */
declare class Latest {
  constructor(maxKeys?: number);
  /** Keys that may wait at once (default 1024). */
  maxKeys: number;
  readonly size: number;
  readonly pendingBytes: number;
  readonly full: boolean;
  has(key: unknown): boolean;
  /** Keep message as key's newest; true if it replaced an unsent one; RangeError for a
   *  new key while maxKeys wait. */
  put(key: unknown, message: Bytes): boolean;
  /** One frame of the oldest keys' messages (forgotten), or null if none wait. */
  take(maxSize?: number): Uint8Array | null;
  /** Forget every waiting message; how many there were. */
  clear(): number;
}

/** The DataChannel batching codec (docs/protocol.md, section 5). */
export declare const batch: {
  readonly SINGLE: 0xb0;
  readonly BATCH: 0xb1;
  readonly PING: 0xb2;
  readonly PONG: 0xb3;
  readonly CONTROL_SIZE: 9;
  readonly DEFAULT_MAX_SIZE: number;
  readonly MAX_MAX_SIZE: number;
  readonly DEFAULT_MAX_LATEST: number;
  /** Frames of at most maxSize bytes (default 16384), packed greedily in order. */
  pack(messages: Iterable<Bytes>, maxSize?: number): Uint8Array[];
  /** The messages of a frame (views into it); BatchError naming what is wrong (a
   *  control frame holds none). */
  unpack(frame: Bytes): Uint8Array[];
  /** A PING frame: b2 + id as 8 bytes, big-endian. */
  ping(id: bigint | number): Uint8Array;
  /** The PONG answering the PING with id: b3 + the same 8 bytes. */
  pong(id: bigint | number): Uint8Array;
  /** The control frame, or null if frame is not one; BatchError if malformed. */
  control(frame: Bytes): ControlFrame | null;
  readonly Latest: typeof Latest;
};

// -- WebRTC (aiosocker/rtc.js) --

export interface RtcOptions {
  /** Passed to RTCPeerConnection; default [] (no public STUN server unasked). */
  iceServers?: RTCIceServer[];
  /** Milliseconds each rtc stage may take (default 5000); expiry closes with 4408. */
  timeout?: number;
  /** Pack the small messages of one task into one DataChannel message (default true). */
  batch?: boolean;
  /** Bound on the wait for ICE gathering before the ANSWER goes (default 2000 ms). */
  gatherTimeout?: number;
  /** Unreliable channels drop messages while more than this is buffered (default 262144). */
  maxBuffered?: number;
  /** Largest batch frame (default 16384). */
  maxFrame?: number;
  /** "all" (default) or "relay": TURN relay candidates only, passed to RTCPeerConnection. */
  iceTransportPolicy?: RTCIceTransportPolicy;
  /** Milliseconds between each channel's PINGs while the server answers (default 2000;
   *  null: no PINGs from the page, so no rtt and no timeout; it still answers). */
  pingInterval?: number | null;
  /** Milliseconds without a PONG before a channel counts the server as gone and closes:
   *  onClose hooks run with the reason (default 10000; null: never). */
  channelTimeout?: number | null;
}

/** A channel's message handler; async handlers are not awaited. */
export type ChannelHandler = (message: Uint8Array, label: string) => void | Promise<void>;

/** One DataChannel of the session. */
export declare class Channel {
  readonly dc: RTCDataChannel;
  readonly spec: ChannelSpec;
  readonly label: string;
  readonly isOpen: boolean;
  readonly reliable: boolean;
  readonly bufferedAmount: number;
  batch: boolean;
  maxFrame: number;
  /** Bytes the stack may hold before the channel counts as congested. */
  maxBuffered: number;
  /** Keys sendLatest keeps a waiting message for at most (default 1024). */
  maxLatest: number;
  readonly pingInterval: number | null;
  readonly channelTimeout: number | null;
  /** Whether more than maxBuffered bytes wait in the WebRTC stack. */
  readonly congested: boolean;
  /** Keys whose newest message waits for the link to drain. */
  readonly latestPending: number;
  /** Messages accepted by send() (and of sendLatest(), handed to the stack), delivered
   *  to the handler, and not sent (refused, or waiting when the channel closed). */
  readonly sent: number;
  readonly received: number;
  readonly dropped: number;
  /** Messages of sendLatest() replaced by a newer one for their key before they went. */
  readonly staleDropped: number;
  /** The last round trip a PING measured, in ms (null before the first). */
  readonly rtt: number | null;
  readonly pingsSent: number;
  readonly pongsReceived: number;
  /** Why the channel closed (null while it has not). */
  readonly closeReason: string | null;
  /** Send (copied, batched until the end of the task); false if dropped. */
  send(data: Bytes): boolean;
  /** Send as the newest state of key (copied; latest wins while congested); false if
   *  dropped at once (not open, or maxLatest other keys waiting). */
  sendLatest(key: string | number, data: Bytes): boolean;
  /** Send the batch now. */
  flush(): void;
  close(): void;
}

/** The client side of the rtc flow on one connection. */
export declare class RtcSession {
  constructor(conn: Connection, options?: RtcOptions);
  readonly conn: Connection;
  /** Passed to RTCPeerConnection with each offer, before offeredIceServers. */
  iceServers: RTCIceServer[];
  /** "all" or "relay" (TURN relay candidates only), passed to RTCPeerConnection. */
  iceTransportPolicy: RTCIceTransportPolicy;
  /** Milliseconds each rtc stage may take (the stages were added with it). */
  readonly timeout: number;
  /** Bound on the wait for ICE gathering before the ANSWER goes, in ms. */
  gatherTimeout: number;
  /** The options each new Channel is made with. */
  readonly channelOptions: {
    batch: boolean;
    maxFrame: number;
    maxBuffered: number;
    pingInterval: number | null;
    channelTimeout: number | null;
  };
  /** The RTCPeerConnection (null before the first offer and after close). */
  readonly pc: RTCPeerConnection | null;
  /** The channels of the last offer. */
  readonly specs: ChannelSpec[];
  /** Channels by label, as they arrive. */
  readonly channels: Map<string, Channel>;
  /** How many times the channels have opened (renegotiations count). */
  readonly opened: number;
  /** Whether the last ICE gathering completed within gatherTimeout (null before one). */
  readonly gatherComplete: boolean | null;
  /** The ICE servers the server sent for this handshake (ICE_SERVERS), after iceServers. */
  readonly offeredIceServers: RTCIceServer[];
  /** Whether every channel of the offer is open. */
  readonly isOpen: boolean;
  /** The last round trip a channel's PING measured, in ms (null before the first). */
  readonly rtt: number | null;
  /** Why the onClose hooks last ran (null until they have). */
  readonly closeReason: string | null;

  /** Handle messages of a channel (label null or left out: the first channel). One
   *  handler per label; a later call replaces it. */
  onMessage(handler: ChannelHandler): Unsubscribe;
  onMessage(label: string | null, handler: ChannelHandler): Unsubscribe;
  /** Each time every channel is open on both sides. */
  onOpen(fn: (session: RtcSession) => void): Unsubscribe;
  /** When a channel or the peer connection dies while the WebSocket lives on. */
  onClose(fn: (session: RtcSession, why: string) => void): Unsubscribe;

  /** Send READY: call it from the stage before the rtc stages, then return true. */
  ready(): Promise<void>;
  /** Send on a channel (default: the first); false if dropped. */
  send(data: Bytes, label?: string | null): boolean;
  /** Send as the newest state of key on a channel (default: the first): latest wins
   *  while the link is congested; false if dropped. */
  sendLatest(key: string | number, data: Bytes, label?: string | null): boolean;
  /** The channel called label (default: the first); RangeError if not there yet. */
  channel(label?: string | null): Channel;
  /** Close the peer connection, jump to rtc_offer, send READY. */
  renegotiate(): Promise<void>;
  /** Close the peer connection on purpose, telling the server with a BYE (the
   *  WebSocket stays open; nobody renegotiates). */
  close(reason?: string): void;
}

/** The client side of socker's rtc flow. */
export declare const rtc: {
  /** Add the stages rtc_offer and rtc_open to conn's chain, here. */
  clientStages(conn: Connection, options?: RtcOptions): RtcSession;
  readonly RtcSession: typeof RtcSession;
  readonly Channel: typeof Channel;
  readonly STAGES: readonly ["rtc_offer", "rtc_open"];
};
