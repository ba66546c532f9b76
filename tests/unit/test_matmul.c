/* matmul: fast (oneDNN) vs reference in fp32 and bf16, gradient checks,
 * BF16 input tensors, the raw vlm_cpu_sgemm, concurrent calls, small products on
 * one thread. */
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu/cpu.h"
#include "gradcheck.h"

/* Measured max error of the bf16 fast path against the bf16 reference on
 * ViT-B shapes (see docs/PERFORMANCE.md, "Numerics"); the bound sits a little
 * above it (measured 3.9e-7). Plain fp32 vs bf16 inputs differ by ~2e-3. */
#define BF16_TOL 1e-6

static float *copy_of(const float *x, int64_t n) {
  float *p = vt_alloc(n);
  memcpy(p, x, sizeof(float) * (size_t)n);
  return p;
}

/* One problem: a [M,K] (stored [K,M] with trans_a; split into [a0, M/a0, K]
 * when a3 > 1 and !trans_a), b [K,N] (stored [N,K] with trans_b), bias [N]. */
typedef struct {
  int64_t M, N, K;
  int trans_a, trans_b, has_bias, a3;
  float *a, *b, *bias, *out, *da, *db, *dbias, *dout;
  vlm_tensor ta, tb, tbias, tout, tda, tdb, tdbias, tdout;
} problem;

static void problem_init(problem *p, int64_t M, int64_t N, int64_t K, int trans_a, int trans_b,
                         int has_bias, int a3, uint64_t seed) {
  memset(p, 0, sizeof *p);
  p->M = M, p->N = N, p->K = K;
  p->trans_a = trans_a, p->trans_b = trans_b, p->has_bias = has_bias, p->a3 = trans_a ? 1 : a3;
  p->a = vt_alloc(M * K), p->b = vt_alloc(K * N), p->bias = vt_alloc(N), p->out = vt_alloc(M * N);
  p->da = vt_alloc(M * K), p->db = vt_alloc(K * N), p->dbias = vt_alloc(N), p->dout = vt_alloc(M * N);
  vt_fill_normal(p->a, M * K, seed, 1.0f);
  vt_fill_normal(p->b, K * N, seed + 1, 1.0f);
  vt_fill_normal(p->bias, N, seed + 2, 1.0f);
  vt_fill_normal(p->dout, M * N, seed + 3, 1.0f);
  if (trans_a) {
    int64_t s[2] = {K, M};
    p->ta = vlm_tensor_cpu_f32(p->a, 2, s);
  } else if (p->a3 > 1 && M % p->a3 == 0) {
    int64_t s[3] = {p->a3, M / p->a3, K};
    p->ta = vlm_tensor_cpu_f32(p->a, 3, s);
  } else {
    int64_t s[2] = {M, K};
    p->ta = vlm_tensor_cpu_f32(p->a, 2, s);
  }
  int64_t sb[2] = {trans_b ? N : K, trans_b ? K : N};
  p->tb = vlm_tensor_cpu_f32(p->b, 2, sb);
  int64_t sn[1] = {N};
  p->tbias = vlm_tensor_cpu_f32(p->bias, 1, sn);
  p->tdbias = vlm_tensor_cpu_f32(p->dbias, 1, sn);
  /* out and dout: [*, N] with a's leading dims */
  vlm_tensor o = p->ta;
  if (trans_a) { o.shape[0] = M; o.shape[1] = N; }
  else o.shape[o.ndim - 1] = N;
  p->tout = vlm_tensor_cpu_f32(p->out, o.ndim, o.shape);
  p->tdout = vlm_tensor_cpu_f32(p->dout, o.ndim, o.shape);
  p->tda = vlm_tensor_cpu_f32(p->da, p->ta.ndim, p->ta.shape);
  p->tdb = vlm_tensor_cpu_f32(p->db, 2, sb);
}

static void problem_free(problem *p) {
  free(p->a), free(p->b), free(p->bias), free(p->out);
  free(p->da), free(p->db), free(p->dbias), free(p->dout);
}

static void forward(problem *p) {
  vlm_matmul_forward(&p->tout, &p->ta, &p->tb, p->has_bias ? &p->tbias : NULL, p->trans_a, p->trans_b);
}
static void backward(problem *p) {
  vlm_matmul_backward(&p->tda, &p->tdb, p->has_bias ? &p->tdbias : NULL, &p->tdout, &p->ta, &p->tb,
                      p->trans_a, p->trans_b);
}

