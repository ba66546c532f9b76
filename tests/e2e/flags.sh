#!/usr/bin/env bash
# Options that a mode would not use, values out of range and flag-like operands are usage
# errors (one line on stderr naming the option, status 2), never silently nothing; and what
# the help texts say about them holds.
# Usage: flags.sh VLM_BINARY SHARED_DIR
set -u
vlm=$1 shared=$2
. "$(dirname "$0")/lib.sh"
make_tmp
coca=$shared/fixtures/tiny-coca
# usage error: status 2, one line on stderr that matches $2, nothing on stdout
usage_err() {   # NAME PATTERN CMD...
  local name=$1 pat=$2; shift 2
  "$@" </dev/null >"$tmp/out" 2>"$tmp/err"; local rc=$?
  check "$name: status 2 (got $rc), one line matching '$pat' ($(head -c 300 "$tmp/err"))" \
    "[ $rc -eq 2 ] && [ ! -s '$tmp/out' ] && [ \$(wc -l <'$tmp/err') -eq 1 ] && grep -q -- \"\$pat\" '$tmp/err'"
}

"$vlm" shapes --out "$tmp/s" --n 2 >/dev/null || { echo "FAIL: vlm shapes"; exit 1; }
img=$tmp/s/images/000000.png

# ---- caption: a decoding option the decoding does not use
usage_err "caption --temperature, greedy" "--temperature applies to sampling" \
  "$vlm" caption --model "$coca" --temperature 0.5 "$img"
usage_err "caption --temperature with --beams" "--temperature applies to sampling.*beam search" \
  "$vlm" caption --model "$coca" --beams 2 --temperature 0.5 "$img"
usage_err "caption --seed, greedy" "--seed applies to sampling" "$vlm" caption --model "$coca" --seed 3 "$img"
usage_err "caption --length-penalty, greedy" "--length-penalty applies to beam search" \
  "$vlm" caption --model "$coca" --length-penalty 0.5 "$img"
usage_err "caption --length-penalty, sampling" "--length-penalty applies to beam search.*sampling" \
  "$vlm" caption --model "$coca" --top-k 3 --length-penalty 0.5 "$img"
for bad in "--top-p 0" "--top-p 1.5" "--temperature 0" "--temperature -1" "--beams 0" "--top-k 0" "--batch-size 0"; do
  usage_err "caption $bad" "expects" "$vlm" caption --model "$coca" $bad "$img"
done
# the combinations that use them still run
for ok in "--top-k 3 --temperature 0.7 --seed 2" "--top-p 0.9 --seed 1" "--beams 2 --length-penalty 0.5"; do
  "$vlm" caption --model "$coca" --max-len 6 $ok "$img" >/dev/null 2>"$tmp/err"
  check "caption $ok runs" "[ $? -eq 0 ]"
done

# ---- zeroshot, index: '-x' is an unknown option, not a missing file; --top-k is not for --eval
usage_err "zeroshot -x" "unknown option '-x'" "$vlm" zeroshot --model "$coca" --classes a,b -x "$tmp/s/images"
usage_err "index -x" "unknown option '-x'" "$vlm" index --model "$coca" --out "$tmp/i.idx" -x "$tmp/s/images"
usage_err "index --tokenizer with images" "--tokenizer applies to --texts" \
  "$vlm" index --model "$coca" --out "$tmp/i.idx" --tokenizer "$shared/data/bpe_simple_vocab_16e6.txt.gz" "$tmp/s/images"
check "index --tokenizer with images wrote nothing" "[ ! -e '$tmp/i.idx' ]"
mkdir -p "$tmp/if/a" && cp "$img" "$tmp/if/a/"
usage_err "zeroshot --eval --top-k" "--top-k .*--eval" "$vlm" zeroshot --model "$coca" --eval "$tmp/if" --top-k 1

# ---- eval: the options of the part that does not run
usage_err "eval --templates without --zeroshot" "--templates applies to --zeroshot" \
  "$vlm" eval --model "$coca" --data shapes:val:4 --templates simple
