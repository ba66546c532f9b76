# Sourced by zeroshot.sh, index_search.sh, eval.sh, capi.sh and others: makes the test data in $tmp
# (the script exits 1, saying so, when it cannot).
#   $tmp/model      a tiny CLIP (vlm convert --init tiny) with tokenizer/ learned by
#                   vlm bpe-train from $tmp/captions.txt (the tiny vocabulary has 1000 ids,
#                   too few for OpenAI's 49408)
#   $tmp/model2     the same shape, another seed (another identity), same tokenizer
#   $tmp/imgs       an ImageFolder: imgs/{animal,object,space}/ with PNG/JPEG copies of
#                   ../shared/data/images and one corrupt PNG (imgs/object/broken.png)
#   $tmp/captions.txt
# Needs: $vlm, $shared, $tmp.
# json_ok FILE: FILE parses as JSON (Python's json; without python3, it starts with '{').
json_ok() { if command -v python3 >/dev/null; then python3 -c 'import json,sys; json.load(sys.stdin)' <"$1"; else grep -q '^{' "$1"; fi; }
setup_tools_data() {
  local img=$shared/data/images
  "$vlm" convert --init tiny --seed 11 --to open_clip --out "$tmp/model" >/dev/null || return 1
  "$vlm" convert --init tiny --seed 12 --to open_clip --out "$tmp/model2" >/dev/null || return 1
  cat >"$tmp/captions.txt" <<'CAPS'
a photo of a horse in a field
a cat sitting on a chair
an astronaut in a white space suit
a rocket launching into the sky
an old camera on a table
a close-up photo of a human retina
a red block on the floor
a colorful palette of paint
CAPS
  "$vlm" bpe-train --vocab-size 1000 --out "$tmp/model/tokenizer" "$tmp/captions.txt" >/dev/null 2>&1 || return 1
  cp -r "$tmp/model/tokenizer" "$tmp/model2/tokenizer"
  mkdir -p "$tmp/imgs/animal" "$tmp/imgs/object" "$tmp/imgs/space"
  cp "$img/horse.png" "$img/chelsea.png" "$tmp/imgs/animal/"
  cp "$img/camera.png" "$img/block.png" "$img/palette_color.png" "$tmp/imgs/object/"
  cp "$img/astronaut.png" "$img/rocket.jpg" "$tmp/imgs/space/"
  printf '\211PNG\r\n\032\nthis is not really a png' >"$tmp/imgs/object/broken.png"
  echo "not an image" >"$tmp/imgs/object/notes.txt"
}
setup_tools_data || { echo "FAIL: could not make the test data"; exit 1; }
