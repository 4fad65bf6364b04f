// @ts-check
/**
 * The DOM of one view: its elements, a transcript row and a tool-call row. Internal module.
 */

import { LIMITS } from "./protocol.js";
import * as say from "./sentences.js";

/**
 * @param {string} tag
 * @param {string} className
 * @param {string} [text]
 * @returns {HTMLElement}
 */
export function h(tag, className, text) {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * @param {string} className
 * @param {string} text
 * @returns {HTMLButtonElement}
 */
function button(className, text) {
  const node = /** @type {HTMLButtonElement} */ (h("button", `ssw-button ${className}`, text));
  node.type = "button";
  return node;
}

/** The bar: Share, Stop, Pause video, and what the session is doing. */
function buildBar() {
  const bar = h("div", "ssw-bar");
  const share = button("ssw-share", say.SHARE_HERE);
  const stop = button("ssw-stop", "Stop");
  const reshare = button("ssw-reshare", "Share a screen");
  reshare.title = "Share a screen, window or tab again (the conversation goes on)";
  reshare.hidden = true;
  const pause = button("ssw-pause-video", "Pause video");
  pause.title = "Stop sending screen frames to the model (the voice conversation goes on)";
  const status = h("span", "ssw-status");
  const timer = h("span", "ssw-timer");
  const connection = h("span", "ssw-connection");
  connection.title = "How the conversation survived its last move to a new connection";
  const backend = h("span", "ssw-backend");
  const engine = h("span", "ssw-engine");
  const backendBox = h("span", "ssw-backend-box");
  backendBox.append(backend, engine);
  const recording = h("span", "ssw-recording");
  const spend = h("span", "ssw-spend");
  spend.title =
    "Tokens the service reported (and the cost estimate from assistant.prices). Each turn " +
    "re-bills the whole context, so the last turn grows; the next 10 minutes are projected " +
    "at the recent turn rate, a floor.";
  bar.append(share, stop, reshare, pause, status, timer, connection, recording, spend, backendBox);
  return { bar, share, stop, reshare, pause, status, timer, connection, recording, spend, backend, engine };
}

/** The error, notice and "others live" lines. */
function buildMessages() {
  const error = h("div", "ssw-error");
  error.setAttribute("role", "alert");
  const notice = h("div", "ssw-notice");
  notice.setAttribute("role", "status");
  const others = h("div", "ssw-others");
  others.setAttribute("role", "status");
  return { error, notice, others };
}

/** The preview of the shared screen. */
function buildPreview() {
  const previewBox = h("div", "ssw-preview-box");
  const preview = /** @type {HTMLVideoElement} */ (h("video", "ssw-preview"));
  preview.muted = true;
  preview.playsInline = true;
  preview.autoplay = true;
  preview.setAttribute("muted", "");
  preview.setAttribute("playsinline", "");
  previewBox.append(preview, h("div", "ssw-preview-empty", "Nothing shared"));
  return { previewBox, preview };
}

/** The model's voice: a Mute button and a volume slider (0..100 %). */
function buildVoice() {
  const voiceRow = h("div", "ssw-voice-row");
  const mute = button("ssw-mute", "Mute");
  mute.setAttribute("aria-pressed", "false");
  mute.setAttribute("aria-label", "Mute the assistant");
  const volume = /** @type {HTMLInputElement} */ (h("input", "ssw-volume"));
  volume.type = "range";
  volume.min = "0";
  volume.max = "100";
  volume.step = "1";
  volume.value = "100";
  volume.setAttribute("aria-label", "Assistant volume");
  voiceRow.append(h("span", "ssw-meter-label", "Voice"), volume, mute);
  return { voiceRow, mute, volume };
}

/** The side column: mic meter, the voice's volume, transcript, tool calls and the text box. */
function buildSide() {
  const side = h("div", "ssw-side");
  const meterRow = h("div", "ssw-meter-row");
  const meter = h("div", "ssw-meter");
  meter.title = "Microphone level";
  const meterFill = h("div", "ssw-meter-fill");
  meter.append(meterFill);
  const micPick = /** @type {HTMLSelectElement} */ (h("select", "ssw-mic"));
  micPick.setAttribute("aria-label", "Microphone");
  micPick.title = "The microphone the assistant hears";
  micPick.hidden = true;
  meterRow.append(h("span", "ssw-meter-label", "Mic"), meter, micPick);
  const { voiceRow, mute, volume } = buildVoice();
  const transcript = h("div", "ssw-transcript");
  transcript.setAttribute("aria-live", "polite");
  const compose = /** @type {HTMLFormElement} */ (h("form", "ssw-compose"));
  const textInput = /** @type {HTMLInputElement} */ (h("input", "ssw-text-input"));
  textInput.type = "text";
  textInput.placeholder = "Type to the assistant…";
  textInput.maxLength = LIMITS.max_text_chars;
  textInput.setAttribute("aria-label", "Message to the assistant");
  const send = /** @type {HTMLButtonElement} */ (h("button", "ssw-button ssw-send", "Send"));
  send.type = "submit";
  compose.append(textInput, send);
  const tools = h("div", "ssw-tools");
  tools.setAttribute("aria-label", "Tool calls");
  side.append(meterRow, voiceRow, transcript, tools, compose);
  return { side, meter, meterFill, micPick, mute, volume, transcript, tools, compose, textInput, send };
}

/** The system instruction box. */
function buildInstruction() {
  const instruction = /** @type {HTMLDetailsElement} */ (h("details", "ssw-instruction"));
  const instructionSummary = h("summary", "ssw-instruction-summary", "System instruction");
  const instructionText = /** @type {HTMLTextAreaElement} */ (
    h("textarea", "ssw-instruction-text")
  );
  instructionText.rows = 4;
  instructionText.setAttribute("aria-label", "System instruction");
  const instructionRow = h("div", "ssw-instruction-row");
  const apply = button("ssw-apply", "Apply");
  const revert = button("ssw-revert", "Revert");
  const instructionState = h("span", "ssw-instruction-state");
  instructionRow.append(apply, revert, instructionState);
  instruction.append(instructionSummary, instructionText, instructionRow);
  return { instruction, instructionSummary, instructionText, apply, revert, instructionState };
}

/** Build one view's DOM. */
export function buildView() {
  const root = h("div", "ssw");
  const { bar, ...barParts } = buildBar();
  const messages = buildMessages();
  const body = h("div", "ssw-body");
  const previewParts = buildPreview();
  const { side, ...sideParts } = buildSide();
  body.append(previewParts.previewBox, side);
  const instructionParts = buildInstruction();
  const filmstrip = h("div", "ssw-filmstrip");
  filmstrip.title = "The latest frames the model got";
  root.append(
    bar, messages.error, messages.notice, messages.others, body, filmstrip,
    instructionParts.instruction,
  );
  return {
    root, filmstrip, ...barParts, ...messages, ...previewParts, ...sideParts, ...instructionParts,
  };
}

/** @typedef {ReturnType<typeof buildView>} ViewElements */

/**
 * @param {import("./protocol.js").Turn} turn
 * @param {HTMLElement} [row] an existing row to update
 */
export function renderTurn(turn, row = h("div", "ssw-turn")) {
  const role = turn.role === "user" ? "user" : "model";
  row.className = "ssw-turn"; // the row may have been a placeholder for a missing index
  row.dataset.role = role;
  if (turn.interrupted) row.dataset.interrupted = "true";
  else delete row.dataset.interrupted;
  if (turn.ended_at == null) row.dataset.partial = "true";
  else delete row.dataset.partial;
  if (turn.typed) row.dataset.typed = "true";
  else delete row.dataset.typed;
  const label = h("span", "ssw-role", role === "user" ? "You" : "Assistant");
  const version = Number(turn.instruction) || 1;
  row.dataset.instruction = String(version);
  if (version > 1) {
    const tag = h("span", "ssw-version", ` v${version}`);
    tag.title = `Under system instruction v${version}`;
    label.append(tag);
  }
  row.replaceChildren(label, h("span", "ssw-text", turn.text));
  return row;
}

/** @param {import("./protocol.js").ToolCall} call what the row says after the call */
function toolResult(call) {
  const time =
    typeof call.duration_ms === "number" ? ` · ${Math.round(call.duration_ms)} ms` : " · running…";
  const body =
    call.outcome === "ok"
      ? `→ ${call.result}`
      : call.outcome === "error"
        ? `failed: ${call.error}`
        : call.outcome === "cancelled"
          ? "cancelled"
          : "";
  return body + time;
}

/**
 * @param {import("./protocol.js").ToolCall} call
 * @param {(id: string, allow: boolean) => void} decide
 */
export function renderToolCall(call, decide) {
  const row = h("div", "ssw-tool");
  row.dataset.outcome = call.outcome;
  const head = h("span", "ssw-tool-call", `${call.name}(${call.args === "{}" ? "" : call.args})`);
  row.append(h("span", "ssw-role", "Tool"), head, h("span", "ssw-tool-result", toolResult(call)));
  if (call.confirm && call.outcome === "running" && call.id) {
    const id = call.id;
    const ask = h("span", "ssw-tool-confirm", "Run this in your kernel? ");
    const allow = button("ssw-allow", "Allow");
    const deny = button("ssw-deny", "Deny");
    allow.addEventListener("click", () => decide(id, true), { once: true });
    deny.addEventListener("click", () => decide(id, false), { once: true });
    ask.append(allow, deny);
    row.append(h("span", ""), ask);
  }
  return row;
}
