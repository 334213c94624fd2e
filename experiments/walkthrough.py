"""One training step by hand: the default run's first step, on real tokens and numbers.

    python experiments/walkthrough.py              # writes docs/walkthrough.md and docs/walkthrough.png

Runs the first training step of the default run (`./run.sh`: the embedded model, seed 0, every option at
its default) through forkgrpo's own functions, in main()'s order, and writes a page to read beside
forkgrpo.py: one prompt's G responses with their rewards and advantages; one response's tokens with
their entropies, the mini-batch's tau and the forking tokens the mask selects; what a few of those
tokens contribute to the loss; and how the update moved the log-probabilities of the selected tokens
against the unselected ones. Each number is labelled with the forkgrpo.py function that computed it,
so the page is also a map of the code. Nothing of the method is re-implemented here: the script only
calls forkgrpo's functions and reads what they return.

Step 1's rollouts do not depend on the step-0 evaluation that main() runs first (sampling is seeded per
prompt with derive_seed), so the script skips it. --compare checks that: it sets the step-1 line of a real
run's metrics.jsonl (python forkgrpo.py --steps 1, which evaluates first) beside this step's numbers.

Writes into --out: walkthrough.md and walkthrough.png; with --json PATH also every number of the page
(the test compares them with independent calls of forkgrpo's functions).
"""

import argparse
import collections
import fractions
import functools
import html
import inspect
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
import typing
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import forkgrpo  # noqa: E402

SHOWN_TOKENS = 3  # selected tokens of each sign of advantage in the loss table
COMPARED = ("reward/mean", "reward/accuracy", "length/mean", "rollout/dropped_groups", "entropy/mean", "fork/tau",
            "fork/frac_selected", "loss/loss", "train/grad_norm")  # with a real run's step-1 line (--compare)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default", help="a transformers folder or hub id; default: the embedded model")
    ap.add_argument("--out", type=Path, default=ROOT / "docs",
                    help="the folder of walkthrough.md and walkthrough.png (default: docs/)")
    ap.add_argument("--seed", type=int, default=0, help="forkgrpo's --seed (the default run's: 0)")
    ap.add_argument("--rollout", default="auto", choices=typing.get_args(forkgrpo.Config.__annotations__["rollout"]),
                    help="forkgrpo's --rollout (auto: vLLM if installed, as the default run)")
    ap.add_argument("--json", type=Path, default=None, help="also write the page's numbers to this file")
    ap.add_argument("--compare", type=Path, default=None, metavar="METRICS_JSONL",
                    help="the metrics.jsonl of a real run with the same options (python forkgrpo.py --steps 1): the page "
                    "sets its step-1 line beside this step's numbers")
    ap.add_argument("--compare-command", default="", help="the command that made --compare's run, named on the page")
    return ap.parse_args(argv)


# --- the step ---------------------------------------------------------------------------------


