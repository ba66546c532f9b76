/* safetensors reader/writer and atomic file writing.
 *
 *   - round trip of every kind of tensor (dtypes, 0-d, zero-size) + metadata;
 *   - vlm_st_read_f32 conversions and its errors;
 *   - the real fixtures under ../shared/fixtures;
 *   - crafted malformed files: each must fail with a message that names the
 *     file and the problem;
 *   - random mutations of a valid file: open succeeds with every entry in
 *     bounds, or fails cleanly (run under ASan/UBSan too);
 *   - atomic writes: replacement, failures leave the old file and no temp file;
 *     the temp files a signal removes (vlm_atomic_remove_pending, the handlers). */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gradcheck.h"

static char g_dir[4096];

static const char *tpath(char *buf, size_t n, const char *name) {
  snprintf(buf, n, "%s/%s", g_dir, name);
  return buf;
}

/* A file: u64 LE header length, header (exactly as given), ndata data bytes (0..255 repeating). */
static void make_st(const char *path, const char *header, size_t hlen, size_t ndata) {
  size_t n = 8 + hlen + ndata;
  uint8_t *b = malloc(n);
  for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
  memcpy(b + 8, header, hlen);
  for (size_t i = 0; i < ndata; i++) b[8 + hlen + i] = (uint8_t)i;
  vt_write_file(path, b, n);
  free(b);
}

static int count_temp_files(void) {
  DIR *d = opendir(g_dir);
  if (!d) return -1;
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)))
    if (strstr(de->d_name, ".tmp.")) n++;
  closedir(d);
  return n;
}

/* Open must fail; the message must name the file and contain phrase. */
static void expect_open_fail(const char *path, const char *phrase, const char *what) {
  vlm_safetensors st;
  vlm_error_clear();
  vlm_status s = vlm_st_open(&st, path);
  const char *msg = vlm_last_error();
  CHECK(s != VLM_OK, "%s: open succeeded", what);
  CHECK(strstr(msg, path) != NULL, "%s: message does not name the file: %s", what, msg);
  CHECK(strstr(msg, phrase) != NULL, "%s: message lacks \"%s\": %s", what, phrase, msg);
  CHECK(st.map == NULL && st.entries == NULL && st.path == NULL, "%s: state not cleared", what);
  if (s == VLM_OK) vlm_st_close(&st);
}

static void expect_header_fail(const char *header, size_t ndata, const char *phrase) {
  char p[4200];
  static int k = 0;
  char name[64];
  snprintf(name, sizeof name, "bad%03d.safetensors", k++);
  tpath(p, sizeof p, name);
  make_st(p, header, strlen(header), ndata);
  expect_open_fail(p, phrase, header[0] && strlen(header) < 160 ? header : name);
}

static void expect_header_ok(const char *header, size_t ndata, int n_entries, const char *what) {
  char p[4200];
  tpath(p, sizeof p, "good.safetensors");
  make_st(p, header, strlen(header), ndata);
  vlm_safetensors st;
  vlm_status s = vlm_st_open(&st, p);
  CHECK(s == VLM_OK, "%s: %s", what, vlm_last_error());
  if (s == VLM_OK) {
    CHECK(st.n_entries == n_entries, "%s: %d entries", what, st.n_entries);
    vlm_st_close(&st);
  }
}

/* ------------------------------------------------------------------ round trip */

