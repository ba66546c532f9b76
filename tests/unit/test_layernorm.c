/* LayerNorm: known values, gradient check (both kernel modes), fast vs
 * reference on awkward and large shapes, += semantics of the backward. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu/cpu.h"
#include "core/ref/ref.h"
#include "gradcheck.h"

static const char *mode_name(vlm_kernel_mode m) { return m == VLM_KERNELS_REF ? "ref" : "fast"; }

typedef struct {
  int64_t R, C;
  float eps;
  float *x, *w, *b, *out, *mean, *rstd, *dout, *dx, *dw, *db;
} ln_case;

static void ln_alloc(ln_case *k, int64_t R, int64_t C, uint64_t seed, float offset) {
  k->R = R;
  k->C = C;
  k->eps = 1e-5f;
  k->x = vt_alloc(R * C);
  k->w = vt_alloc(C);
  k->b = vt_alloc(C);
  k->out = vt_alloc(R * C);
  k->mean = vt_alloc(R);
  k->rstd = vt_alloc(R);
  k->dout = vt_alloc(R * C);
  k->dx = vt_alloc(R * C);
  k->dw = vt_alloc(C);
  k->db = vt_alloc(C);
  vt_fill_normal(k->x, R * C, seed, 1.0f);
  for (int64_t i = 0; i < R * C; i++) k->x[i] += offset;
  vt_fill_normal(k->w, C, seed + 1, 0.5f);
  for (int64_t i = 0; i < C; i++) k->w[i] += 1.0f;
  vt_fill_normal(k->b, C, seed + 2, 0.5f);
  vt_fill_normal(k->dout, R * C, seed + 3, 1.0f);
}

static void ln_free(ln_case *k) {
  free(k->x); free(k->w); free(k->b); free(k->out); free(k->mean); free(k->rstd);
  free(k->dout); free(k->dx); free(k->dw); free(k->db);
}

static void ln_forward(void *ctx) {
  ln_case *k = ctx;
  int64_t s2[2] = {k->R, k->C}, s1[1] = {k->C}, sr[1] = {k->R};
  vlm_tensor x = vlm_tensor_cpu_f32(k->x, 2, s2), out = vlm_tensor_cpu_f32(k->out, 2, s2);
  vlm_tensor w = vlm_tensor_cpu_f32(k->w, 1, s1), b = vlm_tensor_cpu_f32(k->b, 1, s1);
  vlm_tensor m = vlm_tensor_cpu_f32(k->mean, 1, sr), r = vlm_tensor_cpu_f32(k->rstd, 1, sr);
  vlm_layernorm_forward(&out, &m, &r, &x, &w, &b, k->eps);
}

static void ln_backward(void *ctx) {
  ln_case *k = ctx;
  int64_t s2[2] = {k->R, k->C}, s1[1] = {k->C}, sr[1] = {k->R};
  vlm_tensor x = vlm_tensor_cpu_f32(k->x, 2, s2), dout = vlm_tensor_cpu_f32(k->dout, 2, s2);
  vlm_tensor dx = vlm_tensor_cpu_f32(k->dx, 2, s2);
  vlm_tensor w = vlm_tensor_cpu_f32(k->w, 1, s1), dw = vlm_tensor_cpu_f32(k->dw, 1, s1);
  vlm_tensor db = vlm_tensor_cpu_f32(k->db, 1, s1);
  vlm_tensor m = vlm_tensor_cpu_f32(k->mean, 1, sr), r = vlm_tensor_cpu_f32(k->rstd, 1, sr);
  vlm_layernorm_backward(&dx, &dw, &db, &dout, &x, &w, &m, &r);
}

static void test_known(void) {
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode((vlm_kernel_mode)mode);
    /* A 3-d input [1, 2, 3]: the second row is [1, 2, 3] shifted by 10. */
    float x[6] = {1, 2, 3, 11, 12, 13}, w[3] = {1, 1, 1}, b[3] = {0, 0, 0}, out[6], mean[2], rstd[2];
    int64_t s3[3] = {1, 2, 3}, s1[1] = {3}, sr[1] = {2};
    vlm_tensor tx = vlm_tensor_cpu_f32(x, 3, s3), to = vlm_tensor_cpu_f32(out, 3, s3);
    vlm_tensor tw = vlm_tensor_cpu_f32(w, 1, s1), tb = vlm_tensor_cpu_f32(b, 1, s1);
    vlm_tensor tm = vlm_tensor_cpu_f32(mean, 1, sr), tr = vlm_tensor_cpu_f32(rstd, 1, sr);
    vlm_layernorm_forward(&to, &tm, &tr, &tx, &tw, &tb, 1e-5f);
    double rs = 1.0 / sqrt(2.0 / 3.0 + 1e-5); /* biased variance of [1,2,3] is 2/3 */
    CHECK(fabs(rs - 1.2247357) < 1e-6, "expected rstd");
    int ok = 1;
    for (int r = 0; r < 2; r++) {
      ok &= fabs(out[r * 3 + 0] + rs) < 2e-6 && fabs(out[r * 3 + 1]) < 2e-6 && fabs(out[r * 3 + 2] - rs) < 2e-6;
      ok &= fabs(rstd[r] - rs) < 2e-6;
    }
    CHECK(ok, "%s: layernorm([1,2,3]) = [%g %g %g], expected [-1.2247357 0 1.2247357]", mode_name(mode), out[0],
          out[1], out[2]);
    CHECK(mean[0] == 2.0f && mean[1] == 12.0f, "%s: mean %g %g", mode_name(mode), mean[0], mean[1]);
    /* Forward without saving mean/rstd, w and b applied. */
    float w2[3] = {2, 2, 2}, b2[3] = {1, 1, 1}, out2[6];
    vlm_tensor tw2 = vlm_tensor_cpu_f32(w2, 1, s1), tb2 = vlm_tensor_cpu_f32(b2, 1, s1);
    vlm_tensor to2 = vlm_tensor_cpu_f32(out2, 3, s3);
    vlm_layernorm_forward(&to2, NULL, NULL, &tx, &tw2, &tb2, 1e-5f);
    CHECK(fabs(out2[0] - (1 - 2 * rs)) < 4e-6 && fabs(out2[4] - 1) < 4e-6, "%s: w=2 b=1", mode_name(mode));
    /* C = 1: zero variance, out = b, gradient w.r.t. x is zero. */
    float x1[2] = {5, -3}, w1[1] = {3}, b1[1] = {0.25f}, o1[2], m1[2], r1[2];
    int64_t s21[2] = {2, 1}, s11[1] = {1};
    vlm_tensor tx1 = vlm_tensor_cpu_f32(x1, 2, s21), to1 = vlm_tensor_cpu_f32(o1, 2, s21);
    vlm_tensor tw1 = vlm_tensor_cpu_f32(w1, 1, s11), tb1 = vlm_tensor_cpu_f32(b1, 1, s11);
    vlm_tensor tm1 = vlm_tensor_cpu_f32(m1, 1, sr), tr1 = vlm_tensor_cpu_f32(r1, 1, sr);
    vlm_layernorm_forward(&to1, &tm1, &tr1, &tx1, &tw1, &tb1, 1e-5f);
    CHECK(o1[0] == 0.25f && o1[1] == 0.25f, "%s: C=1 gives b: %g %g", mode_name(mode), o1[0], o1[1]);
  }
}

