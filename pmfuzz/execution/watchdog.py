"""Deadlines on calls into a target, and a checked view of what it returns.

A target under test is untrusted code: it may loop, sleep forever or return
values of the wrong type. pmfuzz must then report a finding that names the
target and the call, not hang and not die in a traceback of its own.

    with deadline(10.0, "op 3 `write f0 0 8`"):
        fs.execute(3, op, payload)   # raises TargetHang after 10 s

On the main thread a deadline is an `ITIMER_REAL` timer whose SIGALRM handler
raises (this also interrupts `time.sleep` and lock waits); on other threads one
shared watchdog thread injects the exception with `PyThreadState_SetAsyncExc`
(delivered at the thread's next bytecode, so a thread blocked inside a C call is
interrupted only when the call returns). `guarded.GuardedFS` wraps a mounted target so
that every call has a deadline and every result is checked against the protocol.

A deadline counts the block's own time, not the machine's: time the thread spent
runnable but waiting for a CPU (Linux's `/proc/.../schedstat`) is given back, so a
pmfuzz starved by a loaded machine or `nice 19` does not file its own slowness as a
target hang, and so is time the whole process was frozen (stopped, its VM paused:
`frozen`). Time the block spends asleep or blocked still counts: a target that
sleeps forever is a hang.
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import threading
import time
import weakref
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any

from .frozen import frozen_between, start_heartbeat
from .schedstat import waited as _waited

if TYPE_CHECKING:
    import signal as _signal  # the C module has no stubs; `signal` re-exports its functions, same signatures
else:
    import _signal  # the C module: `signal.signal`'s enum conversions cost 10 us a call


__all__ = ["TargetHang", "TargetNonsense", "covering_deadline", "deadline", "deadline_session"]


class TargetHang(BaseException):
    """A call into the target did not return within its deadline.

    A BaseException, so that a target's own `except Exception` cannot swallow it.
    """

    what: str = "the call"
    limit: float = 0.0
    target: str | None = None

    def __init__(self, what: str | None = None, limit: float | None = None, target: str | None = None) -> None:
        if what is not None:
            self.what = what
        if limit is not None:
            self.limit = limit
        if target is not None:
            self.target = target
        super().__init__(self.what, self.limit)

    def __str__(self) -> str:
        s = f"{self.what} did not return within {self.limit:g} s"
        return s if self.target is None else f"{s} (target {self.target} loops or hangs)"

    def __reduce__(self) -> tuple:
        return (TargetHang, (self.what, self.limit, self.target))


class TargetNonsense(Exception):
    """A call into the target returned something the target protocol does not allow (the message says what)."""


# -- the thread's own time: wall time less the time it waited runnable for a CPU --------------


def _starved(d: _Deadline, now: float) -> bool:
    """True if `d` has not yet run for its seconds of its own time: its expiry is then moved on by
    what the thread spent waiting for a CPU and the process spent frozen (the caller re-arms and
    does not raise)."""
    own = now - d.start - frozen_between(d.start, now)
    waited = _waited(d.native)
    if waited is not None and d.waited is not None:
        own -= waited - d.waited  # else the kernel does not say: wall time it is
    if own >= d.seconds * 0.999:
        return False
    d.expiry = now + d.seconds - own
    return True


# -- the main thread: ITIMER_REAL and SIGALRM -------------------------------------------------

_ALARM: signal.Signals | None = getattr(signal, "SIGALRM", None)
_MAIN = threading.main_thread().ident
_LONGEST = 1e8
"""Timers are clamped to this (about three years): setitimer and Condition.wait refuse larger values."""
_RETRY = 0.05
"""Seconds between repeated raises when the target swallows TargetHang and keeps running."""

_stack: list[_Deadline] = []
"""The main thread's active deadlines, outermost first."""
_WEAKREF_FILE = weakref.__file__
_prev_handler: Any = None
_foreign: float | None = None
"""When the ITIMER_REAL timer set before our outermost deadline is due (monotonic), if one was set."""
_foreign_interval = 0.0
_session = False
"""Inside `deadline_session`: our handler stays installed and the timer is armed lazily."""
_armed_at: float | None = None
"""In a session, when the timer we armed fires (monotonic); None when it is not armed."""
_sample: tuple[float, float | None] = (-1.0, None)
"""In a session, the main thread's last (monotonic time, seconds waited for a CPU) reading."""
_SAMPLE_AGE = 0.25
"""Seconds a session reuses that reading: a deadline then counts up to this much waiting as its own time
too, so it may fire that much later than its own time (a block of a thread that never waits is exact)."""


