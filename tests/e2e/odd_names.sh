#!/usr/bin/env bash
# File names a real collection holds: spaces, a newline, a tab, quotes and backslashes, bytes
# that are not UTF-8 (Latin-1), a leading '-' or '--', 255 bytes, UTF-8. Every --json output
# must parse (Python's json), keep the names (invalid bytes as U+FFFD, docs/JSON.md), and the
# commands that take files must reach a name starting with '-' after "--". Folders holding what
# cannot be used (empty, non-image or unreadable image files, locked or too deeply nested
# folders, an empty or missing class folder) are named, never silently dropped; the image size
# limit is PIL's, and every command that decodes images takes --max-image-pixels.
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

# ---- what a folder holds that cannot be used is said, never dropped silently: files named as
# images that are empty or not images (named with the reason, counted as skipped), folders
# nested too deep (a warning naming where the search stopped, the rest used); an ImageFolder's
# empty class folder (warned, accuracy n/a / null) and link to a missing folder (named)
u=$tmp/unusable
mkdir -p "$u/sub"
cp "$src" "$u/good.png" && cp "$src" "$u/sub/ok.png"
: >"$u/zero.jpg"
echo x >"$u/fake.png"
echo "not an image" >"$u/notes.txt"   # neither an image name nor an image's first bytes: not one
"$vlm" index --model "$m" --out "$tmp/u.idx" "$u" --json >"$tmp/u.json" 2>"$tmp/u.err"
check "index: a folder's empty and non-image .jpg/.png are counted as skipped, the rest indexed ($(head -c 300 "$tmp/u.err"))" \
  "[ $? -eq 0 ] && grep -q '\"count\": 2,' '$tmp/u.json' && grep -q '\"skipped\": 2,' '$tmp/u.json'"
check "index: each named with its reason" \
  "grep -qxF 'vlm index: skipped: $u/zero.jpg: empty file' '$tmp/u.err' &&
   grep -qF 'vlm index: skipped: $u/fake.png: unsupported format' '$tmp/u.err'"
check "index: a file that is no image by name or bytes is not reported" "! grep -q notes.txt '$tmp/u.err'"
deep=$tmp/deep
for _ in $(seq 66); do deep=$deep/d; done
mkdir -p "$deep" && cp "$src" "$deep/too-deep.png" && cp "$src" "$tmp/deep/top.png" && cp "$src" "$tmp/deep/d/d/two.png"
stop=$tmp/deep$(printf '/d%.0s' $(seq 65))   # 65 folders below deep/: the first not searched
"$vlm" index --model "$m" --out "$tmp/deep.idx" "$tmp/deep" --json >"$tmp/deep.json" 2>"$tmp/deep.err"
check "index: folders nested more than 64 deep: a warning naming the first one left out, the rest indexed" \
  "[ $? -eq 0 ] && grep -qF 'vlm index: warning: $stop: more than 64 folders deep' '$tmp/deep.err' &&
   grep -q '\"count\": 2,' '$tmp/deep.json'"
"$vlm" zeroshot --model "$m" --classes horse,cat "$u" --json >"$tmp/uz.json" 2>"$tmp/uz.err"
check "zeroshot: exit 0, 2 classified" "[ $? -eq 0 ] && [ \$(py_items '$tmp/uz.json' path | wc -l) -eq 2 ]"
check "zeroshot --json: the empty and the non-image files in \"skipped\", named on stderr" \
  "py_items '$tmp/uz.json' skipped | grep -F 'zero.jpg' | grep -qF 'fake.png' &&
   grep -qxF 'vlm zeroshot: skipped: $u/zero.jpg: empty file' '$tmp/uz.err'"
"$vlm" caption --model "$tmp/coca" --max-len 8 --json "$u" >"$tmp/uc.json" 2>"$tmp/uc.err"
check "caption: exit 1 (an image could not be read, as its help says), the other 2 captioned" \
  "[ $? -eq 1 ] && [ \$(wc -l <'$tmp/uc.json') -eq 4 ] && [ \$(grep -c '\"error\"' '$tmp/uc.json') -eq 2 ] &&
   grep -qxF 'vlm caption: $u/zero.jpg: empty file' '$tmp/uc.err'"
c=$tmp/classes
mkdir -p "$c/horse" "$c/cat" "$c/empty_one"
cp "$src" "$c/horse/" && cp "$shared/data/images/chelsea.png" "$c/cat/" && : >"$c/cat/zero.jpg"
ln -s ../no-such-folder "$c/gone"
"$vlm" zeroshot --model "$m" --eval "$c" --templates simple --json >"$tmp/ze.json" 2>"$tmp/ze.err"
check "zeroshot --eval: exit 0, an empty .jpg in a class folder named and counted as skipped" \
  "[ $? -eq 0 ] && grep -q '\"skipped\": 1,' '$tmp/ze.json' && grep -qxF 'vlm zeroshot: skipped: $c/cat/zero.jpg: empty file' '$tmp/ze.err'"
