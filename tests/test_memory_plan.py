"""bench/memory_plan.py: the parameter counts against the model cards, hand-computed sizes, the
properties any memory plan must have, and the script end to end (standard library only, no GPU)."""

import subprocess
import sys

import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ROOT, load_script

SCRIPT = ROOT / "bench" / "memory_plan.py"
mp = load_script("bench/memory_plan.py")
PAPER = mp.Settings()


@pytest.mark.parametrize("name", [*mp.MODELS, *mp.OTHER_MODELS])
def test_parameter_count_from_config_is_within_2_percent_of_the_model_card(name):
    m = {**mp.MODELS, **mp.OTHER_MODELS}[name]
    computed = mp.total_params(m) / 1e9
    assert abs(computed - m.published_b) / m.published_b < 0.02, (computed, m.published_b)


def test_qwen3_8b_layer_and_root_parameters_by_hand():
    m = mp.MODELS["Qwen3-8B"]
    # q and o: 4096 x 4096 each; k and v: 4096 x 1024 each; gate, up, down: 4096 x 12288 each;
    # q_norm and k_norm: 128 each; two RMSNorms: 4096 each.
    layer = 2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 12288 + 2 * 128 + 2 * 4096
    assert mp.layer_params(m) == layer == 192_946_432
    assert mp.root_params(m) == 2 * 151936 * 4096 + 4096  # untied embeddings and head, final norm
    assert mp.total_params(m) == 36 * layer + 2 * 151936 * 4096 + 4096 == 8_190_735_360


def test_kv_cache_bytes_per_token_by_hand():
    # K and V, bf16, 8 KV heads of 128: 4 KiB per layer per token.
    assert mp.kv_bytes_per_token(mp.MODELS["Qwen3-8B"]) == 2 * 36 * 8 * 128 * 2 == 147_456
    assert mp.kv_bytes_per_token(mp.MODELS["Qwen3-32B"]) == 64 * 4096 == 262_144


@pytest.mark.parametrize("name", list(mp.MODELS))
@pytest.mark.parametrize("gpu", list(mp.GPUS))
def test_sharded_state_per_gpu_falls_and_kv_cache_rises_as_gpus_rise(name, gpu):
    m = mp.MODELS[name]
    plans = [mp.plan(m, gpu, nodes, PAPER, 1) for nodes in (1, 2, 4, 8, 16)]
    for small, big in zip(plans, plans[1:]):
        state = lambda p: p["params"] + p["grads"] + p["adam"]  # noqa: E731
        assert state(big) < state(small)
        assert big["update_peak"] < small["update_peak"]
        assert big["kv_cache"] >= small["kv_cache"]
        assert big["util"] >= small["util"]
    # twice the GPUs, half the state: 16 bytes per parameter in all
    assert plans[0]["params"] + plans[0]["grads"] + plans[0]["adam"] == pytest.approx(16 * mp.total_params(m) / 8)


@pytest.mark.parametrize("name", list(mp.MODELS))
def test_training_peak_falls_with_the_micro_batch_and_activations_do_not_depend_on_gpus(name):
    m = mp.MODELS[name]
    peaks = [mp.plan(m, "H200-141GB", 2, mp._with(PAPER, micro_batch_size=b), 1)["update_peak"] for b in (4, 2, 1)]
    assert peaks[0] > peaks[1] > peaks[2]
    one, four = (mp.plan(m, "H100-80GB", n, PAPER, 1) for n in (1, 4))
    for key in ("checkpoints", "layer_act", "score_layer", "head_bwd"):
        assert one[key] == four[key]


@pytest.mark.parametrize("name", list(mp.MODELS))
@pytest.mark.parametrize("gpu", list(mp.GPUS))
@pytest.mark.parametrize("tp", [1, 2, 4, 8])
def test_vllm_budget_leaves_room_for_the_trainer_and_holds_its_weights(name, gpu, tp):
    p = mp.plan(mp.MODELS[name], gpu, 4, PAPER, tp)
    assert p["rollout_peak"] <= p["usable"]
    if p["kv_cache"] > 0:
        assert p["util"] * mp.GPUS[gpu] == pytest.approx(p["vllm_weights"] + p["vllm_workspace"] + p["kv_cache"])
    assert p["vllm_asleep"] == 0  # sleep level 2


