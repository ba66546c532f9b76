/* Zero-shot classifier, top-k, accuracy and the nearest-neighbour scan
 * (contrastive/zeroshot.c, contrastive/knn.c), and the encoder's text path
 * against the fixture (model/encode.c). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "contrastive/contrastive.h"
#include "gradcheck.h"
#include "model/encode.h"

static void test_templates(void) {
  const char *const *t;
  CHECK(vlm_zeroshot_templates_builtin("openai", &t) == 80, "80 OpenAI templates");
  CHECK(!strcmp(t[0], "a bad photo of a {}.") && !strcmp(t[79], "a tattoo of the {}."), "first and last");
  CHECK(vlm_zeroshot_templates_builtin("simple", &t) == 7 && !strcmp(t[0], "itap of a {}."), "7 simple templates");
  CHECK(vlm_zeroshot_templates_builtin("fancy", &t) == 0, "unknown set");
  char *s = vlm_zeroshot_fill("a {} and a {c} or {x}", "cat");
  CHECK(s && !strcmp(s, "a cat and a cat or {x}"), "fill: %s", s ? s : "(null)");
  free(s);
  char path[] = "/tmp/vlm_tpl_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0, "mkstemp");
  close(fd);
  vt_write_file(path, "a photo of {}.\n\n  \r\nart of the {c}\r\n", 35);
  char **v;
  int n;
  CHECK(vlm_zeroshot_templates_load(path, &v, &n) == VLM_OK && n == 2 && !strcmp(v[1], "art of the {c}"),
        "templates file: %d", n);
  vlm_zeroshot_strings_free(v, n);
  vt_write_file(path, "\xEF\xBB\xBF{} art\r\n", 11);
  CHECK(vlm_zeroshot_templates_load(path, &v, &n) == VLM_OK && n == 1 && !strcmp(v[0], "{} art"),
        "a UTF-8 BOM is no part of the first template: '%s'", n ? v[0] : "");
  vlm_zeroshot_strings_free(v, n);
  vt_write_file(path, "ok {}\nno placeholder\n", 21);
  CHECK(vlm_zeroshot_templates_load(path, &v, &n) != VLM_OK && strstr(vlm_last_error(), ":2:"), "bad line named: %s",
        vlm_last_error());
  vt_write_file(path, "\n\n", 2);
  CHECK(vlm_zeroshot_templates_load(path, &v, &n) != VLM_OK && strstr(vlm_last_error(), "no templates"), "empty file");
  remove(path);
  CHECK(vlm_zeroshot_templates_load(path, &v, &n) == VLM_ERR_IO && strstr(vlm_last_error(), path), "missing file");
}

/* A fake text encoder: a deterministic vector per string (hash-seeded), any scale. */
typedef struct { int64_t E; int calls, max_n; } fake_ctx;
static void fake_vec(const char *s, int64_t E, float *out) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  vlm_rng r;
  vlm_rng_seed(&r, h);
  float scale = 1 + (float)(h % 7);
  for (int64_t d = 0; d < E; d++) out[d] = scale * vlm_rng_normal(&r);
}
static vlm_status fake_encode(void *ctx, const char *const *texts, int n, float *out) {
  fake_ctx *c = ctx;
  c->calls++;
  if (n > c->max_n) c->max_n = n;
  for (int i = 0; i < n; i++) fake_vec(texts[i], c->E, out + (size_t)i * c->E);
  return VLM_OK;
}
static vlm_status failing_encode(void *ctx, const char *const *texts, int n, float *out) {
  return vlm_error(VLM_ERR_ARG, "encoder says no");
}

