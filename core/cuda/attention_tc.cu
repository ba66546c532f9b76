// Tensor-core attention for short sequences (the CLIP towers: 50 image tokens,
// 77 text tokens, head dim 64), used when the matmul precision is bf16.
// One CTA per (batch, head) holds the whole head in shared memory:
//   forward:  Q, K, V (bf16; read as f32 and rounded, or as bf16 in inference)
//             -> S = Q K^T (WMMA, fp32 accumulation) -> softmax in fp32 (scale,
//             causal and key-padding masks; probabilities saved in fp32 as the
//             plain kernel does) -> P (bf16) -> O = P V (WMMA), written as f32
//             or (inference) rounded to bf16.
//   backward: Q, K, V, dO (bf16), P (the saved fp32 probabilities, bf16 copy)
//             -> dP = dO V^T -> dS = P (dP - rowsum(dP P)) in fp32 (P read in
//             fp32), dS as bf16 -> dV = P^T dO, dK = scale dS^T Q, dQ = scale dS K
//             (WMMA), each accumulated (+=) into its strided view.
// Sequences are padded with zeros to a multiple of 16 (up to 128); padded keys
// get probability 0, padded queries are never written. No atomics:
// deterministic. The fp32 path (VLM_PREC_F32) keeps the plain kernel of
// attention.cu, which matches the reference to 1e-5.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdlib.h>
#include <mma.h>

#include <type_traits>

#include "core/cuda/common.cuh"

using namespace nvcuda;
typedef __nv_bfloat16 bf16;

#define TC_WARPS 8
#define TC_MAX_L 128

struct tc_view {  // q, k or v: f32 (or, in the forward, bf16) elements
  const void *p;
  int64_t s0, s1;
};
struct tc_dview {
  float *p;
  int64_t s0, s1;
};

struct tc_geom {
  int H, D, Lq, Lk, LQ, LK;
  int ldd;  // bf16 rows of D (+8)
  int ldp;  // bf16 rows of LK (+8)
  int ldf;  // fp32 rows of LK (+4)
  int ldo;  // fp32 rows of D (+4)
  int set;  // backward: dq, dk, dv written (=), not accumulated (+=)
};

static int round16(int64_t n) { return (int)((n + 15) / 16 * 16); }

// Four elements at p as two bf16 pairs: f32 rounded to nearest even, bf16 as they are.
struct bf16x4 {
  __nv_bfloat162 lo, hi;
};
__device__ __forceinline__ bf16x4 load4(const float *p) {
  float4 x = __ldg((const float4 *)p);
  bf16x4 r;
  r.lo = __floats2bfloat162_rn(x.x, x.y);
  r.hi = __floats2bfloat162_rn(x.z, x.w);
  return r;
}
__device__ __forceinline__ bf16x4 load4(const bf16 *p) {
  uint2 u = __ldg((const uint2 *)p);
  bf16x4 r;
  r.lo = *(const __nv_bfloat162 *)&u.x;
  r.hi = *(const __nv_bfloat162 *)&u.y;
  return r;
}

// rows x D elements (f32 or bf16) of a view (row r at p + b*s0 + r*s1 + h*D) -> bf16
// smem rows (ld), rows >= n zero. D % 4 == 0, 16-byte (f32) or 8-byte (bf16)
// aligned rows (checked by the host). Each thread issues up to TC_UNROLL loads
// before it stores any (the loads are the latency this kernel waits on).
#define TC_UNROLL 8
template <class T>
__device__ __forceinline__ void load_rows_bf16(bf16 *dst, int ld, const T *base, int64_t s1, int n, int rows,
                                               int D) {
  const int q4 = D / 4, total = rows * q4;
  const __nv_bfloat162 z = __floats2bfloat162_rn(0.f, 0.f);
  for (int e0 = threadIdx.x; e0 < total; e0 += TC_UNROLL * blockDim.x) {
    bf16x4 x[TC_UNROLL];
#pragma unroll
    for (int u = 0; u < TC_UNROLL; u++) {
      const int e = e0 + u * blockDim.x, r = e / q4, d = (e % q4) * 4;
      x[u].lo = z;
      x[u].hi = z;
      if (e < total && r < n) x[u] = load4(base + r * s1 + d);
    }
#pragma unroll
    for (int u = 0; u < TC_UNROLL; u++) {
      const int e = e0 + u * blockDim.x, r = e / q4, d = (e % q4) * 4;
      if (e < total) {
        __nv_bfloat162 *o = (__nv_bfloat162 *)(dst + r * ld + d);
        o[0] = x[u].lo;
        o[1] = x[u].hi;
      }
    }
  }
}

