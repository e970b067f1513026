"""Plots from evaluation runs: accuracy against compute, and the N x M heatmap."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("matplotlib")

from toolprm_agents.evaluation.plot import find_runs, method_label, plot_accuracy_vs_compute, plot_grid_heatmap

PNG = b"\x89PNG\r\n\x1a\n"


def fake_run(folder, benchmark, strategy, accuracy, tokens, beams=2, expand=8, scorer="toolprm", trained=False):
    search = {"strategy": strategy, "beams": beams, "expand": expand, "seed": 0}
    results = {
        "benchmark": benchmark,
        "config": {"search": search, "scorer": None if strategy == "greedy" else {"name": scorer, "trained": trained}},
        "accuracy": accuracy,
        "valid_rate": 1.0,
        "n": 20,
        "compute": {"mean": {"tokens_total": tokens, "seconds": tokens / 100, "tokens_generated": tokens / 10, "forward_passes": tokens / 20}},
        "items": [],
    }
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results))
    return folder


@pytest.fixture
def runs_dir(tmp_path):
    root = tmp_path / "runs"
    for bench in ("bfcl:simple_python", "apibank:l1"):
        slug = bench.replace(":", "-")
        fake_run(root / slug / "greedy", bench, "greedy", 0.55, 400)
        for n in (2, 4):
            fake_run(root / slug / f"bon{n}", bench, "best_of_n", 0.5 + n / 100, 400 * n, beams=n, scorer="orm")
        for n in (1, 2, 4):
            for m in (2, 4, 8):
                fake_run(root / slug / f"beam{n}{m}", bench, "beam", 0.5 + m / 100 - n / 200, 300 * n * m, beams=n, expand=m)
    return root


def test_find_runs_searches_folders(runs_dir):
    runs = find_runs([runs_dir])
    assert len(runs) == 2 * (1 + 2 + 9)
    assert len(find_runs([runs_dir / "apibank-l1" / "greedy"])) == 1
    assert len(find_runs([runs_dir / "apibank-l1" / "greedy" / "results.json", runs_dir / "apibank-l1" / "greedy"])) == 1
    with pytest.raises(FileNotFoundError):
        find_runs([runs_dir / "nope"])


def test_method_labels(runs_dir):
    labels = {method_label(r) for r in find_runs([runs_dir])}
    assert labels == {"greedy", "best-of-N, ORM (untrained)", "beam, ToolPRM (untrained)"}


@pytest.mark.parametrize("x", ["tokens", "seconds"])
def test_accuracy_vs_compute_png(runs_dir, tmp_path, x):
    out = plot_accuracy_vs_compute(find_runs([runs_dir]), tmp_path / "p" / "acc.png", x=x, title="test")
    assert out.read_bytes()[:8] == PNG and out.stat().st_size < 300_000


def test_heatmap_png(runs_dir, tmp_path):
    out = plot_grid_heatmap(find_runs([runs_dir]), tmp_path / "heat.png")
    assert out.read_bytes()[:8] == PNG


def test_heatmap_needs_beam_runs(runs_dir, tmp_path):
    with pytest.raises(ValueError, match="no beam-search runs"):
        plot_grid_heatmap(find_runs([runs_dir / "apibank-l1" / "greedy"]), tmp_path / "heat.png")


def test_plot_command(runs_dir, tmp_path, capsys):
    from toolprm_agents import cli

    assert cli.main(["plot", str(runs_dir), "--out", str(tmp_path / "plots")]) == 0
    assert (tmp_path / "plots" / "accuracy_vs_compute.png").read_bytes()[:8] == PNG
    assert (tmp_path / "plots" / "heatmap.png").read_bytes()[:8] == PNG
    assert cli.main(["plot", str(tmp_path / "missing")]) == 2


def test_heatmap_of_a_single_cell(tmp_path):
    run = fake_run(tmp_path / "one", "bfcl:simple_python", "beam", 0.55, 746, beams=2, expand=4)
    out = plot_grid_heatmap(find_runs([run]), tmp_path / "heat.png")
    assert out.read_bytes()[:8] == PNG


def _captured_figure(monkeypatch, runs, tmp_path):
    """Draw the accuracy-vs-compute plot and return its axes by panel title (benchmark)."""
    from toolprm_agents.evaluation import plot

    figs = []
    real_save = plot._save
    monkeypatch.setattr(plot, "_save", lambda fig, out, title: (figs.append(fig), real_save(fig, out, title))[1])
    plot.plot_accuracy_vs_compute(runs, tmp_path / "acc.png")
    return {ax.get_title().split(" (")[0]: ax for ax in figs[0].axes if ax.get_visible()}


def test_y_axis_starts_at_0_and_is_shared_by_every_method_of_a_benchmark(runs_dir, tmp_path, monkeypatch):
    from toolprm_agents.evaluation.plot import accuracy_interval, y_limits
    from toolprm_agents.evaluation.stats import wilson

    runs = find_runs([runs_dir])
    axes = _captured_figure(monkeypatch, runs, tmp_path)
    assert set(axes) == {"bfcl:simple_python", "apibank:l1"}
    limits = y_limits(runs)
    for bench, ax in axes.items():
        lo, hi = ax.get_ylim()
        assert lo == 0.0 and (lo, hi) == pytest.approx(limits[bench])
        mine = [r for r in runs if r["benchmark"] == bench]
        # the top is the highest upper Wilson bound of any method there, plus the margin
        best = max(mine, key=lambda r: r["accuracy"])
        assert hi == pytest.approx(100 * wilson(round(best["accuracy"] * 20), 20)[1] + 5.0)
        assert all(accuracy_interval(r)[2] <= hi for r in mine)
    # the intervals are drawn: one error-bar set per method in each panel
    for ax in axes.values():
        assert len(ax.containers) == 3


def test_small_differences_stay_small_on_the_axis(tmp_path, monkeypatch):
    """8 vs 10 % on 100 items: the axis runs from 0 (not 8 to 10), and the bars overlap."""
    from toolprm_agents.evaluation.plot import accuracy_interval

    for name, strategy, acc in [("g", "greedy", 0.10), ("b", "beam", 0.08)]:
        fake_run(tmp_path / name, "apibank:l1", strategy, acc, 500)
    runs = find_runs([tmp_path / "g", tmp_path / "b"])
    for r in runs:
        r["n"], r["correct"] = 100, round(100 * r["accuracy"])
    ax = _captured_figure(monkeypatch, runs, tmp_path)["apibank:l1"]
    lo, hi = ax.get_ylim()
    assert lo == 0.0 and 20 < hi < 25  # Wilson(10/100) tops out at 17.4 %
    (_, g_lo, _), (_, _, b_hi) = accuracy_interval(runs[0]), accuracy_interval(runs[1])
    assert b_hi > g_lo


def test_method_labels_of_the_new_strategies(tmp_path):
    run = {"config": {"search": {"strategy": "beam", "rank": "combined"}, "scorer": {"name": "toolprm"}}}
    assert method_label(run) == "combined, ToolPRM"
    run["config"]["search"]["rank"] = "prm"
    assert method_label(run) == "beam, ToolPRM"
    assert method_label({"config": {"search": {"strategy": "self_consistency"}, "scorer": None}}) == "self-consistency"
    run["config"]["scorer"]["checkpoint"] = "packaged:toolprm-probe-smollm2"
    assert method_label(run) == "beam, ToolPRM", "the packaged judge goes by its kind"
    run["config"]["scorer"]["checkpoint"] = "toolprm_agents/checkpoints/toolprm-probe-smollm2"
    assert method_label(run) == "beam, ToolPRM"
    run["config"]["scorer"]["checkpoint"] = "runs/s21/toolprm-probe-branches/"
    assert method_label(run) == "beam, ToolPRM [toolprm-probe-branches]", "a judge of one's own is named"


def test_a_verify_run_is_labelled_apart_from_the_default_search():
    import json
    from pathlib import Path

    cfg = json.loads((Path(__file__).parent.parent / "docs/results/probe-search/bfcl-simple_python_verify/config.json").read_text())
    assert method_label({"config": cfg}) == "combined, ToolPRM, verify 0.5"
    cfg["search"]["verify"] = 0.0
    assert method_label({"config": cfg}) == "combined, ToolPRM"


def test_a_verify_setting_read_from_the_judge_checkpoint_is_labelled_with_its_decision_types():
    import json
    from pathlib import Path

    cfg = json.loads((Path(__file__).parent.parent / "docs/results/probe-search/bfcl-simple_python_search/config.json").read_text())
    cfg["search"]["verify"] = cfg["search"]["verify_types"] = None  # left to the checkpoint
    cfg["resolved"] = {"weights": [0.1, 0.7, 0.7], "verify": 0.5, "verify_types": ["end"]}
    assert method_label({"config": cfg}) == "combined, ToolPRM, verify 0.5 (end)"
    cfg["resolved"]["verify"] = 0.0
    assert method_label({"config": cfg}) == "combined, ToolPRM"


def test_verify_types_on_the_command_line_are_checked_and_echoed_as_given():
    import argparse

    import pytest

    from toolprm_agents.cli import add_search_options, search_config, search_options_changed

    p = argparse.ArgumentParser()
    add_search_options(p)
    args = p.parse_args(["--verify", "0.5", "--verify-types", "end,value"])
    assert search_config(args).verify_types == ("end", "value")
    assert search_options_changed(args) == ["--verify", "0.5", "--verify-types", "end,value"]
    with pytest.raises(SystemExit):
        p.parse_args(["--verify-types", "ends"])
