#!/usr/bin/env bash
# Writes that fail, without root: what each command does when its output cannot be written.
#  - stdout on a full device (/dev/full): every command that succeeded exits 1 naming
#    "standard output" (before: exit 0 with the output lost);
#  - vlm index --export-npy /dev/full names the reason; --out in a missing folder fails before
#    any image is embedded (before: after embedding everything);
#  - files that belong together (a model's config and weights, vocab.json and merges.txt): when
#    the second cannot be written (here a directory stands at its name), the first keeps its old
#    bytes (before: new weights beside the old config);
#  - vlm preprocess with 60000 inputs: the check for two inputs writing one output is not
#    quadratic (before: ~2 minutes on 2 cores before the first image).
# Usage: write_errors.sh VLM_BINARY SHARED_DIR
set -u
vlm=$(cd "$(dirname "$1")" && pwd)/$(basename "$1") shared=$2
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
make_tmp
export VLM_THREADS=2
if [ ! -w /dev/full ] || [ ! -c /dev/full ]; then
  echo "skipped: /dev/full is missing (it stands for a full disk here)"
  exit 77
fi
. "$here/tools_setup.sh"   # makes the test data
m=$tmp/model m2=$tmp/model2
"$vlm" index --model "$m" --out "$tmp/p.idx" "$tmp/imgs" >/dev/null 2>&1 || { echo "FAIL: vlm index"; exit 1; }
"$vlm" convert --init coca-tiny --to open_clip --out "$tmp/coca" >/dev/null 2>&1 || { echo "FAIL: a CoCa model"; exit 1; }

# ---- stdout on a full device
full_stdout() {   # NAME ARGS...: exit 1 and a message naming standard output
  local name=$1
  shift
  "$vlm" "$@" >/dev/full 2>"$tmp/full.err" </dev/null
  local rc=$?
  check "$name > /dev/full: exit 1 (got $rc), 'standard output' named" \
    "[ $rc -eq 1 ] && grep -q 'standard output: cannot write: No space left on device' '$tmp/full.err'"
}
full_stdout "search --json" search --index "$tmp/p.idx" --model "$m" --text "a rocket" --json
full_stdout "search" search --index "$tmp/p.idx" --model "$m" --image "$tmp/imgs/space/rocket.jpg"
full_stdout "zeroshot --json" zeroshot --model "$m" --classes cat,dog "$tmp/imgs/animal" --json
full_stdout "index --json" index --model "$m" --out "$tmp/p.idx" "$tmp/imgs" --json
full_stdout "caption --json" caption --model "$tmp/coca" "$tmp/imgs/animal" --json
full_stdout "shapes --json" shapes --out "$tmp/shapes" --n 2 --size 16 --json
full_stdout "info" info --model "$m"
full_stdout "--help" index --help
"$vlm" search --index "$tmp/p.idx" --model "$m" --text "a rocket" --json >/dev/null 2>"$tmp/ok.err"
check "the same search to /dev/null: exit 0, nothing on stderr" "[ $? -eq 0 ] && [ ! -s '$tmp/ok.err' ]"

# ---- vlm index: the reason of a failed --export-npy; an unwritable --out before the work
for i in $(seq 300); do echo "caption number $i"; done >"$tmp/many_caps.txt"   # a .npy past stdio's buffer
err=$("$vlm" index --model "$m" --out "$tmp/t.idx" --texts "$tmp/many_caps.txt" --export-npy /dev/full 2>&1); rc=$?
check "--export-npy /dev/full: exit 1 with the reason (got $rc)" \
  "[ $rc -eq 1 ] && grep -q '/dev/full: cannot write: No space left on device' <<<\"\$err\""
