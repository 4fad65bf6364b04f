"""Replay one recorded session against several system instructions, side by side.

:func:`compare` opens a fresh Live session per instruction variant and plays the recording
into each (its microphone audio, the frames it sent and the texts it typed, at their
recorded times), through the same conversation core the widget's relay runs
(:class:`~screenshare_widget.conversation.Conversation`), all variants on one loop: no
thread per variant, and nothing polled across threads. It returns a DataFrame with one
row per answer and, for each variant, the answer's text, its latency and its tokens.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from .backend import Connector, Usage
from .config import DEFAULT_MODEL, DEFAULT_VOICE, SessionConfig
from .conversation import Conversation, RelayState
from .events import Event
from .instructions import Instructions
from .protocol import INPUT_RATE_HZ, SAMPLE_BYTES
from .pumps import PendingText, WaitingFrame
from .recording import Recorder, Recording
from .relay import QuietSink
from .session_log import SessionLog
from .timings import Timings
from .tools import Toolbox
from .transcript import Turn

if TYPE_CHECKING:
    import pandas as pd
    from google import genai

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

_T = TypeVar("_T")

#: Microphone audio goes to each variant in chunks this long (s), like the page's.
CHUNK_S: Final = 0.1
#: Silence played after the recording's audio, so an utterance at its very end ends (s).
TAIL_SILENCE_S: Final = 1.0
#: A variant is done once the conversation stayed at rest this long after the replay (s).
SETTLE_S: Final = 1.5
#: Longest wait for a variant's answers after the replay, and for each answer between
#: prompts when replaying faster than real time (s).
ANSWER_TIMEOUT_S: Final = 60.0
#: Longest wait for a variant's session to go live (s).
CONNECT_TIMEOUT_S: Final = 30.0
#: Sessions replayed at once by default (the Gemini API limits concurrent sessions per key).
MAX_CONCURRENT: Final = 3
_POLL_S: Final = 0.05


@dataclass(frozen=True)
class Variant:
    """What one instruction variant made of the replay."""

    label: str
    instruction: str
    turns: tuple[Turn, ...]
    events: tuple[Event, ...]
    usage: tuple[Usage, ...]
    #: The error that ended the variant's session early, "" if none.
    error: str = ""


@dataclass(frozen=True)
class Answer:
    """One model answer of a variant: what the user said or typed before it, the answer,
    its latency (s from the end of the prompt to the model's first output, NaN if the
    prompt's end is unknown) and the tokens the service reported for it."""

    prompt: str
    reply: str
    latency_s: float
    tokens: int
    interrupted: bool


def answers(variant: Variant) -> list[Answer]:
    """The variant's answers in order, each with its prompt, latency and tokens."""
    out: list[Answer] = []
    prompt: list[str] = []
    model_turns = [t for t in variant.turns if t.role == "model"]
    starts = [t.started_at for t in model_turns] + [None]
    previous = None
    for turn in variant.turns:
        if turn.role == "user":
            prompt.append(turn.text.strip())
            continue
        index = model_turns.index(turn)
        began, following = turn.started_at, starts[index + 1]
        ends = [
            e.at
            for e in variant.events
            if e.kind in ("speech_end", "text")
            and e.at <= began
            and (previous is None or e.at > previous)
        ]
        latency = (began - max(ends)).total_seconds() if ends else math.nan
        tokens = sum(
            int(e.detail.get("total_tokens", 0))  # type: ignore[call-overload]
            for e in variant.events
            if e.kind == "usage" and e.at >= began and (following is None or e.at < following)
        )
        out.append(Answer(" ".join(p for p in prompt if p), turn.text.strip(), latency, tokens,
                          turn.interrupted))  # fmt: skip
        prompt = []
        previous = began
    return out


def compare(
    recording: Recording | Recorder | str | os.PathLike[str],
    instructions: Sequence[str] | Mapping[str, str],
    *,
    client: genai.Client | None = None,
    model: str | None = None,
    voice: str | None = None,
    speed: float = 1.0,
    max_concurrent: int = MAX_CONCURRENT,
) -> pd.DataFrame:
    """Replay ``recording`` into a fresh Live session per instruction; compare the answers.

    Args:
        recording: A :class:`~screenshare_widget.recording.Recording`, the recorder
            ``assistant.record(...)`` returned (it is stopped first), or a folder path.
        instructions: The system instructions to compare: a list (labelled "A", "B", ...)
            or a dict of label to instruction.
        client: A ``google.genai.Client``; default as in the widget: from the API key in
            the environment, else the local Live emulator.
        model, voice: Default: the recording's.
        speed: 1.0 replays in real time, as recorded. Above 1 the recording plays faster and
            each variant's answer is awaited before the next prompt (so pauses shrink but
            answers are not cut short by the replay).
        max_concurrent: Sessions replayed at once (the others wait their turn).

    Returns:
        One row per answer, indexed from 1. Columns: ``("user", "said")``, then for each
        variant label ``reply``, ``latency_s`` (end of the prompt to the first output) and
        ``tokens``. ``df.attrs["variants"]`` holds per-variant totals: the instruction,
        answers, mean latency, total tokens and any error.

    Blocks until every variant finished, about the recording's length divided by
    ``speed``, plus the answers. Interrupting the kernel stops every replay; in async code,
    ``await`` :func:`acompare` instead.
    """
    return _run_blocking(
        acompare(
            recording,
            instructions,
            client=client,
            model=model,
            voice=voice,
            speed=speed,
            max_concurrent=max_concurrent,
        )  # fmt: skip
    )


async def acompare(
    recording: Recording | Recorder | str | os.PathLike[str],
    instructions: Sequence[str] | Mapping[str, str],
    *,
    client: genai.Client | None = None,
    model: str | None = None,
    voice: str | None = None,
    speed: float = 1.0,
    max_concurrent: int = MAX_CONCURRENT,
    _connector: Connector | None = None,
) -> pd.DataFrame:
    """:func:`compare` for async code (``await acompare(...)`` in a cell). Cancelling it
    stops every replay and closes their sessions."""
    loaded = _load(recording)
    variants = _labelled(instructions)
    if not speed > 0 or not math.isfinite(speed):
        raise ValueError("speed must be a positive number (1.0 is real time)")
    if max_concurrent < 1:
        raise ValueError("max_concurrent must be at least 1")
    if _connector is None:
        from . import gemini

        _connector = gemini.connector(gemini.resolve_backend(client).client)
    base = SessionConfig(
        model=model or loaded.model or DEFAULT_MODEL,
        voice=voice or loaded.voice or DEFAULT_VOICE,
    )
    gate = asyncio.Semaphore(max_concurrent)

    async def one(label: str, instruction: str) -> Variant:
        async with gate:
            config = SessionConfig(
                model=base.model, voice=base.voice, system_instruction=instruction
            )
            return await replay(loaded, _connector, config, label=label, speed=speed)

    results = await asyncio.gather(*(one(label, text) for label, text in variants.items()))
    return table(results)


async def replay(
    recording: Recording,
    connect: Connector,
    config: SessionConfig,
    *,
    label: str = "A",
    speed: float = 1.0,
    timings: Timings | None = None,
) -> Variant:
    """Play ``recording`` into one new session opened with ``connect`` and ``config``
    (and ``timings``), and return what came of it. The variant's conversation runs on the
    caller's loop (no thread of its own). Cancelling it closes the session."""
    timings = timings if timings is not None else Timings()
    log = SessionLog.within(timings)
    instructions = Instructions(config.system_instruction)
    conv = Conversation(
        connect,
        lambda: (config, instructions.current.version),
        QuietSink(),
        toolbox=Toolbox(),
        instructions=instructions,
        log=log,
        timings=timings,
    )
    error = ""
    try:
        await conv.start()
        await _until(lambda: conv.state in (RelayState.LIVE, RelayState.FAILED),
                     CONNECT_TIMEOUT_S, "the session to go live")  # fmt: skip
        _check(conv)
        await _play(recording, conv, speed)
        await conv.end_audio()
        await _settle(conv)
        _check(conv)
    except _VariantFailed as failed:
        error = str(failed) or "The session failed."
        logger.warning("variant %s: %s", label, error)
    finally:
        await conv.close()  # nothing of the variant stays on the caller's loop
    return Variant(
        label=label,
        instruction=config.system_instruction,
        turns=tuple(log.transcript),
        events=tuple(log.events),
        usage=tuple(log.usage),
        error=error,
    )


async def _play(recording: Recording, conv: Conversation, speed: float) -> None:
    """Feed the recording's audio, frames and texts at their times divided by ``speed``;
    faster than real time, each prompt's answer is awaited before the next prompt."""
    loop = asyncio.get_running_loop()
    prompts = _prompt_times(recording)
    passed = 0  # prompts the replay has reached
    start = loop.time()
    shift = 0.0  # time spent waiting for answers (faster than real time only)
    for t, kind, payload in _schedule(recording):
        while speed > 1 and passed < len(prompts) and prompts[passed] <= t:
            if passed > 0:  # the previous prompt's answer comes first
                waited = loop.time()
                await _until(conv.at_rest, ANSWER_TIMEOUT_S, "", fail=False)
                shift += loop.time() - waited
            passed += 1
        delay = start + shift + t / speed - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        _check(conv)
        if kind == "audio":
            conv.uplink.put_audio(payload)  # type: ignore[arg-type]
        elif kind == "frame":
            conv.uplink.put_frame(WaitingFrame(*payload))  # type: ignore[misc]
        else:
            await conv.say(PendingText(payload))  # type: ignore[arg-type]


def _check(conv: Conversation) -> None:
    if conv.state is RelayState.FAILED:
        raise _VariantFailed(conv.error)


def table(variants: Sequence[Variant]) -> pd.DataFrame:
    """The side-by-side DataFrame :func:`compare` returns, from replayed variants."""
    import pandas as pd

    per = {v.label: answers(v) for v in variants}
    rows = max((len(a) for a in per.values()), default=0)
    data: dict[tuple[str, str], list[Any]] = {("user", "said"): []}
    for i in range(rows):
        heard = next((a[i].prompt for a in per.values() if i < len(a) and a[i].prompt), "")
        data[("user", "said")].append(heard)
    for label, got in per.items():
        data[(label, "reply")] = [got[i].reply if i < len(got) else "" for i in range(rows)]
        data[(label, "latency_s")] = [
            round(got[i].latency_s, 3) if i < len(got) else math.nan for i in range(rows)
        ]
        data[(label, "tokens")] = [got[i].tokens if i < len(got) else 0 for i in range(rows)]
    frame = pd.DataFrame(data, index=pd.RangeIndex(1, rows + 1, name="answer"))
    frame.attrs["variants"] = {
        v.label: {
            "instruction": v.instruction,
            "answers": len(per[v.label]),
            "mean_latency_s": _mean([a.latency_s for a in per[v.label]]),
            "total_tokens": sum(u.total_tokens for u in v.usage),
            "error": v.error,
        }
        for v in variants
    }
    return frame


# ---- internals -------------------------------------------------------------------------------


class _VariantFailed(Exception):
    """A variant's session failed; the message is the relay's sentence."""


def _load(recording: Recording | Recorder | str | os.PathLike[str]) -> Recording:
    if isinstance(recording, Recording):
        return recording
    if isinstance(recording, Recorder):
        return recording.stop()
    return Recording.load(recording)


def _labelled(instructions: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    if isinstance(instructions, str):
        raise TypeError("instructions must be a list (or dict) of instructions, not one string")
    if isinstance(instructions, Mapping):
        variants = {str(k): v for k, v in instructions.items()}
    else:
        items = list(instructions)
        labels = [_label(i) for i in range(len(items))]
        variants = dict(zip(labels, items, strict=True))
    if not variants:
        raise ValueError("give at least one instruction to compare")
    if "user" in variants:
        raise ValueError('"user" names the prompt column; give that variant another label')
    for label, text in variants.items():
        if not isinstance(text, str):
            raise TypeError(f"instruction {label} must be a string, not {type(text).__name__}")
    return variants


def _label(index: int) -> str:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return letters[index] if index < len(letters) else f"V{index + 1}"


def _prompt_times(recording: Recording) -> list[float]:
    """When the user began to speak or typed, in seconds into the recording."""
    kinds = ("speech_start", "text")
    return sorted(float(e["t"]) for e in recording.events if e.get("kind") in kinds)


def _schedule(recording: Recording) -> list[tuple[float, str, object]]:
    """Everything to play, in time order: audio in CHUNK_S chunks, frames and texts."""
    items: list[tuple[float, str, object]] = []
    chunk = round(CHUNK_S * INPUT_RATE_HZ) * SAMPLE_BYTES
    audio = recording.mic + bytes(round(TAIL_SILENCE_S * INPUT_RATE_HZ) * SAMPLE_BYTES)
    for i in range(0, len(audio), chunk):
        # A chunk goes once it has been spoken, like the page sends it.
        end_s = (i + len(audio[i : i + chunk])) / (INPUT_RATE_HZ * SAMPLE_BYTES)
        items.append((end_s, "audio", audio[i : i + chunk]))
    for frame in recording.frames:
        items.append((frame.t, "frame", (frame.jpeg, frame.width, frame.height)))
    for text in recording.texts:
        items.append((text.t, "text", text.text))
    items.sort(key=lambda item: item[0])
    return items


async def _until(
    predicate: Callable[[], bool], limit_s: float, what: str, *, fail: bool = True
) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            if fail:
                raise _VariantFailed(f"Timed out after {limit_s:g} s waiting for {what}.")
            return
        await asyncio.sleep(_POLL_S)


async def _settle(conv: Conversation) -> None:
    """Wait until the conversation has been at rest for :data:`SETTLE_S` (the answers are
    in), or :data:`ANSWER_TIMEOUT_S` passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ANSWER_TIMEOUT_S
    rest_since: float | None = None
    while loop.time() < deadline and conv.state is not RelayState.FAILED:
        now = loop.time()
        if conv.at_rest():
            rest_since = now if rest_since is None else rest_since
            if now - rest_since >= SETTLE_S:
                return
        else:
            rest_since = None
        await asyncio.sleep(_POLL_S)


def _mean(values: list[float]) -> float:
    known = [v for v in values if not math.isnan(v)]
    return round(sum(known) / len(known), 3) if known else math.nan


def _run_blocking(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` to the end on a private loop in a thread (a notebook's main thread
    already runs a loop); a KeyboardInterrupt cancels it."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="screenshare-compare", daemon=True)
    thread.start()
    finished = threading.Event()

    async def run() -> _T:
        try:
            return await coro
        finally:
            finished.set()

    future = asyncio.run_coroutine_threadsafe(run(), loop)
    try:
        return future.result()
    except KeyboardInterrupt:
        future.cancel()  # the replays close their sessions before ``finished``
        finished.wait(CONNECT_TIMEOUT_S)
        raise
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
