"""Consistency checkers for crash images: a program, a Python callable, a C function in a shared library.

Conventions (the first and third are pmreorder's, so existing checkers work unchanged):

* program: run with the image file as its last argument; exit status 0 means
  consistent, any other status inconsistent. Killed by a signal is a crash,
  not a verdict. PMREORDER_MARKERS holds the marker records seen before the
  crash point, `|`-joined, as pmreorder sets it.
* Python: `module:function` or `path/to/file.py:function`, called in-process
  with the image as a read-only memoryview (valid only during the call);
  True means consistent, False or a string (the reason) inconsistent.
* library: `lib.so:func`, `int func(const char *path)`; 0 means consistent,
  nonzero inconsistent. That is what pmreorder's code does (`== 0`) and its
  man page says; the docstrings in its consistencycheckwrap.py say the
  opposite. The function runs in a helper process, so a crash or a hang is
  reported instead of taking pmfuzz down.

A checker that crashes or outlives `timeout` seconds gives a CRASHED or
TIMEOUT result; pmfuzz keeps going.
"""

from __future__ import annotations

import ctypes
import enum
import importlib
import importlib.util
import multiprocessing
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Protocol

from ..errors import PmfuzzError
from ..execution.watchdog import TargetHang, deadline

__all__ = [
    "CheckResult",
    "Checker",
    "CheckerKind",
    "ImageRef",
    "LibraryChecker",
    "ProgramChecker",
    "PythonChecker",
    "Verdict",
    "make_checker",
]


class Verdict(enum.StrEnum):
    CONSISTENT = "consistent"
    INCONSISTENT = "inconsistent"
    CRASHED = "checker-crashed"
    """The checker died (signal, exception) instead of answering."""
    TIMEOUT = "checker-timeout"
    """The checker did not answer within the timeout."""


class CheckerKind(enum.StrEnum):
    PROGRAM = "prog"
    PYTHON = "python"
    LIBRARY = "lib"


@dataclass(frozen=True, slots=True)
class CheckResult:
    verdict: Verdict
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.CONSISTENT


@dataclass(frozen=True, eq=False)
class ImageRef:
    """One file's crash image as a checker sees it."""

    view: memoryview
    path: str | None
    markers: str


class Checker(Protocol):
    kind: CheckerKind
    needs_file: bool
    spec: str

    def check(self, image: ImageRef) -> CheckResult: ...

    def close(self) -> None: ...


def _tail(text: str, limit: int = 200) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    out = lines[-1] if lines else ""
    return out if len(out) <= limit else out[: limit - 3] + "..."


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


