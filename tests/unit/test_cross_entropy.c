/* Cross-entropy with an ignore index: known values, ignore_index -100 vs 0,
 * all rows ignored, large logits, gradient check (both kernel modes), fast vs
 * reference, += semantics, and the out-of-range target check (in a child
 * process: it aborts). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gradcheck.h"

static const char *mode_name(int m) { return m == VLM_KERNELS_REF ? "ref" : "fast"; }

typedef struct {
  int64_t N, C, ignore;
  int is64;
  int32_t *t32;
  int64_t *t64;
  float *logits, *probs, *dlogits, loss, dloss;
} ce_case;

/* Targets uniform in [0, C); every fourth row gets the ignore index when ignore < 0. */
static void ce_alloc(ce_case *k, int64_t N, int64_t C, int64_t ignore, int is64, uint64_t seed, float std) {
  k->N = N; k->C = C; k->ignore = ignore; k->is64 = is64;
  k->t32 = calloc((size_t)N, sizeof(int32_t));
  k->t64 = calloc((size_t)N, sizeof(int64_t));
  vlm_rng r;
  vlm_rng_seed(&r, seed);
  for (int64_t i = 0; i < N; i++) {
    int64_t t = (ignore < 0 && i % 4 == 3) ? ignore : (int64_t)vlm_rng_below(&r, (uint64_t)C);
    k->t32[i] = (int32_t)t;
    k->t64[i] = t;
  }
  k->logits = vt_alloc(N * C);
  k->probs = vt_alloc(N * C);
  k->dlogits = vt_alloc(N * C);
  vt_fill_normal(k->logits, N * C, seed + 1, std);
  k->loss = 0;
  k->dloss = 1;
}

static void ce_free(ce_case *k) { free(k->t32); free(k->t64); free(k->logits); free(k->probs); free(k->dlogits); }

static vlm_tensor targets_tensor(ce_case *k) {
  int64_t s[1] = {k->N};
  return k->is64 ? vlm_tensor_make(k->t64, VLM_I64, VLM_CPU, 1, s) : vlm_tensor_make(k->t32, VLM_I32, VLM_CPU, 1, s);
}

static void ce_forward(void *ctx) {
  ce_case *k = ctx;
  int64_t s[2] = {k->N, k->C}, s1[1] = {1};
  vlm_tensor logits = vlm_tensor_cpu_f32(k->logits, 2, s), probs = vlm_tensor_cpu_f32(k->probs, 2, s);
  vlm_tensor loss = vlm_tensor_cpu_f32(&k->loss, 1, s1), t = targets_tensor(k);
  vlm_cross_entropy_forward(&loss, &probs, &logits, &t, k->ignore);
}

static void ce_backward(void *ctx) {
  ce_case *k = ctx;
  int64_t s[2] = {k->N, k->C}, s1[1] = {1};
  vlm_tensor dlogits = vlm_tensor_cpu_f32(k->dlogits, 2, s), probs = vlm_tensor_cpu_f32(k->probs, 2, s);
  vlm_tensor dloss = vlm_tensor_cpu_f32(&k->dloss, 1, s1), t = targets_tensor(k);
  vlm_cross_entropy_backward(&dlogits, &dloss, &probs, &t, k->ignore);
}

/* Row loss in double, for the expected values. */
static double row_loss(const float *x, int64_t C, int64_t t) {
  double m = -INFINITY, s = 0;
  for (int64_t c = 0; c < C; c++) m = fmax(m, x[c]);
  for (int64_t c = 0; c < C; c++) s += exp(x[c] - m);
  return m + log(s) - x[t];
}

