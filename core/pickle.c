/* A pickle machine that builds values and runs nothing: GLOBAL gives a name, REDUCE /
 * NEWOBJ / INST / OBJ give an OBJ value holding the callable and its arguments (or what
 * the reduce hook makes of them), BUILD stores the state on the object, persistent ids go
 * to a hook. Protocols 0 to 5: every opcode of pickletools but the extension registry
 * (EXT1/2/4) and out-of-band buffers (NEXT_BUFFER, READONLY_BUFFER), which are refused.
 *
 * Hostile input: every read is bounds-checked, the stack, the mark stack and the memo
 * grow with the input only (each opcode adds at most one value), memo keys are hashed
 * (a 4-byte index allocates nothing), stack and memo misuse are errors. Values form a
 * graph (the memo shares them; a list can hold itself), so walkers use `visiting`. */
#define _GNU_SOURCE
#include "core/core.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 1024

typedef struct chunk {
  struct chunk *next;
  size_t used;
  vlm_pk v[CHUNK];
} chunk;

typedef struct blob {
  struct blob *next;
  max_align_t data[];
} blob;

struct vlm_pickle {
  char *what;
  chunk *chunks;
  blob *blobs;
  /* machine state */
  const uint8_t *d;
  size_t n, pos, op_at;
  vlm_pk **stack;
  size_t sp, scap;
  size_t *marks;
  size_t nmarks, mcap;
  uint32_t *mkeys;    /* memo: open addressing, key + 1 (0 = empty) */
  vlm_pk **mvals;
  size_t mslots, mcount;
  const vlm_pickle_hooks *hooks;
};

vlm_pk *vlm_pickle_new(vlm_pickle *p, vlm_pk_kind kind) {
  if (!p->chunks || p->chunks->used == CHUNK) {
    chunk *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->next = p->chunks;
    p->chunks = c;
  }
  vlm_pk *v = &p->chunks->v[p->chunks->used++];
  v->kind = kind;
  return v;
}

void *vlm_pickle_alloc(vlm_pickle *p, size_t n) {
  blob *b = calloc(1, sizeof(blob) + n);
  if (!b) return NULL;
  b->next = p->blobs;
  p->blobs = b;
  return b->data;
}

const char *vlm_pickle_what(const vlm_pickle *p) { return p->what; }

void vlm_pickle_free(vlm_pickle *p) {
  if (!p) return;
  for (chunk *c = p->chunks; c;) {
    for (size_t i = 0; i < c->used; i++) {
      free(c->v[i].items);
      free(c->v[i].kv);
    }
    chunk *nx = c->next;
    free(c);
    c = nx;
  }
  for (blob *b = p->blobs; b;) {
    blob *nx = b->next;
    free(b);
    b = nx;
  }
  free(p->stack);
  free(p->marks);
  free(p->mkeys);
  free(p->mvals);
  free(p->what);
  free(p);
}

int vlm_pk_is_str(const vlm_pk *v, const char *s) {
  size_t n = strlen(s);
  return v && v->kind == VLM_PK_STR && v->len == n && !memcmp(v->s, s, n);
}

int vlm_pk_is_global(const vlm_pk *v, const char *module, const char *name) {
  size_t m = strlen(module), k = strlen(name);
  return v && v->kind == VLM_PK_GLOBAL && v->len == m && v->len2 == k && !memcmp(v->s, module, m) &&
         !memcmp(v->s2, name, k);
}

/* ------------------------------------------------------------------ machine helpers */

