"""experiments/: the ablation's aggregation and the run plots, on small synthetic runs."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "experiments"))
import ablation  # noqa: E402
import plot  # noqa: E402


def fake_run(folder, greedy, sampled, entropy, truncated, frac, tokens, steps=ablation.STEPS):
    """A metrics.jsonl shaped like forkgrpo's: evals at 0, 4 and the last step, a train line per step."""
    folder.mkdir(parents=True)
    lines = []
    for step in range(steps + 1):
        if step:
            lines.append({"step": step, "reward/mean": 0.0, "reward/accuracy": step / 10, "length/mean": 30.0,
                          "length/truncated_frac": truncated if step == steps else 0.9, "loss/loss": 0.1,
                          "entropy/mean": entropy if step == steps else 9.0, "fork/frac_selected": frac,
                          "train/tokens": tokens[step - 1], "time/step": 1.0})
        if step in (0, 4, steps):
            lines.append({"step": step, "eval/acc_greedy": greedy if step == steps else 0.25,
                          "eval/acc@1": sampled if step == steps else 0.1})
    text = "".join(json.dumps(m) + "\n" for m in lines)
    (folder / "metrics.jsonl").write_text(text + '{"step": 9, "loss/lo')  # and a line cut short by a kill


def test_ablation_table_is_mean_min_max_over_seeds_of_each_arms_final_figures(tmp_path):
    tokens = [100.0] * ablation.STEPS
    fake_run(tmp_path / "top20-seed0", 0.50, 0.40, 0.30, 0.10, 0.2, tokens)
    fake_run(tmp_path / "top20-seed1", 0.60, 0.30, 0.50, 0.00, 0.2, [200.0] * ablation.STEPS)
    fake_run(tmp_path / "all-seed0", 0.45, 0.35, 0.20, 0.05, 1.0, tokens)
    (tmp_path / "all-seed0" / "command.json").write_text(json.dumps({"commit": "abc123"}))
    table = ablation.aggregate(tmp_path)
    assert list(table) == ["top20", "all"]  # arms in the script's order; absent arms are left out
    top = table["top20"]
    assert top["seeds"] == [0, 1]
    assert top["greedy_start"] == pytest.approx((0.25, 0.25, 0.25))
    assert top["greedy"] == pytest.approx((0.55, 0.50, 0.60))
    assert top["sampled"] == pytest.approx((0.35, 0.30, 0.40))
    assert top["entropy"] == pytest.approx((0.40, 0.30, 0.50))
    assert top["truncated"] == pytest.approx((0.05, 0.00, 0.10))
    assert top["grad_tokens"] == pytest.approx((30.0, 20.0, 40.0))  # 0.2 of 100 and of 200 tokens
    assert table["all"]["grad_tokens"] == pytest.approx((100.0, 100.0, 100.0))
    md = ablation.markdown(table, tmp_path)
    assert "| `top20` | 0, 1 | 25.0% [25.0%, 25.0%] | 55.0% [50.0%, 60.0%] | 35.0% [30.0%, 40.0%] |" in md
    assert "abc123" in md and "`eval/acc@1`" in md


def test_ablation_keeps_a_finished_run_and_redoes_an_unfinished_one(tmp_path):
    fake_run(tmp_path / "done", 0.5, 0.4, 0.3, 0.1, 0.2, [100.0] * ablation.STEPS)
    fake_run(tmp_path / "cut", 0.5, 0.4, 0.3, 0.1, 0.2, [100.0] * 3, steps=3)
    assert ablation.finished(tmp_path / "done")
    assert not ablation.finished(tmp_path / "cut") and not ablation.finished(tmp_path / "missing")


def test_ablation_commands_differ_only_in_the_arms_flags_and_the_seed():
    a, b = ablation.command("top20", 0, "x"), ablation.command("bottom80", 1, "x")
    assert a[:2] == ["python", "forkgrpo.py"] and "--rho" in a and a[a.index("--rho") + 1] == "0.2"
    assert b[b.index("--fork-mode") + 1] == "bottom" and b[b.index("--seed") + 1] == "1"
    strip = lambda c: [x for x in c if x not in ("--fork-mode", "bottom", "--rho", "0.2", "0.8", "0", "1")]
    assert strip(a) == strip(b)


def test_ablation_figure_draws_each_seed_thin_and_each_arms_mean_thick(tmp_path):
    for seed, g in ((0, 0.4), (1, 0.6)):
        fake_run(tmp_path / f"top20-seed{seed}", g, 0.3, 0.3, 0.1, 0.2, [100.0] * ablation.STEPS)
    fig = ablation.figure(tmp_path, tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = fig.axes[0].get_lines()
    assert len(lines) == 3  # two seeds and their mean
    mean = lines[2]
    assert list(mean.get_xdata()) == [0, 4, 8] and mean.get_ydata()[-1] == pytest.approx(0.5)
    assert mean.get_linewidth() > lines[0].get_linewidth()


def test_plot_writes_a_png_with_one_labelled_line_per_run_in_each_panel(tmp_path):
    runs = []
    for name in ("a", "b", "c"):
        fake_run(tmp_path / name, 0.5, 0.4, 0.3, 0.1, 0.2, [100.0] * ablation.STEPS)
        runs.append(plot.read_metrics(tmp_path / name))
    fig = plot.plot_runs(runs, ["a", "b", "c"], tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    accuracy = fig.axes[0]  # held-out accuracy: greedy and sampled per run
    assert [t.get_text() for t in accuracy.get_legend().get_texts()] == ["a", "b", "c"]
    assert len(accuracy.get_lines()) == 6
    train = fig.axes[1]
    assert len(train.get_lines()) == 3
    assert list(train.get_lines()[0].get_ydata()) == pytest.approx([s / 10 for s in range(1, ablation.STEPS + 1)])


def test_plot_refuses_a_folder_without_metrics(tmp_path):
    with pytest.raises(SystemExit, match="no such file"):
        plot.read_metrics(tmp_path)
