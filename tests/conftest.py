"""Shared fixtures: a tiny random Llama saved to a folder, and runs of forkgrpo.py on it."""

import contextlib
import importlib.util
import io
import json
import os
import signal
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


def _worker_command(args, nproc, worker_args):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), TOKENIZERS_PARALLELISM="false")
    if nproc == 1:
        cmd = [sys.executable, str(WORKER), *worker_args, *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc_per_node={nproc}",
               "--master_addr=127.0.0.1", f"--master_port={free_port()}", str(WORKER), *worker_args, *args]
    return cmd, env


def run_forkgrpo(args, *, nproc=1, timeout=300, worker_args=()):
    """Run tests/train_worker.py (forkgrpo.main under a stand-in reward) in a subprocess,
    under torchrun when nproc > 1. Returns the CompletedProcess."""
    cmd, env = _worker_command(args, nproc, worker_args)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


class BackgroundRun:
    """run_forkgrpo(args) started now and collected later with wait(): the same command and environment,
    its output in temporary files (no pipe to fill while nobody reads it), its timeout counted from the
    start. For a one-thread run that a test module starts as it begins, so that the run uses the core
    that the module's other tests leave idle instead of waiting its turn."""

    def __init__(self, args, *, nproc=1, timeout=300, worker_args=()):
        import tempfile
        import time

        cmd, env = _worker_command(args, nproc, worker_args)
        self.deadline = time.monotonic() + timeout
        self.out, self.err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.out, stderr=self.err, text=True, cwd=ROOT)

    def wait(self):
        """The CompletedProcess, as run_forkgrpo returns it; TimeoutExpired (the run killed) past the deadline."""
        import time

        try:
            self.proc.wait(timeout=max(0.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self.out.seek(0)
        self.err.seek(0)
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, self.out.read(), self.err.read())

    def kill(self):
        """Stop the run if it is still going (a test that never collected it); close its files."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.out.close()
        self.err.close()


def run_in_process(args, *, worker_args=(), reward_fn=None):
    """What run_forkgrpo(args, worker_args=...) does in one process, inside this one: train_worker.main,
    with stdout and stderr captured, SystemExit turned into the return code, and one torch thread (the
    subprocess's OMP_NUM_THREADS=1, so float results equal a subprocess run's exactly). It saves the
    2-4 s of imports a subprocess pays. Everything a run changes in this process is put back: the torch
    thread count and RNG, the working directory, os.environ, forkgrpo's module globals (--nan-on-call
    replaces forkgrpo.policy_loss). forkgrpo.main itself must restore the signal handlers and tear
    down its process group, even when it fails; that is checked here, after every run.

    An exception other than SystemExit propagates, with its traceback: where a subprocess would have
    printed "Traceback" to stderr and exited 1, the test fails here at once. Not for torchrun (more
    than one rank), vLLM (process-wide state) or runs that must outlive a lock of this process."""
    import torch
    import torch.distributed as dist

    import forkgrpo
    import train_worker

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    handlers = {sig: signal.getsignal(sig) for sig in signals}
    module_globals = dict(vars(forkgrpo))
    env, cwd, threads, rng = dict(os.environ), os.getcwd(), torch.get_num_threads(), torch.get_rng_state()
    assert not dist.is_initialized(), "a process group is already up in the test process"
    out, err, code = io.StringIO(), io.StringIO(), 0
    try:
        os.environ.update(TOKENIZERS_PARALLELISM="false")
        os.chdir(ROOT)
        torch.set_num_threads(1)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                if reward_fn is None:
                    train_worker.main([*worker_args, *args])
                else:  # another stand-in reward (worker_args do not apply)
                    forkgrpo.main(list(args), reward_fn=reward_fn)
            except SystemExit as e:  # as the interpreter turns it into an exit status
                if e.code is None or isinstance(e.code, int):
                    code = e.code or 0
                else:
                    print(e.code, file=sys.stderr)
                    code = 1
    finally:
        left_group = dist.is_initialized()
        if left_group:
            dist.destroy_process_group()
        left_handlers = [sig for sig in signals if signal.getsignal(sig) is not handlers[sig]]
        for sig in signals:
            signal.signal(sig, handlers[sig])
        vars(forkgrpo).update(module_globals)
        for name in set(vars(forkgrpo)) - set(module_globals):
            delattr(forkgrpo, name)
        torch.set_rng_state(rng)
        torch.set_num_threads(threads)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
    assert not left_group, "forkgrpo.main left its process group up"
    assert not left_handlers, f"forkgrpo.main left its handlers of {left_handlers} in place"
    return subprocess.CompletedProcess(["train_worker.py", *worker_args, *args], code, out.getvalue(), err.getvalue())


def read_metrics(out_dir):
    return [json.loads(line) for line in (Path(out_dir) / "metrics.jsonl").read_text().splitlines()]
