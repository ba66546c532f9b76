#!/usr/bin/env bash
# Build the libFuzzer targets (clang + ASan + UBSan, tree build-fuzz/) and run
# each for SECONDS (default 60). Seeds come from tests/fuzz/seeds/<target>/;
# new inputs go to build-fuzz/corpus/<target>/ (not the repository); crashes
# are written to build-fuzz/crashes/ and fail the script.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]   e.g. scripts/fuzz.sh 600 safetensors
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
missing=()
for p in clang libclang-rt-14-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ] && [ -z "${VLM_SKIP_APT:-}" ]; then
  echo "vlm fuzz: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
CC=clang scripts/setup.sh build-fuzz -DVLM_FUZZ=ON -DVLM_CUDA=OFF -DVLM_NATIVE=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in tests/fuzz/fuzz_*.c; do t=$(basename "$f" .c); targets+=("${t#fuzz_}"); done
fi
mkdir -p build-fuzz/crashes
status=0
for t in "${targets[@]}"; do
  corpus=build-fuzz/corpus/$t
  mkdir -p "$corpus"
  seeds=()
  [ -d tests/fuzz/seeds/$t ] && seeds+=(tests/fuzz/seeds/$t)
  # The test images beside the repository make good extra seeds (read, not copied).
  [ "$t" = image ] && [ -d ../shared/data/images ] && seeds+=(../shared/data/images)
  # The torch target: the committed test archives (whole files) beside its pickle seeds.
  [ "$t" = torch ] && seeds+=(tests/data/torch)
  if [ "$t" = tokenizer ]; then
    # The tokenizer target needs a vocabulary; captions make its seeds.
    export VLM_VOCAB=${VLM_VOCAB:-../shared/data/bpe_simple_vocab_16e6.txt.gz}
    if [ ! -f "$VLM_VOCAB" ]; then
      echo "fuzz tokenizer: FAILED: no vocabulary at $VLM_VOCAB (set VLM_VOCAB)"; status=1; continue
    fi
    mkdir -p build-fuzz/seeds-tokenizer
    [ -f ../shared/fixtures/tokenizer/captions.txt ] &&
      split -l 1 ../shared/fixtures/tokenizer/captions.txt build-fuzz/seeds-tokenizer/caption-
    seeds+=(build-fuzz/seeds-tokenizer)
  fi
  echo "fuzz $t: ${secs}s"
  if ! ASAN_OPTIONS=detect_leaks=1 build-fuzz/tests/fuzz/fuzz_$t -max_total_time="$secs" -max_len=65536 \
      -artifact_prefix=build-fuzz/crashes/$t- -print_final_stats=1 "$corpus" "${seeds[@]}" \
      >build-fuzz/fuzz_$t.log 2>&1; then
    echo "fuzz $t: FAILED (see build-fuzz/fuzz_$t.log)"
    tail -n 30 build-fuzz/fuzz_$t.log
    status=1
  else
    grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' build-fuzz/fuzz_$t.log | tr '\n' ' '
    echo
  fi
done
exit $status
