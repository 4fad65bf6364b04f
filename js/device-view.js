// @ts-check
/**
 * A view's device controls: the microphone menu (the microphones the browser lists, the one
 * in use selected) and "Share a screen", offered while live once the shared screen ended.
 * Internal module.
 */

import { h } from "./elements.js";

export class DeviceControls {
  /**
   * @param {import("./elements.js").ViewElements} ui
   * @param {import("./controller.js").Controller} ctl
   */
  constructor(ui, ctl) {
    this.ui = ui;
    this.ctl = ctl;
    this.onMicPick = this.onMicPick.bind(this);
    this.onReshare = this.onReshare.bind(this);
  }

  /** @param {AddEventListenerOptions} until removes the listeners when its signal aborts */
  listen(until) {
    this.ui.micPick.addEventListener("change", this.onMicPick, until);
    this.ui.reshare.addEventListener("click", this.onReshare, until);
  }

  show() {
    const { ui, ctl } = this;
    const sharing = ctl.sharing;
    const devices = sharing.devices;
    const live = sharing.phase === "live" && !ctl.kernelGone;
    ui.reshare.hidden = !live || devices.screenShared();
    ui.micPick.hidden = !live;
    if (!live) return;
    const current = devices.currentMic();
    const options = devices.inputs.map((m) => [m.id, m.label]);
    // A microphone that ended is not selected: the menu asks for one.
    if (!current) options.unshift(["", devices.inputs.length ? "Pick a microphone…" : "No microphone"]);
    const same =
      ui.micPick.options.length === options.length &&
      options.every(([id, label], i) => ui.micPick.options[i].value === id &&
        ui.micPick.options[i].textContent === label);
    if (!same) {
      ui.micPick.replaceChildren(
        ...options.map(([id, label]) => {
          const option = /** @type {HTMLOptionElement} */ (h("option", "", label));
          option.value = id;
          return option;
        }),
      );
    }
    if (ui.micPick.value !== current) ui.micPick.value = current;
    ui.micPick.disabled = devices.picking || devices.inputs.length === 0;
    ui.micPick.dataset.current = current;
  }

  onMicPick() {
    const id = this.ui.micPick.value;
    if (id) void this.ctl.sharing.devices.useMic(id);
  }

  onReshare() {
    void this.ctl.sharing.devices.reshare(); // getDisplayMedia first: keeps the user activation
  }
}
