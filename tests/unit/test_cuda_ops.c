/* Every CUDA op against the CPU reference kernel on several shapes (odd sizes,
 * 1-element dims, strided views): the same inputs go to the reference (host
 * tensors, VLM_KERNELS_REF) and to the GPU (device tensors), and every output
 * and every (accumulated) gradient is compared. fp32: 1e-5 relative to the
 * tensor's max magnitude; bf16 matmuls: against the reference's bf16 mode (same
 * rounded inputs, f32 vs double sums), 1e-4.
 * A failure names the op, the case, the tensor, the worst element, the
 * expected and the obtained value. Skips (exit 77) without a GPU. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/cuda/cuda.h"
#include "gradcheck.h"

#define TOL 1e-5
#define TOL_BF16 1e-4

static vlm_arena g_dev;  /* device arena, reset between cases */

/* A tensor on the host and its copy on the device. */
typedef struct {
  vlm_tensor h, d;
  void *hp;
} pair;

static pair mk_raw(vlm_dtype dt, int ndim, const int64_t *shape, const void *data) {
  pair p;
  p.h = vlm_tensor_make(NULL, dt, VLM_CPU, ndim, shape);
  p.hp = calloc(vlm_nbytes(&p.h) + 1, 1);
  if (data) memcpy(p.hp, data, vlm_nbytes(&p.h));
  p.h.data = p.hp;
  p.d = vlm_arena_tensor(&g_dev, dt, ndim, shape);
  vlm_copy(&p.d, &p.h);
  return p;
}

/* F32, normal(0, std) with seed (std 0: filled with `fill`). */
static pair mk(int ndim, const int64_t *shape, uint64_t seed, float std, float fill) {
  pair p = mk_raw(VLM_F32, ndim, shape, NULL);
  int64_t n = vlm_numel(&p.h);
  if (std > 0) vt_fill_normal(p.hp, n, seed, std);
  else
    for (int64_t i = 0; i < n; i++) ((float *)p.hp)[i] = fill;
  vlm_copy(&p.d, &p.h);
  return p;
}
static pair mk1(int64_t a, uint64_t seed, float std, float fill) { int64_t s[1] = {a}; return mk(1, s, seed, std, fill); }
static pair mk2(int64_t a, int64_t b, uint64_t seed, float std, float fill) {
  int64_t s[2] = {a, b};
  return mk(2, s, seed, std, fill);
}
static pair mk3(int64_t a, int64_t b, int64_t c, uint64_t seed, float std, float fill) {
  int64_t s[3] = {a, b, c};
  return mk(3, s, seed, std, fill);
}
static void drop(pair *p) { free(p->hp); }

/* Per-op summary: cases compared and the worst relative error. */
#define MAX_OPS 64
static struct { const char *op; int n, bad; double worst; } g_sum[MAX_OPS];
static int g_nsum = 0, g_verbose = 0;

static void record(const char *op, double rel, int ok) {
  int i = 0;
  while (i < g_nsum && strcmp(g_sum[i].op, op)) i++;
  if (i == g_nsum) {
    if (g_nsum == MAX_OPS) return;
    g_sum[g_nsum].op = op;
    g_nsum++;
  }
  g_sum[i].n++;
  g_sum[i].bad += !ok;
  if (rel > g_sum[i].worst || isnan(rel)) g_sum[i].worst = isnan(rel) ? INFINITY : rel;
}

/* Compare a device F32 tensor (contiguous buffer `d`, n elements) with the host reference. */
static void cmp_buf(const char *op, const char *cs, const char *name, const vlm_tensor *d, const float *ref,
                    int64_t n, double tol) {
  float *got = vt_alloc(n);
  vlm_tensor h = vlm_tensor_make(got, VLM_F32, VLM_CPU, d->ndim, d->shape);
  vlm_copy(&h, d);
  double scale = 1e-30, worst = 0;
  int64_t wi = 0, bad_nan = -1;
  for (int64_t i = 0; i < n; i++)
    if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
  for (int64_t i = 0; i < n; i++) {
    if (isnan(got[i]) != isnan(ref[i]) || isinf(got[i]) != isinf(ref[i])) {
      if (bad_nan < 0) bad_nan = i;
      continue;
    }
    double e = isfinite(ref[i]) ? fabs((double)got[i] - ref[i]) : 0.0;
    if (e > worst) { worst = e; wi = i; }
  }
  double rel = worst / scale;
  int ok = rel <= tol && bad_nan < 0;
  char sh[96];
  record(op, bad_nan >= 0 ? INFINITY : rel, ok);
  if (ok && g_verbose) printf("  ok   %-22s %-34s %-6s %-22s rel %.2e\n", op, cs, name, vlm_shape_str(d, sh, sizeof sh), rel);
  if (bad_nan >= 0)
    CHECK(0, "%s [%s] %s %s: element %lld: expected %.9g, got %.9g (non-finite mismatch)", op, cs, name,
          vlm_shape_str(d, sh, sizeof sh), (long long)bad_nan, ref[bad_nan], got[bad_nan]);
  else
    CHECK(ok, "%s [%s] %s %s: max rel err %.3e > %.1e at element %lld: expected %.9g, got %.9g (scale %.4g)", op, cs,
          name, vlm_shape_str(d, sh, sizeof sh), rel, tol, (long long)wi, ref[wi], got[wi], scale);
  free(got);
}

static void cmp(const char *op, const char *cs, const char *name, pair *p, double tol) {
  cmp_buf(op, cs, name, &p->d, p->hp, vlm_numel(&p->h), tol);
}

/* ------------------------------------------------------------------ matmul */
static void test_matmul_case(int64_t M, int64_t N, int64_t K, int ta, int tb, int bias, vlm_precision prec,
                             int a_bf16, int lead3) {
  char cs[96];
  snprintf(cs, sizeof cs, "M%lld N%lld K%lld%s%s%s%s%s", (long long)M, (long long)N, (long long)K, ta ? " tA" : "",
           tb ? " tB" : "", bias ? " bias" : "", prec == VLM_PREC_BF16 ? " bf16" : "", a_bf16 ? " a:BF16" : "");
  int bf = prec == VLM_PREC_BF16 || a_bf16;
  double tol = bf ? TOL_BF16 : TOL;
  const char *fwd = bf ? "matmul_forward (bf16)" : "matmul_forward";
  const char *bwd = bf ? "matmul_backward (bf16)" : "matmul_backward";
  vlm_arena_reset(&g_dev);
  uint64_t seed = (uint64_t)(M * 131 + N * 7 + K + ta * 3 + tb * 5);
  pair a, b = tb ? mk2(N, K, seed + 1, 1.0f, 0) : mk2(K, N, seed + 1, 1.0f, 0);
  if (ta) a = mk2(K, M, seed, 1.0f, 0);
  else if (lead3 && M % 3 == 0) a = mk3(3, M / 3, K, seed, 1.0f, 0);
  else a = mk2(M, K, seed, 1.0f, 0);
  if (a_bf16) { /* a stored as BF16 on both sides */
    int64_t n = vlm_numel(&a.h);
    uint16_t *hb = malloc(sizeof(uint16_t) * (size_t)(n ? n : 1));
    vlm_f32_to_bf16_array(hb, a.hp, (size_t)n);
    pair a2 = mk_raw(VLM_BF16, a.h.ndim, a.h.shape, hb);
    free(hb);
    drop(&a);
    a = a2;
  }
  pair bs = mk1(N, seed + 2, 1.0f, 0);
  pair out = lead3 && !ta && M % 3 == 0 ? mk3(3, M / 3, N, 0, 0, 7.0f) : mk2(M, N, 0, 0, 7.0f);
  vlm_set_matmul_precision(prec);
  vlm_matmul_forward(&out.h, &a.h, &b.h, bias ? &bs.h : NULL, ta, tb);
  vlm_matmul_forward(&out.d, &a.d, &b.d, bias ? &bs.d : NULL, ta, tb);
  cmp(fwd, cs, "out", &out, tol);
  /* backward, accumulating into non-zero gradients */
  pair dout = out.h.ndim == 3 ? mk3(3, M / 3, N, seed + 3, 1.0f, 0) : mk2(M, N, seed + 3, 1.0f, 0);
  pair da = {0}, db, dbias = mk1(N, seed + 6, 0.5f, 0);
  if (!a_bf16) da = a.h.ndim == 3 ? mk3(3, M / 3, K, seed + 4, 0.5f, 0) : (ta ? mk2(K, M, seed + 4, 0.5f, 0) : mk2(M, K, seed + 4, 0.5f, 0));
  db = tb ? mk2(N, K, seed + 5, 0.5f, 0) : mk2(K, N, seed + 5, 0.5f, 0);
  vlm_matmul_backward(a_bf16 ? NULL : &da.h, &db.h, bias ? &dbias.h : NULL, &dout.h, &a.h, &b.h, ta, tb);
  vlm_matmul_backward(a_bf16 ? NULL : &da.d, &db.d, bias ? &dbias.d : NULL, &dout.d, &a.d, &b.d, ta, tb);
  if (!a_bf16) cmp(bwd, cs, "da", &da, tol);
  cmp(bwd, cs, "db", &db, tol);
  if (bias) cmp(bwd, cs, "dbias", &dbias, TOL);
  vlm_set_matmul_precision(VLM_PREC_F32);
  if (!a_bf16) drop(&da);
  drop(&a); drop(&b); drop(&bs); drop(&out); drop(&dout); drop(&db); drop(&dbias);
}

