// CUDA kernels for the row-wise and elementwise ops: LayerNorm, GELU /
// QuickGELU, softmax, L2 normalization, cross-entropy, embeddings. One warp per
// row for the row-wise ones; parameter gradients (dw, db, dpos) are
// deterministic column sums. fp32 throughout (the op set's activations are F32).
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>

#include "core/cuda/common.cuh"

#define WARPS 8  // warps per block for the row kernels

static unsigned row_blocks(int64_t rows) { return (unsigned)((rows + WARPS - 1) / WARPS); }

#define ROW_SETUP(R)                                                      \
  const int lane = threadIdx.x & 31;                                      \
  const int64_t row = (int64_t)blockIdx.x * WARPS + (threadIdx.x >> 5);   \
  if (row >= (R)) return;

// ------------------------------------------------------------------ layernorm
// out F32, or (outh != NULL) BF16 rounded once (inference feeding bf16 matmuls).
__global__ void ln_fwd_k(float *out, __nv_bfloat16 *outh, float *mean, float *rstd, const float *x, const float *w,
                         const float *b, int64_t R, int64_t C, float eps) {
  ROW_SETUP(R);
  const float *xr = x + row * C;
  float s = 0.0f;
  for (int64_t c = lane; c < C; c += 32) s += xr[c];
  s = warp_sum(s);
  float m = C ? s / (float)C : 0.0f;
  float v = 0.0f;
  for (int64_t c = lane; c < C; c += 32) {
    float d = xr[c] - m;
    v += d * d;
  }
  v = warp_sum(v);
  float var = C ? v / (float)C : 0.0f;
  float rs = 1.0f / sqrtf(var + eps);
  if (outh) {
    __nv_bfloat16 *o = outh + row * C;
    for (int64_t c = lane; c < C; c += 32) o[c] = __float2bfloat16_rn((xr[c] - m) * rs * w[c] + b[c]);
  } else {
    float *o = out + row * C;
    for (int64_t c = lane; c < C; c += 32) o[c] = (xr[c] - m) * rs * w[c] + b[c];
  }
  if (lane == 0) {
    if (mean) mean[row] = m;
    if (rstd) rstd[row] = rs;
  }
}

// The row reductions and the update in double, as the reference: with a
// degenerate row (C = 1, var = 0) rstd = 1/sqrt(eps) ~ 316 multiplies whatever
// rounding g - mean(g) keeps (an fp32 FMA contraction left 1e-8 of |g|), so the
// arithmetic must cancel exactly as the reference's does.
__global__ void ln_bwd_dx_k(float *dx, const float *dout, const float *x, const float *w, const float *mean,
                            const float *rstd, int64_t R, int64_t C) {
  ROW_SETUP(R);
  const float *xr = x + row * C, *gr = dout + row * C;
  double m = mean[row], rs = rstd[row];
  double sg = 0.0, sgx = 0.0;
  for (int64_t c = lane; c < C; c += 32) {
    double g = (double)gr[c] * w[c];
    sg += g;
    sgx += g * ((xr[c] - m) * rs);
  }
  sg = warp_sum_d(sg) / (double)C;
  sgx = warp_sum_d(sgx) / (double)C;
  float *d = dx + row * C;
  for (int64_t c = lane; c < C; c += 32) {
    double xhat = (xr[c] - m) * rs;
    double g = (double)gr[c] * w[c];
    d[c] += (float)(rs * (g - sg - xhat * sgx));
  }
}

struct ln_dw_val {
  const float *g, *x, *mean, *rstd;
  int64_t C;
  __device__ float operator()(int64_t r, int64_t c) const {
    return g[r * C + c] * (x[r * C + c] - mean[r]) * rstd[r];
  }
};

