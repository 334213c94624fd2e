"""A run never reports a success it did not have and never deletes what it did not write: the probes
of a hostile, careless or unlucky user, each run in-process on the tiny model."""

import contextlib
import dataclasses
import errno
import json
import math
import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch

import forkgrpo
from test_train import TINY, _update_once
from train_worker import alternating_reward as alternating  # every group informative
from conftest import run_in_process

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def run(args, reward_fn=alternating):
    """forkgrpo.main in this process, under conftest's run_in_process: (exit code, stdout, stderr)."""
    proc = run_in_process([*TINY, *args], reward_fn=reward_fn)
    return proc.returncode, proc.stdout, proc.stderr


# --- divergence -------------------------------------------------------------------------


def test_a_diverged_run_stops_with_exit_1_naming_the_step_and_the_learning_rate_and_keeps_its_last_good_checkpoint(
        tiny_model, tmp_path, monkeypatch):
    steps, real_loss, real_update = [], forkgrpo.policy_loss, forkgrpo.update_policy

    def loss(*args, **kwargs):  # step 1 learns; every later loss is NaN
        value, metrics = real_loss(*args, **kwargs)
        return (value * float("nan") if steps[-1] >= 1 else value), metrics

    def update(cfg, policy, optimizer, batch, step, *rest):
        steps.append(step)
        return real_update(cfg, policy, optimizer, batch, step, *rest)
    monkeypatch.setattr(forkgrpo, "policy_loss", loss)
    monkeypatch.setattr(forkgrpo, "update_policy", update)
    out = tmp_path / "run"
    code, stdout, err = run(["--model", str(tiny_model), "--out-dir", str(out), "--steps", "8", "--save-every", "1"])
    assert code == 1, err[-2000:]
    assert "step 4: the policy diverged: 3 updates in a row had a non-finite loss" in err and "--lr 0.001" in err
    assert "Traceback" not in err and "done" not in stdout
    assert steps == [0, 1, 2, 3]  # stopped at the third skipped update
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_000001"]  # the last good one
    assert not (out / "final").exists()
    assert forkgrpo.find_checkpoint("auto", out).name == "step_000001"


def test_a_transient_nan_is_skipped_and_forgotten_and_the_third_in_a_row_stops_the_run(tiny_model, monkeypatch):
    real_loss, calls = forkgrpo.policy_loss, []

    def loss(*args, **kwargs):  # each update's loss is NaN or not, in this order: never three in a row, then three
        value, sums = real_loss(*args, **kwargs)
        return (value * float("nan") if pattern[len(calls) - 1] else value), sums
    monkeypatch.setattr(forkgrpo, "policy_loss", lambda *a, **k: (calls.append(1), loss(*a, **k))[1])
    pattern = [True, True, False, True, True, False]  # 8 rows in 6 mini-batches of 1 or 2: one micro-batch each
    metrics, _ = _update_once(tiny_model, lr=1e-3, mini_batches=6)
    assert metrics["train/skipped_steps"] == 4 and len(calls) == 6
    calls.clear()
    pattern = [False, True, True, True, False, False]
    with pytest.raises(forkgrpo.RunError, match="step 1: the policy diverged: 3 updates in a row .*--lr 0.001"):
        _update_once(tiny_model, lr=1e-3, mini_batches=6)
    assert len(calls) == 4  # stopped at the third skipped update


