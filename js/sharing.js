// @ts-check
/**
 * One model's sharing, Share to Stop: the audio contexts, the screen and the microphone, the
 * frame loop, the player, and what the page tells the kernel about them. Internal module.
 */

import { Capture, stopStream } from "./capture.js";
import { Devices } from "./devices.js";
import { EchoGate } from "./echo-gate.js";
import { FrameLoop } from "./frames.js";
import { BusyWatch } from "./kernel-link.js";
import { exactBuffer, OUTPUT_RATE_HZ, rmsToLevel } from "./pcm.js";
import { Player } from "./player.js";
import { blocker, readPlace } from "./preflight.js";
import * as protocol from "./protocol.js";
import { LIMITS, newCaptureId } from "./protocol.js";
import * as say from "./sentences.js";
import { every } from "./ticker.js";

/**
 * Default duration of one microphone chunk (ms; the `audio_chunk_ms` trait): 1600 samples =
 * 3200 bytes at 16 kHz. Each chunk is a Jupyter message the kernel handles, so chunk size sets
 * much of its CPU: 100 ms (the top of the 50-100 ms Live guides advise) costs the kernel about
 * half of what 40 ms does (the session benchmark compares them). The price: a chunk's first
 * sample waits up to that long to leave, and voice is judged per chunk.
 */
const CHUNK_MS = 100;
/** Microphone level (0..1, as the meter shows it) that counts as speech, and the quiet before
 * it that makes it the start of an utterance (ms). */
const SPEECH_LEVEL = 0.4;
const SPEECH_GAP_MS = 700;
/** How often the busy check runs while streaming (ms). */
const BUSY_CHECK_MS = 250;
/** How long a Share waits for the browser to start its audio contexts (ms). */
const RESUME_WAIT_MS = 3_000;
/** After this page ends its capture, the kernel's status may still say live this long (ms). */
export const STOP_SETTLE_MS = 3_000;

/** @typedef {"idle"|"starting"|"live"} Phase page-side capture state */

/**
 * What sharing needs from the model's controller.
 * @typedef {object} SharingHost
 * @property {import("./model.js").WidgetModel} model
 * @property {import("./kernel-link.js").KernelLink} link
 * @property {import("./notice.js").Notice} notice
 * @property {(topic: string, arg?: any) => void} emit to the views
 * @property {() => void} phaseChanged the controller's beat follows the phase
 * @property {() => import("./trace.js").LatencyTrace | null} trace on for benchmarks only
 * @property {(stage: say.Stage, error: unknown) => string} [explainRefusal] a better sentence
 *   for a failed Share than the stage's own ("" for none)
 * @property {() => void} [stopped] the capture was stopped (not failed): a capture window goes
 */

export class Sharing {
  /** @param {SharingHost} host */
  constructor(host) {
    this.host = host;
    /** @type {Phase} */
    this.phase = "idle";
    this.pageError = "";
    this.busy = false;
    this.level = 0;
    /** @type {import("./frames.js").SentCounts} */
    this.sent = { audio: 0, frames: 0, lastFrame: { width: 0, height: 0, bytes: 0 } };
    this.attempt = 0; // bumps on every start and stop; in-flight starts compare against it
    this.startSent = false;
    this.captureId = "";
    /** @type {Set<string>} ids of the captures this page started */
    this.ownCaptures = new Set();
    this.audioSeq = 0;
    this.chunkMs = CHUNK_MS; // the capture's chunk length, from `audio_chunk_ms` at each Share
    this.busyWatch = new BusyWatch();
    /** @type {(() => void) | null} stops the busy check's ticks */
    this.stopBusyTicks = null;
    this.lastVoiceAt = -Infinity;
    this.stoppedAt = -Infinity; // when this page last ended a capture (performance.now())
    this.capture = new Capture();
    this.player = new Player((stats) => this.onPlayerReport(stats));
    this.echoGate = new EchoGate(); // a new one at each Share
    this.echoGateOn = true; // off only for measurements (the test seam)
    this.player.onOrphans = (entries) => host.trace()?.orphans.push(...entries);
    const send = this.send.bind(this);
    this.frames = new FrameLoop(host.model, send, this.sent, () => host.emit("filmstrip"));
    this.devices = new Devices({
      live: () => this.phase === "live",
      capture: this.capture,
      notice: host.notice,
      changed: () => host.emit("state"),
      screenShared: (screen) => this.frames.resume(screen),
      screenEnded: () => {
        this.frames.end();
        this.capture.screen = null;
      },
      micEnded: () => {
        this.capture.unplugMic(); // no chunks of silence: nothing is billed for it
        this.level = 0;
        host.emit("level", 0);
      },
      micFlows: () => this.busyWatch.resume(performance.now()),
      watch: (track) => this.watch(track),
      tell: (what, label) => this.send(protocol.device(what, label, this.captureId)),
    });
  }

