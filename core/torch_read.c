/* Reader of PyTorch files: torch.save's zip archive (PyTorch >= 1.6) and torch.jit.save's
 * TorchScript archive. The file is mapped read-only; ARCHIVE/data.pkl runs through the
 * pickle machine (core/pickle.c), which executes nothing: the hooks here turn torch's
 * persistent ids ('storage', torch.<T>Storage, key, location, numel) into storages
 * (ARCHIVE/data/<key>) and the tensor rebuild functions (torch._utils._rebuild_tensor_v2,
 * _rebuild_parameter[_with_state], torch._tensor._rebuild_from_type_v2) into tensors, checked
 * against their storage. Then the value graph is walked from the root and every tensor met
 * is named by its dotted path (dict keys, list/tuple indices, object attributes).
 * The result is a vlm_safetensors (see core.h for what each field holds here). */
#define _GNU_SOURCE
#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Give back the pages of a range of the file's read-only mapping once its CRC is checked, so
 * that opening a checkpoint does not keep the whole file resident (they are read again from the
 * file when a tensor is copied). */
static void drop_pages(const uint8_t *p, uint64_t n) { vlm_host_release(p, (size_t)n); }

size_t vlm_st__utf8_check(const uint8_t *s, size_t n);

#define MAX_DEPTH 200          /* walk levels (each object attribute takes two) */
#define MAX_VISITS (1u << 22)  /* values visited by the walk (shared values count each time) */
#define MAX_TENSORS (1 << 18)  /* names found (a tensor reached by two paths counts twice) */
#define MAX_NAME_BYTES (64u << 20)
#define MAX_NAME (64u * 1024u)
#define MAX_REBUILD_NEST 8     /* _rebuild_from_type_v2 inside itself */

#define NM "\"%.200s%s\""
#define NMARG(s) (s), (strlen(s) > 200 ? "..." : "")

enum { TAG_STORAGE = 1, TAG_TENSOR = 2 };

typedef struct {
  int tag;
  vlm_dtype dt;
  const char *key;     /* NUL-terminated copy */
  const uint8_t *data;
  uint64_t numel;
} storage;

typedef struct {
  int tag;
  const storage *st;
  int ndim;
  int64_t shape[VLM_MAX_DIMS], stride[VLM_MAX_DIMS];
  int64_t offset;
  int64_t numel;
} tensor;

typedef struct {
  char *name;
  const tensor *t;
} found;

typedef struct {
  const char *path;
  vlm_zip z;
  char *prefix;          /* "archive/" */
  signed char *rec_dt;   /* per zip entry: the dtype its storage was read as, -1 none yet */
  uint8_t *rec_ok;       /* per zip entry: checked (stored, CRC) */
  int nest;
  found *out;
  int nout, capout;
  size_t visits, name_bytes;
  char *name;
  size_t nlen, ncap;
  int kind_only;         /* vlm_torch_kind: the archive's directory only, no pickle, no tensors */
} tctx;

static const struct { const char *name; vlm_dtype dt; } STORAGES[] = {
    {"FloatStorage", VLM_F32}, {"HalfStorage", VLM_F16},  {"BFloat16Storage", VLM_BF16},
    {"DoubleStorage", VLM_F64}, {"LongStorage", VLM_I64}, {"IntStorage", VLM_I32},
    {"ShortStorage", VLM_I16}, {"CharStorage", VLM_I8},   {"ByteStorage", VLM_U8},
    {"BoolStorage", VLM_BOOL},
};

/* "%.*s" of a pickle string, cut. */
#define PS(v) (int)((v)->len < 200 ? (v)->len : 200), (v)->s

/* ------------------------------------------------------------------ storages */

