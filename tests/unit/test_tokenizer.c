/* The CLIP BPE tokenizer: open_clip's ids on fixtures/tokenizer with the OpenAI
 * vocabulary and with a Hugging Face vocab.json + merges.txt written here from
 * the same file; cleaning, truncation, decode, bad input, dropout, training. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "gradcheck.h"
#include "text/text.h"

#define CTX 77
#define MAXCAP 256

typedef struct {
  int n;
  char *text[MAXCAP];
  size_t len[MAXCAP];
  int32_t ids[MAXCAP][CTX];
} fixture;

static char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long sz = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)sz + 1);
  if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) { free(b); b = NULL; }
  fclose(f);
  if (b) { b[sz] = 0; if (n) *n = (size_t)sz; }
  return b;
}

/* captions.txt lines and ids.jsonl "ids" arrays. */
static int load_fixture(fixture *fx, const char *dir) {
  char p[4096];
  snprintf(p, sizeof p, "%s/fixtures/tokenizer/captions.txt", dir);
  size_t n;
  char *caps = slurp(p, &n);
  snprintf(p, sizeof p, "%s/fixtures/tokenizer/ids.jsonl", dir);
  char *ids = slurp(p, NULL);
  if (!caps || !ids) { free(caps); free(ids); return 0; }
  fx->n = 0;
  char *s = caps;
  while (s < caps + n && fx->n < MAXCAP) {
    char *e = memchr(s, '\n', (size_t)(caps + n - s));
    if (!e) e = caps + n;
    fx->len[fx->n] = (size_t)(e - s);
    fx->text[fx->n] = strndup(s, (size_t)(e - s));
    fx->n++;
    s = e + 1;
  }
  int k = 0;
  for (char *line = strtok(ids, "\n"); line && k < fx->n; line = strtok(NULL, "\n"), k++) {
    cJSON *j = cJSON_Parse(line);
    cJSON *a = cJSON_GetObjectItem(j, "ids");
    CHECK(cJSON_GetArraySize(a) == CTX, "fixture line %d has %d ids", k, cJSON_GetArraySize(a));
    for (int i = 0; i < CTX; i++) fx->ids[k][i] = (int32_t)cJSON_GetArrayItem(a, i)->valuedouble;
    cJSON_Delete(j);
  }
  CHECK(k == fx->n && fx->n >= 20, "fixture: %d captions, %d id lines", fx->n, k);
  free(caps);
  free(ids);
  return 1;
}

/* Every caption equal to open_clip's ids; returns the number of mismatching lines. */
static int check_fixture(vlm_tokenizer *t, const fixture *fx, const char *what) {
  int bad = 0;
  for (int k = 0; k < fx->n; k++) {
    int32_t out[CTX];
    int n = vlm_tokenizer_encode_ctx(t, fx->text[k], fx->len[k], CTX, 0, out);
    int eq = n >= 2 && !memcmp(out, fx->ids[k], sizeof out);
    if (!eq) {
      bad++;
      fprintf(stderr, "%s: caption %d differs: '%s'\n", what, k, fx->text[k]);
    }
  }
  CHECK(bad == 0, "%s: %d of %d captions differ from open_clip", what, bad, fx->n);
  return bad;
}

/* ---- an independent writer of Hugging Face files from OpenAI's merges ---- */
static int b2u(int b) {
  static int table[256], init;
  if (!init) {
    int n = 0;
    for (int x = 0; x < 256; x++) {
      int pr = (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255);
      table[x] = pr ? x : 256 + n++;
    }
    init = 1;
  }
  return table[b];
}
static void put_utf8(FILE *f, int c) {
  if (c < 0x80) fputc(c, f);
  else { fputc(0xC0 | (c >> 6), f); fputc(0x80 | (c & 0x3F), f); }
}
static void put_json_str(FILE *f, const char *s, size_t n) {
  fputc('"', f);
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '"' || s[i] == '\\') fputc('\\', f);
    fputc(s[i], f);
  }
  fputc('"', f);
}