/* Fast vs reference, forward and backward (accumulating onto non-zero grads). */
static void compare_modes(int64_t M, int64_t N, int64_t K, int ta, int tb, int has_bias, int a3,
                          vlm_precision prec, double tol, double *worst) {
  problem p;
  problem_init(&p, M, N, K, ta, tb, has_bias, a3, (uint64_t)(M * 131 + N * 17 + K + ta * 7 + tb * 3));
  vlm_set_matmul_precision(prec);
  float *g0a = vt_alloc(M * K), *g0b = vt_alloc(K * N), *g0bias = vt_alloc(N);
  vt_fill_normal(g0a, M * K, 99, 0.5f);
  vt_fill_normal(g0b, K * N, 98, 0.5f);
  vt_fill_normal(g0bias, N, 97, 0.5f);

  vlm_set_kernel_mode(VLM_KERNELS_REF);
  forward(&p);
  float *ref_out = copy_of(p.out, M * N);
  memcpy(p.da, g0a, sizeof(float) * (size_t)(M * K));
  memcpy(p.db, g0b, sizeof(float) * (size_t)(K * N));
  memcpy(p.dbias, g0bias, sizeof(float) * (size_t)N);
  backward(&p);
  float *ref_da = copy_of(p.da, M * K), *ref_db = copy_of(p.db, K * N), *ref_dbias = copy_of(p.dbias, N);

  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  memset(p.out, 0xff, sizeof(float) * (size_t)(M * N));  /* NaN: every element must be written */
  forward(&p);
  memcpy(p.da, g0a, sizeof(float) * (size_t)(M * K));
  memcpy(p.db, g0b, sizeof(float) * (size_t)(K * N));
  memcpy(p.dbias, g0bias, sizeof(float) * (size_t)N);
  backward(&p);

  double eo = vt_max_rel(p.out, ref_out, M * N, 1e-6);
  double ea = vt_max_rel(p.da, ref_da, M * K, 1e-6);
  double eb = vt_max_rel(p.db, ref_db, K * N, 1e-6);
  double ebias = has_bias ? vt_max_rel(p.dbias, ref_dbias, N, 1e-6) : 0;
  const char *pn = prec == VLM_PREC_BF16 ? "bf16" : "f32";
  CHECK(eo <= tol, "%s fast vs ref out: M=%lld N=%lld K=%lld ta=%d tb=%d bias=%d a3=%d: %.3g", pn,
        (long long)M, (long long)N, (long long)K, ta, tb, has_bias, a3, eo);
  CHECK(ea <= tol, "%s fast vs ref da: M=%lld N=%lld K=%lld ta=%d tb=%d: %.3g", pn, (long long)M,
        (long long)N, (long long)K, ta, tb, ea);
  CHECK(eb <= tol, "%s fast vs ref db: M=%lld N=%lld K=%lld ta=%d tb=%d: %.3g", pn, (long long)M,
        (long long)N, (long long)K, ta, tb, eb);
  CHECK(ebias <= tol, "%s fast vs ref dbias: M=%lld N=%lld K=%lld: %.3g", pn, (long long)M,
        (long long)N, (long long)K, ebias);
  if (worst) {
    double e = fmax(fmax(eo, ea), fmax(eb, ebias));
    if (e > *worst) *worst = e;
  }
  if (getenv("VT_VERBOSE"))
    printf("  %s M=%lld N=%lld K=%lld ta=%d tb=%d bias=%d: out %.3g da %.3g db %.3g dbias %.3g\n", pn,
           (long long)M, (long long)N, (long long)K, ta, tb, has_bias, eo, ea, eb, ebias);
  free(ref_out), free(ref_da), free(ref_db), free(ref_dbias);
  free(g0a), free(g0b), free(g0bias);
  problem_free(&p);
  vlm_set_matmul_precision(VLM_PREC_F32);
}

static void test_fast_vs_ref_f32(void) {
  static const int64_t shapes[][3] = {  /* M, N, K */
    {1, 1, 1}, {1, 3, 17}, {3, 17, 1}, {17, 1, 65}, {3, 17, 65}, {65, 3, 17}, {17, 65, 3},
    {6, 130, 33}, {64, 48, 96}, {129, 67, 200},
    /* 1 row with >= 65536 weights: the fp32 forward with tb takes core/cpu/gemv.c (with AVX-512
     * up to 8 rows; more rows: oneDNN), N and K with and without tails of the 4 x 16 tiles */
    {1, 517, 130}, {2, 300, 257}, {3, 1030, 97}, {4, 257, 512}, {5, 257, 512}, {6, 301, 250},
    {7, 256, 1024}, {8, 517, 131}, {9, 300, 257},
  };
  double worst = 0;
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++)
        for (int bias = 0; bias < 2; bias++)
          compare_modes(shapes[s][0], shapes[s][1], shapes[s][2], ta, tb, bias, (s % 2) ? 3 : 1,
                        VLM_PREC_F32, 1e-5, &worst);
  /* a with three dims: [2, 50, 96] @ [96, 40]^T */
  for (int tb = 0; tb < 2; tb++) compare_modes(100, 40, 96, 0, tb, 1, 2, VLM_PREC_F32, 1e-5, &worst);
  printf("fp32 fast vs ref: max relative error %.3g\n", worst);
}

