// Multi-head scaled dot-product attention on CUDA: a plain kernel, correct for
// every case the op takes (self, cross, causal, key padding, strided q/k/v and
// dq/dk/dv views into a packed qkv, a query that sees no key -> zero output).
// One warp per query row (forward, dQ) or key row (dK, dV); the row of scores
// lives in shared memory; fp32 with the saved probabilities as in the reference:
//   S = scale q k^T (masked keys -inf), P = softmax(S), O = P V;
//   dV = P^T dO; dP = dO V^T; dS = P (dP - rowsum(dP P)); dQ = scale dS K; dK = scale dS^T Q.
// No atomics: results are deterministic.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/cuda/common.cuh"

struct view3 {
  float *p;
  int64_t s0, s1;
};

static view3 v3(const vlm_tensor *t) {
  view3 v = {(float *)(t ? t->data : NULL), t ? t->stride[0] : 0, t ? t->stride[1] : 0};
  return v;
}

#define ROWPTR(v, b, i, h, D) ((v).p + (b) * (v).s0 + (i) * (v).s1 + (int64_t)(h) * (D))

// Warps per block so that each warp's shared rows (n floats) fit in 48 KB.
static int warps_for(int64_t n) {
  int w = 4;
  while (w > 1 && (int64_t)w * n * 4 > 48 * 1024) w >>= 1;
  return w;
}

// With tile != 0 the block first copies this head's K and V rows into shared
// memory (row stride D + 1: lane j reading row j hits bank (j + d) % 32, no
// conflicts); else they are read from global memory.
__device__ __forceinline__ void load_tile(float *t, view3 x, int64_t b, int h, int D, int64_t L) {
  const int ld = D + 1;
  for (int64_t e = threadIdx.x; e < L * D; e += blockDim.x) {
    int64_t j = e / D;
    int d = (int)(e % D);
    t[j * ld + d] = ROWPTR(x, b, j, h, D)[d];
  }
}

// With tile, K and V of (b, h) into shared memory (row stride D + 1) for the whole block;
// returns where the per-warp scratch starts (after the tiles, or sh).
__device__ __forceinline__ float *load_kv_tiles(float *sh, int tile, view3 k, view3 v, int64_t b, int h, int D,
                                                int64_t Lk, float **kt, float **vt) {
  if (!tile) return sh;
  const int ld = D + 1;
  *kt = sh;
  *vt = sh + Lk * ld;
  load_tile(*kt, k, b, h, D, Lk);
  load_tile(*vt, v, b, h, D, Lk);
  __syncthreads();
  return sh + 2 * Lk * ld;
}