// The same for rows of C = 128 * NV floats (the towers' widths: 512, 768, 1024):
// the row is read once, as float4s held in registers (lane l holds columns
// 4 (l + 32 j) .. + 3), and written as float4s or 4 bf16 at a time.
// 16-byte aligned x, w, b and F32 out; 8-byte aligned BF16 out.
template <int NV>
__global__ void ln_fwd_vec_k(float *out, __nv_bfloat16 *outh, float *mean, float *rstd, const float *x,
                             const float *w, const float *b, int64_t R, float eps) {
  ROW_SETUP(R);
  const int C = 128 * NV;
  const float4 *xr = (const float4 *)(x + row * C);
  float4 v[NV];
  float s = 0.0f;
#pragma unroll
  for (int j = 0; j < NV; j++) {
    v[j] = xr[lane + 32 * j];
    s += (v[j].x + v[j].y) + (v[j].z + v[j].w);
  }
  s = warp_sum(s);
  const float m = s / (float)C;
  float q = 0.0f;
#pragma unroll
  for (int j = 0; j < NV; j++) {
    float a = v[j].x - m, bb = v[j].y - m, c = v[j].z - m, d = v[j].w - m;
    q += (a * a + bb * bb) + (c * c + d * d);
  }
  q = warp_sum(q);
  const float rs = 1.0f / sqrtf(q / (float)C + eps);
#pragma unroll
  for (int j = 0; j < NV; j++) {
    const int k = lane + 32 * j;
    const float4 wv = ((const float4 *)w)[k], bv = ((const float4 *)b)[k];
    float4 y;
    y.x = (v[j].x - m) * rs * wv.x + bv.x;
    y.y = (v[j].y - m) * rs * wv.y + bv.y;
    y.z = (v[j].z - m) * rs * wv.z + bv.z;
    y.w = (v[j].w - m) * rs * wv.w + bv.w;
    if (outh) ((uint2 *)(outh + row * C))[k] = vlm_bf16x4(y);
    else ((float4 *)(out + row * C))[k] = y;
  }
  if (lane == 0) {
    if (mean) mean[row] = m;
    if (rstd) rstd[row] = rs;
  }
}

template <int NV>
static void ln_fwd_vec(float *out, __nv_bfloat16 *outh, float *mean, float *rstd, const float *x, const float *w,
                       const float *b, int64_t R, float eps) {
  ln_fwd_vec_k<NV><<<row_blocks(R), WARPS * 32>>>(out, outh, mean, rstd, x, w, b, R, eps);
}

extern "C" void vlm_cuda_layernorm_forward(vlm_tensor *out, vlm_tensor *mean, vlm_tensor *rstd, const vlm_tensor *x,
                                           const vlm_tensor *w, const vlm_tensor *b, float eps) {
  int64_t R = vlm_rows(x), C = vlm_cols(x);
  if (R == 0) return;
  int bf = out->dtype == VLM_BF16;
  if (C % 128 == 0 && C >= 128 && C <= 1024 && vlm_vec4(C, x->data, w->data, b->data) &&
      ((uintptr_t)out->data & (bf ? 7 : 15)) == 0) {
    float *o = bf ? NULL : (float *)out->data, *mp = mean ? (float *)mean->data : NULL;
    float *rp = rstd ? (float *)rstd->data : NULL;
    __nv_bfloat16 *oh = bf ? (__nv_bfloat16 *)out->data : NULL;
    const float *xp = (const float *)x->data, *wp = (const float *)w->data, *bp = (const float *)b->data;
    switch (C / 128) {
      case 1: ln_fwd_vec<1>(o, oh, mp, rp, xp, wp, bp, R, eps); break;
      case 2: ln_fwd_vec<2>(o, oh, mp, rp, xp, wp, bp, R, eps); break;
      case 3: ln_fwd_vec<3>(o, oh, mp, rp, xp, wp, bp, R, eps); break;
      case 4: ln_fwd_vec<4>(o, oh, mp, rp, xp, wp, bp, R, eps); break;
      case 5: ln_fwd_vec<5>(o, oh, mp, rp, xp, wp, bp, R, eps); break;
      case 6: ln_fwd_vec<6>(o, oh, mp, rp, xp, wp, bp, R, eps); break;
      case 7: ln_fwd_vec<7>(o, oh, mp, rp, xp, wp, bp, R, eps); break;
      default: ln_fwd_vec<8>(o, oh, mp, rp, xp, wp, bp, R, eps); break;
    }
    LAUNCHED("layernorm_forward", "ln_fwd_vec");
    return;
  }
  ln_fwd_k<<<row_blocks(R), WARPS * 32>>>(bf ? NULL : (float *)out->data, bf ? (__nv_bfloat16 *)out->data : NULL,
                                          mean ? (float *)mean->data : NULL,
                                          rstd ? (float *)rstd->data : NULL, (const float *)x->data,
                                          (const float *)w->data, (const float *)b->data, R, C, eps);
  LAUNCHED("layernorm_forward", "ln_fwd");
}