/* Which shapes the gemv path takes, and that it matches a plain double loop. */
static void test_gemv_dispatch(void) {
  float *a = vt_alloc(9 * 600), *b = vt_alloc(600 * 600), *bias = vt_alloc(600), *o = vt_alloc(9 * 600),
        *r = vt_alloc(9 * 600);
  vt_fill_normal(a, 9 * 600, 5, 1.0f);
  vt_fill_normal(b, 600 * 600, 6, 0.1f);
  vt_fill_normal(bias, 600, 7, 1.0f);
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
  const int max_rows = 8;   /* the 4 x 4 (AVX-512) or 2 x 4 (AVX2) register tiles */
#else
  const int max_rows = 1;
#endif
  CHECK(vlm_cpu_gemv_forward(1, 517, 130, a, b, 1, NULL, o) == 1, "gemv takes 1 x 517 x 130");
  CHECK(vlm_cpu_gemv_forward(max_rows + 1, 600, 600, a, b, 1, NULL, o) == 0, "gemv leaves %d rows to oneDNN",
        max_rows + 1);
  CHECK(vlm_cpu_gemv_forward(1, 100, 100, a, b, 1, NULL, o) == 0, "gemv leaves small products to oneDNN");
  CHECK(vlm_cpu_gemv_forward(1, 600, 600, a, b, 0, NULL, o) == 0, "gemv leaves b stored [K,N] to oneDNN");
  /* every row count it takes, N = 599 and K = 599 (tails of the tiles), with and without bias */
  const int64_t N = 599, K = 599;
  for (int M = 1; M <= max_rows; M++)
    for (int with_bias = 0; with_bias < 2; with_bias++) {
      CHECK(vlm_cpu_gemv_forward(M, N, K, a, b, 1, with_bias ? bias : NULL, o) == 1, "gemv takes %d x 599 x 599", M);
      for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
          double s = with_bias ? bias[n] : 0.0;
          for (int64_t k = 0; k < K; k++) s += (double)a[m * K + k] * b[n * K + k];
          r[m * N + n] = (float)s;
        }
      double e = vt_max_rel(o, r, M * N, 1e-6);
      CHECK(e < 1e-5, "gemv %d rows%s vs double loop: %.3g", M, with_bias ? " + bias" : "", e);
    }
  free(a), free(b), free(bias), free(o), free(r);
}

/* The bf16 gemv (1 row, BF16 weights [N,K] or [K,N], bf16 precision): which shapes it
 * takes, and the fast matmul through it against a double loop over the bf16-rounded
 * operands, with a F32 and with a BF16 row, K and N with and without tails of the
 * kernels' steps (32 of K for [N,K]; 16 rows and 64 columns for [K,N]). */
