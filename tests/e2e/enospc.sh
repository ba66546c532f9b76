#!/usr/bin/env bash
# A real full disk: a 2 MiB tmpfs, mounted in a private mount namespace (needs root or
# CAP_SYS_ADMIN: skipped, visibly, without). Each writer is pointed at it once the disk is full,
# over a valid older file: it must exit non-zero naming the file, leave the old file byte for
# byte and no temporary file. Then `vlm train` whose metrics.jsonl meets the full disk mid-run:
# the file is named at once, training goes on, metrics.jsonl holds only whole lines and the run
# exits 1 at its end.
# Usage: enospc.sh VLM_BINARY SHARED_DIR
set -u
vlm=$(cd "$(dirname "$1")" && pwd)/$(basename "$1") shared=$2
if [ -z "${VLM_ENOSPC_NS:-}" ]; then
  if ! unshare -m --propagation private true 2>/dev/null; then
    echo "skipped: cannot make a mount namespace for a small tmpfs (needs root / CAP_SYS_ADMIN)"
    exit 77
  fi
  VLM_ENOSPC_NS=1 exec unshare -m --propagation private bash "$0" "$vlm" "$shared"
fi
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
tmp=$(mktemp -d) || exit 1
x=$tmp/mnt
trap 'umount "$x" 2>/dev/null; rm -rf "$tmp"' EXIT
mkdir -p "$x"
if ! mount -t tmpfs -o size=2M tmpfs "$x"; then
  echo "skipped: cannot mount a tmpfs"
  exit 77
fi
export VLM_THREADS=2
. "$here/tools_setup.sh"   # makes the test data
m=$tmp/model

# the older files, then the disk filled to the last byte
"$vlm" index --model "$m" --out "$x/p.idx" --export-npy "$x/p.npy" "$tmp/imgs/animal" >/dev/null 2>&1
"$vlm" convert --init tiny --seed 1 --to open_clip --out "$x/model" >/dev/null 2>&1
"$vlm" preprocess --size 16 --out "$x/prep" "$tmp/imgs/animal/horse.png" >/dev/null 2>&1
"$vlm" bpe-train --vocab-size 600 --out "$x/vocab" "$tmp/captions.txt" >/dev/null 2>&1
"$vlm" shapes --out "$x/shapes" --n 2 --size 16 >/dev/null 2>&1
for f in p.idx p.npy model/open_clip_model.safetensors model/open_clip_config.json prep/horse.safetensors \
         vocab/vocab.json vocab/merges.txt shapes/captions.tsv; do
  [ -s "$x/$f" ] || { echo "FAIL: the older file $f was not made"; exit 1; }
done
cp -r "$x" "$tmp/before"
fill() { local a; a=$(df -B1 --output=avail "$x" | tail -1); [ "$a" -gt 0 ] && fallocate -l "$a" "$x/filler$1"; }
fill 0

full() {   # NAME FILE ARGS...: exit 1, FILE named with ENOSPC
  local name=$1 file=$2
  shift 2
  "$vlm" "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  check "$name: exit 1 (got $rc), $file named with ENOSPC ($(tail -c 300 "$tmp/err"))" \
    "[ $rc -eq 1 ] && grep -q '$file.*No space left on device' '$tmp/err'"
}
full "index --out" p.idx index --model "$m" --out "$x/p.idx" "$tmp/imgs"
full "index --export-npy" p.npy index --model "$m" --out "$tmp/q.idx" --export-npy "$x/p.npy" "$tmp/imgs"
full "convert" model/open_clip_model.safetensors convert --init small --to open_clip --out "$x/model"
full "preprocess" prep/horse.safetensors preprocess --size 224 --out "$x/prep" "$tmp/imgs/animal/horse.png"
full "bpe-train" vocab/vocab.json bpe-train --vocab-size 700 --out "$x/vocab" "$tmp/captions.txt"
full "shapes" shapes/images shapes --out "$x/shapes" --n 2 --size 64
"$vlm" search --index "$x/p.idx" --model "$m" --text "a horse" --json >"$x/search.json" 2>"$tmp/err"
rc=$?
check "search --json > a full disk: exit 1, stdout named (got $rc)" \
  "[ $rc -eq 1 ] && grep -q 'standard output: cannot write: No space left on device' '$tmp/err'"
