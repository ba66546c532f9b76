#!/usr/bin/env bash
# vlm tokenize against open_clip's output (fixtures/tokenizer): every line equal.
# Usage: tokenize.sh VLM_BINARY SHARED_DIR
set -u
vlm=$1 shared=$2
fx=$shared/fixtures/tokenizer vocab=$shared/data/bpe_simple_vocab_16e6.txt.gz
if [ ! -f "$fx/captions.txt" ] || [ ! -f "$vocab" ]; then echo "skip: no fixtures under $shared"; exit 77; fi
. "$(dirname "$0")/lib.sh"
make_tmp

sed 's/.*"ids": /{"ids": /' "$fx/ids.jsonl" >"$tmp/want"
"$vlm" tokenize --vocab "$vocab" "$fx/captions.txt" >"$tmp/got"; rc=$?
check "tokenize exits 0" "[ $rc -eq 0 ]"
check "ids equal open_clip's on every line" "diff -u \"$tmp/want\" \"$tmp/got\""
"$vlm" tokenize --vocab "$vocab" --full "$fx/captions.txt" >"$tmp/full"
check "--full output is ids.jsonl byte for byte" "cmp \"$fx/ids.jsonl\" \"$tmp/full\""
"$vlm" tokenize --tokenizer "$vocab" <"$fx/captions.txt" >"$tmp/got3"
check "--tokenizer is --vocab" "cmp -s \"$tmp/want\" \"$tmp/got3\""
VLM_VOCAB=$vocab "$vlm" tokenize <"$fx/captions.txt" >"$tmp/got2"
check "stdin + VLM_VOCAB give the same" "cmp -s \"$tmp/want\" \"$tmp/got2\""
out=$(echo 'a photo of a cat' | "$vlm" tokenize --vocab "$vocab" --context-length 0)
check "--context-length 0" "[ \"\$out\" = '{\"ids\": [49406, 320, 1125, 539, 320, 2368, 49407]}' ]"
out=$(echo 'a photo of a cat' | "$vlm" tokenize --vocab "$vocab" --context-length 8 --pad eot)
check "--pad eot" "[ \"\$out\" = '{\"ids\": [49406, 320, 1125, 539, 320, 2368, 49407, 49407]}' ]"
out=$(echo 'a photo of a cat' | "$vlm" tokenize --vocab "$vocab" --context-length 4)
check "truncation forces eot" "[ \"\$out\" = '{\"ids\": [49406, 320, 1125, 49407]}' ]"
# --decode: the caption's text, without <|startoftext|>, <|endoftext|> or the padding (id 0 is "!")
out=$(echo 'a photo of a cat' | "$vlm" tokenize --vocab "$vocab" --decode)
check "--decode stops at <|endoftext|>, no padding" "[ \"\$out\" = '{\"text\": \"a photo of a cat\"}' ]"
out=$(echo 'a photo of a cat' | "$vlm" tokenize --vocab "$vocab" --decode --context-length 4)
check "--decode of a truncated caption" "[ \"\$out\" = '{\"text\": \"a photo\"}' ]"
out=$(echo 'wow!! a cat' | "$vlm" tokenize --vocab "$vocab" --decode --pad eot --context-length 20)
check "--decode keeps a caption's own '!'" "[ \"\$out\" = '{\"text\": \"wow !! a cat\"}' ]"
long=$(for i in $(seq 100); do printf 'cat '; done)
out=$(echo "$long" | "$vlm" tokenize --vocab "$vocab" --full)
check "--full reports truncation" "grep -q '\"n_tokens\": 102, \"truncated\": true, \"ids\": \[49406, 2368, ' <<<\"\$out\" && grep -q ', 2368, 49407\]}$' <<<\"\$out\""
out=$(printf 'caf\xc3\xa9 \xff\xfe bad\n' | "$vlm" tokenize --vocab "$vocab" --context-length 0); rc=$?
check "invalid UTF-8 is not an error" "[ $rc -eq 0 ] && [ -n \"\$out\" ]"
check "--help" "\"$vlm\" tokenize --help | grep -q 'usage: vlm tokenize'"
err=$(VLM_VOCAB= "$vlm" tokenize </dev/null 2>&1); rc=$?
check "no vocabulary: usage error" "[ $rc -eq 2 ] && grep -q -- '--vocab' <<<\"\$err\""
err=$("$vlm" tokenize --vocab "$tmp/missing.gz" </dev/null 2>&1); rc=$?
check "missing vocabulary named" "[ $rc -eq 1 ] && grep -q 'missing.gz' <<<\"\$err\""
head -c 4000 "$vocab" >"$tmp/cut.gz"
err=$("$vlm" tokenize --vocab "$tmp/cut.gz" </dev/null 2>&1); rc=$?
check "truncated vocabulary named" "[ $rc -eq 1 ] && grep -q 'cut.gz' <<<\"\$err\""
# bpe-train: files written, deterministic, usable by tokenize
"$vlm" bpe-train --vocab-size 600 --out "$tmp/v1" "$fx/captions.txt" 2>/dev/null; rc=$?
check "bpe-train exits 0" "[ $rc -eq 0 ] && [ -s \"$tmp/v1/vocab.json\" ] && [ -s \"$tmp/v1/merges.txt\" ]"
"$vlm" bpe-train --vocab-size 600 --out "$tmp/v2" <"$fx/captions.txt" 2>/dev/null
check "bpe-train is deterministic" "cmp -s \"$tmp/v1/merges.txt\" \"$tmp/v2/merges.txt\" && cmp -s \"$tmp/v1/vocab.json\" \"$tmp/v2/vocab.json\""
out=$(echo 'a photo of a cat' | "$vlm" tokenize --vocab "$tmp/v1" --context-length 0); rc=$?
check "tokenize with a trained vocabulary" "[ $rc -eq 0 ] && grep -q '^{\"ids\": \[598, .*, 599\]}$' <<<\"\$out\""
err=$(printf 'a cat\n\n  \nthe dog\r\n' | "$vlm" bpe-train --vocab-size 600 --out "$tmp/v5" 2>&1)
check "bpe-train counts captions, not blank lines" "grep -q '2 captions' <<<\"\$err\""
"$vlm" bpe-train --vocab-size 10 --out "$tmp/v3" </dev/null 2>/dev/null; rc=$?
check "bpe-train rejects a tiny vocabulary" "[ $rc -eq 2 ]"
# symbols of any length: runs of one letter merge into symbols of thousands of bytes, which the
# loader once refused ("uses a symbol missing from the vocabulary") past 1023 bytes of a pair
{ head -c 3000 /dev/zero | tr '\0' a; echo; head -c 5000 /dev/zero | tr '\0' b; echo; echo 'a cat'; } >"$tmp/runs.txt"
"$vlm" bpe-train --vocab-size 600 --out "$tmp/v4" "$tmp/runs.txt" 2>/dev/null
check "bpe-train writes merges over 1024 bytes" "[ \$(awk '{ if (length(\$0) > m) m = length(\$0) } END { print m + 0 }' \"$tmp/v4/merges.txt\") -gt 1024 ]"
out=$(head -c 4096 /dev/zero | tr '\0' a | "$vlm" tokenize --vocab "$tmp/v4" --context-length 0); rc=$?
check "those merges load and encode" "[ $rc -eq 0 ] && grep -q '^{\"ids\": \[' <<<\"\$out\""
# CRLF lines (a file saved on Windows): the "\r" is the line's end, not part of --full's text
printf 'a photo of a cat\r\nthe dog\r\n' >"$tmp/crlf.txt"
printf 'a photo of a cat\nthe dog\n' >"$tmp/lf.txt"
"$vlm" tokenize --vocab "$vocab" --full "$tmp/crlf.txt" >"$tmp/crlf.out"; rc=$?
"$vlm" tokenize --vocab "$vocab" --full "$tmp/lf.txt" >"$tmp/lf.out"
check "--full on CRLF lines: the text without the \\r, as for LF lines" \
  "[ $rc -eq 0 ] && grep -q '\"text\": \"the dog\", ' \"$tmp/crlf.out\" && cmp -s \"$tmp/crlf.out\" \"$tmp/lf.out\""
err=$("$vlm" tokenize --vocab "$vocab" "$tmp" 2>&1 >/dev/null); rc=$?
check "a folder as FILE: exit 1, said to be a directory" "[ $rc -eq 1 ] && grep -q 'is a directory' <<<\"\$err\""
# the special tokens' text, as open_clip's SimpleTokenizer reads OpenAI's BPE file: <start_of_text> /
# <end_of_text> (any case) are the specials, <|startoftext|> is spelled out (ids from open_clip 2.24)
out=$(printf '<|startoftext|> hi <|endoftext|> there\n<start_of_text> hi <END_OF_TEXT>\n' |
      "$vlm" tokenize --context-length 0 --vocab "$vocab" 2>&1)
check "special tokens' text as open_clip's: <|endoftext|> spelled out, <end_of_text> the token" \
  "[ \"\$(sed -n 1p <<<\"\$out\")\" = '{\"ids\": [49406, 27, 347, 993, 6659, 4160, 91, 285, 1883, 27, 347, 40786, 4160, 91, 285, 997, 49407]}' ] && [ \"\$(sed -n 2p <<<\"\$out\")\" = '{\"ids\": [49406, 49406, 1883, 49407, 49407]}' ]"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
