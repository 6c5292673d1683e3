"""A recovered image's mount is freed as soon as the judge drops it, without the cyclic collector:
a campaign mounts one for every other crash state, and object graphs that only the collector
freed made its full collections walk them by the thousand."""

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