static void test_round_trip(void) {
  char p[4200];
  tpath(p, sizeof p, "rt.safetensors");
  float f32[6] = {1.5f, -2.25f, 3.0f, 0.0f, 1e-3f, -7.0f};
  uint16_t bf16[5], f16[5];
  float src5[5] = {0.5f, -1.0f, 3.140625f, 100.0f, -0.0078125f};
  for (int i = 0; i < 5; i++) { bf16[i] = vlm_f32_to_bf16(src5[i]); f16[i] = vlm_f32_to_f16(src5[i]); }
  double f64[3] = {1.0, -2.5, 1e10};
  int64_t i64[4] = {0, -1, INT64_MAX, 123456789012345LL};
  int32_t i32[3] = {7, -8, 2147483647};
  uint8_t u8[7] = {0, 1, 2, 3, 250, 251, 255};
  float scalar = 2.6592600f;
  float dummy = 0;

  vlm_st_writer *w = vlm_st_writer_new();
  CHECK(w != NULL, "writer");
  int64_t s23[2] = {2, 3}, s5[1] = {5}, s3[1] = {3}, s22[2] = {2, 2}, s7[1] = {7}, s30[2] = {3, 0};
  CHECK(vlm_st_writer_add(w, "f32.matrix", VLM_F32, 2, s23, f32) == VLM_OK, "add f32: %s", vlm_last_error());
  CHECK(vlm_st_writer_add(w, "bf16", VLM_BF16, 1, s5, bf16) == VLM_OK, "add bf16");
  CHECK(vlm_st_writer_add(w, "f16", VLM_F16, 1, s5, f16) == VLM_OK, "add f16");
  CHECK(vlm_st_writer_add(w, "f64", VLM_F64, 1, s3, f64) == VLM_OK, "add f64");
  CHECK(vlm_st_writer_add(w, "i64", VLM_I64, 2, s22, i64) == VLM_OK, "add i64");
  CHECK(vlm_st_writer_add(w, "i32", VLM_I32, 1, s3, i32) == VLM_OK, "add i32");
  CHECK(vlm_st_writer_add(w, "u8 odd size", VLM_U8, 1, s7, u8) == VLM_OK, "add u8");
  vlm_tensor ts = vlm_tensor_make(&scalar, VLM_F32, VLM_CPU, 0, NULL);
  CHECK(vlm_st_writer_add_tensor(w, "logit_scale", &ts) == VLM_OK, "add 0-d: %s", vlm_last_error());
  CHECK(vlm_st_writer_add(w, "empty", VLM_F32, 2, s30, NULL) == VLM_OK, "add zero-size: %s", vlm_last_error());
  CHECK(vlm_st_writer_add(w, "quote\"back\\slash\ttab", VLM_F32, 0, NULL, &dummy) == VLM_OK, "add odd name");
  CHECK(vlm_st_writer_meta(w, "format", "pt") == VLM_OK, "meta");
  CHECK(vlm_st_writer_meta(w, "note", "first") == VLM_OK, "meta");
  CHECK(vlm_st_writer_meta(w, "note", "utf-8 \xc3\xa9 \"quoted\"\n") == VLM_OK, "meta replace");
  vlm_status s = vlm_st_writer_save(w, p);
  CHECK(s == VLM_OK, "save: %s", vlm_last_error());
  vlm_st_writer_free(w);

  /* The raw layout: header length multiple of 8, metadata first. */
  size_t n = 0;
  uint8_t *raw = vt_read_file(p, &n);
  CHECK(raw && n > 8, "read back raw");
  if (raw) {
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | raw[i];
    CHECK(hl % 8 == 0 && (8 + hl) % 8 == 0, "header length %llu padded to 8", (unsigned long long)hl);
    CHECK(!memcmp(raw + 8, "{\"__metadata__\":", 16), "metadata first");
    CHECK(raw[8 + hl - 1] == ' ' || raw[8 + hl - 1] == '}', "padding is spaces");
    free(raw);
  }

  vlm_safetensors st;
  s = vlm_st_open(&st, p);
  CHECK(s == VLM_OK, "open: %s", vlm_last_error());
  if (s != VLM_OK) return;
  CHECK(st.n_entries == 10, "10 entries, got %d", st.n_entries);
  for (int i = 1; i < st.n_entries; i++)
    CHECK(strcmp(st.entries[i - 1].name, st.entries[i].name) < 0, "entries sorted");
  for (int i = 0; i < st.n_entries; i++) {
    const vlm_st_entry *e = &st.entries[i];
    CHECK(e->data == st.data + e->begin, "%s: view into the mapping (no copy)", e->name);
    CHECK((uintptr_t)e->data % vlm_dtype_size(e->dtype) == 0, "%s aligned", e->name);
  }
  CHECK(st.n_meta == 2 && !strcmp(vlm_st_meta(&st, "format"), "pt"), "meta format");
  CHECK(!strcmp(vlm_st_meta(&st, "note"), "utf-8 \xc3\xa9 \"quoted\"\n"), "meta note replaced and escaped");
  CHECK(vlm_st_meta(&st, "nope") == NULL, "missing meta key");

  struct { const char *name; vlm_dtype dt; int ndim; int64_t s0, s1; const void *data; size_t nb; } want[] = {
    {"f32.matrix", VLM_F32, 2, 2, 3, f32, sizeof f32}, {"bf16", VLM_BF16, 1, 5, 0, bf16, sizeof bf16},
    {"f16", VLM_F16, 1, 5, 0, f16, sizeof f16},       {"f64", VLM_F64, 1, 3, 0, f64, sizeof f64},
    {"i64", VLM_I64, 2, 2, 2, i64, sizeof i64},       {"i32", VLM_I32, 1, 3, 0, i32, sizeof i32},
    {"u8 odd size", VLM_U8, 1, 7, 0, u8, sizeof u8},  {"logit_scale", VLM_F32, 0, 0, 0, &scalar, 4},
    {"empty", VLM_F32, 2, 3, 0, NULL, 0},             {"quote\"back\\slash\ttab", VLM_F32, 0, 0, 0, &dummy, 4},
  };
  for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
    const vlm_st_entry *e = vlm_st_find(&st, want[k].name);
    CHECK(e != NULL, "find %s", want[k].name);
    if (!e) continue;
    CHECK(e->dtype == want[k].dt && e->ndim == want[k].ndim, "%s dtype/ndim", want[k].name);
    if (want[k].ndim >= 1) CHECK(e->shape[0] == want[k].s0, "%s shape[0]", want[k].name);
    if (want[k].ndim >= 2) CHECK(e->shape[1] == want[k].s1, "%s shape[1]", want[k].name);
    CHECK(e->end - e->begin == want[k].nb, "%s byte size", want[k].name);
    if (want[k].nb) CHECK(!memcmp(e->data, want[k].data, want[k].nb), "%s bytes", want[k].name);
    vlm_tensor t = vlm_st_tensor(e);
    CHECK(t.data == e->data && t.dtype == e->dtype && t.ndim == e->ndim && vlm_nbytes(&t) == want[k].nb,
          "%s tensor view", want[k].name);
  }
  CHECK(vlm_st_find(&st, "missing") == NULL && vlm_st_find(&st, "") == NULL, "find missing");
  /* Order of the data: largest item size first, then by name. */
  const vlm_st_entry *ef64 = vlm_st_find(&st, "f64"), *ei64 = vlm_st_find(&st, "i64"),
                     *ef32 = vlm_st_find(&st, "f32.matrix"), *eu8 = vlm_st_find(&st, "u8 odd size");
  if (ef64 && ei64 && ef32 && eu8)
    CHECK(ef64->begin == 0 && ei64->begin == 24 && ef32->begin > ei64->begin && eu8->end == st.data_size,
          "data layout by item size then name");

  /* read_f32 conversions. */
  float out[6];
  CHECK(vlm_st_read_f32(&st, vlm_st_find(&st, "f32.matrix"), out, 6) == VLM_OK && !memcmp(out, f32, 24), "f32");
  CHECK(vlm_st_read_f32(&st, vlm_st_find(&st, "bf16"), out, 5) == VLM_OK, "bf16");
  int ok = 1;
  for (int i = 0; i < 5; i++) ok &= out[i] == vlm_bf16_to_f32(bf16[i]) && out[i] == src5[i];
  CHECK(ok, "bf16 values");
  CHECK(vlm_st_read_f32(&st, vlm_st_find(&st, "f16"), out, 5) == VLM_OK, "f16");
  ok = 1;
  for (int i = 0; i < 5; i++) ok &= out[i] == src5[i];
  CHECK(ok, "f16 values");
  CHECK(vlm_st_read_f32(&st, vlm_st_find(&st, "f64"), out, 3) == VLM_OK, "f64");
  CHECK(out[0] == 1.0f && out[1] == -2.5f && out[2] == 1e10f, "f64 values");
  CHECK(vlm_st_read_f32(&st, vlm_st_find(&st, "logit_scale"), out, 1) == VLM_OK && out[0] == scalar, "0-d");
  CHECK(vlm_st_read_f32(&st, vlm_st_find(&st, "empty"), out, 0) == VLM_OK, "zero-size");
  s = vlm_st_read_f32(&st, vlm_st_find(&st, "i64"), out, 4);
  CHECK(s != VLM_OK && strstr(vlm_last_error(), p) && strstr(vlm_last_error(), "\"i64\"") &&
            strstr(vlm_last_error(), "float type"),
        "read_f32 of I64 refused: %s", vlm_last_error());
  s = vlm_st_read_f32(&st, vlm_st_find(&st, "f32.matrix"), out, 5);
  CHECK(s != VLM_OK && strstr(vlm_last_error(), p) && strstr(vlm_last_error(), "f32.matrix") &&
            strstr(vlm_last_error(), "expected 5"),
        "read_f32 count mismatch: %s", vlm_last_error());
  vlm_st_close(&st);
  CHECK(st.map == NULL && st.entries == NULL, "close clears");
  vlm_st_close(&st); /* twice is harmless */

  /* An empty writer gives a valid empty file. */
  w = vlm_st_writer_new();
  CHECK(vlm_st_writer_save(w, p) == VLM_OK, "save empty: %s", vlm_last_error());
  vlm_st_writer_free(w);
  s = vlm_st_open(&st, p);
  CHECK(s == VLM_OK && st.n_entries == 0 && st.n_meta == 0 && st.data_size == 0, "empty file round trip");
  if (s == VLM_OK) vlm_st_close(&st);
}

/* A bigger F32/BF16 pair: exercises the OpenMP conversion path. */
static void test_large_conversion(void) {
  char p[4200];
  tpath(p, sizeof p, "large.safetensors");
  int64_t n = 300000;
  float *x = vt_alloc(n), *y = vt_alloc(n);
  vt_fill_normal(x, n, 7, 1.0f);
  uint16_t *h = malloc((size_t)n * 2), *b = malloc((size_t)n * 2);
  for (int64_t i = 0; i < n; i++) { h[i] = vlm_f32_to_f16(x[i]); b[i] = vlm_f32_to_bf16(x[i]); }
  vlm_st_writer *w = vlm_st_writer_new();
  vlm_tensor tx = vlm_tensor_cpu_f32(x, 1, &n);
  vlm_st_writer_add_tensor(w, "x", &tx);
  vlm_st_writer_add(w, "h", VLM_F16, 1, &n, h);
  vlm_st_writer_add(w, "b", VLM_BF16, 1, &n, b);
  CHECK(vlm_st_writer_save(w, p) == VLM_OK, "save large: %s", vlm_last_error());
  vlm_st_writer_free(w);
  vlm_safetensors st;
  if (vlm_st_open(&st, p) == VLM_OK) {
    CHECK(vlm_st_read_f32(&st, vlm_st_find(&st, "x"), y, n) == VLM_OK && !memcmp(x, y, (size_t)n * 4), "x");
    CHECK(vlm_st_read_f32(&st, vlm_st_find(&st, "h"), y, n) == VLM_OK, "h");
    int bad = 0;
    for (int64_t i = 0; i < n; i++) bad += y[i] != vlm_f16_to_f32(h[i]);
    CHECK(bad == 0, "f16 conversion: %d mismatches", bad);
    CHECK(vlm_st_read_f32(&st, vlm_st_find(&st, "b"), y, n) == VLM_OK, "b");
    bad = 0;
    for (int64_t i = 0; i < n; i++) bad += y[i] != vlm_bf16_to_f32(b[i]);
    CHECK(bad == 0, "bf16 conversion: %d mismatches", bad);
    CHECK(fabsf(y[12345] - x[12345]) <= fabsf(x[12345]) / 128, "bf16 close to the original");
    vlm_st_close(&st);
  } else CHECK(0, "open large: %s", vlm_last_error());
  free(x); free(y); free(h); free(b);
}

