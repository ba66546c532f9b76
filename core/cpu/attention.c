/* Fast CPU multi-head scaled dot-product attention (forward + backward).
 *
 * Work is split into units of one (batch, head) pair and a block of query rows
 * (forward, and the dQ half of backward) or key rows (the dK/dV half of
 * backward). Per unit the products are small GEMMs, done by one register-
 * blocked kernel (mm_rows below) over operands packed into per-thread buffers:
 *
 *   forward:  S  = Q Kt           (Kt: K transposed, [D][Lkp])
 *             P  = softmax(scale S) per row (mask, causality)
 *             O  = P Vp           (Vp: V rows, [Lk][Dp])
 *   backward: dP = dO Vt;  dS = P * (dP - rowsum(dP * P))
 *             dQ += scale * dS Kp
 *             dK += scale * dS^T Qp;  dV += P^T dOp   (A read column-wise)
 *
 * Lkp and Dp are Lk and D rounded up to NB, the kernel's column block, so the
 * packed right-hand operands need no tail handling.
 *
 * Causality is exploited by limiting each group of rows to the keys the last
 * row of the group can see. Backward does not know the mask or causality:
 * it reads them off the saved probabilities (a row's last nonzero entry), and
 * skips only products whose P factor is exactly 0.
 *
 * Every output element is computed by one thread in a fixed order that does
 * not depend on the blocking, so results are identical for any thread count.
 * Backward runs one of two schedules: "fused" (one unit per (b,h) does dQ,
 * then dK/dV, with dS in a per-thread buffer) when there are enough (b,h)
 * pairs to feed the threads, otherwise "split" (phase A over query blocks
 * writes dS to a scratch buffer and accumulates dQ; phase B over key blocks
 * accumulates dK, dV). */
#include "core/cpu/cpu.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define NB 16 /* columns per kernel pass; packed operands are padded to a multiple */

/* In ISO C mode gcc does not contract a*b+c into an FMA; ask for it where the
 * hardware has one (fmaf then compiles to vfmadd, vectorized). */
#if defined(__FMA__)
#define FMA(a, b, c) fmaf((a), (b), (c))
#else
#define FMA(a, b, c) ((a) * (b) + (c))
#endif

/* AVX-512 machines: let the kernels use 512-bit vectors (gcc prefers 256). */
#if defined(__AVX512F__)
#define WIDE __attribute__((target("prefer-vector-width=512")))
#else
#define WIDE
#endif

static inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
static inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* AVX2 + FMA without AVX-512 (e.g. AMD Zen 2/3): gcc keeps mk4_pass's 4 x 32 accumulators
 * (16 ymm registers, all there are) on the stack and leaves softmax_row and backward's
 * row dot (dP . P) scalar, so these are written with intrinsics there: the same operations in the same order per
 * element (one FMA chain over k; the same exp steps and lane reductions), so results are
 * bit-identical to the portable code. Passes of 16 columns: 8 accumulators. */
#if defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)
#define ATTN_AVX2 1
#include <immintrin.h>

/* c[0:n] (=|+=) alpha * (lo, hi), n <= 16. */
static inline void store16(float *c, __m256 lo, __m256 hi, int64_t n, float alpha, int accumulate) {
  const __m256 va = _mm256_set1_ps(alpha);
  lo = _mm256_mul_ps(va, lo);
  hi = _mm256_mul_ps(va, hi);
  if (n == 16) {
    if (accumulate) {
      lo = _mm256_add_ps(_mm256_loadu_ps(c), lo);
      hi = _mm256_add_ps(_mm256_loadu_ps(c + 8), hi);
    }
    _mm256_storeu_ps(c, lo);
    _mm256_storeu_ps(c + 8, hi);
    return;
  }
  float t[16];
  _mm256_storeu_ps(t, lo);
  _mm256_storeu_ps(t + 8, hi);
  if (accumulate)
    for (int64_t j = 0; j < n; j++) c[j] += t[j];
  else
    for (int64_t j = 0; j < n; j++) c[j] = t[j];
}

