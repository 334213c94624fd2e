"""bench/memory_plan.py: the parameter counts against the model cards, hand-computed sizes, the
properties any memory plan must have, and the script end to end (standard library only, no GPU)."""

import subprocess
import sys

import pytest

from conftest import ROOT, load_script

SCRIPT = ROOT / "bench" / "memory_plan.py"
mp = load_script("bench/memory_plan.py")
PAPER = mp.Settings()


@pytest.mark.parametrize("name", list(mp.MODELS))
def test_parameter_count_from_config_is_within_2_percent_of_the_model_card(name):
    m = mp.MODELS[name]
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
    for key in ("checkpoints", "layer_act", "score_layer", "sdpa_mask", "head_bwd"):
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
