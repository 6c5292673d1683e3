"""A campaign as a picture, in the manner of afl-plot: speed, corpus and coverage, findings over time."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .output import save_figure
from .stats import Campaign, load_campaign

__all__ = ["campaign_figure", "plot_campaign", "ORACLE_STYLE", "time_unit"]

ORACLE_STYLE: dict[str, tuple[str, str]] = {
    "stale-exposure": ("#7b3294", "o"),
    "cow-atomicity": ("#e08214", "D"),
    "durability": ("#2166ac", "s"),
    "mount": ("#222222", "X"),
    "functional": ("#1b9e77", "^"),
    "atomic-ops": ("#e7298a", "v"),
    "target-error": ("#d7301f", "P"),
}
"""Colour and marker of each oracle's findings."""


def time_unit(seconds: float) -> tuple[str, float]:
    """The unit a campaign of this length reads best in, and its size in seconds."""
    if seconds >= 2 * 3600:
        return "hours", 3600.0
    if seconds >= 120:
        return "minutes", 60.0
    return "seconds", 1.0


def _style(oracle: str) -> tuple[str, str]:
    return ORACLE_STYLE.get(oracle, ("#777777", "*"))


def campaign_figure(c: Campaign) -> Figure:
    """Three panels sharing the time axis; each series is labelled (`Line2D.get_label`) for inspection.

    Rates are drawn as steps over each interval between stats lines (the first from time 0), so their
    line data is `[0, t1, t2, ...]` against `[r1, r1, r2, ...]`.
    """
    unit, k = time_unit(c.duration)
    t = [r.time / k for r in c.records]
    eps, sps = c.rates()
    fig = Figure(figsize=(11, 8.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax1, ax2, ax3 = fig.subplots(3, 1, sharex=True)
    last = c.records[-1]
    fig.suptitle(
        f"pmfuzz campaign {c.source.parent.name or c.source.name}: {last.execs:,} execs, {last.states:,} crash states, "
        f"{len(c.findings) or last.findings} root causes in {_span(c.duration)}"
        + (f" ({len(c.session_starts)} sessions)" if len(c.session_starts) > 1 else ""),
        fontsize=12,
        fontweight="bold",
    )
    mark = "o" if len(t) < 30 else None

    ax1.set_title(
        "Speed: workloads executed and crash states judged per second (over each stats interval)",
        fontsize=10,
        loc="left",
    )
    ax1.plot([0.0, *t], eps[:1] + eps, color="#1f77b4", drawstyle="steps-pre", label="execs/s")
    ax1.set_ylabel("execs/s", color="#1f77b4")
    ax1.set_ylim(bottom=0)
    ax1b = ax1.twinx()
    ax1b.plot([0.0, *t], sps[:1] + sps, color="#d95f02", drawstyle="steps-pre", label="crash states/s")
    ax1b.set_ylabel("crash states/s", color="#d95f02")
    ax1b.set_ylim(bottom=0)
    _legend(ax1, [*ax1.get_lines(), *ax1b.get_lines()])

    rss = [(x, r.rss_mib) for x, r in zip(t, c.records, strict=True) if r.rss_mib is not None]
    ax2.set_title(
        "Corpus, coverage and resident memory" if rss else "Corpus size and coverage (features reached)",
        fontsize=10,
        loc="left",
    )
    ax2.plot(t, [r.corpus for r in c.records], color="#2ca02c", marker=mark, ms=3, label="corpus")
    ax2.set_ylabel("corpus entries", color="#2ca02c")
    ax2b = ax2.twinx()
    ax2b.plot(t, [r.coverage for r in c.records], color="#9467bd", marker=mark, ms=3, label="coverage")
    ax2b.set_ylabel("coverage features", color="#9467bd")
    extra = []
    if rss:
        ax2c = ax2.twinx()
        ax2c.spines["right"].set_position(("axes", 1.08))
        ax2c.plot([x for x, _ in rss], [m for _, m in rss], color="#8c564b", ls="--", lw=1, label="memory (MiB)")
        ax2c.set_ylabel("resident MiB", color="#8c564b")
        ax2c.set_ylim(bottom=0)
        extra = list(ax2c.get_lines())
    _legend(ax2, [*ax2.get_lines(), *ax2b.get_lines(), *extra])

    ax3.set_title("Root causes found, each marked by the oracle that caught it", fontsize=10, loc="left")
    if c.findings:
        ft = [0.0, *(e.time / k for e in c.findings), c.duration / k]
        fn = [0, *range(1, len(c.findings) + 1), len(c.findings)]
    else:
        ft, fn = [0.0, *t], [0, *(r.findings for r in c.records)]
    ax3.step(ft, fn, where="post", color="#555555", lw=1.2, label="root causes")
    handles = list(ax3.get_lines())
    for oracle in dict.fromkeys(e.oracle for e in c.findings):
        evs = [e for e in c.findings if e.oracle == oracle]
        ranks = [c.findings.index(e) + 1 for e in evs]
        color, marker = _style(oracle)
        (ln,) = ax3.plot(
            [e.time / k for e in evs], ranks, linestyle="none", marker=marker, ms=7, color=color, label=oracle
        )
        handles.append(ln)
    ax3.set_ylabel("root causes")
    ax3.set_ylim(bottom=0, top=max([last.findings, len(c.findings), 1]) * 1.15 + 0.5)
    ax3.yaxis.get_major_locator().set_params(integer=True)
    _legend(ax3, handles)
    ax3.set_xlabel(f"campaign time ({unit})")
    ax3.set_xlim(0, max(c.duration / k, 1e-9) * 1.02)
    replaying = _seed_spans(c)
    for ax in (ax1, ax2, ax3):
        ax.grid(True, alpha=0.3)
        for s in c.session_starts[1:]:
            ax.axvline(s / k, color="#999999", ls=":", lw=1)
        for a, b in replaying:
            ax.axvspan(a / k, b / k, color="#fdd49e", alpha=0.35, lw=0, label="replaying the seed corpus")
    if replaying:
        seed = Patch(color="#fdd49e", alpha=0.6, label="replaying the seed corpus")
        _legend(ax2, [*ax2.get_lines(), *ax2b.get_lines(), *extra, seed])
    if len(c.session_starts) > 1:
        _legend(ax1, [*ax1.get_lines(), *ax1b.get_lines(), Line2D([], [], color="#999999", ls=":", label="resumed")])
    ax1.set_label("speed")
    ax2.set_label("corpus")
    ax3.set_label("findings")
    ax1b.set_label("speed-states")
    ax2b.set_label("corpus-coverage")
    return fig


def _legend(ax, handles: list) -> None:
    """A one-row legend right-aligned in the panel's title row, where it hides no data.

    Artists matplotlib labels itself (`_child1`: a session marker's line) are not series: left out."""
    handles = [h for h in handles if not str(h.get_label()).startswith("_")]
    ax.legend(
        handles=handles,
        loc="lower right",
        bbox_to_anchor=(1.0, 1.0),
        ncol=len(handles),
        fontsize=8,
        frameon=False,
        borderaxespad=0.1,
        handlelength=1.6,
        columnspacing=1.2,
    )


def _span(seconds: float) -> str:
    unit, k = time_unit(seconds)
    return f"{seconds / k:.1f} {unit}" if k > 1 else f"{seconds:.0f} s"


def plot_campaign(stats: str | Path, out: str | Path | None = None, *, dpi: int = 110) -> Path:
    """Draw a campaign's stats file to a PNG (default: beside it, as `campaign.png`); return the path."""
    c = load_campaign(stats)
    dest = Path(out) if out is not None else c.source.with_name("campaign.png")
    return save_figure(campaign_figure(c), dest, dpi)


def _seed_spans(c: Campaign) -> list[tuple[float, float]]:
    """Campaign-time spans in which a session replayed its corpus (the seeds) before fuzzing proper.

    A session replays from its start; the span ends at its first stats line with nothing left to replay.
    A session whose first line has nothing left (no corpus, or one replayed within the first
    interval) shows none: shading that interval would claim a replay of seeds it may not have had.
    """
    spans: list[tuple[float, float]] = []
    for s, start in enumerate(c.session_starts):
        recs = [r for r in c.records if r.session == s and r.seeds_left is not None]
        if not recs or recs[0].seeds_left == 0:
            continue
        end = next((r.time for r in recs if r.seeds_left == 0), recs[-1].time)
        spans.append((start, end))
    return spans
