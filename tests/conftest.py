"""Shared fixtures: a tiny random Llama saved to a folder, and runs of forkgrpo.py on it."""

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_script(relative):
    """A script of this repository that is not a package (bench/*.py, tests/verify_cases/cases.py), as a module."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
DEFAULT_MODEL = ROOT / ".cache" / "SmolLM2-135M-Instruct"
WORKER = Path(__file__).resolve().parent / "train_worker.py"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need_default_model():
    if not (DEFAULT_MODEL / "config.json").is_file():
        pytest.fail(f"{DEFAULT_MODEL} is missing: run the suite with ./run.sh test, which prepares it")


def save_tiny_model(path, family, **shape):
    """A random model of a transformers family (2 layers, hidden 64, head_dim 32 unless `shape` says otherwise) with the default
    model's tokenizer, saved to path."""
    need_default_model()
    import torch
    import transformers
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(DEFAULT_MODEL)
    shape = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "head_dim": 32,
             **shape}
    cfg = getattr(transformers, f"{family}Config")(
        vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        max_position_embeddings=1024, **shape,
    )
    torch.manual_seed(0)
    getattr(transformers, f"{family}ForCausalLM")(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A random 2-layer Llama with a tied LM head."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"), "Llama", num_key_value_heads=2,
                           tie_word_embeddings=True)


@pytest.fixture(scope="session")
def tiny_qwen3(tmp_path_factory):
    """A random 2-layer Qwen3: q/k norms, grouped-query attention, an untied LM head."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-qwen3"), "Qwen3", num_key_value_heads=1,
                           tie_word_embeddings=False)


def run_forkgrpo(args, *, nproc=1, timeout=300, worker_args=()):
    """Run tests/train_worker.py (forkgrpo.main under a stand-in reward) in a subprocess,
    under torchrun when nproc > 1. Returns the CompletedProcess."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), TOKENIZERS_PARALLELISM="false")
    if nproc == 1:
        cmd = [sys.executable, str(WORKER), *worker_args, *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc_per_node={nproc}",
               "--master_addr=127.0.0.1", f"--master_port={free_port()}", str(WORKER), *worker_args, *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def read_metrics(out_dir):
    return [json.loads(line) for line in (Path(out_dir) / "metrics.jsonl").read_text().splitlines()]