static inline __attribute__((always_inline)) void mk4_pass16(int64_t nr, int64_t K, const float *a, int64_t ars,
                                                             int64_t aks, const float *b, int64_t ldb, int64_t j0,
                                                             float *c, int64_t ldc, int64_t nstore, float alpha,
                                                             int accumulate) {
  const int64_t o1 = nr > 1 ? ars : 0, o2 = nr > 2 ? 2 * ars : 0, o3 = nr > 3 ? 3 * ars : 0;
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00,
         c31 = c00;
  const float *bp = b + j0, *ap = a;
  for (int64_t kk = 0; kk < K; kk++, bp += ldb, ap += aks) {
    const __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
    const __m256 a0 = _mm256_broadcast_ss(ap), a1 = _mm256_broadcast_ss(ap + o1);
    c00 = _mm256_fmadd_ps(a0, b0, c00);
    c01 = _mm256_fmadd_ps(a0, b1, c01);
    c10 = _mm256_fmadd_ps(a1, b0, c10);
    c11 = _mm256_fmadd_ps(a1, b1, c11);
    const __m256 a2 = _mm256_broadcast_ss(ap + o2), a3 = _mm256_broadcast_ss(ap + o3);
    c20 = _mm256_fmadd_ps(a2, b0, c20);
    c21 = _mm256_fmadd_ps(a2, b1, c21);
    c30 = _mm256_fmadd_ps(a3, b0, c30);
    c31 = _mm256_fmadd_ps(a3, b1, c31);
  }
  const int64_t n = imin(NB, nstore - j0);
  store16(c + j0, c00, c01, n, alpha, accumulate);
  if (nr > 1) store16(c + ldc + j0, c10, c11, n, alpha, accumulate);
  if (nr > 2) store16(c + 2 * ldc + j0, c20, c21, n, alpha, accumulate);
  if (nr > 3) store16(c + 3 * ldc + j0, c30, c31, n, alpha, accumulate);
}
#endif

/* ------------------------------------------------------------------ GEMM kernel
 * Four rows of C at a time share every load of the right-hand operand; each
 * output element is one FMA chain over k in order, whatever the blocking. */
WIDE static inline void store_row(float *c, const float *acc, int64_t n, float alpha, int accumulate) {
  if (accumulate)
    for (int64_t j = 0; j < n; j++) c[j] += alpha * acc[j];
  else
    for (int64_t j = 0; j < n; j++) c[j] = alpha * acc[j];
}

/* One pass over columns [j0, j0 + nb) for up to four rows; nb is a constant
 * at every call site (2*NB or NB), so the accumulators live in registers.
 * With nr < 4 the missing rows re-read row 0 (always valid memory) and are
 * not stored: four independent accumulator chains beat fewer, shorter ones. */
WIDE static inline __attribute__((always_inline)) void mk4_pass(int64_t nr, int64_t K, const float *a,
                                                                int64_t ars, int64_t aks, const float *b,
                                                                int64_t ldb, int64_t j0, const int nb, float *c,
                                                                int64_t ldc, int64_t nstore, float alpha,
                                                                int accumulate) {
  const int64_t o1 = nr > 1 ? ars : 0, o2 = nr > 2 ? 2 * ars : 0, o3 = nr > 3 ? 3 * ars : 0;
  float c0[2 * NB], c1[2 * NB], c2[2 * NB], c3[2 * NB];
  for (int jj = 0; jj < nb; jj++) c0[jj] = c1[jj] = c2[jj] = c3[jj] = 0.0f;
  const float *bp = b + j0, *ap = a;
  for (int64_t kk = 0; kk < K; kk++, bp += ldb, ap += aks) {
    const float a0 = ap[0], a1 = ap[o1], a2 = ap[o2], a3 = ap[o3];
    for (int jj = 0; jj < nb; jj++) {
      const float bv = bp[jj];
      c0[jj] = FMA(a0, bv, c0[jj]);
      c1[jj] = FMA(a1, bv, c1[jj]);
      c2[jj] = FMA(a2, bv, c2[jj]);
      c3[jj] = FMA(a3, bv, c3[jj]);
    }
  }
  const int64_t n = imin(nb, nstore - j0);
  store_row(c + j0, c0, n, alpha, accumulate);
  if (nr > 1) store_row(c + ldc + j0, c1, n, alpha, accumulate);
  if (nr > 2) store_row(c + 2 * ldc + j0, c2, n, alpha, accumulate);
  if (nr > 3) store_row(c + 3 * ldc + j0, c3, n, alpha, accumulate);
}

/* C[r][0:nstore] (=|+=) alpha * sum_{k<K} A(r,k) * Bm[k][0:nstore] for r < nr <= 4,
 * with A(r,k) = a[r*ars + k*aks] (rows or columns of a matrix), Bm row k at
 * b + k*ldb, readable (and finite) up to column ncols, a multiple of NB with
 * nstore <= ncols. Columns in passes of 2*NB, then one of NB for the rest. */
WIDE static void mm_rows(int64_t nr, int64_t K, const float *a, int64_t ars, int64_t aks, const float *b,
                         int64_t ldb, int64_t ncols, float *c, int64_t ldc, int64_t nstore, float alpha,
                         int accumulate) {
  int64_t j0 = 0;
#ifdef ATTN_AVX2
  for (; j0 < ncols && j0 < nstore; j0 += NB)
    mk4_pass16(nr, K, a, ars, aks, b, ldb, j0, c, ldc, nstore, alpha, accumulate);
  return;
#endif
  for (; j0 + 2 * NB <= ncols && j0 < nstore; j0 += 2 * NB)
    mk4_pass(nr, K, a, ars, aks, b, ldb, j0, 2 * NB, c, ldc, nstore, alpha, accumulate);
  if (j0 < ncols && j0 < nstore) mk4_pass(nr, K, a, ars, aks, b, ldb, j0, NB, c, ldc, nstore, alpha, accumulate);
}

