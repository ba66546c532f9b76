#!/usr/bin/env bash
# Runs scripts/demo.sh (the README's first command) end to end on a short schedule, with the
# vlm under test (VLM_BIN, so no setup step): once with the default CoCa and once with a CLIP,
# checking the exit code and that every step printed its result (zero-shot, accuracy and
# recall, captions or the CoCa hint, index, search), and the run's files.
# Usage: demo.sh VLM_BINARY SOURCE_DIR
set -u
vlm=$1 src=$2
. "$(dirname "$0")/lib.sh"
make_tmp /tmp/vlm_e2e_demo.XXXXXX

check "demo --help" "\"$src/scripts/demo.sh\" --help | grep -q 'Usage: scripts/demo.sh'"
"$src/scripts/demo.sh" --bogus >/dev/null 2>"$tmp/err"; rc=$?
check "unknown argument exits 2 (got $rc)" "[ $rc -eq 2 ] && grep -q bogus \"$tmp/err\""

VLM_BIN=$vlm VLM_DEMO_STEPS=40 VLM_THREADS=2 "$src/scripts/demo.sh" --out "$tmp/coca" >"$tmp/coca.log" 2>&1; rc=$?
check "default (CoCa) demo exits 0 (got $rc)" "[ $rc -eq 0 ]"
[ $rc -eq 0 ] || tail -30 "$tmp/coca.log"
for want in "2. train coca-shapes" "--steps 40" "vlm zeroshot" "top-1 accuracy:" "text->image" \
            "vlm caption" "colour and shape correct" "captions: 1000 held-out images" "heldout.idx: 200 images" \
            "their true captions:" "done in"; do
  check "CoCa demo printed '$want'" "grep -qF -- \"$want\" \"$tmp/coca.log\""
done
check "CoCa demo captions" "! grep -q 'captions need a CoCa' \"$tmp/coca.log\""
check "CoCa demo printed 4 captions" "[ \$(sed -n '/6. caption/,/7. index/p' \"$tmp/coca.log\" | grep -cP '/heldout/images/[0-9]+[.]png\\t.') -eq 4 ]"
check "CoCa checkpoint" "grep -q multimodal_cfg \"$tmp/coca/train/checkpoints/latest/open_clip_config.json\""
check "CoCa metrics + chart" "[ -s \"$tmp/coca/train/metrics.jsonl\" ] && [ -s \"$tmp/coca/train/loss.png\" ]"
check "200 held-out images" "[ \$(ls \"$tmp/coca/heldout/images\" | wc -l) -eq 200 ]"

VLM_BIN=$vlm VLM_DEMO_MODEL=shapes-demo VLM_DEMO_STEPS=20 VLM_THREADS=2 "$src/scripts/demo.sh" --out "$tmp/clip" \
  >"$tmp/clip.log" 2>&1; rc=$?
check "CLIP demo exits 0 (got $rc)" "[ $rc -eq 0 ]"
[ $rc -eq 0 ] || tail -30 "$tmp/clip.log"
check "CLIP demo prints the caption hint" "grep -q 'is a CLIP model: captions need a CoCa model' \"$tmp/clip.log\""
check "CLIP demo searched" "grep -qF 'their true captions:' \"$tmp/clip.log\""

echo "demo e2e: $pass passed, $fail failed"
[ $fail -eq 0 ]
