#!/usr/bin/env bash
# `vlm forward --device cuda` on a fixture directory: outputs and gradients
# computed on the GPU must match the fixture (the same check as forward.sh on the
# CPU). Skips (77) where there is no GPU or the build has no CUDA backend.
# Usage: forward_gpu.sh VLM_BINARY COMPARE_BINARY FIXTURE_DIR (test_clip_parity or
# test_coca_parity: its --compare DIR OUT GRADS checks the files)
set -u
vlm=$1 cmp=$2 fx=$3
. "$(dirname "$0")/lib.sh"
make_tmp

"$vlm" forward --model "$fx" --inputs "$fx/inputs.safetensors" --out "$tmp/x.st" --device tpu >/dev/null 2>&1
check "unknown --device exits 2" "[ $? -eq 2 ]"
check "forward --help names --device" "\"$vlm\" forward --help | grep -q -- '--device cpu|cuda'"

out=$("$vlm" forward --model "$fx" --inputs "$fx/inputs.safetensors" --out "$tmp/out.st" --grads "$tmp/grads.st" \
      --device cuda 2>&1); rc=$?
if [ $rc -ne 0 ] && grep -q -- '--device cuda: ' <<<"$out"; then
  echo "SKIPPED: no CUDA GPU: $out"
  exit 77
fi
check "forward --device cuda exits 0 ($out)" "[ $rc -eq 0 ] && grep -q 'cuda' <<<\"\$out\""
check "GPU outputs and gradients match the fixture" "\"$cmp\" --compare \"$fx\" \"$tmp/out.st\" \"$tmp/grads.st\""
out=$("$vlm" forward --model "$fx" --inputs "$fx/inputs.safetensors" --out "$tmp/bf16.st" --precision bf16 \
      --device cuda 2>&1); rc=$?
check "forward --device cuda --precision bf16 exits 0 ($out)" "[ $rc -eq 0 ] && [ -f \"$tmp/bf16.st\" ]"
echo "forward_gpu.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
