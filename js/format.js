// @ts-check
/** Text the view shows for numbers: the session clock and the token meter. Internal module;
 * pure. */

/**
 * Elapsed seconds as "mm:ss", or "h:mm:ss" past an hour.
 * @param {number} seconds
 * @returns {string}
 */
export function formatElapsed(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const two = (/** @type {number} */ n) => String(n).padStart(2, "0");
  const hours = Math.floor(s / 3600);
  const rest = `${two(Math.floor((s % 3600) / 60))}:${two(s % 60)}`;
  return hours > 0 ? `${hours}:${rest}` : rest;
}

/** @param {number} n */
const whole = (n) => Math.round(n).toLocaleString("en-US");
/** @param {number} usd */
const dollars = (usd) => `$${usd < 1 ? usd.toFixed(4) : usd.toFixed(2)}`;
/** 950, 9.6k, 96k, 1.2M, 12M: one decimal below 10 of a unit, none above.
 * @param {number} n */
const compact = (n) => {
  const [unit, size] = n >= 999_500 ? ["M", 1e6] : n >= 999.5 ? ["k", 1e3] : ["", 1];
  const x = n / /** @type {number} */ (size);
  return `${x < 9.95 && Number(size) > 1 ? x.toFixed(1).replace(/\.0$/, "") : Math.round(x)}${unit}`;
};

/**
 * The token meter's text: "12,345 tokens · ≈$0.0123 · last turn 3,210 · next 10 min ≈ 96k
 * ($0.10)": the total, the cost when known, the budget when set, the last turn's tokens
 * (each turn re-bills the whole context) and the projection of the next 10 minutes at the
 * recent turn rate (PROJECTION_S in pricing.py; a floor, since the context grows).
 * @param {object} spend
 * @param {number} spend.tokens
 * @param {number} spend.costUsd -1 (or NaN) when unknown
 * @param {number} spend.budgetTokens 0: none
 * @param {number} spend.budgetUsd 0: none
 * @param {number} [spend.lastTurnTokens] 0: no turn yet
 * @param {number} [spend.projectedTokens] -1 (or NaN) when unknown
 * @param {number} [spend.projectedUsd] -1 (or NaN) when unknown
 */
export function formatSpend({
  tokens, costUsd, budgetTokens, budgetUsd,
  lastTurnTokens = 0, projectedTokens = -1, projectedUsd = -1,
}) {
  if (!(tokens > 0) && !(budgetTokens > 0) && !(budgetUsd > 0)) return "";
  let text = `${whole(tokens)} tokens`;
  if (budgetTokens > 0) text += ` of ${whole(budgetTokens)}`;
  if (costUsd >= 0) {
    text += ` · ≈${dollars(costUsd)}`;
    if (budgetUsd > 0) text += ` of $${budgetUsd.toFixed(2)}`;
  }
  if (lastTurnTokens > 0) text += ` · last turn ${whole(lastTurnTokens)}`;
  if (projectedTokens >= 0) {
    text += ` · next 10 min ≈ ${compact(projectedTokens)}`;
    if (projectedUsd >= 0) text += ` (${dollars(projectedUsd)})`;
  }
  return text;
}
