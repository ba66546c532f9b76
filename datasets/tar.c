/* A streaming tar reader for WebDataset shards: POSIX ustar, pax extended headers ('x': path
 * and size records; 'g' global headers are skipped), GNU long names ('L') and long links ('K'),
 * old v7 headers, base-256 sizes. Every header's checksum is verified. A truncated or corrupt
 * archive gives an error naming the archive and the byte offset; nothing is trusted before
 * it is checked (member sizes are bounded by VLM_TAR_MAX_ENTRY, pax/long-name blocks by 1 MiB). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/source_internal.h"

#define META_MAX ((size_t)1 << 20)

struct vlm_tar {
  FILE *f;
  int own;
  char *name;
  int64_t pos;     /* bytes consumed */
  int done;        /* end reached or error reported */
  char *cur_name;  /* the last entry's name */
};

vlm_tar *vlm_tar_new(FILE *f, const char *name, int own_file) {
  vlm_tar *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->f = f;
  t->own = own_file;
  t->name = strdup(name ? name : "<tar>");
  if (!t->name) { free(t); return NULL; }
  return t;
}

void vlm_tar_free(vlm_tar *t) {
  if (!t) return;
  if (t->own && t->f) fclose(t->f);
  free(t->name);
  free(t->cur_name);
  free(t);
}

static int fail(vlm_tar *t, int64_t at, const char *what) {
  t->done = 1;
  vlm_error(VLM_ERR_FORMAT, "%s: %s at offset %lld", t->name, what, (long long)at);
  return -1;
}

/* Read exactly n bytes (1), or 0 on a short read. */
static int rd(vlm_tar *t, void *buf, size_t n) {
  size_t got = fread(buf, 1, n, t->f);
  t->pos += (int64_t)got;
  return got == n;
}

static int skip(vlm_tar *t, uint64_t n) {
  char tmp[4096];
  while (n) {
    size_t k = n > sizeof tmp ? sizeof tmp : (size_t)n;
    if (!rd(t, tmp, k)) return 0;
    n -= k;
  }
  return 1;
}

/* Octal field (spaces/NULs around), or GNU base-256 when the top bit is set. -1: malformed. */
static int64_t parse_num(const unsigned char *p, int n) {
  if (p[0] & 0x80) {
    if (p[0] != 0x80) return -1;   /* negative or too large */
    uint64_t v = 0;
    for (int i = 1; i < n; i++) {
      if (v >> 55) return -1;
      v = v << 8 | p[i];
    }
    return (int64_t)v;
  }
  int i = 0;
  while (i < n && p[i] == ' ') i++;
  uint64_t v = 0;
  int digits = 0;
  for (; i < n && p[i] >= '0' && p[i] <= '7'; i++, digits++) {
    if (v >> 60) return -1;
    v = v * 8 + (uint64_t)(p[i] - '0');
  }
  for (; i < n; i++)
    if (p[i] != ' ' && p[i] != 0) return -1;
  return digits ? (int64_t)v : 0;
}

static int checksum_ok(const unsigned char *h) {
  int64_t want = parse_num(h + 148, 8);
  if (want < 0) return 0;
  int64_t u = 0, s = 0;
  for (int i = 0; i < 512; i++) {
    unsigned char c = (i >= 148 && i < 156) ? ' ' : h[i];
    u += c;
    s += (signed char)c;
  }
  return want == u || want == s;
}

static char *field_str(const unsigned char *p, size_t n) {
  size_t k = 0;
  while (k < n && p[k]) k++;
  char *s = malloc(k + 1);
  if (s) { memcpy(s, p, k); s[k] = 0; }
  return s;
}

/* pax records "LEN key=value\n": path and size override the next header. 0: malformed. */
static int parse_pax(const char *b, size_t n, char **path, int64_t *size) {
  size_t i = 0;
  while (i < n) {
    size_t j = i, len = 0;
    while (j < n && b[j] >= '0' && b[j] <= '9') {
      if (len > META_MAX) return 0;
      len = len * 10 + (size_t)(b[j] - '0');
      j++;
    }
    if (j == i || j >= n || b[j] != ' ' || len <= j - i + 1 || i + len > n || b[i + len - 1] != '\n') return 0;
    const char *kv = b + j + 1, *end = b + i + len - 1;
    const char *eq = memchr(kv, '=', (size_t)(end - kv));
    if (!eq) return 0;
    size_t kl = (size_t)(eq - kv), vl = (size_t)(end - eq - 1);
    if (kl == 4 && !memcmp(kv, "path", 4)) {
      free(*path);
      *path = malloc(vl + 1);
      if (!*path) return 0;
      memcpy(*path, eq + 1, vl);
      (*path)[vl] = 0;
    } else if (kl == 4 && !memcmp(kv, "size", 4)) {
      int64_t v = 0;
      if (vl == 0 || vl > 18) return 0;
      for (size_t k = 0; k < vl; k++) {
        char c = eq[1 + k];
        if (c < '0' || c > '9') return 0;
        v = v * 10 + (c - '0');
      }
      *size = v;
    }
    i += len;
  }
  return 1;
}

