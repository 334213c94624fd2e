"""forkgrpo against TRL's GRPOTrainer(top_entropy_quantile=0.2) on the same work, in one run.

    .venv/bin/python bench/vs_trl.py       # 2 seeds x 8 steps per trainer (83 min measured on 2 idle cores)
    .venv/bin/python bench/vs_trl.py --seeds 1 --steps 2 --eval-size 16 --variants vllm   # a quick look

The work, the same for every trainer: the embedded SmolLM2-135M-Instruct (float32, CPU) on the built-in
problems of the seed (the same 4,000 training problems for both; each trainer shuffles them its own
way), 4 prompts x 8 responses per step, at most 64 new tokens, T = 0.5, top-p 1, lr 2e-5 constant,
AdamW with weight decay 0.1, gradient clip 1.0, clip range 0.2 / 0.28, rho = 0.2 (TRL:
top_entropy_quantile=0.2), no KL, rewards +1 / -1 from forkgrpo's verifier plus DAPO's soft overlong
penalty over the last 16 tokens (TRL: its own get_soft_overlong_punishment), one optimizer step per
rollout in micro-batches of 8 sequences. forkgrpo runs with --loss-norm all and --no-dynamic-sampling,
which is what TRL does; the "defaults" variant is forkgrpo as shipped (the loss over the selected
tokens, all-right and all-wrong groups dropped).

What differs by design (docs/experiments.md, "forkgrpo and TRL"): TRL thresholds the entropy with torch.quantile in
each micro-batch, forkgrpo exactly over the whole mini-batch; TRL skips the old-log-prob pass when on
policy; its advantage epsilon is 1e-4 (forkgrpo: 1e-6); it exempts biases and norms from weight decay;
its defaults (linear decay, gradient checkpointing, bf16) are overridden here to match.

Each trainer runs in its own process: TRL in a separate virtual environment (.cache/trl-venv, created
once with the same torch and transformers as .venv; never in .venv, where TRL's detection of the HF
math_verify package would find ours), forkgrpo as `python forkgrpo.py`. Measured per run: seconds per
optimizer step, split into generation (sampling and rewards) and update (everything else: TRL's loss
passes and optimizer step; forkgrpo's scoring pass, update and weight sync), the peak resident memory
of the run's process tree, and trained tokens per second (response tokens in the loss's batch).
Every model, the initial one and each run's final one, is then evaluated the same way, in a fresh
process: forkgrpo.evaluate with a vLLM engine on --eval-size held-out problems of the seed, greedy and
acc@k, scored by forkgrpo's verifier. The table shows medians over all steps of all seeds with the
range of the per-seed medians, means and ranges over seeds for the accuracies, and the ratios
forkgrpo / TRL. The results go to --out (results.json, table.md) with the versions and the load
average before and after (1-minute load above ~0.5 on an idle machine means something else ran).
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRL_VERSION = "1.16.0"
DEFAULT_MODEL = ROOT / ".cache" / "SmolLM2-135M-Instruct"
STEPS, GROUP, PROMPTS, MICRO, MAX_NEW, TEMPERATURE, LR = 8, 8, 4, 8, 64, 0.5, 2e-5
VARIANTS = {  # forkgrpo's command-line flags per variant, after the shared ones
    "vllm": ["--loss-norm", "all", "--no-dynamic-sampling", "--rollout", "vllm"],
    "hf": ["--loss-norm", "all", "--no-dynamic-sampling", "--rollout", "hf"],
    "defaults": ["--rollout", "vllm"],
}
LABELS = {"trl": "TRL GRPOTrainer", "vllm": "forkgrpo, vLLM", "hf": "forkgrpo, transformers generate",
          "defaults": "forkgrpo defaults, vLLM"}


# ----------------------------------------------------------------------------------------------------
# The TRL side: runs inside .cache/trl-venv.
# ----------------------------------------------------------------------------------------------------


def trl_side(args):
    """Train with TRL's GRPOTrainer; write timings.json and the final model into args.run_dir."""
    # TRL first, while our repository is not on sys.path: trl.rewards looks for a package named
    # math_verify when it is imported, and must not find ours.
    import torch
    import transformers
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer
    from trl.rewards import get_soft_overlong_punishment

    sys.path.insert(0, str(ROOT))
    import forkgrpo

    run_dir = Path(args.run_dir)
    train, _ = forkgrpo.builtin_splits(args.eval_size, args.seed)  # forkgrpo's training problems of this seed
    dataset = Dataset.from_list([{"prompt": p["prompt"], "answer": p["answer"]} for p in train])

    def correctness_reward(completions, answer, **_):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return (2 * forkgrpo.correctness(texts, answer, timeout=5.0) - 1).tolist()  # +1 right, -1 wrong

    config = GRPOConfig(
        output_dir=str(run_dir / "trainer"), max_steps=args.steps, seed=args.seed, data_seed=args.seed,
        per_device_train_batch_size=MICRO, gradient_accumulation_steps=PROMPTS * GROUP // MICRO,
        num_generations=GROUP, max_completion_length=MAX_NEW, temperature=TEMPERATURE, top_p=1.0, top_k=0,
        learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.1, max_grad_norm=1.0,
        epsilon=0.2, epsilon_high=0.28, beta=0.0, loss_type="dapo", scale_rewards="group", num_iterations=1,
        top_entropy_quantile=0.2, gradient_checkpointing=False, bf16=False, use_cpu=True,
        logging_steps=1, save_strategy="no", report_to=[], disable_tqdm=True, dataloader_num_workers=0,
    )
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    steps, generation, tokens = [], [], []

    class StepTimes(TrainerCallback):  # wall time between optimizer steps: everything a step costs
        def on_train_begin(self, *a, **k):
            self.last = time.perf_counter()

        def on_step_end(self, *a, **k):
            now = time.perf_counter()
            steps.append(now - self.last)
            self.last = now

    trainer = GRPOTrainer(model=model, reward_funcs=[correctness_reward, get_soft_overlong_punishment(MAX_NEW, 16)],
                          args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=[StepTimes()])
    inner = trainer._generate_and_score_completions  # sampling, rewards, advantages: once per optimizer step here

    def timed_generation(inputs):
        start = time.perf_counter()
        out = inner(inputs)
        generation.append(time.perf_counter() - start)
        tokens.append(int(out["completion_mask"].sum()))
        return out

    trainer._generate_and_score_completions = timed_generation
    trainer.train()
    trainer.save_model(str(run_dir / "final"))
    shutil.rmtree(run_dir / "trainer" / "checkpoint", ignore_errors=True)
    (run_dir / "timings.json").write_text(json.dumps({
        "step_s": steps, "generation_s": generation, "trained_tokens": tokens,
        "versions": {"trl": trl.__version__, "torch": torch.__version__, "transformers": transformers.__version__},
    }))


