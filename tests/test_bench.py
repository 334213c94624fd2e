"""bench/vs_trl.py's summary, on synthetic runs (the GPU check's tests are in test_gpu_check.py)."""

from conftest import load_script


def _vs_trl():
    return load_script("bench/vs_trl.py")


def test_vs_trl_summary_pools_steps_and_reports_seed_ranges_and_ratios():
    vs_trl = _vs_trl()
    acc = lambda g, s: {"greedy": g, "sampled": s}  # noqa: E731
    runs = [  # two seeds per trainer; hand-picked so that every median and mean is easy to check
        {"trainer": "trl", "seed": 0, "step_s": [10, 12, 14], "generation_s": [6, 6, 6], "trained_tokens": [100, 100, 100],
         "peak_gib": 4.0, "before": acc(0.2, 0.1), "after": acc(0.3, 0.2)},
        {"trainer": "trl", "seed": 1, "step_s": [20, 20, 20], "generation_s": [8, 8, 8], "trained_tokens": [200, 200, 200],
         "peak_gib": 5.0, "before": acc(0.4, 0.1), "after": acc(0.5, 0.4)},
        {"trainer": "vllm", "seed": 0, "step_s": [4, 5, 6], "generation_s": [2, 2, 2], "trained_tokens": [100, 100, 100],
         "peak_gib": 2.0, "before": acc(0.2, 0.1), "after": acc(0.6, 0.5)},
        {"trainer": "vllm", "seed": 1, "step_s": [8, 8, 8], "generation_s": [3, 3, 3], "trained_tokens": [200, 200, 200],
         "peak_gib": 3.0, "before": acc(0.4, 0.1), "after": acc(0.8, 0.7)},
    ]
    s = vs_trl.summarize(runs)
    assert s["trl"]["step_s"] == (17, 12, 20)  # median of the 6 pooled steps [10, 12, 14, 20, 20, 20]; per-seed 12, 20
    assert s["trl"]["update_s"] == (10, 6, 12)  # pooled [4, 6, 8, 12, 12, 12]; per-seed 6, 12
    assert s["vllm"]["generation_s"] == (2.5, 2, 3)
    assert s["vllm"]["peak_gib"] == (3.0, 2.0, 3.0)  # the largest, and the range
    assert s["vllm"]["after_greedy"] == (0.7, 0.6, 0.8) and s["trl"]["before_sampled"] == (0.1, 0.1, 0.1)
    assert s["vllm"]["seeds"] == 2
    table = vs_trl.table(s, k=4).splitlines()
    step_row = next(line for line in table if line.startswith("| seconds per step"))
    # forkgrpo's median 7.0 over TRL's 17.0
    assert "7.0 [5.0, 8.0]" in step_row and f"{7 / 17:.2f}x" in step_row
    greedy_after = next(line for line in table if line.startswith("| greedy accuracy after"))
    assert "70.0% [60.0%, 80.0%]" in greedy_after and "x" not in greedy_after.split("|")[-2]  # no ratio for accuracy