static void test_matmul(void) {
  const int64_t shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {33, 65, 17}, {96, 128, 64}, {150, 97, 768}, {6, 4, 0}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++) {
        int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        test_matmul_case(M, N, K, ta, tb, (ta + tb + (int)s) % 2 == 0, VLM_PREC_F32, 0, 0);
        if (K > 0) test_matmul_case(M, N, K, ta, tb, 1, VLM_PREC_BF16, 0, 0);
      }
  test_matmul_case(12, 10, 9, 0, 1, 1, VLM_PREC_F32, 0, 1);   /* a [3, 4, 9]: leading dims flatten */
  test_matmul_case(64, 48, 32, 0, 1, 1, VLM_PREC_F32, 1, 0);  /* BF16-stored a */
  test_matmul_case(64, 48, 32, 0, 0, 0, VLM_PREC_BF16, 1, 0);
  /* vlm_cuda_matmul_backward_set (the block's gradient scratch): da written,
   * its old contents (NaN here) never read; db and dbias still accumulate. */
  for (int p = 0; p < 2; p++) {
    vlm_precision prec = p ? VLM_PREC_BF16 : VLM_PREC_F32;
    const char *op = p ? "matmul_backward_set (bf16)" : "matmul_backward_set";
    int64_t M = 96, N = 80, K = 48;
    vlm_arena_reset(&g_dev);
    pair a = mk2(M, K, 301, 1.0f, 0), b = mk2(N, K, 302, 1.0f, 0), dout = mk2(M, N, 303, 1.0f, 0);
    pair da = mk2(M, K, 0, 0, NAN), db = mk2(N, K, 304, 0.5f, 0), dbias = mk1(N, 305, 0.5f, 0);
    vlm_set_matmul_precision(prec);
    vlm_cuda_matmul_backward_set(&da.d, &db.d, &dbias.d, &dout.d, &a.d, &b.d, 0, 1, prec);
    vlm_zero(&da.h);
    vlm_matmul_backward(&da.h, &db.h, &dbias.h, &dout.h, &a.h, &b.h, 0, 1);
    vlm_set_matmul_precision(VLM_PREC_F32);
    cmp(op, "M96 N80 K48 tB", "da", &da, p ? TOL_BF16 : TOL);
    cmp(op, "M96 N80 K48 tB", "db", &db, p ? TOL_BF16 : TOL);
    cmp(op, "M96 N80 K48 tB", "dbias", &dbias, TOL);
    drop(&a); drop(&b); drop(&dout); drop(&da); drop(&db); drop(&dbias);
  }
}

/* A BF16 device tensor against its BF16 host reference (both widened to f32). */
static void cmp_bf16(const char *op, const char *cs, const char *name, const vlm_tensor *d, const vlm_tensor *h,
                     double tol) {
  int64_t n = vlm_numel(h);
  uint16_t *gb = malloc(sizeof(uint16_t) * (size_t)(n ? n : 1));
  float *ref = vt_alloc(n), *got = vt_alloc(n);
  vlm_memcpy(gb, VLM_CPU, d->data, VLM_CUDA, sizeof(uint16_t) * (size_t)n);
  vlm_bf16_to_f32_array(got, gb, (size_t)n);
  vlm_bf16_to_f32_array(ref, h->data, (size_t)n);
  /* compare through a host F32 "device" stand-in: reuse cmp_buf's reporting */
  int64_t shape[1] = {n};
  vlm_tensor tg = vlm_tensor_make(got, VLM_F32, VLM_CPU, 1, shape);
  cmp_buf(op, cs, name, &tg, ref, n, tol);
  free(gb); free(ref); free(got);
}

/* ------------------------------------------------------------------ linear (inference, fused) */
static void test_linear_case(int64_t M, int64_t N, int64_t K, int act, int res, int out_bf16, int a_bf16,
                             vlm_precision prec) {
  char cs[128];
  snprintf(cs, sizeof cs, "M%lld N%lld K%lld%s%s%s%s%s", (long long)M, (long long)N, (long long)K,
           act == 0 ? " gelu" : act == 1 ? " quickgelu" : "", res ? " +res" : "", out_bf16 ? " out:BF16" : "",
           a_bf16 ? " a:BF16" : "", prec == VLM_PREC_BF16 ? " bf16" : "");
  vlm_arena_reset(&g_dev);
  uint64_t seed = (uint64_t)(M * 7 + N * 3 + K + act * 11 + res);
  pair a = mk2(M, K, seed, 1.0f, 0), w = mk2(N, K, seed + 1, 0.2f, 0), bias = mk1(N, seed + 2, 1.0f, 0);
  pair r = mk2(M, N, seed + 3, 1.0f, 0);
  if (a_bf16) {
    uint16_t *hb = malloc(sizeof(uint16_t) * (size_t)(M * K > 0 ? M * K : 1));
    vlm_f32_to_bf16_array(hb, a.hp, (size_t)(M * K));
    pair a2 = mk_raw(VLM_BF16, 2, a.h.shape, hb);
    free(hb);
    drop(&a);
    a = a2;
  }
  int64_t so[2] = {M, N};
  pair out = out_bf16 ? mk_raw(VLM_BF16, 2, so, NULL) : mk2(M, N, 0, 0, 3.0f);
  vlm_act av = act == 1 ? VLM_ACT_QUICK_GELU : VLM_ACT_GELU;
  vlm_set_matmul_precision(prec);
  vlm_linear_forward(&out.h, &a.h, &w.h, &bias.h, act >= 0 ? &av : NULL, res ? &r.h : NULL);
  vlm_linear_forward(&out.d, &a.d, &w.d, &bias.d, act >= 0 ? &av : NULL, res ? &r.d : NULL);
  vlm_set_matmul_precision(VLM_PREC_F32);
  int bf = prec == VLM_PREC_BF16 || a_bf16;
  if (out_bf16) cmp_bf16(bf ? "linear_forward (bf16)" : "linear_forward", cs, "out", &out.d, &out.h, 8e-3);
  else cmp(bf ? "linear_forward (bf16)" : "linear_forward", cs, "out", &out, bf ? TOL_BF16 : TOL);
  if (res && act < 0 && !out_bf16) { /* the residual is out itself (in place) */
    vlm_copy(&out.d, &r.d);
    vlm_set_matmul_precision(prec);
    vlm_linear_forward(&out.d, &a.d, &w.d, &bias.d, NULL, &out.d);
    vlm_set_matmul_precision(VLM_PREC_F32);
    cmp(bf ? "linear_forward (bf16)" : "linear_forward", cs, "out (residual in place)", &out, bf ? TOL_BF16 : TOL);
  }
  drop(&a); drop(&w); drop(&bias); drop(&r); drop(&out);
}

