"""experiments/: the ablation's aggregation and the run plots, on small synthetic runs."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "experiments"))
import ablation  # noqa: E402
import plot  # noqa: E402


def fake_run(folder, greedy, sampled, entropy, truncated, frac, tokens, steps=ablation.STEPS):
    """A metrics.jsonl shaped like forkgrpo's: evals at 0, 4 and the last step, a train line per step."""
    folder.mkdir(parents=True)
    lines = []
    for step in range(steps + 1):
        if step:
            lines.append({"step": step, "reward/mean": 0.0, "reward/accuracy": step / 10, "length/mean": 30.0,
                          "length/truncated_frac": truncated if step == steps else 0.9, "loss/loss": 0.1,
                          "entropy/mean": entropy if step == steps else 9.0, "fork/frac_selected": frac,
                          "train/tokens": tokens[step - 1], "time/step": 1.0})
        if step in (0, 4, steps):
            lines.append({"step": step, "eval/acc_greedy": greedy if step == steps else 0.25,
                          "eval/acc@1": sampled if step == steps else 0.1})
    text = "".join(json.dumps(m) + "\n" for m in lines)
    (folder / "metrics.jsonl").write_text(text + '{"step": 9, "loss/lo')  # and a line cut short by a kill


def test_ablation_table_is_mean_min_max_over_seeds_of_each_arms_final_figures(tmp_path):
    tokens = [100.0] * ablation.STEPS
    fake_run(tmp_path / "top20-seed0", 0.50, 0.40, 0.30, 0.10, 0.2, tokens)
    fake_run(tmp_path / "top20-seed1", 0.60, 0.30, 0.50, 0.00, 0.2, [200.0] * ablation.STEPS)
    fake_run(tmp_path / "all-seed0", 0.45, 0.35, 0.20, 0.05, 1.0, tokens)
    (tmp_path / "all-seed0" / "command.json").write_text(json.dumps({"commit": "abc123"}))
    table = ablation.aggregate(tmp_path)
    assert list(table) == ["top20", "all"]  # arms in the script's order; absent arms are left out
    top = table["top20"]
    assert top["seeds"] == [0, 1]
    assert top["greedy_start"] == pytest.approx((0.25, 0.25, 0.25))
    assert top["greedy"] == pytest.approx((0.55, 0.50, 0.60))
    assert top["sampled"] == pytest.approx((0.35, 0.30, 0.40))
    assert top["entropy"] == pytest.approx((0.40, 0.30, 0.50))
    assert top["truncated"] == pytest.approx((0.05, 0.00, 0.10))
    assert top["grad_tokens"] == pytest.approx((30.0, 20.0, 40.0))  # 0.2 of 100 and of 200 tokens
    assert table["all"]["grad_tokens"] == pytest.approx((100.0, 100.0, 100.0))
    md = ablation.markdown(table, tmp_path)
    assert "| `top20` | 0, 1 | 25.0% [25.0%, 25.0%] | 55.0% [50.0%, 60.0%] | 35.0% [30.0%, 40.0%] |" in md
    assert "abc123" in md and "`eval/acc@1`" in md


def test_ablation_keeps_a_finished_run_and_redoes_an_unfinished_one(tmp_path):
    fake_run(tmp_path / "done", 0.5, 0.4, 0.3, 0.1, 0.2, [100.0] * ablation.STEPS)
    fake_run(tmp_path / "cut", 0.5, 0.4, 0.3, 0.1, 0.2, [100.0] * 3, steps=3)
    assert ablation.finished(tmp_path / "done")
    assert not ablation.finished(tmp_path / "cut") and not ablation.finished(tmp_path / "missing")


def test_ablation_commands_differ_only_in_the_arms_flags_and_the_seed():
    a, b = ablation.command("top20", 0, "x"), ablation.command("bottom80", 1, "x")
    assert a[:2] == ["python", "forkgrpo.py"] and "--rho" in a and a[a.index("--rho") + 1] == "0.2"
    assert b[b.index("--fork-mode") + 1] == "bottom" and b[b.index("--seed") + 1] == "1"
    strip = lambda c: [x for x in c if x not in ("--fork-mode", "bottom", "--rho", "0.2", "0.8", "0", "1")]
    assert strip(a) == strip(b)


