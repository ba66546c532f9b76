#define _POSIX_C_SOURCE 200809L
/* vlm_tokenizer_clone: a deep copy of the vocabulary and merge tables with an
 * empty cache, a fresh scratch space and the same dropout setting; one per
 * loader worker, since a tokenizer is not thread-safe. */
#include <stdlib.h>
#include <string.h>

#include "text/text.h"
#include "text/tokenizer_internal.h"

/* A copy of n bytes of p in a buffer of at least cap bytes. */
static void *dup_mem_cap(const void *p, size_t n, size_t cap) {
  if (!p) return NULL;
  void *d = malloc(cap > n ? cap : (n ? n : 1));
  if (d && n) memcpy(d, p, n);
  return d;
}
static void *dup_mem(const void *p, size_t n) { return dup_mem_cap(p, n, n); }

vlm_tokenizer *vlm_tokenizer_clone(const vlm_tokenizer *t) {
  if (!t) return NULL;
  vlm_tokenizer *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->n_vocab = t->n_vocab;
  c->tok = calloc((size_t)(t->n_vocab > 0 ? t->n_vocab : 1), sizeof *c->tok);
  if (!c->tok) goto oom;
  for (int i = 0; i < t->n_vocab; i++) {
    if (!t->tok[i]) continue;
    c->tok[i] = strdup(t->tok[i]);
    if (!c->tok[i]) goto oom;
  }
  c->smap_cap = t->smap_cap;
  c->smap = dup_mem(t->smap, t->smap_cap * sizeof *t->smap);
  c->pcap = t->pcap;
  c->pkey = dup_mem(t->pkey, t->pcap * sizeof *t->pkey);
  c->prank = dup_mem(t->prank, t->pcap * sizeof *t->prank);
  c->pnew = dup_mem(t->pnew, t->pcap * sizeof *t->pnew);
  c->n_merges = t->n_merges;
  size_t nm = (size_t)t->n_merges;
  c->merge_a = dup_mem_cap(t->merge_a, nm * sizeof *t->merge_a, (nm + 1) * sizeof *t->merge_a);
  c->merge_b = dup_mem_cap(t->merge_b, nm * sizeof *t->merge_b, (nm + 1) * sizeof *t->merge_b);
  c->merge_new = dup_mem_cap(t->merge_new, nm * sizeof *t->merge_new, (nm + 1) * sizeof *t->merge_new);
  if ((t->smap && !c->smap) || (t->pkey && (!c->pkey || !c->prank || !c->pnew)) ||
      (t->merge_a && (!c->merge_a || !c->merge_b || !c->merge_new)))
    goto oom;
  memcpy(c->byte_id, t->byte_id, sizeof c->byte_id);
  memcpy(c->byte_eow_id, t->byte_eow_id, sizeof c->byte_eow_id);
  c->sot = t->sot;
  c->eot = t->eot;
  c->dropout = t->dropout;
  c->rng = t->rng;
  return c;
oom:
  vlm_tokenizer_free(c);
  return NULL;
}
