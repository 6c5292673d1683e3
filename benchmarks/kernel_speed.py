"""ext4-DAX or XFS-DAX on the real kernel: boot time, workloads, trace events and distinct crash images
per second, and where the time goes, on one core (guest and host pinned to the same CPU).

    taskset -c 0 .venv/bin/python benchmarks/kernel_speed.py [--target xfs-dax] [--workloads 40] [--domain adr]

The workloads are drawn from pmfuzz's generator (the ops the target runs, seeded),
judged exhaustively up to 48 states a crash point, else bounded (the campaign's
state choice when the README's kernel figures were taken; it is 256 since). For
XFS, "recovery" is a mount of each metadata state in the guest (log recovery),
its listing and unmount, plus xfs_repair -n on the host.
"""

from __future__ import annotations

import argparse
import random
import time

from pmfuzz.gen.drawing import Drawer
from pmfuzz.gen.strategies import DEFAULT_SHAPE, workloads
from pmfuzz.judging.engine import Options, Stats, check
from pmfuzz.target import make_target, supported_falloc_modes, supported_ops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", type=int, default=40)
    ap.add_argument("--domain", default="adr")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--target", default="ext4-dax")
    args = ap.parse_args()
    t = make_target(args.target)
    t0 = time.perf_counter()
    g = t.boot()
    boot = time.perf_counter() - t0
    draw = Drawer(workloads(max_ops=10, shape=DEFAULT_SHAPE.only(supported_ops(t), supported_falloc_modes(t))))
    rng = random.Random(args.seed)
    opts = Options(device_size=t.device_size, domain=args.domain, exhaustive_upto=48, max_states=48)
    check(t, [], opts)  # format once, outside the measurement
    total = Stats()
    ops = 0
    events0 = t.accounting.events
    t.timing.guest = t.timing.view = t.timing.replay = 0.0
    rt = t.recovery.timing
    rt.guest = rt.host = rt.repair = 0.0
    rt.mounts = rt.reused = 0
    wall0 = time.perf_counter()
    done = 0
    while done < args.workloads:
        w = draw(rng.randbytes(2048))
        if w is None or not w.ops:
            continue
        v = check(t, w, opts)
        done += 1
        ops += v.stats.ops
        for k in ("points", "states", "distinct", "mounts", "t_exec", "t_image", "t_mount", "t_oracles"):
            setattr(total, k, getattr(total, k) + getattr(v.stats, k))
    wall = time.perf_counter() - wall0
    events = t.accounting.events - events0
    tm = t.timing
    print(f"kernel {g.release}")
    print(f"guest boot (TCG, to the agent's first answer): {boot:.1f} s")
    print(f"{done} workloads ({ops} ops) in {wall:.1f} s: {done / wall:.2f} workloads/s")
    per_guest = events / max(tm.guest, 1e-9)
    print(f"trace events: {events} ({events / wall:.0f}/s of wall time, {per_guest:.0f}/s of guest time)")
    print(
        f"crash states: {total.states} judged, {total.distinct} distinct images "
        f"({total.distinct / wall:.1f}/s), {total.mounts} recoveries"
        + (f" ({rt.mounts} mounts in the guest, {rt.reused} remembered)" if rt.mounts else " (e2fsck)")
    )
    rest = wall - (tm.guest + tm.view + tm.replay + total.t_mount + total.t_oracles + total.t_image)
    if rt.mounts:
        recovery = [
            ("recovery: mount + list + unmount in the guest", rt.guest),
            ("recovery: image in/out of the guest (host)", rt.host - rt.repair),
            ("recovery: xfs_repair -n (host)", rt.repair),
            ("recovery: the rest (engine's mount bookkeeping)", total.t_mount - rt.guest - rt.host),
        ]
    else:
        recovery = [("recovery (e2fsck -f -p) + reading the image", total.t_mount)]
    for name, secs in (
        ("guest: ops", tm.guest),
        ("guest: listing files for the functional oracle", tm.view),
        ("trace decode + replay + reconcile", tm.replay),
        ("crash images (engine)", total.t_image),
        *recovery,
        ("oracles", total.t_oracles),
        ("engine, reference model, generator", rest),
    ):
        print(f"  {name:48} {secs:7.1f} s  {100 * secs / wall:5.1f} %")
    in_guest = tm.guest + tm.view + rt.guest
    print(f"time in the guest: {in_guest:.1f} s ({100 * in_guest / wall:.1f} %)")
    print(f"recorder accounting: {t.accounting}")
    t.close()


if __name__ == "__main__":
    main()
