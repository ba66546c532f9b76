#!/usr/bin/env bash
# CoCa end to end: `vlm info`, `vlm forward` (outputs and gradients against the
# fixture, with and without --grads) and `vlm caption` on a CoCa fixture directory.
# Usage: coca.sh VLM_BINARY TEST_COCA_PARITY_BINARY FIXTURE_DIR
set -u
vlm=$1 cmp=$2 fx=$3
. "$(dirname "$0")/lib.sh"
make_tmp

out=$("$vlm" info --model "$fx"); rc=$?
check "info exits 0" "[ $rc -eq 0 ]"
check "info says CoCa" "grep -q '^model: CoCa' <<<\"\$out\""
check "info names its files and the weights' format" "grep -q '^files: .*(safetensors)' <<<\"\$out\""
check "info shows the pooler and the decoder" "grep -q 'attentional pooler' <<<\"\$out\" && grep -q '^decoder: ' <<<\"\$out\""
check "info counts parameters" "grep -q '^parameters: [0-9]' <<<\"\$out\""

out=$("$vlm" forward --model "$fx" --inputs "$fx/inputs.safetensors" --out "$tmp/out.st" --grads "$tmp/grads.st"); rc=$?
check "forward --grads exits 0" "[ $rc -eq 0 ] && grep -q 'caption' <<<\"\$out\""
check "outputs and gradients match the fixture" "\"$cmp\" --compare \"$fx\" \"$tmp/out.st\" \"$tmp/grads.st\" >/dev/null"
"$vlm" forward --model "$fx" --inputs "$fx/inputs.safetensors" --out "$tmp/out2.st" >/dev/null
check "forward (inference layout) exits 0" "[ $? -eq 0 ]"
check "inference outputs match the fixture" "\"$cmp\" --compare \"$fx\" \"$tmp/out2.st\" >/dev/null"
"$vlm" forward --model "$fx" --inputs "$fx/inputs.safetensors" --out "$tmp/bf16.st" --precision bf16 >/dev/null
check "forward --precision bf16 exits 0" "[ $? -eq 0 ] && [ -f \"$tmp/bf16.st\" ]"
"$cmp" --compare "$fx" "$tmp/bf16.st" >/dev/null 2>&1
check "bf16 outputs are not bit-exact f32 ones (the check can fail)" "[ $? -ne 0 ]"

err=$("$vlm" forward --model "$fx" --inputs "$fx/model.safetensors" --out "$tmp/x.st" 2>&1); rc=$?
check "forward on a file without inputs fails with 1" "[ $rc -eq 1 ] && grep -q 'needs tensors' <<<\"\$err\""
check "... and writes nothing" "[ ! -e \"$tmp/x.st\" ]"
mkdir -p "$tmp/bad"
cp "$fx/config.json" "$tmp/bad/config.json"
head -c 1000 "$fx/model.safetensors" > "$tmp/bad/model.safetensors"
err=$("$vlm" info --model "$tmp/bad" 2>&1); rc=$?
check "truncated CoCa weights fail with 1 naming the file" "[ $rc -eq 1 ] && grep -q 'model.safetensors' <<<\"\$err\""
echo '{"embed_dim": 32, "vision_cfg": {}, "text_cfg": {}, "multimodal_cfg": {"width": 7}}' > "$tmp/bad/config.json"
err=$("$vlm" forward --model "$tmp/bad" --inputs "$fx/inputs.safetensors" --out "$tmp/x.st" 2>&1); rc=$?
check "bad CoCa config fails with 1 naming the file" "[ $rc -eq 1 ] && grep -q 'config.json' <<<\"\$err\""
# convert: a CoCa checkpoint re-written in open_clip layout reproduces the fixture; --init makes a new one
"$vlm" convert --model "$fx" --to open_clip --out "$tmp/oc" >/dev/null
check "convert a CoCa checkpoint exits 0" "[ $? -eq 0 ] && [ -f \"$tmp/oc/open_clip_config.json\" ]"
"$vlm" forward --model "$tmp/oc" --inputs "$fx/inputs.safetensors" --out "$tmp/o_oc.st" --grads "$tmp/g_oc.st" >/dev/null
check "the converted CoCa model reproduces the fixture" "\"$cmp\" --compare \"$fx\" \"$tmp/o_oc.st\" \"$tmp/g_oc.st\" >/dev/null"
out=$("$vlm" convert --init coca-tiny --seed 3 --to open_clip --out "$tmp/new"); rc=$?
check "convert --init coca-tiny" "[ $rc -eq 0 ] && \"$vlm\" info --model \"$tmp/new\" | grep -q '^parameters: 184577 '"
"$vlm" convert --init coca-tiny --to hf --out "$tmp/newhf" >/dev/null 2>&1
check "CoCa to the HF layout exits 2" "[ $? -eq 2 ]"