# ----------------------------------------------------------------------------------------------------
# The evaluation: runs inside .venv, one model per process (a vLLM engine per process).
# ----------------------------------------------------------------------------------------------------


def eval_side(args):
    """Greedy accuracy and acc@k of args.model_dir on the seed's held-out problems; prints one JSON line."""
    import types

    sys.path.insert(0, str(ROOT))
    import forkgrpo
    from transformers import AutoTokenizer, GenerationConfig

    # The initial model's tokenizer and EOS ids for every model, so that only the weights differ.
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    eos = forkgrpo._eos_ids(tokenizer, types.SimpleNamespace(generation_config=GenerationConfig.from_pretrained(args.model)))
    _, held_out = forkgrpo.builtin_splits(args.eval_size, args.seed)
    problems, _ = forkgrpo.encode_problems(held_out, tokenizer, "auto", 512)
    cfg = forkgrpo.Config(seed=args.seed, eval_samples=args.eval_samples, temperature=TEMPERATURE, max_new_tokens=MAX_NEW)
    engine = forkgrpo.VLLMRollout(args.model_dir, seed=args.seed, max_model_len=512 + MAX_NEW, eos_token_ids=eos)
    try:
        metrics = forkgrpo.evaluate(cfg, engine, tokenizer, eos, problems, 0, 1)
    finally:
        engine.close()
    print("EVAL " + json.dumps({"greedy": metrics["eval/acc_greedy"], "sampled": metrics[f"eval/acc@{args.eval_samples}"]}))


# ----------------------------------------------------------------------------------------------------
# The driver: runs inside .venv.
# ----------------------------------------------------------------------------------------------------


def trl_python(venv, torch_version, transformers_version):
    """The TRL virtual environment's python, created and filled once."""
    py = venv / "bin" / "python"
    want = f"trl=={TRL_VERSION} torch=={torch_version} transformers=={transformers_version}"
    stamp = venv / ".bench-vs-trl"
    if py.exists() and stamp.is_file() and stamp.read_text() == want:
        return py
    print(f"vs_trl: creating {venv} with {want} (once; a few minutes)", flush=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", *want.split(), "accelerate", "datasets", "sympy", "tqdm"],
                   check=True)
    stamp.write_text(want)
    return py