static void test_gradcheck(void) {
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode((vlm_kernel_mode)mode);
    int64_t shapes[3][2] = {{15, 7}, {4, 32}, {1, 5}};
    for (int s = 0; s < 3; s++) {
      ln_case k;
      ln_alloc(&k, shapes[s][0], shapes[s][1], 100 + s, 0.0f);
      vt_gc_input in[3] = {{"x", k.x, k.dx, k.R * k.C}, {"w", k.w, k.dw, k.C}, {"b", k.b, k.db, k.C}};
      vt_gradcheck g = {ln_forward, ln_backward, &k, k.out, k.dout, k.R * k.C, in, 3, 0, 0, 0, 7 + s};
      char what[64];
      snprintf(what, sizeof what, "layernorm %s [%lld,%lld]", mode_name(mode), (long long)k.R, (long long)k.C);
      vt_gradcheck_run(what, &g);
      ln_free(&k);
    }
  }
}

/* Fast vs reference: forward outputs and accumulated gradients (pre-filled). */
static void test_fast_vs_ref(int64_t R, int64_t C, float offset) {
  ln_case a, b;
  ln_alloc(&a, R, C, 1000 + R + C, offset);
  ln_alloc(&b, R, C, 1000 + R + C, offset);
  vt_fill_normal(a.dx, R * C, 5, 1.0f);
  vt_fill_normal(a.dw, C, 6, 1.0f);
  vt_fill_normal(a.db, C, 7, 1.0f);
  memcpy(b.dx, a.dx, sizeof(float) * (size_t)(R * C));
  memcpy(b.dw, a.dw, sizeof(float) * (size_t)C);
  memcpy(b.db, a.db, sizeof(float) * (size_t)C);
  vlm_set_kernel_mode(VLM_KERNELS_REF);
  ln_forward(&a);
  ln_backward(&a);
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  ln_forward(&b);
  ln_backward(&b);
  double e_out = vt_max_rel(b.out, a.out, R * C, 1e-6), e_m = vt_max_rel(b.mean, a.mean, R, 1e-6);
  double e_r = vt_max_rel(b.rstd, a.rstd, R, 1e-6), e_dx = vt_max_rel(b.dx, a.dx, R * C, 1e-6);
  double e_dw = vt_max_rel(b.dw, a.dw, C, 1e-6), e_db = vt_max_rel(b.db, a.db, C, 1e-6);
  CHECK(e_out < 1e-5 && e_m < 1e-5 && e_r < 1e-5 && e_dx < 1e-5 && e_dw < 1e-5 && e_db < 1e-5,
        "layernorm fast vs ref [%lld,%lld] offset %g: out %.2g mean %.2g rstd %.2g dx %.2g dw %.2g db %.2g",
        (long long)R, (long long)C, (double)offset, e_out, e_m, e_r, e_dx, e_dw, e_db);
  if (getenv("VT_VERBOSE"))
    printf("  layernorm fast vs ref [%lld,%lld] offset %g: out %.2g mean %.2g rstd %.2g dx %.2g dw %.2g db %.2g\n",
           (long long)R, (long long)C, (double)offset, e_out, e_m, e_r, e_dx, e_dw, e_db);
  ln_free(&a);
  ln_free(&b);
}

