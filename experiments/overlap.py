"""Entropy patterns across training: do the forking tokens stay the forking tokens?

    python experiments/overlap.py --tokens runs/entropy/tokens.jsonl \\
        --models default runs/forkgrpo/hf/step_000002 runs/forkgrpo/hf/step_000004 ... --out runs/overlap

Wang et al., arXiv 2506.01939 v2, Sec. 4: Table 1 (the overlap of the top-20%-entropy positions of
the same responses under the base model and under checkpoints along RLVR training) and Fig. 4 (the
mean entropy change after RLVR per 5% percentile bin of the base model's entropy). This script
re-scores the responses saved by experiments/entropy.py with each model (forkgrpo's scoring pass at
the temperature of that report) and writes into --out:

  overlap.json        models, rho, n_tokens, overlap_with_first and overlap_with_last: for each
                      model, the fraction of the first (last) model's top-rho positions that are also
                      top-rho under it, each mask from forkgrpo.forking_token_mask over all tokens
  overlap.md          the Table 1 analogue
  entropy_change.png  the Fig. 4 analogue: mean H_model - H_first per 5% bin of the first model's entropy

The trainer keeps the snapshots this needs with --save-hf-every N (out_dir/hf/step_N).
"""

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))
import forkgrpo  # noqa: E402
from entropy import score_rows  # noqa: E402

BINS = 20  # 5% percentile bins, as the paper's Fig. 4


def read_tokens(path):
    rows = []
    for k, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip():
            try:
                r = json.loads(line)
                rows.append((r["prompt_index"], r["prompt_ids"], r["response_ids"]))
            except (ValueError, KeyError) as e:
                raise SystemExit(f"{path}:{k}: not a line of experiments/entropy.py's tokens.jsonl ({e})")
    if not rows:
        raise SystemExit(f"{path}: no responses")
    return rows


def entropies_under(model, rows, temperature, micro_batch_size, device):
    """(N,) the entropies of every saved response token under `model`, in file order."""
    policy, tokenizer, _ = forkgrpo.load_policy(model, device, 1, False)
    vocab = policy.lm.get_output_embeddings().weight.shape[0]
    if max(t for _, p, r in rows for t in p + r) >= vocab:
        raise SystemExit(f"overlap.py: --models {model}: its vocabulary ({vocab}) does not hold the saved token ids; "
                         "every model must share the tokenizer of the responses")
    flat = torch.tensor([e for h in score_rows(policy, rows, temperature, micro_batch_size) for e in h])
    del policy
    return flat


def top_mask(h, rho):
    """The forking mask over all tokens at once (1, N) -> (N,)."""
    return forkgrpo.forking_token_mask(h[None], torch.ones(1, len(h), dtype=torch.bool), rho)[0]


def overlaps(entropies, rho):
    """Fraction of the first and of the last model's top-rho positions that each model also selects."""
    masks = [top_mask(h, rho) for h in entropies]
    share = lambda ref, m: int((ref & m).sum()) / int(ref.sum())  # noqa: E731
    return [share(masks[0], m) for m in masks], [share(masks[-1], m) for m in masks]


def change_by_bin(first, other, bins=BINS):
    """Mean (other - first) in each of `bins` equal-count bins of `first`, lowest entropy first."""
    order = torch.argsort(first, stable=True)
    return [float((other[idx] - first[idx]).mean()) for idx in torch.tensor_split(order, bins)]


def write_outputs(models, entropies, rho, out, temperature):
    with_first, with_last = overlaps(entropies, rho)
    result = {"models": models, "rho": rho, "temperature": temperature, "n_tokens": len(entropies[0]),
              "overlap_with_first": with_first, "overlap_with_last": with_last,
              "mean_entropy": [float(h.mean()) for h in entropies]}
    (out / "overlap.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"# Overlap of the top {100 * rho:.0f}% entropy positions ({len(entropies[0])} response tokens, "
             f"T = {temperature})", "", "| model | with the first | with the last | mean entropy |",
             "|---|---:|---:|---:|"]
    lines += [f"| `{m}` | {100 * a:.2f}% | {100 * b:.2f}% | {h:.3f} |"
              for m, a, b, h in zip(models, with_first, with_last, result["mean_entropy"])]
    (out / "overlap.md").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    centres = [100 * (k + 0.5) / BINS for k in range(BINS)]
    for m, h in zip(models[1:], entropies[1:]):
        ax.plot(centres, change_by_bin(entropies[0], h), marker="o", label=m)
    ax.axhline(0, color="gray", linewidth=0.8)
    ax.set_xlabel(f"percentile of the token's entropy under {models[0]}")
    ax.set_ylabel("mean entropy change")
    ax.set_title("entropy change by the first model's entropy (5% bins)")
    if len(models) > 1:
        ax.legend(fontsize=8)
    fig.savefig(out / "entropy_change.png", dpi=110)
    plt.close(fig)
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", required=True, help="tokens.jsonl written by experiments/entropy.py")
    ap.add_argument("--models", nargs="+", required=True, help="the base model first, then the checkpoints in order")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--rho", type=float, default=0.2)
    ap.add_argument("--temperature", type=float, help="default: the temperature in summary.json beside --tokens")
    ap.add_argument("--micro-batch-size", type=int, default=8)
    args = ap.parse_args(argv)
    if not 0 < args.rho <= 1:
        ap.error("--rho must be in (0, 1]")
    summary = Path(args.tokens).with_name("summary.json")
    temperature = args.temperature or (json.loads(summary.read_text())["temperature"] if summary.is_file() else None)
    if not temperature:
        ap.error(f"--temperature: not given and no {summary} to read it from")
    rows = read_tokens(args.tokens)
    args.out.mkdir(parents=True, exist_ok=True)
    _, _, device = forkgrpo.setup_distributed()
    try:
        entropies = [entropies_under(m, rows, temperature, args.micro_batch_size, device) for m in args.models]
    except forkgrpo.InputError as e:
        raise SystemExit(f"overlap.py: error: {e}") from None
    result = write_outputs(args.models, entropies, args.rho, args.out, temperature)
    print((args.out / "overlap.md").read_text())
    print(f"overlap.py: wrote {args.out}/overlap.json, overlap.md, entropy_change.png ({result['n_tokens']} tokens)")


if __name__ == "__main__":
    main()