# --- options ------------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--grad-clip", "-1"], "--grad-clip must be >= 0, got -1.0"),
    (["--incorrect-reward=-inf"], "--incorrect-reward must be a finite number, got -inf"),
    (["--eps-low", "nan"], "--eps-low must be a finite number, got nan"),
    (["--overlong-factor", "nan"], "--overlong-factor must be a finite number, got nan"),
    (["--lr", "inf"], "--lr must be a finite number, got inf"),
    (["--weight-decay", "nan"], "--weight-decay must be a finite number, got nan"),
    (["--temperature", "inf"], "--temperature must be a finite number, got inf"),
    (["--verify-timeout", "0"], "--verify-timeout must be > 0, got 0.0"),
    (["--verify-timeout", "-1"], "--verify-timeout must be > 0, got -1.0"),
    (["--eps-low", "1"], "--eps-low must be in [0, 1), got 1.0"),
    (["--dist-timeout", "0"], "--dist-timeout must be > 0, got 0.0"),
    (["--out", "x"], "unrecognized arguments: --out x"),  # no abbreviations: run.sh reads --out-dir by its name
    (["--seed", "-3"], "--seed must be >= 0, got -3"),
])
def test_every_option_outside_its_domain_exits_2_with_one_line_naming_it(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        forkgrpo.parse_config(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and "Traceback" not in err


def _outside(rule):
    """A value just outside a domain rule (">= 2", "> 0", "< 1", "in (0, 1]")."""
    if rule.startswith("in "):
        low = float(rule[4:-1].split(",")[0])
        return low if rule[3] == "(" else low - 1
    op, bound = rule.split()
    return {">": float(bound), ">=": float(bound) - 1, "<": float(bound)}[op]


@pytest.mark.parametrize("field", [f for f in dataclasses.fields(forkgrpo.Config) if f.name in forkgrpo.DOMAIN],
                         ids=lambda f: f.name)
def test_every_option_refuses_the_value_just_outside_its_declared_domain_and_every_non_finite_number(field, capsys):
    typ, rule = field.type, forkgrpo.DOMAIN[field.name][0]
    flag = "--" + field.name.replace("_", "-")
    bad = [typ(_outside(rule))] + ([math.nan, math.inf, -math.inf] if typ is float else [])
    for value in bad:
        with pytest.raises(SystemExit) as e:
            forkgrpo.parse_config([f"{flag}={value}"])
        err = capsys.readouterr().err
        assert e.value.code == 2 and f"error: {flag} must be" in err and "Traceback" not in err, (value, err)
    forkgrpo.parse_config([f"{flag}={field.default}"])  # the default itself is inside


def test_one_process_without_torchrun_gets_an_indexed_cuda_device(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    rank, world, device = forkgrpo.setup_distributed()
    assert (rank, world, device) == (0, 1, torch.device("cuda", 3)) and device.index == 3


def test_a_process_group_that_cannot_start_is_one_line_not_a_traceback(monkeypatch):
    def refuse(*args, **kwargs):
        raise ValueError("Please use a device_id with index.\nmore lines")
    monkeypatch.setattr(forkgrpo.dist, "init_process_group", refuse)
    with pytest.raises(forkgrpo.RunError, match=r"cannot start the process group on cuda:0 \(ValueError: Please use "
                                                 r"a device_id with index.\)$"):
        forkgrpo.init_process_group(torch.device("cuda", 0), 0, 1, 180.0)


def test_grad_clip_0_means_no_clipping_not_a_zero_update(tiny_model):
    from transformers import AutoModelForCausalLM
    initial = [p.detach().clone() for p in forkgrpo.Policy(AutoModelForCausalLM.from_pretrained(tiny_model)).parameters()]
    metrics, after = _update_once(tiny_model, lr=1e-3, grad_clip=0.0)
    _, clipped = _update_once(tiny_model, lr=1e-3, grad_clip=1e-6)
    assert metrics["train/grad_norm"] > 1e-3  # the norm is measured, and not clipped to 0
    assert any(not torch.equal(a, b) for a, b in zip(initial, after))
    assert any(not torch.equal(a, b) for a, b in zip(after, clipped))  # clipping would have changed the update


# --- the run's folder -----------------------------------------------------------------------


def make_earlier_run(out, run_id="abc123"):
    (out / "checkpoints" / "step_000002").mkdir(parents=True)
    (out / "final").mkdir()
    (out / "final" / "config.json").write_text("{}")
    (out / "metrics.jsonl").write_text('{"step": 1}\n')
    (out / "wandb-run-id").write_text(run_id)
    (out / "wandb" / f"run-20261204_010101-{run_id}").mkdir(parents=True)
    (out / "wandb" / "debug.log").write_text("x")
    (out / "wandb" / "run-20261101_000000-otherrun").mkdir()  # another W&B run's: not this run's
    (out / "hf" / "step_000001").mkdir(parents=True)
    (out / "hf" / "notes.txt").write_text("mine")  # the user's
    (out / "notes.md").write_text("mine")


def test_overwrite_deletes_exactly_the_earlier_runs_files_and_leaves_every_other(tmp_path):
    out = tmp_path / "out"
    make_earlier_run(out)
    _, lock = forkgrpo.claim_out_dir(forkgrpo.Config(out_dir=str(out), overwrite=True), rank=0, world=1)
    forkgrpo.release_out_dir(lock)
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert left == ["checkpoints", "hf", "hf/notes.txt", "notes.md", "wandb", "wandb/run-20261101_000000-otherrun"]


@pytest.mark.parametrize("option, inside", [("model", "final"), ("data", "hf/step_000001/d.jsonl"),
                                            ("eval_data", "checkpoints/step_000002/e.jsonl")])
def test_overwrite_refuses_to_delete_the_model_or_data_it_was_given(tmp_path, option, inside):
    out = tmp_path / "out"
    make_earlier_run(out)
    (out / inside).parent.mkdir(parents=True, exist_ok=True)
    if inside.endswith(".jsonl"):
        (out / inside).write_text('{"prompt": "1+1?", "answer": "2"}\n')
    before = sorted(str(p) for p in out.rglob("*"))
    cfg = forkgrpo.Config(out_dir=str(out), overwrite=True, **{option: str(out / inside)})
    with pytest.raises(forkgrpo.InputError, match=f"--overwrite would delete --{option.replace('_', '-')} .*which this run reads"):
        forkgrpo.claim_out_dir(cfg, rank=0, world=1)
    assert sorted(str(p) for p in out.rglob("*")) == before
    lock = forkgrpo._lock_folder(out)  # and the folder is not left locked
    assert lock is not None
    forkgrpo.release_out_dir(lock)


def test_an_out_dir_inside_a_git_folder_is_refused(tmp_path):
    with pytest.raises(forkgrpo.InputError, match="inside a git repository's .git folder"):
        forkgrpo.claim_out_dir(forkgrpo.Config(out_dir=str(tmp_path / ".git" / "runs")), rank=0, world=1)


def test_two_default_runs_at_once_take_two_folders_instead_of_refusing_the_second(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first, lock1 = forkgrpo.claim_out_dir(forkgrpo.Config(), rank=0, world=1)  # claimed, nothing written yet
    second, lock2 = forkgrpo.claim_out_dir(forkgrpo.Config(), rank=0, world=1)
    assert (first, second) == (Path("runs/forkgrpo"), Path("runs/forkgrpo-2"))
    forkgrpo.release_out_dir(lock1)
    forkgrpo.release_out_dir(lock2)


# --- start-up ----------------------------------------------------------------------------------


def test_the_first_ctrl_c_before_training_stops_at_once_and_during_training_asks_for_a_clean_stop(capsys):
    stop = forkgrpo.StopRequest()
    try:
        with pytest.raises(SystemExit) as e:
            stop._handle(signal.SIGINT, None)  # loading data or the model: nothing to save
        assert e.value.code == 130
        stop.training = True
        stop._handle(signal.SIGINT, None)
        assert stop.requested and "stopping after this step" in capsys.readouterr().err
    finally:
        stop.restore()


def test_an_eval_set_whose_every_prompt_is_too_long_gets_a_warning(tiny_model, tmp_path):
    data = tmp_path / "eval.jsonl"
    data.write_text(json.dumps({"prompt": "word " * 300, "reward_model": {"ground_truth": "1"}}) + "\n")
    code, stdout, err = run(["--model", str(tiny_model), "--out-dir", str(tmp_path / "o"), "--steps", "0",
                             "--eval-data", str(data), "--max-prompt-len", "64"])
    assert code == 0, err[-2000:]
    assert "warning: no evaluation of eval: every eval prompt is longer than --max-prompt-len 64" in stdout  # its file stem


# --- a full disk -------------------------------------------------------------------------------


@pytest.fixture()
def small_disk(tmp_path):
    """A 300 MiB tmpfs, and a function that fills it to leave `free` bytes."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root (CI has it)")

    def fill(free=0):
        with open(mnt / "filler", "ab") as f, contextlib.suppress(OSError):
            while os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize > free:
                f.write(b"\0" * min(2**20, max(4096, os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize - free)))
                f.flush()
    yield mnt, fill
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def filling_reward(fill, at_call, free, then=None):
    """The stand-in reward, which at its `at_call`-th call fills the disk (then calls `then`)."""
    calls = [0]

    def reward(responses, answers):
        calls[0] += 1
        if calls[0] == at_call:
            fill(free)
            if then:
                then()
        return alternating(responses, answers)
    return reward


def test_a_full_disk_at_a_checkpoint_is_one_line_and_the_previous_checkpoint_stays(tiny_model, small_disk):
    mnt, fill = small_disk
    out = mnt / "run"
    # rewards are asked at step 0's evaluation (2 calls), then once per step: fill before step 2's save
    code, stdout, err = run(["--model", str(tiny_model), "--out-dir", str(out), "--steps", "3", "--save-every", "1",
                             "--eval-size", "0"], reward_fn=filling_reward(fill, 2, 64 * 1024))
    assert code == 1 and "Traceback" not in err, err[-3000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith("forkgrpo.py: error: ") and "No space left on device" in line and "step_000002" in line
    assert "step_000001 is intact" in line
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_000001"]
    assert forkgrpo.find_checkpoint("auto", out).name == "step_000001"
    for text in (out / "metrics.jsonl").read_text().splitlines():
        json.loads(text)  # no line torn


def test_a_full_disk_at_the_metrics_log_is_one_line_naming_the_file(tiny_model, small_disk, monkeypatch):
    mnt, fill = small_disk
    out = mnt / "run"
    # full before step 1's line: the log, empty so far, needs a page it cannot get
    code, stdout, err = run(["--model", str(tiny_model), "--out-dir", str(out), "--steps", "2", "--eval-size", "0"],
                            reward_fn=filling_reward(fill, 1, 0))
    assert code == 1 and "Traceback" not in err, err[-3000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith("forkgrpo.py: error: ") and "metrics.jsonl: No space left on device" in line, line
    assert (out / "metrics.jsonl").read_text() == ""
    assert not (out / "final").exists()


def test_a_full_disk_at_start_is_one_line_and_leaves_nothing_behind(small_disk):
    mnt, fill = small_disk
    fill(0)
    with pytest.raises(forkgrpo.InputError, match="cannot write there"):
        forkgrpo.claim_out_dir(forkgrpo.Config(out_dir=str(mnt / "new" / "run")), rank=0, world=1)
    assert not list(mnt.rglob(".lock")) and not list(mnt.rglob("*.tmp"))


def test_a_checkpoint_failure_of_any_rank_is_one_line_naming_that_ranks_own_error():
    from torch.distributed.checkpoint.api import CheckpointException
    # DCP wraps each failing rank's error as (exception, traceback summary): unwrap it, not the tuple
    wrapped = CheckpointException("CheckpointException ranks:dict_keys([1])", {1: (ValueError("bad shard\nmore"), None)})
    assert forkgrpo._cause(wrapped) == "ValueError: bad shard"
    disk = CheckpointException("x", {0: (OSError(errno.ENOSPC, "No space left on device", "/ckpt/a.distcp"), None)})
    assert forkgrpo._cause(disk).startswith("/ckpt/a.distcp: No space left on device")
    try:
        try:
            raise OSError(errno.EACCES, "Permission denied", "/ckpt")
        except OSError as inner:
            raise RuntimeError("save failed") from inner
    except RuntimeError as outer:
        assert forkgrpo._cause(outer) == "/ckpt: Permission denied"


def test_a_vllm_memory_fraction_that_leaves_the_trainer_too_little_is_refused_naming_the_largest_safe_value():
    gib = 2**30
    # Qwen3-4B (4.02e9 parameters) on one 79.6 GiB H100: weights and AdamW take 44.9 GiB, so 0.5 does not fit
    with pytest.raises(forkgrpo.InputError, match=r"--vllm-gpu-memory-utilization 0.5 leaves too little .* use at most 0.41"):
        forkgrpo.check_memory_split(4.02e9, int(79.6 * gib), 0.5)
    forkgrpo.check_memory_split(4.02e9, int(79.6 * gib), 0.41)  # the value it names fits
    forkgrpo.check_memory_split(4.02e9 / 8, int(79.6 * gib), 0.5)  # sharded over 8 GPUs: fits
    with pytest.raises(forkgrpo.InputError, match="none fits: use more GPUs"):
        forkgrpo.check_memory_split(32.8e9, int(139.8 * gib), 0.1)
