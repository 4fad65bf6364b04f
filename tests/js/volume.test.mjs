// The volume of the model's voice: the gain, the slider's scale, and the user's wishes
// until the kernel confirms them.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  fromPercent, gainOf, GAIN_TIME_CONSTANT_S, toPercent, TraitWish, Volume,
} from "../../js/volume.js";

/** The part of anywidget's model the module uses; `kernel` is a trait update from it. */
class FakeModel {
  constructor(traits) {
    this.traits = { ...traits };
    this.listeners = [];
  }
  get(name) {
    return this.traits[name];
  }
  on(event, fn) {
    this.listeners.push([event, fn]);
  }
  off(event, fn) {
    this.listeners = this.listeners.filter(([e, f]) => e !== event || f !== fn);
  }
  kernel(name, value) {
    if (this.traits[name] === value) return; // no change, no update (as ipywidgets)
    this.traits[name] = value;
    for (const [e, fn] of [...this.listeners]) if (e === `change:${name}`) fn();
  }
}

test("the gain is the volume within 0..1, and 0 when muted", () => {
  assert.equal(gainOf(0.25, false), 0.25);
  assert.equal(gainOf(1, false), 1);
  assert.equal(gainOf(0, false), 0);
  assert.equal(gainOf(0.8, true), 0);
  assert.equal(gainOf(1.5, false), 1);
  assert.equal(gainOf(-1, false), 0);
  assert.equal(gainOf(undefined, false), 1); // no trait (yet): the default, full volume
  assert.equal(gainOf(Number.NaN, false), 1);
  assert.ok(GAIN_TIME_CONSTANT_S >= 0.015 && GAIN_TIME_CONSTANT_S <= 0.03);
});

test("the slider's 0..100 maps to the volume and back", () => {
  assert.equal(fromPercent("29"), 0.29);
  assert.equal(fromPercent(100), 1);
  assert.equal(fromPercent("0"), 0);
  assert.equal(toPercent(0.29), 29);
  assert.equal(toPercent(1 / 3), 33);
  for (let p = 0; p <= 100; p++) assert.equal(toPercent(fromPercent(String(p))), p);
});

test("a wish stands until its echo, and a quick second one does not bounce", () => {
  const model = new FakeModel({ volume: 1 });
  let changes = 0;
  const wish = new TraitWish(model, "volume", () => changes++);
  wish.want(0.5);
  wish.want(0.7);
  assert.equal(wish.value, 0.7);
  model.kernel("volume", 0.5); // the kernel took the first: still on its way to 0.7
  assert.equal(wish.value, 0.7);
  model.kernel("volume", 0.7);
  assert.equal(wish.value, 0.7);
  assert.equal(wish.wish, null); // the kernel's value stands again
  model.kernel("volume", 0.2); // Python sets it: followed
  assert.equal(wish.value, 0.2);
  assert.equal(changes, 3);
});

test("a value the page never sent is the kernel's decision and ends the wish", () => {
  const model = new FakeModel({ volume: 1 });
  const wish = new TraitWish(model, "volume", () => {});
  wish.want(0.5);
  model.kernel("volume", 0.3); // from Python, before the page's set arrived
  assert.equal(wish.value, 0.3);
  model.kernel("volume", 0.5); // then the page's set: the kernel's latest, followed
  assert.equal(wish.value, 0.5);
  model.kernel("volume", 0.9);
  assert.equal(wish.value, 0.9);
});

test("wishing what the kernel has leaves nothing waiting for an echo that never comes", () => {
  const model = new FakeModel({ muted: false });
  const wish = new TraitWish(model, "muted", () => {});
  wish.want(false); // no change: the kernel sends no update
  assert.deepEqual(wish.inFlight, []);
  model.kernel("muted", true); // set from Python later: followed at once
  assert.equal(wish.value, true);
});

test("a preview (a drag) is shown here only, and an older echo does not undo it", () => {
  const model = new FakeModel({ volume: 1 });
  const wish = new TraitWish(model, "volume", () => {});
  wish.want(0.5);
  wish.preview(0.3); // still dragging
  model.kernel("volume", 0.5);
  assert.equal(wish.value, 0.3);
  wish.want(0.3); // let go
  model.kernel("volume", 0.3);
  assert.equal(wish.wish, null);
  assert.equal(wish.value, 0.3);
});

test("Volume sends each change as a set message and plays it at once", () => {
  const model = new FakeModel({ volume: 1, muted: false });
  const sent = [];
  let changed = 0;
  const volume = new Volume(model, (content) => sent.push(content), () => changed++);
  assert.equal(volume.gain, 1);
  volume.setVolume(0.4);
  assert.equal(volume.gain, 0.4); // before the kernel has it
  volume.setMuted(true);
  assert.equal(volume.gain, 0);
  assert.equal(volume.volume, 0.4); // kept for the unmute
  volume.preview(0.6);
  assert.deepEqual(sent, [
    { kind: "set", name: "volume", value: 0.4 },
    { kind: "set", name: "muted", value: true },
  ]);
  assert.equal(changed, 3);
  model.kernel("muted", true);
  model.kernel("volume", 0.4); // an echo older than the preview
  assert.equal(volume.volume, 0.6);
  volume.setMuted(false);
  assert.equal(volume.gain, 0.6);
  volume.dispose();
  assert.deepEqual(model.listeners, []);
});
