#!/usr/bin/env bash
# Drives 'vlm shapes' like a user: writes small train and val sets, checks the PNG files,
# captions.tsv (the standard TSV), classnames.txt / unseen.txt, determinism, --json, and
# that bad usage exits 2 and an unwritable output exits 1 with a message.
# Usage: shapes.sh VLM_BINARY
set -u
vlm=$1
. "$(dirname "$0")/lib.sh"
make_tmp /tmp/vlm_e2e_shapes.XXXXXX

check "shapes --help" "\"$vlm\" shapes --help | grep -q 'usage: vlm shapes'"
check "listed in vlm --help" "\"$vlm\" --help | grep -q shapes"
for args in "" "--n 5" "--out $tmp/x --split test" "--out $tmp/x --n 0" "--out $tmp/x --n abc" \
            "--out $tmp/x --size 4" "--out $tmp/x --bogus" "--out"; do
  "$vlm" shapes $args >/dev/null 2>"$tmp/err"; rc=$?
  check "'shapes $args' exits 2 (got $rc)" "[ $rc -eq 2 ]"
  check "'shapes $args' says why" "[ -s \"$tmp/err\" ]"
done
check "missing --out is named" "\"$vlm\" shapes --n 3 2>&1 | grep -q -- '--out DIR is required'"

out=$("$vlm" shapes --out "$tmp/val" --n 30 --split val --size 32 --seed 5); rc=$?
check "val set written (rc $rc)" "[ $rc -eq 0 ]"
check "summary line" "grep -q 'wrote 30 val images' <<<\"\$out\""
check "30 PNG files" "[ \$(ls \"$tmp/val/images\"/*.png | wc -l) -eq 30 ]"
check "PNG magic" "head -c 8 \"$tmp/val/images/000000.png\" | od -An -c | grep -q 'P   N   G'"
check "val TSV header" "[ \"\$(head -1 \"$tmp/val/captions.tsv\")\" = \"\$(printf 'filepath\ttitle\tlabel')\" ]"
check "val TSV rows" "[ \$(wc -l <\"$tmp/val/captions.tsv\") -eq 31 ]"
check "val rows: path, caption, label" "awk -F'\t' 'NR>1 && !(\$1 ~ /^images\/[0-9]+\.png\$/ && \$2 != \"\" && \$3 ~ /^[0-9]+\$/ && \$3 < 48) {bad=1} END {exit bad}' \"$tmp/val/captions.tsv\""
check "every listed file exists" "awk -F'\t' 'NR>1 {print \$1}' \"$tmp/val/captions.tsv\" | (cd \"$tmp/val\" && xargs ls >/dev/null)"
check "classnames.txt: 48 classes" "[ \$(wc -l <\"$tmp/val/classnames.txt\") -eq 48 ] && head -1 \"$tmp/val/classnames.txt\" | grep -qx 'red circle'"
check "unseen.txt lists held-out classes" "[ \$(wc -l <\"$tmp/val/unseen.txt\") -ge 4 ] && grep -qxf \"$tmp/val/unseen.txt\" \"$tmp/val/classnames.txt\""
# the caption names the labelled class
check "captions name their class" "awk -F'\t' 'NR==FNR {name[NR-1]=\$0; next} FNR>1 && index(\$2, name[\$3]) == 0 {bad=1} END {exit bad}' \"$tmp/val/classnames.txt\" \"$tmp/val/captions.tsv\""
check "no temporary files left" "[ -z \"\$(find \"$tmp/val\" -name '*.tmp*')\" ]"

"$vlm" shapes --out "$tmp/val2" --n 30 --split val --size 32 --seed 5 >/dev/null
check "deterministic TSV" "cmp -s \"$tmp/val/captions.tsv\" \"$tmp/val2/captions.tsv\""
check "deterministic images" "cmp -s \"$tmp/val/images/000017.png\" \"$tmp/val2/images/000017.png\""
"$vlm" shapes --out "$tmp/val3" --n 30 --split val --size 32 --seed 6 >/dev/null
check "another seed differs" "! cmp -s \"$tmp/val/captions.tsv\" \"$tmp/val3/captions.tsv\""

json=$("$vlm" shapes --out "$tmp/train" --n 20 --json); rc=$?
check "train set + --json (rc $rc)" "[ $rc -eq 0 ] && grep -q '\"n\": 20' <<<\"\$json\" && grep -q '\"split\": \"train\"' <<<\"\$json\""
check "train TSV header" "[ \"\$(head -1 \"$tmp/train/captions.tsv\")\" = \"\$(printf 'filepath\ttitle')\" ]"
check "train has no classnames.txt" "[ ! -e \"$tmp/train/classnames.txt\" ]"
check "PNG decodes (vlm preprocess)" "\"$vlm\" preprocess --size 32 \"$tmp/train/images/000003.png\" --out \"$tmp/prep\" >/dev/null 2>&1"

touch "$tmp/file"
"$vlm" shapes --out "$tmp/file/sub" --n 2 >/dev/null 2>"$tmp/err"; rc=$?
check "unwritable output exits 1" "[ $rc -eq 1 ]"
check "unwritable output named" "grep -q 'vlm shapes: .*file/sub' \"$tmp/err\""

echo "shapes e2e: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