class ProgramChecker:
    """A command line; the image file is appended as its last argument."""

    kind = CheckerKind.PROGRAM
    needs_file = True

    def __init__(self, spec: str, timeout: float) -> None:
        try:
            argv = shlex.split(spec)
        except ValueError as e:
            raise PmfuzzError(f"checker command {spec!r} does not parse: {e}") from None
        if not argv:
            raise PmfuzzError("checker command is empty")
        exe = argv[0]
        if os.sep in exe:
            if not os.path.isfile(exe) or not os.access(exe, os.X_OK):
                raise PmfuzzError(f"checker program {exe!r} does not exist or is not executable")
        elif shutil.which(exe) is None:
            raise PmfuzzError(f"checker program {exe!r} is not on PATH")
        self.spec = spec
        self.argv = argv
        self.timeout = timeout

    def check(self, image: ImageRef) -> CheckResult:
        assert image.path is not None
        env = dict(os.environ, PMREORDER_MARKERS=image.markers)
        proc = subprocess.Popen(
            [*self.argv, image.path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env=env,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return CheckResult(Verdict.TIMEOUT, f"no answer within {self.timeout:g} s (killed)")
        rc = proc.returncode
        said = _tail(err) or _tail(out)
        if rc == 0:
            return CheckResult(Verdict.CONSISTENT)
        if rc < 0:
            return CheckResult(Verdict.CRASHED, f"killed by {_signame(-rc)}" + (f": {said}" if said else ""))
        return CheckResult(Verdict.INCONSISTENT, f"exit status {rc}" + (f": {said}" if said else ""))

    def close(self) -> None:
        pass


class PythonChecker:
    """A Python function called in-process with the image as a memoryview."""

    kind = CheckerKind.PYTHON
    needs_file = False

    def __init__(self, spec: str, func: Callable[[memoryview], object], timeout: float) -> None:
        self.spec = spec
        self.func = func
        self.timeout = timeout

    def check(self, image: ImageRef) -> CheckResult:
        try:
            with deadline(self.timeout, f"checker {self.spec}"):  # the watchdog's timer: one SIGALRM owner
                out = self.func(image.view)
        except TargetHang:
            return CheckResult(Verdict.TIMEOUT, f"no answer within {self.timeout:g} s (interrupted)")
        except Exception as e:
            tb = e.__traceback__
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            at = f" at {Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}" if tb is not None else ""
            return CheckResult(Verdict.CRASHED, f"raised {type(e).__name__}: {e}{at}")
        if out is True:
            return CheckResult(Verdict.CONSISTENT)
        if out is False:
            return CheckResult(Verdict.INCONSISTENT, "returned False")
        if isinstance(out, str):
            return CheckResult(Verdict.INCONSISTENT, out or "returned an empty reason")
        raise PmfuzzError(f"checker {self.spec} returned {out!r}; it must return True, False or a reason string")

    def close(self) -> None:
        pass


def _lib_worker(path: str, func: str, conn: Connection) -> None:
    import faulthandler

    faulthandler.disable()
    fn = getattr(ctypes.CDLL(path), func)
    fn.argtypes = [ctypes.c_char_p]
    fn.restype = ctypes.c_int
    while True:
        try:
            arg, markers = conn.recv()
        except EOFError:
            return
        os.environ["PMREORDER_MARKERS"] = markers
        conn.send(int(fn(arg)))


class LibraryChecker:
    """`int func(const char *path)` from a shared library, run in a helper process (pmreorder's lib mode)."""

    kind = CheckerKind.LIBRARY
    needs_file = True

    def __init__(self, spec: str, lib: str, func: str, timeout: float) -> None:
        if not os.path.isfile(lib):
            raise PmfuzzError(f"checker library {lib!r} does not exist")
        try:
            handle = ctypes.CDLL(os.path.abspath(lib))
        except OSError as e:
            raise PmfuzzError(f"cannot load checker library {lib!r}: {e}") from None
        if not hasattr(handle, func):
            raise PmfuzzError(f"checker library {lib!r} has no function {func!r}")
        self.spec = spec
        self.lib = os.path.abspath(lib)
        self.func = func
        self.timeout = timeout
        self._ctx = multiprocessing.get_context("fork")
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_lib_worker, args=(self.lib, self.func, child), daemon=True)
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent

    def _stop(self) -> None:
        if self._proc is not None:
            if self._proc.is_alive():
                self._proc.kill()
            self._proc.join()
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def check(self, image: ImageRef) -> CheckResult:
        assert image.path is not None
        if self._proc is None or not self._proc.is_alive():
            self._stop()
            self._start()
        assert self._conn is not None and self._proc is not None
        try:
            self._conn.send((os.fsencode(image.path), image.markers))
            if not self._conn.poll(self.timeout):
                self._stop()
                return CheckResult(Verdict.TIMEOUT, f"no answer within {self.timeout:g} s (helper process killed)")
            rc = self._conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self._proc.join()
            code = self._proc.exitcode
            self._stop()
            how = f"killed by {_signame(-code)}" if code is not None and code < 0 else f"exited with status {code}"
            return CheckResult(Verdict.CRASHED, f"{self.func}() {how}")
        if rc == 0:
            return CheckResult(Verdict.CONSISTENT)
        return CheckResult(Verdict.INCONSISTENT, f"{self.func}() returned {rc}")

    def close(self) -> None:
        self._stop()


_LIB = re.compile(r"^(?P<lib>[^\s:]+\.(?:so(?:\.\d+)*|dylib)):(?P<func>[A-Za-z_]\w*)$")
_PYFILE = re.compile(r"^(?P<file>[^\s:]+\.py):(?P<func>[A-Za-z_]\w*)$")
_PYMOD = re.compile(r"^(?P<mod>[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*):(?P<func>[A-Za-z_]\w*)$")


def _load_python(spec: str, timeout: float) -> PythonChecker:
    m = _PYFILE.match(spec)
    if m:
        file = Path(m["file"])
        if not file.is_file():
            raise PmfuzzError(f"checker file {str(file)!r} does not exist")
        name = f"_pmfuzz_checker_{abs(hash(str(file.resolve())))}"
        loader_spec = importlib.util.spec_from_file_location(name, file)
        assert loader_spec is not None and loader_spec.loader is not None
        module = importlib.util.module_from_spec(loader_spec)
        try:
            loader_spec.loader.exec_module(module)
        except Exception as e:
            raise PmfuzzError(f"cannot load checker file {str(file)!r}: {type(e).__name__}: {e}") from None
        func_name = m["func"]
    else:
        m = _PYMOD.match(spec)
        assert m is not None
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(m["mod"])
        except Exception as e:
            raise PmfuzzError(f"cannot import checker module {m['mod']!r}: {type(e).__name__}: {e}") from None
        func_name = m["func"]
    func = getattr(module, func_name, None)
    if not callable(func):
        raise PmfuzzError(f"checker {spec!r}: {func_name!r} is not a function of that module")
    return PythonChecker(spec, func, timeout)


def make_checker(spec: str, timeout: float = 10.0) -> Checker:
    """A checker from its command-line spec.

    `prog:CMD`, `python:MOD:FUNC` and `lib:LIB.so:FUNC` say the kind outright;
    without a prefix, `X.so:f` is a library, `X.py:f` and `pkg.mod:f` are Python,
    anything else is a program command line.
    """
    if timeout <= 0:
        raise PmfuzzError(f"checker timeout must be positive, got {timeout!r}")
    spec = spec.strip()
    if spec.startswith("prog:"):
        return ProgramChecker(spec[5:], timeout)
    if spec.startswith("python:"):
        rest = spec[7:]
        if not (_PYFILE.match(rest) or _PYMOD.match(rest)):
            raise PmfuzzError(f"Python checker {rest!r} is not module:function or file.py:function")
        return _load_python(rest, timeout)
    if spec.startswith("lib:"):
        lib, sep, func = spec[4:].rpartition(":")
        if not sep or not lib or not re.fullmatch(r"[A-Za-z_]\w*", func):
            raise PmfuzzError(f"library checker {spec[4:]!r} is not LIB:FUNCTION")
        return LibraryChecker(spec, lib, func, timeout)
    m = _LIB.match(spec)
    if m:
        return LibraryChecker(spec, m["lib"], m["func"], timeout)
    if _PYFILE.match(spec) or _PYMOD.match(spec):
        return _load_python(spec, timeout)
    return ProgramChecker(spec, timeout)
