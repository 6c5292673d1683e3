"""Saving a figure, with pmfuzz's one-line errors for a bad path or format."""

from __future__ import annotations

from pathlib import Path

from ..errors import PmfuzzError

__all__ = ["save_figure"]


def save_figure(fig, dest: str | Path, dpi: int = 110) -> Path:
    """Write a matplotlib Figure; the format follows the file's suffix (.png, .svg, .pdf)."""
    path = Path(dest)
    try:
        fig.savefig(path, dpi=dpi)
    except ValueError as e:  # matplotlib's word for an unknown file format
        raise PmfuzzError(f"cannot write {path}: {e}") from None
    except OSError as e:
        raise PmfuzzError(f"cannot write {path}: {e.strerror or e}") from None
    return path
