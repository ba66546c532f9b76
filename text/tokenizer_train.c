/* BPE training: learn CLIP-style merges from a caption corpus.
 * Each caption is cleaned and split exactly as for encoding; the distinct
 * pieces (as UTF-8 bytes -> base symbols, "</w>" on the last) are counted;
 * then, repeatedly, the adjacent pair with the highest count (weighted by the
 * piece counts) is merged everywhere, left to right without overlap - the same
 * rule encoding replays by rank. Ties go to the smallest (first id, second id),
 * so the result depends only on the corpus. Pair counts are recomputed for
 * every merge: O(merges x symbols in distinct pieces), fine for caption
 * corpora of a few hundred thousand distinct words. */
#include <stdlib.h>
#include <string.h>

#include "text/text.h"
#include "text/tokenizer_internal.h"

typedef struct {
  int32_t *sym;
  int32_t n;
  int64_t count;
} word;

typedef struct {
  uint64_t *key;   /* UINT64_MAX = empty */
  int64_t *val;
  size_t cap, n;
} u64map;

static size_t u64_slot(const u64map *m, uint64_t key) {
  size_t mask = m->cap - 1, i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & mask;
  while (m->key[i] != UINT64_MAX && m->key[i] != key) i = (i + 1) & mask;
  return i;
}

static int u64_init(u64map *m, size_t cap) {
  m->cap = 16;
  while (m->cap < cap * 2) m->cap *= 2;
  m->key = malloc(m->cap * sizeof *m->key);
  m->val = malloc(m->cap * sizeof *m->val);
  m->n = 0;
  if (!m->key || !m->val) return 0;
  memset(m->key, 0xff, m->cap * sizeof *m->key);
  return 1;
}

static int u64_add(u64map *m, uint64_t key, int64_t v) {
  if ((m->n + 1) * 2 > m->cap) {
    u64map g;
    if (!u64_init(&g, m->cap)) { free(g.key); free(g.val); return 0; }
    for (size_t i = 0; i < m->cap; i++)
      if (m->key[i] != UINT64_MAX) {
        size_t j = u64_slot(&g, m->key[i]);
        g.key[j] = m->key[i];
        g.val[j] = m->val[i];
        g.n++;
      }
    free(m->key);
    free(m->val);
    *m = g;
  }
  size_t i = u64_slot(m, key);
  if (m->key[i] == UINT64_MAX) { m->key[i] = key; m->val[i] = 0; m->n++; }
  m->val[i] += v;
  return 1;
}

/* distinct pieces: bytes -> index in words[] */
typedef struct {
  uint64_t *hash;
  int32_t *idx;
  size_t cap;
} wordmap;

static uint64_t hbytes(const unsigned char *s, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
  return h | 1;
}

