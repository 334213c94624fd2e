"""Benchmark: the cost of --entropy-from current (the forking mask from the training policy's
entropies, re-scored before each mini-batch after the first) against --entropy-from scoring (the
scoring pass's entropies for every mini-batch), in update_policy on the embedded default model.

    .venv/bin/python bench/entropy_policy.py                       # 4 mini-batches, 3 rounds
    .venv/bin/python bench/entropy_policy.py --mini-batches 8 --rounds 5

Both variants update the same scored batch (random response tokens: the cost does not depend on
their content) from the same weights; rounds alternate the variants after one warm-up call of each.
Prints the median and range of update seconds per variant and the ratio current/scoring.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import forkgrpo  # noqa: E402


def scored_batch(model, groups, response_len, micro_batch_size):
    """(lm, policy, a scored batch of `groups` groups of G = 8 random responses after 40-token prompts)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_pretrained(forkgrpo.resolve_model(model), dtype=torch.float32)
    policy = forkgrpo.Policy(lm)
    g = torch.Generator().manual_seed(0)
    vocab = lm.config.vocab_size
    rows = [forkgrpo.PromptGroup(torch.randint(0, vocab, (40,), generator=g).tolist(),
                                 [torch.randint(0, vocab, (response_len,), generator=g).tolist() for _ in range(8)],
                                 None, torch.tensor([1.0, -1.0] * 4)) for _ in range(groups)]
    batch = forkgrpo.make_batch(rows, 0, torch.device("cpu"), 8, True)
    cfg = forkgrpo.Config(micro_batch_size=micro_batch_size, temperature=1.0)
    batch, _ = forkgrpo.old_logprobs_and_entropies(policy, batch, cfg, None)
    return lm, policy, batch


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--groups", type=int, default=4, help="prompt groups of G = 8 responses")
    ap.add_argument("--response-len", type=int, default=64)
    ap.add_argument("--mini-batches", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    lm, policy, batch = scored_batch(args.model, args.groups, args.response_len, 8)
    initial = {k: v.clone() for k, v in lm.state_dict().items()}
    times = {"scoring": [], "current": []}
    for r in range(args.rounds + 1):
        for variant in times:
            lm.load_state_dict(initial)
            optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-6)
            cfg = forkgrpo.Config(group_size=8, mini_batches=args.mini_batches, micro_batch_size=8,
                                  temperature=1.0, entropy_from=variant)
            start = time.perf_counter()
            forkgrpo.update_policy(cfg, policy, optimizer, batch, step=0, rank=0, world=1, pg=None)
            if r:  # round 0 is the warm-up
                times[variant].append(time.perf_counter() - start)
    print(f"update_policy, {args.groups * 8} sequences of {args.response_len} response tokens, "
          f"{args.mini_batches} mini-batches, {torch.get_num_threads()} threads, {args.rounds} rounds\n")
    print("| --entropy-from | median s | min-max s |\n|---|---:|---:|")
    for variant, ts in times.items():
        print(f"| {variant} | {statistics.median(ts):.2f} | {min(ts):.2f}-{max(ts):.2f} |")
    print(f"\nratio current/scoring (medians): {statistics.median(times['current']) / statistics.median(times['scoring']):.2f}x")


if __name__ == "__main__":
    main()
