/* Inference fast paths: the fused vlm_linear_forward (bias + activation +
 * residual, F32 or BF16 out) fast vs reference and vs the unfused ops;
 * LayerNorm with BF16 output; packed weights (vlm_matmul_pack) giving the
 * same results as plain ones and going away with their arena; the block's
 * forward_only path against its training forward. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu/cpu.h"
#include "gradcheck.h"

static vlm_tensor t2(void *p, vlm_dtype dt, int64_t r, int64_t c) {
  int64_t s[2] = {r, c};
  return vlm_tensor_make(p, dt, VLM_CPU, 2, s);
}

static void to_f32(float *dst, const vlm_tensor *t) {
  int64_t n = vlm_numel(t);
  for (int64_t i = 0; i < n; i++)
    dst[i] = t->dtype == VLM_BF16 ? vlm_bf16_to_f32(((const uint16_t *)t->data)[i]) : ((const float *)t->data)[i];
}

static double max_abs_of(const float *x, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
  return m;
}

/* |got - ref| <= abs_tol * max|ref| + rel_tol * |ref| everywhere. */
static int close_enough(const float *got, const float *ref, int64_t n, double abs_tol, double rel_tol,
                        double *worst) {
  double m = max_abs_of(ref, n);
  *worst = 0;
  int ok = 1;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)got[i] - ref[i]);
    double lim = abs_tol * m + rel_tol * fabs(ref[i]);
    if (d > lim) ok = 0;
    if (m > 0) *worst = fmax(*worst, d / m);
  }
  return ok;
}

/* One configuration of the fused linear: fast vs reference, and the reference
 * vs the unfused ops (matmul, act, add) it stands for. */
static void check_linear(int64_t M, int64_t N, int64_t K, int has_bias, int act_kind, int has_res, int out_bf16,
                         int w_bf16, vlm_precision prec, uint64_t seed) {
  float *a = vt_alloc(M * K), *w = vt_alloc(N * K), *bias = vt_alloc(N), *res = vt_alloc(M * N);
  uint16_t *wh = calloc((size_t)(N * K) + 1, 2);
  vt_fill_normal(a, M * K, seed, 1.0f);
  vt_fill_normal(w, N * K, seed + 1, 0.2f);
  vt_fill_normal(bias, N, seed + 2, 1.0f);
  vt_fill_normal(res, M * N, seed + 3, 1.0f);
  vlm_f32_to_bf16_array(wh, w, (size_t)(N * K));
  vlm_tensor ta = t2(a, VLM_F32, M, K), tw = w_bf16 ? t2(wh, VLM_BF16, N, K) : t2(w, VLM_F32, N, K);
  vlm_tensor tb = vlm_tensor_make(bias, VLM_F32, VLM_CPU, 1, &N), tr = t2(res, VLM_F32, M, N);
  vlm_act act = act_kind == 1 ? VLM_ACT_GELU : VLM_ACT_QUICK_GELU;
  vlm_dtype odt = out_bf16 ? VLM_BF16 : VLM_F32;
  void *o_fast = calloc((size_t)(M * N) + 1, 4), *o_ref = calloc((size_t)(M * N) + 1, 4);
  vlm_tensor tof = t2(o_fast, odt, M, N), tor = t2(o_ref, odt, M, N);
  vlm_set_matmul_precision(prec);
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  vlm_linear_forward(&tof, &ta, &tw, has_bias ? &tb : NULL, act_kind ? &act : NULL, has_res ? &tr : NULL);
  vlm_set_kernel_mode(VLM_KERNELS_REF);
  vlm_linear_forward(&tor, &ta, &tw, has_bias ? &tb : NULL, act_kind ? &act : NULL, has_res ? &tr : NULL);

  /* The unfused ops, reference kernels, f32 result. */
  float *u = vt_alloc(M * N);
  vlm_tensor tu = t2(u, VLM_F32, M, N);
  vlm_matmul_forward(&tu, &ta, &tw, has_bias ? &tb : NULL, 0, 1);
  if (act_kind) vlm_act_forward(act, &tu, &tu);
  if (has_res) vlm_add_forward(&tu, &tu, &tr);
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  vlm_set_matmul_precision(VLM_PREC_F32);

  float *gf = vt_alloc(M * N), *gr = vt_alloc(M * N);
  to_f32(gf, &tof);
  to_f32(gr, &tor);
  double worst;
  /* bf16 output: one rounding of values that differ by ~1e-6 can land one bf16 step apart. */
  double rel = out_bf16 ? 1.0 / 128 : 0.0;
  int ok = close_enough(gf, gr, M * N, 2e-5, rel, &worst);
  CHECK(ok, "linear fast vs ref M=%lld N=%lld K=%lld bias=%d act=%d res=%d out_bf16=%d w_bf16=%d prec=%d: max err %.3g",
        (long long)M, (long long)N, (long long)K, has_bias, act_kind, has_res, out_bf16, w_bf16, (int)prec, worst);
  ok = close_enough(gr, u, M * N, 1e-6, rel, &worst);
  CHECK(ok, "linear ref vs unfused ops M=%lld N=%lld K=%lld act=%d res=%d out_bf16=%d: max err %.3g", (long long)M,
        (long long)N, (long long)K, act_kind, has_res, out_bf16, worst);
  free(a), free(w), free(bias), free(res), free(wh), free(o_fast), free(o_ref), free(u), free(gf), free(gr);
}

