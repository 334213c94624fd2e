"""Memory-efficient loading under torchrun: rank 0 reads the checkpoint, the other ranks receive only
their shards (issue: the paper's 32B model could not load when every rank read all of it)."""

import json
import os
import subprocess
import sys

from conftest import ROOT, free_port, save_tiny_model


def test_a_rank_other_than_0_never_holds_the_whole_model_and_every_shard_equals_the_checkpoint(tmp_path):
    # Many layers and a small embedding: the largest single tensor (the one broadcast at a time) is
    # 3% of the model, so a rank that held the whole model would show it plainly.
    model = save_tiny_model(tmp_path / "many-layers", "Llama", hidden_size=128, intermediate_size=4096, head_dim=32,
                            num_attention_heads=4, num_key_value_heads=4, num_hidden_layers=32, tie_word_embeddings=True)
    out = tmp_path / "report"
    out.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
                           "--master_addr=127.0.0.1", f"--master_port={free_port()}", str(ROOT / "tests" / "dist_load_worker.py"),
                           str(model), str(out)], env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    rank0, rank1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    size = rank0["model_bytes"]
    assert size > 200 * 2**20  # large enough that the measurement is not the allocator's noise
    assert rank0["same_keys"] and rank0["unequal"] == [] and rank0["buffers_equal"]
    # Rank 1 holds half the model (its shards) plus one full tensor in flight: about 0.53x.
    assert rank1["peak_added_bytes"] < 0.75 * size, (rank1["peak_added_bytes"] / size)