/* ------------------------------------------------------------------ packing */
/* dst[d][j] = src row j, column d (rows at stride s1), zero for j in [n, ldd). */
static void pack_transposed(float *dst, int64_t ldd, const float *src, int64_t s1, int64_t n, int64_t D) {
  for (int64_t d = 0; d < D; d++) {
    float *o = dst + d * ldd;
    for (int64_t j = 0; j < n; j++) o[j] = src[j * s1 + d];
    for (int64_t j = n; j < ldd; j++) o[j] = 0.0f;
  }
}

/* dst[j][0:D] = src row j, zero for columns [D, Dp). */
static void pack_rows(float *dst, int64_t Dp, const float *src, int64_t s1, int64_t n, int64_t D) {
  for (int64_t j = 0; j < n; j++) {
    memcpy(dst + j * Dp, src + j * s1, (size_t)D * sizeof(float));
    for (int64_t d = D; d < Dp; d++) dst[j * Dp + d] = 0.0f;
  }
}

/* ------------------------------------------------------------------ exp
 * exp(x) for x <= 0 (the argument of a stable softmax), written so the
 * compiler vectorizes it: Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2,
 * degree-7 Taylor polynomial (truncation < 1e-8 relative), 2^n from bits.
 * Arguments below -87 are clamped (exp(-87) ~ 1.6e-38: negligible next to the
 * row maximum's exp(0) = 1). */
WIDE static inline float exp_nonpos(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 0.0f ? 0.0f : x;
  const float t = x * 1.44269504088896341f;
  const float nf = (t + 12582912.0f) - 12582912.0f; /* round to nearest */
  float r = x - nf * 0.693359375f;
  r = r - nf * -2.12194440e-4f;
  float p = 1.0f / 5040.0f;
  p = FMA(p, r, 1.0f / 720.0f);
  p = FMA(p, r, 1.0f / 120.0f);
  p = FMA(p, r, 1.0f / 24.0f);
  p = FMA(p, r, 1.0f / 6.0f);
  p = FMA(p, r, 0.5f);
  p = FMA(p, r, 1.0f);
  p = FMA(p, r, 1.0f);
  const int32_t n = (int32_t)nf;
  const uint32_t bits = (uint32_t)(n + 127) << 23;
  float two_n;
  memcpy(&two_n, &bits, sizeof two_n);
  return p * two_n;
}

/* Tree reductions of NB = 16 lanes, in a fixed order; constant trip counts so
 * the compiler unrolls them into a few vector operations. */
_Static_assert(NB == 16, "hmax16 / hsum16 reduce 16 lanes");
WIDE static inline float hmax16(const float *v) {
  float a[8], b[4];
  for (int i = 0; i < 8; i++) a[i] = v[i + 8] > v[i] ? v[i + 8] : v[i];
  for (int i = 0; i < 4; i++) b[i] = a[i + 4] > a[i] ? a[i + 4] : a[i];
  const float c0 = b[2] > b[0] ? b[2] : b[0], c1 = b[3] > b[1] ? b[3] : b[1];
  return c1 > c0 ? c1 : c0;
}

WIDE static inline float hsum16(const float *v) {
  float a[8], b[4];
  for (int i = 0; i < 8; i++) a[i] = v[i] + v[i + 8];
  for (int i = 0; i < 4; i++) b[i] = a[i] + a[i + 4];
  return (b[0] + b[2]) + (b[1] + b[3]);
}

/* s[0:jend) holds raw scores q.k; turns it into the probability row:
 * masked keys (keep[j] == 0) and keys >= jend get 0; no visible key: all 0.
 * Works in whole blocks of NB over [0, round_up(jend, NB)) (s and keep are
 * padded to that; keep is 0 on the padding) with per-lane partial max / sum,
 * reduced in a fixed order. Zeroes s up to n. */
#ifdef ATTN_AVX2
/* exp_nonpos on 8 lanes: the same steps (blends for the clamps' comparisons). */
static inline __m256 exp_nonpos8(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.0f), zero = _mm256_setzero_ps(), magic = _mm256_set1_ps(12582912.0f);
  x = _mm256_blendv_ps(x, lo, _mm256_cmp_ps(x, lo, _CMP_LT_OQ));
  x = _mm256_blendv_ps(x, zero, _mm256_cmp_ps(x, zero, _CMP_GT_OQ));
  const __m256 t = _mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f));
  const __m256 nf = _mm256_sub_ps(_mm256_add_ps(t, magic), magic);
  __m256 r = _mm256_sub_ps(x, _mm256_mul_ps(nf, _mm256_set1_ps(0.693359375f)));
  r = _mm256_sub_ps(r, _mm256_mul_ps(nf, _mm256_set1_ps(-2.12194440e-4f)));
  __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(nf), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}
#endif

