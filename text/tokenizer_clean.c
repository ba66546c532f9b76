/* The tokenizer's text cleaning, as open_clip's _clean_lower:
 *   whitespace_clean(basic_clean(text)).lower()
 *   basic_clean = ftfy.fix_text, then html.unescape(html.unescape(.)), strip.
 * ftfy.fix_text is reproduced for what matters on captions (its mojibake
 * repair, fix_encoding, is not): per line and repeated until nothing changes,
 * HTML entities with ';' unescaped when the line has no '<', C1 controls read
 * as Windows-1252, Latin ligatures and full-width/half-width forms unfolded
 * (NFKC of those characters only), curly quotes straightened, line breaks
 * unified, terminal escapes and control characters removed, NFC. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "text/text.h"
#include "text/tokenizer_internal.h"

int vlm_tok_cps_reserve(vlm_tok_cps *b, size_t n) {
  if (n <= b->cap) return 1;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < n) cap *= 2;
  int32_t *v = realloc(b->v, cap * sizeof *v);
  if (!v) return 0;
  b->v = v;
  b->cap = cap;
  return 1;
}

static int push(vlm_tok_cps *b, int32_t c) {
  if (b->n == b->cap && !vlm_tok_cps_reserve(b, b->n + 1)) return 0;
  b->v[b->n++] = c;
  return 1;
}

/* ------------------------------------------------------------------ UTF-8 */
int vlm_tok_utf8_decode(vlm_tok_cps *out, const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  out->n = 0;
  if (!vlm_tok_cps_reserve(out, n + 1)) return 0;   /* never more code points than bytes */
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    if (c < 0x80) { out->v[out->n++] = (int32_t)c; i++; continue; }
    int need;
    unsigned lo = 0x80, hi = 0xBF;
    int32_t cp;
    if (c >= 0xC2 && c <= 0xDF) { need = 1; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) {
      need = 2; cp = c & 0x0F;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3; cp = c & 0x07;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else { out->v[out->n++] = 0xFFFD; i++; continue; }
    size_t j = i + 1;
    int ok = 1;
    for (int k = 0; k < need; k++, j++) {
      unsigned b = j < n ? s[j] : 0;
      unsigned l = k == 0 ? lo : 0x80, h = k == 0 ? hi : 0xBF;
      if (j >= n || b < l || b > h) { ok = 0; break; }
      cp = (cp << 6) | (int32_t)(b & 0x3F);
    }
    out->v[out->n++] = ok ? cp : 0xFFFD;
    i = j;   /* on failure: resume at the offending byte */
  }
  return 1;
}

int vlm_tok_utf8_put(char *buf, int32_t c) {
  unsigned u = (unsigned)c;
  if (u < 0x80) { buf[0] = (char)u; return 1; }
  if (u < 0x800) { buf[0] = (char)(0xC0 | (u >> 6)); buf[1] = (char)(0x80 | (u & 0x3F)); return 2; }
  if (u < 0x10000) {
    buf[0] = (char)(0xE0 | (u >> 12)); buf[1] = (char)(0x80 | ((u >> 6) & 0x3F));
    buf[2] = (char)(0x80 | (u & 0x3F));
    return 3;
  }
  buf[0] = (char)(0xF0 | (u >> 18)); buf[1] = (char)(0x80 | ((u >> 12) & 0x3F));
  buf[2] = (char)(0x80 | ((u >> 6) & 0x3F)); buf[3] = (char)(0x80 | (u & 0x3F));
  return 4;
}