static void test_known(void) {
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode((vlm_kernel_mode)mode);
    ce_case k;
    ce_alloc(&k, 2, 3, -100, 0, 1, 1.0f);
    float x[6] = {1, 2, 3, 0, 0, 0};
    memcpy(k.logits, x, sizeof x);
    k.t32[0] = 2;
    k.t32[1] = 0;
    ce_forward(&k);
    double want = (-log(0.66524096) + log(3.0)) / 2;
    CHECK(fabs(k.loss - want) < 1e-6, "%s: loss %.7f, expected %.7f", mode_name(mode), k.loss, want);
    CHECK(fabsf(k.probs[2] - 0.66524096f) < 1e-7f && fabsf(k.probs[3] - 1.0f / 3) < 1e-7f, "%s: probs",
          mode_name(mode));
    k.dloss = 2.0f;
    ce_backward(&k);
    /* dlogits = 2 * (p - onehot) / 2. */
    CHECK(fabsf(k.dlogits[2] - (0.66524096f - 1)) < 1e-6f && fabsf(k.dlogits[0] - 0.09003057f) < 1e-6f &&
              fabsf(k.dlogits[3] - (1.0f / 3 - 1)) < 1e-6f && fabsf(k.dlogits[4] - 1.0f / 3) < 1e-6f,
          "%s: dlogits %g %g %g", mode_name(mode), k.dlogits[0], k.dlogits[2], k.dlogits[3]);
    ce_free(&k);
  }
}

/* The same logits and targets (all in range) with ignore_index -100 (nothing
 * ignored) and 0 (the rows whose target is 0 drop out of mean and gradient). */
static void test_ignore_index(void) {
  for (int mode = 0; mode < 2; mode++)
    for (int is64 = 0; is64 < 2; is64++) {
      vlm_set_kernel_mode((vlm_kernel_mode)mode);
      ce_case k;
      ce_alloc(&k, 40, 5, 0, is64, 9, 2.0f);
      for (int64_t i = 0; i < k.N; i += 3) { k.t32[i] = 0; k.t64[i] = 0; }
      double all = 0, kept = 0;
      int64_t n_kept = 0;
      for (int64_t i = 0; i < k.N; i++) {
        double l = row_loss(k.logits + i * k.C, k.C, k.t64[i]);
        all += l;
        if (k.t64[i] != 0) { kept += l; n_kept++; }
      }
      k.ignore = -100;
      ce_forward(&k);
      CHECK(fabs(k.loss - all / k.N) < 1e-5 * fabs(all / k.N), "%s %s: ignore -100: loss %g expected %g",
            mode_name(mode), is64 ? "I64" : "I32", k.loss, all / k.N);
      k.ignore = 0;
      ce_forward(&k);
      CHECK(fabs(k.loss - kept / n_kept) < 1e-5 * fabs(kept / n_kept), "%s %s: ignore 0: loss %g expected %g",
            mode_name(mode), is64 ? "I64" : "I32", k.loss, kept / n_kept);
      ce_backward(&k);
      int ok = 1;
      for (int64_t i = 0; i < k.N; i++) {
        double rs = 0;
        for (int64_t c = 0; c < k.C; c++) {
          double want = k.t64[i] == 0 ? 0.0 : ((double)k.probs[i * k.C + c] - (c == k.t64[i])) / (double)n_kept;
          ok &= fabs(k.dlogits[i * k.C + c] - want) < 1e-7;
          rs += k.dlogits[i * k.C + c];
        }
        ok &= fabs(rs) < 1e-7; /* each row's gradient sums to zero */
      }
      CHECK(ok, "%s %s: ignore 0: gradient is zero on ignored rows, (p - onehot)/count elsewhere", mode_name(mode),
            is64 ? "I64" : "I32");
      ce_free(&k);
    }
}

