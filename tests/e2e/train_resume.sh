#!/usr/bin/env bash
# `vlm train` on the shapes data: 2N steps straight and N steps + `--resume latest`
# + N steps give bit-identical weights and optimizer state (CPU, same threads),
# across an epoch boundary and with --accum-freq; the run directory's layout;
# usage errors. Usage: train_resume.sh VLM_BINARY
set -u
vlm=$1
. "$(dirname "$0")/lib.sh"
make_tmp
export VLM_THREADS=2
common=(--device cpu --train-data shapes:64 --model tiny --tokenizer train:600 --batch-size 8 --lr 1e-3 --warmup 3
        --val-frequency 0 --zeroshot-frequency 0 --workers 2 --logs "$tmp/runs" --seed 3)

for accum in 1 2; do
  steps=$((12 / accum)) half=$((6 / accum))   # 8 batches per epoch: the run crosses an epoch end
  "$vlm" train "${common[@]}" --accum-freq $accum --steps $steps --name a$accum >"$tmp/a.out" 2>"$tmp/a.err"
  check "straight run (accum $accum) exits 0" "[ $? -eq 0 ]"
  "$vlm" train "${common[@]}" --accum-freq $accum --steps $steps --name b$accum --stop-at-step $half >/dev/null 2>"$tmp/b.err"
  check "first half (accum $accum) exits 0" "[ $? -eq 0 ]"
  check "first half stopped at step $half" "[ \"\$(readlink $tmp/runs/b$accum/checkpoints/latest)\" = step_$half ]"
  "$vlm" train "${common[@]}" --accum-freq $accum --steps $steps --name b$accum --resume latest >/dev/null 2>"$tmp/c.err"
  check "resumed half (accum $accum) exits 0" "[ $? -eq 0 ]"
  check "resume says where it continues" "grep -q 'resuming .* at step $half' $tmp/c.err"
  check "the same --model on resume: no warning, the checkpoint named" \
    "! grep -q warning $tmp/c.err && grep -q 'CLIP model .*/b$accum/checkpoints/latest (' $tmp/c.err"
  A=$tmp/runs/a$accum/checkpoints/latest B=$tmp/runs/b$accum/checkpoints/latest
  check "both end at step $steps" "[ \"\$(readlink $A)\" = step_$steps ] && [ \"\$(readlink $B)\" = step_$steps ]"
  check "weights bit-identical (accum $accum)" "cmp -s $A/open_clip_model.safetensors $B/open_clip_model.safetensors"
  check "optimizer state bit-identical (accum $accum)" "cmp -s $A/train_state.safetensors $B/train_state.safetensors"
done

# A resume that names no length keeps the run's own (its train_state's total_steps), so the
# lr schedule goes on as it was: the same weights as the straight 12-step run a1, not a
# 32-epoch schedule.
"$vlm" train "${common[@]}" --steps 12 --name len --stop-at-step 5 >/dev/null 2>&1
"$vlm" train "${common[@]}" --name len --resume latest >/dev/null 2>"$tmp/len.err"
check "resume without --steps: exit 0, the run's 12 steps named" \
  "[ $? -eq 0 ] && grep -q \"resuming with the run's own length, 12 steps\" $tmp/len.err && grep -q 'resuming .* at step 5' $tmp/len.err"
check "... ends at step 12, bit-identical to the straight run" \
  "[ \"\$(readlink $tmp/runs/len/checkpoints/latest)\" = step_12 ] && cmp -s $tmp/runs/a1/checkpoints/latest/open_clip_model.safetensors $tmp/runs/len/checkpoints/latest/open_clip_model.safetensors"
"$vlm" train "${common[@]}" --name len --resume latest >/dev/null 2>"$tmp/len.err"
check "... and once done, a resume without a length trains nothing: exit 2" \
  "[ $? -eq 2 ] && grep -q \"requested total is 12 steps (the run's own length)\" $tmp/len.err"

# A resume that gives no --lr, --warmup, --wd or --lr-scheduler goes on with the checkpoint's
# (train_state's metadata), not the defaults: bit-identical to the straight run, the values said.
base=(--device cpu --train-data shapes:64 --model tiny --tokenizer train:600 --batch-size 8
      --val-frequency 0 --zeroshot-frequency 0 --workers 2 --logs "$tmp/runs" --seed 3)
hp=(--steps 12 --lr 3e-3 --warmup 2 --wd 0.05 --lr-scheduler const)
"$vlm" train "${base[@]}" "${hp[@]}" --name hp1 >/dev/null 2>&1
"$vlm" train "${base[@]}" "${hp[@]}" --name hp2 --stop-at-step 5 >/dev/null 2>&1
"$vlm" train --device cpu --train-data shapes:64 --workers 2 --logs "$tmp/runs" --name hp2 --resume latest \
  >/dev/null 2>"$tmp/hp.err"
check "resume without the optimizer flags: exit 0, the checkpoint's settings said" \
  "[ $? -eq 0 ] && grep -q \"resuming with the checkpoint's --lr 0.003 --wd 0.05 --warmup 2 --seed 3 --lr-scheduler const\" $tmp/hp.err"
check "... bit-identical to the straight run" \
  "cmp -s $tmp/runs/hp1/checkpoints/latest/open_clip_model.safetensors $tmp/runs/hp2/checkpoints/latest/open_clip_model.safetensors"
check "... and the run's config.json keeps them" \
  "grep -q '\"lr\": 0.003, .*\"wd\": 0.05, \"warmup\": 2, \"lr_scheduler\": \"const\"' $tmp/runs/hp2/config.json"
"$vlm" train --device cpu --train-data shapes:64 --workers 2 --logs "$tmp/runs" --name hp1 --resume latest \
  --steps 14 --lr 1e-3 >/dev/null 2>"$tmp/hp.err"
check "... a flag given again wins over the checkpoint's" \
  "[ $? -eq 0 ] && grep -q '\"lr\": 0.001,' $tmp/runs/hp1/config.json && ! grep -q 'checkpoint.s --lr' $tmp/hp.err"

