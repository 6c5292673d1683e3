"""The persistent-memory model: device, trace, crash points, crash states and images."""

from .crash import CrashImage, CrashPoint, CrashState, CrashTimeline, GroupOutcome, Strategy, distinct
from .device import PMem
from .pages import Pages
from .persistency import EadrPoints, PointKind
from .stateid import StateId
from .trace import LINE, PAGE, WORD, Domain, Event, EventKind, last_store, never_stored, writers_of

__all__ = [
    "LINE",
    "PAGE",
    "WORD",
    "CrashImage",
    "CrashPoint",
    "CrashState",
    "CrashTimeline",
    "Domain",
    "EadrPoints",
    "Event",
    "EventKind",
    "GroupOutcome",
    "PMem",
    "Pages",
    "PointKind",
    "StateId",
    "Strategy",
    "distinct",
    "last_store",
    "never_stored",
    "writers_of",
]
