#!/usr/bin/env bash
# bench/peer/setup.sh: installs the PyTorch peer of bench_clip (idempotent).
#
# Only Debian packages and PyPI are reachable here, and PyPI's torch wheels pull
# multi-GB CUDA dependencies, so the peer is Debian's torch 1.13.1 (for
# /usr/bin/python3) with OpenBLAS as the BLAS (Debian's default libblas3 is the
# slow reference BLAS) and open_clip_torch 2.24.0 from PyPI in a venv with
# --system-site-packages (2.24 is the last release that runs on torch 1.13
# here; installed --no-deps with the pure-Python modules it imports).
#
#   bench/peer/setup.sh            # needs root for apt-get (skipped if installed)
#   PEER_VENV=/path bench/peer/setup.sh
#   INTEROP=1 bench/peer/setup.sh  # also transformers 4.30.2 + safetensors, for
#                                  # bench/peer/interop_check.py
#
# Prints "peer ready: <python>" on success; exit 1 with a message otherwise.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
VENV="${PEER_VENV:-$ROOT/build-peer/venv}"
DEBS="python3-torch python3-torchvision python3-pil python3-regex python3-venv python3-pip libopenblas0-openmp"
PIPS="open_clip_torch==2.24.0 ftfy==6.3.1 wcwidth==0.2.13 tqdm==4.67.1"

missing=""
for p in $DEBS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" != 0 ]; then echo "peer setup: need root to apt-get install:$missing" >&2; exit 1; fi
  echo "peer setup: apt-get install$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends $missing >/dev/null 2>&1 ||
    { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends $missing >/dev/null; } ||
    { echo "peer setup: apt-get install failed" >&2; exit 1; }
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "peer setup: venv $VENV"
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi
if ! "$VENV/bin/python" -c "import open_clip, ftfy, tqdm" >/dev/null 2>&1; then
  echo "peer setup: pip install $PIPS"
  "$VENV/bin/pip" install -q --no-deps $PIPS || { echo "peer setup: pip install failed" >&2; exit 1; }
fi
# transformers 4.30.2: the last release before its CLIP eos pooling change, and one that runs on
# torch 1.13; tokenizers 0.13.3 has a wheel for this Python, huggingface_hub 0.16.4 fits both
IPIPS="transformers==4.30.2 tokenizers==0.13.3 huggingface_hub==0.16.4 safetensors==0.4.5 filelock==3.16.1 packaging==24.2 fsspec==2024.10.0"
if [ "${INTEROP:-0}" = 1 ] &&
   ! "$VENV/bin/python" -c "import transformers, safetensors, packaging" >/dev/null 2>&1; then
  echo "peer setup: pip install $IPIPS"
  "$VENV/bin/pip" install -q --no-deps $IPIPS || { echo "peer setup: pip install failed" >&2; exit 1; }
fi
"$VENV/bin/python" -c "import torch, open_clip" || { echo "peer setup: import failed" >&2; exit 1; }
echo "peer ready: $VENV/bin/python"