static void test_linear(void) {
  const int64_t shapes[][3] = {{7, 5, 13}, {50, 96, 64}, {1, 33, 17}, {64, 128, 256}};
  uint64_t seed = 100;
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
    for (int act = 0; act <= 2; act++)
      for (int res = 0; res <= 1; res++)
        for (int ob = 0; ob <= 1; ob++)
          for (int cfg = 0; cfg < 3; cfg++) {
            /* cfg 0: f32 weights, f32 precision; 1: f32 weights, bf16 precision; 2: bf16 weights */
            int w_bf16 = cfg == 2;
            vlm_precision prec = cfg == 1 ? VLM_PREC_BF16 : VLM_PREC_F32;
            check_linear(shapes[s][0], shapes[s][1], shapes[s][2], (act + res + ob) % 2 == 0, act, res, ob,
                         w_bf16, prec, seed++);
          }
}

/* The residual as the output itself (out == residual, F32), as the GPU path runs it: the same
 * result as a separate residual, with and without an activation and a bias, in both kernel
 * modes and at both precisions (where oneDNN has no fused kernel, the unfused steps must not
 * overwrite the residual before adding it). */
static void test_linear_residual_in_place(void) {
  const int64_t shapes[][3] = {{7, 5, 3}, {33, 96, 64}, {1, 1, 1}};
  uint64_t seed = 900;
  for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++)
    for (int act_kind = 0; act_kind <= 1; act_kind++)
      for (int mode = 0; mode <= 1; mode++)
        for (int pr = 0; pr <= 1; pr++) {
          int64_t M = shapes[sh][0], N = shapes[sh][1], K = shapes[sh][2];
          float *a = vt_alloc(M * K), *w = vt_alloc(N * K), *bias = vt_alloc(N), *res = vt_alloc(M * N);
          float *sep = vt_alloc(M * N), *inplace = vt_alloc(M * N);
          vt_fill_normal(a, M * K, seed, 1.0f);
          vt_fill_normal(w, N * K, seed + 1, 0.2f);
          vt_fill_normal(bias, N, seed + 2, 1.0f);
          vt_fill_normal(res, M * N, seed + 3, 1.0f);
          seed += 4;
          memcpy(inplace, res, (size_t)(M * N) * sizeof(float));
          vlm_tensor ta = t2(a, VLM_F32, M, K), tw = t2(w, VLM_F32, N, K), tr = t2(res, VLM_F32, M, N);
          vlm_tensor tb = vlm_tensor_make(bias, VLM_F32, VLM_CPU, 1, &N);
          vlm_tensor ts = t2(sep, VLM_F32, M, N), ti = t2(inplace, VLM_F32, M, N);
          vlm_act act = VLM_ACT_GELU;
          vlm_set_matmul_precision(pr ? VLM_PREC_BF16 : VLM_PREC_F32);
          vlm_set_kernel_mode(mode ? VLM_KERNELS_REF : VLM_KERNELS_FAST);
          vlm_linear_forward(&ts, &ta, &tw, &tb, act_kind ? &act : NULL, &tr);
          vlm_linear_forward(&ti, &ta, &tw, &tb, act_kind ? &act : NULL, &ti);
          vlm_set_kernel_mode(VLM_KERNELS_FAST);
          vlm_set_matmul_precision(VLM_PREC_F32);
          double worst;
          CHECK(close_enough(inplace, sep, M * N, 1e-6, 0.0, &worst),
                "linear, residual in place, M=%lld N=%lld K=%lld act=%d %s %s: max err %.3g vs a separate residual",
                (long long)M, (long long)N, (long long)K, act_kind, mode ? "ref" : "fast", pr ? "bf16" : "f32", worst);
          free(a), free(w), free(bias), free(res), free(sep), free(inplace);
        }
}

