// @ts-check
/**
 * One view of a model: it shows the controller's state and the traits, and turns clicks into
 * controller calls. Views come and go (re-renders, a second output); the controller stays.
 * Internal module.
 */

import { DeviceControls } from "./device-view.js";
import { buildView, h, renderToolCall, renderTurn } from "./elements.js";
import { formatElapsed, formatSpend } from "./format.js";
import * as protocol from "./protocol.js";
import * as say from "./sentences.js";
import { STOP_SETTLE_MS } from "./sharing.js";
import { fromPercent, toPercent } from "./volume.js";

/** Traits a view shows; it re-renders its header when any of them changes. */
export const VIEW_TRAITS = /** @type {const} */ ([
  "status", "error", "backend", "emulated", "model", "voice", "live_since", "connection",
  "system_instruction", "instruction_version", "instruction_applied", "recording",
  "video_paused", "tokens", "cost_usd", "budget_tokens", "budget_usd", "others_live",
  "last_turn_tokens", "projected_10min_tokens", "projected_10min_usd",
]);
/** Tool calls the view lists (the latest). */
const TOOLS_SHOWN = 8;
/** Statuses in which the kernel has a session running. */
const RUNNING = ["connecting", "live", "reconnecting"];

/** The methods handed out as listeners, bound once so that `off` finds them. */
const HANDLERS = /** @type {const} */ ([
  "showState", "showLevel", "showTurns", "showTools", "showFilmstrip", "showTimer", "onSend",
  "keepKeys", "onTranscriptScroll", "onShare", "onStop", "cleanup",
]);

/** @typedef {import("./controller.js").Controller} Controller */
/** @typedef {import("./model.js").WidgetModel} WidgetModel */

/** The system instruction box: it follows the kernel's value unless the user is editing it. */
class InstructionBox {
  /**
   * @param {import("./elements.js").ViewElements} ui
   * @param {WidgetModel} model
   * @param {Controller} ctl
   */
  constructor(ui, model, ctl) {
    this.ui = ui;
    this.model = model;
    this.ctl = ctl;
    this.editing = false;
    /** The text Apply sent that the kernel has not taken yet (null: none). */
    this.applying = /** @type {string | null} */ (null);
    /** The kernel's error when Apply was clicked: a new one means the text was refused. */
    this.errorBefore = "";
    /** Why the page could not apply the box's text ("" when it could). */
    this.note = "";
    this.onInput = this.onInput.bind(this);
    this.apply = this.apply.bind(this);
    this.revert = this.revert.bind(this);
  }

  show() {
    const { ui, model } = this;
    const text = model.get("system_instruction") || "";
    if (this.applying !== null) {
      const error = model.get("error") || "";
      // The kernel took it: the box is edited only if the user typed on meanwhile.
      if (text === this.applying) this.editing = ui.instructionText.value !== text;
      if (text === this.applying || (error && error !== this.errorBefore)) this.applying = null;
    }
    // Edited back to the kernel's value (or given it by the kernel): nothing to apply.
    if (this.editing && this.applying === null && ui.instructionText.value === text) {
      this.editing = false;
    }
    if (!this.editing && ui.instructionText.value !== text) ui.instructionText.value = text;
    const latest = Number(model.get("instruction_version")) || 1;
    const applied = Number(model.get("instruction_applied")) || 0;
    let state = `v${latest}`;
    if (applied >= latest) state += " · the model has it";
    else if (applied > 0) state += ` · waiting for the next turn (the model has v${applied})`;
    else state += " · used when the session starts";
    if (this.editing) state = `edited · Apply to make v${latest + 1}`;
    if (this.editing && this.note) state = this.note;
    if (this.applying !== null) state = `applying v${latest + 1}…`;
    ui.instructionState.textContent = state;
    ui.instructionSummary.textContent = `System instruction (v${latest})`;
    ui.instruction.dataset.version = String(latest);
    ui.instruction.dataset.applied = String(applied);
    ui.apply.disabled = !this.editing || this.applying !== null || !!this.ctl.kernelGone;
    ui.revert.disabled = !this.editing;
  }

