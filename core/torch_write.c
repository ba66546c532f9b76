/* Writer of torch.save(collections.OrderedDict(name -> tensor)) files: a zip archive
 * (core/zip_write.c) named after the file's stem holding data.pkl (pickle protocol 2),
 * one record data/<i> per tensor (its bytes, little-endian), version ("3") and
 * byteorder ("little"). The pickle, per tensor:
 *   name -> torch._utils._rebuild_tensor_v2(
 *             persistent id ('storage', torch.<T>Storage, '<i>', 'cpu', numel),
 *             0, size, contiguous stride, False, collections.OrderedDict())
 * which torch.load (weights_only too) and open_clip's load_state_dict read. */
#define _GNU_SOURCE
#include "core/core.h"

#include <stdlib.h>
#include <string.h>

typedef struct { uint8_t *p; size_t n, cap; int oom; } buf;

static void put(buf *b, const void *s, size_t n) {
  if (b->oom) return;
  if (b->n + n > b->cap) {
    size_t nc = b->cap ? b->cap : 4096;
    while (nc < b->n + n) nc *= 2;
    uint8_t *np = realloc(b->p, nc);
    if (!np) { b->oom = 1; return; }
    b->p = np;
    b->cap = nc;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
}
static void op(buf *b, uint8_t c) { put(b, &c, 1); }

static void put_int(buf *b, int64_t v) {
  uint8_t t[9];
  if (v >= 0 && v < 256) { t[0] = 'K'; t[1] = (uint8_t)v; put(b, t, 2); }
  else if (v >= 0 && v < 65536) { t[0] = 'M'; t[1] = (uint8_t)v; t[2] = (uint8_t)(v >> 8); put(b, t, 3); }
  else if (v >= INT32_MIN && v <= INT32_MAX) {
    t[0] = 'J';
    for (int i = 0; i < 4; i++) t[1 + i] = (uint8_t)((uint64_t)v >> (8 * i));
    put(b, t, 5);
  } else {  /* LONG1: 8 bytes of two's complement */
    t[0] = 0x8a;
    put(b, t, 1);
    op(b, 8);
    for (int i = 0; i < 8; i++) t[i] = (uint8_t)((uint64_t)v >> (8 * i));
    put(b, t, 8);
  }
}

static void put_str(buf *b, const char *s) {   /* BINUNICODE */
  size_t n = strlen(s);
  uint8_t t[5] = {'X', (uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24)};
  put(b, t, 5);
  put(b, s, n);
}

static void put_global(buf *b, const char *module, const char *name) {
  op(b, 'c');
  put(b, module, strlen(module));
  op(b, '\n');
  put(b, name, strlen(name));
  op(b, '\n');
}

static void memo_put(buf *b, int i) { uint8_t t[2] = {'q', (uint8_t)i}; put(b, t, 2); }
static void memo_get(buf *b, int i) { uint8_t t[2] = {'h', (uint8_t)i}; put(b, t, 2); }

static const char *storage_name(vlm_dtype dt) {
  switch (dt) {
    case VLM_F32: return "FloatStorage";
    case VLM_F16: return "HalfStorage";
    case VLM_BF16: return "BFloat16Storage";
    case VLM_F64: return "DoubleStorage";
    case VLM_I64: return "LongStorage";
    case VLM_I32: return "IntStorage";
    case VLM_I16: return "ShortStorage";
    case VLM_I8: return "CharStorage";
    case VLM_U8: return "ByteStorage";
    case VLM_BOOL: return "BoolStorage";
    default: return NULL;
  }
}

/* Memo slots: 0 OrderedDict, 1 _rebuild_tensor_v2, 2 'storage', 3 'cpu', 4 + dtype the storage classes. */
static void pickle_all(buf *b, const vlm_st_writer *w) {
  int have[VLM_DTYPE_COUNT] = {0};
  op(b, 0x80);
  op(b, 2);
  put_global(b, "collections", "OrderedDict");
  memo_put(b, 0);
  op(b, ')');
  op(b, 'R');
  int n = vlm_st__writer_count(w);
  if (n) op(b, '(');
  for (int i = 0; i < n; i++) {
    vlm_st_went e;
    vlm_st__writer_entry(w, i, &e);
    put_str(b, e.name);
    if (i == 0) {
      put_global(b, "torch._utils", "_rebuild_tensor_v2");
      memo_put(b, 1);
    } else {
      memo_get(b, 1);
    }
    op(b, '(');
    op(b, '(');
    if (i == 0) { put_str(b, "storage"); memo_put(b, 2); } else memo_get(b, 2);
    if (!have[e.dtype]) {
      put_global(b, "torch", storage_name(e.dtype));
      memo_put(b, 4 + (int)e.dtype);
      have[e.dtype] = 1;
    } else {
      memo_get(b, 4 + (int)e.dtype);
    }
    char key[24];
    snprintf(key, sizeof key, "%d", i);
    put_str(b, key);
    if (i == 0) { put_str(b, "cpu"); memo_put(b, 3); } else memo_get(b, 3);
    int64_t numel = 1;
    for (int d = 0; d < e.ndim; d++) numel *= e.shape[d];
    put_int(b, numel);
    op(b, 't');
    op(b, 'Q');
    put_int(b, 0);
    op(b, '(');
    for (int d = 0; d < e.ndim; d++) put_int(b, e.shape[d]);
    op(b, 't');
    op(b, '(');
    int64_t stride[VLM_MAX_DIMS], s = 1;
    for (int d = e.ndim - 1; d >= 0; d--) {
      stride[d] = s;
      s *= e.shape[d] ? e.shape[d] : 1;
    }
    for (int d = 0; d < e.ndim; d++) put_int(b, stride[d]);
    op(b, 't');
    op(b, 0x89);     /* requires_grad False */
    memo_get(b, 0);  /* backward hooks: OrderedDict() */
    op(b, ')');
    op(b, 'R');
    op(b, 't');
    op(b, 'R');
  }
  if (n) op(b, 'u');
  op(b, '.');
}

/* The archive folder: the file name without its folders and its last extension. */
static char *stem(const char *path) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  size_t n = strlen(base);
  const char *dot = strrchr(base, '.');
  if (dot && dot != base) n = (size_t)(dot - base);
  if (n == 0 || (n == 1 && base[0] == '.') || (n == 2 && !strncmp(base, "..", 2))) return strdup("archive");
  char *s = malloc(n + 1);
  if (s) { memcpy(s, base, n); s[n] = 0; }
  return s;
}

