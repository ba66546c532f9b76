/* The CLIP byte-level BPE tokenizer (open_clip's SimpleTokenizer): vocabulary
#define _POSIX_C_SOURCE 200809L
 * loading (OpenAI gzip merges, Hugging Face vocab.json + merges.txt), the
 * pre-tokenizer, BPE by rank with a cache, encode/decode, open_clip's context
 * truncation, BPE-dropout, HF export. Cleaning is in tokenizer_clean.c, BPE
 * training in tokenizer_train.c. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "text/text.h"
#include "text/tokenizer_internal.h"

/* ------------------------------------------------------------------ byte <-> unicode (GPT-2) */
static int32_t g_b2u[256];
static int16_t g_u2b[512];
static pthread_once_t g_bu_once = PTHREAD_ONCE_INIT;

static void bytes_unicode_build(void) {
  int n = 0;
  for (int b = 0; b < 256; b++) {
    int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    g_b2u[b] = printable ? b : 256 + n++;
  }
  for (int i = 0; i < 512; i++) g_u2b[i] = -1;
  for (int b = 0; b < 256; b++) g_u2b[g_b2u[b]] = (int16_t)b;
}

static void bytes_unicode_init(void) { pthread_once(&g_bu_once, bytes_unicode_build); }

/* The bytes in the order of open_clip's bytes_to_unicode().values(). */
static void bytes_order(int order[256]) {
  int k = 0;
  for (int b = '!'; b <= '~'; b++) order[k++] = b;
  for (int b = 0xA1; b <= 0xAC; b++) order[k++] = b;
  for (int b = 0xAE; b <= 0xFF; b++) order[k++] = b;
  for (int b = 0; b < 256; b++) {
    int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    if (!printable) order[k++] = b;
  }
}

/* ------------------------------------------------------------------ hashing */
static uint64_t hash_bytes(const void *p, size_t n) {
  const unsigned char *s = p;
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
  return h ^ (h >> 29);
}

static size_t pow2_at_least(size_t n) {
  size_t c = 16;
  while (c < n) c *= 2;
  return c;
}

/* ------------------------------------------------------------------ building */
static vlm_tokenizer *tok_new(void) {
  bytes_unicode_init();
  vlm_tokenizer *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->sot = t->eot = -1;
  return t;
}

void vlm_tokenizer_free(vlm_tokenizer *t) {
  if (!t) return;
  for (int i = 0; i < t->n_vocab; i++) free(t->tok[i]);
  free(t->tok);
  free(t->smap);
  free(t->pkey);
  free(t->prank);
  free(t->pnew);
  free(t->merge_a);
  free(t->merge_b);
  free(t->merge_new);
  free(t->cache);
  free(t->ckeys);
  free(t->cids);
  free(t->cps.v);
  free(t->syms);
  free(t);
}

static int32_t smap_find(const vlm_tokenizer *t, const char *s, size_t n) {
  if (!t->smap_cap) return -1;
  size_t mask = t->smap_cap - 1, i = hash_bytes(s, n) & mask;
  for (;; i = (i + 1) & mask) {
    int32_t id = t->smap[i];
    if (id < 0) return -1;
    const char *k = t->tok[id];
    if (strlen(k) == n && !memcmp(k, s, n)) return id;
  }
}

/* Index every token (a later id wins over an earlier equal string, as a Python dict). */
static int smap_build(vlm_tokenizer *t) {
  t->smap_cap = pow2_at_least((size_t)t->n_vocab * 2 + 1);
  t->smap = malloc(t->smap_cap * sizeof *t->smap);
  if (!t->smap) return 0;
  memset(t->smap, 0xff, t->smap_cap * sizeof *t->smap);
  size_t mask = t->smap_cap - 1;
  for (int id = 0; id < t->n_vocab; id++) {
    const char *s = t->tok[id];
    if (!s) continue;
    size_t n = strlen(s), i = hash_bytes(s, n) & mask;
    for (;; i = (i + 1) & mask) {
      int32_t o = t->smap[i];
      if (o < 0 || !strcmp(t->tok[o], s)) { t->smap[i] = id; break; }
    }
  }
  return 1;
}

static size_t pair_slot(const vlm_tokenizer *t, uint64_t key) {
  size_t mask = t->pcap - 1, i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 17) & mask;
  while (t->pkey[i] != UINT64_MAX && t->pkey[i] != key) i = (i + 1) & mask;
  return i;
}

static inline int32_t pair_rank(const vlm_tokenizer *t, int32_t a, int32_t b, int32_t *merged) {
  uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
  size_t i = pair_slot(t, key);
  if (t->pkey[i] == UINT64_MAX) return INT32_MAX;
  *merged = t->pnew[i];
  return t->prank[i];
}

/* merges by rank (merge_a/b/new filled, n_merges set) -> pair map. */
static int pairs_build(vlm_tokenizer *t) {
  t->pcap = pow2_at_least((size_t)t->n_merges * 2 + 1);
  t->pkey = malloc(t->pcap * sizeof *t->pkey);
  t->prank = malloc(t->pcap * sizeof *t->prank);
  t->pnew = malloc(t->pcap * sizeof *t->pnew);
  if (!t->pkey || !t->prank || !t->pnew) return 0;
  memset(t->pkey, 0xff, t->pcap * sizeof *t->pkey);
  for (int r = 0; r < t->n_merges; r++) {
    uint64_t key = (uint64_t)(uint32_t)t->merge_a[r] << 32 | (uint32_t)t->merge_b[r];
    size_t i = pair_slot(t, key);
    t->pkey[i] = key;   /* a repeated pair takes its later rank, as a Python dict */
    t->prank[i] = r;
    t->pnew[i] = t->merge_new[r];
  }
  return 1;
}

