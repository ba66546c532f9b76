#!/usr/bin/env bash
# `vlm zeroshot` on data the test makes (see tools_setup.sh): classification output,
# JSON, --eval on an ImageFolder, agreement with `vlm search`, errors for bad input.
# Usage: zeroshot.sh VLM_BINARY SHARED_DIR
set -u
vlm=$1 shared=$2
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
make_tmp
. "$here/tools_setup.sh"   # makes the test data
m=$tmp/model

check "zeroshot --help" "\"$vlm\" zeroshot --help | grep -q 'usage: vlm zeroshot'"
out=$("$vlm" zeroshot --model "$m" --classes "horse,cat,astronaut" --top-k 2 "$tmp/imgs/animal/horse.png" \
      "$tmp/imgs/space"); rc=$?
check "classify exits 0" "[ $rc -eq 0 ]"
check "one block per image (3 images)" "[ \$(grep -c '^/' <<<\"\$out\") -eq 3 ]"
check "top-2 lines per image" "[ \$(grep -c '^  0\.[0-9]*  ' <<<\"\$out\") -eq 6 ]"
check "a folder is searched (rocket.jpg)" "grep -q 'space/rocket.jpg' <<<\"\$out\""
out=$("$vlm" zeroshot --model "$m" --classes "horse,cat" "$tmp/imgs/space" "$tmp/imgs/space/rocket.jpg" 2>"$tmp/err"); rc=$?
check "a file named twice (a folder and a file in it) is classified once" \
  "[ $rc -eq 0 ] && [ \$(grep -c 'rocket.jpg' <<<\"\$out\") -eq 1 ] && grep -q '1 image named more than once, classified once' $tmp/err"

# a class named twice splits its probability: said on stderr (not refused)
printf 'cat\n\nhorse\ncat\n' >"$tmp/dup_cls.txt"
"$vlm" zeroshot --model "$m" --classes-file "$tmp/dup_cls.txt" "$tmp/imgs/space/rocket.jpg" >/dev/null 2>"$tmp/err"
check "a class named twice in a file: exit 0, a warning naming the file and both" \
  "[ $? -eq 0 ] && grep -q 'warning: .*dup_cls.txt: class names 1 and 3 are both .cat.: the two split its probability' $tmp/err"
"$vlm" zeroshot --model "$m" --classes horse,cat,horse "$tmp/imgs/space/rocket.jpg" >/dev/null 2>"$tmp/err"
check "... in --classes too" "[ $? -eq 0 ] && grep -q 'class names 1 and 3 are both .horse.' $tmp/err"
"$vlm" zeroshot --model "$m" --classes dog,horse,cat,horse,dog,horse "$tmp/imgs/space/rocket.jpg" >/dev/null 2>"$tmp/err"
check "... each repeat against its name's first place, in list order" \
  "[ \"\$(grep -o 'class names [0-9]* and [0-9]* are both .[a-z]*.' $tmp/err | tr '\n' ';')\" = \
     \"class names 2 and 4 are both 'horse';class names 1 and 5 are both 'dog';class names 2 and 6 are both 'horse';\" ]"
# names the tokenizer reads alike (it lower-cases and collapses spaces) give the same prompts:
# said too, both classes named (they split the probability as a repeated name does)
"$vlm" zeroshot --model "$m" --classes "Horse Cat,horse cat,horse  cat,rocket" --templates simple --json \
  "$tmp/imgs/space/rocket.jpg" >"$tmp/alike.json" 2>"$tmp/err"; rc=$?
check "classes that tokenize alike: exit 0, each pair named" \
  "[ $rc -eq 0 ] && grep -q \"classes 1 'Horse Cat' and 2 'horse cat' give the same prompts\" $tmp/err && \
   grep -q \"classes 1 'Horse Cat' and 3 'horse  cat' give the same prompts\" $tmp/err && [ \$(grep -c 'same prompts' $tmp/err) -eq 2 ]"
