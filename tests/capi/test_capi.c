/* The C API (libvlm.so, include/vlm.h only) against the open_clip fixture:
 * test_capi FIXTURE_DIR (../shared/fixtures/tiny-clip).
 *   - vlm_embed_image_rgb on the fixture's raw pixels (images_u8, already the
 *     model's size, so preprocessing is only the normalization) and
 *     vlm_embed_pixels on its normalized images equal open_clip's image_features;
 *   - vlm_embed_token_ids on its ids equal its text_features;
 *   - errors: a missing model, NULL and bad arguments, ids outside the vocabulary,
 *     texts without a tokenizer, an empty class list, captions on CLIP;
 *   - vlm_model_load_on: an unknown device is refused; "cuda" either says why
 *     there is no GPU or (a GPU, or the emulated one) embeds as the CPU does;
 *   - vlm_model_options.threads: 0 takes VLM_THREADS (the process's first calls run
 *     on one thread with VLM_THREADS=1), a count outside [0, 4096] fails the load, and
 *     a call leaves the calling thread's own OpenMP thread count as it was.
 * The fixture is read with a few lines of safetensors parsing (no vlm internals). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vlm.h>

#include "capi_check.h"


static unsigned char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long sz = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *p = malloc((size_t)sz + 1);
  if (!p || fread(p, 1, (size_t)sz, f) != (size_t)sz) { free(p); fclose(f); return NULL; }
  fclose(f);
  *n = (size_t)sz;
  return p;
}

/* Pointer to tensor `name`'s data and its byte size (little-endian host). */
static const void *st_get(const unsigned char *file, size_t n, const char *name, size_t *bytes) {
  unsigned long long hl = 0;
  for (int i = 7; i >= 0; i--) hl = hl << 8 | file[i];
  if (8 + hl > n) return NULL;
  char *hdr = malloc(hl + 1);
  memcpy(hdr, file + 8, hl);
  hdr[hl] = 0;
  char key[128];
  snprintf(key, sizeof key, "\"%s\"", name);
  const char *p = strstr(hdr, key), *q = p ? strstr(p, "\"data_offsets\"") : NULL;
  unsigned long long a, b;
  const void *r = NULL;
  if (q && (q = strchr(q, '[')) && sscanf(q, "[%llu , %llu]", &a, &b) == 2 && 8 + hl + b <= n) {
    r = file + 8 + hl + a;
    *bytes = (size_t)(b - a);
  }
  free(hdr);
  return r;
}


