#!/usr/bin/env bash
# Run on a GPU machine (the device tool), in the repository root's copy:
#   1. build with CUDA (build-gpu/),
#   2. the GPU tests for real (test_cuda, test_cuda_ops, test_cuda_clip,
#      test_cuda_coca, open_clip's CLIP and CoCa training trajectories with the
#      trainer on the GPU), each with its failures and per-op summary shown,
#   3. vlm train --device cuda on the shapes set against the same run on the CPU,
#      CLIP and CoCa (tests/e2e/train_gpu.sh), then the rest of the ctest suite,
#   4. bench/bench_gpu (ViT-B/32 training step and image encoding at batch 256,
#      bf16 GEMM rate, MFU) and its PyTorch peer bench/peer/gpu_peer.py, side by
#      side with ratios,
#   5. a summary. A failing step never stops the later ones. Within 8 minutes.
# Full logs go to logs-gpu/ and, when the device tool's $OUT is set, to $OUT.
#
# Prepare here first (both are git-ignored; name them in the device tool's carry):
#   tests/gpu/fetch-debs.sh            # .debs/: Debian's -dev packages vlm builds against
#   rm -rf .shared && cp -r ../shared .shared   # the fixtures
# Usage: tests/gpu/run.sh [--quick] [--dev] [--skip-cpu]
#   --quick: shorter benchmarks
#   --skip-cpu: leave out the CPU suite (CI runs it), to save device time
#   --dev:   a short device check while developing: builds only the GPU tests and
#            bench_gpu, runs them, skips the CPU suite and the PyTorch peer
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
t_start=$(date +%s)
quick=()
dev=0
skip_cpu=0
for a in "$@"; do
  case $a in
    --quick) quick=(--quick) ;;
    --dev) dev=1; quick=(--quick) ;;
    --skip-cpu) skip_cpu=1 ;;
    *) echo "usage: tests/gpu/run.sh [--quick] [--dev] [--skip-cpu]" >&2; exit 2 ;;
  esac