static void test_linear(void) {
  const int64_t shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {100, 96, 64}, {33, 1024, 512}};
  for (size_t s = 0; s < 4; s++)
    for (int act = -1; act <= 1; act++)
      for (int res = 0; res < 2; res++) {
        int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        test_linear_case(M, N, K, act, res, 0, 0, VLM_PREC_F32);
        test_linear_case(M, N, K, act, res, 1, 0, VLM_PREC_BF16);
        test_linear_case(M, N, K, act, res, (act + res) % 2 == 0, 1, VLM_PREC_BF16);
      }
  test_linear_case(6, 4, 0, 0, 1, 0, 0, VLM_PREC_F32); /* K = 0 */
  /* LayerNorm with a BF16 output (inference) */
  vlm_arena_reset(&g_dev);
  pair x = mk2(37, 768, 900, 2.0f, 0), w = mk1(768, 901, 1.0f, 0), b = mk1(768, 902, 1.0f, 0);
  int64_t so[2] = {37, 768};
  pair out = mk_raw(VLM_BF16, 2, so, NULL);
  vlm_layernorm_forward(&out.h, NULL, NULL, &x.h, &w.h, &b.h, 1e-5f);
  vlm_layernorm_forward(&out.d, NULL, NULL, &x.d, &w.d, &b.d, 1e-5f);
  cmp_bf16("layernorm_forward (bf16 out)", "R37 C768", "out", &out.d, &out.h, 8e-3);
  drop(&x); drop(&w); drop(&b); drop(&out);
}

/* ------------------------------------------------------------------ layernorm */
static void test_layernorm(void) {
  /* C = 128 k (k <= 8) takes the register-row kernel: 128, 512, 768, 1024 */
  const int64_t shapes[][2] = {{1, 1}, {3, 7}, {50, 768}, {5, 1025}, {257, 64}, {9, 128}, {13, 512}, {33, 1024}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int64_t R = shapes[s][0], C = shapes[s][1];
    char cs[64];
    snprintf(cs, sizeof cs, "R%lld C%lld", (long long)R, (long long)C);
    vlm_arena_reset(&g_dev);
    pair x = mk2(R, C, 10 + s, 2.0f, 0), w = mk1(C, 20 + s, 1.0f, 0), b = mk1(C, 30 + s, 1.0f, 0);
    for (int64_t c = 0; c < C; c++) ((float *)x.hp)[c] += 3.0f; /* a row with a non-zero mean */
    vlm_copy(&x.d, &x.h);
    pair out = mk2(R, C, 0, 0, 0), mean = mk1(R, 0, 0, 0), rstd = mk1(R, 0, 0, 0);
    vlm_layernorm_forward(&out.h, &mean.h, &rstd.h, &x.h, &w.h, &b.h, 1e-5f);
    vlm_layernorm_forward(&out.d, &mean.d, &rstd.d, &x.d, &w.d, &b.d, 1e-5f);
    cmp("layernorm_forward", cs, "out", &out, TOL);
    cmp("layernorm_forward", cs, "mean", &mean, TOL);
    cmp("layernorm_forward", cs, "rstd", &rstd, TOL);
    /* backward from the reference's saved statistics on both sides */
    vlm_copy(&mean.d, &mean.h);
    vlm_copy(&rstd.d, &rstd.h);
    pair dout = mk2(R, C, 40 + s, 1.0f, 0), dx = mk2(R, C, 50 + s, 0.5f, 0);
    pair dw = mk1(C, 60 + s, 0.5f, 0), db = mk1(C, 70 + s, 0.5f, 0);
    vlm_layernorm_backward(&dx.h, &dw.h, &db.h, &dout.h, &x.h, &w.h, &mean.h, &rstd.h);
    vlm_layernorm_backward(&dx.d, &dw.d, &db.d, &dout.d, &x.d, &w.d, &mean.d, &rstd.d);
    cmp("layernorm_backward", cs, "dx", &dx, TOL);
    cmp("layernorm_backward", cs, "dw", &dw, TOL);
    cmp("layernorm_backward", cs, "db", &db, TOL);
    drop(&x); drop(&w); drop(&b); drop(&out); drop(&mean); drop(&rstd); drop(&dout); drop(&dx); drop(&dw); drop(&db);
  }
}

/* ------------------------------------------------------------------ activations */
static void test_act(void) {
  const int64_t sizes[] = {1, 1000, 100003};
  for (int a = 0; a < 2; a++)
    for (size_t s = 0; s < 3; s++) {
      vlm_act act = a ? VLM_ACT_QUICK_GELU : VLM_ACT_GELU;
      char cs[64];
      snprintf(cs, sizeof cs, "%s n%lld", a ? "quickgelu" : "gelu", (long long)sizes[s]);
      vlm_arena_reset(&g_dev);
      pair x = mk1(sizes[s], 80 + s, 3.0f, 0), y = mk1(sizes[s], 0, 0, 0);
      pair dout = mk1(sizes[s], 90 + s, 1.0f, 0), dx = mk1(sizes[s], 95 + s, 0.5f, 0);
      vlm_act_forward(act, &y.h, &x.h);
      vlm_act_forward(act, &y.d, &x.d);
      cmp("act_forward", cs, "y", &y, TOL);
      vlm_act_backward(act, &dx.h, &dout.h, &x.h);
      vlm_act_backward(act, &dx.d, &dout.d, &x.d);
      cmp("act_backward", cs, "dx", &dx, TOL);
      /* dx written by vlm_cuda_act_backward_set: its NaN contents never read */
      pair dx2 = mk1(sizes[s], 0, 0, NAN);
      vlm_cuda_act_backward_set(act, &dx2.d, &dout.d, &x.d);
      vlm_zero(&dx2.h);
      vlm_act_backward(act, &dx2.h, &dout.h, &x.h);
      cmp("act_backward_set", cs, "dx", &dx2, TOL);
      /* BF16 out: the f32 result rounded once (to the nearest even) */
      vlm_tensor yh = vlm_tensor_make(NULL, VLM_BF16, VLM_CPU, 1, &sizes[s]);
      yh.data = malloc(vlm_nbytes(&yh) + 2);
      vlm_tensor yd = vlm_arena_tensor(&g_dev, VLM_BF16, 1, &sizes[s]);
      vlm_act_forward(act, &yh, &x.h);
      vlm_act_forward(act, &yd, &x.d);
      cmp_bf16("act_forward (bf16 out)", cs, "y", &yd, &yh, 1e-2);
      free(yh.data);
      drop(&x); drop(&y); drop(&dout); drop(&dx); drop(&dx2);
    }
}

/* ------------------------------------------------------------------ softmax */
static void test_softmax(void) {
  const int64_t shapes[][2] = {{1, 1}, {4, 7}, {10, 1000}, {3, 77}};
  for (size_t s = 0; s < 4; s++) {
    int64_t R = shapes[s][0], C = shapes[s][1];
    char cs[64];
    snprintf(cs, sizeof cs, "R%lld C%lld", (long long)R, (long long)C);
    vlm_arena_reset(&g_dev);
    pair x = mk2(R, C, 100 + s, 3.0f, 0);
    if (R > 1) { /* one row all -inf, one with some -inf */
      for (int64_t c = 0; c < C; c++) ((float *)x.hp)[C + c] = -INFINITY;
      ((float *)x.hp)[0] = -INFINITY;
      vlm_copy(&x.d, &x.h);
    }
    pair y = mk2(R, C, 0, 0, 0), dy = mk2(R, C, 110 + s, 1.0f, 0), dx = mk2(R, C, 120 + s, 0.5f, 0);
    vlm_softmax_forward(&y.h, &x.h);
    vlm_softmax_forward(&y.d, &x.d);
    cmp("softmax_forward", cs, "y", &y, TOL);
    vlm_softmax_backward(&dx.h, &dy.h, &y.h);
    vlm_softmax_backward(&dx.d, &dy.d, &y.d);
    cmp("softmax_backward", cs, "dx", &dx, TOL);
    drop(&x); drop(&y); drop(&dy); drop(&dx);
  }
}

/* ------------------------------------------------------------------ attention */
typedef struct {
  const char *name;
  int64_t B, Lq, Lk, H, D;
  int causal, mask, packed;
} attn_cfg;

/* bf16 != 0: the device runs at VLM_PREC_BF16 (the tensor-core kernel where it
 * applies: head dim % 16 == 0, L <= 128) against the fp32 reference, within
 * TOL_ATTN_BF16 of the tensor's max: q, k, v, dout, P and dS are rounded to bf16
 * (2^-9 relative each) and summed in fp32 over <= 128 terms; the measured worst
 * is printed in the per-op summary. */
