// @ts-check
/**
 * What one Share captures: the screen stream, the microphone stream, and the device-rate
 * AudioContext whose worklet turns the microphone into 16 kHz PCM16 chunks. Internal module.
 */

import { INPUT_RATE_HZ, resamplerTaps } from "./pcm.js";
import { CAPTURE_PROCESSOR } from "./worklets/names.js";
import CAPTURE_WORKLET_SOURCE from "./worklets/capture.worklet.js?source";

export { CAPTURE_WORKLET_SOURCE };

/**
 * What to ask getDisplayMedia for. No system audio (the model would hear itself). The notebook's
 * own tab is offered too ("what is wrong with this cell?"), and Chrome may let the user switch
 * the shared tab while sharing. Browsers ignore the hints they do not know.
 * @type {DisplayMediaStreamOptions}
 */
const DISPLAY_OPTIONS = /** @type {any} */ ({
  video: { frameRate: { ideal: 5, max: 15 } },
  audio: false,
  selfBrowserSurface: "include",
  surfaceSwitching: "include",
});

/** Microphone processing wanted from the browser (echo cancellation matters: we play audio). */
const MIC_CONSTRAINTS = {
  echoCancellation: true,
  noiseSuppression: true,
  autoGainControl: true,
  channelCount: 1,
};

/** A window whose APIs capture and play: the widget's own, or a capture window's. @typedef
 * {Window & typeof globalThis} Realm */

/**
 * Load an AudioWorklet module from its source, through a Blob URL (the widget's module is
 * itself loaded from a blob: URL, so a relative URL would not resolve).
 * @param {BaseAudioContext} context
 * @param {string} source
 * @param {Realm} [realm] the context's window: the URL is made there (a capture window may
 *   not resolve the notebook frame's blob: URLs)
 */
export async function loadWorklet(context, source, realm = window) {
  const url = realm.URL.createObjectURL(new realm.Blob([source], { type: "text/javascript" }));
  try {
    await context.audioWorklet.addModule(url);
  } finally {
    realm.URL.revokeObjectURL(url);
  }
}

/** @param {MediaStream | null} stream */
export function stopStream(stream) {
  for (const track of stream?.getTracks() ?? []) track.stop();
}

/** A microphone chunk from the capture worklet. @typedef {{pcm: ArrayBuffer, rms: number}} MicChunk */

/** The screen, the microphone and the capture graph of one Share (or none between them). */
export class Capture {
  constructor() {
    /** @type {MediaStream | null} the display stream while it is shared */
    this.screen = null;
    /** @type {MediaStream | null} */
    this.mic = null;
    /** @type {AudioContext | null} device-rate context for the microphone */
    this.context = null;
    /** @type {AudioWorkletNode | null} */
    this.node = null;
    /** @type {MediaStreamAudioSourceNode | null} */
    this.source = null;
    /** @type {MediaStreamTrack[]} every track of the current or last capture, ended included */
    this.allTracks = [];
    this.flowing = false; // the microphone flows into the worklet (after `start`)
    /** @type {Realm} where the media is asked for and the audio runs */
    this.realm = window;
    this.closes = 0; // counts `close` calls: an attach in flight sees that it was closed
  }

  /**
   * Create the capture context; must run inside the Share click (autoplay rules).
   * @returns {Promise<void>} its resume
   */
  open() {
    this.allTracks = [];
    this.context = new this.realm.AudioContext();
    return this.context.resume();
  }

  /** @returns {Promise<MediaStream>} the screen the user picks */
  askScreen() {
    return this.realm.navigator.mediaDevices.getDisplayMedia(DISPLAY_OPTIONS);
  }

  /**
   * @param {string} [deviceId] that microphone (else the browser's default)
   * @returns {Promise<MediaStream>} the microphone
   */
  askMic(deviceId = "") {
    const audio = deviceId ? { ...MIC_CONSTRAINTS, deviceId: { exact: deviceId } } : MIC_CONSTRAINTS;
    return this.realm.navigator.mediaDevices.getUserMedia({ audio });
  }

