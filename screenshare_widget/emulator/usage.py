"""Token usage as the Live service reports it (research D3), for a realistic emulator.

Internal module. Pure and deterministic: the same conversation always gives the same
numbers, so tests can assert them.

The service's ``usageMetadata`` differs from a per-turn count (R1, R3, R12-R14):

- ``promptTokenCount`` covers the **whole context** each turn: the system instruction's
  text, every earlier turn's input and response, and this turn's input (frames included),
  so it grows every turn (R12, R13: 143/181/224);
- ``promptTokensDetails`` list only modalities with a non-zero count (R14) and do **not**
  add up to ``promptTokenCount``: a share of it (:attr:`Realism.unlabelled_share`, 18 %
  by default, like R14's 906 labelled of 1108) belongs to no modality. The total is the
  labelled count divided by ``1 - share``, rounded up;
- ``thoughtsTokenCount`` comes on turns answering typed text (R1: 158), and counts in
  ``totalTokenCount`` (prompt + response + thoughts), not in the context.

Counting rules (the emulator's, kept from the idealised count): audio 25 tokens per
second, 258 tokens per frame, a text token per 4 characters (rounded up), the model's
spoken reply 25 tokens per second of audio (as AUDIO, in the context too).

Sliding-window compression (``contextWindowCompression.slidingWindow`` in the setup):
before a turn runs, if the instruction plus the context exceeds ``triggerTokens`` (default
80 % of :data:`MODEL_CONTEXT_TOKENS`, the documented default), the oldest entries (each
turn's input, each reply) are dropped whole, oldest first, until it is at most
``targetTokens`` (default half of the trigger, as the SDK documents). The instruction and
the current turn's input are never dropped. Without compression nothing is dropped.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

from .wire import has, pick

#: Tokens per second of audio (input and the model's spoken reply).
AUDIO_TOKENS_PER_S: Final = 25
#: Tokens per image frame.
IMAGE_TOKENS_PER_FRAME: Final = 258
#: Characters per text token (rough); counts round up.
CHARS_PER_TOKEN: Final = 4
#: Context window assumed for the Live models (tokens), for the default trigger.
MODEL_CONTEXT_TOKENS: Final = 128_000
#: The default ``triggerTokens`` as a fraction of the context window, and the default
#: ``targetTokens`` as a fraction of the trigger.
DEFAULT_TRIGGER_FRACTION: Final = 0.8
DEFAULT_TARGET_FRACTION: Final = 0.5
#: Most entries a context keeps apart (a long session without compression merges its two
#: oldest, which keeps the totals exact).
MAX_CONTEXT_ENTRIES: Final = 4096


@dataclass(frozen=True)
class Tokens:
    """Token counts by modality."""

    text: int = 0
    audio: int = 0
    image: int = 0

    @property
    def total(self) -> int:
        """All of them."""
        return self.text + self.audio + self.image

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(self.text + other.text, self.audio + other.audio, self.image + other.image)

    def __sub__(self, other: Tokens) -> Tokens:
        return Tokens(self.text - other.text, self.audio - other.audio, self.image - other.image)

    def details(self) -> list[dict[str, Any]]:
        """``[{modality, tokenCount}]`` for the non-zero modalities: TEXT, AUDIO, IMAGE."""
        pairs = (("TEXT", self.text), ("AUDIO", self.audio), ("IMAGE", self.image))
        return [{"modality": m, "tokenCount": n} for m, n in pairs if n]


def text_tokens(chars: int) -> int:
    """Tokens of ``chars`` characters of text."""
    return math.ceil(chars / CHARS_PER_TOKEN)


def audio_tokens(seconds: float) -> int:
    """Tokens of ``seconds`` of audio."""
    return round(seconds * AUDIO_TOKENS_PER_S)


def input_tokens(audio_s: float, frames: int, text_chars: int) -> Tokens:
    """What a turn's input costs: audio (seconds), frames and text (characters)."""
    return Tokens(
        text=text_tokens(text_chars),
        audio=audio_tokens(audio_s),
        image=frames * IMAGE_TOKENS_PER_FRAME,
    )


