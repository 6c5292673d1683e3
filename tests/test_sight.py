"""Sight: `pmfuzz plot` on a real campaign's stats, and pictures of real zoo findings.

Figures are checked through the artists they hold (line data, labels, patch ids), never pixels.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oracles import OracleName
from pmfuzz.cli import main
from pmfuzz.errors import PmfuzzError
from pmfuzz.judging.repro import parse_reproducer
from pmfuzz.pmem import StateId
from pmfuzz.sight import BadKind, BadRun, LineFate, build_scene, load_campaign
from pmfuzz.sight.file_zoom import zoom_ticks, zoom_window
from pmfuzz.sight.picture import finding_figure
from pmfuzz.sight.plot import campaign_figure, time_unit
from pmfuzz.signature import oracle_of

ROOT = Path(__file__).resolve().parents[1]
REGRESSION = ROOT / "corpora" / "regression"
PNG = b"\x89PNG\r\n\x1a\n"


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def _axes(fig, label: str):
    return next(a for a in fig.axes if a.get_label() == label)


def _line(ax, label: str):
    return next(ln for ln in ax.get_lines() if ln.get_label() == label)


# -- the campaign plot -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def campaign(tmp_path_factory) -> Path:
    """A real campaign in two sessions (the second resumes the first), so the stats file has a restart."""
    crashes = tmp_path_factory.mktemp("campaign") / "crashes"
    seeds = str(ROOT / "corpora" / "seeds")
    argv = ["run", "--max-execs", "24", "--bugs", "zero-after-commit", "--cil", "eager", "--corpus", seeds, "--quiet"]
    for seed in ("1", "2"):
        try:
            main([*argv, "--seed", seed, "--crashes", str(crashes)])
        except SystemExit as e:
            assert not e.code, f"pmfuzz run failed with exit {e.code}"
    return crashes


def _raw(crashes: Path) -> list[dict]:
    return [json.loads(x) for x in (crashes / "stats.jsonl").read_text().splitlines() if x.strip()]


def test_campaign_is_read_back_line_by_line_with_sessions_laid_end_to_end(campaign: Path) -> None:
    raw = _raw(campaign)
    c = load_campaign(campaign / "stats.jsonl")
    assert [(r.seconds, r.execs, r.states, r.coverage, r.findings) for r in c.records] == [
        (x["seconds"], x["execs"], x["states"], x["coverage"], x["findings"]) for x in raw
    ]
    restarts = sum(1 for a, b in itertools.pairwise(raw) if b["seconds"] < a["seconds"])
    assert len(c.session_starts) == restarts + 1 == 2
    times = [r.time for r in c.records]
    assert times == sorted(times)
    assert c.duration == pytest.approx(sum(max(x["seconds"] for x in s) for s in _sessions(raw)))


def _sessions(raw: list[dict]) -> list[list[dict]]:
    out: list[list[dict]] = [[]]
    for x in raw:
        if out[-1] and x["seconds"] < out[-1][-1]["seconds"]:
            out.append([])
        out[-1].append(x)
    return out


def test_campaign_figure_draws_the_stats_series(campaign: Path) -> None:
    raw = _raw(campaign)
    c = load_campaign(campaign)
    fig = campaign_figure(c)
    speed, corpus, findings = _axes(fig, "speed"), _axes(fig, "corpus"), _axes(fig, "findings")
    assert "per second" in speed.get_title(loc="left")
    assert "coverage" in corpus.get_title(loc="left").lower()
    assert "oracle" in findings.get_title(loc="left")
    _unit, k = time_unit(c.duration)
    want_eps, want_sps, want_cov = [], [], []
    for s in _sessions(raw):
        prev = {"seconds": 0, "execs": 0, "states": 0}
        for x in s:
            dt = x["seconds"] - prev["seconds"]
            want_eps.append((x["execs"] - prev["execs"]) / dt if dt > 0 else 0.0)
            want_sps.append((x["states"] - prev["states"]) / dt if dt > 0 else 0.0)
            want_cov.append(x["coverage"])
            prev = x
    eps = _line(speed, "execs/s")
    assert list(eps.get_ydata())[1:] == pytest.approx(want_eps)
    assert list(eps.get_xdata())[1:] == pytest.approx([r.time / k for r in c.records])
    cov = _line(_axes(fig, "corpus-coverage"), "coverage")
    assert list(cov.get_ydata()) == want_cov
    sps = _line(_axes(fig, "speed-states"), "crash states/s")
    assert list(sps.get_ydata())[1:] == pytest.approx(want_sps)
    index = json.loads((campaign / "findings.json").read_text())
    oracles = {oracle_of(key) for key in index}
    assert oracles, "the zoo bug was not found: the campaign is too short to test the findings panel"
    for oracle in oracles:
        marks = _line(findings, oracle)
        assert len(marks.get_xdata()) == sum(1 for key in index if oracle_of(key) == oracle)
    assert _line(findings, "root causes").get_ydata()[-1] == len(index)
    assert all(r.seeds_left for r in c.records), "24 execs replay only part of the 943 seeds"
    assert [p for p in corpus.patches if p.get_label() == "replaying the seed corpus"]


def test_the_seed_replay_phase_ends_where_the_stats_say(tmp_path: Path) -> None:
    lines = [
        {"seconds": s, "execs": e, "states": 10 * e, "corpus": 5, "coverage": e, "findings": 0, "seeds_left": left}
        for s, e, left in ((5, 10, 40), (10, 30, 20), (15, 55, 0), (20, 80, 0))
    ]
    (tmp_path / "stats.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    c = load_campaign(tmp_path)
    assert [r.seeds_left for r in c.records] == [40, 20, 0, 0]
    fig = campaign_figure(c)
    [span] = [p for p in _axes(fig, "speed").patches if p.get_label() == "replaying the seed corpus"]
    if hasattr(span, "get_width"):  # matplotlib >= 3.9 draws an axvspan as a Rectangle
        xs = [span.get_x(), span.get_x() + span.get_width()]
    else:
        xs = sorted({x for x, _ in span.get_xy()})
    assert [round(x, 6) for x in xs] == [0.0, 15.0]


def test_a_campaign_without_seeds_shows_no_replay_phase(tmp_path: Path) -> None:
    lines = [
        {"seconds": s, "execs": s, "states": 10 * s, "corpus": s, "coverage": s, "findings": 0, "seeds_left": 0}
        for s in (5, 10, 15)
    ]
    (tmp_path / "stats.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    fig = campaign_figure(load_campaign(tmp_path))
    assert not [p for p in _axes(fig, "speed").patches if p.get_label() == "replaying the seed corpus"]


def test_a_campaign_records_its_memory_and_the_plot_draws_it(campaign: Path, tmp_path: Path) -> None:
    import sys

    raw = _raw(campaign)
    if sys.platform.startswith("linux"):
        assert all(r["rss_mib"] > 1 for r in raw)
        assert all(0 < r["heap_in_use_mib"] < r["rss_mib"] and r["heap_free_mib"] >= 0 for r in raw)
    assert all(r["py_blocks"] > 1000 for r in raw)
    lines = [
        {"seconds": s, "execs": s, "states": 10 * s, "corpus": 5, "coverage": s, "findings": 0, "rss_mib": m}
        for s, m in ((5, 80.0), (10, 95.5), (15, 96.0))
    ]
    (tmp_path / "stats.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    c = load_campaign(tmp_path)
    assert [r.rss_mib for r in c.records] == [80.0, 95.5, 96.0]
    fig = campaign_figure(c)
    mem = next(ln for a in fig.axes for ln in a.get_lines() if ln.get_label() == "memory (MiB)")
    assert list(mem.get_ydata()) == [80.0, 95.5, 96.0]


def test_pmfuzz_plot_writes_a_png(campaign: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "c.png"
    code, stdout, _ = _run(["plot", str(campaign / "stats.jsonl"), "-o", str(out)], capsys)
    assert code == 0 and str(out) in stdout
    assert out.read_bytes()[:8] == PNG
    code, stdout, _ = _run(["plot", str(campaign)], capsys)
    assert code == 0 and (campaign / "campaign.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{"seconds": 1, "execs": 1, "states": 1, "corpus": 1, "coverage": 1, "findings": 0}\nnot json\n', ":2:"),
        ('{"seconds": 1, "execs": 1, "states": 1, "corpus": 1, "coverage": 1}\n', "'findings'"),
        ('{"seconds": "soon", "execs": 1, "states": 1, "corpus": 1, "coverage": 1, "findings": 0}\n', "'seconds'"),
        ("[1, 2]\n", "JSON object"),
        ("\n", "no statistics lines"),
    ],
)
def test_bad_stats_file_is_one_line_and_exit_2(tmp_path: Path, capsys, text: str, where: str) -> None:
    p = tmp_path / "stats.jsonl"
    p.write_text(text)
    code, _, err = _run(["plot", str(p), "-o", str(tmp_path / "x.png")], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and where in err
    assert not (tmp_path / "x.png").exists()


def test_plot_without_matplotlib_says_how_to_install(campaign: Path) -> None:
    code = "import sys; sys.modules['matplotlib'] = None\nfrom pmfuzz.cli import main\nmain(sys.argv[1:])\n"
    res = subprocess.run(
        [sys.executable, "-c", code, "plot", str(campaign)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1
    assert "pip install 'pmfuzz[plot]'" in res.stderr


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.floats(0.1, 50), st.integers(0, 40)), min_size=1, max_size=5),
        min_size=1,
        max_size=3,
    )
)
def test_stats_round_trip_and_rates_are_interval_deltas(tmp_path_factory, sessions) -> None:
    lines, want = [], []
    for s in sessions:
        t = execs = 0
        for dt, de in s:
            t, execs = round(t + dt, 2), execs + de
            rec = {"seconds": t, "execs": execs, "states": 3 * execs, "corpus": 1, "coverage": 2, "findings": 0}
            lines.append(json.dumps(rec))
            want.append((t, execs))
    p = tmp_path_factory.mktemp("stats") / "stats.jsonl"
    p.write_text("\n".join(lines) + "\n")
    c = load_campaign(p)
    assert [(r.seconds, r.execs) for r in c.records] == want
    eps, sps = c.rates()
    for i, r in enumerate(c.records):
        prev = c.records[i - 1] if i and c.records[i - 1].session == r.session else None
        dt = r.seconds - (prev.seconds if prev else 0)
        de = r.execs - (prev.execs if prev else 0)
        assert eps[i] == pytest.approx(de / dt if dt > 0 else 0.0)
        assert sps[i] == pytest.approx(3 * eps[i])
    assert all(b.time >= a.time for a, b in itertools.pairwise(c.records))


# -- the finding picture ---------------------------------------------------------------------------


def _scene(name: str):
    r = parse_reproducer((REGRESSION / f"{name}.pmfuzz").read_text())
    return r, build_scene(r)


def _dropped_groups(state_id: StateId) -> set[str]:
    """Groups a state id says kept nothing (`L5=0` for a chain, `L5=x0` for a mask)."""
    return {g for g, v in state_id.deviations if v in ("0", "x0")}


@pytest.mark.parametrize(
    "name", ["fsync-no-flush", "journal-commit-no-fence", "cow-remap-before-copy", "zero-after-commit"]
)
def test_lines_in_flight_are_kept_or_dropped_as_the_state_id_says(name: str) -> None:
    r, scene = _scene(name)
    assert scene.state == str(r.crash)
    assert scene.lines, "a crash point of these reproducers always has lines in flight"
    dropped = _dropped_groups(r.crash)
    for ln in scene.lines:
        assert (ln.fate is LineFate.DROPPED) == (ln.group in dropped), ln
        assert ln.sites and all(ln.sites)
    fig = finding_figure(scene)
    ids = {p.get_gid() for p in _axes(fig, "lines").patches if p.get_gid()}
    for ln in scene.lines:
        assert f"line:{ln.line}:{ln.fate.value}" in ids
    texts = " ".join(t.get_text() for t in fig.texts)
    assert scene.signature in texts and f"crash state {r.crash}" in texts
    assert scene.cause and oracle_of(scene.cause) == scene.oracle.value
    headline = fig.texts[0].get_text()
    assert headline.startswith(f"[{scene.oracle.value}]") and scene.signature not in headline
    labels = " ".join(t.get_text() for t in _axes(fig, "lines").texts)
    for site in {s for ln in scene.lines for s in ln.sites}:
        assert site in labels


def test_fsync_no_flush_picture_shows_the_dropped_store_and_the_older_words() -> None:
    _, scene = _scene("fsync-no-flush")
    (dropped,) = [ln for ln in scene.lines if ln.fate is LineFate.DROPPED]
    assert dropped.sites == ("user_store",)
    (run,) = scene.bad
    assert (run.file, run.start, run.end, run.kind) == ("f0", 0, 64, BadKind.OLDER)
    assert run.device == ((dropped.addr, dropped.addr + 64),), "the older words live in the line the crash dropped"
    fig = finding_figure(scene)
    assert "file:f0:0:64:older" in {p.get_gid() for p in _axes(fig, "files").patches}
    assert scene.culprit == dropped.line, "the dropped line backing the older words is the one that matters"
    [mark] = [p for p in _axes(fig, "lines").patches if p.get_gid() == "culprit"]
    assert mark.get_x() < dropped.line % 64 + 1 and dropped.line % 64 < mark.get_x() + mark.get_width()
    legend = next(lg for lg in fig.legends if lg.get_label() == "legend:words")
    assert [t.get_text() for t in legend.get_texts()] == [BadKind.OLDER.label]


def test_cow_remap_before_copy_picture_shows_a_mixed_cow_block_of_poison() -> None:
    _r, scene = _scene("cow-remap-before-copy")
    kinds = {(b.file, b.start, b.end, b.kind) for b in scene.bad}
    assert ("f1", 0, 4096, BadKind.MIXED_COW) in kinds and ("f1", 0, 4096, BadKind.POISON) in kinds
    report = subprocess.run(
        [sys.executable, "-m", "pmfuzz", "replay", str(REGRESSION / "cow-remap-before-copy.pmfuzz")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    ).stdout
    block = int(re.search(r"poison of device address \w+ \(block (\d+)\)", report).group(1))
    for b in scene.bad:
        assert b.device == ((block * 4096, block * 4096 + 4096),)
    f1 = next(f for f in scene.files if f.name == "f1")
    assert f1.blocks[0].device == block * 4096
    fig = finding_figure(scene)
    gids = {p.get_gid() for p in _axes(fig, "files").patches}
    assert {"file:f1:0:4096:mixed-cow", "file:f1:0:4096:poison"} <= gids
    assert any(p.get_gid() == "bad:poison" for p in _axes(fig, "lines").patches)


def test_mount_finding_picture_marks_the_block_fsck_names() -> None:
    _, scene = _scene("refcount-not-journaled")
    assert scene.fsck_blocks == (86,)
    assert not scene.bad
    assert any(ln.sites == ("refcount_update_in_place",) for ln in scene.lines)
    regions = {r.name: r for r in scene.regions}
    (ln,) = scene.lines
    assert regions["refcounts"].start <= ln.addr < regions["refcounts"].end
    fig = finding_figure(scene)
    assert any(p.get_gid() == "fsck" for p in _axes(fig, "lines").patches)


def test_replay_picture_option(tmp_path: Path, capsys) -> None:
    out = tmp_path / "f.png"
    code, stdout, _ = _run(["replay", str(REGRESSION / "zero-after-commit.pmfuzz"), "--picture", str(out)], capsys)
    assert code == 1 and f"picture: {out}" in stdout
    assert out.read_bytes()[:8] == PNG
    clean = tmp_path / "clean.png"
    code, stdout, _ = _run(
        ["replay", str(REGRESSION / "convert-before-persist--zero.pmfuzz"), "--picture", str(clean)], capsys
    )
    assert code == 0 and "verdict: clean" in stdout and not clean.exists()


def test_picture_beside_a_reproducer_for_run(tmp_path: Path) -> None:
    from pmfuzz.sight.cli import picture_beside

    found = tmp_path / "found.pmfuzz"
    found.write_text((REGRESSION / "fsync-no-flush.pmfuzz").read_text())
    assert picture_beside(found) == tmp_path / "found.png"
    assert (tmp_path / "found.png").read_bytes()[:8] == PNG
    clean = tmp_path / "clean.pmfuzz"
    clean.write_text((REGRESSION / "fsync-no-flush--zero.pmfuzz").read_text())
    assert picture_beside(clean) is None and not (tmp_path / "clean.png").exists()


def test_plot_of_a_directory_without_stats_is_one_line(tmp_path: Path, capsys) -> None:
    code, _, err = _run(["plot", str(tmp_path)], capsys)
    assert code == 2 and "stats.jsonl" in err and len(err.strip().splitlines()) == 1


def test_a_scene_judges_a_reproducer_under_its_own_schedule() -> None:
    """Its crash state exists only in that schedule's trace: the scene's verdict is replay's, not an exploration's."""
    r = parse_reproducer((REGRESSION / "fp-racing-store-write-then-cow.pmfuzz").read_text())
    assert r.schedule is not None and r.crash is not None and r.expect == ("clean",)
    with pytest.raises(PmfuzzError, match="gives no finding"):
        build_scene(r)


# -- the headline names the store that matters; a small bad range gets a zoom -----------------------


def _headline(fig) -> str:
    return next(t for t in fig.texts if t.get_gid() == "headline").get_text()


def _zooms(fig) -> dict[str, object]:
    return {a.get_label().removeprefix("zoom:"): a for a in fig.axes if a.get_label().startswith("zoom:")}


def test_headline_names_the_site_and_op_of_the_line_that_matters() -> None:
    _, scene = _scene("cow-edges-unflushed")
    culprit = next(ln for ln in scene.lines if ln.line == scene.culprit)
    assert (culprit.sites, culprit.ops) == (("dax_iomap_copy_around",), (5,))
    headline = _headline(finding_figure(scene))
    assert headline == (
        "[cow-atomicity]  lost unflushed dax_iomap_copy_around in op 5 `write f1 100 200`   —   crash state F7:L5568=0"
    )


def test_headline_quotes_the_op_when_the_scene_holds_its_text_and_stays_clipped() -> None:
    _, scene = _scene("cow-edges-unflushed")
    in_op_5 = "crash just before sfence (F9) in op 5 `write f1 100 200`, at xfs_file_write"
    headline = _headline(finding_figure(replace(scene, crash_text=in_op_5)))
    assert "dax_iomap_copy_around in op 5 `write f1 100 200`   —   crash state F7:L5568=0" in headline
    assert headline.count("dax_iomap_copy_around") == 1  # the cause names the site: not twice
    culprit = next(ln for ln in scene.lines if ln.line == scene.culprit)
    wordy = replace(culprit, sites=tuple(f"a_rather_long_kernel_function_{i}" for i in range(6)), ops=(4, 5))
    lines = tuple(wordy if ln is culprit else ln for ln in scene.lines)
    fig = finding_figure(replace(scene, lines=lines))
    headline = _headline(fig)
    assert headline.startswith("[cow-atomicity]  lost unflushed dax_iomap_copy_around: a_rather_long_kernel_")
    assert headline.endswith("…   —   crash state F7:L5568=0")
    text = next(t for t in fig.texts if t.get_gid() == "headline")
    assert text.get_window_extent(fig.canvas.get_renderer()).x1 <= fig.bbox.x1


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("zero-after-commit", "[stale-exposure]  lost store of xfs_zero_extent   —   crash state F12"),
        ("cow-remap-before-copy", "[cow-atomicity]  lost store of data   —   crash state F38"),
        ("truncate-no-zero-tail", "[functional]  data for zero   —   no crash"),
        ("cow-remap-stale-mapping", "[mmap-coherency]  page-table entry kept over remapped   —   no crash"),
    ],
)
def test_a_finding_without_a_culprit_keeps_the_cause_only_headline(name: str, want: str) -> None:
    _, scene = _scene(name)
    assert scene.culprit is None
    assert _headline(finding_figure(scene)) == want


@pytest.mark.parametrize(
    ("name", "file", "window"),
    [("cow-edges-unflushed", "f1", (0, 128)), ("fsync-no-flush", "f0", (0, 128)), ("no-zero", "f0", (0, 192))],
)
def test_a_small_bad_range_gets_a_zoom_axis_under_its_file(name: str, file: str, window: tuple[int, int]) -> None:
    _, scene = _scene(name)
    fig = finding_figure(scene)
    files = _axes(fig, "files")
    zooms = _zooms(fig)
    assert list(zooms) == [file]
    zoom = zooms[file]
    lo, hi = zoom.get_xlim()
    assert (lo, hi) == window
    small = [r for r in scene.bad if r.file == file and r.end - r.start <= 128]
    assert small and all(lo <= r.start and r.end <= hi for r in small)
    assert hi - lo <= (files.get_xlim()[1] - files.get_xlim()[0]) / 16
    gids = {p.get_gid() for p in zoom.patches}
    assert {f"file:{r.file}:{r.start}:{r.end}:{r.kind.value}" for r in small} <= gids
    [label] = [t.get_text() for t in zoom.texts if t.get_gid() == f"zoom-label:{file}"]
    assert label.startswith(f"{file} [{lo:.0f}, {hi:.0f})") and "zoomed" in label
    [box] = [p for p in files.patches if p.get_gid() == f"zoom-box:{file}"]
    assert (box.get_x(), box.get_x() + box.get_width()) == window
    assert len([a for a in fig.artists if a.get_gid() == f"zoom-link:{file}"]) == 2


def test_a_zoom_overlaps_no_other_artist() -> None:
    _, scene = _scene("cow-edges-unflushed")
    fig = finding_figure(scene)
    r = fig.canvas.get_renderer()
    zoom_ax, files = _zooms(fig)["f1"], _axes(fig, "files")
    zoom = zoom_ax.get_tightbbox(r)
    others = [*fig.texts, *fig.legends, *files.texts, files.xaxis.label]
    others += [*files.get_yticklabels(), *files.get_xticklabels()]
    others += [p for p in files.patches if not (p.get_gid() or "").startswith("zoom-box")]
    others += [a for a in fig.axes if a is not zoom_ax and a is not files]
    hits = [a for a in others if a.get_visible() and a.get_window_extent(r).overlaps(zoom)]
    assert not hits, hits


@pytest.mark.parametrize("name", ["zero-after-commit", "cow-remap-before-copy", "convert-before-persist"])
def test_a_bad_range_over_most_of_the_file_gets_no_zoom(name: str) -> None:
    _, scene = _scene(name)
    assert scene.bad and all(r.end - r.start >= 4096 for r in scene.bad)
    fig = finding_figure(scene)
    assert not _zooms(fig)
    assert not [p for p in _axes(fig, "files").patches if (p.get_gid() or "").startswith("zoom-box")]


def test_a_zoom_draws_the_eof_when_it_falls_in_its_window() -> None:
    _, scene = _scene("fsync-no-flush")
    (run,) = scene.bad
    short = replace(scene, files=(replace(scene.files[0], size=100),), bad=(replace(run, start=64, end=100),))
    zoom = _zooms(finding_figure(short))["f0"]
    assert zoom.get_xlim() == (0, 192)
    [eof] = [ln for ln in zoom.get_lines() if ln.get_gid() == "zoom-eof:f0"]
    assert list(eof.get_xdata()) == [100, 100]
    far = replace(scene, bad=(run, replace(run, start=3000, end=3064)))
    assert not _zooms(finding_figure(far)), "two small runs a block apart: a window over both would not magnify"


@pytest.mark.parametrize(
    ("spans", "end", "window"),
    [
        ([(0, 64)], 4096, (0, 128)),
        ([(200, 208)], 4096, (128, 320)),
        ([(4032, 4096)], 4096, (3968, 4096)),
        ([(0, 96), (96, 104), (296, 304)], 8192, (0, 384)),
        ([(0, 4096)], 4096, None),
        ([(0, 64), (2048, 2112)], 4096, None),
    ],
)
def test_a_zoom_window_is_whole_lines_with_a_line_of_context(spans, end: int, window) -> None:
    runs = [BadRun("f", a, b, BadKind.POISON, OracleName.STALE_EXPOSURE, "") for a, b in spans]
    assert zoom_window(runs, end) == window
    if window is not None:
        major, minor = zoom_ticks(*window)
        assert major[0] >= window[0] and major[-1] <= window[1] and 3 <= len(major) <= 9
        assert all(t % 8 == 0 for t in major + minor)


def test_a_resumed_campaign_legend_names_only_series(campaign: Path) -> None:
    fig = campaign_figure(load_campaign(campaign))
    for label in ("speed", "corpus", "findings"):
        legend = _axes(fig, label).get_legend()
        if legend is None:
            continue
        texts = [t.get_text() for t in legend.get_texts()]
        assert texts and not [t for t in texts if t.startswith("_")], texts
    speed = [t.get_text() for t in _axes(fig, "speed").get_legend().get_texts()]
    assert speed == ["execs/s", "crash states/s", "resumed"]
