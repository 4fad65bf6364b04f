"""The emulator's default "model": it says honestly what it received.

Internal module; :class:`DefaultResponder` is re-exported from
:mod:`screenshare_widget.emulator`.

Per connection it detects utterances from the energy of the incoming 16 kHz audio (or from
``activityStart``/``activityEnd`` when the client disabled automatic activity detection),
and answers each one like the real service does: ``inputTranscription``, then speech
("You spoke for 1.8 seconds. I have received 5 screen frames; ...") as 24 kHz audio in
bursts faster than real time, interleaved with ``outputTranscription`` pieces, then
``generationComplete`` and, once the audio would have finished playing, ``turnComplete``
with ``usageMetadata``. Speech that starts while a reply is still playing interrupts it
(``interrupted: true``). Text input gets an immediate spoken answer.

Tools: when the setup declares functions and a typed text names one (``call get_time`` or
``call describe name=df rows=3``), the responder sends a ``toolCall`` with those arguments
(numbers as numbers, the rest as strings), waits for the ``toolResponse`` and says what the
tool returned.

What it counts (frames, the latest frame, replies) belongs to the connection's session, so
after a resume the next reply counts the frames of every connection of the session.

Reply audio timing: the first ``burst_ms`` goes at once, the rest at ``pace`` times real
time (below 1 is slower than real time, so a client's playback runs dry); with
``gap_every_ms`` the sender also pauses ``gap_ms`` after every ``gap_every_ms`` of audio,
for bursts separated by silences.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from dataclasses import dataclass
from typing import Any, Final

from websockets.exceptions import ConnectionClosed

from ..protocol import OUTPUT_RATE_HZ, SAMPLE_BYTES
from .connection import EmulatorConnection, audio_message, chunks
from .recording import ReceivedFrame
from .speech import DEFAULT_VOICE, DEFAULT_WPM, Synthesizer
from .vad import (
    DEFAULT_END_MS,
    DEFAULT_FLOOR_MARGIN_DB,
    DEFAULT_FLOOR_WINDOW_S,
    DEFAULT_MIN_UTTERANCE_MS,
    DEFAULT_START_MS,
    DEFAULT_THRESHOLD_DBFS,
    SpeechStarted,
    UtteranceDetector,
    UtteranceEnded,
    VadEvent,
)
from .wire import ClientEvent, pick

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

#: Reply audio sent at once before pacing starts (milliseconds), like the service's bursts.
DEFAULT_BURST_MS: Final = 500
#: Pace of the reply audio after the burst (times real time).
DEFAULT_PACE: Final = 2.0
#: Reply audio chunk (milliseconds).
DEFAULT_CHUNK_MS: Final = 100
#: If audio stops arriving mid-utterance for this long (seconds), the utterance ends.
STALL_FLUSH_S: Final = 1.5
#: Token rates used for ``usageMetadata`` (tokens per second of audio, per image frame).
AUDIO_TOKENS_PER_S: Final = 25
IMAGE_TOKENS_PER_FRAME: Final = 258
#: Characters per text token (rough) for text input.
CHARS_PER_TOKEN: Final = 4
#: Longest client text echoed back in a reply (characters).
MAX_ECHO_CHARS: Final = 200
#: Most ``outputTranscription`` pieces per reply.
MAX_PIECES: Final = 3
#: Longest tool response said back (characters of JSON).
MAX_TOOL_ECHO_CHARS: Final = 160

_TOOL_ARG: Final = re.compile(r'(\w+)=("[^"]*"|\S+)')


def declared_functions(setup: Any) -> set[str]:
    """The names of the functions a setup declares."""
    names = set()
    tools = pick(setup, "tools")
    for tool in tools if isinstance(tools, list) else []:
        declarations = pick(tool, "function_declarations")
        for declaration in declarations if isinstance(declarations, list) else []:
            name = pick(declaration, "name")
            if isinstance(name, str):
                names.add(name)
    return names


def tool_request(text: str, functions: set[str]) -> tuple[str, dict[str, Any]] | None:
    """The call a typed text asks for (``call <name> key=value ...``), if it names a
    declared function."""
    words = text.split()
    for i, word in enumerate(words[:-1]):
        if word.lower() == "call" and words[i + 1] in functions:
            rest = " ".join(words[i + 2 :])
            args: dict[str, Any] = {}
            for key, value in _TOOL_ARG.findall(rest):
                value = value.strip('"')
                args[key] = int(value) if re.fullmatch(r"-?\d+", value) else value
            return words[i + 1], args
    return None


def frame_summary(count: int, latest: ReceivedFrame | None) -> str:
    """One or two sentences saying how many screen frames arrived and what the latest was."""
    if count == 0 or latest is None:
        return "I have not received any screen frames yet."
    size = len(latest.data)
    amount = f"{round(size / 1000)} kilobytes" if size >= 1000 else f"{size} bytes"
    plural = "frame" if count == 1 else "frames"
    if latest.width and latest.height:
        return (
            f"I have received {count} screen {plural}; the latest is {latest.width} by "
            f"{latest.height} pixels, {amount}."
        )
    return f"I have received {count} screen {plural}; the latest is {amount}."


#: The one rule the emulator follows from a system instruction, so that changing the
#: instruction visibly and deterministically changes the answers (for offline tests of
#: instruction swaps and comparisons): ``Start every answer with "<words>"``.
_START_RULE: Final = re.compile(r'start every answer with "([^"]{1,80})"', re.IGNORECASE)


def instruction_text(value: Any) -> str:
    """The text of a ``systemInstruction`` as the client sent it (a Content or a string)."""
    if isinstance(value, str):
        return value
    parts = pick(value, "parts")
    if isinstance(parts, list):
        return "".join(str(pick(p, "text") or "") for p in parts)
    return ""


def follow_instruction(instruction: str, answer: str) -> str:
    """``answer`` as the instruction's rule shapes it (unchanged without a rule)."""
    rule = _START_RULE.search(instruction)
    return f"{rule.group(1).strip()} {answer}" if rule else answer


