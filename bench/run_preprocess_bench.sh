#!/usr/bin/env bash
# Image decode + preprocess and tokenizer throughput against the peer (PIL +
# torchvision through open_clip's transform; open_clip's tokenizer), both one
# thread, interleaved: vlm, peer, vlm, peer, ... ROUNDS_OUTER times; medians.
# Usage: bench/run_preprocess_bench.sh [OUTER [INNER]]   (defaults 5, 15)
# The peer comes from bench/peer/setup.sh (PEER_PYTHON overrides); without it
# the vlm figures are printed alone, with a message.
set -uo pipefail
cd "$(dirname "$0")/.."
outer=${1:-5}
inner=${2:-15}
shared=${VLM_SHARED_DIR:-../shared}
imgs=("$shared/data/images/retina.jpg" "$shared/data/images/rocket.jpg")
py=${PEER_PYTHON:-build-peer/venv/bin/python}
peer=1
if ! "$py" -c "import open_clip, torchvision" >/dev/null 2>&1; then
  echo "peer: not available ($py); run bench/peer/setup.sh. Showing vlm alone."
  peer=0
fi
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A caption corpus: the fixture captions repeated to 20,000 lines.
for i in $(seq 1 800); do cat "$shared/fixtures/tokenizer/captions.txt"; done | head -n 20000 >"$tmp/captions.txt"

for r in $(seq 1 "$outer"); do
  build/bench/bench_preprocess --rounds "$inner" "${imgs[@]}" |
    awk '$1 ~ /\.jpg$/ {print "vlm", $1, $4, $5}' >>"$tmp/vlm_img"
  build/vlm tokenize --vocab "$shared/data/bpe_simple_vocab_16e6.txt.gz" --stats "$tmp/captions.txt" \
    2>"$tmp/stats" >/dev/null
  grep -o '[0-9.]* captions/s' "$tmp/stats" | awk '{print $1}' >>"$tmp/vlm_tok"
  if [ $peer = 1 ]; then
    "$py" bench/peer/preprocess_peer.py "$inner" "${imgs[@]}" | awk '{n=split($2,a,"/"); print a[n], $3}' >>"$tmp/peer_img"
    "$py" bench/peer/tokenize_peer.py 1 "$tmp/captions.txt" | awk '{print $3}' >>"$tmp/peer_tok"
  fi
done

med() { sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
echo "decode + preprocess to 224, one thread, median of $outer interleaved runs (each the median of $inner)"
printf "%-12s %14s %14s %14s %10s %10s\n" image "vlm ms" "vlm reduced ms" "peer ms" ratio "reduced"
tv=0; tr=0; tp=0
for f in "${imgs[@]}"; do
  b=$(basename "$f")
  v=$(awk -v b="$b" '$2==b {print $3}' "$tmp/vlm_img" | med)
  red=$(awk -v b="$b" '$2==b {print $4}' "$tmp/vlm_img" | med)
  p=-
  [ $peer = 1 ] && p=$(awk -v b="$b" '$1==b {print $2}' "$tmp/peer_img" | med)
  tv=$(awk -v a="$tv" -v b="$v" 'BEGIN{print a+b}'); tr=$(awk -v a="$tr" -v b="$red" 'BEGIN{print a+b}')
  if [ $peer = 1 ]; then
    tp=$(awk -v a="$tp" -v b="$p" 'BEGIN{print a+b}')
    printf "%-12s %14.2f %14.2f %14.2f %9.2fx %9.2fx\n" "$b" "$v" "$red" "$p" "$(awk -v p="$p" -v v="$v" 'BEGIN{print p/v}')" "$(awk -v p="$p" -v v="$red" 'BEGIN{print p/v}')"
  else
    printf "%-12s %14.2f %14.2f %14s\n" "$b" "$v" "$red" -
  fi
done
if [ $peer = 1 ]; then
  printf "%-12s %14.2f %14.2f %14.2f %9.2fx %9.2fx\n" total "$tv" "$tr" "$tp" "$(awk -v p="$tp" -v v="$tv" 'BEGIN{print p/v}')" "$(awk -v p="$tp" -v v="$tr" 'BEGIN{print p/v}')"
fi
vt=$(med <"$tmp/vlm_tok")
echo
echo "tokenizer, 20000 captions, context 77, one thread, median of $outer interleaved runs"
if [ $peer = 1 ]; then
  pt=$(med <"$tmp/peer_tok")
  printf "vlm %.0f captions/s, open_clip %.0f captions/s: %.1fx\n" "$vt" "$pt" "$(awk -v a="$vt" -v b="$pt" 'BEGIN{print a/b}')"
else
  printf "vlm %.0f captions/s\n" "$vt"
fi
