// @ts-check
/**
 * When a screen frame goes to the model: the change detector (luma thumbnails), the policy
 * that decides by change, speech and heartbeat, and the user's pause wish. Pure: no DOM, no
 * timers (the loop in frames.js drives it). Internal module.
 */

import { LIMITS } from "./protocol.js";

/** The change detector compares luma thumbnails of this size (px). */
export const THUMB_WIDTH = 64;
export const THUMB_HEIGHT = 36;
/** A thumbnail pixel whose luma moved by more than this (of 255) counts as changed. */
export const PIXEL_DELTA = 12;
/** @typedef {"first" | "change" | "speech" | "heartbeat"} FrameReason */

/**
 * Luma (Rec. 601, 0-255) of RGBA pixels.
 * @param {Uint8ClampedArray | Uint8Array} rgba
 * @returns {Uint8Array}
 */
export function luma(rgba) {
  const out = new Uint8Array(rgba.length >> 2);
  for (let i = 0, j = 0; j < out.length; i += 4, j++) {
    out[j] = (77 * rgba[i] + 150 * rgba[i + 1] + 29 * rgba[i + 2]) >> 8;
  }
  return out;
}

/**
 * The fraction (0..1) of pixels whose luma differs by more than PIXEL_DELTA; 1 when the two
 * cannot be compared (none yet, or another size).
 * @param {Uint8Array | null} a
 * @param {Uint8Array | null} b
 */
export function changedFraction(a, b) {
  if (!a || !b || a.length !== b.length || a.length === 0) return 1;
  let changed = 0;
  for (let i = 0; i < a.length; i++) if (Math.abs(a[i] - b[i]) > PIXEL_DELTA) changed++;
  return changed / a.length;
}

/**
 * Scale `width` x `height` so the long side is at most `maxSide`, keeping the aspect ratio.
 * Never upscales. Returns 0 x 0 for a source without dimensions.
 * @param {number} width
 * @param {number} height
 * @param {number} maxSide
 * @returns {{width: number, height: number}}
 */
export function fitSize(width, height, maxSide) {
  if (!(width > 0 && height > 0)) return { width: 0, height: 0 };
  const scale = Math.min(1, maxSide / Math.max(width, height));
  return {
    width: Math.max(1, Math.round(width * scale)),
    height: Math.max(1, Math.round(height * scale)),
  };
}

/**
 * Frame interval (ms) for a `max_fps` trait value, never faster than LIMITS.max_fps.
 * @param {number} fps
 */
export function frameIntervalMs(fps) {
  return 1000 / (fps > 0 ? Math.min(fps, LIMITS.max_fps) : LIMITS.max_fps);
}

/**
 * When a screen frame goes to the model: when the screen changed beyond `minChange` since the
 * last frame sent; when the user starts to speak and anything at all changed since (say, a
 * word typed); and as a heartbeat on a still screen. Never sooner than `intervalMs` after the
 * last one, and never while paused. A change that comes within the interval is sent when it
 * ends (the comparison is with the last frame *sent*).
 */
export class FramePolicy {
  constructor() {
    this.lastSentAt = -Infinity;
    /** @type {Uint8Array | null} */
    this.lastThumb = null;
    this.speechPending = false;
    /** @type {import("./protocol.js").FrameCounts} */
    this.counts = { checked: 0, sent: 0, skipped: 0, first: 0, change: 0, speech: 0, heartbeat: 0 };
  }

  /**
   * @param {number} now ms
   * @param {Uint8Array} thumb luma thumbnail of the screen now
   * @param {{minChange: number, heartbeatMs: number, intervalMs: number, paused: boolean}} o
   * @returns {FrameReason | null} why to send now, or null
   */
  decide(now, thumb, { minChange, heartbeatMs, intervalMs, paused }) {
    this.counts.checked++;
    /** @type {FrameReason | null} */
    let reason = null;
    if (!paused && now - this.lastSentAt >= intervalMs) {
      const changed = changedFraction(thumb, this.lastThumb);
      if (!this.lastThumb) reason = "first";
      else if (changed >= minChange) reason = "change";
      else if (this.speechPending && changed > 0) reason = "speech";
      else if (now - this.lastSentAt >= heartbeatMs) reason = "heartbeat";
      // The user speaks about a screen the model already has: nothing to send for that.
      if (this.speechPending && changed === 0) this.speechPending = false;
    }
    if (!reason) this.counts.skipped++;
    return reason;
  }

  /**
   * A frame went out.
   * @param {number} now
   * @param {Uint8Array} thumb
   * @param {FrameReason} reason
   */
  sent(now, thumb, reason) {
    this.lastSentAt = now;
    this.lastThumb = thumb;
    this.speechPending = false;
    this.counts.sent++;
    this.counts[reason]++;
  }

  /** The user started to speak: the next check sends a frame (within the interval). */
  speechStarted() {
    this.speechPending = true;
  }
}

/**
 * Whether frames are paused: the user's click is obeyed and shown here at once, until the
 * kernel's `video_paused` changes (the kernel writes that trait, asked by a `set` message;
 * the page never writes a trait into its model, so nothing stale can be saved later).
 */
export class PauseWish {
  /** @param {import("./model.js").WidgetModel} model */
  constructor(model) {
    this.model = model;
    /** @type {boolean | null} the user's wish the kernel has not confirmed (null: none) */
    this.wanted = null;
    model.on("change:video_paused", () => {
      this.wanted = null; // the kernel's value, now: it took the wish, or decided later
    });
  }

  /** @returns {boolean} paused now, here */
  get paused() {
    return this.wanted ?? !!this.model.get("video_paused");
  }

  /** @param {boolean} paused what the user clicked for */
  want(paused) {
    this.wanted = paused;
  }
}
