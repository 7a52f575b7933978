// Tests web/app.js's wire codec against bincode 2 (standard config) byte vectors: `node web/codec-test.mjs`.
// No dependencies: app.js runs in a `vm` context with a fake `window` and no `document`, so only its
// codec part (Part 1) runs.

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import vm from "node:vm";

const here = dirname(fileURLToPath(import.meta.url));
const source = readFileSync(join(here, "app.js"), "utf8");
const sandbox = { window: {}, TextEncoder, TextDecoder, console };
vm.createContext(sandbox);
vm.runInContext(source, sandbox, { filename: "app.js" });
const wire = sandbox.window.mmoWire;
if (!wire) throw new Error("app.js did not set window.mmoWire");

let failures = 0;
let passed = 0;

function same(a, b) {
  if (a === b) return true;
  if (typeof a === "number" && typeof b === "number") return Number.isNaN(a) && Number.isNaN(b);
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  // Same keys in the same order: the serde JSON shape, field order included.
  if (ka.length !== kb.length || ka.some((k, i) => k !== kb[i])) return false;
  return ka.every((k) => same(a[k], b[k]));
}

function check(name, ok, detail = "") {
  if (ok) {
    passed++;
  } else {
    failures++;
    console.error(`FAIL ${name}${detail ? `: ${detail}` : ""}`);
  }
}

const show = (v) => JSON.stringify(v);
const bytesOf = (u8) => Array.from(u8);

function throws(name, fn) {
  try {
    const value = fn();
    check(name, false, `expected an error, got ${show(value)}`);
  } catch (error) {
    check(name, error instanceof Error || String(error.constructor?.name) === "Error", `threw a non-Error: ${error}`);
  }
}

// One value in one direction and back: encode gives `bytes`, decoding `bytes` gives the value.
function vector(name, encode, decode, value, bytes) {
  const encoded = bytesOf(encode(value));
  check(`${name} encodes`, same(encoded, bytes), `got ${show(encoded)}, want ${show(bytes)}`);
  const decoded = decode(Uint8Array.from(bytes));
  check(`${name} decodes`, same(decoded, value), `got ${show(decoded)}, want ${show(value)}`);
}

const client = (name, value, bytes) => vector(`ClientMessage ${name}`, wire.encodeClient, wire.decodeClient, value, bytes);
const server = (name, value, bytes) => vector(`ServerMessage ${name}`, wire.encodeServer, wire.decodeServer, value, bytes);
const snapshot = (name, value, bytes) => vector(`Snapshot ${name}`, wire.encodeSnapshot, wire.decodeSnapshot, value, bytes);

const b = (s) => Array.from(Buffer.from(s, "utf8"));

// ---- The brief's vectors ----------------------------------------------------------------------
client("Chat hi", { Chat: { text: "hi" } }, [2, 2, 104, 105]);
client("MoveTo 1.5,2", { MoveTo: { x: 1.5, y: 2 } }, [3, 0, 0, 192, 63, 0, 0, 0, 64]);
server("LoggedIn ab", { LoggedIn: { name: "ab" } }, [1, 2, 97, 98]);
server("Denied Chat x", { Denied: { request: "Chat", reason: "x" } }, [2, 2, 1, 120]);
server("Spawned 300", { Spawned: { id: 300, at: { x: 1, y: 65535 } } }, [9, 251, 44, 1, 1, 251, 255, 255]);
snapshot(
  "5e9 ms",
  { seq: 1, sent_at_ms: 5000000000, positions: [[7, { x: 1, y: 2 }]] },
  [1, 253, 0, 242, 5, 42, 1, 0, 0, 0, 1, 7, 1, 2],
);

// ---- src/protocol/tests.rs's wire_format_is_pinned ---------------------------------------------
server("Denied Login no", { Denied: { request: "Login", reason: "no" } }, [2, 1, 2, ...b("no")]);
const line = { sender: "a", text: "b", sent_at_ms: 300 };
server("Chat line", { Chat: line }, [3, 1, ...b("a"), 1, ...b("b"), 251, 44, 1]);
server("ChatLines", { ChatLines: { lines: [line, line] } },
  [14, 2, 1, 97, 1, 98, 251, 44, 1, 1, 97, 1, 98, 251, 44, 1]);
client("MoveTo 1,2", { MoveTo: { x: 1, y: 2 } }, [3, 0, 0, 128, 63, 0, 0, 0, 64]);
snapshot("300 ms", { seq: 1, sent_at_ms: 300, positions: [[5, { x: 300, y: 2 }]] },
  [1, 251, 44, 1, 1, 5, 251, 44, 1, 2]);