@pytest.mark.parametrize("name", list(mp.MODELS))
def test_update_peak_is_affine_in_the_sequence_length_so_no_t_squared_mask_is_counted(name):
    # No attention mask: every training term is linear in the tokens of a micro-batch. The (B, 1, T, T) mask
    # (or SDPA's bias) that a padding mask made transformers build would add a B x T^2 term.
    m = mp.MODELS[name]
    peaks = [mp.plan(m, "H200-141GB", 2, mp._with(PAPER, max_new_tokens=t), 1)["update_peak"] for t in (8192, 16384, 24576)]
    assert peaks[2] - peaks[1] == pytest.approx(peaks[1] - peaks[0], rel=1e-9)


def test_more_tensor_parallelism_frees_memory_for_the_kv_cache():
    m = mp.MODELS["Qwen3-32B"]
    kv = [mp.plan(m, "H100-80GB", 2, PAPER, tp)["kv_cache"] for tp in (1, 2, 4, 8)]
    assert kv == sorted(kv) and kv[0] < kv[-1]


def test_headline_conclusions():
    # Pinned so that a change to the arithmetic that flips a conclusion shows here and in docs/memory.md.
    eight, big = mp.MODELS["Qwen3-8B"], mp.MODELS["Qwen3-32B"]
    as_is = mp.plan(eight, "H200-141GB", 1, PAPER, 1)
    assert as_is["fits_train"] and as_is["fits_rollout"]  # the paper's 8B command on one H200 node
    assert not mp.plan(eight, "H100-80GB", 1, PAPER, 1)["fits_train"]  # ... but not on one H100 node
    mb, _, p = mp.recommend(big, "H100-80GB", 1, PAPER)
    assert mb == 1 and not p["fits_train"]  # 32B needs more than one H100 node
    mb, _, p = mp.recommend(big, "H100-80GB", 2, PAPER)
    assert mb == 1 and p["fits_train"] and p["fits_rollout"]