/* LayerNorm into BF16: the rounded F32 result, fast and reference. */
static void test_layernorm_bf16(void) {
  const int64_t R = 37, C = 96;
  float *x = vt_alloc(R * C), *w = vt_alloc(C), *b = vt_alloc(C), *y = vt_alloc(R * C);
  uint16_t *yh = calloc((size_t)(R * C), 2);
  vt_fill_normal(x, R * C, 7, 3.0f);
  vt_fill_normal(w, C, 8, 1.0f);
  vt_fill_normal(b, C, 9, 1.0f);
  vlm_tensor tx = t2(x, VLM_F32, R, C), tw = vlm_tensor_make(w, VLM_F32, VLM_CPU, 1, &C);
  vlm_tensor tb = vlm_tensor_make(b, VLM_F32, VLM_CPU, 1, &C);
  vlm_tensor ty = t2(y, VLM_F32, R, C), tyh = t2(yh, VLM_BF16, R, C);
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode(mode ? VLM_KERNELS_REF : VLM_KERNELS_FAST);
    vlm_layernorm_forward(&ty, NULL, NULL, &tx, &tw, &tb, 1e-5f);
    vlm_layernorm_forward(&tyh, NULL, NULL, &tx, &tw, &tb, 1e-5f);
    int64_t same = 0;
    for (int64_t i = 0; i < R * C; i++) same += yh[i] == vlm_f32_to_bf16(y[i]);
    CHECK(same == R * C, "layernorm bf16 out (%s): %lld of %lld values are the rounded f32 output",
          mode ? "ref" : "fast", (long long)same, (long long)(R * C));
  }
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  free(x), free(w), free(b), free(y), free(yh);
}

/* Packed weights: the same results as the plain matrix (the blocked layout
 * may sum in another order: within 1e-6 of the max), in both orientations;
 * freeing the arena drops the registrations. */
static void test_pack(void) {
  const int64_t M = 40, K = 96, N = 160;
  float *a = vt_alloc(M * K), *wf = vt_alloc(N * K), *bias = vt_alloc(N);
  vt_fill_normal(a, M * K, 21, 1.0f);
  vt_fill_normal(wf, N * K, 22, 0.2f);
  vt_fill_normal(bias, N, 23, 1.0f);
  int before = vlm_cpu_matmul_packed_count();
  for (int bf = 0; bf <= 1; bf++)
    for (int trans_b = 0; trans_b <= 1; trans_b++) {
      vlm_arena ar;
      CHECK(vlm_arena_init(&ar, (size_t)(N * K) * 4 + 256, VLM_CPU) == VLM_OK, "arena");
      vlm_tensor w = trans_b ? vlm_arena_tensor2(&ar, bf ? VLM_BF16 : VLM_F32, N, K)
                             : vlm_arena_tensor2(&ar, bf ? VLM_BF16 : VLM_F32, K, N);
      vlm_tensor src = trans_b ? t2(wf, VLM_F32, N, K) : t2(wf, VLM_F32, K, N);
      vlm_copy(&w, &src);
      vlm_tensor ta = t2(a, VLM_F32, M, K), tb = vlm_tensor_make(bias, VLM_F32, VLM_CPU, 1, &N);
      float *plain = vt_alloc(M * N), *packed = vt_alloc(M * N), *lp = vt_alloc(M * N), *lk = vt_alloc(M * N);
      vlm_tensor tp = t2(plain, VLM_F32, M, N), tk = t2(packed, VLM_F32, M, N);
      vlm_tensor tlp = t2(lp, VLM_F32, M, N), tlk = t2(lk, VLM_F32, M, N);
      vlm_act g = VLM_ACT_GELU;
      vlm_matmul_forward(&tp, &ta, &w, &tb, 0, trans_b);
      if (trans_b) vlm_linear_forward(&tlp, &ta, &w, &tb, &g, NULL);
      vlm_matmul_pack(&w, trans_b);
      CHECK(vlm_cpu_matmul_packed_count() == before + 1, "pack registers the weight");
      vlm_matmul_forward(&tk, &ta, &w, &tb, 0, trans_b);
      double e = vt_max_rel(packed, plain, M * N, 1e-3);
      CHECK(e < 1e-5, "packed vs plain matmul (bf16=%d trans_b=%d): %.3g", bf, trans_b, e);
      if (trans_b) {
        vlm_linear_forward(&tlk, &ta, &w, &tb, &g, NULL);
        e = vt_max_rel(lk, lp, M * N, 1e-3);
        CHECK(e < 1e-5, "packed vs plain linear (bf16=%d): %.3g", bf, e);
      }
      /* Another M reuses (or adds) a packed copy and stays right. */
      vlm_tensor ta1 = t2(a, VLM_F32, 3, K), tk1 = t2(packed, VLM_F32, 3, N);
      vlm_matmul_forward(&tk1, &ta1, &w, &tb, 0, trans_b);
      e = vt_max_rel(packed, plain, 3 * N, 1e-3);
      CHECK(e < 1e-5, "packed vs plain matmul at M=3 (bf16=%d trans_b=%d): %.3g", bf, trans_b, e);
      vlm_arena_free(&ar);
      CHECK(vlm_cpu_matmul_packed_count() == before, "freeing the arena drops the packed weight");
      free(plain), free(packed), free(lp), free(lk);
    }
  free(a), free(wf), free(bias);
}