# caption: batched, cached == uncached, beams, JSON, errors
imgs="$fx/../../data/images"
if [ -d "$imgs" ]; then
  set -- "$imgs/astronaut.png" "$imgs/chelsea.png" "$imgs/rocket.jpg"
  out=$("$vlm" caption --model "$fx" --batch 2 "$@"); rc=$?
  check "caption exits 0" "[ $rc -eq 0 ]"
  check "caption prints one line per image" "[ \$(wc -l <<<\"\$out\") -eq 3 ] && grep -q '^$imgs/chelsea.png	' <<<\"\$out\""
  dup=$("$vlm" caption --model "$fx" "$imgs" "$imgs/chelsea.png" 2>"$tmp/err")
  check "a file named twice (a folder and a file in it) is captioned once" \
    "[ \$(grep -c 'chelsea.png' <<<\"\$dup\") -eq 1 ] && grep -q '1 image named more than once, captioned once' $tmp/err"
  b16=$("$vlm" caption --model "$fx" --precision bf16 "$@"); rc=$?
  check "caption --precision bf16" "[ $rc -eq 0 ] && [ \$(wc -l <<<\"\$b16\") -eq 3 ]"
  out2=$("$vlm" caption --model "$fx" --no-cache "$@")
  check "--no-cache gives the same captions" "[ \"\$out\" = \"\$out2\" ]"
  b1=$("$vlm" caption --model "$fx" --beams 3 "$@"); b2=$("$vlm" caption --model "$fx" --beams 3 --no-cache "$@")
  check "beam search: cached = uncached" "[ -n \"\$b1\" ] && [ \"\$b1\" = \"\$b2\" ]"
  s1=$("$vlm" caption --model "$fx" --top-p 0.9 --temperature 0.7 --seed 4 "$@")
  s2=$("$vlm" caption --model "$fx" --top-p 0.9 --temperature 0.7 --seed 4 --batch 1 "$@")
  check "sampling is reproducible for a seed" "[ -n \"\$s1\" ] && [ \"\$s1\" = \"\$s2\" ]"
  js=$("$vlm" caption --model "$fx" --json --max-len 8 "$imgs/horse.png"); rc=$?
  check "caption --json" "[ $rc -eq 0 ] && grep -q '^{\"image\": \".*horse.png\", \"caption\": null, \"ids\": \[510, ' <<<\"\$js\""
  if [ -f "$imgs/truncated.jpg" ]; then
    out=$("$vlm" caption --model "$fx" "$imgs/truncated.jpg" "$imgs/horse.png" 2>"$tmp/err"); rc=$?
    check "a bad image: exit 1, named, the others captioned" "[ $rc -eq 1 ] && grep -q 'truncated.jpg' \"$tmp/err\" && grep -q 'horse.png' <<<\"\$out\""
    js=$("$vlm" caption --model "$fx" --json "$imgs/horse.png" "$imgs/truncated.jpg" "$imgs/rocket.jpg" 2>/dev/null); rc=$?
    check "--json with a bad image: one line per image in order, the bad one with its error" \
      "[ $rc -eq 1 ] && [ \$(wc -l <<<\"\$js\") -eq 3 ] && sed -n 2p <<<\"\$js\" | grep -q '^{\"image\": \".*truncated.jpg\", \"caption\": null, \"ids\": null, \"error\": \".*truncated.jpg.*\"}\$' && \
       sed -n 1p <<<\"\$js\" | grep -q 'horse.png' && sed -n 3p <<<\"\$js\" | grep -q 'rocket.jpg'"
    js=$("$vlm" caption --model "$fx" --json "$imgs/truncated.jpg" 2>/dev/null); rc=$?
    check "--json with only a bad image: its error line" "[ $rc -eq 1 ] && grep -q '\"error\": ' <<<\"\$js\""
  fi
  "$vlm" caption --model "$fx" --beams 2 --top-k 3 "$imgs/horse.png" >/dev/null 2>&1
  check "--beams with --top-k exits 2" "[ $? -eq 2 ]"
  err=$("$vlm" caption --model "$fx" --max-len 100 "$imgs/horse.png" 2>&1); rc=$?
  check "--max-len beyond the context exits 2" "[ $rc -eq 2 ] && grep -q 'max length' <<<\"\$err\""
  err=$("$vlm" caption --model "$fx" --min-len 10 --max-len 5 "$imgs/horse.png" 2>&1); rc=$?
  check "--min-len above --max-len exits 2 naming both" "[ $rc -eq 2 ] && grep -q -- '--min-len 10 .*--max-len 5' <<<\"\$err\""
  err=$("$vlm" caption --model "$fx" --min-len 40 "$imgs/horse.png" 2>&1); rc=$?
  check "--min-len above the model's context exits 2" "[ $rc -eq 2 ] && grep -q -- '--min-len 40' <<<\"\$err\""
  # a folder: its images, recursively, in sorted order (as zeroshot and index)
  mkdir -p "$tmp/imgs/sub" "$tmp/noimgs"
  cp "$imgs/horse.png" "$tmp/imgs/sub/b.png" && cp "$imgs/chelsea.png" "$tmp/imgs/a.png" && echo x >"$tmp/imgs/notes.txt"
  out=$("$vlm" caption --model "$fx" --max-len 8 "$tmp/imgs" 2>"$tmp/err"); rc=$?
  check "caption FOLDER captions its images" \
    "[ $rc -eq 0 ] && [ \"\$(cut -f1 <<<\"\$out\" | tr '\n' ' ')\" = '$tmp/imgs/a.png $tmp/imgs/sub/b.png ' ]"
  err=$("$vlm" caption --model "$fx" "$tmp/noimgs" 2>&1); rc=$?
  check "a folder without images exits 1" "[ $rc -eq 1 ] && grep -q 'no JPEG, PNG or WebP images in $tmp/noimgs' <<<\"\$err\""
  clip="$fx/../tiny-clip"
  if [ -d "$clip" ]; then
    err=$("$vlm" caption --model "$clip" "$imgs/horse.png" 2>&1); rc=$?
    check "caption on a CLIP model exits 1" "[ $rc -eq 1 ] && grep -q 'not a CoCa model' <<<\"\$err\""
  fi
  # CoCa weights alone (open_clip's epoch_N.pt has no config beside it): say how to name the config
  mkdir -p "$tmp/bare" && cp "$fx/model.safetensors" "$tmp/bare/epoch_1.safetensors"
  err=$("$vlm" caption --model "$tmp/bare/epoch_1.safetensors" "$imgs/horse.png" 2>&1); rc=$?
  check "caption on weights without a config exits 1 saying how to name it" \
    "[ $rc -eq 1 ] && grep -q 'epoch_1.safetensors: no model config' <<<\"\$err\" && grep -q -- '--config' <<<\"\$err\""
  caps="$fx/../tokenizer/captions.txt"
  if [ -f "$caps" ]; then   # a model dir with tokenizer/: captions are decoded text
    "$vlm" convert --init coca-small --to open_clip --out "$tmp/cs" >/dev/null &&
      "$vlm" bpe-train --vocab-size 4096 --out "$tmp/cs/tokenizer" "$caps" >/dev/null 2>&1
    js=$("$vlm" caption --model "$tmp/cs" --max-len 6 --json "$imgs/horse.png"); rc=$?
    check "caption decodes with the model's tokenizer/" "[ $rc -eq 0 ] && grep -q '\"caption\": \"' <<<\"\$js\""
  fi
  if [ -f "$fx/../../data/bpe_simple_vocab_16e6.txt.gz" ]; then
    err=$("$vlm" caption --model "$fx" --tokenizer "$fx/../../data/bpe_simple_vocab_16e6.txt.gz" "$imgs/horse.png" 2>&1); rc=$?
    check "a tokenizer whose ids do not fit the model exits 2" "[ $rc -eq 2 ] && grep -q 'vocabulary' <<<\"\$err\""
  fi