def split_pieces(text: str, most: int = MAX_PIECES) -> list[str]:
    """Split a reply into at most ``most`` transcription pieces; ``"".join`` gives it back."""
    parts = re.split(r"(?<=[.;!?])\s+", text.strip())
    per = math.ceil(len(parts) / most)
    groups = [" ".join(parts[i : i + per]) for i in range(0, len(parts), per)]
    return [groups[0]] + [" " + g for g in groups[1:]]


@dataclass(frozen=True)
class _Prompt:
    """What a turn consumed: audio (seconds), frames and text (characters)."""

    audio_s: float
    frames: int
    text_chars: int


def usage_metadata(prompt: _Prompt, reply_s: float) -> dict[str, Any]:
    """``usageMetadata`` for a turn, with per-modality details."""
    audio = round(prompt.audio_s * AUDIO_TOKENS_PER_S)
    image = prompt.frames * IMAGE_TOKENS_PER_FRAME
    text = math.ceil(prompt.text_chars / CHARS_PER_TOKEN)
    details = [
        {"modality": "AUDIO", "tokenCount": audio},
        {"modality": "IMAGE", "tokenCount": image},
    ]
    if text:
        details.append({"modality": "TEXT", "tokenCount": text})
    response = round(reply_s * AUDIO_TOKENS_PER_S)
    return {
        "promptTokenCount": audio + image + text,
        "responseTokenCount": response,
        "totalTokenCount": audio + image + text + response,
        "promptTokensDetails": details,
        "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": response}],
    }


