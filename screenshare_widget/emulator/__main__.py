"""Run the Live emulator from the command line until Ctrl-C.

``python -m screenshare_widget.emulator [--port N] [--host 127.0.0.1] [-v]
[--connection-s S --go-away-before-s S] [--av-limit-s S] [--wpm N]``

It binds 127.0.0.1 unless ``--host`` says otherwise, and prints the URL, the certificate to
trust and a line of Python to connect with.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys

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
    parser.add_argument(
        "--connection-s", type=float, default=None, help="end each connection after this (s)"
    )
    parser.add_argument(
        "--go-away-before-s", type=float, default=60.0, help="goAway this long before the end (s)"
    )
    parser.add_argument(
        "--av-limit-s",
        type=float,
        default=None,
        help="end audio+video sessions without context compression after this (s)",
    )
    parser.add_argument("--wpm", type=int, default=None, help="speaking rate of the replies")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    lifetimes = Lifetimes(
        connection_s=args.connection_s,
        go_away_before_s=args.go_away_before_s,
        av_limit_s=args.av_limit_s,
    )
    responder = DefaultResponder(wpm=args.wpm) if args.wpm else None
    async with LiveEmulator(
        host=args.host, port=args.port, lifetimes=lifetimes, responder=responder
    ) as emu:
        print(f"Live emulator: {emu.url}")
        print(f"certificate:   {emu.cafile}")
        print("connect with:")
        print(
            '  genai.Client(api_key="emulator", http_options=types.HttpOptions('
            f'base_url="{emu.url}", async_client_args={{"ssl": '
            f'ssl.create_default_context(cafile="{emu.cafile}")}}))'
        )
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
