"""bench/gpu_check.py where a GPU machine runs it: in a copy of the working tree without .cache/ (so with
its own byte-level tokenizer), its mask comparison, which ties at tau must not fail, and the pieces of its
fourth check (the FLOP count, the workload, the plan it is set beside)."""

import os
import shutil
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ROOT, load_script



def _gpu_check():
    return load_script("bench/gpu_check.py")


gpu_check = _gpu_check()


def copy_working_tree(dest):
    """What a device machine gets: the working-tree versions of the tracked files and of the untracked files
    git does not ignore; so no .cache/, no .venv/."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():  # a tracked file deleted in the working tree is not copied
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def test_gpu_check_cpu_passes_in_a_copy_without_the_cache(tmp_path):
    tree = copy_working_tree(tmp_path / "tree")
    assert not (tree / ".cache").exists() and (tree / "forkgrpo.py").is_file()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, str(tree / "bench" / "gpu_check.py"), "--cpu"], capture_output=True,
                          text=True, timeout=420, cwd=tree, env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and not line.startswith("| check")]
    assert len(rows) == 7, proc.stdout[-4000:]
    verdicts = [row.rstrip(" |").rsplit("| ", 1)[1] for row in rows]
    assert verdicts == ["ok", "measured", "ok", "ok", "ok", "ok", "formula"], rows
    assert "equal;" in rows[2] and "grad norm" in rows[3]
    # Check 4, for both micro-batch rules: the planned peak beside the measured one (n/a on CPU), tokens per
    # second, FLOP/s, finite loss; then the MFU formula.
    assert "4 rows per micro-batch" in rows[4] and "--micro-batch-tokens 320" in rows[5]
    for row in rows[4:6]:
        assert "peak n/a on CPU, plan scoring" in row and "tokens/s" in row and "GFLOP/s" in row and "grad norm" in row
    assert "10 x P_layers x tokens" in rows[6] and "peak dense bf16 FLOP/s" in rows[6]


@pytest.fixture(scope="module")
def byte_tokenizer():
    return gpu_check.fallback_tokenizer()


def test_fallback_tokenizer_has_256_bytes_then_eos_and_pad(byte_tokenizer):
    tok = byte_tokenizer
    assert len(tok) == 258 and tok.eos_token_id == 256 and tok.pad_token_id == 257
    assert tok.unk_token_id is None  # nothing can fall through to an unknown token


@settings(max_examples=300, deadline=None)
@given(st.text())  # any Unicode text but lone surrogates (which have no UTF-8): newlines, controls, emoji
def test_fallback_tokenizer_round_trips_any_text(byte_tokenizer, text):
    tok = byte_tokenizer
    ids = tok(text, add_special_tokens=False)["input_ids"]
    if "<|endoftext|>" not in text and "<|pad|>" not in text:
        assert ids == list(text.encode("utf-8"))  # token i is byte i
    assert tok.decode(ids) == text


@pytest.fixture(scope="module")
def saved_and_loaded(tmp_path_factory, byte_tokenizer):
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("byte-tokenizer")
    byte_tokenizer.save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)  # as forkgrpo loads it


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=40), min_size=1, max_size=4))
def test_fallback_tokenizer_round_trips_after_save_and_load(saved_and_loaded, texts):
    tok = saved_and_loaded
    texts = [t.replace("<|endoftext|>", "").replace("<|pad|>", "") for t in texts]
    ids = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in texts]
    assert tok.batch_decode(ids, skip_special_tokens=True) == texts


def test_fallback_tokenizer_encodes_newlines_and_non_ascii(byte_tokenizer):
    text = "Solve:\n\t2 + 2 = ?\r\nRéponse: 4 ✓ 答案 🎉\x00"
    ids = byte_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids[:7] == [ord(c) for c in "Solve:\n"] and byte_tokenizer.decode(ids) == text


def test_mask_comparison_is_same_on_many_ties_at_tau_and_different_on_a_wrong_mask():
    import forkgrpo

    g = torch.Generator().manual_seed(0)
    entropy = torch.randint(0, 8, (4, 250), generator=g).float() / 8  # 1000 values from 8: ~125 tie at each
    valid = torch.rand(4, 250, generator=g) < 0.9
    n = int(valid.sum())
    k = -(-n // 5)
    mask = forkgrpo.forking_token_mask(entropy, valid, 0.2)
    tau = torch.topk(entropy[valid], k).values[-1]
    tied = int((valid & (entropy == tau)).sum())
    assert tied > 50 and int(mask.sum()) > k  # ties at tau: the right mask keeps more than k
    same, detail = gpu_check.compare_mask(entropy, valid, k, mask)
    assert same, detail

    # topk's exactly-k mask (the comparison the check used to make) leaves out some ties: DIFFERENT.
    top = torch.zeros(valid.numel(), dtype=torch.bool)
    top[valid.flatten().nonzero()[:, 0][torch.topk(entropy[valid], k).indices]] = True
    assert not gpu_check.compare_mask(entropy, valid, k, top.view_as(valid))[0]
    # One tied token dropped, one added below tau, an invalid token added, the mask of the wrong k: all DIFFERENT.
    at_tau = (mask & (entropy == tau)).flatten().nonzero()[0, 0]
    below = (valid & (entropy < tau)).flatten().nonzero()[0, 0]
    invalid = (~valid & (entropy >= tau)).flatten().nonzero()[0, 0]
    for i in (at_tau, below, invalid):
        wrong = mask.clone().flatten()
        wrong[i] = ~wrong[i]
        assert not gpu_check.compare_mask(entropy, valid, k, wrong.view_as(mask))[0], int(i)
    assert not gpu_check.compare_mask(entropy, valid, k, forkgrpo.forking_token_mask(entropy, valid, 0.5))[0]
    assert not gpu_check.compare_mask(entropy, valid, k, mask.long())[0]  # not a bool mask


def test_mask_comparison_on_distinct_entropies_is_exactly_topk():
    import forkgrpo

    n = 2**12
    entropy = (torch.randperm(n, generator=torch.Generator().manual_seed(1)).float() / n)[None]
    valid = torch.ones_like(entropy, dtype=torch.bool)
    k = -(-n // 5)
    mask = forkgrpo.forking_token_mask(entropy, valid, 0.2)
    assert gpu_check.compare_mask(entropy, valid, k, mask)[0] and int(mask.sum()) == k
    top = torch.zeros_like(valid)
    top[0, torch.topk(entropy[0], k).indices] = True
    assert torch.equal(gpu_check.reference_mask(entropy, valid, k), top)


def test_model_flops_by_hand():
    m = gpu_check.memory_plan.Model("toy", hidden=4, intermediate=8, layers=1, heads=2, kv_heads=1, head_dim=2, vocab=10,
                                    tied=True, published_b=0.0)
    # One layer: q and o 4 x 4 each, k and v 4 x 2 each, q/k norms 2 each, MLP 3 x 4 x 8, two RMSNorms of 4.
    assert gpu_check.memory_plan.layer_params(m) == 16 + 16 + 8 + 8 + 4 + 96 + 8 == 156
    # Rows of 3 and 5 tokens, 5 response tokens of which 1 selected:
    # 10 x 156 x 8 (layers) + 10 x 1 x 4 x (9 + 25) (attention) + 2 x 10 x 4 x 5 (scoring head) + 6 x 10 x 4 x 1 (update head)
    assert gpu_check.model_flops(m, [3, 5], 5, 1) == 12480 + 1360 + 400 + 240


def test_peak_flops_names_the_card_or_none():
    assert gpu_check.peak_flops("NVIDIA H100 80GB HBM3") == 989.4e12
    assert gpu_check.peak_flops("NVIDIA H100 PCIe") == 756e12  # not the SXM figure
    assert gpu_check.peak_flops("NVIDIA H200") == 989.4e12
    assert gpu_check.peak_flops("Some GPU") is None  # MFU is then reported as n/a


@pytest.mark.parametrize("size", ["cpu", "cuda"])
def test_step_workload_is_long_tailed_with_one_row_at_the_limit(size):
    import forkgrpo

    s = gpu_check.STEP_SIZES[size]
    groups = gpu_check.step_workload(s)
    responses = [len(r) for g in groups for r in g.responses]
    assert len(groups) == s["prompts"] and all(len(g.responses) == s["group_size"] for g in groups)
    assert max(responses) == s["limit"] and min(responses) >= 1  # the worst case the plan assumes is in the batch
    assert all(len(g.prompt) == s["prompt_len"] for g in groups)
    batch = forkgrpo.make_batch(groups, 0, "cpu", s["group_size"], True)
    assert bool((batch.advantages != 0).all())  # every row gets a gradient
    if size == "cuda":  # 128 rows: the shape the plan's simulation assumes
        assert sorted(responses)[len(responses) // 2] < s["limit"] / 2
        assert responses.count(s["limit"]) >= len(responses) // 20


def test_planned_peaks_are_the_memory_plans_at_w_1_without_context():
    mp = gpu_check.memory_plan
    s = gpu_check.STEP_SIZES["cuda"]
    score, update = gpu_check.planned(s, 0)
    settings = mp.Settings(group_size=16, prompts_per_step=8, max_new_tokens=4096, max_prompt_len=256, micro_batch_size=8,
                           mini_batches=2, gpus_per_node=1, context_gib=0.0, nccl_gib=0.0)
    p = mp.plan(s["model"], "H100-80GB", 1, settings, 1)
    assert (score, update) == (p["score_peak"], max(p["update_peak"], p["optim_peak"]))
    # float32 weights, gradients and AdamW of 1.72B parameters (27.5 GiB) and the activations fit one 80 GB GPU
    assert update < 0.9 * 80e9
    same_worst_case = gpu_check.planned(s, 8 * (256 + 4096))
    assert same_worst_case[0] >= score and same_worst_case[1] - update < 0.01 * 2**30  # only the head's rows differ


def test_a_check_that_raises_is_a_failed_row_not_a_lost_table():
    rows = []

    def out_of_memory():
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")

    assert gpu_check.guarded("4. scoring pass and update", out_of_memory, rows) is False
    assert rows == [("4. scoring pass and update", "raised", "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
                     "FAILED")]
    assert gpu_check.guarded("ok", lambda: True, rows) is True and len(rows) == 1