/* Byte symbols, specials. */
static vlm_status finish_common(vlm_tokenizer *t, const char *file) {
  for (int b = 0; b < 256; b++) {
    char s[16];
    int n = vlm_tok_utf8_put(s, g_b2u[b]);
    t->byte_id[b] = smap_find(t, s, (size_t)n);
    memcpy(s + n, "</w>", 4);
    t->byte_eow_id[b] = smap_find(t, s, (size_t)n + 4);
    if (t->byte_id[b] < 0 || t->byte_eow_id[b] < 0)
      return vlm_error(VLM_ERR_FORMAT, "%s: the vocabulary has no symbol for byte 0x%02x (with and without </w>)", file, b);
  }
  t->sot = vlm_tokenizer_id(t, "<|startoftext|>");
  if (t->sot < 0) t->sot = vlm_tokenizer_id(t, "<start_of_text>");
  t->eot = vlm_tokenizer_id(t, "<|endoftext|>");
  if (t->eot < 0) t->eot = vlm_tokenizer_id(t, "<end_of_text>");
  if (t->sot < 0 || t->eot < 0)
    return vlm_error(VLM_ERR_FORMAT, "%s: the vocabulary has no <|startoftext|> / <|endoftext|> token", file);
  return VLM_OK;
}

static int merges_alloc(vlm_tokenizer *t, size_t n) {
  t->merge_a = malloc((n + 1) * sizeof *t->merge_a);
  t->merge_b = malloc((n + 1) * sizeof *t->merge_b);
  t->merge_new = malloc((n + 1) * sizeof *t->merge_new);
  return t->merge_a && t->merge_b && t->merge_new;
}

/* Parse "a b" (exactly two symbols separated by whitespace) into the merge table. */
static vlm_status add_merge_line(vlm_tokenizer *t, char *line, size_t len, const char *file, size_t lineno) {
  char *p = line, *end = line + len;
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\r')) p++;
  char *a = p;
  while (p < end && *p != ' ' && *p != '\t' && *p != '\r') p++;
  char *ae = p;
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\r')) p++;
  char *b = p;
  while (p < end && *p != ' ' && *p != '\t' && *p != '\r') p++;
  char *be = p;
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\r')) p++;
  if (a == ae || b == be || p != end)
    return vlm_error(VLM_ERR_FORMAT, "%s:%zu: a merge must be two symbols 'a b'", file, lineno);
  int32_t ia = smap_find(t, a, (size_t)(ae - a)), ib = smap_find(t, b, (size_t)(be - b));
  /* the merged symbol "ab": symbols have no length limit (a BPE trained on long runs of one
   * character makes long ones), so a large pair is joined on the heap */
  char small[1024], *buf = small;
  size_t la = (size_t)(ae - a), lb = (size_t)(be - b);
  if (la + lb > sizeof small && !(buf = malloc(la + lb)))
    return vlm_error(VLM_ERR_OOM, "%s:%zu: out of memory", file, lineno);
  memcpy(buf, a, la);
  memcpy(buf + la, b, lb);
  int32_t in = smap_find(t, buf, la + lb);
  if (buf != small) free(buf);
  if (ia < 0 || ib < 0 || in < 0)
    return vlm_error(VLM_ERR_FORMAT, "%s:%zu: merge '%.*s %.*s' uses a symbol missing from the vocabulary", file,
                     lineno, (int)la, a, (int)lb, b);
  t->merge_a[t->n_merges] = ia;
  t->merge_b[t->n_merges] = ib;
  t->merge_new[t->n_merges] = in;
  t->n_merges++;
  return VLM_OK;
}

/* Read a whole file through zlib (gzip or plain). */
static vlm_status read_gz(const char *path, char **out, size_t *n) {
  gzFile f = gzopen(path, "rb");
  if (!f) return vlm_error(VLM_ERR_IO, "%s: cannot open: %s", path, strerror(errno ? errno : ENOENT));
  size_t cap = 1 << 20, len = 0;
  char *buf = malloc(cap + 1);
  if (!buf) { gzclose(f); return vlm_error(VLM_ERR_OOM, "%s: out of memory", path); }
  for (;;) {
    if (len == cap) {
      if (cap > ((size_t)1 << 31)) { free(buf); gzclose(f); return vlm_error(VLM_ERR_FORMAT, "%s: too large for a vocabulary", path); }
      char *nb = realloc(buf, cap * 2 + 1);
      if (!nb) { free(buf); gzclose(f); return vlm_error(VLM_ERR_OOM, "%s: out of memory", path); }
      buf = nb;
      cap *= 2;
    }
    int r = gzread(f, buf + len, (unsigned)(cap - len > (1u << 30) ? (1u << 30) : cap - len));
    if (r < 0) {
      int zerr = 0;
      const char *msg = gzerror(f, &zerr);
      vlm_status s = vlm_error(VLM_ERR_FORMAT, "%s: corrupt or truncated (zlib: %s)", path, msg ? msg : "?");
      free(buf);
      gzclose(f);
      return s;
    }
    if (r == 0) break;
    len += (size_t)r;
  }
  int zerr = 0;
  const char *msg = gzerror(f, &zerr);
  if (zerr != Z_OK && zerr != Z_STREAM_END) {
    vlm_status s = vlm_error(VLM_ERR_FORMAT, "%s: corrupt or truncated (zlib: %s)", path, msg ? msg : "?");
    free(buf);
    gzclose(f);
    return s;
  }
  gzclose(f);
  buf[len] = 0;
  *out = buf;
  *n = len;
  return VLM_OK;
}