class DefaultResponder:
    """The default behaviour of a :class:`LiveEmulator` connection.

    One instance serves any number of connections (the speech cache is shared). The VAD
    parameters are documented in :mod:`screenshare_widget.emulator.vad`. The reply audio
    goes in ``chunk_ms`` chunks: the first ``burst_ms`` at once, then at ``pace`` times real
    time (``0.5``: half as fast as it plays); ``gap_every_ms`` (``None``: never) adds a
    pause of ``gap_ms`` after every that much audio. ``use_espeak=False`` answers with a
    tone instead of speech.
    """

    def __init__(
        self,
        *,
        threshold_dbfs: float = DEFAULT_THRESHOLD_DBFS,
        floor_margin_db: float = DEFAULT_FLOOR_MARGIN_DB,
        start_ms: int = DEFAULT_START_MS,
        end_ms: int = DEFAULT_END_MS,
        min_utterance_ms: int = DEFAULT_MIN_UTTERANCE_MS,
        floor_window_s: float = DEFAULT_FLOOR_WINDOW_S,
        burst_ms: int = DEFAULT_BURST_MS,
        pace: float = DEFAULT_PACE,
        chunk_ms: int = DEFAULT_CHUNK_MS,
        gap_every_ms: int | None = None,
        gap_ms: int = 0,
        use_espeak: bool = True,
        voice: str = DEFAULT_VOICE,
        wpm: int = DEFAULT_WPM,
    ) -> None:
        if not pace > 0:
            raise ValueError("pace must be positive")
        if chunk_ms <= 0:
            raise ValueError("chunk_ms must be positive")
        if burst_ms < 0 or gap_ms < 0:
            raise ValueError("burst_ms and gap_ms must not be negative")
        if gap_every_ms is not None and gap_every_ms <= 0:
            raise ValueError("gap_every_ms must be positive (or None)")
        self.threshold_dbfs = threshold_dbfs
        self.floor_margin_db = floor_margin_db
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.min_utterance_ms = min_utterance_ms
        self.floor_window_s = floor_window_s
        self.burst_ms = burst_ms
        self.pace = pace
        self.chunk_ms = chunk_ms
        self.gap_every_ms = gap_every_ms
        self.gap_ms = gap_ms
        self.synthesizer = Synthesizer(use_espeak=use_espeak, voice=voice, wpm=wpm)

    def detector(self) -> UtteranceDetector:
        """A fresh utterance detector with this responder's parameters."""
        return UtteranceDetector(
            threshold_dbfs=self.threshold_dbfs,
            floor_margin_db=self.floor_margin_db,
            start_ms=self.start_ms,
            end_ms=self.end_ms,
            min_utterance_ms=self.min_utterance_ms,
            floor_window_s=self.floor_window_s,
        )

    def send_at(self, offset_s: float) -> float:
        """When reply audio at ``offset_s`` (seconds into the reply) is due, in seconds
        after the reply's first chunk: the burst, then ``pace``, plus the gaps before it."""
        burst_s = self.burst_ms / 1000
        due = max(0.0, offset_s - burst_s) / self.pace
        if self.gap_every_ms is not None and self.gap_ms > 0:
            # A gap after every gap_every_ms of audio, i.e. before the chunk that crosses it.
            gaps = math.floor(round(offset_s * 1000, 6) / self.gap_every_ms)
            due += gaps * self.gap_ms / 1000
        return due

    async def __call__(self, conn: EmulatorConnection) -> None:
        """Serve one connection until it closes; cancellation stops any reply in progress."""
        await _Turns(self, conn).run()


