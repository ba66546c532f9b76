#!/usr/bin/env bash
# The whole test suite: the release tree (with CUDA compiled when nvcc exists)
# runs every test; a second tree built with AddressSanitizer and
# UndefinedBehaviorSanitizer runs the unit tests and the end-to-end tests (the
# vlm binary driven like a user; all but the demo, minutes under ASan) again; a
# third tree with an emulated GPU runs them all on "the device" (see below);
# then every fuzz target runs for VLM_FUZZ_SECONDS (default 20).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
(cd build && ctest --output-on-failure -j"$(nproc)")

scripts/setup.sh build-asan -DVLM_SANITIZE=ON -DVLM_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --output-on-failure -j"$(nproc)" -L 'unit|e2e' -E '^e2e_demo$')

# The device paths on an emulated GPU (core/cuda/emulated.c): "device" memory the
# host cannot touch (a stray host access faults), CPU kernels. Every test runs
# again with --device auto picking it, the demo and the GPU tests included (the CPU-vs-GPU
# shapes runs of e2e_train_gpu are shortened: the emulated numbers are the CPU's).
scripts/setup.sh build-emu -DVLM_CUDA_EMULATE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
(cd build-emu && VLM_TRAIN_GPU_STEPS=100 ctest --output-on-failure -j"$(nproc)")

# Each libFuzzer target for a short while (scripts/fuzz.sh SECONDS for longer runs).
scripts/fuzz.sh "${VLM_FUZZ_SECONDS:-20}"
