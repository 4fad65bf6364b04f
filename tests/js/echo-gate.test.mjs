// The echo gate: leaks ducked, the user's voice kept whole, nothing lost or reordered.
import assert from "node:assert/strict";
import { test } from "node:test";

import { DUCK_DB, EchoGate, HOLD_MS, OPEN_MS } from "../../js/echo-gate.js";

const FRAME = 320; // 20 ms at 16 kHz
const dbfs = (/** @type {number} */ level) => Math.round(32768 * 10 ** (level / 20));

/**
 * A 100 ms chunk (5 frames) whose frames hold a square wave at these levels (dBFS).
 * @param {number[]} levels
 * @param {number} t
 */
function chunk(levels, t) {
  const pcm = new Int16Array(FRAME * levels.length);
  levels.forEach((level, f) => {
    for (let i = 0; i < FRAME; i++) pcm[f * FRAME + i] = (i % 2 ? 1 : -1) * dbfs(level);
  });
  return { pcm: pcm.buffer, rms: 0, t };
}

/** @param {{pcm: ArrayBuffer}} c @returns {number[]} each frame's peak */
const peaks = (c) => {
  const s = new Int16Array(c.pcm);
  const out = [];
  for (let f = 0; f < s.length; f += FRAME) {
    out.push(Math.max(...Array.from(s.subarray(f, f + FRAME), Math.abs)));
  }
  return out;
};

const QUIET = -70;
const LOUD = -25;

test("while the model is silent the gate passes everything at once, unchanged", () => {
  const gate = new EchoGate();
  const c = chunk([LOUD, QUIET, LOUD, LOUD, QUIET], 1);
  const before = peaks(c);
  assert.deepEqual(gate.push(c, false), [c]);
  assert.deepEqual(peaks(c), before);
  assert.deepEqual(gate.counts, { judged: 0, ducked: 0, opened: 0 });
});

test("a leak shorter than OPEN_MS is ducked by DUCK_DB; quiet frames too", () => {
  assert.ok(OPEN_MS > 100, "the canceller leaks bursts of up to 100 ms");
  const gate = new EchoGate();
  // A 100 ms burst across two chunks, then quiet.
  const a = chunk([QUIET, QUIET, LOUD, LOUD, LOUD], 1);
  const b = chunk([LOUD, LOUD, QUIET, QUIET, QUIET], 2);
  assert.deepEqual(gate.push(a, true), [], "the burst is undecided: its chunk waits");
  assert.deepEqual(gate.push(b, true), [a, b], "decided: both go, in order");
  const ducked = Math.round(dbfs(LOUD) * 10 ** (-DUCK_DB / 20));
  assert.deepEqual(peaks(a).slice(2), [ducked, ducked, ducked]);
  assert.deepEqual(peaks(b).slice(0, 2), [ducked, ducked]);
  assert.ok(Math.max(...peaks(a), ...peaks(b)) <= ducked);
  assert.deepEqual(gate.counts, { judged: 10, ducked: 10, opened: 0 });
});

test("the user's voice opens the gate and goes whole, delayed by at most OPEN_MS", () => {
  const gate = new EchoGate();
  const a = chunk([QUIET, QUIET, LOUD, LOUD, LOUD], 1);
  const b = chunk([LOUD, LOUD, LOUD, LOUD, LOUD], 2);
  assert.deepEqual(gate.push(a, true), []);
  assert.deepEqual(gate.push(b, true), [a, b], "8 loud frames (160 ms) open the gate");
  assert.deepEqual(peaks(a).slice(2), [dbfs(LOUD), dbfs(LOUD), dbfs(LOUD)], "the run is kept whole");
  assert.deepEqual(peaks(b), Array(5).fill(dbfs(LOUD)));
  assert.equal(gate.counts.opened, 1);
  // Open: the pauses between words pass for HOLD_MS, and nothing waits.
  const pauses = Math.floor(HOLD_MS / 20) - 1;
  let passed = 0;
  for (let i = 0; i < pauses; i += 5) {
    const c = chunk(Array(Math.min(5, pauses - i)).fill(QUIET), 3 + i);
    assert.deepEqual(gate.push(c, true), [c]);
    passed += peaks(c).filter((p) => p === dbfs(QUIET)).length;
  }
  assert.equal(passed, pauses, "no pause frame was ducked while the gate was open");
  // Past the hold, it closes again.
  const late = chunk([QUIET, QUIET, QUIET, QUIET, QUIET], 99);
  gate.push(late, true);
  assert.ok(peaks(late).at(-1) < dbfs(QUIET));
});

test("speech that began before the model spoke keeps the gate open", () => {
  const gate = new EchoGate();
  gate.push(chunk([LOUD, LOUD, LOUD, LOUD, LOUD], 1), false);
  const c = chunk([LOUD, QUIET, LOUD, QUIET, LOUD], 2);
  assert.deepEqual(gate.push(c, true), [c]);
  assert.equal(gate.counts.ducked, 0);
});

test("a run still undecided when the echo ends goes unchanged; drain gives what waits", () => {
  const gate = new EchoGate();
  const a = chunk([QUIET, QUIET, QUIET, LOUD, LOUD], 1);
  assert.deepEqual(gate.push(a, true), []);
  const b = chunk([LOUD, QUIET, QUIET, QUIET, QUIET], 2);
  assert.deepEqual(gate.push(b, false), [a, b]);
  assert.deepEqual(peaks(a).slice(3), [dbfs(LOUD), dbfs(LOUD)]);
  const other = new EchoGate();
  const c = chunk([QUIET, QUIET, QUIET, LOUD, LOUD], 3);
  assert.deepEqual(other.push(c, true), []);
  assert.deepEqual(other.drain(), [c], "a Stop sends what the gate held");
  assert.deepEqual(other.drain(), []);
});
