"""pmfuzz: a crash-consistency fuzzer for persistent-memory (DAX) file systems."""

from importlib.metadata import PackageNotFoundError, version

from .errors import ParseError, PMemError, PmfuzzError

try:
    __version__ = version("pmfuzz")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = ["PMemError", "ParseError", "PmfuzzError", "__version__"]
