#!/usr/bin/env bash
# `vlm index` throughput against open_clip encoding the same JPEG files in the same
# run with the same number of threads (issue 7): ViT-B-32 with random weights, 224
# crops, batch 32, fp32 (and bf16: vlm --precision bf16 vs torch bf16 autocast).
# Interleaved: vlm, peer, vlm, peer, ... REPS times (the order flips each rep); the
# speedup is the median of the back-to-back ratios. Both sides' figures exclude model
# loading (vlm: the embedding phase that `vlm index` times itself).
#   bench/run_index_bench.sh [REPS [N_IMAGES]]     (defaults 3, 64)
# Env: BUILD (build), PEER_PY (build-peer/venv/bin/python), THREADS (2), PRECISIONS ("f32 bf16").
# Without the peer, vlm's figures are printed alone.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${BUILD:-$ROOT/build}"
REPS="${1:-3}"
N="${2:-64}"
THREADS="${THREADS:-2}"
PRECISIONS="${PRECISIONS:-f32 bf16}"
PEER_PY="${PEER_PY:-$ROOT/build-peer/venv/bin/python}"
SHARED="${VLM_SHARED_DIR:-$ROOT/../shared}"
VLM="$BUILD/vlm"
OUT="$BUILD/index-bench"
[ -x "$VLM" ] || { echo "run_index_bench: build first ($VLM missing)" >&2; exit 1; }
export OMP_WAIT_POLICY=PASSIVE
OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-$("$ROOT/bench/peer/coretype.sh")}"
[ -n "$OPENBLAS_CORETYPE" ] && export OPENBLAS_CORETYPE || unset OPENBLAS_CORETYPE
mkdir -p "$OUT/imgs"
peer=1
if ! "$PEER_PY" -c "import torch, open_clip" >/dev/null 2>&1; then
  echo "peer: not available ($PEER_PY); run bench/peer/setup.sh. Showing vlm alone."
  peer=0
fi
CK="$OUT/vit-b-32"
[ -f "$CK/open_clip_model.safetensors" ] || "$VLM" convert --init ViT-B-32 --seed 1 --to open_clip --out "$CK" >/dev/null
# N JPEG files: copies of the two JPEGs of ../shared/data/images (1411x1411 and 640x427).
rm -f "$OUT"/imgs/*
for i in $(seq 1 "$N"); do
  if [ $((i % 2)) -eq 0 ]; then cp "$SHARED/data/images/rocket.jpg" "$OUT/imgs/$i.jpg"; else cp "$SHARED/data/images/retina.jpg" "$OUT/imgs/$i.jpg"; fi
done
files=("$OUT"/imgs/*.jpg)
med() { sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
echo "vlm index vs open_clip: ViT-B-32 (random weights), $N JPEGs, 224 crops, batch 32, $THREADS threads, $REPS interleaved reps"
printf "%-10s %14s %14s %10s\n" precision "vlm img/s" "peer img/s" speedup
for prec in $PRECISIONS; do
  : >"$OUT/v" ; : >"$OUT/p" ; : >"$OUT/r"
  pflag=""; [ "$prec" = bf16 ] && pflag="--bf16"
  for r in $(seq 1 "$REPS"); do
    v="" p=""
    for side in $([ $((r % 2)) -eq 1 ] && echo "vlm peer" || echo "peer vlm"); do
      if [ $side = vlm ]; then
        rm -f "$OUT/bench.idx"
        v=$("$VLM" --threads "$THREADS" index --model "$CK" --out "$OUT/bench.idx" --batch-size 32 --precision "$prec" \
            --quiet "$OUT/imgs" | grep -o '[0-9.]* images/s' | awk '{print $1}')
      elif [ $peer = 1 ]; then
        p=$("$PEER_PY" "$ROOT/bench/peer/index_peer.py" "$THREADS" 32 $pflag "${files[@]}" | awk '{print $6}')
      fi
    done
    echo "$v" >>"$OUT/v"
    if [ -n "$p" ]; then echo "$p" >>"$OUT/p"; awk -v a="$v" -v b="$p" 'BEGIN{print a / b}' >>"$OUT/r"; fi
    echo "  rep $r $prec: vlm ${v} img/s, peer ${p:--} img/s" >&2
  done
  vm=$(med <"$OUT/v"); pm=$( [ -s "$OUT/p" ] && med <"$OUT/p" || echo -); rm_=$( [ -s "$OUT/r" ] && med <"$OUT/r" || echo -)
  printf "%-10s %14s %14s %10s\n" "$prec" "$vm" "$pm" "$rm_"
done
echo "(peer bf16 = torch bf16 autocast with fp32 LayerNorms; target: vlm >= 1.5x the peer)"
