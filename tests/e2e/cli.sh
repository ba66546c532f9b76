#!/usr/bin/env bash
# Drives the vlm binary like a user: help, version, bad usage. Every command's --help
# goes to stdout with status 0; a bad option, a stray argument or a missing value is one
# line on stderr and status 2, worded the same by every command; every flag a command's
# --help names is accepted, and (with SOURCE_DIR) every flag its source parses is in its
# --help.
# Usage: cli.sh VLM_BINARY [SOURCE_DIR]
set -u
vlm=$1 src=${2:-}
. "$(dirname "$0")/lib.sh"

out=$("$vlm" --help); rc=$?
check "--help exits 0" "[ $rc -eq 0 ]"
check "--help lists commands" "grep -q 'version' <<<\"\$out\""
out=$("$vlm" --threads 1 version); rc=$?
check "version exits 0" "[ $rc -eq 0 ]"
check "version reports 1 thread" "grep -q '^cpu: 1 threads' <<<\"\$out\""
check "version --help" "\"$vlm\" version --help | grep -q 'usage: vlm version'"
err=$("$vlm" frobnicate 2>&1 >/dev/null); rc=$?
check "unknown command exits 2" "[ $rc -eq 2 ]"
check "unknown command is named" "grep -q \"unknown command 'frobnicate'\" <<<\"\$err\""
err=$("$vlm" --threads zero version 2>&1 >/dev/null); rc=$?
check "bad --threads exits 2" "[ $rc -eq 2 ]"
check "bad --threads message" "grep -q -- '--threads expects an integer' <<<\"\$err\""
for v in 99999 abc 4x 0; do   # once a crash (99999: a stack overflow in libgomp) or ignored
  err=$(VLM_THREADS=$v "$vlm" version 2>&1 >/dev/null); rc=$?
  check "VLM_THREADS=$v exits 2 with a message" "[ $rc -eq 2 ] && grep -q 'VLM_THREADS expects an integer' <<<\"\$err\""
done
out=$(VLM_THREADS=1 "$vlm" version); rc=$?
check "VLM_THREADS=1 is used" "[ $rc -eq 0 ] && grep -q '^cpu: 1 threads' <<<\"\$out\""
# OpenMP's wait: passive after a short spin, 30000 on free cores, 1000 when other running tasks and
# the command's threads outnumber the CPUs; nothing changed when the user set either variable.
re='OpenMP: OMP_WAIT_POLICY=PASSIVE GOMP_SPINCOUNT=%s \([0-9]+ other tasks running, [0-9]+ threads, [0-9]+ CPUs\)'
err=$(env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT VLM_LOG=debug "$vlm" version 2>&1 >/dev/null)
check "the spin is chosen at start ($err)" "grep -Eq \"\$(printf \"\$re\" '(30000|1000)')\" <<<\"\$err\""
ncpu=$(getconf _NPROCESSORS_ONLN)
sh -c 'while :; do :; done' &
busy=$!
err=$(env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT VLM_LOG=debug "$vlm" --threads "$ncpu" version 2>&1 >/dev/null)
kill $busy
wait $busy 2>/dev/null
check "a busy process beside $ncpu threads: the short spin ($err)" "grep -Eq \"\$(printf \"\$re\" 1000)\" <<<\"\$err\""
err=$(env -u OMP_WAIT_POLICY GOMP_SPINCOUNT=5 VLM_LOG=debug "$vlm" version 2>&1 >/dev/null)
check "GOMP_SPINCOUNT set by the user: left alone" "! grep -q 'OpenMP:' <<<\"\$err\""
"$vlm" >/dev/null 2>&1; rc=$?
check "no command exits 2" "[ $rc -eq 2 ]"
# A model config's errors name the key of the file's own format.
make_tmp
echo '{"model_type": "clip", "projection_dim": 32, "text_config": {}}' >"$tmp/hf.json"
err=$("$vlm" info --model "$tmp/hf.json" 2>&1); rc=$?
check "a Hugging Face config without vision_config says so" "[ $rc -eq 1 ] && grep -q 'hf.json: vision_config: missing' <<<\"\$err\""
echo '{"model": {"embed_dim": 32}, "train": {}}' >"$tmp/run.json"
err=$("$vlm" info --model "$tmp/run.json" 2>&1); rc=$?
check "a JSON file of neither format says so" "[ $rc -eq 1 ] && grep -q 'run.json: not a model config' <<<\"\$err\""

# ---- every command: --help, a bad option, a missing value, one line each, status 2
cmds="version info forward convert preprocess tokenize bpe-train shapes caption zeroshot index search eval train"
for c in $cmds; do
  out=$("$vlm" $c --help 2>"$tmp/err"); rc=$?
  check "$c --help: status 0, usage on stdout, nothing on stderr" \
    "[ $rc -eq 0 ] && grep -q '^usage: vlm $c' <<<\"\$out\" && [ ! -s \"$tmp/err\" ]"
  out=$("$vlm" $c --no-such-flag </dev/null 2>"$tmp/err"); rc=$?
  check "$c --no-such-flag: status 2, one line naming it" \
    "[ $rc -eq 2 ] && [ -z \"\$out\" ] && [ \$(wc -l <\"$tmp/err\") -eq 1 ] && \
     grep -qx \"vlm $c: unknown option '--no-such-flag' (see 'vlm $c --help')\" \"$tmp/err\""