"$vlm" train "${common[@]}" --steps 2 --logs "" --name empty >/dev/null 2>"$tmp/e.err"
check "--logs '' is refused (it would put the run at /NAME): exit 2" "[ $? -eq 2 ] && grep -q 'logs is empty' $tmp/e.err && [ ! -e /empty ]"
cp -r "$tmp/runs/hp1" "$tmp/runs/hp3"
truncate -s 5000 "$tmp/runs/hp3/checkpoints/latest/train_state.safetensors"
"$vlm" train --device cpu --train-data shapes:64 --workers 2 --logs "$tmp/runs" --name hp3 --resume latest --steps 20 \
  >/dev/null 2>"$tmp/e.err"
check "a truncated train_state on resume: exit 1, the file and the reason named" \
  "[ $? -eq 1 ] && grep -q 'train_state.safetensors: header length .* truncated' $tmp/e.err"

# Exact resume past a bad sample: train_state keeps the loader's stream position (bad samples
# included), not just the batch count (before: the rest of the epoch shifted by one sample)
"$vlm" shapes --out "$tmp/bad" --split val --n 23 >/dev/null 2>&1
: >"$tmp/bad/images/empty.png"
printf 'images/empty.png\ta broken file\t0\n' >>"$tmp/bad/captions.tsv"
bf=(--device cpu --train-data "$tmp/bad/captions.tsv" --model tiny --tokenizer train:600 --batch-size 4 --steps 8
    --warmup 1 --workers 0 --val-frequency 0 --zeroshot-frequency 0 --logs "$tmp/runs" --seed 5)
"$vlm" train "${bf[@]}" --name bs1 >/dev/null 2>&1
for stop in 1 3; do
  "$vlm" train "${bf[@]}" --name bs2_$stop --stop-at-step $stop >/dev/null 2>&1
  "$vlm" train "${bf[@]}" --name bs2_$stop --resume latest >/dev/null 2>"$tmp/bs.err"
  check "a bad sample in the data, stopped at step $stop and resumed: bit-identical to the straight run" \
    "[ $? -eq 0 ] && cmp -s $tmp/runs/bs1/checkpoints/latest/open_clip_model.safetensors $tmp/runs/bs2_$stop/checkpoints/latest/open_clip_model.safetensors"
done

# A diverged update (a huge --lr) is never saved: no checkpoint of inf weights replaces a good one
"$vlm" train "${common[@]}" --steps 6 --name dv >/dev/null 2>&1
good=$(readlink "$tmp/runs/dv/checkpoints/latest")
"$vlm" train "${common[@]}" --steps 12 --name dv --resume latest --lr 1e38 --save-steps 1 >/dev/null 2>"$tmp/dv.err"
check "a diverging resume: exit 1, said, and 'latest' still the good $good" \
  "[ $? -eq 1 ] && grep -q 'weights hold NaN, infinite or exploded (>= 2^64) values at step 7' $tmp/dv.err && [ \"\$(readlink $tmp/runs/dv/checkpoints/latest)\" = $good ] && [ ! -e $tmp/runs/dv/checkpoints/step_7 ]"
"$vlm" train "${common[@]}" --steps 8 --name dv --resume latest --lr 0 >/dev/null 2>"$tmp/dv.err"
check "... which resumes with a sane --lr (0 is one, as in open_clip)" "[ $? -eq 0 ]"

# epoch_K every --save-frequency epochs and after the last one (open_clip); the previous one deleted
# only with --delete-previous-checkpoint (--save-most-recent is open_clip's: 'latest' is always kept)
"$vlm" train "${common[@]}" --epochs 5 --save-frequency 2 --save-most-recent --name sf1 >/dev/null 2>&1
check "--epochs 5 --save-frequency 2: epoch_2, epoch_4 and epoch_5" \
  "[ -d $tmp/runs/sf1/checkpoints/epoch_2 ] && [ -d $tmp/runs/sf1/checkpoints/epoch_4 ] && [ -d $tmp/runs/sf1/checkpoints/epoch_5 ]"
"$vlm" train "${common[@]}" --epochs 5 --save-frequency 2 --delete-previous-checkpoint --name sf2 >/dev/null 2>&1
check "... with --delete-previous-checkpoint: epoch_5 alone" \
  "[ -d $tmp/runs/sf2/checkpoints/epoch_5 ] && [ ! -e $tmp/runs/sf2/checkpoints/epoch_4 ] && [ ! -e $tmp/runs/sf2/checkpoints/epoch_2 ]"

# The step that completes an epoch ends it (open_clip writes epoch_N after every epoch, the
# last included): --epochs 2 ends with epoch_2 and a state at epoch 2, batch 0; --epochs 3 on
# resume trains exactly one more epoch; --steps of a whole epoch writes epoch_1.
meta() { head -c 4096 "$1/train_state.safetensors" | grep -a -o "\"$2\":\"[0-9]*\"" | grep -o '[0-9]*'; }
"$vlm" train "${common[@]}" --epochs 2 --name ep2 --val-data shapes:val:16 --val-frequency 1 >/dev/null 2>"$tmp/ep.err"
E=$tmp/runs/ep2
check "--epochs 2 exits 0" "[ $? -eq 0 ]"
check "--epochs 2 writes epoch_1 and epoch_2" "[ -d $E/checkpoints/epoch_1 ] && [ -d $E/checkpoints/epoch_2 ]"
check "--epochs 2: latest at step 16, epoch 2, batch 0" \
  "[ \"\$(readlink $E/checkpoints/latest)\" = step_16 ] && [ \"\$(meta $E/checkpoints/latest epoch)\" = 2 ] && [ \"\$(meta $E/checkpoints/latest epoch_batches)\" = 0 ]"
check "epoch_2 holds the state after epoch 2" "[ \"\$(meta $E/checkpoints/epoch_2 epoch)\" = 2 ] && [ \"\$(meta $E/checkpoints/epoch_2 step)\" = 16 ]"
check "one evaluation an epoch, the last one at epoch 2 (none repeated at step 16)" \
  "[ \"\$(grep '\"type\": \"eval\"' $E/metrics.jsonl | grep -o '\"step\": [0-9]*, \"epoch\": [0-9]*' | tr '\n' ' ')\" = '\"step\": 8, \"epoch\": 1 \"step\": 16, \"epoch\": 2 ' ]"
