/* safetensors reader: map the whole file read-only, validate the header
 * completely, and hand out views into the mapping.
 *
 * Format: u64 little-endian header length N, N bytes of UTF-8 JSON (an object
 * mapping tensor names to {"dtype", "shape", "data_offsets"} plus an optional
 * "__metadata__" object of strings; trailing spaces pad it), then the data
 * section, which the tensors must cover exactly (no overlaps, no holes).
 *
 * vlm_st_open checks everything before it returns VLM_OK, so callers may trust
 * every entry: begin <= end <= data_size, end - begin == numel * itemsize, names
 * unique and non-empty. Only the header is read (and parsed from a heap copy);
 * tensor data is never read or copied, with one exception: a tensor whose bytes are not aligned for its
 * dtype within the mapping (possible only in files whose writer did not pad the
 * header to a multiple of 8 or ordered tensors badly; never in files from the
 * reference implementation or vlm) is copied into aligned memory so that views
 * over it can be dereferenced as typed arrays. */
#define _GNU_SOURCE
#include "core/core.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_NAME (64u * 1024u)
#define ST_MAX_INT 9007199254740992.0 /* 2^53: integers below it are exact in a JSON double */

/* Shared with safetensors_write.c (no public header: internal helper). Returns
 * the offset of the first byte that is not part of valid UTF-8 (no overlongs,
 * no surrogates, nothing above U+10FFFF), or n when all of s[0..n) is valid. */
size_t vlm_st__utf8_check(const uint8_t *s, size_t n);