server("System", { System: { text: "x" } }, [12, 1, 120]);
server("Whisper", { Whisper: { from: "a", to: "b", text: "c", sent_at_ms: 300 } },
  [13, 1, 97, 1, 98, 1, 99, 251, 44, 1]);
server("Denied Command", { Denied: { request: "Command", reason: "no" } }, [2, 4, 2, 110, 111]);
server("EnteredView Npc", { EnteredView: { id: 7, kind: "Npc", name: "m", at: { x: 1, y: 2 } } },
  [10, 7, 1, 1, 109, 1, 2]);

// ---- Every variant, by hand ---------------------------------------------------------------------
client("Register", { Register: { username: "al", password: "pw" } }, [0, 2, 97, 108, 2, 112, 119]);
client("Login", { Login: { username: "al", password: "pw" } }, [1, 2, 97, 108, 2, 112, 119]);
server("Registered", { Registered: { username: "al" } }, [0, 2, 97, 108]);
server("ChatHistory empty", { ChatHistory: { lines: [] } }, [4, 0]);
server("OnlinePlayers", { OnlinePlayers: { names: ["a", "bc"] } }, [5, 2, 1, 97, 2, 98, 99]);
server("PlayerJoined", { PlayerJoined: { name: "a" } }, [6, 1, 97]);
server("PlayerLeft", { PlayerLeft: { name: "a" } }, [7, 1, 97]);
server("Kicked", { Kicked: { reason: "x" } }, [8, 1, 120]);
server("EnteredView Player", { EnteredView: { id: 70000, kind: "Player", name: "p", at: { x: 250, y: 251 } } },
  [10, 252, 0x70, 0x11, 1, 0, 0, 1, 112, 250, 251, 251, 0]);
server("LeftView", { LeftView: { id: 4294967295 } }, [11, 252, 255, 255, 255, 255]);
server("Chat at 1.8e12 ms", { Chat: { sender: "a", text: "b", sent_at_ms: 1_800_000_000_000 } },
  [3, 1, 97, 1, 98, 253, 0x00, 0x50, 0x5c, 0x18, 0xa3, 0x01, 0, 0]);

// ---- Round trips ----------------------------------------------------------------------------------
const long = "é".repeat(200); // 400 bytes: a two-byte length
const roundTrips = [
  [wire.encodeClient, wire.decodeClient, { Chat: { text: "héllo, мир, κόσμε 🦀" } }],
  [wire.encodeClient, wire.decodeClient, { Register: { username: "alice", password: long } }],
  [wire.encodeClient, wire.decodeClient, { MoveTo: { x: 2047.96875, y: 0 } }],
  [wire.encodeServer, wire.decodeServer, { ChatHistory: { lines: [line, { sender: "<script>", text: long, sent_at_ms: 2 ** 53 - 1 }] } }],
  [wire.encodeServer, wire.decodeServer, { OnlinePlayers: { names: Array.from({ length: 1024 }, (_, i) => `player_${i}`) } }],
  [wire.encodeServer, wire.decodeServer, { Whisper: { from: "a", to: "b", text: '"quoted"', sent_at_ms: 1_781_234_567_890 } }],
  [wire.encodeServer, wire.decodeServer, { Spawned: { id: 0, at: { x: 0, y: 0 } } }],
  [wire.encodeSnapshot, wire.decodeSnapshot, { seq: 4294967295, sent_at_ms: 0, positions: [] }],
  [wire.encodeSnapshot, wire.decodeSnapshot, {
    seq: 12, sent_at_ms: 1_781_234_567_890,
    positions: Array.from({ length: 60 }, (_, i) => [i * 1000, { x: i * 1000, y: 65535 - i }]),
  }],
];
roundTrips.forEach(([encode, decode, value], i) => {
  const back = decode(encode(value));
  check(`round trip ${i}`, same(back, value), `got ${show(back).slice(0, 200)}`);
});
const f = wire.decodeClient(wire.encodeClient({ MoveTo: { x: 0.1, y: Number.NaN } })).MoveTo;
check("f32 rounds to single precision", f.x === Math.fround(0.1) && Number.isNaN(f.y), show(f));
check("decode accepts an ArrayBuffer", same(wire.decodeServer(Uint8Array.from([12, 1, 120]).buffer), { System: { text: "x" } }));
check("decode accepts a subarray", same(wire.decodeServer(Uint8Array.from([0xff, 12, 1, 120]).subarray(1)), { System: { text: "x" } }));

// ---- What bincode accepts that a minimal encoder never writes: a wider varint than needed ------
check("non-minimal varint accepted", same(wire.decodeServer([12, 251, 1, 0, 120]), { System: { text: "x" } }));
check("u64 in the u32 form", same(wire.decodeSnapshot([1, 252, 44, 1, 0, 0, 0]), { seq: 1, sent_at_ms: 300, positions: [] }));

