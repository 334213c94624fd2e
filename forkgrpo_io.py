"""forkgrpo_io: the files a run reads and writes, so that forkgrpo.py can stay about the method.

forkgrpo.py imports everything here; a reader who learns the algorithm can skip this file. It holds:
  - the user's data files: .jsonl or .parquet problems, checked row by row, with errors naming
    the file and line (load_problems), and the duplicate filter (drop_duplicates);
  - the run's folder: one run owns it, under a lock; an earlier run in it is refused unless resumed
    or replaced with --overwrite (claim_out_dir, release_out_dir, find_checkpoint);
  - checkpoints (torch.distributed.checkpoint, every rank its own shards) and the final model as a
    transformers folder (save_checkpoint, load_checkpoint, run_options, save_final);
  - the metrics log: metrics.jsonl, a short line on stdout, and Weights & Biases (MetricsLog).
Every function that several ranks call says so; nothing here imports vLLM or transformers at import.
"""

import dataclasses
import fcntl
import json
import math
import os
import shutil
import socket
import tempfile
from pathlib import Path

import torch.distributed as dist


class InputError(ValueError):
    """Bad user input (an option, a data file, a checkpoint): reported without a traceback."""


# ======================================================================================
# DATA FILES
# ======================================================================================


def _lookup(row, dotted):
    for part in dotted.split("."):
        if not isinstance(row, dict) or part not in row:
            raise KeyError(dotted)
        row = row[part]
    return row


def load_problems(path, prompt_key, answer_key, option="--data"):
    """Problems from a .jsonl or .parquet file; a clear error naming the file and line otherwise."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{option}: no such file: {path}")
    if p.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
            rows = pq.read_table(p).to_pylist()
        except Exception as e:  # pyarrow raises several types for a bad file
            raise InputError(f"{option}: {path}: cannot read as parquet: {e}") from None
        where = [f"{path}: row {i}" for i in range(len(rows))]
    elif p.suffix in (".jsonl", ".json"):
        rows, where = [], []
        with open(p, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise InputError(f"{path}:{lineno}: not UTF-8 text (byte {e.start + 1} of the line)") from None
                if not line.strip():
                    continue
                if not rows and line.lstrip().startswith("["):
                    raise InputError(f"{path}:{lineno}: expected JSON Lines (one object per line), not a JSON array")
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise InputError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
                where.append(f"{path}:{lineno}")
    else:
        raise InputError(f"{option}: {path}: expected a .jsonl or .parquet file")
    problems = []
    for row, at in zip(rows, where):
        try:
            prompt, answer = _lookup(row, prompt_key), _lookup(row, answer_key)
        except KeyError as e:
            flag = "--prompt-key" if e.args[0] == prompt_key else "--answer-key"
            raise InputError(f"{at}: no key {e.args[0]!r} (choose it with {flag})") from None
        if not (isinstance(prompt, str) or (isinstance(prompt, list) and prompt)):
            raise InputError(f"{at}: {prompt_key!r} must be a string or a list of chat messages")
        for i, m in enumerate(prompt if isinstance(prompt, list) else []):
            if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
                raise InputError(f"{at}: message {i} of {prompt_key!r} needs a string 'role' and a string 'content'")
        if isinstance(answer, float) and not math.isfinite(answer):
            raise InputError(f"{at}: the answer under {answer_key!r} is {answer}, not a number one can check")
        if isinstance(answer, (int, float)) and not isinstance(answer, bool):
            answer = str(answer)
        if not isinstance(answer, str) or not answer.strip():
            raise InputError(f"{at}: missing or empty answer under {answer_key!r}")
        problems.append({"prompt": prompt, "answer": answer, "where": at})
    if not problems:
        raise InputError(f"{option}: {path}: no problems in the file")
    return problems


def _hashable(value):
    """A hashable stand-in for a JSON-like value: equal values, equal stand-ins."""
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


def drop_duplicates(problems):
    """The problems without rows whose (prompt, answer) repeats an earlier one, and how many went."""
    seen, unique = set(), []
    for p in problems:
        key = (_hashable(p["prompt"]), p["answer"])  # about twice as fast as json.dumps
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique, len(problems) - len(unique)


# ======================================================================================
# THE RUN'S FOLDER
# ======================================================================================


RUN_FILES = ("metrics.jsonl", "checkpoints", "final", "hf", "wandb", "wandb-run-id", "curves.png")  # what --overwrite deletes


def holds_run(folder):
    """Whether `folder` holds an earlier run's metrics, checkpoint or final model."""
    metrics, final = folder / "metrics.jsonl", folder / "final"
    saved = [p for p in (folder / "checkpoints").glob("step_*") if not p.name.endswith(".tmp")]
    return (metrics.is_file() and metrics.stat().st_size > 0) or final.exists() or bool(saved)


