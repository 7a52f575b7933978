// The browser client: login screen, chat and world view over a WebSocket, speaking the same bincode
// wire as the bundled Bevy client (src/protocol/mod.rs).
//
// Part 1 is the codec and touches no DOM, so web/codec-test.mjs can run this file under node (in a
// `vm` context with a fake `window`). Part 2 is the page; it only runs where there is a `document`.
//
// The page runs under a strict Content-Security-Policy (no inline script or style, connect-src
// 'self'), and never puts server-provided text into HTML: every line, name and reason is textContent
// (or canvas fillText).
"use strict";

/** Version of the wire format (src/protocol/mod.rs): the WebSocket subprotocol is `mmo.<version>`. */
const PROTOCOL_VERSION = 5;

// ==================================================================================================
// Part 1: the wire codec (bincode 2, `config::standard()`: little-endian, varint integers)
// ==================================================================================================

const mmoWire = (function () {
  // Limits, as src/protocol/mod.rs sets them.
  const MAX_CLIENT_MESSAGE_BYTES = 2 * 1024;
  const MAX_SERVER_MESSAGE_BYTES = 256 * 1024;
  const MAX_SNAPSHOT_BYTES = 1000;

  // Varint markers: a value under 251 is one byte; otherwise a marker then the value, little-endian.
  const U16_MARKER = 251;
  const U32_MARKER = 252;
  const U64_MARKER = 253;
  const TWO_32 = 4294967296;

  // ---- Type descriptions -----------------------------------------------------------------------
  // A struct's fields and an enum's variants are listed in declaration order: that order IS the
  // encoding. A variant's payload is `null` (unit variant, decoded as the bare string) or a type
  // (struct or newtype variant, decoded as {"Variant": payload}), which is serde's JSON shape.
  const u16 = { type: "uint", bits: 16 };
  const u32 = { type: "uint", bits: 32 };
  const u64 = { type: "uint", bits: 64 };
  const f32 = { type: "f32" };
  const string = { type: "string" };
  const vec = (item) => ({ type: "vec", item });
  const tuple = (...items) => ({ type: "tuple", items });
  const struct = (name, fields) => ({ type: "struct", name, fields });
  const enumeration = (name, variants) => ({ type: "enum", name, variants });

  const Pos = struct("Pos", [["x", u16], ["y", u16]]);
  const Kind = enumeration("Kind", [["Player", null], ["Npc", null]]);
  const Request = enumeration("Request", [
    ["Register", null], ["Login", null], ["Chat", null], ["Move", null], ["Command", null],
  ]);
  const ChatLine = struct("ChatLine", [["sender", string], ["text", string], ["sent_at_ms", u64]]);
  const WhisperLine = struct("WhisperLine", [
    ["from", string], ["to", string], ["text", string], ["sent_at_ms", u64],
  ]);
  const fields = (name, list) => struct(name, list);

  const ClientMessage = enumeration("ClientMessage", [
    ["Register", fields("Register", [["username", string], ["password", string]])],
    ["Login", fields("Login", [["username", string], ["password", string]])],
    ["Chat", fields("Chat", [["text", string]])],
    ["MoveTo", fields("MoveTo", [["x", f32], ["y", f32]])],
  ]);

  const ServerMessage = enumeration("ServerMessage", [
    ["Registered", fields("Registered", [["username", string]])],
    ["LoggedIn", fields("LoggedIn", [["name", string]])],
    ["Denied", fields("Denied", [["request", Request], ["reason", string]])],
    ["Chat", ChatLine],
    ["ChatHistory", fields("ChatHistory", [["lines", vec(ChatLine)]])],
    ["OnlinePlayers", fields("OnlinePlayers", [["names", vec(string)]])],
    ["PlayerJoined", fields("PlayerJoined", [["name", string]])],
    ["PlayerLeft", fields("PlayerLeft", [["name", string]])],
    ["Kicked", fields("Kicked", [["reason", string]])],
    ["Spawned", fields("Spawned", [["id", u32], ["at", Pos]])],
    ["EnteredView", fields("EnteredView", [["id", u32], ["kind", Kind], ["name", string], ["at", Pos]])],
    ["LeftView", fields("LeftView", [["id", u32]])],
    ["System", fields("System", [["text", string]])],
    ["Whisper", WhisperLine],
    ["ChatLines", fields("ChatLines", [["lines", vec(ChatLine)]])],
  ]);

  const Snapshot = struct("Snapshot", [
    ["seq", u32], ["sent_at_ms", u64], ["positions", vec(tuple(u32, Pos))],
  ]);

  // ---- Reading ---------------------------------------------------------------------------------
  let utf8Decoder = null;
  let utf8Encoder = null;

  class Reader {
    constructor(bytes) {
      this.bytes = bytes;
      this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      this.pos = 0;
    }

    remaining() {
      return this.bytes.length - this.pos;
    }

    need(n, what) {
      if (n > this.remaining()) {
        throw new Error(`truncated: ${what} needs ${n} more bytes, ${this.remaining()} left`);
      }
    }

    byte(what) {
      this.need(1, what);
      return this.bytes[this.pos++];
    }

    // A varint of at most `bits` bits; as bincode, a marker wider than the type is an error.
    uint(bits, what) {
      const marker = this.byte(what);
      if (marker < U16_MARKER) return marker;
      if (marker === U16_MARKER) {
        this.need(2, what);
        const v = this.view.getUint16(this.pos, true);
        this.pos += 2;
        return v;
      }
      if (marker === U32_MARKER && bits >= 32) {
        this.need(4, what);
        const v = this.view.getUint32(this.pos, true);
        this.pos += 4;
        return v;
      }
      if (marker === U64_MARKER && bits >= 64) {
        this.need(8, what);
        const low = this.view.getUint32(this.pos, true);
        const high = this.view.getUint32(this.pos + 4, true);
        this.pos += 8;
        if (high > 0x1fffff) throw new Error(`${what}: u64 too large for a JavaScript number`);
        return high * TWO_32 + low;
      }
      throw new Error(`${what}: invalid varint marker ${marker} for a u${bits}`);
    }

    // A length (usize): refused when larger than what is left, so nothing huge is ever allocated.
    length(what) {
      const n = this.uint(64, what);
      if (n > this.remaining()) {
        throw new Error(`${what}: length ${n} exceeds the ${this.remaining()} bytes left`);
      }
      return n;
    }
  }

  function read(r, t, what) {
    switch (t.type) {
      case "uint":
        return r.uint(t.bits, what);
      case "f32": {
        r.need(4, what);
        const v = r.view.getFloat32(r.pos, true);
        r.pos += 4;
        return v;
      }
      case "string": {
        const n = r.length(what);
        if (utf8Decoder === null) utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
        let s;
        try {
          s = utf8Decoder.decode(r.bytes.subarray(r.pos, r.pos + n));
        } catch (_) {
          throw new Error(`${what}: string is not valid UTF-8`);
        }
        r.pos += n;
        return s;
      }
      case "vec": {
        const n = r.length(what);
        const out = [];
        for (let i = 0; i < n; i++) out.push(read(r, t.item, `${what}[${i}]`));
        return out;
      }
      case "tuple":
        return t.items.map((item, i) => read(r, item, `${what}.${i}`));
      case "struct": {
        const out = {};
        for (const [name, ft] of t.fields) out[name] = read(r, ft, `${what}.${name}`);
        return out;
      }
      case "enum": {
        const index = r.uint(32, `${what} (${t.name} variant)`);
        if (index >= t.variants.length) throw new Error(`${what}: unknown ${t.name} variant ${index}`);
        const [name, payload] = t.variants[index];
        if (payload === null) return name;
        return { [name]: read(r, payload, `${what}.${name}`) };
      }
      default:
        throw new Error(`unknown type ${t.type}`);
    }
  }

  // ---- Writing ---------------------------------------------------------------------------------
  const UINT_MAX = { 16: 0xffff, 32: 0xffffffff, 64: Number.MAX_SAFE_INTEGER };

  class Writer {
    constructor() {
      this.out = [];
    }

    uint(v, bits, what) {
      if (typeof v === "bigint" && bits === 64 && v >= 0n && v < 1n << 64n) {
        if (v <= BigInt(Number.MAX_SAFE_INTEGER)) return this.uint(Number(v), bits, what);
        this.out.push(U64_MARKER);
        for (let i = 0n; i < 8n; i++) this.out.push(Number((v >> (8n * i)) & 0xffn));
        return;
      }
      if (!Number.isSafeInteger(v) || v < 0 || v > UINT_MAX[bits]) {
        throw new Error(`${what}: ${String(v)} is not a u${bits}`);
      }
      if (v < U16_MARKER) {
        this.out.push(v);
      } else if (v <= 0xffff) {
        this.out.push(U16_MARKER, v & 0xff, v >>> 8);
      } else if (v <= 0xffffffff) {
        this.out.push(U32_MARKER, v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24);
      } else {
        const low = v % TWO_32;
        const high = Math.floor(v / TWO_32);
        this.out.push(U64_MARKER);
        for (const part of [low, high]) {
          this.out.push(part & 0xff, (part >>> 8) & 0xff, (part >>> 16) & 0xff, part >>> 24);
        }
      }
    }

    bytes() {
      return Uint8Array.from(this.out);
    }
  }

  function write(w, t, v, what) {
    switch (t.type) {
      case "uint":
        return w.uint(v, t.bits, what);
      case "f32": {
        if (typeof v !== "number") throw new Error(`${what}: ${String(v)} is not a number`);
        const b = new Uint8Array(4);
        new DataView(b.buffer).setFloat32(0, v, true);
        w.out.push(b[0], b[1], b[2], b[3]);
        return;
      }
      case "string": {
        if (typeof v !== "string") throw new Error(`${what}: not a string`);
        if (utf8Encoder === null) utf8Encoder = new TextEncoder();
        const b = utf8Encoder.encode(v);
        w.uint(b.length, 64, what);
        for (let i = 0; i < b.length; i++) w.out.push(b[i]);
        return;
      }
      case "vec": {
        if (!Array.isArray(v)) throw new Error(`${what}: not an array`);
        w.uint(v.length, 64, what);
        v.forEach((item, i) => write(w, t.item, item, `${what}[${i}]`));
        return;
      }
      case "tuple": {
        if (!Array.isArray(v) || v.length !== t.items.length) {
          throw new Error(`${what}: not a ${t.items.length}-tuple`);
        }
        t.items.forEach((item, i) => write(w, item, v[i], `${what}.${i}`));
        return;
      }
      case "struct": {
        if (v === null || typeof v !== "object") throw new Error(`${what}: not an object`);
        for (const [name, ft] of t.fields) {
          if (!Object.prototype.hasOwnProperty.call(v, name)) throw new Error(`${what}: missing field ${name}`);
          write(w, ft, v[name], `${what}.${name}`);
        }
        return;
      }
      case "enum": {
        let name;
        let payload;
        if (typeof v === "string") {
          name = v;
        } else if (v !== null && typeof v === "object" && Object.keys(v).length === 1) {
          name = Object.keys(v)[0];
          payload = v[name];
        } else {
          throw new Error(`${what}: not a ${t.name} (a variant name or {"Variant": ...})`);
        }
        const index = t.variants.findIndex(([n]) => n === name);
        if (index < 0) throw new Error(`${what}: unknown ${t.name} variant ${name}`);
        const shape = t.variants[index][1];
        if ((shape === null) !== (typeof v === "string")) {
          throw new Error(`${what}: ${t.name}::${name} has the wrong shape`);
        }
        w.uint(index, 32, what);
        if (shape !== null) write(w, shape, payload, `${what}.${name}`);
        return;
      }
      default:
        throw new Error(`unknown type ${t.type}`);
    }
  }

  // ---- Entry points ----------------------------------------------------------------------------

  // Accepts a Uint8Array (from any realm), another typed array view, an ArrayBuffer or an array of bytes.
  function toBytes(input) {
    if (ArrayBuffer.isView(input)) return new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
    if (Object.prototype.toString.call(input) === "[object ArrayBuffer]") return new Uint8Array(input);
    if (Array.isArray(input)) {
      if (!input.every((b) => Number.isInteger(b) && b >= 0 && b <= 255)) throw new Error("not bytes");
      return Uint8Array.from(input);
    }
    throw new Error("expected bytes");
  }

  // One whole value: refuses more than `limit` bytes and any bytes left over, as the server does.
  function decodeWith(t, limit, input) {
    const bytes = toBytes(input);
    if (bytes.length > limit) throw new Error(`${t.name} is ${bytes.length} bytes, over the ${limit}-byte limit`);
    const r = new Reader(bytes);
    const value = read(r, t, t.name);
    if (r.remaining() !== 0) throw new Error(`${r.remaining()} trailing bytes after the ${t.name}`);
    return value;
  }

  function encodeWith(t, limit, value) {
    const w = new Writer();
    write(w, t, value, t.name);
    if (w.out.length > limit) throw new Error(`${t.name} is ${w.out.length} bytes, over the ${limit}-byte limit`);
    return w.bytes();
  }

  return Object.freeze({
    PROTOCOL_VERSION,
    MAX_CLIENT_MESSAGE_BYTES,
    MAX_SERVER_MESSAGE_BYTES,
    MAX_SNAPSHOT_BYTES,
    /** ClientMessage (serde JSON shape) -> Uint8Array. Throws on a malformed message. */
    encodeClient: (msg) => encodeWith(ClientMessage, MAX_CLIENT_MESSAGE_BYTES, msg),
    /** One ServerMessage's bytes -> serde JSON shape. Throws on anything malformed. */
    decodeServer: (bytes) => decodeWith(ServerMessage, MAX_SERVER_MESSAGE_BYTES, bytes),
    /** One Snapshot's bytes -> {seq, sent_at_ms, positions: [[id, {x, y}], ...]}. */
    decodeSnapshot: (bytes) => decodeWith(Snapshot, MAX_SNAPSHOT_BYTES, bytes),
    // The other directions, for tests and tools.
    decodeClient: (bytes) => decodeWith(ClientMessage, MAX_CLIENT_MESSAGE_BYTES, bytes),
    encodeServer: (msg) => encodeWith(ServerMessage, MAX_SERVER_MESSAGE_BYTES, msg),
    encodeSnapshot: (snapshot) => encodeWith(Snapshot, MAX_SNAPSHOT_BYTES, snapshot),
  });
})();