def whole_prompt(labelled: int, unlabelled_share: float) -> int:
    """``promptTokenCount`` for ``labelled`` tokens when a share of it is unlabelled."""
    if labelled <= 0:
        return 0
    return math.ceil(round(labelled / (1.0 - unlabelled_share), 9))


@dataclass(frozen=True)
class Compression:
    """A setup's sliding-window compression: its trigger and target (tokens)."""

    trigger_tokens: int
    target_tokens: int

    @classmethod
    def from_setup(cls, setup: dict[str, Any]) -> Compression | None:
        """The setup's ``contextWindowCompression`` with a ``slidingWindow``, or ``None``.

        Counts may be JSON numbers or int64 strings; missing or invalid ones take the
        defaults (see the module).
        """
        config = pick(setup, "context_window_compression")
        if not has(config, "sliding_window"):
            return None
        trigger = _count(pick(config, "trigger_tokens"))
        if trigger is None:
            trigger = round(MODEL_CONTEXT_TOKENS * DEFAULT_TRIGGER_FRACTION)
        target = _count(pick(pick(config, "sliding_window"), "target_tokens"))
        if target is None or target >= trigger:
            target = round(trigger * DEFAULT_TARGET_FRACTION)
        return cls(trigger, target)


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str) and value.isdigit():
        return int(value) or None
    return None


class Context:
    """A session's conversation as the service's context window holds it (mutable).

    Entries are each turn's input and each reply, oldest first. Used on the emulator's
    loop only; a session keeps one across its connections.
    """

    def __init__(self) -> None:
        self._entries: deque[Tokens] = deque()
        self._tokens = Tokens()

    @property
    def tokens(self) -> Tokens:
        """What the context holds now (the instruction not included)."""
        return self._tokens

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, tokens: Tokens) -> None:
        """Append an entry (zero entries are not kept)."""
        if tokens.total <= 0:
            return
        self._entries.append(tokens)
        self._tokens = self._tokens + tokens
        if len(self._entries) > MAX_CONTEXT_ENTRIES:
            oldest = self._entries.popleft()
            self._entries[0] = oldest + self._entries[0]

    def compress(self, fixed: int, compression: Compression | None) -> None:
        """Apply sliding-window ``compression`` before a turn; ``fixed`` tokens (the
        instruction) always stay. The newest entry (the turn's input) is never dropped."""
        if compression is None or fixed + self._tokens.total <= compression.trigger_tokens:
            return
        while len(self._entries) > 1 and fixed + self._tokens.total > compression.target_tokens:
            self._tokens = self._tokens - self._entries.popleft()

    def turn(
        self,
        *,
        instruction: Tokens,
        turn_input: Tokens,
        response_audio_s: float,
        thoughts: int,
        compression: Compression | None,
        unlabelled_share: float,
    ) -> dict[str, Any]:
        """The ``usageMetadata`` of one turn, and the context updated with it.

        The turn's input joins the context, compression runs, the prompt is counted, then
        the reply (``response_audio_s`` seconds of speech) joins the context.
        """
        self.add(turn_input)
        self.compress(instruction.total, compression)
        labelled = instruction + self._tokens
        response = audio_tokens(response_audio_s)
        usage = usage_metadata(
            labelled, response=response, thoughts=thoughts, unlabelled_share=unlabelled_share
        )
        self.add(Tokens(audio=response))
        return usage


def usage_metadata(
    labelled: Tokens, *, response: int, thoughts: int, unlabelled_share: float
) -> dict[str, Any]:
    """``usageMetadata`` for a prompt whose labelled part is ``labelled``, a spoken reply of
    ``response`` tokens and ``thoughts`` thought tokens; zero counts are left out."""
    prompt = whole_prompt(labelled.total, unlabelled_share)
    usage: dict[str, Any] = {
        "promptTokenCount": prompt,
        "responseTokenCount": response,
        "totalTokenCount": prompt + response + thoughts,
    }
    details = labelled.details()
    if details:
        usage["promptTokensDetails"] = details
    if response:
        usage["responseTokensDetails"] = [{"modality": "AUDIO", "tokenCount": response}]
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage
