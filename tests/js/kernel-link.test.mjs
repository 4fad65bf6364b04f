// The busy check on the kernel's acknowledgements.
import assert from "node:assert/strict";
import { test } from "node:test";

import { ACK_LAG_MS, ACK_SILENCE_MS, BusyWatch } from "../../js/kernel-link.js";

test("a kernel that acknowledges keeps up is not busy", () => {
  const watch = new BusyWatch();
  watch.reset(0);
  watch.ack(9, 1000);
  assert.equal(watch.busy(10, 100, 1100), false);
});

test("unacknowledged audio past ACK_LAG_MS means busy", () => {
  const watch = new BusyWatch();
  watch.reset(0);
  watch.ack(0, 100);
  const chunks = ACK_LAG_MS / 100 + 1; // lag = (sent - 1 - acked) * chunk
  assert.equal(watch.busy(chunks, 100, 200), false);
  assert.equal(watch.busy(chunks + 1, 100, 200), true);
});

test("silence past ACK_SILENCE_MS since going live or the last ack means busy", () => {
  const watch = new BusyWatch();
  watch.reset(1000);
  assert.equal(watch.busy(0, 100, 1000 + ACK_SILENCE_MS), false);
  assert.equal(watch.busy(0, 100, 1001 + ACK_SILENCE_MS), true);
  watch.ack(undefined, 5000); // an ack without a seq still says the kernel is there
  assert.equal(watch.ackedSeq, -1);
  assert.equal(watch.busy(0, 100, 5000 + ACK_SILENCE_MS), false);
  watch.liveSeenAt = 9000;
  assert.equal(watch.busy(0, 100, 9000 + ACK_SILENCE_MS), false);
});