// Four f32 results to out (f32, 16-byte aligned) or rounded once to bf16 (8-byte aligned).
__device__ __forceinline__ void store4(float *o, float4 v) { *(float4 *)o = v; }
__device__ __forceinline__ void store4(bf16 *o, float4 v) { *(uint2 *)o = vlm_bf16x4(v); }

// C (fp32 smem, ldc) = A @ B for a (M x N) result in 16x16 tiles spread over the
// warps; A is M x K (row-major at a/lda, or column-major: A[m][k] = a[k*lda + m]),
// B is K x N (row-major at b/ldb, or column-major: B[k][n] = b[n*ldb + k]).
template <class LA, class LB>
__device__ __forceinline__ void mm_tiles(float *c, int ldc, const bf16 *a, int lda, const bf16 *b, int ldb, int M,
                                         int N, int K) {
  const int warp = threadIdx.x >> 5;
  const int tn = N / 16, tiles = (M / 16) * tn;
  for (int t = warp; t < tiles; t += TC_WARPS) {
    const int m0 = (t / tn) * 16, n0 = (t % tn) * 16;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::fill_fragment(acc, 0.0f);
    for (int k0 = 0; k0 < K; k0 += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, LA> fa;
      wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, LB> fb;
      const bf16 *pa = std::is_same<LA, wmma::row_major>::value ? a + m0 * lda + k0 : a + k0 * lda + m0;
      const bf16 *pb = std::is_same<LB, wmma::row_major>::value ? b + k0 * ldb + n0 : b + n0 * ldb + k0;
      wmma::load_matrix_sync(fa, pa, lda);
      wmma::load_matrix_sync(fb, pb, ldb);
      wmma::mma_sync(acc, fa, fb, acc);
    }
    wmma::store_matrix_sync(c + m0 * ldc + n0, acc, ldc, wmma::mem_row_major);
  }
}

// dst rows (view, += k * F) for r < n, D floats each (loads batched as above);
// with set, dst starts from zeros instead of its contents (= k * F, the same bits
// as adding to a zeroed dst), so the caller need not zero it first.
__device__ __forceinline__ void add_rows(float *base, int64_t s1, const float *F, int ldo, int n, int D, float k,
                                         int set) {
  const int q4 = D / 4, total = n * q4;
  for (int e0 = threadIdx.x; e0 < total; e0 += TC_UNROLL * blockDim.x) {
    float4 x[TC_UNROLL];
#pragma unroll
    for (int u = 0; u < TC_UNROLL; u++) {
      const int e = e0 + u * blockDim.x, r = e / q4, d = (e % q4) * 4;
      if (e < total) x[u] = set ? make_float4(0.0f, 0.0f, 0.0f, 0.0f) : *(const float4 *)(base + r * s1 + d);
    }
#pragma unroll
    for (int u = 0; u < TC_UNROLL; u++) {
      const int e = e0 + u * blockDim.x, r = e / q4, d = (e % q4) * 4;
      if (e < total) {
        const float *f = F + r * ldo + d;
        float4 y = x[u];
        y.x += k * f[0];
        y.y += k * f[1];
        y.z += k * f[2];
        y.w += k * f[3];
        *(float4 *)(base + r * s1 + d) = y;
      }
    }
  }
}

static size_t fwd_smem(const tc_geom &g) {
  size_t f = (size_t)g.LQ * (g.ldf > g.ldo ? g.ldf : g.ldo);
  return sizeof(bf16) * ((size_t)(g.LQ + 2 * g.LK) * g.ldd + (size_t)g.LQ * g.ldp) + sizeof(float) * f;
}