static void test_classifier(void) {
  const int64_t E = 19;
  const char *classes[] = {"cat", "dog", "golden retriever"};
  const char *tpl[] = {"a photo of a {}.", "{c}", "art of the {}"};
  for (int batch = 0; batch <= 4; batch++) {   /* batches that split classes across calls */
    fake_ctx ctx = {E, 0, 0};
    float W[3 * 19], ref[3 * 19];
    CHECK(vlm_zeroshot_classifier(fake_encode, &ctx, classes, 3, tpl, 3, E, batch, W) == VLM_OK, "classifier");
    CHECK(ctx.max_n <= (batch ? batch : 3), "batch bound %d > %d", ctx.max_n, batch);
    /* reference: normalize each, mean, renormalize (double) */
    for (int c = 0; c < 3; c++) {
      double acc[19] = {0};
      for (int t = 0; t < 3; t++) {
        float v[19];
        char *s = vlm_zeroshot_fill(tpl[t], classes[c]);
        fake_vec(s, E, v);
        free(s);
        double nn = 0;
        for (int d = 0; d < E; d++) nn += (double)v[d] * v[d];
        for (int d = 0; d < E; d++) acc[d] += v[d] / sqrt(nn) / 3;
      }
      double nn = 0;
      for (int d = 0; d < E; d++) nn += acc[d] * acc[d];
      for (int d = 0; d < E; d++) ref[c * E + d] = (float)(acc[d] / sqrt(nn));
    }
    CHECK(vt_max_abs(W, ref, 3 * E) < 1e-6, "classifier = normalize-mean-renormalize (batch %d): %g", batch,
          vt_max_abs(W, ref, 3 * E));
  }
  float W[3 * 19];
  CHECK(vlm_zeroshot_classifier(failing_encode, NULL, classes, 3, tpl, 3, E, 0, W) != VLM_OK &&
            strstr(vlm_last_error(), "encoder says no"), "encoder errors propagate");
  CHECK(vlm_zeroshot_classifier(fake_encode, NULL, classes, 0, tpl, 3, E, 0, W) == VLM_ERR_ARG, "no classes");
  CHECK(vlm_zeroshot_classifier(fake_encode, NULL, classes, 3, tpl, 0, E, 0, W) == VLM_ERR_ARG, "no templates");

  /* logits = 100 cos, softmax, top-k, accuracy */
  fake_ctx ctx = {E, 0, 0};
  CHECK(vlm_zeroshot_classifier(fake_encode, &ctx, classes, 3, tpl, 3, E, 0, W) == VLM_OK, "classifier");
  float img[2 * 19];
  memcpy(img, W + E, E * sizeof(float));        /* image 0 = class 1 exactly */
  memcpy(img + E, W + 2 * E, E * sizeof(float)); /* image 1 = class 2 */
  float lg[6];
  vlm_zeroshot_logits(img, 2, W, 3, E, lg);
  CHECK(fabsf(lg[1] - 100) < 1e-4 && fabsf(lg[5] - 100) < 1e-4, "logit of the same vector = 100");
  int labels[2] = {1, 0};
  vlm_zeroshot_result acc;
  vlm_zeroshot_accuracy(lg, 2, 3, labels, NULL, &acc);
  CHECK(acc.n == 2 && acc.top1 == 0.5 && acc.top5 == 1.0, "accuracy %g %g", acc.top1, acc.top5);
  float big[600 * 19];   /* 600 rows (3 chunks), scaled copies of the two images */
  int lab[600];
  for (int i = 0; i < 600; i++) {
    for (int d = 0; d < E; d++) big[i * E + d] = (float)(1 + i % 5) * img[(i % 2) * E + d];
    lab[i] = labels[i % 2];
  }
  uint8_t sub[600];
  for (int i = 0; i < 600; i++) sub[i] = i % 4 == 0;   /* even rows only: label 1, right */
  lab[599] = 7;                                        /* out of range: not counted */
  vlm_zeroshot_result z;
  CHECK(vlm_zeroshot_eval(big, 600, E, W, 3, lab, sub, &z) == VLM_OK && z.n == 599 && fabs(z.top1 - 300.0 / 599) < 1e-12 &&
            z.top5 == 1.0 && z.n_subset == 150 && z.subset_top1 == 1.0,
        "eval from unnormalized features in chunks: n %lld %g %g subset %lld %g", (long long)z.n, z.top1, z.top5,
        (long long)z.n_subset, z.subset_top1);
  char *f1 = vlm_zeroshot_fill("{a} {} and {c}", "owl"), *f2 = vlm_zeroshot_fill("a photo of {a} {}.", "red circle");
  CHECK(f1 && f2 && !strcmp(f1, "an owl and owl") && !strcmp(f2, "a photo of a red circle."), "fill: '%s' '%s'",
        f1 ? f1 : "", f2 ? f2 : "");
  free(f1);
  free(f2);
  const char *const *shp = NULL;
  CHECK(vlm_zeroshot_templates_builtin("shapes", &shp) == 6 && shp, "shapes templates");
  float p[3] = {1, 2, 3};
  vlm_softmax_row(p, 3);
  CHECK(fabsf(p[0] + p[1] + p[2] - 1) < 1e-6 && fabsf(p[2] - 0.665241f) < 1e-5, "softmax");
}