#define TOL_ATTN_BF16 2e-2

/* p's host values as a BF16 pair (rounded to nearest even). */
static pair bf16_of(const pair *p) {
  int64_t n = vlm_numel(&p->h);
  uint16_t *t = malloc(sizeof(uint16_t) * (size_t)(n ? n : 1));
  vlm_f32_to_bf16_array(t, p->hp, (size_t)n);
  pair r = mk_raw(VLM_BF16, p->h.ndim, p->h.shape, t);
  free(t);
  return r;
}

/* bf16 storage for inference: q, k, v as bf16 views of the same layout (packed
 * or not), out BF16 and out F32, against the fp32 reference `ref` of the
 * unrounded inputs (so within the bf16 bound at either precision). */
static void test_attention_bf16_storage(const attn_cfg *c, const pair *qb, const pair *kb, const pair *vb,
                                        const pair *mask, const float *ref, vlm_precision prec, const char *cs) {
  const char *op = prec == VLM_PREC_BF16 ? "attention_forward (bf16 storage, bf16)" : "attention_forward (bf16 storage)";
  int64_t B = c->B, Lq = c->Lq, W = c->H * c->D, n = B * Lq * W;
  pair b0 = bf16_of(qb), b1, b2;
  vlm_tensor q16, k16, v16;
  if (c->packed) {
    q16 = vlm_narrow(&b0.d, 2, 0, W), k16 = vlm_narrow(&b0.d, 2, W, W), v16 = vlm_narrow(&b0.d, 2, 2 * W, W);
  } else {
    b1 = bf16_of(kb), b2 = bf16_of(vb);
    q16 = b0.d, k16 = b1.d, v16 = b2.d;
  }
  int64_t so[3] = {B, Lq, W};
  pair o16 = mk_raw(VLM_BF16, 3, so, NULL), o32 = mk3(B, Lq, W, 0, 0, 5.0f);
  float scale = 1.0f / sqrtf((float)c->D);
  vlm_set_matmul_precision(prec);
  vlm_attention_forward(&o16.d, NULL, &q16, &k16, &v16, (int)c->H, c->mask ? &mask->d : NULL, c->causal, scale);
  vlm_attention_forward(&o32.d, NULL, &q16, &k16, &v16, (int)c->H, c->mask ? &mask->d : NULL, c->causal, scale);
  vlm_set_matmul_precision(VLM_PREC_F32);
  uint16_t *gb = malloc(sizeof(uint16_t) * (size_t)(n ? n : 1));
  float *got = vt_alloc(n);
  vlm_memcpy(gb, VLM_CPU, o16.d.data, VLM_CUDA, sizeof(uint16_t) * (size_t)n);
  vlm_bf16_to_f32_array(got, gb, (size_t)n);
  vlm_tensor gh = vlm_tensor_make(got, VLM_F32, VLM_CPU, 3, so);
  cmp_buf(op, cs, "out BF16", &gh, ref, n, TOL_ATTN_BF16);
  cmp_buf(op, cs, "out F32", &o32.d, ref, n, TOL_ATTN_BF16);
  free(gb), free(got);
  drop(&b0), drop(&o16), drop(&o32);
  if (!c->packed) drop(&b1), drop(&b2);
}

static void test_attention_case(const attn_cfg *c, int tiles, int bf16) {
  char cs[128];
  snprintf(cs, sizeof cs, "%s B%lld Lq%lld Lk%lld H%lld D%lld%s", c->name, (long long)c->B, (long long)c->Lq,
           (long long)c->Lk, (long long)c->H, (long long)c->D, tiles ? "" : " untiled");
  const char *opf = bf16 ? "attention_forward (bf16)" : "attention_forward";
  const char *opb = bf16 ? "attention_backward (bf16)" : "attention_backward";
  const double tol = bf16 ? TOL_ATTN_BF16 : TOL;
  const vlm_precision dev_prec = bf16 ? VLM_PREC_BF16 : VLM_PREC_F32;
  vlm_cuda_attention_set_tiling(tiles);
  vlm_arena_reset(&g_dev);
  int64_t B = c->B, Lq = c->Lq, Lk = c->Lk, H = c->H, W = c->H * c->D;
  uint64_t seed = (uint64_t)(B * 1000 + Lq * 10 + Lk + H);
  pair qb, kb, vb, dqb, dkb, dvb;
  vlm_tensor q[2], k[2], v[2], dq[2], dk[2], dv[2]; /* [0] host, [1] device */
  if (c->packed) {
    qb = mk3(B, Lq, 3 * W, seed, 1.0f, 0);
    dqb = mk3(B, Lq, 3 * W, seed + 1, 0.5f, 0);
    for (int s = 0; s < 2; s++) {
      vlm_tensor *all = s ? &qb.d : &qb.h, *dall = s ? &dqb.d : &dqb.h;
      q[s] = vlm_narrow(all, 2, 0, W); k[s] = vlm_narrow(all, 2, W, W); v[s] = vlm_narrow(all, 2, 2 * W, W);
      dq[s] = vlm_narrow(dall, 2, 0, W); dk[s] = vlm_narrow(dall, 2, W, W); dv[s] = vlm_narrow(dall, 2, 2 * W, W);
    }
  } else {
    qb = mk3(B, Lq, W, seed, 1.0f, 0); kb = mk3(B, Lk, W, seed + 2, 1.0f, 0); vb = mk3(B, Lk, W, seed + 3, 1.0f, 0);
    dqb = mk3(B, Lq, W, seed + 4, 0.5f, 0); dkb = mk3(B, Lk, W, seed + 5, 0.5f, 0); dvb = mk3(B, Lk, W, seed + 6, 0.5f, 0);
    q[0] = qb.h; k[0] = kb.h; v[0] = vb.h; dq[0] = dqb.h; dk[0] = dkb.h; dv[0] = dvb.h;
    q[1] = qb.d; k[1] = kb.d; v[1] = vb.d; dq[1] = dqb.d; dk[1] = dkb.d; dv[1] = dvb.d;
  }
  uint8_t *m = calloc((size_t)(B * Lk), 1);
  if (c->mask) {
    vlm_rng r;
    vlm_rng_seed(&r, seed + 9);
    for (int64_t i = 0; i < B * Lk; i++) m[i] = vlm_rng_below(&r, 3) == 0;
    for (int64_t j = 0; j < Lk; j++) m[(B - 1) * Lk + j] = 1; /* the last batch row sees no key */
  }
  int64_t ms[2] = {B, Lk};
  pair mask = mk_raw(VLM_U8, 2, ms, m);
  free(m);
  pair out = mk3(B, Lq, W, 0, 0, 5.0f);
  int64_t ps[4] = {B, H, Lq, Lk};
  pair probs = mk(4, ps, 0, 0, 5.0f);
  float scale = 1.0f / sqrtf((float)c->D);
  vlm_attention_forward(&out.h, &probs.h, &q[0], &k[0], &v[0], (int)H, c->mask ? &mask.h : NULL, c->causal, scale);
  vlm_set_matmul_precision(dev_prec);
  vlm_attention_forward(&out.d, &probs.d, &q[1], &k[1], &v[1], (int)H, c->mask ? &mask.d : NULL, c->causal, scale);
  cmp(opf, cs, "out", &out, tol);
  cmp(opf, cs, "probs", &probs, tol);
  /* inference form (no probs) */
  pair out2 = mk3(B, Lq, W, 0, 0, 5.0f);
  vlm_attention_forward(&out2.d, NULL, &q[1], &k[1], &v[1], (int)H, c->mask ? &mask.d : NULL, c->causal, scale);
  vlm_set_matmul_precision(VLM_PREC_F32);
  cmp_buf(opf, cs, "out(np)", &out2.d, out.hp, vlm_numel(&out.h), tol);
  test_attention_bf16_storage(c, &qb, &kb, &vb, &mask, out.hp, dev_prec, cs);
  /* backward from the reference's probabilities */
  vlm_copy(&probs.d, &probs.h);
  pair dout = mk3(B, Lq, W, seed + 7, 1.0f, 0);
  vlm_attention_backward(&dq[0], &dk[0], &dv[0], &dout.h, &probs.h, &q[0], &k[0], &v[0], (int)H, scale);
  vlm_set_matmul_precision(dev_prec);
  vlm_attention_backward(&dq[1], &dk[1], &dv[1], &dout.d, &probs.d, &q[1], &k[1], &v[1], (int)H, scale);
  vlm_set_matmul_precision(VLM_PREC_F32);
  if (c->packed) cmp(opb, cs, "dqkv", &dqb, tol);
  else {
    cmp(opb, cs, "dq", &dqb, tol);
    cmp(opb, cs, "dk", &dkb, tol);
    cmp(opb, cs, "dv", &dvb, tol);
    drop(&kb); drop(&vb); drop(&dkb); drop(&dvb);
  }
  drop(&qb); drop(&dqb); drop(&mask); drop(&out); drop(&out2); drop(&probs); drop(&dout);
}