__global__ void attn_fwd_k(float *out, float *probs, view3 q, view3 k, view3 v, int H, int D, int64_t Lq,
                           int64_t Lk, const uint8_t *mask, int causal, float scale, int wpb, int tile) {
  extern __shared__ float sh[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t i = (int64_t)blockIdx.x * wpb + warp;
  const int h = blockIdx.y;
  const int64_t b = blockIdx.z;
  const int ld = D + 1;
  float *kt = NULL, *vt = NULL;
  float *base = load_kv_tiles(sh, tile, k, v, b, h, D, Lk, &kt, &vt);
  if (i >= Lq) return;
  float *p = base + (int64_t)warp * (Lk + D), *qs = p + Lk;
  const float *qi = ROWPTR(q, b, i, h, D);
  for (int d = lane; d < D; d += 32) qs[d] = qi[d];
  __syncwarp();
  float m = -INFINITY;
  for (int64_t j = lane; j < Lk; j += 32) {
    int visible = !(causal && j > i) && !(mask && mask[b * Lk + j]);
    float s = -INFINITY;
    if (visible) {
      const float *kj = tile ? kt + j * ld : ROWPTR(k, b, j, h, D);
      float dot = 0.0f;
      for (int d = 0; d < D; d++) dot += qs[d] * kj[d];
      s = scale * dot;
      m = fmaxf(m, s);
    }
    p[j] = s;
  }
  m = warp_max(m);
  float sum = 0.0f;
  for (int64_t j = lane; j < Lk; j += 32) {
    float e = (m == -INFINITY || p[j] == -INFINITY) ? 0.0f : expf(p[j] - m);
    p[j] = e;
    sum += e;
  }
  sum = warp_sum(sum);
  float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
  float *prow = probs ? probs + (((b * H + h) * Lq + i) * Lk) : NULL;
  for (int64_t j = lane; j < Lk; j += 32) {
    float pj = p[j] * inv;
    p[j] = pj;
    if (prow) prow[j] = pj;
  }
  __syncwarp();
  float *oi = out + (b * Lq + i) * ((int64_t)H * D) + (int64_t)h * D;
  for (int d = lane; d < D; d += 32) {
    float acc = 0.0f;
    for (int64_t j = 0; j < Lk; j++) {
      float pj = p[j];
      if (pj != 0.0f) acc += pj * (tile ? vt[j * ld + d] : ROWPTR(v, b, j, h, D)[d]);
    }
    oi[d] = acc;
  }
}

// Per query row i: dS[i, :] (saved to ds) and dQ[i] += scale dS[i, :] K.
__global__ void attn_bwd_q_k(float *ds_out, view3 dq, const float *dout, const float *probs, view3 k, view3 v, int H,
                             int D, int64_t Lq, int64_t Lk, float scale, int wpb, int tile) {
  extern __shared__ float sh[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t i = (int64_t)blockIdx.x * wpb + warp;
  const int h = blockIdx.y;
  const int64_t b = blockIdx.z;
  const int ld = D + 1;
  float *kt = NULL, *vt = NULL;
  float *base = load_kv_tiles(sh, tile, k, v, b, h, D, Lk, &kt, &vt);
  if (i >= Lq) return;
  float *ds = base + (int64_t)warp * (Lk + D), *dos = ds + Lk;
  const float *doi = dout + (b * Lq + i) * ((int64_t)H * D) + (int64_t)h * D;
  for (int d = lane; d < D; d += 32) dos[d] = doi[d];
  __syncwarp();
  const float *P = probs + ((b * H + h) * Lq + i) * Lk;
  float rowdot = 0.0f;
  for (int64_t j = lane; j < Lk; j += 32) {
    float pj = P[j], dp = 0.0f;
    if (pj != 0.0f) {  // dS is 0 where P is 0, and such keys add nothing to rowdot
      const float *vj = tile ? vt + j * ld : ROWPTR(v, b, j, h, D);
      for (int d = 0; d < D; d++) dp += dos[d] * vj[d];
    }
    ds[j] = dp;
    rowdot += dp * pj;
  }
  rowdot = warp_sum(rowdot);
  float *dsrow = ds_out + ((b * H + h) * Lq + i) * Lk;
  for (int64_t j = lane; j < Lk; j += 32) {
    float s = P[j] * (ds[j] - rowdot);
    ds[j] = s;
    dsrow[j] = s;
  }
  __syncwarp();
  if (dq.p) {
    float *dqi = ROWPTR(dq, b, i, h, D);
    for (int d = lane; d < D; d += 32) {
      float acc = 0.0f;
      for (int64_t j = 0; j < Lk; j++) {
        float s = ds[j];
        if (s != 0.0f) acc += s * (tile ? kt[j * ld + d] : ROWPTR(k, b, j, h, D)[d]);
      }
      dqi[d] += scale * acc;
    }
  }
}

// Per key row j: dK[j] += scale sum_i dS[i, j] q_i;  dV[j] += sum_i P[i, j] dO_i.
__global__ void attn_bwd_kv_k(view3 dk, view3 dv, const float *ds, const float *probs, const float *dout, view3 q,
                              int H, int D, int64_t Lq, int64_t Lk, float scale, int wpb) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t j = (int64_t)blockIdx.x * wpb + warp;
  const int h = blockIdx.y;
  const int64_t b = blockIdx.z;
  if (j >= Lk) return;
  const float *S = ds + (b * H + h) * Lq * Lk, *P = probs + (b * H + h) * Lq * Lk;
  for (int d = lane; d < D; d += 32) {
    float ak = 0.0f, av = 0.0f;
    for (int64_t i = 0; i < Lq; i++) {
      float s = S[i * Lk + j], pj = P[i * Lk + j];
      if (s != 0.0f) ak += s * ROWPTR(q, b, i, h, D)[d];
      if (pj != 0.0f) av += pj * dout[(b * Lq + i) * ((int64_t)H * D) + (int64_t)h * D + d];
    }
    if (dk.p) ROWPTR(dk, b, j, h, D)[d] += scale * ak;
    if (dv.p) ROWPTR(dv, b, j, h, D)[d] += av;
  }
}

// Shared-memory plan: K and V tiles (2 * Lk * (D + 1) floats) plus each warp's
// rows (Lk + D floats) within 48 KB, 8 warps if possible; else no tiles.
static int g_tiling = -1;  // -1: not read yet; VLM_CUDA_ATTN_TILES=0 turns the tiles off
extern "C" void vlm_cuda_attention_set_tiling(int on) { g_tiling = on ? 1 : 0; }

static void plan_blocks(int64_t Lk, int64_t D, int *wpb, int *tile, size_t *shmem) {
  if (g_tiling < 0) {
    const char *e = getenv("VLM_CUDA_ATTN_TILES");
    g_tiling = !(e && !strcmp(e, "0"));
  }
  if (g_tiling)
    for (int w = 8; w >= 2; w >>= 1) {
      int64_t floats = 2 * Lk * (D + 1) + (int64_t)w * (Lk + D);
      if (floats * 4 <= 48 * 1024) {
        *wpb = w;
        *tile = 1;
        *shmem = (size_t)floats * 4;
        return;
      }
    }
  *tile = 0;
  *wpb = warps_for(Lk + D);
  *shmem = sizeof(float) * (size_t)(*wpb) * (size_t)(Lk + D);
}

static void check_grid(const char *op, int64_t rows, int64_t H, int64_t B) {
  VLM_CHECK(H <= 65535 && B <= 65535 && rows / 1 < (int64_t)1 << 31,
            "CUDA %s: grid too large (rows %lld, heads %lld, batch %lld)", op, (long long)rows, (long long)H,
            (long long)B);
}

// A bf16 view [B, L, W] (row strides s0, s1) widened into contiguous f32.
__global__ void widen_view_k(float *dst, const __nv_bfloat16 *src, int64_t s0, int64_t s1, int64_t L, int64_t W,
                             int64_t n) {
  GRID_STRIDE(i, n) {
    int64_t w = i % W, r = i / W, l = r % L, b = r / L;
    dst[i] = __bfloat162float(src[b * s0 + l * s1 + w]);
  }
}

__global__ void round_out_k(__nv_bfloat16 *dst, const float *src, int64_t n) {
  GRID_STRIDE(i, n) dst[i] = __float2bfloat16_rn(src[i]);
}

static vlm_tensor widen_view(const vlm_tensor *t, float *dst) {
  const int64_t B = t->shape[0], L = t->shape[1], W = t->shape[2], n = B * L * W;
  if (n > 0) {
    widen_view_k<<<vlm_blocks(n, 256), 256>>>(dst, (const __nv_bfloat16 *)t->data, t->stride[0], t->stride[1], L, W,
                                              n);
    LAUNCHED("attention_forward", "widen_view");
  }
  int64_t shape[3] = {B, L, W};
  return vlm_tensor_make(dst, VLM_F32, VLM_CUDA, 3, shape);
}

extern "C" void vlm_cuda_attention_forward(vlm_tensor *out, vlm_tensor *probs, const vlm_tensor *q,
                                           const vlm_tensor *k, const vlm_tensor *v, int heads,
                                           const vlm_tensor *key_padding_mask, int causal, float scale) {
  const int64_t B = q->shape[0], Lq = q->shape[1], Lk = k->shape[1], D = q->shape[2] / heads;
  if (B == 0 || Lq == 0 || D == 0) return;
  if (Lk == 0) {  // no key at all: zero output
    vlm_cuda_fill(out, 0.0f);
    return;
  }
  if (vlm_cuda_attention_cudnn_forward(out, probs, q, k, v, heads, key_padding_mask, causal, scale)) return;
  if (vlm_cuda_attention_tc_forward(out, probs, q, k, v, heads, key_padding_mask, causal, scale)) return;
  if (q->dtype == VLM_BF16 || out->dtype == VLM_BF16) {
    // bf16 storage where the tensor-core kernel does not apply: the f32 kernel
    // on widened copies (scratch slot 5, free in a forward), the output rounded once.
    const int64_t W = q->shape[2], nq = B * Lq * W, nk = B * Lk * W;
    size_t n = (size_t)(out->dtype == VLM_BF16 ? nq : 0) + (q->dtype == VLM_BF16 ? (size_t)(nq + 2 * nk) : 0);
    float *sc = (float *)vlm_cuda_scratch(5, sizeof(float) * (n > 0 ? n : 1));
    vlm_tensor q32 = *q, k32 = *k, v32 = *v, o32 = *out;
    if (q->dtype == VLM_BF16) {
      q32 = widen_view(q, sc);
      k32 = widen_view(k, sc + nq);
      v32 = widen_view(v, sc + nq + nk);
      sc += nq + 2 * nk;
    }
    if (out->dtype == VLM_BF16) {
      int64_t shape[3] = {B, Lq, W};
      o32 = vlm_tensor_make(sc, VLM_F32, VLM_CUDA, 3, shape);
    }
    vlm_cuda_attention_forward(&o32, NULL, &q32, &k32, &v32, heads, key_padding_mask, causal, scale);
    if (out->dtype == VLM_BF16) {
      round_out_k<<<vlm_blocks(nq, 256), 256>>>((__nv_bfloat16 *)out->data, sc, nq);
      LAUNCHED("attention_forward", "round_out");
    }
    return;
  }
  VLM_CHECK(Lk + D <= 12 * 1024, "CUDA attention_forward: Lk %lld + head dim %lld too large for the kernel",
            (long long)Lk, (long long)D);
  check_grid("attention_forward", Lq, heads, B);
  int wpb, tile;
  size_t shmem;
  plan_blocks(Lk, D, &wpb, &tile, &shmem);
  dim3 grid((unsigned)((Lq + wpb - 1) / wpb), (unsigned)heads, (unsigned)B);
  attn_fwd_k<<<grid, wpb * 32, shmem>>>((float *)out->data, probs ? (float *)probs->data : NULL, v3(q), v3(k), v3(v),
                                        heads, (int)D, Lq, Lk,
                                        key_padding_mask ? (const uint8_t *)key_padding_mask->data : NULL, causal,
                                        scale, wpb, tile);
  LAUNCHED("attention_forward", "attn_fwd");
}

extern "C" void vlm_cuda_attention_backward(vlm_tensor *dq, vlm_tensor *dk, vlm_tensor *dv, const vlm_tensor *dout,
                                            const vlm_tensor *probs, const vlm_tensor *q, const vlm_tensor *k,
                                            const vlm_tensor *v, int heads, float scale) {
  const int64_t B = q->shape[0], Lq = q->shape[1], Lk = k->shape[1], D = q->shape[2] / heads;
  if (B == 0 || Lq == 0 || Lk == 0 || D == 0) return;
  if (vlm_cuda_attention_tc_backward(dq, dk, dv, dout, probs, q, k, v, heads, scale, 0)) return;
  VLM_CHECK(Lk + D <= 12 * 1024, "CUDA attention_backward: Lk %lld + head dim %lld too large for the kernel",
            (long long)Lk, (long long)D);
  check_grid("attention_backward", Lq > Lk ? Lq : Lk, heads, B);
  float *ds = (float *)vlm_cuda_scratch(5, sizeof(float) * (size_t)(B * heads * Lq * Lk));
  int wpb, tile;
  size_t shmem;
  plan_blocks(Lk, D, &wpb, &tile, &shmem);
  dim3 grid_q((unsigned)((Lq + wpb - 1) / wpb), (unsigned)heads, (unsigned)B);
  attn_bwd_q_k<<<grid_q, wpb * 32, shmem>>>(ds, v3(dq), (const float *)dout->data, (const float *)probs->data, v3(k),
                                            v3(v), heads, (int)D, Lq, Lk, scale, wpb, tile);
  LAUNCHED("attention_backward", "attn_bwd_q");
  if (dk || dv) {
    const int w2 = 4;
    dim3 grid_k((unsigned)((Lk + w2 - 1) / w2), (unsigned)heads, (unsigned)B);
    attn_bwd_kv_k<<<grid_k, w2 * 32>>>(v3(dk), v3(dv), ds, (const float *)probs->data, (const float *)dout->data,
                                       v3(q), heads, (int)D, Lq, Lk, scale, w2);
    LAUNCHED("attention_backward", "attn_bwd_kv");
  }
}

extern "C" int vlm_cuda_attention_backward_set(vlm_tensor *dq, vlm_tensor *dk, vlm_tensor *dv, const vlm_tensor *dout,
                                               const vlm_tensor *probs, const vlm_tensor *q, const vlm_tensor *k,
                                               const vlm_tensor *v, int heads, float scale) {
  const int64_t B = q->shape[0], Lq = q->shape[1], Lk = k->shape[1], D = q->shape[2] / heads;
  if (B == 0 || Lq == 0 || Lk == 0 || D == 0 || !dq || !dk || !dv) return 0;
  return vlm_cuda_attention_tc_backward(dq, dk, dv, dout, probs, q, k, v, heads, scale, 1);
}
