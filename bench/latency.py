"""Pairing what one end sent with what the other end got, to time audio across the relay.

Both ends name a chunk by :func:`pcm_hash` (the page computes the same fingerprint in
``static/widget.js``). Chunks repeat (silence, a looping microphone, replies that begin
with the same words), so pairing goes in order: the relay forwards chunks one to one and in
order, dropping some at most, so each sent chunk pairs with the first later chunk of the
same fingerprint that arrived after the previous pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Multiplier of the fingerprint's sample weights (Knuth's, mod 2**32).
_WEIGHT = 2654435761
#: Clock slack between the page's and the emulator's wall clocks on one machine (s).
CLOCK_SLACK_S = 0.002
#: Longest transit a pair may have (s); anything later is another chunk.
MAX_TRANSIT_S = 5.0


def pcm_hash(pcm: bytes) -> int:
    """The 32-bit fingerprint of PCM16 that ``pcmHash`` computes in the page: the byte length
    plus the sum of each sample (as unsigned 16-bit) times ``(i + 1) * 2654435761 mod 2**32``,
    all mod 2**32."""
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<u2").astype(np.uint64)
    weights = (np.arange(1, len(samples) + 1, dtype=np.uint64) * np.uint64(_WEIGHT)) & np.uint64(
        0xFFFFFFFF
    )
    terms = (samples * weights) & np.uint64(0xFFFFFFFF)
    return int((int(terms.sum(dtype=np.uint64)) + len(pcm)) & 0xFFFFFFFF)


def pair(
    sent: Sequence[tuple[float, int]],
    received: Sequence[tuple[float, int]],
    max_transit_s: float = MAX_TRANSIT_S,
) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``: ``sent[i]`` arrived as ``received[j]``.

    Both lists hold ``(time_s, fingerprint)`` in the order sent and received. A sent chunk
    pairs with the first received chunk of the same fingerprint after the previous pair that
    arrived no earlier than it was sent and within ``max_transit_s``; unpaired ones were
    dropped (or are outside the other list's window).
    """
    pairs: list[tuple[int, int]] = []
    start = 0
    for i, (t, fingerprint) in enumerate(sent):
        while start < len(received) and received[start][0] < t - CLOCK_SLACK_S:
            start += 1
        j = start
        while j < len(received) and received[j][0] <= t + max_transit_s:
            if received[j][1] == fingerprint:
                pairs.append((i, j))
                start = j + 1
                break
            j += 1
    return pairs


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values_ms: Sequence[float]) -> dict[str, Any]:
    """``{"n", "p50", "p95", "max"}`` of latencies in milliseconds (None when empty)."""
    p50, p95 = percentile(values_ms, 0.5), percentile(values_ms, 0.95)
    return {
        "n": len(values_ms),
        "p50": None if p50 is None else round(p50, 1),
        "p95": None if p95 is None else round(p95, 1),
        "max": round(max(values_ms), 1) if values_ms else None,
    }
