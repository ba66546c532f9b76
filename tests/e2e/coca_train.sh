#!/usr/bin/env bash
# `vlm train --model coca-tiny` on the shapes data: a CoCa run writes open_clip CoCa
# checkpoints + train_state, evaluates through the CoCa features, `vlm caption`
# reads its checkpoint, 2N steps straight equal N steps + `--resume latest` + N
# (bit-identical weights and optimizer state), fine-tuning from a CoCa checkpoint
# dir, the loss-weight flags, --accum-freq with a locked tower, and bad options refused.
# Usage: coca_train.sh VLM_BINARY
set -u
vlm=$1
. "$(dirname "$0")/lib.sh"
make_tmp
export VLM_THREADS=2
common=(--train-data shapes:64 --model coca-tiny --tokenizer train:600 --batch-size 8 --lr 1e-3 --warmup 3
        --grad-clip-norm 1 --val-frequency 0 --zeroshot-frequency 0 --workers 2 --logs "$tmp/runs" --seed 3)

# 12 steps straight (8 batches per epoch: crosses an epoch end) vs 6 + resume + 6.
"$vlm" train "${common[@]}" --steps 12 --name a >"$tmp/a.out" 2>"$tmp/a.err"
check "straight CoCa run exits 0" "[ $? -eq 0 ]"
check "the run says CoCa" "grep -q 'CoCa model coca-tiny' $tmp/a.err"
"$vlm" train "${common[@]}" --steps 12 --name b --stop-at-step 6 >/dev/null 2>"$tmp/b.err"
check "first half exits 0" "[ $? -eq 0 ]"
"$vlm" train "${common[@]}" --steps 12 --name b --resume latest >/dev/null 2>"$tmp/c.err"
check "resumed half exits 0" "[ $? -eq 0 ]"
check "resume says where it continues" "grep -q 'resuming .* at step 6' $tmp/c.err"
A=$tmp/runs/a/checkpoints/latest B=$tmp/runs/b/checkpoints/latest
check "both end at step 12" "[ \"\$(readlink $A)\" = step_12 ] && [ \"\$(readlink $B)\" = step_12 ]"
check "weights bit-identical after resume" "cmp -s $A/open_clip_model.safetensors $B/open_clip_model.safetensors"
check "optimizer state bit-identical after resume" "cmp -s $A/train_state.safetensors $B/train_state.safetensors"
check "checkpoint config is CoCa (multimodal_cfg)" "grep -q multimodal_cfg $A/open_clip_config.json"
check "checkpoint has open_clip CoCa names" "grep -aq 'text_decoder.text_projection' $A/open_clip_model.safetensors && grep -aq 'visual.attn_pool.query' $A/open_clip_model.safetensors && grep -aq 'text.cls_emb' $A/open_clip_model.safetensors"
check "train_state has the moments" "grep -aq 'text_decoder.text_projection.exp_avg_sq' $A/train_state.safetensors"
check "run config records the loss weights" "grep -q '\"coca_caption_loss_weight\": 2' $tmp/runs/a/config.json"

# The same with --accum-freq 2 (micro-batches of 4): 8 steps straight vs 4 + resume + 4.
"$vlm" train "${common[@]}" --batch-size 4 --accum-freq 2 --steps 8 --name k1 >/dev/null 2>&1
check "straight CoCa run with --accum-freq 2 exits 0" "[ $? -eq 0 ]"
"$vlm" train "${common[@]}" --batch-size 4 --accum-freq 2 --steps 8 --name k2 --stop-at-step 4 >/dev/null 2>&1
"$vlm" train "${common[@]}" --batch-size 4 --accum-freq 2 --steps 8 --name k2 --resume latest >/dev/null 2>&1
check "accum 2: resumed run exits 0" "[ $? -eq 0 ]"
K1=$tmp/runs/k1/checkpoints/latest K2=$tmp/runs/k2/checkpoints/latest
check "accum 2: weights and optimizer state bit-identical after resume" \
  "cmp -s $K1/open_clip_model.safetensors $K2/open_clip_model.safetensors && cmp -s $K1/train_state.safetensors $K2/train_state.safetensors"

# A different seed differs (the comparison above can fail).
"$vlm" train "${common[@]}" --steps 12 --name s9 --seed 9 >/dev/null 2>&1
check "another seed differs" "! cmp -s $A/open_clip_model.safetensors $tmp/runs/s9/checkpoints/latest/open_clip_model.safetensors"