extern "C" void vlm_cuda_layernorm_backward(vlm_tensor *dx, vlm_tensor *dw, vlm_tensor *db, const vlm_tensor *dout,
                                            const vlm_tensor *x, const vlm_tensor *w, const vlm_tensor *mean,
                                            const vlm_tensor *rstd) {
  int64_t R = vlm_rows(x), C = vlm_cols(x);
  if (R == 0 || C == 0) return;
  const float *G = (const float *)dout->data, *X = (const float *)x->data;
  if (dx) {
    ln_bwd_dx_k<<<row_blocks(R), WARPS * 32>>>((float *)dx->data, G, X, (const float *)w->data,
                                               (const float *)mean->data, (const float *)rstd->data, R, C);
    LAUNCHED("layernorm_backward", "ln_bwd_dx");
  }
  if (dw) {
    ln_dw_val f = {G, X, (const float *)mean->data, (const float *)rstd->data, C};
    vlm_cuda_colsum("layernorm_backward (dw)", (float *)dw->data, R, C, f, 0);
  }
  if (db) {
    vlm_row_val f = {G, C};
    vlm_cuda_colsum("layernorm_backward (db)", (float *)db->data, R, C, f, 1);
  }
}

// ------------------------------------------------------------------ activations
__global__ void act_fwd_k(int act, float *y, const float *x, int64_t n) {
  GRID_STRIDE(i, n) {
    float v = x[i];
    y[i] = vlm_act_f(act, v);
  }
}

__global__ void act_fwd_bf16_k(int act, __nv_bfloat16 *y, const float *x, int64_t n) {
  GRID_STRIDE(i, n) y[i] = __float2bfloat16_rn(vlm_act_f(act, x[i]));
}

// acc 1: dx += g * act'(x); acc 0: dx = g * act'(x) (dx's old contents unread).
__global__ void act_bwd_k(int act, float *dx, const float *g, const float *x, int64_t n, int acc) {
  GRID_STRIDE(i, n) {
    float v = x[i], d;
    if (act == VLM_ACT_GELU) d = vlm_gelu_d(v);
    else {
      float s = vlm_sigm(1.702f * v);
      d = s + 1.702f * v * s * (1.0f - s);
    }
    dx[i] = (acc ? dx[i] : 0.0f) + g[i] * d;
  }
}

__device__ __forceinline__ float act_d(int act, float v) {
  if (act == VLM_ACT_GELU) return vlm_gelu_d(v);
  float s = vlm_sigm(1.702f * v);
  return s + 1.702f * v * s * (1.0f - s);
}

// float4 forms (n4 = n / 4 groups), same arithmetic per element.
__global__ void act_fwd4_k(int act, float4 *y, const float4 *x, int64_t n4) {
  GRID_STRIDE(i, n4) {
    float4 v = x[i];
    y[i] = make_float4(vlm_act_f(act, v.x), vlm_act_f(act, v.y), vlm_act_f(act, v.z), vlm_act_f(act, v.w));
  }
}

__global__ void act_bwd4_k(int act, float4 *dx, const float4 *g, const float4 *x, int64_t n4, int acc) {
  GRID_STRIDE(i, n4) {
    float4 v = x[i], gg = g[i], d = acc ? dx[i] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    d.x += gg.x * act_d(act, v.x);
    d.y += gg.y * act_d(act, v.y);
    d.z += gg.z * act_d(act, v.z);
    d.w += gg.w * act_d(act, v.w);
    dx[i] = d;
  }
}