  /**
   * @param {object} content
   * @param {ArrayBuffer[]} [buffers] exact ArrayBuffers only
   */
  send(content, buffers) {
    this.host.link.send(content, buffers);
  }

  /** @param {string} message a sentence with the fix; shown here and sent to the kernel */
  fail(message) {
    this.pageError = message;
    this.host.emit("state");
    this.send(protocol.clientError(message));
  }

  // -- start (must run synchronously inside the Share click) --

  /**
   * The Share click handler. getDisplayMedia is its first await (transient user activation).
   * @param {import("./capture.js").Realm} [realm] the window that captures and plays: this
   *   one, or a capture window (whose Share was clicked)
   */
  async start(realm = window) {
    if (this.phase !== "idle" || this.host.link.gone) return;
    this.pageError = "";
    this.host.notice.clear();
    const problem = blocker(readPlace(realm))?.sentence || say.unsupportedReason(realm);
    if (problem) {
      this.fail(problem);
      return;
    }
    this.capture.realm = this.player.realm = realm;
    const attempt = ++this.attempt;
    const chunkMs = Math.round(Number(this.host.model.get("audio_chunk_ms")));
    const valid = chunkMs >= LIMITS.min_chunk_ms && chunkMs <= LIMITS.max_chunk_ms;
    this.chunkMs = valid ? chunkMs : CHUNK_MS;
    this.phase = "starting";
    this.host.emit("state");
    if (await this.acquire(attempt)) this.goLive();
  }

  /**
   * Open the audio contexts, ask for the screen and the microphone, and build the audio
   * graphs; on a failure, release everything and say why.
   * @param {number} attempt
   * @returns {Promise<boolean>} whether capture is ready (false: failed, or stopped meanwhile)
   */
  async acquire(attempt) {
    let stage = /** @type {say.Stage} */ ("audio");
    try {
      // Both contexts are created inside the click so autoplay rules let them run; their
      // resumes are awaited once the pickers are done (the screen's must be the first await).
      const resumed = Promise.all([this.capture.open(), this.player.open()]);
      resumed.catch(() => {}); // not unhandled while the pickers are open: awaited below

      stage = "screen";
      const screen = await this.capture.askScreen();
      if (attempt !== this.attempt) {
        stopStream(screen); // stopped while the picker was open
        return false;
      }
      this.capture.screen = screen;

      stage = "microphone";
      const mic = await this.capture.askMic();
      if (attempt !== this.attempt) {
        stopStream(mic);
        return false;
      }
      this.capture.mic = mic;
      if (mic.getAudioTracks().length === 0) {
        throw new DOMException("no audio track", "NotFoundError");
      }

      stage = "audio";
      await this.setUpAudio(attempt);
      await this.audioRunning(resumed);
      if (attempt !== this.attempt) return false;
      this.frames.preview(screen);
    } catch (error) {
      if (attempt !== this.attempt) return false; // stopped meanwhile: nothing to report
      this.teardown();
      this.fail(this.host.explainRefusal?.(stage, error) || say.describeFailure(stage, error));
      return false;
    }
    return true;
  }

  /**
   * Wait, at most RESUME_WAIT_MS, for both audio contexts to run. Throws when the browser
   * refused to resume one or it is still not running: else the session would go live with
   * a microphone that sends nothing and a voice that never plays.
   * @param {Promise<unknown>} resumed
   */
  async audioRunning(resumed) {
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    let timer;
    const late = new Promise((resolve) => {
      timer = setTimeout(resolve, RESUME_WAIT_MS);
    });
    try {
      await Promise.race([resumed, late]);
    } finally {
      clearTimeout(timer);
    }
    for (const context of [this.capture.context, this.player.context]) {
      if (context?.state !== "running") {
        throw new DOMException(`the audio context is ${context?.state}`, "NotAllowedError");
      }
    }
  }

  /** @param {number} attempt */
  async setUpAudio(attempt) {
    await Promise.all([this.capture.load(), this.player.load()]);
    if (attempt !== this.attempt) return;
    await this.capture.attach(this.chunkMs, (chunk) => this.onMicChunk(chunk));
    if (attempt !== this.attempt) return;
    this.player.attach();
  }

  /** Capture is ready: tell the kernel, then let media flow. */
  goLive() {
    for (const track of this.tracks()) this.watch(track);
    this.phase = "live";
    this.audioSeq = 0;
    this.echoGate = new EchoGate();
    this.busyWatch.reset(performance.now());
    // Media carries this capture's id, so the kernel can drop what a stale view still sends.
    this.captureId = newCaptureId();
    this.frames.reset(this.capture.screen, this.captureId);
    this.ownCaptures.add(this.captureId);
    this.send(protocol.start(this.captureId));
    if (this.host.link.gone) return; // that send found the kernel gone: capture has ended
    this.startSent = true;
    // Media flows only after `start`, so the kernel never sees audio before it.
    this.capture.connect();
    this.frames.begin();
    this.stopBusyTicks = every(BUSY_CHECK_MS, () => this.checkBusy());
    this.devices.start();
    this.host.phaseChanged();
    this.host.emit("state");
  }

