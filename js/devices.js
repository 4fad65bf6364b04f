// @ts-check
/**
 * Devices that come and go while a capture is live: the microphones the browser lists (and
 * their `devicechange`), a microphone picked again after one was unplugged, and a screen
 * shared again after the browser's own "Stop sharing". The capture, the session and the
 * transcript go on through all of it. Internal module.
 */

import { stopStream } from "./capture.js";
import { DEFAULT_MIC, micChanges, micInputs } from "./mic-list.js";
import * as say from "./sentences.js";
import { every } from "./ticker.js";

/** How often the microphones are listed while live (ms). Chrome on Linux learns of a device
 * that came or went (PulseAudio and PipeWire devices, Bluetooth headsets) only when a page
 * lists the devices: listing them is what makes it end an unplugged microphone's track and
 * fire `devicechange`. */
export const MIC_POLL_MS = 2_000;
/** A microphone that came this long before another ended is named in the notice (ms). */
const FRESH_MS = 5_000;

/** @typedef {import("./mic-list.js").MicInput} MicInput */

/**
 * What the devices need from the sharing they belong to.
 * @typedef {object} DevicesHost
 * @property {() => boolean} live the capture is live (the kernel got `start`)
 * @property {import("./capture.js").Capture} capture
 * @property {import("./notice.js").Notice} notice
 * @property {() => void} changed the views should show the devices again
 * @property {(stream: MediaStream) => void} screenShared a new screen is shared
 * @property {() => void} screenEnded the shared screen ended
 * @property {() => void} micEnded the microphone ended (the level drops to 0)
 * @property {(track: MediaStreamTrack) => void} watch call back when this track ends
 * @property {(what: "screen_ended" | "screen_shared" | "mic_ended" | "mic_changed",
 *   label: string) => void} tell the kernel (an event in `assistant.events`)
 * @property {() => void} micFlows a new microphone feeds the capture
 */

export class Devices {
  /** @param {DevicesHost} host */
  constructor(host) {
    this.host = host;
    /** @type {MicInput[]} the microphones the browser lists now */
    this.inputs = [];
    this.watching = false;
    /** @type {(() => void) | null} stops the listing's ticks */
    this.stopPolling = null;
    this.missing = 0; // listings in a row without the microphone in use
    this.micEnded = false; // the microphone ended and none was picked since
    /** @type {{labels: string[], at: number}} the microphones that came last, and when */
    this.added = { labels: [], at: -Infinity };
    this.picking = false; // a microphone is being opened: its choice waits for it
    this.refresh = this.refresh.bind(this);
  }

  /** @returns {MediaDevices | undefined} the devices of the window that captures */
  get media() {
    return this.host.capture.realm.navigator.mediaDevices;
  }

  /** The capture went live: list the microphones and follow their changes. */
  start() {
    if (this.watching) return;
    this.watching = true;
    this.micEnded = false;
    this.media?.addEventListener?.("devicechange", this.refresh);
    this.stopPolling = every(MIC_POLL_MS, () => void this.refresh());
    void this.refresh(false);
  }

  /** The capture ended: stop following. Idempotent. */
  stop() {
    this.watching = false;
    this.stopPolling?.();
    this.stopPolling = null;
    this.media?.removeEventListener?.("devicechange", this.refresh);
  }

  /** @returns {boolean} a microphone is live (its chunks flow) */
  micLive() {
    return this.host.capture.mic?.getAudioTracks()[0]?.readyState === "live";
  }

  /** @returns {string} the device id of the microphone in use, "" when none is live */
  currentMic() {
    const track = this.host.capture.mic?.getAudioTracks()[0];
    if (!track || track.readyState === "ended") return "";
    return track.getSettings?.().deviceId || "";
  }

  /**
   * @param {MediaStreamTrack} track a microphone's
   * @returns {string} its name as the menu shows it ("" if the browser gives none)
   */
  labelOf(track) {
    const id = track.getSettings?.().deviceId;
    return this.inputs.find((m) => m.id === id)?.label || track.label || "";
  }

  /** @returns {boolean} the screen is shared now */
  screenShared() {
    const track = this.host.capture.screen?.getVideoTracks()[0];
    return !!track && track.readyState === "live";
  }

