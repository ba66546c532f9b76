/* Softmax over the last dim: known values, large logits, gradient check (both
 * kernel modes), fast vs reference, += semantics of the backward. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"

static const char *mode_name(int m) { return m == VLM_KERNELS_REF ? "ref" : "fast"; }

typedef struct {
  int64_t R, C;
  float *x, *y, *dy, *dx;
} sm_case;

static void sm_alloc(sm_case *k, int64_t R, int64_t C, uint64_t seed, float std) {
  k->R = R;
  k->C = C;
  k->x = vt_alloc(R * C);
  k->y = vt_alloc(R * C);
  k->dy = vt_alloc(R * C);
  k->dx = vt_alloc(R * C);
  vt_fill_normal(k->x, R * C, seed, std);
  vt_fill_normal(k->dy, R * C, seed + 1, 1.0f);
}

static void sm_free(sm_case *k) { free(k->x); free(k->y); free(k->dy); free(k->dx); }

static void sm_forward(void *ctx) {
  sm_case *k = ctx;
  int64_t s[2] = {k->R, k->C};
  vlm_tensor x = vlm_tensor_cpu_f32(k->x, 2, s), y = vlm_tensor_cpu_f32(k->y, 2, s);
  vlm_softmax_forward(&y, &x);
}

static void sm_backward(void *ctx) {
  sm_case *k = ctx;
  int64_t s[2] = {k->R, k->C};
  vlm_tensor y = vlm_tensor_cpu_f32(k->y, 2, s), dy = vlm_tensor_cpu_f32(k->dy, 2, s);
  vlm_tensor dx = vlm_tensor_cpu_f32(k->dx, 2, s);
  vlm_softmax_backward(&dx, &dy, &y);
}

static void test_known(void) {
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode((vlm_kernel_mode)mode);
    /* [2, 2, 3]: rows [1,2,3], [1e4, 0, -1e4], [1e4, 1e4, -inf], [-inf, -inf, -inf]. */
    float x[12] = {1, 2, 3, 1e4f, 0, -1e4f, 1e4f, 1e4f, -INFINITY, -INFINITY, -INFINITY, -INFINITY}, y[12];
    int64_t s[3] = {2, 2, 3};
    vlm_tensor tx = vlm_tensor_cpu_f32(x, 3, s), ty = vlm_tensor_cpu_f32(y, 3, s);
    vlm_softmax_forward(&ty, &tx);
    CHECK(fabsf(y[0] - 0.09003057f) < 1e-7f && fabsf(y[1] - 0.24472847f) < 1e-7f &&
              fabsf(y[2] - 0.66524096f) < 1e-7f,
          "%s: softmax([1,2,3]) = %.8f %.8f %.8f", mode_name(mode), y[0], y[1], y[2]);
    CHECK(y[3] == 1.0f && y[4] == 0.0f && y[5] == 0.0f, "%s: softmax([1e4, 0, -1e4]) = %g %g %g", mode_name(mode),
          y[3], y[4], y[5]);
    CHECK(y[6] == 0.5f && y[7] == 0.5f && y[8] == 0.0f, "%s: softmax([1e4, 1e4, -inf]) = %g %g %g",
          mode_name(mode), y[6], y[7], y[8]);
    CHECK(y[9] == 0.0f && y[10] == 0.0f && y[11] == 0.0f, "%s: an all -inf row gives zeros: %g %g %g",
          mode_name(mode), y[9], y[10], y[11]);
    /* Backward through the saturated rows stays finite. */
    float dy[12], dx[12] = {0};
    for (int i = 0; i < 12; i++) dy[i] = (float)(i % 5) - 2.0f;
    vlm_tensor tdy = vlm_tensor_cpu_f32(dy, 3, s), tdx = vlm_tensor_cpu_f32(dx, 3, s);
    vlm_softmax_backward(&tdx, &tdy, &ty);
    int finite = 1;
    for (int i = 0; i < 12; i++) finite &= isfinite(dx[i]);
    CHECK(finite && dx[3] == 0.0f && dx[9] == 0.0f, "%s: softmax backward finite on large logits", mode_name(mode));
    /* One column: y = 1, dx = 0. */
    float x1[3] = {-5, 0, 1e4f}, y1[3];
    int64_t s1[2] = {3, 1};
    vlm_tensor tx1 = vlm_tensor_cpu_f32(x1, 2, s1), ty1 = vlm_tensor_cpu_f32(y1, 2, s1);
    vlm_softmax_forward(&ty1, &tx1);
    CHECK(y1[0] == 1.0f && y1[1] == 1.0f && y1[2] == 1.0f, "%s: one column gives 1", mode_name(mode));
  }
}

