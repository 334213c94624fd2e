"""Per-GPU memory plan of forkgrpo.py at the paper's settings, on paper: arithmetic, no GPU.

For Qwen3-8B, 14B and 32B on nodes of 8 x H100-80GB or 8 x H200-141GB, what each phase of a
training step holds on one GPU (sharded float32 state, the bf16 layers FSDP2 gathers, the
scoring pass, the update with activation checkpointing, the optimizer step, the weight sync,
vLLM awake and asleep) and in host RAM per node, computed from the models' published
config.json values and the code's own sizes (micro-batch 4, log-prob/entropy chunk 1024).
It prints markdown tables: the headline (what fits where, and what to change where it does
not), what a token budget per micro-batch (--micro-batch-tokens) changes, then one table per
model. docs/memory.md holds its output and says which of its lines a GPU has measured.

    python3 bench/memory_plan.py                      # the tables of docs/memory.md
    python3 bench/memory_plan.py --models Qwen3-32B --nodes 2 4 16 --micro-batch-size 2
    python3 bench/memory_plan.py --models Qwen3-8B --nodes 1 --micro-batch-tokens 61440

The paper's settings (forkgrpo.py's docstring, from the authors' script): G = 16, 512 prompts
per step in 16 mini-batches, 20,480 new tokens after at most 2,048 prompt tokens, micro-batch 4,
activation checkpointing, bf16 compute, float32 master weights and AdamW state, FSDP2 full
sharding; the authors ran 16 nodes x 8 GPUs. Every assumption is a named constant or option
below, and docs/memory.md lists them. Standard library only.
"""

import argparse
import math
import random
import statistics
from dataclasses import dataclass

GiB = 2**30


@dataclass(frozen=True)
class Model:
    """The config.json values that set the memory; `published_b` is the model card's parameter count."""

    name: str
    hidden: int  # hidden_size, H
    intermediate: int  # intermediate_size, I
    layers: int  # num_hidden_layers, L
    heads: int  # num_attention_heads
    kv_heads: int  # num_key_value_heads
    head_dim: int
    vocab: int  # vocab_size, V
    tied: bool  # tie_word_embeddings
    published_b: float


# config.json of Qwen/Qwen3-8B, Qwen/Qwen3-14B and Qwen/Qwen3-32B on the Hugging Face hub
# (https://huggingface.co/Qwen/Qwen3-8B/blob/main/config.json, likewise 14B and 32B); the -Base
# models the paper trains have the same shapes. Parameter counts from the model cards: "Number of
# Parameters: 8.2B", "14.8B", "32.8B".
MODELS = {
    m.name: m
    for m in (
        Model("Qwen3-8B", hidden=4096, intermediate=12288, layers=36, heads=32, kv_heads=8, head_dim=128,
              vocab=151936, tied=False, published_b=8.2),
        Model("Qwen3-14B", hidden=5120, intermediate=17408, layers=40, heads=40, kv_heads=8, head_dim=128,
              vocab=151936, tied=False, published_b=14.8),
        Model("Qwen3-32B", hidden=5120, intermediate=25600, layers=64, heads=64, kv_heads=8, head_dim=128,
              vocab=151936, tied=False, published_b=32.8),
    )
}
# Not in the paper: the shape bench/gpu_check.py trains from random weights on one GPU
# (https://huggingface.co/Qwen/Qwen3-1.7B/blob/main/config.json; "Number of Parameters: 1.7B").
OTHER_MODELS = {"Qwen3-1.7B": Model("Qwen3-1.7B", hidden=2048, intermediate=6144, layers=28, heads=16, kv_heads=8,
                                    head_dim=128, vocab=151936, tied=True, published_b=1.7)}

# What torch.cuda.mem_get_info reports as total (nvidia-smi: 81559 MiB and 143771 MiB).
GPUS = {"H100-80GB": 81559 * 2**20, "H200-141GB": 143771 * 2**20}


