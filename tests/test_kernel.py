"""The widget in a real kernel: made in a cell, driven over its comm like the page does,
relaying to the local emulator through the real SDK, and still running after the cell ended."""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel

from screenshare_widget.emulator import LiveEmulator

from .conftest import wait_until
from .media import chunks, fake_jpeg, silence_pcm, speech_pcm

pytestmark = pytest.mark.kernel


class Kernel:
    """A kernel plus a thread that collects everything it publishes."""

    def __init__(self, km: KernelManager, kc: BlockingKernelClient) -> None:
        self.km, self.kc = km, kc
        self.iopub: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self.kc.get_iopub_msg(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(msg)

    def execute(self, code: str, timeout: float = 30) -> str:
        """Run ``code``; return its stdout. Fails on an error reply."""
        msg_id = self.kc.execute(code)
        reply = self.kc.get_shell_msg(timeout=timeout)
        assert reply["parent_header"]["msg_id"] == msg_id
        assert reply["content"]["status"] == "ok", reply["content"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # wait for the idle status that ends the output
            if any(
                m["msg_type"] == "status"
                and m["parent_header"].get("msg_id") == msg_id
                and m["content"]["execution_state"] == "idle"
                for m in list(self.seen)
            ):
                break
            time.sleep(0.02)
        return "".join(
            m["content"]["text"]
            for m in list(self.seen)
            if m["msg_type"] == "stream" and m["parent_header"].get("msg_id") == msg_id
        )

    def send_custom(self, comm_id: str, content: dict[str, Any], buffers: list[bytes] = ()) -> None:
        """What ``model.send(content, undefined, buffers)`` in the page does."""
        msg = self.kc.session.msg(
            "comm_msg", {"comm_id": comm_id, "data": {"method": "custom", "content": content}}
        )
        self.kc.session.send(self.kc.shell_channel.socket, msg, buffers=list(buffers))

    def custom_from_kernel(self, kind: str) -> list[tuple[dict[str, Any], list[bytes]]]:
        out = []
        for m in list(self.seen):
            if m["msg_type"] != "comm_msg":
                continue
            data = m["content"]["data"]
            if data.get("method") == "custom" and data["content"].get("kind") == kind:
                out.append((data["content"], [bytes(b) for b in m.get("buffers", [])]))
        return out

    def state_updates(self, name: str) -> list[Any]:
        return [
            m["content"]["data"]["state"][name]
            for m in list(self.seen)
            if m["msg_type"] == "comm_msg"
            and m["content"]["data"].get("method") == "update"
            and name in m["content"]["data"].get("state", {})
        ]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.fixture
def emulator() -> Iterator[LiveEmulator]:
    emu = LiveEmulator().start_in_thread()
    yield emu
    emu.stop()


@pytest.fixture
def kernel() -> Iterator[Kernel]:
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
    km, kc = start_new_kernel(kernel_name="python3", env=env, startup_timeout=60)
    k = Kernel(km, kc)
    yield k
    k.close()


def test_widget_relays_in_a_real_kernel(emulator: LiveEmulator, kernel: Kernel) -> None:
    out = kernel.execute(
        "from screenshare_widget import ScreenShareAssistant\n"
        "from screenshare_widget.gemini import client_for_emulator\n"
        f"assistant = ScreenShareAssistant(client=client_for_emulator({emulator.url!r}, "
        f"{emulator.cafile!r}))\n"
        "print(assistant.model_id)\n"
    )
    comm_id = out.strip()
    assert comm_id

    kernel.send_custom(comm_id, {"kind": "hello"})
    wait_until(lambda: kernel.custom_from_kernel("snapshot"), 10, "a snapshot answering hello")

    kernel.send_custom(comm_id, {"kind": "start"})
    wait_until(lambda: "live" in kernel.state_updates("status"), 15, "status live")

    utterance = speech_pcm("What is on my screen right now?") + silence_pcm(1.5)
    sent = chunks(utterance)
    frame = fake_jpeg(1024, 576, b"\x00" * 500)
    kernel.send_custom(
        comm_id,
        {"kind": "frame", "seq": 0, "t": time.time() * 1000, "width": 1024, "height": 576},
        [frame],
    )
    for seq, chunk in enumerate(sent):
        kernel.send_custom(comm_id, {"kind": "audio", "seq": seq, "t": time.time() * 1000}, [chunk])

    rec = emulator.traffic
    assert rec.wait_for(lambda r: len(b"".join(a.data for a in r.audio)) >= len(utterance), 20)
    assert b"".join(a.data for a in rec.audio) == utterance  # intact, in order
    assert [f.data for f in rec.frames] == [frame]
    assert (rec.frames[0].width, rec.frames[0].height) == (1024, 576)

    # The emulator answers; model audio and the transcript come back over the comm.
    wait_until(
        lambda: kernel.custom_from_kernel("turn_complete"), 30, "the model's turn to complete"
    )
    audio_back = b"".join(b for _, bufs in kernel.custom_from_kernel("audio") for b in bufs)
    assert len(audio_back) > 24_000 * 2 * 0.5  # more than half a second of 24 kHz speech
    turns = [c["turn"] for c, _ in kernel.custom_from_kernel("turn")]
    assert any(t["role"] == "model" and "spoke for" in t["text"] for t in turns)

    # The cell that made the widget returned long ago; a later cell reads the live data.
    out = kernel.execute(
        "import json\n"
        "print(json.dumps({'status': assistant.status,"
        " 'turns': [t.to_record() for t in assistant.transcript],"
        " 'sent': assistant.stats.audio_bytes_sent}))"
    )
    data = json.loads(out)
    assert data["status"] == "live"
    assert data["sent"] == len(utterance)
    roles = [t["role"] for t in data["turns"]]
    assert roles[:2] == ["user", "model"]
    assert "spoke for" in data["turns"][1]["text"]

    kernel.execute("assistant.stop()")
    wait_until(lambda: kernel.state_updates("status")[-1:] == ["idle"], 10, "status idle")
    assert any(c["reason"] == "" for c, _ in kernel.custom_from_kernel("stop"))


def test_volume_and_mute_go_both_ways_over_the_comm(emulator: LiveEmulator, kernel: Kernel) -> None:
    """A cell's ``assistant.volume`` reaches the page as a state update; the page's slider
    and mute button (``set`` messages) change the traits in the kernel, whose value comes
    back to the page; a volume out of range from the page is refused and said in the cell."""
    out = kernel.execute(
        "from screenshare_widget import ScreenShareAssistant\n"
        "from screenshare_widget.gemini import client_for_emulator\n"
        f"assistant = ScreenShareAssistant(client=client_for_emulator({emulator.url!r}, "
        f"{emulator.cafile!r}))\n"
        "print(assistant.model_id)\n"
    )
    comm_id = out.strip()
    kernel.execute("assistant.volume = 0.25")
    wait_until(lambda: kernel.state_updates("volume") == [0.25], 10, "the volume in the page")

    kernel.send_custom(comm_id, {"kind": "set", "name": "volume", "value": 0.5})
    kernel.send_custom(comm_id, {"kind": "set", "name": "muted", "value": True})
    wait_until(lambda: kernel.state_updates("muted") == [True], 10, "mute back in the page")
    assert kernel.state_updates("volume") == [0.25, 0.5]

    kernel.send_custom(comm_id, {"kind": "set", "name": "volume", "value": 2})
    wait_until(
        lambda: any("volume from the page was not applied" in e
                    for e in kernel.state_updates("error")),
        10, "the refusal in the cell",
    )  # fmt: skip
    out = kernel.execute("print(assistant.volume, assistant.muted, assistant.rejected_messages)")
    assert out.split() == ["0.5", "True", "1"]
    assert kernel.state_updates("volume") == [0.25, 0.5]
