"""The widget: the traits the cell shows or the user sets, and the public facade.

:class:`ScreenShareAssistant` is an anywidget. Its traits carry only small state the cell
shows or the user sets; media and one-shot events travel as custom messages with binary
buffers (see ``protocol.py``). The comm side (the page's messages, what the page is sent and
every trait write the package makes, from any thread) is ``page.py``; the budget's policy is
``budget.py``; the session itself is the :class:`~screenshare_widget.relay.Relay`, which runs
on its own thread.
"""

from __future__ import annotations

import asyncio
import logging
import math
import numbers
import os
import pathlib
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import anywidget
import traitlets

from . import protocol
from .backend import Connector
from .budget import Budget, meter
from .config import (
    DEFAULT_MODEL,
    DEFAULT_SYSTEM_INSTRUCTION,
    DEFAULT_VOICE,
    MediaResolution,
    SessionConfig,
    dropped_options,
)
from .events import Events, Frames, Handover
from .instructions import Instructions
from .liveness import PAGE_TIMEOUT_S, PageWatch
from .page import CELLS, LIVE, PageLink, PageSink, UiMirror, weak_call, weak_confirm
from .pricing import Spend, UsageLog
from .recording import Recorder, RecorderSlot, Recording
from .relay import ASK_TIMEOUT_S, Relay, RelayCounters, RelayState
from .timings import Timings
from .tools import Toolbox, ToolCalls
from .transcript import Transcript

if TYPE_CHECKING:
    from google import genai

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

_STATIC = pathlib.Path(__file__).parent / "static"


def _asset(name: str) -> str | pathlib.Path:
    """A static file for anywidget: its text, or its path when hot reload is on."""
    path = _STATIC / name
    return path if os.environ.get("ANYWIDGET_HMR") else path.read_text(encoding="utf-8")


@dataclass(frozen=True)
class _Range:
    """The values a numeric setting takes: ``low`` (excluded if ``above``) to ``high``."""

    kind: type[int] | type[float]
    low: float
    high: float
    error: str
    above: bool = False

    def check(self, value: Any) -> int | float:
        """``value`` as the setting's type; ``TraitError`` with :attr:`error` outside."""
        number: int | float = self.kind(value)
        low_ok = self.low < number if self.above else self.low <= number
        if not (math.isfinite(number) and low_ok and number <= self.high):
            raise traitlets.TraitError(self.error)
        return number


_NON_NEGATIVE = "must be a non-negative number (0: none)"
#: The range of each numeric trait, and what its error says.
RANGES: Final[Mapping[str, _Range]] = MappingProxyType(
    {
        "max_fps": _Range(float, 0, protocol.MAX_FPS, above=True, error=(
            f"max_fps must be above 0 and at most {protocol.MAX_FPS:g} frame per second")),
        "max_size": _Range(int, 64, 4096, "max_size must be between 64 and 4096 pixels"),
        "jpeg_quality": _Range(float, 0.1, 1, "jpeg_quality must be between 0.1 and 1"),
        "min_change": _Range(float, 0, 1,
                             "min_change must be between 0 and 1 (a screen fraction)"),
        "heartbeat_s": _Range(float, 1, 3600, "heartbeat_s must be between 1 and 3600 seconds"),
        "audio_chunk_ms": _Range(int, protocol.MIN_CHUNK_MS, protocol.MAX_CHUNK_MS, (
            f"audio_chunk_ms must be between {protocol.MIN_CHUNK_MS} and "
            f"{protocol.MAX_CHUNK_MS} ms")),
        "budget_tokens": _Range(int, 0, math.inf, f"budget_tokens {_NON_NEGATIVE}"),
        "budget_usd": _Range(float, 0, math.inf, f"budget_usd {_NON_NEGATIVE}"),
        "volume": _Range(float, 0, 1, "volume must be between 0 and 1 (a linear gain)"),
    }
)  # fmt: skip