static char *dupn(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d) { memcpy(d, s, n); d[n] = 0; }
  return d;
}

/* t->tok[0..512): the 256 byte symbols in open_clip's order, then each with </w>; 1, or 0 when
 * out of memory (the symbols made so far stay in t->tok, freed with t). */
static int base_symbols(vlm_tokenizer *t) {
  int order[256];
  bytes_order(order);
  for (int i = 0; i < 256; i++) {
    char buf[16];
    int n = vlm_tok_utf8_put(buf, g_b2u[order[i]]);
    t->tok[i] = dupn(buf, (size_t)n);
    memcpy(buf + n, "</w>", 4);
    t->tok[256 + i] = dupn(buf, (size_t)n + 4);
    if (!t->tok[i] || !t->tok[256 + i]) return 0;
  }
  return 1;
}

/* Split a line's two symbols without validation (for the vocabulary pass). */
static int split2(const char *line, size_t len, const char **a, size_t *la, const char **b, size_t *lb) {
  const char *p = line, *end = line + len;
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\r')) p++;
  *a = p;
  while (p < end && *p != ' ' && *p != '\t' && *p != '\r') p++;
  *la = (size_t)(p - *a);
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\r')) p++;
  *b = p;
  while (p < end && *p != ' ' && *p != '\t' && *p != '\r') p++;
  *lb = (size_t)(p - *b);
  return *la && *lb;
}

vlm_status vlm_tokenizer_load_openai(vlm_tokenizer **out, const char *path) {
  *out = NULL;
  char *text = NULL;
  size_t len = 0;
  vlm_status s = read_gz(path, &text, &len);
  if (s) return s;
  if (len == 0 || memchr(text, 0, len)) {
    free(text);
    return vlm_error(VLM_ERR_FORMAT, "%s: not a BPE merges file (empty or binary)", path);
  }
  vlm_tokenizer *t = tok_new();
  /* lines [1, 49152-256-2+1) as open_clip; empty lines are skipped */
  enum { MAX_MERGES = 49152 - 256 - 2 };
  size_t nlines = 0;
  char **lines = malloc((MAX_MERGES + 2) * sizeof *lines);
  size_t *lens = malloc((MAX_MERGES + 2) * sizeof *lens);
  size_t *linenos = malloc((MAX_MERGES + 2) * sizeof *linenos);
  if (!t || !lines || !lens || !linenos) { s = vlm_error(VLM_ERR_OOM, "%s: out of memory", path); goto fail; }
  {
    char *p = text, *end = text + len;
    size_t lineno = 0;
    while (p < end && lineno <= MAX_MERGES) {
      char *nl = memchr(p, '\n', (size_t)(end - p));
      char *le = nl ? nl : end;
      if (lineno >= 1) {
        size_t l = (size_t)(le - p);
        int blank = 1;
        for (size_t k = 0; k < l; k++) if (p[k] != ' ' && p[k] != '\t' && p[k] != '\r') { blank = 0; break; }
        if (!blank) { lines[nlines] = p; lens[nlines] = l; linenos[nlines] = lineno + 1; nlines++; }
      }
      lineno++;
      p = nl ? nl + 1 : end;
    }
  }
  if (nlines == 0) { s = vlm_error(VLM_ERR_FORMAT, "%s: no merges after the version line", path); goto fail; }
  /* vocabulary: 256 byte symbols, the same with </w>, each merge, the two specials */
  t->n_vocab = 512 + (int)nlines + 2;
  t->tok = calloc((size_t)t->n_vocab, sizeof *t->tok);
  if (!t->tok || !merges_alloc(t, nlines)) { s = vlm_error(VLM_ERR_OOM, "%s: out of memory", path); goto fail; }
  if (!base_symbols(t)) { s = vlm_error(VLM_ERR_OOM, "%s: out of memory", path); goto fail; }
  for (size_t m = 0; m < nlines; m++) {
    const char *a, *b;
    size_t la, lb;
    if (!split2(lines[m], lens[m], &a, &la, &b, &lb)) {
      s = vlm_error(VLM_ERR_FORMAT, "%s:%zu: a merge must be two symbols 'a b'", path, linenos[m]);
      goto fail;
    }
    char *c = malloc(la + lb + 1);
    if (!c) { s = vlm_error(VLM_ERR_OOM, "%s: out of memory", path); goto fail; }
    memcpy(c, a, la);
    memcpy(c + la, b, lb);
    c[la + lb] = 0;
    t->tok[512 + m] = c;
  }
  t->tok[512 + nlines] = dupn("<|startoftext|>", 15);
  t->tok[513 + nlines] = dupn("<|endoftext|>", 13);
  t->openclip_specials = 1;   /* the text that stands for them: open_clip's <start_of_text> / <end_of_text> */
  if (!t->tok[512 + nlines] || !t->tok[513 + nlines] || !smap_build(t)) {
    s = vlm_error(VLM_ERR_OOM, "%s: out of memory", path);
    goto fail;
  }
  for (size_t m = 0; m < nlines; m++)
    if ((s = add_merge_line(t, lines[m], lens[m], path, linenos[m]))) goto fail;
  if (!pairs_build(t)) { s = vlm_error(VLM_ERR_OOM, "%s: out of memory", path); goto fail; }
  if ((s = finish_common(t, path))) goto fail;
  free(lines);
  free(lens);
  free(linenos);
  free(text);
  *out = t;
  return VLM_OK;
fail:
  free(lines);
  free(lens);
  free(linenos);
  free(text);
  vlm_tokenizer_free(t);
  return s;
}

