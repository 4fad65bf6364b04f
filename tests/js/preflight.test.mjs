// Why capture cannot happen here, before any media is asked for: one cause, with its way.
import assert from "node:assert/strict";
import { test } from "node:test";

import { blocker } from "../../js/preflight.js";

/** A place where everything works: a secure top-level page with the APIs. */
const OPEN = {
  secure: true,
  origin: "http://127.0.0.1:8888",
  displayMedia: true,
  userMedia: true,
  screenAllowed: true,
  micAllowed: true,
  framed: false,
  host: /** @type {"" | "vscode" | "colab"} */ (""),
};

test("nothing blocks a secure page with the APIs, nor a frame whose policy is unknown", () => {
  assert.equal(blocker(OPEN), null);
  assert.equal(blocker({ ...OPEN, framed: true, screenAllowed: null, micAllowed: null }), null);
});

test("an insecure page names its origin and the addresses that work; nothing to open", () => {
  const b = blocker({ ...OPEN, secure: false, origin: "http://192.168.1.5:8888" });
  assert.equal(b?.cause, "insecure");
  assert.equal(b?.way, "none");
  assert.match(b?.sentence ?? "", /192\.168\.1\.5:8888.*not secure.*localhost.*https/);
});

test("a frame that denies capture offers the capture window, naming what is denied", () => {
  const both = blocker({ ...OPEN, framed: true, screenAllowed: false, micAllowed: false });
  assert.equal(both?.cause, "policy");
  assert.equal(both?.way, "window");
  assert.match(both?.sentence ?? "", /frame.*does not allow screen sharing or the microphone/);
  assert.match(both?.sentence ?? "", /Share from a new window/);
  const mic = blocker({ ...OPEN, framed: true, micAllowed: false });
  assert.match(mic?.sentence ?? "", /does not allow the microphone \(/);
  const colab = blocker({ ...OPEN, framed: true, screenAllowed: false, host: "colab" });
  assert.match(colab?.sentence ?? "", /^Colab's output frame does not allow screen sharing/);
});

test("VS Code's webviews are named, with the way that works", () => {
  const b = blocker({ ...OPEN, framed: true, host: "vscode" });
  assert.equal(b?.cause, "host");
  assert.equal(b?.way, "none");
  assert.match(b?.sentence ?? "", /VS Code.*microsoft\/vscode#119127.*jupyter lab/);
});

test("a browser without the APIs says which, and which browsers can", () => {
  const screen = blocker({ ...OPEN, displayMedia: false });
  assert.equal(screen?.cause, "no-api");
  assert.match(screen?.sentence ?? "", /cannot share a screen.*desktop Chrome, Edge, Firefox/);
  const mic = blocker({ ...OPEN, userMedia: false });
  assert.match(mic?.sentence ?? "", /cannot use a microphone/);
  // Insecure first: an insecure page also hides the APIs, and security is the real cause.
  assert.equal(blocker({ ...OPEN, secure: false, displayMedia: false })?.cause, "insecure");
});