def run_measured(argv, log_path):
    """Run argv to completion with its output in log_path; returns (seconds, peak RSS in GiB of its tree)."""
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # ru_maxrss: the largest of the process and its descendants
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"vs_trl: {' '.join(map(str, argv[:3]))} ... failed (exit {proc.returncode}); see {log_path}")
    return time.perf_counter() - start, usage.ru_maxrss / 2**20  # KiB on Linux


def forkgrpo_timings(run_dir):
    """Per-step timings of a forkgrpo run from its metrics.jsonl, in the shape trl_side writes."""
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    steps = [m for m in lines if "time/step" in m]
    return {"step_s": [m["time/step"] for m in steps], "generation_s": [m["time/rollout"] for m in steps],
            "trained_tokens": [m.get("train/tokens", 0.0) for m in steps]}


def evaluate_model(model_dir, seed, args, log_path):
    argv = [sys.executable, __file__, "--side", "eval", "--model", str(args.model), "--model-dir", str(model_dir),
            "--seed", str(seed), "--eval-size", str(args.eval_size), "--eval-samples", str(args.eval_samples)]
    run_measured(argv, log_path)
    line = next(x for x in reversed(Path(log_path).read_text().splitlines()) if x.startswith("EVAL "))
    return json.loads(line[5:])


def summarize(runs):
    """The table's rows from runs [{"trainer", "seed", "step_s", "generation_s", "trained_tokens", "peak_gib",
    "before", "after"}]: per trainer, medians over all steps (and the range of the per-seed medians), means
    and ranges over seeds of the accuracies."""
    out = {}
    for name in dict.fromkeys(r["trainer"] for r in runs):
        mine = [r for r in runs if r["trainer"] == name]

        def per_step(r, key):
            if key == "update_s":
                return [s - g for s, g in zip(r["step_s"], r["generation_s"])]
            if key == "tokens_per_s":
                return [t / s for t, s in zip(r["trained_tokens"], r["step_s"])]
            if key == "update_s_per_1k":
                return [1000 * (s - g) / max(t, 1) for s, g, t in zip(r["step_s"], r["generation_s"], r["trained_tokens"])]
            return r[key]

        row = {"seeds": len(mine)}
        for key in ("step_s", "generation_s", "update_s", "tokens_per_s", "update_s_per_1k"):
            pooled = [x for r in mine for x in per_step(r, key)]
            seeds = [statistics.median(per_step(r, key)) for r in mine]
            row[key] = (statistics.median(pooled), min(seeds), max(seeds))
        row["peak_gib"] = (max(r["peak_gib"] for r in mine), min(r["peak_gib"] for r in mine), max(r["peak_gib"] for r in mine))
        for when in ("before", "after"):
            for metric in ("greedy", "sampled"):
                xs = [r[when][metric] for r in mine]
                row[f"{when}_{metric}"] = (statistics.mean(xs), min(xs), max(xs))
        out[name] = row
    return out