class _Turns:
    """The responder's state for one connection; what outlives it is in the session."""

    def __init__(self, responder: DefaultResponder, conn: EmulatorConnection) -> None:
        self.r = responder
        self.conn = conn
        self.session = conn.session
        self.detector = responder.detector()
        aad = pick(pick(conn.setup, "realtime_input_config"), "automatic_activity_detection")
        self.manual = pick(aad, "disabled") is True
        self.instruction = instruction_text(pick(conn.setup, "system_instruction"))
        self.functions = declared_functions(conn.setup)
        self.tool_calls = 0
        self.pending_tools: dict[str, str] = {}  # call id -> function name
        self.in_activity = False
        self.activity_s = 0.0
        self.reply: asyncio.Task[None] | None = None
        self.pending_audio_s = 0.0
        self.pending_frames = 0
        self.pending_chars = 0

    async def run(self) -> None:
        try:
            while True:
                timeout = STALL_FLUSH_S if self.detector.in_speech else None
                try:
                    event = await self.conn.next_event(timeout=timeout)
                except TimeoutError:
                    await self._vad(self.detector.flush())
                    continue
                await self._handle(event)
        finally:
            if self.reply is not None and not self.reply.done():
                self.reply.cancel()
                await asyncio.wait([self.reply])

    async def _handle(self, event: ClientEvent) -> None:
        for frame in event.frames:
            self.session.frames += 1
            self.session.latest_frame = frame
            self.pending_frames += 1
        for audio in event.audio:
            self.pending_audio_s += audio.seconds
            if self.manual:
                if self.in_activity:
                    self.activity_s += audio.seconds
            else:
                await self._vad(self.detector.feed(audio.data))
        if event.kind == "realtime_input":
            if event.flag("audio_stream_end"):
                await self._vad(self.detector.flush())
            if event.flag("activity_start"):
                self.in_activity = True
                self.activity_s = 0.0
                await self._barge_in()
            if event.flag("activity_end") and self.in_activity:
                self.in_activity = False
                await self._answer_speech(self.activity_s)
            for text in event.texts:
                self.pending_chars += len(text.text)
                await self._answer_text(text.text)
        elif event.kind == "tool_response":
            responses = pick(event.body, "function_responses")
            for response in responses if isinstance(responses, list) else []:
                name = self.pending_tools.pop(str(pick(response, "id")), None)
                if name is not None:
                    said = json.dumps(pick(response, "response"), ensure_ascii=False)
                    said = said[:MAX_TOOL_ECHO_CHARS]
                    await self._start_reply(None, f"The tool {name} returned {said}.")
        elif event.kind == "context_update":
            update = pick(event.body, "system_instruction")
            if update is not None:
                self.instruction = instruction_text(update)
        elif event.kind == "client_content":
            self.pending_chars += sum(len(t.text) for t in event.texts)
            if event.flag("turn_complete") and event.texts:
                await self._answer_text(" ".join(t.text for t in event.texts))

    async def _vad(self, events: list[VadEvent]) -> None:
        for vad_event in events:
            if isinstance(vad_event, SpeechStarted):
                await self._barge_in()
            elif isinstance(vad_event, UtteranceEnded):
                await self._answer_speech(vad_event.duration_s)

    async def _barge_in(self) -> None:
        """Stop a reply still playing and tell the client it was interrupted."""
        if self.reply is None or self.reply.done():
            return
        self.reply.cancel()
        await asyncio.wait([self.reply])
        logger.debug("connection %d: barge-in", self.conn.index)
        await self.conn.interrupted()

    async def _answer_speech(self, seconds: float) -> None:
        text = f"You spoke for {seconds:.1f} seconds. {self._frames_said()}"
        await self._start_reply(f"(spoke for {seconds:.1f} s)", text)

    async def _answer_text(self, text: str) -> None:
        request = tool_request(text, self.functions)
        if request is not None:
            self.tool_calls += 1
            call_id = f"call-{self.conn.index}-{self.tool_calls}"
            name, args = request
            self.pending_tools[call_id] = name
            await self.conn.tool_call([{"id": call_id, "name": name, "args": args}])
            return
        said = " ".join(text.split())[:MAX_ECHO_CHARS] or "nothing"
        if not said.endswith((".", "!", "?")):
            said += "."
        await self._start_reply(None, f"You wrote: {said} {self._frames_said()}")

    def _frames_said(self) -> str:
        return frame_summary(self.session.frames, self.session.latest_frame)

    async def _start_reply(self, heard: str | None, text: str) -> None:
        text = follow_instruction(self.instruction, text)
        await self._barge_in()
        prompt = _Prompt(self.pending_audio_s, self.pending_frames, self.pending_chars)
        self.pending_audio_s = 0.0
        self.pending_frames = 0
        self.pending_chars = 0
        self.session.replies += 1
        self.reply = asyncio.create_task(
            self._reply(heard, text, prompt),
            name=f"live-emulator-reply-{self.conn.index}-{self.session.replies}",
        )
        self.reply.add_done_callback(_log_failure)

    async def _reply(self, heard: str | None, text: str, prompt: _Prompt) -> None:
        """Speak ``text``; cancellation (barge-in) stops it between chunks."""
        conn = self.conn
        loop = asyncio.get_running_loop()
        if heard is not None:
            await conn.input_transcription(heard)
        pcm = await self.r.synthesizer.synthesize(text)
        bytes_per_s = OUTPUT_RATE_HZ * SAMPLE_BYTES
        total_s = len(pcm) / bytes_per_s
        pieces = split_pieces(text)
        starts: list[float] = []  # where each piece begins, as a fraction of the text
        position = 0
        for piece in pieces:
            starts.append(position / max(1, len(text)))
            position += len(piece)
        first = loop.time()
        offset_s = 0.0
        sent = 0
        for chunk in chunks(pcm, self.r.chunk_ms):
            delay = first + self.r.send_at(offset_s) - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            while sent < len(pieces) and starts[sent] <= offset_s / max(total_s, 1e-9):
                await conn.output_transcription(pieces[sent])
                sent += 1
            await conn.send(audio_message(chunk))
            offset_s += len(chunk) / bytes_per_s
        for piece in pieces[sent:]:
            await conn.output_transcription(piece)
        await conn.generation_complete()
        # The turn ends when the audio would have finished playing in real time.
        delay = first + total_s - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await conn.turn_complete(usage_metadata(prompt, total_s))


def _log_failure(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is None or isinstance(exc, ConnectionClosed):
        return
    logger.error("%s failed", task.get_name(), exc_info=exc)