static int write_hf(const char *gz, const char *dir) {
  gzFile g = gzopen(gz, "rb");
  if (!g) return 0;
  size_t cap = 1 << 22, n = 0;
  char *buf = malloc(cap);
  int r;
  while ((r = gzread(g, buf + n, (unsigned)(cap - n))) > 0) {
    n += (size_t)r;
    if (n == cap) buf = realloc(buf, cap *= 2);
  }
  gzclose(g);
  char p[4096];
  snprintf(p, sizeof p, "%s/vocab.json", dir);
  FILE *vj = fopen(p, "wb");
  snprintf(p, sizeof p, "%s/merges.txt", dir);
  FILE *mt = fopen(p, "wb");
  if (!vj || !mt) return 0;
  /* written in a shuffled-looking order (specials first) to prove ids come from the file */
  fprintf(vj, "{\"<|startoftext|>\": 49406, \"<|endoftext|>\": 49407");
  int order[256], k = 0;
  for (int b = 0; b < 256; b++) if (b2u(b) == b) order[k++] = b;
  for (int b = 0; b < 256; b++) if (b2u(b) != b) order[k++] = b;
  for (int w = 0; w < 2; w++)
    for (int i = 0; i < 256; i++) {
      char s[8];
      int c = b2u(order[i]), l = 0;
      if (c < 0x80) s[l++] = (char)c;
      else { s[l++] = (char)(0xC0 | (c >> 6)); s[l++] = (char)(0x80 | (c & 0x3F)); }
      if (w) { memcpy(s + l, "</w>", 4); l += 4; }
      fputs(", ", vj);
      put_json_str(vj, s, (size_t)l);
      fprintf(vj, ": %d", w * 256 + i);
    }
  (void)put_utf8;
  fputs("#version: 0.2\n", mt);
  char *s = memchr(buf, '\n', n) + 1;
  for (int m = 0; m < 49152 - 256 - 2; m++) {
    char *e = memchr(s, '\n', (size_t)(buf + n - s));
    char *sp = memchr(s, ' ', (size_t)(e - s));
    fwrite(s, 1, (size_t)(e - s), mt);
    fputc('\n', mt);
    fputs(", ", vj);
    char tmp[512];
    size_t la = (size_t)(sp - s), lb = (size_t)(e - sp - 1);
    memcpy(tmp, s, la);
    memcpy(tmp + la, sp + 1, lb);
    put_json_str(vj, tmp, la + lb);
    fprintf(vj, ": %d", 512 + m);
    s = e + 1;
  }
  fputs("}\n", vj);
  fclose(vj);
  fclose(mt);
  free(buf);
  return 1;
}

/* dir/tokenizer.json made from dir/vocab.json + dir/merges.txt as a fast tokenizer writes it:
 * merges as "a b" strings (arrays = 0) or ["a", "b"] pairs (arrays = 1); with specials_added the
 * two special tokens leave the vocab for added_tokens. extra: text put into "model" (errors). */
static int write_tokenizer_json(const char *dir, int arrays, int specials_added, const char *extra) {
  char p[4096];
  size_t nv, nm;
  snprintf(p, sizeof p, "%s/vocab.json", dir);
  char *vocab = slurp(p, &nv);
  snprintf(p, sizeof p, "%s/merges.txt", dir);
  char *merges = slurp(p, &nm);
  snprintf(p, sizeof p, "%s/tokenizer.json", dir);
  FILE *f = fopen(p, "wb");
  if (!vocab || !merges || !f) { free(vocab); free(merges); if (f) fclose(f); return 0; }
  const char *v = vocab;
  if (specials_added) {   /* write_hf puts the two specials first: skip them */
    v = strstr(vocab, "\"<|endoftext|>\": 49407, ");
    v = v ? v + strlen("\"<|endoftext|>\": 49407, ") : vocab;
  }
  fprintf(f, "{\"version\": \"1.0\", \"added_tokens\": [{\"id\": 49406, \"content\": \"<|startoftext|>\", "
             "\"special\": true}, {\"id\": 49407, \"content\": \"<|endoftext|>\", \"special\": true}], "
             "\"model\": {%s\"type\": \"BPE\", \"end_of_word_suffix\": \"</w>\", \"vocab\": %s%.*s, \"merges\": [",
          extra ? extra : "", specials_added ? "{" : "", (int)(nv - (size_t)(v - vocab)), v);
  int first = 1;
  for (char *line = merges, *end = merges + nm; line < end;) {
    char *nl = memchr(line, '\n', (size_t)(end - line));
    size_t l = nl ? (size_t)(nl - line) : (size_t)(end - line);
    if (l && !(line == merges && !strncmp(line, "#version", 8))) {   /* the header line only: "# #" is a merge */
      char *sp = memchr(line, ' ', l);
      fputs(first ? "" : ", ", f);
      first = 0;
      if (arrays && sp) {
        fputc('[', f);
        put_json_str(f, line, (size_t)(sp - line));
        fputs(", ", f);
        put_json_str(f, sp + 1, l - (size_t)(sp - line) - 1);
        fputc(']', f);
      } else {
        put_json_str(f, line, l);
      }
    }
    line = nl ? nl + 1 : end;
  }
  fputs("]}}\n", f);
  fclose(f);
  free(vocab);
  free(merges);
  return 1;
}