#define FAIL(p, code, ...) return perr(p, code, __VA_ARGS__)
static vlm_status perr(vlm_pickle *p, vlm_status code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static vlm_status perr(vlm_pickle *p, vlm_status code, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return vlm_error(code, "%s: pickle opcode at byte %zu: %s", p->what, p->op_at, buf);
}

static vlm_status oom(vlm_pickle *p) { return perr(p, VLM_ERR_OOM, "out of memory"); }

static vlm_status push(vlm_pickle *p, vlm_pk *v) {
  if (!v) return oom(p);
  if (p->sp == p->scap) {
    size_t nc = p->scap ? p->scap * 2 : 64;
    vlm_pk **ns = realloc(p->stack, nc * sizeof *ns);
    if (!ns) return oom(p);
    p->stack = ns;
    p->scap = nc;
  }
  p->stack[p->sp++] = v;
  return VLM_OK;
}

/* The stack's floor: nothing below the last mark may be popped without POP_MARK. */
static size_t floor_(const vlm_pickle *p) { return p->nmarks ? p->marks[p->nmarks - 1] : 0; }

static vlm_status pop(vlm_pickle *p, vlm_pk **out) {
  if (p->sp <= floor_(p)) FAIL(p, VLM_ERR_FORMAT, "the stack is empty");
  *out = p->stack[--p->sp];
  return VLM_OK;
}

static vlm_status top(vlm_pickle *p, vlm_pk **out) {
  if (p->sp <= floor_(p)) FAIL(p, VLM_ERR_FORMAT, "the stack is empty");
  *out = p->stack[p->sp - 1];
  return VLM_OK;
}

/* Items above the last mark: [*first, sp); the mark is removed. */
static vlm_status pop_mark(vlm_pickle *p, size_t *first) {
  if (!p->nmarks) FAIL(p, VLM_ERR_FORMAT, "no MARK to match");
  *first = p->marks[--p->nmarks];
  return VLM_OK;
}

static vlm_status need(vlm_pickle *p, size_t k) {
  if (p->n - p->pos < k) FAIL(p, VLM_ERR_FORMAT, "the pickle ends inside an opcode's argument (truncated?)");
  return VLM_OK;
}

static uint64_t le(const uint8_t *b, int k) {
  uint64_t v = 0;
  for (int i = k - 1; i >= 0; i--) v = (v << 8) | b[i];
  return v;
}

/* A newline-terminated argument of the text opcodes: [*s, *s + *len), the newline skipped. */
static vlm_status line(vlm_pickle *p, const char **s, size_t *len) {
  const uint8_t *nl = memchr(p->d + p->pos, '\n', p->n - p->pos);
  if (!nl) FAIL(p, VLM_ERR_FORMAT, "no newline after a text argument (truncated?)");
  *s = (const char *)p->d + p->pos;
  *len = (size_t)(nl - (p->d + p->pos));
  p->pos += *len + 1;
  return VLM_OK;
}

static vlm_status grow(vlm_pickle *p, vlm_pk ***arr, size_t *cap, size_t want) {
  if (want <= *cap) return VLM_OK;
  size_t nc = *cap ? *cap : 8;
  while (nc < want) nc *= 2;
  vlm_pk **na = realloc(*arr, nc * sizeof *na);
  if (!na) return oom(p);
  *arr = na;
  *cap = nc;
  return VLM_OK;
}

static vlm_status append_items(vlm_pickle *p, vlm_pk *to, vlm_pk **src, size_t k) {
  if (to->kind != VLM_PK_LIST && to->kind != VLM_PK_OBJ && to->kind != VLM_PK_SET)
    FAIL(p, VLM_ERR_FORMAT, "APPEND(S)/ADDITEMS on a value that is not a list, a set or an object");
  if (!k) return VLM_OK;
  vlm_status s = grow(p, &to->items, &to->cap, to->n + k);
  if (s != VLM_OK) return s;
  memcpy(to->items + to->n, src, k * sizeof *src);
  to->n += k;
  return VLM_OK;
}

static vlm_status set_items(vlm_pickle *p, vlm_pk *to, vlm_pk **src, size_t k) {
  if (k % 2) FAIL(p, VLM_ERR_FORMAT, "SETITEMS with an odd number of items");
  if (to->kind != VLM_PK_DICT && to->kind != VLM_PK_OBJ)
    FAIL(p, VLM_ERR_FORMAT, "SETITEM(S) on a value that is not a dict or an object");
  if (!k) return VLM_OK;
  size_t cap2 = to->capkv * 2;
  vlm_status s = grow(p, &to->kv, &cap2, 2 * to->nkv + k);
  if (s != VLM_OK) return s;
  to->capkv = cap2 / 2;
  memcpy(to->kv + 2 * to->nkv, src, k * sizeof *src);
  to->nkv += k / 2;
  return VLM_OK;
}

static vlm_status make_seq(vlm_pickle *p, vlm_pk_kind kind, size_t first) {
  vlm_pk *v = vlm_pickle_new(p, kind);
  if (!v) return oom(p);
  size_t k = p->sp - first;
  if (kind == VLM_PK_DICT && k) {
    vlm_status s = set_items(p, v, p->stack + first, k);
    if (s != VLM_OK) return s;
  } else if (k) {
    if (!(v->items = malloc(k * sizeof *v->items))) return oom(p);
    memcpy(v->items, p->stack + first, k * sizeof *v->items);
    v->n = v->cap = k;
  }
  p->sp = first;
  return push(p, v);
}

/* ------------------------------------------------------------------ memo */

static vlm_pk **memo_slot(vlm_pickle *p, uint32_t key, int insert) {
  if (insert && (p->mcount + 1) * 2 > p->mslots) {
    size_t ns = p->mslots ? p->mslots * 2 : 256;
    uint32_t *nk = calloc(ns, sizeof *nk);
    vlm_pk **nv = calloc(ns, sizeof *nv);
    if (!nk || !nv) { free(nk); free(nv); return NULL; }
    for (size_t i = 0; i < p->mslots; i++) {
      if (!p->mkeys[i]) continue;
      size_t j = (p->mkeys[i] * 2654435761u) & (ns - 1);
      while (nk[j]) j = (j + 1) & (ns - 1);
      nk[j] = p->mkeys[i];
      nv[j] = p->mvals[i];
    }
    free(p->mkeys);
    free(p->mvals);
    p->mkeys = nk;
    p->mvals = nv;
    p->mslots = ns;
  }
  if (!p->mslots) return NULL;
  uint32_t k1 = key + 1;   /* keys up to 2^32 - 1: k1 wraps to 0 for the last one */
  size_t j = ((size_t)k1 * 2654435761u) & (p->mslots - 1);
  for (;;) {
    if (p->mkeys[j] == k1 && k1) return &p->mvals[j];
    if (!p->mkeys[j]) {
      if (!insert) return NULL;
      p->mkeys[j] = k1;
      p->mcount++;
      return &p->mvals[j];
    }
    j = (j + 1) & (p->mslots - 1);
  }
}

static vlm_status memo_put(vlm_pickle *p, uint64_t key) {
  if (key >= 0xffffffffu) FAIL(p, VLM_ERR_FORMAT, "memo index %llu is too large", (unsigned long long)key);
  vlm_pk *v = NULL;
  vlm_status s = top(p, &v);
  if (s != VLM_OK) return s;
  vlm_pk **slot = memo_slot(p, (uint32_t)key, 1);
  if (!slot) return oom(p);
  *slot = v;
  return VLM_OK;
}

static vlm_status memo_get(vlm_pickle *p, uint64_t key) {
  vlm_pk **slot = key < 0xffffffffu ? memo_slot(p, (uint32_t)key, 0) : NULL;
  if (!slot) FAIL(p, VLM_ERR_FORMAT, "memo index %llu was never stored", (unsigned long long)key);
  return push(p, *slot);
}

/* ------------------------------------------------------------------ values */

static vlm_pk *new_int(vlm_pickle *p, int64_t i) {
  vlm_pk *v = vlm_pickle_new(p, VLM_PK_INT);
  if (v) v->i = i;
  return v;
}

static vlm_pk *new_str(vlm_pickle *p, vlm_pk_kind kind, const uint8_t *s, size_t n) {
  vlm_pk *v = vlm_pickle_new(p, kind);
  if (v) { v->s = (const char *)s; v->len = n; }
  return v;
}

/* A little-endian two's complement integer of k bytes (LONG1 / LONG4). */
static vlm_pk *new_long(vlm_pickle *p, const uint8_t *b, size_t k) {
  if (k > 8) return vlm_pickle_new(p, VLM_PK_BIGINT);
  uint64_t u = k ? le(b, (int)k) : 0;
  if (k && k < 8 && (b[k - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * k);
  return new_int(p, (int64_t)u);
}

/* Parse a decimal (text opcodes INT, LONG, GET, PUT). */
static int parse_dec(const char *s, size_t n, int64_t *out, int *big) {
  size_t i = 0;
  int neg = 0;
  if (n && s[n - 1] == 'L') n--;
  if (i < n && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
  if (i == n) return 0;
  uint64_t v = 0;
  *big = 0;
  for (; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return 0;
    if (v > (UINT64_MAX - 9) / 10) *big = 1;
    else v = v * 10 + (uint64_t)(s[i] - '0');
  }
  if (v > (uint64_t)INT64_MAX) *big = 1;
  *out = neg ? -(int64_t)v : (int64_t)v;
  return 1;
}

static vlm_status call(vlm_pickle *p, vlm_pk *callable, vlm_pk *args) {
  vlm_pk *out = NULL;
  if (p->hooks && p->hooks->reduce) {
    vlm_status s = p->hooks->reduce(p->hooks->ctx, p, callable, args, &out);
    if (s != VLM_OK) return s;
  }
  if (!out) {
    if (!(out = vlm_pickle_new(p, VLM_PK_OBJ))) return oom(p);
    out->func = callable;
    out->args = args;
  }
  return push(p, out);
}

static vlm_status global(vlm_pickle *p, const char *m, size_t ml, const char *nm, size_t nl) {
  vlm_pk *v = vlm_pickle_new(p, VLM_PK_GLOBAL);
  if (!v) return oom(p);
  v->s = m; v->len = ml;
  v->s2 = nm; v->len2 = nl;
  return push(p, v);
}

static vlm_status persistent(vlm_pickle *p, vlm_pk *pid) {
  if (!p->hooks || !p->hooks->persistent_load)
    FAIL(p, VLM_ERR_FORMAT, "a persistent id, and nothing here to resolve it");
  vlm_pk *out = NULL;
  vlm_status s = p->hooks->persistent_load(p->hooks->ctx, p, pid, &out);
  if (s != VLM_OK) return s;
  return push(p, out);
}

/* ------------------------------------------------------------------ the machine */

static vlm_status step(vlm_pickle *p, int *stop) {
  p->op_at = p->pos;
  uint8_t op = p->d[p->pos++];
  vlm_status s = VLM_OK;
  vlm_pk *a = NULL, *b = NULL, *c = NULL;
  size_t first = 0, len = 0;
  const char *t = NULL, *t2 = NULL;
  size_t tl = 0, tl2 = 0;
  int64_t iv = 0;
  int big = 0;
  switch (op) {
    case 0x80: /* PROTO */
      if ((s = need(p, 1)) != VLM_OK) return s;
      if (p->d[p->pos] > 5) FAIL(p, VLM_ERR_UNSUPPORTED, "pickle protocol %d (at most 5 supported)", p->d[p->pos]);
      p->pos++;
      return VLM_OK;
    case 0x95: /* FRAME: a length only */
      if ((s = need(p, 8)) != VLM_OK) return s;
      p->pos += 8;
      return VLM_OK;
    case '.': *stop = 1; return VLM_OK;
    case '(':
      if (p->nmarks == p->mcap) {
        size_t nc = p->mcap ? p->mcap * 2 : 32;
        size_t *nm = realloc(p->marks, nc * sizeof *nm);
        if (!nm) return oom(p);
        p->marks = nm;
        p->mcap = nc;
      }
      p->marks[p->nmarks++] = p->sp;
      return VLM_OK;
    case '0': return pop(p, &a);
    case '1':
      if ((s = pop_mark(p, &first)) != VLM_OK) return s;
      p->sp = first;
      return VLM_OK;
    case '2':
      if ((s = top(p, &a)) != VLM_OK) return s;
      return push(p, a);
    case 'N': return push(p, vlm_pickle_new(p, VLM_PK_NONE));
    case 0x88: case 0x89:
      if (!(a = vlm_pickle_new(p, VLM_PK_BOOL))) return oom(p);
      a->i = op == 0x88;
      return push(p, a);
    case 'J':
      if ((s = need(p, 4)) != VLM_OK) return s;
      iv = (int32_t)(uint32_t)le(p->d + p->pos, 4);
      p->pos += 4;
      return push(p, new_int(p, iv));
    case 'K':
      if ((s = need(p, 1)) != VLM_OK) return s;
      return push(p, new_int(p, p->d[p->pos++]));
    case 'M':
      if ((s = need(p, 2)) != VLM_OK) return s;
      iv = (int64_t)le(p->d + p->pos, 2);
      p->pos += 2;
      return push(p, new_int(p, iv));
    case 0x8a: case 0x8b: /* LONG1, LONG4 */
      if ((s = need(p, op == 0x8a ? 1 : 4)) != VLM_OK) return s;
      len = (size_t)le(p->d + p->pos, op == 0x8a ? 1 : 4);
      p->pos += op == 0x8a ? 1 : 4;
      if (op == 0x8b && (int32_t)len < 0) FAIL(p, VLM_ERR_FORMAT, "LONG4 with a negative length");
      if ((s = need(p, len)) != VLM_OK) return s;
      a = new_long(p, p->d + p->pos, len);
      p->pos += len;
      return push(p, a);
    case 'I': case 'L':
      if ((s = line(p, &t, &tl)) != VLM_OK) return s;
      if (op == 'I' && tl == 2 && (!memcmp(t, "00", 2) || !memcmp(t, "01", 2))) {
        if (!(a = vlm_pickle_new(p, VLM_PK_BOOL))) return oom(p);
        a->i = t[1] == '1';
        return push(p, a);
      }
      if (!parse_dec(t, tl, &iv, &big)) FAIL(p, VLM_ERR_FORMAT, "a text integer that is not a number");
      return push(p, big ? vlm_pickle_new(p, VLM_PK_BIGINT) : new_int(p, iv));
    case 'F':
      if ((s = line(p, &t, &tl)) != VLM_OK) return s;
      if (!(a = vlm_pickle_new(p, VLM_PK_FLOAT))) return oom(p);
      { char buf[64]; size_t k = tl < 63 ? tl : 63; memcpy(buf, t, k); buf[k] = 0; a->f = strtod(buf, NULL); }
      return push(p, a);
    case 'G':
      if ((s = need(p, 8)) != VLM_OK) return s;
      if (!(a = vlm_pickle_new(p, VLM_PK_FLOAT))) return oom(p);
      {
        uint64_t u = 0;
        for (int i = 0; i < 8; i++) u = (u << 8) | p->d[p->pos + i];   /* big-endian */
        memcpy(&a->f, &u, 8);
      }
      p->pos += 8;
      return push(p, a);
    case 'S': /* STRING: a quoted repr, kept raw without its quotes */
      if ((s = line(p, &t, &tl)) != VLM_OK) return s;
      if (tl < 2 || (t[0] != '\'' && t[0] != '"') || t[tl - 1] != t[0])
        FAIL(p, VLM_ERR_FORMAT, "a STRING argument without quotes");
      return push(p, new_str(p, VLM_PK_BYTES, (const uint8_t *)t + 1, tl - 2));
    case 'V':
      if ((s = line(p, &t, &tl)) != VLM_OK) return s;
      return push(p, new_str(p, VLM_PK_STR, (const uint8_t *)t, tl));
    case 'T': case 'U': case 'B': case 'C': case 0x8e: case 0x96: /* byte strings */
    case 'X': case 0x8c: case 0x8d: {                              /* unicode strings */
      int k = (op == 'U' || op == 'C' || op == 0x8c) ? 1 : (op == 0x8e || op == 0x96 || op == 0x8d) ? 8 : 4;
      if ((s = need(p, (size_t)k)) != VLM_OK) return s;
      uint64_t n = le(p->d + p->pos, k);
      if (op == 'T' && (int32_t)n < 0) FAIL(p, VLM_ERR_FORMAT, "BINSTRING with a negative length");
      p->pos += (size_t)k;
      if (n > p->n - p->pos) FAIL(p, VLM_ERR_FORMAT, "a string of %llu bytes runs past the end of the pickle",
                                  (unsigned long long)n);
      int uni = op == 'X' || op == 0x8c || op == 0x8d;
      a = new_str(p, uni ? VLM_PK_STR : VLM_PK_BYTES, p->d + p->pos, (size_t)n);
      p->pos += (size_t)n;
      return push(p, a);
    }
    case ']': return make_seq(p, VLM_PK_LIST, p->sp);
    case ')': return make_seq(p, VLM_PK_TUPLE, p->sp);
    case '}': return make_seq(p, VLM_PK_DICT, p->sp);
    case 0x8f: return make_seq(p, VLM_PK_SET, p->sp);
    case 'l': case 't': case 'd': case 0x91:
      if ((s = pop_mark(p, &first)) != VLM_OK) return s;
      return make_seq(p, op == 'l' ? VLM_PK_LIST : op == 't' ? VLM_PK_TUPLE : op == 'd' ? VLM_PK_DICT : VLM_PK_SET,
                      first);
    case 0x85: case 0x86: case 0x87: {
      size_t k = (size_t)(op - 0x84);
      if (p->sp < floor_(p) + k) FAIL(p, VLM_ERR_FORMAT, "TUPLE%zu with fewer items on the stack", k);
      return make_seq(p, VLM_PK_TUPLE, p->sp - k);
    }
    case 'a':
      if ((s = pop(p, &a)) != VLM_OK || (s = top(p, &b)) != VLM_OK) return s;
      return append_items(p, b, &a, 1);
    case 'e': case 0x90:
      if ((s = pop_mark(p, &first)) != VLM_OK) return s;
      if (first <= floor_(p)) FAIL(p, VLM_ERR_FORMAT, "APPENDS/ADDITEMS with no list below the mark");
      if ((s = append_items(p, p->stack[first - 1], p->stack + first, p->sp - first)) != VLM_OK) return s;
      p->sp = first;
      return VLM_OK;
    case 's':
      if ((s = pop(p, &b)) != VLM_OK || (s = pop(p, &a)) != VLM_OK || (s = top(p, &c)) != VLM_OK) return s;
      {
        vlm_pk *kv[2] = {a, b};
        return set_items(p, c, kv, 2);
      }
    case 'u':
      if ((s = pop_mark(p, &first)) != VLM_OK) return s;
      if (first <= floor_(p)) FAIL(p, VLM_ERR_FORMAT, "SETITEMS with no dict below the mark");
      if ((s = set_items(p, p->stack[first - 1], p->stack + first, p->sp - first)) != VLM_OK) return s;
      p->sp = first;
      return VLM_OK;
    case 'g': case 'p':
      if ((s = line(p, &t, &tl)) != VLM_OK) return s;
      if (!parse_dec(t, tl, &iv, &big) || big || iv < 0) FAIL(p, VLM_ERR_FORMAT, "a bad memo index");
      return op == 'g' ? memo_get(p, (uint64_t)iv) : memo_put(p, (uint64_t)iv);
    case 'h': case 'q':
      if ((s = need(p, 1)) != VLM_OK) return s;
      iv = p->d[p->pos++];
      return op == 'h' ? memo_get(p, (uint64_t)iv) : memo_put(p, (uint64_t)iv);
    case 'j': case 'r':
      if ((s = need(p, 4)) != VLM_OK) return s;
      iv = (int64_t)le(p->d + p->pos, 4);
      p->pos += 4;
      return op == 'j' ? memo_get(p, (uint64_t)iv) : memo_put(p, (uint64_t)iv);
    case 0x94: return memo_put(p, p->mcount);
    case 'c': case 'i':
      if ((s = line(p, &t, &tl)) != VLM_OK || (s = line(p, &t2, &tl2)) != VLM_OK) return s;
      if (op == 'c') return global(p, t, tl, t2, tl2);
      if ((s = global(p, t, tl, t2, tl2)) != VLM_OK || (s = pop(p, &a)) != VLM_OK) return s;
      if ((s = pop_mark(p, &first)) != VLM_OK) return s;    /* INST: class, args above the mark */
      if ((s = make_seq(p, VLM_PK_TUPLE, first)) != VLM_OK || (s = pop(p, &b)) != VLM_OK) return s;
      return call(p, a, b);
    case 0x93: /* STACK_GLOBAL */
      if ((s = pop(p, &b)) != VLM_OK || (s = pop(p, &a)) != VLM_OK) return s;
      if (a->kind != VLM_PK_STR || b->kind != VLM_PK_STR) FAIL(p, VLM_ERR_FORMAT, "STACK_GLOBAL on non-strings");
      return global(p, a->s, a->len, b->s, b->len);
    case 'o': /* OBJ: class and args above the mark */
      if ((s = pop_mark(p, &first)) != VLM_OK) return s;
      if (p->sp == first) FAIL(p, VLM_ERR_FORMAT, "OBJ without a class");
      a = p->stack[first];
      if ((s = make_seq(p, VLM_PK_TUPLE, first + 1)) != VLM_OK || (s = pop(p, &b)) != VLM_OK) return s;
      p->sp = first;
      return call(p, a, b);
    case 'R': case 0x81:
      if ((s = pop(p, &b)) != VLM_OK || (s = pop(p, &a)) != VLM_OK) return s;
      return call(p, a, b);   /* hooks check the arguments they use */
    case 0x92: /* NEWOBJ_EX: cls, args, kwargs */
      if ((s = pop(p, &c)) != VLM_OK || (s = pop(p, &b)) != VLM_OK || (s = pop(p, &a)) != VLM_OK) return s;
      return call(p, a, b);   /* the keyword arguments are dropped */
    case 'b':
      if ((s = pop(p, &b)) != VLM_OK || (s = top(p, &a)) != VLM_OK) return s;
      if (a->kind != VLM_PK_OBJ) {
        /* BUILD on something that is not an object (a dict's or a tensor's state, say): the state holds
         * nothing for names; keep the value as it is */
        return VLM_OK;
      }
      a->state = b;
      return VLM_OK;
    case 'Q':
      if ((s = pop(p, &a)) != VLM_OK) return s;
      return persistent(p, a);
    case 'P':
      if ((s = line(p, &t, &tl)) != VLM_OK) return s;
      if (!(a = new_str(p, VLM_PK_STR, (const uint8_t *)t, tl))) return oom(p);
      return persistent(p, a);
    case 0x82: case 0x83: case 0x84:
      FAIL(p, VLM_ERR_UNSUPPORTED, "the extension registry (EXT1/2/4) is not supported");
    case 0x97: case 0x98:
      FAIL(p, VLM_ERR_UNSUPPORTED, "out-of-band buffers (NEXT_BUFFER, READONLY_BUFFER) are not supported");
    default:
      FAIL(p, VLM_ERR_FORMAT, "unknown opcode 0x%02x", op);
  }
}

vlm_status vlm_pickle_load(vlm_pickle **out, vlm_pk **root, const uint8_t *data, size_t n, const char *what,
                           const vlm_pickle_hooks *hooks) {
  *root = NULL;
  vlm_pickle *p = calloc(1, sizeof *p);
  *out = p;
  if (!p || !(p->what = strdup(what ? what : "pickle"))) return vlm_error(VLM_ERR_OOM, "%s: out of memory", what);
  p->d = data;
  p->n = n;
  p->hooks = hooks;
  int stop = 0;
  vlm_status s = VLM_OK;
  while (!stop && s == VLM_OK) {
    if (p->pos >= p->n) {
      p->op_at = p->pos;
      return perr(p, VLM_ERR_FORMAT, "the pickle ends without STOP (truncated?)");
    }
    s = step(p, &stop);
  }
  if (s != VLM_OK) return s;
  /* Like Python: the value on top is the result, whatever lies below it. */
  if (p->sp <= floor_(p)) return perr(p, VLM_ERR_FORMAT, "STOP with nothing on the stack");
  *root = p->stack[p->sp - 1];
  return VLM_OK;
}
