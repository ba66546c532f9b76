/* WebDataset source: tar shards given as one file or a brace pattern ("shards-{0000..0099}.tar",
 * "{a,b,c}.tar", several braces, nesting allowed). Members are grouped into samples by key =
 * the path up to the first dot of the file name ("dir/000042.jpg" and "dir/000042.txt" ->
 * key "dir/000042"); consecutive members with the same key are one sample. The image is the
 * first of the extensions jpg, png, jpeg, webp (lower-cased) present, the caption the txt
 * member. A sample missing either, or with a bad caption, is a bad sample; a truncated or
 * corrupt shard reports the shard and byte offset and ends that shard. Only the image and
 * caption members of the current sample are held in memory. A sample with two members of one
 * name (a.txt twice; extensions compared ignoring case) is a bad sample naming the member, as
 * webdataset raises an error on it (a bad sample, like the other malformed samples here, so
 * the shard's other samples still count). The shard list is checked at
 * open: at least one shard must exist; a missing one is reported when it is read. A path with
 * braces that exists as written is one shard, not a pattern. */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/source_internal.h"

/* ------------------------------------------------------------------ brace expansion */
typedef struct {
  char **v;
  int64_t n, cap, max;
  int err;
} strlist;

static void sl_push(strlist *l, char *s) {
  if (!s) { l->err = 1; return; }
  if (l->n >= l->max) { free(s); l->err = 2; return; }
  if (l->n == l->cap) {
    int64_t cap = l->cap ? l->cap * 2 : 16;
    char **nv = realloc(l->v, (size_t)cap * sizeof *nv);
    if (!nv) { free(s); l->err = 1; return; }
    l->v = nv;
    l->cap = cap;
  }
  l->v[l->n++] = s;
}

static char *cat3(const char *a, size_t na, const char *b, size_t nb, const char *c) {
  size_t nc = strlen(c);
  char *r = malloc(na + nb + nc + 1);
  if (!r) return NULL;
  memcpy(r, a, na);
  memcpy(r + na, b, nb);
  memcpy(r + na + nb, c, nc + 1);
  return r;
}

static int expand(const char *p, strlist *out, int depth);

/* Expand "prefix{body}rest": each alternative of body, then recurse on the result. */
static int expand(const char *p, strlist *out, int depth) {
  if (depth > 16) return 0;
  const char *o = strchr(p, '{');
  if (!o) {
    const char *c = strchr(p, '}');
    if (c) return 0;
    sl_push(out, strdup(p));
    return !out->err;
  }
  int d = 0;
  const char *c = o;
  for (; *c; c++) {
    if (*c == '{') d++;
    else if (*c == '}' && --d == 0) break;
  }
  if (!*c) return 0;
  if (memchr(p, '}', (size_t)(o - p))) return 0;
  size_t pre = (size_t)(o - p), blen = (size_t)(c - o - 1);
  const char *body = o + 1, *rest = c + 1;
  /* numeric range a..b */
  const char *dots = NULL;
  for (size_t i = 0; i + 1 < blen; i++)
    if (body[i] == '.' && body[i + 1] == '.') { dots = body + i; break; }
  if (dots) {
    size_t la = (size_t)(dots - body), lb = blen - la - 2;
    const char *b = dots + 2;
    int ok = la > 0 && lb > 0 && la < 19 && lb < 19;
    for (size_t i = 0; ok && i < la; i++) ok = isdigit((unsigned char)body[i]);
    for (size_t i = 0; ok && i < lb; i++) ok = isdigit((unsigned char)b[i]);
    if (!ok) return 0;
    long long x = strtoll(body, NULL, 10), y = strtoll(b, NULL, 10);
    int width = (body[0] == '0' && la > 1) || (b[0] == '0' && lb > 1) ? (int)(la > lb ? la : lb) : 0;
    long long step = x <= y ? 1 : -1;
    for (long long v = x;; v += step) {
      char num[32];
      snprintf(num, sizeof num, "%0*lld", width, v);
      char *q = cat3(p, pre, num, strlen(num), rest);
      if (!q) { out->err = 1; return 0; }
      int r = expand(q, out, depth + 1);
      free(q);
      if (!r) return 0;
      if (v == y) break;
    }
    return 1;
  }
  /* comma alternatives at depth 0 of body */
  size_t s = 0;
  int dd = 0, any_comma = 0;
  for (size_t i = 0; i <= blen; i++) {
    if (i < blen && body[i] == '{') dd++;
    if (i < blen && body[i] == '}') dd--;
    if (i == blen || (body[i] == ',' && dd == 0)) {
      if (i < blen) any_comma = 1;
      char *q = cat3(p, pre, body + s, i - s, rest);
      if (!q) { out->err = 1; return 0; }
      int r = expand(q, out, depth + 1);
      free(q);
      if (!r) return 0;
      s = i + 1;
    }
  }
  (void)any_comma;
  return 1;
}