"$vlm" train "${common[@]}" --epochs 3 --name ep2 --val-data shapes:val:16 --val-frequency 1 --resume latest >/dev/null 2>"$tmp/ep.err"
check "resume --epochs 3 exits 0" "[ $? -eq 0 ]"
check "... starts epoch 2 at batch 0" "grep -q 'resuming .* at step 16 (epoch 2, batch 0)' $tmp/ep.err"
check "... trains one more epoch: step 24, epoch_3, state at epoch 3" \
  "[ \"\$(readlink $E/checkpoints/latest)\" = step_24 ] && [ -d $E/checkpoints/epoch_3 ] && [ \"\$(meta $E/checkpoints/latest epoch)\" = 3 ]"
"$vlm" train "${common[@]}" --steps 8 --name st8 >/dev/null 2>&1
check "--steps 8 = one whole epoch writes epoch_1 (state epoch 1, batch 0)" \
  "[ -d $tmp/runs/st8/checkpoints/epoch_1 ] && [ \"\$(meta $tmp/runs/st8/checkpoints/latest epoch)\" = 1 ] && [ \"\$(meta $tmp/runs/st8/checkpoints/latest epoch_batches)\" = 0 ]"
# ... and a stop at that epoch end resumes exactly (the straight run: a1 above, 12 steps).
"$vlm" train "${common[@]}" --steps 12 --name e8 --stop-at-step 8 >/dev/null 2>&1
"$vlm" train "${common[@]}" --steps 12 --name e8 --resume latest >/dev/null 2>"$tmp/e8.err"
check "stop at the epoch end (step 8), resume: from epoch 1, batch 0" "[ $? -eq 0 ] && grep -q 'at step 8 (epoch 1, batch 0)' $tmp/e8.err"
check "... weights and optimizer state bit-identical to the straight run" \
  "cmp -s $tmp/runs/a1/checkpoints/latest/open_clip_model.safetensors $tmp/runs/e8/checkpoints/latest/open_clip_model.safetensors && cmp -s $tmp/runs/a1/checkpoints/latest/train_state.safetensors $tmp/runs/e8/checkpoints/latest/train_state.safetensors"

# --resume when the run is already at (or past) the requested total trains nothing: exit 2, saying so.
"$vlm" train "${common[@]}" --steps 10 --name ep2 --resume latest >/dev/null 2>"$tmp/r.err"
check "resume at step 24 with --steps 10: exit 2, the step, epoch and total named" \
  "[ $? -eq 2 ] && grep -q 'already at step 24 (epoch 3) and the requested total is 10 steps (--steps 10)' $tmp/r.err && grep -q -- '--steps above 24 or --epochs 4 or more' $tmp/r.err"
"$vlm" train "${common[@]}" --epochs 3 --name ep2 --resume latest >/dev/null 2>"$tmp/r.err"
check "resume at step 24 with --epochs 3 (24 steps): exit 2" \
  "[ $? -eq 2 ] && grep -q 'requested total is 24 steps (--epochs 3 x 8 steps)' $tmp/r.err && [ \"\$(readlink $E/checkpoints/latest)\" = step_24 ]"

# --resume with another --batch-size: the data position (batches of the old size) is converted
# when the samples consumed are whole batches of the new size, refused otherwise.
"$vlm" train "${common[@]}" --batch-size 16 --steps 6 --stop-at-step 2 --name bs >/dev/null 2>&1
"$vlm" train "${common[@]}" --batch-size 12 --steps 6 --name bs --resume latest >/dev/null 2>"$tmp/bs.err"
check "batch 16 -> 12 at 32 samples: refused (exit 2), both sizes named" \
  "[ $? -eq 2 ] && grep -q 'trained with --batch-size 16 and stands 32 samples into epoch 0 (batch 2); --batch-size 12 does not divide 32' $tmp/bs.err"
VLM_LOG=info "$vlm" train "${common[@]}" --batch-size 8 --steps 6 --name bs --resume latest >/dev/null 2>"$tmp/bs.err"
check "batch 16 -> 8: warned, batch 2 becomes batch 4" \
  "[ $? -eq 0 ] && grep -q 'warning: --batch-size 8, the checkpoint.s 16' $tmp/bs.err && grep -q 'at step 2 (epoch 0, batch 4)' $tmp/bs.err"
check "... so epoch 0 reads its other 32 samples, not 48" "grep -q 'loader: epoch 0 done: 32 samples' $tmp/bs.err"

# --resume without --batch-size / --accum-freq: the run's own sizes, not the defaults (64 would
# not even fit shapes:64's 64 samples twice), so the resumed run is the straight run's
plain=("${common[@]/--batch-size/--seed}")   # --batch-size 8 -> a second --seed 8 (the last one counts)
"$vlm" train "${plain[@]}" --seed 3 --batch-size 16 --accum-freq 2 --steps 4 --name own >/dev/null 2>&1
"$vlm" train "${plain[@]}" --seed 3 --batch-size 16 --accum-freq 2 --steps 4 --stop-at-step 2 --name own2 >/dev/null 2>&1
"$vlm" train "${plain[@]}" --seed 3 --name own2 --resume latest >/dev/null 2>"$tmp/own.err"
check "resume without --batch-size/--accum-freq: the checkpoint's 16 and 2, said" \
  "[ $? -eq 0 ] && grep -q -- '--batch-size 16, the checkpoint.s' $tmp/own.err && grep -q -- '--accum-freq 2, the checkpoint.s' $tmp/own.err"
check "... and the resumed run ends where the straight one does" \
  "cmp -s $tmp/runs/own/checkpoints/latest/open_clip_model.safetensors $tmp/runs/own2/checkpoints/latest/open_clip_model.safetensors"

