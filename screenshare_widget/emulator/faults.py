"""Faults the emulator injects, to test a client's recovery from a flaky service.

Internal module; :class:`Fault` is re-exported from :mod:`screenshare_widget.emulator`.

``LiveEmulator(faults=[...])`` applies them in default-responder and scripted mode alike:

- ``"drop"``: abort the TCP connection without a close frame (the SDK raises
  ``APIError`` 1006);
- ``"close"``: close with ``code`` and ``reason`` (e.g. 1011 "Internal error occurred.", as
  the service does now and then);
- ``"stall"``: stop reading the socket for ``duration_s``, so client messages and pings go
  unanswered, and send nothing meanwhile; then carry on;
- ``"reject"``: close with ``code`` and ``reason`` right after an accepted setup, before
  ``setupComplete`` (the SDK's ``connect()`` raises ``APIError``).

Timed kinds fire ``after_s`` after the connection's ``setupComplete``. ``connection``
restricts a fault to one connection index; ``times`` to that many connections, counted when
a connection matches (a timed fault counts even if its connection ends before it fires).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from .validation import CLOSE_INTERNAL, REASON_INTERNAL

FaultKind = Literal["drop", "close", "stall", "reject"]
#: The kinds of :class:`Fault`.
FAULT_KINDS: Final[frozenset[str]] = frozenset({"drop", "close", "stall", "reject"})
#: Close codes that may not travel in a close frame (RFC 6455 §7.4.1).
_RESERVED_CODES: Final = frozenset({1004, 1005, 1006, 1015})


@dataclass(frozen=True)
class Fault:
    """One fault to inject; see :mod:`screenshare_widget.emulator.faults`.

    ``after_s`` counts from ``setupComplete`` (ignored for ``"reject"``); ``connection``
    (an index, from 0) or ``None`` for every connection; ``times`` caps how many connections
    it applies to (``None``: no cap); ``code`` and ``reason`` are the close for ``"close"``
    and ``"reject"`` (the reason is cut to 123 bytes); ``duration_s`` is a stall's length.
    """

    kind: FaultKind
    after_s: float = 0.0
    connection: int | None = None
    times: int | None = None
    code: int = CLOSE_INTERNAL
    reason: str = REASON_INTERNAL
    duration_s: float = 5.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {sorted(FAULT_KINDS)}")
        if not self.after_s >= 0:
            raise ValueError("after_s must not be negative")
        if not self.duration_s >= 0:
            raise ValueError("duration_s must not be negative")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be at least 1 (or None)")
        if self.connection is not None and self.connection < 0:
            raise ValueError("connection must be an index from 0 (or None)")
        if not (1000 <= self.code <= 4999) or self.code in _RESERVED_CODES:
            raise ValueError(
                f"close code {self.code} cannot be sent in a close frame; "
                'use kind="drop" for an abnormal closure (1006)'
            )


class FaultPlan:
    """Which faults apply to which connection; counts each fault's uses."""

    def __init__(self, faults: list[Fault]) -> None:
        self.faults = tuple(faults)
        self._uses = [0] * len(self.faults)

    def _take(self, connection: int, *, reject: bool) -> list[Fault]:
        taken = []
        for i, fault in enumerate(self.faults):
            if (fault.kind == "reject") != reject:
                continue
            if fault.connection is not None and fault.connection != connection:
                continue
            if fault.times is not None and self._uses[i] >= fault.times:
                continue
            self._uses[i] += 1
            taken.append(fault)
            if reject:  # one close is all a connection can get
                break
        return taken

    def rejection(self, connection: int) -> Fault | None:
        """The first ``"reject"`` fault for this connection's accepted setup (counted)."""
        taken = self._take(connection, reject=True)
        return taken[0] if taken else None

    def timed(self, connection: int) -> list[Fault]:
        """The drop, close and stall faults for this connection (counted)."""
        return self._take(connection, reject=False)