int vlm_wds_expand(const char *pattern, char ***out, int64_t *n, int64_t max) {
  strlist l = {NULL, 0, 0, max, 0};
  int ok = expand(pattern, &l, 0) && !l.err;
  if (!ok) {
    for (int64_t i = 0; i < l.n; i++) free(l.v[i]);
    free(l.v);
    *out = NULL;
    *n = 0;
    if (l.err == 2) vlm_error(VLM_ERR_ARG, "%s: the pattern expands to more than %lld shards", pattern, (long long)max);
    else if (l.err == 1) vlm_error(VLM_ERR_OOM, "out of memory");
    else vlm_error(VLM_ERR_ARG, "%s: malformed brace pattern (expected {0000..0099} or {a,b})", pattern);
    return 0;
  }
  *out = l.v;
  *n = l.n;
  return 1;
}

/* ------------------------------------------------------------------ shard reader */
struct vlm_shard_reader {
  vlm_tar *tar;
  char *shard;
  int64_t index, count;
  vlm_tar_entry pend;
  int has_pend, done;
  char *pend_err;        /* a tar error met while reading ahead: reported by the next call */
};

vlm_shard_reader *vlm_wds_reader_new(vlm_tar *tar, const char *shard_name, int64_t shard_index) {
  vlm_shard_reader *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->tar = tar;
  r->shard = strdup(shard_name);
  r->index = shard_index;
  if (!r->shard) { free(r); return NULL; }
  return r;
}

void vlm_shard_close(vlm_shard_reader *r) {
  if (!r) return;
  if (r->has_pend) { free(r->pend.data); free(r->pend.name); }
  free(r->pend_err);
  vlm_tar_free(r->tar);
  free(r->shard);
  free(r);
}

/* key = path up to the first dot of the file name; ext = the rest (lower-cased into ext). */
static size_t split_key(const char *name, char *ext, size_t ext_n) {
  const char *base = strrchr(name, '/');
  base = base ? base + 1 : name;
  const char *dot = strchr(base, '.');
  size_t klen = dot ? (size_t)(dot - name) : strlen(name);
  size_t k = 0;
  if (dot)
    for (const char *p = dot + 1; *p && k + 1 < ext_n; p++) ext[k++] = (char)tolower((unsigned char)*p);
  ext[k] = 0;
  return klen;
}

/* The members' extensions of one sample (whole, lower-cased as webdataset compares them), to
 * find one that appears twice: webdataset raises an error on such a shard ("duplicate file
 * name in tar file"), and taking either member silently would train on a guess. */
typedef struct {
  char **v;
  size_t n, cap;
  int oom;
} ext_list;