done
for c in version info forward convert search shapes train; do   # commands that take no operands
  "$vlm" $c stray </dev/null >/dev/null 2>"$tmp/err"; rc=$?
  check "$c stray: status 2, 'unexpected argument'" \
    "[ $rc -eq 2 ] && grep -qx \"vlm $c: unexpected argument 'stray' (see 'vlm $c --help')\" \"$tmp/err\""
done
for cf in "info --model" "forward --model" "convert --to" "preprocess --out" "tokenize --vocab" \
          "bpe-train --out" "shapes --out" "caption --model" "zeroshot --model" "index --model" \
          "search --index" "train --train-data"; do
  set -- $cf
  "$vlm" $1 $2 </dev/null >/dev/null 2>"$tmp/err"; rc=$?
  check "$1 $2 without its value: status 2, 'needs a value'" \
    "[ $rc -eq 2 ] && [ \$(wc -l <\"$tmp/err\") -eq 1 ] && grep -qx 'vlm $1: $2 needs a value' \"$tmp/err\""
done
for c in info forward convert preprocess tokenize bpe-train shapes caption zeroshot index search train; do
  out=$(VLM_VOCAB= "$vlm" $c </dev/null 2>"$tmp/err"); rc=$?
  check "$c without its required options: status 2, one line" \
    "[ $rc -eq 2 ] && [ -z \"\$out\" ] && [ \$(wc -l <\"$tmp/err\") -eq 1 ] && grep -q '^vlm $c: ' \"$tmp/err\""
done
"$vlm" --threads >/dev/null 2>"$tmp/err"; rc=$?
check "vlm --threads without its value" "[ $rc -eq 2 ] && grep -qx 'vlm: --threads needs a value' \"$tmp/err\""
"$vlm" --no-such-flag version >/dev/null 2>"$tmp/err"; rc=$?
check "vlm --no-such-flag" "[ $rc -eq 2 ] && grep -qx \"vlm: unknown option '--no-such-flag' (see 'vlm --help')\" \"$tmp/err\""

# ---- every flag a --help names is one the command accepts (flags of other commands that
# a help text mentions are listed apart)
others="shapes:--train-data shapes:--val-data shapes:--dataset-type search:--texts bpe-train:--vocab version:--threads info:--config"
for c in $cmds; do
  for f in $("$vlm" $c --help | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u); do
    case " $others " in *" $c:$f "*) continue ;; esac
    VLM_VOCAB= timeout 60 "$vlm" $c $f </dev/null >/dev/null 2>"$tmp/err"
    grep -q "unknown option '$f'" "$tmp/err" && { fail=$((fail + 1)); echo "FAIL: vlm $c --help names $f, which it does not accept"; }
  done
done
# ---- and every flag a command's source parses is in its --help
if [ -n "$src" ]; then
  for c in $cmds; do
    file=$src/apps/cmd_${c//-/_}.c
    [ -f "$file" ] || { fail=$((fail + 1)); echo "FAIL: no $file"; continue; }
    help=$("$vlm" $c --help)
    for f in $(grep -oE '"--[a-z][a-z0-9-]*"' "$file" | tr -d '"' | sort -u); do
      grep -qE -- "$f([^a-z0-9-]|\$)" <<<"$help" || { fail=$((fail + 1)); echo "FAIL: vlm $c parses $f but its --help does not name it"; }
    done
  done
fi

# ---- a misspelled built-in model is refused first: no vocabulary learnt, no run directory made
for m in ViT-B-3 coca-shapez; do
  "$vlm" train --train-data shapes --model $m --logs "$tmp/logs" --steps 1 2>"$tmp/err"; rc=$?
  check "train --model $m: status 2, named, nothing made" "[ $rc -eq 2 ] && grep -q \"unknown.*model '$m'\" \"$tmp/err\" && \
    ! grep -q 'vocabulary' \"$tmp/err\" && [ ! -e \"$tmp/logs\" ]"
done
"$vlm" train --train-data "$tmp/none.csv" --model "$tmp/ckpt/typo" --logs "$tmp/logs" 2>"$tmp/err"; rc=$?
check "train --model MISSING-PATH (no --tokenizer): the path is named first" \
  "[ $rc -eq 2 ] && grep -q 'typo: no such file' \"$tmp/err\" && ! grep -q tokenizer \"$tmp/err\""

# ---- options may follow the files (bpe-train, tokenize), as the README writes them
printf 'a red circle\na blue star\na green square above a red circle\n' >"$tmp/caps.txt"
"$vlm" bpe-train --vocab-size 600 "$tmp/caps.txt" --out "$tmp/vocab" 2>"$tmp/err"; rc=$?
check "bpe-train FILE --out DIR" "[ $rc -eq 0 ] && [ -s \"$tmp/vocab/vocab.json\" ] && [ -s \"$tmp/vocab/merges.txt\" ]"
out=$("$vlm" tokenize --vocab "$tmp/vocab" "$tmp/caps.txt" --context-length 6); rc=$?
check "tokenize FILE --context-length 6" "[ $rc -eq 0 ] && [ \$(wc -l <<<\"\$out\") -eq 3 ] && \
  ! grep -qv '^{\"ids\": \[[0-9]*\(, [0-9]*\)\{5\}\]}$' <<<\"\$out\""
out=$("$vlm" tokenize --vocab "$tmp/vocab" --context-length 0 -- "$tmp/caps.txt"); rc=$?
check "tokenize -- FILE" "[ $rc -eq 0 ] && [ \$(wc -l <<<\"\$out\") -eq 3 ]"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
