"""A zoom on a file's small bad ranges, under its row in the picture's "Files after recovery" band.

A 64-byte bad run in a 4096-byte file is a sliver on the files axis: what was
found there, word by word, cannot be seen. So a file whose bad runs are small
gets a second axis under its row, a few cache lines wide, tied by a box and two
lines to the part of the row it magnifies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import ConnectionPatch, Rectangle

from ..pmem import LINE
from .scene import BLOCK, BadRun, FileView, Scene

__all__ = [
    "ZOOM_ROWS",
    "Paint",
    "Window",
    "add_zooms",
    "axis_end",
    "row_tops",
    "zoom_ticks",
    "zoom_window",
    "zoom_windows",
]

Window = tuple[int, int]
"""File bytes [lo, hi) a zoom shows."""
Paint = Callable[[Axes, BadRun, float, float], None]
"""Draws one bad run on an axis, its row's top at y, at least so wide: the files band's own style."""

ZOOM_ROWS = 2.0
"""The height, in file rows, a zoom adds under its file: the link lines, the zoom axis and its ticks."""
_SMALL = 1 / 32
"""A bad run narrower than this share of the files axis cannot be read there: it is zoomed on."""
_NARROW = 1 / 4
"""A window wider than this share of the files axis would not magnify enough to be worth a zoom."""
_TOP, _HEIGHT = 1.55, 0.55
"""Where a zoom axis sits under its file's row top, and how tall it is, in file rows."""
_SHARE = 0.5
"""The zoom axis's width, as a share of the files axis."""
_WORD = 8


def axis_end(scene: Scene) -> int:
    """The files axis's right end: every file rounded up to whole blocks, and every bad run."""
    return max([-(-fv.size // BLOCK) * BLOCK for fv in scene.files] + [r.end for r in scene.bad] + [BLOCK])


def zoom_window(runs: Sequence[BadRun], end: int) -> Window | None:
    """The bytes a zoom shows around a file's small runs, out to whole cache lines plus a line of context each
    side; None when no run is small, or when the window would not be much narrower than the axis (0 to `end`)."""
    small = [r for r in runs if r.end - r.start <= end * _SMALL]
    if not small:
        return None
    lo = max(0, min(r.start for r in small) // LINE * LINE - LINE)
    hi = min(end, -(-max(r.end for r in small) // LINE) * LINE + LINE)
    return (lo, hi) if hi - lo <= end * _NARROW else None


def zoom_windows(scene: Scene) -> dict[str, Window]:
    """The window of each drawn file that gets a zoom."""
    end = axis_end(scene)
    out = {}
    for fv in scene.files:
        window = zoom_window([r for r in scene.bad if r.file == fv.name], end)
        if window is not None:
            out[fv.name] = window
    return out


def row_tops(files: Sequence[FileView], windows: Mapping[str, Window]) -> tuple[list[float], float]:
    """Each file row's top on the files axis, in rows (a zoomed file leaves room under it), and their total."""
    tops, y = [], 0.0
    for fv in files:
        tops.append(y)
        y += 1 + (ZOOM_ROWS if fv.name in windows else 0)
    return tops, y


def zoom_ticks(lo: int, hi: int) -> tuple[list[int], list[int]]:
    """Labelled byte offsets (at most eight steps across, on word multiples) and a minor tick per word when few."""
    step = next(_WORD << k for k in range(64) if (hi - lo) <= 8 * (_WORD << k))
    major = list(range(-(-lo // step) * step, hi + 1, step))
    minor = list(range(-(-lo // _WORD) * _WORD, hi + 1, _WORD)) if hi - lo <= 96 * _WORD else []
    return major, minor


def add_zooms(fig: Figure, files_ax: Axes, scene: Scene, windows: Mapping[str, Window], paint: Paint) -> None:
    """A zoom axis under each zoomed file's row, placed under the bytes it shows (`files_ax` must be drawn)."""
    tops, rows = row_tops(scene.files, windows)
    pos = files_ax.get_position()
    end = axis_end(scene)
    for fv, top in zip(scene.files, tops, strict=True):
        window = windows.get(fv.name)
        if window is None:
            continue
        y1 = pos.y1 - (top + _TOP) / rows * pos.height
        y0 = pos.y1 - (top + _TOP + _HEIGHT) / rows * pos.height
        width = _SHARE * pos.width
        mid = pos.x0 + (window[0] + window[1]) / 2 / end * pos.width
        x0 = min(max(pos.x0, mid - width / 2), pos.x1 - width)
        ax = fig.add_axes((x0, y0, width, y1 - y0))
        ax.set_label(f"zoom:{fv.name}")
        _draw_zoom(ax, fv, [r for r in scene.bad if r.file == fv.name], window, paint)
        _tie(fig, files_ax, ax, top, window, fv.name)


def _draw_zoom(ax: Axes, fv: FileView, runs: Sequence[BadRun], window: Window, paint: Paint) -> None:
    lo, hi = window
    ax.set_xlim(lo, hi)
    ax.set_ylim(1, 0)
    ax.set_yticks([])
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    eof, block_end = fv.size, -(-fv.size // BLOCK) * BLOCK
    if eof > lo:
        ax.add_patch(Rectangle((lo, 0.1), min(eof, hi) - lo, 0.7, facecolor="#fafafa", edgecolor="none"))
    if max(eof, lo) < min(block_end, hi):
        tail = max(eof, lo)
        ax.add_patch(Rectangle((tail, 0.1), min(block_end, hi) - tail, 0.7, facecolor="#e4e4e4", edgecolor="none"))
    if lo <= eof <= hi:
        ax.plot([eof, eof], [0.02, 0.88], color="#333333", lw=1.2, ls="--", gid=f"zoom-eof:{fv.name}")
        ax.text(eof, 0.02, f" EOF {eof}", fontsize=7, va="bottom", ha="left", color="#333333")
    for run in runs:
        if run.start < hi and lo < run.end:
            paint(ax, run, 0.0, (hi - lo) / 500)
    major, minor = zoom_ticks(lo, hi)
    ax.set_xticks(major, [str(t) for t in major], fontsize=7.5)
    ax.set_xticks(minor, minor=True)
    ax.tick_params(axis="x", which="both", length=2, colors="#666666")
    ax.text(
        -0.01,
        0.45,
        f"{fv.name} [{lo}, {hi})\nzoomed",
        transform=ax.transAxes,
        ha="right",
        va="center",
        fontsize=8,
        linespacing=1.1,
        gid=f"zoom-label:{fv.name}",
    )


def _tie(fig: Figure, files_ax: Axes, zoom_ax: Axes, top: float, window: Window, name: str) -> None:
    """A box on the file's row around the window, and lines from its corners to the zoom's: what is magnified."""
    lo, hi = window
    box = Rectangle((lo, top + 0.04), hi - lo, 0.82, fill=False, ec="#222222", lw=1.1, zorder=6, gid=f"zoom-box:{name}")
    files_ax.add_patch(box)
    for x, corner in ((lo, 0.0), (hi, 1.0)):
        link = ConnectionPatch(
            (x, top + 0.86),
            (corner, 1.0),
            coordsA=files_ax.transData,
            coordsB=zoom_ax.transAxes,
            color="#777777",
            lw=0.7,
            gid=f"zoom-link:{name}",
        )
        fig.add_artist(link)