# A run killed after its checkpoint leaves metrics lines beyond it (and maybe a cut line):
# the resumed run drops them, so every step is logged once.
"$vlm" train "${common[@]}" --steps 12 --name k --stop-at-step 6 --log-every-n-steps 1 >/dev/null 2>&1
K=$tmp/runs/k/metrics.jsonl
printf '{"type": "train", "step": 7, "loss": -12345.5}\n{"type": "train", "step": 8, "loss": -12345.5}\n{"type": "tr' >>"$K"
"$vlm" train "${common[@]}" --steps 12 --name k --log-every-n-steps 1 --resume latest >/dev/null 2>"$tmp/k.err"
check "resume after a kill exits 0" "[ $? -eq 0 ]"
check "resume says it dropped the 3 lines after step 6" "grep -q 'dropped 3 line(s) after step 6' $tmp/k.err"
check "every step logged once, none of the dropped lines" \
  "[ \"\$(grep -o '\"type\": \"train\", \"step\": [0-9]*' $K | grep -o '[0-9]*\$' | tr '\n' ' ')\" = '1 2 3 4 5 6 7 8 9 10 11 12 ' ] && ! grep -q -- '-12345.5' $K"
check "metrics.jsonl has no cut line" "awk '!/^\\{.*\\}\$/ {bad = 1} END {exit bad}' $K"

# ... or a whole last record without its newline: kept, and the next one starts on a new line.
"$vlm" train "${common[@]}" --steps 12 --name k2 --stop-at-step 6 --log-every-n-steps 1 >/dev/null 2>&1
K2=$tmp/runs/k2/metrics.jsonl
truncate -s -1 "$K2"
"$vlm" train "${common[@]}" --steps 12 --name k2 --log-every-n-steps 1 --resume latest >/dev/null 2>&1
check "a record without its newline is kept, the next on its own line" \
  "[ \"\$(grep -o '\"type\": \"train\", \"step\": [0-9]*' $K2 | grep -o '[0-9]*\$' | tr '\n' ' ')\" = '1 2 3 4 5 6 7 8 9 10 11 12 ' ] && [ \$(grep -c . $K2) -eq 12 ]"

# One vlm train a run directory: a second one (resumed or new) is refused up front while the
# first holds RUN/.lock, and the first, saving every step, is not disturbed (two resumed runs
# used to delete each other's temporary checkpoints); once it ends, the run resumes again.
"$vlm" train "${common[@]}" --steps 2 --name busy >/dev/null 2>&1
"$vlm" train "${common[@]}" --steps 60 --save-steps 1 --name busy --resume latest >/dev/null 2>"$tmp/busy1.err" &
busy=$!
for _ in $(seq 300); do [ "$(cat "$tmp/runs/busy/.lock" 2>/dev/null)" = "$busy" ] && break; sleep 0.05; done
"$vlm" train "${common[@]}" --steps 60 --save-steps 1 --name busy --resume latest >/dev/null 2>"$tmp/busy2.err"
rc=$?
check "a second vlm train --resume on a run in use exits 1, naming the run and its pid" \
  "[ $rc -eq 1 ] && grep -q 'vlm train: $tmp/runs/busy is in use by another vlm train (pid $busy)' $tmp/busy2.err"
"$vlm" train "${common[@]}" --steps 60 --name busy >/dev/null 2>"$tmp/busy3.err"
rc=$?
check "a new run of the same name is refused the same way" "[ $rc -eq 1 ] && grep -q 'is in use by another vlm train' $tmp/busy3.err"
check "the refused runs ended while the first still ran" "kill -0 $busy 2>/dev/null"
wait $busy
rc=$?
check "the first run finished undisturbed" "[ $rc -eq 0 ] && [ \"\$(readlink $tmp/runs/busy/checkpoints/latest)\" = step_60 ]"
[ $rc -ne 0 ] && cat "$tmp/busy1.err"
"$vlm" train "${common[@]}" --steps 61 --name busy --resume latest >/dev/null 2>"$tmp/busy4.err"
check "after it, the run resumes (the lock went with the process)" "[ $? -eq 0 ]"

# A different seed gives different weights (the comparison above can fail).
"$vlm" train "${common[@]}" --steps 12 --name s9 --seed 9 >/dev/null 2>&1
check "another seed differs" "! cmp -s $tmp/runs/a1/checkpoints/latest/open_clip_model.safetensors $tmp/runs/s9/checkpoints/latest/open_clip_model.safetensors"

R=$tmp/runs/a1
check "run dir layout" "[ -f $R/config.json ] && [ -f $R/tokenizer/vocab.json ] && [ -f $R/tokenizer/merges.txt ] && [ -f $R/metrics.jsonl ] && [ -d $R/checkpoints/epoch_1 ]"
check "loss.png is a PNG" "head -c 8 $R/loss.png | od -An -tx1 | tr -d ' \n' | grep -q 89504e470d0a1a0a"
check "metrics.jsonl has step lines" "grep -q '\"type\": \"train\", \"step\": 10' $R/metrics.jsonl"
check "checkpoint loads with vlm info" "\"$vlm\" info --model $R/checkpoints/latest >/dev/null"
check "epoch checkpoint loads with vlm info" "\"$vlm\" info --model $R/checkpoints/epoch_1 >/dev/null"
check "config.json names the model and lr" "grep -q '\"lr\": 0.001' $R/config.json && grep -q '\"model\"' $R/config.json"

# Fine-tune from a checkpoint dir, with a locked image tower, bf16 and evaluation.
"$vlm" train --device cpu --train-data shapes:32 --model $R/checkpoints/latest --tokenizer $R/tokenizer --batch-size 8 --steps 3 \
  --lock-image --precision bf16 --val-data shapes:val:24 --logs "$tmp/runs" --name ft --json >"$tmp/ft.json" 2>"$tmp/ft.err"
check "fine-tune (lock-image, bf16, eval) exits 0" "[ $? -eq 0 ]"
check "fine-tune --json has eval metrics" "grep -q 'zeroshot_top1' $tmp/ft.json && grep -q 'text_to_image_R@1' $tmp/ft.json"
check "fine-tune kept the image tower" "[ -f $tmp/runs/ft/loss.png ]"