WIDE static void softmax_row(float *s, int64_t jend, int64_t n, const float *keep, float scale) {
  const int64_t jp = round_up(jend, NB);
#ifdef ATTN_AVX2
  {
    const __m256 ninf = _mm256_set1_ps(-INFINITY), zero = _mm256_setzero_ps(), vs = _mm256_set1_ps(scale);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), vend = _mm256_set1_epi32((int32_t)jend);
    __m256 m0 = ninf, m1 = ninf;
    for (int64_t j0 = 0; j0 < jp; j0 += NB) {
      const __m256i i0 = _mm256_add_epi32(lane, _mm256_set1_epi32((int32_t)j0));
      const __m256i i1 = _mm256_add_epi32(i0, _mm256_set1_epi32(8));
      const __m256 v0 = _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(vend, i0)),
                                      _mm256_cmp_ps(_mm256_loadu_ps(keep + j0), zero, _CMP_NEQ_UQ));
      const __m256 v1 = _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(vend, i1)),
                                      _mm256_cmp_ps(_mm256_loadu_ps(keep + j0 + 8), zero, _CMP_NEQ_UQ));
      const __m256 x0 = _mm256_blendv_ps(ninf, _mm256_mul_ps(_mm256_loadu_ps(s + j0), vs), v0);
      const __m256 x1 = _mm256_blendv_ps(ninf, _mm256_mul_ps(_mm256_loadu_ps(s + j0 + 8), vs), v1);
      _mm256_storeu_ps(s + j0, x0);
      _mm256_storeu_ps(s + j0 + 8, x1);
      m0 = _mm256_max_ps(x0, m0); /* x > m ? x : m */
      m1 = _mm256_max_ps(x1, m1);
    }
    float mv[NB];
    _mm256_storeu_ps(mv, m0);
    _mm256_storeu_ps(mv + 8, m1);
    const float m = hmax16(mv);
    if (m == -INFINITY) {
      for (int64_t j = 0; j < imax(n, jp); j++) s[j] = 0.0f;
      return;
    }
    const __m256 vm = _mm256_set1_ps(m);
    __m256 s0 = zero, s1 = zero;
    for (int64_t j0 = 0; j0 < jp; j0 += NB) {
      const __m256 x0 = _mm256_loadu_ps(s + j0), x1 = _mm256_loadu_ps(s + j0 + 8);
      const __m256 e0 = _mm256_blendv_ps(exp_nonpos8(_mm256_sub_ps(x0, vm)), zero, _mm256_cmp_ps(x0, ninf, _CMP_EQ_OQ));
      const __m256 e1 = _mm256_blendv_ps(exp_nonpos8(_mm256_sub_ps(x1, vm)), zero, _mm256_cmp_ps(x1, ninf, _CMP_EQ_OQ));
      _mm256_storeu_ps(s + j0, e0);
      _mm256_storeu_ps(s + j0 + 8, e1);
      s0 = _mm256_add_ps(s0, e0);
      s1 = _mm256_add_ps(s1, e1);
    }
    float sv[NB];
    _mm256_storeu_ps(sv, s0);
    _mm256_storeu_ps(sv + 8, s1);
    const __m256 inv = _mm256_set1_ps(1.0f / hsum16(sv));
    for (int64_t j = 0; j < jp; j += 8) _mm256_storeu_ps(s + j, _mm256_mul_ps(_mm256_loadu_ps(s + j), inv));
    for (int64_t j = jp; j < n; j++) s[j] = 0.0f;
    return;
  }
#endif
  float mv[NB], sv[NB];
  for (int jj = 0; jj < NB; jj++) mv[jj] = -INFINITY, sv[jj] = 0.0f;
  for (int64_t j0 = 0; j0 < jp; j0 += NB)
    for (int jj = 0; jj < NB; jj++) {
      const int64_t j = j0 + jj;
      const float x = (j < jend && keep[j] != 0.0f) ? s[j] * scale : -INFINITY;
      s[j] = x;
      mv[jj] = x > mv[jj] ? x : mv[jj];
    }
  const float m = hmax16(mv);
  if (m == -INFINITY) {
    for (int64_t j = 0; j < imax(n, jp); j++) s[j] = 0.0f;
    return;
  }
  for (int64_t j0 = 0; j0 < jp; j0 += NB)
    for (int jj = 0; jj < NB; jj++) {
      const float x = s[j0 + jj];
      const float e = x == -INFINITY ? 0.0f : exp_nonpos(x - m);
      s[j0 + jj] = e;
      sv[jj] += e;
    }
  const float inv = 1.0f / hsum16(sv);
  for (int64_t j = 0; j < jp; j++) s[j] *= inv;
  for (int64_t j = jp; j < n; j++) s[j] = 0.0f;
}

/* ------------------------------------------------------------------ shapes */
typedef struct {
  int64_t B, H, D, Lq, Lk, Lkp, Dp;
  const float *q, *k, *v;
  int64_t qs0, qs1, ks0, ks1, vs0, vs1;
  float scale;
} attn_dims;