/* vlm_cuda_attention_backward_set (the tensor-core backward writing dq, dk, dv instead
 * of accumulating; the training block's path): the gradients start as garbage (7.0)
 * and must come out as the fp32 reference's from zeros, within TOL_ATTN_BF16. */
static void test_attention_backward_set(void) {
  const attn_cfg cases[] = {
    {"vit", 3, 50, 50, 12, 64, 0, 0, 1},
    {"text causal", 2, 77, 77, 8, 64, 1, 0, 1},
    {"cross", 2, 20, 37, 2, 32, 0, 0, 0},
    {"pooled row", 3, 1, 50, 12, 64, 0, 0, 0}, /* the last block's backward at the pooled rows */
  };
  int ran = 0;
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    const attn_cfg *c = &cases[ci];
    vlm_arena_reset(&g_dev);
    char cs[128];
    snprintf(cs, sizeof cs, "%s B%lld Lq%lld Lk%lld H%lld D%lld set", c->name, (long long)c->B, (long long)c->Lq,
             (long long)c->Lk, (long long)c->H, (long long)c->D);
    int64_t B = c->B, Lq = c->Lq, Lk = c->Lk, H = c->H, W = H * c->D;
    uint64_t seed = (uint64_t)(ci * 31 + 5);
    pair qb, kb, vb, gq, gk, gv;
    vlm_tensor q[2], k[2], v[2], dq[2], dk[2], dv[2];
    if (c->packed) {
      qb = mk3(B, Lq, 3 * W, seed, 1.0f, 0), gq = mk3(B, Lq, 3 * W, 0, 0, 0.0f);
      for (int d = 0; d < 2; d++) {
        vlm_tensor *t = d ? &qb.d : &qb.h, *g = d ? &gq.d : &gq.h;
        q[d] = vlm_narrow(t, 2, 0, W), k[d] = vlm_narrow(t, 2, W, W), v[d] = vlm_narrow(t, 2, 2 * W, W);
        dq[d] = vlm_narrow(g, 2, 0, W), dk[d] = vlm_narrow(g, 2, W, W), dv[d] = vlm_narrow(g, 2, 2 * W, W);
      }
    } else {
      qb = mk3(B, Lq, W, seed, 1.0f, 0), kb = mk3(B, Lk, W, seed + 1, 1.0f, 0), vb = mk3(B, Lk, W, seed + 2, 1.0f, 0);
      gq = mk3(B, Lq, W, 0, 0, 0.0f), gk = mk3(B, Lk, W, 0, 0, 0.0f), gv = mk3(B, Lk, W, 0, 0, 0.0f);
      q[0] = qb.h, k[0] = kb.h, v[0] = vb.h, dq[0] = gq.h, dk[0] = gk.h, dv[0] = gv.h;
      q[1] = qb.d, k[1] = kb.d, v[1] = vb.d, dq[1] = gq.d, dk[1] = gk.d, dv[1] = gv.d;
    }
    int64_t ps[4] = {B, H, Lq, Lk};
    pair out = mk3(B, Lq, W, 0, 0, 0.0f), probs = mk(4, ps, 0, 0, 0.0f), dout = mk3(B, Lq, W, seed + 3, 1.0f, 0);
    float scale = 1.0f / sqrtf((float)c->D);
    vlm_attention_forward(&out.h, &probs.h, &q[0], &k[0], &v[0], (int)H, NULL, c->causal, scale);
    vlm_copy(&probs.d, &probs.h);
    vlm_attention_backward(&dq[0], &dk[0], &dv[0], &dout.h, &probs.h, &q[0], &k[0], &v[0], (int)H, scale);
    vlm_fill(&gq.d, 7.0f);
    if (!c->packed) vlm_fill(&gk.d, 7.0f), vlm_fill(&gv.d, 7.0f);
    vlm_set_matmul_precision(VLM_PREC_BF16);
    int r = vlm_cuda_attention_backward_set(&dq[1], &dk[1], &dv[1], &dout.d, &probs.d, &q[1], &k[1], &v[1], (int)H,
                                            scale);
    vlm_set_matmul_precision(VLM_PREC_F32);
    CHECK(r == 1, "attention_backward_set [%s]: the tensor-core kernel should take this case", cs);
    if (r == 1) {
      ran++;
      if (c->packed) cmp("attention_backward_set", cs, "dqkv", &gq, TOL_ATTN_BF16);
      else {
        cmp("attention_backward_set", cs, "dq", &gq, TOL_ATTN_BF16);
        cmp("attention_backward_set", cs, "dk", &gk, TOL_ATTN_BF16);
        cmp("attention_backward_set", cs, "dv", &gv, TOL_ATTN_BF16);
      }
    }
    drop(&qb), drop(&gq), drop(&out), drop(&probs), drop(&dout);
    if (!c->packed) drop(&kb), drop(&vb), drop(&gk), drop(&gv);
  }
  printf("  attention backward (set form) ran %d of %d cases\n", ran, (int)(sizeof cases / sizeof cases[0]));
}

/* cuDNN's fused attention (core/cuda/attention_cudnn.cu) on the inference forwards it
 * takes: bf16 precision, BF16 output, no probabilities, no mask, not causal; q, k, v
 * as F32 or BF16 views (packed qkv or not). Each case runs with cuDNN on, then off
 * (the own kernel), both against the fp32 reference within TOL_ATTN_BF16; the line
 * printed says how many of the "on" forwards cuDNN ran (0: no cuDNN library, or no
 * plan for the shapes: VLM_LOG=debug says why; then both runs are the own kernel's). */