vlm_status vlm_bpe_train(vlm_tokenizer **out, const char *const *texts, const size_t *lens, size_t n_texts,
                         int vocab_size) {
  *out = NULL;
  if (vocab_size < 514)
    return vlm_error(VLM_ERR_ARG, "bpe-train: the vocabulary size must be at least 514 (512 byte symbols + 2 specials), got %d", vocab_size);
  int n_target = vocab_size - 514;
  int32_t byte_id[256], byte_eow[256];
  vlm_tok_base_ids(byte_id, byte_eow);

  vlm_status st = VLM_OK;
  word *words = NULL;
  size_t n_words = 0, cap_words = 0;
  /* keys kept as bytes for equality */
  unsigned char **wkeys = NULL;
  size_t *wlens = NULL;
  wordmap wm = {0};
  u64map pairs = {0};
  int32_t *ma = NULL, *mb = NULL;
  vlm_tok_cps cps = {0};
  unsigned char *buf = NULL;
  size_t bcap = 0;
  wm.cap = 1 << 12;
  wm.hash = calloc(wm.cap, sizeof *wm.hash);
  wm.idx = malloc(wm.cap * sizeof *wm.idx);
  ma = malloc((size_t)(n_target + 1) * sizeof *ma);
  mb = malloc((size_t)(n_target + 1) * sizeof *mb);
  if (!wm.hash || !wm.idx || !ma || !mb) goto oom;

  for (size_t t = 0; t < n_texts; t++) {
    size_t len = lens ? lens[t] : strlen(texts[t]);
    if (!vlm_tok_utf8_decode(&cps, texts[t], len) || !vlm_tok_clean_cps(&cps)) goto oom;
    size_t pos = 0, s, e;
    int kind;
    while ((kind = vlm_tok_next_piece(cps.v, cps.n, &pos, &s, &e))) {
      if (kind != 1) continue;
      if ((e - s) * 4 > bcap) {
        bcap = (e - s) * 4 + 64;
        unsigned char *nb = realloc(buf, bcap);
        if (!nb) goto oom;
        buf = nb;
      }
      size_t bl = 0;
      for (size_t k = s; k < e; k++) bl += (size_t)vlm_tok_utf8_put((char *)buf + bl, cps.v[k]);
      uint64_t h = hbytes(buf, bl);
      size_t mask = wm.cap - 1, i = (size_t)h & mask;
      int found = 0;
      for (; wm.hash[i]; i = (i + 1) & mask) {
        int32_t w = wm.idx[i];
        if (wm.hash[i] == h && wlens[w] == bl && !memcmp(wkeys[w], buf, bl)) { words[w].count++; found = 1; break; }
      }
      if (found) continue;
      if (n_words == cap_words) {
        cap_words = cap_words ? cap_words * 2 : 1024;
        word *nw = realloc(words, cap_words * sizeof *nw);
        if (!nw) goto oom;
        words = nw;
        unsigned char **nk = realloc(wkeys, cap_words * sizeof *nk);
        if (!nk) goto oom;
        wkeys = nk;
        size_t *nl = realloc(wlens, cap_words * sizeof *nl);
        if (!nl) goto oom;
        wlens = nl;
      }
      word *w = &words[n_words];
      w->sym = malloc(bl * sizeof *w->sym);
      wkeys[n_words] = malloc(bl);
      if (!w->sym || !wkeys[n_words]) { free(w->sym); free(wkeys[n_words]); goto oom; }
      memcpy(wkeys[n_words], buf, bl);
      wlens[n_words] = bl;
      for (size_t k = 0; k + 1 < bl; k++) w->sym[k] = byte_id[buf[k]];
      w->sym[bl - 1] = byte_eow[buf[bl - 1]];
      w->n = (int32_t)bl;
      w->count = 1;
      wm.hash[i] = h;
      wm.idx[i] = (int32_t)n_words;
      n_words++;
      if (n_words * 2 > wm.cap) {   /* grow the word map */
        size_t nc = wm.cap * 2;
        uint64_t *nh = calloc(nc, sizeof *nh);
        int32_t *ni = malloc(nc * sizeof *ni);
        if (!nh || !ni) { free(nh); free(ni); goto oom; }
        for (size_t q = 0; q < wm.cap; q++)
          if (wm.hash[q]) {
            size_t j = (size_t)wm.hash[q] & (nc - 1);
            while (nh[j]) j = (j + 1) & (nc - 1);
            nh[j] = wm.hash[q];
            ni[j] = wm.idx[q];
          }
        free(wm.hash);
        free(wm.idx);
        wm.hash = nh;
        wm.idx = ni;
        wm.cap = nc;
      }
    }
  }

  int n_merges = 0;
  if (!u64_init(&pairs, 1 << 12)) goto oom;
  while (n_merges < n_target) {
    memset(pairs.key, 0xff, pairs.cap * sizeof *pairs.key);
    pairs.n = 0;
    for (size_t w = 0; w < n_words; w++)
      for (int32_t k = 0; k + 1 < words[w].n; k++)
        if (!u64_add(&pairs, (uint64_t)(uint32_t)words[w].sym[k] << 32 | (uint32_t)words[w].sym[k + 1], words[w].count))
          goto oom;
    uint64_t best = UINT64_MAX;
    int64_t best_n = 0;
    for (size_t i = 0; i < pairs.cap; i++)
      if (pairs.key[i] != UINT64_MAX && (pairs.val[i] > best_n || (pairs.val[i] == best_n && pairs.key[i] < best))) {
        best = pairs.key[i];
        best_n = pairs.val[i];
      }
    if (best_n == 0) break;
    int32_t a = (int32_t)(best >> 32), b = (int32_t)(best & 0xffffffffu), nid = 512 + n_merges;
    ma[n_merges] = a;
    mb[n_merges] = b;
    n_merges++;
    for (size_t w = 0; w < n_words; w++) {
      int32_t *sy = words[w].sym, m = words[w].n, o = 0;
      for (int32_t k = 0; k < m;) {
        if (k + 1 < m && sy[k] == a && sy[k + 1] == b) { sy[o++] = nid; k += 2; }
        else sy[o++] = sy[k++];
      }
      words[w].n = o;
    }
  }
  st = vlm_tok_from_merges(out, ma, mb, n_merges);
  goto done;
oom:
  st = vlm_error(VLM_ERR_OOM, "bpe-train: out of memory");
done:
  for (size_t w = 0; w < n_words; w++) { free(words[w].sym); free(wkeys[w]); }
  free(words);
  free(wkeys);
  free(wlens);
  free(wm.hash);
  free(wm.idx);
  free(pairs.key);
  free(pairs.val);
  free(ma);
  free(mb);
  free(cps.v);
  free(buf);
  return st;
}