fi
out=$("$vlm" caption --model "$fx" --inputs "$fx/inputs.safetensors" --max-len 8); rc=$?
check "caption --inputs (a tensor of images)" "[ $rc -eq 0 ] && [ \$(grep -c 'inputs.safetensors\[[0-9]\]	' <<<\"\$out\") -ge 1 ]"
"$vlm" caption --model "$fx" --inputs "$fx/model.safetensors" >/dev/null 2>&1
check "caption --inputs without images exits 1" "[ $? -eq 1 ]"
# an `images` tensor of bytes: refused, the file named once
h='{"images":{"dtype":"U8","shape":[1,3,32,32],"data_offsets":[0,3072]}}'
{ printf "\\x$(printf %02x ${#h})\\x00\\x00\\x00\\x00\\x00\\x00\\x00"; printf '%s' "$h"; head -c 3072 /dev/zero; } >"$tmp/u8.st"
err=$("$vlm" caption --model "$fx" --inputs "$tmp/u8.st" 2>&1); rc=$?
check "caption --inputs with U8 images: exit 1, the file named once" \
  "[ $rc -eq 1 ] && grep -q 'u8.st: tensor \"images\" has dtype U8' <<<\"\$err\" && ! grep -q 'u8.st: .*u8.st' <<<\"\$err\""
# a CoCa whose context holds one position can never caption: its config is refused
mkdir -p "$tmp/ctx1" && cp "$fx/model.safetensors" "$tmp/ctx1/"
sed '0,/"context_length": 16/s//"context_length": 1/' "$fx/config.json" >"$tmp/ctx1/config.json"
err=$("$vlm" caption --model "$tmp/ctx1" --inputs "$fx/inputs.safetensors" 2>&1); rc=$?
check "context_length 1: exit 1, the config and the reason named" \
  "[ $rc -eq 1 ] && grep -q 'ctx1/config.json: text_cfg.context_length: 1 is too short for a CoCa' <<<\"\$err\""
err=$("$vlm" caption --model "$tmp/no-such-model" --inputs "$fx/inputs.safetensors" 2>&1); rc=$?
check "a missing --model: exit 1, named once" "[ $rc -eq 1 ] && [ \$(grep -o 'no-such-model' <<<\"\$err\" | wc -l) -eq 1 ]"
check "caption --help" "\"$vlm\" caption --help | grep -q 'usage: vlm caption'"
"$vlm" caption --model "$fx" >/dev/null 2>&1
check "caption without images exits 2" "[ $? -eq 2 ]"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
