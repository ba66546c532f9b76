/* COCO captions source: an annotations file ({"images": [{"id", "file_name"}], "annotations":
 * [{"image_id", "caption"}]}) read with cJSON. Every caption is one sample (so an image with 5
 * captions gives 5 training pairs), in the file's annotation order; group = the image id, so
 * evaluation can group an image's captions. Images come from opts.coco_images, else from the
 * folder the COCO layout implies (annotations/captions_val2017.json -> ../val2017/ when it
 * exists), else from the annotations file's own folder.
 * The JSON is parsed once at open; only the captions (one buffer) and per-sample offsets are
 * kept. A malformed annotation (not an object; image_id missing, not an integer, out of range
 * or unknown; no caption string; a caption holding \u0000) is a bad sample, reported with its
 * index when read. A malformed "images" entry, or two entries with one id and different file
 * names, is an error at open (the same entry twice is a warning).
 * What JSON readers disagree on is refused at open, so vlm never trains on other data than
 * open_clip (Python's json) would read: text after the document (json: "Extra data"; cJSON
 * stops at the document's end), a key twice in one object (cJSON finds the first, Python
 * keeps the last), and ids beyond 2^53 - 1 (cJSON reads numbers as doubles: 2^53 + 1 would
 * become 2^53, Python keeps it exact). */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "datasets/source_internal.h"

typedef struct {
  char *path, *img_dir;
  char *text;          /* captions and file names, NUL-separated */
  size_t text_n, text_cap;
  int64_t n;
  int64_t *cap_off;    /* [n] caption offset into text, or a CAP_ code */
  int64_t *img;        /* [n] index into the image table, or an ANN_ code */
  int64_t *image_id;   /* [n] the annotation's image_id */
  int64_t n_images;
  int64_t *img_name;   /* [n_images] file name offset into text */
} coco_src;

/* Why an annotation has no image (coco_src.img) or no caption (coco_src.cap_off). */
enum { ANN_UNKNOWN_ID = -1, ANN_NO_ID = -2, ANN_ID_NOT_INT = -3, ANN_ID_RANGE = -4, ANN_NOT_OBJECT = -5 };
enum { CAP_MISSING = -1, CAP_NUL = -2 };

/* The largest integer a double holds exactly with its neighbours: cJSON reads every number as
 * a double, so 9007199254740993 arrives as ...992 and two ids past this could become one. */
#define JSON_MAX_EXACT 9007199254740991.0   /* 2^53 - 1 */
#define ID_RANGE_NOTE "out of range (beyond +-2^53 - 1 = 9007199254740991, past which JSON numbers are not read exactly)"

/* cJSON turns the escape \u0000 into a NUL that ends its C string, so a caption holding one
 * would be cut short silently. Before parsing, each such escape is replaced by six 0xFF bytes
 * (never valid UTF-8, so a caption holding them is bad anyway) and strings holding that mark
 * are reported. A backslash pair is skipped as a whole, so "\\u0000" is left alone. */
#define NUL_MARK "\xFF\xFF\xFF\xFF\xFF\xFF"
static void mark_nul_escapes(char *b, size_t n) {
  for (size_t i = 0; i + 1 < n; i++) {
    if (b[i] != '\\') continue;
    if (b[i + 1] == 'u' && i + 6 <= n && !memcmp(b + i + 2, "0000", 4)) {
      memcpy(b + i, NUL_MARK, 6);
      i += 5;
    } else {
      i++;   /* the escaped character */
    }
  }
}

static void coco_free(void *p) {
  coco_src *c = p;
  free(c->path);
  free(c->img_dir);
  free(c->text);
  free(c->cap_off);
  free(c->img);
  free(c->image_id);
  free(c->img_name);
  free(c);
}

static int64_t add_text(coco_src *c, const char *s) {
  size_t n = strlen(s) + 1;
  if (c->text_n + n > c->text_cap) {
    size_t cap = c->text_cap ? c->text_cap : 4096;
    while (cap < c->text_n + n) cap *= 2;
    char *nt = realloc(c->text, cap);
    if (!nt) return -2;
    c->text = nt;
    c->text_cap = cap;
  }
  memcpy(c->text + c->text_n, s, n);
  int64_t o = (int64_t)c->text_n;
  c->text_n += n;
  return o;
}

