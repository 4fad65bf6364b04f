"""screenshare-widget: a live, screen-aware voice assistant in a notebook cell.

>>> from screenshare_widget import ScreenShareAssistant
>>> assistant = ScreenShareAssistant()
>>> assistant            # displays the widget; click "Share screen & mic" and talk
>>> assistant.transcript.to_pandas()
"""

from .events import Event, Events, Frames, Handover, SentFrame
from .session import Usage
from .transcript import Transcript, Turn
from .widget import ScreenShareAssistant

__version__ = "0.1.0"

__all__ = [
    "Event",
    "Events",
    "Frames",
    "Handover",
    "ScreenShareAssistant",
    "SentFrame",
    "Transcript",
    "Turn",
    "Usage",
    "__version__",
]