static void test_all_ignored(void) {
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode((vlm_kernel_mode)mode);
    ce_case k;
    ce_alloc(&k, 6, 4, -100, 1, 3, 1.0f);
    for (int64_t i = 0; i < k.N; i++) k.t64[i] = -100;
    k.loss = 123;
    ce_forward(&k);
    CHECK(k.loss == 0.0f, "%s: all rows ignored: loss %g", mode_name(mode), k.loss);
    double s = 0;
    for (int64_t c = 0; c < k.C; c++) s += k.probs[c];
    CHECK(fabs(s - 1) < 1e-6, "%s: probs still saved for ignored rows", mode_name(mode));
    for (int64_t i = 0; i < k.N * k.C; i++) k.dlogits[i] = 0.25f;
    ce_backward(&k);
    int same = 1;
    for (int64_t i = 0; i < k.N * k.C; i++) same &= k.dlogits[i] == 0.25f;
    CHECK(same, "%s: all rows ignored: backward adds nothing", mode_name(mode));
    ce_free(&k);
  }
}

static void test_large_logits(void) {
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode((vlm_kernel_mode)mode);
    ce_case k;
    ce_alloc(&k, 2, 3, -100, 0, 3, 1.0f);
    float x[6] = {1e4f, 0, -1e4f, 1e4f, 1e4f, -1e4f};
    memcpy(k.logits, x, sizeof x);
    k.t32[0] = 1; /* loss 1e4 */
    k.t32[1] = 0; /* loss ln 2 */
    ce_forward(&k);
    ce_backward(&k);
    int finite = isfinite(k.loss);
    for (int i = 0; i < 6; i++) finite &= isfinite(k.probs[i]) && isfinite(k.dlogits[i]);
    CHECK(finite && fabs(k.loss - (1e4 + log(2.0)) / 2) < 1e-3, "%s: large logits: loss %g", mode_name(mode), k.loss);
    ce_free(&k);
  }
}

static void test_gradcheck(void) {
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode((vlm_kernel_mode)mode);
    /* The output is one float loss (~ln C): its rounding (~2.4e-7 at 3.5) over 2h
     * is the noise floor of the numeric gradient, so shapes stay small enough
     * that the per-element gradients (~p/count) sit well above it. */
    int64_t shapes[3][2] = {{8, 10}, {1, 3}, {5, 33}};
    for (int s = 0; s < 3; s++) {
      ce_case k;
      ce_alloc(&k, shapes[s][0], shapes[s][1], -100, s % 2, 50 + s, 1.5f);
      vt_gc_input in[1] = {{"logits", k.logits, k.dlogits, k.N * k.C}};
      vt_gradcheck g = {ce_forward, ce_backward, &k, &k.loss, &k.dloss, 1, in, 1, 0, 0, 0, 4 + s};
      char what[64];
      snprintf(what, sizeof what, "cross_entropy %s [%lld,%lld]", mode_name(mode), (long long)k.N, (long long)k.C);
      vt_gradcheck_run(what, &g);
      ce_free(&k);
    }
  }
}

static void test_fast_vs_ref(int64_t N, int64_t C, int64_t ignore, float std) {
  ce_case a, b;
  ce_alloc(&a, N, C, ignore, 1, 60 + N + C, std);
  ce_alloc(&b, N, C, ignore, 1, 60 + N + C, std);
  vt_fill_normal(a.dlogits, N * C, 61, 1.0f);
  memcpy(b.dlogits, a.dlogits, sizeof(float) * (size_t)(N * C));
  a.dloss = b.dloss = 2.5f;
  vlm_set_kernel_mode(VLM_KERNELS_REF);
  ce_forward(&a);
  ce_backward(&a);
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  ce_forward(&b);
  ce_backward(&b);
  double e_l = fabs((double)b.loss - a.loss) / fmax(fabs((double)a.loss), 1e-6);
  double e_p = vt_max_rel(b.probs, a.probs, N * C, 1e-6), e_d = vt_max_rel(b.dlogits, a.dlogits, N * C, 1e-6);
  CHECK(e_l < 1e-5 && e_p < 1e-5 && e_d < 1e-5, "cross_entropy fast vs ref [%lld,%lld]: loss %.2g probs %.2g dlogits %.2g",
        (long long)N, (long long)C, e_l, e_p, e_d);
  if (getenv("VT_VERBOSE"))
    printf("  cross_entropy fast vs ref [%lld,%lld] std %g: loss %.2g probs %.2g dlogits %.2g\n", (long long)N,
           (long long)C, (double)std, e_l, e_p, e_d);
  ce_free(&a);
  ce_free(&b);
}

