#!/usr/bin/env bash
# Drives the vlm binary like a user: help, version, bad usage.
# Usage: cli.sh VLM_BINARY
set -u
vlm=$1
pass=0 fail=0
check() { if eval "$2"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1"; fi; }

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
"$vlm" >/dev/null 2>&1; rc=$?
check "no command exits 2" "[ $rc -eq 2 ]"
# A model config's errors name the key of the file's own format.
tmp=$(mktemp -d) && trap 'rm -rf "$tmp"' EXIT
echo '{"model_type": "clip", "projection_dim": 32, "text_config": {}}' >"$tmp/hf.json"
err=$("$vlm" info --model "$tmp/hf.json" 2>&1); rc=$?
check "a Hugging Face config without vision_config says so" "[ $rc -eq 1 ] && grep -q 'hf.json: vision_config: missing' <<<\"\$err\""
echo '{"model": {"embed_dim": 32}, "train": {}}' >"$tmp/run.json"
err=$("$vlm" info --model "$tmp/run.json" 2>&1); rc=$?
check "a JSON file of neither format says so" "[ $rc -eq 1 ] && grep -q 'run.json: not a model config' <<<\"\$err\""
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
