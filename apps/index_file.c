/* The retrieval index file and the .npy export (see tools.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/tools.h"

static vlm_status bad(const char *path, const char *why) {
  return vlm_error(VLM_ERR_FORMAT, "%s: not a valid vlm index: %s", path, why);
}

vlm_status vlm_index_open(vlm_index *ix, const char *path) {
  memset(ix, 0, sizeof *ix);
  vlm_status st = vlm_st_open(&ix->st, path);
  if (st == VLM_ERR_FORMAT) {   /* not even safetensors: say what the file is not */
    char why[1024];
    snprintf(why, sizeof why, "%s", vlm_last_error());   /* the message names the file */
    return vlm_error(VLM_ERR_FORMAT, "%s (not a vlm index: make one with 'vlm index')", why);
  }
  if (st != VLM_OK) return st;
  const char *fmt = vlm_st_meta(&ix->st, "format");
  const vlm_st_entry *e = vlm_st_find(&ix->st, "embeddings"), *it = vlm_st_find(&ix->st, "items"),
                     *of = vlm_st_find(&ix->st, "offsets"), *sz = vlm_st_find(&ix->st, "file_size"),
                     *mt = vlm_st_find(&ix->st, "mtime_ns");
  ix->kind = vlm_st_meta(&ix->st, "kind");
  ix->identity = vlm_st_meta(&ix->st, "model_identity");
  ix->model = vlm_st_meta(&ix->st, "model");
  if (!ix->model) ix->model = "?";
  if (!fmt || strcmp(fmt, "vlm-index")) st = bad(path, "no __metadata__ format \"vlm-index\"");
  else if (!ix->kind || (strcmp(ix->kind, "images") && strcmp(ix->kind, "texts"))) st = bad(path, "kind must be images or texts");
  else if (!ix->identity) st = bad(path, "no model_identity in __metadata__");
  else if (!e || !it || !of || !sz || !mt) st = bad(path, "needs tensors embeddings, items, offsets, file_size, mtime_ns");
  else if (e->dtype != VLM_F32 || e->ndim != 2 || e->shape[1] < 1) st = bad(path, "embeddings must be F32 [N, E]");
  else if (it->dtype != VLM_U8 || it->ndim != 1) st = bad(path, "items must be U8 [bytes]");
  else if (of->dtype != VLM_I64 || of->ndim != 1 || of->shape[0] != e->shape[0] + 1) st = bad(path, "offsets must be I64 [N+1]");
  else if (sz->dtype != VLM_I64 || sz->ndim != 1 || sz->shape[0] != e->shape[0] || mt->dtype != VLM_I64 ||
           mt->ndim != 1 || mt->shape[0] != e->shape[0])
    st = bad(path, "file_size and mtime_ns must be I64 [N]");
  if (st == VLM_OK) {
    ix->n = e->shape[0];
    ix->E = e->shape[1];
    ix->items = it->data;
    ix->off = of->data;
    ix->size = sz->data;
    ix->mtime = mt->data;
    if (ix->off[0] != 0) st = bad(path, "offsets[0] is not 0");
    for (int64_t i = 0; i < ix->n && st == VLM_OK; i++)
      if (ix->off[i + 1] < ix->off[i] || ix->off[i + 1] > it->shape[0]) st = bad(path, "offsets out of order or past the items");
    ix->emb = e->data;   /* aligned: vlm_st_open copies a misaligned tensor */
  }
  if (st != VLM_OK) {
    vlm_st_close(&ix->st);
    memset(ix, 0, sizeof *ix);
  }
  return st;
}

void vlm_index_close(vlm_index *ix) {
  vlm_st_close(&ix->st);
  memset(ix, 0, sizeof *ix);
}

char *vlm_index_item(const vlm_index *ix, int64_t i) {
  size_t n = (size_t)(ix->off[i + 1] - ix->off[i]);
  char *s = malloc(n + 1);
  if (!s) return NULL;
  memcpy(s, ix->items + ix->off[i], n);
  s[n] = 0;
  return s;
}