static void test_accumulate(void) {
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode((vlm_kernel_mode)mode);
    ce_case k;
    int64_t N = 300, C = 257, n = N * C;
    ce_alloc(&k, N, C, -100, 0, 70, 2.0f);
    ce_forward(&k);
    ce_backward(&k);
    float *g0 = vt_alloc(n), *p = vt_alloc(n);
    memcpy(g0, k.dlogits, sizeof(float) * (size_t)n);
    vt_fill_normal(p, n, 71, 1.0f);
    memcpy(k.dlogits, p, sizeof(float) * (size_t)n);
    ce_backward(&k);
    for (int64_t i = 0; i < n; i++) p[i] += g0[i];
    CHECK(vt_max_rel(k.dlogits, p, n, 1e-6) < 1e-6, "cross_entropy %s: backward accumulates", mode_name(mode));
    free(g0); free(p);
    ce_free(&k);
  }
}

typedef struct { int64_t target, ignore; int backward; } bad_ctx;

static void bad_call(void *ctx) {
  bad_ctx *c = ctx;
  float logits[6] = {0}, probs[6], loss, dloss = 1, dl[6] = {0};
  int64_t t[2] = {0, c->target}, s[2] = {2, 3}, s1[1] = {1}, st[1] = {2};
  vlm_tensor tl = vlm_tensor_cpu_f32(logits, 2, s), tp = vlm_tensor_cpu_f32(probs, 2, s);
  vlm_tensor tloss = vlm_tensor_cpu_f32(&loss, 1, s1), tdloss = vlm_tensor_cpu_f32(&dloss, 1, s1);
  vlm_tensor tdl = vlm_tensor_cpu_f32(dl, 2, s), tt = vlm_tensor_make(t, VLM_I64, VLM_CPU, 1, st);
  if (c->backward) vlm_cross_entropy_backward(&tdl, &tdloss, &tp, &tt, c->ignore);
  else vlm_cross_entropy_forward(&tloss, &tp, &tl, &tt, c->ignore);
}

static void test_bad_targets(void) {
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode((vlm_kernel_mode)mode);
    char what[80];
    bad_ctx c = {3, -100, 0};
    snprintf(what, sizeof what, "cross_entropy %s: target 3 of 3 classes", mode_name(mode));
    vt_expect_abort(what, bad_call, &c, "target 3 ", "[0, 3)");
    c.target = -100; /* -100 is only ignored when it is the ignore index */
    c.ignore = 0;
    snprintf(what, sizeof what, "cross_entropy %s: target -100 with ignore_index 0", mode_name(mode));
    vt_expect_abort(what, bad_call, &c, "target -100 ", "ignore index 0");
    c.target = 7;
    c.ignore = -100;
    c.backward = 1;
    snprintf(what, sizeof what, "cross_entropy %s: backward target 7", mode_name(mode));
    vt_expect_abort(what, bad_call, &c, "target 7 ", "[0, 3)");
  }
}

int main(void) {
  test_known();
  test_ignore_index();
  test_all_ignored();
  test_large_logits();
  test_gradcheck();
  int64_t shapes[][2] = {{1, 1}, {1, 5}, {7, 1}, {37, 1000}, {400, 768}, {256, 4099}, {3, 49408}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) test_fast_vs_ref(shapes[i][0], shapes[i][1], -100, 3.0f);
  test_fast_vs_ref(64, 333, -100, 1e3f);
  test_accumulate();
  test_bad_targets();
  return vt_finish();
}
