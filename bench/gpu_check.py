"""A prepared check for a machine with one CUDA GPU: the paths that only matter at scale, in one table.

    python bench/gpu_check.py            # one CUDA GPU, stock PyTorch + transformers, no vLLM, no network: < 8 min
    python bench/gpu_check.py --cpu      # the same checks at small sizes on CPU (a test runs this)

1. forkgrpo.logprobs_and_entropy (chunked) against the naive full-logits computation at the paper's
   sizes (Qwen3's V = 151,936, H = 4096, bf16): largest differences, peak memory and time of
   forward + backward, and their ratios.
2. forkgrpo.forking_token_mask on 2^24 entropies on the device against its rule, with tau from
   torch.topk: on distinct entropies (a scaled permutation) it must be exactly topk's k tokens; on
   entropies with many ties it must be valid & (H >= tau), ties at tau kept. The time of mask and topk.
3. A 2-step forkgrpo run in one process (--rollout hf) on a tiny random Qwen3 in bf16 with FSDP2 and
   activation checkpointing: its metric lines, and whether every loss and gradient norm is finite.
4. forkgrpo's own scoring pass and update (old_logprobs_and_entropies, update_policy: 2 AdamW steps) at a
   real shape on one GPU: Qwen3-1.7B's published config built from random weights (no download), float32
   master weights and AdamW, bf16 compute through forkgrpo's FSDP2 recipe (shard), activation checkpointing,
   128 rows of a 256-token prompt and a long-tailed response (median 1,024, a tenth at the 4,096 limit),
   once with 8 rows per micro-batch and once with a token budget of 8 x 4,352 (the same worst case). For
   each: peak memory (torch.cuda.max_memory_allocated) beside bench/memory_plan.py's prediction for exactly
   these settings at W = 1, time, tokens per second and model FLOP utilisation (model_flops says how it is
   counted). --cpu runs it on a 2-layer model with 16 responses up to 64 tokens, where the peak is not
   measured (torch's CPU allocator keeps no peak statistics).

Nothing here needs vLLM or a download; the tiny model is built in a temporary folder, with the default
model's tokenizer when .cache/ holds it and otherwise a byte-level one built here (fallback_tokenizer).
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import forkgrpo  # noqa: E402
import memory_plan  # noqa: E402

SIZES = {  # N rows, H hidden, V vocabulary, dtype, mask entries
    "cuda": dict(n=8192, h=4096, v=151_936, dtype=torch.bfloat16, mask_n=2**24, rounds=5),
    "cpu": dict(n=256, h=64, v=2048, dtype=torch.bfloat16, mask_n=2**16, rounds=3),
}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, rounds):
    """(median seconds, min, max, peak bytes above the start) of fn() over `rounds` calls after a warm-up."""
    fn()
    sync(device)
    times, peak = [], 0
    for _ in range(rounds):
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
        if device.type == "cuda":
            peak = max(peak, torch.cuda.max_memory_allocated() - base)
    return statistics.median(times), min(times), max(times), peak


def naive(hidden, weight, targets, temperature):
    logits = (hidden @ weight.t()).float() / temperature  # (N, V): what the chunked code never builds
    logp = torch.log_softmax(logits, -1)
    return logp.gather(-1, targets[:, None])[:, 0], -(logp.exp() * logp).sum(-1)


def check_logprobs(device, s, rows):
    g = torch.Generator(device=device).manual_seed(0)
    hidden = (torch.randn(s["n"], s["h"], device=device, generator=g) * 0.5).to(s["dtype"]).requires_grad_()
    weight = (torch.randn(s["v"], s["h"], device=device, generator=g) * s["h"] ** -0.5).to(s["dtype"]).requires_grad_()
    targets = torch.randint(0, s["v"], (s["n"],), device=device, generator=g)

    def step(fn, h, w):
        h.grad = w.grad = None
        logp, entropy = fn(h, w, targets, 1.0)
        logp.sum().backward()  # the entropy only selects tokens: forkgrpo gives it no gradient
        return logp.detach(), entropy.detach(), h.grad.clone(), w.grad.clone()

    results = {name: (timed(lambda: step(fn, hidden, weight), device, s["rounds"]), step(fn, hidden, weight))
               for name, fn in (("naive", naive), ("chunked", forkgrpo.logprobs_and_entropy))}
    # The reference: the naive computation in float32 on the same (bf16-valued) inputs.
    exact = step(naive, hidden.detach().float().requires_grad_(), weight.detach().float().requires_grad_())
    (t_n, *_, mem_n), out_n = results["naive"]
    (t_c, *_, mem_c), out_c = results["chunked"]
    err = {name: [float((a.float() - b).abs().max()) for a, b in zip(out, exact)]
           for name, out in (("chunked", out_c), ("naive", out_n))}
    scale = [float(b.abs().max()) for b in exact]
    # The chunked code must be about as close to float32 as the naive bf16 one (it keeps logits in float32).
    ok = all(c <= 2 * n + 1e-3 * sc for c, n, sc in zip(err["chunked"], err["naive"], scale))
    size = f"N={s['n']}, H={s['h']}, V={s['v']}, {str(s['dtype']).removeprefix('torch.')}"
    rows.append(("chunked vs naive: max error against float32 of logp, H, dL/dh, dL/dW", size,
                 "chunked " + " / ".join(f"{d:.1e}" for d in err["chunked"]) + "; naive "
                 + " / ".join(f"{d:.1e}" for d in err["naive"]), "ok" if ok else "FAILED"))
    memory = (f"peak {mem_c / 2**30:.2f} vs {mem_n / 2**30:.2f} GiB ({mem_c / max(mem_n, 1):.2f}x)"
              if device.type == "cuda" else "peak memory: CUDA only")
    rows.append(("chunked vs naive: forward+backward time, memory", size,
                 f"{t_c * 1e3:.1f} vs {t_n * 1e3:.1f} ms ({t_c / t_n:.2f}x); {memory}", "measured"))
    return ok


def reference_mask(entropy, valid, k):
    """The rule forking_token_mask("top") states: tau = the k-th largest valid entropy (from torch.topk),
    mask = valid & (H >= tau). Every token tied with tau is in it, so it may hold more than k."""
    tau = torch.topk(entropy[valid].float(), k).values[-1]
    return valid & (entropy.float() >= tau)


def compare_mask(entropy, valid, k, mask):
    """(same, detail): whether `mask` is the top-k threshold mask of `entropy` over `valid`. Ties cannot
    make a right mask differ: the reference keeps them too. On distinct entropies the reference is exactly
    topk's k tokens."""
    ref = reference_mask(entropy, valid, k)
    same = mask.shape == ref.shape and mask.dtype == torch.bool and torch.equal(mask, ref)
    return same, f"{int(mask.sum())} kept"