/* ------------------------------------------------------------------ classes */
/* Python's str.isspace (what re's \s matches in str patterns). */
int vlm_tok_is_space(int32_t c) {
  if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

int vlm_tok_is_letter(int32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  utf8proc_category_t k = utf8proc_category(c);
  return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT ||
         k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_LO;
}

int vlm_tok_is_number(int32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  utf8proc_category_t k = utf8proc_category(c);
  return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

/* ------------------------------------------------------------------ HTML entities */
/* Windows-1252 for 0x80..0x9F (html's _invalid_charrefs and ftfy's C1 fix);
 * the five undefined bytes map to themselves. */
static const int32_t k_cp1252[32] = {
  0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x8D, 0x017D, 0x8F,
  0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178};

/* Bytewise order of name[0..len) against a NUL-terminated key (names may hold NUL bytes). */
static int entity_cmp(const char *name, size_t len, const char *key) {
  size_t kl = strlen(key);
  int c = memcmp(name, key, len < kl ? len : kl);
  if (c) return c;
  return len < kl ? -1 : len > kl ? 1 : 0;
}

static const vlm_tok_entity *entity_find(const char *name, size_t len) {
  int lo = 0, hi = vlm_tok_n_entities - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    int c = entity_cmp(name, len, vlm_tok_entities[mid].name);
    if (!c) return &vlm_tok_entities[mid];
    if (c < 0) hi = mid - 1; else lo = mid + 1;
  }
  return NULL;
}

/* ftfy's upper-case entities: name (with ';') is the upper case of a
 * lower-case HTML5 name and, upper-cased, is not a reference (not even by a
 * legacy prefix); the value is the character upper-cased. */
static int upper_entity(const char *name, size_t len, int32_t out[2]) {
  char low[40];
  int has_upper = 0;
  for (size_t k = 0; k < len; k++) {
    char c = name[k];
    if (c >= 'a' && c <= 'z') return 0;
    if (c >= 'A' && c <= 'Z') { has_upper = 1; c = (char)(c + 32); }
    low[k] = c;
  }
  if (!has_upper) return 0;
  const vlm_tok_entity *e = entity_find(low, len);
  if (!e) return 0;
  for (size_t x = len - 1; x > 1; x--)
    if (entity_find(name, x)) return 0;
  if (e->cp[0] == 0xDF && !e->cp[1]) { out[0] = 'S'; out[1] = 'S'; return 1; }   /* "ß".upper() */
  out[0] = utf8proc_toupper(e->cp[0]);
  out[1] = e->cp[1] ? utf8proc_toupper(e->cp[1]) : 0;
  return 1;
}

static int is_invalid_codepoint(long long n) {
  return (n >= 0x1 && n <= 0x8) || n == 0xB || (n >= 0xE && n <= 0x1F) || (n >= 0x7F && n <= 0x9F) ||
         (n >= 0xFDD0 && n <= 0xFDEF) || ((n & 0xFFFE) == 0xFFFE && n <= 0x10FFFF);
}

/* Numeric reference value -> code point (-1: nothing), as Python's html module. */
static int32_t numeric_ref(long long num) {
  if (num == 0) return 0xFFFD;
  if (num == 0x0D) return 0x0D;
  if (num >= 0x80 && num <= 0x9F) return k_cp1252[num - 0x80];
  if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) return 0xFFFD;
  if (is_invalid_codepoint(num)) return -1;
  return (int32_t)num;
}

/* One pass of Python's html.unescape over t (semi_only: ftfy's pass, which only
 * takes references ending in ';'). Returns 1 if anything changed, -1 on OOM. */
