"""Benchmark: the update's forward and backward with only the forking tokens through the LM head
(what update_policy does) against every response token through it (what it did before), on the
embedded default model at rho = 0.2.

    .venv/bin/python bench/update_head.py                  # 4 groups x 8 responses of 64 tokens, 5 rounds
    .venv/bin/python bench/update_head.py --rho 0.5 --rounds 7

Both variants run the same micro-batches of one scored batch (random tokens: the cost does not
depend on their content) through forkgrpo.Policy and forkgrpo.policy_loss with the same forking
mask, and backward; only the rows given to the LM head differ. Rounds alternate the variants after
one warm-up of each. Prints the median and range of seconds per update and the ratio after/before,
and checks that both give the same gradient.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import forkgrpo  # noqa: E402
from entropy_policy import scored_batch  # noqa: E402  (bench/ is on the path: the script's folder)


def update(policy, batch, mask, select_all, micro_batch_size):
    """One mini-batch's forward and backward, as update_policy runs it; returns the gradients."""
    policy.zero_grad(set_to_none=True)
    num_tokens = mask.sum().float()
    for r in forkgrpo.micro_batches(batch.lengths, micro_batch_size):
        input_ids, response = batch.rows(r)
        width = input_ids.shape[1]
        select = response if select_all else mask[r, : width - 1]
        logp, _ = policy(input_ids, select, 1.0)
        loss, _ = forkgrpo.policy_loss(logp, batch.old_logp[r, : width - 1], batch.advantages[r],
                                       mask[r, : width - 1], num_tokens=num_tokens)
        loss.backward()
    return [p.grad.clone() for p in policy.parameters()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--groups", type=int, default=4, help="prompt groups of G = 8 responses")
    ap.add_argument("--response-len", type=int, default=64)
    ap.add_argument("--rho", type=float, default=0.2)
    ap.add_argument("--micro-batch-size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    _, policy, batch = scored_batch(args.model, args.groups, args.response_len, args.micro_batch_size)
    mask = forkgrpo.forking_token_mask(batch.entropy, batch.response_mask, args.rho)
    times, grads = {"before: all response tokens": [], "after: forking tokens only": []}, {}
    for r in range(args.rounds + 1):
        for variant in times:
            start = time.perf_counter()
            grads[variant] = update(policy, batch, mask, variant.startswith("before"), args.micro_batch_size)
            if r:  # round 0 is the warm-up
                times[variant].append(time.perf_counter() - start)
    before, after = (statistics.median(t) for t in times.values())
    worst = max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
                for a, b in zip(*grads.values()))
    print(f"update forward+backward, {args.groups * 8} sequences of {args.response_len} response tokens, "
          f"rho {args.rho} ({int(mask.sum())} of {int(batch.response_mask.sum())} tokens selected), "
          f"micro-batch {args.micro_batch_size}, {torch.get_num_threads()} threads, {args.rounds} rounds\n")
    print("| LM head rows | median s | min-max s |\n|---|---:|---:|")
    for variant, ts in times.items():
        print(f"| {variant} | {statistics.median(ts):.2f} | {min(ts):.2f}-{max(ts):.2f} |")
    print(f"\nratio after/before (medians): {after / before:.2f}x; largest gradient difference "
          f"{worst:.1e} of each tensor's largest entry")


if __name__ == "__main__":
    main()