def check_mask(device, s, rows):
    g = torch.Generator(device=device).manual_seed(1)
    n, rho = s["mask_n"], 0.2
    k = -(-n // 5)  # ceil(rho n) in integers
    valid = torch.ones(1, n, dtype=torch.bool, device=device)
    # Distinct entropies: a random permutation of 0 .. n-1 over n (i / n is exact and distinct in float32 for a
    # power of two n <= 2^24; uniform draws in [0, 1) are not: float32 has 2^24 values in [0.5, 1), and they repeat).
    distinct = (torch.randperm(n, device=device, generator=g).float() / n)[None]
    # Many ties: every value n / 64 times over, in a random order. 64 tokens tie at tau, and since k is not a
    # multiple of 64 (k mod 64 = 52 at n = 2^16 and 2^24), the mask keeps 12 more than k: topk's k would differ.
    ties = ((torch.randperm(n, device=device, generator=g) // 64).float() / (n // 64))[None]
    results = [compare_mask(h, valid, k, forkgrpo.forking_token_mask(h, valid, rho)) for h in (distinct, ties)]
    same = all(ok for ok, _ in results)

    def reference():
        out = torch.zeros_like(valid)
        out[0, torch.topk(distinct[0], k).indices] = True
        return out

    t_mask, *_ = timed(lambda: forkgrpo.forking_token_mask(distinct, valid, rho), device, s["rounds"])
    t_topk, *_ = timed(reference, device, s["rounds"])
    rows.append(("forking_token_mask vs its rule, tau from torch.topk (distinct; many ties): same mask; time",
                 f"2^{int(math.log2(n))} entropies, rho 0.2",
                 f"{'equal' if same else 'DIFFERENT'}; k={k}, distinct {results[0][1]}, ties {results[1][1]}; "
                 f"{t_mask * 1e3:.1f} vs {t_topk * 1e3:.1f} ms ({t_mask / t_topk:.2f}x)", "ok" if same else "FAILED"))
    return same


def fallback_tokenizer():
    """A byte-level tokenizer that encodes any text, built here from nothing (no file, no download): token
    i is byte i for i < 256 (so encoding is the UTF-8 bytes), then "<|endoftext|>" (EOS) and "<|pad|>"."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    # The byte-level alphabet: each byte as a printable character (the bytes that are printable and not a
    # space stand for themselves; the others are moved, in order, to the characters from U+0100 on).
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    moved = [b for b in range(256) if b not in printable]
    char = {b: chr(b) for b in printable} | {b: chr(256 + i) for i, b in enumerate(moved)}
    raw = Tokenizer(models.BPE(vocab={char[b]: b for b in range(256)}, merges=[]))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.add_special_tokens(["<|endoftext|>", "<|pad|>"])
    return PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>", pad_token="<|pad|>",
                                   clean_up_tokenization_spaces=False)


def check_run(device, rows, small):
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    with tempfile.TemporaryDirectory() as tmp:
        model, out = Path(tmp) / "qwen3", Path(tmp) / "run"
        tok = AutoTokenizer.from_pretrained(forkgrpo.DEFAULT_MODEL_DIR) \
            if (forkgrpo.DEFAULT_MODEL_DIR / "config.json").is_file() else fallback_tokenizer()
        hidden = 64 if small else 128
        cfg = Qwen3Config(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=32, tie_word_embeddings=False,
                          eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, max_position_embeddings=1024)
        torch.manual_seed(0)
        Qwen3ForCausalLM(cfg).save_pretrained(model)
        tok.save_pretrained(model)
        # A random model never answers right: a stand-in reward (right on every other response) gives
        # every group a non-zero advantage, so the whole update path runs.
        stand_in = ("import sys, torch, forkgrpo; forkgrpo.correctness = lambda responses, answers, timeout: "
                    "torch.tensor([float(i % 2) for i in range(len(responses))]); forkgrpo.main(sys.argv[1:])")
        cmd = [sys.executable, "-c", stand_in, "--model", str(model), "--out-dir", str(out),
               "--rollout", "hf", "--dtype", "bfloat16", "--activation-checkpointing", "--steps", "2",
               "--template", "base", "--group-size", "4", "--prompts-per-step", "2" if small else "4",
               "--max-new-tokens", "8" if small else "16", "--overlong-cache", "4", "--eval-size", "2",
               "--eval-samples", "1", "--no-dynamic-sampling", "--lr", "1e-3", "--micro-batch-size", "4"]
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=420, cwd=ROOT,
                                  env=dict(os.environ, TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(ROOT)))
        except subprocess.TimeoutExpired as e:  # still a row in the table, not a traceback
            proc = subprocess.CompletedProcess(cmd, -9, "", f"{(e.stderr or b'').decode(errors='replace')}\n"
                                               f"timed out after {e.timeout:.0f} s")
        seconds = time.perf_counter() - start
        lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()] if (out / "metrics.jsonl").is_file() else []
    train = [m for m in lines if "loss/loss" in m]
    ok = proc.returncode == 0 and len(train) == 2 and all(
        math.isfinite(m["loss/loss"]) and math.isfinite(m["train/grad_norm"]) and m["train/grad_norm"] > 0 for m in train)
    detail = "; ".join(f"step {m['step']}: loss {m['loss/loss']:+.4f} grad norm {m['train/grad_norm']:.3f} "
                       f"H {m['entropy/mean']:.3f}" for m in train) or proc.stderr.strip()[-300:]
    rows.append(("2 forkgrpo steps: tiny Qwen3, bf16, FSDP2, activation checkpointing, --rollout hf",
                 f"{device.type}, {seconds:.0f} s", detail, "ok" if ok else "FAILED"))
    for m in lines:
        print("  metrics:", json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in m.items()
                                         if not k.startswith(("time/", "perf/"))}))
    return ok


# Check 4's sizes. "model" is a bench/memory_plan.py shape; the rows are prompts x group_size.
STEP_SIZES = {
    "cuda": dict(model=memory_plan.OTHER_MODELS["Qwen3-1.7B"], prompts=8, group_size=16, prompt_len=256, limit=4096,
                 micro_batch=8),
    "cpu": dict(model=memory_plan.Model("tiny Qwen3", hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2, head_dim=16,
                                        vocab=512, tied=True, published_b=0.0),
                prompts=2, group_size=8, prompt_len=16, limit=64, micro_batch=4),
}
# Dense bf16 tensor-core peak FLOP/s from NVIDIA's data sheets (without sparsity), by a part of the device name.
PEAK_BF16 = (("H100 PCIe", 756e12), ("H100", 989.4e12), ("H200", 989.4e12), ("H800", 989.4e12), ("A100", 312e12))


def peak_flops(name):
    return next((flops for part, flops in PEAK_BF16 if part in name), None)


def model_flops(m, lengths, response_tokens, selected_tokens):
    """FLOPs of one scoring pass and one update over the real tokens of rows of `lengths` (padding not counted):

        10 x P_layers x tokens            decoder layers: scoring forward 2, update forward 2, its recompute
                                          under activation checkpointing 2, backward 4 (per parameter and token)
      + 10 x L x heads x head_dim x sum(T_i^2)   causal attention, 2 x q x T^2 per layer and forward, same 5 passes
      + 2 x V x H x response tokens       the scoring pass's LM head (every response token)
      + 6 x V x H x selected tokens       the update's LM head (only the forking tokens), forward and backward

    MFU is this over the elapsed time and the GPU's peak dense bf16 FLOP/s. The recompute is counted (it is
    work the GPU must do at these lengths), the padding is not (it is what a token budget saves).
    """
    q = m.heads * m.head_dim
    return (10 * m.layers * memory_plan.layer_params(m) * sum(lengths) + 10 * m.layers * q * sum(t * t for t in lengths)
            + 2 * m.vocab * m.hidden * response_tokens + 6 * m.vocab * m.hidden * selected_tokens)


def step_workload(s, seed=0):
    """PromptGroups of random token ids: a prompt of s["prompt_len"] tokens and long-tailed responses, one
    group's answers alternately right and wrong (so that every group has a non-zero advantage)."""
    g = torch.Generator().manual_seed(seed)
    rng, groups = __import__("random").Random(seed), []
    for _ in range(s["prompts"]):
        lengths = memory_plan.long_tailed_lengths(s["group_size"], s["limit"], rng)
        groups.append(forkgrpo.PromptGroup(
            torch.randint(0, s["model"].vocab, (s["prompt_len"],), generator=g).tolist(),
            [torch.randint(0, s["model"].vocab, (n,), generator=g).tolist() for n in lengths], None,
            torch.tensor([1.0, -1.0] * (s["group_size"] // 2))))
    longest = max(len(r) for grp in groups for r in grp.responses)
    groups[0].responses[0] = groups[0].responses[0] + [0] * (s["limit"] - longest)  # one row at the limit: the worst case
    return groups


def planned(s, budget):
    """bench/memory_plan.py's per-GPU prediction for exactly these settings at W = 1, without the CUDA context
    and NCCL (which torch.cuda.max_memory_allocated does not count): (scoring peak, update or optimizer peak)."""
    settings = memory_plan.Settings(
        group_size=s["group_size"], prompts_per_step=s["prompts"], max_new_tokens=s["limit"], max_prompt_len=s["prompt_len"],
        micro_batch_size=s["micro_batch"], micro_batch_tokens=budget, mini_batches=2, gpus_per_node=1,
        context_gib=0.0, nccl_gib=0.0)
    p = memory_plan.plan(s["model"], "H100-80GB", 1, settings, 1)
    return p["score_peak"], max(p["update_peak"], p["optim_peak"])


def build_step_policy(m, device, max_len):
    """A random-weight Qwen3 of shape m as forkgrpo trains it: float32 master weights built on `device`,
    activation checkpointing as load_policy enables it, FSDP2 in bf16 through forkgrpo.shard, AdamW as main() makes it."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = Qwen3Config(vocab_size=m.vocab, hidden_size=m.hidden, intermediate_size=m.intermediate, num_hidden_layers=m.layers,
                      num_attention_heads=m.heads, num_key_value_heads=m.kv_heads, head_dim=m.head_dim,
                      tie_word_embeddings=m.tied, max_position_embeddings=max_len, use_cache=False)
    torch.manual_seed(0)
    with torch.device(device):  # initialised where they will live
        lm = Qwen3ForCausalLM(cfg)
    lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    policy = forkgrpo.shard(forkgrpo.Policy(lm, activation_checkpointing=True), device, torch.bfloat16)
    return policy, torch.optim.AdamW(policy.parameters(), lr=1e-6, weight_decay=0.1), lm.config._attn_implementation


def scoring_and_update(policy, optimizer, batch, config, device):
    """One scoring pass and one update as main() runs them: (seconds, scoring peak, update peak, update metrics);
    the peaks are torch.cuda.max_memory_allocated (everything allocated, resident state included), None on CPU."""
    cuda = device.type == "cuda"
    peaks = []
    sync(device)
    start = time.perf_counter()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    scored, _ = forkgrpo.old_logprobs_and_entropies(policy, batch, config, None)
    sync(device)
    if cuda:
        peaks.append(torch.cuda.max_memory_allocated())
        torch.cuda.reset_peak_memory_stats()
    metrics, _ = forkgrpo.update_policy(config, policy, optimizer, scored, 0, 0, 1, None)
    sync(device)
    if cuda:
        peaks.append(torch.cuda.max_memory_allocated())
    return time.perf_counter() - start, *(peaks or [None, None]), metrics


def check_step(device, rows, small):
    """Check 4: forkgrpo's scoring pass and update at a real shape, fixed micro-batches and a token budget."""
    s = STEP_SIZES["cpu" if small else "cuda"]
    m, cuda = s["model"], device.type == "cuda"
    if cuda:  # init_process_group (in shard) takes only an indexed device
        device = torch.device("cuda", torch.cuda.current_device())
    start = time.perf_counter()
    policy, optimizer, attention = build_step_policy(m, device, s["prompt_len"] + s["limit"])
    params = sum(p.numel() for p in policy.parameters())
    print(f"  check 4: {m.name}, {params:,} parameters ({memory_plan.total_params(m):,} in the plan), attention "
          f"{attention}, built and sharded in {time.perf_counter() - start:.0f} s", flush=True)
    batch = forkgrpo.make_batch(step_workload(s), 0, device, s["group_size"], True)
    lengths, response_tokens = batch.lengths, int(batch.response_mask.sum())
    budget = s["micro_batch"] * (s["prompt_len"] + s["limit"])  # the fixed rule's worst micro-batch, in padded tokens
    base = dict(group_size=s["group_size"], mini_batches=2, temperature=1.0, lr=1e-6, seed=0, micro_batch_size=s["micro_batch"])
    scoring_and_update(policy, optimizer, batch, forkgrpo.Config(**base), device)  # warm-up: kernels, allocator, AdamW moments
    peak = peak_flops(torch.cuda.get_device_name(device)) if cuda else None
    ok = True
    for tokens in (0, budget):
        parts = forkgrpo.micro_batches(lengths, s["micro_batch"], tokens)
        seconds, score_peak, update_peak, metrics = scoring_and_update(
            policy, optimizer, batch, forkgrpo.Config(**base, micro_batch_tokens=tokens), device)
        flops = model_flops(m, lengths, response_tokens, metrics["fork/frac_selected"] * metrics["train/tokens"])
        plan_score, plan_update = planned(s, tokens)
        finite = math.isfinite(metrics["loss/loss"]) and math.isfinite(metrics["train/grad_norm"])
        ok &= finite
        memory = (f"peak scoring {score_peak / 2**30:.2f} / update {update_peak / 2**30:.2f} GiB, plan "
                  f"{plan_score / 2**30:.2f} / {plan_update / 2**30:.2f}" if cuda else
                  f"peak n/a on CPU, plan scoring {plan_score / 2**20:.1f} / update {plan_update / 2**20:.1f} MiB")
        mfu = f"MFU {flops / seconds / peak:.1%}" if peak else f"{flops / seconds / 1e9:.2f} GFLOP/s (MFU n/a: peak unknown)"
        rule = f"--micro-batch-tokens {tokens:,}" if tokens else f"{s['micro_batch']} rows per micro-batch"
        rows.append((f"forkgrpo scoring pass + update (2 AdamW steps), {rule}",
                     f"{m.name} shape, {len(lengths)} rows, {sum(lengths):,} tokens, {len(parts)} micro-batches, "
                     f"{sum(len(p) * max(lengths[i] for i in p) for p in parts):,} padded",
                     f"{memory}; {seconds:.2f} s, {sum(lengths) / seconds:,.0f} tokens/s, {mfu}; "
                     f"loss {metrics['loss/loss']:+.4f}, grad norm {metrics['train/grad_norm']:.3f}", "ok" if finite else "FAILED"))
    rows.append(("MFU formula (model_flops)", "per scoring pass + update, real tokens only",
                 "(10 x P_layers x tokens + 10 x L x heads x head_dim x sum T_i^2 + 2 x V x H x response tokens "
                 "+ 6 x V x H x selected tokens) / seconds / peak dense bf16 FLOP/s", "formula"))
    del policy, optimizer, batch
    forkgrpo.teardown_distributed()  # shard() made a one-process group
    if cuda:
        torch.cuda.empty_cache()
    return ok


def guarded(name, check, rows):
    """check()'s verdict, or False and a FAILED row with the error if it raised (an out-of-memory error, an API
    that moved): a machine lent for minutes still prints the other checks' table."""
    try:
        return check()
    except Exception as e:  # noqa: BLE001 -- reported in the table and on stderr, never swallowed
        traceback.print_exc()
        rows.append((name, "raised", f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}", "FAILED"))
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        return False


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu", action="store_true", help="small sizes on CPU (no GPU needed)")
    args = ap.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        raise SystemExit("gpu_check.py: no CUDA GPU here; run with --cpu for the small CPU version")
    device = torch.device("cpu" if args.cpu else "cuda")
    s = SIZES[device.type]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    import transformers
    print(f"gpu_check on {name}: torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{torch.get_num_threads()} CPU threads\n", flush=True)
    rows, start = [], time.perf_counter()
    checks = [("1. chunked log-probs", lambda: check_logprobs(device, s, rows)), ("2. forking mask", lambda: check_mask(device, s, rows)),
              ("3. forkgrpo steps", lambda: check_run(device, rows, args.cpu)),
              ("4. scoring pass and update", lambda: check_step(device, rows, args.cpu))]
    results = []
    for name, check in checks:
        results.append(guarded(name, check, rows))
        print(f"  {name}: done at {time.perf_counter() - start:.0f} s", flush=True)
    print("\n| check | size | result | verdict |\n|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(x.replace("|", "/") for x in r) + " |")
    if not all(results):
        raise SystemExit("gpu_check.py: a check FAILED (table above)")


if __name__ == "__main__":
    main()
