"""Curves of forkgrpo runs: one PNG, one labelled line per run in every panel.

    python experiments/plot.py RUN_DIR [RUN_DIR ...] --out FILE.png [--labels A B ...]

Each RUN_DIR holds a metrics.jsonl written by forkgrpo.py (docs/metrics.md explains the keys). The
panels are what a reader of a run looks at first: held-out accuracy, training-rollout accuracy,
response length and truncation, token entropy (mean, percentiles and the forking threshold tau),
and the clip fractions. A key a run never logged (no evaluation, --fork-mode random: no tau) leaves
its panel without that run's line.
"""

import argparse
import json
import math
import sys
from pathlib import Path

# (title, [(metric key, line style)], y label); a panel may draw several keys per run. A key with {set}
# is drawn once per eval set of the run (its own colour): the built-in split's eval/acc_greedy and
# eval/acc@k, and each --eval-data set's eval/<name>/acc_greedy and eval/<name>/mean@k.
PANELS = [
    ("held-out accuracy", [("eval/{set}acc_greedy", "-"), ("eval/{set}{sampled}@*", ":")],
     "greedy (solid), sampled mean@k (dotted)"),
    ("training-rollout accuracy", [("reward/accuracy", "-")], "fraction right"),
    ("response length", [("length/mean", "-")], "tokens (mean)"),
    ("truncated responses", [("length/truncated_frac", "-")], "fraction"),
    ("token entropy", [("entropy/mean", "-"), ("entropy/p80", "--"), ("fork/tau", ":")],
     "mean (solid), p80 (dashed), fork/tau (dotted)"),
    ("clip fractions", [("loss/clipfrac_low", "-"), ("loss/clipfrac_high", "--")], "low (solid), high (dashed)"),
]


def read_metrics(run_dir):
    """The metric lines of RUN_DIR/metrics.jsonl, in order; a line cut short by a kill is skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path}: no such file (is {run_dir} a forkgrpo output folder?)")
    lines = []
    for text in path.read_text(errors="replace").splitlines():
        try:
            m = json.loads(text)
        except ValueError:
            continue
        if isinstance(m, dict) and isinstance(m.get("step"), (int, float)):
            lines.append(m)
    return lines


def series(metrics, key):
    """(steps, values) of one key over a run; a key ending in * matches the first key with that prefix
    (eval/acc@* is eval/acc@k whatever k was). Non-finite values are dropped."""
    if key.endswith("*"):
        key = next((k for m in metrics for k in m if k.startswith(key[:-1])), key)
    points = [(m["step"], m[key]) for m in metrics if isinstance(m.get(key), (int, float)) and math.isfinite(m[key])]
    return [s for s, _ in points], [v for _, v in points]


def eval_sets(metrics):
    """A run's eval sets as (key prefix, sampled-accuracy name, legend suffix): the built-in split first."""
    names = sorted({k.split("/")[1] for m in metrics for k in m if k.startswith("eval/") and k.count("/") == 2})
    builtin = [("", "acc", "")] if any("eval/acc_greedy" in m for m in metrics) else []
    return builtin + [(f"{n}/", "mean", f" {n}") for n in names]


def plot_runs(runs, labels, out):
    """Draw every panel for every run into `out` (PNG); returns the matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 8), constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (title, keys, ylabel) in zip(axes.flat, PANELS):
        line = 0  # one colour per run, or per (run, eval set) in a panel of eval sets
        for metrics, label in zip(runs, labels):
            sets = eval_sets(metrics) if "{set}" in keys[0][0] else [("", "", "")]
            for prefix, sampled, suffix in sets or [("", "", "")]:
                for j, (key, style) in enumerate(keys):
                    x, y = series(metrics, key.format(set=prefix, sampled=sampled))
                    if x:
                        ax.plot(x, y, style, color=colours[line % len(colours)], marker="o", markersize=3,
                                label=label + suffix if j == 0 else None)
                line += 1
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return fig


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="forkgrpo output folders (each with a metrics.jsonl)")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--labels", nargs="+", help="one label per run (default: the folder names)")
    args = parser.parse_args(argv)
    labels = args.labels or [Path(r).resolve().name for r in args.runs]
    if len(labels) != len(args.runs):
        parser.error(f"--labels: {len(labels)} labels for {len(args.runs)} runs")
    plot_runs([read_metrics(r) for r in args.runs], labels, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