"$vlm" zeroshot --model "$m" --classes "horse,cat,astronaut" --templates simple "$tmp/imgs/space/rocket.jpg" >/dev/null 2>"$tmp/err"
check "... and nothing said for classes that differ" "[ ! -s $tmp/err ]"
# a template longer than the context length (16 tokens for the tiny model) cuts the class name
# off: every class gets the same embedding; said, naming the template and the classes
printf 'a photo of a very very very very very very very very very very very very very very old {}.\n' >"$tmp/long_tpl.txt"
"$vlm" zeroshot --model "$m" --classes "horse,cat" --templates "$tmp/long_tpl.txt" "$tmp/imgs/space/rocket.jpg" >/dev/null 2>"$tmp/err"
check "a template that cuts the class name: said, the two classes named the same once cut" \
  "[ $? -eq 0 ] && grep -q \"template 1 'a photo of a very .*' with class 1 'horse' (and 1 other) is longer than the model's context length (16 tokens)\" $tmp/err && \
   grep -q \"classes 1 'horse' and 2 'cat' give the same prompts once cut at the model's context length\" $tmp/err"

# JSON: all classes -> probabilities sum to 1, sorted descending
"$vlm" zeroshot --model "$m" --classes "horse, cat ,astronaut,rocket" --top-k 10 --json --templates simple \
  "$tmp/imgs/space/astronaut.png" >"$tmp/zs.json"; rc=$?
check "classify --json exits 0" "[ $rc -eq 0 ]"
check "classify --json is JSON" "json_ok \"$tmp/zs.json\""
check "class names are trimmed" "grep -q '\"classes\": \[\"horse\", \"cat\", \"astronaut\", \"rocket\"\]' \"$tmp/zs.json\""
if command -v python3 >/dev/null; then
  check "probabilities sum to 1 and are sorted; k clamped to 4" "python3 - \"$tmp/zs.json\" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
top = d['results'][0]['top']
p = [t['prob'] for t in top]
assert len(top) == 4 and abs(sum(p) - 1) < 1e-4 and p == sorted(p, reverse=True), p
assert d['templates'] == 7 and d['identity'].startswith('clip-')
PY"
fi

# A class file and a templates file saved by an editor that writes a UTF-8 BOM and CRLF
# (Windows Notepad): the BOM is no part of the first class name, template or indexed text.
printf '\xef\xbb\xbfhorse\r\ncat\r\n' >"$tmp/bom_cls.txt"
printf '\xef\xbb\xbfa photo of a {}.\r\n' >"$tmp/bom_tpl.txt"
"$vlm" zeroshot --model "$m" --classes-file "$tmp/bom_cls.txt" --templates "$tmp/bom_tpl.txt" --json \
  "$tmp/imgs/animal/horse.png" >"$tmp/bom.json" 2>/dev/null
check "a BOM is not part of the first class name" "grep -q '\"classes\": \[\"horse\", \"cat\"\]' \"$tmp/bom.json\""
"$vlm" index --model "$m" --out "$tmp/bom.idx" --texts "$tmp/bom_cls.txt" --quiet >/dev/null 2>&1
"$vlm" search --index "$tmp/bom.idx" --model "$m" --text horse --top-k 2 --json >"$tmp/bom_s.json" 2>/dev/null
check "a BOM is not part of the first indexed text" "grep -q '\"item\": \"horse\"' \"$tmp/bom_s.json\""

# zero-shot with the single template "{}" and the captions as classes: logit = 100 x the
# cosine that `vlm search` reports for the same image against a --texts index.
echo "{}" >"$tmp/tpl.txt"
head -4 "$tmp/captions.txt" >"$tmp/cls.txt"
"$vlm" zeroshot --model "$m" --classes-file "$tmp/cls.txt" --templates "$tmp/tpl.txt" --json --top-k 1 \
  "$tmp/imgs/space/rocket.jpg" >"$tmp/zs1.json"
"$vlm" index --model "$m" --out "$tmp/cls.idx" --texts "$tmp/cls.txt" >/dev/null 2>&1
"$vlm" search --index "$tmp/cls.idx" --model "$m" --image "$tmp/imgs/space/rocket.jpg" --top-k 1 --json >"$tmp/s1.json"
if command -v python3 >/dev/null; then
  check "zeroshot logit = 100 x search score, same best class" "python3 - \"$tmp/zs1.json\" \"$tmp/s1.json\" <<'PY'
import json, sys
z = json.load(open(sys.argv[1]))['results'][0]['top'][0]
s = json.load(open(sys.argv[2]))['results'][0]
assert z['class'] == s['item'], (z, s)
assert abs(z['logit'] - 100 * s['score']) < 1e-2, (z, s)
PY"
fi