static attn_dims dims_of(const vlm_tensor *q, const vlm_tensor *k, const vlm_tensor *v, int heads,
                         float scale) {
  attn_dims a;
  a.B = q->shape[0];
  a.H = heads;
  a.D = q->shape[2] / heads;
  a.Lq = q->shape[1];
  a.Lk = k->shape[1];
  a.Lkp = round_up(a.Lk, NB);
  a.Dp = round_up(a.D, NB);
  a.q = (const float *)q->data;
  a.k = (const float *)k->data;
  a.v = (const float *)v->data;
  a.qs0 = q->stride[0];
  a.qs1 = q->stride[1];
  a.ks0 = k->stride[0];
  a.ks1 = k->stride[1];
  a.vs0 = v->stride[0];
  a.vs1 = v->stride[1];
  a.scale = scale;
  return a;
}

/* Units of work per (b,h) so that there are about 4 per thread, blocks of at
 * least 8 rows, a multiple of 4. Returns the block size; *nblk the count. */
static int64_t row_blocks(int64_t BH, int64_t L, int nthr, int64_t *nblk) {
  if (L <= 0) { *nblk = 0; return 1; }
  int64_t want = BH >= 4 * (int64_t)nthr ? 1 : ceil_div(4 * (int64_t)nthr, BH);
  want = imax(1, imin(want, ceil_div(L, 8)));
  int64_t blk = round_up(ceil_div(L, want), 4);
  *nblk = ceil_div(L, blk);
  return blk;
}

/* Below this many multiply-adds a call runs on the calling thread: waking a
 * team costs more than the work (and much more on a busy machine). */
#define PARALLEL_MIN_WORK (1 << 17)

/* Per-call buffers come from the calling thread's reusable kernel scratch. */
static float *scratch_floats(int slot, int64_t n) {
  return vlm_scratch(slot, (size_t)round_up(imax(n, 16), 16) * sizeof(float));
}

/* ------------------------------------------------------------------ forward */
typedef struct {
  attn_dims a;
  float *out;
  int64_t os0, os1;
  float *probs; /* may be NULL */
  const uint8_t *mask;
  int causal;
} fwd_ctx;

typedef struct {
  float *kt, *vp, *s, *keep;
  int64_t tag; /* (b,h) whose K, V are packed, -1 none */
} fwd_buf;

static inline int64_t visible_end(int causal, int64_t i, int64_t Lk) { return causal ? imin(i + 1, Lk) : Lk; }

static void fwd_unit(const fwd_ctx *c, fwd_buf *w, int64_t bh, int64_t i0, int64_t i1) {
  const attn_dims *a = &c->a;
  const int64_t b = bh / a->H, h = bh % a->H, D = a->D, Lk = a->Lk, Lkp = a->Lkp, Dp = a->Dp;
  if (w->tag != bh) {
    pack_transposed(w->kt, Lkp, a->k + b * a->ks0 + h * D, a->ks1, Lk, D);
    pack_rows(w->vp, Dp, a->v + b * a->vs0 + h * D, a->vs1, Lk, D);
    for (int64_t j = 0; j < Lk; j++) w->keep[j] = (c->mask && c->mask[b * Lk + j]) ? 0.0f : 1.0f;
    for (int64_t j = Lk; j < Lkp; j++) w->keep[j] = 0.0f;
    w->tag = bh;
  }
  const float *qb = a->q + b * a->qs0 + h * D;
  float *ob = c->out + b * c->os0 + h * D;
  for (int64_t i = i0; i < i1; i += 4) {
    const int64_t nr = imin(4, i1 - i);
    float *s = w->s + (i - i0) * Lkp;
    /* S rows i..i+nr over the keys the last of them sees. */
    const int64_t jend = visible_end(c->causal, i + nr - 1, Lk);
    mm_rows(nr, D, qb + i * a->qs1, a->qs1, 1, w->kt, Lkp, round_up(jend, NB), s, Lkp, round_up(jend, NB),
            1.0f, 0);
    for (int64_t r = 0; r < nr; r++) {
      float *sr = s + r * Lkp;
      softmax_row(sr, visible_end(c->causal, i + r, Lk), Lk, w->keep, a->scale);
      if (c->probs) memcpy(c->probs + (bh * a->Lq + i + r) * Lk, sr, (size_t)Lk * sizeof(float));
    }
    /* O rows = P Vp over the same keys. */
    mm_rows(nr, jend, s, Lkp, 1, w->vp, Dp, Dp, ob + i * c->os1, c->os1, D, 1.0f, 0);
  }
}

/* Few query rows (Lq <= DIRECT_MAX_LQ: decoding with a KV cache, a tower's
 * pooled row): packing K and V costs more than reading them once, so the
 * scores and the output are computed from the strided K, V rows in place.
 * Unit: one (b,h) and query row i; s and keep hold Lkp floats. */