def claim_out_dir(cfg, rank, world):
    """This run's output folder, locked for it: (folder, lock file or None on other ranks).

    A run owns its folder. A second run on a locked folder is refused at once; a lock left by a
    run that died is taken over, with a note. A folder that holds an earlier run is refused
    unless this run resumes it (--resume auto, or a checkpoint inside it) or replaces it
    (--overwrite); the default --out-dir instead moves on to the first free runs/forkgrpo-N, so
    that ./run.sh can run twice in a row. Rank 0 decides and tells the other ranks.
    """
    problem, out, lock = None, Path(cfg.out_dir), None
    if rank == 0:
        try:
            out, lock = _claim_out_dir(cfg)
        except InputError as e:
            problem = str(e)
    if world > 1:  # every rank must stop, or use the same folder
        box = [problem, str(out)]
        dist.broadcast_object_list(box, src=0)
        problem, out = box[0], Path(box[1])
    if problem:
        raise InputError(problem)
    return out, lock


def _claim_out_dir(cfg):
    out = Path(cfg.out_dir)
    if cfg.out_dir == type(cfg).out_dir and not (cfg.resume or cfg.overwrite):
        n = 1
        while holds_run(out) or (out / ".lock").exists():
            n += 1
            out = Path(f"{cfg.out_dir}-{n}")
        if n > 1:
            print(f"forkgrpo: {cfg.out_dir} holds an earlier run; this run writes to {out}", flush=True)
    try:  # a folder we cannot write is found now, not at the first save after hours of training
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        for folder in (out, out / "checkpoints"):
            tempfile.TemporaryFile(dir=folder).close()
        lock = open(out / ".lock", "a+")
    except OSError as e:
        raise InputError(f"--out-dir {out}: cannot write there ({e.strerror or e})") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by the kernel if this process dies
    except OSError:
        lock.seek(0)
        owner = lock.read().strip() or "another process"
        lock.close()
        raise InputError(f"--out-dir {out}: another run ({owner}) is using this folder; "
                         "wait for it to finish, or choose another --out-dir") from None
    lock.seek(0)
    if lock.read().strip():
        print(f"forkgrpo: taking over {out / '.lock'}: the run that held it ended without releasing it", flush=True)
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    lock.flush()
    ckpts = out / "checkpoints"
    inside = cfg.resume == "auto" or (cfg.resume and Path(cfg.resume).resolve().parent == ckpts.resolve())
    if holds_run(out) and cfg.overwrite:
        for name in RUN_FILES:
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        ckpts.mkdir()
        print(f"forkgrpo: --overwrite: deleted the earlier run in {out}", flush=True)
    elif holds_run(out) and not inside:
        release_out_dir(lock)
        raise InputError(f"--out-dir {out} holds an earlier run (metrics.jsonl, checkpoints or final/); continue "
                         "it with --resume auto, start a new run in another --out-dir, or replace it with --overwrite")
    elif cfg.resume == "auto" and holds_run(out) and find_checkpoint("auto", out) is None:
        release_out_dir(lock)
        raise InputError(f"--resume auto: {out} holds an earlier run but no checkpoint to continue from; "
                         "start a new run in another --out-dir, or replace it with --overwrite")
    stale = [*ckpts.glob("step_*.tmp"), *out.glob("final.tmp"), *out.glob("hf/step_*.tmp")]  # left by a kill during a save
    for folder in stale:
        shutil.rmtree(folder, ignore_errors=True)
    if stale:
        print(f"forkgrpo: removed {len(stale)} unfinished save(s) in {out}", flush=True)
    return out, lock


def release_out_dir(lock):
    """Give up the folder: the lock file goes, then its lock."""
    if lock is not None:
        Path(lock.name).unlink(missing_ok=True)
        lock.close()


# ======================================================================================
# CHECKPOINTS AND THE FINAL MODEL
# ======================================================================================


# A checkpoint is a folder step_NNNNNN with the model and optimizer (torch.distributed.checkpoint:
# each rank writes its own shards) and trainer.json (step, data position). It is written as
# step_NNNNNN.tmp and renamed when complete, so a run killed mid-save leaves the previous one
# intact. No RNG state is needed: every random draw is seeded from (seed, step, rank).