vlm_status vlm_index_write(const char *path, const char *kind, const char *identity, const char *model,
                           const float *emb, int64_t n, int64_t E, char *const *items, const int64_t *size,
                           const int64_t *mtime) {
  int64_t *off = malloc((size_t)(n + 1) * sizeof *off);
  int64_t *zeros = calloc((size_t)n + 1, sizeof *zeros);
  size_t total = 0;
  for (int64_t i = 0; i < n; i++) total += strlen(items[i]);
  char *blob = malloc(total + 1);
  vlm_st_writer *w = vlm_st_writer_new();
  vlm_status st = VLM_OK;
  if (!off || !zeros || !blob || !w) st = vlm_error(VLM_ERR_OOM, "out of memory");
  if (st == VLM_OK) {
    off[0] = 0;
    for (int64_t i = 0; i < n; i++) {
      size_t l = strlen(items[i]);
      memcpy(blob + off[i], items[i], l);
      off[i + 1] = off[i] + (int64_t)l;
    }
    char num[32], cnt[32];
    snprintf(num, sizeof num, "%lld", (long long)E);
    snprintf(cnt, sizeof cnt, "%lld", (long long)n);
    int64_t se[2] = {n, E}, sb[1] = {(int64_t)total}, so[1] = {n + 1}, sn[1] = {n};
    st = vlm_st_writer_add(w, "embeddings", VLM_F32, 2, se, emb);
    if (st == VLM_OK) st = vlm_st_writer_add(w, "items", VLM_U8, 1, sb, blob);
    if (st == VLM_OK) st = vlm_st_writer_add(w, "offsets", VLM_I64, 1, so, off);
    if (st == VLM_OK) st = vlm_st_writer_add(w, "file_size", VLM_I64, 1, sn, size ? size : zeros);
    if (st == VLM_OK) st = vlm_st_writer_add(w, "mtime_ns", VLM_I64, 1, sn, mtime ? mtime : zeros);
    if (st == VLM_OK) st = vlm_st_writer_meta(w, "format", "vlm-index");
    if (st == VLM_OK) st = vlm_st_writer_meta(w, "version", "1");
    if (st == VLM_OK) st = vlm_st_writer_meta(w, "kind", kind);
    if (st == VLM_OK) st = vlm_st_writer_meta(w, "model_identity", identity);
    if (st == VLM_OK) st = vlm_st_writer_meta(w, "model", model);
    if (st == VLM_OK) st = vlm_st_writer_meta(w, "embed_dim", num);
    if (st == VLM_OK) st = vlm_st_writer_meta(w, "count", cnt);
    if (st == VLM_OK) st = vlm_st_writer_save(w, path);
  }
  vlm_st_writer_free(w);
  free(off);
  free(zeros);
  free(blob);
  return st;
}

vlm_status vlm_write_npy(const char *path, const float *x, int64_t n, int64_t E) {
  char dict[256];
  int dl = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%lld, %lld), }",
                    (long long)n, (long long)E);
  /* magic(6) + version(2) + u16 length + dict padded with spaces and '\n' to a multiple of 64 */
  int total = 10 + dl + 1;
  int pad = (64 - total % 64) % 64;
  int hl = dl + pad + 1;
  unsigned char head[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hl & 0xff), (unsigned char)(hl >> 8)};
  vlm_atomic_file af;
  vlm_status st = vlm_atomic_open(&af, path);
  if (st != VLM_OK) return st;
  errno = 0;
  int ok = fwrite(head, 1, 10, af.f) == 10 && fwrite(dict, 1, (size_t)dl, af.f) == (size_t)dl;
  for (int i = 0; i < pad && ok; i++) ok = fputc(' ', af.f) != EOF;
  ok = ok && fputc('\n', af.f) != EOF;
  /* little-endian float32 (x86 / ARM hosts are little-endian) */
  ok = ok && fwrite(x, sizeof(float), (size_t)(n * E), af.f) == (size_t)(n * E);
  if (!ok) {
    int e = errno ? errno : EIO;
    vlm_atomic_abort(&af);
    return vlm_error(VLM_ERR_IO, "%s: cannot write: %s", path, strerror(e));
  }
  return vlm_atomic_commit(&af);
}