#define DIRECT_MAX_LQ 2
WIDE static void fwd_direct(const fwd_ctx *c, float *s, float *keep, int64_t bh, int64_t i) {
  const attn_dims *a = &c->a;
  const int64_t b = bh / a->H, h = bh % a->H, D = a->D, Lk = a->Lk;
  const float *qr = a->q + b * a->qs0 + i * a->qs1 + h * D;
  const float *kb = a->k + b * a->ks0 + h * D, *vb = a->v + b * a->vs0 + h * D;
  const int64_t jend = visible_end(c->causal, i, Lk);
  for (int64_t j = 0; j < a->Lkp; j++) keep[j] = j < Lk && !(c->mask && c->mask[b * Lk + j]) ? 1.0f : 0.0f;
  for (int64_t j = 0; j < jend; j++) {
    const float *kr = kb + j * a->ks1;
    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
    for (int64_t d = 0; d < D; d++) acc += qr[d] * kr[d];
    s[j] = acc;
  }
  softmax_row(s, jend, Lk, keep, a->scale);
  if (c->probs) memcpy(c->probs + (bh * a->Lq + i) * Lk, s, (size_t)Lk * sizeof(float));
  float *o = c->out + b * c->os0 + i * c->os1 + h * D;
  for (int64_t d = 0; d < D; d++) o[d] = 0.0f;
  for (int64_t j = 0; j < jend; j++) {
    const float pj = s[j], *vr = vb + j * a->vs1;
#pragma omp simd
    for (int64_t d = 0; d < D; d++) o[d] = FMA(pj, vr[d], o[d]);
  }
}

void vlm_cpu_attention_forward(vlm_tensor *out, vlm_tensor *probs, const vlm_tensor *q,
                               const vlm_tensor *k, const vlm_tensor *v, int heads,
                               const vlm_tensor *key_padding_mask, int causal, float scale) {
  fwd_ctx c;
  c.a = dims_of(q, k, v, heads, scale);
  c.out = (float *)out->data;
  c.os0 = out->stride[0];
  c.os1 = out->stride[1];
  c.probs = probs ? (float *)probs->data : NULL;
  c.mask = key_padding_mask ? (const uint8_t *)key_padding_mask->data : NULL;
  c.causal = causal;
  const attn_dims *a = &c.a;
  const int64_t BH = a->B * a->H;
  if (BH == 0 || a->Lq == 0) return;

  const int parallel = BH * a->Lq * a->Lk * (a->D + 4) >= PARALLEL_MIN_WORK;
  const int nthr = parallel ? omp_get_max_threads() : 1;
  if (a->Lq <= DIRECT_MAX_LQ) {
    float *buf = scratch_floats(0, 2 * a->Lkp * nthr);
    const int64_t units = BH * a->Lq;
#pragma omp parallel if (parallel)
    {
      float *sb = buf + 2 * a->Lkp * omp_get_thread_num();
#pragma omp for schedule(static)
      for (int64_t u = 0; u < units; u++) fwd_direct(&c, sb, sb + a->Lkp, u / a->Lq, u % a->Lq);
    }
    return;
  }
  int64_t nqb;
  const int64_t qb = row_blocks(BH, a->Lq, nthr, &nqb);
  const int64_t per = a->D * a->Lkp + a->Lk * a->Dp + qb * a->Lkp + a->Lkp;
  const int64_t per_al = round_up(per, 16);
  float *buf = scratch_floats(0, per_al * nthr);
  const int64_t units = BH * nqb;

#pragma omp parallel if (parallel)
  {
    float *base = buf + per_al * omp_get_thread_num();
    fwd_buf w;
    w.kt = base;
    w.vp = w.kt + a->D * a->Lkp;
    w.s = w.vp + a->Lk * a->Dp;
    w.keep = w.s + qb * a->Lkp;
    w.tag = -1;
#pragma omp for schedule(static)
    for (int64_t u = 0; u < units; u++) {
      const int64_t bh = u / nqb, i0 = (u % nqb) * qb;
      fwd_unit(&c, &w, bh, i0, imin(i0 + qb, a->Lq));
    }
  }
}

/* ------------------------------------------------------------------ backward */
typedef struct {
  attn_dims a;
  const float *dout;
  int64_t ds0, ds1;
  const float *probs;
  float *dq, *dk, *dv;
  int64_t dqs0, dqs1, dks0, dks1, dvs0, dvs1;
} bwd_ctx;

typedef struct {
  float *vt, *kp;   /* phase A: V transposed [D][Lkp], K rows [Lk][Dp] */
  float *qp, *dop;  /* phase B: Q rows, dO rows [Lq][Dp] */
  int64_t *jend;    /* phase B: extent of each P row of this (b,h) */
  float *ds;        /* fused schedule: dS of one (b,h), [Lq][Lkp] */
  int64_t tag_a, tag_b;
} bwd_buf;

/* 1 + index of the last nonzero of a probability row (0 if none). */
static int64_t row_extent(const float *p, int64_t n) {
  while (n > 0 && p[n - 1] == 0.0f) n--;
  return n;
}

/* Phase A for query rows [i0, i1) of (b,h): dS rows into ds (row i at
 * ds + i*Lkp), and dQ += scale * dS K. */
