"""The server messages a script sends, by name: the emulator's vocabulary of the Live protocol.

Internal module. The builders make one message each; :class:`ServerMessages` gives a
connection one method per message, each sent with the connection's ``send`` (which applies
the connection's :class:`Realism`). Audio is standard base64, as the service sends it.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any, Final

from ..protocol import OUTPUT_RATE_HZ, SAMPLE_BYTES
from .realism import Realism
from .sessions import duration_string
from .traffic import SentMessage

#: Default audio chunk of :meth:`ServerMessages.send_audio` (milliseconds).
DEFAULT_CHUNK_MS: Final = 100
#: Mime type of model audio.
OUTPUT_MIME: Final = f"audio/pcm;rate={OUTPUT_RATE_HZ}"


def audio_message(pcm24k: bytes, *, role: bool = False) -> dict[str, Any]:
    """A ``serverContent.modelTurn`` message carrying one chunk of 24 kHz PCM16.

    ``role`` adds ``"role": "model"`` to the turn, as the service does (R1).
    """
    turn: dict[str, Any] = {
        "parts": [
            {
                "inlineData": {
                    "mimeType": OUTPUT_MIME,
                    "data": base64.b64encode(pcm24k).decode("ascii"),
                }
            }
        ]
    }
    if role:
        turn["role"] = "model"
    return {"serverContent": {"modelTurn": turn}}


def sent_message(connection: int, obj: dict[str, Any], t: float) -> SentMessage:
    """What :class:`Traffic` keeps of a server message the emulator sent at ``t``."""
    keys: list[str] = list(obj)[:1]
    audio = b""
    content = obj.get("serverContent")
    if isinstance(content, dict):
        keys += [key for key, value in content.items() if value not in (None, False)]
        turn = content.get("modelTurn")
        parts = turn.get("parts") if isinstance(turn, dict) else None
        for part in parts if isinstance(parts, list) else []:
            inline = part.get("inlineData") if isinstance(part, dict) else None
            if not isinstance(inline, dict):
                continue
            data = inline.get("data")
            if isinstance(data, str) and str(inline.get("mimeType", "")).startswith("audio/"):
                audio += base64.b64decode(data)
    return SentMessage(t, connection, tuple(keys), audio)


def chunks(pcm: bytes, chunk_ms: int, rate: int = OUTPUT_RATE_HZ) -> list[bytes]:
    """Split PCM16 into chunks of ``chunk_ms`` milliseconds (the last may be shorter)."""
    size = max(SAMPLE_BYTES, rate * SAMPLE_BYTES * chunk_ms // 1000 // SAMPLE_BYTES * SAMPLE_BYTES)
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


class ServerMessages:
    """One method per server message; a subclass provides :meth:`send` and :attr:`realism`."""

    realism: Realism

    async def send(self, obj: dict[str, Any]) -> None:
        """Send one raw server message (the connection's, with its checks)."""
        raise NotImplementedError

    async def send_audio(
        self, pcm24k: bytes, *, chunk_ms: int = DEFAULT_CHUNK_MS, pace: float | None = None
    ) -> None:
        """Send 24 kHz PCM16 as ``modelTurn`` inline data in chunks of ``chunk_ms``.

        ``pace=None`` sends as fast as possible; ``1.0`` in real time, ``2.0`` twice as fast.
        Cancellation stops between chunks.
        """
        loop = asyncio.get_running_loop()
        start = loop.time()
        offset_s = 0.0
        for chunk in chunks(pcm24k, chunk_ms):
            if pace is not None and pace > 0:
                delay = start + offset_s / pace - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            await self.send(audio_message(chunk, role=self.realism.model_role))
            offset_s += len(chunk) / (OUTPUT_RATE_HZ * SAMPLE_BYTES)

    async def input_transcription(self, text: str) -> None:
        """Send ``serverContent.inputTranscription``."""
        await self.send({"serverContent": {"inputTranscription": {"text": text}}})

    async def output_transcription(self, text: str) -> None:
        """Send ``serverContent.outputTranscription``."""
        await self.send({"serverContent": {"outputTranscription": {"text": text}}})

    async def voice_activity_start(self, offset_s: float) -> None:
        """Send ``voiceActivity`` ``ACTIVITY_START`` at ``offset_s`` seconds into the audio."""
        activity = {"type": "ACTIVITY_START", "audioOffset": duration_string(offset_s)}
        await self.send({"voiceActivity": activity})

    async def voice_activity_end(self) -> None:
        """Send ``voiceActivity`` ``ACTIVITY_END`` next to an empty ``serverContent`` (R2)."""
        await self.send({"serverContent": {}, "voiceActivity": {"type": "ACTIVITY_END"}})

    async def interrupted(self) -> None:
        """Send ``serverContent.interrupted`` (the user barged in)."""
        await self.send({"serverContent": {"interrupted": True}})

    async def generation_complete(self) -> None:
        """Send ``serverContent.generationComplete``."""
        await self.send({"serverContent": {"generationComplete": True}})

    async def turn_complete(self, usage: dict[str, Any] | None = None) -> None:
        """Send ``serverContent.turnComplete``, with ``usageMetadata`` if given."""
        message: dict[str, Any] = {"serverContent": {"turnComplete": True}}
        if usage is not None:
            message["usageMetadata"] = usage
        await self.send(message)

    async def go_away(self, time_left: str = "5s") -> None:
        """Send ``goAway`` with ``timeLeft`` as a protobuf Duration string."""
        await self.send({"goAway": {"timeLeft": time_left}})

    async def resumption_update(self, handle: str, resumable: bool = True) -> None:
        """Send ``sessionResumptionUpdate``."""
        await self.send({"sessionResumptionUpdate": {"newHandle": handle, "resumable": resumable}})

    async def tool_call(self, calls: list[dict[str, Any]]) -> None:
        """Send ``toolCall`` with these ``functionCalls`` (``{"id", "name", "args"}``)."""
        await self.send({"toolCall": {"functionCalls": calls}})

    async def tool_call_cancellation(self, ids: list[str]) -> None:
        """Send ``toolCallCancellation``."""
        await self.send({"toolCallCancellation": {"ids": ids}})
