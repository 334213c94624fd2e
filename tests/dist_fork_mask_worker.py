"""Worker for test_fork_mask_distributed.py; run under torchrun with 2+ gloo CPU processes.

Every rank builds the same global token stream from a shared seed, keeps its own
contiguous piece (random uneven cuts, sometimes empty, sometimes with no valid token),
lays it out as (B_r, T_r) with its own T_r and padding, and checks that
forking_token_mask(pg=...) selects exactly the tokens that one process selects on
the whole stream. Failures are collected, not raised, so that no rank leaves the
collectives early and leaves the others waiting; the exit code reports them.
"""

import math
import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from forkgrpo import forking_token_mask  # noqa: E402

CASES = 24


def global_stream(case):
    """The same (entropy, valid) stream of L tokens on every rank."""
    g = torch.Generator().manual_seed(1000 + case)
    length = int(torch.randint(0, 300, (), generator=g))
    if case % 3 == 0:  # ties: a few distinct values
        entropy = torch.randint(0, 5, (length,), generator=g).float() / 4
    else:
        entropy = torch.rand(length, generator=g) * 6
    valid = torch.rand(length, generator=g) < 0.75
    entropy[~valid] = float("nan")  # values at invalid positions must not matter
    return entropy, valid, g


def piece_bounds(case, length, world, g):
    """Random uneven cut points, the same on all ranks; some cases force empty pieces."""
    cuts = sorted(torch.randint(0, length + 1, (world - 1,), generator=g).tolist())
    if case % 4 == 1:
        cuts = [0] * (world - 1)  # rank 0 holds nothing at all: shape (0, T)
    return [0] + cuts + [length]


def layout(entropy, valid, rank, case):
    """Pad a 1-D piece into (B, T) with a rank-specific T; padding is invalid garbage."""
    width = 1 + (7 * rank + case) % 9
    rows = math.ceil(entropy.numel() / width)
    padded_e = torch.full((rows * width,), float("inf"))
    padded_v = torch.zeros(rows * width, dtype=torch.bool)
    padded_e[: entropy.numel()] = entropy
    padded_v[: valid.numel()] = valid
    return padded_e.view(rows, width), padded_v.view(rows, width)


def main():
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    subgroup = dist.new_group(list(range(world)), backend="gloo")
    failures, checks = [], 0
    for case in range(CASES):
        entropy, valid, g = global_stream(case)
        bounds = piece_bounds(case, entropy.numel(), world, g)
        if case % 4 == 2:
            valid[bounds[-2] :] = False  # the last rank has tokens but none valid
        lo, hi = bounds[rank], bounds[rank + 1]
        piece_e, piece_v = entropy[lo:hi], valid[lo:hi]
        e2d, v2d = layout(piece_e, piece_v, rank, case)
        group = subgroup if case % 2 else dist.group.WORLD
        n = int(valid.sum())
        for rho in (0.2, 0.5, 0.8):
            for mode in ("top", "bottom"):
                mine = forking_token_mask(e2d, v2d, rho, mode=mode, pg=group)
                single = forking_token_mask(entropy[None], valid[None], rho, mode=mode)[0]
                got = mine.flatten()
                checks += 1
                if not (torch.equal(got[: hi - lo], single[lo:hi]) and not got[hi - lo :].any()):
                    failures.append(f"case {case} rho {rho} mode {mode}: differs from one process")
            gen = torch.Generator().manual_seed(7919 * case + rank)  # each rank its own keys
            rand = forking_token_mask(e2d, v2d, rho, mode="random", pg=group, generator=gen)
            count = rand.sum().to(torch.int64)
            dist.all_reduce(count)
            k = -((-round(rho * 10**6) * n) // 10**6)
            checks += 1
            if int(count) != k or (rand & ~v2d).any():
                failures.append(f"case {case} rho {rho} random: {int(count)} selected, k = {k}")
    dist.destroy_process_group()
    for line in failures:
        print(f"rank {rank}: FAIL {line}", flush=True)
    print(f"rank {rank}: {checks} checks, {len(failures)} failures", flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
