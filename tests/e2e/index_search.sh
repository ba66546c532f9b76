#!/usr/bin/env bash
# `vlm index` and `vlm search` on data the test makes (see tools_setup.sh): images and
# captions, incremental updates, the four query directions, .npy export, JSON, and
# errors for bad input (corrupt images, another model's index, a file that is not an index).
# Usage: index_search.sh VLM_BINARY SHARED_DIR
set -u
vlm=$1 shared=$2
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
make_tmp
. "$here/tools_setup.sh"   # makes the test data
m=$tmp/model idx=$tmp/out/photos.idx
mkdir -p "$tmp/out"

check "index --help" "\"$vlm\" index --help | grep -q 'usage: vlm index'"
check "search --help" "\"$vlm\" search --help | grep -q 'usage: vlm search'"
out=$("$vlm" index --model "$m" --out "$idx" --export-npy "$tmp/out/photos.npy" "$tmp/imgs" 2>"$tmp/err"); rc=$?
check "index exits 0 with a corrupt image among the files" "[ $rc -eq 0 ]"
check "index: 7 images, 7 embedded, 1 skipped" "grep -q '7 images (7 embedded, 0 unchanged, 0 dropped, 1 skipped), 32-d' <<<\"\$out\""
check "the corrupt image is named" "grep -q 'skipped: .*broken.png' \"$tmp/err\""
check "a progress line on stderr" "grep -q 'index: 8/8 images' \"$tmp/err\""
check "no temporary files left" "[ \$(ls \"$tmp/out\" | wc -l) -eq 2 ]"

# .npy: NumPy format 1.0, '<f4', shape (7, 32), data after a 64-byte aligned header
hdr=$(head -c 128 "$tmp/out/photos.npy" | tr -d '\0' | tr -c '[:print:]' '?')
check ".npy magic and header" "grep -q \"NUMPY.*'descr': '<f4', 'fortran_order': False, 'shape': (7, 32)\" <<<\"\$hdr\""
hl=$(od -An -tu2 -j8 -N2 "$tmp/out/photos.npy" | tr -d ' ')
check ".npy size = header + 7*32*4" "[ \$(( (10 + hl) % 64 )) -eq 0 ] && [ \$(stat -c %s \"$tmp/out/photos.npy\") -eq \$((10 + hl + 7 * 32 * 4)) ]"
if command -v python3 >/dev/null; then
  check ".npy rows are unit vectors" "python3 - \"$tmp/out/photos.npy\" <<'PY'
import struct, sys
b = open(sys.argv[1], 'rb').read()
hl = struct.unpack('<H', b[8:10])[0]
v = struct.unpack('<%df' % (7 * 32), b[10 + hl:])
for r in range(7):
    assert abs(sum(x * x for x in v[32 * r:32 * r + 32]) - 1) < 1e-5
PY"
fi

"$vlm" index --model "$m" --out "$tmp/j.idx" --json "$tmp/imgs/space" >"$tmp/ij.json" 2>/dev/null
check "index --json" "json_ok \"$tmp/ij.json\" && grep -q '\"count\": 2, \"embedded\": 2, \"unchanged\": 0' \"$tmp/ij.json\""
"$vlm" index --model "$m" --out "$tmp/out/photos.idx" --json "$tmp/imgs" >"$tmp/ij2.json" 2>/dev/null   # only broken.png is tried again
check "index --json with nothing embedded (one skipped): per_second 0" "grep -q '\"embedded\": 0, .*\"skipped\": 1, .*\"per_second\": 0.000' \"$tmp/ij2.json\""

# one file named several ways (a folder, a file in it, another spelling): one item; a later run
# that spells the folder differently finds every item unchanged
out=$("$vlm" index --model "$m" --out "$tmp/dup.idx" "$tmp/imgs/space" "$tmp/imgs/space/rocket.jpg" \
  "$tmp/imgs//space/./" 2>"$tmp/err"); rc=$?