WIDE static void bwd_unit_a(const bwd_ctx *c, bwd_buf *w, int64_t bh, int64_t i0, int64_t i1, float *ds) {
  const attn_dims *a = &c->a;
  const int64_t b = bh / a->H, h = bh % a->H, D = a->D, Lk = a->Lk, Lkp = a->Lkp, Dp = a->Dp;
  if (w->tag_a != bh) {
    pack_transposed(w->vt, Lkp, a->v + b * a->vs0 + h * D, a->vs1, Lk, D);
    if (c->dq) pack_rows(w->kp, Dp, a->k + b * a->ks0 + h * D, a->ks1, Lk, D);
    w->tag_a = bh;
  }
  const float *P = c->probs + bh * a->Lq * Lk;
  const float *dob = c->dout + b * c->ds0 + h * D;
  for (int64_t i = i0; i < i1; i += 4) {
    const int64_t nr = imin(4, i1 - i);
    int64_t ext[4], jend = 0;
    for (int64_t r = 0; r < nr; r++) {
      ext[r] = row_extent(P + (i + r) * Lk, Lk);
      jend = imax(jend, ext[r]);
    }
    /* dP rows i..i+nr = dO V^T over the keys with nonzero P. */
    float *dsi = ds + i * Lkp;
    mm_rows(nr, D, dob + i * c->ds1, c->ds1, 1, w->vt, Lkp, round_up(jend, NB), dsi, Lkp, jend, 1.0f, 0);
    for (int64_t r = 0; r < nr; r++) {
      const float *pr = P + (i + r) * Lk;
      float *sr = dsi + r * Lkp;
      const int64_t e = ext[r];
      float acc[NB];
#ifdef ATTN_AVX2
      {
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), vend = _mm256_set1_epi32((int32_t)e);
        __m256 a0 = _mm256_setzero_ps(), a1 = a0;
        for (int64_t j0 = 0; j0 < e; j0 += NB) {
          const __m256i i0 = _mm256_add_epi32(lane, _mm256_set1_epi32((int32_t)j0));
          const __m256i m0 = _mm256_cmpgt_epi32(vend, i0);
          const __m256i m1 = _mm256_cmpgt_epi32(vend, _mm256_add_epi32(i0, _mm256_set1_epi32(8)));
          /* lanes j >= e load 0 and add 0 * 0 = +0, as the portable loop adds 0.0f */
          a0 = _mm256_add_ps(a0, _mm256_mul_ps(_mm256_maskload_ps(sr + j0, m0), _mm256_maskload_ps(pr + j0, m0)));
          a1 = _mm256_add_ps(a1, _mm256_mul_ps(_mm256_maskload_ps(sr + j0 + 8, m1),
                                               _mm256_maskload_ps(pr + j0 + 8, m1)));
        }
        _mm256_storeu_ps(acc, a0);
        _mm256_storeu_ps(acc + 8, a1);
      }
#else
      for (int jj = 0; jj < NB; jj++) acc[jj] = 0.0f;
      for (int64_t j0 = 0; j0 < e; j0 += NB)
        for (int jj = 0; jj < NB; jj++) {
          const int64_t j = j0 + jj;
          acc[jj] += j < e ? sr[j] * pr[j] : 0.0f;
        }
#endif
      const float rowdot = hsum16(acc);
      for (int64_t j = 0; j < e; j++) sr[j] = pr[j] * (sr[j] - rowdot);
      for (int64_t j = e; j < Lkp; j++) sr[j] = 0.0f;
    }
    if (c->dq)
      mm_rows(nr, jend, dsi, Lkp, 1, w->kp, Dp, Dp, c->dq + b * c->dqs0 + i * c->dqs1 + h * D, c->dqs1, D,
              a->scale, 1);
  }
}

/* Phase B for key rows [j0, j1) of (b,h): dK += scale * dS^T Q and
 * dV += P^T dO, given all dS rows of (b,h) in ds. */
static void bwd_unit_b(const bwd_ctx *c, bwd_buf *w, int64_t bh, int64_t j0, int64_t j1, const float *ds) {
  const attn_dims *a = &c->a;
  const int64_t b = bh / a->H, h = bh % a->H, D = a->D, Lq = a->Lq, Lk = a->Lk, Lkp = a->Lkp, Dp = a->Dp;
  const float *P = c->probs + bh * Lq * Lk;
  if (w->tag_b != bh) {
    if (c->dk) pack_rows(w->qp, Dp, a->q + b * a->qs0 + h * D, a->qs1, Lq, D);
    if (c->dv) pack_rows(w->dop, Dp, c->dout + b * c->ds0 + h * D, c->ds1, Lq, D);
    for (int64_t i = 0; i < Lq; i++) w->jend[i] = row_extent(P + i * Lk, Lk);
    w->tag_b = bh;
  }
  /* Rows i before 'start' have P[i][j] == 0 (so dS too) for every j >= the
   * group's first key: their terms are exactly zero and are skipped. */
  int64_t start = 0;
  for (int64_t j = j0; j < j1; j += 4) {
    const int64_t nr = imin(4, j1 - j);
    while (start < Lq && w->jend[start] <= j) start++;
    const int64_t K = Lq - start;
    if (c->dk)
      mm_rows(nr, K, ds + start * Lkp + j, 1, Lkp, w->qp + start * Dp, Dp, Dp,
              c->dk + b * c->dks0 + j * c->dks1 + h * D, c->dks1, D, a->scale, 1);
    if (c->dv)
      mm_rows(nr, K, P + start * Lk + j, 1, Lk, w->dop + start * Dp, Dp, Dp,
              c->dv + b * c->dvs0 + j * c->dvs1 + h * D, c->dvs1, D, 1.0f, 1);
  }
}