/* Backward accumulates: pre-filled grads + backward == pre-fill + grads from zero. */
static void test_accumulate(void) {
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode((vlm_kernel_mode)mode);
    ln_case k;
    int64_t R = 37, C = 129;
    ln_alloc(&k, R, C, 77, 0.0f);
    ln_forward(&k);
    ln_backward(&k); /* from zero */
    float *gx = vt_alloc(R * C), *gw = vt_alloc(C), *gb = vt_alloc(C);
    memcpy(gx, k.dx, sizeof(float) * (size_t)(R * C));
    memcpy(gw, k.dw, sizeof(float) * (size_t)C);
    memcpy(gb, k.db, sizeof(float) * (size_t)C);
    float *px = vt_alloc(R * C), *pw = vt_alloc(C), *pb = vt_alloc(C);
    vt_fill_normal(px, R * C, 1, 1.0f);
    vt_fill_normal(pw, C, 2, 1.0f);
    vt_fill_normal(pb, C, 3, 1.0f);
    memcpy(k.dx, px, sizeof(float) * (size_t)(R * C));
    memcpy(k.dw, pw, sizeof(float) * (size_t)C);
    memcpy(k.db, pb, sizeof(float) * (size_t)C);
    ln_backward(&k);
    for (int64_t i = 0; i < R * C; i++) px[i] += gx[i];
    for (int64_t i = 0; i < C; i++) { pw[i] += gw[i]; pb[i] += gb[i]; }
    double e = vt_max_rel(k.dx, px, R * C, 1e-6) + vt_max_rel(k.dw, pw, C, 1e-6) + vt_max_rel(k.db, pb, C, 1e-6);
    CHECK(e < 1e-6, "layernorm %s: backward accumulates (err %.2g)", mode_name(mode), e);
    /* NULL gradients are skipped. */
    int64_t s2[2] = {R, C}, s1[1] = {C}, sr[1] = {R};
    vlm_tensor x = vlm_tensor_cpu_f32(k.x, 2, s2), dout = vlm_tensor_cpu_f32(k.dout, 2, s2);
    vlm_tensor w = vlm_tensor_cpu_f32(k.w, 1, s1), dw = vlm_tensor_cpu_f32(k.dw, 1, s1);
    vlm_tensor m = vlm_tensor_cpu_f32(k.mean, 1, sr), r = vlm_tensor_cpu_f32(k.rstd, 1, sr);
    memcpy(k.dw, gw, sizeof(float) * (size_t)C);
    vlm_layernorm_backward(NULL, &dw, NULL, &dout, &x, &w, &m, &r);
    for (int64_t i = 0; i < C; i++) gw[i] *= 2.0f;
    CHECK(vt_max_rel(k.dw, gw, C, 1e-6) < 1e-6, "layernorm %s: dw alone", mode_name(mode));
    free(gx); free(gw); free(gb); free(px); free(pw); free(pb);
    ln_free(&k);
  }
}