static vlm_status persistent_load(void *ctx, vlm_pickle *p, vlm_pk *pid, vlm_pk **out) {
  tctx *c = ctx;
  const char *what = vlm_pickle_what(p);
  if (!pid || pid->kind != VLM_PK_TUPLE || pid->n < 5 || !vlm_pk_is_str(pid->items[0], "storage"))
    return vlm_error(VLM_ERR_FORMAT, "%s: a persistent id that is not ('storage', type, key, location, numel)", what);
  vlm_pk *ty = pid->items[1], *key = pid->items[2], *num = pid->items[4];
  if (ty->kind != VLM_PK_GLOBAL) return vlm_error(VLM_ERR_FORMAT, "%s: a storage whose type is not a class", what);
  if (key->kind != VLM_PK_STR || key->len == 0 || key->len > 200 || memchr(key->s, 0, key->len))
    return vlm_error(VLM_ERR_FORMAT, "%s: a storage whose key is not a short string", what);
  if (num->kind != VLM_PK_INT || num->i < 0)
    return vlm_error(VLM_ERR_FORMAT, "%s: storage \"%.*s\": its size is not a count", what, PS(key));
  int known = -1;
  if (ty->len == 5 && !memcmp(ty->s, "torch", 5))
    for (size_t i = 0; i < sizeof STORAGES / sizeof STORAGES[0]; i++)
      if (strlen(STORAGES[i].name) == ty->len2 && !memcmp(STORAGES[i].name, ty->s2, ty->len2)) known = (int)i;
  if (known < 0)
    return vlm_error(VLM_ERR_UNSUPPORTED,
                     "%s: storage \"%.*s\" has type %.*s.%.*s, which vlm cannot hold (supported: Float, Half, "
                     "BFloat16, Double, Long, Int, Short, Char, Byte and Bool storages)",
                     what, PS(key), (int)(ty->len < 100 ? ty->len : 100), ty->s,
                     (int)(ty->len2 < 100 ? ty->len2 : 100), ty->s2);
  storage *st = vlm_pickle_alloc(p, sizeof *st + key->len + 1);
  if (!st) return vlm_error(VLM_ERR_OOM, "%s: out of memory", what);
  char *k = (char *)(st + 1);
  memcpy(k, key->s, key->len);
  st->tag = TAG_STORAGE;
  st->dt = STORAGES[known].dt;
  st->key = k;
  st->numel = (uint64_t)num->i;

  size_t pl = strlen(c->prefix);
  char *rn = malloc(pl + 5 + key->len + 1);
  if (!rn) return vlm_error(VLM_ERR_OOM, "%s: out of memory", what);
  snprintf(rn, pl + 5 + key->len + 1, "%sdata/%s", c->prefix, k);
  const vlm_zip_entry *rec = vlm_zip_find(&c->z, rn);
  if (!rec) {
    vlm_status s = vlm_error(VLM_ERR_FORMAT, "%s: storage \"%s\": the archive has no record %s", c->path, k, rn);
    free(rn);
    return s;
  }
  free(rn);
  size_t idx = (size_t)(rec - c->z.entries);
  if (c->rec_dt[idx] >= 0 && c->rec_dt[idx] != (signed char)st->dt)
    return vlm_error(VLM_ERR_FORMAT, "%s: storage \"%s\" is used with two dtypes (%s and %s)", c->path, k,
                     vlm_dtype_name((vlm_dtype)c->rec_dt[idx]), vlm_dtype_name(st->dt));
  c->rec_dt[idx] = (signed char)st->dt;
  if (!c->rec_ok[idx]) {
    const uint8_t *d;
    vlm_status s = vlm_zip_data(&c->z, rec, &d);
    if (s != VLM_OK) return s;
    c->rec_ok[idx] = 1;
    drop_pages(d, rec->size);   /* read for its CRC only: the loader reads it again, tensor by tensor */
  }
  st->data = c->z.base + rec->offset;
  size_t isz = vlm_dtype_size(st->dt);
  if (st->numel > rec->size / isz)
    return vlm_error(VLM_ERR_FORMAT, "%s: storage \"%s\" holds %llu elements of %s but its record %s has %llu bytes",
                     c->path, k, (unsigned long long)st->numel, vlm_dtype_name(st->dt), rec->name,
                     (unsigned long long)rec->size);
  vlm_pk *v = vlm_pickle_new(p, VLM_PK_EXT);
  if (!v) return vlm_error(VLM_ERR_OOM, "%s: out of memory", what);
  v->ext = st;
  *out = v;
  return VLM_OK;
}

/* ------------------------------------------------------------------ tensors */

static int ext_tag(const vlm_pk *v) { return v && v->kind == VLM_PK_EXT && v->ext ? *(const int *)v->ext : 0; }

/* A tuple or list of k integers >= 0 into out; -1 when not that. */
static int int_seq(const vlm_pk *v, int64_t *out, int max) {
  if (!v || (v->kind != VLM_PK_TUPLE && v->kind != VLM_PK_LIST)) return -1;
  if (v->n > (size_t)max) return -2;
  for (size_t i = 0; i < v->n; i++) {
    if (v->items[i]->kind != VLM_PK_INT || v->items[i]->i < 0) return -1;
    out[i] = v->items[i]->i;
  }
  return (int)v->n;
}