static void test_attention_cudnn(void) {
  const attn_cfg cases[] = {
    {"vit", 4, 50, 50, 12, 64, 0, 0, 1},
    {"vit 224/16", 2, 197, 197, 12, 64, 0, 0, 1},
    {"cross 77x50", 3, 77, 50, 2, 64, 0, 0, 0},
    {"D128", 2, 33, 33, 2, 128, 0, 0, 0},
    {"D8 Lk1", 2, 16, 1, 3, 8, 0, 0, 0},
    {"one query (own kernel)", 2, 1, 9, 2, 64, 0, 0, 0},
  };
  long long ran = 0, tried = 0;
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    const attn_cfg *c = &cases[ci];
    for (int in16 = 0; in16 < 2; in16++) {
      vlm_arena_reset(&g_dev);
      char cs[128];
      snprintf(cs, sizeof cs, "%s B%lld Lq%lld Lk%lld H%lld D%lld %s in", c->name, (long long)c->B, (long long)c->Lq,
               (long long)c->Lk, (long long)c->H, (long long)c->D, in16 ? "BF16" : "F32");
      int64_t B = c->B, Lq = c->Lq, Lk = c->Lk, W = c->H * c->D, n = B * Lq * W;
      uint64_t seed = (uint64_t)(ci * 100 + in16 + 7);
      pair qb = mk3(B, Lq, c->packed ? 3 * W : W, seed, 1.0f, 0), kb, vb;
      if (!c->packed) kb = mk3(B, Lk, W, seed + 1, 1.0f, 0), vb = mk3(B, Lk, W, seed + 2, 1.0f, 0);
      if (in16) { /* the values rounded to bf16 on the host, so the reference sees what the device reads */
        int64_t nq = vlm_numel(&qb.h);
        for (int64_t i = 0; i < nq; i++) ((float *)qb.hp)[i] = vlm_round_bf16(((float *)qb.hp)[i]);
        if (!c->packed)
          for (int64_t i = 0; i < B * Lk * W; i++) {
            ((float *)kb.hp)[i] = vlm_round_bf16(((float *)kb.hp)[i]);
            ((float *)vb.hp)[i] = vlm_round_bf16(((float *)vb.hp)[i]);
          }
      }
      vlm_tensor qh, kh, vh;
      if (c->packed) qh = vlm_narrow(&qb.h, 2, 0, W), kh = vlm_narrow(&qb.h, 2, W, W), vh = vlm_narrow(&qb.h, 2, 2 * W, W);
      else qh = qb.h, kh = kb.h, vh = vb.h;
      pair ref = mk3(B, Lq, W, 0, 0, 0.0f);
      float scale = 1.0f / sqrtf((float)c->D);
      vlm_attention_forward(&ref.h, NULL, &qh, &kh, &vh, (int)c->H, NULL, 0, scale);
      pair b0, b1, b2;
      vlm_tensor q, k, v;
      if (in16) {
        b0 = bf16_of(&qb);
        if (c->packed) q = vlm_narrow(&b0.d, 2, 0, W), k = vlm_narrow(&b0.d, 2, W, W), v = vlm_narrow(&b0.d, 2, 2 * W, W);
        else b1 = bf16_of(&kb), b2 = bf16_of(&vb), q = b0.d, k = b1.d, v = b2.d;
      } else if (c->packed) {
        q = vlm_narrow(&qb.d, 2, 0, W), k = vlm_narrow(&qb.d, 2, W, W), v = vlm_narrow(&qb.d, 2, 2 * W, W);
      } else {
        q = qb.d, k = kb.d, v = vb.d;
      }
      int64_t so[3] = {B, Lq, W};
      uint16_t *gb = malloc(sizeof(uint16_t) * (size_t)n);
      float *got = vt_alloc(n);
      for (int on = 1; on >= 0; on--) {
        pair o16 = mk_raw(VLM_BF16, 3, so, NULL);
        vlm_cuda_attention_set_cudnn(on ? 2 : 0); /* 2: cuDNN wherever it applies, not only where faster */
        long long before = vlm_cuda_attention_cudnn_runs();
        vlm_set_matmul_precision(VLM_PREC_BF16);
        vlm_attention_forward(&o16.d, NULL, &q, &k, &v, (int)c->H, NULL, 0, scale);
        vlm_set_matmul_precision(VLM_PREC_F32);
        long long did = vlm_cuda_attention_cudnn_runs() - before;
        if (!on) CHECK(did == 0, "attention [%s]: cuDNN ran with the cuDNN path off", cs);
        else if (c->Lq < 16) CHECK(did == 0, "attention [%s]: cuDNN ran for fewer than 16 queries", cs);
        else tried++, ran += did;
        vlm_memcpy(gb, VLM_CPU, o16.d.data, VLM_CUDA, sizeof(uint16_t) * (size_t)n);
        vlm_bf16_to_f32_array(got, gb, (size_t)n);
        vlm_tensor gh = vlm_tensor_make(got, VLM_F32, VLM_CPU, 3, so);
        cmp_buf(on ? (did ? "attention_forward (cuDNN)" : "attention_forward (cuDNN asked)") : "attention_forward (own)",
                cs, "out BF16", &gh, ref.hp, n, TOL_ATTN_BF16);
        drop(&o16);
      }
      free(gb), free(got);
      if (in16) {
        drop(&b0);
        if (!c->packed) drop(&b1), drop(&b2);
      }
      drop(&qb), drop(&ref);
      if (!c->packed) drop(&kb), drop(&vb);
    }
  }
  vlm_cuda_attention_set_cudnn(1);
  printf("  cuDNN fused attention ran %lld of %lld forwards asked of it%s\n", ran, tried,
         ran ? "" : " (none: no cuDNN library or no plan here; VLM_LOG=debug says why; the own kernel ran)");
}

static void test_attention(void) {
  const attn_cfg cases[] = {
    {"self", 2, 5, 5, 2, 4, 0, 0, 0},
    {"causal", 2, 9, 9, 3, 8, 1, 0, 0},
    {"padded", 3, 6, 6, 2, 5, 0, 1, 0},
    {"causal+padded", 3, 7, 7, 2, 4, 1, 1, 0},
    {"cross", 2, 3, 11, 2, 8, 0, 0, 0},
    {"cross+padded", 2, 4, 33, 1, 16, 0, 1, 0},
    {"packed", 2, 6, 6, 3, 4, 0, 0, 1},
    {"packed causal", 2, 13, 13, 2, 32, 1, 0, 1},
    {"one", 1, 1, 1, 1, 1, 0, 0, 0},
    {"vit", 2, 50, 50, 12, 64, 0, 0, 1},
    {"text", 2, 77, 77, 8, 64, 1, 0, 1},
    {"long keys", 1, 3, 300, 2, 40, 0, 1, 0},
  };
  /* the shared-memory K/V tile kernels (the default), then the plain ones */
  for (int tiles = 1; tiles >= 0; tiles--)
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) test_attention_case(&cases[i], tiles, 0);
  vlm_cuda_attention_set_tiling(1);
  /* bf16 matmul precision: the tensor-core kernel (head dim % 16 == 0, L <= 128)
   * and the plain kernel where it does not apply */
  const attn_cfg bf_cases[] = {
    {"vit", 3, 50, 50, 12, 64, 0, 0, 1},
    {"text", 2, 77, 77, 8, 64, 1, 0, 1},
    {"cross+padded", 2, 4, 33, 1, 16, 0, 1, 0},
    {"cross 77x50 padded", 3, 77, 50, 2, 64, 0, 1, 0},
    {"causal+padded", 3, 21, 21, 2, 32, 1, 1, 0},
    {"packed causal", 2, 13, 13, 2, 32, 1, 0, 1},
    {"full 128", 1, 128, 128, 2, 128, 0, 0, 0},
    {"one", 1, 1, 1, 1, 16, 0, 0, 0},
    {"fallback D8", 2, 9, 9, 3, 8, 1, 0, 0},
    {"fallback long keys", 1, 3, 300, 2, 64, 0, 1, 0},
  };
  for (size_t i = 0; i < sizeof bf_cases / sizeof bf_cases[0]; i++) test_attention_case(&bf_cases[i], 1, 1);
  test_attention_backward_set();
  test_attention_cudnn();
}

/* ------------------------------------------------------------------ embedding */
static void test_embedding(void) {
  for (int is64 = 0; is64 < 2; is64++)
    for (int with_pos = 0; with_pos < 2; with_pos++) {
      int64_t B = 3, L = 7, V = 11, W = 33, P = 9;
      char cs[64];
      snprintf(cs, sizeof cs, "%s%s", is64 ? "I64" : "I32", with_pos ? " pos" : "");
      vlm_arena_reset(&g_dev);
      int64_t ids64[21];
      int32_t ids32[21];
      for (int i = 0; i < B * L; i++) ids64[i] = ids32[i] = (i * 7 + 3) % 5 + (i % 3 == 0 ? 6 : 0); /* repeats */
      int64_t is[2] = {B, L};
      pair ids = mk_raw(is64 ? VLM_I64 : VLM_I32, 2, is, is64 ? (void *)ids64 : (void *)ids32);
      pair table = mk2(V, W, 200, 1.0f, 0), pos = mk2(P, W, 201, 1.0f, 0), out = mk3(B, L, W, 0, 0, 3.0f);
      vlm_embedding_forward(&out.h, &ids.h, &table.h, with_pos ? &pos.h : NULL);
      vlm_embedding_forward(&out.d, &ids.d, &table.d, with_pos ? &pos.d : NULL);
      cmp("embedding_forward", cs, "out", &out, TOL);
      pair dout = mk3(B, L, W, 202, 1.0f, 0), dt = mk2(V, W, 203, 0.5f, 0), dp = mk2(P, W, 204, 0.5f, 0);
      vlm_embedding_backward(&dt.h, with_pos ? &dp.h : NULL, &dout.h, &ids.h);
      vlm_embedding_backward(&dt.d, with_pos ? &dp.d : NULL, &dout.d, &ids.d);
      cmp("embedding_backward", cs, "dtable", &dt, TOL);
      cmp("embedding_backward", cs, "dpos", &dp, TOL);
      drop(&ids); drop(&table); drop(&pos); drop(&out); drop(&dout); drop(&dt); drop(&dp);
    }
}