  /**
   * Listen through `mic` from now on: it feeds the capture worklet (connected if the old one
   * was), and the old microphone's tracks are stopped (they stay in `tracks()`, ended).
   * Throws, changing nothing, if the context cannot take it.
   * @param {MediaStream} mic
   */
  replaceMic(mic) {
    const context = /** @type {AudioContext} */ (this.context);
    const source = context.createMediaStreamSource(mic);
    this.tracks(); // remembers the old tracks before they go
    for (const track of this.mic?.getTracks() ?? []) track.stop();
    this.source?.disconnect();
    this.mic = mic;
    this.source = source;
    if (this.flowing) this.connect();
  }

  /** The microphone ended: nothing more from it reaches the worklet (no chunks of silence
   * are sent) until `replaceMic`. */
  unplugMic() {
    this.source?.disconnect();
  }

  /** Load the capture worklet into the context. */
  load() {
    const context = /** @type {AudioContext} */ (this.context);
    return loadWorklet(context, CAPTURE_WORKLET_SOURCE, this.realm);
  }

  /**
   * Build the capture graph (not connected yet: see `connect`). A browser that will not
   * connect a microphone to a context at another rate (Firefox: NotSupportedError, for a
   * headset at 16 or 44.1 kHz beside 48 kHz speakers) gets a new context at the
   * microphone's rate, and the graph is built there.
   * @param {number} chunkMs length of each chunk (ms)
   * @param {(chunk: MicChunk) => void} onChunk
   */
  async attach(chunkMs, onChunk) {
    try {
      this.build(chunkMs, onChunk);
    } catch (error) {
      const context = /** @type {AudioContext} */ (this.context);
      const rate = this.mic?.getAudioTracks()[0]?.getSettings().sampleRate;
      const named = error instanceof Error || error instanceof DOMException;
      if (!named || error.name !== "NotSupportedError" || !rate || rate === context.sampleRate) {
        throw error;
      }
      const closes = this.closes;
      await context.close();
      if (closes !== this.closes) return; // closed meanwhile: nothing to build
      const atRate = new this.realm.AudioContext({ sampleRate: rate });
      this.context = atRate;
      await atRate.resume();
      await this.load();
      if (closes !== this.closes) {
        atRate.close().catch(() => {}); // closed meanwhile: this one goes too
        return;
      }
      this.build(chunkMs, onChunk);
    }
  }

  /**
   * @param {number} chunkMs
   * @param {(chunk: MicChunk) => void} onChunk
   */
  build(chunkMs, onChunk) {
    const context = /** @type {AudioContext} */ (this.context);
    this.source = context.createMediaStreamSource(/** @type {MediaStream} */ (this.mic));
    this.node = new this.realm.AudioWorkletNode(context, CAPTURE_PROCESSOR, {
      numberOfInputs: 1,
      numberOfOutputs: 0, // still pulled by the graph; nothing to hear
      channelCount: 1,
      channelCountMode: "explicit",
      channelInterpretation: "speakers",
      processorOptions: {
        taps: resamplerTaps(context.sampleRate),
        outRate: INPUT_RATE_HZ,
        chunkSamples: (INPUT_RATE_HZ * chunkMs) / 1000,
      },
    });
    this.node.port.onmessage = (event) => onChunk(event.data);
  }

  /** Let the microphone flow into the worklet (only once the kernel got `start`). */
  connect() {
    this.flowing = true;
    if (this.node && this.source) this.source.connect(this.node);
  }

  /** @returns {MediaStreamTrack[]} the current (or last) capture's tracks, ended ones included */
  tracks() {
    const live = [...(this.screen?.getTracks() ?? []), ...(this.mic?.getTracks() ?? [])];
    // Remember tracks so that `tracks()` still lists a screen track after it ended.
    this.allTracks = [...new Set([...this.allTracks, ...live])];
    return this.allTracks;
  }

  /** Stop every track and close the context. Idempotent. */
  close() {
    this.closes++;
    for (const track of this.tracks()) track.stop();
    this.screen = null;
    this.mic = null;
    this.source?.disconnect();
    if (this.node) this.node.port.onmessage = null;
    this.node?.disconnect();
    if (this.context && this.context.state !== "closed") this.context.close().catch(() => {});
    this.source = null;
    this.flowing = false;
    this.node = null;
    this.context = null;
  }
}
