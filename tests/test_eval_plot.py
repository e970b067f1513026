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