static vlm_status read_plain(const char *path, char **out, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return vlm_error(VLM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap + 1);
  while (buf) {
    if (len == cap) {
      char *nb = realloc(buf, cap * 2 + 1);
      if (!nb) { free(buf); buf = NULL; break; }
      buf = nb;
      cap *= 2;
    }
    size_t r = fread(buf + len, 1, cap - len, f);
    len += r;
    if (r == 0) break;
  }
  int err = ferror(f);
  fclose(f);
  if (!buf) return vlm_error(VLM_ERR_OOM, "%s: out of memory", path);
  if (err) { free(buf); return vlm_error(VLM_ERR_IO, "%s: read error", path); }
  buf[len] = 0;
  *out = buf;
  *n = len;
  return VLM_OK;
}

vlm_status vlm_tok_read_plain(const char *path, char **out, size_t *n) { return read_plain(path, out, n); }

vlm_status vlm_tokenizer_load_hf(vlm_tokenizer **out, const char *vocab_json, const char *merges_txt) {
  *out = NULL;
  char *jtext = NULL, *mtext = NULL;
  size_t jlen = 0, mlen = 0;
  vlm_status s = read_plain(vocab_json, &jtext, &jlen);
  if (s) return s;
  if ((s = read_plain(merges_txt, &mtext, &mlen))) { free(jtext); return s; }
  s = vlm_tok_load_hf_text(out, jtext, jlen, mtext, mlen, vocab_json, merges_txt);
  free(jtext);
  free(mtext);
  return s;
}

vlm_status vlm_tok_load_hf_text(vlm_tokenizer **out, const char *jtext, size_t jlen, char *mtext, size_t mlen,
                                const char *vocab_json, const char *merges_txt) {
  *out = NULL;
  cJSON *root = NULL;
  vlm_tokenizer *t = NULL;
  vlm_status s = VLM_OK;
  root = cJSON_ParseWithLength(jtext, jlen);
  if (!root || !cJSON_IsObject(root)) {
    s = vlm_error(VLM_ERR_FORMAT, "%s: not a JSON object of token -> id", vocab_json);
    goto fail;
  }
  t = tok_new();
  if (!t) { s = vlm_error(VLM_ERR_OOM, "out of memory"); goto fail; }
  int max_id = -1, count = 0;
  for (cJSON *it = root->child; it; it = it->next) {
    if (!cJSON_IsNumber(it) || !it->string || it->valuedouble < 0 || it->valuedouble >= (1 << 24) ||
        it->valuedouble != (double)(int)it->valuedouble) {
      s = vlm_error(VLM_ERR_FORMAT, "%s: entry '%s' is not a token with an integer id in [0, 2^24)", vocab_json,
                    it->string ? it->string : "?");
      goto fail;
    }
    if ((int)it->valuedouble > max_id) max_id = (int)it->valuedouble;
    count++;
  }
  if (count == 0) { s = vlm_error(VLM_ERR_FORMAT, "%s: empty vocabulary", vocab_json); goto fail; }
  t->n_vocab = max_id + 1;
  t->tok = calloc((size_t)t->n_vocab, sizeof *t->tok);
  if (!t->tok) { s = vlm_error(VLM_ERR_OOM, "%s: out of memory", vocab_json); goto fail; }
  for (cJSON *it = root->child; it; it = it->next) {
    int id = (int)it->valuedouble;
    if (t->tok[id]) { s = vlm_error(VLM_ERR_FORMAT, "%s: id %d is used twice", vocab_json, id); goto fail; }
    if (!it->string[0] || !(t->tok[id] = dupn(it->string, strlen(it->string)))) {
      s = vlm_error(it->string[0] ? VLM_ERR_OOM : VLM_ERR_FORMAT, "%s: empty token or out of memory (id %d)", vocab_json, id);
      goto fail;
    }
  }
  if (!smap_build(t)) { s = vlm_error(VLM_ERR_OOM, "out of memory"); goto fail; }
  if (memchr(mtext, 0, mlen)) { s = vlm_error(VLM_ERR_FORMAT, "%s: binary data in a merges file", merges_txt); goto fail; }
  size_t nl = 1;
  for (size_t i = 0; i < mlen; i++) nl += mtext[i] == '\n';
  if (!merges_alloc(t, nl)) { s = vlm_error(VLM_ERR_OOM, "out of memory"); goto fail; }
  {
    char *p = mtext, *end = mtext + mlen;
    size_t lineno = 0;
    while (p < end) {
      char *q = memchr(p, '\n', (size_t)(end - p));
      char *le = q ? q : end;
      lineno++;
      size_t l = (size_t)(le - p);
      int blank = 1;
      for (size_t k = 0; k < l; k++) if (p[k] != ' ' && p[k] != '\t' && p[k] != '\r') { blank = 0; break; }
      int header = lineno == 1 && l >= 1 && p[0] == '#';
      if (!blank && !header && (s = add_merge_line(t, p, l, merges_txt, lineno))) goto fail;
      p = q ? q + 1 : end;
    }
  }
  if (!pairs_build(t)) { s = vlm_error(VLM_ERR_OOM, "out of memory"); goto fail; }
  if ((s = finish_common(t, vocab_json))) goto fail;
  cJSON_Delete(root);
  *out = t;
  return VLM_OK;
fail:
  cJSON_Delete(root);
  vlm_tokenizer_free(t);
  return s;
}

static int is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