# --eval on the ImageFolder (the corrupt PNG is skipped and counted, notes.txt ignored)
out=$("$vlm" zeroshot --model "$m" --eval "$tmp/imgs" --templates simple 2>"$tmp/err"); rc=$?
check "--eval exits 0" "[ $rc -eq 0 ]"
check "--eval reports accuracy" "grep -q '^top-1 accuracy: [0-9.]*%' <<<\"\$out\" && grep -q '^top-5 accuracy: 100.00%' <<<\"\$out\""
check "--eval counts 7 images, 3 classes" "grep -q '7 images, 3 classes' <<<\"\$out\""
check "--eval per-class lines" "grep -qE '%  +2  animal\$' <<<\"\$out\" && grep -qE '%  +3  object\$' <<<\"\$out\" && grep -qE '%  +2  space\$' <<<\"\$out\""
check "--eval names the corrupt file" "grep -q 'broken.png' \"$tmp/err\" && grep -q 'skipped: 1' <<<\"\$out\""
# images beside the class folders belong to no class: not counted, but said so
mkdir -p "$tmp/ifx/horse"
cp "$tmp/imgs/animal/horse.png" "$tmp/ifx/horse/"
cp "$tmp/imgs/space/rocket.jpg" "$tmp/ifx/loose.jpg"
out=$("$vlm" zeroshot --model "$m" --eval "$tmp/ifx" --templates simple 2>"$tmp/err"); rc=$?
check "--eval: an image outside the class folders is named ($(head -c 300 "$tmp/err"))" \
  "[ $rc -eq 0 ] && grep -q '1 images, 1 classes' <<<\"\$out\" && grep -q 'not in a class sub-folder.*loose.jpg' \"$tmp/err\""
"$vlm" eval --model "$m" --zeroshot "$tmp/ifx" --templates simple >/dev/null 2>"$tmp/err"
check "eval --zeroshot: an image outside the class folders is named" "grep -q 'not in a class sub-folder.*loose.jpg' \"$tmp/err\""

"$vlm" zeroshot --model "$m" --eval "$tmp/imgs" --templates simple --json >"$tmp/ev.json" 2>/dev/null
check "--eval --json is JSON" "json_ok \"$tmp/ev.json\""
if command -v python3 >/dev/null; then
  check "--eval JSON: counts and accuracies agree" "python3 - \"$tmp/ev.json\" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d['images'] == 7 and d['skipped'] == 1 and d['classes'] == ['animal', 'object', 'space']
pc = d['per_class']
assert [c['images'] for c in pc] == [2, 3, 2]
correct = sum(round(c['top1'] * c['images']) for c in pc)
assert abs(d['top1'] - correct / 7) < 1e-6 and d['top1'] <= d['top5'] == 1.0
wrong = sum(c['count'] for c in d['confusions'])
assert wrong == 7 - correct, (wrong, correct)
PY"
fi

# bad input
err=$("$vlm" zeroshot --model "$m" --classes "" "$tmp/imgs" 2>&1); rc=$?
check "empty class list exits 2" "[ $rc -eq 2 ] && grep -q 'empty class name' <<<\"\$err\""
err=$("$vlm" zeroshot --model "$m" --classes "cat,,dog" "$tmp/imgs" 2>&1); rc=$?
check "an empty item in the class list exits 2" "[ $rc -eq 2 ]"
: >"$tmp/empty.txt"
err=$("$vlm" zeroshot --model "$m" --classes-file "$tmp/empty.txt" "$tmp/imgs" 2>&1); rc=$?
check "empty classes file exits 1, named" "[ $rc -eq 1 ] && grep -q 'empty.txt: no class names' <<<\"\$err\""
err=$("$vlm" zeroshot --model "$m" --classes cat "$tmp/nowhere.png" 2>&1); rc=$?
check "missing image exits 1, named" "[ $rc -eq 1 ] && grep -q 'nowhere.png' <<<\"\$err\""
err=$("$vlm" zeroshot --model "$m" --classes cat "$tmp/imgs/object/broken.png" 2>&1); rc=$?
check "only a corrupt image: exit 1, file named" "[ $rc -eq 1 ] && grep -q 'broken.png' <<<\"\$err\""
err=$("$vlm" zeroshot --model "$tmp/nomodel" --classes cat "$tmp/imgs" 2>&1); rc=$?
check "missing model exits 1, named" "[ $rc -eq 1 ] && grep -q 'nomodel' <<<\"\$err\""
echo "no placeholder" >"$tmp/badtpl.txt"
err=$("$vlm" zeroshot --model "$m" --classes cat --templates "$tmp/badtpl.txt" "$tmp/imgs" 2>&1); rc=$?
check "template without {} exits 1 with file:line" "[ $rc -eq 1 ] && grep -q 'badtpl.txt:1' <<<\"\$err\""
err=$("$vlm" zeroshot --model "$shared/fixtures/tiny-clip" --classes cat "$tmp/imgs" 2>&1); rc=$?
check "a model without a tokenizer: exit 1, says --tokenizer" "[ $rc -eq 1 ] && grep -q -- '--tokenizer' <<<\"\$err\""
err=$("$vlm" zeroshot --model "$shared/fixtures/tiny-clip" --tokenizer "$shared/data/bpe_simple_vocab_16e6.txt.gz" \
      --classes cat "$tmp/imgs" 2>&1); rc=$?
