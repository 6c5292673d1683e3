"""Sight: campaign plots and finding pictures.

`load_campaign` and `build_scene` compute what is drawn without matplotlib;
`campaign_figure`, `plot_campaign`, `finding_figure` and `render_picture` draw
it and need the optional extra (`pip install 'pmfuzz[plot]'`). They return or
save a matplotlib `Figure` built without pyplot, so they are headless and
thread-safe.
"""

from __future__ import annotations

from typing import Any

from .scene import BadKind, BadRun, FileView, InFlightLine, LineFate, Region, Scene, build_scene, device_regions
from .stats import Campaign, FindingEvent, StatsRecord, load_campaign

__all__ = [
    "BadKind",
    "BadRun",
    "Campaign",
    "FileView",
    "FindingEvent",
    "InFlightLine",
    "LineFate",
    "Region",
    "Scene",
    "StatsRecord",
    "build_scene",
    "campaign_figure",
    "device_regions",
    "finding_figure",
    "load_campaign",
    "plot_campaign",
    "render_picture",
]

_DRAWING = {
    "campaign_figure": "plot",
    "plot_campaign": "plot",
    "finding_figure": "picture",
    "render_picture": "picture",
}


def __getattr__(name: str) -> Any:
    """The drawing functions, imported on first use so that importing sight never needs matplotlib."""
    mod = _DRAWING.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    from .cli import require_matplotlib

    require_matplotlib()
    return getattr(import_module(f"{__name__}.{mod}"), name)
