"""Peak memory and time of logprobs_and_entropy against the naive full-logits computation.

Forward + backward at N = 4096 tokens, V = 49,152, H = 576 (the default model's sizes),
float32 on CPU. Each variant runs in its own subprocess, so one variant's allocator
state cannot hide another's peak.

Memory: peak resident set size (VmHWM in /proc/self/status) during the timed
forward + backward passes, minus the resident size after set-up (inputs allocated and
touched, one warm-up pass done, VmHWM reset through /proc/self/clear_refs). It counts
everything the pass allocates, including grad_weight (V x H float32, 113 MB) and
grad_hidden, which both variants need.
Time: wall time of one forward + backward pass after the warm-up; variants run in
turn for --rounds rounds and the table shows each one's median, so that load from
other processes on a shared machine falls on all variants alike.

    .venv/bin/python bench/entropy_memory.py            # the table of docs/benchmarks.md
    .venv/bin/python bench/entropy_memory.py --chunks 256 512 1024 2048 --rounds 5
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak():
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def run_variant(variant, n, v, h, temperature, repeats):
    """Measure one variant in this process; print one JSON line."""
    import torch

    sys.path.insert(0, ROOT)
    from forkgrpo import logprobs_and_entropy, token_entropy

    torch.manual_seed(0)
    hidden = torch.randn(n, h).requires_grad_()
    weight = (torch.randn(v, h) / h**0.5).requires_grad_()
    targets = torch.randint(v, (n,))
    upstream = torch.randn(n)

    if variant == "naive":
        def step():
            logits = hidden @ weight.T / temperature  # (N, V)
            logp = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1)
            entropy = token_entropy(logits.detach())  # (N,)
            (logp * upstream).sum().backward()
            return entropy
    else:
        chunk = int(variant.split("=")[1])

        def step():
            logp, entropy = logprobs_and_entropy(hidden, weight, targets, temperature, chunk)
            (logp * upstream).sum().backward()
            return entropy

    step()  # warm-up: allocates .grad, so both variants start from the same state
    base = _status_kib("VmRSS")
    _reset_peak()
    times = []
    for _ in range(repeats):
        hidden.grad.zero_()
        weight.grad.zero_()
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    peak = _status_kib("VmHWM")
    print(json.dumps({
        "variant": variant,
        "peak_mib": (peak - base) / 1024,
        "time_s": statistics.median(times),
        "times": times,
        "threads": torch.get_num_threads(),
    }))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--vocab", type=int, default=49152)
    parser.add_argument("--hidden", type=int, default=576)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=1, help="timed passes per process")
    parser.add_argument("--rounds", type=int, default=3, help="processes per variant")
    parser.add_argument("--chunks", type=int, nargs="+", default=[2048, 1024, 512, 256])
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: run one variant
    args = parser.parse_args()
    if args.variant:
        run_variant(args.variant, args.n, args.vocab, args.hidden, args.temperature, args.repeats)
        return

    variants = ["naive"] + [f"chunked={c}" for c in args.chunks]
    runs = {name: [] for name in variants}
    for _ in range(args.rounds):
        for variant in variants:
            cmd = [sys.executable, __file__, "--variant", variant, "--n", str(args.n),
                   "--vocab", str(args.vocab), "--hidden", str(args.hidden),
                   "--temperature", str(args.temperature), "--repeats", str(args.repeats)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            runs[variant].append(json.loads(out.strip().splitlines()[-1]))
            print(f"  {runs[variant][-1]}", file=sys.stderr, flush=True)
    rows = [
        {
            "variant": name,
            "peak_mib": max(r["peak_mib"] for r in runs[name]),
            "time_s": statistics.median(t for r in runs[name] for t in r["times"]),
            "threads": runs[name][0]["threads"],
        }
        for name in variants
    ]
    naive = rows[0]
    print(f"N={args.n} V={args.vocab} H={args.hidden} float32 CPU, "
          f"{naive['threads']} threads, median of {args.rounds} x {args.repeats} runs, "
          f"peak RSS above set-up (max over runs)")
    print(f"| variant | peak MiB | x naive | time s | x naive |")
    print(f"|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['variant']} | {r['peak_mib']:.0f} | {r['peak_mib'] / naive['peak_mib']:.3f} "
              f"| {r['time_s']:.2f} | {r['time_s'] / naive['time_s']:.2f} |")


if __name__ == "__main__":
    main()
