// The message builders, the guards and the limits of the wire protocol.
import assert from "node:assert/strict";
import { test } from "node:test";

import * as protocol from "../../js/protocol.js";

test("the kinds and the limits are frozen", () => {
  assert.ok(Object.isFrozen(protocol.BROWSER_KINDS));
  assert.ok(Object.isFrozen(protocol.KERNEL_KINDS));
  assert.ok(Object.isFrozen(protocol.LIMITS));
  assert.deepEqual(protocol.LIMITS, {
    max_text_chars: 10_000, max_instruction_chars: 200_000, min_chunk_ms: 20, max_chunk_ms: 250, max_fps: 1,
  });
  assert.equal(new Set(protocol.BROWSER_KINDS).size, protocol.BROWSER_KINDS.length);
});

test("every builder makes a message of a browser kind", () => {
  const counts = { checked: 3, sent: 1, skipped: 2, first: 1, change: 0, speech: 0, heartbeat: 0 };
  const built = [
    protocol.hello(),
    protocol.beat("page", "cap", 2),
    protocol.start("cap"),
    protocol.audio("cap", 4, 1.5),
    protocol.frame("cap", 1, 2.5, 1024, 576, "change"),
    protocol.stop("why"),
    protocol.stop("why", "cap"),
    protocol.clientError("broken"),
    protocol.playback(1000, 200, 1, 0),
    protocol.text("hi"),
    protocol.confirm("id-1", true),
    protocol.frameStats(counts),
    protocol.setTrait("video_paused", true),
    protocol.device("mic_ended", "USB microphone", "cap"),
  ];
  for (const message of built) assert.ok(protocol.BROWSER_KINDS.includes(message.kind), message.kind);
  assert.deepEqual(new Set(built.map((m) => m.kind)), new Set(protocol.BROWSER_KINDS));
});

test("the builders carry the fields the kernel parses", () => {
  assert.deepEqual(protocol.device("screen_shared", "tab", "c"), {
    kind: "device", what: "screen_shared", label: "tab", capture: "c",
  });
  assert.deepEqual(protocol.beat("p", "", 0), { kind: "beat", page: "p", capture: "", views: 0 });
  assert.deepEqual(protocol.audio("c", 7, 12.5), { kind: "audio", capture: "c", seq: 7, t: 12.5 });
  assert.deepEqual(protocol.frame("c", 2, 3, 640, 360, "first"), {
    kind: "frame", capture: "c", seq: 2, t: 3, width: 640, height: 360, reason: "first",
  });
  assert.deepEqual(protocol.stop("user"), { kind: "stop", reason: "user" });
  assert.ok(!("capture" in protocol.stop("user")));
  assert.deepEqual(protocol.stop("user", "c"), { kind: "stop", reason: "user", capture: "c" });
  assert.deepEqual(protocol.playback(1000, 250, 2, 1), {
    kind: "playback", played_ms: 1000, queued_ms: 250, underruns: 2, dropped_chunks: 1,
  });
  assert.deepEqual(protocol.confirm("x", false), { kind: "confirm", id: "x", allow: false });
  assert.deepEqual(protocol.setTrait("system_instruction", "Be brief."), {
    kind: "set", name: "system_instruction", value: "Be brief.",
  });
  assert.ok(Object.isFrozen(protocol.PAGE_TRAITS));
  assert.deepEqual(protocol.frameStats({ checked: 1, sent: 1, skipped: 0, first: 1, change: 0,
    speech: 0, heartbeat: 0 }), { kind: "frame_stats", checked: 1, sent: 1, skipped: 0,
    first: 1, change: 0, speech: 0, heartbeat: 0 });
});

test("typed text is cut to the kernel's limit", () => {
  const long = "x".repeat(protocol.LIMITS.max_text_chars + 5);
  assert.equal(protocol.text(long).text.length, protocol.LIMITS.max_text_chars);
  assert.equal(protocol.text("short").text, "short");
});

test("the guards accept what the kernel sends and nothing else", () => {
  assert.ok(protocol.isTurn({ role: "user", text: "hi" }));
  assert.ok(!protocol.isTurn({ role: "user" }));
  assert.ok(!protocol.isTurn(null));
  assert.ok(!protocol.isTurn("text"));
  assert.ok(protocol.isToolCall({ name: "f" }));
  assert.ok(!protocol.isToolCall({ name: 3 }));
  assert.ok(protocol.isWhole(3) && !protocol.isWhole(3.5) && !protocol.isWhole("3"));
});

test("capture ids are unique", () => {
  const ids = new Set(Array.from({ length: 50 }, () => protocol.newCaptureId()));
  assert.equal(ids.size, 50);
});
