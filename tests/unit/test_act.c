/* GELU (erf form) and QuickGELU: known values, extremes, gradient check (both
 * kernel modes), fast vs reference, += semantics of the backward. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu/cpu.h"
#include "gradcheck.h"

static const char *mode_name(int m) { return m == VLM_KERNELS_REF ? "ref" : "fast"; }
static const char *act_name(vlm_act a) { return a == VLM_ACT_GELU ? "gelu" : "quick_gelu"; }

typedef struct {
  vlm_act act;
  int64_t n;
  float *x, *out, *dout, *dx;
} act_case;

static void act_forward(void *ctx) {
  act_case *k = ctx;
  int64_t s[1] = {k->n};
  vlm_tensor x = vlm_tensor_cpu_f32(k->x, 1, s), out = vlm_tensor_cpu_f32(k->out, 1, s);
  vlm_act_forward(k->act, &out, &x);
}

static void act_backward(void *ctx) {
  act_case *k = ctx;
  int64_t s[1] = {k->n};
  vlm_tensor x = vlm_tensor_cpu_f32(k->x, 1, s), dout = vlm_tensor_cpu_f32(k->dout, 1, s);
  vlm_tensor dx = vlm_tensor_cpu_f32(k->dx, 1, s);
  vlm_act_backward(k->act, &dx, &dout, &x);
}

static void act_alloc(act_case *k, vlm_act act, int64_t n, uint64_t seed, float std) {
  k->act = act;
  k->n = n;
  k->x = vt_alloc(n);
  k->out = vt_alloc(n);
  k->dout = vt_alloc(n);
  k->dx = vt_alloc(n);
  vt_fill_normal(k->x, n, seed, std);
  vt_fill_normal(k->dout, n, seed + 1, 1.0f);
}

static void act_free(act_case *k) { free(k->x); free(k->out); free(k->dout); free(k->dx); }

static void test_known(void) {
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode((vlm_kernel_mode)mode);
    /* A 2-d input: elementwise on any shape. */
    float x[6] = {1, 0, -1, 2, 3, -3}, y[6], q[6];
    int64_t s[2] = {2, 3};
    vlm_tensor tx = vlm_tensor_cpu_f32(x, 2, s), ty = vlm_tensor_cpu_f32(y, 2, s), tq = vlm_tensor_cpu_f32(q, 2, s);
    vlm_act_forward(VLM_ACT_GELU, &ty, &tx);
    vlm_act_forward(VLM_ACT_QUICK_GELU, &tq, &tx);
    CHECK(fabsf(y[0] - 0.8413447f) < 1e-6f && y[1] == 0.0f && fabsf(y[2] + 0.1586553f) < 1e-6f &&
              fabsf(y[3] - 1.9544997f) < 2e-6f && fabsf(y[5] + 0.0040497f) < 1e-6f,
          "%s: gelu(1, 0, -1, 2, -3) = %.7f %g %.7f %.7f %.7f", mode_name(mode), y[0], y[1], y[2], y[3], y[5]);
    double q1 = 1.0 / (1.0 + exp(-1.702));
    CHECK(fabs(q[0] - q1) < 1e-6 && q[1] == 0.0f && fabs(q[2] + (1.0 - q1)) < 1e-6,
          "%s: quick_gelu(1) = %.7f, expected %.7f", mode_name(mode), q[0], q1);
    /* Derivatives at known points: GELU'(0) = 0.5, QuickGELU'(0) = 0.5, GELU'(1) = 1.0833155. */
    float g[6] = {1, 1, 1, 1, 1, 1}, d[6] = {0};
    vlm_tensor tg = vlm_tensor_cpu_f32(g, 2, s), td = vlm_tensor_cpu_f32(d, 2, s);
    vlm_act_backward(VLM_ACT_GELU, &td, &tg, &tx);
    CHECK(fabsf(d[0] - 1.0833155f) < 2e-6f && fabsf(d[1] - 0.5f) < 1e-7f, "%s: gelu'(1) %.7f gelu'(0) %g",
          mode_name(mode), d[0], d[1]);
    memset(d, 0, sizeof d);
    vlm_act_backward(VLM_ACT_QUICK_GELU, &td, &tg, &tx);
    CHECK(fabsf(d[1] - 0.5f) < 1e-7f, "%s: quick_gelu'(0) %g", mode_name(mode), d[1]);
  }
}

/* Large magnitudes: exact limits, no NaN/Inf in values or gradients. */
static void test_extremes(void) {
  float x[10] = {-1e30f, -1000, -100, -20, -1e-30f, 1e-30f, 20, 100, 1000, 1e30f};
  int64_t s[1] = {10};
  for (int mode = 0; mode < 2; mode++)
    for (int a = 0; a < 2; a++) {
      vlm_set_kernel_mode((vlm_kernel_mode)mode);
      float y[10], g[10], d[10] = {0};
      for (int i = 0; i < 10; i++) g[i] = 1.0f;
      vlm_tensor tx = vlm_tensor_cpu_f32(x, 1, s), ty = vlm_tensor_cpu_f32(y, 1, s);
      vlm_tensor tg = vlm_tensor_cpu_f32(g, 1, s), td = vlm_tensor_cpu_f32(d, 1, s);
      vlm_act_forward((vlm_act)a, &ty, &tx);
      vlm_act_backward((vlm_act)a, &td, &tg, &tx);
      int ok = 1;
      for (int i = 0; i < 10; i++) ok &= isfinite(y[i]) && isfinite(d[i]);
      ok &= y[0] == 0.0f && y[1] == 0.0f && y[9] == 1e30f && y[8] == 1000.0f && y[7] == 100.0f;
      ok &= d[0] == 0.0f && d[1] == 0.0f && d[9] == 1.0f && d[8] == 1.0f;
      CHECK(ok, "%s %s: extremes y(-1e30, -1000, 1000, 1e30) = %g %g %g %g, dy = %g %g %g %g", mode_name(mode),
            act_name((vlm_act)a), y[0], y[1], y[8], y[9], d[0], d[1], d[8], d[9]);
    }
}