class _Number(traitlets.Float[float, "int | float"]):
    """A float trait that refuses anything but a real number with its range's sentence in
    :data:`RANGES`: ``Float`` itself would take ``True`` as 1.0 and say nothing of the range
    for a string. The range (NaN and infinities included) is checked there, as for the
    other numeric traits."""

    def validate(self, obj: Any, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise traitlets.TraitError(f"{RANGES[str(self.name)].error}, not {value!r:.40}")
        return float(super().validate(obj, float(value)))


class _Traits(anywidget.AnyWidget):
    """The synced state of :class:`ScreenShareAssistant`: what the cell shows (read-only)
    and what the user sets, each setting checked as it is set (``TraitError`` says the
    range). A flat table: the behaviour is in the subclass."""

    # As text, not paths: anywidget ties every instance to a file's change signal for hot
    # reload, which keeps every assistant alive (and its session with it) for good. With
    # ANYWIDGET_HMR=1 (developing the page) the paths come back, and hot reload with them.
    _esm = _asset("widget.js")
    _css = _asset("widget.css")

    #: "idle", "connecting", "live", "reconnecting", "closing" or "error".
    status = traitlets.Unicode("idle", read_only=True).tag(sync=True)
    #: The last error as a human sentence with the fix, "" if none.
    error = traitlets.Unicode("", read_only=True).tag(sync=True)
    #: Where the conversation goes, in words ("Gemini API", "Local Live emulator: ...").
    backend = traitlets.Unicode("", read_only=True).tag(sync=True)
    #: True when the local Live emulator answers instead of Gemini.
    emulated = traitlets.Bool(False, read_only=True).tag(sync=True)
    #: The Live model; a change applies to the next connection.
    model = traitlets.Unicode(DEFAULT_MODEL).tag(sync=True)
    #: The prebuilt voice; a change applies to the next connection.
    voice = traitlets.Unicode(DEFAULT_VOICE).tag(sync=True)
    #: The system instruction. A change while live reaches the model for its next turn (a
    #: context update, or a resumption handover on models without one) and makes a new
    #: version in :attr:`instructions`; the widget's instruction box sets it too.
    system_instruction = traitlets.Unicode(DEFAULT_SYSTEM_INSTRUCTION).tag(sync=True)
    #: The latest version number of the system instruction.
    instruction_version = traitlets.Int(1, read_only=True).tag(sync=True)
    #: The version the model has (0 before the first connection).
    instruction_applied = traitlets.Int(0, read_only=True).tag(sync=True)
    #: The folder :meth:`record` writes to, "" when not recording.
    recording = traitlets.Unicode("", read_only=True).tag(sync=True)
    #: Most screen frames per second sent to the model (at most 1).
    max_fps = traitlets.Float(1.0).tag(sync=True)
    #: Longest side of a sent frame, in pixels (the aspect ratio is kept).
    max_size = traitlets.Int(1024).tag(sync=True)
    #: JPEG quality of sent frames, 0 to 1.
    jpeg_quality = traitlets.Float(0.7).tag(sync=True)
    #: The page sends a frame when at least this fraction (0 to 1) of the screen changed
    #: since the last frame sent (compared on a 64x36 luma thumbnail, 4 times a second).
    min_change = traitlets.Float(0.01).tag(sync=True)
    #: On a still screen, a frame goes anyway this often (s).
    heartbeat_s = traitlets.Float(10.0).tag(sync=True)
    #: "low", "medium", "high" or "" (the service's default): how many tokens the model
    #: spends per frame; applies to the next connection.
    media_resolution = traitlets.Unicode("").tag(sync=True)
    #: True stops sending frames (the conversation goes on); the widget's Pause video button.
    video_paused = traitlets.Bool(False).tag(sync=True)
    #: How loud the model's voice plays in the cell: a linear gain from 0 (silent) to 1 (as
    #: the model sent it; the default), applied in the page, where a change ramps over a few
    #: tens of milliseconds (no click). The widget's volume slider sets it too. It changes
    #: only what you hear: the model, the transcript and a recording's ``model.wav`` are
    #: the same at any volume.
    volume = _Number(1.0).tag(sync=True)
    #: True silences the model's voice in the cell (the widget's Mute button), keeping
    #: :attr:`volume` for when it is unmuted. Like the volume it acts only in the page: the
    #: model still answers, its audio still reaches the page, and the transcript, the events
    #: and a recording go on as before.
    muted = traitlets.Bool(False).tag(sync=True)
    #: Length of each microphone message, in ms (20 to 250; applies from the next Share).
    #: Each is a message the kernel handles: shorter chunks reach the model sooner and cost
    #: the kernel more CPU (see the README's Performance section).
    audio_chunk_ms = traitlets.Int(100).tag(sync=True)
    #: Tokens the service reported so far in this widget's conversations.
    tokens = traitlets.Int(0, read_only=True).tag(sync=True)
    #: Estimated cost so far in USD from :attr:`prices`; -1 while no prices are set.
    cost_usd = traitlets.Float(-1.0, read_only=True).tag(sync=True)
    #: Tokens of the last usage report (each turn re-bills the whole context, so this grows).
    last_turn_tokens = traitlets.Int(0, read_only=True).tag(sync=True)
    #: Tokens the next 10 minutes would add at the recent turn rate (a floor; see
    #: :attr:`spend`), as of the last report; -1 while there is no rate (fewer than two
    #: reports in the last 3 minutes, or no session running).
    projected_10min_tokens = traitlets.Int(-1, read_only=True).tag(sync=True)
    #: The same projection in USD from :attr:`prices`; -1 without a rate or prices.
    projected_10min_usd = traitlets.Float(-1.0, read_only=True).tag(sync=True)
    #: A budget in tokens (0: none). At half of it the frame rate drops, at 80 % the video
    #: pauses, at all of it the session stops; the widget says so each time.
    budget_tokens = traitlets.Int(0).tag(sync=True)
    #: The same budget in USD (0: none); it needs :attr:`prices`.
    budget_usd = traitlets.Float(0.0).tag(sync=True)
    #: When the current session went live (seconds since the epoch), 0 when not live.
    live_since = traitlets.Float(0.0, read_only=True).tag(sync=True)
    #: How the last move to a new connection went: "", "resumed" or "fresh session".
    connection = traitlets.Unicode("", read_only=True).tag(sync=True)
    #: How many other assistants in this kernel have a session running (each is billed);
    #: every such widget says so.
    others_live = traitlets.Int(0, read_only=True).tag(sync=True)

    @traitlets.validate(*RANGES)
    def _validate_range(self, proposal: dict[str, Any]) -> int | float:
        return RANGES[proposal["trait"].name].check(proposal["value"])

    @traitlets.validate("voice", "model", "system_instruction")
    def _validate_config(self, proposal: dict[str, Any]) -> Any:
        name, value = proposal["trait"].name, proposal["value"]
        current = getattr(self, "_relay", None)
        base = current.config if current is not None else SessionConfig()
        replace(base, **{name: value})  # raises with a clear message
        return value

    @traitlets.validate("media_resolution")
    def _validate_resolution(self, proposal: dict[str, Any]) -> str:
        value = str(proposal["value"])
        _resolution(value)
        return value


class _SessionData:
    """The conversation as Python data, read-only: what the relay and the page link keep,
    for :class:`ScreenShareAssistant`."""

    _relay: Relay
    _page: PageLink

    @property
    def transcript(self) -> Transcript:
        """The conversation so far, as :class:`Turn` objects (``.to_pandas()`` for a table)."""
        return self._relay.transcript

    @property
    def events(self) -> Events:
        """Every protocol event with its time: speech start and end, frame sent, first model
        audio, interruption, turn complete, tool call, handover, usage (``.to_pandas()``)."""
        return self._relay.events

    @property
    def frames(self) -> Frames:
        """The screen frames the model was actually sent, with their times; index one to see
        it, or display the whole to see the latest as a strip."""
        return self._relay.frames

    @property
    def instructions(self) -> Instructions:
        """Every version of the system instruction, with when it was set and how and when
        the model got it (``.to_pandas()``); turns carry their version."""
        return self._relay.instructions

    @property
    def tool_calls(self) -> ToolCalls:
        """Every tool call of the session: name, arguments, outcome, result or error, and
        duration (``.to_pandas()``; also in :attr:`events` as ``tool_call`` and
        ``tool_result``)."""
        return ToolCalls(self._relay.tool_calls)

    @property
    def usage(self) -> UsageLog:
        """Token usage reported by the service, one entry per report (``.to_pandas()``
        gives a column per modality)."""
        return UsageLog(self._relay.usage)

    @property
    def handovers(self) -> list[Handover]:
        """Each move to a new connection: when, why, whether the context was resumed, and
        the microphone audio gap in ms."""
        return list(self._relay.handovers)

    @property
    def stats(self) -> RelayCounters:
        """Counters of what was relayed, dropped and rejected."""
        return self._relay.counters

    @property
    def rejected_messages(self) -> int:
        """How many messages from the page could not be taken (malformed, or stale)."""
        return self._page.rejected

    @property
    def playback(self) -> dict[str, float]:
        """The page player's last statistics: played and queued ms, underruns, dropped."""
        return self._page.playback

    @property
    def frame_policy(self) -> dict[str, int]:
        """The page's frame policy counters: checked, sent, skipped, and sends by reason
        (first, change, speech, heartbeat), for the current capture."""
        return self._page.frame_policy


class ScreenShareAssistant(_Traits, _SessionData):
    """A live voice assistant that sees your shared screen, in a notebook cell.

    Display it, click **Share screen & mic**, and talk, or type: :meth:`say` and
    ``await`` :meth:`ask` send text from Python. The conversation is Python data:
    :attr:`transcript` (turns), :attr:`events`, :attr:`frames`, :attr:`usage` (tokens),
    :attr:`instructions` (the versions of the system instruction). Setting
    :attr:`system_instruction` while live applies it from the next turn. :meth:`record`
    saves the session as a folder that :func:`screenshare_widget.compare` replays against
    other instructions. Without ``client`` and without a ``GEMINI_API_KEY`` /
    ``GOOGLE_API_KEY``, it runs on the local Live emulator, and says so.

    Args:
        system_instruction: How the assistant should behave. Default: a concise screen-share
            assistant role.
        model: A Gemini Live model. Options it does not accept are never sent.
        voice: One of the 30 prebuilt voices ("Puck", "Kore", ...).
        client: A ``google.genai.Client``. The API key stays in the kernel.
        tools: Python functions the model may call; they run in this kernel (see
            :attr:`tools`).
        page_timeout_s: A running session ends when the page that shares into it has not
            been heard from for this long (s): its tab or browser closed, or it lost the
            kernel. The page says it is there every 2 s while a session runs, muted or not.
            Time the kernel could not hear the page (a cell holding its messages) does not
            count. A session started from Python (:meth:`say`, :meth:`ask`, :meth:`start`)
            follows any page of the widget, and is not watched while there is none.
    """

    def __init__(
        self,
        system_instruction: str | None = None,
        *,
        model: str = DEFAULT_MODEL,
        voice: str = DEFAULT_VOICE,
        client: genai.Client | None = None,
        max_fps: float = 1.0,
        max_size: int = 1024,
        jpeg_quality: float = 0.7,
        min_change: float = 0.01,
        heartbeat_s: float = 10.0,
        media_resolution: str = "",
        audio_chunk_ms: int = 100,
        volume: float = 1.0,
        muted: bool = False,
        tools: Sequence[Callable[..., Any]] = (),
        page_timeout_s: float = PAGE_TIMEOUT_S,
        _connector: Connector | None = None,
        _page_clock: Callable[[], float] = time.monotonic,
        _timings: Timings | None = None,
    ) -> None:
        instruction = (
            DEFAULT_SYSTEM_INSTRUCTION if system_instruction is None else system_instruction
        )
        config = SessionConfig(
            model=model, voice=voice, system_instruction=instruction,
            media_resolution=_resolution(media_resolution),
        )  # fmt: skip
        super().__init__(
            model=model, voice=voice, system_instruction=instruction, max_fps=max_fps,
            max_size=max_size, jpeg_quality=jpeg_quality, min_change=min_change,
            heartbeat_s=heartbeat_s, media_resolution=media_resolution,
            audio_chunk_ms=audio_chunk_ms, volume=volume, muted=muted,
        )  # fmt: skip
        toolbox = _toolbox(tools)
        connector, where, emulated = _backend(client, _connector)
        self.set_trait("backend", where)
        self.set_trait("emulated", emulated)
        for option in dropped_options(config):
            logger.warning("%s is not supported by %s and will not be sent", option, model)
        sink = PageSink()  # holds the link weakly: a dropped widget can be collected
        name = f"screenshare-relay-{id(self):x}"
        self._relay = Relay(connector, config, sink, name=name, toolbox=toolbox, timings=_timings)
        # Nothing the relay's thread holds keeps the widget alive, so a widget that is
        # collected (closed, or dropped by a host that holds widgets weakly) ends its session.
        weakref.finalize(self, _release, self._relay)
        CELLS.register()
        self._link_page(sink, PageWatch(page_timeout_s), _page_clock)

    def _link_page(self, sink: PageSink, watch: PageWatch, clock: Callable[[], float]) -> None:
        """The comm side: the mirror, the page link, the budget, the recorder and the tool
        confirmations, each holding the widget weakly."""
        #: Every trait write the package makes goes through it (see page.py).
        self._ui = UiMirror(self)
        spend_changed = weak_call(weakref.WeakMethod(self._update_spend))
        self._page = PageLink(self._ui, self._relay, watch, spend_changed, clock)
        sink.bind(self._page)
        self._budget = Budget(self._page)
        self._recordings = RecorderSlot(self._relay, lambda folder: self._ui.set(recording=folder))
        confirmations = self._page.confirmations
        self._relay.toolbox.confirm = weak_confirm(weakref.WeakMethod(confirmations.wait))
        self.on_msg(self._on_custom_message)

    # ---- public API -------------------------------------------------------------------------

    @property
    def tools(self) -> list[Callable[..., Any]]:
        """The functions the model may call: a list you can change (append, remove, or
        assign a new list); changes apply from the next connection or handover.

        Each is declared from its signature, type hints and docstring. Sync functions run in
        a worker thread, async ones on the relay's loop, each for at most
        ``screenshare_widget.tools.TOOL_TIMEOUT_S`` seconds. What they return (JSON-able)
        goes back to the model; an exception goes back as an error with its message.
        """
        return self._relay.toolbox.functions  # type: ignore[return-value]

    @tools.setter
    def tools(self, functions: Sequence[Callable[..., Any]]) -> None:
        _toolbox(functions)  # fails early for a function the model cannot be told about
        self._relay.toolbox.functions[:] = list(functions)
        self._mended("tools")

    @property
    def prices(self) -> Mapping[str, float]:
        """Your price table, in USD per million tokens, keyed ``"input:AUDIO"``,
        ``"input:IMAGE"``, ``"input:TEXT"``, ``"output:AUDIO"``, ``"output:THOUGHTS"``, ...
        (see :data:`~screenshare_widget.pricing.MODALITIES`); empty by default (no prices
        ship with the package: take them from the current pricing page). Read-only: assign
        a whole dict to change it (``TypeError`` for a table that is not a mapping,
        ``ValueError`` for an unknown key or a bad price); the cost estimate and the USD
        budget follow at once."""
        return self._budget.prices

    @prices.setter
    def prices(self, table: Mapping[str, float]) -> None:
        self._budget.set_prices(table)
        self._update_spend()

    @property
    def spend(self) -> Spend:
        """Tokens so far by direction and modality (with what no modality labels as
        ``input:UNLABELLED`` / ``output:UNLABELLED``), the cost estimate from
        :attr:`prices` (None without prices), the last turn's tokens and, while a session
        runs, a projection of the next 10 minutes at the recent turn rate (see
        :func:`screenshare_widget.pricing.spend`)."""
        stopped = (RelayState.IDLE, RelayState.CLOSING, RelayState.FAILED)
        return self._budget.spent(self._relay.usage, running=self._relay.state not in stopped)

    def _update_spend(self) -> None:
        """Mirror the spend to the meter and take the budget steps now due (any thread)."""
        with self._ui.lock:  # the meter shows the spend of the latest report, not an older
            spent = self.spend
            self._ui.set(**meter(spent))
        running = self._relay.state not in (RelayState.IDLE, RelayState.CLOSING)
        self._budget.check(spent, running)

    def start(self) -> None:
        """Open the Live session now (the Share button also does this). Returns at once."""
        self._relay.start()

    def say(self, text: str) -> None:
        """Send ``text`` to the model as if typed in the widget, and return at once.

        It joins the transcript as a typed user turn; the answer arrives like a spoken one
        (aloud in the cell, transcribed in :attr:`transcript`). Without a running session,
        one starts (sharing the screen is not needed). Raises ``ValueError`` for empty text.
        """
        self._relay.say(text)

    async def ask(self, text: str, *, timeout: float = ASK_TIMEOUT_S) -> str:  # noqa: ASYNC109
        """Send ``text`` and return the model's answer as text when its turn completes.

        ``await assistant.ask("What is on my screen?")`` in a cell. The relay keeps running
        meanwhile, and the answer is also spoken in the cell and kept in the transcript.
        Without a running session, one starts. Raises ``TimeoutError`` after ``timeout``
        seconds without an answer and ``SessionEnded`` if the session stops first; an answer
        the user talks over returns what was said until then. Cancelling stops the wait, not
        the question.
        """
        return await asyncio.wrap_future(self._relay.ask(text, timeout))

    def record(self, path: str | os.PathLike[str]) -> Recorder:
        """Start saving this session into the folder ``path`` (new or empty): microphone
        audio, model speech, the frames sent, every event and the transcript.

        Recording goes on across Stop and Share until :meth:`stop_recording` (or
        ``recorder.stop()``, or the end of a ``with assistant.record(...):`` block), which
        returns the :class:`~screenshare_widget.recording.Recording` to replay with
        :func:`screenshare_widget.compare`.
        """
        config = self._relay.config
        meta = {
            "model": config.model,
            "voice": config.voice,
            "system_instruction": config.system_instruction,
        }
        return self._recordings.start(path, meta, self.transcript.snapshot)

    def stop_recording(self) -> Recording | None:
        """Finish the recording :meth:`record` started and return it (None if none runs)."""
        return self._recordings.stop()

    def stop(self) -> None:
        """End the conversation: closes the Live session and ends sharing in the page.

        The transcript is kept. Idempotent; blocks at most a few seconds.
        """
        self._page.ended("python", "Stopped from Python (assistant.stop()).")
        self._page.send(protocol.stop(""))
        self._relay.stop()

    def close(self) -> None:
        """Stop and release the relay's thread, then close the widget (its views in the
        page end their sharing)."""
        relay = getattr(self, "_relay", None)  # absent if __init__ failed
        if relay is not None:
            relay.close()
            LIVE.update(self._ui, False)
        recordings = getattr(self, "_recordings", None)
        if recordings is not None:
            recordings.stop()
        super().close()

    def _on_custom_message(self, _widget: Any, content: Any, buffers: list[Any]) -> None:
        self._page.receive(content, buffers)  # any thread; never blocks

    def set_state(self, sync_data: dict[str, Any]) -> None:
        """A page's state update, taken as its ``set`` messages are (see ``page.py``)."""
        for name, value in sync_data.items():
            self._page.page_set(name, value)

    # ---- traits -----------------------------------------------------------------------------

    @traitlets.observe("voice", "model", "system_instruction", "media_resolution")
    def _config_changed(self, change: dict[str, Any]) -> None:
        relay = getattr(self, "_relay", None)
        if relay is None:
            return
        name, new = change["name"], change["new"]
        if name == "system_instruction":
            self._ui.set(instruction_version=relay.set_instruction(new).version)
        else:  # one atomic change of the next connection's settings
            relay.update_config(**{name: _resolution(new) if name == "media_resolution" else new})
        self._mended(name)

    def _mended(self, setting: str) -> None:
        """``setting`` changed: an error that blames it no longer holds, so it goes (and the
        failed session's status with it)."""
        failure = self._relay.failure
        if failure is None or setting not in failure.blames:
            return
        if self._relay.state is RelayState.FAILED and self.error == failure.message:
            self._relay.failure = None
            self._ui.set(error="")
            self._relay.stop(wait=False)  # error -> idle

    @traitlets.observe("budget_tokens", "budget_usd")
    def _budget_changed(self, change: dict[str, Any]) -> None:
        budget = getattr(self, "_budget", None)
        if budget is not None:
            budget.set_limits(self.budget_tokens, self.budget_usd, self.spend)
            self._update_spend()


def _release(relay: Relay) -> None:
    """A collected widget's relay: end its session and thread without waiting (the
    collector may run on any thread, the relay's own included)."""
    relay.close(wait=False)
    LIVE.collected()  # takes no lock: the collector may run where one is held


def _toolbox(functions: Sequence[Callable[..., Any]]) -> Toolbox:
    """The tools, each declared now: a function the model cannot be told about fails here,
    clearly."""
    from . import gemini

    toolbox = Toolbox(list(functions), declare=gemini.declare)
    toolbox.declarations()
    return toolbox


def _backend(
    client: genai.Client | None, connector: Connector | None
) -> tuple[Connector, str, bool]:
    """Where the conversation goes: the connector, in words, and whether it is the local
    emulator (without ``client`` and without an API key)."""
    if connector is not None:
        return connector, "Injected Live connector", False
    from . import gemini

    backend = gemini.resolve_backend(client)
    return gemini.connector(backend.client), backend.description, backend.emulated


def _resolution(value: str) -> MediaResolution | None:
    """``media_resolution`` as the config takes it; raises ``TraitError`` for other values."""
    if value in ("", None):
        return None
    if value not in ("low", "medium", "high"):
        raise traitlets.TraitError("media_resolution must be 'low', 'medium', 'high' or ''")
    return value  # type: ignore[return-value]
