#!/usr/bin/env bash
# The main job end to end on the built-in default data (the synthetic shapes set):
# build vlm, train a small CoCa (a CLIP with a captioning decoder), write held-out
# images, classify them zero-shot, measure zero-shot accuracy and retrieval recall,
# caption some and measure caption accuracy, index and search them by text. Each
# step prints its command, then its result.
#
# Usage: scripts/demo.sh [--quick] [--out DIR]
#   --quick     1500 training steps instead of the full run's 8000 (a few minutes;
#               the figures are much lower)
#   --out DIR   where the run and the held-out files go (default runs/demo, or
#               runs/demo-quick; an earlier demo run there is replaced)
# Environment: VLM_DEMO_MODEL (the model to train: coca-shapes, a CoCa, by default;
# shapes-demo: a CLIP, which does not caption), VLM_DEMO_STEPS (training steps; default:
# the trainer's shapes default, 8000 for a CoCa and 9000 for a CLIP; 1500 with --quick),
# VLM_SKIP_APT=1 (no package installation), VLM_BIN (an already built vlm: no setup step),
# VLM_THREADS.
set -euo pipefail
if [ -n "${VLM_BIN:-}" ]; then case $VLM_BIN in /*) ;; *) VLM_BIN=$PWD/$VLM_BIN ;; esac; fi
cd "$(dirname "$0")/.."

MODEL=${VLM_DEMO_MODEL:-coca-shapes}   # the one place the demo's model is chosen
quick=0
out=
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1 ;;
    --out) out=$2; shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
steps=${VLM_DEMO_STEPS:-}
if [ -z "$steps" ] && [ $quick = 1 ]; then steps=1500; fi
if [ -z "$out" ]; then
  if [ $quick = 1 ]; then out=runs/demo-quick; else out=runs/demo; fi
fi

t_start=$(date +%s)
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() {   # print the command (arguments with spaces quoted), then run it
  local a line='$'
  for a in "$@"; do case $a in *' '*) line+=" \"$a\"" ;; *) line+=" $a" ;; esac; done
  printf '%s\n' "$line"
  "$@"
}
elapsed() { echo $(($(date +%s) - t_start)); }

if [ -n "${VLM_BIN:-}" ]; then
  step "1. use the vlm binary given in VLM_BIN"
  vlm=$VLM_BIN
  "$vlm" version 2>/dev/null | head -1 || { echo "demo.sh: VLM_BIN=$vlm does not run" >&2; exit 1; }
else
  step "1. install the packages, configure and build (scripts/setup.sh)"
  mkdir -p build
  scripts/setup.sh build >build/demo-setup.log 2>&1 || { tail -40 build/demo-setup.log; exit 1; }
  grep -E '^-- vlm:' build/demo-setup.log || true
  echo "built build/vlm in $(elapsed) s (log: build/demo-setup.log)"
  vlm=build/vlm
fi

rm -rf "$out"
mkdir -p "$out"
run=$out/train
ck=$run/checkpoints/latest

step "2. train $MODEL on the shapes set (vlm train)"
echo "The shapes set: images of one or two coloured shapes with captions that name them;"
echo "6 of the 48 colour-shape combinations never appear in training (the held-out split has them)."
train_args=(--train-data shapes --model "$MODEL" --logs "$out" --name train)
[ -n "$steps" ] && train_args+=(--steps "$steps")
t0=$(date +%s)
show "$vlm" train "${train_args[@]}"
echo "trained in $(($(date +%s) - t0)) s: checkpoint $ck, metrics $run/metrics.jsonl, chart $run/loss.png"

coca=0
grep -q '"multimodal_cfg"' "$ck/open_clip_config.json" 2>/dev/null && coca=1
size=$(grep -o '"image_size"[^0-9]*[0-9]*' "$ck/open_clip_config.json" | head -1 | grep -o '[0-9]*$')

step "3. write held-out images (vlm shapes --split val)"
show "$vlm" shapes --out "$out/heldout" --split val --n 200 --size "${size:-32}"
mapfile -t some < <(ls "$out/heldout/images" | head -4 | sed "s|^|$out/heldout/images/|")

step "4. classify a few held-out images zero-shot (vlm zeroshot)"
show "$vlm" zeroshot --model "$ck" --classes-file "$out/heldout/classnames.txt" --templates shapes --top-k 3 \
  "${some[@]}"
echo "(the true captions:)"
for f in "${some[@]}"; do grep "images/$(basename "$f")" "$out/heldout/captions.tsv" | cut -f1,2; done

step "5. measure zero-shot accuracy and retrieval recall on the held-out split (vlm eval)"
show "$vlm" eval --model "$ck" --data shapes:val --zeroshot shapes:val | tee "$out/eval.txt"
echo "('shapes:val' is the held-out split step 3 wrote 200 of: all its 1000 images; add --json for JSON)"

step "6. caption a few held-out images (vlm caption)"
if [ $coca = 1 ]; then
  show "$vlm" caption --model "$ck" --tokenizer "$run/tokenizer" "${some[@]}"
  echo "Caption accuracy on all 1000 held-out images (right colour and shape named; examples of misses"
  echo "and the JSON summary in $out/caption_accuracy.txt / .json):"
  printf '$ scripts/caption_accuracy.sh %s %s %s 1000\n' "$vlm" "$ck" "$run/tokenizer"
  scripts/caption_accuracy.sh "$vlm" "$ck" "$run/tokenizer" 1000 >"$out/caption_accuracy.json" \
    2>"$out/caption_accuracy.txt" || { cat "$out/caption_accuracy.txt" >&2; exit 1; }
  tail -1 "$out/caption_accuracy.txt" | tee "$out/caption_summary.txt"
else
  echo "$MODEL is a CLIP model: captions need a CoCa model (a text decoder conditioned on the image)."
  echo "The default demo trains a CoCa, which captions: scripts/demo.sh"
  echo "(or vlm train --train-data shapes --model coca-shapes), then"
  echo "  vlm caption --model RUN/checkpoints/latest --tokenizer RUN/tokenizer IMAGE..."
  echo "Any open_clip CoCa checkpoint captions too: vlm caption --model coca-dir/ IMAGE..."
fi

step "7. index the held-out images and search them by text (vlm index, vlm search)"
show "$vlm" index --model "$ck" --out "$out/heldout.idx" "$out/heldout/images" --quiet
for q in "a red circle" "a blue star"; do
  show "$vlm" search --index "$out/heldout.idx" --model "$ck" --text "$q" --top-k 3
  echo "(their true captions:)"
  "$vlm" search --index "$out/heldout.idx" --model "$ck" --text "$q" --top-k 3 --json |
    grep -o 'images/[0-9]*\.png' | while read -r f; do grep "^$f" "$out/heldout/captions.tsv" | cut -f2; done
done

step "done in $(elapsed) s"
grep -E 'R@1 |text->image|top-1 accuracy|unseen' "$out/eval.txt" | sed 's/^ */  /'
[ -f "$out/caption_summary.txt" ] && sed 's/^/  captions: /' "$out/caption_summary.txt"
echo "Everything is in $out/. The README explains each step and how to run it on your own data."