# --zeroshot-templates: vlm zeroshot's rules ({} or {c}, the built-in sets by name); a bad line is named
printf 'a photo of a {c}.\n' >"$tmp/tc.txt"
"$vlm" train "${common[@]}" --steps 1 --name zt1 --zeroshot-frequency 1 --zeroshot-data shapes:val:16 --zeroshot-templates "$tmp/tc.txt" >/dev/null 2>&1
check "zero-shot templates with {c}" "[ $? -eq 0 ]"
"$vlm" train "${common[@]}" --steps 1 --name zt2 --zeroshot-frequency 1 --zeroshot-data shapes:val:16 --zeroshot-templates simple >/dev/null 2>&1
check "zero-shot templates by set name" "[ $? -eq 0 ]"
printf 'a photo of a {c}.\nno class here\n' >"$tmp/tb.txt"
"$vlm" train "${common[@]}" --steps 1 --name zt3 --zeroshot-frequency 1 --zeroshot-data shapes:val:16 --zeroshot-templates "$tmp/tb.txt" >/dev/null 2>"$tmp/e.err"
check "a template without {} is named by file and line" "[ $? -eq 1 ] && grep -q 'tb.txt:2: template has no {} or {c}' $tmp/e.err"

# --zeroshot-data: labelled data or a refusal. A folder is an ImageFolder there even when its
# images have .txt captions beside them; a CSV has no classes and is refused at the start
# (zero-shot was silently not measured: "eval @ step 1: 0 samples").
"$vlm" shapes --out "$tmp/sv" --split val --n 8 --size 32 >/dev/null
while IFS=$'\t' read -r fp title label; do
  [ "$fp" = filepath ] && continue
  cls=$(sed -n "$((label + 1))p" "$tmp/sv/classnames.txt" | tr ' ' _)
  mkdir -p "$tmp/zsif/$cls" && cp "$tmp/sv/$fp" "$tmp/zsif/$cls/" && echo "$title" >"$tmp/zsif/$cls/$(basename "$fp" .png).txt"
done <"$tmp/sv/captions.tsv"
"$vlm" train "${common[@]}" --steps 1 --name zi1 --zeroshot-frequency 1 --zeroshot-data "$tmp/zsif" --json >"$tmp/zi1.json" 2>/dev/null
check "an ImageFolder with .txt captions beside its images is zero-shot data" \
  "[ $? -eq 0 ] && grep -q '\"zeroshot_samples\": 8' $tmp/zi1.json"
"$vlm" train "${common[@]}" --steps 1 --name zi2 --zeroshot-frequency 1 --zeroshot-data "$tmp/sv/captions.tsv" >/dev/null 2>"$tmp/zi2.err"
check "--zeroshot-data without classes is refused" "[ $? -eq 1 ] && grep -q 'captions.tsv has no classes' $tmp/zi2.err"

# Fine-tuning a vlm train checkpoint without --tokenizer: the run's own tokenizer is found
"$vlm" train --device cpu --train-data shapes:32 --model $R/checkpoints/latest --batch-size 8 --steps 1 \
  --val-frequency 0 --zeroshot-frequency 0 --logs "$tmp/runs" --name ft2 >/dev/null 2>"$tmp/ft2.err"
check "fine-tune finds the checkpoint's tokenizer" "[ $? -eq 0 ] && grep -q \"the model's tokenizer: .*tokenizer\" $tmp/ft2.err && cmp -s $R/tokenizer/vocab.json $tmp/runs/ft2/tokenizer/vocab.json"

check "... and says nothing about the vocabulary" "! grep -q 'learns a new vocabulary' $tmp/ft2.err"
# ... while a new train:N vocabulary under the checkpoint's trained embeddings is warned about
"$vlm" train --device cpu --train-data shapes:32 --model $R/checkpoints/latest --tokenizer train:600 --batch-size 8 \
  --steps 1 --val-frequency 0 --zeroshot-frequency 0 --logs "$tmp/runs" --name ft3 >/dev/null 2>"$tmp/ft3.err"
check "fine-tune with --tokenizer train:600 warns that the embeddings were learnt for other ids" \
  "[ $? -eq 0 ] && grep -q 'warning: --tokenizer train:600 learns a new vocabulary' $tmp/ft3.err"

# Fine-tuning a Hugging Face layout: the same weights as the open_clip checkpoint it was
# converted from, so the same first-step loss (it failed with "missing / unexpected" tensors)
"$vlm" convert --model $R/checkpoints/latest --to hf --out "$tmp/hf" >/dev/null 2>&1
ft=(--device cpu --train-data shapes:32 --tokenizer $R/tokenizer --batch-size 8 --steps 1 --val-frequency 0
    --zeroshot-frequency 0 --logs "$tmp/runs" --log-every-n-steps 1)
"$vlm" train "${ft[@]}" --model "$tmp/hf" --name fthf >/dev/null 2>"$tmp/fthf.err"
check "fine-tune a Hugging Face checkpoint: exit 0" "[ $? -eq 0 ] || { cat $tmp/fthf.err; false; }"
"$vlm" train "${ft[@]}" --model $R/checkpoints/latest --name ftoc >/dev/null 2>&1
l_hf=$(grep -o '"loss": [-0-9.e]*' "$tmp/runs/fthf/metrics.jsonl" | head -1)
l_oc=$(grep -o '"loss": [-0-9.e]*' "$tmp/runs/ftoc/metrics.jsonl" | head -1)
check "... its first loss is the open_clip checkpoint's ($l_hf, $l_oc)" "[ -n \"$l_hf\" ] && [ \"$l_hf\" = \"$l_oc\" ]"
# ... and from PyTorch checkpoints: a hub-style directory (--format torch), and a bare epoch_N.pt
# whose config comes from open_clip's ../params.txt
"$vlm" convert --model $R/checkpoints/latest --to open_clip --format torch --out "$tmp/pt" >/dev/null 2>&1
mkdir -p "$tmp/oclogs/run/checkpoints" && cp "$tmp/pt/open_clip_pytorch_model.bin" "$tmp/oclogs/run/checkpoints/epoch_1.pt"
for m in "$tmp/pt" "$tmp/pt/open_clip_pytorch_model.bin"; do
  k=$([ -d "$m" ] && echo ptdir || echo ptfile)
  "$vlm" train "${ft[@]}" --model "$m" --name ft$k >/dev/null 2>"$tmp/ft$k.err"
  l=$(grep -o '"loss": [-0-9.e]*' "$tmp/runs/ft$k/metrics.jsonl" 2>/dev/null | head -1)
  check "fine-tune from a PyTorch checkpoint ($k): the open_clip checkpoint's first loss ($l, $l_oc)" \
    "[ -n \"$l\" ] && [ \"$l\" = \"$l_oc\" ] || { cat $tmp/ft$k.err; false; }"