@dataclass(frozen=True)
class Settings:
    """The run (the paper's, from forkgrpo.py's docstring) and the assumptions of the plan."""

    group_size: int = 16
    prompts_per_step: int = 512
    max_new_tokens: int = 20480
    max_prompt_len: int = 2048
    micro_batch_size: int = 4
    micro_batch_tokens: int = 0  # --micro-batch-tokens: 0 is the fixed rule (micro_batch_size rows)
    mini_batches: int = 16
    chunk_size: int = 1024  # logprobs_and_entropy's default
    gpus_per_node: int = 8
    # --- assumptions ---
    margin: float = 0.10  # fraction of the GPU kept free for allocator fragmentation
    context_gib: float = 1.0  # CUDA context, cuBLAS workspaces
    nccl_gib: float = 1.0  # NCCL communicators' buffers (the trainer's, and vLLM's with TP > 1)
    vllm_batched_tokens: int = 16384  # vLLM 0.32.0's max_num_batched_tokens for LLM() on >= 70 GiB GPUs
    vllm_max_seqs: int = 1024  # its max_num_seqs there (engine/arg_utils.py, _get_default_max_num_...)
    vllm_non_torch_gib: float = 0.5  # what vLLM's profile counts outside torch's allocator
    host_gib_per_rank: float = 4.0  # resident set of one rank with torch, CUDA and vLLM imported
    host_bytes_per_token: int = 200  # a vLLM output token with flat_logprobs, and forkgrpo's two lists of it
    min_seqs: int = 16  # full-length sequences an engine should hold at once to be worth its GPUs
    budget_step: int = 1024  # the token budget the plan picks is a multiple of this
    sim_prompt_tokens: int = 256  # prompt length in the simulated mini-batches (DAPO-Math-17K's are ~100-300)
    sim_rounds: int = 64  # simulated mini-batches per set-up

    @property
    def seq_len(self):
        return self.max_prompt_len + self.max_new_tokens

    @property
    def micro_tokens(self):
        """N, the padded tokens of the worst micro-batch: micro-batch x T under the fixed rule; under a
        token budget the budget, or one full-length row alone when the budget is smaller."""
        return max(self.micro_batch_tokens, self.seq_len) if self.micro_batch_tokens else self.micro_batch_size * self.seq_len

    @property
    def head_tokens(self):
        """n, the most response tokens of one micro-batch that go through the LM head: micro-batch x
        max_new_tokens under the fixed rule; under a budget every token but the prompts', bounded by N."""
        return self.micro_tokens if self.micro_batch_tokens else self.micro_batch_size * self.max_new_tokens


# ---- parameter counts ---------------------------------------------------------------------------


def layer_params(m):
    """One decoder layer: q, k, v, o projections, q/k RMSNorms, SwiGLU MLP, two RMSNorms (no biases)."""
    q, kv = m.heads * m.head_dim, m.kv_heads * m.head_dim
    attention = m.hidden * q + 2 * m.hidden * kv + q * m.hidden + 2 * m.head_dim
    mlp = 3 * m.hidden * m.intermediate
    return attention + mlp + 2 * m.hidden


def root_params(m):
    """What FSDP2's root group holds: embeddings, the final norm and (untied) the LM head."""
    return m.vocab * m.hidden * (1 if m.tied else 2) + m.hidden


def total_params(m):
    return m.layers * layer_params(m) + root_params(m)


# ---- one configuration ---------------------------------------------------------------------------


def kv_bytes_per_token(m):
    """K and V of every layer in bf16, all KV heads (an engine of TP GPUs holds 1/TP of it on each)."""
    return 2 * m.layers * m.kv_heads * m.head_dim * 2


