#!/usr/bin/env bash
# The main job on the built-in default data. Until the training, captioning and
# retrieval commands land (see docs/ARCHITECTURE.md, "Status"), this builds vlm
# and runs the core benchmark, which exercises every op of the op set.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
build/bench/bench_ops --quick
