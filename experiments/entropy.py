"""Entropy report: how token entropy is spread over a model's chains of thought, and which tokens fork.

    python experiments/entropy.py --out runs/entropy                       # the embedded model, built-in problems
    python experiments/entropy.py --model M --data dapo.parquet --n-prompts 64 --samples 8 \\
        --temperature 1.0 --max-new-tokens 2048 --out runs/entropy-M

The analyses of Wang et al., arXiv 2506.01939 v2, Sec. 3 (Fig. 2a, 2b/c, 12-17), on any model:
K responses per prompt at temperature T, sampled with the trainer's prompt templates and rollout
engine, then every response token's entropy H_t of softmax(z_t / T) from forkgrpo's scoring pass
(forkgrpo.old_logprobs_and_entropies, which calls forkgrpo.logprobs_and_entropy). Writes into --out:

  tokens.jsonl      one line per response: prompt_index, prompt_ids, response_ids, tokens (each
                    response token decoded alone), entropy (one float per response token)
  summary.json      n_tokens, mean, frac_below_0.01, p50, p80, p95 (exact, as the trainer's
                    entropy/pq: pq is the ceil((1 - q/100) N)-th largest entropy, so p80 is the tau
                    of the forking mask at rho = 0.2), temperature, model, and how it was made
  top_tokens.md     the tokens with the highest and lowest mean entropy among those seen at least
                    --min-count times, with counts (Fig. 2b/c)
  entropy_hist.png  the histogram of token entropies, counts on a log scale (Fig. 2a)
  examples.html     a few responses, every token coloured by its entropy, the forking tokens (the
                    top rho of all tokens) boxed; model text is HTML-escaped
  example.png       the first of them as a picture
"""

import argparse
import collections
import html
import json
import math
import statistics
import subprocess
import sys
import typing
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import forkgrpo  # noqa: E402

