"""Run the Live emulator from the command line until Ctrl-C.

``python -m screenshare_widget.emulator [--port N] [--host 127.0.0.1] [-v]``

It binds 127.0.0.1 unless ``--host`` says otherwise, and prints the URL, the certificate to
trust and a line of Python to connect with.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys

from .server import LiveEmulator


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m screenshare_widget.emulator",
        description="A local Gemini Live API emulator (TLS WebSocket) for offline demos and tests.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default: any free port)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every connection")
    return parser.parse_args(argv)


async def _serve(host: str, port: int) -> None:
    async with LiveEmulator(host=host, port=port) as emu:
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
        asyncio.run(_serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