def _arm(now: float) -> None:
    """Set the timer for the earliest of our deadlines (and of the timer we displaced)."""
    global _armed_at
    due = _foreign
    for d in _stack:
        if due is None or d.expiry < due:
            due = d.expiry
    if due is None:
        if _session and _armed_at is not None:
            _signal.setitimer(signal.ITIMER_REAL, 0)
            _armed_at = None
        return
    _signal.setitimer(signal.ITIMER_REAL, min(max(due - now, 1e-5), _LONGEST))
    _armed_at = due


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    global _foreign, _armed_at
    _armed_at = None  # the timer is one-shot: whatever re-arms it below sets this again
    if not _stack and not _session:
        return
    now = time.monotonic()
    if frame is not None and (frame.f_code in _QUIET or _swallows(frame.f_code)):
        # Inside our own bookkeeping: a block that reached its __exit__ has finished, so never raise
        # here; the timer is re-armed for whatever is still active. Likewise in code whose exceptions
        # Python prints and drops (a __del__, weakref or gc callback that the collector ran in the
        # block): raised there, the hang would only be retried later.
        _arm(now)
        return
    if _foreign is not None and _foreign <= now:
        _foreign = now + _foreign_interval if _foreign_interval else None
        _arm(now)
        if callable(_prev_handler):
            _prev_handler(signum, frame)
        return
    hit = None
    for d in _stack:
        if d.expiry <= now and (hit is None or d.expiry < hit.expiry):
            hit = d
    if hit is None or (not hit.fired and _starved(hit, now)):
        _arm(now)
        return
    hit.fired = True
    hit.expiry = now + max(_RETRY, hit.seconds / 10)
    _arm(now)
    raise TargetHang(hit.what, hit.seconds, hit.target)


def _swallows(code: CodeType) -> bool:
    return (
        code.co_name == "__del__"
        or code.co_filename == _WEAKREF_FILE
        or any(getattr(cb, "__code__", None) is code for cb in gc.callbacks)
    )


def _main_enter(d: _Deadline) -> None:
    global _armed_at
    if _session:
        now = d.begin_in_session()
        _stack.append(d)
        assert _ALARM is not None, "a session is opened only where SIGALRM exists"
        if _signal.getsignal(_ALARM) is not _on_alarm:
            _signal.signal(_ALARM, _on_alarm)  # a target put in its own handler: ours again
            _armed_at = None
        elif _armed_at is not None and not 0 < _signal.getitimer(signal.ITIMER_REAL)[0] <= _armed_at - now + 1e-3:
            _armed_at = None  # fired and not yet handled, or a target cleared or moved our timer
        if _armed_at is None or d.expiry < _armed_at:
            _arm(now)
        return
    now = d.begin()
    if _stack:
        _stack.append(d)
        _arm(now)
        return
    _stack.append(d)
    _take_alarm(now, min(d.seconds, _LONGEST))
    if _foreign is not None and _foreign < d.expiry:
        _arm(now)


def _take_alarm(now: float, delay: float) -> None:
    """Install our handler and set the timer to `delay` (0: unset), keeping the handler and the timer
    they displace (`_give_back_alarm` puts them back)."""
    global _prev_handler, _foreign, _foreign_interval
    assert _ALARM is not None, "an alarm deadline is armed only where SIGALRM exists"
    _prev_handler = _signal.signal(_ALARM, _on_alarm)
    left, interval = _signal.setitimer(signal.ITIMER_REAL, delay)
    _foreign, _foreign_interval = (now + left, interval) if left > 0 else (None, 0.0)


def _give_back_alarm() -> None:
    global _foreign, _armed_at
    _signal.setitimer(signal.ITIMER_REAL, 0)
    _armed_at = None
    assert _ALARM is not None, "an alarm deadline is armed only where SIGALRM exists"
    _signal.signal(_ALARM, _prev_handler if _prev_handler is not None else signal.SIG_DFL)
    if _foreign is not None:
        _signal.setitimer(signal.ITIMER_REAL, max(_foreign - time.monotonic(), 1e-5), _foreign_interval)
        _foreign = None