static void test_large_random(void) {
  /* Rows of logits with std 1e4: no NaN, rows sum to 1. */
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode((vlm_kernel_mode)mode);
    sm_case k;
    sm_alloc(&k, 64, 333, 4, 1e4f);
    sm_forward(&k);
    sm_backward(&k);
    int ok = 1;
    for (int64_t r = 0; r < k.R; r++) {
      double s = 0;
      for (int64_t c = 0; c < k.C; c++) {
        ok &= isfinite(k.y[r * k.C + c]) && isfinite(k.dx[r * k.C + c]);
        s += k.y[r * k.C + c];
      }
      ok &= fabs(s - 1.0) < 1e-5;
    }
    CHECK(ok, "%s: logits with std 1e4: finite, rows sum to 1", mode_name(mode));
    sm_free(&k);
  }
}

static void test_gradcheck(void) {
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode((vlm_kernel_mode)mode);
    int64_t shapes[3][2] = {{5, 11}, {1, 3}, {7, 64}};
    for (int s = 0; s < 3; s++) {
      sm_case k;
      sm_alloc(&k, shapes[s][0], shapes[s][1], 21 + s, 1.0f);
      vt_gc_input in[1] = {{"x", k.x, k.dx, k.R * k.C}};
      vt_gradcheck g = {sm_forward, sm_backward, &k, k.y, k.dy, k.R * k.C, in, 1, 0, 0, 0, 3 + s};
      char what[64];
      snprintf(what, sizeof what, "softmax %s [%lld,%lld]", mode_name(mode), (long long)k.R, (long long)k.C);
      vt_gradcheck_run(what, &g);
      sm_free(&k);
    }
  }
}

static void test_fast_vs_ref(int64_t R, int64_t C, float std) {
  sm_case a, b;
  sm_alloc(&a, R, C, 7 + R * C, std);
  sm_alloc(&b, R, C, 7 + R * C, std);
  vt_fill_normal(a.dx, R * C, 8, 1.0f);
  memcpy(b.dx, a.dx, sizeof(float) * (size_t)(R * C));
  vlm_set_kernel_mode(VLM_KERNELS_REF);
  sm_forward(&a);
  sm_backward(&a);
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  sm_forward(&b);
  sm_backward(&b);
  double e_y = vt_max_rel(b.y, a.y, R * C, 1e-6), e_d = vt_max_rel(b.dx, a.dx, R * C, 1e-6);
  CHECK(e_y < 1e-5 && e_d < 1e-5, "softmax fast vs ref [%lld,%lld] std %g: y %.2g dx %.2g", (long long)R,
        (long long)C, (double)std, e_y, e_d);
  if (getenv("VT_VERBOSE"))
    printf("  softmax fast vs ref [%lld,%lld] std %g: y %.2g dx %.2g\n", (long long)R, (long long)C, (double)std,
           e_y, e_d);
  sm_free(&a);
  sm_free(&b);
}

static void test_accumulate(void) {
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode((vlm_kernel_mode)mode);
    sm_case k;
    int64_t R = 300, C = 77, n = R * C;
    sm_alloc(&k, R, C, 31, 2.0f);
    sm_forward(&k);
    sm_backward(&k);
    float *g0 = vt_alloc(n), *p = vt_alloc(n);
    memcpy(g0, k.dx, sizeof(float) * (size_t)n);
    vt_fill_normal(p, n, 32, 1.0f);
    memcpy(k.dx, p, sizeof(float) * (size_t)n);
    sm_backward(&k);
    for (int64_t i = 0; i < n; i++) p[i] += g0[i];
    CHECK(vt_max_rel(k.dx, p, n, 1e-6) < 1e-6, "softmax %s: backward accumulates", mode_name(mode));
    /* In place: y == x. */
    float *y = vt_alloc(n);
    memcpy(y, k.y, sizeof(float) * (size_t)n);
    int64_t s[2] = {R, C};
    vlm_tensor tx = vlm_tensor_cpu_f32(k.x, 2, s);
    vlm_softmax_forward(&tx, &tx);
    CHECK(!memcmp(y, k.x, sizeof(float) * (size_t)n), "softmax %s: in place", mode_name(mode));
    free(g0); free(p); free(y);
    sm_free(&k);
  }
}

int main(void) {
  test_known();
  test_large_random();
  test_gradcheck();
  int64_t shapes[][2] = {{1, 1}, {1, 9}, {9, 1}, {3, 17}, {37, 77}, {50 * 8, 768}, {12 * 77, 77}, {2, 10001}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) test_fast_vs_ref(shapes[i][0], shapes[i][1], 3.0f);
  test_fast_vs_ref(16, 500, 100.0f);
  test_accumulate();
  return vt_finish();
}
