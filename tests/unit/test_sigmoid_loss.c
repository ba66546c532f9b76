/* The sigmoid (SigLIP) loss op: values against a double-precision computation here
 * (offsets 0 and > 0, a column count past the rows: the multi-rank layout), large
 * logits (no overflow), finite-difference gradient check (both kernel modes), fast
 * vs reference, += semantics, and the bounds check of the positives (in a child
 * process: it aborts). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"

static const char *mode_name(int m) { return m == VLM_KERNELS_REF ? "ref" : "fast"; }

typedef struct {
  int64_t B, N, off;
  float *logits, *dlogits, loss, dloss;
} sl_case;

static void sl_alloc(sl_case *k, int64_t B, int64_t N, int64_t off, uint64_t seed, float std, float mean) {
  k->B = B; k->N = N; k->off = off;
  k->logits = vt_alloc(B * N);
  k->dlogits = vt_alloc(B * N);
  vt_fill_normal(k->logits, B * N, seed, std);
  for (int64_t i = 0; i < B * N; i++) k->logits[i] += mean;
  k->loss = 0;
  k->dloss = 1;
}

static void sl_free(sl_case *k) { free(k->logits); free(k->dlogits); }

static void sl_forward(void *ctx) {
  sl_case *k = ctx;
  int64_t s[2] = {k->B, k->N}, s1[1] = {1};
  vlm_tensor logits = vlm_tensor_cpu_f32(k->logits, 2, s), loss = vlm_tensor_cpu_f32(&k->loss, 1, s1);
  vlm_sigmoid_loss_forward(&loss, &logits, k->off);
}

static void sl_backward(void *ctx) {
  sl_case *k = ctx;
  int64_t s[2] = {k->B, k->N}, s1[1] = {1};
  vlm_tensor logits = vlm_tensor_cpu_f32(k->logits, 2, s), dlogits = vlm_tensor_cpu_f32(k->dlogits, 2, s);
  vlm_tensor dloss = vlm_tensor_cpu_f32(&k->dloss, 1, s1);
  vlm_sigmoid_loss_backward(&dlogits, &dloss, &logits, k->off);
}

/* The loss and its gradient in double, written out from the definition
 * (-log sigmoid(z) = log(1 + exp(-z)), fine for the moderate logits used here). */
static double want_loss(const sl_case *k) {
  double t = 0;
  for (int64_t i = 0; i < k->B; i++)
    for (int64_t j = 0; j < k->N; j++) {
      double y = j == k->off + i ? 1 : -1, z = y * k->logits[i * k->N + j];
      t += log(1 + exp(-z));
    }
  return t / (double)k->B;
}

static double want_grad(const sl_case *k, int64_t i, int64_t j) {
  double y = j == k->off + i ? 1 : -1, z = y * k->logits[i * k->N + j];
  return (double)k->dloss / (double)k->B * -y / (1 + exp(z));
}

static void test_values(void) {
  const int64_t cases[][3] = {{1, 1, 0}, {4, 4, 0}, {3, 12, 6}, {5, 20, 0}, {5, 20, 15}, {16, 48, 16}};
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode((vlm_kernel_mode)mode);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
      sl_case k;
      sl_alloc(&k, cases[c][0], cases[c][1], cases[c][2], 10 + c, 3.0f, -2.0f);
      sl_forward(&k);
      double w = want_loss(&k);
      CHECK(fabs(k.loss - w) <= 1e-6 * fmax(1, fabs(w)), "%s [%lld,%lld] off %lld: loss %.8g, expected %.8g",
            mode_name(mode), (long long)k.B, (long long)k.N, (long long)k.off, k.loss, w);
      k.dloss = 0.5f;
      sl_backward(&k);
      double err = 0;
      for (int64_t i = 0; i < k.B; i++)
        for (int64_t j = 0; j < k.N; j++) err = fmax(err, fabs(k.dlogits[i * k.N + j] - want_grad(&k, i, j)));
      CHECK(err < 1e-7, "%s [%lld,%lld] off %lld: dlogits off by %.3g", mode_name(mode), (long long)k.B,
            (long long)k.N, (long long)k.off, err);
      sl_free(&k);
    }
    /* a known value: one pair, logit 0: -log sigmoid(0) = ln 2 */
    sl_case k;
    sl_alloc(&k, 1, 1, 0, 1, 0.0f, 0.0f);
    sl_forward(&k);
    CHECK(fabsf(k.loss - (float)log(2.0)) < 1e-7f, "%s: logit 0 gives ln 2, got %.8g", mode_name(mode), k.loss);
    sl_backward(&k);
    CHECK(fabsf(k.dlogits[0] + 0.5f) < 1e-7f, "%s: its gradient is -1/2, got %.8g", mode_name(mode), k.dlogits[0]);
    sl_free(&k);
  }
}

/* |logits| up to 1e4: log sigmoid by min(z, 0) - log1p(exp(-|z|)) stays finite and exact. */
static void test_large_logits(void) {
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode((vlm_kernel_mode)mode);
    sl_case k;
    sl_alloc(&k, 2, 3, 0, 1, 0.0f, 0.0f);
    /* row 0: positive 1e4 (loss 0), negatives -1e4 (0) and 1e4 (1e4);
     * row 1: negative 1e4 (1e4), positive -1e4 (1e4), negative -100 (~0) */
    float x[6] = {1e4f, -1e4f, 1e4f, 1e4f, -1e4f, -100.0f};
    memcpy(k.logits, x, sizeof x);
    sl_forward(&k);
    sl_backward(&k);
    int finite = isfinite(k.loss);
    for (int i = 0; i < 6; i++) finite &= isfinite(k.dlogits[i]);
    CHECK(finite && fabs(k.loss - 3e4 / 2) < 1e-2, "%s: large logits: loss %g (expected 15000)", mode_name(mode),
          k.loss);
    CHECK(k.dlogits[0] == 0.0f && k.dlogits[1] == 0.0f && k.dlogits[2] == 0.5f && k.dlogits[3] == 0.5f &&
              k.dlogits[4] == -0.5f && fabsf(k.dlogits[5]) < 1e-30f,
          "%s: large logits: saturated gradients %g %g %g %g %g %g", mode_name(mode), k.dlogits[0], k.dlogits[1],
          k.dlogits[2], k.dlogits[3], k.dlogits[4], k.dlogits[5]);
    sl_free(&k);
  }
}