static vlm_status rebuild_tensor(vlm_pickle *p, const char *fn, vlm_pk *args, vlm_pk **out) {
  const char *what = vlm_pickle_what(p);
  if (!args || args->kind != VLM_PK_TUPLE || args->n < 4)
    return vlm_error(VLM_ERR_FORMAT, "%s: %s called without (storage, offset, size, stride)", what, fn);
  if (ext_tag(args->items[0]) != TAG_STORAGE)
    return vlm_error(VLM_ERR_FORMAT, "%s: %s called on something that is not a tensor storage", what, fn);
  const storage *st = args->items[0]->ext;
  tensor *t = vlm_pickle_alloc(p, sizeof *t);
  if (!t) return vlm_error(VLM_ERR_OOM, "%s: out of memory", what);
  t->tag = TAG_TENSOR;
  t->st = st;
  if (args->items[1]->kind != VLM_PK_INT || args->items[1]->i < 0)
    return vlm_error(VLM_ERR_FORMAT, "%s: storage \"%s\": a tensor offset that is not a count", what, st->key);
  t->offset = args->items[1]->i;
  int nd = int_seq(args->items[2], t->shape, VLM_MAX_DIMS);
  if (nd == -2)
    return vlm_error(VLM_ERR_UNSUPPORTED, "%s: storage \"%s\": a tensor with %zu dimensions (vlm holds at most %d)",
                     what, st->key, args->items[2]->n, VLM_MAX_DIMS);
  int ns = int_seq(args->items[3], t->stride, VLM_MAX_DIMS);
  if (nd < 0 || ns != nd)
    return vlm_error(VLM_ERR_FORMAT, "%s: storage \"%s\": a tensor whose size and stride are not two tuples of "
                     "as many counts", what, st->key);
  t->ndim = nd;
  const uint64_t lim = (uint64_t)1 << 62;
  uint64_t numel = 1, last = (uint64_t)t->offset;
  int zero = 0, over = last > lim;
  for (int d = 0; d < nd; d++) zero |= t->shape[d] == 0;
  for (int d = 0; d < nd && !zero && !over; d++) {
    uint64_t sz = (uint64_t)t->shape[d], sd = (uint64_t)t->stride[d];
    if (numel > lim / sz) over = 1;
    numel *= sz;
    if (sz > 1 && sd) {
      if (sz - 1 > (lim - last) / sd) over = 1;
      else last += (sz - 1) * sd;
    }
  }
  if (over)
    return vlm_error(VLM_ERR_FORMAT, "%s: storage \"%s\": a tensor whose size or stride overflows", what, st->key);
  if (zero) numel = 0;
  t->numel = (int64_t)numel;
  if (numel && last >= st->numel)
    return vlm_error(VLM_ERR_FORMAT,
                     "%s: storage \"%s\": a tensor reaches element %llu but the storage holds %llu elements",
                     what, st->key, (unsigned long long)last, (unsigned long long)st->numel);
  vlm_pk *v = vlm_pickle_new(p, VLM_PK_EXT);
  if (!v) return vlm_error(VLM_ERR_OOM, "%s: out of memory", what);
  v->ext = t;
  *out = v;
  return VLM_OK;
}

static int name_is(const vlm_pk *g, const char *module, const char *name) { return vlm_pk_is_global(g, module, name); }

