#!/usr/bin/env bash
# `vlm train --device cuda`: a CLIP trained on the shapes set on the GPU reaches the
# accuracy of the same run on the CPU, its checkpoint (written from the device)
# evaluates the same with `vlm eval` on the CPU, and a run stopped half-way and
# resumed on the GPU (weights and AdamW moments uploaded again) ends as well.
# A CoCa (coca-shapes) likewise: GPU against CPU, its checkpoint captions on the
# CPU, and accumulation with a locked tower runs on the GPU.
# The option checks run everywhere; the training part skips (77) where there is
# no GPU or the build has no CUDA backend.
# Usage: train_gpu.sh VLM_BINARY
set -u
vlm=$1
. "$(dirname "$0")/lib.sh"
make_tmp

check "train --help names --device" "\"$vlm\" train --help | grep -q -- '--device auto|cpu|cuda'"
out=$("$vlm" train --train-data shapes --device tpu --logs "$tmp" 2>&1); rc=$?
check "unknown --device exits 2 ($out)" "[ $rc -eq 2 ] && grep -q -- '--device: expected auto, cpu or cuda' <<<\"\$out\""
out=$("$vlm" train --train-data shapes --model coca-tiny --device cuda --steps 1 --logs "$tmp" --name probe 2>&1); rc=$?
no_gpu=0
if [ $rc -ne 0 ] && grep -q -- '--device cuda: ' <<<"$out"; then
  no_gpu=1   # refused before anything else: no usable GPU
else
  check "a 1-step coca-tiny run on the GPU exits 0 ($(tail -n 2 <<<"$out" | tr '\n' ' '))" \
    "[ $rc -eq 0 ] && grep -q 'samples on the GPU' <<<\"\$out\""
fi
if [ $no_gpu -eq 1 ]; then
  check "no GPU: --device cuda exits 1, a runtime error as in the other commands" "[ $rc -eq 1 ]"
  echo "$pass checks passed, $fail failed; SKIPPED the training part: no GPU ($out)"
  [ $fail -eq 0 ] || exit 1
  exit 77
fi

# Same seed, same data, 600 steps of shapes-demo, fp32: CPU and GPU.
# VLM_TRAIN_GPU_STEPS shortens the runs (scripts/test.sh on the emulated GPU, whose
# numbers equal the CPU's anyway); the above-chance checks need the full 600.
steps=${VLM_TRAIN_GPU_STEPS:-600}
half=$((steps / 2))
full=0
[ "$steps" -ge 600 ] && full=1
field() { grep -o "\"$2\": [0-9.e+-]*" "$1" | head -n 1 | awk '{print $2}'; }
close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && b != "" && d <= t) }'; }
above() { awk -v a="$1" -v t="$2" 'BEGIN { exit !(a != "" && a >= t) }'; }
# pair LABEL PREFIX TRAIN_ARGS...: the same run on the CPU (run PREFIXcpu) and on the
# GPU (PREFIXgpu), then their zero-shot top-1 / top-5 and val loss compared. 48 classes
# (chance 2.1%); 600 steps reach ~25% top-1 and ~90% top-5 on the CPU. Sets g1.
pair() {
  local label=$1 pre=$2 rc c1 c5 g5 cl gl
  shift 2
  "$vlm" train "$@" --device cpu --name "${pre}cpu" >"$tmp/${pre}cpu.json" 2>"$tmp/${pre}cpu.err"
  rc=$?
  check "$label CPU run exits 0 ($(tail -n 2 "$tmp/${pre}cpu.err" | tr '\n' ' '))" "[ $rc -eq 0 ]"
  "$vlm" train "$@" --device cuda --name "${pre}gpu" >"$tmp/${pre}gpu.json" 2>"$tmp/${pre}gpu.err"
  rc=$?
  check "$label GPU run exits 0 ($(tail -n 2 "$tmp/${pre}gpu.err" | tr '\n' ' '))" "[ $rc -eq 0 ]"
  check "$label GPU run says where it runs" "grep -q 'samples on the GPU' \"$tmp/${pre}gpu.err\""
  c1=$(field "$tmp/${pre}cpu.json" zeroshot_top1) g1=$(field "$tmp/${pre}gpu.json" zeroshot_top1)
  c5=$(field "$tmp/${pre}cpu.json" zeroshot_top5) g5=$(field "$tmp/${pre}gpu.json" zeroshot_top5)
  cl=$(field "$tmp/${pre}cpu.json" val_loss) gl=$(field "$tmp/${pre}gpu.json" val_loss)
  echo "$label zero-shot top-1 CPU $c1 GPU $g1; top-5 CPU $c5 GPU $g5; val loss CPU $cl GPU $gl"
  [ $full -eq 1 ] && check "$label GPU zero-shot top-1 $g1 well above chance" "above '$g1' 0.12"
  check "$label GPU zero-shot top-1 $g1 within 0.08 of the CPU's $c1" "close '$g1' '$c1' 0.08"
  check "$label GPU zero-shot top-5 $g5 within 0.08 of the CPU's $c5" "close '$g5' '$c5' 0.08"
  check "$label GPU val loss $gl within 0.15 of the CPU's $cl" "close '$gl' '$cl' 0.15"
}
common=(--train-data shapes --model shapes-demo --steps $steps --eval-steps $steps --seed 3 --logs "$tmp" --json)
pair CLIP "" "${common[@]}"