/* ------------------------------------------------------------------ add */
static void test_add(void) {
  const int64_t shapes[][2] = {{1, 1}, {37, 129}, {1000, 3}};
  for (size_t s = 0; s < 3; s++) {
    int64_t R = shapes[s][0], C = shapes[s][1];
    char cs[64];
    snprintf(cs, sizeof cs, "R%lld C%lld", (long long)R, (long long)C);
    vlm_arena_reset(&g_dev);
    pair a = mk2(R, C, 300 + s, 1.0f, 0), b = mk1(C, 310 + s, 1.0f, 0), out = mk2(R, C, 0, 0, 0);
    vlm_add_forward(&out.h, &a.h, &b.h);
    vlm_add_forward(&out.d, &a.d, &b.d);
    cmp("add_forward", cs, "out", &out, TOL);
    vlm_add_forward(&a.h, &a.h, &out.h); /* aliasing out = a */
    vlm_add_forward(&a.d, &a.d, &out.d);
    cmp("add_forward", cs, "a+=out", &a, TOL);
    pair dout = mk2(R, C, 320 + s, 1.0f, 0), da = mk2(R, C, 330 + s, 0.5f, 0), db = mk1(C, 340 + s, 0.5f, 0);
    vlm_add_backward(&da.h, &db.h, &dout.h);
    vlm_add_backward(&da.d, &db.d, &dout.d);
    cmp("add_backward", cs, "da", &da, TOL);
    cmp("add_backward", cs, "db", &db, TOL);
    drop(&a); drop(&b); drop(&out); drop(&dout); drop(&da); drop(&db);
  }
}

/* ------------------------------------------------------------------ l2norm */
static void test_l2norm(void) {
  const int64_t shapes[][2] = {{1, 1}, {8, 512}, {5, 33}};
  for (size_t s = 0; s < 3; s++) {
    int64_t R = shapes[s][0], C = shapes[s][1];
    char cs[64];
    snprintf(cs, sizeof cs, "R%lld C%lld", (long long)R, (long long)C);
    vlm_arena_reset(&g_dev);
    pair x = mk2(R, C, 400 + s, 1.0f, 0);
    if (R > 1) { /* a zero row: the eps branch */
      for (int64_t c = 0; c < C; c++) ((float *)x.hp)[C + c] = 0.0f;
      vlm_copy(&x.d, &x.h);
    }
    pair y = mk2(R, C, 0, 0, 0), norm = mk1(R, 0, 0, 0);
    vlm_l2norm_forward(&y.h, &norm.h, &x.h, 1e-12f);
    vlm_l2norm_forward(&y.d, &norm.d, &x.d, 1e-12f);
    cmp("l2norm_forward", cs, "y", &y, TOL);
    cmp("l2norm_forward", cs, "norm", &norm, TOL);
    pair dy = mk2(R, C, 410 + s, 1e-6f, 0), dx = mk2(R, C, 420 + s, 0.5e-6f, 0);
    vlm_l2norm_backward(&dx.h, &dy.h, &x.h, &norm.h, 1e-12f);
    vlm_l2norm_backward(&dx.d, &dy.d, &x.d, &norm.d, 1e-12f);
    cmp("l2norm_backward", cs, "dx", &dx, TOL);
    drop(&x); drop(&y); drop(&norm); drop(&dy); drop(&dx);
  }
}

/* ------------------------------------------------------------------ cross-entropy */
static void test_cross_entropy(void) {
  const int64_t shapes[][2] = {{1, 1}, {8, 8}, {37, 1000}, {4, 49408}};
  for (size_t s = 0; s < 4; s++)
    for (int is64 = 0; is64 < 2; is64++) {
      int64_t N = shapes[s][0], C = shapes[s][1];
      char cs[64];
      snprintf(cs, sizeof cs, "N%lld C%lld %s", (long long)N, (long long)C, is64 ? "I64" : "I32");
      vlm_arena_reset(&g_dev);
      pair logits = mk2(N, C, 500 + s, 4.0f, 0);
      int64_t t64[64];
      int32_t t32[64];
      for (int64_t i = 0; i < N; i++) t64[i] = t32[i] = (i % 4 == 3) ? -100 : (i * 13 + 1) % C;
      int64_t ts[1] = {N};
      pair tg = mk_raw(is64 ? VLM_I64 : VLM_I32, 1, ts, is64 ? (void *)t64 : (void *)t32);
      pair loss = mk1(1, 0, 0, 9.0f), probs = mk2(N, C, 0, 0, 0);
      vlm_cross_entropy_forward(&loss.h, &probs.h, &logits.h, &tg.h, -100);
      vlm_cross_entropy_forward(&loss.d, &probs.d, &logits.d, &tg.d, -100);
      cmp("cross_entropy_forward", cs, "loss", &loss, TOL);
      cmp("cross_entropy_forward", cs, "probs", &probs, TOL);
      pair dloss = mk1(1, 0, 0, 0.75f), dl = mk2(N, C, 510 + s, 0.01f, 0);
      vlm_cross_entropy_backward(&dl.h, &dloss.h, &probs.h, &tg.h, -100);
      vlm_cross_entropy_backward(&dl.d, &dloss.d, &probs.d, &tg.d, -100);
      cmp("cross_entropy_backward", cs, "dlogits", &dl, TOL);
      drop(&logits); drop(&tg); drop(&loss); drop(&probs); drop(&dloss); drop(&dl);
    }
}

static void test_sigmoid_loss(void) {
  /* [B, N] with the positives at columns off + i: one process (off 0) and one rank's rows */
  const int64_t shapes[][3] = {{1, 1, 0}, {8, 8, 0}, {37, 1000, 500}, {4, 49408, 7}, {300, 600, 300}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int64_t B = shapes[s][0], N = shapes[s][1], off = shapes[s][2];
    char cs[64];
    snprintf(cs, sizeof cs, "B%lld N%lld off %lld", (long long)B, (long long)N, (long long)off);
    vlm_arena_reset(&g_dev);
    pair logits = mk2(B, N, 520 + s, 4.0f, 0);
    for (int64_t i = 0; i < B * N; i++) ((float *)logits.hp)[i] -= 8.0f;   /* open_clip's bias -10 regime */
    vlm_copy(&logits.d, &logits.h);
    pair loss = mk1(1, 0, 0, 9.0f);
    vlm_sigmoid_loss_forward(&loss.h, &logits.h, off);
    vlm_sigmoid_loss_forward(&loss.d, &logits.d, off);
    cmp("sigmoid_loss_forward", cs, "loss", &loss, TOL);
    pair dloss = mk1(1, 0, 0, 0.75f), dl = mk2(B, N, 530 + s, 0.01f, 0);
    vlm_sigmoid_loss_backward(&dl.h, &dloss.h, &logits.h, off);
    vlm_sigmoid_loss_backward(&dl.d, &dloss.d, &logits.d, off);
    cmp("sigmoid_loss_backward", cs, "dlogits", &dl, TOL);
    drop(&logits); drop(&loss); drop(&dloss); drop(&dl);
  }
}