done
"$vlm" train "${ft[@]}" --model "$tmp/oclogs/run/checkpoints/epoch_1.pt" --name ftbare >/dev/null 2>"$tmp/ftbare.err"
check "fine-tune from a bare epoch_1.pt without a config: exit 1, names --config" \
  "[ $? -eq 1 ] && grep -q -- '--config' $tmp/ftbare.err"
# open_clip's way: --model names the architecture (here its config file), --pretrained the weights
"$vlm" train "${ft[@]}" --model "$tmp/pt/open_clip_config.json" --pretrained "$tmp/oclogs/run/checkpoints/epoch_1.pt" \
  --name ftpre >/dev/null 2>"$tmp/ftpre.err"
l=$(grep -o '"loss": [-0-9.e]*' "$tmp/runs/ftpre/metrics.jsonl" 2>/dev/null | head -1)
check "--model CONFIG --pretrained epoch_1.pt: the open_clip checkpoint's first loss ($l, $l_oc)" \
  "[ -n \"$l\" ] && [ \"$l\" = \"$l_oc\" ] || { cat $tmp/ftpre.err; false; }"
"$vlm" train "${ft[@]}" --model "$tmp/pt/open_clip_config.json" --pretrained laion2b_s34b_b79k --name ftx >/dev/null 2>"$tmp/ftx.err"
check "--pretrained with an open_clip tag: exit 2, vlm downloads nothing" "[ $? -eq 2 ] && grep -q 'downloads nothing' $tmp/ftx.err"
"$vlm" train "${ft[@]}" --model "$tmp/pt" --pretrained "$tmp/oclogs/run/checkpoints/epoch_1.pt" --name fty >/dev/null 2>"$tmp/fty.err"
check "--pretrained with a checkpoint --model: exit 2" "[ $? -eq 2 ] && grep -q 'not a checkpoint' $tmp/fty.err"

# An HF text tower that pools at the first eos id (599, the last of this run's 600 ids) fine-tuned
# with a new vocabulary (end-of-text 549): pooled at the largest id instead, said so; it pooled
# every caption at position 0 (no 599 among the new ids)
sed 's/"eos_token_id":[[:space:]]*2/"eos_token_id": 599/' "$tmp/hf/config.json" >"$tmp/hf/c2" && mv "$tmp/hf/c2" "$tmp/hf/config.json"
check "the HF config now pools at eos 599" "\"$vlm\" info --model $tmp/hf | grep -q 'pooling first eos id (599)'"
"$vlm" train "${ft[@]}" --model "$tmp/hf" --tokenizer train:550 --name fteos >/dev/null 2>"$tmp/fteos.err"
check "fine-tune with another end-of-text id: exit 0, noted, pooled at the largest id" \
  "[ $? -eq 0 ] && grep -q 'pools its text at the first id 599 .* <|endoftext|> is 549' $tmp/fteos.err && \
   \"$vlm\" info --model $tmp/runs/fteos/checkpoints/latest | grep -q 'pooling argmax'"

# A run directory that exists: with a checkpoint the message says to resume; without one (a run
# that stopped before its first checkpoint, e.g. a full disk) it says there is nothing to resume
"$vlm" train "${common[@]}" --steps 1 --name a1 >/dev/null 2>"$tmp/ex.err"
check "an existing run: exit 1, continue it with --resume latest" \
  "[ $? -eq 1 ] && grep -q 'the run directory exists (continue it with --resume latest' $tmp/ex.err"
mkdir -p "$tmp/runs/nock/checkpoints"
"$vlm" train "${common[@]}" --steps 1 --name nock >/dev/null 2>"$tmp/ex.err"
check "an existing run without a checkpoint: exit 1, nothing to resume, remove it" \
  "[ $? -eq 1 ] && grep -q 'holds no checkpoint to resume .*: remove it, or pick another --name' $tmp/ex.err"

# open_clip's guards: const-cooldown needs --epochs-cooldown; a warmup longer than the run is said
"$vlm" train "${common[@]}" --steps 2 --name cc1 --lr-scheduler const-cooldown >/dev/null 2>"$tmp/e.err"
check "const-cooldown without --epochs-cooldown exits 2" "[ $? -eq 2 ] && grep -q 'needs --epochs-cooldown' $tmp/e.err && [ ! -e $tmp/runs/cc1 ]"
"$vlm" train "${common[@]}" --steps 2 --warmup 50 --name wu1 >/dev/null 2>"$tmp/e.err"
check "a warmup longer than the run is warned about" "[ $? -eq 0 ] && grep -q 'warning: --warmup 50 is above the run.s 2 steps' $tmp/e.err"
"$vlm" train "${common[@]}" --steps 2 --warmup 2 --name wu2 >/dev/null 2>"$tmp/e.err"
check "a warmup as long as the run is not (its last step runs at --lr)" "[ $? -eq 0 ] && ! grep -q 'warmup' $tmp/e.err"

# Errors
"$vlm" train "${common[@]}" --steps 1 --name vs --val-data shapes >/dev/null 2>"$tmp/e.err"
check "--val-data shapes (the 1M-pair split) exits 2" "[ $? -eq 2 ] && grep -q 'training split' $tmp/e.err"
for bad in .. a/../b . /abs a//b; do
  "$vlm" train "${common[@]}" --steps 1 --name "$bad" >/dev/null 2>"$tmp/e.err"
  check "--name '$bad' exits 2" "[ $? -eq 2 ] && grep -q 'a directory name below --logs' $tmp/e.err"