done
logs=$root/logs-gpu
rm -rf "$logs"
mkdir -p "$logs"
summary=()
note() { summary+=("$1"); }
elapsed() { echo $(($(date +%s) - t_start)); }
save_logs() { [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ] && cp "$logs"/*.log "$OUT"/ 2>/dev/null; true; }
trap save_logs EXIT

echo "=== GPU"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>&1 | head -n 2 || true

# ------------------------------------------------------------------ build
echo "=== build ($(elapsed) s)"
extra=()
if [ -d .debs ]; then
  # Unpack Debian's libraries into a private prefix (never into /).
  deps=/tmp/vlmdeps
  mkdir -p $deps
  for f in .debs/*.deb; do dpkg -x "$f" $deps; done
  export LD_LIBRARY_PATH=$deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  extra+=(-DCMAKE_PREFIX_PATH=$deps/usr -DCMAKE_LIBRARY_PATH=$deps/usr/lib/x86_64-linux-gnu
          -DCMAKE_INCLUDE_PATH=$deps/usr/include)
  # Debian's multiarch headers (jconfig.h) must win over the machine's own libjpeg headers.
  export CFLAGS="-isystem $deps/usr/include/x86_64-linux-gnu -isystem $deps/usr/include ${CFLAGS:-}"
  export VLM_SKIP_APT=1
fi
# ../shared does not travel to the device machine: a copy carried as .shared does.
[ -d .shared ] && extra+=(-DVLM_SHARED_DIR=$PWD/.shared)
# nvcc: the toolkit's, wherever it is.
if [ -x /usr/local/cuda/bin/nvcc ]; then extra+=(-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)
elif command -v nvcc >/dev/null; then extra+=(-DCMAKE_CUDA_COMPILER="$(command -v nvcc)"); fi
# cuBLASLt outside the toolkit (pip's nvidia wheels): point CMake at it.
if [ ! -e /usr/local/cuda/include/cublasLt.h ]; then
  h=$(find /usr/local /opt /usr/include -name cublasLt.h 2>/dev/null | head -n 1)
  l=$(find /usr/local /opt /usr/lib -name 'libcublasLt.so*' 2>/dev/null | head -n 1)
  lb=$(find /usr/local /opt /usr/lib -name 'libcublas.so*' 2>/dev/null | head -n 1)
  echo "cuBLASLt not in /usr/local/cuda: header ${h:-none}, library ${l:-none}"
  if [ -n "$h" ] && [ -n "$l" ]; then
    export CUDAFLAGS="-I$(dirname "$h") ${CUDAFLAGS:-}"
    extra+=(-DCUDA_cublasLt_LIBRARY="$l" ${lb:+-DCUDA_cublas_LIBRARY="$lb"})
    export LD_LIBRARY_PATH=$(dirname "$l")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  fi
fi
# cuDNN (optional; core/cuda/attention_cudnn.cu): 9.19+ headers at build time (the
# toolkit's, pip's, or the copy fetch-debs.sh carries in .debs/cudnn), the library
# (libcudnn.so.9, any 9.x: an older one lacking the operation falls back) at run time.
dnn_ver() {  # MAJOR*100+MINOR of the headers in $1
  awk '/define CUDNN_MAJOR/{M=$3} /define CUDNN_MINOR/{m=$3} END{print M*100+m}' "$1/cudnn_version.h" 2>/dev/null
}
dnn_inc=""
for h in /usr/local/cuda/include/cudnn_graph.h $(find /usr/local /opt /usr/lib -path '*cudnn/include/cudnn_graph.h' 2>/dev/null | head -n 3) \
         "$root/.debs/cudnn/include/cudnn_graph.h"; do
  d=$(dirname "$h")
  if [ -e "$h" ] && [ "$(dnn_ver "$d")" -ge 919 ]; then dnn_inc=$d; break; fi
done
dnn_lib=$(find /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local /opt /usr/lib -name 'libcudnn.so.9' 2>/dev/null | head -n 1)
echo "cuDNN: headers ${dnn_inc:-none of 9.19+} ($( [ -n "$dnn_inc" ] && dnn_ver "$dnn_inc")), library ${dnn_lib:-not found}"
[ -n "$dnn_inc" ] && extra+=(-DCUDNN_INCLUDE="$dnn_inc")
[ -n "$dnn_lib" ] && extra+=(-DCUDNN_LIB="$dnn_lib") &&
  export LD_LIBRARY_PATH=$(dirname "$dnn_lib")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
build_cmd=(scripts/setup.sh build-gpu -DCMAKE_CUDA_ARCHITECTURES=90 "${extra[@]}")
if [ $dev -eq 1 ]; then
  build_cmd=(bash -c 'cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release "$@" >build-gpu.configure.log 2>&1 &&
    cmake --build build-gpu -j"$(nproc)" --target test_cuda test_cuda_ops test_cudnn test_cuda_clip test_cuda_coca test_train_fixture bench_gpu' _
    -DCMAKE_CUDA_ARCHITECTURES=90 "${extra[@]}")
fi
if ! timeout 420 "${build_cmd[@]}" >"$logs/build.log" 2>&1; then
  grep -E 'error|Error|FATAL' "$logs/build.log" | head -n 20
  tail -n 25 "$logs/build.log"
  echo "tests/gpu/run.sh: BUILD FAILED after $(elapsed) s (log: logs-gpu/build.log)"
  exit 1
fi
grep -E '^-- vlm:' build-gpu.configure.log 2>/dev/null
grep -q 'CUDA backend ON' build-gpu.configure.log 2>/dev/null || note "WARNING: the build has no CUDA backend (see build-gpu.configure.log)"
note "build: ok ($(elapsed) s)"
cd build-gpu

# ------------------------------------------------------------------ GPU tests
echo "=== GPU tests ($(elapsed) s)"
gpu_fail=0
run_gpu_test() {  # label, log, binary, args...
  local label=$1 log=$2 bin=$3
  shift 3
  VLM_CUDA_SYNC=1 timeout "$tmo" "./tests/$bin" "$@" >"$log" 2>&1
  local rc=$?
  local nfail
  nfail=$(grep -c '^FAIL' "$log")
  case $rc in
    0) echo "--- $label: PASS ($(tail -n 1 "$log"))"; note "$label: PASS" ;;
    77) echo "--- $label: $(grep -m1 SKIPPED "$log")"; note "$label: SKIPPED (no GPU seen?)"; gpu_fail=1 ;;
    124) echo "--- $label: TIMEOUT ($tmo s)"; note "$label: TIMEOUT"; gpu_fail=1 ;;
    *) echo "--- $label: FAILED (exit $rc, $nfail failed checks)"; note "$label: FAILED (exit $rc, $nfail failed checks)"; gpu_fail=1 ;;
  esac
  if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
    grep -E '^FAIL|vlm fatal|fatal|CUDA|cuBLAS|Abort|abort|Segmentation' "$log" | head -n 8 | cut -c1-400
  fi
}
tmo=60
run_gpu_test test_cuda "$logs/test_cuda.log" test_cuda
# cuDNN is optional: a missing library skips (77) without failing the run; a library whose
# fused attention operation does not build fails it.
./tests/test_cudnn >"$logs/test_cudnn.log" 2>&1
rc=$?
echo "--- test_cudnn: exit $rc: $(grep -h 'cudnn probe' "$logs/test_cudnn.log")"
case $rc in
  0) note "test_cudnn: PASS" ;;
  77) note "test_cudnn: SKIPPED (cuDNN not usable here: attention runs the own kernels)" ;;
  *) note "test_cudnn: FAILED (exit $rc)"; gpu_fail=1 ;;
esac
# test_cuda_ops one section per process: a section that aborts hides no other.
mkdir -p "$logs/sections"
for sec in utils add matmul layernorm act linear softmax attention embedding l2norm cross_entropy sigmoid_loss optim; do
  run_gpu_test "test_cuda_ops $sec" "$logs/sections/$sec.log" test_cuda_ops "$sec"
done
cat "$logs"/sections/*.log >"$logs/test_cuda_ops.log"
grep -h 'cuDNN fused attention ran' "$logs/sections/attention.log"
note "cuDNN attention (test_cuda_ops): $(grep -h -o 'ran [0-9]* of [0-9]* forwards' "$logs/sections/attention.log" || echo '?'); vlm version: $(./vlm version 2>/dev/null | grep '^cudnn:')"
echo "per op: comparisons, failures, worst error relative to the tensor's max (fp32 bound 1e-5, bf16 1e-4):"
grep -hE '^  [A-Za-z_ (),0-9]+ +[0-9]+ compared' "$logs"/sections/*.log
shared_dir=$root/.shared
[ -d "$shared_dir" ] || shared_dir=$root/../shared
tmo=150
run_gpu_test test_cuda_clip "$logs/test_cuda_clip.log" test_cuda_clip "$shared_dir"
grep -E '\]: loss|gradients, worst|AdamW step|training steps|train loss' "$logs/test_cuda_clip.log" | head -n 16 |
  cut -c1-330
grep -E 'gpu bf16\].*max err' "$logs/test_cuda_clip.log" | cut -c1-150
run_gpu_test test_cuda_coca "$logs/test_cuda_coca.log" test_cuda_coca "$shared_dir"
grep -E '\]: loss|gradients, worst|relative to open_clip' "$logs/test_cuda_coca.log" | cut -c1-200
# open_clip's 6-step trajectories with the trainer on the GPU (CLIP and CoCa)
for fx in clip coca; do
  run_gpu_test "train-tiny-$fx on the GPU" "$logs/train_tiny_${fx}_gpu.log" test_train_fixture --device cuda \
    "$shared_dir/fixtures/train-tiny-$fx"
  grep -E 'worst|final weights' "$logs/train_tiny_${fx}_gpu.log" | cut -c1-200
done

# ------------------------------------------------------------------ training on the shapes set, CPU vs GPU
ctest_rc=0
if [ $dev -eq 0 ]; then
  echo "=== vlm train --device cuda on shapes vs the CPU ($(elapsed) s)"
  timeout 300 "$root/tests/e2e/train_gpu.sh" ./vlm >"$logs/train_gpu.log" 2>&1
  rc=$?
  grep -E 'zero-shot top-1 CPU|^FAIL|checks passed' "$logs/train_gpu.log" | cut -c1-300
  case $rc in
    0) note "e2e_train_gpu (shapes, CLIP and CoCa, CPU vs GPU): PASS" ;;
    77) note "e2e_train_gpu: SKIPPED (no GPU seen?)"; gpu_fail=1 ;;
    124) note "e2e_train_gpu: TIMEOUT (300 s)"; gpu_fail=1 ;;
    *) note "e2e_train_gpu: FAILED (exit $rc)"; gpu_fail=1 ;;
  esac
fi

# ------------------------------------------------------------------ the rest of the suite
if [ $dev -eq 0 ]; then
  # The e2e GPU checks not run above (vlm forward / index / search / caption --device cuda)
  echo "=== ctest -L gpu: the commands' --device cuda against the CPU ($(elapsed) s)"
  ctest -j"$(nproc)" --timeout 120 -L gpu -E 'unit_cuda|e2e_train_gpu|train_tiny_.*_gpu' >"$logs/ctest_gpu.log" 2>&1
  rc=$?
  grep -E 'tests passed|tests failed|\(Failed\)|\(Timeout\)|Skipped' "$logs/ctest_gpu.log" | head -n 12
  note "ctest -L gpu (forward / index / search / caption on the GPU): $(grep -E 'tests passed' "$logs/ctest_gpu.log" | head -n 1)"
  [ $rc -eq 0 ] || gpu_fail=1
fi
if [ $dev -eq 0 ] && [ $skip_cpu -eq 0 ]; then
  # The CPU suite as CI runs it: the GPU hidden, so --device auto means the CPU and
  # the CPU tests' bit-exact checks (resume) are not handed to GPU atomics.
  echo "=== ctest, all but the GPU tests, GPU hidden ($(elapsed) s)"
  CUDA_VISIBLE_DEVICES= ctest -j"$(nproc)" --timeout 180 -LE gpu -E 'unit_cuda' >"$logs/ctest.log" 2>&1
  ctest_rc=$?
  grep -E 'tests passed|tests failed|\(Failed\)|\(Timeout\)|\*\*\*Exception|Not Run' "$logs/ctest.log" | head -n 20
  note "ctest (CPU suite): $(grep -E 'tests passed' "$logs/ctest.log" | head -n 1)"
fi

# ------------------------------------------------------------------ benchmarks
echo "=== benchmarks ($(elapsed) s)"
left=$((470 - $(elapsed)))
if [ $left -lt 90 ]; then
  echo "skipping the benchmarks: only $left s left of the 8 minutes"
  note "benchmarks: SKIPPED (time)"
else
  bt=$((left / 2))
  [ $bt -gt 200 ] && bt=200
  timeout $bt ./bench/bench_gpu "${quick[@]}" >"$logs/bench_gpu.log" 2>&1
  echo "bench_gpu: exit $? (timeout $bt s)"
  grep -v '^VLM ' "$logs/bench_gpu.log" | tail -n 16 | cut -c1-420
  left=$((470 - $(elapsed)))
  pt=$left
  [ $pt -gt 200 ] && pt=200
  if [ $pt -gt 30 ] && [ $dev -eq 0 ]; then
    timeout $pt python3 "$root/bench/peer/gpu_peer.py" "${quick[@]}" >"$logs/gpu_peer.log" 2>&1
    echo "gpu_peer.py: exit $? (timeout $pt s)"
    grep -v '^PEER ' "$logs/gpu_peer.log" | tail -n 10 | cut -c1-200
  fi
  # side by side
  python3 - "$logs/bench_gpu.log" "$logs/gpu_peer.log" <<'EOF' || true
import sys
def read(path, tag):
    d = {}
    try:
        for line in open(path):
            p = line.split()
            if len(p) == 3 and p[0] == tag:
                d[p[1]] = float(p[2])
    except OSError:
        pass
    return d
v, p = read(sys.argv[1], "VLM"), read(sys.argv[2], "PEER")
print("%-28s %12s %12s %8s" % ("figure", "vlm", "pytorch", "ratio"))
for k, label in [("train_samples_per_s", "train samples/s (b256)"), ("encode_images_per_s", "encode images/s (b256)"),
                 ("gemm_bf16_tflops", "bf16 GEMM TFLOP/s"), ("train_mfu", "train MFU (vs vlm GEMM)"),
                 ("train_mfu_run", "train MFU, FLOPs run")]:
    a, b = v.get(k), p.get(k)
    fa = "%12.4g" % a if a is not None else "%12s" % "-"
    fb = "%12.4g" % b if b is not None else "%12s" % "-"
    r = "%8.2f" % (a / b) if a and b else "%8s" % "-"
    print("%-28s %s %s %s" % (label, fa, fb, r))
if "train_samples_per_s" in p and "gemm_bf16_tflops" in v and "train_gflop_per_sample" in v:
    print("%-28s %12s %12.4g" % ("peer MFU (same FLOPs)", "", p["train_samples_per_s"] * v["train_gflop_per_sample"] * 1e9 / (v["gemm_bf16_tflops"] * 1e12)))
EOF
  note "benchmarks: see the table above (logs-gpu/bench_gpu.log, gpu_peer.log)"
fi

# ------------------------------------------------------------------ summary
echo "=== summary ($(elapsed) s)"
for s in "${summary[@]}"; do echo "  $s"; done
status=0
[ $gpu_fail -ne 0 ] && status=1
[ $ctest_rc -ne 0 ] && status=1
echo "tests/gpu/run.sh: exit $status (full logs: logs-gpu/*.log${OUT:+, copied to \$OUT})"
exit $status
