"""experiments/walkthrough.py on the tiny random model: every number of its page is what forkgrpo's functions return.

The script runs one training step and writes walkthrough.md and a JSON of its numbers; the fixture `step` runs
the same step again by separate calls of forkgrpo's functions, and each test compares one section of the page
(as printed, read back from the markdown) and of the JSON with them.
"""

import json
import math
import re
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))
sys.path.insert(0, str(ROOT))
import forkgrpo  # noqa: E402
import walkthrough  # noqa: E402
from walkthrough import fmt, md_text  # noqa: E402


def alternating_reward(responses, answers):
    """A random model never answers right: this stand-in makes every group half right, so every group is kept."""
    return torch.tensor([float(i % 2) for i in range(len(responses))])


@pytest.fixture(scope="module")
def page(tiny_model, tmp_path_factory):
    """(the JSON of the page's numbers, the page) of walkthrough.py on the tiny model."""
    out = tmp_path_factory.mktemp("walkthrough")
    walkthrough.main(["--model", str(tiny_model), "--out", str(out), "--rollout", "hf", "--json", str(out / "numbers.json")],
                     reward_fn=alternating_reward)
    assert (out / "walkthrough.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return json.loads((out / "numbers.json").read_text()), (out / "walkthrough.md").read_text()


@pytest.fixture(scope="module")
def step(tiny_model):
    """The same first step by separate calls of forkgrpo's functions: a dict of what each returned."""
    cfg = forkgrpo.parse_config(["--model", str(tiny_model), "--rollout", "hf"])
    raw, _, _ = forkgrpo.load_datasets(cfg)
    torch.manual_seed(cfg.seed)
    policy, tokenizer, _ = forkgrpo.load_policy(cfg.model, torch.device("cpu"), 1, False)
    eos = forkgrpo._eos_ids(tokenizer, policy.lm)
    problems, skipped = forkgrpo.encode_problems(raw, tokenizer, cfg.template, cfg.max_prompt_len)
    assert skipped == 0
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    stream = forkgrpo.PromptStream(problems, cfg.seed, 0)
    drawn = [raw[stream.order(0)[j]] for j in range(cfg.prompts_per_step)]
    engine = forkgrpo.HFRollout(policy, tokenizer, eos)
    groups, rollout = forkgrpo.collect_rollouts(cfg, engine, tokenizer, eos, stream, 0, 1, alternating_reward)
    batch = forkgrpo.make_batch(groups, tokenizer.pad_token_id, torch.device("cpu"), cfg.group_size, cfg.scale_by_std)
    batch, scored = forkgrpo.old_logprobs_and_entropies(policy, batch, cfg, None)
    mask = forkgrpo.forking_token_mask(batch.entropy, batch.response_mask, cfg.rho)
    with torch.no_grad():
        logp, _ = policy(batch.input_ids, mask, cfg.temperature)
    updated, _ = forkgrpo.update_policy(cfg, policy, optimizer, batch, 0, 0, 1, None)
    after, _ = forkgrpo.old_logprobs_and_entropies(policy, batch, cfg, None)
    return {"cfg": cfg, "tokenizer": tokenizer, "eos": eos, "drawn": drawn, "groups": groups, "rollout": rollout, "batch": batch,
            "scored": scored, "mask": mask, "logp": logp, "updated": updated, "new_logp": after.old_logp}


def response_tokens(step, b, what):
    """Row b's values of `what` (a (B, T-1) tensor) at its response tokens, as a list."""
    return what[b][step["batch"].response_mask[b]].tolist()


def table(page, header):
    """The rows of the markdown table whose header line starts with `header`, as lists of cells (escaped pipes kept)."""
    lines = page.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def number(cell):
    return float(cell.strip("*"))


def close(cell, value):
    """A printed number and the value it stands for agree to the digits printed."""
    return math.isclose(number(cell), value, rel_tol=1e-3, abs_tol=1e-6)


def test_prompts_rewards_and_advantages_are_collect_rollouts_and_group_advantages(page, step):
    rec, md = page
    G = step["cfg"].group_size
    rewards = torch.cat([g.rewards for g in step["groups"]])
    advantages = forkgrpo.group_advantages(rewards, G, scale_by_std=True)
    assert len(rec["responses"]) == len(rewards) == G * len(step["groups"])
    for r in rec["responses"]:
        g = step["groups"][r["group"]]
        assert r["ids"] == g.responses[r["index"]]
        assert r["reward"] == float(g.rewards[r["index"]]) and r["advantage"] == float(advantages[r["row"]])
    for row, raw in zip(table(md, "| prompt | question"), step["drawn"]):
        assert row[1:] == [md_text(walkthrough.question_text(raw), spaces=False), md_text(raw["answer"]), "yes"]
    for key in ("reward/mean", "reward/accuracy", "length/mean", "length/truncated_frac"):
        assert f"`{key}` = {fmt(step['rollout'][key])}" in md
    rows = table(md, "| response | tokens | ended at EOS")
    assert len(rows) == G
    first = step["groups"][0]
    lengths = torch.tensor([len(r) for r in first.responses])
    penalty = forkgrpo.overlong_penalty(lengths, step["cfg"].max_new_tokens, step["cfg"].overlong_cache)
    for i, row in enumerate(rows):
        ended = first.responses[i][-1] in step["eos"]
        assert row[:4] == [str(i), str(len(first.responses[i])), "yes" if ended else "no", "yes" if i % 2 else "no"]
        assert close(row[4], float(penalty[i])) and close(row[5], float(first.rewards[i]))
        assert close(row[6], float(advantages[i]))
        text = step["tokenizer"].decode(first.responses[i], skip_special_tokens=True)
        heading = f"Response {i}: r = {fmt(float(first.rewards[i]))}, A = {fmt(float(advantages[i]))}"
        assert f"{heading}\n\n{walkthrough.fenced(text)}" in md
    assert f"(here mean = {fmt(float(first.rewards.mean()))}, std = {fmt(float(first.rewards.std()))})" in md
    assert walkthrough.fenced(step["tokenizer"].decode(first.prompt)) in md


def test_entropies_tau_and_mask_are_the_scoring_pass_and_forking_token_mask(page, step):
    rec, md = page
    batch, mask = step["batch"], step["mask"]
    for r in rec["responses"]:
        assert r["entropy"] == response_tokens(step, r["row"], batch.entropy)
        assert r["selected"] == response_tokens(step, r["row"], mask)
        assert r["old_logp"] == response_tokens(step, r["row"], batch.old_logp)
    h = sorted(batch.entropy[batch.response_mask].tolist(), reverse=True)
    k = -(-len(h) // 5)  # ceil(0.2 N)
    tau = h[k - 1]  # the k-th largest entropy
    assert rec["mask"] == {"valid_tokens": len(h), "k": k, "tau": tau, "selected": int(mask.sum()),
                           "share": int(mask.sum()) / len(h)}
    assert int(mask.sum()) == sum(e >= tau for e in h)
    assert tau == pytest.approx(step["updated"]["fork/tau"]) and rec["mask"]["share"] == step["updated"]["fork/frac_selected"]
    assert (f"N = {len(h)} response tokens, k = ceil(rho N) = ceil(0.2 x {len(h)}) = {k}, tau = the k-th largest H_t = "
            f"**{fmt(tau, 6)}**") in md
    assert f"**{int(mask.sum())}** of {len(h)} tokens, a share of **{fmt(int(mask.sum()) / len(h))}**" in md
    for key in ("entropy/mean", "entropy/p50", "entropy/p80", "entropy/frac_below_0.01"):
        assert f"`{key}` = {fmt(step['scored'][key])}" in md
    shown = next(r for r in rec["responses"] if r["group"] == 0 and r["advantage"] > 0)
    rows = table(md, "| t | token | H_t | selected |")
    entropy, selected = response_tokens(step, shown["row"], batch.entropy), response_tokens(step, shown["row"], mask)
    tokens = [step["tokenizer"].decode([t]) for t in shown["ids"]]
    assert len(rows) == len(tokens)
    for j, row in enumerate(rows):
        assert row[0] == str(j) and row[1] == md_text(tokens[j]) and close(row[2], entropy[j])
        assert row[3] == ("**yes**" if selected[j] else "")
    marked = "".join(f"⟦{t}⟧" if s else t for t, s in zip(tokens, selected))
    assert walkthrough.fenced(marked) in md


def test_loss_and_its_terms_are_policy_loss_and_update_policys(page, step):
    rec, md = page
    cfg, batch, mask, logp = step["cfg"], step["batch"], step["mask"], step["logp"]
    n = int(mask.sum())
    loss, _ = forkgrpo.policy_loss(logp, batch.old_logp, batch.advantages, mask, num_tokens=n)
    assert rec["loss"]["num_tokens"] == n and rec["loss"]["update_policy"] == step["updated"]["loss/loss"]
    assert rec["loss"]["policy_loss"] == pytest.approx(float(loss), rel=1e-6)
    assert rec["loss"]["update_policy"] == pytest.approx(float(loss), rel=1e-4)
    assert f"the whole mini-batch = **{n}**" in md
    assert f"**{fmt(step['updated']['loss/loss'], 6)}** (`policy_loss` on the whole batch at once: {fmt(float(loss), 6)}" in md
    assert f"`train/grad_norm` = {fmt(step['updated']['train/grad_norm'])}" in md
    rows = table(md, "| response | t | token | H_t | A |")
    assert len(rows) == 2 * walkthrough.SHOWN_TOKENS
    for row in rows:
        b, t = int(row[0]), int(row[1])  # group 0: row b of the batch is response b
        pos = batch.response_mask[b].nonzero().flatten()[t]
        one = torch.zeros_like(mask)
        one[b, pos] = True
        assert mask[b, pos]
        loss_t, sums = forkgrpo.policy_loss(logp, batch.old_logp, batch.advantages, one, num_tokens=n)
        assert row[2] == md_text(step["tokenizer"].decode([step["groups"][0].responses[b][t]]))
        assert close(row[3], float(batch.entropy[b, pos])) and close(row[4], float(batch.advantages[b]))
        assert close(row[5], float(batch.old_logp[b, pos])) and close(row[6], float(logp[b, pos]))
        assert close(row[7], float(sums["ratio"])) and row[8] == "none"
        assert close(row[9], float(loss_t) * n) and close(row[10], float(loss_t))
    contributions = sum(r["terms"][j]["contribution"] for r in rec["responses"] for j, s in enumerate(r["selected"]) if s)
    assert contributions == pytest.approx(float(loss), rel=1e-5, abs=1e-7)


def test_change_of_logprob_after_the_update_is_the_rescored_minus_the_old(page, step):
    rec, md = page
    batch, mask, new = step["batch"], step["mask"], step["new_logp"]
    for r in rec["responses"]:
        assert r["new_logp"] == response_tokens(step, r["row"], new)
    valid = batch.response_mask
    delta, adv = new - batch.old_logp, batch.advantages[:, None].expand_as(valid)  # (B, T-1)
    rows = {(row[0], row[1]): row[2:] for row in table(md, "| responses | advantage |")}
    shown = next(b for b in range(step["cfg"].group_size) if batch.advantages[b] > 0)
    one = torch.zeros_like(valid)
    one[shown] = True
    times = []
    for label, sign, pick in (("all kept", "A > 0", adv > 0), ("all kept", "A < 0", adv < 0),
                              (f"response {shown} (shown above)", "A > 0", one)):
        sel, unsel = valid & pick & mask, valid & pick & ~mask
        row = rows[label, sign]
        assert close(row[0], float(delta[sel].mean())) and row[1] == str(int(sel.sum()))
        assert close(row[2], float(delta[unsel].mean())) and row[3] == str(int(unsel.sum()))
        times.append(f"{abs(float(delta[sel].mean() / delta[unsel].mean())):.0f} times ({sign})")
    assert f"their mean change is {times[0]} and {times[1]} that of the unselected tokens" in md
    assert float(delta[valid & (adv > 0) & mask].mean()) > 0 > float(delta[valid & (adv < 0) & mask].mean())


def test_the_page_names_the_command_the_commit_and_the_functions(page, tiny_model):
    rec, md = page
    head, dirty, _ = rec["provenance"]
    assert f"Made by `python experiments/walkthrough.py --model {tiny_model} " in md and f"commit `{head}`" in md
    assert ("the tree was clean" if not dirty else "the tree was dirty") in md
    for name, line in re.findall(r"\[`([\w.]+)`\]\(\.\./forkgrpo\.py#L(\d+)\)", md):
        obj = forkgrpo
        for part in name.split("."):
            obj = getattr(obj, part)
        source = (ROOT / "forkgrpo.py").read_text().splitlines()[int(line) - 1].lstrip()
        assert source.startswith("@") or re.match(rf"(def|class) {obj.__name__}\b", source), (name, source)


HOSTILE = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "```\n# heading\n```", "| a | b |",
           "[link](javascript:alert(1))", "**bold** _em_ `code`", "&lt;script&gt;", "\\<b>x</b>", "$x^2$ \u202e", "````"]


def test_model_text_is_rendered_inert(page, tmp_path):
    rec, _ = page
    hostile = json.loads(json.dumps(rec))
    for i, r in enumerate(hostile["responses"]):
        r["text"] = HOSTILE[i % len(HOSTILE)] + "\n" + "".join(HOSTILE)
        r["tokens"] = [HOSTILE[(i + j) % len(HOSTILE)] for j in range(len(r["tokens"]))]
    hostile["group_prompts"][0] = "".join(HOSTILE)
    for p in hostile["prompts"]:
        p["question"], p["answer"] = "".join(HOSTILE), "<script>x</script>|"
    md = walkthrough.render(hostile, "python experiments/walkthrough.py", 1.0, "walkthrough.png")
    walkthrough.figure(hostile, tmp_path / "w.png")  # mathtext off: "$x^2$" does not fail
    for text in ("".join(HOSTILE), hostile["responses"][0]["text"]):  # fenced blocks the text cannot close
        block = walkthrough.fenced(text)
        fence = block.split("text\n", 1)[0]
        assert block in md and fence not in text and block.endswith("\n" + fence)
    for cell in map(md_text, HOSTILE):  # table cells: no pipe, backtick, bracket or tag left unescaped
        assert not re.search(r"(?<!\\)[|`\[\]*_<>]", cell)
    markdown_it = pytest.importorskip("markdown_it")
    html = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").render(md)
    tags = {t.lower() for t in re.findall(r"<(/?[a-zA-Z0-9]+)", html)}
    assert tags <= {"h1", "/h1", "h2", "/h2", "p", "/p", "code", "/code", "pre", "/pre", "table", "/table", "thead",
                    "/thead", "tbody", "/tbody", "tr", "/tr", "th", "/th", "td", "/td", "strong", "/strong", "a", "/a",
                    "img"}
    assert "javascript:" not in "".join(re.findall(r'href="([^"]*)"', html))
    assert len(re.findall(r"<img ", html)) == 1 and "<script" not in html
    header = None  # every row of every table has as many cells as its header: no cell broke out
    for line in md.splitlines():
        cells = len(re.split(r"(?<!\\)\|", line)) if line.startswith("|") else None
        header = header or cells
        assert cells is None or cells == header
        header = header if cells else None
    assert html.count("<table>") == sum(1 for line in md.splitlines() if re.fullmatch(r"\|[-:|]+\|", line))
