#!/usr/bin/env bash
# Run on a GPU machine (the device tool): build with CUDA, run the tests that
# need a GPU (and the CPU suite for comparison), print a summary, within a few
# minutes. Prepare .debs/ here first with tests/gpu/fetch-debs.sh and carry it,
# with a copy of ../shared as .shared (cp -r ../shared .shared) for the fixtures.
# Usage: tests/gpu/run.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
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
if ! scripts/setup.sh build-gpu "${extra[@]}" >build-gpu.log 2>&1; then
  tail -n 40 build-gpu.log
  echo "tests/gpu/run.sh: build failed"
  exit 1
fi
grep -E '^-- vlm:' build-gpu.log
cd build-gpu
ctest --output-on-failure -j8 2>&1 | tail -n 30
status=${PIPESTATUS[0]}
echo "--- GPU test output"
./tests/test_cuda
[ -x bench/bench_ops ] && timeout 120 ./bench/bench_ops --quick 2>&1 | tail -n 40
echo "tests/gpu/run.sh: ctest exit $status"
exit $status
