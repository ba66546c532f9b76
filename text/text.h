/* text: the CLIP tokenizer and the causal text encoder. */
#ifndef VLM_TEXT_H
#define VLM_TEXT_H
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- text encoder ----
 * open_clip's TextTransformer (CLIP text tower), forward and backward over the
 * core op set: token + positional embedding -> causal pre-LN blocks -> ln_final
 * at the pooled position -> @ text_projection -> feature [B,E].
 * Pooling: argmax(ids) per row (open_clip, the EOT id being the largest; ties
 * -> first max), or with eot_id >= 0 the first position whose id is eot_id
 * (Hugging Face's rule when eos_token_id != 2; 0 when a row has none).
 * Parameter names are open_clip's (vlm_text_params_visit, no prefix). */
typedef struct {
  int64_t context_length; /* ctx: positional embedding rows; ids may be shorter */
  int64_t vocab_size;     /* V */
  int64_t width;          /* W */
  int64_t heads;
  int64_t layers;
  int64_t mlp_width;      /* W * mlp_ratio */
  int64_t embed_dim;      /* E */
  vlm_act act;
  float ln_eps;           /* 1e-5 */
  int64_t eot_id;         /* -1: argmax pooling */
  /* CoCa (open_clip's embed_cls): a learned cls embedding appended after the
   * tokens (positions ctx+1), pooling at it; the attention mask is causal plus
   * open_clip's legacy key padding: key j >= 1 masked iff ids[j-1] == pad_id. */
  int embed_cls;
  int64_t pad_id;
} vlm_text_config;

vlm_block_config vlm_text_block_config(const vlm_text_config *c);

typedef struct {
  vlm_tensor token_emb;          /* [V, W] */
  vlm_tensor pos_emb;            /* [ctx, W] ([ctx+1, W] with embed_cls) */
  vlm_tensor cls_emb;            /* [W] (embed_cls only) */
  vlm_block_params *blocks;      /* [layers] (vlm_text_params_alloc) */
  vlm_tensor ln_final_w, ln_final_b; /* [W] */
  vlm_tensor proj;               /* [W, E] text_projection */
} vlm_text_params;

vlm_status vlm_text_params_alloc(vlm_text_params *p, const vlm_text_config *c);
void vlm_text_params_free(vlm_text_params *p);
void vlm_text_params_layout(vlm_text_params *p, vlm_arena *a, const vlm_text_config *c);
void vlm_text_params_visit(vlm_text_params *p, const vlm_text_config *c, const char *prefix,
                           vlm_param_visit_fn fn, void *ctx);

typedef struct {
  int64_t B, L;                 /* L token ids; the sequence is S = L + embed_cls long */
  vlm_tensor *xs;               /* [layers+1] of [B, S, W]: xs[0] = embeddings */
  vlm_tensor emb;               /* [B, L, W] token embeddings (embed_cls only) */
  vlm_tensor kpm;               /* [B, S] U8 key padding mask (embed_cls only) */
  vlm_block_acts *blocks;       /* [layers] */
  int64_t *pool_idx;            /* [B] pooled position per row (heap, vlm_text_acts_alloc) */
  vlm_tensor pool_rows;         /* [B, 1] I64: row b*S + pool_idx[b] of xs[layers] viewed [B*S, W] */
  vlm_tensor pooled;            /* [B, W] */
  vlm_tensor ln_final;          /* [B, W] */
  vlm_tensor ln_mean, ln_rstd;  /* [B] */
  vlm_tensor features;          /* [B, E] (unnormalized) */
  vlm_block_scratch scratch;
  vlm_tensor dx_a, dx_b;        /* [B, S, W] */
  vlm_tensor d_pooled, d_ln;    /* [B, W] */
  vlm_tensor ids_cut;           /* [B, L] I64: ids cut after the last pooled position (pooled_only) */
  int64_t n_cut;                /* pooled_only: the positions the last forward ran (a training backward reads it) */
  vlm_tensor kpm_rows;          /* [B, L] U8: keys after each row's pooled position (pooled_only) */
  int with_backward;
  /* Set by the layout: vlm_text_forward then (1) runs only the positions a
   * pooled row can see (up to the batch's last EOT; with CoCa's cls, up to
   * the key after the last non-pad token), rounded up to a multiple of 8, and
   * (2) runs the last block for the pooled rows only (vlm_block_forward_rows;
   * in training, with vlm_block_backward_rows behind it; training with CoCa's
   * cls text keeps every row). Features and gradients are unchanged up to
   * rounding; the token states are not kept, so a caller of vlm_text_tokens
   * clears it after the layout. A cls text on a GPU runs every row in
   * inference too (its embedding is CPU-only). */
  int pooled_only;
} vlm_text_acts;

vlm_status vlm_text_acts_alloc(vlm_text_acts *s, const vlm_text_config *c, int64_t B);
void vlm_text_acts_free(vlm_text_acts *s);
void vlm_text_acts_layout(vlm_text_acts *s, vlm_arena *a, const vlm_text_config *c, int64_t B, int64_t L,
                          int with_backward);

/* Pooled position of each row of ids [B,L] (I32/I64, CPU) into idx[B]. */
void vlm_text_pool_index(const vlm_text_config *c, const vlm_tensor *ids, int64_t *idx);
/* ids [B,L] I32/I64 on the CPU, B and L as laid out. Result in s->features. */
void vlm_text_forward(const vlm_text_config *c, const vlm_text_params *p, vlm_text_acts *s, const vlm_tensor *ids);
void vlm_text_backward(const vlm_text_config *c, const vlm_text_params *p, vlm_text_params *g, vlm_text_acts *s,
                       const vlm_tensor *ids, const vlm_tensor *d_features);
/* The same plus d_tokens [B,L,W] (or NULL): the gradient of the token states
 * xs[layers][:, :L] (before ln_final; CoCa's decoder input). */
void vlm_text_backward_tokens(const vlm_text_config *c, const vlm_text_params *p, vlm_text_params *g,
                              vlm_text_acts *s, const vlm_tensor *ids, const vlm_tensor *d_features,
                              const vlm_tensor *d_tokens);
/* Copy the token states xs[layers][:, :L] into out [B,L,W]. */
void vlm_text_tokens(const vlm_text_config *c, const vlm_text_acts *s, vlm_tensor *out);
/* ---- end text encoder ---- */

/* ---- tokenizer ---- */
/* The CLIP byte-level BPE tokenizer, equal to open_clip's SimpleTokenizer:
 *   clean: ftfy-like fixes (NFC, curly quotes -> straight, Latin ligatures and
 *          full-width forms unfolded, C1 controls as Windows-1252, control
 *          characters removed, HTML entities when the line has no '<'), then
 *          html.unescape twice, whitespace runs -> one space, stripped,
 *          lower-cased (Python's str.lower, final sigma included);
 *   split: open_clip's pattern <start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|
 *          'll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+ (OpenAI's BPE file, as open_clip's
 *          SimpleTokenizer names its specials); with a vocab.json the specials' text is
 *          its own <|startoftext|> / <|endoftext|>, as transformers' CLIPTokenizer reads it;
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

/* Load by path: a directory holding vocab.json + merges.txt (Hugging Face) or only a
 * tokenizer.json (a fast tokenizer's), a vocab.json (merges.txt beside it), a tokenizer.json,
 * or OpenAI's bpe_simple_vocab_16e6.txt(.gz) (gzip or plain text). Errors name the file. */
vlm_status vlm_tokenizer_load(vlm_tokenizer **out, const char *path);
/* OpenAI merges file: version line, then "a b" merges; uses merges
 * [1, 49152-256-2+1) like open_clip (fewer if the file is shorter). */
vlm_status vlm_tokenizer_load_openai(vlm_tokenizer **out, const char *path);
vlm_status vlm_tokenizer_load_hf(vlm_tokenizer **out, const char *vocab_json, const char *merges_txt);
/* A Hugging Face fast tokenizer's tokenizer.json (a CLIP byte-level BPE: model.type "BPE", its
 * vocab and merges, end_of_word_suffix "</w>"; added_tokens join the vocabulary). */
vlm_status vlm_tokenizer_load_hf_json(vlm_tokenizer **out, const char *path);
void vlm_tokenizer_free(vlm_tokenizer *t);
/* A deep copy (vocabulary, merges, dropout setting; an empty cache): one per thread.
 * NULL on out-of-memory. (tokenizer_clone.c) */
vlm_tokenizer *vlm_tokenizer_clone(const vlm_tokenizer *t);

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
/* The text of one tokenized caption (open_clip's tokenize output, or a generated one):
 * a leading <|startoftext|> skipped, decoding stopped at the first <|endoftext|> (the
 * padding after it, id 0 "!" in open_clip's layout, dropped), the trailing space of the
 * last "</w>" removed: what open_clip's CoCa example keeps of its decoded text (cut at
 * the end-of-text token, the start-of-text token removed). malloc'd. */
char *vlm_tokenizer_decode_text(const vlm_tokenizer *t, const int32_t *ids, size_t n);

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
/* The smallest vocab_size vlm_bpe_train takes: the 512 byte symbols + the 2 specials. */
#define VLM_BPE_MIN_VOCAB 514
vlm_status vlm_bpe_train(vlm_tokenizer **out, const char *const *texts, const size_t *lens, size_t n, int vocab_size);

#ifdef __cplusplus
}
#endif
#endif
