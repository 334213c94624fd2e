"""The paper's ablation at laptop scale: which tokens get the policy gradient.

    python experiments/ablation.py                     # every arm, seeds 0-2 (about 7 min a run on 2 CPU cores: 86 min)
    python experiments/ablation.py --arms top20 --seeds 0 --out /tmp/again   # one run alone
    python experiments/ablation.py --report-only       # redo the table and figure from the runs

Arms (Wang et al., arXiv 2506.01939 v2, Fig. 7): top20, the method (the top 20% of response tokens
by entropy); all, plain DAPO (every token); bottom80, the lowest 80% by entropy (the paper's failed
arm); random20, 20% of the tokens chosen at random (a control the paper does not run: it separates
"which tokens" from "how many"). Each run is the real forkgrpo.main in its own process, with the
trainer's defaults (the embedded SmolLM2-135M-Instruct on the built-in problems) plus the arm's flags
and the evaluation budget below. Everything goes under --out: <arm>-seed<k>/ with the run's
metrics.jsonl and command.json (its exact command line and the commit it ran at), then
ablation.md (the table, recomputed from the jsonl files) and ablation.png (the paper's Fig. 7
layout: seeds thin, their mean thick). The final models are deleted. A run whose metrics.jsonl
already ends in its final evaluation is kept, so an interrupted ablation continues where it stopped.
"""

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))
from plot import read_metrics, series  # noqa: E402

ARMS = {
    "top20": ["--rho", "0.2"],
    "all": ["--rho", "1.0"],
    "bottom80": ["--fork-mode", "bottom", "--rho", "0.8"],
    "random20": ["--fork-mode", "random", "--rho", "0.2"],
}
# The budget: the trainer's 8 default steps, and an evaluation on 128 held-out problems (greedy and
# one sample at T = 0.5) at steps 0, 4 and 8. README, "Does the mask matter?", says why.
STEPS = 8
BUDGET = ["--steps", str(STEPS), "--eval-size", "128", "--eval-every", "4", "--eval-samples", "1"]
COLOURS = {"top20": "tab:red", "all": "tab:blue", "bottom80": "tab:green", "random20": "tab:gray"}


def command(arm, seed, run_dir):
    """The command line of one run (relative to the repository root, as the README shows it)."""
    return ["python", "forkgrpo.py", *ARMS[arm], *BUDGET, "--seed", str(seed), "--out-dir", str(run_dir)]


def finished(run_dir):
    """Whether run_dir holds a complete run: its last metrics line is the final evaluation."""
    try:
        metrics = read_metrics(run_dir)
    except SystemExit:
        return False
    return bool(metrics) and metrics[-1]["step"] == STEPS and "eval/acc_greedy" in metrics[-1]


def git_commit():
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "forkgrpo.py", "math_verify"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_one(arm, seed, out):
    run_dir = out / f"{arm}-seed{seed}"
    if finished(run_dir):
        print(f"ablation: {run_dir} is complete; kept", flush=True)
        return
    cmd = command(arm, seed, run_dir.resolve())
    # --overwrite: an unfinished run of this arm and seed (an interrupted ablation) starts afresh.
    argv = [sys.executable, str(ROOT / "forkgrpo.py"), *cmd[2:], "--overwrite"]
    print(f"ablation: {arm} seed {seed}: {' '.join(cmd)}", flush=True)
    start = time.time()
    proc = subprocess.run(argv, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"ablation: {arm} seed {seed} failed (exit {proc.returncode}); its output is above")
    shown = [*cmd[:-1], str(Path(os.path.relpath(run_dir.resolve(), ROOT)))]
    record = {"arm": arm, "seed": seed, "command": " ".join(shown), "commit": git_commit(),
              "seconds": round(time.time() - start, 1)}
    (run_dir / "command.json").write_text(json.dumps(record, indent=1) + "\n")
    for name in ("final", "checkpoints"):  # the models are not kept; the metrics are the result
        shutil.rmtree(run_dir / name, ignore_errors=True)


# --- the report: everything recomputed from the metrics.jsonl files --------------------------


def summarize(metrics):
    """One run's figures for the table."""
    evals = [m for m in metrics if "eval/acc_greedy" in m]
    steps = [m for m in metrics if "loss/loss" in m]
    last_eval, first_eval = evals[-1], evals[0]
    sampled = next(k for k in last_eval if k.startswith("eval/acc@"))
    last = [m for m in metrics if "reward/mean" in m][-1]
    return {
        "greedy_start": first_eval["eval/acc_greedy"],
        "greedy": last_eval["eval/acc_greedy"],
        "sampled": last_eval[sampled],
        "sampled_key": sampled,
        "truncated": last["length/truncated_frac"],
        "entropy": steps[-1]["entropy/mean"] if steps else math.nan,
        # tokens that got the policy gradient, per step: the selected fraction of the trained tokens
        "grad_tokens": statistics.mean(m["fork/frac_selected"] * m["train/tokens"] for m in steps) if steps else 0.0,
        "steps": last["step"],
    }


