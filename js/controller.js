// @ts-check
/**
 * Everything that exists once per widget model: the kernel link, the sharing (capture,
 * playback, frames), the volume of the model's voice, the transcript and the tool calls.
 * Views subscribe to "state", "level", "turns", "tools" and "filmstrip"; "gone" says the
 * model's kernel is gone for good. Internal module.
 */

import { Emitter } from "./emitter.js";
import { KernelLink } from "./kernel-link.js";
import { Notice } from "./notice.js";
import * as protocol from "./protocol.js";
import { isToolCall, isTurn, isWhole, newCaptureId } from "./protocol.js";
import * as say from "./sentences.js";
import { Sharing } from "./sharing.js";
import { LatencyTrace } from "./trace.js";
import { Volume } from "./volume.js";
import { WindowShare } from "./window-share.js";

/** With no view of the model left in the page, capture stops after this long unless a view
 * comes back (ms): a re-render keeps the session; a closed tab or a cleared output ends the
 * sharing within a second. */
const VIEWLESS_GRACE_MS = 400;

/** @typedef {import("./model.js").WidgetModel} WidgetModel */

export class Controller extends Emitter {
  /** @param {WidgetModel} model */
  constructor(model) {
    super();
    this.model = model;
    /** @type {protocol.Turn[]} */
    this.turns = [];
    /** @type {protocol.ToolCall[]} */
    this.tools = [];
    /** @type {LatencyTrace | null} on for benchmarks only */
    this.trace = null;
    /** Names this controller to the kernel (a page, in the kernel's eyes). */
    this.pageId = newCaptureId();
    this.views = 0; // views of this model rendered in the page now
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.viewlessTimer = undefined;
    this.lastError = String(model.get("error") || "");
    this.notice = new Notice(() => this.emit("state"));
    // A page that closes or reloads ends its capture and, if the message still gets out,
    // the session at once (else the kernel's page timeout ends it).
    this.onPageHide = () => {
      if (this.sharing.phase !== "idle") this.sharing.stop(say.PAGE_CLOSED_REASON);
      this.windowShare.window.close(); // an idle one too: nothing may outlive this page
    };
    this.listen(model);
    this.link = new KernelLink(model, () => this.onKernelLost());
    this.sharing = new Sharing({
      model,
      link: this.link,
      notice: this.notice,
      emit: (topic, arg) => this.emit(topic, arg),
      phaseChanged: () => this.updateBeat(),
      explainRefusal: (stage, error) => this.windowShare.explain(stage, error),
      stopped: () => this.windowShare.window.close(),
      trace: () => this.trace,
    });
    // Once per model, like the player it sets: it outlasts each Share's audio context.
    this.volume = new Volume(model, (content) => this.send(content), () => this.onVolume());
    this.sharing.player.setGain(this.volume.gain);
    /** @type {WindowShare} Share here, or through the capture window */
    this.windowShare = new WindowShare(this.sharing, this.pageId, () => this.views > 0);
    this.on("state", () => this.windowShare.update());
    this.link.send(protocol.hello());
    this.updateBeat();
  }

  /** @param {WidgetModel} model */
  listen(model) {
    this.onCustom = this.onCustom.bind(this);
    this.onStatus = this.onStatus.bind(this);
    this.onError = this.onError.bind(this);
    window.addEventListener("pagehide", this.onPageHide);
    model.on("msg:custom", this.onCustom);
    model.on("change:status", this.onStatus);
    model.on("change:error", this.onError);
  }

  /** Why this model's kernel is gone ("" while it is there): nothing can be shared then. */
  get kernelGone() {
    return this.link.gone;
  }

  /**
   * @param {object} content
   * @param {ArrayBuffer[]} [buffers] exact ArrayBuffers only
   */
  send(content, buffers) {
    this.link.send(content, buffers);
  }

  // -- views and the kernel --

  /** A view of this model was rendered. */
  viewAdded() {
    this.views++;
    clearTimeout(this.viewlessTimer);
  }

  /** A view of this model went away; with none left, sharing ends unless one comes back. */
  viewRemoved() {
    this.views = Math.max(0, this.views - 1);
    if (this.views > 0) return;
    clearTimeout(this.viewlessTimer);
    this.viewlessTimer = setTimeout(() => {
      if (this.views > 0) return;
      if (this.sharing.phase !== "idle") this.sharing.stop(say.NO_VIEW_REASON);
      this.windowShare.window.close(); // no cell shows it: an idle window must not share later
    }, VIEWLESS_GRACE_MS);
  }

  /**
   * Beat while there is a session to keep (the kernel's status says one runs) or this page
   * captures: an idle assistant, and the many a re-run cell leaves behind, send nothing.
   */
  updateBeat() {
    const status = this.model.get("status");
    const active = status === "connecting" || status === "live" || status === "reconnecting";
    const sharing = this.sharing;
    const wanted = !this.kernelGone && (active || sharing.phase !== "idle");
    this.link.beat(wanted, () => {
      const capture = sharing.phase === "live" ? sharing.captureId : "";
      this.send(protocol.beat(this.pageId, capture, this.views));
    });
  }

  /**
   * This model's kernel is gone: end capture (no message can reach it), say why, and keep
   * Share off; a new cell run makes a new model.
   */
  onKernelLost() {
    this.sharing.stop("", { fromKernel: true });
    this.windowShare.window.close();
    this.updateBeat();
    this.emit("state");
    this.emit("gone"); // off the test seam: this model is dead
  }

  /** The volume or mute changed, here or in the kernel: the voice and the views follow. */
  onVolume() {
    this.sharing.player.setGain(this.volume.gain);
    this.emit("state");
  }

