// @ts-check
/**
 * The frame loop: it looks at the shared screen (screen-source.js), asks the frame policy
 * (frame-policy.js), encodes JPEGs (encoder.js), sends them and keeps the filmstrip's object
 * URLs. Internal module.
 */

import * as protocol from "./protocol.js";
import { JpegEncoder } from "./encoder.js";
import {
  FramePolicy, PauseWish, THUMB_HEIGHT, THUMB_WIDTH, fitSize, frameIntervalMs, luma,
} from "./frame-policy.js";
import { ScreenSource } from "./screen-source.js";
import { every } from "./ticker.js";

/** Defaults for the frame traits when the model does not set them. */
const DEFAULT_MAX_SIZE_PX = 1024;
const DEFAULT_JPEG_QUALITY = 0.7;
/** Defaults of the frame policy traits: the changed fraction of the screen that sends a frame,
 * and the heartbeat (s) that sends one on a still screen. */
const DEFAULT_MIN_CHANGE = 0.01;
const DEFAULT_HEARTBEAT_S = 10;
/** How often the frame policy looks at the screen (ms); the ticks come from a worker's timer,
 * so they keep time in a background tab (see ticker.js). */
const CHECK_MS = 250;
/** How often the page reports the frame policy's counters to the kernel (ms). */
const FRAME_STATS_MS = 2_000;
/** Frames the filmstrip shows (the latest the model got). */
export const FILMSTRIP_FRAMES = 8;

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
    this.source = new ScreenSource();
    this.encoder = new JpegEncoder();
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
    /** @type {(() => void) | null} stops the ticks */
    this.stopTicks = null;
    this.checking = false; // a check is in flight: a tick that comes meanwhile is skipped
    this.lastStatsAt = 0;
    /** @type {Map<number, string>} object URLs of recently sent frames, by seq */
    this.recentFrames = new Map();
    /** @type {{seq: number, url: string}[]} frames the model got, oldest first */
    this.filmstrip = [];
  }

  /**
   * Start reading `screen`, which the frames are drawn from.
   * @param {MediaStream} screen
   */
  preview(screen) {
    this.source.open(screen);
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
    if (this.source.mode === "frames") this.encoder.warm();
    this.stopTicks?.();
    this.stopTicks = every(CHECK_MS, () => this.tick());
    this.tick();
  }

  /**
   * Another screen is shared in the same capture: look at it from now on (the sequence
   * numbers and the policy go on; the new screen's first frame is a change).
   * @param {MediaStream} screen
   */
  resume(screen) {
    this.run++;
    this.stream = screen;
    this.source.open(screen);
    this.begin();
  }

  /** The screen is no longer shared: stop looking (the filmstrip stays). */
  end() {
    this.run++;
    this.stopTicks?.();
    this.stopTicks = null;
    this.stream = null;
    this.source.close();
    this.encoder.close();
  }

  /** One tick: a check, unless the last one is still encoding or sending. */
  tick() {
    if (this.checking || !this.stream) return;
    this.checking = true;
    this.check().finally(() => {
      this.checking = false;
    });
  }

  /**
   * A luma thumbnail of the shared screen now.
   * @param {import("./screen-source.js").Picture} picture
   */
  screenThumb(picture) {
    const ctx = this.thumbCanvas.getContext("2d", { willReadFrequently: true });
    if (!ctx) return new Uint8Array(0);
    ctx.drawImage(picture.image, 0, 0, THUMB_WIDTH, THUMB_HEIGHT);
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

  /** Look at the screen and send a frame if the policy says so. */
  async check() {
    const run = this.run;
    const picture = this.source.picture();
    if (!this.stream || !picture) return; // no picture yet: the next tick looks again
    try {
      const now = performance.now();
      const thumb = this.screenThumb(picture);
      const reason = this.policy.decide(now, thumb, this.options());
      if (reason) {
        const sent = await this.sendFrame(run, reason, picture);
        if (run !== this.run || !this.stream) return;
        // Spaced from when it went, not when it was looked at: however long encoding takes,
        // the kernel never gets frames closer than the interval (nor heartbeats sooner).
        if (sent) this.policy.sent(performance.now(), thumb, reason);
      }
      this.reportStats();
    } catch (error) {
      console.warn("[screenshare-widget] frame capture failed:", error);
    }
  }

  /**
   * Draw the shared screen scaled to `max_size`, encode a JPEG and send it.
   * @param {number} run
   * @param {import("./frame-policy.js").FrameReason} reason why the policy sends it
   * @param {import("./screen-source.js").Picture} picture the screen now
   * @returns {Promise<boolean>} whether it went out
   */
  async sendFrame(run, reason, picture) {
    const { width, height, blob } = await this.encode(picture);
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

  /**
   * The picture as a JPEG, drawn at once (before any await: the source may close it later).
   * @param {import("./screen-source.js").Picture} picture
   * @returns {Promise<{width: number, height: number, blob: Blob | null}>}
   */
  async encode(picture) {
    const maxSide = Number(this.model.get("max_size")) || DEFAULT_MAX_SIZE_PX;
    const q = Number(this.model.get("jpeg_quality"));
    const quality = q >= 0 && q <= 1 ? q : DEFAULT_JPEG_QUALITY;
    const { width, height } = fitSize(picture.width, picture.height, maxSide);
    const blob = await this.encoder.encode(picture.image, width, height, quality);
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
