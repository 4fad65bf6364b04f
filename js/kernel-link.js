// @ts-check
/**
 * The page's link to its kernel: sending (and noticing when sends keep failing), the kernel's
 * restarts and deaths, the beat that tells the kernel the page is there, and the busy check
 * on the kernel's acknowledgements. Internal module.
 */

import { BEAT_MS } from "./protocol.js";
import { every } from "./ticker.js";

/** Sends in a row that throw before the page counts its kernel connection as gone. */
const MAX_SEND_FAILURES = 3;
/** Kernel statuses (JupyterLab's kernel connection) after which this model's comm is dead. */
const KERNEL_GONE_STATUSES = ["restarting", "autorestarting", "dead"];
/** Unacknowledged microphone audio that means the kernel is busy (ms of audio). */
export const ACK_LAG_MS = 1_500;
/** Silence from the kernel, while live, that means the kernel is busy (ms). */
export const ACK_SILENCE_MS = 2_000;

export const KERNEL_RESTARTED = "The kernel restarted: run the cell again.";
export const KERNEL_DIED = "The kernel stopped: start it again and run the cell.";
export const KERNEL_LOST =
  "The kernel is gone (shut down, restarted or disconnected): start it if it is not running, " +
  "and run the cell again.";

/**
 * Call `tick` every BEAT_MS until the returned function is called; the ticks keep time in a
 * background tab (see ticker.js).
 * @param {() => void} tick
 * @returns {() => void} stops the beat
 */
export function startBeat(tick) {
  return every(BEAT_MS, tick);
}

/**
 * The kernel connection of the model's widget manager (JupyterLab, Notebook 7), if any; its
 * status tells when the kernel restarts or dies.
 * @param {import("./model.js").WidgetModel} model
 * @returns {any}
 */
export function kernelOf(model) {
  try {
    const manager = /** @type {any} */ (model).widget_manager;
    const kernel = manager?.kernel ?? manager?.context?.sessionContext?.session?.kernel;
    return kernel && typeof kernel.statusChanged?.connect === "function" ? kernel : null;
  } catch {
    return null;
  }
}

/**
 * Is the kernel busy? Live, but it stopped acknowledging what the page sends: too much
 * microphone audio unacknowledged, or no acknowledgement at all for a while. Pure.
 */
export class BusyWatch {
  constructor() {
    this.ackedSeq = -1;
    this.ackSeen = false;
    this.lastAckAt = 0;
    this.liveSeenAt = 0;
  }

  /** @param {number} now ms: a new capture went live */
  reset(now) {
    this.ackedSeq = -1;
    this.ackSeen = false;
    this.lastAckAt = 0;
    this.liveSeenAt = now;
  }

  /** @param {number} now ms: the microphone flows again (a new one): its quiet starts now */
  resume(now) {
    this.liveSeenAt = now;
  }

  /**
   * The kernel acknowledged microphone audio up to `audioSeq`.
   * @param {unknown} audioSeq
   * @param {number} now ms
   */
  ack(audioSeq, now) {
    if (typeof audioSeq === "number") this.ackedSeq = audioSeq;
    this.ackSeen = true;
    this.lastAckAt = now;
  }

  /**
   * @param {number} sentSeq microphone chunks sent in this capture
   * @param {number} chunkMs their length (ms)
   * @param {number} now ms
   */
  busy(sentSeq, chunkMs, now) {
    const lagMs = (sentSeq - 1 - this.ackedSeq) * chunkMs;
    const quietMs = now - Math.max(this.lastAckAt, this.liveSeenAt);
    return (this.ackSeen && lagMs > ACK_LAG_MS) || quietMs > ACK_SILENCE_MS;
  }
}

/**
 * Sends to the kernel and watches it go: a comm marked dead, a kernel status of restarting or
 * dead, or sends that keep throwing make it `gone` (a sentence saying why), once, for good.
 */
export class KernelLink {
  /**
   * @param {import("./model.js").WidgetModel} model
   * @param {(reason: string) => void} onGone called once when the kernel is gone
   */
  constructor(model, onGone) {
    this.model = model;
    this.onGone = onGone;
    /** Why this model's kernel is gone ("" while it is there): nothing can be shared then. */
    this.gone = "";
    this.sendFailures = 0;
    this.onCommLive = this.onCommLive.bind(this);
    this.onKernelStatus = this.onKernelStatus.bind(this);
    // ipywidgets marks every model's comm dead when its kernel restarts.
    model.on("comm_live_update", this.onCommLive);
    /** @type {any} JupyterLab's kernel connection, when the widget manager has one */
    this.kernel = kernelOf(model);
    this.kernel?.statusChanged?.connect?.(this.onKernelStatus);
    /** @type {(() => void) | null} stops the beat; null while the page does not beat */
    this.stopBeat = null;
  }

  /**
   * @param {object} content
   * @param {ArrayBuffer[]} [buffers] exact ArrayBuffers only
   */
  send(content, buffers) {
    if (this.gone) return;
    try {
      this.model.send(content, undefined, buffers);
      this.sendFailures = 0;
    } catch (error) {
      // A send throws only once the comm or its kernel connection is closed for good.
      if (++this.sendFailures >= MAX_SEND_FAILURES) {
        console.warn("[screenshare-widget] the kernel connection is gone:", error);
        this.lost(KERNEL_LOST);
      }
    }
  }

  /**
   * Beat (call `tick` every BEAT_MS, and once now) while `wanted`.
   * @param {boolean} wanted
   * @param {() => void} tick
   */
  beat(wanted, tick) {
    if (wanted && !this.stopBeat) {
      this.stopBeat = startBeat(tick);
      tick(); // at once: the kernel hears this page from the session's start
    } else if (!wanted && this.stopBeat) {
      this.stopBeat();
      this.stopBeat = null;
    }
  }

  onCommLive() {
    // Only a disconnect fires this after the model exists; a kernel that still answers
    // (a future widget manager reconnecting) keeps the session.
    const status = this.kernel?.status;
    if (status === "idle" || status === "busy") return;
    this.lost(KERNEL_RESTARTED);
  }

  /**
   * @param {unknown} _sender
   * @param {string} status
   */
  onKernelStatus(_sender, status) {
    if (!KERNEL_GONE_STATUSES.includes(status)) return;
    this.lost(status === "dead" ? KERNEL_DIED : KERNEL_RESTARTED);
  }

  /** @param {string} reason */
  lost(reason) {
    if (this.gone) return;
    this.gone = reason;
    this.onGone(reason);
  }

  dispose() {
    this.stopBeat?.();
    this.stopBeat = null;
    this.kernel?.statusChanged?.disconnect?.(this.onKernelStatus);
    this.model.off("comm_live_update", this.onCommLive);
  }
}
