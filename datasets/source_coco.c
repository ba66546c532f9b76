/* COCO captions source: an annotations file ({"images": [{"id", "file_name"}], "annotations":
 * [{"image_id", "caption"}]}) read with cJSON. Every caption is one sample (so an image with 5
 * captions gives 5 training pairs), in the file's annotation order; group = the image id, so
 * evaluation can group an image's captions. Images come from opts.coco_images, else from the
 * folder the COCO layout implies (annotations/captions_val2017.json -> ../val2017/ when it
 * exists), else from the annotations file's own folder.
 * The JSON is parsed once at open; only the captions (one buffer) and per-sample offsets are
 * kept. A malformed annotation (no caption, unknown image id) is a bad sample, reported when read. */
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
  int64_t *cap_off;    /* [n] caption offset into text, -1: missing */
  int64_t *img;        /* [n] index into the image table, -1: unknown */
  int64_t *image_id;   /* [n] the annotation's image_id */
  int64_t n_images;
  int64_t *img_name;   /* [n_images] file name offset into text */
} coco_src;

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
    return vlm_src_fail(out, VLM_BAD_READ, vlm_error(VLM_ERR_FORMAT, "%s: image_id %lld is not in \"images\"", out->name,
                                                     (long long)c->image_id[i]));
  }
  const char *fname = c->text + c->img_name[c->img[i]];
  snprintf(out->name, sizeof out->name, "%s: annotation %lld (%s)", c->path, (long long)i, fname);
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

static int json_int(const cJSON *o, int64_t *v) {
  if (!cJSON_IsNumber(o)) return 0;
  double d = o->valuedouble;
  if (!(d >= -9.0e18 && d <= 9.0e18) || d != (double)(int64_t)d) return 0;
  *v = (int64_t)d;
  return 1;
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
  cJSON *root = cJSON_ParseWithLength((const char *)buf, n);
  if (!root) {
    const char *e = cJSON_GetErrorPtr();
    long long off = e && e >= (const char *)buf && e <= (const char *)buf + n ? (long long)(e - (const char *)buf) : -1;
    free(buf);
    return vlm_error(VLM_ERR_FORMAT, "%s: not valid JSON (near byte %lld)", path, off);
  }
  free(buf);
  const cJSON *images = cJSON_GetObjectItemCaseSensitive(root, "images");
  const cJSON *anns = cJSON_GetObjectItemCaseSensitive(root, "annotations");
  id_pair *pairs = NULL;
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
    int64_t id;
    if (!json_int(cJSON_GetObjectItemCaseSensitive(it, "id"), &id) || !cJSON_IsString(fn) || !fn->valuestring[0]) {
      st = vlm_error(VLM_ERR_FORMAT, "%s: images[%lld] needs an integer \"id\" and a \"file_name\"", path, (long long)k);
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
  k = 0;
  cJSON_ArrayForEach(it, anns) {
    const cJSON *cap = cJSON_GetObjectItemCaseSensitive(it, "caption");
    int64_t id = -1;
    c->img[k] = -1;
    c->image_id[k] = -1;
    if (json_int(cJSON_GetObjectItemCaseSensitive(it, "image_id"), &id)) {
      c->image_id[k] = id;
      int64_t lo = 0, hi = ni;
      while (lo < hi) {
        int64_t m = (lo + hi) / 2;
        if (pairs[m].id < id) lo = m + 1;
        else hi = m;
      }
      if (lo < ni && pairs[lo].id == id) c->img[k] = pairs[lo].idx;
    }
    c->cap_off[k] = -1;
    if (cJSON_IsString(cap)) {
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
