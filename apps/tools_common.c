/* Helpers for the zeroshot / index / search commands (see tools.h). */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apps/tools.h"

int vlm_tools_is_image(const char *path) {
  uint8_t b[12];
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  size_t n = fread(b, 1, sizeof b, f);
  fclose(f);
  if (n >= 2 && b[0] == 0xFF && b[1] == 0xD8) return 1;
  if (n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8)) return 1;
  if (n >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4)) return 1;
  return 0;
}

vlm_status vlm_pathlist_add(vlm_pathlist *pl, const char *path) {
  if (pl->n == pl->cap) {
    int64_t cap = pl->cap ? 2 * pl->cap : 64;
    char **p = realloc(pl->paths, (size_t)cap * sizeof *p);
    if (!p) return vlm_error(VLM_ERR_OOM, "out of memory");
    pl->paths = p;
    pl->cap = cap;
  }
  if (!(pl->paths[pl->n] = strdup(path))) return vlm_error(VLM_ERR_OOM, "out of memory");
  pl->n++;
  return VLM_OK;
}

void vlm_pathlist_free(vlm_pathlist *pl) {
  for (int64_t i = 0; i < pl->n; i++) free(pl->paths[i]);
  free(pl->paths);
  memset(pl, 0, sizeof *pl);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* What the search of a folder tree leaves out is said, never silent: "vlm CMD: warning: ...". */
static void walk_warn(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void walk_warn(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "vlm%s%s: warning: ", cmd ? " " : "", cmd ? cmd : "");
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

/* The folders from the top one down to the one being searched, so that a folder holding
 * itself (a bind mount) is searched once, not until the depth limit in every branch. */
typedef struct { dev_t dev; ino_t ino; } dir_id;

static vlm_status walk(vlm_pathlist *pl, const char *dir, const char *cmd, int depth, dir_id *up) {
  DIR *d = opendir(dir);
  if (!d) {   /* one locked folder must not cost the rest of the tree */
    walk_warn(cmd, "%s: cannot open folder: %s; its images are left out", dir, strerror(errno));
    pl->unsearched++;
    return VLM_OK;
  }
  struct stat ds;
  up[depth] = (dir_id){0, 0};
  if (fstat(dirfd(d), &ds) == 0) {
    for (int k = 0; k < depth; k++)
      if (up[k].dev == ds.st_dev && up[k].ino == ds.st_ino) {
        walk_warn(cmd, "%s: is a folder above it again (a bind mount?): not searched twice", dir);
        closedir(d);
        return VLM_OK;
      }
    up[depth] = (dir_id){ds.st_dev, ds.st_ino};
  }
  vlm_pathlist names = {0};
  vlm_status st = VLM_OK;
  struct dirent *de;
  while ((de = readdir(d)) && st == VLM_OK)
    if (de->d_name[0] != '.') st = vlm_pathlist_add(&names, de->d_name);
  closedir(d);
  if (st == VLM_OK && names.n) qsort(names.paths, (size_t)names.n, sizeof(char *), cmp_str);
  size_t dl = strlen(dir);
  while (dl > 1 && dir[dl - 1] == '/') dl--;
  for (int64_t i = 0; i < names.n && st == VLM_OK; i++) {
    const char *name = names.paths[i];
    size_t len = dl + strlen(name) + 2;
    char *p = malloc(len);
    if (!p) { st = vlm_error(VLM_ERR_OOM, "out of memory"); break; }
    snprintf(p, len, "%.*s/%s", (int)dl, dir, name);
    const int ext = vlm_src_has_image_ext(name);
    struct stat s, t;
    if (lstat(p, &s) != 0) {
      if (ext) st = vlm_pathlist_add(pl, p);   /* gone since the listing: the decoding says so */
    } else if (S_ISDIR(s.st_mode)) {
      if (depth < VLM_TOOLS_MAX_DEPTH) st = walk(pl, p, cmd, depth + 1, up);
      else {   /* (a loop of bind mounts is caught above; this is a deep tree) */
        walk_warn(cmd, "%s: more than %d folders deep: not searched, nor the folders in it", p, VLM_TOOLS_MAX_DEPTH);
        pl->unsearched++;
      }
    } else if (S_ISLNK(s.st_mode) && stat(p, &t) != 0) {
      if (ext) st = vlm_pathlist_add(pl, p);   /* named and counted by the decoding */
      else walk_warn(cmd, "%s: a link whose target cannot be read (%s): skipped", p, strerror(errno));
    } else {
      if (!S_ISLNK(s.st_mode)) t = s;
      if (S_ISDIR(t.st_mode)) ;   /* a link to a folder: not followed (said in every --help) */
      else if (!S_ISREG(t.st_mode)) {   /* a FIFO would block the decoding: named, not opened */
        if (ext) walk_warn(cmd, "%s: not a regular file (%s): skipped", p, S_ISFIFO(t.st_mode) ? "a pipe" : "a device or socket");
      } else if (ext || vlm_tools_is_image(p)) st = vlm_pathlist_add(pl, p);
      else if (access(p, R_OK) != 0)   /* no image name and no readable first bytes: maybe an image */
        walk_warn(cmd, "%s: cannot be read (%s): skipped", p, strerror(errno));
    }
    free(p);
  }
  vlm_pathlist_free(&names);
  return st;
}

vlm_status vlm_tools_collect(vlm_pathlist *pl, const char *arg, const char *cmd) {
  struct stat s;
  if (stat(arg, &s) != 0) return vlm_error(VLM_ERR_IO, "%s: %s", arg, strerror(errno));
  if (!S_ISDIR(s.st_mode)) return vlm_pathlist_add(pl, arg);
  dir_id up[VLM_TOOLS_MAX_DEPTH + 1];   /* arg and the VLM_TOOLS_MAX_DEPTH levels below it */
  return walk(pl, arg, cmd, 0, up);
}

typedef struct { dev_t dev; ino_t ino; int64_t i; } file_id;
static int cmp_file_id(const void *x, const void *y) {
  const file_id *a = x, *b = y;
  if (a->dev != b->dev) return a->dev < b->dev ? -1 : 1;
  if (a->ino != b->ino) return a->ino < b->ino ? -1 : 1;
  return a->i < b->i ? -1 : a->i > b->i;
}

/* (see tools.h) */
int64_t vlm_pathlist_drop_duplicates(vlm_pathlist *files) {
  if (files->n < 2) return 0;
  file_id *ids = malloc(((size_t)files->n + 1) * sizeof *ids);
  char *dup = calloc((size_t)files->n + 1, 1);
  if (!ids || !dup) { free(ids); free(dup); return -1; }
  int64_t m = 0, dropped = 0;
  for (int64_t i = 0; i < files->n; i++) {
    struct stat sb;
    if (stat(files->paths[i], &sb) == 0) ids[m++] = (file_id){sb.st_dev, sb.st_ino, i};
  }
  qsort(ids, (size_t)m, sizeof *ids, cmp_file_id);
  for (int64_t j = 1; j < m; j++)
    if (ids[j].dev == ids[j - 1].dev && ids[j].ino == ids[j - 1].ino) dup[ids[j].i] = 1;
  int64_t w = 0;
  for (int64_t i = 0; i < files->n; i++) {
    if (dup[i]) { free(files->paths[i]); dropped++; continue; }
    files->paths[w++] = files->paths[i];
  }
  files->n = w;
  free(ids);
  free(dup);
  return dropped;
}

void vlm_tools_prompts_start(vlm_tools_prompts *p, vlm_encoder *enc, const char *cmd, int64_t n) {
  p->enc = enc;
  vlm_tools_progress_start(&p->pg, cmd, "prompts", n, n > VLM_TOOLS_PROMPTS_QUIET);
}

vlm_status vlm_tools_prompts_cb(void *ctx, const char *const *texts, int n, float *out) {
  vlm_tools_prompts *p = ctx;
  vlm_status st = vlm_encoder_texts(p->enc, texts, n, out);
  if (st == VLM_OK) vlm_tools_progress_add(&p->pg, n, 0);
  return st;
}

void vlm_tools_progress_start(vlm_tools_progress *p, const char *cmd, const char *what, int64_t n, int on) {
  memset(p, 0, sizeof *p);
  p->cmd = cmd;
  p->what = what;
  p->n = n;
  p->on = on && n > 0;
  p->tty = p->on && isatty(2);
  p->t0 = p->last = vlm_now();
  p->every = p->tty ? 0.5 : VLM_TOOLS_PROGRESS_EVERY_S;
  const char *env = getenv("VLM_PROGRESS_EVERY");
  char *end = NULL;
  double v = env && *env ? strtod(env, &end) : -1;
  if (!p->tty && end && !*end && v >= 0 && v <= 1e6) p->every = v;
}

void vlm_tools_progress_add(vlm_tools_progress *p, int64_t k, int64_t skipped) {
  p->done += k;
  p->skipped += skipped;
  if (!p->on) return;
  double now = vlm_now();
  const int end = p->done >= p->n;
  if (!end && now - p->last < p->every) return;
  double el = now - p->t0, rate = el > 0 ? p->done / el : 0;
  fprintf(stderr, "%s%s: %lld/%lld %s (%.1f%%), %.1f %s/s", p->tty ? "\r\033[K" : "", p->cmd, (long long)p->done,
          (long long)p->n, p->what, 100.0 * p->done / p->n, rate, p->what);
  if (!strcmp(p->what, "images")) fprintf(stderr, ", %lld skipped", (long long)p->skipped);
  if (!end && rate > 0) fprintf(stderr, ", ETA %.0f s", (p->n - p->done) / rate);
  fprintf(stderr, "%s", end || !p->tty ? "\n" : "");
  fflush(stderr);
  p->last = now;
}

int64_t vlm_tools_embed_files(vlm_encoder *e, char *const *paths, int64_t n, float *out, int *ok,
                              const vlm_decode_opts *decode, const char *cmd, int progress) {
  int64_t B = e->max_batch, S = vlm_encoder_image_size(e), E = vlm_encoder_dim(e), per = 3 * S * S;
  float *pix = malloc((size_t)B * (size_t)per * sizeof(float));
  float *emb = malloc((size_t)B * (size_t)E * sizeof(float));
  char (*msg)[512] = malloc((size_t)B * sizeof *msg);
  int64_t *slot = malloc((size_t)B * sizeof *slot);
  if (!pix || !emb || !msg || !slot) {
    free(pix); free(emb); free(msg); free(slot);
    fprintf(stderr, "vlm %s: out of memory for a batch of %lld images\n", cmd, (long long)B);
    return -1;
  }
  const vlm_decode_opts dopts = decode ? *decode : (vlm_decode_opts){0};
  int64_t bad = 0;
  vlm_tools_progress pg;
  vlm_tools_progress_start(&pg, cmd, "images", n, progress);
  const char *cl = pg.tty ? "\r\033[K" : "";
  for (int64_t s = 0; s < n; s += B) {
    int64_t b = n - s < B ? n - s : B, bad0 = bad;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t i = 0; i < b; i++) {
      vlm_status st = vlm_preprocess_file(paths[s + i], &dopts, &e->pre, NULL, pix + (size_t)(i * per));
      ok[s + i] = st == VLM_OK;
      if (st != VLM_OK) snprintf(msg[i], sizeof msg[i], "%s", vlm_last_error());
    }
    int64_t m = 0;   /* pack the good images to the front */
    for (int64_t i = 0; i < b; i++) {
      if (!ok[s + i]) {
        fprintf(stderr, "%svlm %s: skipped: %s\n", cl, cmd, msg[i]);
        bad++;
        continue;
      }
      if (m != i) memcpy(pix + (size_t)(m * per), pix + (size_t)(i * per), (size_t)per * sizeof(float));
      slot[m++] = s + i;
    }
    if (m) vlm_encoder_images(e, pix, m, emb);
    for (int64_t i = 0; i < m; i++) memcpy(out + (size_t)(slot[i] * E), emb + (size_t)(i * E), (size_t)E * sizeof(float));
    vlm_tools_progress_add(&pg, b, bad - bad0);
  }
  free(pix); free(emb); free(msg); free(slot);
  return bad;
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n') s++;
  size_t n = strlen(s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) s[--n] = 0;
  return s;
}

static vlm_status push(char ***v, int *n, int *cap, const char *s) {
  if (*n == *cap) {
    *cap = *cap ? 2 * *cap : 16;
    char **nv = realloc(*v, (size_t)*cap * sizeof **v);
    if (!nv) return vlm_error(VLM_ERR_OOM, "out of memory");
    *v = nv;
  }
  if (!((*v)[*n] = strdup(s))) return vlm_error(VLM_ERR_OOM, "out of memory");
  (*n)++;
  return VLM_OK;
}

vlm_status vlm_tools_split_list(const char *s, char ***out, int *n) {
  *out = NULL;
  *n = 0;
  char *dup = strdup(s);
  if (!dup) return vlm_error(VLM_ERR_OOM, "out of memory");
  int cap = 0, item = 0;
  vlm_status st = VLM_OK;
  char *p = dup;
  for (;;) {
    char *c = strchr(p, ',');
    if (c) *c = 0;
    char *t = trim(p);
    item++;
    if (!*t) { st = vlm_error(VLM_ERR_ARG, "empty class name (item %d of the list)", item); break; }
    if ((st = push(out, n, &cap, t)) != VLM_OK) break;
    if (!c) break;
    p = c + 1;
  }
  free(dup);
  if (st != VLM_OK) {
    for (int i = 0; i < *n; i++) free((*out)[i]);
    free(*out);
    *out = NULL;
    *n = 0;
  }
  return st;
}

vlm_status vlm_tools_read_lines(const char *path, char ***out, int *n, int keep_empty) {
  *out = NULL;
  *n = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return vlm_error(VLM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  char *line = NULL;
  size_t lcap = 0;
  ssize_t len;
  int cap = 0, no = 0;
  vlm_status st = VLM_OK;
  while ((len = getline(&line, &lcap, f)) >= 0) {
    no++;
    if ((size_t)len != strlen(line)) { st = vlm_error(VLM_ERR_FORMAT, "%s:%d: NUL byte in the line", path, no); break; }
    /* a UTF-8 BOM (editors on Windows write one) is no part of the first line */
    char *t = trim(no == 1 && !strncmp(line, "\xEF\xBB\xBF", 3) ? line + 3 : line);
    if (!*t && !keep_empty) continue;
    if ((st = push(out, n, &cap, t)) != VLM_OK) break;
  }
  free(line);
  if (st == VLM_OK && ferror(f)) st = vlm_error(VLM_ERR_IO, "%s: read error", path);
  fclose(f);
  if (st != VLM_OK) {
    for (int i = 0; i < *n; i++) free((*out)[i]);
    free(*out);
    *out = NULL;
    *n = 0;
  }
  return st;
}

void vlm_tools_text_str(FILE *f, const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '\n') fputs("\\n", f);
    else if (*p == '\t') fputs("\\t", f);
    else if (*p == '\r') fputs("\\r", f);
    else if (*p < 0x20 || *p == 0x7f) fprintf(f, "\\x%02x", *p);
    else fputc(*p, f);
  }
}

