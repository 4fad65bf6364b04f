// @ts-check
/**
 * Screen frames: the change detector, the policy that decides when a frame goes to the model,
 * and the loop that looks at the shared screen, encodes JPEGs, sends them and keeps the
 * filmstrip's object URLs. Internal module; everything above `FrameLoop` is pure.
 */

import * as protocol from "./protocol.js";
import { LIMITS } from "./protocol.js";

/** The change detector compares luma thumbnails of this size (px). */
export const THUMB_WIDTH = 64;
export const THUMB_HEIGHT = 36;
/** A thumbnail pixel whose luma moved by more than this (of 255) counts as changed. */
export const PIXEL_DELTA = 12;
/** Defaults for the frame traits when the model does not set them. */
const DEFAULT_MAX_SIZE_PX = 1024;
const DEFAULT_JPEG_QUALITY = 0.7;
/** Defaults of the frame policy traits: the changed fraction of the screen that sends a frame,
 * and the heartbeat (s) that sends one on a still screen. */
const DEFAULT_MIN_CHANGE = 0.01;
const DEFAULT_HEARTBEAT_S = 10;
/** Retry delay while the shared video has no dimensions yet (ms). */
const FRAME_RETRY_MS = 100;
/** How often the frame policy looks at the screen (ms). */
const CHECK_MS = 250;
/** How often the page reports the frame policy's counters to the kernel (ms). */
const FRAME_STATS_MS = 2_000;
/** Frames the filmstrip shows (the latest the model got). */
export const FILMSTRIP_FRAMES = 8;

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
    /** @type {protocol.FrameCounts} */
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
 * What the page has sent since it loaded (the test seam's `sent`).
 * @typedef {{audio: number, frames: number,
 *   lastFrame: {width: number, height: number, bytes: number}}} SentCounts
 */

/**
 * The frame loop of one model: every CHECK_MS it looks at the shared screen, asks the policy,
 * and sends a JPEG scaled to `max_size`; it keeps the object URLs of recent frames for the
 * filmstrip, which shows those the kernel says the model got.
 */
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

export class FrameLoop {
  /**
   * @param {import("./model.js").WidgetModel} model its frame traits are read at each check
   * @param {(content: object, buffers?: ArrayBuffer[]) => void} send to the kernel
   * @param {SentCounts} sent counters this loop adds its frames to
   * @param {() => void} onFilmstrip the filmstrip changed
   */
  constructor(model, send, sent, onFilmstrip) {
    this.model = model;
    this.send = send;
    this.sent = sent;
    this.onFilmstrip = onFilmstrip;
    this.video = document.createElement("video");
    this.video.muted = true;
    this.video.playsInline = true;
    this.canvas = document.createElement("canvas");
    this.thumbCanvas = document.createElement("canvas");
    this.thumbCanvas.width = THUMB_WIDTH;
    this.thumbCanvas.height = THUMB_HEIGHT;
    this.policy = new FramePolicy();
    this.pause = new PauseWish(model);
    /** @type {MediaStream | null} the screen while frames are being sent */
    this.stream = null;
    this.captureId = "";
    this.seq = 0;
    this.run = 0; // bumps on every begin and end; in-flight checks compare against it
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.timer = undefined;
    this.lastStatsAt = 0;
    /** @type {Map<number, string>} object URLs of recently sent frames, by seq */
    this.recentFrames = new Map();
    /** @type {{seq: number, url: string}[]} frames the model got, oldest first */
    this.filmstrip = [];
  }

  /**
   * Play `screen` in the hidden video the frames are drawn from.
   * @param {MediaStream} screen
   */
  preview(screen) {
    this.video.srcObject = screen;
    // Not awaited: the loop waits for dimensions, and a refused play() is only logged.
    this.video.play().catch((error) => console.warn("[screenshare-widget] preview:", error));
  }

  /**
   * Counters and sequence numbers start again for a new capture.
   * @param {MediaStream | null} screen
   * @param {string} captureId
   */
  reset(screen, captureId) {
    this.run++;
    this.stream = screen;
    this.captureId = captureId;
    this.seq = 0;
    this.policy = new FramePolicy();
  }

  /** Start looking at the screen (after the kernel got `start`). */
  begin() {
    this.schedule(0);
  }

  /** The screen is no longer shared: stop looking (the filmstrip stays). */
  end() {
    this.run++;
    clearTimeout(this.timer);
    this.stream = null;
    this.video.pause();
    this.video.srcObject = null;
  }

  /** @param {number} delayMs */
  schedule(delayMs) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.check(), delayMs);
  }

  /** A luma thumbnail of the shared screen now. */
  screenThumb() {
    const ctx = this.thumbCanvas.getContext("2d", { willReadFrequently: true });
    if (!ctx) return new Uint8Array(0);
    ctx.drawImage(this.video, 0, 0, THUMB_WIDTH, THUMB_HEIGHT);
    return luma(ctx.getImageData(0, 0, THUMB_WIDTH, THUMB_HEIGHT).data);
  }

  /** The policy's options from the traits now. */
  options() {
    const minChange = Number(this.model.get("min_change"));
    const heartbeat = Number(this.model.get("heartbeat_s"));
    return {
      minChange: minChange >= 0 ? minChange : DEFAULT_MIN_CHANGE,
      heartbeatMs: 1000 * (heartbeat > 0 ? heartbeat : DEFAULT_HEARTBEAT_S),
      intervalMs: frameIntervalMs(Number(this.model.get("max_fps"))),
      paused: this.pause.paused,
    };
  }

  /** Look at the screen, send a frame if the policy says so, and look again in CHECK_MS. */
  async check() {
    const run = this.run;
    const video = this.video;
    if (!this.stream) return;
    if (!video.videoWidth || !video.videoHeight) {
      this.schedule(FRAME_RETRY_MS);
      return;
    }
    try {
      const now = performance.now();
      const thumb = this.screenThumb();
      const reason = this.policy.decide(now, thumb, this.options());
      if (reason) {
        const sent = await this.sendFrame(run, reason);
        if (run !== this.run || !this.stream) return;
        if (sent) this.policy.sent(now, thumb, reason);
      }
      this.reportStats();
    } catch (error) {
      console.warn("[screenshare-widget] frame capture failed:", error);
    }
    this.schedule(CHECK_MS);
  }

  /**
   * Draw the shared screen scaled to `max_size`, encode a JPEG and send it.
   * @param {number} run
   * @param {FrameReason} reason why the policy sends it
   * @returns {Promise<boolean>} whether it went out
   */
  async sendFrame(run, reason) {
    const { width, height, blob } = await this.encode();
    if (run !== this.run || !this.stream || !blob) return false;
    const jpeg = await blob.arrayBuffer();
    if (run !== this.run || !this.stream) return false;
    const t = performance.timeOrigin + performance.now();
    const seq = this.seq++;
    this.send(protocol.frame(this.captureId, seq, t, width, height, reason), [jpeg]);
    this.sent.frames++;
    this.sent.lastFrame = { width, height, bytes: jpeg.byteLength };
    this.keep(seq, URL.createObjectURL(blob));
    return true;
  }

  /** @returns {Promise<{width: number, height: number, blob: Blob | null}>} the JPEG now */
  async encode() {
    const video = this.video;
    const maxSide = Number(this.model.get("max_size")) || DEFAULT_MAX_SIZE_PX;
    const q = Number(this.model.get("jpeg_quality"));
    const quality = q >= 0 && q <= 1 ? q : DEFAULT_JPEG_QUALITY;
    const { width, height } = fitSize(video.videoWidth, video.videoHeight, maxSide);
    this.canvas.width = width;
    this.canvas.height = height;
    this.canvas.getContext("2d")?.drawImage(video, 0, 0, width, height);
    const blob = /** @type {Blob | null} */ (
      await new Promise((resolve) => {
        this.canvas.toBlob(resolve, "image/jpeg", quality);
      })
    );
    return { width, height, blob };
  }

  /**
   * Keep a sent frame's URL for the filmstrip; revoke the oldest no strip shows.
   * @param {number} seq
   * @param {string} url
   */
  keep(seq, url) {
    this.recentFrames.set(seq, url);
    for (const [old, oldUrl] of this.recentFrames) {
      if (this.recentFrames.size <= FILMSTRIP_FRAMES * 2) break;
      if (!this.filmstrip.some((f) => f.url === oldUrl)) URL.revokeObjectURL(oldUrl);
      this.recentFrames.delete(old);
    }
  }

  /** Every FRAME_STATS_MS, tell the kernel what the frame policy checked, sent and skipped. */
  reportStats() {
    const now = performance.now();
    if (now - this.lastStatsAt < FRAME_STATS_MS) return;
    this.lastStatsAt = now;
    this.send(protocol.frameStats(this.policy.counts));
  }

  /**
   * The kernel sent frame `seq` to the model: show it in the filmstrip.
   * @param {unknown} seq
   */
  onFrameSent(seq) {
    if (typeof seq !== "number") return;
    const url = this.recentFrames.get(seq);
    if (!url) return;
    this.filmstrip.push({ seq, url });
    while (this.filmstrip.length > FILMSTRIP_FRAMES) {
      const old = /** @type {{seq: number, url: string}} */ (this.filmstrip.shift());
      if (!this.recentFrames.has(old.seq)) URL.revokeObjectURL(old.url);
    }
    this.onFilmstrip();
  }
}