def table(summary, k):
    """Markdown: one column per trainer, a ratio column forkgrpo / TRL after each forkgrpo column."""
    names = list(summary)
    head = ["", *[x for n in names for x in ([LABELS.get(n, n)] if n == "trl" else [LABELS.get(n, n), "/ TRL"])]]
    rows = [("seconds per step", "step_s", "{:.1f}"), ("  generation", "generation_s", "{:.1f}"),
            ("  update", "update_s", "{:.1f}"), ("update s per 1,000 trained tokens", "update_s_per_1k", "{:.1f}"),
            ("trained tokens per second", "tokens_per_s", "{:.1f}"), ("peak memory (GiB)", "peak_gib", "{:.2f}"),
            ("greedy accuracy before", "before_greedy", "{:.1%}"), ("greedy accuracy after", "after_greedy", "{:.1%}"),
            (f"acc@{k} before", "before_sampled", "{:.1%}"), (f"acc@{k} after", "after_sampled", "{:.1%}")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, key, fmt in rows:
        cells = [label]
        for n in names:
            v, lo, hi = summary[n][key]
            cells.append(fmt.format(v) + (f" [{fmt.format(lo)}, {fmt.format(hi)}]" if summary[n]["seeds"] > 1 else ""))
            if n != "trl":
                base = summary.get("trl", {}).get(key)
                ratio = v / base[0] if base and base[0] and not key.startswith(("before", "after")) else None
                cells.append(f"{ratio:.2f}x" if ratio is not None else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def driver(args):
    import torch
    import transformers
    import vllm

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    py = trl_python(Path(args.trl_venv), torch.__version__.split("+")[0], transformers.__version__)
    runs, versions = [], {"forkgrpo torch": torch.__version__, "forkgrpo transformers": transformers.__version__,
                          "vllm": vllm.__version__, "python": platform.python_version(), "cpus": os.cpu_count()}
    variants = [v for v in args.variants.split(",") if v]
    for seed in range(args.seeds):
        before = evaluate_model(args.model, seed, args, out / f"eval-initial-seed{seed}.log")
        print(f"vs_trl: seed {seed}: initial model {before}", flush=True)
        for trainer in ["trl", *variants]:
            run_dir = out / f"{trainer}-seed{seed}"
            shutil.rmtree(run_dir, ignore_errors=True)
            run_dir.mkdir(parents=True)
            if trainer == "trl":
                argv = [str(py), __file__, "--side", "trl", "--model", str(args.model), "--run-dir", str(run_dir),
                        "--seed", str(seed), "--steps", str(args.steps), "--eval-size", str(args.eval_size)]
            else:
                argv = [sys.executable, "forkgrpo.py", "--model", str(args.model), "--steps", str(args.steps),
                        "--seed", str(seed), "--eval-size", "0", "--out-dir", str(run_dir), *VARIANTS[trainer]]
            print(f"vs_trl: seed {seed}: {LABELS[trainer]}", flush=True)
            seconds, peak = run_measured(argv, run_dir / "train.log")
            if trainer == "trl":
                timings = json.loads((run_dir / "timings.json").read_text())
                versions.update({f"trl-venv {k}": v for k, v in timings.pop("versions").items()})
            else:
                timings = forkgrpo_timings(run_dir)
            after = evaluate_model(run_dir / "final", seed, args, run_dir / "eval.log")
            shutil.rmtree(run_dir / "final", ignore_errors=True)  # the models are not kept
            runs.append({"trainer": trainer, "seed": seed, "wall_s": seconds, "peak_gib": peak, **timings,
                         "before": before, "after": after})
            print(f"vs_trl:   {seconds:.0f} s, median step {statistics.median(timings['step_s']):.1f} s, "
                  f"peak {peak:.2f} GiB, after {after}", flush=True)
    summary = summarize(runs)
    md = table(summary, args.eval_samples)
    load_after = os.getloadavg()
    note = (f"{args.seeds} seed(s) x {args.steps} steps per trainer; {args.eval_size} held-out problems per seed, "
            f"k = {args.eval_samples}; cells: median over all steps [range of per-seed medians], accuracies: "
            f"mean over seeds [min, max]. Load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after.")
    versions_line = "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items())
    (out / "table.md").write_text(f"{md}\n\n{note}\n{versions_line}\n")
    (out / "results.json").write_text(json.dumps({"runs": runs, "summary": summary, "versions": versions,
                                                  "load": [load_before, load_after], "args": vars(args)}, indent=1))
    print(f"\n{md}\n\n{note}\n{versions_line}\nwritten: {out / 'table.md'}, {out / 'results.json'}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=2, help="seeds per trainer (0, 1, ...)")
    parser.add_argument("--steps", type=int, default=STEPS, help="optimizer steps per run")
    parser.add_argument("--eval-size", type=int, default=64, help="held-out problems per evaluation")
    parser.add_argument("--eval-samples", type=int, default=4, help="k of acc@k")
    parser.add_argument("--variants", default="vllm,defaults",
                        help=f"forkgrpo variants, from {', '.join(VARIANTS)} (hf: forkgrpo with transformers generate, as TRL)")
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--out", default=str(ROOT / ".cache" / "bench-vs-trl"))
    parser.add_argument("--trl-venv", default=str(ROOT / ".cache" / "trl-venv"))
    parser.add_argument("--side", choices=("driver", "trl", "eval"), default="driver", help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    unknown = [v for v in args.variants.split(",") if v and v not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {', '.join(unknown)} (choose from {', '.join(VARIANTS)})")
    {"driver": driver, "trl": trl_side, "eval": eval_side}[args.side](args)


if __name__ == "__main__":
    main()
