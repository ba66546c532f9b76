#!/usr/bin/env bash
# `vlm train --siglip` (open_clip's SigLIP loss) on the shapes data: a new run's model gets a
# logit_bias (-10) and logit_scale ln 10, the loss goes down, the checkpoint carries
# init_logit_bias + logit_bias (vlm info), 2N steps straight equal N + `--resume latest` + N
# (with and without --siglip on the resume, with --accum-freq 2), `vlm forward` writes the
# SigLIP outputs (checked against open_clip's SigLipLoss formula when python3 is here),
# `vlm convert --to hf` refuses the model, zero-shot and eval run on it, and the refusals
# (CoCa, a checkpoint without logit_bias, a CLIP run resumed with --siglip).
# Usage: train_siglip.sh VLM_BINARY SHARED_DIR
set -u
vlm=$1 shared=$2
pass=0 fail=0
check() { if eval "$2"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1"; fi; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
export VLM_THREADS=2
common=(--device cpu --train-data shapes:128 --model tiny --tokenizer train:600 --batch-size 8 --lr 1e-3 --warmup 3
        --val-frequency 0 --zeroshot-frequency 0 --workers 2 --logs "$tmp/runs" --seed 3 --log-every-n-steps 1)
losses() { grep '"type": "train"' "$1/metrics.jsonl" | grep -o '"loss": [-0-9.e+]*' | cut -d' ' -f2; }

# ---- a new run: open_clip's --siglip initial values, the loss goes down
"$vlm" train "${common[@]}" --siglip --steps 30 --name s >"$tmp/s.out" 2>"$tmp/s.err"
check "a --siglip run exits 0" "[ $? -eq 0 ]"
S=$tmp/runs/s/checkpoints/latest
first=$(losses "$tmp/runs/s" | head -1) last=$(losses "$tmp/runs/s" | tail -1)
# at init the positives' logits are ~10 cos - 10: the loss starts near 10 (a CLIP run's: ln 8)
# (at most 20 + 7 ln 2 with 8 pairs; a CLIP run's first loss is ~ln 8)
check "the first loss is SigLIP's at init (~10 and more): $first" "awk -v a=$first 'BEGIN { exit !(a > 7 && a < 25) }'"
check "the loss goes down: $first -> $last" "awk -v a=$first -v b=$last 'BEGIN { exit !(b < a - 2) }'"
info=$("$vlm" info --model "$S")
check "vlm info shows the logit_bias" "grep -q '^logit_bias: -[0-9.]* (a SigLIP model: init_logit_bias -10' <<<\"\$info\""
check "vlm info counts it" "grep -q 'logit_scale 1, logit_bias 1)' <<<\"\$info\""
check "the config holds init_logit_bias -10 (open_clip's create_model makes the bias)" \
  "grep -q '\"init_logit_bias\":[[:space:]]*-10' $S/open_clip_config.json"
check "the weights hold a logit_bias tensor" "head -c 8192 $S/open_clip_model.safetensors | grep -a -q '\"logit_bias\":{\"dtype\":\"F32\",\"shape\":\[\]'"
check "the optimizer state holds its moments" "head -c 65536 $S/train_state.safetensors | grep -a -q '\"logit_bias.exp_avg\"'"
"$vlm" train "${common[@]}" --siglip --steps 1 --name s1 >/dev/null 2>&1
info1=$("$vlm" info --model "$tmp/runs/s1/checkpoints/latest")
ls1=$(sed -n 's/.*logit_scale: \([-0-9.e]*\) .*/\1/p' <<<"$info1") lb1=$(sed -n 's/^logit_bias: \([-0-9.e]*\) .*/\1/p' <<<"$info1")
check "after one step logit_scale ($ls1) is near ln 10 and logit_bias ($lb1) near -10" \
  "awk -v s=$ls1 -v b=$lb1 'BEGIN { exit !(s > 2.29 && s < 2.31 && b > -10.01 && b < -9.99) }'"

# ---- resume: 2N straight = N + resume + N (the resume with or without --siglip)
for accum in 1 2; do
  for flag in --siglip ""; do
    steps=$((12 / accum)) half=$((6 / accum)) name=r$accum${flag:+s}
    "$vlm" train "${common[@]}" --siglip --accum-freq $accum --steps $steps --name a$name >/dev/null 2>&1
    "$vlm" train "${common[@]}" --siglip --accum-freq $accum --steps $steps --name b$name --stop-at-step $half \
      >/dev/null 2>&1
    "$vlm" train "${common[@]}" $flag --accum-freq $accum --steps $steps --name b$name --resume latest \
      >/dev/null 2>"$tmp/r.err"
    check "resume ${flag:-without --siglip} (accum $accum) exits 0, no note or warning" \
      "[ $? -eq 0 ] && ! grep -q 'warning\|note' $tmp/r.err"
    A=$tmp/runs/a$name/checkpoints/latest B=$tmp/runs/b$name/checkpoints/latest
    check "resume ${flag:-without --siglip} (accum $accum): weights bit-identical at step $steps" \
      "[ \"\$(readlink $B)\" = step_$steps ] && cmp -s $A/open_clip_model.safetensors $B/open_clip_model.safetensors"
    check "... and the optimizer state" "cmp -s $A/train_state.safetensors $B/train_state.safetensors"
  done
done

# ---- vlm forward: the SigLIP outputs on a batch of the run's own captions
printf '%s\n' "a red circle" "a blue square" "a green star" "a small yellow triangle" >"$tmp/caps.txt"
"$vlm" tokenize --vocab "$tmp/runs/s/tokenizer" --context-length 16 "$tmp/caps.txt" >"$tmp/ids.jsonl"
check "the captions tokenize" "[ \$(wc -l <$tmp/ids.jsonl) -eq 4 ]"
if command -v python3 >/dev/null; then
  python3 - "$shared/fixtures/tiny-clip/inputs.safetensors" "$tmp/ids.jsonl" "$tmp/in.st" <<'PY'
import json, struct, sys
src, ids_path, out = sys.argv[1:4]
raw = open(src, 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
e = hdr['images']
b0, b1 = e['data_offsets']
B = 4
per = 3 * e['shape'][2] * e['shape'][3]
img = raw[8 + n + b0: 8 + n + b0 + 4 * B * per]   # the fixture's first 4 images (F32)
ids = [json.loads(l)['ids'] for l in open(ids_path)]
txt = struct.pack('<%dq' % (B * 16), *[i for r in ids for i in r])
h = {'images': {'dtype': 'F32', 'shape': [B, 3, e['shape'][2], e['shape'][3]], 'data_offsets': [0, len(img)]},
     'text': {'dtype': 'I64', 'shape': [B, 16], 'data_offsets': [len(img), len(img) + len(txt)]}}
hb = json.dumps(h).encode()
hb += b' ' * (-len(hb) % 8)
open(out, 'wb').write(struct.pack('<Q', len(hb)) + hb + img + txt)
PY
  out=$("$vlm" forward --model "$S" --inputs "$tmp/in.st" --out "$tmp/out.st" --grads "$tmp/g.st"); rc=$?
  check "forward on the SigLIP checkpoint: exit 0, the siglip loss printed" "[ $rc -eq 0 ] && grep -q '^siglip loss [0-9]' <<<\"\$out\""
  check "its gradients include logit_bias" "head -c 65536 $tmp/g.st | grep -a -q '\"logit_bias\"'"
  check "the outputs are SigLipLoss's: logits = scale * img @ txt^T + bias, loss = -sum log sigmoid / B" \
    "python3 - $tmp/out.st <<'PY'
import json, math, struct, sys
raw = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
def get(k):
    e = hdr[k]; a, b = e['data_offsets']
    return list(struct.unpack('<%df' % ((b - a) // 4), raw[8 + n + a: 8 + n + b])), e['shape']
names = set(hdr) - {'__metadata__'}
want = {'image_features_unnorm', 'text_features_unnorm', 'image_features', 'text_features', 'logits_per_image',
        'logits_per_text', 'logit_scale', 'logit_bias', 'siglip_loss', 'loss'}
assert names == want, names
img, (B, E) = get('image_features'); txt, _ = get('text_features')
s = get('logit_scale')[0][0]; b = get('logit_bias')[0][0]
lpi = get('logits_per_image')[0]; lpt = get('logits_per_text')[0]
loss = 0.0
for i in range(B):
    for j in range(B):
        z = s * sum(img[i * E + e] * txt[j * E + e] for e in range(E)) + b
        assert abs(z - lpi[i * B + j]) < 1e-4 * max(1, abs(z)) and lpt[j * B + i] == lpi[i * B + j], (i, j)
        y = z if i == j else -z
        loss += max(-y, 0) + math.log1p(math.exp(-abs(y)))
loss /= B
got = get('siglip_loss')[0][0]
assert abs(got - loss) < 1e-5 * max(1, loss) and get('loss')[0][0] == got, (got, loss)
PY"
else
  echo "note: no python3: the vlm forward checks of the SigLIP outputs were not run"
fi

# ---- the model elsewhere: no Hugging Face form; open_clip layout, zero-shot and eval work
err=$("$vlm" convert --model "$S" --to hf --out "$tmp/hf" 2>&1); rc=$?
check "convert --to hf refuses a SigLIP model (exit 1, the reason named, nothing written)" \
  "[ $rc -eq 1 ] && grep -q 'logit_bias' <<<\"\$err\" && grep -q 'CLIPModel' <<<\"\$err\" && [ ! -e $tmp/hf ]"
"$vlm" convert --model "$S" --to open_clip --out "$tmp/oc" >/dev/null 2>&1
check "convert --to open_clip keeps the bias" \
  "[ $? -eq 0 ] && cmp -s $S/open_clip_config.json $tmp/oc/open_clip_config.json && \"$vlm\" info --model $tmp/oc | grep -q '^logit_bias: '"
"$vlm" shapes --split val --n 12 --out "$tmp/val" >/dev/null 2>&1
out=$("$vlm" zeroshot --model "$S" --classes "red circle,blue square,green star" "$tmp/val/images" 2>&1); rc=$?
check "zeroshot runs on the SigLIP checkpoint" "[ $rc -eq 0 ] && [ \$(grep -c 'red circle\|blue square\|green star' <<<\"\$out\") -ge 12 ]"
out=$("$vlm" eval --model "$S" --zeroshot shapes:val:32 2>&1); rc=$?
check "eval --zeroshot runs on it" "[ $rc -eq 0 ] && grep -q 'top-1' <<<\"\$out\""

# ---- refused
err=$("$vlm" train "${common[@]}" --model coca-tiny --siglip --steps 2 --name c 2>&1); rc=$?
check "--siglip on a CoCa model: exit 2, why" "[ $rc -eq 2 ] && grep -q 'siglip: coca-tiny is a CoCa model' <<<\"\$err\" && [ ! -e $tmp/runs/c ]"
"$vlm" train "${common[@]}" --steps 2 --name clip >/dev/null 2>&1
C=$tmp/runs/clip/checkpoints/latest
check "a CLIP run has no logit_bias" "! \"$vlm\" info --model $C | grep -q logit_bias"
err=$("$vlm" train "${common[@]}" --model "$C" --siglip --steps 2 --name ft 2>&1); rc=$?
check "--siglip fine-tuning a checkpoint without logit_bias: exit 2, the fix named" \
  "[ $rc -eq 2 ] && grep -q 'has no logit_bias' <<<\"\$err\" && grep -q 'new run from a config' <<<\"\$err\" && [ ! -e $tmp/runs/ft ]"
err=$("$vlm" train "${common[@]}" --siglip --steps 4 --name clip --resume latest 2>&1); rc=$?
check "--siglip resuming a CLIP run: exit 2, the run left as it was" \
  "[ $rc -eq 2 ] && grep -q 'resume it without --siglip' <<<\"\$err\" && [ \"\$(readlink $C)\" = step_2 ]"
# fine-tuning a SigLIP checkpoint without the flag: its loss all the same (said)
err=$("$vlm" train "${common[@]}" --model "$S" --tokenizer "$tmp/runs/s/tokenizer" --steps 2 --name ft2 2>&1); rc=$?
check "fine-tuning a SigLIP checkpoint without --siglip: exit 0, trained as SigLIP (noted)" \
  "[ $rc -eq 0 ] && grep -q 'has a logit_bias (a SigLIP model)' <<<\"\$err\" && \"$vlm\" info --model $tmp/runs/ft2/checkpoints/latest | grep -q '^logit_bias: '"
# the GPU when there is one (or the emulated one): the same run on the device
"$vlm" train "${common[@]}" --device auto --siglip --steps 3 --name dev >/dev/null 2>"$tmp/dev.err"
check "--device auto --siglip exits 0" "[ $? -eq 0 ] && \"$vlm\" info --model $tmp/runs/dev/checkpoints/latest | grep -q '^logit_bias: '"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
