"""Runs forkgrpo.main with a stand-in reward, for the end-to-end tests (one process or torchrun).

A random tiny model never answers a problem right, so every group would be all-wrong and every
gradient zero. This reward alternates within each group (responses come prompt-major, and the
tests use even group sizes), so every group is informative and the whole update path runs. Options of this
worker come first:
  --nan-on-call N   make the N-th policy_loss call (1-based, per rank) return NaN
"""

import sys

import torch

import forkgrpo


def alternating_reward(responses, answers):
    return torch.tensor([float(i % 2) for i in range(len(responses))])


def main(argv):
    if argv[:1] == ["--nan-on-call"]:
        target, argv = int(argv[1]), argv[2:]
        real_loss, calls = forkgrpo.policy_loss, [0]

        def nan_loss(*args, **kwargs):
            calls[0] += 1
            loss, metrics = real_loss(*args, **kwargs)
            return (loss * float("nan") if calls[0] == target else loss), metrics

        forkgrpo.policy_loss = nan_loss
    forkgrpo.main(argv, reward_fn=alternating_reward)


if __name__ == "__main__":
    main(sys.argv[1:])