static void test_gemv_bf16(void) {
  static const int64_t shapes[][2] = {{517, 130}, {600, 600}, {129, 512}, {2048, 515}};  /* N, K */
  float *a = vt_alloc(2 * 2048), *o = vt_alloc(2048), *r = vt_alloc(2048), *bias = vt_alloc(2048);
  float *wf = vt_alloc(2048 * 2048);
  uint16_t *w = malloc(sizeof(uint16_t) * 2048 * 2048), *ah = malloc(sizeof(uint16_t) * 2048);
  vt_fill_normal(a, 2 * 2048, 15, 1.0f);
  vt_fill_normal(wf, 2048 * 2048, 16, 0.1f);
  vt_fill_normal(bias, 2048, 17, 1.0f);
  vlm_f32_to_bf16_array(w, wf, 2048 * 2048);
  vlm_f32_to_bf16_array(ah, a, 2048);
  CHECK(vlm_cpu_gemv_bf16_forward(2, 600, 600, a, 0, w, 1, NULL, o) == 0, "bf16 gemv leaves 2 rows to oneDNN");
  CHECK(vlm_cpu_gemv_bf16_forward(1, 100, 100, a, 0, w, 1, NULL, o) == 0, "bf16 gemv leaves small products");
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  vlm_set_matmul_precision(VLM_PREC_BF16);
  double worst = 0;
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int64_t N = shapes[s][0], K = shapes[s][1];
    for (int abf = 0; abf < 2; abf++)
      for (int hb = 0; hb < 4; hb++) {
        int tb = hb < 2;   /* hb 0, 1: [N,K]; 2, 3: [K,N]; odd: with bias */
        int64_t ash[2] = {1, K}, wsh[2] = {tb ? N : K, tb ? K : N}, osh[2] = {1, N}, bsh[1] = {N};
        vlm_tensor at = abf ? vlm_tensor_make(ah, VLM_BF16, VLM_CPU, 2, ash) : vlm_tensor_cpu_f32(a, 2, ash);
        vlm_tensor wt = vlm_tensor_make(w, VLM_BF16, VLM_CPU, 2, wsh), ot = vlm_tensor_cpu_f32(o, 2, osh);
        vlm_tensor bt = vlm_tensor_cpu_f32(bias, 1, bsh);
        memset(o, 0xff, sizeof(float) * (size_t)N);
        vlm_matmul_forward(&ot, &at, &wt, (hb & 1) ? &bt : NULL, 0, tb);
        for (int64_t n = 0; n < N; n++) {
          double acc = (hb & 1) ? bias[n] : 0;
          for (int64_t k = 0; k < K; k++)
            acc += (double)vlm_bf16_to_f32(ah[k]) * vlm_bf16_to_f32(w[tb ? n * K + k : k * N + n]);
          r[n] = (float)acc;
        }
        double e = vt_max_rel(o, r, N, 1e-3);
        CHECK(e < 1e-5, "bf16 gemv 1 x %lld x %lld (a %s, weights %s, bias %d) vs double loop: %.3g", (long long)N,
              (long long)K, abf ? "bf16" : "f32", tb ? "[N,K]" : "[K,N]", hb & 1, e);
        worst = fmax(worst, e);
      }
  }
  vlm_set_matmul_precision(VLM_PREC_F32);
  printf("bf16 gemv vs double loop: max relative error %.3g\n", worst);
  free(a), free(o), free(r), free(bias), free(wf), free(w), free(ah);
}

/* Only some gradients requested; the others stay untouched (NULL = skip). */
static void test_partial_grads(void) {
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode(mode ? VLM_KERNELS_FAST : VLM_KERNELS_REF);
    problem p;
    problem_init(&p, 7, 5, 9, 0, 1, 1, 1, 5);
    vlm_matmul_backward(&p.tda, NULL, NULL, &p.tdout, &p.ta, &p.tb, 0, 1);
    float *da1 = copy_of(p.da, 7 * 9);
    memset(p.da, 0, sizeof(float) * 7 * 9);
    vlm_matmul_backward(&p.tda, &p.tdb, &p.tdbias, &p.tdout, &p.ta, &p.tb, 0, 1);
    CHECK(vt_max_abs(p.da, da1, 7 * 9) == 0, "da alone equals da with the others (mode %d)", mode);
    memset(p.db, 0, sizeof(float) * 45);
    vlm_matmul_backward(NULL, NULL, &p.tdbias, &p.tdout, &p.ta, &p.tb, 0, 1);
    int untouched = 1;
    for (int i = 0; i < 45; i++) untouched &= p.db[i] == 0.0f;
    CHECK(untouched, "NULL db untouched (mode %d)", mode);
    free(da1);
    problem_free(&p);
  }
}

/* vlm_cpu_matmul_backward_set (the block's gradient scratch): da is written
 * over whatever it held (NaN here), equal to zero + the accumulating backward;
 * db and dbias still accumulate. fp32 (dnnl_sgemm with beta 0) and bf16. */
