"""The folders of pmfuzz/ are the stages of DESIGN.md's data flow: a module imports its own stage or earlier ones."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

STAGES: tuple[tuple[str, ...], ...] = (
    ("pmfuzz.errors", "pmfuzz.fingerprint"),
    ("pmfuzz.lang",),
    ("pmfuzz.pmem",),
    ("pmfuzz.target",),
    ("pmfuzz.fs", "pmfuzz.kernel"),
    ("pmfuzz.reference",),
    ("oracles",),
    ("pmfuzz.signature", "pmfuzz.verdict"),
    ("pmfuzz.execution",),
    ("pmfuzz.judging",),
    ("pmfuzz.gen",),
    ("pmfuzz.sight", "pmfuzz.traces"),
    ("pmfuzz.fuzzing",),
    ("pmfuzz.cliparams", "pmfuzz.cli", "pmfuzz.__main__", "pmfuzz"),
)
"""The flow, earliest first; a stage's members may import each other."""


def stage_of(module: str) -> int:
    best = max(
        ((i, p) for i, names in enumerate(STAGES) for p in names if module == p or module.startswith(p + ".")),
        key=lambda ip: len(ip[1]),
    )
    return best[0]


def module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    is_pkg = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_pkg else parts), is_pkg


def imported(path: Path, text: str | None = None) -> list[tuple[int, str]]:
    """(line, absolute module) for every pmfuzz or oracles import in the file, relative ones resolved."""
    name, is_pkg = module_name(path)
    package = name if is_pkg else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text() if text is None else text)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            mods = [mod] if node.module else [f"{mod}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        else:
            continue
        out += [(node.lineno, m) for m in mods if m.split(".")[0] in ("pmfuzz", "oracles")]
    return out


MODULES = sorted([*(ROOT / "pmfuzz").rglob("*.py"), *(ROOT / "oracles").rglob("*.py")])


def test_every_module_has_a_stage() -> None:
    assert len(MODULES) > 100
    for path in MODULES:
        stage_of(module_name(path)[0])


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_flow_forward(path: Path) -> None:
    mine = stage_of(module_name(path)[0])
    backward = [f"line {line}: {mod}" for line, mod in imported(path) if stage_of(mod) > mine]
    assert not backward, f"{path.relative_to(ROOT)} imports a later stage: {backward}"


def test_a_backward_import_is_caught() -> None:
    """The checker itself: relative imports resolve, and a lang module importing judging is later-stage."""
    path = ROOT / "pmfuzz" / "lang" / "workload.py"
    found = {m for _, m in imported(path, "from ..judging.engine import check\nfrom . import data\nimport numpy\n")}
    assert found == {"pmfuzz.judging.engine", "pmfuzz.lang.data"}
    assert stage_of("pmfuzz.judging.engine") > stage_of("pmfuzz.lang.workload")
    assert stage_of("pmfuzz.lang.data") == stage_of("pmfuzz.lang.workload")
