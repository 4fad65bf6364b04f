"""The widget's comm side: messages from the page, messages to it, and trait writes.

Internal module. :class:`PageLink` takes each custom message from the page (parsed by
``protocol.py``), drops media from a stale capture, hands the rest to the relay, and sends
the page what the kernel says, built by ``protocol.py``'s builders. :class:`PageSink` turns
the relay's callbacks into those messages and into the notes shown in the cell. The link also
watches that the page is still there, and holds the tool calls that wait for a click.

**Trait writes from other threads go one way.** The user assigns traits in their own thread
(a cell); the relay's thread, the thread that handles the page's messages (the comm thread,
possibly a kernel subshell) and the user's thread, on the package's behalf, write traits too
(status, error, the spend meter, a budget's lowered ``max_fps``, ...). Every write the package
makes goes through :meth:`UiMirror.set`, which:

- takes one lock (:attr:`UiMirror.lock`), so that the package's writes never interleave;
- never uses ``hold_trait_notifications``. Under that context manager traitlets skips
  cross-validation *for every thread* (the lock it sets is the widget's, not the thread's),
  then validates everything held at its end, and on an error rolls every held change back
  and raises in the holder. A relay write held that way let a user's invalid ``max_fps``
  through in the user's thread, then rolled it back together with the relay's status and
  raised on the relay's thread. Without it, a user's invalid assignment is validated in the
  user's thread and raises there, unchanged, and the package's writes are never undone;
- runs in the context of the last page message (``contextvars``), so that ipykernel sends the
  update on the channel the page's messages came on and a busy cell does not hold it;
- logs, never raises: a failed write or send must not end the relay's thread.

**What the page writes.** Nothing, through the widget's state sync. The user changes four
traits in the page, ``system_instruction`` (the instruction box's Apply), ``video_paused``
(the pause button), ``volume`` (the volume slider) and ``muted`` (the mute button), and the
page sends each change as a ``set`` message (``protocol.PAGE_TRAITS``);
:meth:`PageLink.page_set` writes it through the mirror, like every other write, and the
page's model follows the kernel's value. A state update from some other page is taken the
same way (``ScreenShareAssistant.set_state``). ipywidgets would apply one under
``hold_trait_notifications``, which would hold back, for every thread, the validation of
whatever the user assigned meanwhile: their invalid value would be taken in their cell and
rolled back, with the page's change, on the comm thread.

**Lock order.** A thread holds at most one of this module's locks at a time (a send to
the page, made under :class:`PageLink`'s, takes none). :data:`LIVE`
computes the counts under its own lock, releases it, then writes each widget's count under
that widget's :attr:`UiMirror.lock`, one after another (:meth:`UiMirror.set_newest` keeps a
late writer from undoing a newer count). The garbage collector can run a collected widget's
finalizer on a thread that holds some mirror's lock, so the finalizer takes no lock: it only
marks the counts stale, and the next relay tick recounts (:meth:`_LiveRegistry.settle`).

**Tool-call numbers.** The relay numbers tool calls from the first of the session and keeps
the newest ``session_log.MAX_TOOL_CALLS_KEPT``. A page's list starts at the first call the
last snapshot held; every page gets every snapshot (the kernel's messages go to all of them),
so each ``tool`` message carries the call's place in that list (see :meth:`PageLink.tool`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import logging
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import traitlets

from . import protocol
from .backend import Usage
from .events import Handover, SentFrame
from .instructions import Instruction
from .liveness import DEAF_AFTER_S, PageWatch
from .pricing import Step
from .relay import Relay, RelayState
from .session_log import Window
from .tools import ToolActivity
from .transcript import Turn

if TYPE_CHECKING:
    import anywidget

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

_RUNNING: frozenset[RelayState] = frozenset(
    {RelayState.CONNECTING, RelayState.LIVE, RelayState.RECONNECTING}
)


class UiMirror:
    """The one way the package writes the widget's traits and sends to its page, from any
    thread (see the module's docstring). It holds the widget weakly."""

    def __init__(self, widget: anywidget.AnyWidget) -> None:
        self._widget = weakref.ref(widget)
        #: Held by every write; reentrant, since a write's observers may write again.
        self.lock = threading.RLock()
        #: The context of the last page message (None before the first).
        self.context: contextvars.Context | None = None
        self._versions: dict[str, int] = {}  # for set_newest, under the lock

    def get(self, name: str) -> Any:
        """The current value of trait ``name`` (None once the widget is gone)."""
        widget = self._widget()
        return None if widget is None else getattr(widget, name)

    def set(self, **values: Any) -> None:
        """Write the traits ``values`` names, in order, under :attr:`lock`."""
        widget = self._widget()
        if widget is None:
            return

        def write() -> None:
            for name, value in values.items():
                widget.set_trait(name, value)

        with self.lock:
            self._run(write, "a trait write from the kernel failed")

    def set_newest(self, version: int, **values: Any) -> None:
        """Like :meth:`set`, but a value is written only if no write of a later ``version``
        of that trait was: for writers that compute values under a lock of their own and
        write them after releasing it, so that a slow one never undoes a newer value."""
        with self.lock:
            newer = {
                name: value
                for name, value in values.items()
                if version > self._versions.get(name, -1)
            }
            self._versions.update(dict.fromkeys(newer, version))
            if newer:
                self.set(**newer)

    def set_checked(self, name: str, value: Any) -> str:
        """Like :meth:`set` for one trait, but a value the trait refuses is not logged: why it
        was refused is returned ("" once written), for a caller that tells the user."""
        widget = self._widget()
        if widget is None:
            return ""
        refused = ""

        def write() -> None:
            nonlocal refused
            try:
                widget.set_trait(name, value)
            except (traitlets.TraitError, TypeError, ValueError) as exc:
                refused = str(exc)

        with self.lock:
            self._run(write, f"writing {name} from the page failed")
        return refused

    def send(self, content: protocol.KernelMessage, buffers: list[bytes] | None = None) -> None:
        """Send one message to the page."""
        widget = self._widget()
        if widget is not None:
            self._run(lambda: widget.send(dict(content), buffers), "sending to the page failed")

    def _run(self, fn: Callable[[], None], failed: str) -> None:
        context = self.context
        try:
            if context is None:
                fn()
            else:
                context.copy().run(fn)
        except Exception:
            logger.exception("%s", failed)


class Confirmations:
    """Tool calls waiting for the user's Allow or Deny in the page (relay loop)."""

    def __init__(self, reject: Callable[[str], None]) -> None:
        self._reject = reject
        self._waiting: dict[str, asyncio.Future[bool]] = {}

    async def wait(self, call_id: str, name: str, args: dict[str, Any]) -> bool:
        """Wait for the click on tool call ``call_id`` (the page shows the buttons for calls
        marked ``confirm``). Cancelling stops the wait (the tool times out or is cancelled)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = future
        try:
            return await future
        finally:
            self._waiting.pop(call_id, None)

    def decide(self, call_id: str, allow: bool) -> None:
        """The user clicked on ``call_id`` (relay loop); a click for no waiting call is
        rejected as a bad message."""
        future = self._waiting.get(call_id)
        if future is None or future.done():
            self._reject(f"a confirmation for tool call {call_id!r}, which is not waiting")
            return
        future.set_result(allow)


class PageLink:
    """The comm side of one assistant: what its pages send, and what they are sent.

    Message handlers run on whichever thread the kernel handles the page's messages on and
    never block; the watch and the sends to the page run on the relay's thread. It also
    turns the budget's knobs (:class:`~screenshare_widget.budget.Knobs`).
    """

    def __init__(
        self,
        mirror: UiMirror,
        relay: Relay,
        watch: PageWatch,
        on_spend: Callable[[], None],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.mirror = mirror
        #: The watch's clock (s, never going back); tests pass a manual one, and then put
        #: ``CELLS.running_since`` (``time.monotonic`` in a kernel) on it too.
        self.monotonic = monotonic
        self.relay = relay
        self.watch = watch
        self.spend_changed = on_spend
        self.confirmations = Confirmations(self.reject)
        #: How the last session ended, in a sentence ("" if it is running or none ran); a
        #: page that opens later shows it.
        self.last_end = ""
        self.rejected = 0
        self.playback: dict[str, float] = {}
        #: The page's frame policy counters: checked, sent, skipped, and sends by reason
        #: (first, change, speech, heartbeat), for the current capture.
        self.frame_policy: dict[str, int] = {}
        self._lock = threading.Lock()
        # Orders snapshots and tool messages; _tools_base is the relay's number of the first
        # call the pages' lists hold (that of the last snapshot).
        self._tools_lock = threading.Lock()
        self._tools_base = 0
        self._uplink = {"audio_seq": -1, "frame_seq": -1}
        self._capture = ""  # id of the page's current capture; media from others is stale
        # The loop of the thread that last handled a page message, and since when a probe
        # posted to it has waited (monotonic s): a cell blocking that thread is not silence.
        self._handler_loop: asyncio.AbstractEventLoop | None = None
        self._probe_since: float | None = None

    # ---- from the page (any thread) ---------------------------------------------------------

    def receive(self, content: Any, buffers: list[Any] | None) -> None:
        """Take one custom message from the page."""
        # Sends made in this context keep ipykernel routing the page's messages to the
        # subshell thread they came on, so a busy cell does not stall them.
        self.mirror.context = contextvars.copy_context()
        try:
            message = protocol.parse_browser_message(content, buffers)
        except protocol.ProtocolError as exc:
            self.reject(str(exc))
            return
        now = self.monotonic()
        match message:
            case protocol.AudioChunk() | protocol.Frame():
                self.watch.heard(now, message.capture)
                if message.capture and message.capture != self._capture:
                    self.reject("media from a stale view (an earlier capture)")
                else:
                    self._media(message)
            case _:
                capture = message.capture if hasattr(message, "capture") else ""
                self.watch.heard(now, capture)
                with contextlib.suppress(RuntimeError):  # no loop runs on this thread
                    self._handler_loop = asyncio.get_running_loop()
                self._control(message)

    def _media(self, message: protocol.AudioChunk | protocol.Frame) -> None:
        if isinstance(message, protocol.AudioChunk):
            self._uplink["audio_seq"] = message.seq
            self.relay.feed_audio(message.pcm, message.t_ms)
        else:
            self._uplink["frame_seq"] = message.seq
            self.relay.feed_frame(
                message.jpeg, message.width, message.height, seq=message.seq,
                reason=message.reason,
            )  # fmt: skip

    def _control(self, message: protocol.Control) -> None:
        match message:
            case protocol.Hello():
                self._snapshot()
            case protocol.Start(capture=capture):
                self._start(capture)
            case protocol.Stop(reason=reason, capture=capture):
                if capture and capture != self._capture:
                    self.reject("a stop from a stale view (an earlier capture)")
                    return
                self.ended("page", reason or "Stopped in the page.")
                self.relay.stop(wait=False)
            case protocol.ClientError(message=text):
                text = text or "The page reported an error."
                logger.error("in the page: %s", text)
                self.mirror.set(error=text)
            case protocol.Playback() | protocol.FrameStats():
                counters = dataclasses.asdict(message)
                if isinstance(message, protocol.Playback):
                    self.playback = counters
                else:
                    self.frame_policy = counters
            case protocol.Confirm(id=call_id, allow=allow):
                if not self.relay.call_soon(partial(self.confirmations.decide, call_id, allow)):
                    self.reject(f"a confirmation for tool call {call_id!r}, with no session")
            case protocol.Text(text=text):
                try:
                    self.relay.say(text)
                except (RuntimeError, ValueError) as exc:
                    self.mirror.set(error=str(exc))
            case protocol.SetTrait(name=name, value=value):
                self.page_set(name, value)
            case protocol.Device():
                self._device(message)
            case protocol.Beat():
                pass  # heard: that is all a beat says

    def _device(self, message: protocol.Device) -> None:
        """A device came or went in the page; the capture goes on. It is an event, and an
        unplugged microphone ends the audio stream, so the service answers what the user had
        begun to say instead of waiting for more."""
        if message.capture and message.capture != self._capture:
            self.reject("a device change from a stale view (an earlier capture)")
            return
        self.relay.log_event("device", change=message.what, label=message.label)
        if message.what == "mic_ended" and self.relay.state is RelayState.LIVE:
            self.relay.end_audio()  # not awaited: the page's handler never waits on the loop

    def page_set(self, name: str, value: Any) -> None:
        """The user changed trait ``name`` to ``value`` in the page (a ``set`` message, or a
        state update from a page that writes traits itself): write it the package's one way,
        through the mirror, and say in the cell if it is refused."""
        try:
            protocol.parse_page_trait(name, value)
        except protocol.ProtocolError as exc:
            self.reject(str(exc))
            return
        refused = self.mirror.set_checked(name, value)
        if refused:
            label = name.replace("_", " ")
            self.reject(f"{name}: {refused}")
            self.mirror.set(error=f"The {label} from the page was not applied: {refused}")

    def _snapshot(self) -> None:
        relay = self.relay
        idle = relay.state is RelayState.IDLE
        with self._tools_lock:  # every page's list starts at the first call kept, from now
            calls, self._tools_base = kept_calls(relay.tool_calls)
            self.send(
                protocol.snapshot(
                    [t.to_record() for t in relay.transcript],
                    [c.to_record() for c in calls],
                    relay.generation,
                    self.last_end if idle else "",
                )
            )

    def _start(self, capture: str) -> None:
        self._capture = capture
        self.watch.own(self.monotonic(), capture)
        self._uplink = {"audio_seq": -1, "frame_seq": -1}
        if self.mirror.get("error") and self.relay.state is not RelayState.FAILED:
            self.mirror.set(error="")
        # A page still sharing under another id (another window) stops.
        self.send(protocol.capture(capture))
        self.relay.start()

    def reject(self, reason: str) -> None:
        """Count a message from the page that could not be taken, and log it now and then."""
        with self._lock:
            self.rejected += 1
            count = self.rejected
        # One warning per power of two keeps a flood of bad messages from flooding the log.
        if count & (count - 1) == 0:
            logger.warning("rejected a message from the page (%d so far): %s", count, reason)

    # ---- to the page (any thread) -----------------------------------------------------------

    def send(self, content: protocol.KernelMessage, buffers: list[bytes] | None = None) -> None:
        """Send one message, built by ``protocol.py``, to the page."""
        self.mirror.send(content, buffers)

    def tool(self, number: int, call: ToolActivity) -> None:
        """Send tool call ``number`` (the relay's number) at its place in the pages' lists,
        which start at the first call of the last snapshot; a call before that one, which no
        page lists, is not sent."""
        with self._tools_lock:
            index = number - self._tools_base
            if index >= 0:
                self.send(protocol.tool(index, call.to_record()))

    def ack(self) -> None:
        """Say what was relayed of the uplink (each relay tick)."""
        self.send(protocol.ack(self._uplink["audio_seq"], self._uplink["frame_seq"]))

    def ended(self, by: str, reason: str) -> None:
        """A session is being stopped by ``by`` ("page", "python", "kernel"), for
        ``reason``: say so in the events, and to a page that opens later."""
        if self.relay.state in (RelayState.IDLE, RelayState.CLOSING):
            return  # nothing was running
        self.last_end = reason
        self.relay.log_event("stopped", by=by, reason=reason)

    def end_session(self, reason: str) -> None:
        """Stop the running session for ``reason``, in the page too, without waiting."""
        self.last_end = reason
        self.send(protocol.stop(reason))
        self.relay.stop(wait=False)

    # ---- the budget's knobs (any thread) ----------------------------------------------------

    def settings(self) -> tuple[float, bool]:
        """The current ``max_fps`` and ``video_paused``."""
        return float(self.mirror.get("max_fps") or 0.0), bool(self.mirror.get("video_paused"))

    def turn(self, *, max_fps: float | None = None, video_paused: bool | None = None) -> None:
        """Set ``max_fps`` and/or ``video_paused`` (None: leave it)."""
        values = {"max_fps": max_fps, "video_paused": video_paused}
        self.mirror.set(**{name: value for name, value in values.items() if value is not None})

    def tell(self, step: Step | str, share: float, text: str) -> None:
        """A budget step was taken: an event, a note in the cell, and for "stop" the end."""
        if step != "undo":
            logger.warning("%s", text)
        self.relay.log_event("budget", step=step, share=round(share, 4), text=text)
        if step == "stop":
            self.end_session(text)
        else:
            self.send(protocol.notice(text))

    # ---- the page's liveness (relay thread) -------------------------------------------------

    def watch_page(self) -> None:
        """End the session if the page that owns it went away (each relay tick)."""
        now = self.monotonic()
        if self.watch.check(now, deaf=self._handler_deaf(now)):
            self._page_lost(self.watch.silent_s)

    def _handler_deaf(self, now: float) -> bool:
        """Whether the kernel may have been unable to hear the page since the last tick:
        a cell runs and no page message was handled since it began (kernels without comm
        subshells hold the page's messages until the cell ends, even an ``await``-ing one),
        or a probe posted to the loop that handles them has waited over DEAF_AFTER_S."""
        began = CELLS.running_since
        last = self.watch.last_heard
        if began is not None and (last is None or last < began):
            return True
        loop = self._handler_loop
        if loop is None:
            return False  # no loop to probe (a plain thread): silence is silence
        waiting = self._probe_since
        if waiting is not None:
            return now - waiting > DEAF_AFTER_S
        self._probe_since = now
        try:
            loop.call_soon_threadsafe(self._probe_answered)
        except RuntimeError:  # that loop closed
            self._handler_loop = self._probe_since = None
        return False

    def _probe_answered(self) -> None:
        self._probe_since = None

    def _page_lost(self, silent_s: float) -> None:
        why = "(its tab or browser closed, or it lost the kernel)"
        if self.watch.owner is not None:
            text = (
                f"The page sharing with this assistant was not heard from for {silent_s:.0f} s "
                f"{why}, so the session was stopped: nothing is captured or billed now. "
                "Click Share to start again."
            )
        else:
            text = (
                f"No page of this assistant was heard from for {silent_s:.0f} s {why}, so "
                "the session was stopped: nothing is billed now. Display the assistant and "
                "click Share, or call say() or ask(), to start again."
            )
        logger.warning("%s", text)
        self.relay.log_event("page_lost", silent_s=round(silent_s, 1), text=text)
        self.mirror.set(error=text)
        self.end_session(text)


class PageSink:
    """The relay's output, mirrored into the widget and its page (relay thread).

    It holds the link weakly (the relay's thread must not keep the widget alive): once the
    widget is gone, the relay's output goes nowhere. :meth:`bind` gives it its link.
    """

    def __init__(self) -> None:
        self._ref: Callable[[], PageLink | None] = lambda: None

    def bind(self, link: PageLink) -> None:
        """Send the relay's output through ``link`` from now on."""
        self._ref = weakref.ref(link)

    def on_state(self, state: RelayState, error: str) -> None:
        link = self._ref()
        if link is None:
            return
        if state is RelayState.CONNECTING:  # a new session, not a handover
            link.watch.session_started(link.monotonic())
        elif state in (RelayState.CLOSING, RelayState.IDLE, RelayState.FAILED):
            link.watch.session_ended()
        LIVE.update(link.mirror, state in _RUNNING)
        values: dict[str, Any] = {"status": state.value}
        if state is RelayState.LIVE and not link.mirror.get("live_since"):
            values["live_since"] = time.time()
        elif state in (RelayState.IDLE, RelayState.FAILED):
            values["live_since"] = 0.0
        if state is RelayState.CONNECTING:  # a new session, not a handover
            values["connection"] = ""
        if error or state in (RelayState.CONNECTING, RelayState.LIVE):
            values["error"] = error
        link.mirror.set(**values)
        if state in (RelayState.IDLE, RelayState.FAILED):
            link.spend_changed()  # no session: no projection
        if state is RelayState.FAILED:
            link.send(protocol.stop(error))

    def on_audio(self, pcm: bytes, gen: int) -> None:
        self._send(protocol.audio_out(gen), [pcm])

    def on_interrupted(self, gen: int) -> None:
        self._send(protocol.interrupted(gen))

    def on_turn_complete(self, gen: int) -> None:
        self._send(protocol.turn_complete(gen))

    def on_turns(self, changed: list[tuple[int, Turn]]) -> None:
        for index, turn in changed:
            self._send(protocol.turn(index, turn.to_record()))

    def on_usage(self, usage: Usage) -> None:
        logger.debug("usage: %s", usage)
        link = self._ref()
        if link is not None:
            link.spend_changed()

    def on_handover(self, handover: Handover) -> None:
        link = self._ref()
        if link is not None:
            link.mirror.set(connection="resumed" if handover.resumed else "fresh session")
            link.send(protocol.notice(handover_notice(handover)))

    def on_instruction(self, instruction: Instruction) -> None:
        link = self._ref()
        if link is None:
            return
        link.mirror.set(instruction_applied=instruction.version)
        text = instruction_notice(instruction)
        if text:
            link.send(protocol.notice(text))

    def on_frame(self, frame: SentFrame, seq: int) -> None:
        if seq >= 0:
            self._send(protocol.frame_sent(seq))

    def on_notice(self, text: str) -> None:
        self._send(protocol.notice(text))

    def on_tool(self, index: int, call: ToolActivity) -> None:
        link = self._ref()
        if link is not None:
            link.tool(index, call)

    def on_tick(self) -> None:
        LIVE.settle()  # a collected assistant's count, done here: it takes no lock of ours
        link = self._ref()
        if link is not None:
            link.ack()
            link.watch_page()

    def _send(self, content: protocol.KernelMessage, buffers: list[bytes] | None = None) -> None:
        link = self._ref()
        if link is not None:
            link.send(content, buffers)


def kept_calls(calls: Sequence[ToolActivity]) -> tuple[list[ToolActivity], int]:
    """The tool calls kept, oldest first, and the relay's number of the first (0 for a plain
    sequence), read together while the relay may be adding one."""
    if not isinstance(calls, Window):
        return list(calls), 0
    while True:
        total = calls.total
        items = calls.snapshot()
        if calls.total == total:  # nothing added in between: they agree
            return items, total - len(items)


def handover_notice(handover: Handover) -> str:
    """The note in the cell for a move to a new connection."""
    gap = "" if handover.gap_ms is None else f", {handover.gap_ms / 1000:.1f} s gap"
    if handover.resumed:
        text = f"Reconnected: the conversation resumed ({handover.reason}{gap})."
    else:
        text = (
            f"Reconnected with a fresh session ({handover.reason}{gap}): the model lost "
            "the earlier context; the transcript goes on."
        )
    if handover.replayed_s >= 0.1 or handover.replayed_texts:
        text += " What you said since the last answer was passed on to it."
    if handover.lost_s:
        text += (
            f" {handover.lost_s:.0f} s of what you said before could not be kept: please repeat it."
        )
    return text


def instruction_notice(instruction: Instruction) -> str:
    """The note in the cell for a system instruction the model got ("" for the first one,
    at the first connection: nothing to say)."""
    if instruction.applied_by == "setup" and instruction.version <= 1:
        return ""
    how = {
        "context_update": "mid-session",
        "handover": "on a new connection",
        "setup": "at connection",
    }[instruction.applied_by or "setup"]
    return f"The model has system instruction v{instruction.version} ({how})."


class _LiveRegistry:
    """The assistants of this kernel that have a session running, so that each of their
    widgets can say how many others are billed beside it (``others_live``; 0 for an
    assistant with no session running). Held weakly, by their :class:`UiMirror`.

    Its lock is never held while a widget is written (see the module's lock order): counts
    are computed under it, numbered, and written after it is released.
    """

    def __init__(self) -> None:
        # Reentrant: a collection may run while this thread holds it.
        self._lock = threading.RLock()
        self._live: weakref.WeakSet[UiMirror] = weakref.WeakSet()
        self._version = 0  # of the counts, for UiMirror.set_newest
        self._stale = False  # one was collected: recount at the next settle()

    def update(self, mirror: UiMirror, live: bool) -> None:
        """``mirror``'s assistant has a session running (``live``) or not; tell every
        widget concerned."""
        with self._lock:
            if live == (mirror in self._live):
                return
            if live:
                self._live.add(mirror)
            else:
                self._live.discard(mirror)
            version, counts = self._count()
            counts.setdefault(mirror, 0)
        self._write(version, counts)

    def collected(self) -> None:
        """An assistant was collected: recount at the next :meth:`settle`. Safe from a
        finalizer on any thread, whatever locks it holds: it takes none."""
        self._stale = True

    def settle(self) -> None:
        """Recount if an assistant was collected since the last count (a relay tick, on a
        thread that holds no mirror's lock)."""
        if not self._stale:
            return
        with self._lock:
            version, counts = self._count()
        self._write(version, counts)

    def _count(self) -> tuple[int, dict[UiMirror, int]]:
        """Under the lock: the next version, and each live widget's count of the others."""
        self._stale = False
        self._version += 1
        members = list(self._live)
        return self._version, dict.fromkeys(members, len(members) - 1)

    @staticmethod
    def _write(version: int, counts: dict[UiMirror, int]) -> None:
        for member, others in counts.items():
            member.set_newest(version, others_live=others)  # (unchanged: no update sent)


#: The assistants with a session running in this kernel.
LIVE = _LiveRegistry()


class _CellClock:
    """When the kernel's current cell began (monotonic s; None between cells), from
    IPython's ``pre_execute`` and ``post_execute`` events, registered once per kernel."""

    def __init__(self) -> None:
        self.running_since: float | None = None
        self._registered = False

    def register(self) -> None:
        if self._registered:
            return
        self._registered = True
        try:
            from IPython import get_ipython
        except ImportError:
            return
        shell = get_ipython()
        if shell is not None:
            shell.events.register("pre_execute", self._began)
            shell.events.register("post_execute", self._ended)

    def _began(self) -> None:
        self.running_since = time.monotonic()

    def _ended(self) -> None:
        self.running_since = None


#: The kernel's cell clock.
CELLS = _CellClock()


def weak_confirm(
    method: weakref.WeakMethod[Callable[[str, str, dict[str, Any]], Awaitable[bool]]],
) -> Callable[[str, str, dict[str, Any]], Awaitable[bool]]:
    """A confirmation called through a weak reference (a gone widget denies)."""

    async def confirm(call_id: str, name: str, args: dict[str, Any]) -> bool:
        bound = method()
        return False if bound is None else await bound(call_id, name, args)

    return confirm


def weak_call(method: weakref.WeakMethod[Callable[[], None]]) -> Callable[[], None]:
    """``method()`` through a weak reference; nothing once its object is gone."""

    def call() -> None:
        bound = method()
        if bound is not None:
            bound()

    return call
