"""What the verifier rewarded: every response of a forkgrpo run, with its reward, phase and step.

    python experiments/rewarded.py --out runs/responses                       # the default run, logged
    python experiments/rewarded.py --out runs/lr2e-5 -- --lr 2e-5             # options after -- go to forkgrpo
    python experiments/rewarded.py --out runs/responses --report-only         # the summary again

Runs the real forkgrpo.main in this process, with the trainer's own reward (forkgrpo.correctness)
wrapped by a function that also writes each scored (response, gold answer, reward) into
--out/responses.jsonl: main takes the reward as its `reward_fn` parameter, so nothing is patched. Each
line is tagged with its phase ("train", or "greedy" and "sampled" for an evaluation's two passes) and
its step (a training call is the step being trained; an evaluation, the last step trained). Then it
prints, per training step and per evaluation, the accuracy, the mean length in characters, the answers
that state nothing (no "=", no "answer", no "####", no box), and the wrong answers that a full stop at
the end would make right: math_verify reads an unterminated last line as a completion cut off
mid-computation (docs/verifier.md), so these are right values it cannot tell from a cut-off one (a
response truncated at --max-new-tokens can be among them). docs/default-run.md's "Why 1e-5" comes from it.
"""

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import forkgrpo  # noqa: E402

STATES_SOMETHING = re.compile(r"=|answer|####|\\boxed", re.IGNORECASE)


def trained_steps(out):
    """Training lines already in out/metrics.jsonl: the trainer writes a step's line after its update."""
    path = out / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return sum(1 for line in lines if '"reward/mean"' in line)


class ResponseLog:
    """A reward_fn for forkgrpo.main: forkgrpo.correctness, plus every scored pair written to `log`."""

    def __init__(self, out, log, timeout):
        self.out, self.log, self.timeout, self.last = out, log, timeout, None

    def __call__(self, responses, answers, finished=None):
        rewards = forkgrpo.correctness(responses, answers, finished, timeout=self.timeout)
        caller = sys._getframe(2).f_code.co_name  # forkgrpo's judge calls its reward, from collect_rollouts and evaluate
        done = trained_steps(self.out)
        if caller == "evaluate":  # an evaluation scores its greedy answers, then its samples
            phase, step = ("sampled" if self.last == ("greedy", done) else "greedy"), done
        else:
            phase, step = "train", done + 1
        self.last = (phase, step)
        for text, answer, r in zip(responses, answers, rewards.tolist()):
            self.log.write(json.dumps({"phase": phase, "step": step, "reward": r, "answer": answer, "response": text}) + "\n")
        self.log.flush()
        return rewards


def summary(rows):
    """Markdown: one row per (phase, step), in the order the run scored them."""
    from math_verify import verify_batch

    groups = {}
    for r in rows:
        groups.setdefault((r["phase"], r["step"]), []).append(r)
    lines = ["| phase | step | responses | right | mean characters | state nothing | wrong, right with a full stop |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for (phase, step), g in groups.items():
        wrong = [r for r in g if r["reward"] < 0.5]
        stopped = verify_batch([(r["response"].rstrip() + ".", r["answer"]) for r in wrong], timeout=5.0)
        silent = sum(1 for r in g if not STATES_SOMETHING.search(r["response"]))
        lines.append(f"| {phase} | {step} | {len(g)} | {len(g) - len(wrong)} ({(len(g) - len(wrong)) / len(g):.1%}) | "
                     f"{statistics.mean(len(r['response']) for r in g):.0f} | {silent} | {sum(stopped)} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Options after -- go to forkgrpo.py; --out is its --out-dir.")
    parser.add_argument("--out", type=Path, required=True, help="the run's folder (forkgrpo's --out-dir)")
    parser.add_argument("--report-only", action="store_true", help="only print the summary of --out/responses.jsonl")
    args = parser.parse_args(argv[:split])
    trainer_args = argv[split + 1:]
    path = args.out / "responses.jsonl"
    if not args.report_only:
        cfg = forkgrpo.parse_config([*trainer_args, "--out-dir", str(args.out)])
        args.out.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as log:
            try:
                forkgrpo.main([*trainer_args, "--out-dir", str(args.out)], reward_fn=ResponseLog(args.out, log, cfg.verify_timeout))
            except SystemExit as e:
                if e.code not in (None, 0):
                    raise
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    text = summary(rows)
    (args.out / "responses.md").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