static void test_topk(void) {
  float x[] = {0.5f, 2, NAN, 2, -1, 7, 0.5f};
  int64_t idx[7];
  float v[7];
  CHECK(vlm_topk(x, 7, 4, idx, v) == 4 && idx[0] == 5 && idx[1] == 1 && idx[2] == 3 && idx[3] == 0,
        "top-4 with ties by index: %lld %lld %lld %lld", (long long)idx[0], (long long)idx[1], (long long)idx[2],
        (long long)idx[3]);
  CHECK(vlm_topk(x, 7, 100, idx, v) == 7 && idx[6] == 2, "k clamped, NaN last");
  CHECK(vlm_topk(x, 7, 0, idx, v) == 0 && vlm_topk(x, 0, 3, idx, v) == 0, "k 0 / n 0");
}

static void test_knn(void) {
  const int64_t sizes[][2] = {{1, 3}, {5, 1}, {37, 7}, {4095, 16}, {4096, 17}, {10007, 33}};
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
    int64_t N = sizes[s][0], E = sizes[s][1];
    float *db = vt_alloc(N * E), *q = vt_alloc(E), *all = vt_alloc(N);
    vt_fill_normal(db, N * E, 10 + s, 1);
    vt_fill_normal(q, E, 20 + s, 1);
    if (N > 100) memcpy(db + 50 * E, db + 20 * E, E * sizeof(float));   /* a tie: index 20 first */
    for (int64_t i = 0; i < N; i++) {
      float acc = 0;
      for (int64_t d = 0; d < E; d++) acc += db[i * E + d] * q[d];
      all[i] = acc;
    }
    for (int k = 1; k <= 25; k += 12) {
      int64_t ia[25], ib[25];
      float sa[25], sb[25];
      int na = vlm_knn_search(db, N, E, q, k, ia, sa), nb = vlm_topk(all, N, k, ib, sb);
      int same = na == nb;
      for (int j = 0; j < na && same; j++) same = ia[j] == ib[j] && fabsf(sa[j] - sb[j]) < 1e-4f;
      CHECK(same, "knn = brute force top-k (N %lld, E %lld, k %d)", (long long)N, (long long)E, k);
    }
    free(db); free(q); free(all);
  }
}

/* The fixture in dir (8 images 32 x 32, 8 x 16 ids, 32-d features) through the encoder:
 * image features in batches of 3, text features from the ids, and from shorter rows:
 * CLIP (eot >= 0) cut after the EOT; CoCa (eot < 0) padded from position 10, whose
 * cut rows the encoder pads back to the full context. */
static void check_fixture_features(vlm_encoder *e, const char *dir, const char *what, int eot) {
  char path[1100];
  snprintf(path, sizeof path, "%s/inputs.safetensors", dir);
  vlm_safetensors in, out;
  CHECK(vlm_st_open(&in, path) == VLM_OK, "inputs");
  snprintf(path, sizeof path, "%s/outputs.safetensors", dir);
  CHECK(vlm_st_open(&out, path) == VLM_OK, "outputs");
  float img[8 * 3 * 32 * 32], ri[8 * 32], rt[8 * 32], got[8 * 32];
  int32_t ids[8 * 16];
  vlm_st_read_f32(&in, vlm_st_find(&in, "images"), img, 8 * 3 * 32 * 32);
  memcpy(ids, vlm_st_find(&in, "text_i32")->data, sizeof ids);
  vlm_st_read_f32(&out, vlm_st_find(&out, "image_features"), ri, 8 * 32);
  vlm_st_read_f32(&out, vlm_st_find(&out, "text_features"), rt, 8 * 32);
  CHECK(vlm_encoder_images(e, img, 8, got) == VLM_OK && vt_max_abs(got, ri, 8 * 32) < 1e-5,
        "%s: image features in batches of 3: %g", what, vt_max_abs(got, ri, 8 * 32));
  CHECK(vlm_encoder_ids(e, ids, 8, 16, got) == VLM_OK && vt_max_abs(got, rt, 8 * 32) < 1e-5,
        "%s: text features from ids: %g", what, vt_max_abs(got, rt, 8 * 32));
  int L = 0;
  if (eot >= 0) {   /* CLIP: cut after each row's EOT (the largest id), the pooling position */
    for (int b = 0; b < 8; b++)
      for (int l = 0; l < 16; l++)
        if (ids[b * 16 + l] == eot && l + 1 > L) L = l + 1;
  } else {          /* CoCa: pad every row from position 10 on; the cut rows are padded back */
    L = 10;
    for (int b = 0; b < 8; b++)
      for (int l = L; l < 16; l++) ids[b * 16 + l] = 0;
    CHECK(vlm_encoder_ids(e, ids, 8, 16, rt) == VLM_OK, "%s: padded ids", what);
  }
  if (L < 16) {   /* (the CLIP fixture has an EOT at position 15) */
    int32_t cut[8 * 16];
    for (int b = 0; b < 8; b++) memcpy(cut + b * L, ids + b * 16, (size_t)L * sizeof(int32_t));
    CHECK(vlm_encoder_ids(e, cut, 8, L, got) == VLM_OK && vt_max_abs(got, rt, 8 * 32) < 1e-6,
          "%s: ids cut to length %d: %g", what, L, vt_max_abs(got, rt, 8 * 32));
  }
  vlm_st_close(&in);
  vlm_st_close(&out);
}