vlm_status vlm_tokenizer_load(vlm_tokenizer **out, const char *path) {
  *out = NULL;
  size_t n = strlen(path);
  char *v = NULL, *m = NULL;
  if (n >= 14 && !strcmp(path + n - 14, "tokenizer.json") && (n == 14 || path[n - 15] == '/'))
    return vlm_tokenizer_load_hf_json(out, path);
  if (is_dir(path)) {
    /* vocab.json + merges.txt; else the fast tokenizer's tokenizer.json alone */
    char *j = malloc(n + 20);
    if (!j) return vlm_error(VLM_ERR_OOM, "out of memory");
    snprintf(j, n + 20, "%s/vocab.json", path);
    int hf = is_file(j);
    snprintf(j, n + 20, "%s/tokenizer.json", path);
    if (!hf && is_file(j)) {
      vlm_status s = vlm_tokenizer_load_hf_json(out, j);
      free(j);
      return s;
    }
    free(j);
    v = malloc(n + 16);
    m = malloc(n + 16);
    if (!v || !m) { free(v); free(m); return vlm_error(VLM_ERR_OOM, "out of memory"); }
    snprintf(v, n + 16, "%s/vocab.json", path);
    snprintf(m, n + 16, "%s/merges.txt", path);
  } else if (n >= 5 && !strcmp(path + n - 5, ".json")) {
    v = dupn(path, n);
    m = malloc(n + 16);
    if (!v || !m) { free(v); free(m); return vlm_error(VLM_ERR_OOM, "out of memory"); }
    const char *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path) + 1 : 0;
    memcpy(m, path, dl);
    strcpy(m + dl, "merges.txt");
    /* another name than vocab.json with no merges.txt beside it: a fast tokenizer's file */
    if (strcmp(path + dl, "vocab.json") && !is_file(m)) {
      free(v);
      free(m);
      return vlm_tokenizer_load_hf_json(out, path);
    }
  } else {
    return vlm_tokenizer_load_openai(out, path);
  }
  vlm_status s = vlm_tokenizer_load_hf(out, v, m);
  free(v);
  free(m);
  return s;
}

int vlm_tokenizer_vocab_size(const vlm_tokenizer *t) { return t->n_vocab; }
int vlm_tokenizer_n_merges(const vlm_tokenizer *t) { return t->n_merges; }
int32_t vlm_tokenizer_sot(const vlm_tokenizer *t) { return t->sot; }
int32_t vlm_tokenizer_eot(const vlm_tokenizer *t) { return t->eot; }
const char *vlm_tokenizer_token(const vlm_tokenizer *t, int32_t id) {
  return id >= 0 && id < t->n_vocab ? t->tok[id] : NULL;
}
int32_t vlm_tokenizer_id(const vlm_tokenizer *t, const char *token) { return smap_find(t, token, strlen(token)); }

void vlm_tokenizer_set_dropout(vlm_tokenizer *t, float p, uint64_t seed) {
  t->dropout = p > 0 ? (p < 1 ? p : 1) : 0;
  vlm_rng_seed(&t->rng, seed);
}

/* ------------------------------------------------------------------ BPE */
static int ensure_syms(vlm_tokenizer *t, size_t n) {
  if (n <= t->syms_cap) return 1;
  size_t cap = pow2_at_least(n);
  int32_t *s = realloc(t->syms, cap * sizeof *s);
  if (!s) return 0;
  t->syms = s;
  t->syms_cap = cap;
  return 1;
}

/* BPE of one piece's bytes into t->syms; returns the symbol count, -1 on OOM. */
static long bpe_piece(vlm_tokenizer *t, const unsigned char *b, size_t n) {
  if (!ensure_syms(t, n)) return -1;
  int32_t *w = t->syms;
  for (size_t i = 0; i + 1 < n; i++) w[i] = t->byte_id[b[i]];
  w[n - 1] = t->byte_eow_id[b[n - 1]];
  size_t m = n;
  if (t->dropout <= 0) {
    /* open_clip: merge every occurrence of the lowest-ranked pair, left to right */
    while (m > 1) {
      int32_t best = INT32_MAX, ba = 0, bb = 0, bn = 0;
      for (size_t i = 0; i + 1 < m; i++) {
        int32_t nw;
        int32_t r = pair_rank(t, w[i], w[i + 1], &nw);
        if (r < best) { best = r; ba = w[i]; bb = w[i + 1]; bn = nw; }
      }
      if (best == INT32_MAX) break;
      size_t o = 0;
      for (size_t i = 0; i < m;) {
        if (i + 1 < m && w[i] == ba && w[i + 1] == bb) { w[o++] = bn; i += 2; }
        else w[o++] = w[i++];
      }
      m = o;
    }
  } else {
    /* BPE-dropout: every candidate merge is dropped with probability p; the
     * lowest-ranked survivor (leftmost on ties) is applied; none left: stop. */
    while (m > 1) {
      int32_t best = INT32_MAX, bn = 0;
      size_t bi = 0;
      for (size_t i = 0; i + 1 < m; i++) {
        int32_t nw;
        int32_t r = pair_rank(t, w[i], w[i + 1], &nw);
        if (r == INT32_MAX || vlm_rng_uniform(&t->rng) < t->dropout) continue;
        if (r < best) { best = r; bi = i; bn = nw; }
      }
      if (best == INT32_MAX) break;
      w[bi] = bn;
      memmove(w + bi + 1, w + bi + 2, (m - bi - 2) * sizeof *w);
      m--;
    }
  }
  return (long)m;
}