  onInput() {
    this.note = "";
    this.applying = null; // typing on takes over from an Apply the kernel never answered
    this.editing = this.ui.instructionText.value !== (this.model.get("system_instruction") || "");
    this.show();
  }

  /** Send the box's text to the kernel, which writes the trait; the box says "applying"
   * until the model has it (or the kernel refuses it, with an error). */
  apply() {
    const text = this.ui.instructionText.value;
    if (this.applying !== null) return;
    const limit = protocol.LIMITS.max_instruction_chars;
    const length = [...text].length; // code points, as the kernel counts
    this.note = length > limit ? say.instructionTooLong(length, limit) : "";
    if (this.note) {
      this.show();
      return;
    }
    this.applying = text;
    this.errorBefore = this.model.get("error") || "";
    this.ctl.send(protocol.setTrait("system_instruction", text));
    this.show();
  }

  revert() {
    this.editing = false;
    this.applying = null;
    this.ui.instructionText.value = this.model.get("system_instruction") || "";
    this.show();
  }
}

/**
 * The controls the page obeys at once and then asks the kernel to write their trait, which
 * takes over once it has it: Pause video, and the voice's Mute button and volume slider.
 */
class Toggles {
  /**
   * @param {import("./elements.js").ViewElements} ui
   * @param {WidgetModel} model
   * @param {Controller} ctl
   */
  constructor(ui, model, ctl) {
    this.ui = ui;
    this.model = model;
    this.ctl = ctl;
    this.onPause = this.onPause.bind(this);
    this.onMute = this.onMute.bind(this);
    this.onVolumeInput = this.onVolumeInput.bind(this);
    this.onVolumeChange = this.onVolumeChange.bind(this);
  }

  /** @param {AddEventListenerOptions} until removes the listeners when its signal aborts */
  listen(until) {
    const ui = this.ui;
    ui.pause.addEventListener("click", this.onPause, until);
    ui.mute.addEventListener("click", this.onMute, until);
    ui.volume.addEventListener("input", this.onVolumeInput, until); // dragging: here only
    ui.volume.addEventListener("change", this.onVolumeChange, until); // let go: to the kernel
  }

  show() {
    const { ui, model } = this;
    const paused = this.ctl.sharing.frames.pause.paused;
    ui.pause.dataset.kernel = String(!!model.get("video_paused")); // what the kernel has
    ui.pause.textContent = paused ? "Resume video" : "Pause video";
    ui.pause.setAttribute("aria-pressed", String(paused));
    ui.root.dataset.videoPaused = String(paused);
    const { muted, volume } = this.ctl.volume;
    ui.mute.dataset.kernel = String(!!model.get("muted"));
    ui.mute.textContent = muted ? "Unmute" : "Mute";
    ui.mute.setAttribute("aria-pressed", String(muted));
    ui.mute.setAttribute("aria-label", muted ? "Unmute the assistant" : "Mute the assistant");
    const percent = String(toPercent(volume));
    if (ui.volume.value !== percent) ui.volume.value = percent;
    ui.volume.setAttribute("aria-valuetext", `${percent} %${muted ? ", muted" : ""}`);
    ui.volume.title = `Volume of the assistant's voice: ${percent} %${muted ? " (muted)" : ""}`;
    ui.root.dataset.muted = String(muted);
  }

  /** Pause or resume the video here at once (no frame waits for a busy kernel), and have
   * the kernel write the trait, which then takes over. */
  onPause() {
    const pause = this.ctl.sharing.frames.pause;
    const paused = !pause.paused;
    pause.want(paused);
    this.ctl.send(protocol.setTrait("video_paused", paused));
    this.ctl.emit("state");
  }

  onMute() {
    this.ctl.volume.setMuted(!this.ctl.volume.muted);
  }

  onVolumeInput() {
    this.ctl.volume.preview(fromPercent(this.ui.volume.value));
  }

  onVolumeChange() {
    this.ctl.volume.setVolume(fromPercent(this.ui.volume.value));
  }
}

