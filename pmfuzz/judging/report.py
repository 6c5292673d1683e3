"""The human report of a verdict: which oracle, which file and words, and the exact crash state."""

from __future__ import annotations

from .engine import Finding, Verdict
from .repro import Reproducer

__all__ = ["format_report", "format_finding"]


def format_finding(f: Finding, n: int | None = None) -> str:
    head = f"[{f.oracle.value}] {f.message}"
    lines = [head if n is None else f"{n}. {head}"]
    lines.append(f"   signature: {f.signature_text}")
    lines.append(f"   cause: {f.root_cause}")
    if f.crash is not None:
        c = f.crash
        op = f"op {c.op} `{c.op_text}`" if c.op >= 0 else "before the first op"
        if c.point == "E":
            lines.append(f"   crash: at the end of the run (E), after {op}")
        else:
            lines.append(f"   crash: just before {c.event} ({c.point}) in {op}, at {c.site or '-'}")
        lines.append(f"   state: {c.state}")
        kept = [o for o in c.outcomes if o.verdict == "kept"]
        other = [o for o in c.outcomes if o.verdict != "kept"]
        for o in other:
            where = ", ".join(o.sites) or "-"
            lines.append(
                f"     {o.verdict:<8} {o.name} ({o.kept}/{o.total} units; written by {where}, "
                f"ops {','.join(map(str, o.ops))})"
            )
        if kept:
            sites = sorted({s for o in kept for s in o.sites})
            lines.append(f"     kept     {len(kept)} other line(s) in flight (written by {', '.join(sites) or '-'})")
    elif f.op >= 0:
        lines.append(f"   during op {f.op} `{f.op_text}` (no crash)")
    for e in f.evidence:
        lines.append(f"   {e}")
    if f.traceback:
        lines.append("   traceback (the target's):")
        lines += ["     " + ln for ln in f.traceback.rstrip().splitlines()]
    return "\n".join(lines)


def format_report(v: Verdict, r: Reproducer | None = None) -> str:
    out = []
    if r is not None:
        out.append(
            f"target: {r.target}  domain: {r.domain.value}  device: {r.device_size >> 20} MiB  "
            f"ops: {len(r.workload)}" + (f"  crash: {r.crash}" if r.crash else "")
        )
    s = v.stats
    out.append(f"checked {s.points} crash point(s), {s.distinct} distinct state(s) of {s.states}")
    for note in v.notes:
        out.append(f"note: {note}")
    if v.clean:
        out.append("verdict: clean")
    else:
        out.append(f"verdict: {len(v.findings)} finding(s): " + ", ".join(sorted(v.oracles())))
        for i, f in enumerate(sorted(v.findings, key=lambda f: f.signature), 1):
            out.append(format_finding(f, i))
    return "\n".join(out) + "\n"