static void test_backward_set(void) {
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  for (int prec = 0; prec < 2; prec++) {
    vlm_set_matmul_precision(prec ? VLM_PREC_BF16 : VLM_PREC_F32);
    const int64_t shapes[][3] = {{37, 29, 45}, {300, 192, 64}, {1, 1, 1}};
    for (int i = 0; i < 3; i++) {
      int64_t M = shapes[i][0], N = shapes[i][1], K = shapes[i][2];
      problem p, q;
      problem_init(&p, M, N, K, 0, 1, 1, 1, 11 + (uint64_t)i);
      problem_init(&q, M, N, K, 0, 1, 1, 1, 11 + (uint64_t)i);
      vt_fill_normal(q.db, K * N, 3, 1.0f), memcpy(p.db, q.db, sizeof(float) * (size_t)(K * N));
      vt_fill_normal(q.dbias, N, 4, 1.0f), memcpy(p.dbias, q.dbias, sizeof(float) * (size_t)N);
      memset(p.da, 0, sizeof(float) * (size_t)(M * K));
      for (int64_t j = 0; j < M * K; j++) q.da[j] = NAN;
      backward(&p);
      vlm_cpu_matmul_backward_set(&q.tda, &q.tdb, &q.tdbias, &q.tdout, &q.ta, &q.tb, 0, 1,
                                  vlm_get_matmul_precision());
      CHECK(vt_max_abs(q.da, p.da, M * K) == 0, "%s %lldx%lldx%lld: da written = zero + accumulate",
            prec ? "bf16" : "fp32", (long long)M, (long long)N, (long long)K);
      CHECK(vt_max_abs(q.db, p.db, K * N) == 0 && vt_max_abs(q.dbias, p.dbias, N) == 0,
            "%s %lldx%lldx%lld: db, dbias still accumulate", prec ? "bf16" : "fp32", (long long)M,
            (long long)N, (long long)K);
      problem_free(&p);
      problem_free(&q);
    }
  }
  vlm_set_matmul_precision(VLM_PREC_F32);
}

/* K = 0: an empty sum, out = bias. */
static void test_empty_k(void) {
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode(mode ? VLM_KERNELS_FAST : VLM_KERNELS_REF);
    float out[6], bias[3] = {1, 2, 3};
    int64_t sa[2] = {2, 0}, sb[2] = {3, 0}, so[2] = {2, 3}, sn[1] = {3};
    vlm_tensor a = vlm_tensor_cpu_f32(NULL, 2, sa), b = vlm_tensor_cpu_f32(NULL, 2, sb);  /* never read */
    vlm_tensor o = vlm_tensor_cpu_f32(out, 2, so), tb = vlm_tensor_cpu_f32(bias, 1, sn);
    for (int i = 0; i < 6; i++) out[i] = NAN;
    vlm_matmul_forward(&o, &a, &b, &tb, 0, 1);
    CHECK(out[0] == 1 && out[2] == 3 && out[3] == 1 && out[5] == 3, "K=0 gives the bias (mode %d)", mode);
  }
}

/* ------------------------------------------------------------------ gradient checks */
static void gc_forward(void *ctx) { forward(ctx); }
static void gc_backward(void *ctx) { backward(ctx); }

static void test_gradcheck(void) {
  for (int mode = 0; mode < 2; mode++)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++) {
        vlm_set_kernel_mode(mode ? VLM_KERNELS_FAST : VLM_KERNELS_REF);
        problem p;
        problem_init(&p, 6, 5, 7, ta, tb, 1, 2, (uint64_t)(40 + ta * 2 + tb));
        vt_gc_input in[3] = {
          {"a", p.a, p.da, p.M * p.K}, {"b", p.b, p.db, p.K * p.N}, {"bias", p.bias, p.dbias, p.N}};
        vt_gradcheck g = {gc_forward, gc_backward, &p, p.out, p.dout, p.M * p.N, in, 3, 0, 0, 0, 7};
        char what[64];
        snprintf(what, sizeof what, "matmul %s ta=%d tb=%d", mode ? "fast" : "ref", ta, tb);
        vt_gradcheck_run(what, &g);
        problem_free(&p);
      }
}

/* ------------------------------------------------------------------ bf16 */
static void test_bf16_precision(void) {
  if (!vlm_cpu_bf16_gemm_native()) printf("note: oneDNN has no bf16 GEMM here (no AVX-512): bf16 operands widened to f32\n");
  else if (!vlm_cpu_has_bf16()) printf("note: no AVX512-BF16 here; oneDNN emulates bf16\n");
  double worst = 0;
  /* ViT-B shapes: tokens x width @ Linear weights, plus odd ones. */
  compare_modes(100, 768, 768, 0, 1, 1, 2, VLM_PREC_BF16, BF16_TOL, &worst);
  compare_modes(100, 768, 3072, 0, 1, 1, 1, VLM_PREC_BF16, BF16_TOL, &worst);
  compare_modes(50, 2304, 768, 0, 1, 1, 1, VLM_PREC_BF16, BF16_TOL, &worst);
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) compare_modes(17, 65, 33, ta, tb, 1, 1, VLM_PREC_BF16, BF16_TOL, &worst);
  compare_modes(1, 1, 1, 0, 0, 0, 1, VLM_PREC_BF16, BF16_TOL, &worst);
  printf("bf16 fast vs bf16 ref: max relative error %.3g (bound %.1g)\n", worst, BF16_TOL);

  /* The test can tell bf16 from fp32: the two references differ far beyond the bound. */
  problem p;
  problem_init(&p, 100, 768, 768, 0, 1, 1, 1, 3);
  vlm_set_kernel_mode(VLM_KERNELS_REF);
  forward(&p);
  float *f32 = copy_of(p.out, p.M * p.N);
  vlm_set_matmul_precision(VLM_PREC_BF16);
  forward(&p);
  double gap = vt_max_rel(p.out, f32, p.M * p.N, 1e-6);
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  forward(&p);
  double fast_gap = vt_max_rel(p.out, f32, p.M * p.N, 1e-6);
  vlm_set_matmul_precision(VLM_PREC_F32);
  printf("bf16 vs fp32 inputs (100x768x768): reference %.3g, fast %.3g\n", gap, fast_gap);
  CHECK(gap > 50 * BF16_TOL, "bf16 and fp32 references differ by %.3g only", gap);
  CHECK(fast_gap > 50 * BF16_TOL, "fast bf16 is suspiciously close to fp32 (%.3g)", fast_gap);
  free(f32);
  problem_free(&p);
}