static vlm_status reduce(void *ctx, vlm_pickle *p, vlm_pk *fn, vlm_pk *args, vlm_pk **out) {
  tctx *c = ctx;
  const char *what = vlm_pickle_what(p);
  *out = NULL;
  if (!fn || fn->kind != VLM_PK_GLOBAL) return VLM_OK;
  if (name_is(fn, "torch._utils", "_rebuild_tensor_v2"))
    return rebuild_tensor(p, "torch._utils._rebuild_tensor_v2", args, out);
  if (name_is(fn, "torch._utils", "_rebuild_tensor")) return rebuild_tensor(p, "torch._utils._rebuild_tensor", args, out);
  int first_arg = name_is(fn, "torch._utils", "_rebuild_parameter") ||
                  name_is(fn, "torch._utils", "_rebuild_parameter_with_state");
  if (first_arg) {
    if (!args || args->kind != VLM_PK_TUPLE || args->n < 1 || ext_tag(args->items[0]) != TAG_TENSOR)
      return vlm_error(VLM_ERR_FORMAT, "%s: %.*s.%.*s called without a tensor", what, (int)fn->len, fn->s,
                       (int)fn->len2, fn->s2);
    *out = args->items[0];
    return VLM_OK;
  }
  if (name_is(fn, "torch._tensor", "_rebuild_from_type_v2") || name_is(fn, "torch._utils", "_rebuild_from_type")) {
    /* (func, type, args, state): the tensor is func(*args), its subclass dropped */
    if (!args || args->kind != VLM_PK_TUPLE || args->n < 3)
      return vlm_error(VLM_ERR_FORMAT, "%s: _rebuild_from_type called without (func, type, args)", what);
    if (c->nest >= MAX_REBUILD_NEST)
      return vlm_error(VLM_ERR_FORMAT, "%s: _rebuild_from_type nested more than %d times", what, MAX_REBUILD_NEST);
    c->nest++;
    vlm_status s = reduce(ctx, p, args->items[0], args->items[2], out);
    c->nest--;
    return s;
  }
  if (fn->len == 17 && !memcmp(fn->s, "torch.jit._pickle", 17)) {
    if (name_is(fn, "torch.jit._pickle", "build_tensor_from_id"))
      return vlm_error(VLM_ERR_UNSUPPORTED, "%s: a tensor from a tensor table (torch.jit._pickle.build_tensor_from_id)"
                       " cannot be read from a file", what);
    /* build_intlist, build_tensorlist, restore_type_tag, ...: the value is the first argument */
    if (args && args->kind == VLM_PK_TUPLE && args->n >= 1) *out = args->items[0];
    return VLM_OK;
  }
  int torch_mod = (fn->len == 12 && !memcmp(fn->s, "torch._utils", 12)) ||
                  (fn->len == 13 && !memcmp(fn->s, "torch._tensor", 13));
  if (torch_mod && fn->len2 > 9 && !memcmp(fn->s2, "_rebuild_", 9))
    return vlm_error(VLM_ERR_UNSUPPORTED, "%s: a tensor made by %.*s.%.*s (quantized, sparse, meta, nested or on a "
                     "special device): vlm cannot hold it", what, (int)fn->len, fn->s,
                     (int)(fn->len2 < 100 ? fn->len2 : 100), fn->s2);
  return VLM_OK;
}

/* ------------------------------------------------------------------ the walk */

static vlm_status name_push(tctx *c, const char *seg, size_t n, size_t *saved) {
  *saved = c->nlen;
  size_t need = c->nlen + 1 + n + 1;
  if (need > MAX_NAME)
    return vlm_error(VLM_ERR_FORMAT, "%s: a tensor name longer than %u bytes (objects nested too deep?)", c->path,
                     MAX_NAME);
  if (need > c->ncap) {
    size_t nc = c->ncap ? c->ncap : 256;
    while (nc < need) nc *= 2;
    char *nb = realloc(c->name, nc);
    if (!nb) return vlm_error(VLM_ERR_OOM, "%s: out of memory", c->path);
    c->name = nb;
    c->ncap = nc;
  }
  if (c->nlen) c->name[c->nlen++] = '.';
  memcpy(c->name + c->nlen, seg, n);
  c->nlen += n;
  c->name[c->nlen] = 0;
  return VLM_OK;
}

static void name_pop(tctx *c, size_t saved) {
  c->nlen = saved;
  if (c->name) c->name[saved] = 0;
}

static vlm_status walk(tctx *c, vlm_pk *v, int depth);

/* A child named by a key (str or int); other keys hold nothing we can name. */
static vlm_status walk_key(tctx *c, const vlm_pk *key, vlm_pk *v, int depth) {
  char buf[32];
  const char *seg;
  size_t n;
  if (key->kind == VLM_PK_STR) {   /* checked as text where it names a tensor (add_found) */
    seg = key->s;
    n = key->len;
  } else if (key->kind == VLM_PK_INT) {
    n = (size_t)snprintf(buf, sizeof buf, "%lld", (long long)key->i);
    seg = buf;
  } else {
    return VLM_OK;
  }
  size_t saved;
  vlm_status s = name_push(c, seg, n, &saved);
  if (s == VLM_OK) s = walk(c, v, depth + 1);
  name_pop(c, saved);
  return s;
}

static vlm_status walk_pairs(tctx *c, vlm_pk **kv, size_t npairs, int depth) {
  for (size_t i = 0; i < npairs; i++) {
    vlm_status s = walk_key(c, kv[2 * i], kv[2 * i + 1], depth);
    if (s != VLM_OK) return s;
  }
  return VLM_OK;
}

static vlm_status walk_items(tctx *c, vlm_pk **items, size_t n, int depth) {
  for (size_t i = 0; i < n; i++) {
    vlm_pk key = {.kind = VLM_PK_INT, .i = (int64_t)i};
    vlm_status s = walk_key(c, &key, items[i], depth);
    if (s != VLM_OK) return s;
  }
  return VLM_OK;
}

