// The latency trace's arithmetic (the benchmarks read it) and the player worklet's half.
import assert from "node:assert/strict";
import { test } from "node:test";

import { LatencyTrace, PlayerTrace, RENDER_QUANTUM, TRACE_GIVE_UP_MS } from "../../js/trace.js";

/** A playback clock: frame f left the output at timeOrigin + performanceTime + (f/rate - contextTime) s. */
const context = (contextTime, performanceTime, currentTime = contextTime, sampleRate = 24000) => ({
  sampleRate, currentTime, getOutputTimestamp: () => ({ contextTime, performanceTime }),
});
const wall = (ms) => performance.timeOrigin + ms;

test("a played chunk gets the wall time its first sample left the output", () => {
  const trace = new LatencyTrace();
  const id = trace.modelChunk(new DataView(new Int16Array([1, 2, 3]).buffer));
  // At performance time 5000 ms the output played context time 2 s; frame 72000 is 3 s.
  const taken = trace.settle([[id, 72000]], /** @type {any} */ (context(2, 5000)), false);
  assert.equal(taken.down.length, 1);
  const [received, hash, output] = taken.down[0];
  assert.ok(Math.abs(output - wall(6000)) < 1e-6);
  assert.ok(received <= wall(performance.now()));
  assert.equal(typeof hash, "number");
  assert.equal(trace.down.size, 0);
});

test("an unplayed chunk waits, and goes with `all` or after the give-up time", () => {
  const trace = new LatencyTrace();
  trace.modelChunk(new DataView(new ArrayBuffer(4)));
  const ctx = /** @type {any} */ (context(0, 0));
  assert.equal(trace.settle([], ctx, false).down.length, 0);
  const [row] = [...trace.down.values()];
  row[0] -= TRACE_GIVE_UP_MS + 1; // received long ago
  const taken = trace.settle([], ctx, false);
  assert.deepEqual(taken.down.map((r) => r[2]), [null]);
  trace.modelChunk(new DataView(new ArrayBuffer(4)));
  assert.equal(trace.settle([], ctx, true).down.length, 1);
});

test("an interrupt counts the render quanta from its arrival to the silent quantum", () => {
  const trace = new LatencyTrace();
  const id = trace.interrupt(/** @type {any} */ (context(1, 0, 1)));  // frame 24000 at arrival
  const entry = ["flush", id, 24000 + 3 * RENDER_QUANTUM, 0, true];
  const taken = trace.settle([entry], /** @type {any} */ (context(1, 1000)), false);
  assert.equal(taken.interrupts.length, 1);
  const [, quanta, silentAt, samples, playing] = taken.interrupts[0];
  assert.equal(quanta, 3);
  assert.ok(Math.abs(silentAt - wall(1000 + (3 * RENDER_QUANTUM * 1000) / 24000)) < 1e-6);
  assert.equal(samples, 0);
  assert.equal(playing, true);
  assert.equal(trace.pendingInterrupts.size, 0);
});

test("entries of a timed-out request are settled with the next ones", () => {
  const trace = new LatencyTrace();
  const id = trace.modelChunk(new DataView(new ArrayBuffer(2)));
  trace.orphans.push([id, 0]);
  const taken = trace.settle([], /** @type {any} */ (context(0, 0)), false);
  assert.equal(taken.down.length, 1);
  assert.equal(trace.orphans.length, 0);
});

test("microphone chunks are named by their hash and taken once", () => {
  const trace = new LatencyTrace();
  trace.micChunk(new Int16Array([5, 6]).buffer, 123);
  trace.micChunk(new Int16Array([5, 6]).buffer, 456);
  const { up } = trace.takeUp();
  assert.deepEqual(up.map((r) => r[0]), [123, 456]);
  assert.equal(up[0][1], up[1][1]);
  assert.deepEqual(trace.takeUp().up, []);
});

test("the player's trace notes a traced chunk's first frame and the quantum after a flush", () => {
  const player = new PlayerTrace();
  const traced = new Float32Array(10);
  const untraced = new Float32Array(10);
  player.pushed(traced, 7);
  player.pushed(untraced, undefined);
  player.chunkStarts(untraced, 100);
  player.chunkStarts(traced, 128);
  player.flushed(8, true);
  player.flushed(undefined, false);
  const flushes = player.beginQuantum();
  assert.deepEqual(player.beginQuantum(), []);
  player.endQuantum(flushes, 256, 0);
  assert.deepEqual(player.take(), [[7, 128], ["flush", 8, 256, 0, true]]);
  assert.deepEqual(player.take(), []);
});
