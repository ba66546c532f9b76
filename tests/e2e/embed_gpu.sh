#!/usr/bin/env bash
# The inference commands on the GPU (`--device cuda`): `vlm index` of the test
# photos with a fixture model (CLIP and CoCa) gives the CPU's embeddings within
# 1e-4 (unit rows), `vlm search` over that index finds the same ranking, and
# `vlm caption` (greedy and beam search) writes the CPU's captions.
# The option checks run everywhere; the GPU part skips (77) where there is no GPU
# or the build has no CUDA backend.
# Usage: embed_gpu.sh VLM_BINARY SHARED_DIR
set -u
vlm=$1 shared=$2
. "$(dirname "$0")/lib.sh"
make_tmp
imgs=$shared/data/images

for c in index zeroshot search eval; do
  check "$c --help names --device" "\"$vlm\" $c --help | grep -q -- '--device D'"
done
check "caption --help names --device" "\"$vlm\" caption --help | grep -q -- '--device cpu|cuda'"
"$vlm" caption --model "$shared/fixtures/tiny-coca" --inputs "$shared/fixtures/tiny-coca/inputs.safetensors" \
  --device tpu >/dev/null 2>"$tmp/err"
rc=$?
check "caption --device tpu exits 2 ($(cat "$tmp/err"))" "[ $rc -eq 2 ]"
"$vlm" index --model "$shared/fixtures/tiny-clip" --out "$tmp/x.idx" --device tpu "$imgs" >/dev/null 2>"$tmp/err"
rc=$?
check "index --device tpu exits 2 ($(cat "$tmp/err"))" "[ $rc -eq 2 ] && grep -q 'must be cpu or cuda' \"$tmp/err\""

out=$("$vlm" index --model "$shared/fixtures/tiny-clip" --out "$tmp/probe.idx" --device cuda --quiet "$imgs" 2>&1); rc=$?
if [ $rc -ne 0 ] && grep -q -- '--device cuda: ' <<<"$out"; then
  echo "$pass checks passed, $fail failed; SKIPPED the GPU part: no GPU ($out)"
  [ $fail -eq 0 ] || exit 1
  exit 77
fi
check "index --device cuda exits 0 ($out)" "[ $rc -eq 0 ]"

# max |a - b| over two .npy files of the same shape (their headers are equal bytes)
maxdiff() {
  paste <(od -An -v -tf4 -w4 "$1") <(od -An -v -tf4 -w4 "$2") |
    awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d } END { printf "%.3g", m + 0 }'
}
small() { awk -v a="$1" -v t="$2" 'BEGIN { exit !(a != "" && a <= t) }'; }
for fx in tiny-clip tiny-coca; do
  for d in cpu cuda; do
    "$vlm" index --model "$shared/fixtures/$fx" --out "$tmp/$fx-$d.idx" --export-npy "$tmp/$fx-$d.npy" \
      --device $d --quiet "$imgs" >/dev/null 2>"$tmp/$fx-$d.err"
    rc=$?
    check "$fx: index --device $d exits 0 ($(tail -n 1 "$tmp/$fx-$d.err"))" "[ $rc -eq 0 ]"
  done
  m=$(maxdiff "$tmp/$fx-cpu.npy" "$tmp/$fx-cuda.npy")
  echo "$fx: GPU embeddings vs CPU: max abs difference $m"
  check "$fx: GPU embeddings within 1e-4 of the CPU's ($m)" "small '$m' 1e-4"
  q=$(ls "$imgs"/*.jpg | head -n 1)
  "$vlm" search --index "$tmp/$fx-cpu.idx" --model "$shared/fixtures/$fx" --image "$q" --top-k 5 >"$tmp/s-cpu" 2>&1
  "$vlm" search --index "$tmp/$fx-cuda.idx" --model "$shared/fixtures/$fx" --image "$q" --top-k 5 --device cuda \
    >"$tmp/s-gpu" 2>&1
  check "$fx: search on the GPU index ranks as the CPU's" \
    "[ -s \"$tmp/s-cpu\" ] && diff <(awk '{print \$NF}' \"$tmp/s-cpu\") <(awk '{print \$NF}' \"$tmp/s-gpu\") >/dev/null"
done
fx=$shared/fixtures/tiny-coca
for opt in "" "--beams 3" "--no-cache --max-len 8"; do
  for d in cpu cuda; do
    "$vlm" caption --model "$fx" --inputs "$fx/inputs.safetensors" --device $d $opt --json >"$tmp/cap-$d" 2>"$tmp/cap-$d.err"
    rc=$?
    check "caption --device $d $opt exits 0 ($(tail -n 1 "$tmp/cap-$d.err"))" "[ $rc -eq 0 ]"
  done
  check "caption $opt: the GPU's ids equal the CPU's" "[ -s \"$tmp/cap-cpu\" ] && cmp -s \"$tmp/cap-cpu\" \"$tmp/cap-cuda\""
done
echo "$pass checks passed, $fail failed"
[ $fail -eq 0 ]