check "a file named thrice is indexed once" "[ $rc -eq 0 ] && grep -q '2 images (2 embedded' <<<\"\$out\" && grep -q '3 images named more than once, indexed once' \"$tmp/err\""
out=$("$vlm" index --model "$m" --out "$tmp/dup.idx" "$tmp/./imgs/space/" 2>/dev/null); rc=$?
check "another spelling of the folder: all unchanged" "[ $rc -eq 0 ] && grep -q '2 images (0 embedded, 2 unchanged, 0 dropped' <<<\"\$out\""
# --add: a folder added to an index of another keeps the other's items (without it they are dropped);
# the kept items search as before; another model's index is refused with --add, untouched
"$vlm" index --model "$m" --out "$tmp/add.idx" "$tmp/imgs/space" >/dev/null 2>&1
out=$("$vlm" index --model "$m" --out "$tmp/add.idx" --add "$tmp/imgs/animal" 2>/dev/null); rc=$?
n_animal=$(find "$tmp/imgs/animal" -type f | wc -l)
check "--add keeps the 2 space images beside the $n_animal animal ones" \
  "[ $rc -eq 0 ] && grep -q '($n_animal embedded, 0 unchanged, 2 kept, 0 dropped' <<<\"\$out\""
out=$("$vlm" search --index "$tmp/add.idx" --model "$m" --image "$tmp/imgs/space/rocket.jpg" --top-k 1 2>/dev/null)
check "... a kept item is found by its own image" "grep -q 'space/rocket.jpg' <<<\"\$out\""
out=$("$vlm" index --model "$m" --out "$tmp/add.idx" "$tmp/imgs/animal" 2>/dev/null)
check "without --add the others are dropped" "grep -q '0 embedded, $n_animal unchanged, 2 dropped' <<<\"\$out\""
"$vlm" convert --init tiny --seed 9 --to open_clip --out "$tmp/other" >/dev/null 2>&1
cp "$tmp/add.idx" "$tmp/add.before"
err=$("$vlm" index --model "$tmp/other" --out "$tmp/add.idx" --add "$tmp/imgs/space" 2>&1); rc=$?
check "--add onto another model's index: exit 1, said, the index kept" \
  "[ $rc -eq 1 ] && grep -q 'cannot be kept' <<<\"\$err\" && cmp -s \"$tmp/add.idx\" \"$tmp/add.before\""
# --add of the same folder spelt otherwise (relative, then absolute): each file keeps one row,
# under the name given now, and it is said; the index's other items are kept beside them
mkdir -p "$tmp/sp"
"$vlm" index --model "$m" --out "$tmp/sp/sp.idx" "$tmp/imgs/animal" >/dev/null 2>&1
(cd "$tmp" && "$vlm" index --model "$m" --out sp/sp.idx --add imgs/space) >/dev/null 2>&1
(cd "$tmp" && "$vlm" index --model "$m" --out sp/sp.idx --add --json "$(pwd)/imgs/space") >"$tmp/sp.json" 2>"$tmp/err"; rc=$?
check "--add of a folder already in the index under another name: one row per file, said" \
  "[ $rc -eq 0 ] && grep -q '\"count\": 4, \"embedded\": 0, \"unchanged\": 2, \"kept\": 2, \"dropped\": 0' \"$tmp/sp.json\" && \
   grep -q 'imgs/space/astronaut.png is in sp/sp.idx as imgs/space/astronaut.png (the same file): one row' \"$tmp/err\" && \
   grep -q '2 images in all were in sp/sp.idx under another name' \"$tmp/err\""
out=$("$vlm" search --index "$tmp/sp/sp.idx" --model "$m" --image "$tmp/imgs/space/rocket.jpg" --top-k 10 2>/dev/null)
check "... search finds each image once, under the new name" \
  "[ \$(grep -c 'rocket.jpg' <<<\"\$out\") -eq 1 ] && grep -q \" $tmp/imgs/space/rocket.jpg\$\" <<<\"\$out\""
