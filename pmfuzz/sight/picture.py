"""A finding as a picture: the device's regions, the cache lines in flight at the crash, and the bad words.

Three bands, top to bottom, so the eye goes from where things are to what
went wrong: the whole device as a strip of its regions (with the in-flight
lines and the bad blocks marked on it); a zoom on each block involved, one cell
per 64-byte cache line, coloured kept or dropped and labelled with the code
site that wrote it; and each affected file with the words that broke an
oracle, coloured by what was found there (with a zoom on bad ranges too small
to read there, see `file_zoom`). The headline names the cause and, when the
scene knows the line that matters, the site and op whose store the crash lost.
"""

from __future__ import annotations

import itertools
import math
import re
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from ..errors import PmfuzzError
from ..judging.engine import Finding, Verdict
from ..judging.repro import Reproducer
from ..pmem import LINE
from ..signature import Cause, How
from .file_zoom import Window, add_zooms, axis_end, row_tops, zoom_windows
from .output import save_figure
from .scene import BLOCK, BadKind, BadRun, InFlightLine, LineFate, Region, Scene, build_scene

__all__ = ["finding_figure", "render_picture", "FATE_COLORS", "BAD_COLORS"]

FATE_COLORS = {LineFate.KEPT: "#2e9e44", LineFate.DROPPED: "#d7301f", LineFate.PARTIAL: "#f2a900"}
BAD_COLORS = {
    BadKind.POISON: "#7b3294",
    BadKind.FOREIGN: "#e7298a",
    BadKind.MISPLACED: "#b35806",
    BadKind.NEVER_HELD: "#636363",
    BadKind.OLDER: "#2166ac",
    BadKind.LOST: "#92c5de",
    BadKind.MIXED_COW: "#e08214",
}
_REGION_COLORS = ["#bcd4e6", "#e8dfc0", "#cfe6e0", "#dcd9ec", "#eed9c4", "#dddddd", "#d6e4cf", "#e9e4f0"]
_LINES_PER_BLOCK = BLOCK // LINE
_MAX_ROWS = 10
_MAX_LABELS = 6
_WIDTH = 13.0
_ROW = 0.55
"""Inches per file row in the files band."""
_MIN_CULPRIT = 24
"""Characters of the culprit a headline keeps, however long the rest."""


def _region_color(regions: tuple[Region, ...], i: int) -> str:
    return "#f4f4f4" if regions[i].name.startswith("data") else _REGION_COLORS[i % len(_REGION_COLORS)]


class _Strip:
    """A piecewise-linear device axis: each region gets room by the log of its size, so a one-block
    superblock and a 2,000-block data area are both visible."""

    def __init__(self, regions: tuple[Region, ...]) -> None:
        self.regions = regions
        weights = [max(1.5, math.log2(1 + (r.end - r.start) / BLOCK)) for r in regions]
        edges = np.concatenate([[0.0], np.cumsum(weights)]) / sum(weights)
        self.addr = np.array([regions[0].start] + [r.end for r in regions], dtype=float)
        self.x = edges

    def __call__(self, addr: float) -> float:
        return float(np.interp(addr, self.addr, self.x))