static vlm_status add_found(tctx *c, const tensor *t) {
  const char *nm0 = c->name ? c->name : "";
  if (memchr(nm0, 0, c->nlen) || vlm_st__utf8_check((const uint8_t *)nm0, c->nlen) != c->nlen)
    return vlm_error(VLM_ERR_FORMAT, "%s: tensor name " NM " is not valid UTF-8 text (or holds a NUL)", c->path,
                     NMARG(nm0));
  if (c->nout >= MAX_TENSORS || (c->name_bytes += c->nlen + 1) > MAX_NAME_BYTES)
    return vlm_error(VLM_ERR_FORMAT, "%s: more than %d tensors or %u bytes of names (a shared value referenced too "
                     "often?)", c->path, MAX_TENSORS, MAX_NAME_BYTES);
  if (c->nout == c->capout) {
    int nc = c->capout ? c->capout * 2 : 64;
    found *no = realloc(c->out, (size_t)nc * sizeof *no);
    if (!no) return vlm_error(VLM_ERR_OOM, "%s: out of memory", c->path);
    c->out = no;
    c->capout = nc;
  }
  char *nm = strdup(c->name ? c->name : "");
  if (!nm) return vlm_error(VLM_ERR_OOM, "%s: out of memory", c->path);
  c->out[c->nout].name = nm;
  c->out[c->nout].t = t;
  c->nout++;
  return VLM_OK;
}

static vlm_status walk_obj(tctx *c, vlm_pk *v, int depth) {
  vlm_status s = walk_pairs(c, v->kv, v->nkv, depth);
  if (s == VLM_OK) s = walk_items(c, v->items, v->n, depth);
  /* OrderedDict([(key, value), ...]) (protocols 0 and 1) */
  if (s == VLM_OK && (vlm_pk_is_global(v->func, "collections", "OrderedDict") ||
                      vlm_pk_is_global(v->func, "builtins", "dict") || vlm_pk_is_global(v->func, "__builtin__", "dict"))
      && v->args && v->args->kind == VLM_PK_TUPLE && v->args->n >= 1) {
    vlm_pk *l = v->args->items[0];
    if (l->kind == VLM_PK_LIST || l->kind == VLM_PK_TUPLE)
      for (size_t i = 0; i < l->n && s == VLM_OK; i++) {
        vlm_pk *pr = l->items[i];
        if ((pr->kind == VLM_PK_TUPLE || pr->kind == VLM_PK_LIST) && pr->n == 2)
          s = walk_key(c, pr->items[0], pr->items[1], depth);
      }
  }
  vlm_pk *st = v->state;
  if (s != VLM_OK || !st) return s;
  /* (dict, slots dict), as objects with __slots__ pickle: both hold attributes */
  if (st->kind == VLM_PK_TUPLE && st->n == 2 &&
      (st->items[0]->kind == VLM_PK_DICT || st->items[0]->kind == VLM_PK_NONE) &&
      (st->items[1]->kind == VLM_PK_DICT || st->items[1]->kind == VLM_PK_NONE)) {
    for (int k = 0; k < 2 && s == VLM_OK; k++)
      if (st->items[k]->kind == VLM_PK_DICT) s = walk_pairs(c, st->items[k]->kv, st->items[k]->nkv, depth);
    return s;
  }
  return walk(c, st, depth + 1);   /* a dict of attributes, or what __getstate__ gave */
}

static vlm_status walk(tctx *c, vlm_pk *v, int depth) {
  if (++c->visits > MAX_VISITS)
    return vlm_error(VLM_ERR_FORMAT, "%s: more than %u values to walk (a shared value referenced too often)",
                     c->path, MAX_VISITS);
  if (ext_tag(v) == TAG_TENSOR) return add_found(c, v->ext);
  if (v->visiting) return VLM_OK;   /* a cycle: nothing new below */
  if (v->kind != VLM_PK_DICT && v->kind != VLM_PK_LIST && v->kind != VLM_PK_TUPLE && v->kind != VLM_PK_OBJ)
    return VLM_OK;                  /* non-tensor leaves */
  if (depth > MAX_DEPTH)
    return vlm_error(VLM_ERR_FORMAT, "%s: objects nested more than %d levels deep at " NM, c->path, MAX_DEPTH,
                     NMARG(c->name ? c->name : ""));
  v->visiting = 1;
  vlm_status s;
  if (v->kind == VLM_PK_DICT) s = walk_pairs(c, v->kv, v->nkv, depth);
  else if (v->kind == VLM_PK_OBJ) s = walk_obj(c, v, depth);
  else s = walk_items(c, v->items, v->n, depth);
  v->visiting = 0;
  return s;
}