void vlm_cpu_attention_backward(vlm_tensor *dq, vlm_tensor *dk, vlm_tensor *dv, const vlm_tensor *dout,
                                const vlm_tensor *probs, const vlm_tensor *q, const vlm_tensor *k,
                                const vlm_tensor *v, int heads, float scale) {
  bwd_ctx c;
  memset(&c, 0, sizeof c);
  c.a = dims_of(q, k, v, heads, scale);
  c.dout = (const float *)dout->data;
  c.ds0 = dout->stride[0];
  c.ds1 = dout->stride[1];
  c.probs = (const float *)probs->data;
  if (dq) { c.dq = (float *)dq->data; c.dqs0 = dq->stride[0]; c.dqs1 = dq->stride[1]; }
  if (dk) { c.dk = (float *)dk->data; c.dks0 = dk->stride[0]; c.dks1 = dk->stride[1]; }
  if (dv) { c.dv = (float *)dv->data; c.dvs0 = dv->stride[0]; c.dvs1 = dv->stride[1]; }
  const attn_dims *a = &c.a;
  const int64_t BH = a->B * a->H, Lq = a->Lq, Lk = a->Lk, Lkp = a->Lkp, D = a->D, Dp = a->Dp;
  if (BH == 0 || Lq == 0 || Lk == 0) return; /* every gradient term is empty */
  const int need_a = c.dq || c.dk; /* dS is needed */
  const int need_b = c.dk || c.dv;

  const int parallel = BH * Lq * Lk * (D + 4) >= PARALLEL_MIN_WORK;
  const int nthr = parallel ? omp_get_max_threads() : 1;
  const int fused = nthr == 1 || BH >= 4 * (int64_t)nthr;
  /* Per thread: vt [D][Lkp], kp [Lk][Dp], qp and dop [Lq][Dp], and in the
   * fused schedule ds [Lq][Lkp]; every piece is a multiple of 16 floats. */
  const int64_t per = round_up(D * Lkp + Lk * Dp + 2 * Lq * Dp + (fused ? Lq * Lkp : 0), 16);
  float *buf = scratch_floats(0, per * nthr);
  int64_t *jend = vlm_scratch(1, (size_t)(Lq * nthr) * sizeof(int64_t));
  float *scratch = (fused || !need_a) ? NULL : scratch_floats(2, BH * Lq * Lkp);
  int64_t nqb = 1, nkb = 1, qb = Lq, kb = Lk;
  if (!fused) {
    qb = row_blocks(BH, Lq, nthr, &nqb);
    kb = row_blocks(BH, Lk, nthr, &nkb);
  }

#pragma omp parallel if (parallel)
  {
    const int t = omp_get_thread_num();
    bwd_buf w;
    w.vt = buf + per * t;
    w.kp = w.vt + D * Lkp;
    w.qp = w.kp + Lk * Dp;
    w.dop = w.qp + Lq * Dp;
    w.ds = fused ? w.dop + Lq * Dp : NULL;
    w.jend = jend + Lq * t;
    w.tag_a = w.tag_b = -1;
    if (fused) {
#pragma omp for schedule(static)
      for (int64_t bh = 0; bh < BH; bh++) {
        if (need_a) bwd_unit_a(&c, &w, bh, 0, Lq, w.ds);
        if (need_b) bwd_unit_b(&c, &w, bh, 0, Lk, w.ds);
      }
    } else {
      if (need_a) {
#pragma omp for schedule(static)
        for (int64_t u = 0; u < BH * nqb; u++) {
          const int64_t bh = u / nqb, i0 = (u % nqb) * qb;
          bwd_unit_a(&c, &w, bh, i0, imin(i0 + qb, Lq), scratch + bh * Lq * Lkp);
        }
      } /* implicit barrier: phase B reads every dS row */
      if (need_b) {
#pragma omp for schedule(static)
        for (int64_t u = 0; u < BH * nkb; u++) {
          const int64_t bh = u / nkb, j0 = (u % nkb) * kb;
          bwd_unit_b(&c, &w, bh, j0, imin(j0 + kb, Lk), scratch ? scratch + bh * Lq * Lkp : NULL);
        }
      }
    }
  }
}