def first_step(cfg, reward_fn):
    """The first training step as forkgrpo.main() runs it (without the step-0 evaluation), keeping every
    intermediate the page shows. Returns a dict of plain Python values (see record)."""
    # 0. Set-up, in main()'s order.
    rank, world, device = forkgrpo.setup_distributed(cfg.dist_timeout)
    problems, _, _ = forkgrpo.load_datasets(cfg)
    torch.manual_seed(cfg.seed)
    dtype = forkgrpo.compute_dtype(cfg.dtype, device)
    policy, tokenizer, model_path = forkgrpo.load_policy(cfg.model, device, world, cfg.activation_checkpointing, dtype,
                                                         cfg.dist_timeout)
    eos = forkgrpo._eos_ids(tokenizer, policy.lm)
    train_set, skipped = forkgrpo.encode_problems(problems, tokenizer, cfg.template, cfg.max_prompt_len)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    stream = forkgrpo.PromptStream(train_set, cfg.seed, 0)
    # Step 1's prompts, as collect_rollouts will take them: a second stream in the same state.
    drawn = forkgrpo.PromptStream(train_set, cfg.seed, 0).take(cfg.prompts_per_step // world, rank, world)
    questions = [question_text(problems[stream.order(j // len(train_set))[j % len(train_set)]]) if not skipped
                 else tokenizer.decode(p.ids) for j, p in drawn]  # with nothing skipped, encoded i is raw i
    pg = None  # one process: the mask pools this process's tokens only
    engine = forkgrpo.make_engine(cfg, policy, tokenizer, model_path, eos, rank)
    try:
        # 1. Rollout and 2. reward.
        groups, rollout = forkgrpo.collect_rollouts(cfg, engine, tokenizer, eos, stream, rank, world, reward_fn)
        engine.sleep()
        if not groups:
            raise SystemExit("walkthrough.py: step 1 kept no informative group (every group all right or all wrong): "
                             "nothing to show; try another --seed")
        # 3. Advantages.
        batch = forkgrpo.make_batch(groups, tokenizer.pad_token_id, device, cfg.group_size, cfg.scale_by_std)
        # 4. Scoring pass.
        batch, scored = forkgrpo.old_logprobs_and_entropies(policy, batch, cfg, pg)
        # 5. The forking mask of the (only) mini-batch, called with update_policy's arguments: update_policy keeps
        # its mask to itself, so record() checks this one against the fork/tau and fork/frac_selected it logs.
        rows = list(range(len(batch.lengths)))
        gen = torch.Generator(device=batch.entropy.device).manual_seed(forkgrpo.derive_seed(cfg.seed, "fork", 0, 0, rank))
        mask = forkgrpo.forking_token_mask(batch.entropy[rows], batch.response_mask[rows], cfg.rho, cfg.fork_mode, pg, gen)
        num_tokens = int(mask.sum())  # update_policy's denominator with --loss-norm selected, one process
        # 6. The loss's terms before the update: the current policy's log-probs of the selected tokens
        # (Policy.forward, as backward calls it), then policy_loss over all of them and on each one alone, with
        # the whole mini-batch's denominator.
        with torch.no_grad():
            logp, _ = policy(batch.input_ids, mask, cfg.temperature)
            full_loss, _ = forkgrpo.policy_loss(logp, batch.old_logp, batch.advantages, mask, cfg.eps_low, cfg.eps_high,
                                                num_tokens, cfg.clip_ratio_c)
            terms = {}
            for b, t in mask.nonzero().tolist():
                one = torch.zeros_like(mask)
                one[b, t] = True
                loss_t, sums = forkgrpo.policy_loss(logp, batch.old_logp, batch.advantages, one, cfg.eps_low,
                                                    cfg.eps_high, num_tokens, cfg.clip_ratio_c)
                terms[b, t] = {"logp": float(logp[b, t]), "ratio": float(sums["ratio"]), "contribution": float(loss_t),
                               "clip": [k for k in ("clip_low", "clip_high", "clip_dual") if sums[k] > 0]}
        # 5. and 6. The update itself.
        updated, _ = forkgrpo.update_policy(cfg, policy, optimizer, batch, 0, rank, world, pg)
        # After the update: every token re-scored by the same scoring pass.
        rescored, _ = forkgrpo.old_logprobs_and_entropies(policy, batch, cfg, pg)
    finally:
        engine.close()
    return record(cfg, dict(tokenizer=tokenizer, eos=eos, drawn=drawn, questions=questions, groups=groups, rollout=rollout,
                            batch=batch, scored=scored, mask=mask, num_tokens=num_tokens, full_loss=float(full_loss),
                            terms=terms, updated=updated, new_logp=rescored.old_logp, engine=type(engine).__name__))


def record(cfg, s):
    """Everything the page shows, as plain values, from first_step's objects `s`."""
    G, batch, mask, tokenizer = cfg.group_size, s["batch"], s["mask"], s["tokenizer"]
    valid = batch.response_mask
    kept = [tuple(g.prompt) for g in s["groups"]]
    prompts = [{"question": q, "answer": p.answer, "kept": tuple(p.ids) in kept} for q, (_, p) in zip(s["questions"], s["drawn"])]
    responses = []
    for gi, g in enumerate(s["groups"]):
        lengths = torch.tensor([len(r) for r in g.responses])
        penalty = forkgrpo.overlong_penalty(lengths, cfg.max_new_tokens, cfg.overlong_cache, cfg.overlong_factor)
        for i, r in enumerate(g.responses):
            b = gi * G + i
            start = batch.lengths[b] - len(r) - 1  # response token j is predicted at position start + j of the row
            at = list(range(start, start + len(r)))
            assert valid[b, at].all() and int(valid[b].sum()) == len(r)
            responses.append({
                "group": gi, "index": i, "row": b, "ids": r, "text": tokenizer.decode(r, skip_special_tokens=True),
                "tokens": [tokenizer.decode([t]) for t in r], "eos": bool(r) and r[-1] in s["eos"],
                "penalty": float(penalty[i]), "reward": float(g.rewards[i]), "advantage": float(batch.advantages[b]),
                "entropy": batch.entropy[b, at].tolist(), "selected": mask[b, at].tolist(),
                "old_logp": batch.old_logp[b, at].tolist(), "new_logp": s["new_logp"][b, at].tolist(),
                "terms": [s["terms"].get((b, t)) for t in at]})
    n_valid, selected, updated = int(valid.sum()), s["num_tokens"], s["updated"]
    tau = float(batch.entropy[mask].min())
    checks = {"fork/tau": tau, "fork/frac_selected": selected / n_valid, "loss/loss": s["full_loss"]}
    for name, ours in checks.items():  # the mask and the loss shown are the ones update_policy used
        if not math.isclose(ours, updated[name], rel_tol=1e-4, abs_tol=1e-6):
            raise RuntimeError(f"walkthrough.py: {name} {ours} differs from update_policy's {updated[name]}")
    shown_options = ("model", "seed", "group_size", "prompts_per_step", "max_new_tokens", "temperature", "rho", "eps_low",
                     "eps_high", "clip_ratio_c", "lr", "grad_clip", "mini_batches", "micro_batch_size", "overlong_cache",
                     "loss_norm")
    k = math.ceil(fractions.Fraction(str(cfg.rho)) * n_valid)  # forking_token_mask's ceil(rho N), for the page's text
    return {"config": {name: getattr(cfg, name) for name in shown_options},
            "engine": s["engine"], "prompts": prompts, "group_prompts": [tokenizer.decode(g.prompt) for g in s["groups"]],
            "responses": responses, "rollout": s["rollout"], "scored": s["scored"], "updated": updated,
            "mask": {"valid_tokens": n_valid, "k": k, "tau": tau, "selected": selected, "share": selected / n_valid},
            "loss": {"num_tokens": selected, "policy_loss": s["full_loss"], "update_policy": updated["loss/loss"],
                     "sum_of_contributions": sum(v["contribution"] for v in s["terms"].values())}}


def question_text(problem):
    """The user's question of a raw problem (a string or chat messages)."""
    prompt = problem["prompt"]
    return prompt if isinstance(prompt, str) else next(m["content"] for m in prompt if m.get("role") == "user")


# --- choosing what to show --------------------------------------------------------------------


def choose(rec):
    """(the group shown, the response shown): the first kept group (every kept group is informative, so
    it holds a right and a wrong answer), and in it the first response with a positive advantage."""
    group = [r for r in rec["responses"] if r["group"] == 0]
    return group, choose_shown(group)


def choose_shown(group):
    return next(r for r in group if r["advantage"] > 0)


def loss_examples(group):
    """A few selected tokens of the shown group: the highest-entropy ones of the shown response (A > 0) and of the
    response with the lowest advantage."""
    out = []
    for r in (choose_shown(group), min(group, key=lambda r: r["advantage"])):
        chosen = sorted((j for j, s in enumerate(r["selected"]) if s), key=lambda j: -r["entropy"][j])[:SHOWN_TOKENS]
        out += [(r, j) for j in sorted(chosen)]
    return out


def delta_table(responses):
    """Mean change of log-prob, new minus old, by sign of advantage and selected or not: {(sign, selected): (mean, n)}."""
    acc = collections.defaultdict(list)
    for r in responses:
        sign = "A > 0" if r["advantage"] > 0 else "A < 0" if r["advantage"] < 0 else "A = 0"
        for s, old, new in zip(r["selected"], r["old_logp"], r["new_logp"]):
            acc[sign, bool(s)].append(new - old)
    return {key: (sum(v) / len(v), len(v)) for key, v in sorted(acc.items())}


# --- rendering: model text is escaped everywhere -----------------------------------------------

MD_SPECIAL = set("\\`*_{}[]()#+-.!|~<>&")


def visible(text, spaces=True):
    """Whitespace and unprintable characters made visible: space ␣ (if `spaces`), newline ↵, tab →, others as \\uXXXX."""
    out = []
    for ch in text:
        if ch == " " and spaces:
            out.append("␣")
        elif ch == "\n":
            out.append("↵")
        elif ch == "\t":
            out.append("→")
        elif not ch.isprintable():
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def md_text(text, spaces=True):
    """Model text as inert markdown inline text (a table cell): visible whitespace (spaces too, if `spaces`),
    markdown punctuation backslash-escaped, HTML's & < > as entities. No code span: GitHub shows entities
    inside one literally."""
    out = []
    for ch in visible(text, spaces):
        if ch in "&<>":
            out.append(html.escape(ch, quote=False))
        elif ch in MD_SPECIAL:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def fenced(text, info="text"):
    """Model text as a fenced code block it cannot close: the fence is longer than any run of backticks in it."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    lines = text.replace("\r\n", "\n").replace("\r", "\n")
    return f"{fence}{info}\n{lines}\n{fence}"


def fmt(x, digits=4):
    """A number as the page prints it (the test reads it back)."""
    if isinstance(x, int):
        return str(x)
    if x == 0:
        return "0"
    return f"{x:.{digits}g}"


def where(name):
    """`name` (forkgrpo.py:LINE): a function of forkgrpo.py with the line it starts on."""
    obj = forkgrpo
    for part in name.split("."):
        obj = getattr(obj, part)
    obj = inspect.unwrap(obj)
    try:
        line = inspect.getsourcelines(obj)[1]
    except (OSError, TypeError):
        return f"`{name}`"
    return f"[`{name}`](../forkgrpo.py#L{line})"


def provenance():
    """(HEAD commit, files of the tree that differ from it), from git; ("unknown", []) outside a checkout."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    try:
        head = git("rev-parse", "HEAD").strip()
        dirty = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
        blob = git("hash-object", "forkgrpo.py").strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown", [], "unknown"
    return head, dirty, blob


def render(rec, command, seconds, figure_name):
    """The page, as markdown. Every piece of model text goes through fenced() or md_text()."""
    cfg, m, loss, up = rec["config"], rec["mask"], rec["loss"], rec["updated"]
    group, shown = choose(rec)
    head, dirty, blob = rec["provenance"]
    mattering = [f for f in dirty if f == "forkgrpo.py" or f.startswith(("math_verify/", "experiments/walkthrough.py"))]
    tree = ("the tree was clean" if not dirty else
            f"the tree was dirty: {len(dirty)} file(s) differed from that commit"
            + (f", among them {', '.join(f'`{f}`' for f in mattering)}" if mattering else ", none of them read by this run")
            + f"; forkgrpo.py as run has blob `{blob}` (`git hash-object forkgrpo.py`)")
    G = cfg["group_size"]
    L = []
    add = L.append
    add("# One training step by hand")
    add("")
    add("<!-- Generated by experiments/walkthrough.py; edit that script, not this page. -->")
    add("")
    add("The first training step of the default run (`./run.sh`: the embedded SmolLM2-135M-Instruct, seed "
        f"{cfg['seed']}, every option at its default), followed through forkgrpo.py's own functions in `main()`'s "
        "order, on real tokens and numbers. Read it beside [forkgrpo.py](../forkgrpo.py): each number names the "
        "function that computed it (linked to its line), so the page is also a map of the code. The script only "
        "calls forkgrpo's functions and prints what they return; "
        "[tests/test_walkthrough.py](../tests/test_walkthrough.py) checks every number of the page against "
        "independent calls of those functions, on a tiny model.")
    add("")
    load = f" (load average {rec['load']:.1f} as it started)" if rec.get("load") is not None else ""
    add(f"Made by `{command}` in {seconds:.0f} s on {os.cpu_count()} CPU cores{load}, at commit `{head}` ({tree}). "
        f"Rollout engine: `{rec['engine']}`. The options that matter here: G = {G} responses per prompt, "
        f"{cfg['prompts_per_step']} prompts per step, at most {cfg['max_new_tokens']} new tokens, temperature "
        f"T = {cfg['temperature']}, rho = {cfg['rho']}, eps_low = {cfg['eps_low']}, eps_high = {cfg['eps_high']}, "
        f"dual clip c = {cfg['clip_ratio_c']}, lr = {cfg['lr']}, {cfg['mini_batches']} mini-batch, loss denominator "
        f"`{cfg['loss_norm']}` ([options.md](options.md) has them all).")
    add("")
    add("`main()` evaluates the policy before step 1 (step 0 of metrics.jsonl); this script skips that, "
        "since the rollout engine seeds every prompt's sampling with "
        f"{where('derive_seed')}, so that the evaluation cannot change step 1's responses.")
    add("")
    if rec.get("compare"):
        c = rec["compare"]
        same = all(theirs is not None and math.isclose(ours, theirs, rel_tol=1e-6, abs_tol=1e-9) for _, ours, theirs in c["rows"])
        made = f", written by `{c['command']}`" if c["command"] else ""
        add(f"Checked against a real run: the step-1 line of `{c['path']}`{made} (which evaluated at step 0) "
            + ("agrees with this step to 6 digits:" if same else "**differs** from this step:"))
        add("")
        add("| metric | this page | the run's step 1 |")
        add("|---|---:|---:|")
        for key, ours, theirs in c["rows"]:
            add(f"| `{key}` | {fmt(ours, 7)} | {'missing' if theirs is None else fmt(theirs, 7)} |")
        add("")

    # --- 0
    add("## 0. Set-up")
    add("")
    add(f"As `main()` does it: {where('setup_distributed')} (one process, no process group), "
        f"{where('load_datasets')} (the built-in arithmetic word problems), `torch.manual_seed({cfg['seed']})`, "
        f"{where('load_policy')}, {where('_eos_ids')}, {where('encode_problems')}, AdamW, "
        f"{where('PromptStream')}, {where('make_engine')}, and the reward `functools.partial(correctness, "
        "timeout=cfg.verify_timeout)`.")
    add("")

    # --- 1, 2
    ro = rec["rollout"]
    reward = (f"{where('correctness')} (math_verify)" if rec["reward_fn"] == "correctness" else
              f"the stand-in reward `{md_text(rec['reward_fn'])}` (in place of {where('correctness')})")
    n_kept = sum(p["kept"] for p in rec["prompts"])
    add("## 1. Rollout and 2. reward")
    add("")
    add(f"{where('collect_rollouts')} takes step 1's {len(rec['prompts'])} prompts from the stream "
        f"({where('PromptStream.take')}), samples G = {G} responses to each at T = {cfg['temperature']} "
        f"(`{rec['engine']}.generate`, each prompt seeded by {where('derive_seed')}), and rewards them: "
        f"{where('judge')} decodes each response and asks {reward} whether its final "
        f"answer equals the gold one, +1 if so and -1 if not, and {where('overlong_penalty')} adds DAPO's soft "
        f"penalty, which ramps from 0 to -1 over the last {cfg['overlong_cache']} of the {cfg['max_new_tokens']} "
        f"tokens. Then {where('informative_groups')} (DAPO's dynamic sampling) keeps only the groups whose answers "
        "are not all right or all wrong: in the others every advantage is 0.")
    add("")
    add("| prompt | question | gold answer | kept |")
    add("|---:|---|---:|---|")
    for i, p in enumerate(rec["prompts"]):
        add(f"| {i} | {md_text(p['question'], spaces=False)} | {md_text(p['answer'])} | {'yes' if p['kept'] else 'no'} |")
    add("")
    add(f"Over all {fmt(ro['rollout/responses'])} responses: `reward/mean` = {fmt(ro['reward/mean'])}, "
        f"`reward/accuracy` = {fmt(ro['reward/accuracy'])}, `length/mean` = {fmt(ro['length/mean'])} tokens, "
        f"`length/truncated_frac` = {fmt(ro['length/truncated_frac'])}; {fmt(ro['rollout/dropped_groups'])} of "
        f"{len(rec['prompts'])} groups dropped, {n_kept} kept ({n_kept * G} responses go on to training).")
    add("")
    kept_prompts = [p for p in rec["prompts"] if p["kept"]]
    add(f"The first kept group, shown from here on (every kept group holds a right and a wrong answer). Its prompt, "
        f"as the policy sees it (the chat template of {where('render_prompt')}); gold answer "
        f"{md_text(kept_prompts[0]['answer'])}:")
    add("")
    add(fenced(rec["group_prompts"][0]))
    add("")

    # --- 3
    rewards = torch.tensor([r["reward"] for r in group])
    add("## 3. Advantages")
    add("")
    add(f"{where('make_batch')} lays each response after its prompt in a right-padded row and calls "
        f"{where('group_advantages')}: A_i = (r_i - mean(r)) / (std(r) + 1e-6) over the group's {G} rewards "
        f"(here mean = {fmt(float(rewards.mean()))}, std = {fmt(float(rewards.std()))}). Every token of a "
        "response shares its A_i.")
    add("")
    add("| response | tokens | ended at EOS | answer right | overlong penalty | reward r_i | advantage A_i |")
    add("|---:|---:|---|---|---:|---:|---:|")
    for r in group:
        right = "yes" if r["reward"] - r["penalty"] > 0 else "no"
        add(f"| {r['index']} | {len(r['ids'])} | {'yes' if r['eos'] else 'no'} | {right} | {fmt(r['penalty'])} | "
            f"{fmt(r['reward'])} | {fmt(r['advantage'])} |")
    add("")
    add("The responses, decoded as `judge` reads them:")
    add("")
    for r in group:
        add(f"Response {r['index']}: r = {fmt(r['reward'])}, A = {fmt(r['advantage'])}")
        add("")
        add(fenced(r["text"]))
        add("")

    # --- 4
    sc = rec["scored"]
    add("## 4. Scoring pass")
    add("")
    add(f"{where('old_logprobs_and_entropies')} runs the policy once over the batch without gradient "
        f"({where('Policy.forward')}, which calls {where('logprobs_and_entropy')}: the LM head chunk by chunk, "
        "never the full logits) and keeps, for every response token y_t, the old log-prob log pi_old(y_t) and the "
        "entropy H_t of the next-token distribution softmax(z_t / T) it was sampled from. Over the batch's "
        f"{m['valid_tokens']} response tokens: `entropy/mean` = {fmt(sc['entropy/mean'])}, "
        f"`entropy/p50` = {fmt(sc['entropy/p50'])}, `entropy/p80` = {fmt(sc['entropy/p80'])}, "
        f"`entropy/frac_below_0.01` = {fmt(sc['entropy/frac_below_0.01'])}: half the tokens have H_t below "
        f"{fmt(sc['entropy/p50'])} nats, a fifth at or above {fmt(sc['entropy/p80'])}.")
    add("")

    # --- 5
    add("## 5. Forking mask")
    add("")
    add(f"{where('update_policy')} calls {where('forking_token_mask')} on the whole mini-batch: N = "
        f"{m['valid_tokens']} response tokens, k = ceil(rho N) = ceil({cfg['rho']} x {m['valid_tokens']}) = {m['k']}, "
        f"tau = the k-th largest H_t = **{fmt(m['tau'], 6)}**, and a token is selected when H_t >= tau: "
        f"**{m['selected']}** of {m['valid_tokens']} tokens, a share of **{fmt(m['share'])}** "
        f"(`update_policy` logs them as `fork/tau` = {fmt(up['fork/tau'], 6)} and `fork/frac_selected` = "
        f"{fmt(up['fork/frac_selected'])}). Only these tokens get the policy gradient.")
    add("")
    n_sel = sum(shown["selected"])
    add(f"Response {shown['index']} of the group (A = {fmt(shown['advantage'])}), its forking tokens between "
        f"⟦ ⟧ ({n_sel} of its {len(shown['ids'])} tokens):")
    add("")
    add(fenced("".join(f"⟦{t}⟧" if s else t for t, s in zip(shown["tokens"], shown["selected"]))))
    add("")
    add(f"![Entropy of each token of response {shown['index']}, tau, and the change of log-probability after the "
        f"update]({figure_name})")
    add("")
    add(f"Each of its tokens (␣ a space, ↵ a newline), with H_t from `old_logprobs_and_entropies` and the mask "
        "from `forking_token_mask`:")
    add("")
    add("| t | token | H_t | selected |")
    add("|---:|---|---:|---|")
    for j, (tok, e, s) in enumerate(zip(shown["tokens"], shown["entropy"], shown["selected"])):
        add(f"| {j} | {md_text(tok)} | {fmt(e)} | {'**yes**' if s else ''} |")
    add("")

    # --- 6
    add("## 6. Loss and update")
    add("")
    add(f"`update_policy` calls {where('backward')}, which runs {where('Policy.forward')} on the selected tokens "
        f"only and {where('policy_loss')}: r_t = exp(log pi(y_t) - log pi_old(y_t)), "
        "l_t = -min(r_t A, clip(r_t, 1 - eps_low, 1 + eps_high) A) (capped at c |A| when A < 0), "
        f"loss = sum over selected tokens of l_t / N_sel, with the denominator N_sel = the selected tokens of the "
        f"whole mini-batch = **{loss['num_tokens']}**. Some of the group's selected tokens, each through "
        "`policy_loss` alone with that denominator:")
    add("")
    add("| response | t | token | H_t | A | log pi_old | log pi | ratio r_t | clip acted | l_t | l_t / N_sel |")
    add("|---:|---:|---|---:|---:|---:|---:|---:|---|---:|---:|")
    for r, j in loss_examples(group):
        term = r["terms"][j]
        add(f"| {r['index']} | {j} | {md_text(r['tokens'][j])} | {fmt(r['entropy'][j])} | {fmt(r['advantage'])} | "
            f"{fmt(r['old_logp'][j], 6)} | {fmt(term['logp'], 6)} | {fmt(term['ratio'], 6)} | "
            f"{', '.join(term['clip']) or 'none'} | {fmt(term['contribution'] * loss['num_tokens'])} | "
            f"{fmt(term['contribution'])} |")
    add("")
    add("At the first (here the only) mini-batch the policy is still the one that sampled, so r_t = 1 up to "
        "rounding, no clip acts, and l_t = -A: a token with A > 0 lowers the loss, one with A < 0 raises it. The "
        "gradient is not zero, since d r_t = r_t d log pi(y_t): descending it raises the log-prob of the selected "
        "tokens with A > 0 and lowers that of those with A < 0, each weighted by A / N_sel.")
    add("")
    add(f"The loss over all {loss['num_tokens']} selected tokens, as `update_policy` logs it (`loss/loss`, summed "
        f"over `backward`'s micro-batches of {cfg['micro_batch_size']} rows): **{fmt(loss['update_policy'], 6)}** "
        f"(`policy_loss` on the whole batch at once: {fmt(loss['policy_loss'], 6)}; its {loss['num_tokens']} "
        f"per-token contributions summed: {fmt(loss['sum_of_contributions'], 6)}). The gradient's norm, "
        f"`train/grad_norm` = {fmt(up['train/grad_norm'])}, is "
        + ("clipped to" if cfg["grad_clip"] and up["train/grad_norm"] > cfg["grad_clip"] else "within")
        + f" --grad-clip {fmt(cfg['grad_clip'])}, and AdamW takes one step at lr {fmt(up['train/lr'])}.")
    add("")

    # --- after
    add("## After the update")
    add("")
    add("Re-scored with `old_logprobs_and_entropies`, the change of each response token's log-prob, "
        "log pi_new(y_t) - log pi_old(y_t), averaged:")
    add("")
    add("| responses | advantage | selected: mean change | selected tokens | unselected: mean change | unselected tokens |")
    add("|---|---|---:|---:|---:|---:|")
    for label, rows in (("all kept", rec["responses"]), (f"response {shown['index']} (shown above)", [shown])):
        table = delta_table(rows)
        for sign in ("A > 0", "A < 0", "A = 0"):
            if (sign, True) in table or (sign, False) in table:
                s, u = table.get((sign, True), (math.nan, 0)), table.get((sign, False), (math.nan, 0))
                add(f"| {label} | {sign} | {fmt(s[0])} | {s[1]} | {fmt(u[0])} | {u[1]} |")
    add("")
    table = delta_table(rec["responses"])
    signs = [sign for sign in ("A > 0", "A < 0") if (sign, True) in table and (sign, False) in table]
    along = all((table[sign, True][0] > 0) == (sign == "A > 0") for sign in signs)
    times = [f"{abs(table[sign, True][0] / table[sign, False][0]):.0f} times ({sign})" for sign in signs
             if table[sign, False][0] != 0]
    add(("The selected tokens of responses with A > 0 gained log-probability and those with A < 0 lost it, in the "
         "direction of their advantage" if along else "The selected tokens did **not** all move in the direction of "
         "their advantage") + (f"; their mean change is {' and '.join(times)} that of the unselected tokens" if times else "")
        + ". The unselected tokens got no gradient of their own: they moved only because they share the weights.")
    add("")

    # --- map
    add("## The step as a map of forkgrpo.py")
    add("")
    add("| step of `main()` | function | computed on this page |")
    add("|---|---|---|")
    for step, name, what in (
            ("0", "load_policy", "the policy and tokenizer"), ("0", "make_engine", f"the rollout engine (`{rec['engine']}`)"),
            ("1", "collect_rollouts", "the groups of G responses; `reward/*`, `length/*`"),
            ("1", "derive_seed", "each prompt's sampling seed"),
            ("2", "judge", "decoded responses, ended at EOS"), ("2", "correctness", "answer right (math_verify)"),
            ("2", "overlong_penalty", "the overlong penalty"), ("2", "informative_groups", "which groups are kept"),
            ("3", "make_batch", "the padded batch"), ("3", "group_advantages", "A_i"),
            ("4", "old_logprobs_and_entropies", "log pi_old and H_t of every response token; `entropy/*`"),
            ("4", "Policy.forward", "the final hidden states, then"), ("4", "logprobs_and_entropy", "log-probs and H_t"),
            ("5", "update_policy", "the step's update; `fork/*`, `loss/*`, `train/grad_norm`"),
            ("5", "forking_token_mask", "tau and the selected tokens"),
            ("6", "backward", "the loss over micro-batches"), ("6", "policy_loss", "r_t, l_t, the loss")):
        add(f"| {step} | {where(name)} | {what} |")
    add("")
    return "\n".join(L)


def figure(rec, path):
    """Top: the shown response's token entropies, tau, the selected tokens in red. Bottom: every kept token's
    change of log-prob against its entropy, selected or not, by sign of advantage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, shown = choose(rec)
    tau = rec["mask"]["tau"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7.5), constrained_layout=True,
                                      gridspec_kw={"height_ratios": [1.1, 1]})
    x = range(len(shown["tokens"]))
    top.bar(x, shown["entropy"], color=["tab:red" if s else "tab:gray" for s in shown["selected"]])
    top.axhline(tau, color="black", linestyle="--", linewidth=1, label=f"tau = {tau:.3f} (the batch's k-th largest H)")
    top.set_xticks(list(x), [visible(t) for t in shown["tokens"]], rotation=90, fontsize=7, family="monospace")
    for label in top.get_xticklabels():
        label.set_parse_math(False)  # model text: never read as mathtext
    top.set_ylabel("H_t (nats)")
    top.set_title(f"Response {shown['index']} (A = {shown['advantage']:+.3f}): token entropy; red: the forking tokens "
                  "the mask selects", fontsize=10)
    top.legend(loc="upper left", fontsize=8)
    for positive, marker in ((True, "^"), (False, "v")):
        for selected, colour in ((True, "tab:green" if positive else "tab:red"), (False, "tab:gray")):
            pts = [(e, new - old) for r in rec["responses"] if (r["advantage"] > 0) == positive
                   for e, s, old, new in zip(r["entropy"], r["selected"], r["old_logp"], r["new_logp"]) if s == selected]
            if pts:
                bottom.scatter(*zip(*pts), s=12, marker=marker, color=colour, alpha=0.7,
                               label=f"{'selected' if selected else 'unselected'}, {'A > 0' if positive else 'A <= 0'}")
    bottom.axhline(0, color="black", linewidth=0.6)
    bottom.axvline(tau, color="black", linestyle="--", linewidth=1)
    bottom.set_xlabel("H_t before the update (nats)")
    bottom.set_ylabel("log pi_new(y_t) - log pi_old(y_t)")
    bottom.set_title("After one update: every kept response token's change of log-prob", fontsize=10)
    bottom.legend(fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def compare(rec, path, command):
    """This step's COMPARED metrics beside the step-1 line of a run's metrics.jsonl."""
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    theirs = next((m for m in lines if m.get("step") == 1 and "loss/loss" in m), None)
    if theirs is None:
        raise SystemExit(f"walkthrough.py: {path} has no step-1 training line")
    ours = {**rec["rollout"], **rec["scored"], **rec["updated"]}
    return {"path": str(path), "rows": [(k, ours[k], theirs.get(k)) for k in COMPARED], "command": command}


def main(argv=None, reward_fn=None):
    """reward_fn: as forkgrpo.main's (None: math_verify's correctness); tests pass a stand-in."""
    args = parse_args(argv)
    start, load = time.perf_counter(), os.getloadavg()[0]
    cfg = forkgrpo.parse_config(["--model", args.model, "--seed", str(args.seed), "--rollout", args.rollout])
    if reward_fn is None:
        forkgrpo.check_math_verify()
        reward_fn = functools.partial(forkgrpo.correctness, timeout=cfg.verify_timeout)
    try:
        rec = first_step(cfg, reward_fn)
        rec["reward_fn"] = getattr(getattr(reward_fn, "func", reward_fn), "__name__", repr(reward_fn))
    except forkgrpo.InputError as e:
        raise SystemExit(f"walkthrough.py: error: {e}") from None
    finally:
        forkgrpo.teardown_distributed()
    rec["provenance"] = provenance()
    if args.compare:
        rec["compare"] = compare(rec, args.compare, args.compare_command)
    args.out.mkdir(parents=True, exist_ok=True)
    figure(rec, args.out / "walkthrough.png")
    seconds = time.perf_counter() - start
    command = shlex.join(["python", "experiments/walkthrough.py", *(argv if argv is not None else sys.argv[1:])])
    rec["seconds"], rec["load"] = seconds, load
    (args.out / "walkthrough.md").write_text(render(rec, command, seconds, "walkthrough.png"))
    if args.json:
        args.json.write_text(json.dumps(rec, indent=1) + "\n")
    print(f"walkthrough.py: wrote {args.out / 'walkthrough.md'} and walkthrough.png in {seconds:.0f} s")
    return rec


if __name__ == "__main__":
    main()