static void test_gradcheck(void) {
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode((vlm_kernel_mode)mode);
    /* one float loss: its rounding over 2h is the numeric gradient's noise floor, so the
     * shapes stay small (per-element gradients ~1/B) */
    const int64_t cases[][3] = {{6, 6, 0}, {1, 3, 2}, {4, 12, 4}};
    for (int s = 0; s < 3; s++) {
      sl_case k;
      sl_alloc(&k, cases[s][0], cases[s][1], cases[s][2], 50 + s, 2.0f, -1.0f);
      vt_gc_input in[1] = {{"logits", k.logits, k.dlogits, k.B * k.N}};
      vt_gradcheck g = {sl_forward, sl_backward, &k, &k.loss, &k.dloss, 1, in, 1, 0, 0, 0, 4 + s};
      char what[80];
      snprintf(what, sizeof what, "sigmoid_loss %s [%lld,%lld] off %lld", mode_name(mode), (long long)k.B,
               (long long)k.N, (long long)k.off);
      vt_gradcheck_run(what, &g);
      sl_free(&k);
    }
  }
}

static void test_fast_vs_ref(int64_t B, int64_t N, int64_t off, float std, float mean) {
  sl_case a, b;
  sl_alloc(&a, B, N, off, 60 + B + N, std, mean);
  sl_alloc(&b, B, N, off, 60 + B + N, std, mean);
  vt_fill_normal(a.dlogits, B * N, 61, 1.0f);
  memcpy(b.dlogits, a.dlogits, sizeof(float) * (size_t)(B * N));
  a.dloss = b.dloss = 2.5f;
  vlm_set_kernel_mode(VLM_KERNELS_REF);
  sl_forward(&a);
  sl_backward(&a);
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  sl_forward(&b);
  sl_backward(&b);
  double e_l = fabs((double)b.loss - a.loss) / fmax(fabs((double)a.loss), 1e-6);
  double e_d = vt_max_rel(b.dlogits, a.dlogits, B * N, 1e-6);
  CHECK(e_l < 1e-5 && e_d < 1e-5, "sigmoid_loss fast vs ref [%lld,%lld] off %lld: loss %.2g dlogits %.2g",
        (long long)B, (long long)N, (long long)off, e_l, e_d);
  sl_free(&a);
  sl_free(&b);
}

static void test_accumulate(void) {
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode((vlm_kernel_mode)mode);
    sl_case k;
    int64_t B = 300, N = 600, n = B * N;
    sl_alloc(&k, B, N, 300, 70, 2.0f, -3.0f);
    sl_backward(&k);
    float *g0 = vt_alloc(n), *p = vt_alloc(n);
    memcpy(g0, k.dlogits, sizeof(float) * (size_t)n);
    vt_fill_normal(p, n, 71, 1.0f);
    memcpy(k.dlogits, p, sizeof(float) * (size_t)n);
    sl_backward(&k);
    for (int64_t i = 0; i < n; i++) p[i] += g0[i];
    CHECK(vt_max_rel(k.dlogits, p, n, 1e-6) < 1e-6, "sigmoid_loss %s: backward accumulates", mode_name(mode));
    free(g0);
    free(p);
    sl_free(&k);
  }
}

typedef struct { int64_t B, N, off; int backward; } bad_ctx;

static void bad_call(void *ctx) {
  bad_ctx *c = ctx;
  float logits[64] = {0}, dl[64] = {0}, loss = 0, dloss = 1;
  int64_t s[2] = {c->B, c->N}, s1[1] = {1};
  vlm_tensor tl = vlm_tensor_cpu_f32(logits, 2, s), tdl = vlm_tensor_cpu_f32(dl, 2, s);
  vlm_tensor tloss = vlm_tensor_cpu_f32(&loss, 1, s1), tdloss = vlm_tensor_cpu_f32(&dloss, 1, s1);
  if (c->backward) vlm_sigmoid_loss_backward(&tdl, &tdloss, &tl, c->off);
  else vlm_sigmoid_loss_forward(&tloss, &tl, c->off);
}

static void test_bad_offset(void) {
  bad_ctx c = {4, 8, 5, 0};
  vt_expect_abort("sigmoid_loss: positives past the last column", bad_call, &c, "sigmoid_loss", "[5, 9)");
  c.off = -1;
  c.backward = 1;
  vt_expect_abort("sigmoid_loss backward: a negative offset", bad_call, &c, "sigmoid_loss", "outside the 8 columns");
}

int main(void) {
  test_values();
  test_large_logits();
  test_gradcheck();
  const int64_t shapes[][3] = {{1, 1, 0}, {7, 7, 0}, {37, 1000, 500}, {400, 768, 368}, {256, 4099, 0}, {3, 49408, 7}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
    test_fast_vs_ref(shapes[i][0], shapes[i][1], shapes[i][2], 3.0f, -10.0f);
  test_fast_vs_ref(64, 333, 100, 1e3f, 0.0f);
  test_accumulate();
  test_bad_offset();
  return vt_finish();
}
