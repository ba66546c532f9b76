#!/usr/bin/env bash
# SIGINT, SIGTERM and SIGHUP while `vlm index` writes its index: the process dies of the
# signal (exit 128 + sig), the temporary file of the write (PATH.tmp.XXXXXX) is removed and
# the old index is intact. The write is caught between its last byte and its rename by an
# LD_PRELOAD shim (compiled here) whose fsync sleeps. And `vlm train`, killed with SIGTERM
# while it saves a checkpoint every step, still leaves a latest checkpoint that loads.
# Usage: signals.sh VLM_BINARY SHARED_DIR
set -u
vlm=$1 shared=$2
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
make_tmp

cc=${CC:-cc}
cat >"$tmp/slowsync.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <unistd.h>
/* Every fsync waits a minute first (a signal ends the wait, and the process). */
int fsync(int fd) {
  int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
  sleep(60);
  return real(fd);
}
C
if ! "$cc" -shared -fPIC -o "$tmp/slowsync.so" "$tmp/slowsync.c" -ldl 2>"$tmp/cc.err"; then
  echo "skipped: cannot build the fsync shim with $cc: $(head -1 "$tmp/cc.err")"
  exit 77
fi
. "$here/tools_setup.sh"   # makes the test data
m=$tmp/model idx=$tmp/out/photos.idx
mkdir -p "$tmp/out"
"$vlm" index --model "$m" --out "$idx" "$tmp/imgs/animal" >/dev/null 2>&1
check "the old index (2 images) is written" "[ -s $idx ]"
cp "$idx" "$tmp/old.idx"

# Without job control a script's background jobs ignore SIGINT (and vlm leaves an ignored
# signal ignored): job control on, so SIGINT reaches vlm as Ctrl-C would.
set -m
for sig in INT TERM HUP; do
  # All the images: the index is rewritten (5 new ones), through a temporary file.
  LD_PRELOAD=$tmp/slowsync.so ASAN_OPTIONS=verify_asan_link_order=0 \
    "$vlm" index --model "$m" --out "$idx" "$tmp/imgs" >/dev/null 2>"$tmp/index-$sig.err" &
  pid=$!
  seen=0
  for _ in $(seq 600); do
    if compgen -G "$idx.tmp.*" >/dev/null; then seen=1; break; fi
    kill -0 $pid 2>/dev/null || break
    sleep 0.05
  done
  check "SIG$sig: the write's temporary file appeared" "[ $seen -eq 1 ]"
  sleep 0.3   # the write is in its fsync now: past the last byte, before the rename
  kill -$sig $pid 2>/dev/null
  wait $pid
  rc=$?
  check "SIG$sig: vlm index dies of the signal (exit $((128 + $(kill -l $sig))), got $rc)" \
    "[ $rc -eq $((128 + $(kill -l $sig))) ]"
  check "SIG$sig: no temporary file left" "! compgen -G '$idx.tmp.*' >/dev/null"
  check "SIG$sig: the old index is intact" "cmp -s $idx $tmp/old.idx"
  rm -f "$idx".tmp.*
done
set +m
"$vlm" index --model "$m" --out "$idx" "$tmp/imgs" >"$tmp/index.out" 2>/dev/null
check "without a signal the same command updates the index" "[ $? -eq 0 ] && grep -q '7 images (5 embedded, 2 unchanged' $tmp/index.out"

# vlm train, SIGTERM while it checkpoints every step: dies of it; the latest checkpoint loads.
export VLM_THREADS=2
args=(--device cpu --train-data shapes:64 --model tiny --tokenizer train:600 --batch-size 8 --steps 1000000 --warmup 3
      --val-frequency 0 --zeroshot-frequency 0 --workers 1 --save-steps 1 --logs "$tmp/runs" --name t)
"$vlm" train "${args[@]}" >/dev/null 2>"$tmp/train.err" &
pid=$!
L=$tmp/runs/t/checkpoints/latest
for _ in $(seq 600); do [ -e "$L" ] && break; kill -0 $pid 2>/dev/null || break; sleep 0.05; done
sleep 0.5
kill -TERM $pid
wait $pid
rc=$?
check "vlm train dies of SIGTERM (exit 143, got $rc)" "[ $rc -eq 143 ]"
check "its latest checkpoint loads" "\"$vlm\" info --model $L >/dev/null 2>&1"
check "no temporary file inside the latest checkpoint" "! compgen -G '$L/*.tmp.*' >/dev/null"

echo "signals: $pass passed, $fail failed"
[ $fail -eq 0 ]