def plan(m, gpu, nodes, s, tp):
    """Bytes per GPU (and host bytes per node) of each item and each phase; see docs/memory.md."""
    cap, world = GPUS[gpu], nodes * s.gpus_per_node
    P, H, I, V, L = total_params(m), m.hidden, m.intermediate, m.vocab, m.layers
    q, kv = m.heads * m.head_dim, m.kv_heads * m.head_dim
    N = s.micro_tokens  # padded tokens of the worst micro-batch
    n = s.head_tokens  # its response tokens (all selected, worst case)
    C = s.chunk_size
    rows = s.prompts_per_step * s.group_size // world  # responses on this rank per step
    r = {}
    # Trainer state, sharded over all ranks (FSDP2 full sharding).
    r["params"] = 4 * P / world
    r["grads"] = 4 * P / world
    r["adam"] = 8 * P / world
    # input_ids (int64), response_mask and the fork mask (bool), old_logp, entropy and the update's copy
    # of it (float32): 22 bytes per position of the step's (rows, T) batch. No attention mask: rows are
    # right-padded and causal attention alone is exact at every real position, so transformers builds no
    # (B, 1, T, T) mask and SDPA keeps no bias for backward (masking_utils._ignore_causal_mask_sdpa).
    r["batch"] = 22 * rows * s.seq_len
    r["gathered"] = 2 * root_params(m) + 2 * 2 * layer_params(m)  # bf16: the root stays gathered, 2 layers in flight
    # Scoring pass, no grad: the largest live set inside a layer is the MLP's act(gate), up and product.
    r["score_layer"] = N * (max(6 * I, 10 * (q + kv)) + 8 * H)
    # final hidden states, the selected rows, z_buf and e_buf, and in bf16 a fresh float32 logits block
    # plus the bf16 one it came from (_chunk_logits: .float() does not write into z_buf).
    r["score_head"] = 2 * H * N + 2 * H * n + 3 * 4 * C * V + 2 * C * V
    # Update: checkpointing keeps each layer's input (bf16) ...
    r["checkpoints"] = L * 2 * H * N
    # ... and recomputes one layer: what its backward needs, per token: two RMSNorms (float32 input,
    # normalised and output bf16: 8H each), q and k through q/k-norm, RoPE and SDPA (12 bytes per
    # element each), v and the attention output (2 each), the MLP's gate, act, up, product (8I), the
    # SDPA log-sum-exp; plus backward's gradient tensors, largest in the MLP (6I + 4H).
    r["layer_act"] = N * (16 * H + 14 * (q + kv) + 8 * I + 4 * m.heads)
    r["layer_bwd"] = N * (6 * I + 4 * H)
    r["layer_grads"] = 6 * layer_params(m)  # unsharded bf16 grads and their float32 reduce-scatter copy
    # LM head backward (_ChunkedLogprobEntropy): saved rows and their gradient (bf16), the float32
    # grad_weight accumulator, a (V, H) bf16 product per chunk, the chunk buffers; the final norm's
    # saved input (float32) and output.
    r["head_bwd"] = 4 * H * n + 4 * V * H + 2 * V * H + 2 * 4 * C * V + 2 * C * V + 6 * H * N
    overhead = (s.context_gib + s.nccl_gib) * GiB
    state12, state16 = r["params"] + r["adam"], r["params"] + r["grads"] + r["adam"]
    r["score_peak"] = (state12 + r["batch"] + r["gathered"]
                       + max(r["score_layer"] + 2 * H * N, r["score_head"]) + overhead)
    base = state16 + r["batch"] + 2 * root_params(m) + r["checkpoints"]
    head = base + r["head_bwd"]
    layer = base + 2 * V * H + 4 * layer_params(m) + r["layer_grads"] + r["layer_act"] + r["layer_bwd"]
    r["update_peak"] = max(head, layer) + overhead
    r["optim_peak"] = state16 + 4 * P / world + r["batch"] + overhead  # foreach AdamW: a sqrt(v) copy
    # vLLM: weights split over TP ranks; the sync casts each shard to the engine's bf16, then all-gathers
    # one parameter at a time (two alive).
    r["vllm_weights"] = 2 * P / tp
    r["sync_peak"] = state12 + r["vllm_weights"] + 2 * 2 * V * H + overhead
    r["train_peak"] = max(r["score_peak"], r["update_peak"], r["optim_peak"], r["sync_peak"])
    # vLLM's profile run: max(a prefill of max_num_batched_tokens, the sampler's float32 logits, log-probs
    # and a working copy at max_num_seqs), plus memory outside torch.
    prefill = s.vllm_batched_tokens * (6 * I / tp + 2 * (q + 2 * kv) / tp + 8 * H)
    sampler = 3 * 4 * s.vllm_max_seqs * V
    r["vllm_workspace"] = max(prefill, sampler) + s.vllm_non_torch_gib * GiB
    # Rollout: the trainer keeps its state (grads freed); main drops the batch after the update.
    r["rollout_trainer"] = state12 + overhead
    usable = cap * (1 - s.margin)
    util = math.floor(100 * (usable - r["rollout_trainer"]) / cap) / 100  # vLLM's budget is util * total
    r["util"] = max(util, 0.0)
    r["kv_cache"] = max(r["util"] * cap - r["vllm_weights"] - r["vllm_workspace"], 0.0)
    r["full_seqs"] = int(r["kv_cache"] * tp // (kv_bytes_per_token(m) * s.seq_len))
    r["responses_per_engine"] = rows * tp
    r["rollout_peak"] = r["rollout_trainer"] + r["util"] * cap
    r["vllm_asleep"] = 0.0  # sleep level 2: weights discarded, KV cache freed
    r["usable"] = usable
    r["fits_train"] = r["train_peak"] <= usable
    r["fits_rollout"] = r["full_seqs"] >= 1  # vLLM refuses a max_model_len its KV cache cannot hold
    # Host RAM per node.
    per_node = s.gpus_per_node * s.host_gib_per_rank * GiB
    r["host_load_node0"] = per_node + 2 * P  # rank 0 reads the whole checkpoint in its own bf16, once
    r["host_rollout"] = per_node + s.gpus_per_node * rows * s.max_new_tokens * s.host_bytes_per_token
    return r


def valid_tps(m, world):
    return [t for t in (1, 2, 4, 8) if world % t == 0 and m.kv_heads % t == 0 and m.heads % t == 0]


def recommend(m, gpu, nodes, s):
    """The largest micro-batch (<= the given one) whose training peak fits, and the smallest vLLM TP
    whose engine holds s.min_seqs full-length sequences (else the TP that holds the most)."""
    mb = s.micro_batch_size
    while mb > 1 and not plan(m, gpu, nodes, _with(s, micro_batch_size=mb), 1)["fits_train"]:
        mb //= 2
    s2 = _with(s, micro_batch_size=mb)
    plans = {t: plan(m, gpu, nodes, s2, t) for t in valid_tps(m, nodes * s.gpus_per_node)}
    good = [t for t, p in plans.items() if p["full_seqs"] >= s.min_seqs and p["fits_train"]]
    tp = good[0] if good else max(plans, key=lambda t: (plans[t]["fits_train"], plans[t]["full_seqs"]))
    return mb, tp, plans[tp]


def _with(s, **kw):
    return Settings(**{**s.__dict__, **kw})


# ---- micro-batches by token budget -------------------------------------------------------------------


def micro_batches(lengths, size, max_tokens=0):
    """forkgrpo.micro_batches, restated so that this script needs only the standard library (a test holds
    the two equal): fixed, `size` rows in order; budget, rows sorted longest first, packed greedily while
    rows x the longest row <= max_tokens (a longer row alone)."""
    if not max_tokens:
        return [list(range(i, min(i + size, len(lengths)))) for i in range(0, len(lengths), size)]
    batches = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= max_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


# z with P(Z < z) = 0.9 for a standard normal: a log-normal with median limit / 4 and sigma = ln 4 / z
# exceeds the limit with probability 0.1.
Z90 = 1.2815515655446004


def long_tailed_lengths(n, limit, rng):
    """n response lengths shaped like the paper's: log-normal with median limit / 4, cut at the limit, so
    that the median is a quarter of the limit and a tenth of the responses reach it (truncated ones)."""
    sigma = math.log(4) / Z90
    return [max(1, min(limit, round(rng.lognormvariate(math.log(limit / 4), sigma)))) for _ in range(n)]


def rows_per_mini_batch(nodes, s):
    return max(1, s.prompts_per_step * s.group_size // (nodes * s.gpus_per_node) // s.mini_batches)


def pick_budget(m, gpu, nodes, s, tp=1):
    """The largest --micro-batch-tokens (a multiple of s.budget_step) whose training peak fits, no larger than
    a whole mini-batch of full-length rows (a larger budget packs nothing more); 0 when one full-length row
    alone does not fit."""
    top = rows_per_mini_batch(nodes, s) * s.seq_len // s.budget_step
    low = -(-s.seq_len // s.budget_step)
    fits = lambda k: plan(m, gpu, nodes, _with(s, micro_batch_tokens=k * s.budget_step), tp)["fits_train"]  # noqa: E731
    if not fits(low):
        return 0
    while low < top:  # the peak grows with the budget: bisect for the last k that fits
        mid = (low + top + 1) // 2
        low, top = (mid, top) if fits(mid) else (low, mid - 1)
    return low * s.budget_step


def simulate(nodes, s, size, budget, seed=0):
    """On simulated mini-batches of one rank (s.sim_rounds of them, long-tailed responses after
    s.sim_prompt_tokens-token prompts): micro-batches per mini-batch, padded tokens over real tokens, and
    the largest micro-batch in padded tokens, for the fixed rule (`size` rows) and the budget."""
    rng, rows = random.Random(seed), rows_per_mini_batch(nodes, s)
    out = {"fixed": [], "budget": []}
    for _ in range(s.sim_rounds):
        lengths = [s.sim_prompt_tokens + r for r in long_tailed_lengths(rows, s.max_new_tokens, rng)]
        for rule, parts in (("fixed", micro_batches(lengths, size)), ("budget", micro_batches(lengths, size, budget))):
            padded = [len(p) * max(lengths[i] for i in p) for p in parts]
            out[rule].append((len(parts), sum(padded) / sum(lengths), max(padded)))
    return {rule: {"micro_batches": statistics.mean(x[0] for x in v), "padding": statistics.mean(x[1] for x in v),
                   "largest": max(x[2] for x in v)} for rule, v in out.items()}


# ---- tables ----------------------------------------------------------------------------------------


def gib(x):
    return f"{x / GiB:.1f}"


def models_table(names):
    lines = ["| model | H | I | L | heads / KV heads | head_dim | V | tied | params (computed) | published | "
             "KV cache per token | one 22,528-token sequence |",
             "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for name in names:
        m = MODELS[name]
        p = total_params(m)
        kvb = kv_bytes_per_token(m)
        lines.append(f"| {m.name} | {m.hidden} | {m.intermediate} | {m.layers} | {m.heads} / {m.kv_heads} | "
                     f"{m.head_dim} | {m.vocab} | {'yes' if m.tied else 'no'} | {p / 1e9:.3f}B | {m.published_b}B | "
                     f"{kvb // 1024} KiB | {kvb * 22528 / GiB:.2f} GiB |")
    return "\n".join(lines)


def rule_name(s):
    return f"--micro-batch-tokens {s.micro_batch_tokens}" if s.micro_batch_tokens else f"micro-batch {s.micro_batch_size}"


def headline_table(names, gpus, nodes_list, s):
    lines = [f"| model | GPUs | as in the paper ({rule_name(s)}, vLLM TP 1): training peak / usable GiB | "
             f"fits as is? | recommended: {'--micro-batch-tokens' if s.micro_batch_tokens else 'micro-batch'}, vLLM TP, gpu_memory_utilization | "
             "training peak GiB (spare) | "
             "full-length sequences per engine |",
             "|---|---|---:|---|---|---:|---:|"]
    for name in names:
        m = MODELS[name]
        for gpu in gpus:
            for nodes in nodes_list:
                p = plan(m, gpu, nodes, s, 1)
                as_is = "yes" if p["fits_train"] and p["fits_rollout"] else "no"
                mb, tp, q = recommend(m, gpu, nodes, s)
                if q["fits_train"] and q["fits_rollout"]:
                    rec = f"{s.micro_batch_tokens if s.micro_batch_tokens else mb}, {tp}, {q['util']:.2f}"  # a budget: as given
                    spare = f"{gib(q['train_peak'])} ({gib(q['usable'] - q['train_peak'])})"
                    seqs = str(q["full_seqs"])
                else:
                    rec, spare, seqs = "does not fit at micro-batch 1: more nodes", "-", "-"
                lines.append(f"| {m.name} | {nodes} x 8 {gpu} | {gib(p['train_peak'])} / {gib(p['usable'])} | {as_is} | "
                             f"{rec} | {spare} | {seqs} |")
    return "\n".join(lines)


ROWS = [
    ("**trainer state (sharded over all GPUs)**", None),
    ("float32 parameters, 4P / W", "params"),
    ("float32 gradients, 4P / W (update only)", "grads"),
    ("AdamW moments, 8P / W", "adam"),
    ("the step's batch (rows x 22,528 positions, 22 B each)", "batch"),
    ("**training passes (one micro-batch)**", None),
    ("bf16 all-gathered: root (embeddings, head) + 2 layers", "gathered"),
    ("scoring: one layer's live tensors, no grad", "score_layer"),
    ("scoring: hidden states + LM-head chunk buffers", "score_head"),
    ("update: checkpointed layer inputs, L x N x H bf16", "checkpoints"),
    ("update: one layer recomputed", "layer_act"),
    ("update: that layer's backward gradients", "layer_bwd"),
    ("update: LM-head backward + final norm", "head_bwd"),
    ("**phase peaks (with CUDA context and NCCL)**", None),
    ("scoring pass", "score_peak"),
    ("update (forward/backward)", "update_peak"),
    ("optimizer step", "optim_peak"),
    ("weight sync (vLLM weights awake)", "sync_peak"),
    ("usable (total less the fragmentation margin)", "usable"),
    ("**rollout (vLLM awake)**", None),
    ("trainer resident (params, AdamW, context)", "rollout_trainer"),
    ("vLLM weights, 2P / TP", "vllm_weights"),
    ("vLLM workspace (profile run)", "vllm_workspace"),
    ("vLLM KV cache", "kv_cache"),
    ("vLLM asleep (level 2)", "vllm_asleep"),
    ("**host RAM per node**", None),
    ("node 0 at load (rank 0's bf16 checkpoint)", "host_load_node0"),
    ("rollout outputs, every response full length", "host_rollout"),
]


def budget_table(names, gpus, nodes_list, s):
    """The fixed rule the headline recommends beside the largest token budget that fits, and what each does
    to simulated long-tailed mini-batches of one rank."""
    lines = ["| model | GPUs | rows per mini-batch per rank | fixed rule: micro-batch, worst micro-batch tokens, training peak GiB | "
             "token budget that fits (full-length rows) | training peak GiB at it (spare) | "
             "micro-batches per mini-batch: fixed / budget | padded / real tokens: fixed / budget |",
             "|---|---|---:|---|---:|---:|---:|---:|"]
    for name in names:
        m = MODELS[name]
        for gpu in gpus:
            for nodes in nodes_list:
                mb, tp, fixed = recommend(m, gpu, nodes, s)
                budget = pick_budget(m, gpu, nodes, s, tp)
                rows = rows_per_mini_batch(nodes, s)
                head = f"| {m.name} | {nodes} x 8 {gpu} | {rows} | {mb}, {mb * s.seq_len:,}, {gib(fixed['train_peak'])}"
                if not budget:
                    lines.append(f"{head} | none: one full-length row does not fit | - | - | - |")
                    continue
                p = plan(m, gpu, nodes, _with(s, micro_batch_tokens=budget), tp)
                sim = simulate(nodes, s, mb, budget)
                f, b = sim["fixed"], sim["budget"]
                lines.append(f"{head} | {budget:,} ({budget / s.seq_len:.2f}) | {gib(p['train_peak'])} "
                             f"({gib(p['usable'] - p['train_peak'])}) | {f['micro_batches']:.1f} / {b['micro_batches']:.1f} | "
                             f"{f['padding']:.2f} / {b['padding']:.2f} |")
    return "\n".join(lines)


def model_table(m, gpus, nodes_list, s):
    cols = [(g, n) for g in gpus for n in nodes_list]
    picks = {c: recommend(m, c[0], c[1], s) for c in cols}
    plans = {c: plan(m, c[0], c[1], _with(s, micro_batch_size=picks[c][0]), picks[c][1]) for c in cols}
    head = "| GiB per GPU | " + " | ".join(f"{n} x 8 {g.split('-')[0]}" for g, n in cols) + " |"
    chosen = "--micro-batch-tokens, vLLM TP" if s.micro_batch_tokens else "micro-batch, vLLM TP (chosen)"
    lines = [head, "|---|" + "---:|" * len(cols),
             f"| {chosen} | " + " | ".join(f"{s.micro_batch_tokens or picks[c][0]}, {picks[c][1]}" for c in cols) + " |",
             "| worst micro-batch, padded tokens N | " + " | ".join(f"{_with(s, micro_batch_size=picks[c][0]).micro_tokens:,}"
                                                                   for c in cols) + " |"]
    for label, key in ROWS:
        if key is None:
            lines.append(f"| {label} |" + " |" * len(cols))
        else:
            lines.append(f"| {label} | " + " | ".join(gib(plans[c][key]) for c in cols) + " |")
    lines.append("| vLLM gpu_memory_utilization (largest that fits) | "
                 + " | ".join(f"{plans[c]['util']:.2f}" for c in cols) + " |")
    lines.append("| full-length sequences the engine holds / responses per engine per draw | "
                 + " | ".join(f"{plans[c]['full_seqs']} / {plans[c]['responses_per_engine']}" for c in cols) + " |")
    if not s.micro_batch_tokens:
        lines.append("| --micro-batch-tokens the plan picks (largest that fits, at most a mini-batch) | " + " | ".join(
            f"{pick_budget(m, c[0], c[1], s, picks[c][1]):,}" for c in cols) + " |")
    lines.append("| fits | " + " | ".join(
        "yes" if plans[c]["fits_train"] and plans[c]["fits_rollout"] else "**no**" for c in cols) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Assumptions are options; docs/memory.md explains each.")
    d = Settings()
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--gpus", nargs="+", default=list(GPUS), choices=list(GPUS))
    ap.add_argument("--nodes", nargs="+", type=int, default=[1, 2, 4, 16], help="nodes of 8 GPUs (the authors ran 16)")
    ap.add_argument("--micro-batch-size", type=int, default=d.micro_batch_size, help="sequences per forward/backward")
    ap.add_argument("--micro-batch-tokens", type=int, default=d.micro_batch_tokens,
                    help="plan for forkgrpo's token budget per micro-batch instead of --micro-batch-size (0: the fixed rule)")
    ap.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    ap.add_argument("--max-prompt-len", type=int, default=d.max_prompt_len)
    ap.add_argument("--margin", type=float, default=d.margin, help="fraction of each GPU kept free for fragmentation")
    ap.add_argument("--context-gib", type=float, default=d.context_gib, help="CUDA context per GPU")
    ap.add_argument("--nccl-gib", type=float, default=d.nccl_gib, help="NCCL buffers per GPU")
    ap.add_argument("--min-seqs", type=int, default=d.min_seqs,
                    help="full-length sequences an engine should hold before a larger vLLM TP is not needed")
    ap.add_argument("--headline-only", action="store_true", help="print only the models and the headline table")
    a = ap.parse_args(argv)
    if any(n < 1 for n in a.nodes) or a.micro_batch_size < 1 or a.micro_batch_tokens < 0 or not 0 <= a.margin < 1:
        ap.error("--nodes and --micro-batch-size must be >= 1, --micro-batch-tokens >= 0, --margin in [0, 1)")
    s = _with(d, micro_batch_size=a.micro_batch_size, micro_batch_tokens=a.micro_batch_tokens, max_new_tokens=a.max_new_tokens,
              max_prompt_len=a.max_prompt_len, margin=a.margin, context_gib=a.context_gib, nccl_gib=a.nccl_gib, min_seqs=a.min_seqs)
    out = ["## Models", "", models_table(a.models), "", "## What fits where", "", headline_table(a.models, a.gpus, a.nodes, s)]
    if not s.micro_batch_tokens:
        out += ["", "## Micro-batches by token budget", "", budget_table(a.models, a.gpus, a.nodes, s)]
    if not a.headline_only:
        for name in a.models:
            out += ["", f"## {name}, per GPU", "", model_table(MODELS[name], a.gpus, a.nodes, s)]
    print("\n".join(out))


if __name__ == "__main__":
    main()