static void cache_reset(vlm_tokenizer *t) {
  if (t->cache) memset(t->cache, 0, t->cache_cap * sizeof *t->cache);
  t->cache_n = t->ckeys_n = t->cids_n = 0;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return 1;
  size_t c = *cap ? *cap : 4096;
  while (c < need) c *= 2;
  void *q = realloc(*p, c * elem);
  if (!q) return 0;
  *p = q;
  *cap = c;
  return 1;
}

/* Double the cache table (up to 2 x CACHE_MAX_ENTRIES slots); on OOM it stays as it is. */
static void cache_grow(vlm_tokenizer *t) {
  size_t nc = t->cache_cap * 2;
  if (nc > (size_t)CACHE_MAX_ENTRIES * 2) return;
  cache_entry *n = calloc(nc, sizeof *n);
  if (!n) return;
  for (size_t i = 0; i < t->cache_cap; i++) {
    if (!t->cache[i].hash) continue;
    size_t j = (size_t)t->cache[i].hash & (nc - 1);
    while (n[j].hash) j = (j + 1) & (nc - 1);
    n[j] = t->cache[i];
  }
  free(t->cache);
  t->cache = n;
  t->cache_cap = nc;
}

/* BPE with the cache; appends the ids to *ids. 0 on OOM. */
static int bpe_cached(vlm_tokenizer *t, const unsigned char *b, size_t n, int32_t **ids, size_t *nid, size_t *cap) {
  cache_entry *e = NULL;
  uint64_t h = 0;
  if (t->dropout <= 0) {
    if (!t->cache) {
      t->cache_cap = 4096;
      t->cache = calloc(t->cache_cap, sizeof *t->cache);
      if (!t->cache) return 0;
    }
    h = hash_bytes(b, n) | 1;   /* 0 marks an empty slot */
    size_t mask = t->cache_cap - 1, i = (size_t)h & mask;
    for (;; i = (i + 1) & mask) {
      e = &t->cache[i];
      if (!e->hash) break;
      if (e->hash == h && e->key_len == n && !memcmp(t->ckeys + e->key_off, b, n)) {
        if (!grow((void **)ids, cap, *nid + e->ids_len, sizeof **ids)) return 0;
        memcpy(*ids + *nid, t->cids + e->ids_off, e->ids_len * sizeof **ids);
        *nid += e->ids_len;
        return 1;
      }
    }
  }
  long m = bpe_piece(t, b, n);
  if (m < 0 || !grow((void **)ids, cap, *nid + (size_t)m, sizeof **ids)) return 0;
  memcpy(*ids + *nid, t->syms, (size_t)m * sizeof **ids);
  *nid += (size_t)m;
  if (e) {
    if (t->cache_n >= CACHE_MAX_ENTRIES || t->ckeys_n + n > UINT32_MAX || t->cids_n + (size_t)m > UINT32_MAX) {
      cache_reset(t);   /* bounded memory: start over (rare) */
      return 1;
    }
    if (!grow((void **)&t->ckeys, &t->ckeys_cap, t->ckeys_n + n, 1) ||
        !grow((void **)&t->cids, &t->cids_cap, t->cids_n + (size_t)m, sizeof *t->cids))
      return 1;   /* not cached; the result stands */
    memcpy(t->ckeys + t->ckeys_n, b, n);
    memcpy(t->cids + t->cids_n, t->syms, (size_t)m * sizeof *t->cids);
    e->hash = h;
    e->key_off = (uint32_t)t->ckeys_n;
    e->key_len = (uint32_t)n;
    e->ids_off = (uint32_t)t->cids_n;
    e->ids_len = (uint32_t)m;
    t->ckeys_n += n;
    t->cids_n += (size_t)m;
    t->cache_n++;
    if (t->cache_n * 2 > t->cache_cap) cache_grow(t);
  }
  return 1;
}

/* ------------------------------------------------------------------ pre-tokenizer + encode */
static const char k_sot_text[] = "<|startoftext|>", k_eot_text[] = "<|endoftext|>";
/* open_clip's SimpleTokenizer names its specials so (its pattern, case-insensitive, on lowered text) */
static const char k_oc_sot_text[] = "<start_of_text>", k_oc_eot_text[] = "<end_of_text>";

static int match_ascii(const int32_t *v, size_t n, size_t i, const char *s) {
  size_t l = strlen(s);
  if (i + l > n) return 0;
  for (size_t k = 0; k < l; k++)
    if (v[i + k] != (unsigned char)s[k]) return 0;
  return 1;
}