  onError() {
    const error = String(this.model.get("error") || "");
    // The kernel's stop reason repeats its error as a notice: it goes when the error does.
    if (!error && this.notice.text && this.notice.text === this.lastError) {
      this.notice.clear();
      this.emit("state");
    }
    this.lastError = error;
  }

  onStatus() {
    if (this.model.get("status") === "live") {
      this.sharing.busyWatch.liveSeenAt = performance.now();
    }
    this.updateBeat();
    this.sharing.checkBusy();
  }

  /**
   * A message from the kernel (kinds: protocol.KERNEL_KINDS).
   * @param {any} msg
   * @param {DataView[]} [buffers]
   */
  onCustom(msg, buffers) {
    if (!msg || typeof msg !== "object") return;
    const { sharing } = this;
    switch (msg.kind) {
      case "audio":
        return sharing.player.play(msg.gen, buffers?.[0], this.trace);
      case "interrupted":
        return sharing.player.interrupt(msg.gen, this.trace);
      case "turn_complete":
        return sharing.player.endTurn(msg.gen);
      case "turn":
        return this.setTurn(msg.index, msg.turn);
      case "snapshot":
        return this.onSnapshot(msg);
      case "tool":
        return this.setTool(msg.index, msg.tool);
      case "stop":
        return sharing.stop(typeof msg.reason === "string" ? msg.reason : "", { fromKernel: true });
      case "capture":
        // Another page (or a view in another window) took over the session's sharing.
        if (sharing.phase !== "idle" && !sharing.ownCaptures.has(msg.capture)) {
          sharing.stop(say.MOVED_REASON, { fromKernel: true });
        }
        return;
      case "ack":
        return sharing.onAck(msg.audio_seq);
      case "frame_sent":
        return sharing.frames.onFrameSent(msg.seq);
      case "notice":
        if (typeof msg.text === "string") this.notice.show(msg.text);
        return;
      default:
        return; // unknown kinds are ignored: newer kernels may add some
    }
  }

  /** @param {any} msg the state of the conversation, for a page that opens */
  onSnapshot(msg) {
    // How the last session ended, for a page that opens after it.
    if (typeof msg.ended === "string" && msg.ended && this.sharing.phase === "idle") {
      this.notice.show(msg.ended);
    }
    this.turns = Array.isArray(msg.turns) ? msg.turns.filter(isTurn) : [];
    this.tools = Array.isArray(msg.tools) ? msg.tools.filter(isToolCall) : [];
    this.emit("tools");
    this.sharing.player.catchUp(msg.gen);
    this.emit("turns");
  }

  /**
   * @param {unknown} index
   * @param {unknown} turn
   */
  setTurn(index, turn) {
    if (!isWhole(index) || index < 0 || !isTurn(turn)) return;
    this.turns[index] = turn;
    this.emit("turns", index);
  }

  /**
   * @param {unknown} index
   * @param {unknown} tool
   */
  setTool(index, tool) {
    if (!isWhole(index) || index < 0 || !isToolCall(tool)) return;
    this.tools[index] = tool;
    this.emit("tools");
  }

  /**
   * What the latency trace holds that is final, taken out of it (see LatencyTrace); with
   * `all`, model chunks that have not played yet too (their output null).
   * @param {boolean} [all]
   * @returns {Promise<{up: any[], down: any[], interrupts: any[]}>}
   */
  async takeTrace(all = false) {
    const trace = this.trace;
    if (!trace) return { up: [], down: [], interrupts: [] };
    const player = this.sharing.player;
    const context = player.context;
    const entries = await player.traceEntries();
    const origin = player.realm.performance.timeOrigin;
    return context ? trace.settle(entries, context, all, origin) : trace.takeUp();
  }

  /** The test seam's view of this controller (see js/widget.js). */
  seam() {
    const self = this;
    const { capture, player } = this.sharing;
    return {
      get captureContext() {
        return capture.context;
      },
      get playbackContext() {
        return player.context;
      },
      get playerNode() {
        return player.node;
      },
      get gainNode() {
        return player.gainNode;
      },
      volume: () => ({
        volume: self.volume.volume,
        muted: self.volume.muted,
        gain: player.gainNode ? player.gainNode.gain.value : null,
      }),
      /** What the echo gate did since the Share (20 ms frames). */
      echoGate: () => ({ ...self.sharing.echoGate.counts, on: self.sharing.echoGateOn }),
      /** Measurements only: without the echo gate, the canceller alone. @param {boolean} on */
      set echoGateOn(on) {
        self.sharing.echoGateOn = Boolean(on);
      },
      tracks: () => [...capture.tracks()],
      stats: () => player.stats(),
      sent: this.sharing.sent,
      /** How the frame loop reads the screen: "frames" (VideoFrames), "video" or "" (none). */
      get screenMode() {
        return self.sharing.frames.source.mode;
      },
      startTrace: () => {
        self.trace ??= new LatencyTrace(); // a trace on goes on
      },
      takeTrace: (/** @type {boolean} */ all) => self.takeTrace(all),
    };
  }

  dispose() {
    this.sharing.stop(say.CLOSED_REASON);
    this.link.dispose();
    this.notice.clear();
    this.volume.dispose();
    this.windowShare.dispose();
    clearTimeout(this.viewlessTimer);
    window.removeEventListener("pagehide", this.onPageHide);
    this.model.off("msg:custom", this.onCustom);
    this.model.off("change:status", this.onStatus);
    this.model.off("change:error", this.onError);
  }
}
