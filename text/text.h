/* text/: the CLIP text side. See docs and DESIGN.md. */
#ifndef VLM_TEXT_H
#define VLM_TEXT_H
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- tokenizer ---- */
/* The CLIP byte-level BPE tokenizer, equal to open_clip's SimpleTokenizer:
 *   clean: ftfy-like fixes (NFC, curly quotes -> straight, Latin ligatures and
 *          full-width forms unfolded, C1 controls as Windows-1252, control
 *          characters removed, HTML entities when the line has no '<'), then
 *          html.unescape twice, whitespace runs -> one space, stripped,
 *          lower-cased (Python's str.lower, final sigma included);
 *   split: open_clip's pattern <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|
 *          'll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+ ;
 *   each piece's UTF-8 bytes -> GPT-2 byte-unicode symbols, "</w>" on the last,
 *   merged by rank (lowest first), cached per piece.
 * Known differences from open_clip (checked against a Python reference on every
 * code point and on random mixtures): ftfy's mojibake repair (fix_encoding:
 * "cafÃ©" -> "café", U+FFFD next to Latin-1/Greek letters) is not done, and
 * characters assigned after utf8proc's Unicode version count as unassigned.
 * Invalid UTF-8 in the input never fails: each maximal invalid subsequence
 * becomes U+FFFD, as Python's bytes.decode("utf-8", errors="replace").
 * A tokenizer object is not thread-safe (the cache and the dropout RNG are
 * mutable): use one per thread. */
typedef struct vlm_tokenizer vlm_tokenizer;

/* Load by path: a directory holding vocab.json + merges.txt (Hugging Face), a
 * vocab.json (merges.txt beside it), or OpenAI's bpe_simple_vocab_16e6.txt(.gz)
 * (gzip or plain text). Errors name the file. */
vlm_status vlm_tokenizer_load(vlm_tokenizer **out, const char *path);
/* OpenAI merges file: version line, then "a b" merges; uses merges
 * [1, 49152-256-2+1) like open_clip (fewer if the file is shorter). */
vlm_status vlm_tokenizer_load_openai(vlm_tokenizer **out, const char *path);
vlm_status vlm_tokenizer_load_hf(vlm_tokenizer **out, const char *vocab_json, const char *merges_txt);
void vlm_tokenizer_free(vlm_tokenizer *t);

int vlm_tokenizer_vocab_size(const vlm_tokenizer *t);
int vlm_tokenizer_n_merges(const vlm_tokenizer *t);
int32_t vlm_tokenizer_sot(const vlm_tokenizer *t);   /* <|startoftext|>, 49406 for CLIP */
int32_t vlm_tokenizer_eot(const vlm_tokenizer *t);   /* <|endoftext|>, 49407 for CLIP */
/* The token's string in vocabulary form (byte-unicode chars, "</w>" suffix); NULL if out of range. */
const char *vlm_tokenizer_token(const vlm_tokenizer *t, int32_t id);
int32_t vlm_tokenizer_id(const vlm_tokenizer *t, const char *token);   /* -1 if absent */

/* open_clip's cleaning (see above). Returns malloc'd NUL-terminated UTF-8. */
char *vlm_tokenizer_clean(const char *text, size_t len);

/* BPE ids of text (no sot/eot), malloc'd into *ids (free()), count in *n.
 * Fails only on out-of-memory. */
vlm_status vlm_tokenizer_encode(vlm_tokenizer *t, const char *text, size_t len, int32_t **ids, size_t *n);
/* open_clip's tokenize for one caption: [sot] + ids + [eot], truncated to ctx
 * with the last id forced to eot, padded with pad_id (0 as open_clip, or the
 * eot id as Hugging Face) into out[ctx]. Returns the length before truncation
 * (ids + 2), or -1 on out-of-memory. */
int vlm_tokenizer_encode_ctx(vlm_tokenizer *t, const char *text, size_t len, int ctx, int32_t pad_id, int32_t *out);
/* open_clip's decode: tokens concatenated, bytes decoded (invalid UTF-8 ->
 * U+FFFD), "</w>" -> " ". Ids out of range are skipped. malloc'd string. */
char *vlm_tokenizer_decode(const vlm_tokenizer *t, const int32_t *ids, size_t n);

/* BPE-dropout (training only): each candidate merge is skipped with
 * probability p at every step (Provilkov et al. 2020); p = 0 turns it off.
 * Draws from a vlm_rng seeded with seed; the cache is bypassed while p > 0. */
void vlm_tokenizer_set_dropout(vlm_tokenizer *t, float p, uint64_t seed);

/* Write DIR/vocab.json and DIR/merges.txt (Hugging Face format), each atomically. */
vlm_status vlm_tokenizer_save_hf(const vlm_tokenizer *t, const char *dir);

/* Learn a CLIP-style BPE vocabulary from captions: the same cleaning, split and
 * byte alphabet (256 symbols + 256 with "</w>"), then merges of the most
 * frequent adjacent pair (ties: the pair whose ids are smallest, first id
 * first) until vocab_size ids including <|startoftext|> and <|endoftext|>, or
 * until no pair occurs twice... (no pair left). Deterministic. */
vlm_status vlm_bpe_train(vlm_tokenizer **out, const char *const *texts, const size_t *lens, size_t n, int vocab_size);

#ifdef __cplusplus
}
#endif
#endif