/* The fast backward (per-thread partial sums) gives the same bits twice. */
static void test_deterministic(void) {
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  ln_case k;
  int64_t R = 400, C = 768;
  ln_alloc(&k, R, C, 3, 0.0f);
  ln_forward(&k);
  ln_backward(&k);
  float *dw1 = vt_alloc(C);
  memcpy(dw1, k.dw, sizeof(float) * (size_t)C);
  memset(k.dw, 0, sizeof(float) * (size_t)C);
  ln_backward(&k);
  CHECK(!memcmp(dw1, k.dw, sizeof(float) * (size_t)C), "layernorm fast backward is deterministic");
  free(dw1);
  ln_free(&k);
}

/* Bad operands: each call fails before any kernel, naming the op and the operand. */
typedef struct { int which; } bad_ctx;

static void bad_call(void *ctx) {
  int which = ((bad_ctx *)ctx)->which;
  float x[6] = {0}, out[6], w[3] = {1, 1, 1}, b[3] = {0}, mean[2], rstd[2];
  int64_t s[2] = {2, 3}, s3[1] = {3}, s2[1] = {2}, s4[1] = {4}, s23[2] = {3, 2};
  vlm_tensor tx = vlm_tensor_cpu_f32(x, 2, s), tout = vlm_tensor_cpu_f32(out, 2, which == 1 ? s23 : s);
  vlm_tensor tw = vlm_tensor_cpu_f32(w, 1, which == 0 ? s4 : s3), tb = vlm_tensor_cpu_f32(b, 1, s3);
  vlm_tensor tm = vlm_tensor_cpu_f32(mean, 1, s2), tr = vlm_tensor_cpu_f32(rstd, 1, s2);
  if (which == 2) tb.dtype = VLM_BF16;
  vlm_layernorm_forward(&tout, &tm, &tr, &tx, &tw, which == 3 ? NULL : &tb, 1e-5f);
}

static void test_bad_operands(void) {
  bad_ctx c = {0};
  vt_expect_abort("layernorm: w of 4 for 3 columns", bad_call, &c, "layernorm: w is [4]", "expected 3 elements");
  c.which = 1;
  vt_expect_abort("layernorm: out of another shape", bad_call, &c, "layernorm: out is [3, 2]", "shaped like x [2, 3]");
  c.which = 2;
  vt_expect_abort("layernorm: a BF16 b", bad_call, &c, "layernorm: b must be F32", NULL);
  c.which = 3;
  vt_expect_abort("layernorm: no b", bad_call, &c, "layernorm: b is NULL", NULL);
}

int main(void) {
  test_bad_operands();
  test_known();
  test_gradcheck();
  int64_t shapes[][2] = {{1, 1}, {1, 7}, {3, 1}, {17, 33}, {5, 1000}, {1, 768}, {50 * 8, 768}, {33, 1025}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) test_fast_vs_ref(shapes[i][0], shapes[i][1], 0.0f);
  test_fast_vs_ref(64, 768, 100.0f); /* large common offset: two-pass variance */
  test_accumulate();
  test_deterministic();
  return vt_finish();
}