def _involved_blocks(scene: Scene) -> tuple[list[int], int]:
    """Blocks worth a zoom row (most telling first: dropped lines, bad words, fsck complaints, kept lines),
    and how many more did not fit."""
    score: dict[int, int] = {}
    for ln in scene.lines:
        b = ln.addr // BLOCK
        score[b] = max(score.get(b, 0), 3 if ln.fate is not LineFate.KEPT else 1)
    for run in scene.bad:
        for a, e in run.device:
            for b in range(a // BLOCK, (e - 1) // BLOCK + 1):
                score[b] = max(score.get(b, 0), 2)
    for b in scene.fsck_blocks:
        score[b] = max(score.get(b, 0), 2)
    best = sorted(score, key=lambda b: (-score[b], b))[:_MAX_ROWS]
    return sorted(best), len(score) - len(best)


def _line_labels(lines: list[InFlightLine]) -> list[tuple[int, int, str, LineFate]]:
    """Consecutive lines with one fate and one writer, as (first line, last line, label, fate)."""
    out = []
    for (fate, sites, ops), grp in itertools.groupby(lines, key=lambda ln: (ln.fate, ln.sites, ln.ops)):
        g = list(grp)
        runs: list[list[InFlightLine]] = []
        for ln in g:
            if runs and runs[-1][-1].line + 1 == ln.line:
                runs[-1].append(ln)
            else:
                runs.append([ln])
        for run in runs:
            a, b = run[0].line, run[-1].line
            name = f"L{a}" if a == b else f"L{a}-L{b}"
            kept, total = sum(x.kept for x in run), sum(x.total for x in run)
            opt = ",".join(map(str, ops))
            label = f"{name} {fate.value} {kept}/{total} units · {' + '.join(sites)} (op {opt})"
            out.append((a, b, label, fate))
    if len(out) <= _MAX_LABELS:
        return out
    keep = sorted(sorted(out, key=lambda g: (g[3] is LineFate.KEPT, g[0]))[: _MAX_LABELS - 1])
    return [*keep, (-1, -1, f"... and {len(out) - len(keep)} more runs of lines in flight", LineFate.KEPT)]


def finding_figure(scene: Scene) -> Figure:
    """Draw a scene; the Figure is returned (not saved) so callers and tests can inspect its artists."""
    blocks, hidden = _involved_blocks(scene)
    row_labels = {b: _line_labels([ln for ln in scene.lines if ln.addr // BLOCK == b]) for b in blocks}
    row_h = [max(1, len(row_labels[b])) for b in blocks]
    files = scene.files
    windows = zoom_windows(scene)
    notes = _caption(scene)
    # heights in inches, top to bottom
    h_title, h_strip, h_zoom_head = 1.35, 1.35, 0.45
    h_zoom = (0.26 * sum(row_h) + 0.12 * len(blocks) if blocks else 0.35) + 0.4
    h_files = (_ROW * row_tops(files, windows)[1] + 0.95) if files else 0.0
    h_legend, h_notes = 0.75, 0.16 * len(notes) + 0.2
    total = h_title + h_strip + h_zoom_head + h_zoom + h_files + h_legend + h_notes
    fig = Figure(figsize=(_WIDTH, total), dpi=100)
    FigureCanvasAgg(fig)

    def box(top: float, height: float, left: float = 1.55, right: float = 0.35) -> tuple[float, float, float, float]:
        return (left / _WIDTH, 1 - (top + height) / total, 1 - (left + right) / _WIDTH, height / total)

    y = 0.18
    _draw_headline(fig, 0.012, 1 - y / total, scene)
    fig.text(0.012, 1 - (y + 0.4) / total, _clip(scene.message, 150), fontsize=10.5, va="top")
    seen = f"signature {scene.signature}: " if scene.cause else ""
    fig.text(0.012, 1 - (y + 0.68) / total, _clip(seen + scene.crash_text, 170), fontsize=9, color="#333333", va="top")
    fig.text(
        0.012,
        1 - (y + 0.9) / total,
        _clip(f"target: {scene.target}, {scene.device_size >> 20} MiB device", 170),
        fontsize=8.5,
        color="#666666",
        va="top",
    )
    y = h_title
    ax_strip = fig.add_axes(box(y + 0.35, 0.32))
    ax_strip.set_label("device")
    _draw_strip(ax_strip, scene, blocks)
    y += h_strip
    fig.text(
        0.012,
        1 - y / total,
        "Blocks involved, one cell per 64-byte cache line: lines in flight at the crash, and what it kept"
        + (f"  (+{hidden} more blocks not shown)" if hidden else ""),
        fontsize=10,
        fontweight="bold",
        va="top",
    )
    y += h_zoom_head
    ax_zoom = fig.add_axes(box(y, h_zoom - 0.4, left=1.55, right=6.2))
    ax_zoom.set_label("lines")
    _draw_zoom(ax_zoom, scene, blocks, row_labels, row_h)
    y += h_zoom
    if files:
        fig.text(
            0.012,
            1 - (y + 0.1) / total,
            "Files after recovery: where their blocks are, and the words that broke an oracle",
            fontsize=10,
            fontweight="bold",
            va="top",
        )
        ax_files = fig.add_axes(box(y + 0.42, h_files - 0.95))
        ax_files.set_label("files")
        _draw_files(ax_files, scene, windows)
        add_zooms(fig, ax_files, scene, windows, _paint_run)
        y += h_files
    anchor = 1 - (y + 0.05) / total
    lines_leg = fig.legend(
        handles=[Patch(facecolor=FATE_COLORS[f], label=f.value) for f in LineFate],
        loc="upper left",
        bbox_to_anchor=(0.012, anchor),
        ncol=3,
        fontsize=8.5,
        frameon=False,
        title="cache lines in flight",
        title_fontsize=8.5,
        alignment="left",
    )
    lines_leg.set_label("legend:lines")
    words = []
    for k in scene.bad_kinds():
        hatch = "///" if k is BadKind.MIXED_COW else None
        cow = k is BadKind.MIXED_COW
        words.append(
            Patch(
                facecolor="none" if cow else BAD_COLORS[k],
                hatch=hatch,
                edgecolor=BAD_COLORS[k] if cow else "none",
                label=k.label,
            )
        )
    if scene.fsck_blocks:
        words.append(Patch(facecolor="white", edgecolor="black", linewidth=2, label="block named by fsck"))
    if words:
        words_leg = fig.legend(
            handles=words,
            loc="upper left",
            bbox_to_anchor=(3.3 / _WIDTH, anchor),
            ncol=min(len(words), 4),
            fontsize=8.5,
            frameon=False,
            title="flagged by the oracles",
            title_fontsize=8.5,
            alignment="left",
        )
        words_leg.set_label("legend:words")
    y += h_legend
    fig.text(
        0.012,
        1 - y / total,
        "\n".join(notes),
        fontsize=8,
        family="monospace",
        va="top",
        color="#333333",
    )
    return fig


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _caption(scene: Scene) -> list[str]:
    out = []
    for n in scene.notes[:10]:
        out += textwrap.wrap(n, 170, subsequent_indent="      ") or [""]
    if len(scene.notes) > 10:
        out.append(f"... {len(scene.notes) - 10} more line(s) in the text report")
    return out[:14]


def _draw_strip(ax, scene: Scene, blocks: list[int]) -> None:
    strip = _Strip(scene.regions)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_xticks([])
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)
    for i, r in enumerate(scene.regions):
        x0, x1 = float(strip(r.start)), float(strip(r.end))
        ax.add_patch(
            Rectangle((x0, 0), x1 - x0, 1, facecolor=_region_color(scene.regions, i), edgecolor="#666666", lw=0.8)
        )
        nb = (r.end - r.start) // BLOCK
        sub = f"blk {r.start // BLOCK}" + (f"-{r.end // BLOCK - 1}" if nb > 1 else "")
        below = -0.35 if i % 2 == 0 else -1.0
        ax.text((x0 + x1) / 2, below, r.name, ha="center", va="top", fontsize=8.5, clip_on=False)
        ax.text((x0 + x1) / 2, below - 0.33, sub, ha="center", va="top", fontsize=7, color="#666666", clip_on=False)
    ax.text(-0.01, 0.5, f"device\n{scene.device_size >> 20} MiB", ha="right", va="center", fontsize=9)
    for run in scene.bad:
        for a, e in run.device:
            x0, x1 = float(strip(a)), float(strip(e))
            ax.add_patch(
                Rectangle(
                    (x0, 0.08),
                    max(x1 - x0, 0.004),
                    0.5,
                    facecolor=BAD_COLORS[run.kind],
                    edgecolor="none",
                    hatch="///" if run.kind is BadKind.MIXED_COW else None,
                    gid=f"bad:{run.kind.value}",
                )
            )
    for b in scene.fsck_blocks:
        x = float(strip(b * BLOCK + BLOCK / 2))
        ax.plot([x], [0.33], marker="s", ms=9, mfc="white", mec="black", mew=2, gid="fsck")
    for fate in LineFate:
        xs = [float(strip(ln.addr + LINE / 2)) for ln in scene.lines if ln.fate is fate]
        if xs:
            ax.plot(xs, [1.22] * len(xs), "v", color=FATE_COLORS[fate], ms=8, clip_on=False, gid=f"strip:{fate.value}")
    for b in blocks:
        x = float(strip(b * BLOCK + BLOCK / 2))
        ax.plot([x, x], [1.0, 1.12], color="#333333", lw=0.8, clip_on=False)
    if blocks:
        ax.text(
            1.0,
            1.55,
            "▼ lines in flight (kept / dropped / partial);  bands: device blocks behind the bad words",
            ha="right",
            va="bottom",
            fontsize=7.5,
            color="#555555",
            clip_on=False,
        )


def _region_of(scene: Scene, addr: int) -> tuple[int, Region]:
    for i, r in enumerate(scene.regions):
        if r.start <= addr < r.end:
            return i, r
    return len(scene.regions) - 1, scene.regions[-1]


def _draw_zoom(ax, scene: Scene, blocks: list[int], labels: dict, row_h: list[int]) -> None:
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_yticks([])
    if not blocks:
        ax.set_xticks([])
        ax.spines["bottom"].set_visible(False)
        why = "no cache lines in flight at this crash point" if scene.crashed else "no crash: found while the ops ran"
        ax.text(0, 0.5, why, va="center", fontsize=9, color="#555555")
        return
    total = sum(row_h) + 0.45 * len(blocks)
    ax.set_xlim(0, _LINES_PER_BLOCK)
    ax.set_ylim(total, -0.3)
    by_line = {ln.line: ln for ln in scene.lines}
    y = 0.0
    for b, h in zip(blocks, row_h, strict=True):
        i, region = _region_of(scene, b * BLOCK)
        top = y + (h - 1) / 2
        base = _region_color(scene.regions, i)
        for c in range(_LINES_PER_BLOCK):
            ln = by_line.get(b * _LINES_PER_BLOCK + c)
            face = FATE_COLORS[ln.fate] if ln is not None else base
            ax.add_patch(
                Rectangle(
                    (c, top),
                    1,
                    0.72,
                    facecolor=face,
                    edgecolor="#9a9a9a",
                    lw=0.3,
                    gid=f"line:{ln.line}:{ln.fate.value}" if ln is not None else None,
                )
            )
        for run in scene.bad:
            for a, e in run.device:
                lo, hi = max(a, b * BLOCK), min(e, (b + 1) * BLOCK)
                if lo >= hi:
                    continue
                x0, x1 = (lo - b * BLOCK) / LINE, (hi - b * BLOCK) / LINE
                cow = run.kind is BadKind.MIXED_COW
                ax.add_patch(
                    Rectangle(
                        (x0, top + (-0.03 if cow else 0.76)),
                        max(x1 - x0, 0.25),
                        1.02 if cow else 0.2,
                        facecolor="none" if cow else BAD_COLORS[run.kind],
                        edgecolor=BAD_COLORS[run.kind] if cow else "none",
                        lw=2.2,
                        zorder=4,
                        gid=f"bad:{run.kind.value}",
                    )
                )
        culprit = scene.culprit
        if culprit is not None and culprit // _LINES_PER_BLOCK == b:
            c = culprit % _LINES_PER_BLOCK
            ax.add_patch(
                Rectangle((c - 0.15, top - 0.12), 1.3, 0.96, fill=False, lw=2.6, ec="black", zorder=6, gid="culprit")
            )
            ax.annotate(
                "the line that matters",
                (c + 0.5, top - 0.12),
                (c + 0.5 + (4 if c < _LINES_PER_BLOCK - 16 else -4), top - 0.55),
                ha="left" if c < _LINES_PER_BLOCK - 16 else "right",
                fontsize=8,
                fontweight="bold",
                arrowprops={"arrowstyle": "-|>", "color": "black", "lw": 1.2},
                zorder=7,
            )
        if b in scene.fsck_blocks:
            ax.add_patch(Rectangle((0, top - 0.06), _LINES_PER_BLOCK, 0.84, fill=False, lw=2.2, ec="black", gid="fsck"))
        owner = _owner(scene, b)
        ax.text(
            -0.8, top + 0.36, f"blk {b}\n{region.name}{owner}", ha="right", va="center", fontsize=8, linespacing=1.1
        )
        groups = labels.get(b, [])
        for k, (a, e, text, fate) in enumerate(groups):
            color = FATE_COLORS[fate] if fate is not LineFate.KEPT else "#1d6b2e"
            x0, x1 = a - b * _LINES_PER_BLOCK, e - b * _LINES_PER_BLOCK + 1
            tag = f"{k + 1}" if len(groups) > 1 and a >= 0 else ""
            if a >= 0:
                ax.plot([x0 + 0.1, x1 - 0.1], [top - 0.2, top - 0.2], color=color, lw=1.6, solid_capstyle="butt")
            if tag:
                ax.text((x0 + x1) / 2, top - 0.26, tag, ha="center", va="bottom", fontsize=7, color=color)
            ax.text(
                _LINES_PER_BLOCK + 1.2,
                y + k + 0.36,
                f"{tag}  {text}" if tag else text,
                fontsize=8,
                va="center",
                color=color,
                clip_on=False,
            )
        y += h + 0.45
    ax.set_xticks([0, 16, 32, 48, 64], ["+0", "+1 KiB", "+2 KiB", "+3 KiB", "+4 KiB"], fontsize=7.5)
    ax.tick_params(axis="x", length=2, colors="#666666")


def _owner(scene: Scene, block: int) -> str:
    """ " · f1 @ 0" when the block holds a file's data."""
    names = []
    for fv in scene.files:
        for fb in fv.blocks:
            if fb.device == block * BLOCK:
                names.append(f"{fv.name} @ {fb.offset}")
    return f" · {', '.join(names)}" if names else ""


def _draw_files(ax: Axes, scene: Scene, windows: dict[str, Window]) -> None:
    files = scene.files
    xmax = axis_end(scene)
    tops, rows = row_tops(files, windows)
    ax.set_xlim(0, xmax)
    ax.set_ylim(rows, 0)
    ax.set_yticks([y + 0.45 for y in tops], [fv.name for fv in files], fontsize=9)
    ax.tick_params(axis="y", length=0)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    for top, fv in zip(tops, files, strict=True):
        end = -(-fv.size // BLOCK) * BLOCK
        ax.add_patch(Rectangle((0, top + 0.1), max(fv.size, 1), 0.7, facecolor="#fafafa", edgecolor="none"))
        if end > fv.size:
            ax.add_patch(Rectangle((fv.size, top + 0.1), end - fv.size, 0.7, facecolor="#e4e4e4", edgecolor="none"))
        ax.plot([fv.size, fv.size], [top + 0.02, top + 0.88], color="#333333", lw=1.2, ls="--")
        right = fv.size > 0.8 * xmax
        ax.text(
            fv.size,
            top + 0.02,
            f"EOF {fv.size} " if right else f" EOF {fv.size}",
            fontsize=7,
            va="bottom",
            ha="right" if right else "left",
            color="#333333",
        )
        for fb in fv.blocks:
            if fb.offset >= max(fv.size, 1):
                continue
            ax.add_patch(Rectangle((fb.offset, top + 0.1), BLOCK, 0.7, fill=False, edgecolor="#888888", lw=0.8))
            where = (
                "hole" if fb.device is None else f"blk {fb.device // BLOCK}" + (" unwritten" if fb.unwritten else "")
            )
            if len(fv.blocks) <= 16:
                ax.text(
                    fb.offset + BLOCK / 2,
                    top + 0.26,
                    where,
                    ha="center",
                    va="center",
                    fontsize=7.5,
                    color="#444444",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
                    zorder=5,
                )
        for run in (r for r in scene.bad if r.file == fv.name):
            _paint_run(ax, run, top, xmax / 500)
            tiny = run.kind is not BadKind.MIXED_COW and run.end - run.start < xmax / 60
            if tiny and fv.name not in windows:
                ax.plot([(run.start + run.end) / 2], [top + 0.88], "^", color=BAD_COLORS[run.kind], ms=6, clip_on=False)
    step = BLOCK if xmax <= 16 * BLOCK else BLOCK * math.ceil(xmax / BLOCK / 8)
    ticks = list(range(0, xmax + 1, step))
    ax.set_xticks(ticks, [str(t) for t in ticks], fontsize=7.5)
    ax.set_xlabel("file offset (bytes)", fontsize=8, labelpad=1)


def _paint_run(ax: Axes, run: BadRun, top: float, min_width: float) -> None:
    """One bad run on a file row whose top is at `top`: a mixed COW block hatched over the row, others a band."""
    cow = run.kind is BadKind.MIXED_COW
    ax.add_patch(
        Rectangle(
            (run.start, top + (0.1 if cow else 0.44)),
            max(run.end - run.start, min_width),
            0.7 if cow else 0.36,
            facecolor="none" if cow else BAD_COLORS[run.kind],
            edgecolor=BAD_COLORS[run.kind] if cow else "none",
            hatch="///" if cow else None,
            lw=1.5,
            gid=f"file:{run.file}:{run.start}:{run.end}:{run.kind.value}",
        )
    )


def render_picture(
    r: Reproducer,
    out: str | Path,
    verdict: Verdict | None = None,
    finding: Finding | None = None,
    *,
    dpi: int = 110,
) -> Path:
    """Write the picture of a reproducer's finding to `out` (PNG); re-runs its crash state to see it."""
    scene = build_scene(r, verdict, finding)
    return save_figure(finding_figure(scene), out, dpi)


def _cause_text(scene: Scene) -> str:
    """The headline: what went wrong, in words, as the finding's cause knows it."""
    if not scene.cause:
        return scene.signature
    try:
        c = Cause.parse(scene.cause)
    except PmfuzzError:
        return scene.cause
    words = {
        How.LOST: f"lost {c.where}" if c.where.startswith("unflushed ") else f"lost store of {c.where}",
        How.WRITTEN: f"wrong value written by {c.where}",
        How.NEVER_WRITTEN: "media nobody wrote for this file" + (f", in a block {c.where} for it" if c.where else ""),
        How.UNMAPPED: "block map lost",
        How.METADATA: "durable metadata lost (a file, its size or its block map)",
        How.PAGE_TABLE: f"page-table entry {c.where}",
        How.DROPPED: f"dropped lines of {c.where}",
        How.REORDERED: f"{c.where} dropped under a later store",
        How.AT: f"at {c.where}",
        How.CONTENT: c.where,
        How.RULE: c.where,
    }
    return words[c.how]


def _draw_headline(fig: Figure, x: float, y: float, scene: Scene) -> None:
    """The headline, its culprit clipped until the line fits across the figure."""
    culprit = _culprit_text(scene)
    text = fig.text(x, y, _headline(scene, culprit), fontsize=14, fontweight="bold", va="top", gid="headline")
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    room = fig.bbox.width * (1 - 2 * x)
    n = len(culprit)
    while n > _MIN_CULPRIT and text.get_window_extent(renderer).width > room:
        n -= 4
        text.set_text(_headline(scene, _clip(culprit, n)))


def _headline(scene: Scene, culprit: str) -> str:
    """The title: the oracle, the cause in words, the store that matters when the scene knows it, the state."""
    sep = " " if culprit.startswith("in op") else ": "
    head = f"[{scene.oracle.value}]  {_cause_text(scene)}" + (f"{sep}{culprit}" if culprit else "")
    return head + "   —   " + (f"crash state {scene.state}" if scene.crashed else "no crash")


def _culprit_text(scene: Scene) -> str:
    """Who wrote the line that matters (`site in op 5 \\`write f1 100 200\\``), so the headline names the lost store;
    the op's text only where the scene holds it (its crash op's); a site the cause already names
    (`unflushed dax_iomap_copy_around`) is not named twice. Empty without a culprit."""
    ln = next((x for x in scene.lines if x.line == scene.culprit), None)
    if ln is None:
        return ""
    sites = [x for x in ln.sites if x not in scene.cause]
    where = " + ".join(sites) + " " if sites else ""
    where += f"in op{'s' if len(ln.ops) > 1 else ''} {', '.join(map(str, ln.ops))}"
    text = _op_texts(scene).get(ln.ops[0]) if len(ln.ops) == 1 else None
    return f"{where} `{text}`" if text else where


def _op_texts(scene: Scene) -> dict[int, str]:
    """The ops whose text the scene holds: every op of the workload, else the crash's op as its crash text quotes it."""
    if scene.ops:
        return dict(enumerate(scene.ops))
    return {int(n): text for n, text in re.findall(r"\bop (\d+) `([^`]*)`", scene.crash_text)}
