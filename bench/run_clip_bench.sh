#!/usr/bin/env bash
# bench/run_clip_bench.sh: vlm's CLIP benchmarks against PyTorch running open_clip
# in the same run, with medians, ratios and the issue-3 targets.
#
#   cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j2
#   bench/peer/setup.sh                 # once: the peer (Debian torch + open_clip in a venv)
#   bench/run_clip_bench.sh [REPS]      # default 7 interleaved reps per workload (~3 min)
#   F32_ONLY=1 bench/run_clip_bench.sh  # the fp32 workloads only (CPUs without bf16 GEMM kernels,
#                                       # e.g. AVX2, where the bf16 ones take most of the time)
#
# bench/clip_compare.py keeps both sides running (bench_clip --serve and
# bench/peer/clip_peer.py --serve, every model set up once) and alternates single
# calls: for each workload, vlm's call(s) and the peer's back to back, the order
# flipping each time; a speedup is the median of those back-to-back ratios.
# Both sides get 2 threads and OMP_WAIT_POLICY=PASSIVE (on this shared 2-core VM
# spinning OpenMP threads lose their core to other processes); the peer's
# OpenBLAS gets the OPENBLAS_CORETYPE of bench/peer/coretype.sh (SKYLAKEX on
# AVX-512, ZEN / HASWELL on AVX2: Debian's 0.3.21 misdetects recent CPUs). Each side's 2048^3 fp32 GEMM rate is printed, so a handicapped
# side shows. Peak memory: `vlm forward` on a ViT-B-32 checkpoint at batch 1.
# Without the peer (no venv, import failure) vlm's figures are still printed and
# the peer is skipped with a message.
# Env: BUILD (default build), PEER_PY (default build-peer/venv/bin/python), THREADS (2), F32_ONLY.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${BUILD:-$ROOT/build}"
REPS="${1:-7}"
THREADS="${THREADS:-2}"
PEER_PY="${PEER_PY:-$ROOT/build-peer/venv/bin/python}"
BENCH="$BUILD/bench/bench_clip"
VLM="$BUILD/vlm"
OUT="$BUILD/clip-bench"
PY=/usr/bin/python3; [ -x "$PY" ] || PY=python3
[ -x "$BENCH" ] && [ -x "$VLM" ] || { echo "run_clip_bench: build first ($BENCH, $VLM missing)" >&2; exit 1; }
mkdir -p "$OUT"
LOG="$OUT/raw.log"
: > "$LOG"
export OMP_WAIT_POLICY=PASSIVE
OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-$("$ROOT/bench/peer/coretype.sh")}"
[ -n "$OPENBLAS_CORETYPE" ] && export OPENBLAS_CORETYPE || unset OPENBLAS_CORETYPE

peer=1
if [ ! -x "$PEER_PY" ]; then
  echo "PEER skipped: no peer python at $PEER_PY (run bench/peer/setup.sh)" >> "$LOG"; peer=0
elif ! msg=$("$PEER_PY" -c "import torch, open_clip" 2>&1); then
  echo "PEER skipped: $PEER_PY cannot import torch/open_clip: $(echo "$msg" | tail -1)" >> "$LOG"; peer=0
fi
echo "CPU $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; threads $THREADS" >> "$LOG"

# Peak memory of ViT-B-32 inference at batch 1: `vlm forward` (image + text, batch 1).
CK="$OUT/vit-b-32"
[ -f "$CK/open_clip_model.safetensors" ] || "$VLM" convert --init ViT-B-32 --seed 1 --to open_clip --out "$CK" > /dev/null
"$PY" - "$OUT/inputs-b1.safetensors" <<'PYEOF'
import json, random, struct, sys
random.seed(7)
img = [random.gauss(0, 1) for _ in range(3 * 224 * 224)]
ids = [49406] + [random.randrange(1, 49405) for _ in range(10)] + [49407] + [0] * 65
b_img = struct.pack(f"<{len(img)}f", *img)
b_ids = struct.pack(f"<{len(ids)}q", *ids)
hdr = {"images": {"dtype": "F32", "shape": [1, 3, 224, 224], "data_offsets": [0, len(b_img)]},
       "text": {"dtype": "I64", "shape": [1, 77], "data_offsets": [len(b_img), len(b_img) + len(b_ids)]}}
h = json.dumps(hdr).encode()
h += b" " * (-len(h) % 8)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b_img + b_ids)
PYEOF
for prec in f32 bf16; do
  "$PY" - "$VLM" "$CK" "$OUT/inputs-b1.safetensors" "$OUT/out-$prec.safetensors" "$prec" >> "$LOG" <<'PYEOF'
import resource, subprocess, sys
vlm, ck, inp, out, prec = sys.argv[1:]
r = subprocess.run([vlm, "forward", "--model", ck, "--inputs", inp, "--out", out, "--precision", prec],
                   stdout=subprocess.DEVNULL)
if r.returncode == 0:
    print(f"VLM peak_rss_b1_{prec}_mb {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f}")
PYEOF
done
peak() { grep "^VLM peak_rss_b1_$1_mb" "$LOG" | awk '{print $3}'; }
args=(--vlm "$BENCH" --threads "$THREADS" --reps "$REPS")
[ -n "$(peak f32)" ] && args+=(--peak-f32 "$(peak f32)")
[ -n "$(peak bf16)" ] && args+=(--peak-bf16 "$(peak bf16)")
[ -n "${F32_ONLY:-}" ] && [ "${F32_ONLY:-}" != 0 ] && args+=(--f32-only)
[ $peer = 1 ] && args+=(--peer "$PEER_PY" "$ROOT/bench/peer/clip_peer.py")
cat "$LOG"
"$PY" "$ROOT/bench/clip_compare.py" "${args[@]}" | tee "$OUT/summary.md"