export class View {
  /**
   * @param {Controller} ctl
   * @param {WidgetModel} model
   * @param {HTMLElement} el
   */
  constructor(ctl, model, el) {
    this.ctl = ctl;
    this.model = model;
    this.ui = buildView();
    el.replaceChildren(this.ui.root);
    /** @type {HTMLElement[]} */
    this.rows = [];
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.clock = undefined;
    this.instruction = new InstructionBox(this.ui, model, ctl);
    this.toggles = new Toggles(this.ui, model, ctl);
    this.deviceControls = new DeviceControls(this.ui, ctl);
    this.following = true; // the transcript follows the newest turn unless scrolled up
    this.cleaned = false;
    for (const name of HANDLERS) this[name] = /** @type {any} */ (this[name]).bind(this);
    // A view that opens with history is not laid out yet: it follows once it has a size.
    this.sized = new ResizeObserver(() => {
      if (this.following) this.ui.transcript.scrollTop = this.ui.transcript.scrollHeight;
    });
    this.sized.observe(this.ui.transcript);
    this.listening = this.listen();
    this.unsubscribe = [
      ctl.on("state", this.showState),
      ctl.on("level", this.showLevel),
      ctl.on("turns", this.showTurns),
      ctl.on("tools", this.showTools),
      ctl.on("filmstrip", this.showFilmstrip),
    ];
    for (const trait of VIEW_TRAITS) model.on(`change:${trait}`, this.showState);
    this.showState();
    this.showLevel(ctl.sharing.level);
    this.showTurns();
    this.showTools();
    this.showFilmstrip();
  }

  /** @returns {AbortController} one abort removes every DOM listener of this view */
  listen() {
    const ui = this.ui;
    const listening = new AbortController();
    const until = { signal: listening.signal };
    ui.share.addEventListener("click", this.onShare, until);
    ui.stop.addEventListener("click", this.onStop, until);
    this.toggles.listen(until);
    this.deviceControls.listen(until);
    ui.compose.addEventListener("submit", this.onSend, until);
    ui.apply.addEventListener("click", this.instruction.apply, until);
    ui.revert.addEventListener("click", this.instruction.revert, until);
    ui.instructionText.addEventListener("input", this.instruction.onInput, until);
    ui.transcript.addEventListener("scroll", this.onTranscriptScroll, until);
    ui.textInput.addEventListener("keydown", this.keepKeys, until);
    ui.instructionText.addEventListener("keydown", this.keepKeys, until);
    return listening;
  }

  /** The status shown: a kernel that is gone cannot say it stopped, so it says so here. */
  status() {
    return this.ctl.kernelGone ? "disconnected" : this.model.get("status") || "idle";
  }

  showState() {
    this.showControls();
    this.showBackend();
    this.showSpend();
    this.showToggles();
    this.instruction.show();
    this.showMessages();
    const stream = this.ctl.sharing.capture.screen;
    if (this.ui.preview.srcObject !== stream) this.ui.preview.srcObject = stream;
    this.ui.previewBox.dataset.active = String(!!stream);
    this.showTimer();
  }

  /** The status, the connection, and which buttons work. */
  showControls() {
    const { ui, ctl } = this;
    const status = this.status();
    const phase = ctl.sharing.phase;
    ui.status.textContent = status;
    ui.status.dataset.status = status;
    const connection = this.model.get("connection") || "";
    ui.connection.textContent = connection;
    ui.connection.dataset.connection = connection;
    ui.connection.hidden = !connection;
    ui.root.dataset.status = status;
    ui.root.dataset.phase = phase;
    ui.share.disabled = phase !== "idle" || !!ctl.kernelGone;
    ui.share.textContent = ctl.windowShare.viaWindow ? say.SHARE_FROM_WINDOW : say.SHARE_HERE;
    ui.share.setAttribute("aria-busy", String(phase === "starting"));
    ui.stop.disabled = phase === "idle" && !RUNNING.includes(status);
    ui.root.dataset.kernel = ctl.kernelGone ? "gone" : "ok";
    // Nothing here reaches a kernel that is gone.
    for (const control of [ui.pause, ui.mute, ui.volume, ui.send, ui.textInput]) {
      control.disabled = !!ctl.kernelGone;
    }
  }

