// The microphone menu's list and what a device change says.
import assert from "node:assert/strict";
import { test } from "node:test";

import { DEFAULT_MIC, micChanges, micInputs } from "../../js/mic-list.js";

/** @param {string} kind @param {string} deviceId @param {string} label */
const device = (kind, deviceId, label) => ({ kind, deviceId, label, groupId: "", toJSON() {} });

test("the list keeps microphones only, the default first, and names the unnamed", () => {
  const listed = micInputs(/** @type {any} */ ([
    device("audiooutput", "speaker", "Speakers"),
    device("audioinput", "a1", "USB microphone"),
    device("audioinput", "communications", "Communications - USB microphone"),
    device("videoinput", "cam", "Camera"),
    device("audioinput", "a2", ""),
    device("audioinput", DEFAULT_MIC, "Default - USB microphone"),
  ]));
  assert.deepEqual(listed, [
    { id: DEFAULT_MIC, label: "Default - USB microphone" },
    { id: "a1", label: "USB microphone" },
    { id: "a2", label: "Microphone 2" },
  ]);
  // Before permission the browser gives no ids: nothing to pick.
  assert.deepEqual(micInputs(/** @type {any} */ ([device("audioinput", "", "")])), []);
});

test("a headset plugged in, a microphone unplugged and a new default are told apart", () => {
  const before = [{ id: DEFAULT_MIC, label: "Default - Built-in" }, { id: "usb", label: "USB" }];
  const after = [{ id: DEFAULT_MIC, label: "Default - Headset" }, { id: "hs", label: "Headset" }];
  assert.deepEqual(micChanges(before, after), {
    added: [{ id: "hs", label: "Headset" }],
    removed: [{ id: "usb", label: "USB" }],
    newDefault: "Default - Headset",
  });
  assert.deepEqual(micChanges(before, before), { added: [], removed: [], newDefault: "" });
  // The first listing has no default to compare with: no news.
  assert.equal(micChanges([], after).newDefault, "");
});