static vlm_status coco_get(vlm_source *s, int64_t i, vlm_sample *out) {
  coco_src *c = s->impl;
  out->group = c->image_id[i];
  if (c->img[i] < 0) {
    snprintf(out->name, sizeof out->name, "%s: annotation %lld", c->path, (long long)i);
    switch (c->img[i]) {
      case ANN_NOT_OBJECT:
        vlm_error(VLM_ERR_FORMAT, "%s: not an object", out->name);
        break;
      case ANN_NO_ID:
        vlm_error(VLM_ERR_FORMAT, "%s: no \"image_id\"", out->name);
        break;
      case ANN_ID_NOT_INT:
        vlm_error(VLM_ERR_FORMAT, "%s: \"image_id\" is not an integer", out->name);
        break;
      case ANN_ID_RANGE:
        vlm_error(VLM_ERR_FORMAT, "%s: \"image_id\" is " ID_RANGE_NOTE, out->name);
        break;
      default:
        vlm_error(VLM_ERR_FORMAT, "%s: image_id %lld is not in \"images\"", out->name, (long long)c->image_id[i]);
        break;
    }
    return vlm_src_fail(out, VLM_BAD_READ, VLM_ERR_FORMAT);
  }
  const char *fname = c->text + c->img_name[c->img[i]];
  snprintf(out->name, sizeof out->name, "%s: annotation %lld (%s)", c->path, (long long)i, fname);
  if (c->cap_off[i] == CAP_NUL)
    return vlm_src_fail(out, VLM_BAD_CAPTION, vlm_error(VLM_ERR_FORMAT, "%s: caption holds a NUL (\\u0000)", out->name));
  if (c->cap_off[i] < 0)
    return vlm_src_fail(out, VLM_BAD_CAPTION, vlm_error(VLM_ERR_FORMAT, "%s: no \"caption\" string", out->name));
  const char *cap = c->text + c->cap_off[i];
  vlm_status st = vlm_caption_check(out->name, cap, strlen(cap));
  if (st) return vlm_src_fail(out, VLM_BAD_CAPTION, st);
  out->caption = strdup(cap);
  char *p = vlm_src_join(c->img_dir, fname);
  if (!out->caption || !p) {
    free(p);
    return vlm_src_fail(out, VLM_BAD_READ, vlm_error(VLM_ERR_OOM, "%s: out of memory", out->name));
  }
  st = vlm_src_read_file(p, (size_t)1 << 28, &out->image_bytes, &out->image_len);
  free(p);
  if (st) {
    vlm_error_prefix(st, "%s", out->name);
    return vlm_src_fail(out, VLM_BAD_READ, st);
  }
  return VLM_OK;
}

static int is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* id -> image table index, by binary search over (id, index) pairs sorted by id. */
typedef struct { int64_t id, idx; } id_pair;
static int cmp_pair(const void *a, const void *b) {
  const id_pair *x = a, *y = b;
  return x->id < y->id ? -1 : x->id > y->id ? 1 : (x->idx < y->idx ? -1 : x->idx > y->idx);
}

/* An integer member: 1, or 0 with why = ANN_NO_ID / ANN_ID_NOT_INT / ANN_ID_RANGE. */
static int json_int(const cJSON *o, int64_t *v, int64_t *why) {
  int64_t w = !o ? ANN_NO_ID : ANN_ID_NOT_INT;
  if (cJSON_IsNumber(o)) {
    double d = o->valuedouble;
    if (!(d >= -JSON_MAX_EXACT && d <= JSON_MAX_EXACT)) w = d == d ? ANN_ID_RANGE : ANN_ID_NOT_INT;
    else if (d == (double)(int64_t)d) { *v = (int64_t)d; return 1; }
  }
  if (why) *why = w;
  return 0;
}

