/* L2 normalization: known values, the zero vector, gradient check in both
 * regimes (norm > eps and clamped) and both kernel modes, fast vs reference,
 * += semantics of the backward. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"

static const char *mode_name(int m) { return m == VLM_KERNELS_REF ? "ref" : "fast"; }

typedef struct {
  int64_t R, C;
  float eps;
  float *x, *y, *norm, *dy, *dx;
} l2_case;

static void l2_alloc(l2_case *k, int64_t R, int64_t C, uint64_t seed, float std, float eps) {
  k->R = R;
  k->C = C;
  k->eps = eps;
  k->x = vt_alloc(R * C);
  k->y = vt_alloc(R * C);
  k->norm = vt_alloc(R);
  k->dy = vt_alloc(R * C);
  k->dx = vt_alloc(R * C);
  vt_fill_normal(k->x, R * C, seed, std);
  vt_fill_normal(k->dy, R * C, seed + 1, 1.0f);
}

static void l2_free(l2_case *k) { free(k->x); free(k->y); free(k->norm); free(k->dy); free(k->dx); }

static void l2_forward(void *ctx) {
  l2_case *k = ctx;
  int64_t s[2] = {k->R, k->C}, sr[1] = {k->R};
  vlm_tensor x = vlm_tensor_cpu_f32(k->x, 2, s), y = vlm_tensor_cpu_f32(k->y, 2, s);
  vlm_tensor n = vlm_tensor_cpu_f32(k->norm, 1, sr);
  vlm_l2norm_forward(&y, &n, &x, k->eps);
}

static void l2_backward(void *ctx) {
  l2_case *k = ctx;
  int64_t s[2] = {k->R, k->C}, sr[1] = {k->R};
  vlm_tensor x = vlm_tensor_cpu_f32(k->x, 2, s), dy = vlm_tensor_cpu_f32(k->dy, 2, s);
  vlm_tensor dx = vlm_tensor_cpu_f32(k->dx, 2, s), n = vlm_tensor_cpu_f32(k->norm, 1, sr);
  vlm_l2norm_backward(&dx, &dy, &x, &n, k->eps);
}

static void test_known(void) {
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode((vlm_kernel_mode)mode);
    /* [1, 3, 2]: rows [3, 4], [0, 0], [1e-13, 0]. */
    float x[6] = {3, 4, 0, 0, 1e-13f, 0}, y[6], n[3];
    int64_t s[3] = {1, 3, 2}, sr[1] = {3};
    vlm_tensor tx = vlm_tensor_cpu_f32(x, 3, s), ty = vlm_tensor_cpu_f32(y, 3, s), tn = vlm_tensor_cpu_f32(n, 1, sr);
    const float eps = 1e-12f;
    vlm_l2norm_forward(&ty, &tn, &tx, eps);
    CHECK(fabsf(y[0] - 0.6f) < 1e-7f && fabsf(y[1] - 0.8f) < 1e-7f && fabsf(n[0] - 5.0f) < 1e-6f,
          "%s: normalize([3,4]) = %g %g, norm %g", mode_name(mode), y[0], y[1], n[0]);
    CHECK(y[2] == 0.0f && y[3] == 0.0f && n[1] == 0.0f, "%s: zero vector gives zeros", mode_name(mode));
    CHECK(fabsf(y[4] - 0.1f) < 1e-7f, "%s: [1e-13, 0] / eps = %g", mode_name(mode), y[4]);
    /* Backward: clamped rows get dy / eps; finite everywhere. */
    float dy[6] = {1, 2, 3, -4, 5, 6}, dx[6] = {0};
    vlm_tensor tdy = vlm_tensor_cpu_f32(dy, 3, s), tdx = vlm_tensor_cpu_f32(dx, 3, s);
    vlm_l2norm_backward(&tdx, &tdy, &tx, &tn, eps);
    /* Row 0: dx = dy/n - x (x.dy)/n^3 = [1,2]/5 - [3,4]*11/125. */
    CHECK(fabsf(dx[0] - (0.2f - 33.0f / 125)) < 1e-6f && fabsf(dx[1] - (0.4f - 44.0f / 125)) < 1e-6f,
          "%s: backward [3,4]: %g %g", mode_name(mode), dx[0], dx[1]);
    CHECK(fabs(dx[2] - 3e12) < 3e12 * 1e-6 && fabs(dx[3] + 4e12) < 4e12 * 1e-6 && fabs(dx[5] - 6e12) < 6e12 * 1e-6,
          "%s: zero vector backward = dy / eps: %g %g", mode_name(mode), dx[2], dx[3]);
    int finite = 1;
    for (int i = 0; i < 6; i++) finite &= isfinite(dx[i]);
    CHECK(finite, "%s: finite gradients", mode_name(mode));
  }
}