/* BF16 tensors as inputs: in f32 precision the result is exact products of the
 * stored values (both modes agree to fp32 accuracy), also when mixed with F32. */
static void test_bf16_tensors(void) {
  const int64_t M = 37, N = 70, K = 129;
  float *af = vt_alloc(M * K), *bf = vt_alloc(N * K), *bias = vt_alloc(N), *dout = vt_alloc(M * N);
  vt_fill_normal(af, M * K, 11, 1.0f);
  vt_fill_normal(bf, N * K, 12, 1.0f);
  vt_fill_normal(bias, N, 13, 1.0f);
  vt_fill_normal(dout, M * N, 14, 1.0f);
  uint16_t *ah = malloc(sizeof(uint16_t) * (size_t)(M * K)), *bh = malloc(sizeof(uint16_t) * (size_t)(N * K));
  vlm_f32_to_bf16_array(ah, af, (size_t)(M * K));
  vlm_f32_to_bf16_array(bh, bf, (size_t)(N * K));
  int64_t sa[2] = {M, K}, sb[2] = {N, K}, so[2] = {M, N}, sn[1] = {N};
  vlm_tensor a16 = vlm_tensor_make(ah, VLM_BF16, VLM_CPU, 2, sa), b16 = vlm_tensor_make(bh, VLM_BF16, VLM_CPU, 2, sb);
  vlm_tensor a32 = vlm_tensor_cpu_f32(af, 2, sa), b32 = vlm_tensor_cpu_f32(bf, 2, sb);
  vlm_tensor tbias = vlm_tensor_cpu_f32(bias, 1, sn), tdout = vlm_tensor_cpu_f32(dout, 2, so);
  float *out[2], *da[2], *db[2];
  const vlm_tensor *as[3] = {&a16, &a16, &a32}, *bs[3] = {&b16, &b32, &b16};
  const char *names[3] = {"bf16 x bf16", "bf16 x f32", "f32 x bf16"};
  for (int prec = 0; prec < 2; prec++)
    for (int c = 0; c < 3; c++) {
      vlm_set_matmul_precision(prec ? VLM_PREC_BF16 : VLM_PREC_F32);
      for (int mode = 0; mode < 2; mode++) {
        vlm_set_kernel_mode(mode ? VLM_KERNELS_FAST : VLM_KERNELS_REF);
        out[mode] = vt_alloc(M * N), da[mode] = vt_alloc(M * K), db[mode] = vt_alloc(N * K);
        vlm_tensor to = vlm_tensor_cpu_f32(out[mode], 2, so);
        vlm_tensor tda = vlm_tensor_cpu_f32(da[mode], 2, sa), tdb = vlm_tensor_cpu_f32(db[mode], 2, sb);
        vlm_matmul_forward(&to, as[c], bs[c], &tbias, 0, 1);
        vlm_matmul_backward(&tda, &tdb, NULL, &tdout, as[c], bs[c], 0, 1);
      }
      double tol = prec ? BF16_TOL : 1e-5;
      double e = vt_max_rel(out[1], out[0], M * N, 1e-6);
      double ea = vt_max_rel(da[1], da[0], M * K, 1e-6), eb = vt_max_rel(db[1], db[0], N * K, 1e-6);
      CHECK(e <= tol && ea <= tol && eb <= tol, "%s tensors (%s precision): out %.3g da %.3g db %.3g",
            names[c], prec ? "bf16" : "f32", e, ea, eb);
      for (int mode = 0; mode < 2; mode++) free(out[mode]), free(da[mode]), free(db[mode]);
    }
  vlm_set_matmul_precision(VLM_PREC_F32);
  free(af), free(bf), free(bias), free(dout), free(ah), free(bh);
}