def test_ablation_figure_draws_each_seed_thin_and_each_arms_mean_thick(tmp_path):
    for seed, g in ((0, 0.4), (1, 0.6)):
        fake_run(tmp_path / f"top20-seed{seed}", g, 0.3, 0.3, 0.1, 0.2, [100.0] * ablation.STEPS)
    fig = ablation.figure(tmp_path, tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = fig.axes[0].get_lines()
    assert len(lines) == 3  # two seeds and their mean
    mean = lines[2]
    assert list(mean.get_xdata()) == [0, 4, 8] and mean.get_ydata()[-1] == pytest.approx(0.5)
    assert mean.get_linewidth() > lines[0].get_linewidth()


def test_plot_writes_a_png_with_one_labelled_line_per_run_in_each_panel(tmp_path):
    runs = []
    for name in ("a", "b", "c"):
        fake_run(tmp_path / name, 0.5, 0.4, 0.3, 0.1, 0.2, [100.0] * ablation.STEPS)
        runs.append(plot.read_metrics(tmp_path / name))
    fig = plot.plot_runs(runs, ["a", "b", "c"], tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    accuracy = fig.axes[0]  # held-out accuracy: greedy and sampled per run
    assert [t.get_text() for t in accuracy.get_legend().get_texts()] == ["a", "b", "c"]
    assert len(accuracy.get_lines()) == 6
    train = fig.axes[1]
    assert len(train.get_lines()) == 3
    assert list(train.get_lines()[0].get_ydata()) == pytest.approx([s / 10 for s in range(1, ablation.STEPS + 1)])


def test_plot_draws_every_eval_set_of_a_run_in_its_own_colour(tmp_path):
    lines = [{"step": 0, **{f"eval/{n}/{k}": v for n in ("aime24", "math500") for k, v in (("acc_greedy", 0.1), ("mean@4", 0.05))}},
             {"step": 1, "reward/accuracy": 0.5},
             {"step": 2, **{f"eval/{n}/{k}": v for n in ("aime24", "math500") for k, v in (("acc_greedy", 0.3), ("mean@4", 0.2))}}]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
    fig = plot.plot_runs([plot.read_metrics(tmp_path / "run")], ["run"], tmp_path / "curves.png")
    accuracy = fig.axes[0]
    assert [t.get_text() for t in accuracy.get_legend().get_texts()] == ["run aime24", "run math500"]
    assert len(accuracy.get_lines()) == 4 and len({line.get_color() for line in accuracy.get_lines()}) == 2
    assert list(accuracy.get_lines()[0].get_ydata()) == [0.1, 0.3]


def test_plot_refuses_a_folder_without_metrics(tmp_path):
    with pytest.raises(SystemExit, match="no such file"):
        plot.read_metrics(tmp_path)


# --- experiments/entropy.py and overlap.py on the tiny random model --------------------------

import html as html_lib  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402

import torch  # noqa: E402

import entropy  # noqa: E402
import overlap  # noqa: E402


@pytest.fixture(scope="module")
def entropy_report(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("entropy")
    entropy.main(["--model", str(tiny_model), "--out", str(out), "--rollout", "hf", "--n-prompts", "3",
                  "--samples", "2", "--max-new-tokens", "10", "--min-count", "1", "--temperature", "0.7"])
    records = [json.loads(line) for line in (out / "tokens.jsonl").read_text().splitlines()]
    return out, records


def naive_entropies(model_dir, prompt_ids, response_ids, temperature):
    """H_t of softmax(z_t / T) from the full logits of one sequence, at its response positions."""
    from transformers import AutoModelForCausalLM
    lm = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    ids = torch.tensor([prompt_ids + response_ids])
    with torch.no_grad():
        logits = lm(ids).logits[0, len(prompt_ids) - 1 : -1].double() / temperature
    logp = torch.log_softmax(logits, -1)
    return -(logp.exp() * logp).sum(-1)


def test_entropy_report_saves_each_response_tokens_entropy_as_the_full_logits_give_it(entropy_report, tiny_model):
    out, records = entropy_report
    assert len(records) == 6 and {r["prompt_index"] for r in records} == {0, 1, 2}
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny_model)
    for r in records[:3]:
        assert len(r["entropy"]) == len(r["response_ids"]) == len(r["tokens"]) > 0
        assert r["tokens"] == [tok.decode([t]) for t in r["response_ids"]]
        naive = naive_entropies(tiny_model, r["prompt_ids"], r["response_ids"], 0.7)
        torch.testing.assert_close(torch.tensor(r["entropy"], dtype=torch.float64), naive, rtol=1e-5, atol=1e-5)


def test_entropy_summary_percentiles_are_the_forking_masks_thresholds(entropy_report):
    out, records = entropy_report
    summary = json.loads((out / "summary.json").read_text())
    h = sorted((e for r in records for e in r["entropy"]), reverse=True)
    assert summary["n_tokens"] == len(h)
    for q in (50, 80, 95):  # the ceil((1 - q/100) N)-th largest, as the trainer's entropy/pq (exact integers)
        k = -(-(100 - q) * len(h) // 100)
        assert summary[f"p{q}"] == pytest.approx(h[k - 1], abs=1e-6)
    assert summary["mean"] == pytest.approx(sum(h) / len(h))
    assert summary["frac_below_0.01"] == sum(e < 0.01 for e in h) / len(h)
    assert summary["temperature"] == 0.7
    for name in ("entropy_hist.png", "example.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| token | mean entropy | count |" in (out / "top_tokens.md").read_text()


ALLOWED_TAGS = {"!doctype", "meta", "title", "/title", "style", "/style", "h1", "/h1", "h2", "/h2", "p", "/p",
                "div", "/div", "span", "/span"}


def test_examples_html_holds_no_unescaped_model_text(entropy_report):
    out, records = entropy_report
    page = (out / "examples.html").read_text()
    assert {t.split()[0].lower() for t in re.findall(r"<([^\s>]+)", page)} <= ALLOWED_TAGS
    for r in records[:4]:
        for t in r["tokens"]:
            assert html_lib.escape(t) in page
    hostile = [{"prompt_index": 0, "prompt_text": "<img src=x onerror=alert(1)>",
                "tokens": ["<script>", "alert('x')", "</script>", "' onmouseover='bad", "&amp;"],
                "entropy": [0.1, 2.0, 0.3, 1.5, 0.0]}]
    page = entropy.render_html(hostile, tau=1.0, top=2.0, title="<b>model</b>")
    assert "<script>" not in page and "<img" not in page and "<b>" not in page
    assert "&lt;script&gt;" in page and "&#x27; onmouseover=&#x27;bad" in page and "&amp;amp;" in page
    assert page.count("class='f'") == 2  # the two tokens at or above tau are boxed


def test_overlap_of_a_model_with_itself_is_one_and_with_another_matches_a_topk_count(entropy_report, tiny_model,
                                                                                    tmp_path):
    out, records = entropy_report
    from transformers import LlamaForCausalLM
    other = tmp_path / "other"
    torch.manual_seed(5)
    LlamaForCausalLM(LlamaForCausalLM.config_class.from_pretrained(tiny_model)).save_pretrained(other)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (Path(tiny_model) / name).exists():
            (other / name).write_bytes((Path(tiny_model) / name).read_bytes())
    overlap.main(["--tokens", str(out / "tokens.jsonl"), "--models", str(tiny_model), str(other), str(tiny_model),
                  "--out", str(tmp_path / "ov"), "--rho", "0.25"])
    result = json.loads((tmp_path / "ov" / "overlap.json").read_text())
    assert result["overlap_with_first"][0] == result["overlap_with_first"][2] == 1.0
    # Independently: full-logits entropies, top k = ceil(rho N) by torch.topk.
    h = [torch.cat([naive_entropies(m, r["prompt_ids"], r["response_ids"], 0.7) for r in records])
         for m in (tiny_model, other)]
    k = -(-len(h[0]) // 4)  # ceil(N / 4)
    first, second = (set(torch.topk(x, k).indices.tolist()) for x in h)
    assert result["overlap_with_first"][1] == pytest.approx(len(first & second) / k, abs=1e-9)
    assert 0 < result["overlap_with_first"][1] < 1
    assert (tmp_path / "ov" / "entropy_change.png").is_file() and "| model |" in (tmp_path / "ov" / "overlap.md").read_text()


def test_rewarded_log_holds_every_scored_response_with_the_trainers_reward_phase_and_step(tiny_model, tmp_path):
    """experiments/rewarded.py: the log has every response the trainer scored, tagged right, and its
    counts agree with the trainer's own metrics."""
    import rewarded

    out = tmp_path / "run"
    rewarded.main(["--out", str(out), "--", "--model", str(tiny_model), "--rollout", "hf", "--steps", "2",
                   "--group-size", "4", "--prompts-per-step", "2", "--max-new-tokens", "8", "--overlong-cache", "4",
                   "--eval-size", "3", "--eval-samples", "2", "--no-dynamic-sampling"])
    rows = [json.loads(line) for line in (out / "responses.jsonl").read_text().splitlines()]
    order = [(r["phase"], r["step"]) for r in rows]
    expected = ([("greedy", 0)] * 3 + [("sampled", 0)] * 6 + [("train", 1)] * 8 + [("train", 2)] * 8
                + [("greedy", 2)] * 3 + [("sampled", 2)] * 6)
    assert order == expected
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for m in metrics:
        if "reward/accuracy" in m:
            mine = [r["reward"] for r in rows if r["phase"] == "train" and r["step"] == m["step"]]
            assert sum(mine) / len(mine) == pytest.approx(m["reward/accuracy"])
        if "eval/acc_greedy" in m:
            mine = [r["reward"] for r in rows if r["phase"] == "greedy" and r["step"] == m["step"]]
            assert sum(mine) / len(mine) == pytest.approx(m["eval/acc_greedy"])
    assert (out / "responses.md").read_text().count("\n| ") == 6  # a row per (phase, step)


def test_rewarded_summary_counts_silent_answers_and_right_values_without_a_full_stop():
    import rewarded

    rows = [{"phase": "greedy", "step": 8, "answer": "30", "reward": 0.0, "response": "Grace buys 6 x 5 = 30 marbles"},
            {"phase": "greedy", "step": 8, "answer": "4", "reward": 0.0, "response": "Grace shares 8 cards equally among 2 friends."},
            {"phase": "greedy", "step": 8, "answer": "9", "reward": 0.0, "response": "Dev has 7 + 2 = 11 books"},
            {"phase": "greedy", "step": 8, "answer": "6", "reward": 1.0, "response": "So each friend gets 36 / 6 = 6 coins."}]
    row = rewarded.summary(rows).splitlines()[-1]
    assert row == "| greedy | 8 | 4 | 1 (25.0%) | 34 | 1 | 1 |"