/* Files whose tensors are misaligned in the file (unpadded header): still readable, views aligned. */
static void test_misaligned(void) {
  char p[4200];
  tpath(p, sizeof p, "misaligned.safetensors");
  /* Header of odd length, U8 first at offset 0, then F32 at offset 3, then I64. */
  const char *hdr = "{\"a\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[3,11]},"
                    "\"c\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[11,19]}} ";
  size_t hl = strlen(hdr);
  uint8_t data[19] = {1, 2, 3};
  float fv[2] = {1.25f, -3.5f};
  int64_t iv = -42;
  memcpy(data + 3, fv, 8);
  memcpy(data + 11, &iv, 8);
  uint8_t *b = malloc(8 + hl + 19);
  for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
  memcpy(b + 8, hdr, hl);
  memcpy(b + 8 + hl, data, 19);
  vt_write_file(p, b, 8 + hl + 19);
  free(b);
  vlm_safetensors st;
  vlm_status s = vlm_st_open(&st, p);
  CHECK(s == VLM_OK, "misaligned open: %s", vlm_last_error());
  if (s != VLM_OK) return;
  for (int i = 0; i < st.n_entries; i++) {
    const vlm_st_entry *e = &st.entries[i];
    CHECK((uintptr_t)e->data % vlm_dtype_size(e->dtype) == 0, "%s aligned view", e->name);
    CHECK(!memcmp(e->data, data + e->begin, e->end - e->begin), "%s content", e->name);
  }
  const vlm_st_entry *e = vlm_st_find(&st, "b");
  vlm_tensor t = vlm_st_tensor(e);
  CHECK(((const float *)t.data)[1] == -3.5f, "typed read through the view");
  CHECK(*(const int64_t *)vlm_st_find(&st, "c")->data == -42, "i64 through the view");
  vlm_st_close(&st);
}

/* ------------------------------------------------------------------ fixtures */

static int all_finite(const vlm_safetensors *st, const vlm_st_entry *e) {
  int64_t n = 1;
  for (int i = 0; i < e->ndim; i++) n *= e->shape[i];
  float *buf = vt_alloc(n);
  int ok = vlm_st_read_f32(st, e, buf, n) == VLM_OK;
  for (int64_t i = 0; ok && i < n; i++) ok = isfinite(buf[i]);
  free(buf);
  return ok;
}

static void check_shape(const vlm_safetensors *st, const char *name, int ndim, const int64_t *shape) {
  const vlm_st_entry *e = vlm_st_find(st, name);
  CHECK(e != NULL, "fixture has %s", name);
  if (!e) return;
  int ok = e->ndim == ndim && e->dtype == VLM_F32;
  for (int i = 0; ok && i < ndim; i++) ok = e->shape[i] == shape[i];
  vlm_tensor t = vlm_st_tensor(e);
  char buf[128];
  CHECK(ok, "%s: shape %s", name, vlm_shape_str(&t, buf, sizeof buf));
}

static int cfg_int(const cJSON *o, const char *a, const char *b) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, a);
  if (b) x = cJSON_GetObjectItemCaseSensitive(x, b);
  return cJSON_IsNumber(x) ? x->valueint : -1;
}

static void open_all_in(const char *dir, int *count) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.') continue;
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
    size_t l = strlen(de->d_name);
    struct stat sb;
    if (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) { open_all_in(p, count); continue; }
    if (l < 12 || strcmp(de->d_name + l - 12, ".safetensors")) continue;
    vlm_safetensors st;
    vlm_status s = vlm_st_open(&st, p);
    CHECK(s == VLM_OK, "fixture %s: %s", p, vlm_last_error());
    if (s == VLM_OK) {
      int inmap = 1;
      for (int i = 0; i < st.n_entries; i++) inmap &= st.entries[i].data == st.data + st.entries[i].begin;
      CHECK(inmap, "%s: all views point into the mapping", p);
      vlm_st_close(&st);
      (*count)++;
    }
  }
  closedir(d);
}

