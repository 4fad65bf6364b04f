// @ts-check
/**
 * The microphones the browser lists, and what changed between two listings. Pure (the page's
 * `devices.js` asks the browser). Internal module.
 */

/** @typedef {{id: string, label: string}} MicInput a microphone the browser lists */

/** The browser's entry that follows the system's default microphone. */
export const DEFAULT_MIC = "default";

/**
 * The microphones in `devices`, each with a label to show. Chrome's "communications" entry
 * (Windows) is left out: it names another entry. Its "default" entry stays (first): it is
 * what Share opens, and its label says which microphone the system's default is.
 * @param {MediaDeviceInfo[]} devices what enumerateDevices() gave
 * @returns {MicInput[]}
 */
export function micInputs(devices) {
  const inputs = devices.filter(
    (d) => d.kind === "audioinput" && d.deviceId && d.deviceId !== "communications",
  );
  const labelled = inputs.map((d, i) => ({
    id: d.deviceId,
    label: d.label || (d.deviceId === DEFAULT_MIC ? "Default" : `Microphone ${i + 1}`),
  }));
  return labelled.sort((a, b) => Number(b.id === DEFAULT_MIC) - Number(a.id === DEFAULT_MIC));
}

/**
 * What changed between two lists of microphones: the ones that came, the ones that went,
 * and the default's new label when the system's default changed (else "").
 * @param {MicInput[]} before
 * @param {MicInput[]} after
 * @returns {{added: MicInput[], removed: MicInput[], newDefault: string}}
 */
export function micChanges(before, after) {
  const had = new Map(before.map((m) => [m.id, m.label]));
  const has = new Set(after.map((m) => m.id));
  const label = after.find((m) => m.id === DEFAULT_MIC)?.label;
  const oldLabel = had.get(DEFAULT_MIC);
  return {
    added: after.filter((m) => !had.has(m.id)),
    removed: before.filter((m) => !has.has(m.id)),
    newDefault: label && oldLabel && label !== oldLabel ? label : "",
  };
}