/* ------------------------------------------------------------------ the result */

static int cmp_found(const void *a, const void *b) { return strcmp(((const found *)a)->name, ((const found *)b)->name); }
static int cmp_found_entry(const void *a, const void *b) {
  return strcmp(((const vlm_st_entry *)a)->name, ((const vlm_st_entry *)b)->name);
}

static int contiguous(const tensor *t) {
  int64_t want = 1;
  for (int d = t->ndim - 1; d >= 0; d--) {
    if (t->shape[d] != 1 && t->stride[d] != want) return 0;
    want *= t->shape[d];
  }
  return 1;
}

/* Copy a strided view into dst (contiguous). */
static void gather(const tensor *t, uint8_t *dst) {
  size_t isz = vlm_dtype_size(t->st->dt);
  int64_t idx[VLM_MAX_DIMS] = {0};
  for (int64_t k = 0; k < t->numel; k++) {
    int64_t off = t->offset;
    for (int d = 0; d < t->ndim; d++) off += idx[d] * t->stride[d];
    memcpy(dst + (size_t)k * isz, t->st->data + (size_t)off * isz, isz);
    for (int d = t->ndim - 1; d >= 0; d--) {
      if (++idx[d] < t->shape[d]) break;
      idx[d] = 0;
    }
  }
}

static vlm_status fill(tctx *c, vlm_safetensors *st) {
  if (c->nout > 1) qsort(c->out, (size_t)c->nout, sizeof *c->out, cmp_found);
  for (int i = 1; i < c->nout; i++)
    if (!strcmp(c->out[i - 1].name, c->out[i].name))
      return vlm_error(VLM_ERR_FORMAT, "%s: two tensors are named " NM, c->path, NMARG(c->out[i].name));
  st->entries = calloc((size_t)(c->nout ? c->nout : 1), sizeof(vlm_st_entry));
  if (!st->entries) return vlm_error(VLM_ERR_OOM, "%s: out of memory for %d tensors", c->path, c->nout);
  uint64_t copies = 0, limit = 4 * (uint64_t)st->map_size + (16u << 20);
  for (int i = 0; i < c->nout; i++) {
    const tensor *t = c->out[i].t;
    size_t isz = vlm_dtype_size(t->st->dt);
    const uint8_t *at = t->st->data + (size_t)t->offset * (t->numel ? isz : 0);
    if (t->numel && (!contiguous(t) || (uintptr_t)at % isz)) {
      copies += ((uint64_t)t->numel * isz + 63) & ~(uint64_t)63;
      if (copies > limit)
        return vlm_error(VLM_ERR_FORMAT, "%s: strided views need over %llu bytes of copies (4 times the file): "
                         "refused", c->path, (unsigned long long)limit);
    }
  }
  uint8_t *own = NULL;
  if (copies) {
    void *p = NULL;
    if (posix_memalign(&p, 64, (size_t)copies) != 0)
      return vlm_error(VLM_ERR_OOM, "%s: out of memory for %llu bytes of copied views", c->path,
                       (unsigned long long)copies);
    st->owned = own = p;
    st->owned_size = (size_t)copies;
  }
  for (int i = 0; i < c->nout; i++) {
    const tensor *t = c->out[i].t;
    vlm_st_entry *e = &st->entries[i];
    size_t isz = vlm_dtype_size(t->st->dt);
    uint64_t nb = (uint64_t)t->numel * isz;
    e->name = c->out[i].name;
    c->out[i].name = NULL;
    st->n_entries++;
    e->dtype = t->st->dt;
    e->ndim = t->ndim;
    for (int d = 0; d < t->ndim; d++) e->shape[d] = t->shape[d];
    const uint8_t *at = t->st->data + (size_t)t->offset * (t->numel ? isz : 0);
    if (t->numel && (!contiguous(t) || (uintptr_t)at % isz)) {
      gather(t, own);
      e->data = own;
      e->begin = 0;
      e->end = nb;
      own += (nb + 63) & ~(uint64_t)63;
    } else {
      e->data = at;
      e->begin = (uint64_t)(at - st->data);
      e->end = e->begin + nb;
    }
  }
  return VLM_OK;
}

static vlm_status set_meta(vlm_safetensors *st, const char *fmt) {
  st->meta_keys = calloc(1, sizeof(char *));
  st->meta_values = calloc(1, sizeof(char *));
  if (!st->meta_keys || !st->meta_values) return vlm_error(VLM_ERR_OOM, "%s: out of memory", st->path);
  st->meta_keys[0] = strdup("format");
  st->meta_values[0] = strdup(fmt);
  st->n_meta = 1;
  if (!st->meta_keys[0] || !st->meta_values[0]) return vlm_error(VLM_ERR_OOM, "%s: out of memory", st->path);
  return VLM_OK;
}

