#!/usr/bin/env bash
# Runs scripts/demo.sh (the README's first command) end to end on a short schedule, with the
# vlm under test (VLM_BIN, so no setup step): once with the default CLIP and once with a CoCa,
# checking the exit code and that every step printed its result (zero-shot, accuracy and
# recall, captions or the CoCa hint, index, search), and the run's files.
# Usage: demo.sh VLM_BINARY SOURCE_DIR
set -u
vlm=$1 src=$2
pass=0 fail=0
check() { if eval "$2"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1"; fi; }
tmp=$(mktemp -d /tmp/vlm_e2e_demo.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

check "demo --help" "\"$src/scripts/demo.sh\" --help | grep -q 'Usage: scripts/demo.sh'"
"$src/scripts/demo.sh" --bogus >/dev/null 2>"$tmp/err"; rc=$?
check "unknown argument exits 2 (got $rc)" "[ $rc -eq 2 ] && grep -q bogus \"$tmp/err\""

VLM_BIN=$vlm VLM_DEMO_STEPS=40 VLM_THREADS=2 "$src/scripts/demo.sh" --out "$tmp/clip" >"$tmp/clip.log" 2>&1; rc=$?
check "CLIP demo exits 0 (got $rc)" "[ $rc -eq 0 ]"
[ $rc -eq 0 ] || tail -30 "$tmp/clip.log"
for want in "2. train shapes-demo" "--steps 40" "vlm zeroshot" "top-1 accuracy:" "text->image" \
            "is a CLIP model: captions need a CoCa model" "heldout.idx: 200 images" "their true captions:" "done in"; do
  check "CLIP demo printed '$want'" "grep -qF -- \"$want\" \"$tmp/clip.log\""
done
check "CLIP checkpoint" "[ -f \"$tmp/clip/train/checkpoints/latest/open_clip_model.safetensors\" ]"
check "CLIP metrics + chart" "[ -s \"$tmp/clip/train/metrics.jsonl\" ] && [ -s \"$tmp/clip/train/loss.png\" ]"
check "200 held-out images" "[ \$(ls \"$tmp/clip/heldout/images\" | wc -l) -eq 200 ]"

VLM_BIN=$vlm VLM_DEMO_MODEL=coca-tiny VLM_DEMO_STEPS=20 VLM_THREADS=2 "$src/scripts/demo.sh" --out "$tmp/coca" \
  >"$tmp/coca.log" 2>&1; rc=$?
check "CoCa demo exits 0 (got $rc)" "[ $rc -eq 0 ]"
[ $rc -eq 0 ] || tail -30 "$tmp/coca.log"
check "CoCa demo captions" "grep -q 'vlm caption' \"$tmp/coca.log\" && ! grep -q 'captions need a CoCa' \"$tmp/coca.log\""
check "CoCa demo searched" "grep -qF 'their true captions:' \"$tmp/coca.log\""

echo "demo e2e: $pass passed, $fail failed"
[ $fail -eq 0 ]