static size_t bwd_smem(const tc_geom &g) {
  int mx = g.LQ > g.LK ? g.LQ : g.LK;
  size_t f = (size_t)g.LQ * g.ldf;
  if ((size_t)mx * g.ldo > f) f = (size_t)mx * g.ldo;
  return sizeof(bf16) * ((size_t)(2 * g.LQ + 2 * g.LK) * g.ldd + 2 * (size_t)g.LQ * g.ldp) + sizeof(float) * f;
}

template <class TI, class TO>
__global__ void __launch_bounds__(TC_WARPS * 32, 4)
    attn_tc_fwd_k(TO *out, float *probs, tc_view q, tc_view k, tc_view v, tc_geom g, const uint8_t *mask,
                  int causal, float scale) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int h = blockIdx.x % g.H;
  const int64_t b = blockIdx.x / g.H;
  const int D = g.D, LQ = g.LQ, LK = g.LK, Lq = g.Lq, Lk = g.Lk;
  bf16 *Qs = (bf16 *)smem, *Ks = Qs + LQ * g.ldd, *Vs = Ks + LK * g.ldd, *Pb = Vs + LK * g.ldd;
  float *F = (float *)(Pb + LQ * g.ldp);
  load_rows_bf16(Qs, g.ldd, (const TI *)q.p + b * q.s0 + (int64_t)h * D, q.s1, Lq, LQ, D);
  load_rows_bf16(Ks, g.ldd, (const TI *)k.p + b * k.s0 + (int64_t)h * D, k.s1, Lk, LK, D);
  load_rows_bf16(Vs, g.ldd, (const TI *)v.p + b * v.s0 + (int64_t)h * D, v.s1, Lk, LK, D);
  __syncthreads();
  // S = Q K^T (K^T: K's rows read column-major)
  mm_tiles<wmma::row_major, wmma::col_major>(F, g.ldf, Qs, g.ldd, Ks, g.ldd, LQ, LK, D);
  __syncthreads();
  // softmax per row, fp32; P (bf16) for the PV product, fp32 probabilities saved
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int i = warp; i < LQ; i += TC_WARPS) {
    bf16 *prow = Pb + i * g.ldp;
    if (i >= Lq) {
      for (int j = lane; j < LK; j += 32) prow[j] = __float2bfloat16_rn(0.0f);
      continue;
    }
    float sv[TC_MAX_L / 32];
    float m = -INFINITY;
#pragma unroll
    for (int u = 0; u < TC_MAX_L / 32; u++) {
      int j = lane + 32 * u;
      float s = -INFINITY;
      if (j < Lk && !(causal && j > i) && !(mask && mask[b * Lk + j])) s = scale * F[i * g.ldf + j];
      sv[u] = s;
      m = fmaxf(m, s);
    }
    m = warp_max(m);
    float sum = 0.0f;
#pragma unroll
    for (int u = 0; u < TC_MAX_L / 32; u++) {
      float e = (m == -INFINITY || sv[u] == -INFINITY) ? 0.0f : expf(sv[u] - m);
      sv[u] = e;
      sum += e;
    }
    sum = warp_sum(sum);
    float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    float *gp = probs ? probs + (((int64_t)blockIdx.x * Lq + i) * Lk) : NULL;
#pragma unroll
    for (int u = 0; u < TC_MAX_L / 32; u++) {
      int j = lane + 32 * u;
      float p = sv[u] * inv;
      if (j < LK) prow[j] = __float2bfloat16_rn(p);
      if (gp && j < Lk) gp[j] = p;
    }
  }
  __syncthreads();
  // O = P V, staged in F (the scores are no longer needed)
  mm_tiles<wmma::row_major, wmma::row_major>(F, g.ldo, Pb, g.ldp, Vs, g.ldd, LQ, D, LK);
  __syncthreads();
  const int q4 = D / 4;
  TO *ob = out + b * Lq * ((int64_t)g.H * D) + (int64_t)h * D;
  for (int e = threadIdx.x; e < Lq * q4; e += blockDim.x) {
    int r = e / q4, d = (e % q4) * 4;
    store4(ob + (int64_t)r * g.H * D + d, *(const float4 *)(F + r * g.ldo + d));
  }
}