vlm_status vlm_src_open_coco(vlm_source *s, const char *path) {
  coco_src *c = calloc(1, sizeof *c);
  if (!c) return vlm_error(VLM_ERR_OOM, "out of memory");
  s->impl = c;
  s->free_impl = coco_free;
  c->path = strdup(path);
  if (!c->path) return vlm_error(VLM_ERR_OOM, "out of memory");
  uint8_t *buf;
  size_t n;
  vlm_status st = vlm_src_read_file(path, (size_t)1 << 32, &buf, &n);
  if (st) return st;
  mark_nul_escapes((char *)buf, n);
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts((const char *)buf, n, &end, 0);
  if (!root) {
    const char *e = cJSON_GetErrorPtr();
    long long off = e && e >= (const char *)buf && e <= (const char *)buf + n ? (long long)(e - (const char *)buf) : -1;
    free(buf);
    return vlm_error(VLM_ERR_FORMAT, "%s: not valid JSON (near byte %lld)", path, off);
  }
  /* one document: only JSON whitespace may follow it (Python's json.load: "Extra data") */
  size_t tail = end && end >= (const char *)buf && end <= (const char *)buf + n ? (size_t)(end - (const char *)buf) : n;
  while (tail < n && (buf[tail] == ' ' || buf[tail] == '\t' || buf[tail] == '\n' || buf[tail] == '\r')) tail++;
  free(buf);
  id_pair *pairs = NULL;
  if (tail < n) {
    st = vlm_error(VLM_ERR_FORMAT, "%s: extra data after the JSON document at byte %zu (a second document, or text "
                   "after its end?)", path, tail);
    goto done;
  }
  if ((st = vlm_json_unique_keys(root, path))) goto done;
  const cJSON *images = cJSON_GetObjectItemCaseSensitive(root, "images");
  const cJSON *anns = cJSON_GetObjectItemCaseSensitive(root, "annotations");
  if (!cJSON_IsArray(images) || !cJSON_IsArray(anns)) {
    st = vlm_error(VLM_ERR_FORMAT, "%s: not a COCO captions file (needs \"images\" and \"annotations\" arrays)", path);
    goto done;
  }
  int64_t ni = cJSON_GetArraySize(images), na = cJSON_GetArraySize(anns);
  c->img_name = malloc((size_t)(ni ? ni : 1) * sizeof *c->img_name);
  pairs = malloc((size_t)(ni ? ni : 1) * sizeof *pairs);
  c->cap_off = malloc((size_t)(na ? na : 1) * sizeof *c->cap_off);
  c->img = malloc((size_t)(na ? na : 1) * sizeof *c->img);
  c->image_id = malloc((size_t)(na ? na : 1) * sizeof *c->image_id);
  if (!c->img_name || !pairs || !c->cap_off || !c->img || !c->image_id) { st = vlm_error(VLM_ERR_OOM, "out of memory"); goto done; }
  int64_t k = 0;
  const cJSON *it;
  cJSON_ArrayForEach(it, images) {
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(it, "file_name");
    int64_t id, why = 0;
    const char *bad = !cJSON_IsObject(it) ? "is not an object"
                      : !json_int(cJSON_GetObjectItemCaseSensitive(it, "id"), &id, &why)
                          ? (why == ANN_NO_ID       ? "has no \"id\""
                             : why == ANN_ID_RANGE ? "\"id\" is " ID_RANGE_NOTE
                                                   : "\"id\" is not an integer")
                      : !fn                    ? "has no \"file_name\""
                      : !cJSON_IsString(fn)    ? "\"file_name\" is not a string"
                      : !fn->valuestring[0]    ? "\"file_name\" is empty"
                                               : NULL;
    if (bad) {
      st = vlm_error(VLM_ERR_FORMAT, "%s: images[%lld]: %s", path, (long long)k, bad);
      goto done;
    }
    if (strstr(fn->valuestring, NUL_MARK)) {
      st = vlm_error(VLM_ERR_FORMAT, "%s: images[%lld]: \"file_name\" holds a NUL (\\u0000)", path, (long long)k);
      goto done;
    }
    int64_t o = add_text(c, fn->valuestring);
    if (o < 0) { st = vlm_error(VLM_ERR_OOM, "out of memory"); goto done; }
    c->img_name[k] = o;
    pairs[k].id = id;
    pairs[k].idx = k;
    k++;
  }
  c->n_images = ni;
  qsort(pairs, (size_t)ni, sizeof *pairs, cmp_pair);
  /* one id, one image: the same entry twice is harmless, two files under one id are not */
  int64_t same = 0, same_at = -1;
  for (int64_t j = 1; j < ni; j++) {
    if (pairs[j].id != pairs[j - 1].id) continue;
    const char *a = c->text + c->img_name[pairs[j - 1].idx], *b = c->text + c->img_name[pairs[j].idx];
    if (strcmp(a, b)) {
      st = vlm_error(VLM_ERR_FORMAT, "%s: images[%lld] and images[%lld] have the same id %lld but different files "
                     "('%.200s', '%.200s')", path, (long long)pairs[j - 1].idx, (long long)pairs[j].idx,
                     (long long)pairs[j].id, a, b);
      goto done;
    }
    if (!same++) same_at = j;
  }
  if (same)
    vlm_log(VLM_LOG_WARN, "%s: %lld repeated entries in \"images\" (first: id %lld, images[%lld] and images[%lld], "
            "the same file)", path, (long long)same, (long long)pairs[same_at].id, (long long)pairs[same_at - 1].idx,
            (long long)pairs[same_at].idx);
  k = 0;
  cJSON_ArrayForEach(it, anns) {
    const cJSON *cap = cJSON_GetObjectItemCaseSensitive(it, "caption");
    int64_t id = -1;
    c->img[k] = cJSON_IsObject(it) ? ANN_UNKNOWN_ID : ANN_NOT_OBJECT;
    c->image_id[k] = -1;
    if (!cJSON_IsObject(it)) {
      /* reported when read */
    } else if (json_int(cJSON_GetObjectItemCaseSensitive(it, "image_id"), &id, &c->img[k])) {
      c->img[k] = ANN_UNKNOWN_ID;
      c->image_id[k] = id;
      int64_t lo = 0, hi = ni;
      while (lo < hi) {
        int64_t m = (lo + hi) / 2;
        if (pairs[m].id < id) lo = m + 1;
        else hi = m;
      }
      if (lo < ni && pairs[lo].id == id) c->img[k] = pairs[lo].idx;
    }
    c->cap_off[k] = CAP_MISSING;
    if (cJSON_IsString(cap) && strstr(cap->valuestring, NUL_MARK)) {
      c->cap_off[k] = CAP_NUL;
    } else if (cJSON_IsString(cap)) {
      int64_t o = add_text(c, cap->valuestring);
      if (o < 0) { st = vlm_error(VLM_ERR_OOM, "out of memory"); goto done; }
      c->cap_off[k] = o;
    }
    k++;
  }
  c->n = na;
  if (na == 0) { st = vlm_error(VLM_ERR_FORMAT, "%s: no annotations", path); goto done; }
  /* image folder */
  if (s->opts.coco_images) {
    c->img_dir = strdup(s->opts.coco_images);
  } else {
    c->img_dir = vlm_src_dirname(path);
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    if (c->img_dir && !strncmp(b, "captions_", 9)) {
      char split[256];
      snprintf(split, sizeof split, "%s", b + 9);
      char *dot = strrchr(split, '.');
      if (dot) *dot = 0;
      char cand[4096];
      snprintf(cand, sizeof cand, "%s/../%s", c->img_dir, split);
      if (split[0] && is_dir(cand)) {
        free(c->img_dir);
        c->img_dir = strdup(cand);
      }
    }
  }
  if (!c->img_dir) { st = vlm_error(VLM_ERR_OOM, "out of memory"); goto done; }
  s->size = c->n;
  s->get = coco_get;
done:
  free(pairs);
  cJSON_Delete(root);
  return st;
}
