"""A private PulseAudio daemon with real (software) audio devices for the browser tests.

The devices: a sink ``speaker`` (where Chromium plays the model's voice), a sink ``room`` (the
air the microphone hears), an echo path ``speaker.monitor -> room`` (module-loopback, whose
delay is set at start and whose gain a test sets with :meth:`Pulse.set_echo_gain`), and a
source ``mic`` that hears the room (Chromium does not take a ``.monitor`` source as a
microphone, so the monitor is wrapped by module-remap-source). User speech is played into
the room with :meth:`Pulse.play`. A test can add and remove devices while the browser runs
(:meth:`Pulse.load` and :meth:`Pulse.unload`).

Everything lives under one folder: the runtime dir (socket, pid), the daemon's config (its
sample rate) and its log. The daemon speaks only on its unix socket, so nothing leaves the
machine. Chromium finds it through :meth:`Pulse.env` (``PULSE_SERVER``, ``XDG_RUNTIME_DIR``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

#: Echo path gains (PulseAudio's cubic volume, %): 60 % is -13.3 dB, an echo about 15 dB
#: below the model's voice at the speaker, as on a laptop; 100 % is as loud as the voice.
ECHO_NORMAL = 60
ECHO_LOUD = 100
#: How long the daemon may take to answer after start (s).
START_TIMEOUT_S = 10.0


class PulseMissing(RuntimeError):
    """pulseaudio or pactl is not installed."""


def require_pulse() -> None:
    """Raise :class:`PulseMissing` with the install command when the programs are missing."""
    for program in ("pulseaudio", "pactl", "pacat", "parec"):
        if shutil.which(program) is None:
            raise PulseMissing(
                f"{program} is not installed, so the real-device browser tests cannot run: "
                "install it with `apt-get install pulseaudio pulseaudio-utils` "
                "(or run `./dev test`, which does)."
            )


@dataclass
class Pulse:
    """One private PulseAudio daemon; ``rate_hz`` is the devices' sample rate."""

    folder: Path
    rate_hz: int = 48_000
    echo_latency_ms: int = 30
    modules: dict[str, int] = field(default_factory=dict)

    @property
    def runtime(self) -> Path:
        return self.folder / "xdg"

    @property
    def socket(self) -> Path:
        return self.runtime / "pulse" / "native"

    def env(self) -> dict[str, str]:
        """What a client (Chromium, pactl) needs in its environment to use this daemon."""
        return {"PULSE_SERVER": f"unix:{self.socket}", "XDG_RUNTIME_DIR": str(self.runtime)}

    def script(self) -> str:
        rate = self.rate_hz
        return "\n".join(
            [
                f"load-module module-native-protocol-unix auth-anonymous=1 socket={self.socket}",
                f"load-module module-null-sink sink_name=speaker rate={rate} channels=2 "
                "sink_properties=device.description=speaker",
                f"load-module module-null-sink sink_name=room rate={rate} channels=2 "
                "sink_properties=device.description=room",
                "load-module module-loopback source=speaker.monitor sink=room "
                f"latency_msec={self.echo_latency_ms} source_dont_move=true sink_dont_move=true",
                "load-module module-remap-source master=room.monitor source_name=mic "
                "source_properties=device.description=mic",
                "set-default-sink speaker",
                "set-default-source mic",
                "",
            ]
        )

    def start(self) -> Pulse:
        """Start the daemon (a running one in this folder is killed first)."""
        require_pulse()
        self.stop()
        (self.runtime / "pulse").mkdir(parents=True, exist_ok=True)
        self.runtime.chmod(0o700)
        config = self.folder / "daemon.conf"
        config.write_text(
            f"default-sample-rate = {self.rate_hz}\n"
            f"alternate-sample-rate = {self.rate_hz}\n"
            "default-sample-channels = 2\n"
            "exit-idle-time = -1\n"
        )
        script = self.folder / "devices.pa"
        script.write_text(self.script())
        env = {**os.environ, **self.env(), "PULSE_CONFIG": str(config)}
        subprocess.run(
            [
                "pulseaudio",
                "-n",
                "-F",
                str(script),
                "--daemonize=yes",
                "--exit-idle-time=-1",
                f"--log-target=file:{self.folder / 'pulse.log'}",
                "--log-level=info",
            ],
            env=env,
            check=True,
            timeout=30,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while self.pactl_ok("info") is False:
            if time.monotonic() > deadline:
                self.stop()  # a daemon that started but does not answer is not left behind
                raise RuntimeError(f"pulseaudio did not answer:\n{self.log()[-2000:]}")
            time.sleep(0.1)
        return self

    def log(self) -> str:
        path = self.folder / "pulse.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def pactl(self, *args: str) -> str:
        """Run ``pactl`` against this daemon; its output (raises on failure)."""
        done = subprocess.run(
            ["pactl", *args],
            env={**os.environ, **self.env()},
            capture_output=True,
            text=True,
            timeout=15,
        )
        if done.returncode != 0:
            raise RuntimeError(f"pactl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def pactl_ok(self, *args: str) -> bool:
        try:
            self.pactl(*args)
        except (RuntimeError, subprocess.TimeoutExpired):
            return False
        return True

    def short(self, kind: str) -> list[list[str]]:
        """``pactl list short <kind>`` as rows of columns."""
        return [line.split("\t") for line in self.pactl("list", "short", kind).splitlines()]

    def echo_input(self) -> str:
        """The sink-input index of the echo path (the loopback into the room)."""
        for row in self.short("sink-inputs"):
            if len(row) > 3 and row[3] == "module-loopback.c":
                return row[0]
        raise RuntimeError("the echo path (module-loopback) is not running")

    def set_echo_gain(self, percent: int) -> None:
        """Set the echo path's gain (PulseAudio volume %; 0 mutes the echo)."""
        self.pactl("set-sink-input-volume", self.echo_input(), f"{percent}%")

    def load(self, name: str, module: str, *args: str) -> int:
        """Load a module while live (a device plugged in); remembered under ``name``."""
        index = int(self.pactl("load-module", module, *args).strip())
        self.modules[name] = index
        return index

    def unload(self, name: str) -> None:
        """Unload a module loaded by :meth:`load` (the device unplugged)."""
        self.pactl("unload-module", str(self.modules.pop(name)))

    def unload_module(self, module: str) -> None:
        """Unload every module of kind ``module`` (say ``module-remap-source``: the mic)."""
        for row in self.short("modules"):
            if len(row) > 1 and row[1] == module:
                self.pactl("unload-module", row[0])

    def play(self, pcm: bytes, rate_hz: int, sink: str = "room") -> subprocess.Popen[bytes]:
        """Start playing mono PCM16 ``pcm`` at ``rate_hz`` into ``sink``; returns the player
        process (``wait()`` for its end). The room's sound reaches the ``mic`` source."""
        player = subprocess.Popen(
            [
                "pacat",
                "--playback",
                f"--device={sink}",
                "--format=s16le",
                f"--rate={rate_hz}",
                "--channels=1",
                "--latency-msec=20",
            ],
            stdin=subprocess.PIPE,
            env={**os.environ, **self.env()},
        )
        assert player.stdin is not None
        player.stdin.write(pcm)
        player.stdin.close()
        return player

    def record(self, source: str = "mic") -> subprocess.Popen[bytes]:
        """Start recording ``source`` as mono PCM16 at the devices' rate; ``terminate()`` the
        process and read its ``stdout`` for what it heard."""
        return subprocess.Popen(
            [
                "parec",
                f"--device={source}",
                "--format=s16le",
                f"--rate={self.rate_hz}",
                "--channels=1",
                "--latency-msec=20",
            ],
            stdout=subprocess.PIPE,
            env={**os.environ, **self.env()},
        )

    def stop(self) -> None:
        """Stop the daemon of this folder, if one runs. Idempotent."""
        if shutil.which("pulseaudio") is None or not self.socket.exists():
            return
        subprocess.run(
            ["pulseaudio", "--kill"],
            env={**os.environ, **self.env()},
            capture_output=True,
            timeout=15,
        )
        deadline = time.monotonic() + 5
        while self.pactl_ok("info") and time.monotonic() < deadline:
            time.sleep(0.1)
