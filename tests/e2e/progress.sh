#!/usr/bin/env bash
# Progress of long work on stderr when it is not a terminal (a log file): a line every
# VLM_PROGRESS_EVERY seconds (default 10) and one at the end, for vlm index's images and
# --texts and vlm zeroshot's class prompts (1,000 classes x 80 templates: minutes with a large
# text tower, silent before).
# Usage: progress.sh VLM_BINARY SHARED_DIR
set -u
vlm=$1 shared=$2
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
make_tmp
export VLM_THREADS=2
. "$here/tools_setup.sh"   # makes the test data
m=$tmp/model

# images: 8 files in batches of 2; a line per batch with VLM_PROGRESS_EVERY=0, else the last only
VLM_PROGRESS_EVERY=0 "$vlm" index --model "$m" --out "$tmp/a.idx" --batch-size 2 "$tmp/imgs" >/dev/null 2>"$tmp/err"
n=$(grep -c '^index: [0-9]*/8 images' "$tmp/err")
check "VLM_PROGRESS_EVERY=0: a progress line per batch of images (4, got $n)" "[ $n -eq 4 ] && grep -q '^index: 2/8 images' '$tmp/err'"
# (an interval no run here reaches: the default 10 s could pass on a loaded machine)
VLM_PROGRESS_EVERY=100000 "$vlm" index --model "$m" --out "$tmp/b.idx" --batch-size 2 "$tmp/imgs" >/dev/null 2>"$tmp/err"
n=$(grep -c '^index: [0-9]*/8 images' "$tmp/err")
check "a run shorter than the interval prints its last line only (got $n)" "[ $n -eq 1 ] && grep -q '^index: 8/8 images' '$tmp/err'"
"$vlm" index --model "$m" --out "$tmp/c.idx" --quiet "$tmp/imgs" >/dev/null 2>"$tmp/err"
check "--quiet: no progress line" "! grep -q '^index:' '$tmp/err'"

# texts
for i in $(seq 300); do echo "caption number $i"; done >"$tmp/caps.txt"
"$vlm" index --model "$m" --out "$tmp/t.idx" --texts "$tmp/caps.txt" >/dev/null 2>"$tmp/err"
check "index --texts: a progress line" "grep -q '^index: 300/300 texts' '$tmp/err'"
VLM_PROGRESS_EVERY=0 "$vlm" index --model "$m" --out "$tmp/t2.idx" --texts "$tmp/caps.txt" --batch-size 8 \
  >/dev/null 2>"$tmp/err"
n=$(grep -c '^index: [0-9]*/300 texts' "$tmp/err")
check "index --texts in chunks of 8 batches: 5 lines for 300 texts in batches of 8 (got $n)" "[ $n -eq 5 ]"

# zero-shot class prompts: 13 classes x open_clip's 80 templates = 1040 (> 1000: a line)
classes=a,b,c,d,e,f,g,h,i,j,k,l,m
"$vlm" zeroshot --model "$m" --classes $classes "$tmp/imgs/space" >/dev/null 2>"$tmp/err"
check "zeroshot: 1040 class prompts, a progress line" "grep -q '^zeroshot: 1040/1040 prompts' '$tmp/err'"
"$vlm" zeroshot --model "$m" --classes a,b "$tmp/imgs/space" >/dev/null 2>"$tmp/err"
check "zeroshot: 160 prompts, no line" "! grep -q 'prompts' '$tmp/err'"

# vlm eval in a log: retrieval samples, zero-shot images (more than 4 batches), 1040 class prompts
VLM_PROGRESS_EVERY=0 "$vlm" eval --model "$m" --data shapes:val:40 --zeroshot shapes:val:40 --batch-size 8 \
  --templates openai >/dev/null 2>"$tmp/err"
check "eval: retrieval progress, a line per batch of 8 (5 for 40 samples)" \
  "[ \$(grep -c '^vlm eval: retrieval: [0-9]*/40 samples' '$tmp/err') -eq 5 ]"
check "eval: zero-shot images" "grep -q '^vlm eval: zero-shot: 40/40 images' '$tmp/err'"
check "eval: the shapes classes x 80 templates, a prompts line" "grep -q '^vlm eval: zero-shot: [0-9]*/[0-9]* prompts' '$tmp/err'"

echo "progress: $pass passed, $fail failed"
[ $fail -eq 0 ]
