"""Run the Live emulator from the command line until Ctrl-C.

``python -m screenshare_widget.emulator [--port N] [--host 127.0.0.1] [-v]
[--ideal] [--pong-delay-s S] [--refused-handle-close {1008,1011}]
[--interrupted-turn-complete-s S] [--tool-call-close-every N]
[--connection-s S --go-away-before-s S] [--av-limit-s S] [--wpm N]``

It imitates the real service (``Realism()``) unless ``--ideal`` asks for the idealised
emulator (``Realism.ideal()``); the other flags change one realistic behaviour each. It
binds 127.0.0.1 unless ``--host`` says otherwise, and prints the URL, the certificate to
trust and a line of Python to connect with.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import sys
from typing import Any

from .realism import (
    REAL_INTERRUPTED_TURN_COMPLETE_S,
    REAL_PONG_DELAY_S,
    REFUSED_HANDLE_CODES,
    Realism,
)
from .responder import DefaultResponder
from .server import LiveEmulator
from .sessions import Lifetimes


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m screenshare_widget.emulator",
        description="A local Gemini Live API emulator (TLS WebSocket) for offline demos and tests.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default: any free port)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every connection")
    _add_realism_flags(parser)
    _add_lifetime_flags(parser)
    parser.add_argument("--wpm", type=int, default=None, help="speaking rate of the replies")
    return parser.parse_args(argv)


def _add_realism_flags(parser: argparse.ArgumentParser) -> None:
    """The flags :func:`realism_of` reads: ``--ideal`` and one per realistic behaviour."""
    parser.add_argument(
        "--ideal",
        action="store_true",
        help="the idealised emulator: instant pongs, answers after goAway, per-turn usage, ...",
    )
    parser.add_argument(
        "--pong-delay-s",
        type=float,
        default=None,
        help=f"answer pings this late (s; default {REAL_PONG_DELAY_S:g}, 0 with --ideal)",
    )
    parser.add_argument(
        "--refused-handle-close",
        type=int,
        choices=sorted(REFUSED_HANDLE_CODES),
        default=None,
        help="close code for an unknown or expired resumption handle (default 1011)",
    )
    parser.add_argument(
        "--interrupted-turn-complete-s",
        type=float,
        default=None,
        help="turnComplete this long after interrupted (s; default "
        f"{REAL_INTERRUPTED_TURN_COMPLETE_S:g})",
    )
    parser.add_argument(
        "--tool-call-close-every",
        type=int,
        default=None,
        help="close 1008 after every Nth toolCall (default never)",
    )


def realism_of(args: argparse.Namespace) -> Realism:
    """The :class:`Realism` the flags ask for."""
    realism = Realism.ideal() if args.ideal else Realism()
    changes: dict[str, Any] = {}
    if args.pong_delay_s is not None:
        changes["pong_delay_s"] = args.pong_delay_s
    if args.refused_handle_close is not None:
        changes["refused_handle_close"] = args.refused_handle_close
    if args.interrupted_turn_complete_s is not None:
        changes["interrupted_turn_complete_s"] = args.interrupted_turn_complete_s
    if args.tool_call_close_every is not None:
        changes["tool_call_close_every"] = args.tool_call_close_every
    return dataclasses.replace(realism, **changes)


def _add_lifetime_flags(parser: argparse.ArgumentParser) -> None:
    """The flags :func:`lifetimes_of` reads (seconds; by default the realism's lifetimes)."""
    parser.add_argument(
        "--connection-s",
        type=float,
        default=None,
        help="end each connection after this (s; default 600, none with --ideal)",
    )
    parser.add_argument(
        "--go-away-before-s",
        type=float,
        default=None,
        help="goAway this long before the end (s; default 50, 60 with --ideal)",
    )
    parser.add_argument(
        "--av-limit-s",
        type=float,
        default=None,
        help="end audio+video sessions without context compression after this "
        "(s; default 120, none with --ideal)",
    )


def lifetimes_of(args: argparse.Namespace, realism: Realism) -> Lifetimes:
    """The :class:`Lifetimes` the flags ask for: ``realism``'s unless one is given."""
    default = realism.lifetimes()
    return dataclasses.replace(
        default,
        connection_s=args.connection_s if args.connection_s is not None else default.connection_s,
        go_away_before_s=(
            args.go_away_before_s if args.go_away_before_s is not None else default.go_away_before_s
        ),
        av_limit_s=args.av_limit_s if args.av_limit_s is not None else default.av_limit_s,
    )


async def _serve(args: argparse.Namespace) -> None:
    realism = realism_of(args)
    lifetimes = lifetimes_of(args, realism)
    responder = DefaultResponder(wpm=args.wpm) if args.wpm else None
    async with LiveEmulator(
        host=args.host, port=args.port, lifetimes=lifetimes, responder=responder, realism=realism
    ) as emu:
        print(f"Live emulator: {emu.url}")
        print(f"certificate:   {emu.cafile}")
        print("connect with:")
        print(
            '  genai.Client(api_key="emulator", http_options=types.HttpOptions('
            f'base_url="{emu.url}", async_client_args={{"ssl": '
            f'ssl.create_default_context(cafile="{emu.cafile}")}}))'
        )
        print(f"behaviour: {'idealised (--ideal)' if args.ideal else 'like the real service'}")
        print("Ctrl-C to stop.", flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parse(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"warning: binding {args.host}: the emulator accepts any API key from anyone "
            "who can reach it",
            file=sys.stderr,
        )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