extern "C" void vlm_cuda_act_forward(vlm_act act, vlm_tensor *out, const vlm_tensor *x) {
  int64_t n = vlm_numel(x);
  if (n == 0) return;
  if (out->dtype == VLM_BF16) {
    act_fwd_bf16_k<<<vlm_blocks(n, 256), 256>>>((int)act, (__nv_bfloat16 *)out->data, (const float *)x->data, n);
    LAUNCHED("act_forward", "act_fwd_bf16");
    return;
  }
  if (vlm_vec4(n, out->data, x->data)) {
    act_fwd4_k<<<vlm_blocks(n / 4, 256), 256>>>((int)act, (float4 *)out->data, (const float4 *)x->data, n / 4);
    LAUNCHED("act_forward", "act_fwd4");
    return;
  }
  act_fwd_k<<<vlm_blocks(n, 256), 256>>>((int)act, (float *)out->data, (const float *)x->data, n);
  LAUNCHED("act_forward", "act_fwd");
}

static void act_backward(vlm_act act, vlm_tensor *dx, const vlm_tensor *dout, const vlm_tensor *x, int acc) {
  int64_t n = vlm_numel(x);
  if (n == 0) return;
  if (vlm_vec4(n, dx->data, dout->data, x->data)) {
    act_bwd4_k<<<vlm_blocks(n / 4, 256), 256>>>((int)act, (float4 *)dx->data, (const float4 *)dout->data,
                                                (const float4 *)x->data, n / 4, acc);
    LAUNCHED("act_backward", "act_bwd4");
    return;
  }
  act_bwd_k<<<vlm_blocks(n, 256), 256>>>((int)act, (float *)dx->data, (const float *)dout->data,
                                         (const float *)x->data, n, acc);
  LAUNCHED("act_backward", "act_bwd");
}

extern "C" void vlm_cuda_act_backward(vlm_act act, vlm_tensor *dx, const vlm_tensor *dout, const vlm_tensor *x) {
  act_backward(act, dx, dout, x, 1);
}

extern "C" void vlm_cuda_act_backward_set(vlm_act act, vlm_tensor *dx, const vlm_tensor *dout, const vlm_tensor *x) {
  act_backward(act, dx, dout, x, 0);
}

// ------------------------------------------------------------------ softmax
__global__ void softmax_fwd_k(float *y, const float *x, int64_t R, int64_t C) {
  ROW_SETUP(R);
  const float *xr = x + row * C;
  float *yr = y + row * C;
  float m = -INFINITY;
  for (int64_t c = lane; c < C; c += 32) m = fmaxf(m, xr[c]);
  m = warp_max(m);
  if (m == -INFINITY) {
    for (int64_t c = lane; c < C; c += 32) yr[c] = 0.0f;
    return;
  }
  float s = 0.0f;
  for (int64_t c = lane; c < C; c += 32) s += expf(xr[c] - m);
  s = warp_sum(s);
  float inv = 1.0f / s;
  for (int64_t c = lane; c < C; c += 32) yr[c] = expf(xr[c] - m) * inv;
}

__global__ void softmax_bwd_k(float *dx, const float *dy, const float *y, int64_t R, int64_t C) {
  ROW_SETUP(R);
  const float *yr = y + row * C, *gr = dy + row * C;
  float dot = 0.0f;
  for (int64_t c = lane; c < C; c += 32) dot += yr[c] * gr[c];
  dot = warp_sum(dot);
  float *d = dx + row * C;
  for (int64_t c = lane; c < C; c += 32) d[c] += yr[c] * (gr[c] - dot);
}

extern "C" void vlm_cuda_softmax_forward(vlm_tensor *y, const vlm_tensor *x) {
  int64_t R = vlm_rows(x), C = vlm_cols(x);
  if (R == 0) return;
  softmax_fwd_k<<<row_blocks(R), WARPS * 32>>>((float *)y->data, (const float *)x->data, R, C);
  LAUNCHED("softmax_forward", "softmax_fwd");
}

extern "C" void vlm_cuda_softmax_backward(vlm_tensor *dx, const vlm_tensor *dy, const vlm_tensor *y) {
  int64_t R = vlm_rows(y), C = vlm_cols(y);
  if (R == 0) return;
  softmax_bwd_k<<<row_blocks(R), WARPS * 32>>>((float *)dx->data, (const float *)dy->data, (const float *)y->data,
                                               R, C);
  LAUNCHED("softmax_backward", "softmax_bwd");
}