static void ext_push(ext_list *l, const char *name, size_t klen) {
  const char *x = name + klen + (name[klen] == '.');
  char *c = strdup(x);
  if (c && l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 8;
    char **nv = realloc(l->v, cap * sizeof *nv);
    if (nv) { l->v = nv; l->cap = cap; }
  }
  if (!c || l->n == l->cap) { free(c); l->oom = 1; return; }
  for (char *p = c; *p; p++) *p = (char)tolower((unsigned char)*p);
  l->v[l->n++] = c;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The extension that appears twice (sorted: n log n for a sample of many members), or NULL. */
static const char *ext_repeated(ext_list *l) {
  qsort(l->v, l->n, sizeof *l->v, cmp_str);
  for (size_t i = 1; i < l->n; i++)
    if (!strcmp(l->v[i - 1], l->v[i])) return l->v[i];
  return NULL;
}

static void ext_free(ext_list *l) {
  for (size_t i = 0; i < l->n; i++) free(l->v[i]);
  free(l->v);
}

static const char *const k_img_exts[] = {"jpg", "png", "jpeg", "webp"};
/* why "k.v2.png" is no png: WebDataset's rule, which open_clip reads by */
static const char k_dot_note[] = " (a key ends at the first dot of the file name, as in WebDataset: "
                                 "x.v2.png is the member v2.png of the sample x)";

int vlm_shard_next(vlm_shard_reader *r, vlm_sample *out) {
  memset(out, 0, sizeof *out);
  out->label = -1;
  if (r->pend_err) {
    snprintf(out->name, sizeof out->name, "%s", r->shard);
    vlm_error(VLM_ERR_FORMAT, "%s", r->pend_err);
    free(r->pend_err);
    r->pend_err = NULL;
    out->fail = VLM_BAD_READ;
    return -1;
  }
  if (r->done) return 0;
  vlm_tar_entry e;
  char *owned_name = NULL;
  if (r->has_pend) { e = r->pend; r->has_pend = 0; owned_name = e.name; }
  else {
    int k = vlm_tar_next(r->tar, &e);
    if (k <= 0) {
      r->done = 1;
      if (k < 0) { out->fail = VLM_BAD_READ; snprintf(out->name, sizeof out->name, "%s", r->shard); }
      return k;
    }
  }
  /* the key is a copy: the tar reader owns entry names only until the next entry */
  char ext[32];
  size_t klen = split_key(e.name, ext, sizeof ext);
  char *key = strndup(e.name, klen);
  ext_list exts = {0};
  ext_push(&exts, e.name, klen);
  free(owned_name);
  e.name = NULL;
  if (!key) {
    free(e.data);
    ext_free(&exts);
    r->done = 1;
    snprintf(out->name, sizeof out->name, "%s", r->shard);
    vlm_error(VLM_ERR_OOM, "%s: out of memory", r->shard);
    out->fail = VLM_BAD_READ;
    return -1;
  }
  size_t key_n = klen;
  char seen[128] = "";   /* the sample's member extensions, for the messages below */
  int dotted = 0;        /* one of them holds a dot: a file name with several dots */
  int img_rank = 99;
  uint8_t *img = NULL, *txt = NULL;
  size_t img_n = 0, txt_n = 0;
  int broken = 0;
  for (;;) {
    size_t sl = strlen(seen);
    if (sl + 4 < sizeof seen) snprintf(seen + sl, sizeof seen - sl, "%s.%s", sl ? ", " : "", ext);
    dotted |= strchr(ext, '.') != NULL;
    int rank = 99;
    for (int i = 0; i < 4; i++)
      if (!strcmp(ext, k_img_exts[i])) rank = i;
    if (rank < img_rank) { free(img); img = e.data; img_n = e.size; img_rank = rank; }
    else if (!strcmp(ext, "txt") && !txt) { txt = e.data; txt_n = e.size; }
    else free(e.data);
    int k = vlm_tar_next(r->tar, &e);
    if (k == 0) { r->done = 1; break; }
    if (k < 0) { broken = 1; r->done = 1; break; }
    klen = split_key(e.name, ext, sizeof ext);
    if (klen != key_n || strncmp(e.name, key, klen)) {
      /* next sample: keep the entry, with its own copy of the name */
      r->pend = e;
      r->pend.name = strdup(e.name);
      if (!r->pend.name) { free(e.data); r->done = 1; broken = 1; vlm_error(VLM_ERR_OOM, "out of memory"); break; }
      r->has_pend = 1;
      break;
    }
    ext_push(&exts, e.name, klen);
  }
  snprintf(out->name, sizeof out->name, "%s:%s", r->shard, key);
  out->group = (r->index << 32) | (r->count++ & 0xffffffff);
  const char *rep = exts.oom ? NULL : ext_repeated(&exts);
  if (rep || exts.oom) {
    /* the rest of the shard is read on as usual; a tar error met here is reported next */
    if (broken) r->pend_err = strdup(vlm_last_error());
    if (exts.oom) vlm_error(VLM_ERR_OOM, "%s: out of memory", out->name);
    else
      vlm_error(VLM_ERR_FORMAT, "%s: two members named %.200s%s%.60s (extension case ignored, as webdataset does; "
                "webdataset refuses such a shard, vlm skips the sample)", out->name, key, rep[0] ? "." : "", rep);
    free(key);
    ext_free(&exts);
    free(img);
    free(txt);
    out->fail = VLM_BAD_READ;
    return -1;
  }
  free(key);
  ext_free(&exts);
  if (broken && img && txt) {
    /* this sample is whole: deliver it, report the broken shard on the next call */
    r->pend_err = strdup(vlm_last_error());
  } else if (broken) {
    free(img);
    free(txt);
    out->fail = VLM_BAD_READ;
    return -1;   /* the tar reader's message names the shard and the offset */
  }
  if (!img) {
    free(txt);
    vlm_error(VLM_ERR_FORMAT, "%s: no image member (jpg, png, jpeg or webp); its members: %s%s", out->name, seen,
              dotted ? k_dot_note : "");
    out->fail = VLM_BAD_READ;
    return -1;
  }
  if (!txt) {
    free(img);
    vlm_error(VLM_ERR_FORMAT, "%s: no caption member (.txt); its members: %s%s", out->name, seen,
              dotted ? k_dot_note : "");
    out->fail = VLM_BAD_CAPTION;
    return -1;
  }
  while (txt_n && (txt[txt_n - 1] == '\n' || txt[txt_n - 1] == '\r')) txt[--txt_n] = 0;
  if (vlm_caption_check(out->name, (const char *)txt, txt_n)) {
    free(img);
    free(txt);
    out->fail = VLM_BAD_CAPTION;
    return -1;
  }
  out->image_bytes = img;
  out->image_len = img_n;
  out->caption = (char *)txt;
  return 1;
}

/* ------------------------------------------------------------------ the source */
typedef struct {
  char **shards;
  int64_t n;
} wds_src;

static void wds_free(void *p) {
  wds_src *w = p;
  for (int64_t i = 0; i < w->n; i++) free(w->shards[i]);
  free(w->shards);
  free(w);
}

static vlm_status wds_shard_open(vlm_source *s, int64_t shard, vlm_shard_reader **out) {
  wds_src *w = s->impl;
  const char *path = w->shards[shard];
  int fd = vlm_src_open_regular(path, "shard");   /* a pipe or a folder is named as such */
  if (fd < 0) return VLM_ERR_IO;
  FILE *f = fdopen(fd, "rb");
  if (!f) { int e = errno; close(fd); return vlm_error(VLM_ERR_IO, "%s: cannot open shard: %s", path, strerror(e)); }
  vlm_tar *t = vlm_tar_new(f, path, 1);
  if (!t) { fclose(f); return vlm_error(VLM_ERR_OOM, "out of memory"); }
  *out = vlm_wds_reader_new(t, path, shard);   /* samples named by the shard's path as given (a/x.tar, b/x.tar) */
  if (!*out) { vlm_tar_free(t); return vlm_error(VLM_ERR_OOM, "out of memory"); }
  return VLM_OK;
}

vlm_status vlm_src_open_wds(vlm_source *s, const char *pattern) {
  wds_src *w = calloc(1, sizeof *w);
  if (!w) return vlm_error(VLM_ERR_OOM, "out of memory");
  s->impl = w;
  s->free_impl = wds_free;
  struct stat lit;
  if (strchr(pattern, '{') && stat(pattern, &lit) == 0) {
    /* a shard named with braces ("x{1}.tar") that exists as written is that one shard */
    vlm_log(VLM_LOG_DEBUG, "%s: the path exists as written, so it is read as it is, not as a {..} pattern", pattern);
    w->shards = malloc(sizeof *w->shards);
    if (!w->shards || !(w->shards[0] = strdup(pattern))) return vlm_error(VLM_ERR_OOM, "out of memory");
    w->n = 1;
  } else if (!vlm_wds_expand(pattern, &w->shards, &w->n, 1000000)) {
    return VLM_ERR_ARG;
  }
  int64_t present = 0;
  char first[300] = "";   /* why the first unusable shard is unusable */
  for (int64_t i = 0; i < w->n; i++) {
    struct stat st;
    int missing = stat(w->shards[i], &st) != 0;
    if (!missing && S_ISREG(st.st_mode)) { present++; continue; }
    if (first[0]) continue;
    if (missing) snprintf(first, sizeof first, "%.120s: cannot open: %s", w->shards[i], strerror(errno));
    else
      snprintf(first, sizeof first, "%.120s: %s", w->shards[i],
               S_ISDIR(st.st_mode)    ? "is a directory"
               : S_ISFIFO(st.st_mode) ? "not a regular file (a pipe; shards are re-read every pass, so they must be files)"
                                      : "not a regular file");
  }
  if (present == 0) {
    /* braces that were meant literally: say that they were read as a pattern */
    const char *note = strchr(pattern, '{') ? "; the {..} were read as a shard pattern, as no path of that name exists as written" : "";
    if (w->n == 1 && !note[0]) return vlm_error(VLM_ERR_IO, "%s", first);
    return vlm_error(VLM_ERR_IO, "%s: no shard found (first: %s%s)", pattern, first, note);
  }
  if (present < w->n)
    vlm_log(VLM_LOG_WARN, "%s: %lld of %lld shards are missing or not regular files (first: %s; reported when read)",
            pattern, (long long)(w->n - present), (long long)w->n, first);
  s->n_shards = w->n;
  s->size = -1;
  s->shard_open = wds_shard_open;
  return VLM_OK;
}