err=$("$vlm" index --model "$m" --out "$tmp/nowhere/p.idx" "$tmp/imgs" 2>&1); rc=$?
check "--out in a missing folder: exit 1, named (got $rc)" "[ $rc -eq 1 ] && grep -q 'nowhere/p.idx' <<<\"\$err\""
check "--out in a missing folder: refused before embedding" "! grep -q 'index: .*images' <<<\"\$err\""
err=$("$vlm" index --model "$m" --out "$tmp/p2.idx" --export-npy "$tmp/nowhere/p.npy" "$tmp/imgs" 2>&1); rc=$?
check "--export-npy in a missing folder: refused before embedding, no index written" \
  "[ $rc -eq 1 ] && grep -q 'nowhere/p.npy' <<<\"\$err\" && ! grep -q 'index: .*images' <<<\"\$err\" && [ ! -e '$tmp/p2.idx' ]"
err=$("$vlm" index --model "$m" --out "$tmp/imgs" "$tmp/imgs/space" 2>&1); rc=$?
check "--out naming a folder: refused before embedding" \
  "[ $rc -eq 1 ] && grep -q 'is a directory' <<<\"\$err\" && ! grep -q 'index: .*images' <<<\"\$err\""

# ---- files that belong together: both replaced or neither
for init in tiny coca-tiny; do
  d=$tmp/pair-$init
  "$vlm" convert --init $init --seed 1 --to open_clip --out "$d" >/dev/null 2>&1
  cp "$d/open_clip_model.safetensors" "$tmp/old.safetensors"
  rm "$d/open_clip_config.json" && mkdir "$d/open_clip_config.json"
  err=$("$vlm" convert --init $init --seed 2 --to open_clip --out "$d" 2>&1); rc=$?
  check "convert $init, the config unwritable: exit 1, named (got $rc)" \
    "[ $rc -eq 1 ] && grep -q 'open_clip_config.json' <<<\"\$err\""
  check "convert $init, the config unwritable: the old weights kept byte for byte" \
    "cmp -s '$d/open_clip_model.safetensors' '$tmp/old.safetensors'"
  check "convert $init: no temporary file left" "! compgen -G '$d/*.tmp.*' >/dev/null"
done
d=$tmp/hf
"$vlm" convert --init tiny --seed 1 --to hf --out "$d" >/dev/null 2>&1
cp "$d/model.safetensors" "$tmp/old.safetensors"
rm "$d/config.json" && mkdir "$d/config.json"
"$vlm" convert --init tiny --seed 2 --to hf --out "$d" >/dev/null 2>&1
check "convert --to hf, config.json unwritable: the old weights kept" "[ $? -eq 1 ] && cmp -s '$d/model.safetensors' '$tmp/old.safetensors'"
# a model's tokenizer goes with it: written before and renamed after the model, so when either
# cannot be written, neither replaces what OUT held
t=$tmp/withtok
"$vlm" convert --model "$m" --to hf --out "$t" >/dev/null 2>&1
check "convert --to hf copies the model's tokenizer" "[ -s '$t/vocab.json' ] && [ -s '$t/merges.txt' ]"
cp "$t/model.safetensors" "$tmp/old.safetensors"
echo '{"old": 1}' >"$t/vocab.json"
rm "$t/merges.txt" && mkdir "$t/merges.txt"
err=$("$vlm" convert --model "$m2" --to hf --out "$t" 2>&1); rc=$?
check "convert, the tokenizer's merges.txt unwritable: exit 1, named; the old weights kept (got $rc)" \
  "[ $rc -eq 1 ] && grep -q 'merges.txt' <<<\"\$err\" && cmp -s '$t/model.safetensors' '$tmp/old.safetensors'"
check "... and the old vocab.json kept" "[ \"\$(cat '$t/vocab.json')\" = '{\"old\": 1}' ]"
rmdir "$t/merges.txt" && echo old >"$t/merges.txt"
rm "$t/config.json" && mkdir "$t/config.json"
err=$("$vlm" convert --model "$m2" --to hf --out "$t" 2>&1); rc=$?
check "convert, the model's config unwritable: exit 1; the old tokenizer files kept (got $rc)" \
  "[ $rc -eq 1 ] && [ \"\$(cat '$t/vocab.json')\" = '{\"old\": 1}' ] && [ \"\$(cat '$t/merges.txt')\" = old ]"