# The checkpoint the GPU run wrote, evaluated on the CPU.
ck=$tmp/gpu/checkpoints/latest
"$vlm" eval --model "$ck" --zeroshot shapes:val --json >"$tmp/eval.json" 2>"$tmp/eval.err"
rc=$?
check "vlm eval of the GPU checkpoint exits 0 ($(tail -n 1 "$tmp/eval.err"))" "[ $rc -eq 0 ]"
e1=$(field "$tmp/eval.json" top1)
check "vlm eval on the CPU ($e1) equals the GPU trainer's figure ($g1)" "close '$e1' '$g1' 0.002"

# Stopped half-way and resumed on the GPU.
"$vlm" train "${common[@]}" --device cuda --name res --stop-at-step $half >/dev/null 2>"$tmp/res1.err"
check "GPU run stopped at $half" "[ $? -eq 0 ] && [ -e \"$tmp/res/checkpoints/latest\" ]"
"$vlm" train "${common[@]}" --device cuda --name res --resume latest >"$tmp/res.json" 2>"$tmp/res2.err"
rc=$?
check "GPU resume exits 0 ($(tail -n 1 "$tmp/res2.err"))" "[ $rc -eq 0 ] && grep -q 'resuming' \"$tmp/res2.err\""
r1=$(field "$tmp/res.json" zeroshot_top1)
check "resumed GPU run's top-1 $r1 within 0.08 of the straight run's $g1" "close '$r1' '$g1' 0.08"

# CoCa: the same seed and data on both devices, 600 steps of coca-shapes (CPU ~25%
# zero-shot top-1, ~88% top-5, val loss ~2.0 on 2 cores in 34 s).
coca=(--train-data shapes --model coca-shapes --steps $steps --eval-steps $steps --seed 3 --logs "$tmp" --json)
pair CoCa c "${coca[@]}"
ck=$tmp/cgpu/checkpoints/latest
"$vlm" shapes --split val --n 4 --size 64 --out "$tmp/held" >/dev/null 2>&1
"$vlm" caption --model "$ck" "$tmp"/held/images/*.png >"$tmp/cap.txt" 2>"$tmp/cap.err"
rc=$?
check "the GPU-trained CoCa captions on the CPU ($(tail -n 1 "$tmp/cap.err"))" \
  "[ $rc -eq 0 ] && [ \$(grep -c . \"$tmp/cap.txt\") -eq 4 ]"
"$vlm" train --train-data shapes --model coca-tiny --device cuda --steps 20 --batch-size 8 --accum-freq 2 \
  --lock-image --logs "$tmp" --name cacc >/dev/null 2>"$tmp/cacc.err"
rc=$?
check "CoCa on the GPU with --accum-freq 2 --lock-image exits 0 ($(tail -n 1 "$tmp/cacc.err"))" "[ $rc -eq 0 ]"

echo "$pass checks passed, $fail failed"
[ $fail -eq 0 ]