/* ------------------------------------------------------------------ open */

static const char *RESAVE = "load it with a current PyTorch and save it again (torch.save(torch.load(f), f))";

static vlm_status not_zip(const char *path, const uint8_t *b, size_t n) {
  if (n >= 2 && b[0] == 0x80 && b[1] <= 5)
    return vlm_error(VLM_ERR_UNSUPPORTED, "%s: a legacy PyTorch file (a bare pickle: torch.save before PyTorch 1.6 or "
                     "with _use_new_zipfile_serialization=False), which vlm does not read: %s", path, RESAVE);
  if (n >= 262 && !memcmp(b + 257, "ustar", 5))
    return vlm_error(VLM_ERR_UNSUPPORTED, "%s: a tar archive (the PyTorch format before 0.4?), which vlm does not "
                     "read: %s", path, RESAVE);
  return vlm_error(VLM_ERR_FORMAT, "%s: not a PyTorch file (torch.save's zip archive starts with \"PK\\3\\4\")", path);
}

static vlm_status open_archive(tctx *c, vlm_safetensors *st) {
  const char *path = c->path;
  const uint8_t *b = st->map;
  if (st->map_size < 4 || memcmp(b, "PK\3\4", 4)) return not_zip(path, b, st->map_size);
  vlm_status s = vlm_zip_open(&c->z, path, b, st->map_size);
  if (s != VLM_OK) return s;
  if (c->z.n == 0) return vlm_error(VLM_ERR_FORMAT, "%s: an empty zip archive", path);
  const char *first = c->z.entries[0].name, *slash = strchr(first, '/');
  if (!slash)
    return vlm_error(VLM_ERR_FORMAT, "%s: zip entry " NM " lies outside an archive folder: not a PyTorch file", path,
                     NMARG(first));
  size_t pl = (size_t)(slash - first) + 1;
  if (!(c->prefix = malloc(pl + 32))) return vlm_error(VLM_ERR_OOM, "%s: out of memory", path);
  memcpy(c->prefix, first, pl);
  c->prefix[pl] = 0;
  c->rec_dt = malloc((size_t)c->z.n);
  c->rec_ok = calloc((size_t)c->z.n, 1);
  if (!c->rec_dt || !c->rec_ok) return vlm_error(VLM_ERR_OOM, "%s: out of memory", path);
  memset(c->rec_dt, -1, (size_t)c->z.n);
  return VLM_OK;
}

static const vlm_zip_entry *record(tctx *c, const char *leaf) {
  char buf[512];
  snprintf(buf, sizeof buf, "%s%s", c->prefix, leaf);
  return vlm_zip_find(&c->z, buf);
}

static vlm_status check_byteorder(tctx *c) {
  const vlm_zip_entry *e = record(c, "byteorder");
  if (!e) return VLM_OK;
  const uint8_t *d;
  vlm_status s = vlm_zip_data(&c->z, e, &d);
  if (s != VLM_OK) return s;
  size_t n = (size_t)e->size;
  while (n && (d[n - 1] == '\n' || d[n - 1] == ' ')) n--;
  if (n == 6 && !memcmp(d, "little", 6)) return VLM_OK;
  if (n == 3 && !memcmp(d, "big", 3))
    return vlm_error(VLM_ERR_UNSUPPORTED, "%s: a big-endian archive (byteorder \"big\"), which vlm does not read: "
                     "%s on a little-endian machine", c->path, RESAVE);
  return vlm_error(VLM_ERR_FORMAT, "%s: record %s says byte order \"%.*s\" (expected little or big)", c->path, e->name,
                   (int)(n < 40 ? n : 40), (const char *)d);
}

static int is_torchscript(tctx *c) {
  if (record(c, "constants.pkl")) return 1;
  size_t pl = strlen(c->prefix);
  for (int i = 0; i < c->z.n; i++)
    if (!strncmp(c->z.entries[i].name, c->prefix, pl) && !strncmp(c->z.entries[i].name + pl, "code/", 5)) return 1;
  return 0;
}

