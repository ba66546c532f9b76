/* CSV/TSV source with open_clip's flags: a header row, a separator (tab by default), the image
 * path column (filepath) and the caption column (title). RFC-4180 quoting: a field that starts
 * with '"' is quoted, may hold separators and newlines, and "" inside it is one quote; a quote
 * inside an unquoted field is a plain character. Blank lines are skipped. Image paths are
 * relative to the CSV file's folder (absolute paths are kept).
 *
 * Opening scans the file once and keeps only the byte offset of every record (8 bytes a
 * sample), so the file need not fit in memory; a read pread()s one record (thread-safe).
 * Sample names are "file.csv:N (path)" with N = record number + 1 (the line number when no
 * record spans lines; the header is line 1). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/source_internal.h"

#define CSV_MAX_RECORD ((size_t)1 << 20)
#define CSV_MAX_IMAGE ((size_t)1 << 28)

typedef struct {
  int fd;
  char *path, *dir;
  char sep;
  int img_col, cap_col, n_cols;
  int64_t *off;   /* [n + 1]: record starts, then the end of the last record */
  int64_t n;
} csv_src;

static void csv_free(void *p) {
  csv_src *c = p;
  if (c->fd >= 0) close(c->fd);
  free(c->path);
  free(c->dir);
  free(c->off);
  free(c);
}

/* Split one record (bytes [0, n)) into fields, unquoting in place into buf (n + 1 bytes).
 * starts/lens get up to max fields; returns the field count, or -1 for an unterminated quote. */
static int split_record(const char *rec, size_t n, char sep, char *buf, const char **starts, size_t *lens, int max) {
  size_t i = 0, o = 0;
  int nf = 0;
  /* drop the record's line ending */
  while (n > 0 && (rec[n - 1] == '\n' || rec[n - 1] == '\r')) n--;
  for (;;) {
    size_t fs = o;
    if (i < n && rec[i] == '"') {
      i++;
      int closed = 0;
      while (i < n) {
        if (rec[i] == '"') {
          if (i + 1 < n && rec[i + 1] == '"') { buf[o++] = '"'; i += 2; continue; }
          i++;
          closed = 1;
          break;
        }
        buf[o++] = rec[i++];
      }
      if (!closed) return -1;
      /* text after the closing quote up to the separator is kept (as pandas does) */
      while (i < n && rec[i] != sep) buf[o++] = rec[i++];
    } else {
      while (i < n && rec[i] != sep) buf[o++] = rec[i++];
    }
    if (nf < max) { starts[nf] = buf + fs; lens[nf] = o - fs; }
    nf++;
    buf[o++] = 0;
    if (i >= n) break;
    i++;   /* the separator */
  }
  return nf;
}