QUANTILES = (50, 80, 95)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default", help="a transformers folder or hub id; default: the embedded model")
    ap.add_argument("--out", required=True, type=Path, help="the folder to write")
    ap.add_argument("--data", default="", help="prompts from a .jsonl/.parquet file (the trainer's layout); "
                    "default: the trainer's built-in held-out problems")
    ap.add_argument("--prompt-key", default=forkgrpo.Config.prompt_key)
    ap.add_argument("--answer-key", default=forkgrpo.Config.answer_key)
    ap.add_argument("--template", default="auto", choices=typing.get_args(forkgrpo.Config.__annotations__["template"]))
    ap.add_argument("--n-prompts", type=int, default=32)
    ap.add_argument("--samples", type=int, default=4, help="K responses per prompt")
    ap.add_argument("--temperature", type=float, default=forkgrpo.Config.temperature,
                    help="T of sampling and of the entropies (the trainer's default; the paper: 1.0)")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rollout", default="auto", choices=typing.get_args(forkgrpo.Config.__annotations__["rollout"]))
    ap.add_argument("--min-count", type=int, default=20, help="top_tokens.md: tokens seen at least this often")
    ap.add_argument("--rho", type=float, default=0.2, help="the forking tokens marked in examples.html")
    ap.add_argument("--examples", type=int, default=4, help="responses shown in examples.html")
    ap.add_argument("--micro-batch-size", type=int, default=8)
    args = ap.parse_args(argv)
    for name in ("n_prompts", "samples", "max_new_tokens", "min_count", "micro_batch_size"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.temperature <= 0:
        ap.error("--temperature must be positive (the entropy of softmax(z / T))")
    return args


def commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# --- sampling and scoring ---------------------------------------------------------------------


def prompts(args, tokenizer):
    """(prompt ids, gold answer) of the first --n-prompts problems, encoded as the trainer does."""
    cfg = forkgrpo.Config(data=args.data, eval_size=args.n_prompts, prompt_key=args.prompt_key,
                          answer_key=args.answer_key)
    train, held_out, _ = forkgrpo.load_datasets(cfg)
    problems = (held_out[0][1] if held_out else train)[: args.n_prompts]
    encoded, _ = forkgrpo.encode_problems(problems, tokenizer, args.template, forkgrpo.Config.max_prompt_len)
    if not encoded:
        raise SystemExit("entropy.py: no prompt fits in the trainer's --max-prompt-len")
    return encoded


def sample_and_score(args, policy, tokenizer, model_path, encoded):
    """K responses per prompt and each response token's entropy: [(prompt index, prompt ids, response ids,
    entropies)], responses without tokens left out."""
    eos = forkgrpo._eos_ids(tokenizer, policy.lm)
    cfg = forkgrpo.Config(rollout=args.rollout, seed=args.seed, max_new_tokens=args.max_new_tokens)
    engine = forkgrpo.make_engine(cfg, policy, tokenizer, model_path, eos, rank=0)
    try:
        ids = [p for p, _ in encoded]
        responses, _ = engine.generate(ids, n=args.samples, temperature=args.temperature, top_p=1.0,
                                       max_tokens=args.max_new_tokens,
                                       seeds=[forkgrpo.derive_seed(args.seed, "entropy", i) for i in range(len(ids))])
    finally:
        engine.close()
    rows = [(i // args.samples, ids[i // args.samples], r) for i, r in enumerate(responses) if r]
    return rows, score_rows(policy, rows, args.temperature, args.micro_batch_size)


def score_rows(policy, rows, temperature, micro_batch_size):
    """Each (prompt index, prompt ids, response ids) row's response-token entropies under `policy` at T,
    through the trainer's scoring pass (make_batch + old_logprobs_and_entropies)."""
    groups = [forkgrpo.PromptGroup(p, [r], None, torch.zeros(1)) for _, p, r in rows]
    device = next(policy.parameters()).device
    batch = forkgrpo.make_batch(groups, 0, device, 1, False)
    cfg = forkgrpo.Config(micro_batch_size=micro_batch_size, temperature=temperature)
    batch, _ = forkgrpo.old_logprobs_and_entropies(policy, batch, cfg, None)
    return [batch.entropy[b][batch.response_mask[b]].tolist() for b in range(len(rows))]


# --- the report -------------------------------------------------------------------------------


def percentile(entropies, q):
    """The ceil((1 - q/100) N)-th largest entropy: the tau of forking_token_mask at rho = 1 - q/100,
    computed through that function, as the trainer's entropy/pq is."""
    h = torch.tensor(entropies, dtype=torch.float32)[None]  # (1, N)
    selected = forkgrpo.forking_token_mask(h, torch.ones_like(h, dtype=torch.bool), 1.0 - q / 100)
    return float(h[selected].min())


def summarize(entropies, args):
    n = len(entropies)
    return {"n_tokens": n, "mean": statistics.fmean(entropies), "frac_below_0.01": sum(e < 0.01 for e in entropies) / n,
            **{f"p{q}": percentile(entropies, q) for q in QUANTILES}, "temperature": args.temperature,
            "model": args.model, "n_prompts": args.n_prompts, "samples": args.samples,
            "max_new_tokens": args.max_new_tokens, "seed": args.seed, "commit": commit()}


def _md_token(text):
    """A token as a markdown table cell: visible whitespace, no table or HTML syntax."""
    shown = json.dumps(text, ensure_ascii=False)[1:-1].replace(" ", "␣").replace("|", "\\|").replace("`", "'")
    return "`" + html.escape(shown) + "`"


def top_tokens(records, min_count, k=20):
    by_token = collections.defaultdict(list)
    for r in records:
        for t, e in zip(r["tokens"], r["entropy"]):
            by_token[t].append(e)
    frequent = sorted(((statistics.fmean(v), len(v), t) for t, v in by_token.items() if len(v) >= min_count),
                      reverse=True)
    lines = [f"# Tokens by mean entropy (seen at least {min_count} times: {len(frequent)} distinct tokens)", ""]
    for title, rows in (("Highest", frequent[:k]), ("Lowest", frequent[::-1][:k])):
        lines += [f"## {title} mean entropy", "", "| token | mean entropy | count |", "|---|---:|---:|"]
        lines += [f"| {_md_token(t)} | {m:.3f} | {c} |" for m, c, t in rows]
        lines.append("")
    return "\n".join(lines)


def _colour(e, top):
    """White (entropy 0) to red (entropy >= top), as an rgb() string."""
    x = min(1.0, e / top) if top > 0 else 0.0
    return f"rgb(255,{int(255 * (1 - 0.75 * x))},{int(255 * (1 - 0.85 * x))})"


def render_html(records, tau, top, title):
    """The responses with each token's background by entropy and the forking tokens (H >= tau) boxed.
    Every piece of model text goes through html.escape."""
    out = ["<!doctype html><meta charset='utf-8'>", f"<title>{html.escape(title)}</title>",
           "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
           ".r{font-family:monospace;white-space:pre-wrap;line-height:1.9;border:1px solid #ccc;padding:.6em}"
           ".f{outline:2px solid #b00;font-weight:bold}.p{color:#555}</style>",
           f"<h1>{html.escape(title)}</h1>",
           f"<p>Background: token entropy, white 0 to red {top:.2f} and above. Boxed: the forking tokens, "
           f"entropy at least tau = {tau:.3f}. Hover a token for its entropy.</p>"]
    for r in records:
        out.append(f"<h2>prompt {int(r['prompt_index'])}</h2><p class='p'>{html.escape(r['prompt_text'])}</p><div class='r'>")
        for t, e in zip(r["tokens"], r["entropy"]):
            cls = " class='f'" if e >= tau else ""
            out.append(f"<span{cls} style='background:{_colour(e, top)}' title='H = {e:.3f}'>{html.escape(t)}</span>")
        out.append("</div>")
    return "".join(out) + "\n"


def histogram(entropies, summary, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    ax.hist(entropies, bins=50, color="tab:blue", log=True)
    ax.axvline(summary["p80"], color="tab:red", linestyle="--", label=f"p80 = {summary['p80']:.3f} (tau at rho = 0.2)")
    ax.set_xlabel(f"token entropy (nats, T = {summary['temperature']})")
    ax.set_ylabel("tokens (log scale)")
    ax.set_title(f"{summary['n_tokens']} response tokens; {100 * summary['frac_below_0.01']:.1f}% below 0.01")
    ax.legend()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def example_png(record, tau, top, path, width=90):
    """One response as a picture: tokens laid out in a monospace grid, coloured like examples.html."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.colors
    import matplotlib.pyplot as plt

    cells, row, col = [], 0, 0
    for t, e in zip(record["tokens"], record["entropy"]):
        for k, piece in enumerate(t.split("\n")):
            if k:
                row, col = row + 1, 0
            if not piece:
                continue
            if col + len(piece) > width and col:
                row, col = row + 1, 0
            cells.append((row, col, piece, e))
            col += len(piece)
    rows = row + 1
    fig = plt.figure(figsize=((width + 2) * 0.075, rows * 0.28 + 0.6))  # 9 pt monospace: about 0.075 in a character
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-1, width + 1)
    ax.set_ylim(rows + 0.5, -1.5)
    ax.axis("off")
    ax.text(0, -0.9, f"prompt {int(record['prompt_index'])}: token entropy, white 0 to red {top:.2f}+; boxed: "
            f"forking tokens (H >= {tau:.3f})", fontsize=9, family="sans-serif", parse_math=False)
    for r, c, piece, e in cells:
        rgb = [int(v) / 255 for v in _colour(e, top)[4:-1].split(",")]
        ax.add_patch(plt.Rectangle((c, r - 0.45), len(piece), 0.9, facecolor=matplotlib.colors.to_hex(rgb),
                                   edgecolor="#b00" if e >= tau else "none", linewidth=1.2))
        ax.text(c, r, piece, family="monospace", fontsize=9, va="center", ha="left", parse_math=False,
                fontweight="bold" if e >= tau else "normal")  # model text: never read as mathtext
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(records, args, out):
    entropies = [e for r in records for e in r["entropy"]]
    if not entropies:
        raise SystemExit("entropy.py: the model gave no response tokens")
    summary = summarize(entropies, args)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "top_tokens.md").write_text(top_tokens(records, args.min_count))
    tau = percentile(entropies, 100 * (1 - args.rho))
    top = max(summary["p95"], 1e-6)
    shown = records[: args.examples]
    (out / "examples.html").write_text(render_html(shown, tau, top, f"Token entropy of {args.model}"))
    histogram(entropies, summary, out / "entropy_hist.png")
    example_png(shown[0], tau, top, out / "example.png")
    return summary


def main(argv=None):
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    try:
        _, _, device = forkgrpo.setup_distributed()  # one process: CUDA if there is one
        policy, tokenizer, model_path = forkgrpo.load_policy(args.model, device, 1, False)
        encoded = prompts(args, tokenizer)
    except forkgrpo.InputError as e:
        raise SystemExit(f"entropy.py: error: {e}") from None
    rows, entropies = sample_and_score(args, policy, tokenizer, model_path, encoded)
    records = [{"prompt_index": i, "prompt_ids": p, "response_ids": r, "tokens": [tokenizer.decode([t]) for t in r],
                "entropy": h, "prompt_text": tokenizer.decode(p)} for (i, p, r), h in zip(rows, entropies)]
    with open(args.out / "tokens.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps({k: v for k, v in r.items() if k != "prompt_text"}) + "\n")
    summary = write_report(records, args, args.out)
    print(json.dumps({k: summary[k] for k in ("n_tokens", "mean", "frac_below_0.01", "p50", "p80", "p95")}))
    print(f"entropy.py: wrote {args.out}/tokens.jsonl, summary.json, top_tokens.md, entropy_hist.png, "
          "examples.html, example.png")


if __name__ == "__main__":
    main()