/* ------------------------------------------------------------------ vlm_cpu_sgemm */
static void naive_sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                        int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  for (int64_t m = 0; m < M; m++)
    for (int64_t n = 0; n < N; n++) {
      double s = 0;
      for (int64_t k = 0; k < K; k++)
        s += (double)(ta ? A[k * lda + m] : A[m * lda + k]) * (tb ? B[n * ldb + k] : B[k * ldb + n]);
      C[m * ldc + n] = (float)(alpha * s + (beta == 0.0f ? 0.0 : (double)beta * C[m * ldc + n]));
    }
}

static void test_sgemm(void) {
  const int64_t M = 19, N = 23, K = 37, pad = 5;
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
      float *A = vt_alloc((ta ? K : M) * lda), *B = vt_alloc((tb ? N : K) * ldb);
      float *C = vt_alloc(M * ldc), *R = vt_alloc(M * ldc);
      vt_fill_normal(A, (ta ? K : M) * lda, 21, 1.0f);
      vt_fill_normal(B, (tb ? N : K) * ldb, 22, 1.0f);
      vt_fill_normal(C, M * ldc, 23, 1.0f);
      memcpy(R, C, sizeof(float) * (size_t)(M * ldc));
      vlm_cpu_sgemm(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, 0.75f, C, ldc);
      naive_sgemm(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, 0.75f, R, ldc);
      CHECK(vt_max_rel(C, R, M * ldc, 1e-6) < 1e-5, "sgemm ta=%d tb=%d: %.3g", ta, tb,
            vt_max_rel(C, R, M * ldc, 1e-6));
      /* beta 0 ignores C's old contents (NaN included) */
      for (int64_t i = 0; i < M * ldc; i++) C[i] = R[i] = (i % ldc) < N ? NAN : 1.0f;
      vlm_cpu_sgemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
      naive_sgemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, R, ldc);
      CHECK(vt_max_rel(C, R, M * ldc, 1e-6) < 1e-5, "sgemm beta=0 ta=%d tb=%d", ta, tb);
      free(A), free(B), free(C), free(R);
    }
  /* Called from inside a parallel region (as attention does): one GEMM per thread. */
  enum { J = 8 };
  const int64_t n = 24;
  float *A = vt_alloc(J * n * n), *B = vt_alloc(J * n * n), *C = vt_alloc(J * n * n), *R = vt_alloc(J * n * n);
  vt_fill_normal(A, J * n * n, 31, 1.0f);
  vt_fill_normal(B, J * n * n, 32, 1.0f);
#pragma omp parallel for schedule(static)
  for (int j = 0; j < J; j++)
    vlm_cpu_sgemm(0, 1, n, n, n, 1.0f, A + j * n * n, n, B + j * n * n, n, 0.0f, C + j * n * n, n);
  for (int j = 0; j < J; j++)
    naive_sgemm(0, 1, n, n, n, 1.0f, A + j * n * n, n, B + j * n * n, n, 0.0f, R + j * n * n, n);
  CHECK(vt_max_rel(C, R, J * n * n, 1e-6) < 1e-5, "sgemm inside a parallel region");
  free(A), free(B), free(C), free(R);
}

static void *read_precision(void *out) {
  *(vlm_precision *)out = vlm_get_matmul_precision();
  return NULL;
}

/* Several threads calling the fast matmul at once (shared primitive cache,
 * per-thread streams, scratchpads and conversion buffers), both precisions. The
 * matmul precision is per thread: each thread sets its own. */
