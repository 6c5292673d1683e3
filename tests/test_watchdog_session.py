"""Deadlines inside a `deadline_session`: the same firing as alone, with the timer armed lazily."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from pmfuzz.execution import watchdog
from pmfuzz.execution.watchdog import TargetHang, deadline, deadline_session

LIMIT = 0.2

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGALRM"), reason="SIGALRM only")


def _spin() -> None:
    while True:
        pass


def _hang(limit: float, what: str = "the block") -> tuple[TargetHang, float]:
    t0 = time.monotonic()
    with pytest.raises(TargetHang) as ei, deadline(limit, what):
        _spin()
    return ei.value, time.monotonic() - t0


def test_a_hang_after_many_blocks_fires_at_its_own_limit() -> None:
    with deadline_session():
        for _ in range(1000):
            with deadline(5.0, "a fast block"):
                pass
        e, took = _hang(LIMIT, "the spin")  # due before the timer armed for the first block: re-armed
    assert e.what == "the spin"
    assert LIMIT * 0.99 <= took < 4.0


def test_a_block_after_a_shorter_one_is_not_cut_short_by_its_stale_timer() -> None:
    with deadline_session():
        with deadline(LIMIT, "short"):
            pass
        e, took = _hang(3 * LIMIT, "longer")  # the timer fires at the first block's expiry: nothing is due
    assert e.what == "longer"
    assert took >= 3 * LIMIT * 0.99


def test_nothing_fires_between_blocks_or_after_the_session() -> None:
    with deadline_session():
        with deadline(LIMIT, "ended"):
            pass
        time.sleep(LIMIT * 2)  # its timer fires here, outside every block
        with deadline(LIMIT, "ended too"):
            pass
    time.sleep(LIMIT * 1.5)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_nested_in_a_session_inner_fires_outer_keeps_running() -> None:
    with deadline_session(), deadline(5.0, "outer"):
        e, _ = _hang(LIMIT, "inner")
        assert e.what == "inner"
        time.sleep(LIMIT)
    with deadline_session():
        with pytest.raises(TargetHang) as ei, deadline(LIMIT, "outer"), deadline(5.0, "inner"):
            _spin()
        assert ei.value.what == "outer"


def test_the_previous_handler_and_timer_are_kept_through_and_after_a_session() -> None:
    fired: list[float] = []
    old = signal.signal(signal.SIGALRM, lambda s, f: fired.append(time.monotonic()))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.6)
        t0 = time.monotonic()
        with deadline_session():
            assert signal.getsignal(signal.SIGALRM) is watchdog._on_alarm
            _hang(LIMIT)
            while not fired and time.monotonic() - t0 < 5:
                with deadline(5.0, "waiting for the foreign timer"):
                    time.sleep(0.01)
            assert len(fired) == 1 and fired[0] - t0 >= 0.59  # due in the session: passed on, once
            signal.setitimer(signal.ITIMER_REAL, 0)
        assert callable(signal.getsignal(signal.SIGALRM)) and signal.getsignal(signal.SIGALRM) is not watchdog._on_alarm
        signal.setitimer(signal.ITIMER_REAL, 2.0)
        with deadline_session(), deadline(5.0, "a block"):
            pass
        remaining = signal.getitimer(signal.ITIMER_REAL)[0]
        assert 0 < remaining <= 2.0  # a timer due after the session is set again when it ends
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_off_the_main_thread_a_session_does_nothing_and_deadlines_still_fire() -> None:
    out: list[object] = []

    def body() -> None:
        before = signal.getsignal(signal.SIGALRM)
        with deadline_session():
            assert signal.getsignal(signal.SIGALRM) is before
            try:
                _hang(LIMIT)
                out.append("fired")
            except BaseException as e:  # pragma: no cover - reported below
                out.append(e)

    t = threading.Thread(target=body)
    t.start()
    t.join(20)
    assert out == ["fired"]


def test_a_session_inside_a_session_or_a_deadline_leaves_the_outer_in_charge() -> None:
    with deadline_session():
        with deadline_session():
            pass
        assert signal.getsignal(signal.SIGALRM) is watchdog._on_alarm
        e, _ = _hang(LIMIT)
        assert e.what == "the block"
    with deadline(5.0, "outer"):
        with deadline_session():
            e, _ = _hang(LIMIT, "inner")
        assert e.what == "inner"
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_a_target_that_clears_the_timer_or_takes_the_handler_does_not_stop_later_deadlines() -> None:
    old = signal.getsignal(signal.SIGALRM)
    with deadline_session():
        with deadline(5.0, "an op that clears the timer"):
            signal.setitimer(signal.ITIMER_REAL, 0)
        e, took = _hang(LIMIT, "the next op")
        assert e.what == "the next op" and took < 4.0
        with deadline(5.0, "an op that sets its own alarm"):
            signal.signal(signal.SIGALRM, lambda s, f: None)
            signal.setitimer(signal.ITIMER_REAL, 30.0)
        e, took = _hang(LIMIT, "the op after")
        assert e.what == "the op after" and took < 4.0
    assert signal.getsignal(signal.SIGALRM) is old


def test_an_expired_deadline_does_not_raise_where_python_would_drop_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exceptions leaving a `__del__`, a weakref or a gc callback (the collector runs them inside the
    block) are printed and dropped: there the handler only re-arms, and raises in the block's own code."""
    import gc
    import sys
    import weakref

    frames: list[object] = []

    class Dying:
        def __del__(self) -> None:
            frames.append(sys._getframe())

    Dying()

    keys = weakref.WeakKeyDictionary().keys()  # a generator: its frame is weakref.py's code
    frames.append(keys.gi_frame)

    def on_gc(phase: str, info: dict) -> None:
        if len(frames) < 3:
            frames.append(sys._getframe())

    gc.callbacks.append(on_gc)
    try:
        gc.collect()
        assert len(frames) == 3
        armed: list[float] = []
        with deadline_session(), deadline(60.0, "expired"):
            d = watchdog._stack[-1]
            d.seconds, d.start = 0.001, time.monotonic() - 1
            d.expiry = d.start
            real_arm = watchdog._arm
            monkeypatch.setattr(watchdog, "_arm", armed.append)  # the handler is called by hand: no real timer
            for f in frames:
                watchdog._on_alarm(signal.SIGALRM, f)  # type: ignore[arg-type]
            assert len(armed) == 3  # re-armed each time, not raised
            with pytest.raises(TargetHang):
                watchdog._on_alarm(signal.SIGALRM, sys._getframe())
            monkeypatch.setattr(watchdog, "_arm", real_arm)
    finally:
        gc.callbacks.remove(on_gc)