# an index holding one file under two names (made when b.png became a hard link to a.png): the
# next run keeps one row for it and counts the other dropped
mkdir -p "$tmp/hl"
cp "$tmp/imgs/space/rocket.jpg" "$tmp/hl/a.jpg" && cp "$tmp/imgs/animal/horse.png" "$tmp/hl/b.png"
"$vlm" index --model "$m" --out "$tmp/hl.idx" "$tmp/hl" >/dev/null 2>&1
rm "$tmp/hl/b.png" && ln "$tmp/hl/a.jpg" "$tmp/hl/b.png"
"$vlm" index --model "$m" --out "$tmp/hl.idx" --json "$tmp/hl/a.jpg" "$tmp/hl/b.png" >"$tmp/hl.json" 2>"$tmp/err"; rc=$?
check "an index row naming a file another row names: dropped, said" \
  "[ $rc -eq 0 ] && grep -q '\"count\": 1, \"embedded\": 0, \"unchanged\": 1, \"kept\": 0, \"dropped\": 1' \"$tmp/hl.json\" && \
   grep -q '1 row of .*hl.idx named a file that another row names too' \"$tmp/err\""

# --out an empty file (touched beforehand): nothing to protect, the index is written there
: >"$tmp/empty.idx"
out=$("$vlm" index --model "$m" --out "$tmp/empty.idx" "$tmp/imgs/space" 2>&1); rc=$?
check "--out an existing empty file: written" "[ $rc -eq 0 ] && grep -q '2 images (2 embedded' <<<\"\$out\" && [ -s \"$tmp/empty.idx\" ]"

# a link in a searched folder whose target is gone is named (it was skipped without a word)
mkdir -p "$tmp/dl" && cp "$tmp/imgs/space/rocket.jpg" "$tmp/dl/" && ln -s "$tmp/no-such.png" "$tmp/dl/gone.png"
out=$("$vlm" index --model "$m" --out "$tmp/dl.idx" "$tmp/dl" 2>"$tmp/err"); rc=$?
check "a dangling link: exit 0, 1 image, the link named" \
  "[ $rc -eq 0 ] && grep -q '1 images (1 embedded' <<<\"\$out\" && grep -q 'gone.png: a link whose target cannot be read' \"$tmp/err\""

cp "$tmp/j.idx" "$tmp/j.before"
err=$("$vlm" index --model "$m" --out "$tmp/j.idx" --export-npy "$tmp/./j.idx" "$tmp/imgs/space" 2>&1); rc=$?
check "--export-npy onto the index itself is refused, the index kept" "[ $rc -eq 2 ] && grep -q 'is the index itself' <<<\"\$err\" && cmp -s \"$tmp/j.idx\" \"$tmp/j.before\""

# an index whose embeddings hold NaN (damaged, yet well-formed): JSON stays JSON, and it is said
if command -v python3 >/dev/null; then
  cp "$tmp/j.idx" "$tmp/nan.idx"
  python3 - "$tmp/nan.idx" <<'PY'
