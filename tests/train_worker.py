"""Runs forkgrpo.main with a stand-in reward, for the end-to-end tests (one process or torchrun).

A random tiny model never answers a problem right, so every group would be all-wrong and every
gradient zero. This reward depends on the response text (the parity of its characters' code
points), so it varies within groups and the whole update path is exercised. Options of this
worker come first:
  --nan-on-call N   make the N-th policy_loss call (1-based, per rank) return NaN
"""

import sys

import torch

import forkgrpo


def parity_reward(responses, answers, timeout):
    return torch.tensor([float(sum(map(ord, r)) % 2) for r in responses])


def main(argv):
    if argv[:1] == ["--nan-on-call"]:
        target, argv = int(argv[1]), argv[2:]
        real_loss, calls = forkgrpo.policy_loss, [0]

        def nan_loss(*args, **kwargs):
            calls[0] += 1
            loss, metrics = real_loss(*args, **kwargs)
            return (loss * float("nan") if calls[0] == target else loss), metrics

        forkgrpo.policy_loss = nan_loss
    forkgrpo.correctness = parity_reward
    forkgrpo.main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