size_t vlm_st__utf8_check(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    if (c < 0x80) { i++; continue; }
    size_t len;
    uint32_t cp, min;
    if ((c & 0xe0) == 0xc0) { len = 2; cp = c & 0x1fu; min = 0x80; }
    else if ((c & 0xf0) == 0xe0) { len = 3; cp = c & 0x0fu; min = 0x800; }
    else if ((c & 0xf8) == 0xf0) { len = 4; cp = c & 0x07u; min = 0x10000; }
    else return i;
    if (n - i < len) return i;
    for (size_t k = 1; k < len; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return i;
      cp = (cp << 6) | (s[i + k] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += len;
  }
  return n;
}

/* ------------------------------------------------------------------ open */

typedef struct {
  vlm_safetensors *st;
  cJSON *root;
} open_ctx;

/* Names in messages: cut very long ones. */
#define NM "\"%.200s%s\""
#define NMARG(s) (s), (strlen(s) > 200 ? "..." : "")

/* A JSON number that must be an integer in [0, 2^53]. NULL when fine, else why not. */
static const char *json_uint(const cJSON *v, uint64_t *out) {
  if (!cJSON_IsNumber(v)) return "is not a number";
  double d = v->valuedouble;
  if (isnan(d)) return "is not a number";
  if (d < 0) return "is negative";
  /* 2^53 + 1 already reads as 2^53: refuse everything from 2^53 up rather than
   * accept a value that may have been rounded. */
  if (d >= ST_MAX_INT) return "is too large (2^53 or more)";
  if (d != floor(d)) return "is not an integer";
  *out = (uint64_t)d;
  return NULL;
}

static int cmp_entry_name(const void *a, const void *b) {
  return strcmp(((const vlm_st_entry *)a)->name, ((const vlm_st_entry *)b)->name);
}

static int cmp_entry_range(const void *a, const void *b) {
  const vlm_st_entry *x = *(const vlm_st_entry *const *)a, *y = *(const vlm_st_entry *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static vlm_status parse_metadata(vlm_safetensors *st, const cJSON *m) {
  const char *path = st->path;
  if (!cJSON_IsObject(m)) return vlm_error(VLM_ERR_FORMAT, "%s: __metadata__ is not an object", path);
  int n = cJSON_GetArraySize(m);
  if (n == 0) return VLM_OK;
  st->meta_keys = calloc((size_t)n, sizeof(char *));
  st->meta_values = calloc((size_t)n, sizeof(char *));
  if (!st->meta_keys || !st->meta_values) return vlm_error(VLM_ERR_OOM, "%s: out of memory", path);
  for (const cJSON *c = m->child; c; c = c->next) {
    if (!cJSON_IsString(c) || !c->valuestring)
      return vlm_error(VLM_ERR_FORMAT, "%s: __metadata__ value for key " NM " is not a string", path,
                       NMARG(c->string ? c->string : ""));
    char *k = strdup(c->string ? c->string : ""), *v = strdup(c->valuestring);
    if (!k || !v) { free(k); free(v); return vlm_error(VLM_ERR_OOM, "%s: out of memory", path); }
    st->meta_keys[st->n_meta] = k;
    st->meta_values[st->n_meta] = v;
    st->n_meta++;
  }
  /* Duplicate keys: sort a copy of the key list. */
  char **keys = malloc((size_t)n * sizeof(char *));
  if (!keys) return vlm_error(VLM_ERR_OOM, "%s: out of memory", path);
  memcpy(keys, st->meta_keys, (size_t)n * sizeof(char *));
  qsort(keys, (size_t)n, sizeof(char *), cmp_str);
  for (int i = 1; i < n; i++)
    if (!strcmp(keys[i - 1], keys[i])) {
      vlm_status s = vlm_error(VLM_ERR_FORMAT, "%s: __metadata__ key " NM " appears twice", path, NMARG(keys[i]));
      free(keys);
      return s;
    }
  free(keys);
  return VLM_OK;
}

/* Fill e from the JSON entry j (its name is already set). */
static vlm_status parse_entry(vlm_safetensors *st, vlm_st_entry *e, const cJSON *j) {
  const char *path = st->path;
#define EFAIL(code, fmt, ...) \
  return vlm_error(code, "%s: tensor " NM ": " fmt, path, NMARG(e->name), __VA_ARGS__)
  if (!cJSON_IsObject(j)) EFAIL(VLM_ERR_FORMAT, "entry is not an object%s", "");
  const cJSON *dtype = NULL, *shape = NULL, *offs = NULL;
  for (const cJSON *c = j->child; c; c = c->next) {
    const cJSON **slot = NULL;
    const char *k = c->string ? c->string : "";
    if (!strcmp(k, "dtype")) slot = &dtype;
    else if (!strcmp(k, "shape")) slot = &shape;
    else if (!strcmp(k, "data_offsets")) slot = &offs;
    else EFAIL(VLM_ERR_FORMAT, "unknown field " NM " (expected dtype, shape, data_offsets)", NMARG(k));
    if (*slot) EFAIL(VLM_ERR_FORMAT, "field \"%s\" appears twice", k);
    *slot = c;
  }
  if (!dtype) EFAIL(VLM_ERR_FORMAT, "missing field \"%s\"", "dtype");
  if (!shape) EFAIL(VLM_ERR_FORMAT, "missing field \"%s\"", "shape");
  if (!offs) EFAIL(VLM_ERR_FORMAT, "missing field \"%s\"", "data_offsets");

  if (!cJSON_IsString(dtype) || !dtype->valuestring) EFAIL(VLM_ERR_FORMAT, "dtype is not a string%s", "");
  if (!vlm_dtype_from_name(dtype->valuestring, &e->dtype)) {
    static const char *const known[] = {"F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
      if (!strcmp(dtype->valuestring, known[i]))
        EFAIL(VLM_ERR_UNSUPPORTED, "dtype %s is valid safetensors but not supported by vlm", known[i]);
    EFAIL(VLM_ERR_FORMAT, "unknown dtype " NM, NMARG(dtype->valuestring));
  }

  if (!cJSON_IsArray(shape)) EFAIL(VLM_ERR_FORMAT, "shape is not an array%s", "");
  int nd = cJSON_GetArraySize(shape);
  if (nd > VLM_MAX_DIMS) EFAIL(VLM_ERR_FORMAT, "shape has %d dimensions (at most %d supported)", nd, VLM_MAX_DIMS);
  e->ndim = nd;
  uint64_t numel = 1;
  int overflow = 0, d = 0;
  for (const cJSON *c = shape->child; c; c = c->next, d++) {
    uint64_t v = 0;
    const char *why = json_uint(c, &v);
    if (why) EFAIL(VLM_ERR_FORMAT, "shape[%d] %s", d, why);
    e->shape[d] = (int64_t)v;
    /* Same order as the reference implementation: a running checked product. */
    if (v && numel > (uint64_t)INT64_MAX / v) overflow = 1;
    else numel *= v;
    if (overflow) EFAIL(VLM_ERR_FORMAT, "shape overflows: the element count exceeds 2^63%s", "");
  }
  size_t isz = vlm_dtype_size(e->dtype);
  if (numel > UINT64_MAX / isz) EFAIL(VLM_ERR_FORMAT, "shape overflows: the byte size exceeds 2^64%s", "");
  uint64_t nbytes = numel * isz;

  if (!cJSON_IsArray(offs)) EFAIL(VLM_ERR_FORMAT, "data_offsets is not an array%s", "");
  int no = cJSON_GetArraySize(offs);
  if (no != 2) EFAIL(VLM_ERR_FORMAT, "data_offsets has %d elements, expected exactly 2", no);
  uint64_t be[2] = {0, 0};
  d = 0;
  for (const cJSON *c = offs->child; c; c = c->next, d++) {
    const char *why = json_uint(c, &be[d]);
    if (why) EFAIL(VLM_ERR_FORMAT, "data_offsets[%d] %s", d, why);
  }
  e->begin = be[0];
  e->end = be[1];
  if (e->begin > e->end)
    EFAIL(VLM_ERR_FORMAT, "data_offsets begin %llu is after end %llu", (unsigned long long)e->begin,
          (unsigned long long)e->end);
  if (e->end > st->data_size)
    EFAIL(VLM_ERR_FORMAT, "data_offsets end %llu is past the end of the data section (%llu bytes; file truncated?)",
          (unsigned long long)e->end, (unsigned long long)st->data_size);
  if (e->end - e->begin != nbytes) {
    vlm_tensor t = vlm_st_tensor(e);
    char buf[160];
    EFAIL(VLM_ERR_FORMAT, "data_offsets span %llu bytes but shape %s needs %llu bytes",
          (unsigned long long)(e->end - e->begin), vlm_shape_str(&t, buf, sizeof buf),
          (unsigned long long)nbytes);
  }
#undef EFAIL
  return VLM_OK;
}

/* Byte-level checks the JSON parser does not make: UTF-8, raw control
 * characters (JSON forbids them inside strings; outside strings only space, tab,
 * CR, LF are whitespace) and \u0000 escapes (C strings cannot hold them, so two
 * distinct names could collapse into one). */
static vlm_status scan_header(const char *path, const uint8_t *h, size_t n) {
  size_t bad = vlm_st__utf8_check(h, n);
  if (bad < n)
    return vlm_error(VLM_ERR_FORMAT, "%s: header is not valid UTF-8 (byte 0x%02x at header offset %zu)", path,
                     h[bad], bad);
  int in_str = 0;
  for (size_t i = 0; i < n; i++) {
    uint8_t c = h[i];
    if (!in_str) {
      if (c == '"') in_str = 1;
      else if (c < 0x20 && c != ' ' && c != '\t' && c != '\n' && c != '\r')
        return vlm_error(VLM_ERR_FORMAT, "%s: header contains a control character (0x%02x at header offset %zu)",
                         path, c, i);
    } else if (c == '"') in_str = 0;
    else if (c < 0x20)
      return vlm_error(VLM_ERR_FORMAT, "%s: header contains a control character (0x%02x at header offset %zu)",
                       path, c, i);
    else if (c == '\\' && i + 1 < n) {
      if (h[i + 1] == 'u' && i + 5 < n && h[i + 2] == '0' && h[i + 3] == '0' && h[i + 4] == '0' &&
          h[i + 5] == '0')
        return vlm_error(VLM_ERR_FORMAT, "%s: header contains a NUL character (\\u0000 at header offset %zu)",
                         path, i);
      i++; /* skip the escaped character */
    }
  }
  return VLM_OK;
}

/* h: a NUL-terminated copy of the hlen header bytes. */
static vlm_status parse_header(vlm_safetensors *st, const char *h, uint64_t hlen, cJSON **rootp) {
  const char *path = st->path;
  vlm_status s = scan_header(path, (const uint8_t *)h, (size_t)hlen);
  if (s != VLM_OK) return s;
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(h, (size_t)hlen, &end, 0);
  *rootp = root;
  if (!root) {
    size_t at = (end && end >= h && end <= h + hlen) ? (size_t)(end - h) : 0;
    return vlm_error(VLM_ERR_FORMAT, "%s: header is not valid JSON (error near header offset %zu of %llu)", path,
                     at, (unsigned long long)hlen);
  }
  for (size_t i = (size_t)(end - h); i < hlen; i++)
    if (h[i] != ' ' && h[i] != '\t' && h[i] != '\n' && h[i] != '\r')
      return vlm_error(VLM_ERR_FORMAT,
                       "%s: unexpected bytes after the JSON header at header offset %zu (only spaces may pad it)",
                       path, i);
  if (!cJSON_IsObject(root)) return vlm_error(VLM_ERR_FORMAT, "%s: header is not a JSON object", path);

  /* Count tensors; find the metadata. */
  int n = 0;
  const cJSON *meta = NULL;
  for (const cJSON *c = root->child; c; c = c->next) {
    const char *k = c->string ? c->string : "";
    if (!strcmp(k, "__metadata__")) {
      if (meta) return vlm_error(VLM_ERR_FORMAT, "%s: __metadata__ appears twice", path);
      meta = c;
      continue;
    }
    size_t kl = strlen(k);
    if (kl == 0) return vlm_error(VLM_ERR_FORMAT, "%s: a tensor has an empty name", path);
    if (kl > ST_MAX_NAME)
      return vlm_error(VLM_ERR_FORMAT, "%s: tensor name of %zu bytes is too long (limit %u): " NM "", path, kl,
                       ST_MAX_NAME, NMARG(k));
    n++;
  }
  if (meta && (s = parse_metadata(st, meta)) != VLM_OK) return s;
  if (n == 0) {
    if (st->data_size)
      return vlm_error(VLM_ERR_FORMAT, "%s: bytes 0..%llu of the data section belong to no tensor", path,
                       (unsigned long long)st->data_size);
    return VLM_OK;
  }
  st->entries = calloc((size_t)n, sizeof(vlm_st_entry));
  if (!st->entries) return vlm_error(VLM_ERR_OOM, "%s: out of memory for %d tensor entries", path, n);
  for (const cJSON *c = root->child; c; c = c->next) {
    if (c == meta) continue;
    vlm_st_entry *e = &st->entries[st->n_entries];
    if (!(e->name = strdup(c->string))) return vlm_error(VLM_ERR_OOM, "%s: out of memory", path);
    st->n_entries++;
    if ((s = parse_entry(st, e, c)) != VLM_OK) return s;
  }

  /* Unique names (entries end up sorted by name for bsearch). */
  qsort(st->entries, (size_t)n, sizeof(vlm_st_entry), cmp_entry_name);
  for (int i = 1; i < n; i++)
    if (!strcmp(st->entries[i - 1].name, st->entries[i].name))
      return vlm_error(VLM_ERR_FORMAT, "%s: tensor name " NM " appears twice", path, NMARG(st->entries[i].name));

  /* The ranges must tile the data section exactly. */
  vlm_st_entry **by = malloc((size_t)n * sizeof(*by));
  if (!by) return vlm_error(VLM_ERR_OOM, "%s: out of memory", path);
  for (int i = 0; i < n; i++) by[i] = &st->entries[i];
  qsort(by, (size_t)n, sizeof(*by), cmp_entry_range);
  uint64_t pos = 0;
  const vlm_st_entry *prev = NULL;
  s = VLM_OK;
  for (int i = 0; i < n && s == VLM_OK; i++) {
    const vlm_st_entry *e = by[i];
    if (e->begin < pos)
      s = vlm_error(VLM_ERR_FORMAT, "%s: tensors " NM " (bytes %llu..%llu) and " NM " (bytes %llu..%llu) overlap",
                    path, NMARG(prev->name), (unsigned long long)prev->begin, (unsigned long long)prev->end,
                    NMARG(e->name), (unsigned long long)e->begin, (unsigned long long)e->end);
    else if (e->begin > pos)
      s = vlm_error(VLM_ERR_FORMAT, "%s: bytes %llu..%llu of the data section belong to no tensor", path,
                    (unsigned long long)pos, (unsigned long long)e->begin);
    pos = e->end; /* no error: begin == pos <= end */
    prev = e;
  }
  free(by);
  if (s == VLM_OK && pos < st->data_size)
    s = vlm_error(VLM_ERR_FORMAT, "%s: bytes %llu..%llu of the data section belong to no tensor", path,
                  (unsigned long long)pos, (unsigned long long)st->data_size);
  return s;
}

/* Point every entry at its bytes; copy the (rare) misaligned ones. */
static vlm_status place_data(vlm_safetensors *st) {
  size_t extra = 0;
  for (int i = 0; i < st->n_entries; i++) {
    vlm_st_entry *e = &st->entries[i];
    size_t isz = vlm_dtype_size(e->dtype), nb = (size_t)(e->end - e->begin);
    e->data = st->data + e->begin;
    if (nb && ((uintptr_t)e->data % isz)) extra += (nb + 63) & ~(size_t)63;
  }
  if (!extra) return VLM_OK;
  /* One block: the entries, then 64-aligned copies. Entries hold no pointers
   * into themselves, so realloc keeps them valid. */
  size_t head = (size_t)st->n_entries * sizeof(vlm_st_entry);
  vlm_st_entry *blk = realloc(st->entries, head + 64 + extra);
  if (!blk) return vlm_error(VLM_ERR_OOM, "%s: out of memory for %zu bytes of misaligned tensors", st->path, extra);
  st->entries = blk;
  uint8_t *p = (uint8_t *)blk + head;
  p += (64 - ((uintptr_t)p & 63)) & 63;
  int copied = 0;
  for (int i = 0; i < st->n_entries; i++) {
    vlm_st_entry *e = &st->entries[i];
    size_t isz = vlm_dtype_size(e->dtype), nb = (size_t)(e->end - e->begin);
    if (nb && ((uintptr_t)(st->data + e->begin) % isz)) {
      memcpy(p, st->data + e->begin, nb);
      e->data = p;
      p += (nb + 63) & ~(size_t)63;
      copied++;
    }
  }
  vlm_log(VLM_LOG_DEBUG, "%s: copied %d tensors whose data is misaligned in the file", st->path, copied);
  return VLM_OK;
}

vlm_status vlm_st_open(vlm_safetensors *st, const char *path) {
  memset(st, 0, sizeof *st);
  if (!path || !path[0]) return vlm_error(VLM_ERR_ARG, "safetensors: empty file path");
  if (!(st->path = strdup(path))) return vlm_error(VLM_ERR_OOM, "%s: out of memory", path);
  vlm_status s = VLM_OK;
  cJSON *root = NULL;
  char *hcopy = NULL;
  /* O_NONBLOCK: opening a FIFO must not wait for a writer (refused below). */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    s = vlm_error(VLM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    goto fail;
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    s = vlm_error(VLM_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    goto fail_fd;
  }
  if (S_ISDIR(sb.st_mode)) {
    s = vlm_error(VLM_ERR_IO, "%s: is a directory, not a safetensors file", path);
    goto fail_fd;
  }
  if (!S_ISREG(sb.st_mode)) {
    s = vlm_error(VLM_ERR_IO, "%s: is not a regular file", path);
    goto fail_fd;
  }
  uint64_t fsize = (uint64_t)sb.st_size;
  if (fsize < 8) {
    s = vlm_error(VLM_ERR_FORMAT, "%s: file is %llu bytes, too short for the 8-byte header length", path,
                  (unsigned long long)fsize);
    goto fail_fd;
  }
  void *map = mmap(NULL, (size_t)fsize, PROT_READ, MAP_PRIVATE, fd, 0);
  if (map == MAP_FAILED) {
    s = vlm_error(VLM_ERR_IO, "%s: cannot map %llu bytes: %s", path, (unsigned long long)fsize, strerror(errno));
    goto fail_fd;
  }
  close(fd);
  st->map = map;
  st->map_size = (size_t)fsize;

  const uint8_t *b = map;
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | b[i];
  if (hlen == 0) {
    s = vlm_error(VLM_ERR_FORMAT, "%s: header length is 0", path);
    goto fail;
  }
  if (hlen > VLM_ST_MAX_HEADER) {
    s = vlm_error(VLM_ERR_FORMAT, "%s: header length %llu exceeds the limit of %u bytes", path,
                  (unsigned long long)hlen, VLM_ST_MAX_HEADER);
    goto fail;
  }
  if (hlen > fsize - 8) {
    s = vlm_error(VLM_ERR_FORMAT,
                  "%s: header length %llu runs past the end of the file (%llu bytes follow the length; truncated?)",
                  path, (unsigned long long)hlen, (unsigned long long)(fsize - 8));
    goto fail;
  }
  st->data = b + 8 + hlen;
  st->data_size = fsize - 8 - hlen;
  /* The parser works on a NUL-terminated heap copy of the header (not of the
   * data): nothing it does can touch memory beyond the mapping. */
  hcopy = malloc((size_t)hlen + 1);
  if (!hcopy) {
    s = vlm_error(VLM_ERR_OOM, "%s: out of memory for a header of %llu bytes", path, (unsigned long long)hlen);
    goto fail;
  }
  memcpy(hcopy, b + 8, (size_t)hlen);
  hcopy[hlen] = 0;
  s = parse_header(st, hcopy, hlen, &root);
  free(hcopy);
  hcopy = NULL;
  if (s != VLM_OK) goto fail;
  if ((s = place_data(st)) != VLM_OK) goto fail;
  cJSON_Delete(root);
  return VLM_OK;

fail_fd:
  close(fd);
fail:
  free(hcopy);
  cJSON_Delete(root);
  vlm_st_close(st);
  return s;
}

void vlm_st_close(vlm_safetensors *st) {
  if (!st) return;
  for (int i = 0; i < st->n_entries; i++) free(st->entries[i].name);
  free(st->entries);
  for (int i = 0; i < st->n_meta; i++) {
    free(st->meta_keys[i]);
    free(st->meta_values[i]);
  }
  free(st->meta_keys);
  free(st->meta_values);
  if (st->map) munmap(st->map, st->map_size);
  free(st->owned);
  free(st->path);
  memset(st, 0, sizeof *st);
}

const vlm_st_entry *vlm_st_find(const vlm_safetensors *st, const char *name) {
  if (!st || !name || st->n_entries <= 0) return NULL;
  vlm_st_entry key;
  memset(&key, 0, sizeof key);
  key.name = (char *)name;
  return bsearch(&key, st->entries, (size_t)st->n_entries, sizeof(vlm_st_entry), cmp_entry_name);
}

const char *vlm_st_meta(const vlm_safetensors *st, const char *key) {
  if (!st || !key) return NULL;
  for (int i = 0; i < st->n_meta; i++)
    if (!strcmp(st->meta_keys[i], key)) return st->meta_values[i];
  return NULL;
}

vlm_status vlm_st_read_f32(const vlm_safetensors *st, const vlm_st_entry *e, float *dst, int64_t n) {
  const char *path = st && st->path ? st->path : "(safetensors)";
  if (!e) return vlm_error(VLM_ERR_ARG, "%s: read of a missing tensor", path);
  int64_t numel = 1;
  for (int i = 0; i < e->ndim; i++) numel *= e->shape[i];
  vlm_tensor t = vlm_st_tensor(e);
  char buf[160];
  if (numel != n)
    return vlm_error(VLM_ERR_FORMAT, "%s: tensor " NM " has %lld elements (%s), expected %lld", path,
                     NMARG(e->name), (long long)numel, vlm_shape_str(&t, buf, sizeof buf), (long long)n);
  const uint8_t *src = e->data;
  switch (e->dtype) {
    case VLM_F32:
      if (n) memcpy(dst, src, (size_t)n * 4);
      break;
    case VLM_BF16:
#pragma omp parallel for schedule(static) if (n > 65536)
      for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        dst[i] = vlm_bf16_to_f32(h);
      }
      break;
    case VLM_F16:
#pragma omp parallel for schedule(static) if (n > 65536)
      for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        dst[i] = vlm_f16_to_f32(h);
      }
      break;
    case VLM_F64:
#pragma omp parallel for schedule(static) if (n > 65536)
      for (int64_t i = 0; i < n; i++) {
        double v;
        memcpy(&v, src + 8 * i, 8);
        dst[i] = (float)v;
      }
      break;
    default:
      return vlm_error(VLM_ERR_FORMAT, "%s: tensor " NM " has dtype %s, expected a float type (F32, F16, BF16, F64)",
                       path, NMARG(e->name), vlm_dtype_name(e->dtype));
  }
  return VLM_OK;
}

vlm_tensor vlm_st_tensor(const vlm_st_entry *e) {
  return vlm_tensor_make((void *)e->data, e->dtype, VLM_CPU, e->ndim, e->shape);
}
