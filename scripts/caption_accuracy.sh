#!/bin/sh
# Caption accuracy of a CoCa model on the held-out shapes split (issue 6's demo target).
#
# usage: scripts/caption_accuracy.sh VLM MODEL TOKENIZER [N] [WORKDIR]
#   VLM        the vlm binary
#   MODEL      a CoCa checkpoint dir (e.g. RUN/checkpoints/latest)
#   TOKENIZER  the run's tokenizer dir (RUN/tokenizer)
#   N          held-out images (default 1000: `vlm shapes --split val --n N`, PNGs at the
#              model's image size)
#   WORKDIR    where the images and captions go (default: a fresh temp dir, removed)
#
# How it counts: every held-out image shows exactly one object, its label is a
# colour-shape class ("red circle", classnames.txt). A caption (greedy, `vlm caption
# --json`, default options) is CORRECT when the set of colour words it contains is
# exactly {the object's colour} and the set of shape words is exactly {its shape}
# (words: red green blue yellow purple orange pink cyan / circle square triangle star
# hexagon cross, whole words). So naming the right pair counts, and naming a second
# colour or shape (hedging) does not. Also reported: "lenient" (both words present,
# extra ones allowed), colour-only and shape-only accuracy, and the same on the
# colour-shape combinations never seen in training (unseen.txt).
# Output: a summary on stderr and one JSON line on stdout. Exit 1 on errors.
set -eu
if [ $# -lt 3 ]; then
  sed -n '2,/^set -eu/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
VLM=$1 MODEL=$2 TOK=$3 N=${4:-1000}
abs() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
case $VLM in */*) VLM=$(abs "$VLM") ;; esac; MODEL=$(abs "$MODEL"); TOK=$(abs "$TOK")
if [ $# -ge 5 ]; then W=$5; mkdir -p "$W"; KEEP=1; else W=$(mktemp -d); KEEP=0; fi
cleanup() { [ "$KEEP" = 1 ] || rm -rf "$W"; }
trap cleanup EXIT
# the held-out images at the model's own image size (open_clip_config.json's vision_cfg)
SIZE=$(grep -o '"image_size"[^0-9]*[0-9]*' "$MODEL/open_clip_config.json" 2>/dev/null | head -1 | grep -o '[0-9]*$' || true)
"$VLM" shapes --out "$W/val" --split val --n "$N" --size "${SIZE:-64}" >/dev/null
( cd "$W/val" && tail -n +2 captions.tsv | cut -f1 ) > "$W/files.txt"
( cd "$W/val" && xargs "$VLM" caption --model "$MODEL" --tokenizer "$TOK" --json --batch 64 ) \
  < "$W/files.txt" > "$W/captions.jsonl" 2> "$W/caption.err" || { cat "$W/caption.err" >&2; exit 1; }
awk -F '\t' -v CLS="$W/val/classnames.txt" -v UNS="$W/val/unseen.txt" -v CAPS="$W/captions.jsonl" '
BEGIN {
  n = 0; while ((getline line < CLS) > 0) cls[n++] = line
  while ((getline line < UNS) > 0) unseen[line] = 1
  split("red green blue yellow purple orange pink cyan", C, " ")
  split("circle square triangle star hexagon cross", K, " ")
}
NR == 1 { next }
{
  file = $1; label = $3
  if ((getline js < CAPS) <= 0) { print "caption_accuracy: fewer captions than images" > "/dev/stderr"; bad = 1; exit 1 }
  if (index(js, "\"image\": \"" file "\"") == 0) { print "caption_accuracy: order mismatch at " file > "/dev/stderr"; bad = 1; exit 1 }
  cap = js; sub(/.*"caption": "/, "", cap); sub(/", "ids".*/, "", cap)
  split(cls[label], want, " ")
  nw = split(cap, w, /[^a-z]+/)
  delete hc; delete hk; nc = 0; nk = 0
  for (i = 1; i <= nw; i++) {
    for (j = 1; j <= 8; j++) if (w[i] == C[j] && !(w[i] in hc)) { hc[w[i]] = 1; nc++ }
    for (j = 1; j <= 6; j++) if (w[i] == K[j] && !(w[i] in hk)) { hk[w[i]] = 1; nk++ }
  }
  okc = (want[1] in hc); okk = (want[2] in hk)
  strict = okc && okk && nc == 1 && nk == 1
  u = (cls[label] in unseen)
  tot++; s += strict; l += okc && okk; cc += okc && nc == 1; kk += okk && nk == 1
  if (u) { ut++; us += strict; ul += okc && okk }
  if (!strict && shown < 10) { printf "  wrong: %s (%s): \"%s\"\n", file, cls[label], cap > "/dev/stderr"; shown++ }
}
END {
  if (bad) exit 1
  if (!tot) { print "caption_accuracy: no images" > "/dev/stderr"; exit 1 }
  printf "%d held-out images: colour and shape correct %.1f%% (lenient %.1f%%; colour %.1f%%, shape %.1f%%); unseen combinations %.1f%% of %d (lenient %.1f%%)\n",
    tot, 100*s/tot, 100*l/tot, 100*cc/tot, 100*kk/tot, ut ? 100*us/ut : 0, ut, ut ? 100*ul/ut : 0 > "/dev/stderr"
  printf "{\"images\": %d, \"correct\": %d, \"accuracy\": %.4f, \"lenient_accuracy\": %.4f, \"colour_accuracy\": %.4f, \"shape_accuracy\": %.4f, \"unseen_images\": %d, \"unseen_accuracy\": %.4f, \"unseen_lenient_accuracy\": %.4f}\n",
    tot, s, s/tot, l/tot, cc/tot, kk/tot, ut, ut ? us/ut : 0, ut ? ul/ut : 0
}' "$W/val/captions.tsv"
