"""One QEMU guest running the agent: boot, send a command, read its answer, see its memory.

Guest RAM is a shared file in /dev/shm, so the host reads the pmem range and
the recorder's trace straight from it (and writes images and payloads into
it): no copy through a device. The agent talks on the second serial port
(the qemu process's stdin/stdout); the kernel's console goes to a log file,
which a report quotes when the guest panics, hangs or goes silent.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import PmfuzzError
from .paths import QEMU, Layout, layout

__all__ = ["Guest", "GuestDied", "Reply", "PMEM_PHYS", "PMEM_SIZE", "REC_PHYS", "TRACE_PHYS", "MBOX_IN", "MBOX_OUT"]

MiB = 1 << 20
RAM = 1024 * MiB
PMEM_PHYS = 512 * MiB
PMEM_SIZE = 64 * MiB
TRACE_PHYS = 576 * MiB
TRACE_SIZE = 80 * MiB
RING_BYTES = 32 * MiB
MBOX_IN = 32 * MiB
MBOX_IN_BYTES = 16 * MiB
MBOX_OUT = 48 * MiB
MBOX_BYTES = 32 * MiB
REC_PHYS = 672 * MiB
"""A second pmem region (/dev/pmem1), not recorded: crash images are recovered there by a mount."""


def _die_with_parent() -> None:
    """In the qemu child: a SIGKILL when pmfuzz dies, however it dies (no orphaned guests burning a core)."""
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class GuestDied(Exception):
    """The guest panicked, hung or lost its console: a finding of the kernel target, never pmfuzz's bug."""

    is_target_error = True

    def __init__(self, what: str, console: str) -> None:
        super().__init__(f"{what}; guest console (last lines):\n{console}")
        self.what = what
        self.console = console


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer of the agent: `ok VALUE`, `err NAME ERRNO` or `sig NAME`."""

    kind: str
    value: str

    @classmethod
    def parse(cls, line: str) -> Reply:
        kind, _, rest = line.partition(" ")
        return cls(kind, rest)


class Guest:
    """A booted guest; `command` is the one way to talk to its agent."""

    def __init__(self, lay: Layout | None = None, accel: str = "tcg", boot_timeout: float = 120.0) -> None:
        self.lay = lay or layout()
        self.dir = Path(tempfile.mkdtemp(prefix="pmfuzz-guest-"))
        self.console_path = self.dir / "console.log"
        shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else self.dir
        fd, name = tempfile.mkstemp(prefix="pmfuzz-ram-", dir=shm)
        os.ftruncate(fd, RAM)
        self.ram_path = Path(name)
        self._ram = mmap.mmap(fd, RAM, mmap.MAP_SHARED)
        os.close(fd)
        self.ram = np.frombuffer(self._ram, dtype=np.uint8)
        self.accel = accel
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            self._argv(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(self.dir / "qemu.err", "wb"),  # noqa: SIM115
            bufsize=0,
            preexec_fn=_die_with_parent,
        )
        self._buf = b""
        line = self._readline(boot_timeout, "booting")
        while line != "ready":
            line = self._readline(boot_timeout, "booting")
        self.boot_seconds = time.perf_counter() - t0
        self.release = self.command("hello").value

    def _argv(self) -> list[str]:
        lay = self.lay
        append = " ".join(
            [
                "console=ttyS0",
                f"memmap={PMEM_SIZE // MiB}M!{PMEM_PHYS // MiB}M",
                f"memmap={TRACE_SIZE // MiB}M${TRACE_PHYS // MiB}M",
                f"memmap={PMEM_SIZE // MiB}M!{REC_PHYS // MiB}M",
                "panic=1",
                "nokaslr",
                "quiet",
                "loglevel=4",
                "tsc=reliable",
                "no_timer_check",
            ]
        )
        return [
            QEMU,
            "-machine",
            "pc,memory-backend=ram",
            "-object",
            f"memory-backend-file,id=ram,size={RAM},mem-path={self.ram_path},share=on",
            "-m",
            f"{RAM // MiB}M",
            "-smp",
            "1",
            "-cpu",
            "max" if self.accel == "tcg" else "host",
            "-accel",
            self.accel,
            "-kernel",
            str(lay.vmlinuz),
            "-initrd",
            str(lay.initramfs),
            "-append",
            append,
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
            "-nodefaults",
            "-serial",
            f"file:{self.console_path}",
            "-serial",
            "stdio",
        ]

    # -- talking to the agent ---------------------------------------------------

    def console(self, lines: int = 40) -> str:
        try:
            text = self.console_path.read_text(errors="replace")
        except OSError:
            return "(no console log)"
        return "\n".join(text.splitlines()[-lines:])

    def _died(self, what: str) -> GuestDied:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        died = GuestDied(what, self.console())
        self.close()
        return died

    def _readline(self, timeout: float, doing: str) -> str:
        end = time.monotonic() + timeout
        out = self.proc.stdout
        assert out is not None
        while b"\n" not in self._buf:
            left = end - time.monotonic()
            if left <= 0:
                raise self._died(f"the guest did not answer within {timeout:.0f} s while {doing}")
            r, _, _ = select.select([out], [], [], left)
            if not r:
                continue
            chunk = os.read(out.fileno(), 65536)
            if not chunk:
                raise self._died(f"the guest went away while {doing} (qemu exited {self.proc.poll()})")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode(errors="replace").strip()

    def command(self, line: str, timeout: float = 60.0) -> Reply:
        """Send one command line; the agent's answer."""
        if self.proc.poll() is not None:
            raise self._died(f"the guest is not running (qemu exited {self.proc.returncode})")
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line.encode() + b"\n")
            return Reply.parse(self._readline(timeout, f"running `{line}`"))
        except OSError:
            raise self._died(f"the guest went away before `{line}`") from None
        except GuestDied:
            raise
        except BaseException:
            self.close()  # interrupted mid-command (a deadline): its answer would confuse the next one
            raise

    # -- shared memory ------------------------------------------------------------

    def pmem(self, off: int = 0, n: int = PMEM_SIZE) -> np.ndarray:
        """A live view of guest pmem bytes [off, off+n)."""
        return self.ram[PMEM_PHYS + off : PMEM_PHYS + off + n]

    def rec_pmem(self, off: int = 0, n: int = PMEM_SIZE) -> np.ndarray:
        """A live view of the recovery region's bytes [off, off+n) (/dev/pmem1)."""
        return self.ram[REC_PHYS + off : REC_PHYS + off + n]

    def trace_region(self) -> np.ndarray:
        return self.ram[TRACE_PHYS : TRACE_PHYS + TRACE_SIZE]

    def put_payload(self, data: bytes) -> None:
        if len(data) > MBOX_IN_BYTES:
            raise PmfuzzError(f"a payload of {len(data)} bytes exceeds the guest's {MBOX_IN_BYTES >> 20} MiB mailbox")
        base = TRACE_PHYS + MBOX_IN
        self.ram[base : base + len(data)] = np.frombuffer(data, dtype=np.uint8)

    def mailbox(self, n: int) -> bytes:
        base = TRACE_PHYS + MBOX_OUT
        return self.ram[base : base + n].tobytes()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        self.ram_path.unlink(missing_ok=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __del__(self) -> None:  # a guest never outlives its owner
        with contextlib.suppress(Exception):
            self.close()
