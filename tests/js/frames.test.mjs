// The change detector and the frame policy's decisions.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  changedFraction, fitSize, frameIntervalMs, FramePolicy, luma, PauseWish, PIXEL_DELTA,
} from "../../js/frame-policy.js";

const OPTIONS = { minChange: 0.01, heartbeatMs: 10_000, intervalMs: 1000, paused: false };
const still = () => new Uint8Array(100).fill(100);
/** A thumbnail with `count` of its 100 pixels moved by `delta`. */
const moved = (count, delta = 50) => {
  const t = still();
  t.fill(100 + delta, 0, count);
  return t;
};

test("luma weighs red, green and blue as Rec. 601", () => {
  const rgba = new Uint8Array([255, 0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 255, 255, 255, 255, 0]);
  assert.deepEqual(Array.from(luma(rgba)), [76, 149, 28, 255]);
});

test("changedFraction counts pixels moved by more than PIXEL_DELTA; 1 when incomparable", () => {
  assert.equal(changedFraction(still(), moved(10)), 0.1);
  assert.equal(changedFraction(still(), moved(50, PIXEL_DELTA)), 0);
  assert.equal(changedFraction(still(), moved(50, PIXEL_DELTA + 1)), 0.5);
  assert.equal(changedFraction(null, still()), 1);
  assert.equal(changedFraction(still(), new Uint8Array(4)), 1);
  assert.equal(changedFraction(new Uint8Array(0), new Uint8Array(0)), 1);
});

test("fitSize scales the long side down, never up, and keeps the aspect ratio", () => {
  assert.deepEqual(fitSize(1280, 720, 1024), { width: 1024, height: 576 });
  assert.deepEqual(fitSize(720, 1280, 1024), { width: 576, height: 1024 });
  assert.deepEqual(fitSize(800, 600, 1024), { width: 800, height: 600 });
  assert.deepEqual(fitSize(0, 0, 1024), { width: 0, height: 0 });
  assert.deepEqual(fitSize(5000, 2, 64), { width: 64, height: 1 });
});

test("the frame interval follows max_fps up to the limit of 1 per second", () => {
  assert.equal(frameIntervalMs(0.5), 2000);
  assert.equal(frameIntervalMs(1), 1000);
  assert.equal(frameIntervalMs(5), 1000);
  assert.equal(frameIntervalMs(0), 1000);
  assert.equal(frameIntervalMs(NaN), 1000);
});

test("the first look sends; a still screen waits for the heartbeat", () => {
  const p = new FramePolicy();
  assert.equal(p.decide(0, still(), OPTIONS), "first");
  p.sent(0, still(), "first");
  assert.equal(p.decide(1000, still(), OPTIONS), null);
  assert.equal(p.decide(9999, still(), OPTIONS), null);
  assert.equal(p.decide(10_000, still(), OPTIONS), "heartbeat");
  p.sent(10_000, still(), "heartbeat");
  assert.deepEqual(p.counts, {
    checked: 4, sent: 2, skipped: 2, first: 1, change: 0, speech: 0, heartbeat: 1,
  });
});

test("a change is sent at once, or when the interval since the last frame ends", () => {
  const p = new FramePolicy();
  p.sent(0, still(), "first");
  assert.equal(p.decide(500, moved(5), OPTIONS), null); // within the interval
  assert.equal(p.decide(1000, moved(5), OPTIONS), "change"); // compared with the frame sent
  assert.equal(p.decide(1000, moved(0), OPTIONS), null);
  assert.equal(p.decide(1000, moved(1), { ...OPTIONS, minChange: 0.02 }), null);
});

test("speech sends a frame if anything changed, and is forgotten on an unchanged screen", () => {
  const p = new FramePolicy();
  p.sent(0, still(), "first");
  p.speechStarted();
  assert.equal(p.decide(1000, moved(1), { ...OPTIONS, minChange: 0.5 }), "speech");
  p.sent(1000, moved(1), "speech");
  assert.equal(p.speechPending, false);
  p.speechStarted();
  assert.equal(p.decide(2000, moved(1), OPTIONS), null); // nothing changed since
  assert.equal(p.speechPending, false);
  assert.equal(p.decide(2500, moved(2), { ...OPTIONS, minChange: 0.5 }), null);
});

test("nothing is sent while paused, however much changed", () => {
  const p = new FramePolicy();
  assert.equal(p.decide(0, still(), { ...OPTIONS, paused: true }), null);
  p.sent(0, still(), "first");
  assert.equal(p.decide(60_000, moved(100), { ...OPTIONS, paused: true }), null);
  assert.equal(p.counts.skipped, 2);
});

test("a pause wish is obeyed at once and gives way to the kernel's value", () => {
  const listeners = new Map();
  const traits = { video_paused: false };
  const model = {
    get: (/** @type {string} */ key) => traits[key],
    on: (/** @type {string} */ name, /** @type {() => void} */ fn) => listeners.set(name, fn),
  };
  const pause = new PauseWish(/** @type {any} */ (model));
  assert.equal(pause.paused, false);
  pause.want(true); // clicked: paused here before the kernel knows
  assert.equal(pause.paused, true);
  assert.equal(traits.video_paused, false); // the model is untouched
  traits.video_paused = true;
  listeners.get("change:video_paused")(); // the kernel wrote it
  assert.equal(pause.wanted, null);
  traits.video_paused = false; // later, the kernel resumes (a budget's undo, Python)
  listeners.get("change:video_paused")();
  assert.equal(pause.paused, false);
});
