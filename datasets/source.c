/* Dataset sources: options, type names, opening with type auto-detection and the dispatch of
 * reads to the type's implementation (source_csv.c, source_coco.c, source_wds.c,
 * source_folder.c, shapes.c); helpers shared by them. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/source_internal.h"

static const char *const k_type_names[] = {"auto", "csv", "coco", "wds", "folder", "imagefolder", "shapes"};

const char *vlm_ds_type_name(vlm_ds_type t) {
  return (unsigned)t < sizeof k_type_names / sizeof k_type_names[0] ? k_type_names[t] : "?";
}

int vlm_ds_type_parse(const char *s, vlm_ds_type *out) {
  for (int i = 0; i < (int)(sizeof k_type_names / sizeof k_type_names[0]); i++)
    if (!strcmp(s, k_type_names[i])) { *out = (vlm_ds_type)i; return 1; }
  if (!strcmp(s, "webdataset")) { *out = VLM_DS_WDS; return 1; }
  if (!strcmp(s, "tsv")) { *out = VLM_DS_CSV; return 1; }
  return 0;
}

void vlm_source_opts_default(vlm_source_opts *o) {
  memset(o, 0, sizeof *o);
  o->type = VLM_DS_AUTO;
  o->csv_separator = '\t';
  o->csv_img_key = "filepath";
  o->csv_caption_key = "title";
  o->coco_images = NULL;
  o->seed = 0;
  o->shapes_size = 0;
  o->csv_group_images = 1;
}

void vlm_sample_free(vlm_sample *s) {
  if (!s) return;
  free(s->image_bytes);
  free(s->caption);
  vlm_image_free(&s->pixels);
  s->image_bytes = NULL;
  s->caption = NULL;
  s->image_len = 0;
}

/* ------------------------------------------------------------------ helpers */
int vlm_src_open_regular(const char *path, const char *what) {
  /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever; the
   * type is checked on the opened descriptor, so nothing can be swapped in between */
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    if (e == ENXIO) vlm_error(VLM_ERR_IO, "%s: not a regular file (a socket?)", path);
    else vlm_error(VLM_ERR_IO, "%s: cannot open%s%s: %s", path, what ? " " : "", what ? what : "", strerror(e));
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    vlm_error(VLM_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    return -1;
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    const char *kind = S_ISDIR(st.st_mode)    ? "is a directory"
                       : S_ISFIFO(st.st_mode) ? "not a regular file (a pipe)"
                       : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "not a regular file (a device)"
                       : S_ISSOCK(st.st_mode) ? "not a regular file (a socket)"
                                              : "not a regular file";
    vlm_error(VLM_ERR_IO, "%s: %s", path, kind);
    return -1;
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
    int e = errno;
    close(fd);
    vlm_error(VLM_ERR_IO, "%s: cannot set the file flags: %s", path, strerror(e));
    return -1;
  }
  return fd;
}

vlm_status vlm_src_read_file(const char *path, size_t max, uint8_t **out, size_t *n) {
  *out = NULL;
  *n = 0;
  int fd = vlm_src_open_regular(path, NULL);
  if (fd < 0) return VLM_ERR_IO;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return vlm_error(VLM_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
  }
  if ((uint64_t)st.st_size > max) {
    close(fd);
    return vlm_error(VLM_ERR_FORMAT, "%s: too large (%lld bytes, limit %zu)", path, (long long)st.st_size, max);
  }
  size_t len = (size_t)st.st_size;
  uint8_t *buf = malloc(len + 1);
  if (!buf) { close(fd); return vlm_error(VLM_ERR_OOM, "%s: out of memory (%zu bytes)", path, len); }
  size_t got = 0;
  int err = 0;
  while (got < len) {
    ssize_t r = read(fd, buf + got, len - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) err = errno;
    if (r <= 0) break;
    got += (size_t)r;
  }
  close(fd);
  if (got != len) {
    free(buf);
    if (err) return vlm_error(VLM_ERR_IO, "%s: read error: %s", path, strerror(err));
    return vlm_error(VLM_ERR_IO, "%s: read error (got %zu of %zu bytes; the file shrank?)", path, got, len);
  }
  buf[len] = 0;
  *out = buf;
  *n = len;
  return VLM_OK;
}

vlm_status vlm_src_fail(vlm_sample *out, vlm_bad_reason why, vlm_status code) {
  vlm_sample_free(out);
  out->fail = why;
  return code;
}