__global__ void __launch_bounds__(TC_WARPS * 32, 3)
    attn_tc_bwd_k(tc_dview dq, tc_dview dk, tc_dview dv, const float *dout, const float *probs, tc_view q, tc_view k,
                  tc_view v, tc_geom g, float scale) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int h = blockIdx.x % g.H;
  const int64_t b = blockIdx.x / g.H;
  const int D = g.D, LQ = g.LQ, LK = g.LK, Lq = g.Lq, Lk = g.Lk;
  bf16 *Qs = (bf16 *)smem, *dOs = Qs + LQ * g.ldd, *Ks = dOs + LQ * g.ldd, *Vs = Ks + LK * g.ldd;
  bf16 *Pb = Vs + LK * g.ldd, *dSb = Pb + LQ * g.ldp;
  float *F = (float *)(dSb + LQ * g.ldp);
  const int64_t W = (int64_t)g.H * D;
  const float *P = probs + (int64_t)blockIdx.x * Lq * Lk;
  load_rows_bf16(Qs, g.ldd, (const float *)q.p + b * q.s0 + (int64_t)h * D, q.s1, Lq, LQ, D);
  load_rows_bf16(dOs, g.ldd, dout + b * Lq * W + (int64_t)h * D, W, Lq, LQ, D);
  load_rows_bf16(Ks, g.ldd, (const float *)k.p + b * k.s0 + (int64_t)h * D, k.s1, Lk, LK, D);
  load_rows_bf16(Vs, g.ldd, (const float *)v.p + b * v.s0 + (int64_t)h * D, v.s1, Lk, LK, D);
  for (int e0 = threadIdx.x; e0 < LQ * LK; e0 += TC_UNROLL * blockDim.x) {
    float pv[TC_UNROLL];
#pragma unroll
    for (int u = 0; u < TC_UNROLL; u++) {
      const int e = e0 + u * blockDim.x, i = e / LK, j = e % LK;
      pv[u] = e < LQ * LK && i < Lq && j < Lk ? __ldg(P + i * Lk + j) : 0.0f;
    }
#pragma unroll
    for (int u = 0; u < TC_UNROLL; u++) {
      const int e = e0 + u * blockDim.x, i = e / LK, j = e % LK;
      if (e < LQ * LK) Pb[i * g.ldp + j] = __float2bfloat16_rn(pv[u]);
    }
  }
  __syncthreads();
  // dP = dO V^T
  mm_tiles<wmma::row_major, wmma::col_major>(F, g.ldf, dOs, g.ldd, Vs, g.ldd, LQ, LK, D);
  __syncthreads();
  // dS = P (dP - rowsum(dP P)), P in fp32
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int i = warp; i < LQ; i += TC_WARPS) {
    bf16 *srow = dSb + i * g.ldp;
    if (i >= Lq) {
      for (int j = lane; j < LK; j += 32) srow[j] = __float2bfloat16_rn(0.0f);
      continue;
    }
    float pv[TC_MAX_L / 32], dp[TC_MAX_L / 32];
    float dot = 0.0f;
#pragma unroll
    for (int u = 0; u < TC_MAX_L / 32; u++) {
      int j = lane + 32 * u;
      pv[u] = j < Lk ? P[i * Lk + j] : 0.0f;
      dp[u] = j < Lk ? F[i * g.ldf + j] : 0.0f;
      dot += pv[u] * dp[u];
    }
    dot = warp_sum(dot);
#pragma unroll
    for (int u = 0; u < TC_MAX_L / 32; u++) {
      int j = lane + 32 * u;
      if (j < LK) srow[j] = __float2bfloat16_rn(pv[u] * (dp[u] - dot));
    }
  }
  __syncthreads();
  if (dv.p) {  // dV = P^T dO  (P^T: P's rows read column-major)
    mm_tiles<wmma::col_major, wmma::row_major>(F, g.ldo, Pb, g.ldp, dOs, g.ldd, LK, D, LQ);
    __syncthreads();
    add_rows(dv.p + b * dv.s0 + (int64_t)h * D, dv.s1, F, g.ldo, Lk, D, 1.0f, g.set);
    __syncthreads();
  }
  if (dk.p) {  // dK = scale dS^T Q
    mm_tiles<wmma::col_major, wmma::row_major>(F, g.ldo, dSb, g.ldp, Qs, g.ldd, LK, D, LQ);
    __syncthreads();
    add_rows(dk.p + b * dk.s0 + (int64_t)h * D, dk.s1, F, g.ldo, Lk, D, scale, g.set);
    __syncthreads();
  }
  if (dq.p) {  // dQ = scale dS K
    mm_tiles<wmma::row_major, wmma::row_major>(F, g.ldo, dSb, g.ldp, Ks, g.ldd, LQ, D, LK);
    __syncthreads();
    add_rows(dq.p + b * dq.s0 + (int64_t)h * D, dq.s1, F, g.ldo, Lq, D, scale, g.set);
  }
}