  /** Where the conversation goes, and with which model and voice. */
  showBackend() {
    const { ui, model } = this;
    const emulated = !!model.get("emulated");
    let backend = model.get("backend") || "";
    if (emulated && !/emulator/i.test(backend)) {
      backend = backend ? `Local Live emulator (${backend})` : "Local Live emulator";
    }
    ui.backend.textContent = backend;
    ui.backend.hidden = !backend;
    ui.backend.dataset.emulated = String(emulated);
    const engine = [model.get("model"), model.get("voice")].filter(Boolean).join(" · ");
    ui.engine.textContent = engine;
    ui.engine.hidden = !engine;
  }

  /** The token meter. */
  showSpend() {
    const { ui, model } = this;
    // The projection only while a session runs: the traits keep the last report's.
    const running = RUNNING.includes(model.get("status"));
    ui.spend.textContent = formatSpend({
      tokens: Number(model.get("tokens")) || 0,
      costUsd: Number(model.get("cost_usd")),
      budgetTokens: Number(model.get("budget_tokens")) || 0,
      budgetUsd: Number(model.get("budget_usd")) || 0,
      lastTurnTokens: Number(model.get("last_turn_tokens")) || 0,
      projectedTokens: running ? Number(model.get("projected_10min_tokens")) : -1,
      projectedUsd: running ? Number(model.get("projected_10min_usd")) : -1,
    });
    ui.spend.hidden = !ui.spend.textContent;
  }

  /** Pause video, the voice's volume and the recording mark. */
  showToggles() {
    const { ui, model } = this;
    this.toggles.show();
    this.deviceControls.show();
    const recording = model.get("recording") || "";
    ui.recording.textContent = recording ? "● REC" : "";
    ui.recording.title = recording ? `Recording to ${recording}` : "";
    ui.recording.hidden = !recording;
  }

  /** The error, the notice and the other live assistants. */
  showMessages() {
    const { ui, ctl } = this;
    const { sharing } = ctl;
    const traitError = ctl.kernelGone ? "" : this.model.get("error") || "";
    const errors = [ctl.kernelGone, sharing.pageError, traitError].filter(Boolean);
    ui.error.textContent = [...new Set(errors)].join(" ");
    ui.error.hidden = errors.length === 0;
    let notice = sharing.busy ? say.BUSY_NOTICE : ctl.notice.text;
    const settling = performance.now() - sharing.stoppedAt < STOP_SETTLE_MS;
    const { windowShare } = ctl;
    if (!notice && sharing.phase !== "idle" && windowShare.inWindow) notice = say.IN_WINDOW_NOTICE;
    if (!notice && sharing.phase === "idle" && this.status() === "live" && !settling) {
      notice = say.NOT_SHARED_NOTICE;
    }
    // Before any click: what blocks capture here, and the way that works.
    if (!notice && sharing.phase === "idle" && !ctl.kernelGone) {
      notice = windowShare.blocked?.sentence ?? "";
    }
    // A failing kernel also sends its error as the stop reason: show it once.
    if (errors.includes(notice)) notice = "";
    ui.notice.textContent = notice;
    ui.notice.hidden = !notice;
    ui.notice.dataset.busy = String(sharing.busy);
    const others = ctl.kernelGone ? 0 : Number(this.model.get("others_live")) || 0;
    ui.others.textContent =
      others === 1
        ? "Another assistant in this kernel also has a session running, and each one is " +
          "billed: stop the one you do not use."
        : others > 1
          ? `${others} other assistants in this kernel also have sessions running, and ` +
            "each one is billed: stop those you do not use."
          : "";
    ui.others.hidden = !others;
  }

  showTimer() {
    const since = Number(this.model.get("live_since")) || 0;
    // The session's clock runs on while a connection is being replaced.
    const status = this.model.get("status");
    const running = status === "live" || status === "reconnecting";
    const live = running && since > 0 && !this.ctl.kernelGone;
    this.ui.timer.textContent = live ? formatElapsed(Date.now() / 1000 - since) : "";
    this.ui.timer.hidden = !live;
    if (live && this.clock === undefined) this.clock = setInterval(this.showTimer, 1000);
    if (!live && this.clock !== undefined) {
      clearInterval(this.clock);
      this.clock = undefined;
    }
  }