def test_script_prints_a_table_for_each_model_and_its_help():
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "## What fits where" in out
    for name in mp.MODELS:
        assert f"## {name}, per GPU" in out
        table = out.split(f"## {name}, per GPU")[1].split("\n## ")[0]
        rows = [line for line in table.splitlines() if line.startswith("| ")]
        assert len(rows) >= 30 and all(line.count("|") == rows[0].count("|") for line in rows)
    helped = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "--micro-batch-size" in helped.stdout
    bad = subprocess.run([sys.executable, str(SCRIPT), "--nodes", "0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2


def test_docs_page_holds_the_scripts_current_output():
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=60, cwd=ROOT).stdout
    doc = (ROOT / "docs" / "memory.md").read_text()
    stale = [line for line in out.splitlines() if line.startswith("| ") and line not in doc]
    assert not stale, f"docs/memory.md is stale: rerun python3 bench/memory_plan.py; first stale row: {stale[0]}"


# ---- micro-batches by token budget ---------------------------------------------------------------------

lengths_st = st.lists(st.integers(1, 5000), min_size=1, max_size=80)


@settings(max_examples=300, deadline=None)
@given(lengths_st, st.integers(1, 8), st.integers(0, 40000))
def test_restated_micro_batches_equal_forkgrpos(lengths, size, max_tokens):
    import forkgrpo

    assert mp.micro_batches(lengths, size, max_tokens) == forkgrpo.micro_batches(lengths, size, max_tokens)


@settings(max_examples=300, deadline=None)
@given(lengths_st, st.integers(1, 8), st.integers(1, 40000))
def test_a_budget_micro_batch_never_pads_past_the_budget_or_its_one_longer_row(lengths, size, budget):
    # What the plan's N = max(budget, T) assumes, on forkgrpo's own function.
    import forkgrpo

    for part in forkgrpo.micro_batches(lengths, size, budget):
        longest = max(lengths[i] for i in part)
        assert len(part) * longest <= budget or len(part) == 1


@settings(max_examples=300, deadline=None)
@given(lengths_st, st.integers(1, 8))
def test_budget_of_size_times_longest_row_never_needs_more_micro_batches_or_a_wider_one(lengths, size):
    # The fixed rule's worst micro-batch is size x the longest row; a budget of exactly that holds the same worst
    # case, and since each budget micro-batch takes at least `size` rows, it never makes more micro-batches.
    import forkgrpo

    budget = size * max(lengths)
    fixed, packed = forkgrpo.micro_batches(lengths, size), forkgrpo.micro_batches(lengths, size, budget)
    assert len(packed) <= len(fixed)
    assert max(len(p) * max(lengths[i] for i in p) for p in packed) <= budget


@pytest.mark.parametrize("name", list(mp.MODELS))
@pytest.mark.parametrize("mb", [1, 2, 4])
def test_budget_of_micro_batch_times_t_holds_the_fixed_rules_activations_and_only_more_head_rows(name, mb):
    # Same padded tokens N: every activation term is the same; only the LM head's rows can be more (a budget
    # micro-batch of short rows can be all response tokens, n <= N; the fixed rule's n is mb x max_new_tokens).
    m = mp.MODELS[name]
    fixed = mp.plan(m, "H100-80GB", 2, mp._with(PAPER, micro_batch_size=mb), 1)
    budget_s = mp._with(PAPER, micro_batch_size=mb, micro_batch_tokens=mb * PAPER.seq_len)
    budget = mp.plan(m, "H100-80GB", 2, budget_s, 1)
    for key in ("checkpoints", "layer_act", "layer_bwd", "score_layer", "gathered", "batch", "optim_peak", "sync_peak"):
        assert budget[key] == fixed[key], key
    extra = 4 * m.hidden * (budget_s.head_tokens - mb * PAPER.max_new_tokens)  # the head's saved rows and their gradient
    assert 0 <= budget["train_peak"] - fixed["train_peak"] <= extra
    assert extra / mp.GiB < 0.5  # a few hundred MiB at most, next to tens of GiB of activations


@pytest.mark.parametrize("name", list(mp.MODELS))
def test_peak_rises_with_the_budget_and_a_budget_below_one_row_costs_one_row(name):
    m = mp.MODELS[name]
    T = PAPER.seq_len
    peaks = [mp.plan(m, "H200-141GB", 4, mp._with(PAPER, micro_batch_tokens=b), 1)["update_peak"] for b in (T, 2 * T, 3 * T)]
    assert peaks[0] < peaks[1] < peaks[2]
    one_row = mp.plan(m, "H200-141GB", 4, mp._with(PAPER, micro_batch_tokens=T // 2), 1)
    assert one_row["update_peak"] == peaks[0]  # a row longer than the budget runs alone


@pytest.mark.parametrize("name", list(mp.MODELS))
@pytest.mark.parametrize("gpu", list(mp.GPUS))
@pytest.mark.parametrize("nodes", [1, 2, 4, 16])
def test_picked_budget_fits_and_is_the_largest_that_does(name, gpu, nodes):
    m = mp.MODELS[name]
    mb, tp, fixed = mp.recommend(m, gpu, nodes, PAPER)
    budget = mp.pick_budget(m, gpu, nodes, PAPER, tp)
    at = lambda b: mp.plan(m, gpu, nodes, mp._with(PAPER, micro_batch_tokens=b), tp)  # noqa: E731
    if not budget:
        assert not at(PAPER.seq_len)["fits_train"] and not fixed["fits_train"]
        return
    assert budget % PAPER.budget_step == 0 and budget >= PAPER.seq_len
    assert at(budget)["fits_train"]
    cap = mp.rows_per_mini_batch(nodes, PAPER) * PAPER.seq_len
    assert budget + PAPER.budget_step > cap or not at(budget + PAPER.budget_step)["fits_train"]
    if fixed["fits_train"]:  # it never holds fewer tokens than the fixed rule's pick
        assert budget >= min(mb * PAPER.seq_len, cap) - PAPER.budget_step


def test_long_tailed_lengths_have_the_papers_shape():
    lengths = mp.long_tailed_lengths(20000, 20480, random.Random(0))
    assert min(lengths) >= 1 and max(lengths) == 20480
    assert abs(statistics.median(lengths) - 20480 / 4) < 0.05 * 20480 / 4  # median about a quarter of the limit
    assert abs(lengths.count(20480) / len(lengths) - 0.1) < 0.01  # a tenth at the limit


def test_token_budget_table_on_paper_conclusions():
    # Pinned so that a change that flips what docs/memory.md says about the budget shows here.
    eight = mp.MODELS["Qwen3-8B"]
    assert mp.pick_budget(eight, "H100-80GB", 1, PAPER, 2) > 3 * PAPER.seq_len  # > 3 full rows where the fixed rule takes 2
    sim = mp.simulate(1, PAPER, 2, mp.pick_budget(eight, "H100-80GB", 1, PAPER, 2))
    assert sim["budget"]["micro_batches"] < sim["fixed"]["micro_batches"] / 3
    assert sim["budget"]["padding"] < sim["fixed"]["padding"]
    assert not mp.pick_budget(mp.MODELS["Qwen3-32B"], "H100-80GB", 1, PAPER, 8)  # nothing fits 32B on one H100 node


def test_script_plans_a_given_budget():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--models", "Qwen3-8B", "--nodes", "1", "--micro-batch-tokens", "61440"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "--micro-batch-tokens 61440, vLLM TP 1" in proc.stdout and "| worst micro-batch, padded tokens N | 61,440 |" in proc.stdout