import json, struct, sys
b = bytearray(open(sys.argv[1], 'rb').read())
n = struct.unpack('<Q', b[:8])[0]
a, e = json.loads(b[8:8 + n])['embeddings']['data_offsets']
b[8 + n + a:8 + n + e] = struct.pack('<f', float('nan')) * ((e - a) // 4)
open(sys.argv[1], 'wb').write(b)
PY
  "$vlm" search --index "$tmp/nan.idx" --model "$m" --text "a rocket" --json >"$tmp/nan.json" 2>"$tmp/err"
  check "NaN scores: JSON null and a warning" "json_ok \"$tmp/nan.json\" && grep -q '\"score\": null' \"$tmp/nan.json\" && grep -q 'not finite' \"$tmp/err\""
fi

# an index of this model whose embeddings are narrower than the model's: damaged, said so
if command -v python3 >/dev/null; then
  python3 - "$tmp/j.idx" "$tmp/narrow.idx" <<'PY'
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
d = b[8 + n:]
N, E = h['embeddings']['shape']
h['embeddings']['shape'] = [N, E // 2]
out, at = b'', 0
for k in sorted((k for k in h if k != '__metadata__'), key=lambda k: h[k]['data_offsets'][0]):
    a, z = h[k]['data_offsets']
    t = d[a:z] if k != 'embeddings' else d[a:a + N * (E // 2) * 4]
    h[k]['data_offsets'] = [at, at + len(t)]
    out, at = out + t, at + len(t)
hb = json.dumps(h).encode()
hb += b' ' * (-len(hb) % 8)
open(sys.argv[2], 'wb').write(struct.pack('<Q', len(hb)) + hb + out)
PY
  err=$("$vlm" search --index "$tmp/narrow.idx" --model "$m" --text "a rocket" 2>&1); rc=$?
  check "an index narrower than its model: damaged, not another model" "[ $rc -eq 1 ] && grep -q 'damaged' <<<\"\$err\""
fi

# a valid index written by another tool: the tensors in another order, so that the I64 arrays
# (offsets, file_size, mtime_ns) sit at odd offsets in the data: read as well as vlm's own order
if command -v python3 >/dev/null; then
  python3 - "$tmp/j.idx" "$tmp/odd.idx" <<'PY'
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
d = b[8 + n:]
order = ['items', 'offsets', 'file_size', 'mtime_ns', 'embeddings']
out, at = b'', 0
for k in order:
    a, z = h[k]['data_offsets']
    t = d[a:z]
    if k == 'items':
        t += b'\0' * (1 - len(t) % 2)   # odd length: whatever follows is misaligned
        h[k]['shape'] = [len(t)]
    h[k]['data_offsets'] = [at, at + len(t)]
    out, at = out + t, at + len(t)
hb = json.dumps(h).encode()
hb += b' ' * (-len(hb) % 8)
open(sys.argv[2], 'wb').write(struct.pack('<Q', len(hb)) + hb + out)
PY
  "$vlm" search --index "$tmp/j.idx" --model "$m" --text "a rocket" --top-k 3 >"$tmp/j.out" 2>&1
  "$vlm" search --index "$tmp/odd.idx" --model "$m" --text "a rocket" --top-k 3 >"$tmp/odd.out" 2>&1; rc=$?
  check "an index with misaligned I64 arrays: the same results" "[ $rc -eq 0 ] && cmp -s \"$tmp/j.out\" \"$tmp/odd.out\""
fi

# incremental: nothing changed; then one changed, one deleted, one added
out=$("$vlm" index --model "$m" --out "$idx" "$tmp/imgs" 2>/dev/null); rc=$?
check "re-run embeds nothing new" "[ $rc -eq 0 ] && grep -q '7 images (0 embedded, 7 unchanged, 0 dropped' <<<\"\$out\""
touch -d '2001-02-03 04:05:06' "$tmp/imgs/object/camera.png"
rm "$tmp/imgs/animal/chelsea.png"
cp "$shared/data/images/retina.jpg" "$tmp/imgs/animal/retina.jpg"
out=$("$vlm" index --model "$m" --out "$idx" "$tmp/imgs" 2>/dev/null); rc=$?
check "update: 2 embedded, 5 unchanged, 1 dropped" "[ $rc -eq 0 ] && grep -q '7 images (2 embedded, 5 unchanged, 1 dropped, 1 skipped)' <<<\"\$out\""

# text -> image, image -> image
out=$("$vlm" search --index "$idx" --model "$m" --text "a photo of a horse" --top-k 3); rc=$?
check "text search exits 0, 3 results" "[ $rc -eq 0 ] && [ \$(wc -l <<<\"\$out\") -eq 3 ]"
check "results are ranked by score" "awk '{print \$2}' <<<\"\$out\" | sort -rn -c"
check "deleted file is gone" "! \"$vlm\" search --index \"$idx\" --model \"$m\" --text x --top-k 100 | grep -q chelsea"
out=$("$vlm" search --index "$idx" --model "$m" --image "$tmp/imgs/space/rocket.jpg" --top-k 100); rc=$?
check "image search: the image itself first, score 1" "[ $rc -eq 0 ] && head -1 <<<\"\$out\" | grep -qE '^ 1  (1\.0000|0\.9999)  .*space/rocket.jpg$'"
check "top-k clamps to the index size" "[ \$(wc -l <<<\"\$out\") -eq 7 ]"
"$vlm" search --index "$idx" --model "$m" --image "$tmp/imgs/space/rocket.jpg" --top-k 2 --json >"$tmp/s.json"
check "search --json is JSON" "json_ok \"$tmp/s.json\" && grep -q '\"kind\": \"images\"' \"$tmp/s.json\" && grep -q '\"rank\": 2' \"$tmp/s.json\""

# a converted model keeps its tokenizer (vocab.json + merges.txt beside the weights, as Hugging Face has them)
"$vlm" convert --model "$m" --to hf --out "$tmp/hfm" >/dev/null 2>&1
check "convert --to hf copies the tokenizer" "[ -s \"$tmp/hfm/vocab.json\" ] && [ -s \"$tmp/hfm/merges.txt\" ] && cmp -s \"$m/tokenizer/vocab.json\" \"$tmp/hfm/vocab.json\""
out2=$("$vlm" index --model "$tmp/hfm" --out "$tmp/hfm.idx" --texts "$tmp/captions.txt" 2>&1); rc=$?
check "... and texts embed with it, no --tokenizer" "[ $rc -eq 0 ]"

# captions: text -> text and image -> text
out=$("$vlm" index --model "$m" --out "$tmp/out/caps.idx" --texts "$tmp/captions.txt"); rc=$?
check "index --texts exits 0" "[ $rc -eq 0 ] && grep -q '8 texts (8 embedded' <<<\"\$out\""
out=$("$vlm" search --index "$tmp/out/caps.idx" --model "$m" --text "an old camera on a table" --top-k 2); rc=$?
check "text -> text: the caption itself first" "[ $rc -eq 0 ] && head -1 <<<\"\$out\" | grep -qE '^ 1  (1\.0000|0\.9999)  an old camera on a table$'"
out=$("$vlm" search --index "$tmp/out/caps.idx" --model "$m" --image "$tmp/imgs/object/block.png" --top-k 8); rc=$?
check "image -> text: every caption ranked" "[ $rc -eq 0 ] && [ \$(wc -l <<<\"\$out\") -eq 8 ]"
# --queries FILE: each line's results as its own --text run gives them, in the file's order
printf 'a horse\n\nan old camera on a table\na rocket\n' >"$tmp/queries.txt"
out=$("$vlm" search --index "$tmp/out/caps.idx" --model "$m" --queries "$tmp/queries.txt" --top-k 3 2>"$tmp/err"); rc=$?
want=""
for qq in "a horse" "an old camera on a table" "a rocket"; do
  want+="${want:+$'\n\n'}query: $qq"$'\n'"$("$vlm" search --index "$tmp/out/caps.idx" --model "$m" --text "$qq" --top-k 3)"
done
check "--queries: the --text results of each line, blank lines skipped" "[ $rc -eq 0 ] && [ \"\$out\" = \"\$want\" ]"
"$vlm" search --index "$tmp/out/caps.idx" --model "$m" --queries "$tmp/queries.txt" --top-k 2 --json >"$tmp/q.json"
check "--queries --json: one document, a queries array" "json_ok \"$tmp/q.json\" && grep -q '\"queries\": \[' \"$tmp/q.json\" && \
  [ \$(grep -c '\"query\": {\"text\"' \"$tmp/q.json\") -eq 3 ]"
"$vlm" search --index "$tmp/out/caps.idx" --model "$m" --queries "$tmp/queries.txt" --text x >/dev/null 2>&1
check "--queries with --text exits 2" "[ $? -eq 2 ]"
printf '\n\n' >"$tmp/noq.txt"
err=$("$vlm" search --index "$tmp/out/caps.idx" --model "$m" --queries "$tmp/noq.txt" 2>&1); rc=$?
check "--queries FILE without a query: exit 1, named" "[ $rc -eq 1 ] && grep -q 'noq.txt: no queries' <<<\"\$err\""
echo "a rocket launching into the sky" >>"$tmp/captions.txt"
out=$("$vlm" index --model "$m" --out "$tmp/out/caps.idx" --texts "$tmp/captions.txt"); rc=$?
check "texts re-run: duplicates of known texts are reused" "[ $rc -eq 0 ] && grep -q '9 texts (0 embedded, 9 unchanged' <<<\"\$out\""
# a text given twice is stored twice (one row per line); a re-run reuses both rows, drops none
printf 'a horse\na cat\na horse\na rocket\n' >"$tmp/twice.txt"
"$vlm" index --model "$m" --out "$tmp/twice.idx" --texts "$tmp/twice.txt" --json >"$tmp/tw1.json" 2>/dev/null
"$vlm" index --model "$m" --out "$tmp/twice.idx" --texts "$tmp/twice.txt" --json >"$tmp/tw2.json" 2>/dev/null
check "texts with a repeated line, re-run: count 4, unchanged 4, dropped 0" \
  "grep -q '\"count\": 4, \"embedded\": 4, \"unchanged\": 0, \"kept\": 0, \"dropped\": 0' \"$tmp/tw1.json\" && \
   grep -q '\"count\": 4, \"embedded\": 0, \"unchanged\": 4, \"kept\": 0, \"dropped\": 0' \"$tmp/tw2.json\""
printf 'a horse\na cat\na rocket\n' >"$tmp/twice.txt"
"$vlm" index --model "$m" --out "$tmp/twice.idx" --texts "$tmp/twice.txt" --json >"$tmp/tw3.json" 2>/dev/null
check "... one of the two lines gone: 1 dropped" "grep -q '\"count\": 3, \"embedded\": 0, \"unchanged\": 3, \"kept\": 0, \"dropped\": 1' \"$tmp/tw3.json\""
err=$("$vlm" index --model "$m" --out "$tmp/dir.idx" --texts "$tmp/imgs" 2>&1); rc=$?
check "a folder as --texts: exit 1, said to be a directory" "[ $rc -eq 1 ] && grep -q -- '--texts .*imgs: is a directory' <<<\"\$err\""
err=$("$vlm" search --index "$tmp/out/caps.idx" --model "$m" --queries "$tmp/imgs" 2>&1); rc=$?
check "a folder as --queries: exit 1, said to be a directory" "[ $rc -eq 1 ] && grep -q -- '--queries .*imgs: is a directory' <<<\"\$err\""

# texts of mixed lengths (embedded shortest first, batch by batch): row i is the one text i gets
# alone (an index of that line only), in the file's order
printf '%s\n' "a dog" "a very long caption about a small red boat on a lake near some tall green trees at dawn" \
  "two cats" "an old camera on a wooden table in a dark room" "sky" >"$tmp/mixed.txt"
"$vlm" index --model "$m" --out "$tmp/mixed.idx" --texts "$tmp/mixed.txt" --batch-size 4 --export-npy "$tmp/mixed.npy" >/dev/null 2>&1
for i in 1 2 3 4 5; do
  sed -n ${i}p "$tmp/mixed.txt" >"$tmp/one$i.txt"
  "$vlm" index --model "$m" --out "$tmp/one$i.idx" --texts "$tmp/one$i.txt" --export-npy "$tmp/one$i.npy" >/dev/null 2>&1
done
if command -v python3 >/dev/null; then
  check "texts of mixed lengths: row i is text i's own embedding" "python3 - \"$tmp\" <<'PY'
import struct, sys
def rows(p):
    b = open(p, 'rb').read()
    h = struct.unpack('<H', b[8:10])[0]
    d = b[10 + h:]
    return struct.unpack('<%df' % (len(d) // 4), d)
allr = rows(sys.argv[1] + '/mixed.npy')
E = len(allr) // 5
for i in range(5):
    one = rows(sys.argv[1] + '/one%d.npy' % (i + 1))
    assert len(one) == E and max(abs(x - y) for x, y in zip(one, allr[i * E:(i + 1) * E])) < 1e-5, i
PY"
fi

# the model's preprocess_cfg is the transform used: the fixture's weights with resize_mode "squash"
# embed a square image as the default (shortest side + crop) does and a non-square one otherwise
fx=$shared/fixtures/tiny-clip
mkdir -p "$tmp/sq"
cp "$fx/model.safetensors" "$tmp/sq/open_clip_model.safetensors"
printf '{"model_cfg": %s, "preprocess_cfg": {"resize_mode": "squash"}}' "$(cat "$fx/config.json")" >"$tmp/sq/open_clip_config.json"
for img in astronaut chelsea; do
  "$vlm" index --model "$fx" --out "$tmp/d-$img.idx" --export-npy "$tmp/d-$img.npy" "$shared/data/images/$img.png" >/dev/null 2>&1
  "$vlm" index --model "$tmp/sq" --out "$tmp/s-$img.idx" --export-npy "$tmp/s-$img.npy" "$shared/data/images/$img.png" >/dev/null 2>&1
done
check "preprocess_cfg resize_mode squash: a square image as before, a 451x300 one otherwise" \
  "[ -s \"$tmp/s-chelsea.npy\" ] && cmp -s \"$tmp/d-astronaut.npy\" \"$tmp/s-astronaut.npy\" && ! cmp -s \"$tmp/d-chelsea.npy\" \"$tmp/s-chelsea.npy\""

# --precision bf16: the same rows within bf16 rounding of the f32 ones; the index stays usable
"$vlm" index --model "$m" --out "$tmp/bf.idx" --precision bf16 --export-npy "$tmp/bf.npy" "$tmp/imgs" >/dev/null 2>&1
"$vlm" index --model "$m" --out "$tmp/f32.idx" --export-npy "$tmp/f32.npy" "$tmp/imgs" >/dev/null 2>&1
if command -v python3 >/dev/null; then
  check "bf16 embeddings: cosine to f32 > 0.999, not identical" "python3 - \"$tmp/bf.npy\" \"$tmp/f32.npy\" <<'PY'
import struct, sys
def rows(p):
    b = open(p, 'rb').read(); hl = struct.unpack('<H', b[8:10])[0]
    v = struct.unpack('<%df' % ((len(b) - 10 - hl) // 4), b[10 + hl:])
    return [v[i:i + 32] for i in range(0, len(v), 32)]
a, b = rows(sys.argv[1]), rows(sys.argv[2])
assert len(a) == len(b) == 7
cos = [sum(x * y for x, y in zip(r, s)) for r, s in zip(a, b)]
assert min(cos) > 0.999 and a != b, cos
PY"
fi
out=$("$vlm" search --index "$tmp/bf.idx" --model "$m" --precision bf16 --image "$tmp/imgs/space/rocket.jpg" --top-k 1); rc=$?
check "bf16 search finds the image itself" "[ $rc -eq 0 ] && grep -q 'space/rocket.jpg' <<<\"\$out\""
"$vlm" index --model "$m" --out "$tmp/x.idx" --precision fp8 "$tmp/imgs" >/dev/null 2>&1
check "unknown --precision exits 2" "[ $? -eq 2 ]"
# without bf16 GEMM kernels bf16 still rounds the matmul inputs (the rows above differ from
# f32's): vlm version does not claim f32's results
check "vlm version: bf16 without bf16 kernels is not said to give f32's results" "! \"$vlm\" version | grep -q 'same results'"

# a model whose image features are NaN: nothing stored (a NaN row matches nothing), each image
# and the model named, exit 1 with nothing to write
if command -v python3 >/dev/null; then
  cp -r "$m" "$tmp/nanv"
  python3 - "$tmp/nanv/open_clip_model.safetensors" <<'PY'
import json, struct, sys
b = bytearray(open(sys.argv[1], 'rb').read())
n = struct.unpack('<Q', b[:8])[0]
a, z = json.loads(b[8:8 + n])['visual.proj']['data_offsets']
b[8 + n + a:8 + n + z] = struct.pack('<f', float('nan')) * ((z - a) // 4)
open(sys.argv[1], 'wb').write(b)
PY
  err=$("$vlm" index --model "$tmp/nanv" --out "$tmp/nanv.idx" "$tmp/imgs/space" 2>&1); rc=$?
  check "NaN image features: exit 1, the images and model named, no index" \
    "[ $rc -eq 1 ] && grep -q 'rocket.jpg: its embedding is not finite' <<<\"\$err\" && \
     grep -q 'the model .*nanv gives NaN or infinite features' <<<\"\$err\" && [ ! -e \"$tmp/nanv.idx\" ]"
fi

# the same weights in Hugging Face layout have the same identity: the index accepts them
"$vlm" convert --model "$m" --to hf --out "$tmp/model_hf" >/dev/null && cp -r "$m/tokenizer" "$tmp/model_hf/"
a=$("$vlm" search --index "$idx" --model "$m" --text "a horse" --top-k 3)
b=$("$vlm" search --index "$idx" --model "$tmp/model_hf" --text "a horse" --top-k 3 2>&1); rc=$?
check "the HF copy of the model searches the index, same results" "[ $rc -eq 0 ] && [ \"\$a\" = \"\$b\" ]"

# another model
err=$("$vlm" search --index "$idx" --model "$tmp/model2" --text "a horse" 2>&1); rc=$?
check "another model's index is refused" "[ $rc -eq 1 ] && grep -q 'built by another model' <<<\"\$err\""
out=$("$vlm" index --model "$tmp/model2" --out "$idx" "$tmp/imgs" 2>&1); rc=$?
check "re-indexing with another model embeds everything" "[ $rc -eq 0 ] && grep -q 'embedding everything again' <<<\"\$out\" && grep -q '(7 embedded, 0 unchanged' <<<\"\$out\""
"$vlm" search --index "$idx" --model "$tmp/model2" --text "a horse" >/dev/null 2>&1
check "... then the new model can search it" "[ $? -eq 0 ]"

# bad input
err=$("$vlm" search --index "$m/open_clip_model.safetensors" --model "$m" --text x 2>&1); rc=$?
check "a safetensors file that is not an index" "[ $rc -eq 1 ] && grep -q 'not a valid vlm index' <<<\"\$err\""
echo "a caption file, not an index" >"$tmp/caps-not-index.txt"
err=$("$vlm" search --index "$tmp/caps-not-index.txt" --model "$m" --text x 2>&1); rc=$?
check "a text file as --index: not a vlm index" "[ $rc -eq 1 ] && grep -q 'caps-not-index.txt.*not a vlm index' <<<\"\$err\""
"$vlm" search --index "$idx" --model "$m" --text "" >/dev/null 2>&1
check "an empty --text exits 2" "[ $? -eq 2 ]"
echo "precious" >"$tmp/out/keep.txt"
err=$("$vlm" index --model "$m" --out "$tmp/out/keep.txt" "$tmp/imgs" 2>&1); rc=$?
check "--out over a file that is not an index is refused and kept" "[ $rc -eq 1 ] && grep -q 'not a vlm index' <<<\"\$err\" && grep -q precious \"$tmp/out/keep.txt\""
err=$("$vlm" index --model "$m" --out "$tmp/out/x.idx" "$tmp/no-such-dir" 2>&1); rc=$?
check "missing folder exits 1, named" "[ $rc -eq 1 ] && grep -q 'no-such-dir' <<<\"\$err\" && [ ! -e \"$tmp/out/x.idx\" ]"
err=$("$vlm" index --model "$m" --out "$tmp/out/x.idx" "$tmp/imgs/object/broken.png" 2>&1); rc=$?
check "only corrupt images: exit 1, nothing written" "[ $rc -eq 1 ] && grep -q 'broken.png' <<<\"\$err\" && [ ! -e \"$tmp/out/x.idx\" ]"
err=$("$vlm" search --index "$tmp/out/caps.idx" --model "$m" --image "$tmp/imgs/object/broken.png" 2>&1); rc=$?
check "corrupt query image exits 1, named" "[ $rc -eq 1 ] && grep -q 'broken.png' <<<\"\$err\""
err=$("$vlm" search --index "$tmp/out/nope.idx" --model "$m" --text x 2>&1); rc=$?
check "missing index exits 1, named" "[ $rc -eq 1 ] && grep -q 'nope.idx' <<<\"\$err\""
"$vlm" search --index "$idx" --model "$m" --text x --image "$tmp/imgs/space/rocket.jpg" >/dev/null 2>&1
check "two queries exit 2" "[ $? -eq 2 ]"
"$vlm" index --model "$m" "$tmp/imgs" >/dev/null 2>&1
check "index without --out exits 2" "[ $? -eq 2 ]"
head -c 100 "$idx" >"$tmp/out/trunc.idx"
err=$("$vlm" search --index "$tmp/out/trunc.idx" --model "$m" --text x 2>&1); rc=$?
check "a truncated index exits 1, named" "[ $rc -eq 1 ] && grep -q 'trunc.idx' <<<\"\$err\""
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