(typeof window !== "undefined" ? window : globalThis).mmoWire = mmoWire;

// ==================================================================================================
// Part 2: the page
// ==================================================================================================

if (typeof document !== "undefined") {
  (function page() {
    // ---- Constants (src/protocol/mod.rs, the bundled client) -------------------------------------
    const WORLD_SIZE = 2048;
    const POSITION_SCALE = 32;
    const SERVER_SILENT_LIMIT_MS = 3000;
    const SHUTTING_DOWN = "Server is shutting down";
    const MAX_LOG_LINES = 500;
    const INTERPOLATION_DELAY_MS = 100;
    const TRACK_LEN = 10; // positions kept per entity (half a second at 20 snapshots a second)
    const VIEW_SPAN = 512; // world units across the canvas
    const RETRY_DELAY_MS = 1000;
    const MAX_RETRIES = 10;
    const STORAGE_KEY = "mmo.session";
    const FRAME_MESSAGE = 0;
    const FRAME_SNAPSHOT = 1;
    const FRAME_KEEP_ALIVE = 0xff;

    const TEXT = {
      unreachable: "Cannot reach the server",
      lost: "Lost connection to the server",
      connectionLost: "Connection to the server was lost",
      registered: "Registration successful",
      resuming: "Resuming session…",
      connecting: "Connecting…",
      reconnecting: "Reconnecting…",
      badAnswer: "The server sent an answer this page does not understand",
    };

    const COLOURS = {
      outside: "#07090d",
      world: "#141922",
      grid: "rgba(255, 255, 255, 0.05)",
      edge: "#5b6b86",
      player: "#e6e9ef",
      npc: "#f0b34a",
      me: "#4fc3f7",
      target: "rgba(79, 195, 247, 0.6)",
      outline: "rgba(0, 0, 0, 0.8)",
    };

    // ---- Elements --------------------------------------------------------------------------------
    const $ = (id) => document.getElementById(id);
    const el = {
      login: $("login"),
      username: $("username"),
      password: $("password"),
      remember: $("remember"),
      loginButton: $("login-button"),
      registerButton: $("register-button"),
      alert: $("alert"),
      chat: $("chat"),
      me: $("me"),
      status: $("status"),
      log: $("chat-log"),
      input: $("chat-input"),
      online: $("online"),
      logoutButton: $("logout-button"),
      canvas: $("world"),
    };
    const ctx = el.canvas.getContext("2d");

    // ---- State -----------------------------------------------------------------------------------
    const state = {
      screen: "login",
      busy: false,
      session: null, // {token, expiresAt}: traded at /api/session for a fresh connect token
      remember: false, // whether the session is kept in localStorage
      me: null, // display name
      socket: null,
      kicked: null, // the last Kicked reason on the current socket
      lastHeard: 0, // performance.now() of the last frame from the server
      silenceTimer: 0,
      retryTimer: 0,
      retries: 0,
      online: [],
    };

    // What the client knows of the world; positions in world units.
    const world = {
      meId: null,
      entities: new Map(), // id -> {kind, name, track: [{t, x, y}] oldest first, t = server ms}
      newestSeq: null,
      newestSentAt: null, // sent_at_ms of the newest snapshot
      newestAt: 0, // performance.now() when it arrived
      target: null, // last click, drawn for a moment
    };

    // ---- Screens, alert, busy --------------------------------------------------------------------
    function showScreen(name) {
      const changed = state.screen !== name;
      state.screen = name;
      el.login.hidden = name !== "login";
      el.chat.hidden = name !== "chat";
      document.body.dataset.screen = name;
      if (changed) (name === "chat" ? el.input : el.username).focus();
    }

    function showAlert(text) {
      el.alert.textContent = text;
    }

    function setStatus(text) {
      el.status.textContent = text;
    }

    function setBusy(busy) {
      state.busy = busy;
      el.loginButton.disabled = busy;
      el.registerButton.disabled = busy;
    }

    // ---- Remembered session (localStorage) -------------------------------------------------------
    function readStored() {
      try {
        const raw = localStorage.getItem(STORAGE_KEY);
        if (raw === null) return null;
        const stored = JSON.parse(raw);
        const valid = stored && typeof stored.session_token === "string" && stored.session_token !== "";
        const expired = typeof stored.expires_at === "number" && stored.expires_at * 1000 <= Date.now();
        if (valid && !expired) return stored;
      } catch (_) {
        // Unreadable: forgotten below.
      }
      forgetStored();
      return null;
    }

    function store(session) {
      try {
        localStorage.setItem(STORAGE_KEY, JSON.stringify({
          session_token: session.token,
          expires_at: session.expiresAt,
        }));
      } catch (error) {
        console.warn("cannot remember the session:", error);
      }
    }

    function forgetStored() {
      try {
        localStorage.removeItem(STORAGE_KEY);
      } catch (_) {
        // No storage, nothing to forget.
      }
    }

    // ---- HTTPS API -------------------------------------------------------------------------------
    // Never rejects: {ok, status, data, error}; status 0 when the server could not be reached.
    async function post(path, body) {
      let response;
      try {
        response = await fetch(path, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(body),
          cache: "no-store",
          credentials: "same-origin",
        });
      } catch (_) {
        return { ok: false, status: 0, data: null, error: TEXT.unreachable };
      }
      let data = null;
      try {
        const text = await response.text();
        data = text ? JSON.parse(text) : null;
      } catch (_) {
        data = null;
      }
      const error = data && typeof data.error === "string"
        ? data.error
        : `The server answered ${response.status}`;
      return { ok: response.ok, status: response.status, data, error };
    }

    function credentials() {
      return { username: el.username.value, password: el.password.value };
    }

    async function register() {
      if (state.busy) return;
      setBusy(true);
      showAlert("");
      const answer = await post("/api/register", credentials());
      setBusy(false);
      showAlert(answer.ok ? TEXT.registered : answer.error);
    }

    async function login() {
      if (state.busy) return;
      setBusy(true);
      showAlert("");
      const remember = el.remember.checked;
      const answer = await post("/api/login", credentials());
      if (!answer.ok) {
        setBusy(false);
        showAlert(answer.error);
        return;
      }
      showAlert(TEXT.connecting);
      startSession(answer.data, remember);
    }

    // A LoggedIn body (from /api/login or /api/session): keep the session, connect with the token.
    function startSession(data, remember) {
      let token;
      try {
        if (!data || typeof data.session_token !== "string" || typeof data.connect_token !== "string") {
          throw new Error("missing tokens");
        }
        token = base64ToBytes(data.connect_token);
      } catch (error) {
        console.warn("bad login answer:", error);
        toLogin(TEXT.badAnswer);
        return;
      }
      // The API calls it session_expires_at (src/api.rs); stored as expires_at.
      const expiresAt = typeof data.session_expires_at === "number" ? data.session_expires_at
        : typeof data.expires_at === "number" ? data.expires_at : null;
      state.session = { token: data.session_token, expiresAt };
      state.remember = remember;
      if (remember) store(state.session);
      else forgetStored();
      if (typeof data.name === "string") state.me = data.name;
      openSocket(token);
    }

    // Trades the session token for a fresh connect token: on page load, and to reconnect.
    async function resumeSession(retrying) {
      state.retryTimer = 0;
      const session = state.session;
      if (!session) return;
      const answer = await post("/api/session", { session_token: session.token });
      if (state.session !== session) return; // logged out meanwhile
      if (answer.ok) {
        startSession(answer.data, state.remember);
        return;
      }
      if (answer.status === 401) {
        forgetStored();
        toLogin(answer.error);
        return;
      }
      const passing = answer.status === 0 || answer.status === 429 || answer.status >= 500;
      if (retrying && passing) retryLater();
      else toLogin(answer.error);
    }

    function logout() {
      const session = state.session;
      if (session) post("/api/logout", { session_token: session.token }); // result ignored
      forgetStored();
      el.username.value = "";
      toLogin("");
    }

    // Back to the login screen with `text` in the alert; the remembered session stays unless the
    // caller forgot it.
    function toLogin(text) {
      clearTimeout(state.retryTimer);
      state.retryTimer = 0;
      closeSocket();
      resetWorld();
      state.session = null;
      state.me = null;
      state.kicked = null;
      state.retries = 0;
      el.password.value = "";
      setStatus("");
      showScreen("login");
      setBusy(false);
      showAlert(text);
    }

    function base64ToBytes(text) {
      const binary = atob(text);
      const bytes = new Uint8Array(binary.length);
      for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
      return bytes;
    }

    // ---- WebSocket -------------------------------------------------------------------------------
    function openSocket(connectToken) {
      closeSocket();
      resetWorld();
      const scheme = location.protocol === "http:" ? "ws://" : "wss://";
      let ws;
      try {
        ws = new WebSocket(scheme + location.host + "/ws", ["mmo." + PROTOCOL_VERSION]);
      } catch (error) {
        console.warn("cannot open the WebSocket:", error);
        socketEnded("");
        return;
      }
      ws.binaryType = "arraybuffer";
      state.socket = ws;
      state.kicked = null;
      state.lastHeard = performance.now();
      ws.onopen = () => {
        if (state.socket !== ws) return;
        ws.send(connectToken); // the first frame: the raw connect token
      };
      ws.onmessage = (event) => {
        if (state.socket !== ws) return;
        state.lastHeard = performance.now();
        onFrame(event.data);
      };
      ws.onclose = (event) => {
        if (state.socket !== ws) return;
        state.socket = null;
        socketEnded(event.reason || "");
      };
      ws.onerror = () => {}; // a close event follows
      clearInterval(state.silenceTimer);
      state.silenceTimer = setInterval(checkSilence, 250);
    }

    // Forgets the current socket without reacting to its end.
    function closeSocket() {
      clearInterval(state.silenceTimer);
      state.silenceTimer = 0;
      const ws = state.socket;
      state.socket = null;
      if (!ws) return;
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(1000);
      } catch (_) {
        // Already closing.
      }
    }

    // The server sends a keep-alive after 1 s of nothing: 3 s of silence means it died or froze.
    function checkSilence() {
      if (state.socket && performance.now() - state.lastHeard > SERVER_SILENT_LIMIT_MS) {
        console.warn("the server has been silent for 3 s; reconnecting");
        closeSocket();
        socketEnded("");
      }
    }

    // The socket closed (or went silent): back to the login screen after a kick, otherwise reconnect.
    function socketEnded(closeReason) {
      clearInterval(state.silenceTimer);
      state.silenceTimer = 0;
      resetWorld();
      const kicked = state.kicked;
      state.kicked = null;
      if (!state.session) {
        toLogin(kicked || closeReason);
        return;
      }
      if (kicked !== null && kicked !== SHUTTING_DOWN) {
        toLogin(kicked);
        return;
      }
      const why = closeReason || kicked || TEXT.connectionLost;
      if (state.screen === "chat") {
        setStatus(`${why} (${TEXT.reconnecting})`);
        // The Kicked reason is in the log already.
        if (state.retries === 0) addLines("system", why === kicked ? [TEXT.reconnecting] : [why, TEXT.reconnecting]);
      } else {
        showAlert(TEXT.reconnecting);
      }
      retryLater();
    }

    function retryLater() {
      if (state.retries >= MAX_RETRIES) {
        toLogin(TEXT.lost);
        return;
      }
      state.retries += 1;
      clearTimeout(state.retryTimer);
      state.retryTimer = setTimeout(() => resumeSession(true), RETRY_DELAY_MS);
    }

    function send(message) {
      const ws = state.socket;
      if (!ws || ws.readyState !== WebSocket.OPEN) return false;
      try {
        ws.send(mmoWire.encodeClient(message));
        return true;
      } catch (error) {
        console.warn("cannot send", message, error);
        return false;
      }
    }

    // One frame from the server: tag byte, then the payload.
    function onFrame(data) {
      let decoded = null;
      try {
        if (!(data instanceof ArrayBuffer)) throw new Error("not a binary frame");
        const bytes = new Uint8Array(data);
        if (bytes.length === 0) throw new Error("empty frame");
        const payload = bytes.subarray(1);
        switch (bytes[0]) {
          case FRAME_MESSAGE:
            decoded = { message: mmoWire.decodeServer(payload) };
            break;
          case FRAME_SNAPSHOT:
            decoded = { snapshot: mmoWire.decodeSnapshot(payload) };
            break;
          case FRAME_KEEP_ALIVE:
            if (payload.length !== 0) throw new Error("keep-alive with a payload");
            return;
          default:
            throw new Error(`unknown frame tag ${bytes[0]}`);
        }
      } catch (error) {
        console.warn("dropped a frame from the server:", error);
        return;
      }
      try {
        if (decoded.message !== undefined) onMessage(decoded.message);
        else onSnapshot(decoded.snapshot);
      } catch (error) {
        console.error("cannot handle", decoded, error);
      }
    }

    // ---- Server messages -------------------------------------------------------------------------
    function onMessage(message) {
      const variant = typeof message === "string" ? message : Object.keys(message)[0];
      const m = typeof message === "string" ? null : message[variant];
      switch (variant) {
        case "LoggedIn":
          enterChat(m.name);
          break;
        case "Denied":
          if (state.screen === "login") showAlert(m.reason);
          else addLines("refused", [m.reason]);
          break;
        case "Chat":
          addLines("chat", [says(m)]);
          break;
        case "ChatLines":
          addLines("chat", m.lines.map(says));
          break;
        case "ChatHistory":
          addLines("history", m.lines.map(says));
          break;
        case "OnlinePlayers":
          state.online = Array.from(new Set(m.names));
          renderOnline();
          break;
        case "PlayerJoined":
          if (!state.online.includes(m.name)) state.online.push(m.name);
          renderOnline();
          addLines("presence", [`${m.name} joined`]);
          break;
        case "PlayerLeft":
          state.online = state.online.filter((name) => name !== m.name);
          renderOnline();
          addLines("presence", [`${m.name} left`]);
          break;
        case "Kicked":
          state.kicked = m.reason;
          addLines("system", [m.reason]);
          break;
        case "System":
          addLines("system", [m.text]);
          break;
        case "Whisper":
          addLines("whisper", [m.from === state.me
            ? `To ${m.to}: "${m.text}"`
            : `${m.from} whispers: "${m.text}"`]);
          break;
        case "Spawned":
          world.meId = m.id;
          see(m.id, "Player", state.me || "", m.at);
          break;
        case "EnteredView":
          see(m.id, m.kind, m.name, m.at);
          break;
        case "LeftView":
          world.entities.delete(m.id);
          updateHooks();
          break;
        default:
          break; // Registered: the UDP login path's answer, not used here.
      }
    }

    function says(line) {
      return `${line.sender} says: "${line.text}"`;
    }

    // The connection is now a player: a fresh chat screen (the history follows).
    function enterChat(name) {
      state.me = name;
      state.retries = 0;
      state.online = [];
      el.log.replaceChildren();
      renderOnline();
      el.me.textContent = name;
      setStatus("");
      showAlert("");
      setBusy(false);
      showScreen("chat");
    }

    // ---- Chat log and online list ----------------------------------------------------------------
    function addLines(kind, texts) {
      if (texts.length === 0) return;
      const fragment = document.createDocumentFragment();
      for (const text of texts) {
        const line = document.createElement("div");
        line.className = `line ${kind}`;
        line.textContent = text;
        fragment.appendChild(line);
      }
      el.log.appendChild(fragment);
      while (el.log.childElementCount > MAX_LOG_LINES) el.log.firstElementChild.remove();
      el.log.scrollTop = el.log.scrollHeight;
    }

    function renderOnline() {
      state.online.sort((a, b) => {
        const la = a.toLowerCase();
        const lb = b.toLowerCase();
        return la < lb ? -1 : la > lb ? 1 : a < b ? -1 : a > b ? 1 : 0;
      });
      el.online.replaceChildren(...state.online.map((name) => {
        const item = document.createElement("li");
        item.textContent = name;
        return item;
      }));
    }

    // ---- World: state, snapshots, interpolation -------------------------------------------------
    function resetWorld() {
      world.meId = null;
      world.entities.clear();
      world.newestSeq = null;
      world.newestSentAt = null;
      world.target = null;
      updateHooks();
    }

    function toWorld(at) {
      return { x: at.x / POSITION_SCALE, y: at.y / POSITION_SCALE };
    }

    // The moment drawn, on the server's timeline: 100 ms behind the newest snapshot, advanced by the
    // local time since it arrived. Null before the first snapshot.
    function renderTime() {
      if (world.newestSentAt === null) return null;
      return world.newestSentAt - INTERPOLATION_DELAY_MS + (performance.now() - world.newestAt);
    }

    // Spawned / EnteredView: drawn there from now on (placed at the moment drawn, so the next
    // snapshot moves it smoothly from there).
    function see(id, kind, name, at) {
      const t = renderTime();
      const p = toWorld(at);
      world.entities.set(id, { kind, name, track: [{ t: t === null ? -Infinity : t, x: p.x, y: p.y, guess: true }] });
      updateHooks();
    }

    function onSnapshot(snapshot) {
      if (world.newestSeq !== null && snapshot.seq <= world.newestSeq) return; // late: older news
      world.newestSeq = snapshot.seq;
      world.newestSentAt = snapshot.sent_at_ms;
      world.newestAt = performance.now();
      for (const [id, at] of snapshot.positions) {
        // Only what was announced (Spawned / EnteredView) is drawn.
        const entity = world.entities.get(id);
        if (!entity) continue;
        const p = toWorld(at);
        const track = entity.track;
        // The placing guess of see() gives way to any snapshot at or before it.
        while (track.length > 0 && track[track.length - 1].guess && track[track.length - 1].t >= snapshot.sent_at_ms) {
          track.pop();
        }
        const last = track[track.length - 1];
        if (last && last.t === snapshot.sent_at_ms) track.pop();
        else if (last && last.t > snapshot.sent_at_ms) continue;
        track.push({ t: snapshot.sent_at_ms, x: p.x, y: p.y });
        if (track.length > TRACK_LEN) track.shift();
      }
      updateHooks();
    }

    // Where an entity is at server time `t`: between the two positions around it, linearly; the
    // oldest or newest known outside them (never guessing ahead).
    function positionAt(track, t) {
      const last = track[track.length - 1];
      if (t === null || t >= last.t) return last;
      if (t <= track[0].t) return track[0];
      for (let i = track.length - 1; i > 0; i--) {
        const a = track[i - 1];
        if (t < a.t) continue;
        const b = track[i];
        if (!Number.isFinite(a.t)) return b;
        const f = (t - a.t) / Math.max(1, b.t - a.t);
        return { x: a.x + (b.x - a.x) * f, y: a.y + (b.y - a.y) * f };
      }
      return last;
    }

    function myDrawnPosition(t) {
      const me = world.meId === null ? undefined : world.entities.get(world.meId);
      return me ? positionAt(me.track, t) : null;
    }

    // Test hooks: my newest position, and every other entity's, in whole world units.
    function updateHooks() {
      const round = (p) => `${Math.round(p.x)},${Math.round(p.y)}`;
      const mine = world.meId === null ? undefined : world.entities.get(world.meId);
      const me = mine ? round(mine.track[mine.track.length - 1]) : "";
      if (el.canvas.dataset.me !== me) el.canvas.dataset.me = me;
      const others = [];
      for (const [id, e] of world.entities) {
        if (id !== world.meId) others.push([e.name, round(e.track[e.track.length - 1])]);
      }
      others.sort(([na, pa], [nb, pb]) => (na < nb ? -1 : na > nb ? 1 : pa < pb ? -1 : pa > pb ? 1 : 0));
      const seen = others.map(([name, p]) => `${name}:${p}`).join(";");
      if (el.canvas.dataset.seen !== seen) el.canvas.dataset.seen = seen;
    }

    // ---- World: drawing --------------------------------------------------------------------------
    function draw() {
      const t = renderTime();
      const size = el.canvas.width;
      const scale = size / VIEW_SPAN;
      const centre = myDrawnPosition(t) || { x: WORLD_SIZE / 2, y: WORLD_SIZE / 2 };
      const sx = (x) => (x - centre.x) * scale + size / 2;
      const sy = (y) => (y - centre.y) * scale + size / 2;

      ctx.fillStyle = COLOURS.outside;
      ctx.fillRect(0, 0, size, size);
      ctx.fillStyle = COLOURS.world;
      ctx.fillRect(sx(0), sy(0), WORLD_SIZE * scale, WORLD_SIZE * scale);

      // Grid every 64 units, inside the world.
      ctx.strokeStyle = COLOURS.grid;
      ctx.lineWidth = 1;
      ctx.beginPath();
      const step = 64;
      const half = VIEW_SPAN / 2;
      for (let g = Math.max(0, Math.ceil((centre.x - half) / step) * step); g <= Math.min(WORLD_SIZE, centre.x + half); g += step) {
        ctx.moveTo(Math.round(sx(g)) + 0.5, sy(0));
        ctx.lineTo(Math.round(sx(g)) + 0.5, sy(WORLD_SIZE));
      }
      for (let g = Math.max(0, Math.ceil((centre.y - half) / step) * step); g <= Math.min(WORLD_SIZE, centre.y + half); g += step) {
        ctx.moveTo(sx(0), Math.round(sy(g)) + 0.5);
        ctx.lineTo(sx(WORLD_SIZE), Math.round(sy(g)) + 0.5);
      }
      ctx.stroke();

      // The world's edge.
      ctx.strokeStyle = COLOURS.edge;
      ctx.lineWidth = 2;
      ctx.strokeRect(sx(0), sy(0), WORLD_SIZE * scale, WORLD_SIZE * scale);

      // Where the last click sent me (for a moment).
      if (world.target && performance.now() - world.target.at < 1500) {
        const x = sx(world.target.x);
        const y = sy(world.target.y);
        ctx.strokeStyle = COLOURS.target;
        ctx.lineWidth = 2;
        ctx.beginPath();
        ctx.moveTo(x - 5, y - 5); ctx.lineTo(x + 5, y + 5);
        ctx.moveTo(x + 5, y - 5); ctx.lineTo(x - 5, y + 5);
        ctx.stroke();
      }

      // Others first, me on top.
      ctx.font = "12px system-ui, sans-serif";
      ctx.textAlign = "center";
      ctx.textBaseline = "bottom";
      ctx.lineJoin = "round";
      const margin = 60;
      let mine = null;
      for (const [id, e] of world.entities) {
        const p = positionAt(e.track, t);
        const x = sx(p.x);
        const y = sy(p.y);
        if (x < -margin || y < -margin || x > size + margin || y > size + margin) continue;
        if (id === world.meId) mine = { e, x, y };
        else drawEntity(e.kind === "Npc" ? COLOURS.npc : COLOURS.player, e.kind === "Npc", e.name, x, y);
      }
      if (mine) drawEntity(COLOURS.me, false, mine.e.name || state.me || "you", mine.x, mine.y);
    }

    function drawEntity(colour, square, name, x, y) {
      ctx.fillStyle = colour;
      if (square) {
        ctx.fillRect(x - 5, y - 5, 10, 10);
      } else {
        ctx.beginPath();
        ctx.arc(x, y, 5.5, 0, Math.PI * 2);
        ctx.fill();
      }
      ctx.strokeStyle = COLOURS.outline;
      ctx.lineWidth = 3;
      ctx.strokeText(name, x, y - 9);
      ctx.fillText(name, x, y - 9);
    }

    function frame() {
      requestAnimationFrame(frame);
      if (state.screen === "chat") draw();
    }

    // A click walks there: canvas pixels around my drawn position, clamped into the world.
    function walkTo(event) {
      const centre = myDrawnPosition(renderTime());
      if (!centre) return;
      const rect = el.canvas.getBoundingClientRect();
      if (rect.width === 0 || rect.height === 0) return;
      const px = ((event.clientX - rect.left) * el.canvas.width) / rect.width;
      const py = ((event.clientY - rect.top) * el.canvas.height) / rect.height;
      const scale = el.canvas.width / VIEW_SPAN;
      const clamp = (v) => Math.min(WORLD_SIZE, Math.max(0, v));
      const x = clamp(centre.x + (px - el.canvas.width / 2) / scale);
      const y = clamp(centre.y + (py - el.canvas.height / 2) / scale);
      if (send({ MoveTo: { x, y } })) world.target = { x, y, at: performance.now() };
    }

    // ---- Wiring and start ------------------------------------------------------------------------
    el.loginButton.addEventListener("click", login);
    el.registerButton.addEventListener("click", register);
    for (const input of [el.username, el.password]) {
      input.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && !event.isComposing) {
          event.preventDefault();
          login();
        }
      });
    }
    el.input.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" || event.isComposing) return;
      event.preventDefault();
      const text = el.input.value.trim();
      if (text !== "" && !send({ Chat: { text } })) return; // not connected: keep what was typed
      el.input.value = "";
    });
    el.logoutButton.addEventListener("click", logout);
    el.canvas.addEventListener("click", walkTo);

    state.screen = "";
    showScreen("login");
    resetWorld();
    requestAnimationFrame(frame);

    const stored = readStored();
    if (stored) {
      el.remember.checked = true;
      state.session = {
        token: stored.session_token,
        expiresAt: typeof stored.expires_at === "number" ? stored.expires_at : null,
      };
      state.remember = true;
      setBusy(true);
      showAlert(TEXT.resuming);
      resumeSession(false);
    }
  })();
}