done
"$vlm" train "${common[@]}" --steps 1 --name nest/ed >/dev/null 2>&1
check "a nested --name is fine" "[ $? -eq 0 ] && [ -d $tmp/runs/nest/ed/checkpoints/latest ]"
"$vlm" train --help | grep -q 'usage: vlm train'; check "--help" "[ $? -eq 0 ]"
"$vlm" train "${common[@]}" --steps 2 --name a1 >/dev/null 2>"$tmp/e.err"
check "existing run dir refused (exit 1)" "[ $? -eq 1 ] && grep -q 'resume latest' $tmp/e.err"
"$vlm" train --train-data shapes --bogus >/dev/null 2>&1; check "unknown flag exits 2" "[ $? -eq 2 ]"
"$vlm" train --train-data shapes --lr-scheduler nope --logs "$tmp/runs" --name e2 >/dev/null 2>&1
check "bad scheduler exits 2" "[ $? -eq 2 ]"
"$vlm" train --train-data "$tmp/missing.csv" --model tiny --tokenizer train:600 --logs "$tmp/runs" --name e3 >/dev/null 2>"$tmp/e.err"
check "missing data file names it (exit 1)" "[ $? -eq 1 ] && grep -q 'missing.csv' $tmp/e.err"
check "the failed run leaves no directory" "[ ! -e $tmp/runs/e3 ] && grep -q 'e3: removed (nothing was trained)' $tmp/e.err"
"$vlm" train "${common[@]}" --steps 1 --name e3 >/dev/null 2>&1
check "so the same --name works once the data is mended" "[ $? -eq 0 ] && [ -d $tmp/runs/e3/checkpoints/latest ]"
"$vlm" train --train-data data.csv --tokenizer train:600 >/dev/null 2>&1; check "no --model for csv exits 2" "[ $? -eq 2 ]"
"$vlm" train "${common[@]}" --steps 2 --name e4 --resume "$tmp/nope" >/dev/null 2>"$tmp/e.err"
check "missing resume checkpoint (exit 1)" "[ $? -eq 1 ] && grep -q nope $tmp/e.err"

# --resume with another --model: the checkpoint's architecture is trained, with a warning, and
# the run names the checkpoint (not --model); a CoCa --model for a CLIP checkpoint is refused.
"$vlm" train "${common[@]}" --steps 13 --name w1 --model shapes-demo --resume "$tmp/runs/a1/checkpoints/latest" \
  >/dev/null 2>"$tmp/w.err"
check "resume with another --model exits 0" "[ $? -eq 0 ]"
check "... warns that the checkpoint's architecture is trained" \
  "grep -q 'warning: --model shapes-demo is not the architecture of the checkpoint' $tmp/w.err"
check "... and labels the model by the checkpoint" \
  "grep -q 'CLIP model $tmp/runs/a1/checkpoints/latest (' $tmp/w.err && ! grep -q 'model shapes-demo (' $tmp/w.err"
"$vlm" train "${common[@]}" --steps 13 --name w2 --model coca-tiny --resume "$tmp/runs/a1/checkpoints/latest" \
  >/dev/null 2>"$tmp/w.err"
check "resume of a CLIP checkpoint with a CoCa --model exits 2" \
  "[ $? -eq 2 ] && grep -q 'coca-tiny is a CoCa model, the checkpoint .* a CLIP one' $tmp/w.err && [ ! -e $tmp/runs/w2 ]"
"$vlm" train "${common[@]}" --steps 13 --name w3 --resume "$tmp/runs/a1" >/dev/null 2>"$tmp/w.err"
check "--resume of a run directory points to its checkpoints (exit 1)" \
  "[ $? -eq 1 ] && grep -q -- '--resume $tmp/runs/a1/checkpoints/latest' $tmp/w.err"
"$vlm" train "${common[@]}" --steps 13 --name w4 --resume "$tmp/runs/a1/checkpoints/latest/open_clip_model.safetensors" \
  >/dev/null 2>"$tmp/w.err"
check "--resume of a file: not a checkpoint directory, named once" \
  "[ $? -eq 1 ] && grep -q 'latest/open_clip_model.safetensors: not a checkpoint directory' $tmp/w.err && ! grep -q 'safetensors: /' $tmp/w.err"

# A resume on a CSV (no shapes defaults) needs neither --model nor --tokenizer: it trains the
# checkpoint's model with the run's tokenizer (it asked for both); into a new run, the
# checkpoint's tokenizer; one with none anywhere is told to give --tokenizer.
"$vlm" shapes --out "$tmp/sh16" --n 16 --size 32 >/dev/null
csv=(--device cpu --train-data "$tmp/sh16/captions.tsv" --batch-size 8 --lr 1e-3 --warmup 3 --val-frequency 0
     --zeroshot-frequency 0 --workers 2 --logs "$tmp/runs" --seed 3)
"$vlm" train "${csv[@]}" --model tiny --tokenizer train:600 --steps 6 --name csv --stop-at-step 3 >/dev/null 2>&1
"$vlm" train "${csv[@]}" --name csv --resume latest >/dev/null 2>"$tmp/csv.err"
check "CSV resume without --model / --tokenizer: exit 0, to step 6" \
  "[ $? -eq 0 ] && grep -q 'resuming .* at step 3' $tmp/csv.err && [ \"\$(readlink $tmp/runs/csv/checkpoints/latest)\" = step_6 ]"
"$vlm" train "${csv[@]}" --name csv2 --resume "$tmp/runs/csv/checkpoints/epoch_1" >/dev/null 2>"$tmp/csv.err"
check "... into a new run: the checkpoint's tokenizer, copied into it" \
  "[ $? -eq 0 ] && cmp -s $tmp/runs/csv/tokenizer/vocab.json $tmp/runs/csv2/tokenizer/vocab.json"
mkdir -p "$tmp/lone" && cp -r "$tmp/runs/csv/checkpoints/epoch_1" "$tmp/lone/ck"
"$vlm" train "${csv[@]}" --name csv3 --resume "$tmp/lone/ck" >/dev/null 2>"$tmp/csv.err"
check "... a checkpoint with no tokenizer anywhere: exit 2, give --tokenizer" \
  "[ $? -eq 2 ] && grep -q 'no tokenizer in the run .* or beside the checkpoint: give --tokenizer' $tmp/csv.err"