// ---- Strictness ---------------------------------------------------------------------------------
throws("unknown ServerMessage variant 15", () => wire.decodeServer([15]));
throws("unknown ServerMessage variant 251 form", () => wire.decodeServer([251, 15, 0]));
throws("unknown ClientMessage variant 4", () => wire.decodeClient([4]));
throws("unknown Request variant 5", () => wire.decodeServer([2, 5, 1, 120]));
throws("unknown Kind variant 2", () => wire.decodeServer([10, 7, 2, 1, 109, 1, 2]));
throws("empty input", () => wire.decodeServer([]));
throws("trailing byte", () => wire.decodeServer([1, 2, 97, 98, 0]));
throws("snapshot trailing byte", () => wire.decodeSnapshot([1, 0, 0, 0]));
throws("invalid UTF-8", () => wire.decodeServer([12, 2, 0xc3, 0x28]));
throws("lone surrogate as UTF-8", () => wire.decodeServer([12, 3, 0xed, 0xa0, 0x80]));
throws("string longer than the input", () => wire.decodeServer([12, 5, 120]));
throws("huge string length", () => wire.decodeServer([12, 253, 255, 255, 255, 255, 255, 255, 255, 255]));
throws("huge vec length", () => wire.decodeServer([5, 252, 255, 255, 255, 255]));
throws("u16 in the u32 form", () => wire.decodeServer([9, 1, 252, 1, 0, 0, 0, 2]));
throws("u32 in the u64 form", () => wire.decodeServer([11, 253, 1, 0, 0, 0, 0, 0, 0, 0]));
throws("u64 in the u128 form", () => wire.decodeSnapshot([1, 254, ...new Array(16).fill(0), 0]));
throws("reserved marker 255", () => wire.decodeServer([11, 255]));
throws("u64 beyond 2^53", () => wire.decodeSnapshot([1, 253, 0, 0, 0, 0, 0, 0, 0x20, 0, 0]));
throws("snapshot over 1000 bytes", () => wire.decodeSnapshot(new Uint8Array(1001)));
throws("server message over 256 KiB", () => wire.decodeServer(new Uint8Array(256 * 1024 + 1)));
throws("not bytes", () => wire.decodeServer("abc"));
// Every strict prefix of every vector above is truncated.
const full = [
  [wire.decodeServer, [9, 251, 44, 1, 1, 251, 255, 255]],
  [wire.decodeServer, [13, 1, 97, 1, 98, 1, 99, 251, 44, 1]],
  [wire.decodeServer, [14, 2, 1, 97, 1, 98, 251, 44, 1, 1, 97, 1, 98, 251, 44, 1]],
  [wire.decodeServer, [10, 252, 0x70, 0x11, 1, 0, 0, 1, 112, 250, 251, 251, 0]],
  [wire.decodeSnapshot, [1, 253, 0, 242, 5, 42, 1, 0, 0, 0, 1, 7, 1, 2]],
  [wire.decodeClient, [3, 0, 0, 192, 63, 0, 0, 0, 64]],
];
for (const [decode, bytes] of full) {
  for (let n = 0; n < bytes.length; n++) throws(`truncated ${show(bytes)} at ${n}`, () => decode(bytes.slice(0, n)));
}

// Encoding refuses what Rust's types cannot hold.
throws("encode unknown variant", () => wire.encodeClient({ Jump: {} }));
throws("encode two variants at once", () => wire.encodeClient({ Chat: { text: "a" }, MoveTo: { x: 1, y: 2 } }));
throws("encode missing field", () => wire.encodeClient({ Chat: {} }));
throws("encode non-string text", () => wire.encodeClient({ Chat: { text: 5 } }));
throws("encode non-number x", () => wire.encodeClient({ MoveTo: { x: "1", y: 2 } }));
throws("encode u16 overflow", () => wire.encodeServer({ Spawned: { id: 1, at: { x: 65536, y: 0 } } }));
throws("encode negative u32", () => wire.encodeServer({ LeftView: { id: -1 } }));
throws("encode fractional u32", () => wire.encodeServer({ LeftView: { id: 1.5 } }));
throws("encode unit variant as object", () => wire.encodeServer({ Denied: { request: { Chat: null }, reason: "x" } }));
throws("encode over 2 KiB", () => wire.encodeClient({ Chat: { text: "x".repeat(2100) } }));

console.log(`${passed} checks passed, ${failures} failed`);
process.exit(failures === 0 ? 0 : 1);