check "convert with a tokenizer: no temporary file left" "! compgen -G '$t/*.tmp*' >/dev/null"
rmdir "$t/config.json"
v=$tmp/vocab
"$vlm" bpe-train --vocab-size 600 --out "$v" "$tmp/captions.txt" >/dev/null 2>&1
cp "$v/vocab.json" "$tmp/old.vocab.json"
rm "$v/merges.txt" && mkdir "$v/merges.txt"
err=$("$vlm" bpe-train --vocab-size 700 --out "$v" "$tmp/captions.txt" 2>&1); rc=$?
check "bpe-train, merges.txt unwritable: exit 1, named; vocab.json kept byte for byte (got $rc)" \
  "[ $rc -eq 1 ] && grep -q 'merges.txt' <<<\"\$err\" && cmp -s '$v/vocab.json' '$tmp/old.vocab.json'"

# ---- vlm forward: --out and --grads are renamed together, so a failed --grads keeps the old --out
fx=$shared/fixtures/tiny-clip
echo old >"$tmp/fw.out"
err=$( (trap '' XFSZ; ulimit -f 8; "$vlm" forward --model "$fx" --inputs "$fx/inputs.safetensors" --out "$tmp/fw.out" \
          --grads "$tmp/fw.grads") 2>&1); rc=$?
check "forward, --grads past the file size limit: exit 1, named; --out keeps its old bytes (got $rc)" \
  "[ $rc -eq 1 ] && grep -q 'fw.grads' <<<\"\$err\" && [ \"\$(cat '$tmp/fw.out')\" = old ] && [ ! -e '$tmp/fw.grads' ]"
check "... no temporary file left" "! compgen -G '$tmp/fw.*.tmp*' >/dev/null"
"$vlm" forward --model "$fx" --inputs "$fx/inputs.safetensors" --out "$tmp/fw.out" --grads "$tmp/fw.grads" >/dev/null 2>&1
check "... and without the limit both are written" "[ \"\$(head -c 3 '$tmp/fw.out')\" != old ] && [ -s '$tmp/fw.grads' ]"

# ---- vlm convert into a folder holding another model's tokenizer: kept, and said
t2=$tmp/stale
mkdir -p "$t2" && printf '{"OLD": 0}' >"$t2/vocab.json" && printf '#version: 0.2\nO LD\n' >"$t2/merges.txt"
err=$("$vlm" convert --init tiny --to open_clip --out "$t2" 2>&1); rc=$?
check "convert beside another tokenizer: exit 0, a warning naming it (got $rc)" \
  "[ $rc -eq 0 ] && grep -q 'warning: .*stale already holds a tokenizer' <<<\"\$err\" && [ -s '$t2/vocab.json' ]"
err=$("$vlm" info --model /dev/null 2>&1); rc=$?
check "info on a device file: exit 1, said to be a device (got $rc)" "[ $rc -ne 0 ] && grep -q 'a device, not a model' <<<\"\$err\""

# ---- vlm preprocess: many inputs (missing files: each fails at once) in linear time
mapfile -t many < <(printf 'n/%06d.png\n' $(seq 60000))   # one command line of ~780 KB
start=$SECONDS
(cd "$tmp" && timeout 60 "$vlm" preprocess --size 8 --out prep "${many[@]}" >many.out 2>/dev/null)
took=$((SECONDS - start))
check "preprocess of 60000 inputs: every one reported, in ${took}s (< 30 s)" \
  "[ $took -lt 30 ] && grep -q '60000 failed' '$tmp/many.out'"

echo "write_errors: $pass passed, $fail failed"
[ $fail -eq 0 ]