static vlm_status write_all(const vlm_st_writer *w, vlm_zip_writer *zw, const char *dir) {
  size_t dl = strlen(dir);
  char *rn = malloc(dl + 64);
  if (!rn) return vlm_error(VLM_ERR_OOM, "%s: out of memory", zw->path);
  buf pk = {0};
  pickle_all(&pk, w);
  vlm_status s = VLM_OK;
  if (pk.oom) s = vlm_error(VLM_ERR_OOM, "%s: out of memory for the pickle", zw->path);
  if (s == VLM_OK) {
    snprintf(rn, dl + 64, "%s/data.pkl", dir);
    s = vlm_zip_writer_add(zw, rn, pk.p, pk.n, VLM_CPU);
  }
  for (int i = 0; i < vlm_st__writer_count(w) && s == VLM_OK; i++) {
    vlm_st_went e;
    vlm_st__writer_entry(w, i, &e);
    snprintf(rn, dl + 64, "%s/data/%d", dir, i);
    s = vlm_zip_writer_add(zw, rn, e.data, e.nbytes, e.device);
  }
  if (s == VLM_OK) {
    snprintf(rn, dl + 64, "%s/version", dir);
    s = vlm_zip_writer_add(zw, rn, "3\n", 2, VLM_CPU);
  }
  if (s == VLM_OK) {
    snprintf(rn, dl + 64, "%s/byteorder", dir);
    s = vlm_zip_writer_add(zw, rn, "little", 6, VLM_CPU);
  }
  if (s == VLM_OK) s = vlm_zip_writer_finish(zw);
  free(pk.p);
  free(rn);
  return s;
}

vlm_status vlm_st_writer_save_torch(vlm_st_writer *w, const char *path) {
  vlm_atomic_file af;
  vlm_status s = vlm_st_writer_stage_torch(w, path, &af);
  return s == VLM_OK ? vlm_atomic_commit(&af) : s;
}

vlm_status vlm_st_writer_stage_torch(vlm_st_writer *w, const char *path, vlm_atomic_file *staged) {
  memset(staged, 0, sizeof *staged);
  if (!path || !path[0]) return vlm_error(VLM_ERR_ARG, "torch writer: empty file path");
  vlm_status s = vlm_st__writer_check(w, path);
  if (s != VLM_OK) return s;
  for (int i = 0; i < vlm_st__writer_count(w); i++) {
    vlm_st_went e;
    vlm_st__writer_entry(w, i, &e);
    if (!storage_name(e.dtype))
      return vlm_error(VLM_ERR_UNSUPPORTED, "%s: tensor \"%.200s\" has dtype %s, which torch files cannot hold", path,
                       e.name, vlm_dtype_name(e.dtype));
  }
  char *dir = stem(path);
  if (!dir) return vlm_error(VLM_ERR_OOM, "%s: out of memory", path);
  vlm_atomic_file af;
  if ((s = vlm_atomic_open(&af, path)) != VLM_OK) {
    free(dir);
    return s;
  }
  vlm_zip_writer zw;
  vlm_zip_writer_init(&zw, af.f, path);
  s = write_all(w, &zw, dir);
  vlm_zip_writer_free(&zw);
  free(dir);
  if (s != VLM_OK) {
    vlm_atomic_abort(&af);
    return s;
  }
  *staged = af;   /* written: the caller commits or aborts it */
  return VLM_OK;
}
