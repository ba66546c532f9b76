/* CSV/TSV source with open_clip's flags: a header row, a separator (tab by default), the image
 * path column (filepath) and the caption column (title). Quoting as Python's csv module and
 * pandas read it (their default dialect; one state machine, csv_step, for the scan and the
 * split): a quote opens a quoted field only at the field's start; a quoted field may hold
 * separators and newlines and "" inside it is one quote; after the closing quote the text up
 * to the separator is kept literally (quotes included); a quote inside an unquoted field is a
 * plain character. Records end at an unquoted LF, CR or CRLF. Blank and whitespace-only lines
 * are skipped (as pandas does; a tab is whitespace unless it is the separator). A UTF-8 BOM
 * is dropped; a UTF-16/32 one (Excel's "Unicode text") is an error saying to save the file as
 * UTF-8. Image paths are relative to the CSV file's folder (absolute paths are kept).
 *
 * Opening scans the file once and keeps only the byte offset of every record (8 bytes a
 * sample), so the file need not fit in memory; a read pread()s one record (thread-safe).
 * Rows that name the same image path (the field as written, unquoted: "a.png" and
 * "./a.png" differ) are one image with several captions, as COCO's captions of one image:
 * open_clip's one-row-per-caption layout. A second pass at open hashes the paths
 * (equal hashes are compared byte for byte); a sample's group is the first row of its
 * image, kept (8 more bytes a sample) only when some path repeats. The pass takes ~0.6 s
 * and 24 bytes a row while it runs on a 1M-row file, so a training loader, which reads
 * no groups, turns it off (vlm_source_opts.csv_group_images).
 * Sample names are "file.csv:N (path)" with N = the line the record starts on (the header's
 * is line 1 when no blank line comes before it), counted at open (8 bytes a sample, kept only
 * when some record spans lines or a blank line is skipped). */
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
  int64_t img_col, cap_col, n_cols;
  int64_t *off;   /* [n + 1]: record starts, then the end of the last record */
  int64_t *line;  /* [n] the line each record starts on; NULL: record i is on line i + 2 */
  int64_t *group; /* [n] the first row with the same image path; NULL: no path repeats */
  int64_t n;
} csv_src;

static void csv_free(void *p) {
  csv_src *c = p;
  if (c->fd >= 0) close(c->fd);
  free(c->path);
  free(c->dir);
  free(c->off);
  free(c->line);
  free(c->group);
  free(c);
}

/* The CSV grammar, one byte at a time. */
/* states: at a field's start, in an unquoted field, in a quoted field, just after a quote in one */
typedef enum { CSV_START, CSV_PLAIN, CSV_QUOTED, CSV_QUOTE } csv_state;
/* what a byte is: field text, a quote of the syntax (dropped), a field end, a record end */
typedef enum { CSV_TEXT, CSV_SKIP, CSV_SEP, CSV_EOL } csv_event;

static csv_event csv_step(csv_state *s, char ch, char sep) {
  switch (*s) {
    case CSV_QUOTED:
      if (ch == '"') { *s = CSV_QUOTE; return CSV_SKIP; }
      return CSV_TEXT;
    case CSV_QUOTE:   /* "" is one quote; other text after the closing quote is literal */
      if (ch == '"') { *s = CSV_QUOTED; return CSV_TEXT; }
      break;
    case CSV_START:
      if (ch == '"') { *s = CSV_QUOTED; return CSV_SKIP; }
      break;
    case CSV_PLAIN:
      break;
  }
  if (ch == sep) { *s = CSV_START; return CSV_SEP; }
  if (ch == '\n' || ch == '\r') { *s = CSV_START; return CSV_EOL; }
  *s = CSV_PLAIN;
  return CSV_TEXT;
}

/* Split the record at the start of rec[0, n) (it ends at its first record end; what follows,
 * skipped blank lines, is ignored) into fields, unquoting into buf (n + 1 bytes). starts/lens
 * get the first max fields; returns the field count, or -1 for an unterminated quote. */
static int64_t split_record(const char *rec, size_t n, char sep, char *buf, const char **starts, size_t *lens,
                            int64_t max) {
  csv_state s = CSV_START;
  size_t o = 0, fs = 0;
  int64_t nf = 0;
  for (size_t i = 0; i <= n; i++) {
    csv_event ev = i < n ? csv_step(&s, rec[i], sep) : CSV_EOL;
    if (i == n && s == CSV_QUOTED) return -1;
    if (ev == CSV_TEXT) buf[o++] = rec[i];
    if (ev == CSV_TEXT || ev == CSV_SKIP) continue;
    if (nf < max) { starts[nf] = buf + fs; lens[nf] = o - fs; }
    nf++;
    buf[o++] = 0;
    fs = o;
    if (ev == CSV_EOL) break;
  }
  return nf;
}