def _main_exit(d: _Deadline) -> None:
    for k in range(len(_stack) - 1, -1, -1):
        if _stack[k] is d:
            del _stack[k:]
            break
    else:
        return
    if _session:
        return  # the timer stays armed: when it fires for a block that ended, the handler re-arms
    if _stack:
        _arm(time.monotonic())
        return
    _give_back_alarm()


def _session_open() -> bool:
    global _session, _armed_at, _sample
    if _session or _stack or threading.get_ident() != _MAIN or _ALARM is None:
        return False
    if _signal.getsignal(_ALARM) is None:
        return False  # a handler from C (libFuzzer's): the watchdog thread serves, as without a session
    now = time.monotonic()
    _take_alarm(now, 0)
    _armed_at, _sample = None, (-1.0, None)
    _session = True
    if _foreign is not None:
        _arm(now)
    return True


def _session_close() -> None:
    global _session
    _session = False
    _give_back_alarm()


class deadline_session:
    """Many deadlines in a row on the main thread at the cost of a few: the SIGALRM handler stays
    installed for the session and the timer is re-armed only when a deadline is due before it, so a
    block costs one system call (a check that the timer is still ours) where it used to cost five.
    What fires is unchanged, and when only by the run-queue reading's age (`_SAMPLE_AGE`); the
    handler and a timer set before the session are put back after it. Elsewhere (other threads, a
    handler installed from C, inside a deadline or another session) it does nothing."""

    __slots__ = ("_open",)

    def __init__(self) -> None:
        self._open = False

    def __enter__(self) -> None:
        self._open = _session_open()

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        if self._open:
            _session_close()


# -- other threads: one watchdog thread injects the exception ---------------------------------

_ARMED, _FIRED, _DONE = 0, 1, 2
_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc


def _inject(tid: int, exc: type[BaseException] | None) -> None:
    _set_async_exc(ctypes.c_ulong(tid), None if exc is None else ctypes.py_object(exc))


class _Watchdog:
    """Fires expired thread deadlines from one daemon thread (a Timer per call would cost a thread start).

    It keeps the set of active deadlines (a few: one per thread and nesting level) and sleeps until
    the earliest is due; a deadline that ends first just leaves the set.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        """Taken with `with self.lock` by the guarded threads: a C-level __enter__, so an exception the
        watchdog injected cannot arrive between the acquire and the block (Condition.__enter__ is Python
        code: one arriving there left the lock held and every later deadline hung)."""
        self.cond = threading.Condition(self.lock)
        self.active: set[_Deadline] = set()
        self.wake: float | None = None
        self.thread: threading.Thread | None = None

    def add(self, d: _Deadline) -> None:
        with self.lock:
            self.active.add(d)
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="pmfuzz-watchdog", daemon=True)
                self.thread.start()
            elif self.wake is None or d.expiry < self.wake:
                self.cond.notify()

    def remove(self, d: _Deadline) -> bool:
        """End a deadline; True if it fired (its exception may still be pending)."""
        with self.lock:
            self.active.discard(d)
            fired = d.state == _FIRED
            d.state = _DONE
        return fired

    def _run(self) -> None:
        with self.cond:
            while True:
                now = time.monotonic()
                nxt: float | None = None
                for d in list(self.active):
                    if d.expiry <= now and not _starved(d, now):
                        self.active.discard(d)
                        d.state = _FIRED
                        _inject(d.tid, _hang_class(d))
                    elif nxt is None or d.expiry < nxt:
                        nxt = d.expiry
                self.wake = nxt
                self.cond.wait(None if nxt is None else min(nxt - now, _LONGEST))


def _hang_class(d: _Deadline) -> type[TargetHang]:
    """An async exception is raised from its class alone: one that carries this deadline's message."""
    return type("TargetHang", (TargetHang,), {"what": d.what, "limit": d.seconds, "target": d.target})


_watchdog = _Watchdog()
_local = threading.local()


def _after_fork() -> None:
    """A forked child has no watchdog thread (and maybe a lock held by the parent's): start afresh."""
    global _watchdog
    _watchdog = _Watchdog()


os.register_at_fork(after_in_child=_after_fork)


def covering_deadline() -> _Deadline | None:
    """The innermost deadline active on this thread, if any."""
    if _stack and threading.get_ident() == _MAIN:
        return _stack[-1]
    st: list[_Deadline] = getattr(_local, "stack", [])
    return st[-1] if st and st[-1].state == _ARMED else None