// ------------------------------------------------------------------ l2norm
__global__ void l2_fwd_k(float *y, float *norm, const float *x, int64_t R, int64_t C, float eps) {
  ROW_SETUP(R);
  const float *xr = x + row * C;
  float ss = 0.0f;
  for (int64_t c = lane; c < C; c += 32) ss += xr[c] * xr[c];
  ss = warp_sum(ss);
  float n = sqrtf(ss);
  float d = n > eps ? n : eps;
  for (int64_t c = lane; c < C; c += 32) y[row * C + c] = xr[c] / d;
  if (norm && lane == 0) norm[row] = n;
}

__global__ void l2_bwd_k(float *dx, const float *dy, const float *x, const float *norm, int64_t R, int64_t C,
                         float eps) {
  ROW_SETUP(R);
  const float *xr = x + row * C, *gr = dy + row * C;
  float *d = dx + row * C;
  double n = norm[row];
  if (n >= eps) {
    float dot = 0.0f;
    for (int64_t c = lane; c < C; c += 32) dot += xr[c] * gr[c];
    dot = warp_sum(dot);
    float inv = (float)(1.0 / n), k = (float)((double)dot / (n * n * n));
    for (int64_t c = lane; c < C; c += 32) d[c] += gr[c] * inv - xr[c] * k;
  } else {
    for (int64_t c = lane; c < C; c += 32) d[c] += gr[c] / eps;
  }
}

extern "C" void vlm_cuda_l2norm_forward(vlm_tensor *y, vlm_tensor *norm, const vlm_tensor *x, float eps) {
  int64_t R = vlm_rows(x), C = vlm_cols(x);
  if (R == 0) return;
  l2_fwd_k<<<row_blocks(R), WARPS * 32>>>((float *)y->data, norm ? (float *)norm->data : NULL, (const float *)x->data,
                                          R, C, eps);
  LAUNCHED("l2norm_forward", "l2_fwd");
}

extern "C" void vlm_cuda_l2norm_backward(vlm_tensor *dx, const vlm_tensor *dy, const vlm_tensor *x,
                                         const vlm_tensor *norm, float eps) {
  int64_t R = vlm_rows(x), C = vlm_cols(x);
  if (R == 0) return;
  l2_bwd_k<<<row_blocks(R), WARPS * 32>>>((float *)dx->data, (const float *)dy->data, (const float *)x->data,
                                          (const float *)norm->data, R, C, eps);
  LAUNCHED("l2norm_backward", "l2_bwd");
}

// ------------------------------------------------------------------ ids
__device__ __forceinline__ int64_t id_at(const void *ids, int is64, int64_t i) {
  return is64 ? ((const int64_t *)ids)[i] : (int64_t)((const int32_t *)ids)[i];
}

__device__ void raise_err(vlm_cuda_err *e, int code, long long a, long long b, long long c) {
  if (atomicCAS(&e->code, 0, code) == 0) {
    e->a = a;
    e->b = b;
    e->c = c;
  }
}

// ------------------------------------------------------------------ cross-entropy
// Per row: probs = softmax, rowloss = logsumexp - x[t] (kept rows), keep flag.
__global__ void ce_fwd_k(float *probs, float *rowloss, int *keep, const float *x, const void *tg, int is64,
                         int64_t ignore, int64_t N, int64_t C, vlm_cuda_err *err) {
  ROW_SETUP(N);
  const float *xr = x + row * C;
  float *pr = probs + row * C;
  float m = -INFINITY;
  for (int64_t c = lane; c < C; c += 32) m = fmaxf(m, xr[c]);
  m = warp_max(m);
  float s = 0.0f;
  for (int64_t c = lane; c < C; c += 32) s += expf(xr[c] - m);
  s = warp_sum(s);
  float inv = 1.0f / s;
  for (int64_t c = lane; c < C; c += 32) pr[c] = expf(xr[c] - m) * inv;
  if (lane == 0) {
    int64_t t = id_at(tg, is64, row);
    int k = 0;
    float l = 0.0f;
    if (t != ignore) {
      if (t < 0 || t >= C) raise_err(err, 2, (long long)t, (long long)row, (long long)C);
      else {
        k = 1;
        l = m + logf(s) - xr[t];
      }
    }
    keep[row] = k;
    rowloss[row] = l;
  }
}

