#!/usr/bin/env bash
# `vlm info` and `vlm forward` on a fixture directory, open_clip and Hugging Face
# checkpoints: the written outputs and gradients must match the fixture's.
# Usage: forward.sh VLM_BINARY TEST_CLIP_PARITY_BINARY FIXTURE_DIR
set -u
vlm=$1 cmp=$2 fx=$3
. "$(dirname "$0")/lib.sh"
make_tmp

out=$("$vlm" info --model "$fx"); rc=$?
check "info exits 0" "[ $rc -eq 0 ]"
check "info names the format" "grep -q 'open_clip checkpoint' <<<\"\$out\""
check "info counts parameters" "grep -q '^parameters: [0-9]' <<<\"\$out\""
check "info names the weights' format" "grep -q '^files: .*(safetensors)' <<<\"\$out\""
check "info --help" "\"$vlm\" info --help | grep -q 'usage: vlm info'"
check "forward --help" "\"$vlm\" forward --help | grep -q 'usage: vlm forward'"

"$vlm" forward --model "$fx" --inputs "$fx/inputs.safetensors" --out "$tmp/out.st" --grads "$tmp/grads.st" >/dev/null
check "forward (open_clip) exits 0" "[ $? -eq 0 ]"
check "open_clip outputs and gradients match the fixture" "\"$cmp\" --compare \"$fx\" \"$tmp/out.st\" \"$tmp/grads.st\" >/dev/null"
if [ -f "$fx/config_hf.json" ]; then
  "$vlm" forward --model "$fx/config_hf.json" --inputs "$fx/inputs.safetensors" --out "$tmp/out_hf.st" \
    --grads "$tmp/grads_hf.st" >/dev/null
  check "forward (HF) exits 0" "[ $? -eq 0 ]"
  check "HF outputs and gradients (HF names) match the fixture" \
    "\"$cmp\" --compare \"$fx\" \"$tmp/out_hf.st\" \"$tmp/grads_hf.st\" >/dev/null"
fi

out=$("$vlm" forward --model "$fx" --inputs "$fx/inputs.safetensors" --out "$tmp/bf16.st" --precision bf16); rc=$?
check "forward --precision bf16 exits 0" "[ $rc -eq 0 ] && grep -q 'bf16' <<<\"\$out\" && [ -f \"$tmp/bf16.st\" ]"
"$vlm" forward --model "$fx" --inputs "$fx/inputs.safetensors" --out "$tmp/x.st" --precision fp8 >/dev/null 2>&1
check "unknown --precision exits 2" "[ $? -eq 2 ]"

# convert: open_clip -> HF -> open_clip; each converted model reproduces the fixture.
"$vlm" convert --model "$fx" --to hf --out "$tmp/hf" >/dev/null
check "convert --to hf exits 0" "[ $? -eq 0 ] && [ -f \"$tmp/hf/config.json\" ] && [ -f \"$tmp/hf/model.safetensors\" ]"
"$vlm" convert --model "$tmp/hf" --to open_clip --out "$tmp/oc" >/dev/null
check "convert --to open_clip exits 0" "[ $? -eq 0 ] && [ -f \"$tmp/oc/open_clip_config.json\" ]"
for m in hf oc; do
  "$vlm" forward --model "$tmp/$m" --inputs "$fx/inputs.safetensors" --out "$tmp/o_$m.st" --grads "$tmp/g_$m.st" >/dev/null
  check "converted ($m) model reproduces the fixture" "\"$cmp\" --compare \"$fx\" \"$tmp/o_$m.st\" \"$tmp/g_$m.st\" >/dev/null"
done
"$vlm" convert --model "$fx" --to onnx --out "$tmp/x" >/dev/null 2>&1
check "convert to an unknown layout exits 2" "[ $? -eq 2 ]"

# a new model, open_clip's initialisation, in both layouts; it runs on the fixture inputs when shapes agree
"$vlm" convert --init tiny --seed 3 --to hf --out "$tmp/new" >/dev/null
check "convert --init tiny exits 0" "[ $? -eq 0 ] && \"$vlm\" info --model \"$tmp/new\" | grep -q '^parameters: '"
"$vlm" convert --init ViT-Q-1 --to hf --out "$tmp/new2" >/dev/null 2>&1
check "convert --init with an unknown name exits 2" "[ $? -eq 2 ]"