static void rm_dir(const char *dir) {
  char p[4096];
  const char *names[] = {"vocab.json", "merges.txt", "tokenizer.json"};
  for (int i = 0; i < 3; i++) { snprintf(p, sizeof p, "%s/%s", dir, names[i]); unlink(p); }
  rmdir(dir);
}

static int32_t *enc(vlm_tokenizer *t, const char *s, size_t *n) {
  int32_t *ids = NULL;
  vlm_status st = vlm_tokenizer_encode(t, s, strlen(s), &ids, n);
  CHECK(st == VLM_OK, "encode '%s': %s", s, vlm_last_error());
  return ids;
}

static void test_clean(void) {
  struct { const char *in, *want; } cases[] = {
    {"  A  Photo\tof\n a CAT  ", "a photo of a cat"},
    {"\xe2\x80\x9c" "Curly" "\xe2\x80\x9d \xe2\x80\x98q\xe2\x80\x99", "\"curly\" 'q'"},
    {"\xef\xac\x81ne \xef\xbc\xa1\xef\xbc\xa2\xef\xbc\x91", "fine ab1"},                /* ﬁ, full-width ＡＢ１ */
    {"cafe\xcc\x81", "caf\xc3\xa9"},                                                      /* NFC */
    {"&amp;lt;b&amp;gt; &#x41;&#66; &eacute; &notit; &amp", "<b> ab \xc3\xa9 \xc2\xacit; &"},
    {"<b>x</b> &amp;amp;", "<b>x</b> &"},                                                 /* '<': ftfy leaves it, 2 html passes */
    {"\xce\x9f\xce\x94\xce\x9f\xce\xa3 \xce\xa3", "\xce\xbf\xce\xb4\xce\xbf\xcf\x82 \xcf\x83"},   /* final sigma */
    {"\xc4\xb0stanbul", "i\xcc\x87stanbul"},                                               /* İ -> i + U+0307 */
    {"a\x01" "b\xc2\x96" "c", "ab\xe2\x80\x93" "c"},                                       /* control removed, C1 as cp1252 */
    {"&EACUTE; &NBSP;x &SZLIG; &AMP; &LT;b", "\xc3\xa9 x ss & <b"},                  /* ftfy's upper-case entities */
    {"\xef\xac\x85 \xf3\xa0\x81\x81", "\xc5\xbft \xf3\xa0\x81\x81"},                          /* ftfy: U+FB05 -> long s + t; tags kept */
    {"", ""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *got = vlm_tokenizer_clean(cases[i].in, strlen(cases[i].in));
    CHECK(got && !strcmp(got, cases[i].want), "clean case %zu: got '%s' want '%s'", i, got ? got : "(null)",
          cases[i].want);
    free(got);
  }
  /* invalid UTF-8: maximal subparts -> U+FFFD, like Python */
  const char bad[] = "a\xff" "b\xe2\x82" "c\xf0\x9f\x99" "\xed\xa0\x80" "d";
  char *got = vlm_tokenizer_clean(bad, sizeof bad - 1);
  const char want[] = "a\xef\xbf\xbd" "b\xef\xbf\xbd" "c\xef\xbf\xbd" "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" "d";
  CHECK(got && !strcmp(got, want), "invalid UTF-8 replacement: got '%s'", got ? got : "(null)");
  free(got);
  /* a NUL inside an entity name (found by the fuzzer) */
  const char nul[] = "&amp\0x &lt\0;";
  got = vlm_tokenizer_clean(nul, sizeof nul - 1);
  CHECK(got && !strcmp(got, "&x <"), "NUL in entity name: '%s'", got ? got : "(null)");
  free(got);
}

static void test_behaviour(vlm_tokenizer *t) {
  CHECK(vlm_tokenizer_vocab_size(t) == 49408, "vocab size %d", vlm_tokenizer_vocab_size(t));
  CHECK(vlm_tokenizer_sot(t) == 49406 && vlm_tokenizer_eot(t) == 49407, "specials %d %d", vlm_tokenizer_sot(t),
        vlm_tokenizer_eot(t));
  /* truncation: last id forced to eot, length before truncation returned */
  char longtext[4000] = "";
  for (int i = 0; i < 200; i++) strcat(longtext, "cat ");
  int32_t out[CTX];
  int n = vlm_tokenizer_encode_ctx(t, longtext, strlen(longtext), CTX, 0, out);
  CHECK(n == 202, "long caption: %d tokens before truncation", n);
  CHECK(out[0] == 49406 && out[CTX - 1] == 49407 && out[CTX - 2] == 2368, "truncation layout");
  int32_t small[4];
  vlm_tokenizer_encode_ctx(t, "a photo of a cat", 16, 4, 0, small);
  CHECK(small[0] == 49406 && small[1] == 320 && small[2] == 1125 && small[3] == 49407, "ctx 4");
  int32_t pad[10];
  vlm_tokenizer_encode_ctx(t, "a", 1, 10, vlm_tokenizer_eot(t), pad);
  CHECK(pad[2] == 49407 && pad[9] == 49407, "HF padding with eot");
  /* decode as open_clip */
  size_t k;
  int32_t *ids = enc(t, "A photo of a CAT, isn't it?", &k);
  char *d = vlm_tokenizer_decode(t, ids, k);
  CHECK(d && !strcmp(d, "a photo of a cat , isn 't it ? "), "decode: '%s'", d ? d : "(null)");
  free(d);
  free(ids);
  ids = enc(t, "\xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x99\x82 caf\xc3\xa9", &k);
  d = vlm_tokenizer_decode(t, ids, k);
  CHECK(d && !strcmp(d, "\xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x99\x82 caf\xc3\xa9 "), "decode unicode: '%s'", d ? d : "(null)");
  free(d);
  free(ids);
  /* the same word gives the same ids cached or not, special tokens inside text */
  ids = enc(t, "dog dog <end_of_text> dog", &k);
  CHECK(k == 4 && ids[0] == ids[1] && ids[1] == ids[3] && ids[2] == 49407, "cache / special in text");
  free(ids);
  /* OpenAI's BPE file read as open_clip's SimpleTokenizer: <|endoftext|> is text, spelled out */
  ids = enc(t, "dog <|endoftext|>", &k);
  CHECK(k > 2 && ids[1] != 49407 && ids[k - 1] != 49407, "<|endoftext|> in text is not the special with the BPE file");
  free(ids);
  /* invalid UTF-8 never fails and matches the U+FFFD text */
  size_t k2;
  ids = enc(t, "x\xff\xfey", &k);
  int32_t *ids2 = enc(t, "x\xef\xbf\xbd\xef\xbf\xbdy", &k2);
  CHECK(k == k2 && !memcmp(ids, ids2, k * sizeof *ids), "invalid bytes as U+FFFD");
  free(ids);
  free(ids2);
  /* U+0345 matches no branch of open_clip's case-insensitive pattern */
  ids = enc(t, "x\xcd\x85y \xcd\x85 !\xcd\x85!", &k);
  ids2 = enc(t, "x y ! !", &k2);
  CHECK(k == k2 && !memcmp(ids, ids2, k * sizeof *ids), "U+0345 skipped");
  free(ids);
  free(ids2);
  /* lookups */
  CHECK(vlm_tokenizer_id(t, "cat</w>") == 2368, "id of cat</w>");
  CHECK(!strcmp(vlm_tokenizer_token(t, 320), "a</w>"), "token 320");
  CHECK(vlm_tokenizer_token(t, 49408) == NULL && vlm_tokenizer_token(t, -1) == NULL, "token out of range");
}

static void test_dropout(vlm_tokenizer *t) {
  const char *s = "a photograph of several enormous hippopotamuses swimming";
  size_t n0, n1, na, nb;
  int32_t *base = enc(t, s, &n0);
  vlm_tokenizer_set_dropout(t, 1.0f, 1);
  int32_t *all = enc(t, s, &n1);
  CHECK(n1 == strlen(s) - 6, "p=1: one id per byte (%zu)", n1);   /* 6 spaces */
  vlm_tokenizer_set_dropout(t, 0.3f, 42);
  int32_t *a = enc(t, s, &na);
  vlm_tokenizer_set_dropout(t, 0.3f, 42);
  int32_t *b = enc(t, s, &nb);
  CHECK(na == nb && !memcmp(a, b, na * sizeof *a), "dropout is seeded");
  CHECK(na >= n0 && na <= n1, "dropout lengths %zu in [%zu, %zu]", na, n0, n1);
  char *d0 = vlm_tokenizer_decode(t, base, n0), *d1 = vlm_tokenizer_decode(t, a, na);
  CHECK(d0 && d1 && !strcmp(d0, d1), "dropout decodes to the same text");
  int differs = 0;
  for (int seed = 0; seed < 8 && !differs; seed++) {
    vlm_tokenizer_set_dropout(t, 0.3f, (uint64_t)seed);
    size_t nc;
    int32_t *c = enc(t, s, &nc);
    differs = nc != n0 || memcmp(c, base, n0 * sizeof *c);
    free(c);
  }
  CHECK(differs, "p=0.3 changes the segmentation");
  vlm_tokenizer_set_dropout(t, 0.0f, 0);
  size_t nz;
  int32_t *z = enc(t, s, &nz);
  CHECK(nz == n0 && !memcmp(z, base, n0 * sizeof *z), "p=0 is plain BPE");
  free(d0); free(d1); free(base); free(all); free(a); free(b); free(z);
}

static void test_errors(const char *shared) {
  vlm_tokenizer *t = (vlm_tokenizer *)1;
  vlm_status s = vlm_tokenizer_load(&t, "/nonexistent/bpe.txt.gz");
  CHECK(s == VLM_ERR_IO && t == NULL && strstr(vlm_last_error(), "/nonexistent/bpe.txt.gz"), "missing: %s",
        vlm_last_error());
  char dir[] = "/tmp/vlm_tok_err_XXXXXX";
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  char p[4096], gz[4096];
  /* truncated gzip */
  snprintf(gz, sizeof gz, "%s/data/bpe_simple_vocab_16e6.txt.gz", shared);
  size_t n;
  char *data = slurp(gz, &n);
  snprintf(p, sizeof p, "%s/cut.gz", dir);
  FILE *f = fopen(p, "wb");
  fwrite(data, 1, n / 3, f);
  fclose(f);
  s = vlm_tokenizer_load(&t, p);
  CHECK(s == VLM_ERR_FORMAT && strstr(vlm_last_error(), "cut.gz"), "truncated gz: %s", vlm_last_error());
  unlink(p);
  free(data);
  /* HF: bad JSON, unknown merge symbol, missing specials */
  snprintf(p, sizeof p, "%s/vocab.json", dir);
  f = fopen(p, "wb"); fputs("{\"a\": 0, ", f); fclose(f);
  snprintf(p, sizeof p, "%s/merges.txt", dir);
  f = fopen(p, "wb"); fputs("#version: 0.2\n", f); fclose(f);
  s = vlm_tokenizer_load(&t, dir);
  CHECK(s == VLM_ERR_FORMAT && strstr(vlm_last_error(), "vocab.json"), "bad json: %s", vlm_last_error());
  snprintf(p, sizeof p, "%s/vocab.json", dir);
  f = fopen(p, "wb"); fputs("{\"a\": 0, \"b\": 1, \"ab\": 2}", f); fclose(f);
  snprintf(p, sizeof p, "%s/merges.txt", dir);
  f = fopen(p, "wb"); fputs("#version: 0.2\na b\nx y\n", f); fclose(f);
  s = vlm_tokenizer_load(&t, dir);
  CHECK(s == VLM_ERR_FORMAT && strstr(vlm_last_error(), "merges.txt:3"), "unknown merge: %s", vlm_last_error());
  f = fopen(p, "wb"); fputs("#version: 0.2\na b\n", f); fclose(f);
  s = vlm_tokenizer_load(&t, dir);
  CHECK(s == VLM_ERR_FORMAT && strstr(vlm_last_error(), "vocab.json"), "no byte symbols: %s", vlm_last_error());
  rm_dir(dir);
}

static void test_train(const fixture *fx) {
  const char *texts[3 * MAXCAP];
  size_t lens[3 * MAXCAP];
  int n = 0;
  for (int r = 0; r < 3; r++)
    for (int k = 0; k < fx->n; k++) { texts[n] = fx->text[k]; lens[n] = fx->len[k]; n++; }
  vlm_tokenizer *a = NULL, *b = NULL;
  vlm_status s = vlm_bpe_train(&a, texts, lens, (size_t)n, 700);
  CHECK(s == VLM_OK && a, "bpe_train: %s", s ? vlm_last_error() : "");
  if (!a) return;
  CHECK(vlm_bpe_train(&b, texts, lens, (size_t)n, 700) == VLM_OK, "bpe_train again");
  CHECK(vlm_tokenizer_vocab_size(a) <= 700 && vlm_tokenizer_vocab_size(a) > 600, "trained vocab %d",
        vlm_tokenizer_vocab_size(a));
  int same = vlm_tokenizer_vocab_size(a) == vlm_tokenizer_vocab_size(b);
  for (int i = 0; same && i < vlm_tokenizer_vocab_size(a); i++)
    same = !strcmp(vlm_tokenizer_token(a, i), vlm_tokenizer_token(b, i));
  CHECK(same, "training is deterministic");
  /* round trip through the exported files, and fewer tokens than bytes */
  char dir[] = "/tmp/vlm_tok_train_XXXXXX";
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  CHECK(vlm_tokenizer_save_hf(a, dir) == VLM_OK, "save_hf: %s", vlm_last_error());
  vlm_tokenizer *c = NULL;
  CHECK(vlm_tokenizer_load(&c, dir) == VLM_OK, "load trained: %s", vlm_last_error());
  if (c) {
    size_t total_a = 0, total_bytes = 0;
    int eq = 1;
    for (int k = 0; k < fx->n; k++) {
      int32_t oa[CTX], oc[CTX];
      int na = vlm_tokenizer_encode_ctx(a, fx->text[k], fx->len[k], CTX, 0, oa);
      vlm_tokenizer_encode_ctx(c, fx->text[k], fx->len[k], CTX, 0, oc);
      eq &= !memcmp(oa, oc, sizeof oa);
      total_a += (size_t)na;
      total_bytes += fx->len[k] + 2;
      size_t nid;
      int32_t *ids = enc(a, fx->text[k], &nid);
      char *d = vlm_tokenizer_decode(a, ids, nid), *cl = vlm_tokenizer_clean(fx->text[k], fx->len[k]);
      /* decode gives the pieces separated by spaces where words ended: compare without spaces */
      char *x = d, *y = cl;
      int ok = 1;
      while (ok && (*x || *y)) {
        if (*x == ' ') { x++; continue; }
        if (*y == ' ') { y++; continue; }
        ok = *x++ == *y++;
      }
      CHECK(ok, "trained round trip caption %d: '%s' vs '%s'", k, d, cl);
      free(d); free(cl); free(ids);
    }
    CHECK(eq, "exported vocabulary encodes like the trained one");
    CHECK(total_a * 2 < total_bytes, "trained vocabulary compresses (%zu tokens for %zu bytes)", total_a, total_bytes);
  }
  vlm_tokenizer_free(c);
  vlm_tokenizer_free(a);
  vlm_tokenizer_free(b);
  rm_dir(dir);
  vlm_tokenizer *d = NULL;
  CHECK(vlm_bpe_train(&d, texts, lens, (size_t)n, 100) == VLM_ERR_ARG, "vocab below 514 rejected");
}

int main(int argc, char **argv) {
  const char *shared = vt_shared_dir(argc, argv);
  test_clean();
  if (!shared) vt_skip("no ../shared dir: fixtures needed");
  static fixture fx;
  if (!load_fixture(&fx, shared)) vt_skip("fixtures/tokenizer not found");
  char gz[4096];
  snprintf(gz, sizeof gz, "%s/data/bpe_simple_vocab_16e6.txt.gz", shared);
  vlm_tokenizer *t = NULL;
  vlm_status s = vlm_tokenizer_load(&t, gz);
  CHECK(s == VLM_OK, "load OpenAI vocab: %s", s ? vlm_last_error() : "");
  if (!t) return vt_finish();
  check_fixture(t, &fx, "openai");
  check_fixture(t, &fx, "openai (cached)");
  test_behaviour(t);
  test_dropout(t);

  /* Hugging Face files written here from the OpenAI file */
  char dir[] = "/tmp/vlm_tok_hf_XXXXXX";
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  CHECK(write_hf(gz, dir), "write HF files");
  vlm_tokenizer *h = NULL;
  char vj[4096];
  snprintf(vj, sizeof vj, "%s/vocab.json", dir);
  s = vlm_tokenizer_load(&h, vj);
  CHECK(s == VLM_OK, "load HF vocab: %s", s ? vlm_last_error() : "");
  if (h) {
    CHECK(vlm_tokenizer_vocab_size(h) == 49408 && vlm_tokenizer_n_merges(h) == 48894, "HF sizes %d %d",
          vlm_tokenizer_vocab_size(h), vlm_tokenizer_n_merges(h));
    check_fixture(h, &fx, "hf");
    vlm_tokenizer_free(h);
  }
  /* the same vocabulary as a fast tokenizer's tokenizer.json: merges as strings, as pairs, the
   * specials only among added_tokens; the folder alone (vocab.json gone) finds it */
  for (int v = 0; v < 3; v++) {
    CHECK(write_tokenizer_json(dir, v == 1, v == 2, NULL), "write tokenizer.json %d", v);
    char tj[4200];
    snprintf(tj, sizeof tj, "%s/tokenizer.json", dir);
    h = NULL;
    s = vlm_tokenizer_load(&h, tj);
    CHECK(s == VLM_OK, "load tokenizer.json (%d): %s", v, s ? vlm_last_error() : "");
    if (!h) continue;
    CHECK(vlm_tokenizer_vocab_size(h) == 49408 && vlm_tokenizer_n_merges(h) == 48894 && vlm_tokenizer_sot(h) == 49406 &&
              vlm_tokenizer_eot(h) == 49407, "tokenizer.json (%d) sizes %d %d", v, vlm_tokenizer_vocab_size(h),
          vlm_tokenizer_n_merges(h));
    check_fixture(h, &fx, v == 0 ? "tokenizer.json" : v == 1 ? "tokenizer.json, merge pairs" : "tokenizer.json, added");
    vlm_tokenizer_free(h);
  }
  /* not CLIP's BPE: refused, named */
  static const char *const bad[2][2] = {{"\"end_of_word_suffix\": null, ", "end_of_word_suffix"},
                                        {"\"type\": \"WordPiece\", ", "WordPiece"}};
  for (int b = 0; b < 2; b++) {
    /* (a duplicate key: cJSON finds the first one, the one written here) */
    CHECK(write_tokenizer_json(dir, 0, 0, bad[b][0]), "write a bad tokenizer.json");
    char tj[4200];
    snprintf(tj, sizeof tj, "%s/tokenizer.json", dir);
    h = NULL;
    s = vlm_tokenizer_load(&h, tj);
    CHECK(s != VLM_OK && strstr(vlm_last_error(), "tokenizer.json") && strstr(vlm_last_error(), bad[b][1]),
          "tokenizer.json with %s: %s", bad[b][1], s ? vlm_last_error() : "loaded");
    vlm_tokenizer_free(h);
  }
  CHECK(write_tokenizer_json(dir, 0, 0, NULL), "write tokenizer.json");
  snprintf(vj, sizeof vj, "%s/vocab.json", dir);
  remove(vj);
  h = NULL;
  s = vlm_tokenizer_load(&h, dir);
  CHECK(s == VLM_OK, "a folder with tokenizer.json alone: %s", s ? vlm_last_error() : "");
  if (h) { check_fixture(h, &fx, "folder with tokenizer.json"); vlm_tokenizer_free(h); }
  rm_dir(dir);
  /* our own exporter: save, reload as a folder, same ids */
  char dir2[] = "/tmp/vlm_tok_save_XXXXXX";
  CHECK(mkdtemp(dir2) != NULL, "mkdtemp");
  CHECK(vlm_tokenizer_save_hf(t, dir2) == VLM_OK, "save_hf: %s", vlm_last_error());
  h = NULL;
  s = vlm_tokenizer_load(&h, dir2);
  CHECK(s == VLM_OK, "load saved HF: %s", s ? vlm_last_error() : "");
  if (h) { check_fixture(h, &fx, "saved hf"); vlm_tokenizer_free(h); }
  rm_dir(dir2);
  vlm_tokenizer_free(t);

  test_errors(shared);
  test_train(&fx);
  for (int k = 0; k < fx.n; k++) free(fx.text[k]);
  return vt_finish();
}
