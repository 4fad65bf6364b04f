// The session clock and the token meter's text.
import assert from "node:assert/strict";
import { test } from "node:test";

import { formatElapsed, formatSpend } from "../../js/format.js";

test("elapsed time is mm:ss, h:mm:ss past an hour, never negative", () => {
  assert.equal(formatElapsed(65), "01:05");
  assert.equal(formatElapsed(3725), "1:02:05");
  assert.equal(formatElapsed(-3), "00:00");
  assert.equal(formatElapsed(59.9), "00:59");
});

test("the meter shows tokens, cost and budget, and nothing before any", () => {
  const none = { tokens: 0, costUsd: -1, budgetTokens: 0, budgetUsd: 0 };
  assert.equal(formatSpend(none), "");
  assert.equal(formatSpend({ ...none, tokens: 12345 }), "12,345 tokens");
  assert.equal(formatSpend({ ...none, tokens: 12345, costUsd: 0.0123 }), "12,345 tokens · ≈$0.0123");
  assert.equal(
    formatSpend({ tokens: 500, costUsd: 1.5, budgetTokens: 1000, budgetUsd: 2 }),
    "500 tokens of 1,000 · ≈$1.50 of $2.00",
  );
  assert.equal(formatSpend({ ...none, budgetUsd: 1 }), "0 tokens");
});

test("the last turn and the next 10 minutes, in compact units", () => {
  const spend = { tokens: 20000, costUsd: -1, budgetTokens: 0, budgetUsd: 0, lastTurnTokens: 3210 };
  assert.equal(formatSpend(spend), "20,000 tokens · last turn 3,210");
  const at = (projectedTokens, projectedUsd = -1) =>
    formatSpend({ ...spend, lastTurnTokens: 0, projectedTokens, projectedUsd });
  assert.equal(at(950), "20,000 tokens · next 10 min ≈ 950");
  assert.equal(at(9600), "20,000 tokens · next 10 min ≈ 9.6k");
  assert.equal(at(96000, 0.1), "20,000 tokens · next 10 min ≈ 96k ($0.1000)");
  assert.equal(at(1_200_000), "20,000 tokens · next 10 min ≈ 1.2M");
  assert.equal(at(999_600), "20,000 tokens · next 10 min ≈ 1M");
  assert.equal(at(NaN), "20,000 tokens");
});