static int32_t ascii_lower(int32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* Length of a contraction 's 't 're 've 'm 'll 'd at i (case-insensitive), else 0. */
static size_t contraction(const int32_t *v, size_t n, size_t i) {
  if (v[i] != '\'' || i + 1 >= n) return 0;
  int32_t c = ascii_lower(v[i + 1]);
  if (c == 's' || c == 't' || c == 'm' || c == 'd') return 2;
  if (i + 2 < n) {
    int32_t d = ascii_lower(v[i + 2]);
    if ((c == 'r' && d == 'e') || (c == 'v' && d == 'e') || (c == 'l' && d == 'l')) return 3;
  }
  return 0;
}

/* U+0345 (combining ypogegrammeni, Mn) matches no branch of open_clip's
 * case-insensitive pattern: its case variants are letters, so the negated class
 * rejects it, and \p{L} does not take it. The regex skips it like a space. */
static inline int skipped(int32_t c) { return vlm_tok_is_space(c) || c == 0x345; }

int vlm_tok_next_piece(const int32_t *v, size_t n, size_t *pi, size_t *ps, size_t *pe, int openclip_specials) {
  size_t i = *pi;
  while (i < n && skipped(v[i])) i++;
  if (i >= n) { *pi = n; return 0; }
  int32_t c = v[i];
  const char *sot = openclip_specials ? k_oc_sot_text : k_sot_text, *eot = openclip_specials ? k_oc_eot_text : k_eot_text;
  if (c == '<' && match_ascii(v, n, i, sot)) { *ps = i; *pi = *pe = i + strlen(sot); return 2; }
  if (c == '<' && match_ascii(v, n, i, eot)) { *ps = i; *pi = *pe = i + strlen(eot); return 3; }
  size_t e, cl = contraction(v, n, i);
  if (cl) e = i + cl;
  else if (vlm_tok_is_letter(c)) {
    e = i + 1;
    while (e < n && vlm_tok_is_letter(v[e])) e++;
  } else if (vlm_tok_is_number(c)) {
    e = i + 1;
  } else {
    e = i + 1;
    while (e < n && !skipped(v[e]) && !vlm_tok_is_letter(v[e]) && !vlm_tok_is_number(v[e])) e++;
  }
  *ps = i;
  *pi = *pe = e;
  return 1;
}

vlm_status vlm_tok_encode_cps(vlm_tokenizer *t, const int32_t *v, size_t n, int32_t **ids, size_t *nid, size_t *cap) {
  unsigned char sbuf[256];
  unsigned char *buf = sbuf;
  size_t bcap = sizeof sbuf;
  size_t pos = 0, i, e;
  int kind;
  while ((kind = vlm_tok_next_piece(v, n, &pos, &i, &e, t->openclip_specials))) {
    if (kind != 1) {
      if (!grow((void **)ids, cap, *nid + 1, sizeof **ids)) goto oom;
      (*ids)[(*nid)++] = kind == 2 ? t->sot : t->eot;
      continue;
    }
    /* piece [i, e) -> UTF-8 bytes -> BPE */
    if ((e - i) * 4 > bcap) {
      size_t nc = (e - i) * 4;
      unsigned char *nb = buf == sbuf ? malloc(nc) : realloc(buf, nc);
      if (!nb) goto oom;
      buf = nb;
      bcap = nc;
    }
    size_t bl = 0;
    for (size_t k = i; k < e; k++) bl += (size_t)vlm_tok_utf8_put((char *)buf + bl, v[k]);
    if (!bpe_cached(t, buf, bl, ids, nid, cap)) goto oom;
  }
  if (buf != sbuf) free(buf);
  return VLM_OK;
oom:
  if (buf != sbuf) free(buf);
  return vlm_error(VLM_ERR_OOM, "tokenizer: out of memory");
}

static vlm_status encode_into(vlm_tokenizer *t, const char *text, size_t len, int32_t **ids, size_t *nid, size_t *cap) {
  if (!vlm_tok_utf8_decode(&t->cps, text, len) || !vlm_tok_clean_cps(&t->cps))
    return vlm_error(VLM_ERR_OOM, "tokenizer: out of memory");
  return vlm_tok_encode_cps(t, t->cps.v, t->cps.n, ids, nid, cap);
}

vlm_status vlm_tokenizer_encode(vlm_tokenizer *t, const char *text, size_t len, int32_t **ids, size_t *n) {
  *ids = NULL;
  *n = 0;
  size_t cap = 0;
  vlm_status s = encode_into(t, text, len, ids, n, &cap);
  if (s) { free(*ids); *ids = NULL; *n = 0; }
  return s;
}

int vlm_tokenizer_encode_ctx(vlm_tokenizer *t, const char *text, size_t len, int ctx, int32_t pad_id, int32_t *out) {
  VLM_CHECK(ctx >= 1, "tokenizer: context length must be >= 1, got %d", ctx);
  int32_t *ids = NULL;
  size_t n = 0, cap = 0;
  if (!grow((void **)&ids, &cap, 64, sizeof *ids)) return -1;
  ids[n++] = t->sot;
  if (encode_into(t, text, len, &ids, &n, &cap) || !grow((void **)&ids, &cap, n + 1, sizeof *ids)) {
    free(ids);
    return -1;
  }
  ids[n++] = t->eot;
  size_t k = n < (size_t)ctx ? n : (size_t)ctx;
  memcpy(out, ids, k * sizeof *out);
  if (n > (size_t)ctx) out[ctx - 1] = t->eot;
  for (size_t i = k; i < (size_t)ctx; i++) out[i] = pad_id;
  free(ids);
  return n > INT_MAX ? INT_MAX : (int)n;
}

char *vlm_tokenizer_decode(const vlm_tokenizer *t, const int32_t *ids, size_t n) {
  size_t len = 0;
  for (size_t i = 0; i < n; i++)
    if (ids[i] >= 0 && ids[i] < t->n_vocab && t->tok[ids[i]]) len += strlen(t->tok[ids[i]]);
  unsigned char *raw = malloc(len + 1);
  if (!raw) return NULL;
  /* token chars -> bytes through the byte decoder (other chars keep their UTF-8) */
  size_t o = 0;
  vlm_tok_cps cps = {0};
  for (size_t i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= t->n_vocab || !t->tok[ids[i]]) continue;
    const char *s = t->tok[ids[i]];
    if (!vlm_tok_utf8_decode(&cps, s, strlen(s))) { free(raw); free(cps.v); return NULL; }
    for (size_t k = 0; k < cps.n; k++) {
      int32_t c = cps.v[k];
      if (c < 512 && g_u2b[c] >= 0) raw[o++] = (unsigned char)g_u2b[c];
      else o += (size_t)vlm_tok_utf8_put((char *)raw + o, c);
    }
  }
  /* decode with replacement, then "</w>" -> " " */
  if (!vlm_tok_utf8_decode(&cps, (const char *)raw, o)) { free(raw); free(cps.v); return NULL; }
  free(raw);
  char *out = malloc(cps.n * 4 + 1);
  if (!out) { free(cps.v); return NULL; }
  size_t w = 0;
  for (size_t k = 0; k < cps.n; k++) {
    if (cps.v[k] == '<' && match_ascii(cps.v, cps.n, k, "</w>")) { out[w++] = ' '; k += 3; continue; }
    w += (size_t)vlm_tok_utf8_put(out + w, cps.v[k]);
  }
  out[w] = 0;
  free(cps.v);
  return out;
}