static void test_gradcheck(void) {
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode((vlm_kernel_mode)mode);
    char what[96];
    /* Regime norm > eps (eps = 1e-12 as callers pass). */
    l2_case k;
    l2_alloc(&k, 6, 13, 50, 1.0f, 1e-12f);
    vt_gc_input in[1] = {{"x", k.x, k.dx, k.R * k.C}};
    vt_gradcheck g = {l2_forward, l2_backward, &k, k.y, k.dy, k.R * k.C, in, 1, 0, 0, 0, 2};
    snprintf(what, sizeof what, "l2norm %s norm > eps", mode_name(mode));
    vt_gradcheck_run(what, &g);
    l2_free(&k);
    /* Clamped regime: eps = 10, rows of norm ~ 0.3 (far from the kink). */
    l2_alloc(&k, 5, 9, 51, 0.1f, 10.0f);
    vt_gc_input in2[1] = {{"x", k.x, k.dx, k.R * k.C}};
    vt_gradcheck g2 = {l2_forward, l2_backward, &k, k.y, k.dy, k.R * k.C, in2, 1, 0, 0, 0, 3};
    snprintf(what, sizeof what, "l2norm %s clamped (norm < eps)", mode_name(mode));
    vt_gradcheck_run(what, &g2);
    l2_free(&k);
    /* Mixed: eps = 1; rows scaled to norm ~0.2 or ~5 alternately, both away from 1. */
    l2_alloc(&k, 8, 7, 52, 1.0f, 1.0f);
    for (int64_t r = 0; r < k.R; r++) {
      double s = 0;
      for (int64_t c = 0; c < k.C; c++) s += (double)k.x[r * k.C + c] * k.x[r * k.C + c];
      double target = (r % 2) ? 5.0 : 0.2;
      for (int64_t c = 0; c < k.C; c++) k.x[r * k.C + c] = (float)(k.x[r * k.C + c] * target / sqrt(s));
    }
    vt_gc_input in3[1] = {{"x", k.x, k.dx, k.R * k.C}};
    vt_gradcheck g3 = {l2_forward, l2_backward, &k, k.y, k.dy, k.R * k.C, in3, 1, 0, 0, 0, 4};
    snprintf(what, sizeof what, "l2norm %s mixed rows", mode_name(mode));
    vt_gradcheck_run(what, &g3);
    l2_free(&k);
  }
}

static void test_fast_vs_ref(int64_t R, int64_t C, float std, float eps) {
  l2_case a, b;
  l2_alloc(&a, R, C, 60 + R + C, std, eps);
  l2_alloc(&b, R, C, 60 + R + C, std, eps);
  if (R > 2) { /* a zero row */
    memset(a.x + C, 0, sizeof(float) * (size_t)C);
    memset(b.x + C, 0, sizeof(float) * (size_t)C);
  }
  vt_fill_normal(a.dx, R * C, 61, 1.0f);
  memcpy(b.dx, a.dx, sizeof(float) * (size_t)(R * C));
  vlm_set_kernel_mode(VLM_KERNELS_REF);
  l2_forward(&a);
  l2_backward(&a);
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  l2_forward(&b);
  l2_backward(&b);
  double e_y = vt_max_rel(b.y, a.y, R * C, 1e-6), e_n = vt_max_rel(b.norm, a.norm, R, 1e-6);
  double e_d;
  if (R > 2) { /* the zero row's gradient (dy / eps ~ 1e12) dominates any scale: compare the rest apart */
    e_d = vt_max_rel(b.dx + C, a.dx + C, C, 1e-6);
    double e0 = vt_max_rel(b.dx, a.dx, C, 1e-6), e2 = vt_max_rel(b.dx + 2 * C, a.dx + 2 * C, (R - 2) * C, 1e-6);
    e_d = fmax(e_d, fmax(e0, e2));
  } else {
    e_d = vt_max_rel(b.dx, a.dx, R * C, 1e-6);
  }
  CHECK(e_y < 1e-5 && e_n < 1e-5 && e_d < 1e-5, "l2norm fast vs ref [%lld,%lld] eps %g: y %.2g norm %.2g dx %.2g",
        (long long)R, (long long)C, (double)eps, e_y, e_n, e_d);
  if (getenv("VT_VERBOSE"))
    printf("  l2norm fast vs ref [%lld,%lld] eps %g: y %.2g norm %.2g dx %.2g\n", (long long)R, (long long)C,
           (double)eps, e_y, e_n, e_d);
  l2_free(&a);
  l2_free(&b);
}