char *vlm_src_join(const char *dir, const char *path) {
  if (path[0] == '/' || !dir || !dir[0] || !strcmp(dir, ".")) return strdup(path);
  size_t a = strlen(dir), b = strlen(path);
  char *r = malloc(a + b + 2);
  if (!r) return NULL;
  memcpy(r, dir, a);
  size_t k = a;
  if (k && r[k - 1] != '/') r[k++] = '/';
  memcpy(r + k, path, b + 1);
  return r;
}

char *vlm_src_dirname(const char *path) {
  const char *sl = strrchr(path, '/');
  if (!sl) return strdup(".");
  if (sl == path) return strdup("/");
  size_t n = (size_t)(sl - path);
  char *r = malloc(n + 1);
  if (!r) return NULL;
  memcpy(r, path, n);
  r[n] = 0;
  return r;
}

static int ends_with_ci(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && !strcasecmp(s + a - b, suf);
}

int vlm_src_has_image_ext(const char *name) {
  return ends_with_ci(name, ".jpg") || ends_with_ci(name, ".jpeg") || ends_with_ci(name, ".png") ||
         ends_with_ci(name, ".webp");
}

/* Length of a valid UTF-8 sequence at p (<= n bytes), 0 when invalid. */
static int utf8_seq(const unsigned char *p, size_t n) {
  unsigned c = p[0];
  if (c < 0x80) return 1;
  int len;
  unsigned min;
  if (c >= 0xC2 && c <= 0xDF) { len = 2; min = 0x80; }
  else if (c >= 0xE0 && c <= 0xEF) { len = 3; min = 0x800; }
  else if (c >= 0xF0 && c <= 0xF4) { len = 4; min = 0x10000; }
  else return 0;
  if ((size_t)len > n) return 0;
  unsigned cp = c & (0x3F >> (len - 1));
  for (int i = 1; i < len; i++) {
    if ((p[i] & 0xC0) != 0x80) return 0;
    cp = cp << 6 | (p[i] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

vlm_status vlm_caption_check(const char *name, const char *text, size_t len) {
  const unsigned char *p = (const unsigned char *)text;
  int nonspace = 0;
  for (size_t i = 0; i < len;) {
    if (p[i] == 0) return vlm_error(VLM_ERR_FORMAT, "%s: caption holds a NUL byte at byte %zu", name, i);
    int k = utf8_seq(p + i, len - i);
    if (!k) return vlm_error(VLM_ERR_FORMAT, "%s: caption is not valid UTF-8 (byte %zu)", name, i);
    if (!(k == 1 && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r' || p[i] == '\f' || p[i] == '\v')))
      nonspace = 1;
    i += (size_t)k;
  }
  if (!nonspace) return vlm_error(VLM_ERR_FORMAT, "%s: empty caption", name);
  return VLM_OK;
}

/* ------------------------------------------------------------------ open / dispatch */
/* A folder whose entries are sub-folders only (no image files) is an ImageFolder, unless its
 * images have captions beside them (x.jpg + x.txt): then it is a caption folder whose
 * sub-folders are searched (the captions would be ignored otherwise). */
static int looks_like_imagefolder(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int subdirs = 0, images = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    if (vlm_src_has_image_ext(e->d_name)) { images++; continue; }
    char *p = vlm_src_join(dir, e->d_name);
    struct stat st;
    if (p && stat(p, &st) == 0 && S_ISDIR(st.st_mode)) subdirs++;
    free(p);
  }
  closedir(d);
  return subdirs > 0 && images == 0 && !vlm_src_folder_has_captions(dir);
}

/* A path with braces that exists as written ("x{1}.tsv", a folder "photos {0..1}") is that
 * file, not a shard pattern: braces are a pattern only when no such path exists. */
static int braces_literal(const char *spec) {
  struct stat st;
  if (!strchr(spec, '{') || stat(spec, &st) != 0) return 0;
  vlm_log(VLM_LOG_DEBUG, "%s: the path exists as written, so it is read as it is, not as a {..} pattern", spec);
  return 1;
}

static vlm_ds_type detect(const char *spec) {
  if (!strncmp(spec, "shapes", 6) && (spec[6] == 0 || spec[6] == ':')) return VLM_DS_SHAPES;
  if (ends_with_ci(spec, ".tar") || (strchr(spec, '{') && !braces_literal(spec))) return VLM_DS_WDS;
  if (ends_with_ci(spec, ".csv") || ends_with_ci(spec, ".tsv")) return VLM_DS_CSV;
  if (ends_with_ci(spec, ".json")) return VLM_DS_COCO;
  struct stat st;
  if (stat(spec, &st) == 0 && S_ISDIR(st.st_mode)) return looks_like_imagefolder(spec) ? VLM_DS_IMAGEFOLDER : VLM_DS_FOLDER;
  return VLM_DS_AUTO;
}

vlm_status vlm_source_open(vlm_source **out, const char *spec, const vlm_source_opts *o) {
  *out = NULL;
  vlm_source_opts def;
  if (!o) { vlm_source_opts_default(&def); o = &def; }
  if (!spec || !spec[0]) return vlm_error(VLM_ERR_ARG, "empty data spec");
  if (strstr(spec, "::")) return vlm_error(VLM_ERR_ARG, "%s: several sources joined with '::' go to the loader, not vlm_source_open", spec);
  vlm_ds_type t = o->type == VLM_DS_AUTO ? detect(spec) : o->type;
  if (t == VLM_DS_AUTO) {
    struct stat st;
    if (stat(spec, &st) != 0) return vlm_error(VLM_ERR_IO, "%s: cannot open: %s", spec, strerror(errno));
    return vlm_error(VLM_ERR_ARG, "%s: cannot tell the dataset type (expected .csv/.tsv, .json (COCO), .tar or a "
                     "{..} shard pattern, a folder, or 'shapes'); pass the type explicitly", spec);
  }
  vlm_source *s = calloc(1, sizeof *s);
  if (!s) return vlm_error(VLM_ERR_OOM, "out of memory");
  s->spec = strdup(spec);
  s->type = t;
  s->opts = *o;
  s->size = -1;
  if (!s->spec) { free(s); return vlm_error(VLM_ERR_OOM, "out of memory"); }
  vlm_status st;
  switch (t) {
    case VLM_DS_CSV: st = vlm_src_open_csv(s, spec); break;
    case VLM_DS_COCO: st = vlm_src_open_coco(s, spec); break;
    case VLM_DS_WDS: st = vlm_src_open_wds(s, spec); break;
    case VLM_DS_FOLDER: st = vlm_src_open_folder(s, spec, 0); break;
    case VLM_DS_IMAGEFOLDER: st = vlm_src_open_folder(s, spec, 1); break;
    case VLM_DS_SHAPES: st = vlm_src_open_shapes(s, spec); break;
    default: st = vlm_error(VLM_ERR_ARG, "%s: unknown dataset type", spec); break;
  }
  if (st) {
    vlm_source_close(s);
    return st;
  }
  *out = s;
  return VLM_OK;
}

void vlm_source_close(vlm_source *s) {
  if (!s) return;
  if (s->free_impl && s->impl) s->free_impl(s->impl);
  for (int i = 0; i < s->n_classes; i++) free(s->classnames[i]);
  free(s->classnames);
  free(s->spec);
  free(s);
}

const char *vlm_source_spec(const vlm_source *s) { return s->spec; }
vlm_ds_type vlm_source_type(const vlm_source *s) { return s->type; }
int vlm_source_is_stream(const vlm_source *s) { return s->shard_open != NULL; }
int64_t vlm_source_size(const vlm_source *s) { return s->size; }
int64_t vlm_source_num_shards(const vlm_source *s) { return s->n_shards; }

vlm_status vlm_source_get(vlm_source *s, int64_t i, vlm_sample *out) {
  memset(out, 0, sizeof *out);
  out->label = -1;
  out->group = i;
  if (!s->get) {
    out->fail = VLM_BAD_READ;
    return vlm_error(VLM_ERR_ARG, "%s: not a random-access source (read it shard by shard)", s->spec);
  }
  if (i < 0 || i >= s->size) {
    out->fail = VLM_BAD_READ;
    return vlm_error(VLM_ERR_ARG, "%s: sample %lld out of range [0, %lld)", s->spec, (long long)i, (long long)s->size);
  }
  return s->get(s, i, out);
}

vlm_status vlm_shard_open(vlm_source *s, int64_t shard, vlm_shard_reader **out) {
  *out = NULL;
  if (!s->shard_open) return vlm_error(VLM_ERR_ARG, "%s: not a sharded source", s->spec);
  if (shard < 0 || shard >= s->n_shards)
    return vlm_error(VLM_ERR_ARG, "%s: shard %lld out of range [0, %lld)", s->spec, (long long)shard, (long long)s->n_shards);
  return s->shard_open(s, shard, out);
}

const char *const *vlm_source_classnames(const vlm_source *s, int *n) {
  if (n) *n = s->n_classes;
  return s->n_classes ? (const char *const *)s->classnames : NULL;
}
