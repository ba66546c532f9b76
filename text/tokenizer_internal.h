/* Internals shared by text/tokenizer*.c (not part of the public contract). */
#ifndef VLM_TEXT_TOKENIZER_INTERNAL_H
#define VLM_TEXT_TOKENIZER_INTERNAL_H
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

typedef struct {
  const char *name;
  int32_t cp[2];
} vlm_tok_entity;
extern const vlm_tok_entity vlm_tok_entities[];
extern const int vlm_tok_n_entities;

/* A growable code point buffer. */
typedef struct {
  int32_t *v;
  size_t n, cap;
} vlm_tok_cps;

/* Decode UTF-8 like Python's errors="replace" (each maximal invalid subpart -> U+FFFD). */
int vlm_tok_utf8_decode(vlm_tok_cps *out, const char *s, size_t n);
/* Append the UTF-8 of code point c to buf (4 bytes room needed); returns bytes written. */
int vlm_tok_utf8_put(char *buf, int32_t c);
/* Clean as open_clip (ftfy-like, html unescape x2, whitespace, lower), in place on cps. 0 on OOM. */
int vlm_tok_clean_cps(vlm_tok_cps *t);
int vlm_tok_is_space(int32_t c);
int vlm_tok_is_letter(int32_t c);
int vlm_tok_is_number(int32_t c);
int vlm_tok_cps_reserve(vlm_tok_cps *b, size_t n);

#define CACHE_MAX_ENTRIES (1u << 18)

typedef struct {
  uint64_t hash;
  uint32_t key_off, key_len, ids_off, ids_len;
} cache_entry;

/* The tokenizer object (defined here so tokenizer_clone.c can copy it). */
struct vlm_tokenizer {
  int n_vocab;
  char **tok;          /* per id: vocabulary string (NULL for a hole in an HF vocab) */
  int32_t *smap;       /* open addressing over tok[], -1 = empty */
  size_t smap_cap;
  uint64_t *pkey;      /* pair map: (a << 32 | b) -> rank, merged id */
  int32_t *prank, *pnew;
  size_t pcap;
  int n_merges;
  int32_t *merge_a, *merge_b, *merge_new;   /* by rank */
  int32_t byte_id[256], byte_eow_id[256];
  int32_t sot, eot;
  int openclip_specials;   /* 1: OpenAI's BPE file, read as open_clip's SimpleTokenizer reads it:
                              the text "<start_of_text>" / "<end_of_text>" is the special token;
                              0 (a vocab.json): "<|startoftext|>" / "<|endoftext|>", as its
                              vocabulary names them (transformers' CLIPTokenizer) */
  /* cache: piece bytes -> ids */
  cache_entry *cache;
  size_t cache_cap, cache_n;
  char *ckeys;
  size_t ckeys_n, ckeys_cap;
  int32_t *cids;
  size_t cids_n, cids_cap;
  /* scratch */
  vlm_tok_cps cps;
  int32_t *syms;
  size_t syms_cap;
  float dropout;
  vlm_rng rng;
};

/* Pre-tokenize + BPE code points already cleaned; appends to *ids (capacity *cap). */
vlm_status vlm_tok_encode_cps(struct vlm_tokenizer *t, const int32_t *v, size_t n, int32_t **ids, size_t *nid, size_t *cap);
/* Training helpers (tokenizer.c). */
vlm_status vlm_tok_from_merges(struct vlm_tokenizer **out, const int32_t *ma, const int32_t *mb, int n_merges);
void vlm_tok_base_ids(int32_t byte_id[256], int32_t byte_eow_id[256]);
/* Next piece of open_clip's pattern in v[*i..n): returns 0 at the end, 1 for a
 * piece [*s, *e), 2 / 3 for <|startoftext|> / <|endoftext|>. Advances *i. */
int vlm_tok_next_piece(const int32_t *v, size_t n, size_t *i, size_t *s, size_t *e, int openclip_specials);
/* Hugging Face vocab.json text + merges.txt text (modified in place) -> a tokenizer; the names
 * are for messages (tokenizer.c). */
vlm_status vlm_tok_load_hf_text(struct vlm_tokenizer **out, const char *jtext, size_t jlen, char *mtext, size_t mlen,
                                const char *vocab_json, const char *merges_txt);
/* A whole text file (no NUL added to the count; at most the vocabulary limit). */
vlm_status vlm_tok_read_plain(const char *path, char **out, size_t *n);
#endif
