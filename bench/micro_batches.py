"""Benchmark: micro-batches of a fixed number of rows (--micro-batch-size) against micro-batches packed
by a token budget (--micro-batch-tokens), in the scoring pass and one update_policy call, on
long-tailed response lengths, on CPU.

    .venv/bin/python bench/micro_batches.py                 # 64 responses up to 1,024 tokens, 5 rounds
    .venv/bin/python bench/micro_batches.py --limit 64 --responses 16 --layers 1 --hidden 64 --rounds 1   # a smoke run

The model: a randomly initialised Qwen3 built in code (4 layers, hidden 256, 4 heads of 64, 2 KV heads,
MLP 768, vocabulary 2,048, untied head: the LM head is about 14% of its multiply-adds per token, more
than Qwen3-8B's 8%; padding costs only in the layers, so a larger head share makes the gain smaller),
float32; --model default or a folder loads a real one instead. Random tokens: the cost does not depend
on their content.

The lengths: the shape the issue gives for the paper's responses. Response lengths are the quantiles
(i + 0.5) / n of a log-normal with median limit / 4, capped at the limit, with the spread set so that a
tenth of it lies at or beyond the limit (sigma = ln 4 / z_0.9 = 1.08); shuffled, in groups of
--group-size after prompts of --prompt-len tokens. The budget: --micro-batch-size x the longest row,
the fixed rule's worst case, so that no micro-batch of the token rule holds more padded tokens than the
fixed rule's largest one can.

Per rule: padded tokens (rows x width of every forward, counted on the policy, scoring and update),
peak memory, and seconds for scoring + update. Memory is the peak resident set (VmHWM) above the
resident set after set-up, in a fresh process per rule that runs one round with no warm-up: torch's
CPU tensors come from malloc, which tracemalloc does not see, and freed memory that malloc keeps would
hide a later round's peak in the same process; the resident set counts everything the round touches
(activations, gradients, oneDNN scratch). Time: the first round of each rule is the warm-up (it also
checks the gradients), then --rounds rounds that alternate the rules' order; each round restores the
initial weights and a new AdamW. Checks that both rules give the same scoring outputs and, from one
scored batch and the same weights, the same loss and gradient. Prints a markdown table.
"""

import argparse
import json
import math
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import forkgrpo  # noqa: E402


def long_tailed_lengths(n, limit, seed):
    """n response lengths in [1, limit]: median limit / 4, a tenth at the limit, shuffled."""
    normal = statistics.NormalDist()
    sigma = math.log(4) / normal.inv_cdf(0.9)  # limit = median x 4 is then the 90th percentile
    lengths = [min(limit, max(1, round(limit / 4 * math.exp(sigma * normal.inv_cdf((i + 0.5) / n))))) for i in range(n)]
    random.Random(seed).shuffle(lengths)
    return lengths


