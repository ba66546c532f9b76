#!/usr/bin/env bash
# The C API through examples/embed.c (linked to libvlm.so only): its image and text
# embeddings equal the ones `vlm index --export-npy` writes, its zero-shot top classes
# and probabilities equal `vlm zeroshot`'s, a CoCa model's caption equals `vlm caption`'s,
# and its errors are reported, not fatal. With TEST_CAPI_MODELS (tests/capi/test_capi_models.c)
# also the API's contract on these models: errors, templates, per-model matmul precision,
# long paths, caption cuts, captions on a device (the emulated GPU of build-emu).
# Usage: capi.sh VLM_BINARY EXAMPLE_EMBED_BINARY SHARED_DIR [TEST_CAPI_MODELS]
set -u
vlm=$1 ex=$2 shared=$3 models_test=${4:-}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
make_tmp
. "$here/tools_setup.sh"   # makes the test data
m=$tmp/model
a=$tmp/imgs/space/rocket.jpg b=$tmp/imgs/animal/horse.png

# npy_values FILE: the float32 data of a .npy, one value per line
npy_values() {
  local hl
  hl=$(od -An -tu2 -j8 -N2 "$1" | tr -d ' ')
  od -An -v -f -j $((10 + hl)) "$1" | tr -s ' ' '\n' | grep -v '^$'
}
# maxdiff FILE1 FILE2: largest absolute difference of two equally long value lists
maxdiff() { paste "$1" "$2" | awk 'BEGIN{m=0; n=0} {d=$1-$2; if (d<0) d=-d; if (d>m) m=d; n++} END{if (n==0) m=1; print m}'; }

out=$("$ex" "$m" --print --text "a cat sitting on a chair" --text "an old camera on a table" "$a" "$b"); rc=$?
check "example_embed exits 0" "[ $rc -eq 0 ]"
check "it reports the model" "grep -q '32-d embeddings, 32x32 images, 16 text tokens, identity clip-' <<<\"\$out\""
"$vlm" index --model "$m" --out "$tmp/i.idx" --export-npy "$tmp/i.npy" "$a" "$b" >/dev/null 2>&1
printf 'a cat sitting on a chair\nan old camera on a table\n' >"$tmp/t.txt"
"$vlm" index --model "$m" --out "$tmp/t.idx" --texts "$tmp/t.txt" --export-npy "$tmp/t.npy" >/dev/null 2>&1
npy_values "$tmp/i.npy" >"$tmp/i.ref"
npy_values "$tmp/t.npy" >"$tmp/t.ref"
grep '^image ' <<<"$out" | cut -d' ' -f3- | tr ' ' '\n' >"$tmp/i.api"
grep '^text ' <<<"$out" | sed 's/^text a cat sitting on a chair //; s/^text an old camera on a table //' | tr ' ' '\n' >"$tmp/t.api"
check "64 image values, 64 text values" "[ \$(wc -l <\"$tmp/i.api\") -eq 64 ] && [ \$(wc -l <\"$tmp/i.ref\") -eq 64 ] && [ \$(wc -l <\"$tmp/t.api\") -eq 64 ]"
d=$(maxdiff "$tmp/i.api" "$tmp/i.ref")
check "API image embeddings = vlm index (max diff $d)" "awk -v d=$d 'BEGIN{exit !(d < 1e-6)}'"
d=$(maxdiff "$tmp/t.api" "$tmp/t.ref")
check "API text embeddings = vlm index --texts (max diff $d)" "awk -v d=$d 'BEGIN{exit !(d < 1e-6)}'"

out=$("$ex" "$m" --classes "horse,cat,astronaut" "$a"); rc=$?
zs=$("$vlm" zeroshot --model "$m" --classes "horse,cat,astronaut" --top-k 3 "$a" | tail -3 | awk '{printf "%s %s ", $2, $1}')
api=$(grep '^zeroshot ' <<<"$out" | cut -d' ' -f3-)
check "API zero-shot = vlm zeroshot ('$api' vs '$zs')" "[ $rc -eq 0 ] && [ \"\$api \" = \"\$zs\" ]"
check "caption is declared but not supported for CLIP" "grep -q 'caption: captioning is not supported for CLIP models' <<<\"\$out\""

# the same model as a PyTorch checkpoint (its tokenizer beside it): the same embeddings
"$vlm" convert --model "$m" --to open_clip --format torch --out "$tmp/pt" >/dev/null 2>&1
out=$("$ex" "$tmp/pt" --print "$a" "$b"); rc=$?
grep '^image ' <<<"$out" | cut -d' ' -f3- | tr ' ' '\n' >"$tmp/i.pt"
d=$(maxdiff "$tmp/i.pt" "$tmp/i.api")
check "API on the PyTorch checkpoint: the safetensors model's image embeddings (max diff $d)" \
  "[ $rc -eq 0 ] && [ -f \"$tmp/pt/open_clip_pytorch_model.bin\" ] && [ \$(wc -l <\"$tmp/i.pt\") -eq 64 ] && awk -v d=$d 'BEGIN{exit !(d == 0)}'"

# a CoCa model: the API's caption equals `vlm caption`'s (greedy)
"$vlm" convert --init coca-small --seed 5 --to open_clip --out "$tmp/coca" >/dev/null && cp -r "$m/tokenizer" "$tmp/coca/"
out=$("$ex" "$tmp/coca" "$b"); rc=$?
api=$(grep '^caption ' <<<"$out" | cut -d' ' -f2-)
cli=$("$vlm" caption --model "$tmp/coca" "$b")
check "CoCa: API caption = vlm caption ('$api' vs '$cli')" "[ $rc -eq 0 ] && [ -n \"\$api\" ] && [ \"\$api\" = \"\$cli\" ]"
check "CoCa: identity coca-" "grep -q 'identity coca-' <<<\"\$out\""

# the API's contract (test_capi_models): LONG is a copy of the CLIP at a path over 1024 bytes
if [ -n "$models_test" ]; then
  long=$tmp seg=$(printf 'd%.0s' $(seq 200))
  for i in 1 2 3 4 5 6; do long=$long/$seg; done
  mkdir -p "$long" "$tmp/work" && cp -r "$m" "$long/model" && cp "$tmp/imgs/object/broken.png" "$long/model/"
  out=$("$models_test" "$m" "$tmp/coca" "$long/model" "$tmp/imgs/object/broken.png" "$tmp/work" "$b" "$a" \
        "$tmp"/imgs/animal/chelsea.png "$tmp"/imgs/object/{camera,block,palette_color}.png "$tmp"/imgs/space/astronaut.png 2>&1)
  rc=$?
  grep -v '^ok$' <<<"$out" | cut -c1-400
  check "the API's contract on CLIP and CoCa models (test_capi_models)" "[ $rc -eq 0 ]"
fi

err=$("$ex" "$tmp/nomodel" "$a" 2>&1); rc=$?
check "missing model: error names it" "[ $rc -eq 1 ] && grep -q 'nomodel' <<<\"\$err\""
err=$("$ex" "$m" "$tmp/imgs/object/broken.png" 2>&1); rc=$?
check "corrupt image: error names it" "[ $rc -eq 1 ] && grep -q 'broken.png' <<<\"\$err\""
err=$("$ex" "$shared/fixtures/tiny-clip" --text "hi" 2>&1); rc=$?
check "texts without a tokenizer: clear error" "[ $rc -eq 1 ] && grep -q 'no tokenizer' <<<\"\$err\""
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