char *vlm_tokenizer_decode_text(const vlm_tokenizer *t, const int32_t *ids, size_t n) {
  size_t b = n && ids[0] == t->sot ? 1 : 0, e = b;
  while (e < n && ids[e] != t->eot) e++;
  char *s = vlm_tokenizer_decode(t, ids + b, e - b);
  if (s) {   /* the last word's "</w>" leaves a space */
    size_t k = strlen(s);
    while (k && s[k - 1] == ' ') s[--k] = 0;
  }
  return s;
}

/* ------------------------------------------------------------------ export */
vlm_status vlm_tokenizer_save_hf(const vlm_tokenizer *t, const char *dir) {
  size_t dl = strlen(dir);
  char *path = malloc(dl + 16);
  if (!path) return vlm_error(VLM_ERR_OOM, "out of memory");
  cJSON *root = cJSON_CreateObject();
  vlm_status s = VLM_OK;
  if (!root) { free(path); return vlm_error(VLM_ERR_OOM, "out of memory"); }
  for (int id = 0; id < t->n_vocab; id++)
    if (t->tok[id] && !cJSON_AddNumberToObject(root, t->tok[id], id)) { s = vlm_error(VLM_ERR_OOM, "out of memory"); break; }
  char *json = s ? NULL : cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  if (!s && !json) s = vlm_error(VLM_ERR_OOM, "out of memory");
  /* vocab.json and merges.txt are one vocabulary: both replaced, or neither */
  vlm_atomic_file af[2];
  if (!s) {
    snprintf(path, dl + 16, "%s/vocab.json", dir);
    s = vlm_atomic_stage(&af[0], path, json, strlen(json));
  }
  free(json);
  if (!s) {
    snprintf(path, dl + 16, "%s/merges.txt", dir);
    s = vlm_atomic_open(&af[1], path);
    if (!s) {
      errno = 0;
      int bad = fputs("#version: 0.2\n", af[1].f) < 0;
      for (int r = 0; r < t->n_merges && !bad; r++)
        bad = fprintf(af[1].f, "%s %s\n", t->tok[t->merge_a[r]], t->tok[t->merge_b[r]]) < 0;
      if (bad) {
        int e = errno ? errno : EIO;
        vlm_atomic_abort(&af[1]);
        s = vlm_error(VLM_ERR_IO, "%s: cannot write: %s", path, strerror(e));
      }
    }
    if (s) vlm_atomic_abort(&af[0]);
    else s = vlm_atomic_commit_all(af, 2);
  }
  free(path);
  return s;
}

/* ------------------------------------------------------------------ for training */
/* Build a tokenizer from the 512 base symbols + merges (as id pairs, new ids
 * 512 + rank) + the two specials. Used by vlm_bpe_train. */
vlm_status vlm_tok_from_merges(vlm_tokenizer **out, const int32_t *ma, const int32_t *mb, int n_merges) {
  *out = NULL;
  vlm_tokenizer *t = tok_new();
  if (!t) return vlm_error(VLM_ERR_OOM, "out of memory");
  t->n_vocab = 512 + n_merges + 2;
  t->tok = calloc((size_t)t->n_vocab, sizeof *t->tok);
  if (!t->tok || !merges_alloc(t, (size_t)n_merges)) goto oom;
  if (!base_symbols(t)) goto oom;
  for (int r = 0; r < n_merges; r++) {
    const char *a = t->tok[ma[r]], *b = t->tok[mb[r]];
    size_t la = strlen(a), lb = strlen(b);
    char *c = malloc(la + lb + 1);
    if (!c) goto oom;
    memcpy(c, a, la);
    memcpy(c + la, b, lb + 1);
    t->tok[512 + r] = c;
    t->merge_a[r] = ma[r];
    t->merge_b[r] = mb[r];
    t->merge_new[r] = 512 + r;
  }
  t->n_merges = n_merges;
  t->tok[512 + n_merges] = dupn(k_sot_text, sizeof k_sot_text - 1);
  t->tok[513 + n_merges] = dupn(k_eot_text, sizeof k_eot_text - 1);
  if (!t->tok[512 + n_merges] || !t->tok[513 + n_merges] || !smap_build(t) || !pairs_build(t)) goto oom;
  vlm_status s = finish_common(t, "bpe-train");
  if (s) { vlm_tokenizer_free(t); return s; }
  *out = t;
  return VLM_OK;
oom:
  vlm_tokenizer_free(t);
  return vlm_error(VLM_ERR_OOM, "out of memory");
}

/* Base symbol ids (bytes_order position) for training words. */
void vlm_tok_base_ids(int32_t byte_id[256], int32_t byte_eow_id[256]) {
  int order[256];
  bytes_order(order);
  for (int i = 0; i < 256; i++) {
    byte_id[order[i]] = i;
    byte_eow_id[order[i]] = 256 + i;
  }
}
