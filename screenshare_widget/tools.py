"""Python functions as the assistant's tools, run in the user's kernel.

:class:`Toolbox` turns the model's function calls into calls of the user's functions and
their outcomes into responses: sync functions run in a worker thread, async ones on the
relay's loop, each under a time limit. Every way a call can go wrong (an unknown name,
arguments that do not fit the signature, an exception, a timeout, a result too large or not
JSON) becomes an error response with the reason, so the conversation goes on.

Declarations come from the functions' signatures, type hints and docstrings through the
SDK (:func:`screenshare_widget.gemini.declare`); this module imports no SDK code.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableSequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

from .notebook_tools import notebook_tools as notebook_tools  # public here: tools.notebook_tools()

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

#: How long one call may run before it is answered with a timeout error (s). A sync
#: function that ignores this keeps its worker thread until it returns.
TOOL_TIMEOUT_S: Final = 30.0
#: Largest response sent to the model (characters of JSON); a larger one is an error.
MAX_RESULT_CHARS: Final = 32_000
#: How much of a result or error the widget shows (characters).
SHOWN_CHARS: Final = 400
#: How long a call that needs a confirm click waits for one (s); then it is declined.
CONFIRM_TIMEOUT_S: Final = 120.0

_F = TypeVar("_F", bound=Callable[..., Any])
_CONFIRM_ATTR: Final = "__screenshare_confirm__"

#: Asks the user to allow one call: (call id, tool name, arguments) -> allowed.
Confirm = Callable[[str, str, dict[str, Any]], Awaitable[bool]]


def needs_confirmation(fn: _F) -> _F:
    """Mark a tool so that each call waits for the user's Allow click in the widget (for
    tools that change things). Declined, unanswered or without a widget, the model gets an
    error saying so."""
    setattr(fn, _CONFIRM_ATTR, True)
    return fn


def confirmed(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` was marked with :func:`needs_confirmation`."""
    return bool(getattr(fn, _CONFIRM_ATTR, False))


Outcome = Literal["running", "ok", "error", "cancelled"]


@dataclass(frozen=True)
class ToolActivity:
    """One function call and what came of it, as the widget and ``assistant.events`` show
    it. ``result`` is the response's JSON, ``error`` the reason it failed; ``duration_ms``
    is None while it runs."""

    id: str
    name: str
    args: dict[str, Any]
    started_at: datetime
    outcome: Outcome = "running"
    result: str = ""
    error: str = ""
    duration_ms: float | None = None
    #: The call waits for (or waited for) the user's Allow click.
    confirm: bool = False

    def to_record(self) -> dict[str, Any]:
        """A JSON-friendly dict for the page (long texts shortened)."""
        return {
            "id": self.id,
            "name": self.name,
            "args": _shorten(json.dumps(self.args, default=str, ensure_ascii=False)),
            "outcome": self.outcome,
            "result": _shorten(self.result),
            "error": _shorten(self.error),
            "duration_ms": self.duration_ms,
            "confirm": self.confirm,
        }


class ToolCalls(tuple[ToolActivity, ...]):
    """The session's tool calls, oldest first (a snapshot), with :meth:`to_pandas`."""

    def to_pandas(self) -> pd.DataFrame:
        """One row per call: id, name, args, outcome, result, error, duration_ms, confirm,
        started_at."""
        import pandas as pd

        columns = ["id", "name", "args", "outcome", "result", "error", "duration_ms",
                   "confirm", "started_at"]  # fmt: skip
        rows = [
            {
                "id": c.id,
                "name": c.name,
                "args": c.args,
                "outcome": c.outcome,
                "result": c.result,
                "error": c.error,
                "duration_ms": c.duration_ms,
                "confirm": c.confirm,
                "started_at": c.started_at,
            }  # fmt: skip
            for c in self
        ]
        frame = pd.DataFrame(rows, columns=columns)
        frame["started_at"] = pd.to_datetime(frame["started_at"], utc=True)
        return frame


@dataclass(frozen=True)
class Response:
    """What goes back to the model for one call."""

    payload: dict[str, object]
    ok: bool


class ToolError(Exception):
    """A call could not be made or answered; the message is the reason given to the model."""