# Data smaller than one batch: the sample count, for --epochs as for --steps; an empty file.
"$vlm" shapes --out "$tmp/sh3" --split val --n 3 --size 32 >/dev/null
for mode in "--epochs 2" "--steps 2"; do
  "$vlm" train "${common[@]}" --train-data "$tmp/sh3/captions.tsv" $mode --name s3 >/dev/null 2>"$tmp/s.err"
  check "3 samples, batch 8 ($mode): fewer than one batch (exit 1)" \
    "[ $? -eq 1 ] && grep -q 'captions.tsv: 3 samples, fewer than one batch (8 x accum 1)' $tmp/s.err"
done
"$vlm" train "${common[@]}" --train-data "$tmp/sh3/captions.tsv" --steps 2 --name s3r \
  --resume "$tmp/runs/csv/checkpoints/epoch_1" >/dev/null 2>"$tmp/s.err"
check "--resume PATH into a new --name that fails before training: no directory left (the same command can run again)" \
  "[ $? -eq 1 ] && grep -q 'fewer than one batch' $tmp/s.err && [ ! -e $tmp/runs/s3r ] && [ -d $tmp/runs/csv/checkpoints/epoch_1 ]"
printf 'filepath\ttitle\n' >"$tmp/empty.tsv"
"$vlm" train "${common[@]}" --train-data "$tmp/empty.tsv" --tokenizer "$tmp/runs/a1/tokenizer" --steps 2 --name s0 >/dev/null 2>"$tmp/s.err"
check "an empty CSV: no samples, named once" "[ $? -eq 1 ] && grep -q '/empty.tsv: no records' $tmp/s.err && [ \$(grep -o 'empty.tsv' $tmp/s.err | wc -l) -eq 1 ]"

# Data that is all bad: the run stops before its first step, says how many distinct samples
# failed, and leaves no directory (the same command can run again).
printf 'not an image' >"$tmp/broken.png"
{ printf 'filepath\ttitle\n'; for i in $(seq 20); do printf '%s\tcaption %d\n' "$tmp/broken.png" $i; done; } >"$tmp/allbad.tsv"
"$vlm" train "${common[@]}" --train-data "$tmp/allbad.tsv" --tokenizer "$tmp/runs/a1/tokenizer" --steps 8 --name ab \
  >/dev/null 2>"$tmp/ab.err"
check "all-bad data: exit 1, no full batch, the data's 20 samples all bad" \
  "[ $? -eq 1 ] && grep -q 'an epoch gave no full batch: the data holds only 20 samples, all bad' $tmp/ab.err"
check "... the bad count names 20 distinct samples" "grep -q 'bad samples skipped (20 distinct: all 20 samples' $tmp/ab.err"
check "... and the run directory is removed" "[ ! -e $tmp/runs/ab ] && grep -q 'ab: removed (nothing was trained)' $tmp/ab.err"

# Flags checked before any work: a negative clip norm, a BPE size below the byte alphabet, an empty name.
"$vlm" train "${common[@]}" --steps 2 --name c1 --grad-clip-norm -1 >/dev/null 2>"$tmp/e.err"
check "--grad-clip-norm -1 exits 2" "[ $? -eq 2 ] && grep -q -- '--grad-clip-norm -1' $tmp/e.err && [ ! -e $tmp/runs/c1 ]"
"$vlm" train "${common[@]}" --steps 2 --name c2 --grad-clip-norm nan >/dev/null 2>&1
check "--grad-clip-norm nan exits 2" "[ $? -eq 2 ]"
"$vlm" train "${common[@]}" --steps 2 --name c3 --tokenizer train:300 >/dev/null 2>"$tmp/e.err"
check "--tokenizer train:300 exits 2 at the flag check (minimum 514)" \
  "[ $? -eq 2 ] && grep -q 'train:SIZE expects an integer in \[514,' $tmp/e.err && ! grep -q learning $tmp/e.err"
"$vlm" train "${common[@]}" --steps 2 --name '' >/dev/null 2>"$tmp/e.err"
check "an empty --name exits 2" "[ $? -eq 2 ] && grep -q -- '--name' $tmp/e.err"

# --image-mean / --image-std / --image-resize-mode: the loader's transform (another first loss than
# the default's) and the checkpoints' preprocess_cfg, which vlm info reads back; bad values and a
# resumed run's change are usage errors before any work
"$vlm" train "${common[@]}" --steps 1 --name tf0 --log-every-n-steps 1 >/dev/null 2>&1
"$vlm" train "${common[@]}" --steps 1 --name tf1 --log-every-n-steps 1 --image-mean 0.5 --image-std 0.25,0.5,0.5 \
  --image-resize-mode squash >/dev/null 2>"$tmp/tf.err"
check "--image-mean/--image-std/--image-resize-mode: trained, kept in the checkpoint's config" \
  "[ $? -eq 0 ] && \"$vlm\" info --model $tmp/runs/tf1/checkpoints/latest | grep -qx 'images: squashed to 32, bicubic; mean (0.5, 0.5, 0.5), std (0.25, 0.5, 0.5)'"
loss() { grep -o '"loss": [-0-9.e]*' "$1" | head -1; }
check "... and the loader's images follow them (another first loss)" \
  "[ -n \"\$(loss $tmp/runs/tf1/metrics.jsonl)\" ] && [ \"\$(loss $tmp/runs/tf0/metrics.jsonl)\" != \"\$(loss $tmp/runs/tf1/metrics.jsonl)\" ]"
"$vlm" train "${common[@]}" --steps 2 --name tf1 --resume latest --image-mean 0.4 >/dev/null 2>"$tmp/tf.err"
check "--image-mean on a resumed run: exit 2" "[ $? -eq 2 ] && grep -q 'keeps its checkpoint' $tmp/tf.err"
"$vlm" train "${common[@]}" --steps 1 --name tf2 --image-std 0.5,0 >/dev/null 2>"$tmp/tf.err"
check "--image-std 0.5,0: exit 2 before any work" "[ $? -eq 2 ] && grep -q -- '--image-std expects' $tmp/tf.err && [ ! -e $tmp/runs/tf2 ]"

echo "train_resume: $pass passed, $fail failed"
[ $fail -eq 0 ]