static void test_gradcheck(void) {
  for (int mode = 0; mode < 2; mode++)
    for (int a = 0; a < 2; a++) {
      vlm_set_kernel_mode((vlm_kernel_mode)mode);
      act_case k;
      act_alloc(&k, (vlm_act)a, 301, 11 + a, 2.0f);
      vt_gc_input in[1] = {{"x", k.x, k.dx, k.n}};
      vt_gradcheck g = {act_forward, act_backward, &k, k.out, k.dout, k.n, in, 1, 0, 0, 0, 5};
      char what[64];
      snprintf(what, sizeof what, "%s %s", act_name((vlm_act)a), mode_name(mode));
      vt_gradcheck_run(what, &g);
      act_free(&k);
    }
}

static void test_fast_vs_ref(vlm_act act, int64_t n, float std) {
  act_case a, b;
  act_alloc(&a, act, n, 99 + n, std);
  act_alloc(&b, act, n, 99 + n, std);
  vt_fill_normal(a.dx, n, 3, 1.0f);
  memcpy(b.dx, a.dx, sizeof(float) * (size_t)n);
  vlm_set_kernel_mode(VLM_KERNELS_REF);
  act_forward(&a);
  act_backward(&a);
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  act_forward(&b);
  act_backward(&b);
  double e_y = vt_max_rel(b.out, a.out, n, 1e-6), e_d = vt_max_rel(b.dx, a.dx, n, 1e-6);
  /* Elementwise, so also check each element against its own magnitude (floor 1e-3). */
  double e_el = 0;
  for (int64_t i = 0; i < n; i++) {
    double e = fabs((double)b.out[i] - a.out[i]) / fmax(fabs((double)a.out[i]), 1e-3);
    if (e > e_el) e_el = e;
  }
  CHECK(e_y < 1e-5 && e_d < 1e-5 && e_el < 1e-5, "%s fast vs ref n=%lld: y %.2g dx %.2g elementwise %.2g",
        act_name(act), (long long)n, e_y, e_d, e_el);
  if (getenv("VT_VERBOSE"))
    printf("  %s fast vs ref n=%lld: y %.2g dx %.2g elementwise %.2g\n", act_name(act), (long long)n, e_y, e_d,
           e_el);
  act_free(&a);
  act_free(&b);
}

static void test_accumulate(void) {
  for (int mode = 0; mode < 2; mode++)
    for (int a = 0; a < 2; a++) {
      vlm_set_kernel_mode((vlm_kernel_mode)mode);
      act_case k;
      int64_t n = 40000; /* above the parallel threshold */
      act_alloc(&k, (vlm_act)a, n, 5, 1.5f);
      act_backward(&k);
      float *g0 = vt_alloc(n), *p = vt_alloc(n);
      memcpy(g0, k.dx, sizeof(float) * (size_t)n);
      vt_fill_normal(p, n, 6, 1.0f);
      memcpy(k.dx, p, sizeof(float) * (size_t)n);
      act_backward(&k);
      for (int64_t i = 0; i < n; i++) p[i] += g0[i];
      CHECK(vt_max_rel(k.dx, p, n, 1e-6) < 1e-6, "%s %s: backward accumulates", act_name((vlm_act)a),
            mode_name(mode));
      /* In place: out == x. */
      float *y = vt_alloc(n);
      act_forward(&k);
      memcpy(y, k.out, sizeof(float) * (size_t)n);
      int64_t s[1] = {n};
      vlm_tensor tx = vlm_tensor_cpu_f32(k.x, 1, s);
      vlm_act_forward((vlm_act)a, &tx, &tx);
      CHECK(!memcmp(y, k.x, sizeof(float) * (size_t)n), "%s %s: in place", act_name((vlm_act)a), mode_name(mode));
      free(g0); free(p); free(y);
      act_free(&k);
    }
}

/* vlm_cpu_act_backward_set: dx written over NaN, equal to zero + accumulate. */
static void test_backward_set(void) {
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  for (int a = 0; a < 2; a++) {
    act_case k;
    int64_t n = 40000;
    act_alloc(&k, (vlm_act)a, n, 7, 2.0f);
    memset(k.dx, 0, sizeof(float) * (size_t)n);
    act_backward(&k);
    float *want = vt_alloc(n);
    memcpy(want, k.dx, sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) k.dx[i] = NAN;
    int64_t s[1] = {n};
    vlm_tensor tx = vlm_tensor_cpu_f32(k.x, 1, s), tg = vlm_tensor_cpu_f32(k.dout, 1, s),
               td = vlm_tensor_cpu_f32(k.dx, 1, s);
    vlm_cpu_act_backward_set((vlm_act)a, &td, &tg, &tx);
    CHECK(!memcmp(want, k.dx, sizeof(float) * (size_t)n), "%s: backward_set = zero + accumulate",
          act_name((vlm_act)a));
    free(want);
    act_free(&k);
  }
}

int main(void) {
  test_known();
  test_extremes();
  test_gradcheck();
  int64_t sizes[] = {1, 7, 13, 16, 17, 1001, 40000, 400 * 3072};
  for (int a = 0; a < 2; a++)
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) test_fast_vs_ref((vlm_act)a, sizes[i], 2.0f);
  test_fast_vs_ref(VLM_ACT_GELU, 100000, 8.0f);
  test_fast_vs_ref(VLM_ACT_QUICK_GELU, 100000, 8.0f);
  test_accumulate();
  test_backward_set();
  return vt_finish();
}