  /**
   * List the microphones again; say in the cell which came (the user may want one) and
   * whether the one in use went.
   * @param {boolean | Event} [tell] false on the first listing, which is not news
   */
  async refresh(tell = true) {
    let devices;
    try {
      devices = await /** @type {MediaDevices} */ (this.media).enumerateDevices();
    } catch {
      return; // not listed: the picker keeps what it had
    }
    if (!this.watching) return;
    // Without the microphone permission (revoked meanwhile) the browser lists devices with
    // no ids: that says nothing about which are connected.
    if (devices.some((d) => d.kind === "audioinput" && !d.deviceId)) return;
    const before = this.inputs;
    this.inputs = micInputs(devices);
    const { added, removed, newDefault } = micChanges(before, this.inputs);
    this.checkGone();
    const changed = added.length || removed.length || newDefault;
    const news = tell !== false && !this.picking;
    if (added.length) this.added = { labels: added.map((m) => m.label), at: performance.now() };
    if (news && added.length) {
      const labels = added.map((m) => m.label);
      const text = this.micEnded ? say.micEnded(labels) : say.micAdded(labels);
      this.host.notice.show(text, { sticky: true });
    } else if (news && newDefault) {
      this.host.notice.show(say.defaultMicChanged(newDefault), { sticky: true });
    } else if (news && changed && this.inputs.length === 0 && !this.currentMic()) {
      this.host.notice.show(say.NO_MIC_NOTICE, { sticky: true });
    }
    if (changed || tell === false) this.host.changed();
  }

  /** The microphone in use is missing from two listings in a row, and its track still says
   * live (a browser that does not end it): end it, as an unplugged one. */
  checkGone() {
    const track = this.host.capture.mic?.getAudioTracks()[0];
    const id = this.currentMic();
    const gone = !!id && id !== DEFAULT_MIC && !this.inputs.some((m) => m.id === id);
    this.missing = gone ? this.missing + 1 : 0;
    if (track && this.missing >= 2) {
      this.missing = 0;
      track.stop();
      track.dispatchEvent(new Event("ended")); // stop() fires none: the capture's handler runs
    }
  }

  /** @param {MediaStreamTrack} track one of the capture's tracks ended */
  onTrackEnded(track) {
    if (track.kind === "video") {
      if (track !== this.host.capture.screen?.getVideoTracks()[0]) return; // an old screen
      this.host.screenEnded();
      this.host.tell("screen_ended", track.label);
      this.host.notice.show(say.SCREEN_ENDED_NOTICE, { sticky: true });
    } else {
      if (track !== this.host.capture.mic?.getAudioTracks()[0]) return; // a replaced mic
      this.host.micEnded();
      this.host.tell("mic_ended", this.labelOf(track));
      this.micEnded = true;
      // A microphone that came with the unplugging (a headset for a USB microphone) is news.
      const fresh = performance.now() - this.added.at < FRESH_MS ? this.added.labels : [];
      this.host.notice.show(say.micEnded(fresh), { sticky: true });
      void this.refresh(); // the menu drops the one that went; one that came is named
    }
    this.host.changed();
  }

  /**
   * Share a screen again in the same capture (the click handler: getDisplayMedia is its first
   * await, so the click's user activation holds). A picker the user cancels changes nothing.
   */
  async reshare() {
    if (!this.host.live() || this.screenShared()) return;
    let screen;
    try {
      screen = await this.host.capture.askScreen();
    } catch (error) {
      this.host.notice.show(say.describeLiveFailure("screen", error), { sticky: true });
      this.host.changed();
      return;
    }
    if (!this.host.live() || this.screenShared()) {
      stopStream(screen); // stopped, or shared from elsewhere, while the picker was open
      return;
    }
    this.host.capture.screen = screen;
    for (const track of screen.getTracks()) this.host.watch(track);
    this.host.screenShared(screen);
    this.host.tell("screen_shared", screen.getVideoTracks()[0]?.label ?? "");
    this.host.notice.show(say.SCREEN_AGAIN_NOTICE);
    this.host.changed();
  }

  /**
   * Listen through microphone `deviceId` from now on ("" for the browser's default); the one
   * in use is released once the new one runs. Nothing changes if it cannot be opened (the
   * cell says why).
   * @param {string} deviceId
   */
  async useMic(deviceId) {
    if (!this.host.live() || this.picking) return;
    this.picking = true;
    let mic = null;
    try {
      mic = await this.host.capture.askMic(deviceId);
      if (!this.host.live()) return;
      const track = mic.getAudioTracks()[0];
      if (!track) throw new DOMException("no audio track", "NotFoundError");
      this.host.capture.replaceMic(mic);
      mic = null; // the capture's now
      this.host.watch(track);
      this.host.micFlows();
      this.micEnded = false;
      const label = this.labelOf(track);
      this.host.tell("mic_changed", label);
      this.host.notice.show(say.micInUse(label || "the default microphone"));
    } catch (error) {
      this.host.notice.show(say.describeLiveFailure("microphone", error), { sticky: true });
    } finally {
      stopStream(mic); // opened but not used: the browser's indicator goes off
      this.picking = false;
      this.host.changed();
    }
  }
}
