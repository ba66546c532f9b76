#!/usr/bin/env bash
# bench/run_caption_bench.sh: CoCa captioning, vlm (KV cache, and without it) against
# open_clip's CoCa.generate (PyTorch) in the same run, coca_ViT-B-32 with random weights.
#
#   cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j2
#   PEER_PY=/path/to/python bench/run_caption_bench.sh [REPS] [IMAGES]
#
# The peer needs torch, open_clip_torch and transformers (open_clip's generate imports
# its logits processors); bench/peer/setup.sh's venv plus `pip install --no-deps
# transformers==4.30.2 huggingface_hub==0.16.4 tokenizers==0.13.3 safetensors==0.3.3
# packaging filelock pyyaml requests` is what was used. Reps alternate vlm and the
# peer; medians are compared. Both sides: 2 threads, OMP_WAIT_POLICY=PASSIVE.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${BUILD:-$ROOT/build}"
REPS="${1:-3}"
IMAGES="${2:-1}"
PEER_PY="${PEER_PY:-$ROOT/build-peer/venv/bin/python}"
export OMP_WAIT_POLICY=PASSIVE VLM_THREADS="${THREADS:-2}"
OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-$("$ROOT/bench/peer/coretype.sh")}"
[ -n "$OPENBLAS_CORETYPE" ] && export OPENBLAS_CORETYPE || unset OPENBLAS_CORETYPE
[ -x "$BUILD/bench/bench_caption" ] || { echo "run_caption_bench: build first" >&2; exit 1; }
peer=1
if ! "$PEER_PY" -c "import torch, open_clip, transformers" >/dev/null 2>&1; then
  echo "PEER skipped: $PEER_PY cannot import torch, open_clip and transformers"; peer=0
fi
c=() u=() p=()
for i in $(seq 1 "$REPS"); do
  line=$("$BUILD/bench/bench_caption" --reps 1 --images "$IMAGES" | grep '^generate')
  c+=("$(sed -E 's/.*cached ([0-9.]+) ms.*uncached.*/\1/' <<<"$line")")
  u+=("$(sed -E 's/.*uncached ([0-9.]+) ms.*/\1/' <<<"$line")")
  if [ $peer -eq 1 ]; then
    pl=$("$PEER_PY" "$ROOT/bench/peer/caption_peer.py" --reps 1 --images "$IMAGES" --threads "$VLM_THREADS")
    p+=("$(sed -E 's/.* ([0-9.]+) ms without.*/\1/' <<<"$pl")")
  fi
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mc=$(median "${c[@]}"); mu=$(median "${u[@]}")
echo "coca_ViT-B-32, $IMAGES image(s), 30 tokens, greedy, medians of $REPS (ms, image tower excluded):"
echo "  vlm cached   $mc   (runs: ${c[*]})"
echo "  vlm uncached $mu   (runs: ${u[*]})"
awk -v a="$mu" -v b="$mc" 'BEGIN {printf "  cache speedup %.2fx (target >= 3x)\n", a / b}'
if [ $peer -eq 1 ]; then
  mp=$(median "${p[@]}")
  echo "  open_clip    $mp   (runs: ${p[*]})"
  awk -v a="$mp" -v b="$mc" 'BEGIN {printf "  vlm (cached) vs open_clip generate: %.2fx faster (target >= 1.5x)\n", a / b}'
fi