def build(args):
    """(policy, unscored batch, initial weights): the model, and groups of random prompts and responses."""
    from transformers import AutoModelForCausalLM, Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    if args.model == "random":
        lm = Qwen3ForCausalLM(Qwen3Config(
            vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=3 * args.hidden, num_hidden_layers=args.layers,
            num_attention_heads=max(1, args.hidden // 64), num_key_value_heads=max(1, args.hidden // 128), head_dim=64,
            max_position_embeddings=args.prompt_len + args.limit, tie_word_embeddings=False))
    else:
        lm = AutoModelForCausalLM.from_pretrained(forkgrpo.resolve_model(args.model), dtype=torch.float32)
    g, vocab, G = torch.Generator().manual_seed(0), lm.config.vocab_size, args.group_size
    lengths = long_tailed_lengths(args.responses, args.limit, seed=0)
    groups = [forkgrpo.PromptGroup(torch.randint(0, vocab, (args.prompt_len,), generator=g).tolist(),
                                   [torch.randint(0, vocab, (n,), generator=g).tolist() for n in lengths[i:i + G]],
                                   None, (torch.arange(G) % 2).float())  # half right: every advantage non-zero
              for i in range(0, len(lengths), G)]
    batch = forkgrpo.make_batch(groups, 0, torch.device("cpu"), G, True)
    return forkgrpo.Policy(lm), batch, {k: v.clone() for k, v in lm.state_dict().items()}


def rules(args, batch):
    """{rule name: Config}: the fixed rule, and the token budget (--micro-batch-tokens, else size x the longest row)."""
    budget = args.micro_batch_tokens or args.micro_batch_size * max(batch.lengths)
    common = dict(micro_batch_size=args.micro_batch_size, temperature=1.0, group_size=args.group_size, mini_batches=1,
                  grad_clip=0.0)  # no clipping: the check compares raw gradients; clipping would cost both rules alike
    return {f"fixed, {args.micro_batch_size} rows": forkgrpo.Config(**common),
            f"token budget, {budget:,} tokens": forkgrpo.Config(**common, micro_batch_tokens=budget)}


class KeepGradient(torch.optim.AdamW):
    """AdamW that keeps a copy of the gradient update_policy gives it (a round with it is a full warm-up round:
    AdamW's first step in a process costs seconds of one-time set-up)."""

    def step(self, closure=None):
        self.grads = [p.grad.clone() for p in self.param_groups[0]["params"]]
        return super().step(closure)


def one_round(policy, batch, cfg, initial, optimizer=None, scored=None):
    """Scoring pass + one update_policy from the initial weights; (scored batch, update metrics, seconds, optimizer)."""
    policy.lm.load_state_dict(initial)
    optimizer = optimizer or torch.optim.AdamW(policy.parameters(), lr=cfg.lr)
    start = time.perf_counter()
    own, score_metrics = forkgrpo.old_logprobs_and_entropies(policy, batch, cfg, None)
    metrics, _ = forkgrpo.update_policy(cfg, policy, optimizer, scored or own, 0, 0, 1, None)
    return own, {**score_metrics, **metrics}, time.perf_counter() - start, optimizer


def check_same_update(policy, batch, configs, initial):
    """The rules' first rounds (the warm-up): the same scoring outputs; from the first rule's scored batch, the
    same loss and gradient. Returns (passed, a line saying so)."""
    runs, scored = [], None
    for cfg in configs.values():
        own, metrics, _, opt = one_round(policy, batch, cfg, initial, KeepGradient(policy.parameters(), lr=cfg.lr), scored)
        scored = scored or own
        runs.append((own, metrics["loss/loss"], opt.grads))
    (a, loss_a, grad_a), (b, loss_b, grad_b) = runs
    valid = batch.response_mask
    score = max(float((a.old_logp - b.old_logp)[valid].abs().max()), float((a.entropy - b.entropy)[valid].abs().max()))
    grad = max(float((x - y).abs().max() / y.abs().max().clamp_min(1e-30)) for x, y in zip(grad_a, grad_b))
    loss = abs(loss_a - loss_b)
    passed = score <= 1e-4 and loss <= 1e-6 and grad <= 1e-4
    return passed, (f"same update: {'yes' if passed else 'NO'} (scoring: log-probs and entropies differ by at most "
                    f"{score:.1e}; from one scored batch and the same weights, loss/loss {loss_a:+.6f} vs {loss_b:+.6f}, "
                    f"differs by {loss:.1e}; gradient differs by at most {grad:.1e} of each tensor's largest entry; "
                    "tolerances 1e-4, 1e-6, 1e-4)")


def count_forwards(policy):
    """A dict that counts the policy's forwards and the padded tokens (rows x width) they process."""
    seen = {"forwards": 0, "tokens": 0}

    def hook(module, args):
        seen["forwards"] += 1
        seen["tokens"] += args[0].numel()
    policy.register_forward_pre_hook(hook)
    return seen


def status_kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def measure_memory(args):
    """In this fresh process: one round of rule --memory-of; prints {"peak_mib": peak RSS above set-up}."""
    policy, batch, initial = build(args)
    cfg = list(rules(args, batch).values())[args.memory_of]
    # One-time costs out of the measurement (lazy imports, kernel caches): a forward and backward of two tokens,
    # and an AdamW step of one number; then the weights a round starts from.
    logp, _ = policy(batch.input_ids[:1, :2], batch.response_mask[:1, :1] | True)
    logp.sum().backward()
    x = torch.zeros(1, requires_grad=True)
    x.grad = torch.ones(1)
    torch.optim.AdamW([x]).step()
    policy.zero_grad(set_to_none=True)
    policy.lm.load_state_dict(initial)
    base = status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:  # Linux >= 4.0: VmHWM restarts from the current resident set
        f.write("5")
    one_round(policy, batch, cfg, initial)
    print(json.dumps({"peak_mib": (status_kib("VmHWM") - base) / 1024, "setup_mib": base / 1024}))


def memory_in_fresh_process(index):
    """Peak MiB above set-up of rule `index`, measured by this script in a new process with the same arguments."""
    out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--memory-of", str(index)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="random", help='"random" (a Qwen3 of the shape below), "default" or a model folder')
    ap.add_argument("--layers", type=int, default=4, help="layers of the random model")
    ap.add_argument("--hidden", type=int, default=256, help="hidden size of the random model (heads of 64, MLP 3x)")
    ap.add_argument("--vocab", type=int, default=2048, help="vocabulary of the random model")
    ap.add_argument("--limit", type=int, default=1024, help="the response-length limit (--max-new-tokens)")
    ap.add_argument("--responses", type=int, default=64, help="responses in the batch (one mini-batch)")
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--micro-batch-size", type=int, default=8, help="rows per micro-batch of the fixed rule")
    ap.add_argument("--micro-batch-tokens", type=int, default=0, help="the budget; 0: micro-batch size x the longest row")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per rule, after one warm-up round")
    ap.add_argument("--threads", type=int, default=0, help="torch threads; 0: torch's default")
    ap.add_argument("--memory-of", type=int, default=-1, help=argparse.SUPPRESS)  # the child that measures memory
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_of >= 0:
        return measure_memory(args)
    start = time.perf_counter()
    policy, batch, initial = build(args)
    configs = rules(args, batch)
    passed, check = check_same_update(policy, batch, configs, initial)
    seen, times, work = count_forwards(policy), {name: [] for name in configs}, {}
    for r in range(args.rounds):
        for name in (list(configs) if r % 2 == 0 else list(configs)[::-1]):  # alternate which rule goes first
            before = dict(seen)
            _, metrics, seconds, _ = one_round(policy, batch, configs[name], initial)
            times[name].append((seconds, metrics["time/score"], metrics["time/update"]))
            work[name] = {k: seen[k] - before[k] for k in seen}
    memory = {name: memory_in_fresh_process(i) for i, name in enumerate(configs)}
    report(args, batch, configs, times, work, memory, check, time.perf_counter() - start)
    return 0 if passed else 1


def report(args, batch, configs, times, work, memory, check, seconds):
    """Print the set-up, the table with the ratios token budget / fixed, the goal and the check."""
    responses = [n - args.prompt_len for n in batch.lengths]
    model = f"random Qwen3 ({args.layers} layers, hidden {args.hidden}, vocab {args.vocab})" if args.model == "random" else args.model
    print(f"scoring pass + one update_policy (one mini-batch), {len(responses)} responses in groups of {args.group_size} "
          f"after {args.prompt_len}-token prompts; response lengths: limit {args.limit}, median "
          f"{statistics.median(responses):g}, mean {statistics.mean(responses):.0f}, "
          f"{sum(n == args.limit for n in responses) / len(responses):.1%} at the limit; model {model}, float32, "
          f"{torch.get_num_threads()} threads; {args.rounds} timed rounds per rule after a warm-up\n")
    real = 2 * sum(batch.lengths)  # tokens without padding: scoring and update each see every row once
    col = {name: {"forwards": work[name]["forwards"], "tokens": work[name]["tokens"], "peak": memory[name]["peak_mib"],
                  **{k: statistics.median(t[i] for t in times[name]) for i, k in enumerate(("total", "score", "update"))}}
           for name in configs}
    print("| rule | forwards (scoring + update) | padded tokens (scoring + update) | padding | peak MiB above set-up "
          "| scoring s, median | update s, median | scoring + update s, median [min, max] |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, c in col.items():
        total = [t[0] for t in times[name]]
        print(f"| {name} | {c['forwards']} | {c['tokens']:,} | {1 - real / c['tokens']:.0%} | {c['peak']:.0f} "
              f"| {c['score']:.2f} | {c['update']:.2f} | {c['total']:.2f} [{min(total):.2f}, {max(total):.2f}] |")
    fixed, tokens = col.values()
    r = {k: tokens[k] / fixed[k] for k in fixed}
    print(f"| ratio token budget / fixed | {r['forwards']:.2f} | {r['tokens']:.2f} | | {r['peak']:.2f} | {r['score']:.2f} "
          f"| {r['update']:.2f} | {r['total']:.2f} |")
    met = r["total"] <= 1 / 1.5 and r["peak"] <= 1.0
    print(f"\nscoring + update: the token budget is {1 / r['total']:.2f}x as fast as the fixed rule (medians), at "
          f"{r['peak']:.2f}x its peak memory; goal (at least 1.5x as fast at no higher peak): {'met' if met else 'not met'}")
    print(f"resident set after set-up: {memory[list(configs)[0]]['setup_mib']:.0f} MiB; {check}")
    print(f"\nwall time {seconds:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
