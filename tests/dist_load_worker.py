"""Loads a model with forkgrpo.load_policy under torchrun and reports, per rank, the peak memory the
load added and whether the sharded weights equal the checkpoint's. Used by test_loading.py.

    torchrun --nproc_per_node=2 tests/dist_load_worker.py MODEL_DIR OUT_DIR
"""

import json
import re
import sys
from pathlib import Path

import torch

import forkgrpo


def status_kib(key):
    return int(re.search(rf"{key}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def main(model, out):
    rank, world, device = forkgrpo.setup_distributed()
    from transformers import AutoTokenizer
    AutoTokenizer.from_pretrained(model)  # the tokenizer's own memory is not the model's
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    before = status_kib("VmRSS")
    policy, _, _ = forkgrpo.load_policy(model, device, world, False)
    peak = status_kib("VmHWM") - before
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    full = get_model_state_dict(policy, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    report = {"rank": rank, "peak_added_bytes": peak * 1024}
    if rank == 0:
        from transformers import AutoModelForCausalLM
        reference = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
        expected = {f"lm.{k}": v for k, v in reference.state_dict().items()}
        report["same_keys"] = sorted(full) == sorted(expected)
        report["unequal"] = [k for k in expected if k in full and not torch.equal(full[k], expected[k])]
        report["buffers_equal"] = all(torch.equal(b, dict(reference.named_buffers())[k])
                                      for k, b in policy.lm.named_buffers())
        report["model_bytes"] = sum(v.numel() * v.element_size() for v in reference.parameters())
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(report))
    torch.distributed.barrier()  # rank 1 must not tear gloo down while rank 0 still builds its reference
    forkgrpo.teardown_distributed()


if __name__ == "__main__":
    main(*sys.argv[1:])