/* ------------------------------------------------------------------ AdamW, grad norm, clip */
static void test_optim(void) {
  enum { NS = 70 }; /* more than one group of 64 slots */
  vlm_arena_reset(&g_dev);
  pair P[NS], Gr[NS], Mo[NS], Vo[NS];
  vlm_param_slot hs[NS], ds[NS];
  for (int i = 0; i < NS; i++) {
    int64_t n = i == 3 ? 100003 : (i % 7) * 37 + 1;
    P[i] = mk1(n, 600 + i, 1.0f, 0);
    Gr[i] = mk1(n, 700 + i, 0.1f, 0);
    Mo[i] = mk1(n, 0, 0, 0);
    Vo[i] = mk1(n, 0, 0, 0);
    hs[i] = (vlm_param_slot){"p", &P[i].h, &Gr[i].h, &Mo[i].h, &Vo[i].h, i % 2};
    ds[i] = (vlm_param_slot){"p", &P[i].d, &Gr[i].d, &Mo[i].d, &Vo[i].d, i % 2};
  }
  vlm_adamw_config c = {0.9f, 0.98f, 1e-6f, 0.2f};
  for (int t = 1; t <= 3; t++) {
    vlm_adamw_step(hs, NS, &c, 1e-3f, t);
    vlm_adamw_step(ds, NS, &c, 1e-3f, t);
  }
  for (int i = 0; i < NS; i += 3) {
    char cs[32];
    snprintf(cs, sizeof cs, "slot %d", i);
    cmp("adamw_step", cs, "param", &P[i], TOL);
    cmp("adamw_step", cs, "m", &Mo[i], TOL);
    cmp("adamw_step", cs, "v", &Vo[i], TOL);
  }
  double nh = vlm_grad_norm(hs, NS), nd = vlm_grad_norm(ds, NS);
  CHECK(fabs(nh - nd) <= 1e-9 * nh, "grad_norm: expected %.12g, got %.12g", nh, nd);
  record("grad_norm", fabs(nh - nd) / nh, fabs(nh - nd) <= 1e-9 * nh);
  double ch, cd;
  vlm_grad_clip(hs, NS, 0.5 * nh, &ch);
  vlm_grad_clip(ds, NS, 0.5 * nh, &cd);
  CHECK(fabs(ch - cd) <= 1e-9, "grad_clip: coefficient expected %.12g, got %.12g", ch, cd);
  for (int i = 0; i < NS; i += 5) cmp("grad_clip", "half norm", "grad", &Gr[i], TOL);
  for (int i = 0; i < NS; i++) { drop(&P[i]); drop(&Gr[i]); drop(&Mo[i]); drop(&Vo[i]); }
}

/* ------------------------------------------------------------------ fill, zero, convert */
static void test_tensor_utils(void) {
  vlm_arena_reset(&g_dev);
  pair x = mk2(33, 65, 800, 1.0f, 0);
  vlm_fill(&x.d, 2.5f);
  for (int64_t i = 0; i < vlm_numel(&x.h); i++) ((float *)x.hp)[i] = 2.5f;
  cmp("fill", "F32 2.5", "x", &x, 0);
  vlm_zero(&x.d);
  memset(x.hp, 0, vlm_nbytes(&x.h));
  cmp("zero", "F32", "x", &x, 0);
  /* F32 -> BF16 -> F32 on the device equals the host rounding */
  pair y = mk2(33, 65, 801, 3.0f, 0);
  vlm_tensor yb = vlm_arena_tensor(&g_dev, VLM_BF16, 2, y.h.shape);
  vlm_copy(&yb, &y.d);
  vlm_copy(&x.d, &yb);
  for (int64_t i = 0; i < vlm_numel(&y.h); i++) ((float *)x.hp)[i] = vlm_round_bf16(((float *)y.hp)[i]);
  cmp("copy", "F32->BF16->F32", "x", &x, 0);
  vlm_fill(&yb, 1.5f);
  vlm_copy(&x.d, &yb);
  for (int64_t i = 0; i < vlm_numel(&y.h); i++) ((float *)x.hp)[i] = 1.5f;
  cmp("fill", "BF16 1.5", "x", &x, 0);
  /* copy_rows (the kernel, device to device; host to device through memcpy)
   * against the CPU's: [4 x 7 rows, 65] <- 4 blocks of 5 rows of y, step 6, and
   * one repeated row (step 0) into row 6 of each block */
  pair z = mk3(4, 7, 65, 802, 0.0f, -1.0f);
  vlm_copy_rows(&z.d, 1, 7, &y.d, 2, 6, 4, 5);
  vlm_copy_rows(&z.h, 1, 7, &y.h, 2, 6, 4, 5);
  vlm_copy_rows(&z.d, 6, 7, &y.d, 32, 0, 4, 1);
  vlm_copy_rows(&z.h, 6, 7, &y.h, 32, 0, 4, 1);
  cmp("copy_rows", "device, steps 6 and 0", "z", &z, 0);
  vlm_copy_rows(&z.d, 0, 7, &y.h, 0, 1, 4, 1);
  vlm_copy_rows(&z.h, 0, 7, &y.h, 0, 1, 4, 1);
  cmp("copy_rows", "host to device", "z", &z, 0);
  /* host access: ids staged, committed to the device, viewed back */
  int64_t ish[2] = {3, 5};
  vlm_tensor ids = vlm_arena_tensor(&g_dev, VLM_I64, 2, ish);
  int64_t *st = vlm_host_stage(&ids, 15 * sizeof(int64_t));
  CHECK(st != ids.data, "staging a device tensor gives a host buffer");
  for (int i = 0; i < 15; i++) st[i] = 1000 + 7 * i;
  vlm_host_commit(&ids, st, 15 * sizeof(int64_t));
  void *owned = NULL;
  vlm_tensor hv = vlm_host_view(&ids, &owned);
  int bad = hv.device != VLM_CPU || owned == NULL;
  for (int i = 0; i < 15 && !bad; i++) bad = ((const int64_t *)hv.data)[i] != 1000 + 7 * i;
  CHECK(!bad, "vlm_host_stage / commit / view round trip on the device");
  record("host_view", bad ? INFINITY : 0.0, !bad);
  free(owned);
  drop(&x); drop(&y); drop(&z);
}

static const struct { const char *name; void (*fn)(void); } k_sections[] = {
  {"utils", test_tensor_utils}, {"add", test_add}, {"matmul", test_matmul}, {"layernorm", test_layernorm},
  {"act", test_act}, {"linear", test_linear}, {"softmax", test_softmax}, {"attention", test_attention}, {"embedding", test_embedding},
  {"l2norm", test_l2norm}, {"cross_entropy", test_cross_entropy},
    {"sigmoid_loss", test_sigmoid_loss}, {"optim", test_optim},
};
#define N_SECTIONS (int)(sizeof k_sections / sizeof k_sections[0])

/* Usage: test_cuda_ops [SECTION...]: only those sections (utils, add, matmul,
 * layernorm, act, linear, softmax, attention, embedding, l2norm, cross_entropy, sigmoid_loss,
 * optim),
 * so that a section that aborts hides no other (tests/gpu/run.sh runs each in
 * its own process). Any other argument (ctest passes the shared folder): all. */
int main(int argc, char **argv) {
  if (!vlm_cuda_available()) {
    char why[512];
    snprintf(why, sizeof why, "no CUDA GPU: skipped (%s)", vlm_cuda_describe());
    vt_skip(why);
  }
  int want[N_SECTIONS], any = 0;
  for (int k = 0; k < N_SECTIONS; k++) {
    want[k] = 0;
    for (int i = 1; i < argc; i++)
      if (!strcmp(argv[i], k_sections[k].name)) want[k] = any = 1;
  }
  printf("GPU: %s\n", vlm_cuda_describe());
  g_verbose = getenv("VLM_TEST_VERBOSE") && atoi(getenv("VLM_TEST_VERBOSE")) > 0;
  vlm_set_kernel_mode(VLM_KERNELS_REF);
  CHECK(vlm_arena_init(&g_dev, (size_t)256 << 20, VLM_CUDA) == VLM_OK, "cuda arena: %s", vlm_last_error());
  double t0 = vlm_now();
  for (int k = 0; k < N_SECTIONS; k++)
    if (!any || want[k]) {
      printf("section %s\n", k_sections[k].name);
      fflush(stdout);
      k_sections[k].fn();
    }
  vlm_cuda_sync("test_cuda_ops");
  printf("per op: comparisons, failures, worst error relative to the tensor's max (fp32 bound %.0e, bf16 %.0e)\n",
         TOL, TOL_BF16);
  for (int i = 0; i < g_nsum; i++)
    printf("  %-24s %4d compared %3d failed  worst %.2e%s\n", g_sum[i].op, g_sum[i].n, g_sum[i].bad, g_sum[i].worst,
           g_sum[i].bad ? "  <-- FAIL" : "");
  printf("test_cuda_ops: %.1f s (VLM_TEST_VERBOSE=1 prints every comparison)\n", vlm_now() - t0);
  vlm_arena_free(&g_dev);
  return vt_finish();
}