def barrier():
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def save_checkpoint(out_dir, step, policy, optimizer, position, run, rank):
    """Checkpoint `step` into out_dir/checkpoints/step_NNNNNN and delete the older ones; returns its path.
    Every rank calls it: each writes its own shards."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    root = Path(out_dir) / "checkpoints"
    final, tmp = root / f"step_{step:06d}", root / f"step_{step:06d}.tmp"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()  # the folder exists before any rank writes into it
    model_sd, optim_sd = get_state_dict(policy, optimizer)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp))
    barrier()  # every rank's shards are on disk before the rename
    if rank == 0:
        (tmp / "trainer.json").write_text(json.dumps({"step": step, "position": position, "run": run}))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in root.glob("step_*"):
            if old != final and not old.name.endswith(".tmp"):
                shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def find_checkpoint(resume, out_dir):
    """The checkpoint folder that --resume names; None for "auto" with nothing saved yet."""
    if resume == "auto":
        done = sorted(p for p in (Path(out_dir) / "checkpoints").glob("step_*") if not p.name.endswith(".tmp"))
        return done[-1] if done else None
    path = Path(resume)
    if not (path / "trainer.json").is_file():
        raise InputError(f"--resume: {resume} is not a complete checkpoint folder (no trainer.json)")
    return path


def load_checkpoint(path, policy, optimizer, run):
    """Model and optimizer state from a checkpoint of the same run; returns (step, data position).
    Every rank calls it.

    `run` is run_options(cfg): a checkpoint written under other values of those options is refused,
    and so is a damaged one (any file missing or truncated, another model's), with a clear error."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    path = Path(path)
    try:
        meta = json.loads((path / "trainer.json").read_text())
        step, position, saved = int(meta["step"]), int(meta["position"]), dict(meta.get("run", {}))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"--resume: {path / 'trainer.json'} is damaged ({type(e).__name__}: {e})") from None
    differ = [f"--{k.replace('_', '-')} {saved[k]!r} there, {v!r} here" for k, v in run.items() if k in saved and saved[k] != v]
    if differ:
        raise InputError(f"--resume: {path} was written by a run with other options ({'; '.join(differ)}); "
                         "resume with the same options, or start a new run in another --out-dir")
    if not (path / ".metadata").is_file():
        raise InputError(f"--resume: {path} is incomplete (no .metadata)")
    model_sd, optim_sd = get_state_dict(policy, optimizer)
    state = {"model": model_sd, "optim": optim_sd}
    try:
        dcp.load(state, checkpoint_id=str(path))
        set_state_dict(policy, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    except (Exception, CheckpointException) as e:  # CheckpointException is a BaseException
        e = next(iter(getattr(e, "failures", {}).values()), e)  # the first failing rank's own exception
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise InputError(f"--resume: {path} cannot be loaded into this model ({type(e).__name__}: {first})") from None
    return step, position


# Options that may change when a run resumes: its length, its schedule of saves and evaluations,
# and settings of memory and speed that leave the computed update unchanged.
MAY_CHANGE_ON_RESUME = ("steps", "save_every", "save_hf_every", "eval_every", "wandb_project", "resume", "out_dir",
                        "overwrite", "verify_timeout", "rollout", "vllm_tp", "vllm_gpu_memory_utilization", "micro_batch_size",
                        "activation_checkpointing")


def run_options(cfg):
    """The options that make a run what it is; a checkpoint continues only under the same values."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in MAY_CHANGE_ON_RESUME}


def save_final(policy, tokenizer, out, rank):
    """The trained model as a transformers folder (safetensors), loadable by vLLM too. Every rank calls
    it (the full state dict is gathered); rank 0 writes."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(policy, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        tmp = Path(str(out) + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        state = {k.removeprefix("lm."): v for k, v in full.items()}
        policy.lm.save_pretrained(tmp, state_dict=state, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    barrier()


# ======================================================================================
# METRICS LOG
# ======================================================================================


class MetricsLog:
    """metrics.jsonl in the output folder (one line per step and per evaluation) and a short line
    on stdout, from rank 0. On resume, lines after the checkpoint's step are dropped."""

    def __init__(self, out_dir, rank, start, cfg):
        self.rank, self.wandb = rank, None
        self.path = Path(out_dir) / "metrics.jsonl"
        if rank != 0:
            return
        if cfg.wandb_project:  # W&B's conventions: the config once, then step = the training step
            import wandb

            run_id = Path(out_dir) / "wandb-run-id"  # a resumed run continues its W&B run
            if start == 0 or not run_id.is_file():
                run_id.write_text(os.urandom(4).hex())
            self.wandb = wandb.init(project=cfg.wandb_project, config=dataclasses.asdict(cfg), dir=out_dir,
                                    name=Path(out_dir).name, id=run_id.read_text().strip(), resume="allow")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keep, bad = [], 0
        if start > 0 and self.path.exists():
            for line in self.path.read_text(errors="replace").splitlines():
                try:
                    if line.strip() and json.loads(line)["step"] <= start:
                        keep.append(line)
                except (ValueError, KeyError, TypeError):  # a line cut short by a kill
                    bad += 1
        if bad:
            self.note(f"dropped {bad} unreadable line(s) of {self.path}")
        self.path.write_text("".join(line + "\n" for line in keep))

    def write(self, m):
        if self.rank != 0:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(m) + "\n")
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in m.items() if k != "step"}, step=m["step"])
        if "reward/mean" in m:
            line = (f"step {m['step']:>4} | reward {m['reward/mean']:+.3f} acc {m['reward/accuracy']:.3f} "
                    f"| len {m['length/mean']:.0f} trunc {m['length/truncated_frac']:.2f}")
            if "loss/loss" in m:
                line += (f" | H {m['entropy/mean']:.3f} tau {m.get('fork/tau', math.nan):.3f} "
                         f"sel {m['fork/frac_selected']:.3f} | loss {m['loss/loss']:+.4f} gn {m['train/grad_norm']:.3f}")
            print(line + f" | {m['time/step']:.1f}s", flush=True)
        else:
            print(f"eval {m['step']:>4} | " + " ".join(f"{k[5:]} {v:.3f}" for k, v in m.items() if k != "step"), flush=True)

    def note(self, message):
        if self.rank == 0:
            print(f"forkgrpo: {message}", flush=True)

    def close(self):
        if self.wandb is not None:
            self.wandb.finish()
