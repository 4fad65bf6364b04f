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

With the connection's :class:`Realism` (each behaviour and its source are in
:mod:`screenshare_widget.emulator.realism`) it also: paces replies 1 s at once then 4x
and ends speech after 700 ms of quiet; says ``voiceActivity`` start and end; transcribes
in fragments of a few characters, the user's partly after the reply began; counts usage
over the whole context (:mod:`screenshare_widget.emulator.usage`) with thought tokens on
typed turns; follows ``interrupted`` with the interrupted turn's own ``turnComplete``;
puts every call a text asks for into one ``toolCall`` with the service's id shapes,
answering once all of them are answered; and transcribes an utterance that is mostly its
own voice heard back (speaker echo) as the words of its reply that it repeats
(:mod:`screenshare_widget.emulator.echo`). What a realistic session counts (its context,
its tool calls) belongs to the session too.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import math
import re
import time
from dataclasses import dataclass, replace
from typing import Any, Final

from websockets.exceptions import ConnectionClosed

from ..protocol import OUTPUT_RATE_HZ, SAMPLE_BYTES
from .connection import EmulatorConnection
from .echo import EchoEar
from .messages import audio_message, chunks
from .realism import IDEAL_REPLY_BURST_MS, IDEAL_REPLY_PACE, Realism
from .speech import DEFAULT_VOICE, DEFAULT_WPM, MAX_SPOKEN_CHARS, Synthesizer
from .traffic import ReceivedFrame
from .usage import (
    AUDIO_TOKENS_PER_S,
    CHARS_PER_TOKEN,
    IMAGE_TOKENS_PER_FRAME,
    Compression,
    Tokens,
    input_tokens,
    text_tokens,
)
from .vad import (
    SpeechStarted,
    UtteranceDetector,
    UtteranceEnded,
    VadConfig,
    VadEvent,
)
from .wire import ClientEvent, pick

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

#: Reply audio sent at once before pacing starts (milliseconds) and its pace after the burst
#: (times real time), when neither the responder nor the connection's :class:`Realism` says.
DEFAULT_BURST_MS: Final = IDEAL_REPLY_BURST_MS
DEFAULT_PACE: Final = IDEAL_REPLY_PACE
#: Reply audio chunk (milliseconds).
DEFAULT_CHUNK_MS: Final = 100
#: If audio stops arriving mid-utterance for this long (seconds), the utterance ends.
STALL_FLUSH_S: Final = 1.5
#: Longest client text echoed back in a reply (characters).
MAX_ECHO_CHARS: Final = 200
#: Most ``outputTranscription`` pieces per reply.
MAX_PIECES: Final = 3
#: Longest tool response said back (characters of JSON).
MAX_TOOL_ECHO_CHARS: Final = 160
#: Lengths of the realistic transcription fragments, taken in turn (characters): output
#: like cookbook#951's "Ca", "n I", " pl"; input a little longer.
OUTPUT_FRAGMENT_CHARS: Final = (2, 3, 3, 4, 3, 5)
INPUT_FRAGMENT_CHARS: Final = (5, 4, 6)
#: Step between a session's realistic ``call_NNNNNN`` ids (coprime with 10**6, so a
#: session's first million ids differ).
_CALL_ID_STEP: Final = 7919

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


def _tool_args(rest: str) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for key, value in _TOOL_ARG.findall(rest):
        value = value.strip('"')
        args[key] = int(value) if re.fullmatch(r"-?\d+", value) else value
    return args


def tool_request(text: str, functions: set[str]) -> tuple[str, dict[str, Any]] | None:
    """The call a typed text asks for (``call <name> key=value ...``), if it names a
    declared function (the idealised emulator: the first call, every ``key=value`` after
    it)."""
    words = text.split()
    for i, word in enumerate(words[:-1]):
        if word.lower() == "call" and words[i + 1] in functions:
            return words[i + 1], _tool_args(" ".join(words[i + 2 :]))
    return None


def tool_requests(text: str, functions: set[str]) -> list[tuple[str, dict[str, Any]]]:
    """Every call a typed text asks for, in order: each ``call <name>`` of a declared
    function takes the ``key=value`` words up to the next one
    (``call get_time tz=UTC and call describe name=df``)."""
    words = text.split()
    starts = [
        i for i in range(len(words) - 1) if words[i].lower() == "call" and words[i + 1] in functions
    ]
    calls = []
    for n, i in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(words)
        calls.append((words[i + 1], _tool_args(" ".join(words[i + 2 : end]))))
    return calls