static vlm_status csv_get(vlm_source *s, int64_t i, vlm_sample *out) {
  csv_src *c = s->impl;
  int64_t a = c->off[i], b = c->off[i + 1];
  snprintf(out->name, sizeof out->name, "%s:%lld", c->path, (long long)i + 2);
  size_t len = (size_t)(b - a);
  if (len > CSV_MAX_RECORD)
    return vlm_src_fail(out, VLM_BAD_READ, vlm_error(VLM_ERR_FORMAT, "%s: record longer than %zu bytes (an unterminated quote?)",
                                                     out->name, CSV_MAX_RECORD));
  char *rec = malloc(len + 1), *buf = malloc(len + 1);
  if (!rec || !buf) {
    free(rec);
    free(buf);
    return vlm_src_fail(out, VLM_BAD_READ, vlm_error(VLM_ERR_OOM, "%s: out of memory", out->name));
  }
  size_t got = 0;
  while (got < len) {
    ssize_t r = pread(c->fd, rec + got, len - got, (off_t)(a + (int64_t)got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  vlm_status st = VLM_OK;
  if (got != len) {
    st = vlm_src_fail(out, VLM_BAD_READ, vlm_error(VLM_ERR_IO, "%s: read error (the file changed?)", out->name));
    goto done;
  }
  const char *f[256];
  size_t fl[256];
  int nf = split_record(rec, len, c->sep, buf, f, fl, 256);
  if (nf < 0) {
    st = vlm_src_fail(out, VLM_BAD_READ, vlm_error(VLM_ERR_FORMAT, "%s: unterminated quoted field", out->name));
    goto done;
  }
  int need = c->img_col > c->cap_col ? c->img_col : c->cap_col;
  if (nf <= need) {
    st = vlm_src_fail(out, VLM_BAD_READ,
                      vlm_error(VLM_ERR_FORMAT, "%s: the record has %d fields, the header %d", out->name, nf, c->n_cols));
    goto done;
  }
  const char *img = f[c->img_col];
  size_t cl = fl[c->cap_col];
  char nm[sizeof out->name];
  snprintf(nm, sizeof nm, "%s:%lld (%s)", c->path, (long long)i + 2, img);
  memcpy(out->name, nm, sizeof nm);
  if (fl[c->img_col] == 0) {
    st = vlm_src_fail(out, VLM_BAD_READ, vlm_error(VLM_ERR_FORMAT, "%s: empty image path", out->name));
    goto done;
  }
  if ((st = vlm_caption_check(out->name, f[c->cap_col], cl))) {
    vlm_src_fail(out, VLM_BAD_CAPTION, st);
    goto done;
  }
  out->caption = malloc(cl + 1);
  char *path = vlm_src_join(c->dir, img);
  if (!out->caption || !path) {
    free(path);
    st = vlm_src_fail(out, VLM_BAD_READ, vlm_error(VLM_ERR_OOM, "%s: out of memory", out->name));
    goto done;
  }
  memcpy(out->caption, f[c->cap_col], cl);
  out->caption[cl] = 0;
  st = vlm_src_read_file(path, CSV_MAX_IMAGE, &out->image_bytes, &out->image_len);
  free(path);
  if (st) {
    vlm_error_prefix(st, "%s", out->name);
    vlm_src_fail(out, VLM_BAD_READ, st);
  }
done:
  free(rec);
  free(buf);
  return st;
}

/* Scan the file: record offsets (blank records dropped). */
static vlm_status csv_index(csv_src *c, FILE *f, int64_t **offs, int64_t *nrec, int64_t *first_len) {
  size_t cap = 1024, n = 0;
  int64_t *off = malloc(cap * sizeof *off);
  char *buf = malloc(1 << 20);
  if (!off || !buf) { free(off); free(buf); return vlm_error(VLM_ERR_OOM, "%s: out of memory", c->path); }
  int64_t pos = 0, rec_start = 0;
  int in_quotes = 0, field_start = 1, field_quoted = 0, blank = 1;
  for (;;) {
    size_t got = fread(buf, 1, 1 << 20, f);
    if (got == 0) break;
    for (size_t k = 0; k < got; k++, pos++) {
      char ch = buf[k];
      if (in_quotes) {
        if (ch == '"') in_quotes = 0;
        blank = 0;
        continue;
      }
      if (ch == '\n') {
        if (!blank) {
          if (n + 2 > cap) {
            cap *= 2;
            int64_t *no = realloc(off, cap * sizeof *off);
            if (!no) { free(off); free(buf); return vlm_error(VLM_ERR_OOM, "%s: out of memory indexing", c->path); }
            off = no;
          }
          off[n++] = rec_start;
        }
        rec_start = pos + 1;
        field_start = 1;
        field_quoted = 0;
        blank = 1;
        continue;
      }
      if (ch == c->sep) { field_start = 1; field_quoted = 0; blank = 0; continue; }
      if (ch == '"' && (field_start || field_quoted)) { in_quotes = 1; field_quoted = 1; }
      if (ch != '\r' && ch != ' ' && ch != '\t') blank = 0;
      field_start = 0;
    }
  }
  int err = ferror(f);
  free(buf);
  if (err) { free(off); return vlm_error(VLM_ERR_IO, "%s: read error", c->path); }
  if (!blank) {
    if (n + 2 > cap) {
      int64_t *no = realloc(off, (n + 2) * sizeof *off);
      if (!no) { free(off); return vlm_error(VLM_ERR_OOM, "%s: out of memory indexing", c->path); }
      off = no;
    }
    off[n++] = rec_start;
  }
  off[n] = pos;
  *offs = off;
  *nrec = (int64_t)n;
  *first_len = n ? (n > 1 ? off[1] : pos) - off[0] : 0;
  return VLM_OK;
}

vlm_status vlm_src_open_csv(vlm_source *s, const char *path) {
  csv_src *c = calloc(1, sizeof *c);
  if (!c) return vlm_error(VLM_ERR_OOM, "out of memory");
  c->fd = -1;
  s->impl = c;
  s->free_impl = csv_free;
  c->path = strdup(path);
  c->dir = vlm_src_dirname(path);
  c->sep = s->opts.csv_separator ? s->opts.csv_separator : '\t';
  const char *ik = s->opts.csv_img_key ? s->opts.csv_img_key : "filepath";
  const char *ck = s->opts.csv_caption_key ? s->opts.csv_caption_key : "title";
  if (!c->path || !c->dir) return vlm_error(VLM_ERR_OOM, "out of memory");
  FILE *f = fopen(path, "rb");
  if (!f) return vlm_error(VLM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  int64_t *off = NULL, nrec = 0, hlen = 0;
  vlm_status st = csv_index(c, f, &off, &nrec, &hlen);
  fclose(f);
  if (st) return st;
  c->off = off;
  if (nrec == 0) return vlm_error(VLM_ERR_FORMAT, "%s: empty file (no header row)", path);
  c->fd = open(path, O_RDONLY);
  if (c->fd < 0) return vlm_error(VLM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  if ((size_t)hlen > CSV_MAX_RECORD) return vlm_error(VLM_ERR_FORMAT, "%s: header row longer than %zu bytes", path, CSV_MAX_RECORD);
  char *rec = malloc((size_t)hlen + 1), *buf = malloc((size_t)hlen + 4);
  if (!rec || !buf) { free(rec); free(buf); return vlm_error(VLM_ERR_OOM, "out of memory"); }
  ssize_t r = pread(c->fd, rec, (size_t)hlen, (off_t)off[0]);
  if (r != (ssize_t)hlen) { free(rec); free(buf); return vlm_error(VLM_ERR_IO, "%s: read error", path); }
  size_t skip = (hlen >= 3 && !memcmp(rec, "\xEF\xBB\xBF", 3)) ? 3 : 0;   /* UTF-8 BOM */
  const char *fs[256];
  size_t fl[256];
  int nf = split_record(rec + skip, (size_t)hlen - skip, c->sep, buf, fs, fl, 256);
  c->img_col = c->cap_col = -1;
  if (nf > 256) nf = 256;
  for (int k = 0; k < nf; k++) {
    if (fl[k] == strlen(ik) && !memcmp(fs[k], ik, fl[k]) && c->img_col < 0) c->img_col = k;
    if (fl[k] == strlen(ck) && !memcmp(fs[k], ck, fl[k]) && c->cap_col < 0) c->cap_col = k;
  }
  if (nf < 0 || c->img_col < 0 || c->cap_col < 0) {
    char hdr[512];
    size_t o = 0;
    hdr[0] = 0;
    for (int k = 0; k < nf && o + 8 < sizeof hdr; k++)
      o += (size_t)snprintf(hdr + o, sizeof hdr - o, "%s'%.*s'", k ? ", " : "", (int)(fl[k] > 60 ? 60 : fl[k]), fs[k]);
    if (o >= sizeof hdr) o = sizeof hdr - 1;
    const char *missing = nf < 0 ? "(unterminated quote)" : c->img_col < 0 ? ik : ck;
    char sepname[16];
    if (c->sep == '\t') snprintf(sepname, sizeof sepname, "tab");
    else snprintf(sepname, sizeof sepname, "'%c'", c->sep);
    st = vlm_error(VLM_ERR_FORMAT, "%s: no column '%s' in the header (separator %s; columns: %s)%s", path, missing,
                   sepname, nf < 0 ? "?" : hdr,
                   (nf == 1 && strchr(hdr, c->sep == '\t' ? ',' : '\t')) ? "; wrong --csv-separator?" : "");
    free(rec);
    free(buf);
    return st;
  }
  c->n_cols = nf;
  free(rec);
  free(buf);
  /* drop the header: records 1..n-1 */
  memmove(off, off + 1, (size_t)nrec * sizeof *off);
  c->off = off;
  c->n = nrec - 1;
  s->size = c->n;
  s->get = csv_get;
  return VLM_OK;
}