# vlm caption on the checkpoint.
"$vlm" shapes --out "$tmp/val" --split val --n 3 --size 32 >/dev/null
"$vlm" caption --model $A --tokenizer $tmp/runs/a/tokenizer --json --max-len 12 "$tmp"/val/images/*.png >"$tmp/cap.json" 2>"$tmp/cap.err"
check "vlm caption on the checkpoint exits 0" "[ $? -eq 0 ]"
check "three captions" "[ \$(grep -c '\"caption\": ' $tmp/cap.json) -eq 3 ]"
# without --tokenizer: the run's tokenizer (RUN/tokenizer beside RUN/checkpoints/NAME) is found
"$vlm" caption --model $A --json --max-len 12 "$tmp"/val/images/*.png >"$tmp/cap2.json" 2>"$tmp/cap2.err"
rc=$?
check "vlm caption finds the run's tokenizer by itself" "[ $rc -eq 0 ] && cmp -s $tmp/cap.json $tmp/cap2.json"
mkdir -p "$tmp/bare" && cp $A/open_clip_config.json $A/open_clip_model.safetensors "$tmp/bare/"
"$vlm" caption --model "$tmp/bare" --max-len 12 "$tmp"/val/images/*.png >"$tmp/cap3.txt" 2>"$tmp/cap3.err"
rc=$?
check "without a tokenizer: token ids and a note ($(cat "$tmp/cap3.err"))" \
  "[ $rc -eq 0 ] && grep -q 'printing token ids' $tmp/cap3.err && [ \$(grep -c . $tmp/cap3.txt) -eq 3 ]"

# Fine-tune from the checkpoint dir, with evaluation (val loss, retrieval, zero-shot)
# through the CoCa features, and the loss-weight flags.
"$vlm" train --train-data shapes:32 --model $A --tokenizer $tmp/runs/a/tokenizer --batch-size 8 --steps 3 \
  --val-data shapes:val:24 --coca-caption-loss-weight 0 --coca-contrastive-loss-weight 1 --logs "$tmp/runs" \
  --name ft --json >"$tmp/ft.json" 2>"$tmp/ft.err"
check "fine-tune from a CoCa checkpoint exits 0" "[ $? -eq 0 ]"
check "fine-tune --json has eval metrics" "grep -q 'zeroshot_top1' $tmp/ft.json && grep -q 'text_to_image_R@1' $tmp/ft.json && grep -q 'val_loss' $tmp/ft.json"
# ... and from the same checkpoint as a hub directory holding the pickle only
"$vlm" convert --model $A --to open_clip --format torch --out "$tmp/coca-pt" >/dev/null
check "CoCa --format torch writes open_clip_pytorch_model.bin" "[ -f $tmp/coca-pt/open_clip_pytorch_model.bin ]"
"$vlm" train --train-data shapes:32 --model "$tmp/coca-pt" --tokenizer $tmp/runs/a/tokenizer --batch-size 8 --steps 1 \
  --val-frequency 0 --zeroshot-frequency 0 --logs "$tmp/runs" --name ftpt --log-every-n-steps 1 >/dev/null 2>"$tmp/ftpt.err"
"$vlm" train --train-data shapes:32 --model $A --tokenizer $tmp/runs/a/tokenizer --batch-size 8 --steps 1 \
  --val-frequency 0 --zeroshot-frequency 0 --logs "$tmp/runs" --name ftst --log-every-n-steps 1 >/dev/null 2>&1
l_pt=$(grep -o '"loss": [-0-9.e]*' "$tmp/runs/ftpt/metrics.jsonl" 2>/dev/null | head -1)
l_st=$(grep -o '"loss": [-0-9.e]*' "$tmp/runs/ftst/metrics.jsonl" 2>/dev/null | head -1)
check "fine-tune CoCa from the pickle: the safetensors' first loss ($l_pt, $l_st)" \
  "[ -n \"$l_pt\" ] && [ \"$l_pt\" = \"$l_st\" ] || { cat $tmp/ftpt.err; false; }"
# caption weight 0: the logged loss is the contrastive loss alone (< ln(8) + margin; a
# caption CE over a 600-id vocabulary would add ~2 x 5)
check "caption weight 0 leaves the contrastive loss" "awk -F'\"final_loss\": ' '{split(\$2, a, /[,}]/); exit !(a[1] < 3.0)}' $tmp/ft.json"

# Accumulation and LiT locking: fine-tune the checkpoint 3 steps with --accum-freq 2 and
# one tower locked. The locked tower's embeddings (vlm index --export-npy) stay
# bit-identical to the checkpoint's, the other tower's change.
tok=$tmp/runs/a/tokenizer
printf 'a red circle\na blue square on the left\n' >"$tmp/t.txt"
"$vlm" index --model $A --out "$tmp/i0.idx" --export-npy "$tmp/i0.npy" --quiet "$tmp/val/images" >/dev/null 2>&1
"$vlm" index --model $A --tokenizer $tok --out "$tmp/t0.idx" --texts "$tmp/t.txt" --export-npy "$tmp/t0.npy" --quiet >/dev/null 2>&1
check "embeddings of the checkpoint written" "[ -s $tmp/i0.npy ] && [ -s $tmp/t0.npy ]"
for lock in image text; do
  "$vlm" train --train-data shapes:32 --model $A --tokenizer $tok --batch-size 4 --accum-freq 2 --steps 3 --lr 1e-3 \
    --warmup 1 --lock-$lock --logs "$tmp/runs" --name l$lock >/dev/null 2>"$tmp/l.err"
  check "CoCa --accum-freq 2 --lock-$lock exits 0" "[ $? -eq 0 ]"
  L=$tmp/runs/l$lock/checkpoints/latest
  "$vlm" index --model $L --out "$tmp/i$lock.idx" --export-npy "$tmp/i$lock.npy" --quiet "$tmp/val/images" >/dev/null 2>&1
  "$vlm" index --model $L --tokenizer $tok --out "$tmp/t$lock.idx" --texts "$tmp/t.txt" --export-npy "$tmp/t$lock.npy" \
    --quiet >/dev/null 2>&1
  if [ $lock = image ]; then
    check "lock-image: image embeddings unchanged" "cmp -s $tmp/i0.npy $tmp/iimage.npy"
    check "lock-image: text embeddings changed" "[ -s $tmp/timage.npy ] && ! cmp -s $tmp/t0.npy $tmp/timage.npy"
  else
    check "lock-text: text embeddings unchanged" "cmp -s $tmp/t0.npy $tmp/ttext.npy"
    check "lock-text: image embeddings changed" "[ -s $tmp/itext.npy ] && ! cmp -s $tmp/i0.npy $tmp/itext.npy"
  fi
done

# Errors
"$vlm" train "${common[@]}" --steps 2 --coca-caption-loss-weight x --name e2 >/dev/null 2>&1
check "bad loss weight exits 2" "[ $? -eq 2 ]"
"$vlm" train "${common[@]}" --steps 2 --model coca-nope --name e3 >/dev/null 2>"$tmp/e.err"
check "unknown CoCa model exits 2" "[ $? -eq 2 ] && grep -q 'coca-nope' $tmp/e.err"

# --resume of a CoCa checkpoint with a CLIP --model: refused before any work (exit 2).
"$vlm" train "${common[@]}" --steps 13 --model tiny --resume "$A" --name r1 >/dev/null 2>"$tmp/e.err"
check "CLIP --model for a CoCa checkpoint exits 2" \
  "[ $? -eq 2 ] && grep -q -- '--model tiny is a CLIP model, the checkpoint .* a CoCa one' $tmp/e.err && [ ! -e $tmp/runs/r1 ]"

# CoCa configs: open_clip reads a missing attentional_pool / embed_cls as false, which vlm's CoCa
# does not implement: refused (not trained as true); a context of 1 position can never caption.
cfg='{"embed_dim": 32, "vision_cfg": {"image_size": 32, "patch_size": 8, "layers": 1, "width": 48, "head_width": 12,
  "attentional_pool": true, "attn_pooler_queries": 8, "attn_pooler_heads": 4}, "text_cfg": {"context_length": 16,
  "width": 32, "heads": 4, "layers": 1, "embed_cls": true}, "multimodal_cfg": {"context_length": 16, "width": 32,
  "heads": 4, "layers": 1}}'
echo "$cfg" >"$tmp/ok.json"
"$vlm" train "${common[@]}" --model "$tmp/ok.json" --steps 1 --name cfg_ok >/dev/null 2>&1
check "a CoCa config file trains" "[ $? -eq 0 ] && grep -Eq '\"attentional_pool\":[[:space:]]*true' $tmp/runs/cfg_ok/checkpoints/latest/open_clip_config.json"
for edit in 's/"attentional_pool": true, //' 's/, "embed_cls": true//' 's/"text_cfg": {"context_length": 16/"text_cfg": {"context_length": 1/'; do
  sed "$edit" "$tmp/ok.json" >"$tmp/bad.json"
  "$vlm" train "${common[@]}" --model "$tmp/bad.json" --steps 1 --name cfg_bad >/dev/null 2>"$tmp/e.err"
  rc=$?
  check "refused CoCa config ($edit): exit 1, named" \
    "[ $rc -eq 1 ] && grep -Eq 'bad.json: (vision_cfg.attentional_pool: missing|text_cfg.embed_cls: missing|text_cfg.context_length: 1 is too short)' $tmp/e.err && [ ! -e $tmp/runs/cfg_bad ]"
done

echo "coca_train: $pass passed, $fail failed"
[ $fail -eq 0 ]