// One block: loss[0] = sum(rowloss) / count (0 when count is 0); count saved.
__global__ void ce_reduce_k(float *loss, int *count_out, const float *rowloss, const int *keep, int64_t N) {
  __shared__ double ss[1024];
  __shared__ long long sc[1024];
  double s = 0;
  long long cnt = 0;
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) {
    s += rowloss[i];
    cnt += keep[i];
  }
  ss[threadIdx.x] = s;
  sc[threadIdx.x] = cnt;
  __syncthreads();
  for (int o = blockDim.x / 2; o > 0; o >>= 1) {
    if ((int)threadIdx.x < o) {
      ss[threadIdx.x] += ss[threadIdx.x + o];
      sc[threadIdx.x] += sc[threadIdx.x + o];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    if (loss) loss[0] = sc[0] ? (float)(ss[0] / (double)sc[0]) : 0.0f;
    if (count_out) count_out[0] = (int)sc[0];
  }
}

__global__ void ce_keep_k(int *keep, const void *tg, int is64, int64_t ignore, int64_t N, int64_t C,
                          vlm_cuda_err *err) {
  GRID_STRIDE(i, N) {
    int64_t t = id_at(tg, is64, i);
    int k = t != ignore;
    if (k && (t < 0 || t >= C)) {
      raise_err(err, 2, (long long)t, (long long)i, (long long)C);
      k = 0;
    }
    keep[i] = k;
  }
}

__global__ void ce_bwd_k(float *dl, const float *P, const float *dloss, const int *count, const void *tg, int is64,
                         int64_t ignore, int64_t N, int64_t C) {
  int cnt = count[0];
  if (cnt == 0) return;
  float scale = dloss[0] / (float)cnt;
  GRID_STRIDE(i, N * C) {
    int64_t r = i / C, c = i % C;
    int64_t t = id_at(tg, is64, r);
    if (t == ignore || t < 0 || t >= C) continue;
    dl[i] += scale * (P[i] - (c == t ? 1.0f : 0.0f));
  }
}

extern "C" void vlm_cuda_cross_entropy_forward(vlm_tensor *loss, vlm_tensor *probs, const vlm_tensor *logits,
                                               const vlm_tensor *targets, int64_t ignore_index) {
  int64_t N = logits->shape[0], C = logits->shape[1];
  if (N == 0) {
    CUDA_OK(cudaMemset(loss->data, 0, sizeof(float)));
    return;
  }
  float *rowloss = (float *)vlm_cuda_scratch(0, sizeof(float) * (size_t)N);
  int *keep = (int *)vlm_cuda_scratch(1, sizeof(int) * (size_t)N);
  ce_fwd_k<<<row_blocks(N), WARPS * 32>>>((float *)probs->data, rowloss, keep, (const float *)logits->data,
                                          targets->data, targets->dtype == VLM_I64, ignore_index, N, C,
                                          vlm_cuda_err_ptr());
  LAUNCHED("cross_entropy_forward", "ce_fwd");
  ce_reduce_k<<<1, 1024>>>((float *)loss->data, NULL, rowloss, keep, N);
  LAUNCHED("cross_entropy_forward", "ce_reduce");
  vlm_cuda_error_check("cross_entropy_forward");
}

extern "C" void vlm_cuda_cross_entropy_backward(vlm_tensor *dlogits, const vlm_tensor *dloss, const vlm_tensor *probs,
                                                const vlm_tensor *targets, int64_t ignore_index) {
  int64_t N = probs->shape[0], C = probs->shape[1];
  if (N == 0 || C == 0) return;
  int *keep = (int *)vlm_cuda_scratch(1, sizeof(int) * (size_t)N);
  float *zeros = (float *)vlm_cuda_scratch(0, sizeof(float) * (size_t)N);
  int *count = (int *)vlm_cuda_scratch(2, sizeof(int));
  CUDA_OK(cudaMemsetAsync(zeros, 0, sizeof(float) * (size_t)N, 0));
  ce_keep_k<<<vlm_blocks(N, 256), 256>>>(keep, targets->data, targets->dtype == VLM_I64, ignore_index, N, C,
                                         vlm_cuda_err_ptr());
  LAUNCHED("cross_entropy_backward", "ce_keep");
  ce_reduce_k<<<1, 1024>>>(NULL, count, zeros, keep, N);
  LAUNCHED("cross_entropy_backward", "ce_count");
  ce_bwd_k<<<vlm_blocks(N * C, 256), 256>>>((float *)dlogits->data, (const float *)probs->data,
                                            (const float *)dloss->data, count, targets->data,
                                            targets->dtype == VLM_I64, ignore_index, N, C);
  LAUNCHED("cross_entropy_backward", "ce_bwd");
  vlm_cuda_error_check("cross_entropy_backward");
}