/* vlm_model_options.threads, run first: no OpenMP thread exists yet in this process. */
static void check_threads(const char *dir) {
  const char *err = NULL;
  vlm_model_options o = {0};
  setenv("VLM_THREADS", "1", 1);   /* read at load when threads is 0 */
  vlm_model *m = vlm_model_load_ex(dir, &o, &err);
  unsetenv("VLM_THREADS");
  CHECK(m != NULL, "load: %s", err ? err : "");
  if (!m) return;
  int S = vlm_model_image_size(m), E = vlm_model_embed_dim(m);
  float *pix = calloc((size_t)3 * S * S, sizeof(float)), *out = malloc((size_t)E * sizeof(float));
  CHECK(pix && out && vlm_embed_pixels(m, pix, 1, out) == 0, "embed: %s", vlm_get_last_error());
  int n = process_threads();
  CHECK(n == 1 || n == -1, "threads 0 with VLM_THREADS=1: the call ran %d threads", n);
  vlm_model_free(m);
  for (int bad = 0; bad < 2; bad++) {   /* 99999 OpenMP threads crashed libgomp */
    o.threads = bad ? -1 : 99999;
    err = NULL;
    m = vlm_model_load_ex(dir, &o, &err);
    CHECK(!m && err && strstr(err, "vlm_model_options.threads"), "threads %d refused: %s", o.threads, err ? err : "(null)");
    vlm_model_free(m);
  }
  {   /* bf16 is a flag: 7 is refused, not taken as on */
    vlm_model_options b7 = o;
    b7.threads = 0;
    b7.bf16 = 7;
    err = NULL;
    m = vlm_model_load_ex(dir, &b7, &err);
    CHECK(!m && err && strstr(err, "vlm_model_options.bf16 must be 0 or 1, got 7"), "bf16 7 refused: %s",
          err ? err : "(null)");
    vlm_model_free(m);
  }
  {   /* a batch whose activations cannot be allocated: the option is named */
    vlm_model_options big = o;
    big.threads = 0;
    big.batch_size = 1 << 30;
    err = NULL;
    m = vlm_model_load_ex(dir, &big, &err);
    CHECK(!m && err && strstr(err, "vlm_model_options.batch_size 1073741824"), "a huge batch_size: %s",
          err ? err : "(null)");
    vlm_model_free(m);
  }
  omp_set_num_threads(3);   /* the application's own setting */
  o.threads = 1;
  m = vlm_model_load_ex(dir, &o, &err);
  CHECK(m != NULL && omp_get_max_threads() == 3, "a load keeps the caller's OpenMP threads (%d)", omp_get_max_threads());
  if (m) {
    CHECK(vlm_embed_pixels(m, pix, 1, out) == 0, "embed: %s", vlm_get_last_error());
    CHECK(omp_get_max_threads() == 3, "a call keeps the caller's OpenMP threads (%d)", omp_get_max_threads());
  }
  vlm_model_free(m);
  free(pix);
  free(out);
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: test_capi FIXTURE_DIR\n"); return 2; }
  char path[4096];
  size_t ni, no;
  snprintf(path, sizeof path, "%s/inputs.safetensors", argv[1]);
  unsigned char *in = slurp(path, &ni);
  snprintf(path, sizeof path, "%s/outputs.safetensors", argv[1]);
  unsigned char *out = slurp(path, &no);
  if (!in || !out) { printf("SKIP: no fixture at %s\n", argv[1]); return 77; }
  CHECK(vlm_api_version() == VLM_API_VERSION, "api version %d", vlm_api_version());
  check_threads(argv[1]);

  const char *err = NULL;
  vlm_model *m = vlm_model_load("/nonexistent/model-dir", &err);
  CHECK(!m && err && strstr(err, "/nonexistent/model-dir"), "missing model: %s", err ? err : "(null)");
  CHECK(!vlm_model_load(NULL, &err), "NULL path");

  m = vlm_model_load(argv[1], &err);
  CHECK(m != NULL, "load %s: %s", argv[1], err ? err : "");
  if (!m) return 1;
  int E = vlm_model_embed_dim(m), S = vlm_model_image_size(m), L = vlm_model_context_length(m);
  CHECK(E == 32 && S == 32 && L == 16, "dims E=%d S=%d L=%d", E, S, L);
  CHECK(!vlm_model_has_tokenizer(m), "the fixture has no tokenizer");
  CHECK(strncmp(vlm_model_identity(m), "clip-", 5) == 0, "identity %s", vlm_model_identity(m));

  size_t b_u8, b_img, b_ids, b_if, b_tf;
  const unsigned char *u8 = st_get(in, ni, "images_u8", &b_u8);
  const float *imgs = st_get(in, ni, "images", &b_img);
  const int32_t *ids = st_get(in, ni, "text_i32", &b_ids);
  const float *ref_i = st_get(out, no, "image_features", &b_if), *ref_t = st_get(out, no, "text_features", &b_tf);
  CHECK(u8 && imgs && ids && ref_i && ref_t, "fixture tensors present");
  if (!(u8 && imgs && ids && ref_i && ref_t)) return 1;
  int B = (int)(b_if / sizeof(float) / (size_t)E);
  CHECK(B == 8 && b_u8 == (size_t)B * S * S * 3 && b_ids == (size_t)B * L * 4, "fixture shapes");

  float *emb = malloc((size_t)B * E * sizeof(float));
  double worst = 0;
  for (int b = 0; b < B; b++) {   /* raw RGB (HWC) through the API's preprocessing */
    CHECK(vlm_embed_image_rgb(m, u8 + (size_t)b * S * S * 3, S, S, 0, emb + (size_t)b * E) == 0, "rgb %d: %s", b,
          vlm_get_last_error());
  }
  for (int i = 0; i < B * E; i++) worst = fmax(worst, fabs(emb[i] - ref_i[i]));
  CHECK(worst < 1e-5, "vlm_embed_image_rgb vs open_clip image_features: max |diff| %.3g", worst);
  printf("image features from raw RGB: max |diff| %.3g\n", worst);
  CHECK(vlm_embed_pixels(m, imgs, B, emb) == 0, "pixels: %s", vlm_get_last_error());
  worst = 0;
  for (int i = 0; i < B * E; i++) worst = fmax(worst, fabs(emb[i] - ref_i[i]));
  CHECK(worst < 1e-5, "vlm_embed_pixels: max |diff| %.3g", worst);
  CHECK(vlm_embed_token_ids(m, ids, B, L, emb) == 0, "ids: %s", vlm_get_last_error());
  worst = 0;
  for (int i = 0; i < B * E; i++) worst = fmax(worst, fabs(emb[i] - ref_t[i]));
  CHECK(worst < 1e-5, "vlm_embed_token_ids vs open_clip text_features: max |diff| %.3g", worst);
  printf("text features from ids: max |diff| %.3g\n", worst);

  /* errors, never aborts */
  int32_t bad_ids[16] = {998, 5, 1000, 999};
  CHECK(vlm_embed_token_ids(m, bad_ids, 1, 16, emb) == -1 && strstr(vlm_get_last_error(), "outside the vocabulary"),
        "id 1000 refused: %s", vlm_get_last_error());
  CHECK(vlm_embed_token_ids(m, ids, 1, 17, emb) == -1, "len > context refused");
  const char *txt = "a photo of a cat";
  CHECK(vlm_embed_texts(m, &txt, 1, emb) == -1 && strstr(vlm_get_last_error(), "tokenizer"), "texts need a tokenizer: %s",
        vlm_get_last_error());
  const char *missing = "/nonexistent/cat.jpg";
  CHECK(vlm_embed_image_files(m, &missing, 1, emb) == -1 && strstr(vlm_get_last_error(), missing),
        "missing image named: %s", vlm_get_last_error());
  CHECK(vlm_embed_image_rgb(m, u8, 0, 5, 0, emb) == -1, "width 0 refused");
  CHECK(vlm_embed_pixels(m, NULL, 1, emb) == -1, "NULL pixels refused");
  const char *cls[1] = {"cat"};
  CHECK(vlm_classifier_new(m, cls, 0, NULL, NULL, 0) == NULL && strstr(vlm_get_last_error(), "empty"),
        "empty class list: %s", vlm_get_last_error());
  char cap[64];
  CHECK(vlm_caption(m, "x.jpg", cap, sizeof cap) == -1 && strstr(vlm_get_last_error(), "not supported for CLIP"),
        "caption: %s", vlm_get_last_error());
  CHECK(!vlm_model_load_on(argv[1], NULL, "tpu", &err) && err && strstr(err, "tpu"), "device tpu: %s",
        err ? err : "(null)");
  vlm_model *g = vlm_model_load_on(argv[1], NULL, "cuda", &err);
  if (!g) {
    CHECK(err && strstr(err, "cuda"), "device cuda without a GPU says why: %s", err ? err : "(null)");
    printf("vlm_model_load_on(cuda): %s\n", err ? err : "");
  } else {
    float *ge = malloc((size_t)B * E * sizeof(float)), *ce = malloc((size_t)B * E * sizeof(float));
    CHECK(vlm_embed_pixels(g, imgs, B, ge) == 0 && vlm_embed_pixels(m, imgs, B, ce) == 0, "pixels: %s",
          vlm_get_last_error());
    CHECK(vlm_embed_token_ids(g, ids, B, L, ge) == 0, "ids on the GPU: %s", vlm_get_last_error());
    double w2 = 0;
    CHECK(vlm_embed_pixels(g, imgs, B, ge) == 0, "pixels on the GPU: %s", vlm_get_last_error());
    for (int i = 0; i < B * E; i++) w2 = fmax(w2, fabs(ge[i] - ce[i]));
    CHECK(w2 < 1e-4, "GPU image embeddings vs the CPU's: %.3g", w2);
    CHECK(!strcmp(vlm_model_identity(g), vlm_model_identity(m)), "the same identity on the GPU");
    printf("vlm_model_load_on(cuda): image embeddings within %.3g of the CPU's\n", w2);
    free(ge);
    free(ce);
    vlm_model_free(g);
  }
  vlm_model_free(m);
  vlm_model_free(NULL);
  vlm_classifier_free(NULL);
  free(emb);
  free(in);
  free(out);
  printf("%s\n", g_fail ? "FAILED" : "ok");
  return g_fail ? 1 : 0;
}