@dataclass
class Toolbox:
    """The user's tool functions (a list they may change) and how to call them.

    ``declare`` makes a function's declaration (``gemini.declare`` in the product).
    Changes to :attr:`functions` apply when the next connection opens.
    """

    functions: MutableSequence[Callable[..., Any]] = field(default_factory=list)
    declare: Callable[..., dict[str, Any]] | None = None
    timeout_s: float = TOOL_TIMEOUT_S
    #: Asks for the click a :func:`needs_confirmation` tool needs (the widget sets it).
    confirm: Confirm | None = None
    confirm_timeout_s: float = CONFIRM_TIMEOUT_S

    def by_name(self) -> dict[str, Callable[..., Any]]:
        """The functions by the name the model calls them."""
        return {_name(fn): fn for fn in list(self.functions)}

    def declarations(self, *, non_blocking: bool = False) -> tuple[dict[str, Any], ...]:
        """The declarations of the current functions. Raises ``ValueError`` naming a
        function that cannot be declared, or two with the same name."""
        functions = list(self.functions)
        names = [_name(fn) for fn in functions]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"two tools are named {', '.join(twice)}; tool names must differ")
        for fn in functions:
            if not callable(fn):
                raise TypeError(f"tools must be functions, not {type(fn).__name__}")
        if not functions:
            return ()
        if self.declare is None:
            raise RuntimeError("this toolbox cannot declare functions")
        return tuple(self.declare(fn, non_blocking=non_blocking) for fn in functions)

    def needs_confirmation(self, name: str) -> bool:
        """Whether calls of tool ``name`` wait for the user's click."""
        fn = self.by_name().get(name)
        return fn is not None and confirmed(fn)

    async def call(self, name: str, args: dict[str, Any], call_id: str = "") -> Response:
        """Call tool ``name`` with ``args`` and make the response: ``{"result": ...}`` (or
        the function's own dict) on success, ``{"error": reason}`` otherwise. Cancelling it
        stops waiting; a sync function already running finishes in its thread."""
        try:
            return Response(_result_payload(await self._invoke(name, args, call_id)), ok=True)
        except ToolError as exc:
            return Response({"error": str(exc)}, ok=False)

    async def _invoke(self, name: str, args: dict[str, Any], call_id: str) -> Any:
        fn = self.by_name().get(name)
        if fn is None:
            known = ", ".join(sorted(self.by_name())) or "none"
            raise ToolError(f"there is no tool named {name!r} (tools: {known})")
        try:
            inspect.signature(fn).bind(**args)
        except TypeError as exc:
            raise ToolError(f"the arguments do not fit {name}: {exc}") from None
        if confirmed(fn):
            await self._ask_user(call_id, name, args)
        try:
            async with asyncio.timeout(self.timeout_s):
                if inspect.iscoroutinefunction(fn):
                    return await fn(**args)
                return await asyncio.to_thread(fn, **args)
        except TimeoutError:
            raise ToolError(f"{name} did not finish within {self.timeout_s:g} s") from None
        except Exception as exc:
            logger.info("tool %s raised %s: %s", name, type(exc).__name__, exc)
            raise ToolError(f"{name} raised {type(exc).__name__}: {exc}") from None

    async def _ask_user(self, call_id: str, name: str, args: dict[str, Any]) -> None:
        if self.confirm is None:
            raise ToolError(f"{name} needs the user's confirmation, and no widget can ask")
        try:
            async with asyncio.timeout(self.confirm_timeout_s):
                allowed = await self.confirm(call_id, name, args)
        except TimeoutError:
            raise ToolError(
                f"the user did not confirm {name} within {self.confirm_timeout_s:g} s"
            ) from None
        if not allowed:
            raise ToolError(f"the user declined to run {name}")


def activity(
    call_id: str, name: str, args: dict[str, Any], *, confirm: bool = False
) -> ToolActivity:
    """A call that just started."""
    return ToolActivity(call_id, name, dict(args), datetime.now(UTC), confirm=confirm)


def finished(
    running: ToolActivity, response: Response | None, started: float
) -> tuple[ToolActivity, dict[str, Any]]:
    """``running`` after it ended (``response`` None: cancelled), and its event details."""
    duration = round((time.monotonic() - started) * 1000, 1)
    if response is None:
        done = replace(running, outcome="cancelled", duration_ms=duration)
    elif response.ok:
        text = json.dumps(response.payload, default=str, ensure_ascii=False)
        done = replace(running, outcome="ok", result=text, duration_ms=duration)
    else:
        error = str(response.payload.get("error", ""))
        done = replace(running, outcome="error", error=error, duration_ms=duration)
    detail = {"id": done.id, "name": done.name, "outcome": done.outcome,
              "duration_ms": duration, "error": done.error}  # fmt: skip
    return done, detail


def _name(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__name__", type(fn).__name__))


def _result_payload(value: Any) -> dict[str, object]:
    """The response for a function's return value: a dict as it is, anything else as
    ``{"result": value}``; it must be JSON and at most :data:`MAX_RESULT_CHARS`."""
    payload = value if isinstance(value, dict) else {"result": value}
    try:
        text = json.dumps(payload, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ToolError(
            f"the result is not JSON ({exc}); return text, numbers, lists or dicts"
        ) from None
    if len(text) > MAX_RESULT_CHARS:
        raise ToolError(
            f"the result is too large to send ({len(text):,} characters of JSON, "
            f"at most {MAX_RESULT_CHARS:,}); return a summary"
        )
    return dict(payload)


def _shorten(text: str, most: int = SHOWN_CHARS) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"