static int zero_block(const unsigned char *h) {
  for (int i = 0; i < 512; i++)
    if (h[i]) return 0;
  return 1;
}

int vlm_tar_next(vlm_tar *t, vlm_tar_entry *e) {
  memset(e, 0, sizeof *e);
  if (t->done) return 0;
  char *long_name = NULL, *pax_path = NULL;
  int64_t pax_size = -1;
  for (;;) {
    unsigned char h[512];
    int64_t at = t->pos;
    size_t got = fread(h, 1, 512, t->f);
    t->pos += (int64_t)got;
    if (got == 0 && !long_name && !pax_path && pax_size < 0) {
      /* EOF without the end-of-archive blocks: accepted when at a member boundary
       * (tar itself writes them; many shard writers do too, some omit them). */
      t->done = 1;
      return 0;
    }
    if (got != 512) { free(long_name); free(pax_path); return fail(t, at, "truncated header"); }
    if (zero_block(h)) {
      free(long_name);
      free(pax_path);
      t->done = 1;
      return 0;
    }
    if (!checksum_ok(h)) { free(long_name); free(pax_path); return fail(t, at, "bad header checksum (corrupt or not a tar file)"); }
    int64_t size = parse_num(h + 124, 12);
    if (size < 0) { free(long_name); free(pax_path); return fail(t, at, "bad size field"); }
    char type = (char)h[156];
    if (pax_size >= 0 && (type == '0' || type == 0 || type == '7')) size = pax_size;
    uint64_t padded = ((uint64_t)size + 511) & ~(uint64_t)511;
    if (type == 'x' || type == 'g' || type == 'L' || type == 'K') {
      if ((size_t)size > META_MAX) { free(long_name); free(pax_path); return fail(t, at, "oversized extended header"); }
      char *b = malloc((size_t)padded + 1);
      if (!b) { free(long_name); free(pax_path); return fail(t, at, "out of memory"); }
      if (!rd(t, b, (size_t)padded)) { free(b); free(long_name); free(pax_path); return fail(t, at, "truncated extended header"); }
      b[size] = 0;
      if (type == 'x') {
        if (!parse_pax(b, (size_t)size, &pax_path, &pax_size)) {
          free(b);
          free(long_name);
          free(pax_path);
          return fail(t, at, "malformed pax header");
        }
        free(b);
      } else if (type == 'L') {
        free(long_name);
        long_name = b;   /* NUL-terminated within size */
      } else {
        free(b);
      }
      continue;
    }
    int regular = type == '0' || type == 0 || type == '7';
    if (!regular) {
      if (!skip(t, padded)) { free(long_name); free(pax_path); return fail(t, at, "truncated member"); }
      free(long_name);
      free(pax_path);
      long_name = pax_path = NULL;
      pax_size = -1;
      continue;
    }
    if ((uint64_t)size > VLM_TAR_MAX_ENTRY) {
      free(long_name);
      free(pax_path);
      return fail(t, at, "member larger than 256 MiB");
    }
    char *name;
    if (pax_path) { name = pax_path; pax_path = NULL; free(long_name); }
    else if (long_name) { name = long_name; long_name = NULL; }
    else {
      char *base = field_str(h, 100);
      int ustar = !memcmp(h + 257, "ustar", 5);
      char *prefix = ustar && h[345] ? field_str(h + 345, 155) : NULL;
      if (prefix && base) {
        size_t a = strlen(prefix), b = strlen(base);
        name = malloc(a + b + 2);
        if (name) { memcpy(name, prefix, a); name[a] = '/'; memcpy(name + a + 1, base, b + 1); }
        free(base);
      } else {
        name = base;
      }
      free(prefix);
    }
    if (!name) return fail(t, at, "out of memory");
    /* read in growing chunks: a header claiming a huge size costs only the bytes present */
    size_t cap = (size_t)size < ((size_t)1 << 16) ? (size_t)size : ((size_t)1 << 16), have = 0;
    uint8_t *data = malloc(cap + 1);
    int short_read = 0;
    while (data && have < (size_t)size) {
      if (have == cap) {
        size_t nc = cap * 2 < (size_t)size ? cap * 2 : (size_t)size;
        uint8_t *nd = realloc(data, nc + 1);
        if (!nd) { free(data); data = NULL; break; }
        data = nd;
        cap = nc;
      }
      if (!rd(t, data + have, cap - have)) { short_read = 1; break; }
      have = cap;
    }
    if (!data) { free(name); return fail(t, at, "out of memory"); }
    if (short_read || !skip(t, padded - (uint64_t)size)) {
      char msg[600];
      snprintf(msg, sizeof msg, "truncated member '%.500s' (%lld bytes)", name, (long long)size);
      free(name);
      free(data);
      return fail(t, at, msg);
    }
    data[size] = 0;
    free(t->cur_name);
    t->cur_name = name;
    e->name = name;
    e->data = data;
    e->size = (size_t)size;
    e->offset = at;
    return 1;
  }
}