def service_call_id(session_id: str, n: int) -> str:
    """The ``n``-th (from 1) tool call id of a session, shaped like the service's (R1).

    Odd ``n`` give ``call_`` and six digits (``call_229188``), even ones ``fc_`` and 16 hex
    digits; deterministic, and distinct within a session.
    """
    digest = hashlib.sha256(f"{session_id}/{n}".encode()).hexdigest()
    if n % 2:
        offset = int(hashlib.sha256(session_id.encode()).hexdigest()[:8], 16)
        return f"call_{(offset + n * _CALL_ID_STEP) % 1_000_000:06d}"
    return f"fc_{digest[:16]}"


def fragments(text: str, sizes: tuple[int, ...] = OUTPUT_FRAGMENT_CHARS) -> list[str]:
    """``text`` cut into pieces of the lengths in ``sizes``, taken in turn (and again),
    regardless of words; ``"".join`` gives it back."""
    if not sizes or min(sizes) <= 0:
        raise ValueError("sizes must be positive lengths")
    pieces = []
    i = 0
    for n in itertools.cycle(sizes):
        if i >= len(text):
            break
        pieces.append(text[i : i + n])
        i += n
    return pieces


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

    def tokens(self) -> Tokens:
        """What it costs, by modality."""
        return input_tokens(self.audio_s, self.frames, self.text_chars)