rm -f "$x/search.json"
"$vlm" train --train-data shapes:64 --model tiny --tokenizer train:600 --batch-size 8 --steps 4 --warmup 1 \
  --val-frequency 0 --zeroshot-frequency 0 --workers 1 --logs "$x/runs" --name full >/dev/null 2>"$tmp/err"
rc=$?
check "train on a full disk: exit 1 (got $rc), a file named with ENOSPC ($(tail -c 300 "$tmp/err"))" \
  "[ $rc -eq 1 ] && grep -q 'No space left on device' '$tmp/err'"
rm -rf "$x/runs"
for f in p.idx p.npy model/open_clip_model.safetensors model/open_clip_config.json prep/horse.safetensors \
         vocab/vocab.json vocab/merges.txt shapes/captions.tsv; do
  check "$f kept byte for byte" "cmp -s '$x/$f' '$tmp/before/$f'"
done
check "no temporary file left" "[ -z \"\$(find '$x' -name '*.tmp.*' -o -name '.tmp-*')\" ]"
rm -f "$x"/filler*

# ---- metrics.jsonl meets the full disk while training; space comes back before the end
rm -rf "$x/model" "$x/prep" "$x/shapes"
"$vlm" train --train-data shapes:100000 --model tiny --tokenizer train:600 --batch-size 4 --steps 1000 --warmup 1 \
  --val-frequency 0 --zeroshot-frequency 0 --workers 1 --log-every-n-steps 1 --logs "$x/runs" --name m \
  >/dev/null 2>"$tmp/train.err" &
pid=$!
M=$x/runs/m/metrics.jsonl
# The run is stopped (SIGSTOP) while the disk is filled and again while it is emptied, so it
# cannot reach its end in between however fast it trains (1000 steps take ~2 s alone).
for _ in $(seq 3000); do [ -s "$M" ] && break; kill -0 $pid 2>/dev/null || break; sleep 0.01; done
kill -STOP $pid
fill 1
kill -CONT $pid
seen=0
for _ in $(seq 3000); do
  if grep -q 'metrics.jsonl: cannot write the line of step' "$tmp/train.err"; then seen=1; break; fi
  kill -0 $pid 2>/dev/null || break
  sleep 0.01
done
kill -STOP $pid 2>/dev/null
rm -f "$x"/filler*
kill -CONT $pid 2>/dev/null
wait $pid
rc=$?
check "metrics.jsonl on a full disk: named at once with ENOSPC" "[ $seen -eq 1 ] && grep -q 'metrics.jsonl.*No space left on device' '$tmp/train.err'"
check "the run trains on and exits 1 at its end, the lost lines counted (got $rc)" \
  "[ $rc -eq 1 ] && grep -q '^done: step 1000' '$tmp/train.err' && grep -q 'metrics.jsonl: [0-9]* lines* could not be written' '$tmp/train.err'"
check "the final checkpoint was written" "[ -s '$x/runs/m/checkpoints/latest/open_clip_model.safetensors' ]"
if command -v python3 >/dev/null; then
  python3 - "$M" 2>"$tmp/py.err" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    assert line.endswith("\n"), "a cut line: %r" % line
    json.loads(line)
PY
  check "metrics.jsonl: whole JSON lines only ($(tail -c 200 "$tmp/py.err"))" "[ ! -s '$tmp/py.err' ]"
else
  check "metrics.jsonl: every line ends with }" "! grep -qv '}\$' '$M'"
fi

echo "enospc: $pass passed, $fail failed"
[ $fail -eq 0 ]
