// @ts-check
/**
 * The loudness of the model's voice in the page: the `volume` and `muted` traits, the
 * user's changes the kernel has not confirmed yet, and the gain the player applies.
 * Internal module; pure (no DOM, no Web Audio), so node runs its tests.
 *
 * The page never writes a trait into its model: a slider drag or a mute click goes to the
 * kernel as a `set` message, and the kernel's value comes back. Meanwhile the page obeys
 * the user at once (a wish), so the voice follows the slider even while a busy kernel
 * holds the message.
 */

import * as protocol from "./protocol.js";

/** Time constant of a gain change (s): it is within 1 % of its target after ~5 of them
 * (about 0.1 s), smooth enough that a change mid-word makes no click. */
export const GAIN_TIME_CONSTANT_S = 0.02;

/**
 * The gain for a volume and a mute: 0 when muted, else the volume within 0..1 (the kernel
 * checks the trait; a value that is not a number plays at full volume, the default).
 * @param {unknown} volume
 * @param {unknown} muted
 * @returns {number}
 */
export function gainOf(volume, muted) {
  if (muted) return 0;
  const value = Number(volume);
  return Number.isFinite(value) ? Math.min(1, Math.max(0, value)) : 1;
}

/** @param {number} volume 0..1 @returns {number} the slider's position, 0..100 */
export const toPercent = (volume) => Math.round(gainOf(volume, false) * 100);

/** @param {string | number} percent the slider's position @returns {number} a volume 0..1 */
export const fromPercent = (percent) => gainOf(Number(percent) / 100, false);

/**
 * What the page shows and plays for one trait: the user's wish until the kernel has it.
 *
 * Each value sent is remembered until its echo (the trait changing to it) comes back. An
 * echo of an older value (a newer one is on its way) keeps the wish, so a quick second
 * change does not bounce back and forth; the echo of the latest ends it. A value the page
 * never sent (set from Python meanwhile) is the kernel's decision: it ends the wish.
 * A `preview` is a wish that is not sent (the slider while it is dragged).
 */
export class TraitWish {
  /**
   * @param {{get: (name: any) => any, on: (event: string, fn: () => void) => void,
   *   off: (event: string, fn: () => void) => void}} model
   * @param {string} name the trait
   * @param {() => void} changed after the value shown may have changed
   */
  constructor(model, name, changed) {
    this.model = model;
    this.name = name;
    /** @type {{value: unknown} | null} the user's wish (null: the kernel's value stands) */
    this.wish = null;
    /** @type {unknown[]} values sent whose echo has not come, oldest first */
    this.inFlight = [];
    this.onChange = () => {
      this.kernelChanged(model.get(name));
      changed();
    };
    model.on(`change:${name}`, this.onChange);
  }

  /** @returns {unknown} the value in force here: the wish, else the kernel's */
  get value() {
    return this.wish ? this.wish.value : this.model.get(this.name);
  }

  /** @param {unknown} value the user chose it, and it is sent to the kernel */
  want(value) {
    this.wish = { value };
    // The kernel has it already: no echo will come (an update is sent only on a change).
    if (this.inFlight.length === 0 && value === this.model.get(this.name)) return;
    this.inFlight.push(value);
  }

  /** @param {unknown} value shown and played here only, not sent (yet) */
  preview(value) {
    this.wish = { value };
  }

  /** @param {unknown} value the kernel's new value */
  kernelChanged(value) {
    const at = this.inFlight.indexOf(value);
    if (at < 0) {
      this.wish = null; // not ours: the kernel decided
      this.inFlight = [];
      return;
    }
    this.inFlight.splice(0, at + 1); // ours, and any older ones it overtook
    if (this.inFlight.length === 0 && this.wish?.value === value) this.wish = null;
  }

  dispose() {
    this.model.off(`change:${this.name}`, this.onChange);
  }
}

/** The model's voice: its volume and mute, wished here and confirmed by the kernel. */
export class Volume {
  /**
   * @param {import("./model.js").WidgetModel} model
   * @param {(content: object) => void} send to the kernel
   * @param {() => void} changed the gain or what the controls show may have changed
   */
  constructor(model, send, changed) {
    this.send = send;
    this.changed = changed;
    this.level = new TraitWish(model, "volume", changed);
    this.mute = new TraitWish(model, "muted", changed);
  }

  /** @returns {number} the volume in force here, 0..1 */
  get volume() {
    return gainOf(this.level.value, false);
  }

  /** @returns {boolean} muted here */
  get muted() {
    return !!this.mute.value;
  }

  /** @returns {number} the gain to play the model's voice at, 0..1 */
  get gain() {
    return gainOf(this.volume, this.muted);
  }

  /** @param {number} volume 0..1, while the slider is dragged: here only */
  preview(volume) {
    this.level.preview(volume);
    this.changed();
  }

  /** @param {number} volume 0..1: here at once, and asked of the kernel */
  setVolume(volume) {
    this.level.want(volume);
    this.send(protocol.setTrait("volume", volume));
    this.changed();
  }

  /** @param {boolean} muted here at once, and asked of the kernel */
  setMuted(muted) {
    this.mute.want(muted);
    this.send(protocol.setTrait("muted", muted));
    this.changed();
  }

  dispose() {
    this.level.dispose();
    this.mute.dispose();
  }
}