def aggregate(out):
    """{arm: {"seeds": [...], figure: (mean, min, max)}} over the run folders found under `out`."""
    table = {}
    for arm in ARMS:
        runs = sorted(out.glob(f"{arm}-seed*"), key=lambda p: int(p.name.rsplit("seed", 1)[1]))
        rows = [(int(r.name.rsplit("seed", 1)[1]), summarize(read_metrics(r))) for r in runs if finished(r)]
        if not rows:
            continue
        entry = {"seeds": [s for s, _ in rows], "sampled_key": rows[0][1]["sampled_key"]}
        for key in ("greedy_start", "greedy", "sampled", "truncated", "entropy", "grad_tokens"):
            values = [r[key] for _, r in rows]
            entry[key] = (statistics.mean(values), min(values), max(values))
        table[arm] = entry
    return table


def markdown(table, out):
    def cell(v, pct):
        mean, lo, hi = v
        f = (lambda x: f"{100 * x:.1f}%") if pct else (lambda x: f"{x:.3f}" if abs(x) < 10 else f"{x:.0f}")
        return f"{f(mean)} [{f(lo)}, {f(hi)}]"

    commits = sorted({json.loads((d / "command.json").read_text()).get("commit", "unknown")
                      for d in out.glob("*-seed*") if (d / "command.json").is_file()})
    k = next(iter(table.values()))["sampled_key"] if table else "eval/acc@k"
    lines = [
        "# The ablation at laptop scale",
        "",
        f"Recomputed from the runs' metrics.jsonl by `python experiments/ablation.py --report-only --out {os.path.relpath(out, ROOT)}`.",
        f"Each cell: mean over seeds [min, max]. Runs made at commit(s): {', '.join(commits) or 'unknown'}.",
        "",
        f"| arm | seeds | greedy, step 0 | greedy, step {STEPS} | `{k}`, step {STEPS} | truncated, last step | "
        "entropy/mean, last step | gradient tokens per step |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for arm, e in table.items():
        lines.append(f"| `{arm}` | {', '.join(map(str, e['seeds']))} | {cell(e['greedy_start'], True)} | "
                     f"{cell(e['greedy'], True)} | {cell(e['sampled'], True)} | {cell(e['truncated'], True)} | "
                     f"{cell(e['entropy'], False)} | {cell(e['grad_tokens'], False)} |")
    return "\n".join(lines) + "\n"


def figure(out, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)
    panels = [("eval/acc_greedy", "held-out greedy accuracy (128 problems)"),
              ("reward/accuracy", "training-rollout accuracy"), ("entropy/mean", "mean token entropy (rollouts)")]
    for ax, (key, title) in zip(axes, panels):
        for arm in ARMS:
            curves = [series(read_metrics(r), key) for r in sorted(out.glob(f"{arm}-seed*")) if finished(r)]
            curves = [c for c in curves if c[0]]
            for x, y in curves:
                ax.plot(x, y, color=COLOURS[arm], linewidth=0.8, alpha=0.45)
            common = sorted(set.intersection(*(set(x) for x, _ in curves))) if curves else []
            if common:
                mean = [statistics.mean(dict(zip(x, y))[s] for x, y in curves) for s in common]
                ax.plot(common, mean, color=COLOURS[arm], linewidth=2.5, label=f"{arm} (n={len(curves)})")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=9)
    fig.savefig(path, dpi=110)
    return fig


def report(out):
    table = aggregate(out)
    if not table:
        raise SystemExit(f"ablation: no runs under {out}")
    (out / "ablation.md").write_text(markdown(table, out))
    figure(out, out / "ablation.png")
    print((out / "ablation.md").read_text())
    print(f"ablation: wrote {out / 'ablation.md'} and {out / 'ablation.png'}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "results" / "ablation")
    parser.add_argument("--report-only", action="store_true", help="only recompute ablation.md and ablation.png")
    args = parser.parse_args(argv)
    args.out = args.out.resolve()
    if not args.report_only:
        args.out.mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:  # all arms of a seed first: an ablation cut short still compares them
            for arm in args.arms:
                run_one(arm, seed, args.out)
    report(args.out)


if __name__ == "__main__":
    main()