# -- the context manager ---------------------------------------------------------------------


class _Deadline:
    __slots__ = (
        "alarm",
        "expiry",
        "fired",
        "named_by_calls",
        "native",
        "seconds",
        "start",
        "state",
        "target",
        "tid",
        "waited",
        "what",
    )

    def __init__(self, seconds: float, what: str, target: str | None, named_by_calls: bool = False) -> None:
        self.seconds = seconds
        self.what = what
        self.target = target
        self.named_by_calls = named_by_calls
        self.expiry = 0.0
        self.start = 0.0
        self.waited: float | None = None
        self.native = 0
        self.tid = 0
        self.state = _ARMED
        self.alarm = False
        self.fired = False

    def begin(self) -> float:
        """Start the clock: now, and what the thread had waited for a CPU so far."""
        start_heartbeat()
        self.native = threading.get_native_id()
        self.waited = _waited(self.native)
        self.start = now = time.monotonic()
        self.expiry = now + self.seconds
        return now

    def begin_in_session(self) -> float:
        """`begin` on the main thread in a session: the waiting read at most `_SAMPLE_AGE` ago."""
        global _sample
        start_heartbeat()
        self.native = native = threading.get_native_id()
        self.start = now = time.monotonic()
        if now - _sample[0] > _SAMPLE_AGE:
            _sample = (now, _waited(native))
        self.waited = _sample[1]
        self.expiry = now + self.seconds
        return now

    def __enter__(self) -> None:
        tid = threading.get_ident()
        self.tid = tid
        # SIGALRM only if its current handler is one Python can put back (not one installed from C,
        # as libFuzzer's under atheris); otherwise the watchdog thread serves the main thread too.
        if tid == _MAIN and _ALARM is not None and (_session or _stack or _signal.getsignal(_ALARM) is not None):
            self.alarm = True
            _main_enter(self)
        else:
            self.begin()
            st = _local.__dict__.setdefault("stack", [])
            while st and st[-1].state != _ARMED:
                st.pop()  # left by a block whose __exit__ an injected exception cut short
            st.append(self)
            _watchdog.add(self)

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        if self.alarm:
            _main_exit(self)
            return
        st = _local.stack
        if st and st[-1] is self:
            st.pop()
        if _watchdog.remove(self):
            # The block ended as the watchdog fired: an exception injected but not yet raised must not
            # surface after the block. (Clearing also drops an enclosing deadline's pending one, which
            # can only have fired at the same instant; it is then not raised.)
            _inject(self.tid, None)


class _NoDeadline:
    __slots__ = ("what",)

    def __init__(self) -> None:
        self.what = ""

    def __enter__(self) -> None:
        return None

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        return None


_QUIET: frozenset[CodeType] = frozenset(
    {
        _arm.__code__,
        _on_alarm.__code__,
        _main_enter.__code__,
        _main_exit.__code__,
        _Deadline.__enter__.__code__,
        _Deadline.__exit__.__code__,
        _Deadline.begin.__code__,
        _Deadline.begin_in_session.__code__,
        _session_open.__code__,
        _session_close.__code__,
        _take_alarm.__code__,
        _give_back_alarm.__code__,
        _starved.__code__,
        _waited.__code__,
        frozen_between.__code__,
        start_heartbeat.__code__,
        _swallows.__code__,
    }
)
"""Code that a SIGALRM must never raise in: our own bookkeeping around a block."""


def deadline(
    seconds: float | None, what: str, *, target: str | None = None, named_by_calls: bool = False
) -> _Deadline | _NoDeadline:
    """A context manager that raises `TargetHang` in the block if it runs longer than `seconds`.

    `what` names the block in the message (and `target`, if given, the target that hung); the
    block may change the manager's `what` as it moves on, and the message names the part that hung.
    `None` disables it. Deadlines nest: each fires at its own limit. The exception is
    raised only inside the block, never after it. `named_by_calls`: the `GuardedFS` calls made
    in the block take its `what` as they start, so that one deadline around many view calls
    (arming a timer costs more than most of them) still names the call that hung.
    """
    if seconds is None:
        return _NoDeadline()
    if not seconds > 0:
        raise ValueError(f"deadline must be positive seconds or None, got {seconds!r}")
    return _Deadline(float(seconds), what, target, named_by_calls)