check "a tokenizer bigger than the model's vocabulary is refused" "[ $rc -eq 1 ] && grep -q 'vocabulary has only 1000' <<<\"\$err\""
"$vlm" zeroshot --model "$shared/fixtures/tiny-clip" --tokenizer "$m/tokenizer" --classes cat,dog "$tmp/imgs" >/dev/null 2>&1
check "--tokenizer PATH for a model without one" "[ $? -eq 0 ]"
err=$("$vlm" zeroshot --model "$m" --classes-file "$tmp/imgs" "$tmp/imgs" 2>&1); rc=$?
check "a folder as --classes-file: exit 1, said to be a directory" "[ $rc -eq 1 ] && grep -q -- '--classes-file .*imgs: is a directory' <<<\"\$err\""
err=$("$vlm" zeroshot --model "$m" --classes cat --templates "$tmp/imgs" "$tmp/imgs" 2>&1); rc=$?
check "a folder as --templates: exit 1, said to be a directory" "[ $rc -eq 1 ] && grep -q -- '--templates .*imgs: is a directory' <<<\"\$err\""

# a `vlm train` run directory as --model: the checkpoint to use is named (zeroshot, and caption,
# whose CoCa check reads the same model files)
mkdir -p "$tmp/run/checkpoints"
cp -r "$m" "$tmp/run/checkpoints/step_1" && ln -s step_1 "$tmp/run/checkpoints/latest"
printf '{"model": %s, "train": {"steps": 1}}\n' "$(cat "$m/open_clip_config.json")" >"$tmp/run/config.json"
err=$("$vlm" zeroshot --model "$tmp/run" --classes cat "$tmp/imgs" 2>&1); rc=$?
check "a run directory as --model: exit 1, RUN/checkpoints/latest named" \
  "[ $rc -eq 1 ] && grep -q 'run: a vlm train run directory, not a model: use .*run/checkpoints/latest' <<<\"\$err\""
err=$("$vlm" caption --model "$tmp/run/" "$tmp/imgs/space/rocket.jpg" 2>&1); rc=$?
check "... caption too" "[ $rc -eq 1 ] && grep -q 'use .*run/checkpoints/latest' <<<\"\$err\" && ! grep -q 'not a CoCa model' <<<\"\$err\""
"$vlm" zeroshot --model "$tmp/run/checkpoints/latest" --classes cat "$tmp/imgs/space" >/dev/null 2>&1
check "... and its checkpoint works" "[ $? -eq 0 ]"
err=$("$vlm" caption --model "$m" --inputs "$tmp/x.safetensors" "$tmp/imgs/space/rocket.jpg" 2>&1); rc=$?
check "caption: IMAGE files with --inputs are said to be exclusive (exit 2)" "[ $rc -eq 2 ] && grep -q 'exclusive' <<<\"\$err\""

