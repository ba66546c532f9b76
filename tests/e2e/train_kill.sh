#!/usr/bin/env bash
# SIGKILL `vlm train` while it writes checkpoints (a 'latest' update every step),
# a few times with a random delay: the latest checkpoint must always load and
# resume, and the last resume runs to the end. The step budget is far more than
# a run reaches before its kill, so a fast machine cannot finish first (it did on
# a 16-core GPU host with 400 steps). Usage: train_kill.sh VLM_BINARY
set -u
vlm=$1
. "$(dirname "$0")/lib.sh"
make_tmp
export VLM_THREADS=2
args=(--device cpu --train-data shapes:64 --model tiny --tokenizer train:600 --batch-size 8 --steps 1000000 --warmup 3
      --val-frequency 0 --zeroshot-frequency 0 --workers 1 --save-steps 1 --logs "$tmp/runs" --name k)
L=$tmp/runs/k/checkpoints/latest
kills=0
for i in 1 2 3 4 5; do
  if [ -e "$L" ]; then extra=(--resume latest); else rm -rf "$tmp/runs/k"; extra=(); fi
  "$vlm" train "${args[@]}" "${extra[@]}" >/dev/null 2>"$tmp/log$i" &
  pid=$!
  sleep "$(awk -v s=$RANDOM 'BEGIN { srand(s); printf "%.2f", 0.6 + rand() * 1.2 }')"
  if kill -9 $pid 2>/dev/null; then kills=$((kills + 1)); fi
  wait $pid 2>/dev/null
  if [ -e "$L" ]; then
    check "after kill $i: latest loads" "\"$vlm\" info --model $L >/dev/null 2>&1"
    check "after kill $i: latest has its training state" "[ -s $L/train_state.safetensors ]"
  fi
done
check "the process was killed mid-run at least 3 times" "[ $kills -ge 3 ]"
check "a latest checkpoint exists" "[ -e $L ]"
step=$(readlink "$L" | sed 's/step_//')
"$vlm" train "${args[@]}" --steps $((step + 5)) --resume latest >/dev/null 2>"$tmp/final"
rc=$?
check "resume from the last latest runs to the end" "[ $rc -eq 0 ] && [ \"\$(readlink $L)\" = step_$((step + 5)) ]"
[ $rc -ne 0 ] && cat "$tmp/final"
echo "train_kill: $pass passed, $fail failed ($kills kills, last checkpoint step $step)"
[ $fail -eq 0 ]