# an HF text tower pooling at eos id 5 (not the largest id): info says so, --to hf keeps it,
# --to open_clip (which pools at the largest id) refuses before creating anything
mkdir -p "$tmp/eos" && cp "$tmp/hf/model.safetensors" "$tmp/eos/" &&
  sed -E 's/"eos_token_id":[[:space:]]*[0-9]+/"eos_token_id": 5/' "$tmp/hf/config.json" >"$tmp/eos/config.json"
check "info names the eos pooling" "\"$vlm\" info --model \"$tmp/eos\" | grep -q 'pooling first eos id (5)'"
err=$("$vlm" convert --model "$tmp/eos" --to open_clip --out "$tmp/eos-oc" 2>&1); rc=$?
check "eos pooling --to open_clip: exit 1, says why, nothing created" \
  "[ $rc -eq 1 ] && grep -q 'pools at the first eos id 5' <<<\"\$err\" && [ ! -e \"$tmp/eos-oc\" ]"
"$vlm" convert --model "$tmp/eos" --to hf --out "$tmp/eos-hf" >/dev/null
check "eos pooling --to hf keeps it" "grep -q '\"eos_token_id\":[[:space:]]*5' \"$tmp/eos-hf/config.json\""
# the index identity tells the two poolings apart (same weights; the texts would embed differently)
img="$fx/../../data/images/horse.png"
if [ -f "$img" ]; then
  id_hf=$("$vlm" index --model "$tmp/hf" --out "$tmp/i1.idx" "$img" 2>&1 | grep -o 'model clip-[0-9a-f]*')
  id_eos=$("$vlm" index --model "$tmp/eos" --out "$tmp/i2.idx" "$img" 2>&1 | grep -o 'model clip-[0-9a-f]*')
  check "eos pooling gives another index identity ($id_hf, $id_eos)" "[ -n \"$id_hf\" ] && [ -n \"$id_eos\" ] && [ \"$id_hf\" != \"$id_eos\" ]"
fi
# PyTorch checkpoints: --format torch in both layouts, read back as a directory, as the file
# itself (its config beside it), and bare (the config named with --config)
for to in open_clip hf; do
  out=$("$vlm" convert --model "$fx" --to $to --format torch --out "$tmp/pt-$to"); rc=$?
  bin=$([ $to = hf ] && echo pytorch_model.bin || echo open_clip_pytorch_model.bin)
  check "convert --to $to --format torch: exit 0, $bin, no safetensors" \
    "[ $rc -eq 0 ] && [ -f \"$tmp/pt-$to/$bin\" ] && ! ls \"$tmp/pt-$to\" | grep -q safetensors && grep -q 'PyTorch checkpoint' <<<\"\$out\""
  "$vlm" forward --model "$tmp/pt-$to" --inputs "$fx/inputs.safetensors" --out "$tmp/o_pt_$to.st" --grads "$tmp/g_pt_$to.st" >/dev/null
  check "the $to PyTorch checkpoint reproduces the fixture" "\"$cmp\" --compare \"$fx\" \"$tmp/o_pt_$to.st\" \"$tmp/g_pt_$to.st\" >/dev/null"
  check "info on the $bin file itself names it and its format" \
    "\"$vlm\" info --model \"$tmp/pt-$to/$bin\" | grep -q \"files: .*$bin (PyTorch checkpoint)\""
done
mkdir -p "$tmp/bare" && cp "$tmp/pt-open_clip/open_clip_pytorch_model.bin" "$tmp/bare/epoch_3.pt"
err=$("$vlm" info --model "$tmp/bare/epoch_3.pt" 2>&1); rc=$?
check "a bare state dict without a config: exit 1, names the file and --config" \
  "[ $rc -eq 1 ] && grep -q 'epoch_3.pt' <<<\"\$err\" && grep -q -- '--config' <<<\"\$err\""
cfgfile=$(ls "$fx"/config.json 2>/dev/null || ls "$fx"/open_clip_config.json)
"$vlm" convert --model "$tmp/bare/epoch_3.pt" --config "$cfgfile" --to open_clip --out "$tmp/from-bare" >/dev/null
"$vlm" forward --model "$tmp/from-bare" --inputs "$fx/inputs.safetensors" --out "$tmp/o_bare.st" --grads "$tmp/g_bare.st" >/dev/null
check "convert --config of a bare state dict reproduces the fixture" "\"$cmp\" --compare \"$fx\" \"$tmp/o_bare.st\" \"$tmp/g_bare.st\" >/dev/null"
"$vlm" convert --model "$fx" --to open_clip --format onnx --out "$tmp/x" >/dev/null 2>&1
check "convert --format with an unknown value exits 2" "[ $? -eq 2 ]"
"$vlm" convert --init tiny --config "$cfgfile" --to open_clip --out "$tmp/x" >/dev/null 2>&1
check "convert --init with --config exits 2" "[ $? -eq 2 ]"
# a legacy (pre-1.6, non-zip) PyTorch file: exit 1, named, how to re-save it
legacy="$(cd "$(dirname "$0")/.." && pwd)/data/torch/legacy.pt"
err=$("$vlm" info --model "$legacy" 2>&1); rc=$?
check "a legacy PyTorch file: exit 1, says so and how to re-save" \
  "[ $rc -eq 1 ] && grep -q 'legacy.pt: a legacy PyTorch file' <<<\"\$err\" && grep -q 'save it again' <<<\"\$err\""