/* The block's inference path against its training forward. */
static void test_block_forward_only(void) {
  vlm_block_config c;
  memset(&c, 0, sizeof c);
  c.width = 64, c.heads = 4, c.mlp_width = 256, c.ln_eps = 1e-5f;
  const int64_t B = 3, L = 11;
  for (int a = 0; a < 2; a++) {
    c.act = a ? VLM_ACT_QUICK_GELU : VLM_ACT_GELU;
    vlm_arena pa, sa;
    vlm_block_params p;
    vlm_block_acts s;
    vlm_arena_measure(&pa, VLM_CPU);
    vlm_block_params_layout(&p, &pa, &c);
    size_t pbytes = pa.used;
    CHECK(vlm_arena_init(&pa, pbytes, VLM_CPU) == VLM_OK, "arena");
    vlm_block_params_layout(&p, &pa, &c);
    float *pp = (float *)pa.base;
    vt_fill_normal(pp, (int64_t)(pbytes / 4), 31 + a, 0.1f);
    vlm_arena_measure(&sa, VLM_CPU);
    vlm_block_acts_layout(&s, &sa, &c, B, L);
    CHECK(vlm_arena_init(&sa, sa.used, VLM_CPU) == VLM_OK, "arena");
    vlm_block_acts_layout(&s, &sa, &c, B, L);
    float *x = vt_alloc(B * L * 64), *y0 = vt_alloc(B * L * 64), *y1 = vt_alloc(B * L * 64);
    vt_fill_normal(x, B * L * 64, 41, 1.0f);
    int64_t sh[3] = {B, L, 64};
    vlm_tensor tx = vlm_tensor_make(x, VLM_F32, VLM_CPU, 3, sh), t0 = vlm_tensor_make(y0, VLM_F32, VLM_CPU, 3, sh);
    vlm_tensor t1 = vlm_tensor_make(y1, VLM_F32, VLM_CPU, 3, sh);
    for (int causal = 0; causal <= 1; causal++) {
      s.forward_only = 0;
      vlm_block_forward(&c, &p, &s, &t0, &tx, NULL, causal);
      s.forward_only = 1;
      vlm_block_forward(&c, &p, &s, &t1, &tx, NULL, causal);
      double e = vt_max_rel(y1, y0, B * L * 64, 1e-3);
      CHECK(e < 1e-5, "block forward_only vs training forward (act %d, causal %d): %.3g", a, causal, e);
      /* bf16: the matmul inputs rounded; close, not equal. */
      vlm_set_matmul_precision(VLM_PREC_BF16);
      vlm_block_forward(&c, &p, &s, &t1, &tx, NULL, causal);
      vlm_set_matmul_precision(VLM_PREC_F32);
      e = vt_max_rel(y1, y0, B * L * 64, 1e-3);
      CHECK(e < 2e-2 && e > 0, "block forward_only bf16 vs f32 (act %d, causal %d): %.3g", a, causal, e);
    }
    vlm_arena_free(&pa);
    vlm_arena_free(&sa);
    free(x), free(y0), free(y1);
  }
}

int main(void) {
  vlm_threads_init(2);
  test_linear();
  test_linear_residual_in_place();
  test_layernorm_bf16();
  test_pack();
  test_block_forward_only();
  return vt_finish();
}
