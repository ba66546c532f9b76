#!/usr/bin/env bash
# `vlm convert --out DIR` into a directory that already holds a model: when vlm would then read
# another weights file from DIR than the one written (safetensors before PyTorch files,
# open_clip's layout before Hugging Face's), it refuses before writing anything, unless that
# file holds the same model (one model in several files, as LAION's repositories); CLIP and
# CoCa. Usage: convert_into.sh VLM_BINARY
set -u
vlm=$1
. "$(dirname "$0")/lib.sh"
make_tmp
export VLM_THREADS=2
ident() { "$vlm" eval --model "$1" --data "$tmp/pairs.tsv" --json 2>/dev/null | grep -o '"identity": "[^"]*"'; }
"$vlm" shapes --out "$tmp/sh" --n 4 --size 32 >/dev/null && cp "$tmp/sh/captions.tsv" "$tmp/pairs.tsv" \
  && sed -i 's#images/#sh/images/#' "$tmp/pairs.tsv"
check "shapes data made" "[ -s $tmp/pairs.tsv ]"

for kind in tiny coca-tiny; do
  D=$tmp/$kind
  "$vlm" convert --init $kind --seed 1 --to open_clip --out "$D" >/dev/null
  check "$kind: seed 1 written" "[ $? -eq 0 ] && [ -f $D/open_clip_model.safetensors ]"
  before=$(ident "$D")
  cp "$D/open_clip_config.json" "$tmp/cfg.before"
  # another model as a PyTorch file: open_clip_model.safetensors would be read with its config
  err=$("$vlm" convert --init $kind --seed 2 --to open_clip --format torch --out "$D" 2>&1 >/dev/null); rc=$?
  check "$kind: another model as torch beside the safetensors: exit 1, the file named" \
    "[ $rc -eq 1 ] && grep -q 'already holds $D/open_clip_model.safetensors, which vlm would read with the new config' <<<\"\$err\""
  check "$kind: ... nothing written, the directory still holds seed 1" \
    "[ ! -e $D/open_clip_pytorch_model.bin ] && cmp -s $tmp/cfg.before $D/open_clip_config.json && [ \"\$(ident $D)\" = \"$before\" ]"
  # the same model as a PyTorch file too: allowed (one model in two files)
  "$vlm" convert --init $kind --seed 1 --to open_clip --format torch --out "$D" >/dev/null 2>"$tmp/err"
  check "$kind: the same model as torch beside it: exit 0" "[ $? -eq 0 ] && [ -f $D/open_clip_pytorch_model.bin ]"
  check "$kind: ... and the torch file alone is that model" \
    "[ \"\$(ident $D/open_clip_pytorch_model.bin)\" = \"$before\" ]"
done

# CLIP: a Hugging Face pair written where open_clip's (read first) holds another model
D=$tmp/tiny
err=$("$vlm" convert --init tiny --seed 2 --to hf --out "$D" 2>&1 >/dev/null); rc=$?
check "hf beside open_clip's other model: exit 1, the file named" \
  "[ $rc -eq 1 ] && grep -q 'already holds $D/open_clip_model.safetensors, which vlm would read (with its own config)' <<<\"\$err\" && [ ! -e $D/config.json ]"
"$vlm" convert --init tiny --seed 1 --to hf --out "$D" >/dev/null 2>&1
check "hf beside open_clip's same model: exit 0" "[ $? -eq 0 ] && [ -f $D/config.json ] && [ -f $D/model.safetensors ]"
# a sharded save's index is read before the single file of its name
H=$tmp/hfdir
"$vlm" convert --init tiny --seed 1 --to hf --out "$H" >/dev/null
echo '{"metadata": {}, "weight_map": {}}' >"$H/model.safetensors.index.json"
err=$("$vlm" convert --init tiny --seed 2 --to hf --out "$H" 2>&1 >/dev/null); rc=$?
check "a stale model.safetensors.index.json: exit 1, named" \
  "[ $rc -eq 1 ] && grep -q 'already holds $H/model.safetensors.index.json' <<<\"\$err\""
# a fresh or same-format directory is replaced as before
"$vlm" convert --init tiny --seed 2 --to open_clip --out "$tmp/tiny2" >/dev/null
"$vlm" convert --init tiny --seed 3 --to open_clip --out "$tmp/tiny2" >/dev/null
check "the same files replaced: exit 0" "[ $? -eq 0 ]"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