  /** @param {SubmitEvent} event */
  onSend(event) {
    event.preventDefault();
    const text = this.ui.textInput.value.trim();
    if (!text) return;
    this.ctl.send(protocol.text(text));
    this.ui.textInput.value = "";
  }

  /**
   * Keys typed here are the user's text, not notebook shortcuts (Shift+Enter, A, B, ...).
   * @param {KeyboardEvent} event
   */
  keepKeys(event) {
    event.stopPropagation();
    if (event.key === "Enter" && event.target === this.ui.instructionText && event.ctrlKey) {
      event.preventDefault();
      if (this.instruction.editing) this.instruction.apply();
    }
  }

  /** @param {number} level */
  showLevel(level) {
    this.ui.meterFill.style.width = `${Math.round(level * 100)}%`;
    this.ui.meter.dataset.level = level.toFixed(2);
  }

  /** @param {number} [index] the one turn that changed; all when omitted */
  showTurns(index) {
    const box = this.ui.transcript;
    const turns = this.ctl.turns;
    const rows = this.rows;
    if (index !== undefined && index < rows.length && rows[index] && turns[index]) {
      renderTurn(turns[index], rows[index]);
    } else if (index !== undefined && index === rows.length && turns[index]) {
      rows.push(renderTurn(turns[index]));
      box.append(rows[index]);
    } else {
      this.rows = turns.map((turn) => (turn ? renderTurn(turn) : h("div", "ssw-gap")));
      box.replaceChildren(...this.rows);
    }
    box.querySelector(".ssw-empty")?.remove();
    if (this.rows.length === 0) box.append(h("div", "ssw-empty", say.EMPTY_TRANSCRIPT));
    if (this.following) box.scrollTop = box.scrollHeight;
  }

  onTranscriptScroll() {
    const box = this.ui.transcript;
    if (box.clientHeight > 0) {
      this.following = box.scrollTop + box.clientHeight >= box.scrollHeight - 24;
    }
  }

  showTools() {
    const calls = this.ctl.tools.filter(Boolean).slice(-TOOLS_SHOWN);
    /** @type {(id: string, allow: boolean) => void} */
    const decide = (id, allow) => this.ctl.send(protocol.confirm(id, allow));
    this.ui.tools.replaceChildren(...calls.map((call) => renderToolCall(call, decide)));
    this.ui.tools.hidden = calls.length === 0;
  }

  showFilmstrip() {
    const filmstrip = this.ctl.sharing.frames.filmstrip;
    this.ui.filmstrip.replaceChildren(
      ...filmstrip.map(({ seq, url }) => {
        const img = /** @type {HTMLImageElement} */ (h("img", "ssw-film"));
        img.src = url;
        img.alt = `frame ${seq}`;
        img.dataset.seq = String(seq);
        return img;
      }),
    );
    this.ui.filmstrip.hidden = filmstrip.length === 0;
  }

  onShare() {
    this.ctl.windowShare.share(); // synchronous up to getDisplayMedia: keeps the user activation
  }

  onStop() {
    const sharing = this.ctl.sharing;
    // Nothing captured here (say, after a page reload) but the kernel may still be live.
    if (sharing.phase === "idle") this.ctl.send(protocol.stop(say.USER_STOP_REASON));
    else sharing.stop(say.USER_STOP_REASON);
  }

  /** Remove this view (anywidget's render cleanup). Idempotent. */
  cleanup() {
    if (this.cleaned) return;
    this.cleaned = true;
    this.ctl.viewRemoved();
    this.listening.abort();
    this.sized.disconnect();
    for (const off of this.unsubscribe) off();
    for (const trait of VIEW_TRAITS) this.model.off(`change:${trait}`, this.showState);
    clearInterval(this.clock);
    this.ui.preview.srcObject = null;
    this.ui.root.remove();
  }
}
