#!/usr/bin/env bash
# Drives 'vlm preprocess' like a user: the shared test images against the PIL fixtures,
# a failing image among good ones, resize modes, bad usage.
# Usage: preprocess.sh VLM_BINARY SHARED_DIR
set -u
vlm=$1
shared=$2
imgs=$shared/data/images
fx=$shared/fixtures/preprocess
. "$(dirname "$0")/lib.sh"
make_tmp /tmp/vlm_e2e_pre.XXXXXX

check "preprocess --help" "\"$vlm\" preprocess --help | grep -q 'usage: vlm preprocess'"
check "listed in vlm --help" "\"$vlm\" --help | grep -q preprocess"
err=$("$vlm" preprocess "$imgs/rocket.jpg" 2>&1 >/dev/null); rc=$?
check "missing --out exits 2" "[ $rc -eq 2 ]"
check "missing --out is named" "grep -q -- '--out DIR is required' <<<\"\$err\""
err=$("$vlm" preprocess --resize-mode wide "$imgs/rocket.jpg" --out "$tmp/x" 2>&1 >/dev/null); rc=$?
check "bad --resize-mode exits 2" "[ $rc -eq 2 ]"

if [ -d "$imgs" ] && [ -d "$fx" ]; then
  # All images, truncated.jpg among them: it fails by name, the others are written.
  out=$("$vlm" preprocess --size 224 "$imgs"/* --out "$tmp/p" 2>"$tmp/err"); rc=$?
  check "a failing image gives exit 1" "[ $rc -eq 1 ]"
  check "the failing image is named" "grep -q 'truncated.jpg: bad JPEG: truncated file' \"$tmp/err\""
  check "only one image fails" "[ \$(wc -l <\"$tmp/err\") -eq 1 ]"
  check "8 outputs written" "[ \$(ls \"$tmp/p\"/*.safetensors | wc -l) -eq 8 ]"
  check "no truncated output" "[ ! -e \"$tmp/p/truncated.safetensors\" ]"
  check "summary line" "grep -q 'preprocessed 8 images' <<<\"\$out\""
  if command -v python3 >/dev/null 2>&1; then
    cmp_py='
import json, struct, sys
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); d = b[8 + n:]
    return {k: d[v["data_offsets"][0]:v["data_offsets"][1]] for k, v in h.items() if k != "__metadata__"}, h
a, ha = load(sys.argv[1]); r, hr = load(sys.argv[2])
for k in ("crop_u8", "pixels"):
    assert ha[k]["shape"] == hr[k]["shape"] == [3, 224, 224], k
    assert ha[k]["dtype"] == hr[k]["dtype"], k
x, y = a["crop_u8"], r["crop_u8"]
one = sum(abs(p - q) <= 1 for p, q in zip(x, y)) / len(y)
exact = sum(p == q for p, q in zip(x, y)) / len(y)
print("%s exact %.6f within-one %.6f pixels-identical %s" % (sys.argv[1].split("/")[-1], exact, one, a["pixels"] == r["pixels"]))
sys.exit(0 if one >= 0.999 else 1)
'
    for f in "$fx"/*.safetensors; do
      b=$(basename "$f")
      check "$b matches the PIL fixture" "python3 -c '$cmp_py' \"$tmp/p/$b\" \"$f\""
    done
  else
    echo "python3 not found: fixture comparison left to unit_image"
  fi
  # Resize modes and sizes produce [3,N,N].
  for m in shortest squash longest; do
    "$vlm" preprocess --size 64 --resize-mode $m "$imgs/rocket.jpg" "$imgs/camera.png" --out "$tmp/$m" >/dev/null 2>&1
    check "--resize-mode $m exits 0" "[ $? -eq 0 ]"
    check "--resize-mode $m shape" "grep -aq '\"shape\":\[3,64,64\]' \"$tmp/$m/rocket.safetensors\""
  done
  "$vlm" preprocess --size 64 --jpeg-reduce "$imgs/retina.jpg" --out "$tmp/r" >/dev/null 2>&1
  check "--jpeg-reduce exits 0" "[ $? -eq 0 ]"
  err=$("$vlm" preprocess --max-image-pixels 1000000 "$imgs/retina.jpg" --out "$tmp/m" 2>&1 >/dev/null); rc=$?
  check "--max-image-pixels refuses a large image" "[ $rc -eq 1 ] && grep -q 'retina.jpg.*max-pixels' <<<\"\$err\""
  printf 'not an image\n' >"$tmp/notes.jpg"
  err=$("$vlm" preprocess "$tmp/notes.jpg" --out "$tmp/n" 2>&1 >/dev/null); rc=$?
  check "text named .jpg: unsupported format" "[ $rc -eq 1 ] && grep -q 'notes.jpg: unsupported format' <<<\"\$err\""
  mkdir -p "$tmp/a folder.jpg"
  err=$("$vlm" preprocess "$tmp/a folder.jpg" --out "$tmp/n" 2>&1 >/dev/null); rc=$?
  check "a folder named as an image is called a folder ($err)" "[ $rc -eq 1 ] && grep -q 'a folder.jpg: is a folder' <<<\"\$err\""
else
  echo "no $imgs or $fx: image checks skipped"
fi
# Long, thin images: the shortest-side resize of 1 x 100000 is 224 x 22400000 (of 1 x 10^7,
# 224 x 2.24e9, past int); only the center crop is computed, so memory stays small.
if command -v python3 >/dev/null 2>&1; then
  # png.py W H COLOUR_TYPE OUT [IDAT_LEN]: 8-bit RGB (2) or RGBA (6), all zero; with IDAT_LEN,
  # only the zlib stream of that many zero bytes (a file far shorter than its size says).
  png_py='
import struct, sys, zlib
w, h, ct, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
raw = bytes(int(sys.argv[5])) if len(sys.argv) > 5 else (b"\0" + bytes(w * {2: 3, 6: 4}[ct])) * h
c = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
open(out, "wb").write(b"\x89PNG\r\n\x1a\n" + c(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, ct, 0, 0, 0))
                      + c(b"IDAT", zlib.compress(raw)) + c(b"IEND", b""))
'
  rss_py='
import resource, subprocess, sys
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
'
  python3 -c "$png_py" 1 100000 2 "$tmp/tall.png"
  python3 -c "$png_py" 100000 1 6 "$tmp/wide.png"
  python3 -c "$png_py" 1 10000000 2 "$tmp/tall10m.png"
  for f in tall wide tall10m; do
    read -r rc kb < <(python3 -c "$rss_py" "$vlm" --threads 1 preprocess "$tmp/$f.png" --out "$tmp/thin" 2>"$tmp/err")
    check "$f.png preprocesses ($(head -c 200 "$tmp/err"))" \
      "[ $rc -eq 0 ] && grep -aq '\"shape\":\[3,224,224\]' \"$tmp/thin/$f.safetensors\""
    check "$f.png: peak RSS $kb KB stays under 400 MB" "[ $kb -lt 400000 ]"
  done
  # 600000000 x 1 RGBA in 69 bytes with the pixel limit raised: its row (2.4 GB) passes int;
  # the decoder reaches the short data and says so (libpng's row buffers make this run use ~2.4 GB).
  python3 -c "$png_py" 600000000 1 6 "$tmp/wide600m.png" 100
  err=$("$vlm" preprocess --max-image-pixels 1000000000000 --size 32 "$tmp/wide600m.png" --out "$tmp/w6" 2>&1 >/dev/null)
  rc=$?
  check "a 600000000x1 PNG fails cleanly ($err)" \
    "[ $rc -eq 1 ] && grep -q 'wide600m.png: bad PNG' <<<\"\$err\" && ! grep -q 'runtime error' <<<\"\$err\""
fi
# WebP (a 16x12 lossy seed of the image fuzzer) is read by its magic bytes.
webp=$(dirname "$0")/../fuzz/seeds/image/lossy_rgb.webp
"$vlm" preprocess --size 32 "$webp" --out "$tmp/w" >/dev/null 2>&1
check "a .webp preprocesses" "[ $? -eq 0 ] && grep -aq '\"shape\":\[3,32,32\]' \"$tmp/w/lossy_rgb.safetensors\""
head -c 40 "$webp" >"$tmp/cut.webp"
err=$("$vlm" preprocess "$tmp/cut.webp" --out "$tmp/w2" 2>&1 >/dev/null); rc=$?
check "a truncated .webp fails by name" "[ $rc -eq 1 ] && grep -q 'cut.webp: bad WebP' <<<\"\$err\""
# the same file named twice (as given, and spelt otherwise) is processed once, with a note, as
# the other commands do; another file that would write the same output is still an error
mkdir -p "$tmp/s1" "$tmp/s2"
cp "$webp" "$tmp/s1/x.webp" && cp "$webp" "$tmp/s2/x.webp"
out=$(cd "$tmp" && "$vlm" preprocess --size 32 s1/x.webp s1/x.webp ./s1//x.webp --out "$tmp/dd" 2>"$tmp/err"); rc=$?
check "the same file thrice: exit 0, one output, a note" \
  "[ $rc -eq 0 ] && grep -q 'preprocessed 1 image to' <<<\"\$out\" && grep -q '2 images named more than once, preprocessed once' \"$tmp/err\" && [ -s \"$tmp/dd/x.safetensors\" ]"
err=$("$vlm" preprocess --size 32 "$tmp/s1/x.webp" "$tmp/s2/x.webp" --out "$tmp/dd2" 2>&1 >/dev/null); rc=$?
check "two files of one name: still an error for the second" \
  "[ $rc -eq 1 ] && grep -q 's2/x.webp: another input already writes x.safetensors' <<<\"\$err\""
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
