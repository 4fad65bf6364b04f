"""screenshare-widget: a live, screen-aware voice assistant in a notebook cell.

>>> from screenshare_widget import ScreenShareAssistant
>>> assistant = ScreenShareAssistant()
>>> assistant            # displays the widget; click "Share screen & mic" and talk
>>> assistant.transcript.to_pandas()
>>> assistant.system_instruction = "Answer in one sentence."   # from the next turn
>>> await assistant.ask("What is on my screen?")
>>> take = assistant.record("take-1"); ...; assistant.stop_recording()
>>> screenshare_widget.compare("take-1", instructions=["Be brief.", "Be thorough."])
"""

from .backend import Usage
from .compare import acompare, compare
from .events import Event, Events, Frames, Handover, SentFrame
from .instructions import Instruction, Instructions
from .pricing import Spend, UsageLog
from .recording import Recorder, Recording
from .relay import SessionEnded
from .transcript import Transcript, Turn
from .widget import ScreenShareAssistant

__version__ = "0.1.0"

__all__ = [
    "Event",
    "Instruction",
    "Instructions",
    "Recorder",
    "Recording",
    "SessionEnded",
    "acompare",
    "compare",
    "Events",
    "Frames",
    "Handover",
    "ScreenShareAssistant",
    "SentFrame",
    "Spend",
    "Transcript",
    "Turn",
    "Usage",
    "UsageLog",
    "__version__",
]