// ------------------------------------------------------------------ embedding
__global__ void emb_fwd_k(float *out, const void *ids, int is64, const float *table, const float *pos, int64_t BL,
                          int64_t L, int64_t V, int64_t W, vlm_cuda_err *err) {
  GRID_STRIDE(i, BL * W) {
    int64_t t = i / W, c = i % W;
    int64_t id = id_at(ids, is64, t);
    if (id < 0 || id >= V) {
      if (c == 0) raise_err(err, 1, (long long)id, (long long)t, (long long)V);
      out[i] = 0.0f;
      continue;
    }
    out[i] = table[id * W + c] + (pos ? pos[(t % L) * W + c] : 0.0f);
  }
}

// dtable[id] += dout[t]: atomic adds (tokens sharing an id meet in any order).
__global__ void emb_bwd_table_k(float *dt, const void *ids, int is64, const float *g, int64_t BL, int64_t V,
                                int64_t W, vlm_cuda_err *err) {
  GRID_STRIDE(i, BL * W) {
    int64_t t = i / W, c = i % W;
    int64_t id = id_at(ids, is64, t);
    if (id < 0 || id >= V) {
      if (c == 0) raise_err(err, 1, (long long)id, (long long)t, (long long)V);
      continue;
    }
    atomicAdd(&dt[id * W + c], g[i]);
  }
}

// dpos[l] += sum_b dout[b, l] in batch order (deterministic, as the reference).
__global__ void emb_bwd_pos_k(float *dp, const float *g, int64_t B, int64_t L, int64_t W) {
  GRID_STRIDE(i, L * W) {
    int64_t l = i / W, c = i % W;
    float s = dp[i];
    for (int64_t b = 0; b < B; b++) s += g[(b * L + l) * W + c];
    dp[i] = s;
  }
}

extern "C" void vlm_cuda_embedding_forward(vlm_tensor *out, const vlm_tensor *ids, const vlm_tensor *table,
                                           const vlm_tensor *pos) {
  int64_t B = ids->shape[0], L = ids->shape[1], V = table->shape[0], W = table->shape[1];
  if (B * L * W == 0) return;
  emb_fwd_k<<<vlm_blocks(B * L * W, 256), 256>>>((float *)out->data, ids->data, ids->dtype == VLM_I64,
                                                 (const float *)table->data, pos ? (const float *)pos->data : NULL,
                                                 B * L, L, V, W, vlm_cuda_err_ptr());
  LAUNCHED("embedding_forward", "emb_fwd");
  vlm_cuda_error_check("embedding_forward");
}

extern "C" void vlm_cuda_embedding_backward(vlm_tensor *dtable, vlm_tensor *dpos, const vlm_tensor *dout,
                                            const vlm_tensor *ids) {
  int64_t B = ids->shape[0], L = ids->shape[1], W = dout->shape[2];
  if (B * L * W == 0) return;
  if (dtable) {
    emb_bwd_table_k<<<vlm_blocks(B * L * W, 256), 256>>>((float *)dtable->data, ids->data, ids->dtype == VLM_I64,
                                                         (const float *)dout->data, B * L, dtable->shape[0], W,
                                                         vlm_cuda_err_ptr());
    LAUNCHED("embedding_backward", "emb_bwd_table");
    vlm_cuda_error_check("embedding_backward");
  }
  if (dpos) {
    emb_bwd_pos_k<<<vlm_blocks(L * W, 256), 256>>>((float *)dpos->data, (const float *)dout->data, B, L, W);
    LAUNCHED("embedding_backward", "emb_bwd_pos");
  }
}
