"""Rollout speed: transformers `generate` against the vLLM engine on the default model, in one run.

Both sample the same workload, 8 prompts x 4 responses x up to 64 new tokens at temperature 1.0 (top-p 1),
from the embedded default model (SmolLM2-135M-Instruct, float32). The table shows wall time, responses
per second and generated tokens per second of each, and vLLM's ratio over transformers. Then, with the
vLLM engine, the weight-sync time per step (all parameters pushed, as after an optimizer step) and the
rollout/trainer mismatch after a sync: mean and max |logp_vLLM - logp_trainer| over sampled tokens.

Both sides use the same number of threads (--threads, default 1): creating the vLLM engine sets torch's
thread count for the whole process to 1 unless OMP_NUM_THREADS is set, and on a machine shared with other
jobs one thread per process is faster than threads that spin waiting for a busy core. On an idle machine
pass --threads equal to the core count. Each side does one untimed warm-up call, then --rounds timed
calls, alternating between the two sides so that a change in the machine's load hits both alike; the
table shows the median and the range of the rounds.

    .venv/bin/python bench/rollout.py
    .venv/bin/python bench/rollout.py --rounds 3 --max-tokens 128
"""

import os

# Set before torch is imported: vLLM's sampler compiles a helper with inductor on first use otherwise.
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from forkgrpo import VLLMRollout  # noqa: E402

QUESTIONS = [
    "What is 7 + 5?",
    "Tom has 3 apples and buys 4 more. How many apples does he have?",
    "What is 12 times 3?",
    "A box holds 9 pens. How many pens are in 4 boxes?",
    "What is 100 minus 37?",
    "Sara reads 15 pages a day. How many pages does she read in 6 days?",
    "What is 81 divided by 9?",
    "A train travels 60 km per hour for 3 hours. How far does it go?",
]


def hf_rollout(model, tok, prompts, n, max_tokens, temperature):
    """Sample n responses per prompt with transformers `generate`; return the generated token counts."""
    batch = [p for p in prompts for _ in range(n)]
    width = max(len(p) for p in batch)
    pad = tok.pad_token_id
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch])  # left padding
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch])
    with torch.no_grad():
        out = model.generate(
            input_ids=ids, attention_mask=mask, do_sample=True, temperature=temperature, top_p=1.0,
            top_k=0, max_new_tokens=max_tokens, eos_token_id=tok.eos_token_id, pad_token_id=pad,
        )
    lengths = []
    for row in out[:, width:].tolist():
        lengths.append(row.index(tok.eos_token_id) + 1 if tok.eos_token_id in row else len(row))
    return lengths


def sample(engine, prompts, args, seed):
    """(ids, logps) per response from the engine, each prompt seeded from `seed`."""
    responses, logps = engine.generate(prompts, n=args.n, temperature=args.temperature, top_p=1.0,
                                       max_tokens=args.max_tokens, seeds=[seed * 1000 + i for i in range(len(prompts))])
    return list(zip(responses, logps))


def timed_alternately(fns, rounds):
    """Wall times of `rounds` calls of each function, after one warm-up call of each, alternating
    between the functions within every round; returns (times per function, last results)."""
    results = [fn() for fn in fns]  # warm-up
    times = [[] for _ in fns]
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            results[i] = fn()
            times[i].append(time.perf_counter() - start)
    return times, results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / ".cache" / "SmolLM2-135M-Instruct"))
    parser.add_argument("--n", type=int, default=4, help="responses per prompt")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=5, help="timed calls per side (median and range shown)")
    parser.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads for both sides")
    args = parser.parse_args()
    load = os.getloadavg()
    # vLLM keeps torch's thread count only when OMP_NUM_THREADS is set; it reads it at engine start.
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    prompts = [
        tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, return_dict=True)[
            "input_ids"
        ]
        for q in QUESTIONS
    ]
    responses = len(prompts) * args.n
    hf_threads = torch.get_num_threads()
    torch.manual_seed(0)
    start = time.perf_counter()
    engine = VLLMRollout(args.model, seed=0, max_model_len=512, eos_token_ids=[tok.eos_token_id],
                         kv_cache_bytes=256 * 2**20)
    startup_s = time.perf_counter() - start
    try:
        seeds = iter(range(10**6))
        (hf_times, vllm_times), (hf_lengths, results) = timed_alternately(
            [lambda: hf_rollout(model, tok, prompts, args.n, args.max_tokens, args.temperature),
             lambda: sample(engine, prompts, args, next(seeds))], args.rounds)
        hf_s, vllm_s = statistics.median(hf_times), statistics.median(vllm_times)
        vllm_lengths = [len(ids) for ids, _ in results]

        # Weight sync after a (simulated) optimizer step, then the mismatch on fresh samples.
        sync_times = []
        for _ in range(3):
            with torch.no_grad():
                for p in model.parameters():
                    p.mul_(1 + 1e-3 * torch.randn_like(p))
            sync_times.append(engine.sync_weights((name, p.detach()) for name, p in model.named_parameters()))
        results = sample(engine, prompts, args, 1)
        diffs = []
        for k, (ids, logps) in enumerate(results):
            full = torch.tensor([prompts[k // args.n] + ids])
            with torch.no_grad():
                logits = model(full).logits[0, len(prompts[k // args.n]) - 1 : -1] / args.temperature
            expected = logits.log_softmax(-1).gather(-1, torch.tensor(ids)[:, None])[:, 0]
            diffs.append((torch.tensor(logps) - expected).abs())
        diffs = torch.cat(diffs)
    finally:
        engine.close()

    rows = [
        ("transformers generate", hf_times, sum(hf_lengths)),
        ("vLLM (VLLMRollout)", vllm_times, sum(vllm_lengths)),
    ]
    print(f"\n{len(prompts)} prompts x {args.n} responses x <= {args.max_tokens} new tokens, T={args.temperature}, "
          f"float32, torch threads {hf_threads} (both); median [min, max] of {args.rounds} alternating timed "
          f"call(s) per side; tokens: the last call's; load average before {load[0]:.2f}\n")
    print(f"| {'rollout':<22} | {'seconds':>20} | {'responses/s':>11} | {'tokens':>6} | {'tokens/s':>8} |")
    print(f"|{'-' * 24}|{'-' * 22}|{'-' * 13}|{'-' * 8}|{'-' * 10}|")
    for name, times, tokens in rows:
        seconds = statistics.median(times)
        spread = f"{seconds:.2f} [{min(times):.2f}, {max(times):.2f}]"
        print(f"| {name:<22} | {spread:>20} | {responses / seconds:>11.2f} | {tokens:>6} | {tokens / seconds:>8.1f} |")
    print(f"\nvLLM / transformers: {hf_s / vllm_s:.2f}x responses/s, "
          f"{(sum(vllm_lengths) / vllm_s) / (sum(hf_lengths) / hf_s):.2f}x tokens/s")
    print(f"vLLM engine start-up: {startup_s:.1f} s")
    print(f"weight sync per step (all {sum(1 for _ in model.parameters())} tensors): "
          f"{', '.join(f'{t:.2f}' for t in sync_times)} s (median {statistics.median(sync_times):.2f} s)")
    print(f"mismatch after sync over {diffs.numel()} sampled tokens: mean |dlogp| {diffs.mean():.2e}, "
          f"max {diffs.max():.2e}")


if __name__ == "__main__":
    main()