static int unescape(vlm_tok_cps *t, int semi_only) {
  size_t i = 0, o = 0, n = t->n;
  int32_t *v = t->v;
  int changed = 0;
  /* The output never grows: every reference is >= 2 code points and yields <= 2... except
   * "&x" prefixes ("&notit;" -> "¬it;"), which still shrink. So write in place. */
  while (i < n) {
    if (v[i] != '&') { v[o++] = v[i++]; continue; }
    size_t j = i + 1;
    if (j < n && v[j] == '#') {
      j++;
      int hex = 0;
      if (j < n && (v[j] == 'x' || v[j] == 'X')) { hex = 1; j++; }
      size_t d0 = j;
      long long num = 0;
      while (j < n && ((v[j] >= '0' && v[j] <= '9') ||
                       (hex && ((v[j] >= 'a' && v[j] <= 'f') || (v[j] >= 'A' && v[j] <= 'F'))))) {
        int d = v[j] <= '9' ? v[j] - '0' : (v[j] | 0x20) - 'a' + 10;
        if (num <= 0x7FFFFFFFLL) num = num * (hex ? 16 : 10) + d;
        j++;
      }
      int semi = j < n && v[j] == ';';
      if (j == d0 || (semi_only && !semi)) { v[o++] = v[i++]; continue; }
      if (semi) j++;
      int32_t c = numeric_ref(num);
      if (c >= 0) v[o++] = c;
      i = j;
      changed = 1;
      continue;
    }
    /* named: [^\t\n\f <&#;]{1,32};? */
    size_t k = j;
    while (k < n && k - j < 32 && v[k] != '\t' && v[k] != '\n' && v[k] != '\f' && v[k] != ' ' && v[k] != '<' &&
           v[k] != '&' && v[k] != '#' && v[k] != ';')
      k++;
    if (k == j) { v[o++] = v[i++]; continue; }
    int semi = k < n && v[k] == ';';
    size_t end = semi ? k + 1 : k;
    /* names are ASCII; anything else cannot match */
    char name[40];
    size_t len = 0;
    for (size_t q = j; q < end && len < sizeof name - 1; q++) name[len++] = v[q] < 0x80 ? (char)v[q] : '\x7f';
    if (semi_only) {   /* ftfy's pattern: &[0-9A-Za-z]{1,24}; */
      int alnum = semi && len - 1 <= 24;
      for (size_t q = 0; alnum && q + 1 < len; q++)
        alnum = (name[q] >= '0' && name[q] <= '9') || ((name[q] | 0x20) >= 'a' && (name[q] | 0x20) <= 'z');
      if (!alnum) { v[o++] = v[i++]; continue; }
    }
    const vlm_tok_entity *e = entity_find(name, len);
    size_t used = len;
    if (!e && semi_only) {
      /* ftfy also takes an upper-cased lower-case name ("&EACUTE;" -> "É")
       * when the upper-case form is no reference itself */
      int32_t up[2];
      if (semi && upper_entity(name, len, up)) {
        v[o++] = up[0];
        if (up[1]) v[o++] = up[1];
        i = end;
        changed = 1;
        continue;
      }
      v[o++] = v[i++];
      continue;
    }
    if (!e) {
      for (size_t x = len - 1; x > 1; x--) {
        e = entity_find(name, x);
        if (e) { used = x; break; }
      }
    }
    if (!e) { v[o++] = v[i++]; continue; }   /* '&' + s unchanged */
    v[o++] = e->cp[0];
    if (e->cp[1]) v[o++] = e->cp[1];
    i = j + used;   /* the rest of the name stays as text */
    changed = 1;
  }
  t->n = o;
  return changed;
}

/* ------------------------------------------------------------------ ftfy-like fixes */
static int is_ligature(int32_t c) {
  return c == 0x132 || c == 0x133 || c == 0x149 || (c >= 0x1C4 && c <= 0x1CC) || (c >= 0x1F1 && c <= 0x1F3) ||
         (c >= 0xFB00 && c <= 0xFB06);
}

static int is_control(int32_t c) {
  return (c >= 0 && c <= 8) || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F || (c >= 0x206A && c <= 0x206F) ||
         c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

/* Append the normalization (utf8proc_map with opts) of v[0..n) to out. */
static int map_append(vlm_tok_cps *out, const int32_t *v, size_t n, int opts) {
  char *u = malloc(n * 4 + 1);
  if (!u) return 0;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) k += (size_t)vlm_tok_utf8_put(u + k, v[i]);
  u[k] = 0;
  utf8proc_uint8_t *dst = NULL;
  utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)u, (utf8proc_ssize_t)k, &dst, (utf8proc_option_t)opts);
  int ok = 1;
  if (m < 0) {   /* cannot happen on our valid input; keep the text as it is */
    for (size_t i = 0; i < n && ok; i++) ok = push(out, v[i]);
  } else {
    vlm_tok_cps tmp = {0};
    ok = vlm_tok_utf8_decode(&tmp, (const char *)dst, (size_t)m);
    for (size_t i = 0; i < tmp.n && ok; i++) ok = push(out, tmp.v[i]);
    free(tmp.v);
  }
  free(dst);
  free(u);
  return ok;
}

