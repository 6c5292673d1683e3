"""`pmfuzz plot`, and the `--picture` option of `pmfuzz replay`: pictures need matplotlib, an optional extra."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import PmfuzzError
from .output import save_figure

__all__ = ["plot", "require_matplotlib", "write_picture", "picture_beside"]

INSTALL_HINT = "pip install 'pmfuzz[plot]'"


def require_matplotlib() -> None:
    """One clear error (exit 2) when matplotlib is missing, before any work is done."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PmfuzzError(f"pictures need matplotlib, which is not installed: {INSTALL_HINT}") from None


def write_picture(r, v, out: str | Path) -> Path:
    """Draw the finding of a replayed reproducer `r` (its verdict `v`) to `out`."""
    from .picture import finding_figure
    from .scene import build_scene

    return save_figure(finding_figure(build_scene(r, v)), Path(out))


def picture_beside(reproducer: str | Path) -> Path | None:
    """Write `<reproducer>.png` beside a reproducer file; None when matplotlib is not installed or it is clean.

    For `pmfuzz run`, which should not fail a campaign over an optional picture.
    """
    try:
        require_matplotlib()
    except PmfuzzError:
        return None
    from ..judging.repro import parse_reproducer
    from .scene import build_scene

    path = Path(reproducer)
    r = parse_reproducer(path.read_text(encoding="utf-8"), source=str(path))
    try:
        scene = build_scene(r)
    except PmfuzzError:
        return None
    from .picture import finding_figure

    return save_figure(finding_figure(scene), path.with_suffix(".png"))


@click.command("plot")
@click.argument("stats", type=click.Path())
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Picture to write (.png, .svg, .pdf) [default: campaign.png beside STATS].",
)
def plot(stats: str, output: str | None) -> None:
    """Draw a campaign from its stats file (or its crashes directory), like afl-plot.

    Panels: execs/s and crash states/s, corpus size and coverage, and unique findings over time
    marked by the oracle that caught each.
    """
    require_matplotlib()
    from .plot import campaign_figure
    from .stats import load_campaign

    c = load_campaign(stats)
    dest = Path(output) if output else c.source.with_name("campaign.png")
    click.echo(f"written {save_figure(campaign_figure(c), dest)}")