for o in "--caption-match" "--dataset-type csv" "--csv-separator ," "--csv-img-key f" "--csv-caption-key t" \
         "--coco-images $tmp"; do
  usage_err "eval $o without --data" "${o%% *} applies to --data" "$vlm" eval --model "$coca" --zeroshot shapes:val:4 $o
done

# ---- convert: --seed is for --init
usage_err "convert --model --seed" "--seed goes with --init" \
  "$vlm" convert --model "$coca" --seed 3 --to open_clip --out "$tmp/c"
check "convert --model --seed wrote nothing" "[ ! -e '$tmp/c' ]"
"$vlm" convert --init nope --to open_clip --out "$tmp/c" 2>"$tmp/err"; rc=$?
check "convert --init with an unknown name lists the CoCa names too" "[ $rc -eq 2 ] && grep -q 'CoCa: coca' '$tmp/err'"
check "convert --help lists every CLIP built-in (shapes-demo)" "\"$vlm\" convert --help | grep -q 'shapes-demo'"

# ---- tokenize
printf 'a red circle\n' >"$tmp/caps.txt"
usage_err "tokenize --decode --full" "--decode and --full are exclusive" \
  "$vlm" tokenize --vocab "$shared/data/bpe_simple_vocab_16e6.txt.gz" --decode --full "$tmp/caps.txt"
usage_err "tokenize --pad without a context length" "--pad needs a --context-length" \
  "$vlm" tokenize --vocab "$shared/data/bpe_simple_vocab_16e6.txt.gz" --context-length 0 --pad eot "$tmp/caps.txt"

# ---- train: ranges, and CoCa's loss weights on a CLIP model (before any work: no run directory)
for bad in "--data-temperature -1" "--lr-cooldown-end -0.1" "--lr-cooldown-power 0" \
           "--coca-caption-loss-weight -1" "--coca-caption-loss-weight 0 --coca-contrastive-loss-weight 0"; do
  usage_err "train $bad" "${bad%% *}" "$vlm" train --train-data shapes --steps 1 --logs "$tmp/runs" --name r $bad
done
usage_err "train --coca-caption-loss-weight on a CLIP model" "is a CLIP model" \
  "$vlm" train --train-data shapes --model tiny --steps 1 --logs "$tmp/runs" --name r --coca-caption-loss-weight 1
# options of a part of the run that does not happen
for o in "--lr-cooldown-power 2" "--lr-cooldown-end 1e-5" "--epochs-cooldown 1"; do
  usage_err "train $o without const-cooldown" "${o%% *} applies to --lr-scheduler const-cooldown" \
    "$vlm" train --train-data shapes --steps 1 --logs "$tmp/runs" --name r $o
done
usage_err "train --zeroshot-templates with zero-shot turned off" "--zeroshot-templates applies.*--zeroshot-frequency 0" \
  "$vlm" train --train-data shapes --steps 1 --logs "$tmp/runs" --name r --zeroshot-frequency 0 --zeroshot-templates simple
usage_err "train --zeroshot-templates without zero-shot data" "--zeroshot-templates applies.*needs --zeroshot-data" \
  "$vlm" train --train-data "$tmp/s/captions.tsv" --model tiny --tokenizer train:600 --steps 1 --logs "$tmp/runs" \
  --name r --zeroshot-templates simple
check "no run directory was left" "[ ! -e '$tmp/runs/r' ]"

# ---- shapes: captions.tsv is written last, the val class lists before it
mkdir -p "$tmp/v/classnames.txt"   # a directory in the way of the class list
"$vlm" shapes --out "$tmp/v" --split val --n 2 >/dev/null 2>"$tmp/err"; rc=$?
check "shapes --split val: a class list that cannot be written fails before captions.tsv" \
  "[ $rc -eq 1 ] && grep -q 'classnames.txt' '$tmp/err' && [ ! -e '$tmp/v/captions.tsv' ]"

# ---- vlm --help names --version
check "vlm --help names --version" "\"$vlm\" --help | grep -q -- '--version'"

echo "flags: $pass passed, $fail failed"
[ $fail -eq 0 ]