static vlm_status csv_get(vlm_source *s, int64_t i, vlm_sample *out) {
  csv_src *c = s->impl;
  int64_t a = c->off[i], b = c->off[i + 1];
  if (c->group) out->group = c->group[i];
  const long long line = c->line ? c->line[i] : i + 2;
  snprintf(out->name, sizeof out->name, "%s:%lld", c->path, line);
  size_t len = (size_t)(b - a);
  if (len > CSV_MAX_RECORD)
    return vlm_src_fail(out, VLM_BAD_READ, vlm_error(VLM_ERR_FORMAT, "%s: record longer than %zu bytes (an unterminated quote?)",
                                                     out->name, CSV_MAX_RECORD));
  char *rec = malloc(len + 1), *buf = malloc(len + 1);
  const char **f = NULL;
  size_t *fl = NULL;
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
  int64_t need = c->img_col > c->cap_col ? c->img_col : c->cap_col;
  f = malloc((size_t)(need + 1) * sizeof *f);
  fl = malloc((size_t)(need + 1) * sizeof *fl);
  if (!f || !fl) {
    st = vlm_src_fail(out, VLM_BAD_READ, vlm_error(VLM_ERR_OOM, "%s: out of memory", out->name));
    goto done;
  }
  int64_t nf = split_record(rec, len, c->sep, buf, f, fl, need + 1);
  if (nf < 0) {
    st = vlm_src_fail(out, VLM_BAD_READ, vlm_error(VLM_ERR_FORMAT, "%s: unterminated quoted field", out->name));
    goto done;
  }
  if (nf <= need) {
    st = vlm_src_fail(out, VLM_BAD_READ, vlm_error(VLM_ERR_FORMAT, "%s: the record has %lld fields, the header %lld",
                                                   out->name, (long long)nf, (long long)c->n_cols));
    goto done;
  }
  const char *img = f[c->img_col];
  size_t cl = fl[c->cap_col];
  char nm[sizeof out->name];
  snprintf(nm, sizeof nm, "%s:%lld (%s)", c->path, line, img);
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
  if (st) {
    vlm_error_prefix(st, "%s", out->name);
    /* open_clip reads the paths relative to the working directory: say so when that file is there */
    if (img[0] != '/' && strcmp(c->dir, ".") && access(path, F_OK) != 0 && access(img, F_OK) == 0) {
      char *msg = strdup(vlm_last_error());
      if (msg) {
        st = vlm_error(st, "%s (%s exists relative to the working directory, where open_clip looks; vlm reads "
                       "CSV image paths relative to the CSV file's folder: write them so, or absolute)", msg, img);
        free(msg);
      }
    }
    vlm_src_fail(out, VLM_BAD_READ, st);
  }
  free(path);
done:
  free(rec);
  free(buf);
  free(f);
  free(fl);
  return st;
}

/* Scan the file from byte start: record offsets (blank and whitespace-only records dropped)
 * and the line each starts on (LF, CR and CRLF end a line, inside quotes too); *lines is left
 * NULL when record k is on line k + 1 throughout. */