/* Returns 0 when the fixtures are not there. */
static int test_fixtures(const char *shared) {
  char dir[4096], p[4200];
  snprintf(dir, sizeof dir, "%s/fixtures/tiny-clip", shared);
  struct stat sb;
  if (stat(dir, &sb) != 0) return 0;
  snprintf(p, sizeof p, "%s/config.json", dir);
  size_t n = 0;
  char *cfgtxt = (char *)vt_read_file(p, &n);
  cJSON *cfg = cfgtxt ? cJSON_ParseWithLength(cfgtxt, n) : NULL;
  CHECK(cfg != NULL, "config.json parses");
  free(cfgtxt);
  if (!cfg) return 1;
  int64_t embed = cfg_int(cfg, "embed_dim", NULL);
  const cJSON *vc = cJSON_GetObjectItemCaseSensitive(cfg, "vision_cfg");
  const cJSON *tc = cJSON_GetObjectItemCaseSensitive(cfg, "text_cfg");
  int64_t vw = cfg_int(vc, "width", NULL), patch = cfg_int(vc, "patch_size", NULL),
          img = cfg_int(vc, "image_size", NULL), vl = cfg_int(vc, "layers", NULL);
  int64_t tw = cfg_int(tc, "width", NULL), ctx = cfg_int(tc, "context_length", NULL),
          vocab = cfg_int(tc, "vocab_size", NULL), tl = cfg_int(tc, "layers", NULL);
  cJSON_Delete(cfg);
  CHECK(embed > 0 && vw > 0 && patch > 0 && img > 0 && vl > 0 && tw > 0 && ctx > 0 && vocab > 0 && tl > 0,
        "config sizes");

  snprintf(p, sizeof p, "%s/model.safetensors", dir);
  vlm_safetensors st;
  vlm_status s = vlm_st_open(&st, p);
  CHECK(s == VLM_OK, "open model: %s", vlm_last_error());
  if (s == VLM_OK) {
    int64_t g = img / patch;
    check_shape(&st, "visual.conv1.weight", 4, (int64_t[]){vw, 3, patch, patch});
    check_shape(&st, "visual.class_embedding", 1, (int64_t[]){vw});
    check_shape(&st, "visual.positional_embedding", 2, (int64_t[]){g * g + 1, vw});
    check_shape(&st, "visual.proj", 2, (int64_t[]){vw, embed});
    check_shape(&st, "logit_scale", 0, NULL);
    check_shape(&st, "token_embedding.weight", 2, (int64_t[]){vocab, tw});
    check_shape(&st, "positional_embedding", 2, (int64_t[]){ctx, tw});
    check_shape(&st, "text_projection", 2, (int64_t[]){tw, embed});
    check_shape(&st, "ln_final.weight", 1, (int64_t[]){tw});
    char name[128];
    snprintf(name, sizeof name, "transformer.resblocks.%lld.attn.in_proj_weight", (long long)(tl - 1));
    check_shape(&st, name, 2, (int64_t[]){3 * tw, tw});
    snprintf(name, sizeof name, "visual.transformer.resblocks.%lld.mlp.c_fc.weight", (long long)(vl - 1));
    check_shape(&st, name, 2, (int64_t[]){4 * vw, vw});
    snprintf(name, sizeof name, "visual.transformer.resblocks.%lld.ln_1.bias", (long long)vl);
    CHECK(vlm_st_find(&st, name) == NULL, "no block beyond the configured layers");
    /* 12 per block; text: token/positional embedding, ln_final w/b, text_projection, logit_scale;
     * visual: class/positional embedding, conv1, ln_pre w/b, ln_post w/b, proj. */
    CHECK(st.n_entries == 12 * (int)(vl + tl) + 14, "model has %d tensors", st.n_entries);
    int finite = 1;
    for (int i = 0; i < st.n_entries; i++) finite &= st.entries[i].dtype == VLM_F32 && all_finite(&st, &st.entries[i]);
    CHECK(finite, "all model tensors F32 and finite");
    float ls = 0;
    CHECK(vlm_st_read_f32(&st, vlm_st_find(&st, "logit_scale"), &ls, 1) == VLM_OK && fabsf(ls - logf(1 / 0.07f)) < 1e-3f,
          "logit_scale = ln(1/0.07), got %g", ls);
    const char *cfgname = vlm_st_meta(&st, "config");
    CHECK(cfgname && !strcmp(cfgname, "tiny-clip"), "metadata config");
    vlm_st_close(&st);
  }

  snprintf(p, sizeof p, "%s/inputs.safetensors", dir);
  s = vlm_st_open(&st, p);
  CHECK(s == VLM_OK, "open inputs: %s", vlm_last_error());
  if (s == VLM_OK) {
    const vlm_st_entry *e = vlm_st_find(&st, "text");
    CHECK(e && e->dtype == VLM_I64 && e->ndim == 2 && e->shape[1] == ctx, "text is I64 [B, ctx]");
    if (e && e->dtype == VLM_I64) {
      const int64_t *ids = e->data;
      int ok = 1;
      for (int64_t i = 0; i < e->shape[0] * e->shape[1]; i++) ok &= ids[i] >= 0 && ids[i] < vocab;
      CHECK(ok, "text ids in [0, vocab)");
      float tmp[1];
      s = vlm_st_read_f32(&st, e, tmp, 1);
      CHECK(s != VLM_OK && strstr(vlm_last_error(), p) && strstr(vlm_last_error(), "\"text\""),
            "read_f32 of ids refused naming file and tensor: %s", vlm_last_error());
    }
    e = vlm_st_find(&st, "images");
    CHECK(e && e->dtype == VLM_F32 && e->ndim == 4 && e->shape[1] == 3 && e->shape[2] == img, "images");
    if (e) CHECK(all_finite(&st, e), "images finite");
    e = vlm_st_find(&st, "images_u8");
    CHECK(e && e->dtype == VLM_U8 && e->ndim == 4 && e->shape[3] == 3, "images_u8");
    vlm_st_close(&st);
  }

  /* Every safetensors file among the fixtures opens. */
  char fx[4096];
  snprintf(fx, sizeof fx, "%s/fixtures", shared);
  int count = 0;
  double t0 = vlm_now();
  open_all_in(fx, &count);
  printf("opened %d fixture files in %.1f ms\n", count, (vlm_now() - t0) * 1e3);
  CHECK(count >= 10, "found %d fixture files", count);
  return 1;
}

/* ------------------------------------------------------------------ malformed files */

#define T1(dt, shape, offs) "{\"a\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":" offs "}}"

