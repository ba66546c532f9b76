/* BPE training: learn CLIP-style merges from a caption corpus.
 * Each caption is cleaned and split exactly as for encoding; the distinct
 * pieces (as UTF-8 bytes -> base symbols, "</w>" on the last) are counted;
 * then, repeatedly, the adjacent pair with the highest count (weighted by the
 * piece counts) is merged everywhere, left to right without overlap - the same
 * rule encoding replays by rank. Ties go to the smallest (first id, second id),
 * so the result depends only on the corpus. Pair counts are kept up to date
 * incrementally (each pair knows the words it occurs in) and the next pair
 * comes from a max-heap with lazy deletion, so a merge costs the size of
 * the words it touches. */
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

#define PKEY(a, b) ((uint64_t)(uint32_t)(a) << 32 | (uint32_t)(b))

/* per pair: its count and the words it occurs in (may hold stale entries) */
typedef struct {
  int64_t count;
  int32_t *words;
  int32_t nw, cw;
} pairinfo;

static int pinfo_add_word(pairinfo *p, int32_t w) {
  if (p->nw && p->words[p->nw - 1] == w) return 1;
  if (p->nw == p->cw) {
    int32_t c = p->cw ? p->cw * 2 : 4;
    int32_t *nw = realloc(p->words, (size_t)c * sizeof *nw);
    if (!nw) return 0;
    p->words = nw;
    p->cw = c;
  }
  p->words[p->nw++] = w;
  return 1;
}

static int32_t pair_find(const u64map *m, uint64_t key) {
  size_t i = u64_slot(m, key);
  return m->key[i] == UINT64_MAX ? -1 : (int32_t)m->val[i];
}

/* index of key's pairinfo, created at count 0 if new; -1 on OOM */
static int32_t pair_get(u64map *m, pairinfo **pi, size_t *n, size_t *cap, uint64_t key) {
  int32_t f = pair_find(m, key);
  if (f >= 0) return f;
  if (*n == *cap) {
    size_t c = *cap ? *cap * 2 : 4096;
    pairinfo *np = realloc(*pi, c * sizeof *np);
    if (!np) return -1;
    *pi = np;
    *cap = c;
  }
  memset(&(*pi)[*n], 0, sizeof **pi);
  if (!u64_add(m, key, 0)) return -1;
  m->val[u64_slot(m, key)] = (int64_t)*n;
  return (int32_t)(*n)++;
}

/* max-heap on (count, then the smaller key) */
typedef struct { int64_t count; uint64_t key; } hentry;
typedef struct { hentry *v; size_t n, cap; } heap_t;

static int hbefore(hentry x, hentry y) { return x.count > y.count || (x.count == y.count && x.key < y.key); }

static int heap_push(heap_t *h, int64_t count, uint64_t key) {
  if (h->n == h->cap) {
    size_t c = h->cap ? h->cap * 2 : 4096;
    hentry *nv = realloc(h->v, c * sizeof *nv);
    if (!nv) return 0;
    h->v = nv;
    h->cap = c;
  }
  size_t i = h->n++;
  hentry e = {count, key};
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!hbefore(e, h->v[p])) break;
    h->v[i] = h->v[p];
    i = p;
  }
  h->v[i] = e;
  return 1;
}

static hentry heap_pop(heap_t *h) {
  hentry top = h->v[0], last = h->v[--h->n];
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, best = i;
    hentry bv = last;
    if (l < h->n && hbefore(h->v[l], bv)) { best = l; bv = h->v[l]; }
    if (r < h->n && hbefore(h->v[r], bv)) { best = r; bv = h->v[r]; }
    if (best == i) break;
    h->v[i] = h->v[best];
    i = best;
  }
  if (h->n) h->v[i] = last;
  return top;
}

static int grow_i32(int32_t **p, size_t *cap, size_t need) {
  if (need <= *cap) return 1;
  size_t c = *cap ? *cap : 256;
  while (c < need) c *= 2;
  int32_t *q = realloc(*p, c * sizeof *q);
  if (!q) return 0;
  *p = q;
  *cap = c;
  return 1;
}

static int grow_u64(uint64_t **p, size_t *cap, size_t need) {
  if (need <= *cap) return 1;
  size_t c = *cap ? *cap : 256;
  while (c < need) c *= 2;
  uint64_t *q = realloc(*p, c * sizeof *q);
  if (!q) return 0;
  *p = q;
  *cap = c;
  return 1;
}