static vlm_status load(tctx *c, vlm_safetensors *st) {
  vlm_status s = open_archive(c, st);
  if (s != VLM_OK || (s = check_byteorder(c)) != VLM_OK) return s;
  if (c->kind_only) return set_meta(st, is_torchscript(c) ? "torchscript" : "torch");
  const vlm_zip_entry *pk = record(c, "data.pkl");
  if (!pk)
    return vlm_error(VLM_ERR_FORMAT, "%s: no %sdata.pkl: a zip archive, but not one torch.save or torch.jit.save "
                     "wrote", c->path, c->prefix);
  const uint8_t *d;
  if ((s = vlm_zip_data(&c->z, pk, &d)) != VLM_OK) return s;
  char what[4200];
  snprintf(what, sizeof what, "%s: %s", c->path, pk->name);
  vlm_pickle_hooks hooks = {c, persistent_load, reduce};
  vlm_pickle *p = NULL;
  vlm_pk *root = NULL;
  s = vlm_pickle_load(&p, &root, d, (size_t)pk->size, what, &hooks);
  if (s == VLM_OK) s = walk(c, root, 0);
  if (s == VLM_OK) s = fill(c, st);
  if (s == VLM_OK) s = set_meta(st, is_torchscript(c) ? "torchscript" : "torch");
  vlm_pickle_free(p);
  return s;
}

static vlm_status torch_open(vlm_safetensors *st, const char *path, int kind_only);

vlm_status vlm_torch_open(vlm_safetensors *st, const char *path) { return torch_open(st, path, 0); }

vlm_status vlm_torch_kind(const char *path, int *torchscript) {
  vlm_safetensors st;
  *torchscript = 0;
  vlm_status s = torch_open(&st, path, 1);
  if (s != VLM_OK) return s;
  const char *k = vlm_st_meta(&st, "format");
  *torchscript = k && !strcmp(k, "torchscript");
  vlm_st_close(&st);
  return VLM_OK;
}

static vlm_status torch_open(vlm_safetensors *st, const char *path, int kind_only) {
  memset(st, 0, sizeof *st);
  if (!path || !path[0]) return vlm_error(VLM_ERR_ARG, "torch file: empty file path");
  if (!(st->path = strdup(path))) return vlm_error(VLM_ERR_OOM, "%s: out of memory", path);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    vlm_status s = vlm_error(VLM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    vlm_st_close(st);
    return s;
  }
  struct stat sb;
  vlm_status s = VLM_OK;
  if (fstat(fd, &sb) != 0) s = vlm_error(VLM_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
  else if (S_ISDIR(sb.st_mode)) s = vlm_error(VLM_ERR_IO, "%s: is a directory, not a PyTorch file", path);
  else if (!S_ISREG(sb.st_mode)) s = vlm_error(VLM_ERR_IO, "%s: is not a regular file", path);
  else if (sb.st_size == 0) s = vlm_error(VLM_ERR_FORMAT, "%s: an empty file, not a PyTorch file", path);
  if (s == VLM_OK) {
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED)
      s = vlm_error(VLM_ERR_IO, "%s: cannot map %lld bytes: %s", path, (long long)sb.st_size, strerror(errno));
    else {
      st->map = map;
      st->map_size = (size_t)sb.st_size;
      st->data = map;
      st->data_size = (uint64_t)sb.st_size;
    }
  }
  close(fd);
  if (s == VLM_OK) {
    tctx c;
    memset(&c, 0, sizeof c);
    c.path = st->path;
    c.kind_only = kind_only;
    s = load(&c, st);
    for (int i = 0; i < c.nout; i++) free(c.out[i].name);
    free(c.out);
    free(c.name);
    free(c.prefix);
    free(c.rec_dt);
    free(c.rec_ok);
    vlm_zip_close(&c.z);
  }
  if (s != VLM_OK) vlm_st_close(st);
  return s;
}

int vlm_torch_sniff(const char *path) {
  if (!path) return 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return 0;
  unsigned char b[4];
  struct stat sb;
  int ok = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && read(fd, b, 4) == 4 && !memcmp(b, "PK\3\4", 4);
  close(fd);
  return ok;
}

vlm_status vlm_st_keep_prefix(vlm_safetensors *st, const char *prefix) {
  if (!st || !prefix) return vlm_error(VLM_ERR_ARG, "vlm_st_keep_prefix: NULL argument");
  size_t pl = strlen(prefix);
  int k = 0;
  for (int i = 0; i < st->n_entries; i++) {
    vlm_st_entry *e = &st->entries[i];
    size_t nl = strlen(e->name);
    if (nl > pl && !strncmp(e->name, prefix, pl)) {
      memmove(e->name, e->name + pl, nl - pl + 1);
      st->entries[k++] = *e;
    } else {
      free(e->name);
    }
  }
  st->n_entries = k;
  if (k > 1) qsort(st->entries, (size_t)k, sizeof *st->entries, cmp_found_entry);
  return VLM_OK;
}