static void test_malformed(void) {
  char p[4200];
  uint8_t b[64];
  memset(b, 0, sizeof b);

  /* Truncated / bad length field. */
  tpath(p, sizeof p, "empty.safetensors");
  vt_write_file(p, b, 0);
  expect_open_fail(p, "too short", "empty file");
  tpath(p, sizeof p, "five.safetensors");
  vt_write_file(p, b, 5);
  expect_open_fail(p, "too short", "5-byte file");
  tpath(p, sizeof p, "hlen0.safetensors");
  memcpy(b + 8, "{}", 2);
  vt_write_file(p, b, 10);
  expect_open_fail(p, "header length is 0", "header length 0");
  tpath(p, sizeof p, "hlenmax.safetensors");
  uint64_t big = (uint64_t)VLM_ST_MAX_HEADER + 1;
  for (int i = 0; i < 8; i++) b[i] = (uint8_t)(big >> (8 * i));
  vt_write_file(p, b, 16);
  expect_open_fail(p, "exceeds the limit", "header too long");
  tpath(p, sizeof p, "hlenhuge.safetensors");
  memset(b, 0xff, 8);
  vt_write_file(p, b, 16);
  expect_open_fail(p, "exceeds the limit", "header length 2^64-1");
  tpath(p, sizeof p, "hcut.safetensors");
  const char *valid = T1("F32", "[2]", "[0,8]");
  make_st(p, valid, strlen(valid), 8);
  size_t n = 0;
  uint8_t *raw = vt_read_file(p, &n);
  vt_write_file(p, raw, 8 + 20); /* header cut after 20 bytes */
  expect_open_fail(p, "runs past the end of the file", "header cut");
  vt_write_file(p, raw, n - 3); /* data cut */
  expect_open_fail(p, "past the end of the data section", "data cut");
  free(raw);

  /* JSON-level problems. */
  expect_header_fail("{\"a\":", 0, "not valid JSON");
  expect_header_fail("{\"a\":{\"dtype\":\"F32\",}}", 0, "not valid JSON");
  expect_header_fail("[1,2]", 0, "not a JSON object");
  expect_header_fail("\"x\"", 0, "not a JSON object");
  expect_header_fail("{} x", 0, "after the JSON header");
  expect_header_fail("{\"a\":5}", 0, "entry is not an object");
  expect_header_fail("{\"a\":[]}", 0, "entry is not an object");
  expect_header_fail("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "missing field \"dtype\"");
  expect_header_fail("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, "missing field \"shape\"");
  expect_header_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "missing field \"data_offsets\"");
  expect_header_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"foo\":1}}", 8,
                     "unknown field \"foo\"");
  expect_header_fail("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
                     "field \"dtype\" appears twice");
  expect_header_fail("{\"a\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype is not a string");
  expect_header_fail(T1("Q7", "[2]", "[0,8]"), 8, "unknown dtype \"Q7\"");
  expect_header_fail(T1("f32", "[2]", "[0,8]"), 8, "unknown dtype \"f32\"");
  expect_header_fail(T1("F8_E4M3", "[2]", "[0,2]"), 2, "not supported");
  expect_header_fail(T1("F32", "2", "[0,8]"), 8, "shape is not an array");
  expect_header_fail(T1("F32", "[-2]", "[0,8]"), 8, "shape[0] is negative");
  expect_header_fail(T1("F32", "[2.5]", "[0,8]"), 8, "shape[0] is not an integer");
  expect_header_fail(T1("F32", "[2,\"2\"]", "[0,8]"), 8, "shape[1] is not a number");
  expect_header_fail(T1("F32", "[null]", "[0,8]"), 8, "shape[0] is not a number");
  expect_header_fail(T1("F32", "[1e17]", "[0,8]"), 8, "shape[0] is too large");
  expect_header_fail(T1("F32", "[9007199254740993]", "[0,8]"), 8, "too large");
  expect_header_fail(T1("F32", "[2147483648,2147483648,2147483648]", "[0,8]"), 8, "overflows");
  expect_header_fail(T1("F32", "[9007199254740992]", "[0,8]"), 8, "too large");
  expect_header_fail(T1("F64", "[9007199254740991,2048]", "[0,8]"), 8, "overflows");
  expect_header_fail(T1("F32", "[1,1,1,1,1,1,1,1,2]", "[0,8]"), 8, "9 dimensions");
  expect_header_fail(T1("F32", "[2]", "8"), 8, "data_offsets is not an array");
  expect_header_fail(T1("F32", "[2]", "[8]"), 8, "data_offsets has 1 elements, expected exactly 2");
  expect_header_fail(T1("F32", "[2]", "[0,8,16]"), 16, "data_offsets has 3 elements");
  expect_header_fail(T1("F32", "[2]", "[]"), 8, "data_offsets has 0 elements");
  expect_header_fail(T1("F32", "[2]", "[-1,7]"), 8, "data_offsets[0] is negative");
  expect_header_fail(T1("F32", "[2]", "[0,8.5]"), 8, "data_offsets[1] is not an integer");
  expect_header_fail(T1("F32", "[2]", "[0,1152921504606846976]"), 8, "data_offsets[1] is too large");
  expect_header_fail(T1("F32", "[0]", "[8,0]"), 8, "begin 8 is after end 0");
  expect_header_fail(T1("F32", "[4]", "[0,16]"), 8, "past the end of the data section");
  expect_header_fail(T1("F32", "[3]", "[0,8]"), 8, "span 8 bytes but shape [3] F32 needs 12 bytes");
  expect_header_fail(T1("I64", "[2]", "[0,8]"), 8, "needs 16 bytes");
  expect_header_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                     12, "overlap");
  expect_header_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                     8, "overlap");
  expect_header_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                     "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}",
                     8, "overlap");
  expect_header_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
                     20, "bytes 8..12 of the data section belong to no tensor");
  expect_header_fail(T1("F32", "[2]", "[0,8]"), 12, "bytes 8..12 of the data section belong to no tensor");
  expect_header_fail(T1("F32", "[2]", "[4,12]"), 12, "bytes 0..4 of the data section belong to no tensor");
  expect_header_fail("{}", 4, "bytes 0..4 of the data section belong to no tensor");
  expect_header_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                     8, "tensor name \"a\" appears twice");
  expect_header_fail("{\"__metadata__\":\"x\"}", 0, "__metadata__ is not an object");
  expect_header_fail("{\"__metadata__\":[]}", 0, "__metadata__ is not an object");
  expect_header_fail("{\"__metadata__\":{\"k\":1}}", 0, "value for key \"k\" is not a string");
  expect_header_fail("{\"__metadata__\":{\"k\":{\"x\":\"y\"}}}", 0, "is not a string");
  expect_header_fail("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "__metadata__ appears twice");
  expect_header_fail("{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, "key \"k\" appears twice");
  expect_header_fail("{\"\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "empty name");
  expect_header_fail("{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "not valid UTF-8");
  expect_header_fail("{\"a\xc0\xaf\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
                     "not valid UTF-8"); /* overlong '/' */
  expect_header_fail("{\"a\x01\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "control character");
  expect_header_fail("{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "NUL character");
  /* A very long name. */
  {
    size_t L = 70000;
    char *h = malloc(L + 128);
    strcpy(h, "{\"");
    memset(h + 2, 'n', L);
    strcpy(h + 2 + L, "\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}");
    expect_header_fail(h, 8, "too long");
    free(h);
  }
  /* Header with a NUL byte inside (not a JSON character). */
  tpath(p, sizeof p, "nulbyte.safetensors");
  make_st(p, "{}\0 \0 \0 ", 8, 0);
  expect_open_fail(p, "control character", "NUL byte padding");

  /* Not files. */
  expect_open_fail(g_dir, "is a directory", "directory");
  tpath(p, sizeof p, "does-not-exist.safetensors");
  expect_open_fail(p, "No such file", "missing file");
  tpath(p, sizeof p, "unreadable.safetensors");
  make_st(p, valid, strlen(valid), 8);
  chmod(p, 0);
  if (geteuid() != 0) expect_open_fail(p, "Permission denied", "unreadable file");
  else printf("running as root: unreadable-file case not testable\n");
  chmod(p, 0644);

  tpath(p, sizeof p, "fifo.safetensors");
  if (mkfifo(p, 0644) == 0) expect_open_fail(p, "not a regular file", "FIFO");
  expect_open_fail("/dev/null", "not a regular file", "device");

  /* Accepted edge cases. */
  expect_header_ok("{}", 0, 0, "empty header");
  expect_header_ok("{}      ", 0, 0, "padded empty header");
  expect_header_ok("{\"__metadata__\":{}} \n\t ", 0, 0, "empty metadata, whitespace padding");
  expect_header_ok(" {\"a\":{\"shape\":[],\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, 1,
                   "leading space, field order, 0-d");
  expect_header_ok("{\"z\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[0,0]},"
                   "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                   "\"y\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[8,8]}}",
                   8, 3, "zero-size tensors at both ends");
  expect_header_ok(T1("F32", "[2.0]", "[0,8e0]"), 8, 1, "integral doubles");
  expect_header_ok("{\"a\\u00e9\\n\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 1,
                   "escaped name");
}

/* ------------------------------------------------------------------ random mutations */

static int check_invariants(const vlm_safetensors *st) {
  uint64_t covered = 0;
  for (int i = 0; i < st->n_entries; i++) {
    const vlm_st_entry *e = &st->entries[i];
    if (i && strcmp(st->entries[i - 1].name, e->name) >= 0) return 0;
    if (!e->name[0] || e->begin > e->end || e->end > st->data_size) return 0;
    if (e->ndim < 0 || e->ndim > VLM_MAX_DIMS) return 0;
    uint64_t numel = 1;
    for (int d = 0; d < e->ndim; d++) {
      if (e->shape[d] < 0) return 0;
      numel *= (uint64_t)e->shape[d];
    }
    if (e->end - e->begin != numel * vlm_dtype_size(e->dtype)) return 0;
    if ((uintptr_t)e->data % vlm_dtype_size(e->dtype)) return 0;
    covered += e->end - e->begin;
    /* Touch every byte (ASan catches reads outside the mapping). */
    volatile uint8_t acc = 0;
    for (uint64_t k = 0; k < e->end - e->begin; k++) acc ^= ((const uint8_t *)e->data)[k];
    (void)acc;
    if (e->dtype == VLM_F32 || e->dtype == VLM_F16 || e->dtype == VLM_BF16 || e->dtype == VLM_F64) {
      float *buf = vt_alloc((int64_t)numel);
      if (vlm_st_read_f32(st, e, buf, (int64_t)numel) != VLM_OK) { free(buf); return 0; }
      free(buf);
    }
  }
  return covered == st->data_size; /* no overlaps and no holes */
}

static void test_mutations(void) {
  char p[4200], q[4200];
  tpath(p, sizeof p, "base.safetensors");
  tpath(q, sizeof q, "mut.safetensors");
  float f[6] = {1, 2, 3, 4, 5, 6};
  uint16_t h[3] = {0x3c00, 0x4000, 0xc000};
  int64_t ids[2] = {5, 9};
  uint8_t u[3] = {1, 2, 3};
  vlm_st_writer *w = vlm_st_writer_new();
  int64_t s23[2] = {2, 3}, s3[1] = {3}, s2[1] = {2}, s0[2] = {0, 4};
  vlm_st_writer_add(w, "w.weight", VLM_F32, 2, s23, f);
  vlm_st_writer_add(w, "h", VLM_F16, 1, s3, h);
  vlm_st_writer_add(w, "b", VLM_BF16, 1, s3, h);
  vlm_st_writer_add(w, "ids", VLM_I64, 1, s2, ids);
  vlm_st_writer_add(w, "u", VLM_U8, 1, s3, u);
  vlm_st_writer_add(w, "none", VLM_F32, 2, s0, NULL);
  vlm_st_writer_add(w, "s", VLM_F32, 0, NULL, f);
  vlm_st_writer_meta(w, "format", "pt");
  CHECK(vlm_st_writer_save(w, p) == VLM_OK, "save base: %s", vlm_last_error());
  vlm_st_writer_free(w);
  size_t n = 0;
  uint8_t *base = vt_read_file(p, &n);
  CHECK(base != NULL, "read base");
  if (!base) return;
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--) hl = (hl << 8) | base[i];
  uint8_t *m = malloc(n + 64);
  vlm_rng r;
  vlm_rng_seed(&r, 1234);
  static const char ins[] = "{}[],:\"-.e0123456789 \\";
  int n_ok = 0, n_fail = 0, bad_ok = 0, bad_msg = 0;
  const int iters = 2000;
  for (int it = 0; it < iters; it++) {
    memcpy(m, base, n);
    size_t len = n;
    int nmut = 1 + (int)vlm_rng_below(&r, 3);
    for (int k = 0; k < nmut; k++) {
      int kind = (int)vlm_rng_below(&r, 7);
      size_t hend = 8 + (size_t)hl < len ? 8 + (size_t)hl : len;
      if (kind == 0 && len) m[vlm_rng_below(&r, len)] = (uint8_t)vlm_rng_below(&r, 256); /* any byte */
      else if (kind == 1) len = (size_t)vlm_rng_below(&r, len + 1);                     /* truncate */
      else if (kind == 2 && hend > 8) {                                                /* digit in header */
        for (int tries = 0; tries < 50; tries++) {
          size_t at = 8 + vlm_rng_below(&r, hend - 8);
          if (m[at] >= '0' && m[at] <= '9') { m[at] = (uint8_t)('0' + vlm_rng_below(&r, 10)); break; }
        }
      } else if (kind == 3) { /* nudge the length field */
        uint64_t v = 0;
        for (int i = 7; i >= 0; i--) v = (v << 8) | m[i];
        v += (uint64_t)vlm_rng_below(&r, 17) - 8;
        for (int i = 0; i < 8; i++) m[i] = (uint8_t)(v >> (8 * i));
      } else if (kind == 4 && hend > 8 && len < n + 60) { /* insert a JSON-ish byte into the header */
        size_t at = 8 + vlm_rng_below(&r, hend - 8);
        memmove(m + at + 1, m + at, len - at);
        m[at] = (uint8_t)ins[vlm_rng_below(&r, sizeof ins - 1)];
        len++;
      } else if (kind == 5 && hend > 8) { /* delete a header byte */
        size_t at = 8 + vlm_rng_below(&r, hend - 8);
        memmove(m + at, m + at + 1, len - at - 1);
        len--;
      } else if (kind == 6 && hend > 8) { /* header byte to a JSON-ish byte */
        m[8 + vlm_rng_below(&r, hend - 8)] = (uint8_t)ins[vlm_rng_below(&r, sizeof ins - 1)];
      }
    }
    vt_write_file(q, m, len);
    vlm_safetensors st;
    vlm_error_clear();
    vlm_status s = vlm_st_open(&st, q);
    if (s == VLM_OK) {
      n_ok++;
      if (!check_invariants(&st)) bad_ok++;
      vlm_st_close(&st);
    } else {
      n_fail++;
      if (!strstr(vlm_last_error(), q) || st.map || st.entries) bad_msg++;
    }
  }
  printf("mutations: %d opened (all checked), %d rejected\n", n_ok, n_fail);
  CHECK(bad_ok == 0, "%d accepted mutants broke an invariant", bad_ok);
  CHECK(bad_msg == 0, "%d rejections without the path in the message", bad_msg);
  CHECK(n_ok > 0 && n_fail > iters / 2, "mutation mix: %d ok, %d failed", n_ok, n_fail);
  free(m);
  free(base);
}

/* ------------------------------------------------------------------ writer errors, atomic writes */

static int file_is(const char *path, const char *content) {
  size_t n = 0;
  uint8_t *b = vt_read_file(path, &n);
  int ok = b && n == strlen(content) && !memcmp(b, content, n);
  free(b);
  return ok;
}

/* A writer killed outright leaves "<path>.tmp.<host>-<pid>.XXXXXX": a process's first atomic
 * write into that folder removes the ones of this host whose pid is gone, for any file there,
 * and leaves a running writer's, another host's, the old plain "<path>.tmp.XXXXXX" and names
 * that only look alike. The folder is swept once per process. */
static void test_stale_temps(void) {
  char dir[4200], p[4300], host[256] = "", dead[4700], dead_other[4700], live[4700], other_host[4700];
  tpath(dir, sizeof dir, "stale");   /* a folder this process has not written into */
  mkdir(dir, 0755);
  snprintf(p, sizeof p, "%s/stale.bin", dir);
  if (gethostname(host, sizeof host - 1) != 0 || !host[0]) snprintf(host, sizeof host, "host");
  host[40] = 0;
  for (char *c = host; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_')) *c = '_';
  pid_t child = fork();
  if (child == 0) _exit(0);
  waitpid(child, NULL, 0);   /* a pid that has just ended */
  snprintf(dead, sizeof dead, "%s.tmp.%s-%ld.AbCdEf", p, host, (long)child);
  snprintf(dead_other, sizeof dead_other, "%s/other.png.tmp.%s-%ld.ZyXwVu", dir, host, (long)child);
  snprintf(live, sizeof live, "%s.tmp.%s-%ld.GhIjKl", p, host, (long)getppid());
  snprintf(other_host, sizeof other_host, "%s.tmp.some_other_host-%ld.MnOpQr", p, (long)child);
  char plain[4400], alike[4700];
  snprintf(plain, sizeof plain, "%s.tmp.StUvWx", p);
  snprintf(alike, sizeof alike, "%s/notes.tmp.%s-x1.abcdef", dir, host);   /* no pid */
  const char *made[6] = {dead, dead_other, live, other_host, plain, alike};
  for (int i = 0; i < 6; i++) vt_write_file(made[i], "x", 1);
  CHECK(vlm_write_file_atomic(p, "fresh", 5) == VLM_OK && file_is(p, "fresh"), "write: %s", vlm_last_error());
  CHECK(access(dead, F_OK) != 0 && access(dead_other, F_OK) != 0,
        "a dead writer's temporary files removed (the written file's and another file's)");
  CHECK(access(live, F_OK) == 0 && access(other_host, F_OK) == 0 && access(plain, F_OK) == 0 &&
            access(alike, F_OK) == 0,
        "a running writer's, another host's, an old-style and a look-alike name kept");
  /* swept once: a stale file that appears later stays until another process writes there */
  vt_write_file(dead, "x", 1);
  CHECK(vlm_write_file_atomic(p, "again", 5) == VLM_OK && access(dead, F_OK) == 0, "the folder is swept once");
  unlink(dead);
  for (int i = 2; i < 6; i++) unlink(made[i]);
  unlink(p);
  CHECK(rmdir(dir) == 0, "stale temps: nothing else left in the folder");
}

static void test_atomic(void) {
  char p[4200], q[4200];
  tpath(p, sizeof p, "atomic.txt");
  vt_write_file(p, "old content", 11);
  CHECK(vlm_write_file_atomic(p, "new", 3) == VLM_OK, "atomic write: %s", vlm_last_error());
  CHECK(file_is(p, "new"), "content replaced");
  struct stat sb;
  CHECK(stat(p, &sb) == 0 && (sb.st_mode & 0777) == 0644, "mode 0666 & ~umask(022): %o", sb.st_mode & 0777);
  CHECK(count_temp_files() == 0, "no temp files after success");
  CHECK(vlm_write_file_atomic(p, NULL, 0) == VLM_OK && file_is(p, ""), "empty file");
  vt_write_file(p, "old content", 11);

  /* Target directory missing. */
  tpath(q, sizeof q, "no-such-dir/x.bin");
  vlm_status s = vlm_write_file_atomic(q, "x", 1);
  CHECK(s == VLM_ERR_IO && strstr(vlm_last_error(), q) && strstr(vlm_last_error(), "No such file"),
        "missing dir: %s", vlm_last_error());

  /* Target is a directory: refused, nothing written. */
  tpath(q, sizeof q, "adir");
  mkdir(q, 0755);
  s = vlm_write_file_atomic(q, "x", 1);
  CHECK(s == VLM_ERR_IO && strstr(vlm_last_error(), q) && strstr(vlm_last_error(), "is a directory"),
        "onto a directory: %s", vlm_last_error());
  CHECK(stat(q, &sb) == 0 && S_ISDIR(sb.st_mode), "directory untouched");
  CHECK(count_temp_files() == 0, "no temp files after a refused write");

  /* Through a symbolic link: the file it points to is replaced, the link stays a link. */
  char real[4200], link[4200];
  tpath(real, sizeof real, "real.bin");
  tpath(link, sizeof link, "link.bin");
  vt_write_file(real, "before", 6);
  CHECK(symlink("real.bin", link) == 0, "symlink");
  CHECK(vlm_write_file_atomic(link, "after", 5) == VLM_OK, "write through a link: %s", vlm_last_error());
  CHECK(lstat(link, &sb) == 0 && S_ISLNK(sb.st_mode), "the link is still a link");
  CHECK(file_is(real, "after") && count_temp_files() == 0, "its target replaced, no temp");
  tpath(q, sizeof q, "dangling.bin");
  CHECK(symlink("no-such-dir/x", q) == 0, "dangling symlink");
  s = vlm_write_file_atomic(q, "x", 1);
  CHECK(s == VLM_ERR_IO && strstr(vlm_last_error(), "symbolic link"), "dangling link refused: %s", vlm_last_error());

  /* A FIFO (as a character device such as /dev/null) is written directly, not replaced by a
   * regular file (a read-write descriptor stands in for the reader). */
  tpath(q, sizeof q, "fifo");
  CHECK(mkfifo(q, 0600) == 0, "mkfifo");
  int rfd = open(q, O_RDWR | O_NONBLOCK);
  CHECK(rfd >= 0, "open the fifo");
  if (rfd >= 0) {
    CHECK(vlm_write_file_atomic(q, "piped", 5) == VLM_OK, "write to a FIFO: %s", vlm_last_error());
    char got[16] = {0};
    CHECK(read(rfd, got, sizeof got - 1) == 5 && !strcmp(got, "piped"), "the FIFO carried the bytes: '%s'", got);
    close(rfd);
  }
  CHECK(stat(q, &sb) == 0 && S_ISFIFO(sb.st_mode) && count_temp_files() == 0, "still a FIFO, no temp");

  /* Streaming: abort keeps the old file, commit replaces it. */
  vlm_atomic_file af;
  CHECK(vlm_atomic_open(&af, p) == VLM_OK, "atomic open: %s", vlm_last_error());
  CHECK(af.tmp_path && !strncmp(af.tmp_path, p, strlen(p)) && strstr(af.tmp_path, ".tmp."), "temp beside target");
  fputs("partial", af.f);
  vlm_atomic_abort(&af);
  CHECK(file_is(p, "old content") && count_temp_files() == 0, "abort leaves the old file, no temp");
  vlm_atomic_abort(&af); /* twice is harmless */
  CHECK(vlm_atomic_open(&af, p) == VLM_OK, "atomic open");
  fputs("streamed", af.f);
  CHECK(file_is(p, "old content"), "old content until commit");
  CHECK(vlm_atomic_commit(&af) == VLM_OK, "commit: %s", vlm_last_error());
  CHECK(file_is(p, "streamed") && count_temp_files() == 0, "commit replaces");
  CHECK(vlm_atomic_commit(&af) != VLM_OK, "second commit refused");

  /* A writer with an error never touches the target. */
  tpath(q, sizeof q, "ckpt.safetensors");
  vt_write_file(q, "previous checkpoint", 19);
  float x[4] = {1, 2, 3, 4};
  int64_t s4[1] = {4}, s22[2] = {2, 2};
  vlm_st_writer *w = vlm_st_writer_new();
  CHECK(vlm_st_writer_add(w, "x", VLM_F32, 1, s4, x) == VLM_OK, "add");
  s = vlm_st_writer_add(w, "x", VLM_F32, 1, s4, x);
  CHECK(s == VLM_ERR_ARG && strstr(vlm_last_error(), "\"x\"") && strstr(vlm_last_error(), "twice"),
        "duplicate name: %s", vlm_last_error());
  s = vlm_st_writer_save(w, q);
  CHECK(s != VLM_OK && strstr(vlm_last_error(), q) && strstr(vlm_last_error(), "twice"),
        "save after a failed add: %s", vlm_last_error());
  vlm_st_writer_free(w);
  CHECK(file_is(q, "previous checkpoint") && count_temp_files() == 0, "old checkpoint intact, no temp");

  /* Other add errors. */
  w = vlm_st_writer_new();
  vlm_tensor t = vlm_tensor_cpu_f32(x, 2, s22);
  vlm_tensor col = vlm_narrow(&t, 1, 0, 1);
  s = vlm_st_writer_add_tensor(w, "col", &col);
  CHECK(s == VLM_ERR_ARG && strstr(vlm_last_error(), "contiguous"), "strided view refused: %s", vlm_last_error());
  vlm_st_writer_free(w);
  w = vlm_st_writer_new();
  CHECK(vlm_st_writer_add(w, "", VLM_F32, 1, s4, x) == VLM_ERR_ARG, "empty name refused");
  vlm_st_writer_free(w);
  w = vlm_st_writer_new();
  CHECK(vlm_st_writer_add(w, "__metadata__", VLM_F32, 1, s4, x) == VLM_ERR_ARG, "__metadata__ refused");
  vlm_st_writer_free(w);
  w = vlm_st_writer_new();
  CHECK(vlm_st_writer_add(w, "bad\xff", VLM_F32, 1, s4, x) == VLM_ERR_ARG, "invalid UTF-8 refused");
  vlm_st_writer_free(w);
  w = vlm_st_writer_new();
  CHECK(vlm_st_writer_add(w, "nodata", VLM_F32, 1, s4, NULL) == VLM_ERR_ARG, "NULL data refused");
  vlm_st_writer_free(w);

  /* Many names: the duplicate check scales. */
  w = vlm_st_writer_new();
  char name[32];
  int ok = 1;
  for (int i = 0; i < 3000; i++) {
    snprintf(name, sizeof name, "p%d", i);
    ok &= vlm_st_writer_add(w, name, VLM_F32, 1, s4, x) == VLM_OK;
  }
  CHECK(ok, "3000 unique names");
  CHECK(vlm_st_writer_add(w, "p1234", VLM_F32, 1, s4, x) == VLM_ERR_ARG, "duplicate among many");
  vlm_st_writer_free(w);

  /* Saving into a missing directory: error names the path. */
  w = vlm_st_writer_new();
  vlm_st_writer_add(w, "x", VLM_F32, 1, s4, x);
  tpath(q, sizeof q, "missing/dir/m.safetensors");
  s = vlm_st_writer_save(w, q);
  CHECK(s == VLM_ERR_IO && strstr(vlm_last_error(), q), "save into a missing dir: %s", vlm_last_error());
  /* ...and the same writer still saves elsewhere. */
  tpath(q, sizeof q, "ckpt.safetensors");
  CHECK(vlm_st_writer_save(w, q) == VLM_OK, "save over the old checkpoint: %s", vlm_last_error());
  vlm_st_writer_free(w);
  vlm_safetensors st;
  s = vlm_st_open(&st, q);
  CHECK(s == VLM_OK && st.n_entries == 1, "replaced checkpoint readable");
  if (s == VLM_OK) vlm_st_close(&st);

  /* Load, then save over the same file from views into its own mapping (a
   * checkpoint rewritten in place): the rename keeps the old mapping alive. */
  s = vlm_st_open(&st, q);
  CHECK(s == VLM_OK, "reopen: %s", vlm_last_error());
  if (s == VLM_OK) {
    w = vlm_st_writer_new();
    const vlm_st_entry *e = vlm_st_find(&st, "x");
    vlm_tensor tx = vlm_st_tensor(e);
    CHECK(vlm_st_writer_add_tensor(w, "x", &tx) == VLM_OK, "add view");
    CHECK(vlm_st_writer_add_tensor(w, "x_again", &tx) == VLM_OK, "add view twice under another name");
    CHECK(vlm_st_writer_save(w, q) == VLM_OK, "save over the mapped file: %s", vlm_last_error());
    vlm_st_writer_free(w);
    CHECK(!memcmp(e->data, x, sizeof x), "old mapping still valid after the replace");
    vlm_st_close(&st);
    s = vlm_st_open(&st, q);
    CHECK(s == VLM_OK && st.n_entries == 2 && !memcmp(vlm_st_find(&st, "x_again")->data, x, sizeof x),
          "rewritten checkpoint: %s", vlm_last_error());
    if (s == VLM_OK) vlm_st_close(&st);
  }
  CHECK(count_temp_files() == 0, "no temp files at the end");
}

static void test_cuda_save(void) {
  if (!vlm_cuda_available()) {
    printf("CUDA save test skipped: %s\n", vlm_cuda_describe());
    return;
  }
  char p[4200];
  tpath(p, sizeof p, "cuda.safetensors");
  int64_t n = 1000;
  float *x = vt_alloc(n), *y = vt_alloc(n);
  vt_fill_normal(x, n, 3, 1.0f);
  void *d = vlm_device_alloc(VLM_CUDA, (size_t)n * 4);
  vlm_memcpy(d, VLM_CUDA, x, VLM_CPU, (size_t)n * 4);
  vlm_tensor t = vlm_tensor_make(d, VLM_F32, VLM_CUDA, 1, &n);
  vlm_st_writer *w = vlm_st_writer_new();
  CHECK(vlm_st_writer_add_tensor(w, "dev", &t) == VLM_OK, "add CUDA tensor");
  CHECK(vlm_st_writer_save(w, p) == VLM_OK, "save CUDA tensor: %s", vlm_last_error());
  vlm_st_writer_free(w);
  vlm_device_free(VLM_CUDA, d);
  vlm_safetensors st;
  if (vlm_st_open(&st, p) == VLM_OK) {
    CHECK(vlm_st_read_f32(&st, vlm_st_find(&st, "dev"), y, n) == VLM_OK && !memcmp(x, y, (size_t)n * 4),
          "CUDA tensor saved");
    vlm_st_close(&st);
  }
  free(x);
  free(y);
}

/* The temporary files of open atomic writes: listed until commit or abort, unlinked by
 * vlm_atomic_remove_pending (what the signal handlers run); a process killed by SIGTERM
 * mid-write with vlm_atomic_cleanup_on_signals installed leaves none, an ignored signal stays
 * ignored. */
static void atomic_child(const char *path, int ignore_term) {
  if (ignore_term) signal(SIGTERM, SIG_IGN);
  vlm_atomic_cleanup_on_signals();
  vlm_atomic_file af;
  if (vlm_atomic_open(&af, path) != VLM_OK) _exit(3);
  fputs("half of the new content", af.f);
  fflush(af.f);
  raise(SIGTERM);
  vlm_atomic_abort(&af);
  _exit(0);
}

static void test_atomic_pending(void) {
  char p[4200], q[4200];
  tpath(p, sizeof p, "pending.txt");
  vt_write_file(p, "old", 3);
  enum { N = 40 };   /* more than the registry's 32 slots: the writes go on, unlisted */
  vlm_atomic_file af[N];
  int opened = 0;
  for (int i = 0; i < N; i++) opened += vlm_atomic_open(&af[i], p) == VLM_OK;
  CHECK(opened == N && count_temp_files() == N, "%d atomic writes open, %d temp files", opened, count_temp_files());
  vlm_atomic_remove_pending();
  CHECK(count_temp_files() == N - 32, "remove_pending unlinks the listed ones: %d left", count_temp_files());
  CHECK(file_is(p, "old"), "the target untouched");
  for (int i = 0; i < N; i++) vlm_atomic_abort(&af[i]);
  CHECK(count_temp_files() == 0, "abort after the removal is harmless");
  /* Commit and abort take files off the list: a later removal touches nothing of theirs. */
  CHECK(vlm_atomic_open(&af[0], p) == VLM_OK && vlm_atomic_open(&af[1], p) == VLM_OK, "open");
  fputs("committed", af[0].f);
  CHECK(vlm_atomic_commit(&af[0]) == VLM_OK, "commit: %s", vlm_last_error());
  vlm_atomic_abort(&af[1]);
  tpath(q, sizeof q, "pending.txt.tmp.keepme");
  vt_write_file(q, "not ours", 8);
  vlm_atomic_remove_pending();
  CHECK(file_is(p, "committed") && file_is(q, "not ours"), "nothing but listed temp files is removed");
  unlink(q);
  /* SIGTERM mid-write with the handlers installed: dies of it, no temp file, the old target. */
  for (int ignore = 0; ignore < 2; ignore++) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) atomic_child(p, ignore);
    int st = 0;
    CHECK(pid > 0 && waitpid(pid, &st, 0) == pid, "fork/wait");
    if (!ignore)
      CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "the handler re-raises: killed by SIGTERM (status %d)", st);
    else
      CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "an ignored SIGTERM stays ignored (status %d)", st);
    CHECK(count_temp_files() == 0 && file_is(p, "committed"), "no temp file, the target intact (%s)",
          ignore ? "ignored" : "killed");
  }
}

int main(int argc, char **argv) {
  umask(022);
  const char *tmp = getenv("TMPDIR");
  snprintf(g_dir, sizeof g_dir, "%s/vlm-st-test-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
  if (!mkdtemp(g_dir)) {
    perror("mkdtemp");
    return 1;
  }
  test_round_trip();
  test_large_conversion();
  test_misaligned();
  test_malformed();
  test_mutations();
  test_atomic();
  test_stale_temps();
  test_atomic_pending();
  test_cuda_save();
  const char *shared = vt_shared_dir(argc, argv);
  int have = shared && test_fixtures(shared);
  vt_rm_tree(g_dir);
  if (!have) {
    if (vt_failed) return vt_finish();
    printf("%d passed, 0 failed (without fixtures)\n", vt_passed);
    vt_skip(shared ? "fixtures/tiny-clip not found in the shared dir: fixture checks not run"
                   : "no shared dir (argv[1] or VLM_SHARED_DIR): fixture checks not run");
  }
  return vt_finish();
}