# a file that is no archive: exit 1, named
mkdir -p "$tmp/bin" && cp "$tmp/hf/config.json" "$tmp/bin/" && echo pickle >"$tmp/bin/pytorch_model.bin"
err=$("$vlm" info --model "$tmp/bin" 2>&1); rc=$?
check "a pytorch_model.bin that is no archive: exit 1, named" "[ $rc -eq 1 ] && grep -q 'pytorch_model.bin' <<<\"\$err\""

err=$("$vlm" forward --model "$fx" --inputs "$fx/model.safetensors" --out "$tmp/x.st" 2>&1); rc=$?
check "forward on a file without inputs fails with 1" "[ $rc -eq 1 ]"
check "... and names the missing tensors" "grep -q 'needs tensors' <<<\"\$err\""
check "... and writes nothing" "[ ! -e \"$tmp/x.st\" ]"
# a config asking for more layers than the weights hold: every missing tensor listed (a long
# message, which once overflowed its buffer: the ASan tree runs this too)
if command -v python3 >/dev/null && [ -f "$fx/config.json" ]; then
  mkdir -p "$tmp/deep" && ln -s "$fx/model.safetensors" "$tmp/deep/model.safetensors"
  python3 -c "import json,sys; c=json.load(open(sys.argv[1])); v=c.get('model_cfg',c)['vision_cfg']; v['layers']=4*v['layers']+4; json.dump(c,open(sys.argv[2],'w'))" \
    "$fx/config.json" "$tmp/deep/config.json"
  err=$("$vlm" info --model "$tmp/deep" 2>&1); rc=$?
  check "more layers than weights: exit 1, the missing tensors listed" "[ $rc -eq 1 ] && grep -q 'missing:' <<<\"\$err\" && [ \$(grep -c 'resblocks' <<<\"\$err\") -gt 20 ]"
fi
# outputs that would overwrite each other, the inputs or the checkpoint: refused, nothing touched
err=$("$vlm" forward --model "$fx" --inputs "$fx/inputs.safetensors" --out "$tmp/same.st" --grads "$tmp/./same.st" 2>&1); rc=$?
check "--out and --grads the same file: exit 2" "[ $rc -eq 2 ] && grep -q 'same file' <<<\"\$err\" && [ ! -e \"$tmp/same.st\" ]"
mkdir -p "$tmp/ck" && cp "$fx"/*.safetensors "$fx"/*.json "$tmp/ck/" 2>/dev/null
w=$(ls "$tmp/ck" | grep -m1 'model.safetensors$')
cp "$tmp/ck/$w" "$tmp/w.before"
err=$("$vlm" forward --model "$tmp/ck" --inputs "$tmp/ck/inputs.safetensors" --out "$tmp/o.st" --grads "$tmp/ck/$w" 2>&1); rc=$?
check "--grads onto the checkpoint's weights: exit 2, weights kept" "[ $rc -eq 2 ] && grep -q 'would overwrite' <<<\"\$err\" && cmp -s \"$tmp/ck/$w\" \"$tmp/w.before\""
err=$("$vlm" forward --model "$tmp/ck" --inputs "$tmp/ck/inputs.safetensors" --out "$tmp/ck/inputs.safetensors" 2>&1); rc=$?
check "--out onto the inputs: exit 2" "[ $rc -eq 2 ] && grep -q 'would overwrite' <<<\"\$err\""
err=$("$vlm" forward --model "$tmp/nowhere" --inputs "$fx/inputs.safetensors" --out "$tmp/x.st" 2>&1); rc=$?
check "missing model fails with 1" "[ $rc -eq 1 ] && grep -q 'nowhere' <<<\"\$err\""
"$vlm" forward --model "$fx" >/dev/null 2>&1
check "missing options exit 2" "[ $? -eq 2 ]"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