static vlm_status csv_index(csv_src *c, int64_t start, int64_t **offs, int64_t **lines, int64_t *nrec,
                            int64_t *first_len) {
  size_t cap = 1024, n = 0;
  int64_t *off = malloc(cap * sizeof *off), *line = malloc(cap * sizeof *line);
  char *buf = malloc(1 << 20);
  *lines = NULL;
  if (!off || !line || !buf) {
    free(off);
    free(line);
    free(buf);
    return vlm_error(VLM_ERR_OOM, "%s: out of memory", c->path);
  }
  int64_t pos = start, rec_start = start, breaks = 0, rec_line = 1;
  csv_state state = CSV_START;
  int blank = 1, shifted = 0;
  char prev = 0;
  for (;;) {
    ssize_t got = pread(c->fd, buf, 1 << 20, (off_t)pos);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      int e = errno;
      free(off);
      free(line);
      free(buf);
      return vlm_error(VLM_ERR_IO, "%s: read error: %s", c->path, strerror(e));
    }
    if (got == 0) break;
    for (ssize_t k = 0; k < got; k++, pos++) {
      char ch = buf[k];
      breaks += ch == '\r' || (ch == '\n' && prev != '\r');
      prev = ch;
      csv_event ev = csv_step(&state, ch, c->sep);
      if (ev != CSV_EOL) {
        if (!(ev == CSV_TEXT && state == CSV_PLAIN && (ch == ' ' || ch == '\t'))) blank = 0;
        continue;
      }
      if (!blank) {
        if (n + 2 > cap) {
          cap *= 2;
          int64_t *no = realloc(off, cap * sizeof *off), *nl = no ? realloc(line, cap * sizeof *line) : NULL;
          if (no) off = no;
          if (nl) line = nl;
          if (!no || !nl) {
            free(off);
            free(line);
            free(buf);
            return vlm_error(VLM_ERR_OOM, "%s: out of memory indexing", c->path);
          }
        }
        shifted |= rec_line != (int64_t)n + 1;
        line[n] = rec_line;
        off[n++] = rec_start;
      }
      rec_start = pos + 1;
      rec_line = breaks + 1;
      blank = 1;
    }
  }
  free(buf);
  if (!blank) {
    if (n + 2 > cap) {
      int64_t *no = realloc(off, (n + 2) * sizeof *off), *nl = no ? realloc(line, (n + 2) * sizeof *line) : NULL;
      if (no) off = no;
      if (nl) line = nl;
      if (!no || !nl) {
        free(off);
        free(line);
        return vlm_error(VLM_ERR_OOM, "%s: out of memory indexing", c->path);
      }
    }
    shifted |= rec_line != (int64_t)n + 1;
    line[n] = rec_line;
    off[n++] = rec_start;
  }
  off[n] = pos;
  if (shifted) *lines = line;
  else free(line);
  *offs = off;
  *nrec = (int64_t)n;
  *first_len = n ? off[1] - off[0] : 0;
  return VLM_OK;
}

/* ---- rows of one image: the image path field of each record, hashed */
typedef struct {
  const csv_src *c;
  char *win, *split;     /* a window of the file [at, at + len); the unquoted fields */
  int64_t at, len;
  const char **f;
  size_t *fl;
} csv_paths;

#define CSV_WINDOW ((size_t)4 << 20)

/* Record i's image path (unquoted, in p->split): 1, or 0 when the record is unreadable
 * here (too long, an unterminated quote, too few fields: it fails when read anyway). The
 * record is taken from p's window, else from also's (NULL: none), else read: a window of
 * `window` bytes from its start. */
static int csv_path(csv_paths *p, const csv_paths *also, size_t window, int64_t i, const char **path, size_t *len) {
  const csv_src *c = p->c;
  int64_t a = c->off[i], b = c->off[i + 1];
  if ((size_t)(b - a) > CSV_MAX_RECORD) return 0;
  const char *rec = NULL;
  if (a >= p->at && b <= p->at + p->len) rec = p->win + (a - p->at);
  else if (also && a >= also->at && b <= also->at + also->len) rec = also->win + (a - also->at);
  if (!rec) {
    size_t want = window > (size_t)(b - a) ? window : (size_t)(b - a), got = 0;
    while (got < want) {
      ssize_t r = pread(c->fd, p->win + got, want - got, (off_t)(a + (int64_t)got));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      got += (size_t)r;
    }
    p->at = a;
    p->len = (int64_t)got;
    if (b > p->at + p->len) return 0;
    rec = p->win;
  }
  int64_t nf = split_record(rec, (size_t)(b - a), c->sep, p->split, p->f, p->fl, c->img_col + 1);
  if (nf <= c->img_col) return 0;
  *path = p->f[c->img_col];
  *len = p->fl[c->img_col];
  return 1;
}

static uint64_t path_hash(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t k = 0; k < n; k++) h = (h ^ (unsigned char)s[k]) * 1099511628211ull;
  return h;
}

/* s[0..n) with "." components and repeated '/' dropped, into out (n + 1 bytes): the same
 * file however a row spells it ("./a//b.jpg" is "a/b.jpg"; ".." is kept, a link may stand
 * before it). The length. */
static size_t clean_path(const char *s, size_t n, char *out) {
  size_t o = 0, i = 0;
  if (n && s[0] == '/') out[o++] = '/';
  while (i < n) {
    while (i < n && s[i] == '/') i++;
    size_t e = i;
    while (e < n && s[e] != '/') e++;
    if (e > i && !(e - i == 1 && s[i] == '.')) {
      if (o && out[o - 1] != '/') out[o++] = '/';
      memcpy(out + o, s + i, e - i);
      o += e - i;
    }
    i = e;
  }
  if (!o && n) out[o++] = '.';
  out[o] = 0;
  return o;
}

/* c->group: rows naming the same image path (spelled alike once cleaned) share the first such
 * row; left NULL when no path repeats (then a row's group is its index). */