  // -- streaming --

  /** @param {import("./capture.js").MicChunk} chunk */
  onMicChunk({ pcm, rms }) {
    if (this.phase !== "live") return;
    const now = performance.now();
    const chunk = { pcm, rms, t: performance.timeOrigin + now };
    for (const ready of this.echoGate.push(chunk, this.echoGateOn && this.player.audible(now))) this.sendAudio(ready);
    this.level = rmsToLevel(rms);
    this.host.emit("level", this.level);
    if (this.level >= SPEECH_LEVEL) {
      if (now - this.lastVoiceAt > SPEECH_GAP_MS) this.frames.policy.speechStarted();
      this.lastVoiceAt = now;
    }
  }

  /** @param {import("./echo-gate.js").GateChunk} chunk to the kernel, with its own time */
  sendAudio({ pcm, t }) {
    this.host.trace()?.micChunk(pcm, t);
    this.send(protocol.audio(this.captureId, this.audioSeq++, t), [exactBuffer(pcm)]);
    this.sent.audio++;
  }

  /** @param {import("./player.js").PlayerStats} stats the player's periodic report */
  onPlayerReport(stats) {
    const perMs = OUTPUT_RATE_HZ / 1000;
    this.send(
      protocol.playback(stats.played / perMs, stats.queued / perMs, stats.underruns, stats.dropped),
    );
  }

  /** @param {unknown} audioSeq the kernel has the microphone audio up to this chunk */
  onAck(audioSeq) {
    this.busyWatch.ack(audioSeq, performance.now());
    this.checkBusy();
  }

  /** Busy: live, but the kernel stopped acknowledging what the page sends. */
  checkBusy() {
    // Without a microphone nothing is sent, so the kernel has nothing to acknowledge.
    const live = this.phase === "live" && this.host.model.get("status") === "live" &&
      this.devices.micLive();
    const busy = live && this.busyWatch.busy(this.audioSeq, this.chunkMs, performance.now());
    if (busy !== this.busy) {
      this.busy = busy;
      this.host.emit("state");
    }
  }

  /** @param {MediaStreamTrack} track call onTrackEnded when it ends */
  watch(track) {
    track.addEventListener("ended", () => this.onTrackEnded(track));
  }

  /** @param {MediaStreamTrack} track */
  onTrackEnded(track) {
    if (this.phase !== "live") return;
    if (this.tracks().every((t) => t.readyState === "ended")) {
      this.stop(say.ALL_ENDED_REASON);
    } else {
      this.devices.onTrackEnded(track); // the other goes on; the cell offers a new one
    }
  }

  // -- stop --

  /**
   * End capture and playback. Idempotent; also cancels a start in progress.
   * @param {string} reason
   * @param {{fromKernel?: boolean}} [options] the kernel asked: show the reason, do not echo
   */
  stop(reason, { fromKernel = false } = {}) {
    const wasActive = this.phase !== "idle" || this.capture.context !== null;
    const announce = this.startSent && !fromKernel;
    if (this.startSent) {
      for (const chunk of this.echoGate.drain()) this.sendAudio(chunk); // nothing spoken is lost
      // The last counts, so `frame_policy` in Python matches the frames the model got.
      this.send(protocol.frameStats(this.frames.policy.counts));
    }
    this.teardown();
    this.host.stopped?.();
    if (fromKernel && reason) this.host.notice.show(reason, { sticky: true });
    if (!wasActive) return;
    if (announce) this.send(protocol.stop(reason, this.captureId));
    this.host.emit("state");
  }

  /** Release every resource of the capture (no messages). */
  teardown() {
    this.attempt++;
    this.startSent = false;
    this.frames.end();
    this.stopBusyTicks?.();
    this.stopBusyTicks = null;
    this.devices.stop();
    this.capture.close();
    this.player.close();
    this.phase = "idle";
    this.stoppedAt = performance.now();
    this.busy = false;
    this.host.notice.clear(); // notices are about this capture
    this.level = 0;
    this.host.emit("level", 0);
    this.host.phaseChanged();
    // The view shows what this page shares once the kernel had time to say it stopped.
    setTimeout(() => this.host.emit("state"), STOP_SETTLE_MS + 50);
  }

  /** @returns {MediaStreamTrack[]} the current (or last) capture's tracks, ended ones included */
  tracks() {
    return this.capture.tracks();
  }
}