void vlm_tools_json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    unsigned c = *p;
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c == '\n') fputs("\\n", f);
    else if (c == '\t') fputs("\\t", f);
    else if (c == '\r') fputs("\\r", f);
    else if (c < 0x20) fprintf(f, "\\u%04x", c);
    else if (c < 0x80) fputc((int)c, f);
    else {
      /* validate one UTF-8 sequence; copy it, or escape a bad byte */
      int len = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c <= 0xDF ? 2 : 0;
      int good = len > 0;
      for (int k = 1; k < len && good; k++) good = (p[k] & 0xC0) == 0x80;
      if (good && len == 3 && ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] >= 0xA0))) good = 0;
      if (good && len == 4 && ((c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] >= 0x90))) good = 0;
      if (good) { fwrite(p, 1, (size_t)len, f); p += len - 1; }
      else fprintf(f, "\\ufffd");
    }
  }
  fputc('"', f);
}

char *vlm_tools_json_quote(const char *s) {
  char *buf = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&buf, &n);
  if (!f) return NULL;
  vlm_tools_json_str(f, s ? s : "");
  if (fclose(f) != 0) {
    free(buf);
    return NULL;
  }
  return buf;
}

vlm_status vlm_tools_check_writable(const char *path) {
  struct stat sb;
  if (stat(path, &sb) == 0 && (S_ISCHR(sb.st_mode) || S_ISFIFO(sb.st_mode)))
    return VLM_OK;   /* written directly later; opening a FIFO now would wait for its reader */
  vlm_atomic_file af;
  vlm_status st = vlm_atomic_open(&af, path);
  if (st == VLM_OK) vlm_atomic_abort(&af);
  return st;
}