/* A CoCa checkpoint embeds with its contrastive towers (text at the full context). */
static void test_encoder_coca_fixture(const char *shared) {
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/fixtures/tiny-coca", shared);
  vlm_encoder e;
  if (vlm_encoder_open(&e, dir, NULL, 3, 0) != VLM_OK) { CHECK(0, "open %s: %s", dir, vlm_last_error()); return; }
  CHECK(e.coca && !strncmp(e.identity, "coca-", 5) && vlm_encoder_dim(&e) == 32 && vlm_encoder_image_size(&e) == 32,
        "CoCa encoder: identity %s", e.identity);
  check_fixture_features(&e, dir, "tiny-coca", -1);
  vlm_encoder_close(&e);
}

/* The encoder's image and token-id paths reproduce the fixture's features. */
static void test_encoder_fixture(const char *shared) {
  char dir[1024], path[1100];
  snprintf(dir, sizeof dir, "%s/fixtures/tiny-clip", shared);
  vlm_encoder e;
  if (vlm_encoder_open(&e, dir, NULL, 3, 0) != VLM_OK) { CHECK(0, "open %s: %s", dir, vlm_last_error()); return; }
  CHECK(e.tok == NULL && !strncmp(e.identity, "clip-", 5), "no tokenizer; identity %s", e.identity);
  check_fixture_features(&e, dir, "tiny-clip", 999);
  float got[8 * 32];
  int32_t ids[8 * 16];
  snprintf(path, sizeof path, "%s/inputs.safetensors", dir);
  vlm_safetensors in;
  CHECK(vlm_st_open(&in, path) == VLM_OK, "inputs");
  memcpy(ids, vlm_st_find(&in, "text_i32")->data, sizeof ids);
  ids[5] = 1000;
  CHECK(vlm_encoder_ids(&e, ids, 8, 16, got) == VLM_ERR_ARG, "id outside the vocabulary refused");
  const char *t = "x";
  CHECK(vlm_encoder_texts(&e, &t, 1, got) == VLM_ERR_ARG, "texts without a tokenizer refused");
  vlm_st_close(&in);
  vlm_encoder_close(&e);
  /* a too-large tokenizer is refused, naming it */
  snprintf(path, sizeof path, "%s/data/bpe_simple_vocab_16e6.txt.gz", shared);
  CHECK(vlm_encoder_open(&e, dir, path, 1, VLM_ENC_TEXT) == VLM_ERR_ARG && strstr(vlm_last_error(), "49408"),
        "tokenizer larger than the vocabulary: %s", vlm_last_error());
  CHECK(vlm_encoder_open(&e, dir, NULL, 1, VLM_ENC_TEXT) == VLM_ERR_ARG && strstr(vlm_last_error(), "--tokenizer"),
        "no tokenizer found: %s", vlm_last_error());
}

int main(int argc, char **argv) {
  test_templates();
  test_classifier();
  test_topk();
  test_knn();
  const char *shared = vt_shared_dir(argc, argv);
  if (shared) {
    test_encoder_fixture(shared);
    test_encoder_coca_fixture(shared);
  } else {
    printf("(no ../shared: encoder fixture checks not run)\n");
  }
  return vt_finish();
}