static vlm_status csv_groups(csv_src *c) {
  const int64_t n = c->n;
  size_t cap = 16;
  while (cap < (size_t)n * 2) cap *= 2;
  csv_paths p = {c, malloc(CSV_WINDOW), malloc(CSV_MAX_RECORD + 1), 0, 0, NULL, NULL};
  csv_paths q = {c, malloc(CSV_MAX_RECORD), malloc(CSV_MAX_RECORD + 1), 0, 0, NULL, NULL};   /* earlier rows */
  p.f = malloc((size_t)(c->img_col + 1) * sizeof *p.f);
  p.fl = malloc((size_t)(c->img_col + 1) * sizeof *p.fl);
  q.f = malloc((size_t)(c->img_col + 1) * sizeof *q.f);
  q.fl = malloc((size_t)(c->img_col + 1) * sizeof *q.fl);
  uint64_t *hash = malloc((size_t)(n > 0 ? n : 1) * sizeof *hash);
  int64_t *slot = calloc(cap, sizeof *slot);   /* row + 1; 0 empty */
  char *ca = malloc(CSV_MAX_RECORD + 2), *cb = malloc(CSV_MAX_RECORD + 2);   /* cleaned paths */
  vlm_status st = VLM_OK;
  if (!p.win || !p.split || !q.win || !q.split || !p.f || !p.fl || !q.f || !q.fl || !hash || !slot || !ca || !cb)
    st = vlm_error(VLM_ERR_OOM, "%s: out of memory grouping the rows by image", c->path);
  for (int64_t i = 0; st == VLM_OK && i < n; i++) {
    const char *pa, *pb;
    size_t la, lb;
    if (!csv_path(&p, NULL, CSV_WINDOW, i, &pa, &la)) continue;
    la = clean_path(pa, la, ca);
    pa = ca;
    uint64_t h = hash[i] = path_hash(pa, la);
    uint64_t m = (h ^ (h >> 31)) * 0x9E3779B97F4A7C15ull;   /* FNV's low bits alone cluster */
    size_t k = (size_t)(m >> 20) & (cap - 1);
    int64_t first = -1;
    for (; slot[k]; k = (k + 1) & (cap - 1)) {
      int64_t j = slot[k] - 1;
      if (hash[j] == h && csv_path(&q, &p, 0, j, &pb, &lb) && (lb = clean_path(pb, lb, cb)) == la &&
          !memcmp(pa, cb, la)) {
        first = j;
        break;
      }
    }
    if (first < 0) {
      slot[k] = i + 1;
      continue;
    }
    if (!c->group) {
      c->group = malloc((size_t)n * sizeof *c->group);
      if (!c->group) {
        st = vlm_error(VLM_ERR_OOM, "%s: out of memory grouping the rows by image", c->path);
        break;
      }
      for (int64_t r = 0; r < n; r++) c->group[r] = r;
    }
    c->group[i] = first;
  }
  free(p.win);
  free(p.split);
  free(p.f);
  free(p.fl);
  free(q.win);
  free(q.split);
  free(q.f);
  free(q.fl);
  free(hash);
  free(slot);
  free(ca);
  free(cb);
  return st;
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
  if (c->sep == '"' || c->sep == '\n' || c->sep == '\r')
    return vlm_error(VLM_ERR_ARG, "%s: a quote or a line break cannot be the separator", path);
  c->fd = vlm_src_open_regular(path, NULL);
  if (c->fd < 0) return VLM_ERR_IO;
  unsigned char bom[4] = {1, 1, 1, 1};
  ssize_t nb = pread(c->fd, bom, 4, 0);
  int64_t start = nb >= 3 && !memcmp(bom, "\xEF\xBB\xBF", 3) ? 3 : 0;   /* UTF-8 BOM */
  /* Excel's "Unicode text" and Windows tools write UTF-16 (or UTF-32) with a byte-order mark: read
   * as bytes its header would be "\xff\xfef" and NULs, so name the encoding instead */
  if (nb >= 2 && ((bom[0] == 0xFF && bom[1] == 0xFE) || (bom[0] == 0xFE && bom[1] == 0xFF) ||
                  (nb == 4 && !memcmp(bom, "\0\0\xFE\xFF", 4)))) {
    const char *enc = nb == 4 && !memcmp(bom, "\xFF\xFE\0\0", 4) ? "UTF-32 (little-endian)"
                      : nb == 4 && !bom[0]                         ? "UTF-32 (big-endian)"
                      : bom[0] == 0xFF                             ? "UTF-16 (little-endian)"
                                                                   : "UTF-16 (big-endian)";
    return vlm_error(VLM_ERR_FORMAT, "%s: the file is %s text (it starts with that byte-order mark, as Excel's "
                     "\"Unicode text\" writes it); vlm reads CSV/TSV as UTF-8: save it as UTF-8 (e.g. Excel's \"CSV UTF-8\", "
                     "or iconv -f %.6s -t UTF-8)", path, enc, enc);
  }
  int64_t *off = NULL, nrec = 0, hlen = 0;
  vlm_status st = csv_index(c, start, &off, &c->line, &nrec, &hlen);
  if (st) return st;
  c->off = off;
  if (nrec == 0) return vlm_error(VLM_ERR_FORMAT, "%s: empty file (no header row)", path);
  if ((size_t)hlen > CSV_MAX_RECORD) return vlm_error(VLM_ERR_FORMAT, "%s: header row longer than %zu bytes", path, CSV_MAX_RECORD);
  char *rec = malloc((size_t)hlen + 1), *buf = malloc((size_t)hlen + 1);
  const char **fs = NULL;
  size_t *fl = NULL;
  if (!rec || !buf) { free(rec); free(buf); return vlm_error(VLM_ERR_OOM, "out of memory"); }
  ssize_t r = pread(c->fd, rec, (size_t)hlen, (off_t)off[0]);
  if (r != (ssize_t)hlen) { free(rec); free(buf); return vlm_error(VLM_ERR_IO, "%s: read error", path); }
  /* count the columns, then split into arrays of that size: any number of columns */
  int64_t nf = split_record(rec, (size_t)hlen, c->sep, buf, NULL, NULL, 0);
  if (nf > 0) {
    fs = malloc((size_t)nf * sizeof *fs);
    fl = malloc((size_t)nf * sizeof *fl);
    if (!fs || !fl) { st = vlm_error(VLM_ERR_OOM, "out of memory"); goto out; }
    split_record(rec, (size_t)hlen, c->sep, buf, fs, fl, nf);
  }
  c->img_col = c->cap_col = -1;
  for (int64_t k = 0; k < nf; k++) {
    if (fl[k] == strlen(ik) && !memcmp(fs[k], ik, fl[k]) && c->img_col < 0) c->img_col = k;
    if (fl[k] == strlen(ck) && !memcmp(fs[k], ck, fl[k]) && c->cap_col < 0) c->cap_col = k;
  }
  if (nf < 0 || c->img_col < 0 || c->cap_col < 0) {
    char hdr[512];
    size_t o = 0;
    hdr[0] = 0;
    for (int64_t k = 0; k < nf && o + 8 < sizeof hdr; k++)
      o += (size_t)snprintf(hdr + o, sizeof hdr - o, "%s'%.*s'", k ? ", " : "", (int)(fl[k] > 60 ? 60 : fl[k]), fs[k]);
    if (o >= sizeof hdr) o = sizeof hdr - 1;
    const char *missing = nf < 0 ? "(unterminated quote)" : c->img_col < 0 ? ik : ck;
    char sepname[16];
    if (c->sep == '\t') snprintf(sepname, sizeof sepname, "tab");
    else snprintf(sepname, sizeof sepname, "'%c'", c->sep);
    char more[48] = "";
    if (nf > 0 && o + 8 >= sizeof hdr) snprintf(more, sizeof more, " ... (%lld columns)", (long long)nf);
    const int nul = memchr(rec, 0, (size_t)hlen) != NULL;   /* UTF-16 without its byte-order mark */
    st = vlm_error(VLM_ERR_FORMAT, "%s: no column '%s' in the header (separator %s; columns: %s%s)%s", path, missing,
                   sepname, nf < 0 ? "?" : hdr, more,
                   nul ? "; the header holds NUL bytes: UTF-16 text? save the file as UTF-8"
                   : (nf == 1 && strchr(hdr, c->sep == '\t' ? ',' : '\t')) ? "; wrong --csv-separator?" : "");
    goto out;
  }
  if (nrec == 1) {
    st = vlm_error(VLM_ERR_FORMAT, "%s: no records (only the header row)", path);
    goto out;
  }
  c->n_cols = nf;
  /* drop the header: records 1..n-1 */
  memmove(off, off + 1, (size_t)nrec * sizeof *off);
  if (c->line) memmove(c->line, c->line + 1, (size_t)(nrec - 1) * sizeof *c->line);
  c->n = nrec - 1;
  if (s->opts.csv_group_images && (st = csv_groups(c)) != VLM_OK) goto out;
  s->size = c->n;
  s->get = csv_get;
out:
  free(rec);
  free(buf);
  free(fs);
  free(fl);
  return st;
}