static int nfkc_char(vlm_tok_cps *out, int32_t c) {
  return map_append(out, &c, 1, UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
}

/* NFC of the whole buffer (through a scratch buffer). */
static int nfc(vlm_tok_cps *t, vlm_tok_cps *tmp) {
  int any = 0;
  for (size_t i = 0; i < t->n; i++)
    if (t->v[i] >= 0x300) { any = 1; break; }
  if (!any) return 1;   /* code points below U+0300 are NFC-stable and compose with nothing there */
  tmp->n = 0;
  if (!map_append(tmp, t->v, t->n, UTF8PROC_STABLE | UTF8PROC_COMPOSE)) return 0;
  if (!vlm_tok_cps_reserve(t, tmp->n)) return 0;
  if (tmp->n) memcpy(t->v, tmp->v, tmp->n * sizeof *t->v);
  t->n = tmp->n;
  return 1;
}

/* One round of ftfy's fixes after unescaping; returns 0 on OOM. */
static int ftfy_round(vlm_tok_cps *t, vlm_tok_cps *tmp) {
  tmp->n = 0;
  for (size_t i = 0; i < t->n; i++) {
    int32_t c = t->v[i];
    if (c >= 0x80 && c <= 0x9F) c = k_cp1252[c - 0x80];                    /* fix_c1_controls */
    if (c == 0xFB05) {   /* ftfy unfolds U+FB05 to long s + t, not NFKC's "st" */
      if (!push(tmp, 0x17F) || !push(tmp, 't')) return 0;
      continue;
    }
    if (is_ligature(c) || (c >= 0xFF01 && c <= 0xFFEF)) {                   /* ligatures, width */
      if (!nfkc_char(tmp, c)) return 0;
      continue;
    }
    if (c == 0x3000) c = ' ';
    if (c == 0x02BC || (c >= 0x2018 && c <= 0x201B)) c = '\'';             /* uncurl_quotes */
    else if (c >= 0x201C && c <= 0x201F) c = '"';
    if (!push(tmp, c)) return 0;
  }
  /* fix_line_breaks, remove_terminal_escapes, remove_control_chars */
  size_t o = 0;
  for (size_t i = 0; i < tmp->n; i++) {
    int32_t c = tmp->v[i];
    if (c == '\r') {
      if (i + 1 < tmp->n && tmp->v[i + 1] == '\n') continue;
      c = '\n';
    } else if (c == 0x2028 || c == 0x2029 || c == 0x85) {
      c = '\n';
    } else if (c == 0x1B && i + 1 < tmp->n && tmp->v[i + 1] == '[') {
      size_t j = i + 2;
      while (j < tmp->n && ((tmp->v[j] >= '0' && tmp->v[j] <= '9') || tmp->v[j] == ';')) j++;
      if (j < tmp->n && ((tmp->v[j] | 0x20) >= 'a' && (tmp->v[j] | 0x20) <= 'z')) { i = j; continue; }
    }
    if (is_control(c)) continue;
    tmp->v[o++] = c;
  }
  tmp->n = o;
  if (!vlm_tok_cps_reserve(t, tmp->n)) return 0;
  if (tmp->n) memcpy(t->v, tmp->v, tmp->n * sizeof *t->v);
  t->n = tmp->n;
  return nfc(t, tmp);
}

static int cps_equal(const vlm_tok_cps *a, const vlm_tok_cps *b) {
  return a->n == b->n && (a->n == 0 || !memcmp(a->v, b->v, a->n * sizeof *a->v));
}

/* Python's str.lower() context for final sigma. */
static int is_cased(int32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  utf8proc_category_t k = utf8proc_category(c);
  return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT ||
         utf8proc_isupper(c) || utf8proc_islower(c);
}
static int is_case_ignorable(int32_t c) {
  if (c == '\'' || c == '.' || c == ':' || c == '^' || c == '`' || c == 0xB7 || c == 0x2019 || c == 0xAD) return 1;
  if (c < 0x80) return 0;
  utf8proc_category_t k = utf8proc_category(c);
  return k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_ME || k == UTF8PROC_CATEGORY_CF ||
         k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_SK;
}
static int final_sigma(const int32_t *v, size_t n, size_t i) {
  size_t j = i;
  int before = 0;
  while (j > 0) {
    j--;
    if (is_case_ignorable(v[j])) continue;
    before = is_cased(v[j]);
    break;
  }
  if (!before) return 0;
  for (j = i + 1; j < n; j++) {
    if (is_case_ignorable(v[j])) continue;
    return !is_cased(v[j]);
  }
  return 1;
}

int vlm_tok_clean_cps(vlm_tok_cps *t) {
  vlm_tok_cps a = {0}, prev = {0};
  int ok = 0;
  /* ftfy.fix_text, per line ("\n"-terminated segment); a caption is usually one. */
  int ascii = 1, has_lt = 0, has_amp = 0;
  for (size_t i = 0; i < t->n; i++) {
    if (t->v[i] >= 0x80) ascii = 0;
    if (t->v[i] == '<') has_lt = 1;
    if (t->v[i] == '&') has_amp = 1;
  }
  int has_nl = 0;
  for (size_t i = 0; i < t->n; i++) if (t->v[i] == '\n') { has_nl = 1; break; }
  if (!has_nl) {
    for (int round = 0; round < 16; round++) {
      if (!vlm_tok_cps_reserve(&prev, t->n)) goto done;
      if (t->n) memcpy(prev.v, t->v, t->n * sizeof *t->v);
      prev.n = t->n;
      if (!has_lt && has_amp) unescape(t, 1);
      if (!ascii || round == 0) {
        if (!ftfy_round(t, &a)) goto done;
      }
      if (cps_equal(t, &prev)) break;
      ascii = 0;
    }
  } else {
    /* several lines: fix each segment on its own */
    vlm_tok_cps seg = {0}, all = {0};
    size_t s = 0;
    while (s < t->n) {
      size_t e = s;
      while (e < t->n && t->v[e] != '\n') e++;
      if (e < t->n) e++;
      if (!vlm_tok_cps_reserve(&seg, e - s + 1)) { free(seg.v); free(all.v); goto done; }
      memcpy(seg.v, t->v + s, (e - s) * sizeof *t->v);
      seg.n = e - s;
      int lt = 0;
      for (size_t i = 0; i < seg.n; i++) if (seg.v[i] == '<') lt = 1;
      for (int round = 0; round < 16; round++) {
        if (!vlm_tok_cps_reserve(&prev, seg.n)) { free(seg.v); free(all.v); goto done; }
        if (seg.n) memcpy(prev.v, seg.v, seg.n * sizeof *seg.v);
        prev.n = seg.n;
        if (!lt) unescape(&seg, 1);
        if (!ftfy_round(&seg, &a)) { free(seg.v); free(all.v); goto done; }
        if (cps_equal(&seg, &prev)) break;
      }
      if (!vlm_tok_cps_reserve(&all, all.n + seg.n)) { free(seg.v); free(all.v); goto done; }
      if (seg.n) memcpy(all.v + all.n, seg.v, seg.n * sizeof *seg.v);
      all.n += seg.n;
      s = e;
    }
    free(t->v);
    *t = all;
    free(seg.v);
  }
  /* html.unescape(html.unescape(text)) */
  unescape(t, 0);
  unescape(t, 0);
  /* strip, \s+ -> ' ', strip */
  size_t o = 0;
  for (size_t i = 0; i < t->n; i++) {
    int32_t c = t->v[i];
    if (vlm_tok_is_space(c)) {
      if (o > 0 && t->v[o - 1] != ' ') t->v[o++] = ' ';
      continue;
    }
    t->v[o++] = c;
  }
  if (o > 0 && t->v[o - 1] == ' ') o--;
  t->n = o;
  /* lower(): full case mapping for U+0130, final sigma, simple mapping otherwise */
  a.n = 0;
  for (size_t i = 0; i < t->n; i++) {
    int32_t c = t->v[i];
    if (c < 0x80) {
      if (c >= 'A' && c <= 'Z') c += 32;
    } else if (c == 0x130) {
      if (!push(&a, 'i')) goto done;
      c = 0x307;
    } else if (c == 0x3A3) {
      c = final_sigma(t->v, t->n, i) ? 0x3C2 : 0x3C3;
    } else {
      c = utf8proc_tolower(c);
    }
    if (!push(&a, c)) goto done;
  }
  if (!vlm_tok_cps_reserve(t, a.n)) goto done;
  if (a.n) memcpy(t->v, a.v, a.n * sizeof *a.v);
  t->n = a.n;
  ok = 1;
done:
  free(a.v);
  free(prev.v);
  return ok;
}

char *vlm_tokenizer_clean(const char *text, size_t len) {
  vlm_tok_cps t = {0};
  char *out = NULL;
  if (!vlm_tok_utf8_decode(&t, text, len) || !vlm_tok_clean_cps(&t)) goto done;
  out = malloc(t.n * 4 + 1);
  if (!out) goto done;
  size_t o = 0;
  for (size_t i = 0; i < t.n; i++) o += (size_t)vlm_tok_utf8_put(out + o, t.v[i]);
  out[o] = 0;
done:
  free(t.v);
  return out;
}