def usage_metadata(prompt: _Prompt, reply_s: float) -> dict[str, Any]:
    """``usageMetadata`` for a turn as the idealised emulator counts it: this turn's input
    only, with per-modality details (zeros included) that add up. The realistic count is
    :meth:`screenshare_widget.emulator.usage.Context.turn`."""
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

    One instance serves any number of connections (the speech cache is shared). ``vad``
    holds the detector's parameters (:class:`~screenshare_widget.emulator.vad.VadConfig`);
    ``end_ms``, when given, overrides its end of utterance. The reply audio
    goes in ``chunk_ms`` chunks: the first ``burst_ms`` at once, then at ``pace`` times real
    time (``0.5``: half as fast as it plays); ``gap_every_ms`` (``None``: never) adds a
    pause of ``gap_ms`` after every that much audio. ``use_espeak=False`` answers with a
    tone instead of speech.

    How it imitates the real service is the connection's :class:`Realism` (the emulator's
    ``realism=``), read per connection. ``burst_ms``, ``pace`` and ``end_ms`` left at
    ``None`` come from it (:attr:`Realism.reply_burst_ms`, :attr:`Realism.reply_pace`,
    :attr:`Realism.vad_end_ms`); given here, they win over it.
    """

    def __init__(
        self,
        *,
        vad: VadConfig = VadConfig(),  # noqa: B008 (frozen: one shared default is safe)
        end_ms: int | None = None,
        burst_ms: int | None = None,
        pace: float | None = None,
        chunk_ms: int = DEFAULT_CHUNK_MS,
        gap_every_ms: int | None = None,
        gap_ms: int = 0,
        use_espeak: bool = True,
        voice: str = DEFAULT_VOICE,
        wpm: int = DEFAULT_WPM,
    ) -> None:
        if pace is not None and not pace > 0:
            raise ValueError("pace must be positive")
        if chunk_ms <= 0:
            raise ValueError("chunk_ms must be positive")
        if (burst_ms is not None and burst_ms < 0) or gap_ms < 0:
            raise ValueError("burst_ms and gap_ms must not be negative")
        if gap_every_ms is not None and gap_every_ms <= 0:
            raise ValueError("gap_every_ms must be positive (or None)")
        self.vad = vad if end_ms is None else replace(vad, end_ms=end_ms)
        self.burst_ms = burst_ms
        self.pace = pace
        self.chunk_ms = chunk_ms
        self.gap_every_ms = gap_every_ms
        self.gap_ms = gap_ms
        self.synthesizer = Synthesizer(use_espeak=use_espeak, voice=voice, wpm=wpm)

    def detector(self, realism: Realism | None = None) -> UtteranceDetector:
        """A fresh utterance detector with this responder's parameters; ``end_ms`` not
        given comes from ``realism`` (idealised if ``None``)."""
        realism = realism if realism is not None else Realism.ideal()
        return UtteranceDetector(self.vad.resolved(realism.vad_end_ms))

    def send_at(self, offset_s: float, realism: Realism | None = None) -> float:
        """When reply audio at ``offset_s`` (seconds into the reply) is due, in seconds
        after the reply's first chunk: the burst, then ``pace``, plus the gaps before it.

        ``burst_ms`` and ``pace`` not given come from ``realism`` (idealised if ``None``).
        """
        realism = realism if realism is not None else Realism.ideal()
        burst_ms = self.burst_ms if self.burst_ms is not None else realism.reply_burst_ms
        pace = self.pace if self.pace is not None else realism.reply_pace
        due = max(0.0, offset_s - burst_ms / 1000) / pace
        if self.gap_every_ms is not None and self.gap_ms > 0:
            # A gap after every gap_every_ms of audio, i.e. before the chunk that crosses it.
            gaps = math.floor(round(offset_s * 1000, 6) / self.gap_every_ms)
            due += gaps * self.gap_ms / 1000
        return due

    async def __call__(self, conn: EmulatorConnection) -> None:
        """Serve one connection until it closes; cancellation stops any reply in progress."""
        await _Turns(self, conn).run()


class _ToolCalls:
    """The tool calls of one connection: those its texts ask for (of the declared
    ``functions``), the ones not answered yet, and what the answered ones returned.

    With :attr:`Realism.service_tool_calls` one text's calls go in one ``toolCall`` and are
    said together once all are answered; otherwise each is said as its response comes.
    """

    def __init__(self, conn: EmulatorConnection, functions: set[str]) -> None:
        self.conn = conn
        self.functions = functions
        self.service = conn.realism.service_tool_calls
        self.made = 0  # calls made on this connection (the idealised ids)
        self.pending: dict[str, str] = {}  # call id -> function name
        # Realistic tool calls: the ids of each toolCall still unanswered, and what the
        # answered ones returned (said once the whole toolCall is answered).
        self.batches: list[list[str]] = []
        self.results: dict[str, str] = {}

    def calls(self, text: str) -> list[dict[str, Any]]:
        """The ``functionCalls`` a typed text asks for (none: it asks for no tool)."""
        if self.service:
            requests = tool_requests(text, self.functions)
        else:
            request = tool_request(text, self.functions)
            requests = [request] if request is not None else []
        calls: list[dict[str, Any]] = []
        for name, args in requests:
            call_id = self._call_id()
            self.pending[call_id] = name
            calls.append({"id": call_id, "name": name, "args": args})
        if self.service and calls:
            self.batches.append([call["id"] for call in calls])
        return calls

    def answered(self, responses: Any) -> list[str]:
        """What to say now that ``responses`` (a ``toolResponse``'s ``functionResponses``)
        came: each answered call, or each realistic ``toolCall`` answered in full."""
        said: list[str] = []
        for response in responses if isinstance(responses, list) else []:
            call_id = str(pick(response, "id"))
            name = self.pending.pop(call_id, None)
            if name is not None:
                result = json.dumps(pick(response, "response"), ensure_ascii=False)
                result = f"The tool {name} returned {result[:MAX_TOOL_ECHO_CHARS]}."
                if self.service:
                    self.results[call_id] = result
                else:
                    said.append(result)
        for batch in list(self.batches):
            if all(call_id in self.results for call_id in batch):
                self.batches.remove(batch)
                said.append(" ".join(self.results.pop(call_id) for call_id in batch))
        return said

    def _call_id(self) -> str:
        """The next tool call id: ``call-<connection>-<n>``, or the service's shapes."""
        session = self.conn.session
        if self.service:
            session.tool_calls += 1
            return service_call_id(session.id, session.tool_calls)
        self.made += 1
        return f"call-{self.conn.index}-{self.made}"


class _Turns:
    """The responder's state for one connection; what outlives it is in the session."""

    def __init__(self, responder: DefaultResponder, conn: EmulatorConnection) -> None:
        self.r = responder
        self.conn = conn
        self.session = conn.session
        self.realism = conn.realism
        self.detector = responder.detector(self.realism)
        self.ear = EchoEar(enabled=self.realism.transcribe_echo)  # its own voice, heard back
        aad = pick(pick(conn.setup, "realtime_input_config"), "automatic_activity_detection")
        self.manual = pick(aad, "disabled") is True
        self.instruction = instruction_text(pick(conn.setup, "system_instruction"))
        self.tools = _ToolCalls(conn, declared_functions(conn.setup))
        self.compression = Compression.from_setup(conn.setup)
        self.in_activity = False
        self.activity_s = 0.0
        self.voice_activity = False  # an ACTIVITY_START went out without its ACTIVITY_END
        self.reply: asyncio.Task[None] | None = None
        # The reply in progress: what it answers, whether typed text, audio sent (seconds),
        # and whether its usage was counted already (its turnComplete is going out).
        self.reply_prompt = _Prompt(0.0, 0, 0)
        self.reply_typed = False
        self.reply_sent_s = 0.0
        self.reply_counted = False
        # The interrupted turn's turnComplete not sent yet, and the timers that send one.
        self.pending_complete: dict[str, Any] | None = None
        self.timers: set[asyncio.Task[None]] = set()
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
            tasks = [t for t in (self.reply, *self.timers) if t is not None and not t.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks)

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
                self.ear.heard(audio.data, audio.t)
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
            for said in self.tools.answered(pick(event.body, "function_responses")):
                await self._start_reply(None, said)
        elif event.kind == "context_update":
            update = pick(event.body, "system_instruction")
            if update is not None:
                self.instruction = instruction_text(update)
        elif event.kind == "client_content":
            self.pending_chars += sum(len(t.text) for t in event.texts)
            if event.flag("turn_complete") and event.texts:
                await self._answer_text(" ".join(t.text for t in event.texts))

    async def _vad(self, events: list[VadEvent]) -> None:
        """Act on VAD events; with :attr:`Realism.voice_activity` say them as
        ``voiceActivity`` (an utterance the detector drops ends its activity too)."""
        for vad_event in events:
            if isinstance(vad_event, SpeechStarted):
                if self.realism.voice_activity:
                    await self._voice_activity_end()
                    self.voice_activity = True
                    await self.conn.voice_activity_start(vad_event.start_s)
                await self._barge_in()
            elif isinstance(vad_event, UtteranceEnded):
                await self._voice_activity_end()
                echo = self.ear.words(vad_event.start_s, vad_event.end_s)
                await self._answer_speech(vad_event.duration_s, echo)
        if not self.detector.in_speech:
            await self._voice_activity_end()

    async def _voice_activity_end(self) -> None:
        if self.voice_activity:
            self.voice_activity = False
            await self.conn.voice_activity_end()

    async def _barge_in(self) -> None:
        """Stop a reply still playing and tell the client it was interrupted.

        With :attr:`Realism.interrupted_turn_complete_s` the interrupted turn's
        ``turnComplete`` (with its usage: the audio sent so far) follows later, on its own.
        """
        if self.reply is None or self.reply.done():
            return
        self.reply.cancel()
        await asyncio.wait([self.reply])
        self.ear.cut(time.time())  # the client stops playing it
        logger.debug("connection %d: barge-in", self.conn.index)
        await self.conn.interrupted()
        delay = self.realism.interrupted_turn_complete_s
        if delay is None or self.reply_counted:
            return
        await self._flush_complete()  # an earlier one still waiting goes first
        usage = self._usage(self.reply_prompt, self.reply_sent_s, self.reply_typed)
        self.pending_complete = usage
        timer = asyncio.create_task(
            self._complete_later(delay, usage),
            name=f"live-emulator-interrupted-{self.conn.index}-{self.session.replies}",
        )
        self.timers.add(timer)
        timer.add_done_callback(self.timers.discard)
        timer.add_done_callback(_log_failure)

    async def _complete_later(self, delay_s: float, usage: dict[str, Any]) -> None:
        """Send the interrupted turn's ``turnComplete`` with ``usage`` ``delay_s`` seconds
        from now, unless it went already (before the next reply); cancellation (the
        connection's end) drops it."""
        await asyncio.sleep(delay_s)
        if self.pending_complete is usage:
            await self._flush_complete()

    async def _flush_complete(self) -> None:
        """Send the interrupted turn's ``turnComplete`` if it has not gone yet."""
        usage, self.pending_complete = self.pending_complete, None
        if usage is not None:
            await self.conn.turn_complete(usage)

    def _usage(self, prompt: _Prompt, reply_s: float, typed: bool) -> dict[str, Any]:
        """A turn's ``usageMetadata``: idealised, or as the service counts it (the whole
        context; :mod:`screenshare_widget.emulator.usage`), which adds the turn to it."""
        if not self.realism.service_usage:
            return usage_metadata(prompt, reply_s)
        return self.session.context.turn(
            instruction=Tokens(text=text_tokens(len(self.instruction))),
            turn_input=prompt.tokens(),
            response_audio_s=reply_s,
            thoughts=self.realism.thoughts_tokens if typed else 0,
            compression=self.compression,
            unlabelled_share=self.realism.unlabelled_share,
        )

    async def _answer_speech(self, seconds: float, echo: str | None = None) -> None:
        """Answer an utterance of ``seconds``, transcribed as ``echo`` when it repeats the
        emulator's own voice (:attr:`Realism.transcribe_echo`), else as a placeholder."""
        text = f"You spoke for {seconds:.1f} seconds. {self._frames_said()}"
        await self._start_reply(echo or f"(spoke for {seconds:.1f} s)", text)

    async def _answer_text(self, text: str) -> None:
        calls = self.tools.calls(text)
        if calls:
            await self.conn.tool_call(calls)
            return
        said = " ".join(text.split())[:MAX_ECHO_CHARS] or "nothing"
        if not said.endswith((".", "!", "?")):
            said += "."
        await self._start_reply(None, f"You wrote: {said} {self._frames_said()}", typed=True)

    def _frames_said(self) -> str:
        return frame_summary(self.session.frames, self.session.latest_frame)

    async def _start_reply(self, heard: str | None, text: str, *, typed: bool = False) -> None:
        text = follow_instruction(self.instruction, text)
        await self._barge_in()
        prompt = _Prompt(self.pending_audio_s, self.pending_frames, self.pending_chars)
        self.pending_audio_s = 0.0
        self.pending_frames = 0
        self.pending_chars = 0
        self.session.replies += 1
        self.reply_prompt = prompt
        self.reply_typed = typed
        self.reply_sent_s = 0.0
        self.reply_counted = False
        self.reply = asyncio.create_task(
            self._reply(heard, text, prompt, typed),
            name=f"live-emulator-reply-{self.conn.index}-{self.session.replies}",
        )
        self.reply.add_done_callback(_log_failure)

    async def _first_heard(self, heard: str | None) -> list[str]:
        """Send the first piece of the input transcription ``heard`` (in fragments with
        :attr:`Realism.fragmented_transcription`); the rest, to go after the audio."""
        if heard is None:
            return []
        fragmented = self.realism.fragmented_transcription
        pieces = fragments(heard, INPUT_FRAGMENT_CHARS) if fragmented else [heard]
        await self.conn.input_transcription(pieces[0])
        return pieces[1:]

    async def _reply(self, heard: str | None, text: str, prompt: _Prompt, typed: bool) -> None:
        """Speak ``text`` after transcribing ``heard``; cancellation (barge-in) stops it
        between chunks.

        With :attr:`Realism.fragmented_transcription` both transcriptions go in fragments
        (:func:`fragments`): the input's first before the audio, the rest one after each
        audio chunk. An interrupted turn's ``turnComplete`` still waiting goes just before
        the first audio.
        """
        conn = self.conn
        realism = self.realism
        loop = asyncio.get_running_loop()
        heard_pieces = await self._first_heard(heard)
        pcm = await self.r.synthesizer.synthesize(text)
        await self._flush_complete()
        bytes_per_s = OUTPUT_RATE_HZ * SAMPLE_BYTES
        total_s = len(pcm) / bytes_per_s
        pieces = fragments(text) if realism.fragmented_transcription else split_pieces(text)
        starts = _starts(pieces, len(text))
        first = loop.time()
        offset_s = 0.0
        sent = 0
        for chunk in chunks(pcm, self.r.chunk_ms):
            delay = first + self.r.send_at(offset_s, realism) - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            while sent < len(pieces) and starts[sent] <= offset_s / max(total_s, 1e-9):
                await conn.output_transcription(pieces[sent])
                sent += 1
            if not offset_s:  # the client plays the reply from its first chunk on
                self.ear.spoke(text[:MAX_SPOKEN_CHARS], pcm, time.time())
            await conn.send(audio_message(chunk, role=realism.model_role))
            offset_s += len(chunk) / bytes_per_s
            self.reply_sent_s = offset_s
            self.ear.sent(offset_s)
            if heard_pieces:
                await conn.input_transcription(heard_pieces.pop(0))
        for piece in heard_pieces:
            await conn.input_transcription(piece)
        for piece in pieces[sent:]:
            await conn.output_transcription(piece)
        await conn.generation_complete()
        # The turn ends when the audio would have finished playing in real time.
        delay = first + total_s - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        self.reply_counted = True
        await conn.turn_complete(self._usage(prompt, total_s, typed))


def _starts(pieces: list[str], length: int) -> list[float]:
    """Where each piece of a text of ``length`` characters begins, as a fraction of it."""
    starts: list[float] = []
    position = 0
    for piece in pieces:
        starts.append(position / max(1, length))
        position += len(piece)
    return starts


def _log_failure(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is None or isinstance(exc, ConnectionClosed):
        return
    logger.error("%s failed", task.get_name(), exc_info=exc)