# a model whose image features are NaN (its visual.proj overwritten): no `nan` in any output,
# no accuracy from it; each command says so, names the images and the model, exits 1
if command -v python3 >/dev/null; then
  nan_model() {   # nan_model DIR TENSOR: a copy of $m with TENSOR's values NaN
    cp -r "$m" "$1" && python3 - "$1/open_clip_model.safetensors" "$2" <<'PY'
import json, struct, sys
b = bytearray(open(sys.argv[1], 'rb').read())
n = struct.unpack('<Q', b[:8])[0]
a, z = json.loads(b[8:8 + n])[sys.argv[2]]['data_offsets']
b[8 + n + a:8 + n + z] = struct.pack('<f', float('nan')) * ((z - a) // 4)
open(sys.argv[1], 'wb').write(b)
PY
  }
  nan_model "$tmp/nanv" visual.proj
  "$vlm" zeroshot --model "$tmp/nanv" --classes horse,cat --json "$tmp/imgs/space" >"$tmp/nan.json" 2>"$tmp/err"; rc=$?
  check "NaN image features, --json: exit 1, no nan on stdout, images and model named" \
    "[ $rc -eq 1 ] && ! grep -qi nan \"$tmp/nan.json\" && grep -q 'rocket.jpg: its embedding is not finite' $tmp/err && \
     grep -q 'the model .*nanv gives NaN or infinite image features' $tmp/err"
  out=$("$vlm" zeroshot --model "$tmp/nanv" --classes horse,cat "$tmp/imgs/space" 2>"$tmp/err"); rc=$?
  check "... text output: exit 1, no nan printed" "[ $rc -eq 1 ] && ! grep -qi nan <<<\"\$out\" && grep -q 'none of the 2 images could be classified' $tmp/err"
  out=$("$vlm" zeroshot --model "$tmp/nanv" --eval "$tmp/imgs" --templates simple 2>"$tmp/err"); rc=$?
  check "... --eval: exit 1, no accuracy reported" "[ $rc -eq 1 ] && ! grep -q accuracy <<<\"\$out\" && grep -q 'not finite' $tmp/err"
  nan_model "$tmp/nant" text_projection
  "$vlm" zeroshot --model "$tmp/nant" --classes horse,cat --json "$tmp/imgs/space" >"$tmp/nan.json" 2>"$tmp/err"; rc=$?
  check "NaN text features: exit 1, nothing on stdout, the class and model named" \
    "[ $rc -eq 1 ] && [ ! -s \"$tmp/nan.json\" ] && grep -q \"nant: the text embedding of class 1 'horse' (and 1 other) is not finite\" $tmp/err"
fi
"$vlm" zeroshot --model "$m" "$tmp/imgs" >/dev/null 2>&1
check "no classes exits 2" "[ $? -eq 2 ]"
"$vlm" zeroshot --model "$m" --classes cat --top-k 0 "$tmp/imgs" >/dev/null 2>&1
check "--top-k 0 exits 2" "[ $? -eq 2 ]"

# --classifier FILE: written by the first run, read by the next (same output), built again for
# other prompts; a file that is not a classifier is refused and kept
zc=$tmp/cls.zsc
img=$tmp/imgs/space/rocket.jpg
"$vlm" zeroshot --model "$m" --classes horse,cat,astronaut,rocket --top-k 4 "$img" >"$tmp/zc0.out" 2>/dev/null
"$vlm" zeroshot --model "$m" --classes horse,cat,astronaut,rocket --top-k 4 --classifier "$zc" "$img" >"$tmp/zc1.out" 2>/dev/null
check "--classifier: written, the output unchanged" "[ $? -eq 0 ] && [ -s \"$zc\" ] && cmp -s \"$tmp/zc0.out\" \"$tmp/zc1.out\""
cp "$zc" "$tmp/zc.first"
"$vlm" zeroshot --model "$m" --classes horse,cat,astronaut,rocket --top-k 4 --classifier "$zc" "$img" >"$tmp/zc2.out" 2>/dev/null
check "--classifier: read back, the same output, the file as it was" \
  "[ $? -eq 0 ] && cmp -s \"$tmp/zc0.out\" \"$tmp/zc2.out\" && cmp -s \"$zc\" \"$tmp/zc.first\""
if command -v python3 >/dev/null; then
  # the rows of horse and rocket swapped in the file: the run uses what it reads
  python3 - "$zc" <<'PY'
import json, struct, sys
b = bytearray(open(sys.argv[1], 'rb').read())
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
a, z = h['classifier']['data_offsets']
C, E = h['classifier']['shape']
row = lambda i: slice(8 + n + a + 4 * E * i, 8 + n + a + 4 * E * (i + 1))
r0, r3 = bytes(b[row(0)]), bytes(b[row(3)])
b[row(0)], b[row(3)] = r3, r0
open(sys.argv[1], 'wb').write(b)
PY
  "$vlm" zeroshot --model "$m" --classes horse,cat,astronaut,rocket --top-k 4 --classifier "$zc" "$img" >"$tmp/zc3.out" 2>/dev/null
  check "--classifier: the classes' rows are the file's (swapped rows swap the probabilities)" \
    "[ \"\$(grep -F '  rocket' \"$tmp/zc3.out\" | cut -c1-8)\" = \"\$(grep -F '  horse' \"$tmp/zc0.out\" | cut -c1-8)\" ]"
  cp "$tmp/zc.first" "$zc"
fi
"$vlm" zeroshot --model "$m" --classes horse,cat,astronaut,rocket --top-k 4 --templates simple "$img" >"$tmp/zs0.out" 2>/dev/null
"$vlm" zeroshot --model "$m" --classes horse,cat,astronaut,rocket --top-k 4 --templates simple --classifier "$zc" "$img" \
  >"$tmp/zs1.out" 2>/dev/null
check "--classifier made from other templates: built again, rewritten" \
  "[ $? -eq 0 ] && cmp -s \"$tmp/zs0.out\" \"$tmp/zs1.out\" && ! cmp -s \"$zc\" \"$tmp/zc.first\""
"$vlm" zeroshot --model "$m" --classes horse,cat,astronaut,ROCKET --top-k 4 --templates simple --classifier "$zc" "$img" \
  >/dev/null 2>&1
cp "$zc" "$tmp/zc.upper"
"$vlm" zeroshot --model "$m" --classes horse,cat,astronaut,rocket --top-k 4 --templates simple --classifier "$zc" "$img" \
  >/dev/null 2>&1
check "--classifier: a class name spelt otherwise but tokenized the same (open_clip lower-cases): kept" \
  "cmp -s \"$zc\" \"$tmp/zc.upper\""
cp "$zc" "$tmp/zc.m1"
"$vlm" zeroshot --model "$tmp/model2" --classes horse,cat,astronaut,rocket --top-k 4 --templates simple "$img" \
  >"$tmp/zm0.out" 2>/dev/null
"$vlm" zeroshot --model "$tmp/model2" --classes horse,cat,astronaut,rocket --top-k 4 --templates simple --classifier "$zc" \
  "$img" >"$tmp/zm1.out" 2>/dev/null
check "--classifier made by another model: built again" \
  "[ $? -eq 0 ] && cmp -s \"$tmp/zm0.out\" \"$tmp/zm1.out\" && ! cmp -s \"$zc\" \"$tmp/zc.m1\""
echo "precious" >"$tmp/not-a-classifier"
err=$("$vlm" zeroshot --model "$m" --classes horse,cat --classifier "$tmp/not-a-classifier" "$img" 2>&1 >/dev/null); rc=$?
check "--classifier over a file that is not one: exit 1, named, kept" \
  "[ $rc -eq 1 ] && grep -q 'not-a-classifier' <<<\"\$err\" && grep -qx precious \"$tmp/not-a-classifier\""
err=$("$vlm" zeroshot --model "$m" --classes horse,cat --classifier "$tmp/no/such/dir/c.zsc" "$img" 2>&1 >/dev/null); rc=$?
check "--classifier in a folder that does not exist: exit 1 before any work" \
  "[ $rc -eq 1 ] && grep -q 'no/such/dir' <<<\"\$err\" && ! grep -q prompts <<<\"\$err\""
# a device named as an image is not read (/dev/zero has no end); a pipe that does not end is cut at 1 GiB
err=$(timeout 60 "$vlm" zeroshot --model "$m" --classes horse,cat /dev/zero 2>&1); rc=$?
check "/dev/zero as an image: exit 1 at once, said to be a device (got $rc)" \
  "[ $rc -eq 1 ] && grep -q '/dev/zero: a device, not an image file' <<<\"\$err\""
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