static int aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

// The view qualifies: 16-byte aligned rows of 4-element groups (D % 4 == 0 is
// implied by D % 16 == 0; f32 rows are then 16-byte aligned, bf16 rows 8-byte).
static int view_ok(const vlm_tensor *t, int64_t D, int heads) {
  if (!t) return 1;
  (void)heads;
  return aligned16(t->data) && t->stride[0] % 4 == 0 && t->stride[1] % 4 == 0 && D % 4 == 0;
}

template <class TI, class TO>
static void launch_fwd(size_t sm, int64_t grid, TO *out, float *probs, tc_view q, tc_view k, tc_view v, tc_geom g,
                       const uint8_t *mask, int causal, float scale) {
  attn_tc_fwd_k<TI, TO><<<(unsigned)grid, TC_WARPS * 32, sm>>>(out, probs, q, k, v, g, mask, causal, scale);
}

static int geom(tc_geom *g, const vlm_tensor *q, const vlm_tensor *k, int heads) {
  const int64_t B = q->shape[0], Lq = q->shape[1], Lk = k->shape[1], D = q->shape[2] / heads;
  if (vlm_get_matmul_precision() != VLM_PREC_BF16) return 0;
  static int enabled = -1;  // VLM_CUDA_ATTN_TC=0 turns the tensor-core kernels off
  if (enabled < 0) {
    const char *e = getenv("VLM_CUDA_ATTN_TC");
    enabled = !(e && e[0] == '0');
  }
  if (!enabled) return 0;
  if (D % 16 || D > 128 || Lq < 1 || Lk < 1 || Lq > TC_MAX_L || Lk > TC_MAX_L) return 0;
  if (B * heads > (int64_t)1 << 30) return 0;
  g->H = heads;
  g->D = (int)D;
  g->Lq = (int)Lq;
  g->Lk = (int)Lk;
  g->LQ = round16(Lq);
  g->LK = round16(Lk);
  g->ldd = g->D + 8;
  g->ldp = g->LK + 8;
  g->ldf = g->LK + 4;
  g->ldo = g->D + 4;
  g->set = 0;
  return 1;
}

