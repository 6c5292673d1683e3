"""A recovered image's mount, and a judged run's crash points, are freed as soon as they are
dropped, without the cyclic collector: a campaign mounts an image for every other crash state it
judges and builds a timeline per run, and object graphs only the collector freed made its full
collections walk them by the thousand."""

from __future__ import annotations

import gc
import weakref

from pmfuzz.execution.execute import execute
from pmfuzz.lang.workload import parse
from pmfuzz.pmem import PMem
from pmfuzz.target import make_target
from pmfuzz.verdict import Options

WORKLOAD = "create f0\nwrite f0 0 5000\nfsync f0\ncreate f1\nreflink f0 f1\nwrite f1 0 100\nunlink f0\n"


def test_a_mount_with_a_replayed_log_is_freed_by_reference_counting() -> None:
    target = make_target("daxfs design=cow-remap cil=eager")
    run = execute(target, parse(WORKLOAD), Options())
    for point in run.crash_points()[::3]:
        pm = PMem.from_image(point.state().image(), record=False)
        gc.disable()
        try:
            fs = target.mount(pm)
            fs.files()
            gone = weakref.ref(fs.fs)
            del fs
            assert gone() is None, point.id
        finally:
            gc.enable()


def test_a_dropped_timeline_is_freed_by_reference_counting_and_computed_again_when_asked() -> None:
    run = execute(make_target("daxfs"), parse(WORKLOAD), Options())
    points = run.crash_points()
    ids = [p.id for p in points]
    timeline = weakref.ref(points[0].timeline)
    gc.disable()
    try:
        del points
        run.device.drop_timeline()
        assert timeline() is None
    finally:
        gc.enable()
    points = run.crash_points()
    assert [p.id for p in points] == ids
    kept = points[len(points) // 2].state()
    run.device.drop_timeline()
    assert kept.image().to_bytes() == run.crash_points()[len(points) // 2].state().image().to_bytes()