check "zeroshot --eval: an empty class folder is warned about" \
  "grep -qF \"vlm zeroshot: warning: $c/empty_one: class 'empty one' has no images\" '$tmp/ze.err'"
check "zeroshot --eval --json: its accuracy is null, the others' numbers; the missing link's folder is no class" \
  "python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); p={x[\"class\"]: x for x in d[\"per_class\"]};
assert d[\"classes\"] == [\"cat\", \"empty one\", \"horse\"], d[\"classes\"]
assert p[\"empty one\"][\"images\"] == 0 and p[\"empty one\"][\"top1\"] is None, p
assert isinstance(p[\"cat\"][\"top1\"], float) and isinstance(p[\"horse\"][\"top1\"], float), p' '$tmp/ze.json'"
check "zeroshot --eval: a link to a missing class folder is named" \
  "grep -qF 'vlm zeroshot: warning: $c/gone: a link whose target cannot be read (No such file or directory): not a class' '$tmp/ze.err'"
"$vlm" zeroshot --model "$m" --eval "$c" --templates simple >"$tmp/ze.txt" 2>/dev/null
check "zeroshot --eval: the empty class's accuracy is n/a in the table" "grep -qE '^ +n/a +0  empty one\$' '$tmp/ze.txt'"

# ---- without read permission: a file named as an image (named, counted) and a folder (a
# warning, the rest used); as another user than root (setpriv), since root reads everything
as_other= perm=1
if [ "$(id -u)" -eq 0 ]; then
  if command -v setpriv >/dev/null && setpriv --reuid=65534 --regid=65534 --clear-groups true 2>/dev/null; then
    as_other="setpriv --reuid=65534 --regid=65534 --clear-groups"
  else
    perm=0
  fi
fi
if [ $perm -eq 0 ]; then
  echo "odd_names: the permission-denied checks skipped: as root they need setpriv (util-linux) to run as nobody"
else
  p=$tmp/perm
  mkdir -p "$p/open" "$p/locked" "$p/ev/horse" "$p/ev/locked_class" "$tmp/pout"
  cp "$src" "$p/open/a.png" && cp "$src" "$p/locked/b.png" && cp "$src" "$p/noread.png"
  cp "$src" "$p/ev/horse/" && cp "$src" "$p/ev/locked_class/"
  chmod -R a+rX "$tmp" && chmod 777 "$tmp/pout" && chmod 000 "$p/noread.png" "$p/locked" "$p/ev/locked_class"
  $as_other "$vlm" index --model "$m" --out "$tmp/pout/p.idx" "$p" --json >"$tmp/p.json" 2>"$tmp/p.err"
  check "index: a folder without read permission is a warning naming it, the rest indexed, exit 0 ($(head -c 300 "$tmp/p.err"))" \
    "[ $? -eq 0 ] && grep -qF 'vlm index: warning: $p/locked: cannot open folder: Permission denied' '$tmp/p.err' &&
     grep -q '\"count\": 2,' '$tmp/p.json'"
  check "index: an unreadable .png in a folder is named and counted as skipped" \
    "grep -qxF 'vlm index: skipped: $p/noread.png: cannot open: Permission denied' '$tmp/p.err' && grep -q '\"skipped\": 1,' '$tmp/p.json'"
  $as_other "$vlm" zeroshot --model "$m" --classes horse,cat "$p" --json >"$tmp/pz.json" 2>"$tmp/pz.err"
  check "zeroshot: the same (exit 0, the file in \"skipped\", the folder named)" \
    "[ $? -eq 0 ] && py_items '$tmp/pz.json' skipped | grep -qF noread.png && grep -qF '$p/locked: cannot open folder' '$tmp/pz.err'"
  $as_other "$vlm" caption --model "$tmp/coca" --max-len 8 "$p/open" "$p/locked" >"$tmp/pc.txt" 2>"$tmp/pc.err"
  check "caption: a folder it could not search is exit 1, the rest captioned" \
    "[ $? -eq 1 ] && grep -q '^$p/open/a.png' '$tmp/pc.txt' && grep -qF '$p/locked: cannot open folder' '$tmp/pc.err'"
  $as_other "$vlm" zeroshot --model "$m" --eval "$p/ev" --templates simple >"$tmp/pe.txt" 2>"$tmp/pe.err"
  check "zeroshot --eval: a class folder without permission: named, its accuracy n/a, the rest measured" \
    "[ $? -eq 0 ] && grep -qF '$p/ev/locked_class: cannot open folder' '$tmp/pe.err' && grep -qE '^ +n/a +0  locked class\$' '$tmp/pe.txt'"
  chmod 755 "$p/locked" "$p/ev/locked_class"   # removable by the trap as any user
fi

# ---- the image size limit: PIL's (Image.MAX_IMAGE_PIXELS, 89,478,485), so a 30-megapixel
# photo is read; every command that decodes images takes --max-image-pixels, and the
# over-the-limit message names that flag
python3 - "$tmp/big.png" 6000 5000 "$tmp/huge.png" <<'PY'
import struct, sys, zlib
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
def ihdr(w, h): return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
w, h = int(sys.argv[2]), int(sys.argv[3])
row = bytes((x * 7) & 255 for x in range(w * 3))
z = zlib.compressobj(1)
data = b"".join(z.compress(b"\0" + row) for _ in range(h)) + z.flush()
open(sys.argv[1], "wb").write(ihdr(w, h) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
open(sys.argv[4], "wb").write(ihdr(10000, 10000) + chunk(b"IEND", b""))   # a header: 100M pixels
PY
"$vlm" index --model "$m" --out "$tmp/big.idx" "$tmp/big.png" --json >"$tmp/big.json" 2>"$tmp/big.err"
check "index: a 6000x5000 PNG (30 MP, open_clip reads it) is embedded by default ($(head -c 300 "$tmp/big.err"))" \
  "[ $? -eq 0 ] && grep -q '\"embedded\": 1,' '$tmp/big.json'"
"$vlm" index --model "$m" --out "$tmp/big.idx" "$tmp/huge.png" >/dev/null 2>"$tmp/huge.err"
check "index: 10000x10000 is over the default limit, and the message names the flag" \
  "grep -qF 'over the max-pixels limit 89478485' '$tmp/huge.err' && grep -qF 'raise --max-image-pixels' '$tmp/huge.err'"
over() {   # DESCRIPTION FILE: the message of an image over --max-image-pixels 1000 is in FILE
  check "$1: --max-image-pixels 1000 refuses a larger image, naming the flag" \
    "grep -qF 'over the max-pixels limit 1000 (possible decompression bomb; raise --max-image-pixels to allow it)' '$2'"
}
"$vlm" index --model "$m" --out "$tmp/mp.idx" --max-image-pixels 1000 "$src" >/dev/null 2>"$tmp/mp.err"; over index "$tmp/mp.err"
"$vlm" zeroshot --model "$m" --classes horse,cat --max-image-pixels 1000 "$src" >/dev/null 2>"$tmp/mp.err"; over zeroshot "$tmp/mp.err"
"$vlm" zeroshot --model "$m" --eval "$c" --templates simple --max-image-pixels 1000 >/dev/null 2>"$tmp/mp.err"; over "zeroshot --eval" "$tmp/mp.err"
"$vlm" caption --model "$tmp/coca" --max-len 8 --max-image-pixels 1000 "$src" >/dev/null 2>"$tmp/mp.err"; over caption "$tmp/mp.err"
"$vlm" search --index "$tmp/o.idx" --model "$m" --image "$src" --max-image-pixels 1000 >/dev/null 2>"$tmp/mp.err"; over search "$tmp/mp.err"
"$vlm" eval --model "$m" --zeroshot "$c" --templates simple --max-image-pixels 1000 >/dev/null 2>"$tmp/mp.err"; over eval "$tmp/mp.err"
"$vlm" train --train-data "$d/c.tsv" --model tiny --tokenizer train:600 --batch-size 2 --steps 2 --warmup 1 \
  --val-frequency 0 --zeroshot-frequency 0 --workers 1 --logs "$tmp/mpruns" --max-image-pixels 100 >/dev/null 2>"$tmp/mp.err"
check "train: --max-image-pixels 100 refuses its 16x16 images, naming the flag" \
  "grep -qF 'over the max-pixels limit 100 (possible decompression bomb; raise --max-image-pixels to allow it)' '$tmp/mp.err'"
"$vlm" search --index "$tmp/o.idx" --model "$m" --text horse --max-image-pixels 1000 >/dev/null 2>&1
check "search --text --max-image-pixels: a usage error (no image to decode)" "[ $? -eq 2 ]"

echo "odd_names: $pass passed, $fail failed"
[ $fail -eq 0 ]