static void test_concurrent(void) {
  enum { J = 6 };
  problem p[J];
  float *ref[J];
  for (int j = 0; j < J; j++) problem_init(&p[j], 20 + 3 * (j % 3), 31, 40, 0, 1, 1, 1, (uint64_t)(60 + j));
  for (int prec = 0; prec < 2; prec++) {
    vlm_set_matmul_precision(prec ? VLM_PREC_BF16 : VLM_PREC_F32);
    vlm_set_kernel_mode(VLM_KERNELS_REF);
    for (int j = 0; j < J; j++) {
      forward(&p[j]);
      ref[j] = copy_of(p[j].out, p[j].M * p[j].N);
    }
    vlm_set_kernel_mode(VLM_KERNELS_FAST);
#pragma omp parallel for schedule(static)
    for (int j = 0; j < J; j++) {
      vlm_precision was = vlm_get_matmul_precision();
      vlm_set_matmul_precision(prec ? VLM_PREC_BF16 : VLM_PREC_F32);
      forward(&p[j]);
      vlm_set_matmul_precision(was);
    }
    for (int j = 0; j < J; j++) {
      double e = vt_max_rel(p[j].out, ref[j], p[j].M * p[j].N, 1e-6);
      CHECK(e <= (prec ? BF16_TOL : 1e-5), "concurrent matmul %d (%s): %.3g", j, prec ? "bf16" : "f32", e);
      free(ref[j]);
    }
  }
  vlm_set_matmul_precision(VLM_PREC_F32);
  for (int j = 0; j < J; j++) problem_free(&p[j]);
  /* one thread's setting is not another's: bf16 here, f32 (the default) on a new thread */
  vlm_set_matmul_precision(VLM_PREC_BF16);
  vlm_precision seen = VLM_PREC_BF16;
  pthread_t th;
  CHECK(pthread_create(&th, NULL, read_precision, &seen) == 0, "pthread_create");
  pthread_join(th, NULL);
  CHECK(seen == VLM_PREC_F32 && vlm_get_matmul_precision() == VLM_PREC_BF16, "the matmul precision is per thread");
  vlm_set_matmul_precision(VLM_PREC_F32);
}

/* Same inputs, same thread count: bit-identical results. */
static void test_deterministic(void) {
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  problem p;
  problem_init(&p, 90, 70, 300, 0, 1, 1, 1, 77);
  forward(&p);
  backward(&p);
  float *o = copy_of(p.out, p.M * p.N), *da = copy_of(p.da, p.M * p.K), *dbias = copy_of(p.dbias, p.N);
  memset(p.da, 0, sizeof(float) * (size_t)(p.M * p.K));
  memset(p.db, 0, sizeof(float) * (size_t)(p.K * p.N));
  memset(p.dbias, 0, sizeof(float) * (size_t)p.N);
  forward(&p);
  backward(&p);
  CHECK(!memcmp(o, p.out, sizeof(float) * (size_t)(p.M * p.N)) &&
            !memcmp(da, p.da, sizeof(float) * (size_t)(p.M * p.K)) &&
            !memcmp(dbias, p.dbias, sizeof(float) * (size_t)p.N),
        "fast matmul is deterministic");
  free(o), free(da), free(dbias);
  problem_free(&p);
}

/* Products under 2^22 multiply-adds run on the calling thread alone: the same bits whatever the
 * thread count, and the caller's thread count is back afterwards (small and large products,
 * forward and backward). The shape is one whose product and weight gradient oneDNN sums in
 * another order when it splits them over 2 threads (checked with the threshold set to 0). */
static void test_small_serial(void) {
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  problem p;
  problem_init(&p, 2048, 32, 32, 0, 1, 1, 1, 78);   /* 2.1e6 multiply-adds */
  float *o[2], *da[2], *db[2];
  for (int t = 0; t < 2; t++) {
    vlm_threads_init(t + 1);
    memset(p.da, 0, sizeof(float) * (size_t)(p.M * p.K));
    memset(p.db, 0, sizeof(float) * (size_t)(p.K * p.N));
    forward(&p);
    backward(&p);
    CHECK(omp_get_max_threads() == t + 1, "small product: thread count %d restored (got %d)", t + 1,
          omp_get_max_threads());
    o[t] = copy_of(p.out, p.M * p.N), da[t] = copy_of(p.da, p.M * p.K), db[t] = copy_of(p.db, p.K * p.N);
  }
  CHECK(!memcmp(o[0], o[1], sizeof(float) * (size_t)(p.M * p.N)) &&
            !memcmp(da[0], da[1], sizeof(float) * (size_t)(p.M * p.K)) &&
            !memcmp(db[0], db[1], sizeof(float) * (size_t)(p.K * p.N)),
        "a small product gives the same bits on 1 and 2 threads");
  for (int t = 0; t < 2; t++) free(o[t]), free(da[t]), free(db[t]);
  problem_free(&p);
  problem q;
  problem_init(&q, 300, 200, 120, 0, 1, 1, 1, 79);   /* 7.2e6: split over the threads */
  forward(&q);
  backward(&q);
  CHECK(omp_get_max_threads() == 2, "large product: thread count 2 kept (got %d)", omp_get_max_threads());
  problem_free(&q);
}

int main(void) {
  vlm_threads_init(2);
  test_fast_vs_ref_f32();
  test_gemv_dispatch();
  test_gemv_bf16();
  test_partial_grads();
  test_backward_set();
  test_empty_k();
  test_gradcheck();
  test_bf16_precision();
  test_bf16_tensors();
  test_sgemm();
  test_concurrent();
  test_deterministic();
  test_small_serial();
  return vt_finish();
}
