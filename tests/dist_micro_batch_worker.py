"""Worker for test_train.py's two-rank micro-batch check; run under torchrun with 2 gloo CPU processes.

Each rank holds two of the batch's four prompt groups (responses of very different lengths). The loss
denominator is the global count of selected tokens, as update_policy all-reduces it, so the summed
gradient over ranks must equal the whole batch's in one process, under the fixed micro-batch rule and
under every token budget. Prints "micro-batch check: ok" when every comparison holds.
"""

import sys

import torch
import torch.distributed as dist
from transformers import AutoModelForCausalLM

import forkgrpo


def summed_gradient(policy, batch, rows, mask, num_tokens, tokens, pg):
    policy.zero_grad(set_to_none=True)
    cfg = forkgrpo.Config(micro_batch_size=3, micro_batch_tokens=tokens, temperature=1.0)
    forkgrpo.backward(policy, batch, rows, mask, num_tokens, cfg)
    grads = [p.grad.clone() for p in policy.parameters()]
    if pg is not None:  # what FSDP2's reduce-scatter sums
        for g in grads:
            dist.all_reduce(g)
    return grads


def main(model):
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    policy = forkgrpo.Policy(AutoModelForCausalLM.from_pretrained(model))
    g = torch.Generator().manual_seed(7)
    lengths = [2, 31, 5, 17, 40, 3, 9, 22, 1, 12, 28, 6, 35, 4, 19, 8]
    groups = [forkgrpo.PromptGroup([1, 5, 9 + i], [torch.randint(3, 500, (n,), generator=g).tolist() for n in lengths[4 * i:4 * i + 4]],
                                   None, torch.tensor([1.0, -1.0, 0.5, -0.5])) for i in range(4)]
    whole = forkgrpo.make_batch(groups, 0, torch.device("cpu"), 4, True)
    whole, _ = forkgrpo.old_logprobs_and_entropies(policy, whole, forkgrpo.Config(temperature=1.0), None)
    mask = forkgrpo.forking_token_mask(whole.entropy, whole.response_mask, 0.3)
    reference = summed_gradient(policy, whole, list(range(16)), mask, mask.sum().float(), 0, None)
    mine = forkgrpo.make_batch(groups[2 * rank:2 * rank + 2], 0, torch.device("cpu"), 4, True)
    mine, _ = forkgrpo.old_logprobs_and_entropies(policy, mine, forkgrpo.Config(temperature=1.0), None)
    my_mask = forkgrpo.forking_token_mask(mine.entropy, mine.response_mask, 0.3, pg=dist.group.WORLD)
    num_tokens = forkgrpo.all_reduce(my_mask.sum().float())
    failures = 0 if num_tokens == mask.sum() else 1
    for tokens in (0, 1, 40, 100, 1000):
        for got, want in zip(summed_gradient(policy, mine, list(range(8)), my_mask, num_tokens, tokens, dist.group.WORLD), reference):
            failures += not torch.allclose(got, want, rtol=1e-4, atol=1e-6 * float(want.abs().max()))
    print(f"rank {rank}: micro-batch check: " + ("ok" if failures == 0 else f"{failures} failures"), flush=True)
    dist.destroy_process_group()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main(sys.argv[1])