static void test_accumulate(void) {
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode((vlm_kernel_mode)mode);
    l2_case k;
    int64_t R = 256, C = 512, n = R * C;
    l2_alloc(&k, R, C, 80, 1.0f, 1e-12f);
    l2_forward(&k);
    l2_backward(&k);
    float *g0 = vt_alloc(n), *p = vt_alloc(n);
    memcpy(g0, k.dx, sizeof(float) * (size_t)n);
    vt_fill_normal(p, n, 81, 1.0f);
    memcpy(k.dx, p, sizeof(float) * (size_t)n);
    l2_backward(&k);
    for (int64_t i = 0; i < n; i++) p[i] += g0[i];
    CHECK(vt_max_rel(k.dx, p, n, 1e-6) < 1e-6, "l2norm %s: backward accumulates", mode_name(mode));
    /* Forward without norm; in place (y == x). */
    float *y = vt_alloc(n);
    memcpy(y, k.y, sizeof(float) * (size_t)n);
    int64_t s[2] = {R, C};
    vlm_tensor tx = vlm_tensor_cpu_f32(k.x, 2, s);
    vlm_l2norm_forward(&tx, NULL, &tx, 1e-12f);
    CHECK(!memcmp(y, k.x, sizeof(float) * (size_t)n), "l2norm %s: in place, no norm", mode_name(mode));
    free(g0); free(p); free(y);
    l2_free(&k);
  }
}

/* Bad operands: each call fails before any kernel, naming the op and the operand. */
typedef struct { int which; } bad_ctx;

static void bad_call(void *ctx) {
  int which = ((bad_ctx *)ctx)->which;
  float x[6] = {0}, y[6], norm[3];
  int64_t s[2] = {2, 3}, s32[2] = {3, 2}, s2[1] = {2}, s3[1] = {3};
  vlm_tensor tx = vlm_tensor_cpu_f32(x, 2, s), ty = vlm_tensor_cpu_f32(y, 2, which == 1 ? s32 : s);
  vlm_tensor tn = vlm_tensor_cpu_f32(norm, 1, which == 0 ? s3 : s2);
  vlm_l2norm_forward(&ty, &tn, &tx, 1e-12f);
}

static void test_bad_operands(void) {
  bad_ctx c = {0};
  vt_expect_abort("l2norm: norm of 3 for 2 rows", bad_call, &c, "l2norm: norm is [3]", "expected 2 elements (rows of x)");
  c.which = 1;
  vt_expect_abort("l2norm: y of another shape", bad_call, &c, "l2norm: y is [3, 2]", "x is [2, 3]");
}

int main(void) {
  test_bad_operands();
  test_known();
  test_gradcheck();
  int64_t shapes[][2] = {{1, 1}, {1, 7}, {9, 1}, {5, 33}, {256, 512}, {50 * 8, 768}, {3, 10007}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
    test_fast_vs_ref(shapes[i][0], shapes[i][1], 1.0f, 1e-12f);
  test_fast_vs_ref(64, 100, 0.05f, 1.0f); /* every row clamped */
  test_fast_vs_ref(64, 100, 1e-3f, 1e-12f);
  test_accumulate();
  return vt_finish();
}