vlm_status vlm_bpe_train(vlm_tokenizer **out, const char *const *texts, const size_t *lens, size_t n_texts,
                         int vocab_size) {
  *out = NULL;
  if (vocab_size < VLM_BPE_MIN_VOCAB)
    return vlm_error(VLM_ERR_ARG, "bpe-train: the vocabulary size must be at least %d (512 byte symbols + 2 specials), got %d",
                     VLM_BPE_MIN_VOCAB, vocab_size);
  int n_target = vocab_size - VLM_BPE_MIN_VOCAB;
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
  pairinfo *pinfo = NULL;
  size_t n_pinfo = 0, cap_pinfo = 0;
  heap_t heap = {0};
  int32_t *stamp = NULL, *scratch = NULL;
  size_t cap_scratch = 0;
  uint64_t *touched = NULL;
  size_t n_touched = 0, cap_touched = 0;
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
    while ((kind = vlm_tok_next_piece(cps.v, cps.n, &pos, &s, &e, 0))) {   /* as the vocab.json it writes reads */
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
  stamp = malloc((n_words + 1) * sizeof *stamp);
  if (!stamp) goto oom;
  for (size_t w = 0; w < n_words; w++) stamp[w] = -1;
  for (size_t w = 0; w < n_words; w++)
    for (int32_t k = 0; k + 1 < words[w].n; k++) {
      int32_t pi = pair_get(&pairs, &pinfo, &n_pinfo, &cap_pinfo, PKEY(words[w].sym[k], words[w].sym[k + 1]));
      if (pi < 0 || !pinfo_add_word(&pinfo[pi], (int32_t)w)) goto oom;
      pinfo[pi].count += words[w].count;
    }
  for (size_t i = 0; i < pairs.cap; i++)
    if (pairs.key[i] != UINT64_MAX && !heap_push(&heap, pinfo[pairs.val[i]].count, pairs.key[i])) goto oom;
  while (n_merges < n_target && heap.n) {
    hentry top = heap_pop(&heap);
    int32_t pi = pair_find(&pairs, top.key);
    int64_t cur = pinfo[pi].count;
    if (cur != top.count) {   /* stale entry: the count went down since */
      if (cur > 0 && !heap_push(&heap, cur, top.key)) goto oom;
      continue;
    }
    if (cur <= 0) continue;
    int32_t a = (int32_t)(top.key >> 32), b = (int32_t)(top.key & 0xffffffffu), nid = 512 + n_merges;
    ma[n_merges] = a;
    mb[n_merges] = b;
    /* the words that may hold (a, b): copied, the table may move below */
    int32_t nw = pinfo[pi].nw;
    if (!grow_i32(&scratch, &cap_scratch, (size_t)nw)) goto oom;
    memcpy(scratch, pinfo[pi].words, (size_t)nw * sizeof *scratch);
    n_touched = 0;
    for (int32_t q = 0; q < nw; q++) {
      int32_t w = scratch[q];
      if (stamp[w] == n_merges) continue;
      stamp[w] = n_merges;
      int32_t *sy = words[w].sym, m = words[w].n, o = 0;
      int64_t cnt = words[w].count;
      int has = 0;
      for (int32_t k = 0; k + 1 < m && !has; k++) has = sy[k] == a && sy[k + 1] == b;
      if (!has) continue;
      for (int32_t k = 0; k + 1 < m; k++) pinfo[pair_find(&pairs, PKEY(sy[k], sy[k + 1]))].count -= cnt;
      for (int32_t k = 0; k < m;) {
        if (k + 1 < m && sy[k] == a && sy[k + 1] == b) { sy[o++] = nid; k += 2; }
        else sy[o++] = sy[k++];
      }
      words[w].n = o;
      for (int32_t k = 0; k + 1 < o; k++) {
        uint64_t key = PKEY(sy[k], sy[k + 1]);
        int32_t pj = pair_get(&pairs, &pinfo, &n_pinfo, &cap_pinfo, key);
        if (pj < 0) goto oom;
        pinfo[pj].count += cnt;
        if (sy[k] == nid || sy[k + 1] == nid) {
          if (!pinfo_add_word(&pinfo[pj], w)) goto oom;
          if (!grow_u64(&touched, &cap_touched, n_touched + 1)) goto oom;
          touched[n_touched++] = key;
        }
      }
    }
    for (size_t k = 0; k < n_touched; k++) {
      int32_t pj = pair_find(&pairs, touched[k]);
      if (pinfo[pj].count > 0 && !heap_push(&heap, pinfo[pj].count, touched[k])) goto oom;
    }
    free(pinfo[pi].words);
    pinfo[pi].words = NULL;
    pinfo[pi].nw = pinfo[pi].cw = 0;
    n_merges++;
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
  for (size_t k = 0; k < n_pinfo; k++) free(pinfo[k].words);
  free(pinfo);
  free(heap.v);
  free(stamp);
  free(scratch);
  free(touched);
  free(ma);
  free(mb);
  free(cps.v);
  free(buf);
  return st;
}