static int smem_opt_in(const void *fn, size_t bytes, size_t *done) {
  static int maxopt = -1;  // the device's opt-in limit, read once
  if (maxopt < 0) {
    int dev = 0;
    CUDA_OK(cudaGetDevice(&dev));
    CUDA_OK(cudaDeviceGetAttribute(&maxopt, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  }
  if (bytes > (size_t)maxopt) return 0;
  if (bytes > 48 * 1024 && bytes > *done) {
    CUDA_OK(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    *done = bytes;
  }
  return 1;
}

// 1 when the tensor-core kernel ran; 0: not applicable (the caller runs the plain kernel).
int vlm_cuda_attention_tc_forward(vlm_tensor *out, vlm_tensor *probs, const vlm_tensor *q, const vlm_tensor *k,
                                  const vlm_tensor *v, int heads, const vlm_tensor *key_padding_mask, int causal,
                                  float scale) {
  tc_geom g;
  if (!geom(&g, q, k, heads)) return 0;
  if (!view_ok(q, g.D, heads) || !view_ok(k, g.D, heads) || !view_ok(v, g.D, heads) || !aligned16(out->data))
    return 0;
  // one instantiation per (q/k/v dtype, out dtype), each with its shared-memory opt-in
  const int ib = q->dtype == VLM_BF16, ob = out->dtype == VLM_BF16;
  const void *fn = ib ? (ob ? (const void *)attn_tc_fwd_k<bf16, bf16> : (const void *)attn_tc_fwd_k<bf16, float>)
                      : (ob ? (const void *)attn_tc_fwd_k<float, bf16> : (const void *)attn_tc_fwd_k<float, float>);
  static size_t done[4];
  size_t sm = fwd_smem(g);
  if (!smem_opt_in(fn, sm, &done[2 * ib + ob])) return 0;
  const int64_t B = q->shape[0];
  tc_view vq = {q->data, q->stride[0], q->stride[1]};
  tc_view vk = {k->data, k->stride[0], k->stride[1]};
  tc_view vv = {v->data, v->stride[0], v->stride[1]};
  float *pr = probs ? (float *)probs->data : NULL;
  const uint8_t *mask = key_padding_mask ? (const uint8_t *)key_padding_mask->data : NULL;
  if (ib && ob) launch_fwd<bf16, bf16>(sm, B * heads, (bf16 *)out->data, pr, vq, vk, vv, g, mask, causal, scale);
  else if (ib) launch_fwd<bf16, float>(sm, B * heads, (float *)out->data, pr, vq, vk, vv, g, mask, causal, scale);
  else if (ob) launch_fwd<float, bf16>(sm, B * heads, (bf16 *)out->data, pr, vq, vk, vv, g, mask, causal, scale);
  else launch_fwd<float, float>(sm, B * heads, (float *)out->data, pr, vq, vk, vv, g, mask, causal, scale);
  LAUNCHED("attention_forward", "attn_tc_fwd");
  return 1;
}

int vlm_cuda_attention_tc_backward(vlm_tensor *dq, vlm_tensor *dk, vlm_tensor *dv, const vlm_tensor *dout,
                                   const vlm_tensor *probs, const vlm_tensor *q, const vlm_tensor *k,
                                   const vlm_tensor *v, int heads, float scale, int set) {
  tc_geom g;
  if (!geom(&g, q, k, heads)) return 0;
  g.set = set;
  if (!view_ok(q, g.D, heads) || !view_ok(k, g.D, heads) || !view_ok(v, g.D, heads) || !view_ok(dq, g.D, heads) ||
      !view_ok(dk, g.D, heads) || !view_ok(dv, g.D, heads) || !aligned16(dout->data))
    return 0;
  static size_t done = 0;
  size_t sm = bwd_smem(g);
  if (!smem_opt_in((const void *)attn_tc_bwd_k, sm, &done)) return 0;
  const int64_t B = q->shape[0];
  tc_view vq = {q->data, q->stride[0], q->stride[1]};
  tc_view vk = {k->data, k->stride[0], k->stride[1]};
  tc_view vv = {v->data, v->stride[0], v->stride[1]};
  tc_dview gq = {dq ? (float *)dq->data : NULL, dq ? dq->stride[0] : 0, dq ? dq->stride[1] : 0};
  tc_dview gk = {dk ? (float *)dk->data : NULL, dk ? dk->stride[0] : 0, dk ? dk->stride[1] : 0};
  tc_dview gv = {dv ? (float *)dv->data : NULL, dv ? dv->stride[0] : 0, dv ? dv->stride[1] : 0};
  attn_tc_bwd_k<<<(unsigned)(B * heads), TC_WARPS * 32, sm>>>(gq, gk, gv, (const float *)dout->data,
                                                             (const float *)probs->data, vq, vk, vv, g, scale);
  LAUNCHED("attention_backward", "attn_tc_bwd");
  return 1;
}
