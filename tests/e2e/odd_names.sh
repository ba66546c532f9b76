#!/usr/bin/env bash
# File names a real collection holds: spaces, a newline, a tab, quotes and backslashes, bytes
# that are not UTF-8 (Latin-1), a leading '-' or '--', 255 bytes, UTF-8. Every --json output
# must parse (Python's json), keep the names (invalid bytes as U+FFFD, docs/JSON.md), and the
# commands that take files must reach a name starting with '-' after "--".
# Usage: odd_names.sh VLM_BINARY SHARED_DIR
set -u
vlm=$(cd "$(dirname "$1")" && pwd)/$(basename "$1") shared=$2
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
has() { if grep -qxF -- "$3" "$2"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1 (no $3 in $2)"; fi; }
command -v python3 >/dev/null || { echo "skipped: python3 is needed to parse the JSON outputs"; exit 77; }
tmp=$(mktemp -d) || exit 1
[ -n "${ODD_NAMES_KEEP:-}" ] && echo "keeping $tmp" || trap 'rm -rf "$tmp"' EXIT
export VLM_THREADS=2
. "$here/tools_setup.sh"   # makes the test data
m=$tmp/model
o=$tmp/odd
mkdir -p "$o"
src=$shared/data/images/horse.png
long=$(printf 'L%.0s' $(seq 251)).png   # 255 bytes, the longest name a Linux file system takes
names=("with space.png" $'new\nline.png' $'tab\there.png' 'quote"back\slash.png' $'latin1-\xe9t\xe9.png'
       "-dash.png" "--ddash.png" "$long" "ütf8-ok.png")
for n in "${names[@]}"; do cp "$src" "$o/$n" || { echo "FAIL: cannot make '$n'"; exit 1; }; done

# JSON that parses, and the items as Python reads them, one repr per line
py_items() {   # FILE KEY: every value of KEY anywhere in the document (JSON lines: in each line)
  python3 - "$1" "$2" <<'PY'
import json, sys
def walk(x, k, out):
    if isinstance(x, dict):
        for a, b in x.items():
            if a == k: out.append(b)
            walk(b, k, out)
    elif isinstance(x, list):
        for b in x: walk(b, k, out)
text = open(sys.argv[1], "rb").read().decode("utf-8")   # must be UTF-8
try:
    docs = [json.loads(text)]
except json.JSONDecodeError:
    docs = [json.loads(l) for l in text.splitlines() if l.strip()]
out = []
for d in docs: walk(d, sys.argv[2], out)
for v in out: print(ascii(v))
PY
}

# ---- index and search
"$vlm" index --model "$m" --out "$tmp/o.idx" "$o" --json >"$tmp/ix.json" 2>"$tmp/ix.err"
check "index: exit 0, all 9 names indexed" "[ $? -eq 0 ] && grep -q '\"count\": 9' '$tmp/ix.json'"
"$vlm" search --index "$tmp/o.idx" --model "$m" --text "a horse" --top-k 100 --json >"$tmp/s.json" 2>/dev/null
check "search --json: exit 0" "[ $? -eq 0 ]"
py_items "$tmp/s.json" item >"$tmp/s.items" 2>"$tmp/py.err"
check "search --json parses as UTF-8 JSON ($(head -c 200 "$tmp/py.err"))" "[ ! -s '$tmp/py.err' ] && [ \$(wc -l <'$tmp/s.items') -eq 9 ]"
# (the items as Python's ascii() writes them)
has "a newline in a name: \\n" "$tmp/s.items" "'$o/new\\nline.png'"
has "a tab in a name: \\t" "$tmp/s.items" "'$o/tab\\there.png'"
has "quotes and backslashes kept" "$tmp/s.items" "'$o/quote\"back\\\\slash.png'"
has "Latin-1 bytes: one U+FFFD each (docs/JSON.md)" "$tmp/s.items" "'$o/latin1-\\ufffdt\\ufffd.png'"
has "UTF-8 kept" "$tmp/s.items" "'$o/\\xfctf8-ok.png'"
has "the 255-byte name whole" "$tmp/s.items" "'$o/$long'"
"$vlm" search --index "$tmp/o.idx" --model "$m" --image "$o/$long" --top-k 9 >"$tmp/s.txt" 2>&1
check "search by an image with a 255-byte name" "[ $? -eq 0 ] && grep -qF '$long' '$tmp/s.txt'"
"$vlm" search --index "$tmp/o.idx" --model "$m" --text "a horse" --top-k 100 >"$tmp/s.txt" 2>&1
check "the text output prints names byte for byte" "grep -qF \$'latin1-\\xe9t\\xe9.png' '$tmp/s.txt'"
check "the text output: one line per result (9), a newline or tab in a name escaped" \
  "[ \$(wc -l <'$tmp/s.txt') -eq 9 ] && grep -qF 'new\\nline.png' '$tmp/s.txt' && grep -qF 'tab\\there.png' '$tmp/s.txt'"

# ---- zeroshot, caption, shapes, train: their JSON parses with such names
"$vlm" zeroshot --model "$m" --classes horse,cat "$o" --json >"$tmp/z.json" 2>/dev/null
py_items "$tmp/z.json" path >"$tmp/z.items" 2>"$tmp/py.err"
check "zeroshot --json parses, 9 results" "[ ! -s '$tmp/py.err' ] && [ \$(wc -l <'$tmp/z.items') -eq 9 ]"
"$vlm" zeroshot --model "$m" --classes horse,cat --top-k 1 "$o" >"$tmp/z.txt" 2>/dev/null
check "zeroshot text: 9 name lines + 9 class lines, the newline escaped" \
  "[ \$(wc -l <'$tmp/z.txt') -eq 18 ] && grep -qF 'new\\nline.png' '$tmp/z.txt'"
"$vlm" convert --init coca-shapes --to open_clip --out "$tmp/coca" >/dev/null 2>&1
cp -r "$m/tokenizer" "$tmp/coca/tokenizer"
"$vlm" caption --model "$tmp/coca" --max-len 8 --json "$o" >"$tmp/c.json" 2>"$tmp/c.err"
check "caption --json: exit 0 ($(head -c 200 "$tmp/c.err"))" "[ $? -eq 0 ]"
py_items "$tmp/c.json" image >"$tmp/c.items" 2>"$tmp/py.err"
check "caption --json: every line parses as UTF-8 JSON ($(head -c 200 "$tmp/py.err"))" \
  "[ ! -s '$tmp/py.err' ] && [ \$(wc -l <'$tmp/c.items') -eq 9 ] && grep -qF 'latin1-\\ufffdt\\ufffd.png' '$tmp/c.items'"
"$vlm" shapes --out "$tmp/sh\"a\\pe" --n 2 --size 16 --json >"$tmp/sh.json" 2>/dev/null
py_items "$tmp/sh.json" out >"$tmp/sh.items" 2>"$tmp/py.err"
has "shapes --json: a quote and a backslash in --out" "$tmp/sh.items" "'$tmp/sh\"a\\\\pe'"
# a dataset whose folder and run names hold a quote, a backslash and a Latin-1 byte
d=$tmp/$'da"ta\\\xe9'
mkdir -p "$d" && cp -r "$tmp/sh\"a\\pe/images" "$d/images" && cp "$tmp/sh\"a\\pe/captions.tsv" "$d/c.tsv"
"$vlm" train --train-data "$d/c.tsv" --model tiny --tokenizer train:600 --batch-size 2 --steps 2 --warmup 1 \
  --val-frequency 0 --zeroshot-frequency 0 --workers 1 --logs "$tmp/ru\"ns" --name $'n\\m\xe9' --json \
  >"$tmp/t.json" 2>"$tmp/t.err"
check "train: exit 0 ($(tail -c 200 "$tmp/t.err"))" "[ $? -eq 0 ]"
py_items "$tmp/t.json" run >"$tmp/t.items" 2>"$tmp/py.err"
check "train --json parses ($(head -c 200 "$tmp/py.err"))" "[ ! -s '$tmp/py.err' ] && [ \$(wc -l <'$tmp/t.items') -eq 1 ]"
py_items "$tmp/ru\"ns/"$'n\\m\xe9'/config.json train_data >"$tmp/cfg.items" 2>"$tmp/py.err"
check "the run's config.json parses ($(head -c 200 "$tmp/py.err"))" "[ ! -s '$tmp/py.err' ]"
has "the run's config.json: train_data kept" "$tmp/cfg.items" "'$tmp/da\"ta\\\\\\ufffd/c.tsv'"

# ---- "--": the file named '--ddash.png' reaches each command as a file
cd "$o" || exit 1
"$vlm" index --model "$m" --out "$tmp/d.idx" -- --ddash.png >"$tmp/d.out" 2>&1
check "index -- --ddash.png" "[ $? -eq 0 ] && grep -q '1 images (1 embedded' '$tmp/d.out'"
"$vlm" zeroshot --model "$m" --classes horse,cat -- --ddash.png >"$tmp/d.out" 2>&1
check "zeroshot -- --ddash.png" "[ $? -eq 0 ] && grep -q '^--ddash.png' '$tmp/d.out'"
"$vlm" caption --model "$tmp/coca" --max-len 8 -- --ddash.png -dash.png >"$tmp/d.out" 2>&1
check "caption -- --ddash.png -dash.png" "[ $? -eq 0 ] && grep -q '^--ddash.png' '$tmp/d.out' && grep -q '^-dash.png' '$tmp/d.out'"
"$vlm" preprocess --size 16 --out "$tmp/prep" -- --ddash.png -dash.png >"$tmp/d.out" 2>&1
check "preprocess -- --ddash.png -dash.png" "[ $? -eq 0 ] && [ -s '$tmp/prep/--ddash.safetensors' ] && [ -s '$tmp/prep/-dash.safetensors' ]"
"$vlm" preprocess --size 16 --out "$tmp/prep" --ddash.png >/dev/null 2>&1
check "without --, '--ddash.png' is an unknown option (exit 2)" "[ $? -eq 2 ]"

# a path quoted in a message's command is one shell word (a space, a quote)
mkdir -p "$tmp/it's here"
cp "$shared/fixtures/tiny-clip/model.safetensors" "$tmp/it's here/w.safetensors"
"$vlm" info --model "$tmp/it's here/w.safetensors" >/dev/null 2>"$tmp/q.err"
check "info: weights without a config: the convert hint quotes the path" \
  "[ $? -ne 0 ] && grep -qF -- \"--model '$tmp/it'\\\\''s here/w.safetensors' --config\" '$tmp/q.err'"

echo "odd_names: $pass passed, $fail failed"
[ $fail -eq 0 ]
