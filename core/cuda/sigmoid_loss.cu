// CUDA sigmoid (SigLIP) loss: one warp per row sums -log sigmoid(y x) in double
// (y = +1 at column off + row, -1 elsewhere), one block adds the row sums in a
// fixed order (deterministic); the backward is elementwise.
#include <cuda_runtime.h>
#include <math.h>

#include "core/cuda/common.cuh"

#define SL_WARPS 8

// -log sigmoid(z) = max(-z, 0) + log1p(exp(-|z|))
__device__ __forceinline__ float sl_nls(float z) { return fmaxf(-z, 0.0f) + log1pf(expf(-fabsf(z))); }
// sigmoid(z) without overflow
__device__ __forceinline__ float sl_sig(float z) {
  float e = expf(-fabsf(z));
  return (z >= 0.0f ? 1.0f : e) / (1.0f + e);
}

__global__ void sl_rows_k(double *rowloss, const float *X, int64_t B, int64_t N, int64_t off) {
  const int lane = threadIdx.x & 31;
  const int64_t row = (int64_t)blockIdx.x * SL_WARPS + (threadIdx.x >> 5);
  if (row >= B) return;
  const float *xr = X + row * N;
  const int64_t p = off + row;
  double s = 0.0;
  for (int64_t j = lane; j < N; j += 32) s += (double)sl_nls(j == p ? xr[j] : -xr[j]);
  s = warp_sum_d(s);
  if (lane == 0) rowloss[row] = s;
}

// One block: loss[0] = sum(rowloss) / B.
__global__ void sl_reduce_k(float *loss, const double *rowloss, int64_t B) {
  __shared__ double ss[1024];
  double s = 0;
  for (int64_t i = threadIdx.x; i < B; i += blockDim.x) s += rowloss[i];
  ss[threadIdx.x] = s;
  __syncthreads();
  for (int o = blockDim.x / 2; o > 0; o >>= 1) {
    if ((int)threadIdx.x < o) ss[threadIdx.x] += ss[threadIdx.x + o];
    __syncthreads();
  }
  if (threadIdx.x == 0) loss[0] = (float)(ss[0] / (double)B);
}

__global__ void sl_bwd_k(float *D, const float *X, const float *dloss, int64_t B, int64_t N, int64_t off) {
  const float scale = (float)((double)dloss[0] / (double)B);
  GRID_STRIDE(k, B * N) {
    const int64_t i = k / N, j = k % N;
    const float x = X[k];
    // positive: -sigmoid(-x); negative: sigmoid(x)
    D[k] += j == off + i ? scale * -sl_sig(-x) : scale * sl_sig(x);
  }
}

extern "C" void vlm_cuda_sigmoid_loss_forward(vlm_tensor *loss, const vlm_tensor *logits, int64_t off) {
  const int64_t B = logits->shape[0], N = logits->shape[1];
  if (B == 0) {
    CUDA_OK(cudaMemset(loss->data, 0, sizeof(float)));
    return;
  }
  double *rowloss = (double *)vlm_cuda_scratch(0, sizeof(double) * (size_t)B);
  sl_rows_k<<<(unsigned)((B + SL_WARPS - 1) / SL_WARPS), SL_WARPS * 32>>>(rowloss, (const float *)logits->data, B, N,
                                                                         off);
  LAUNCHED("sigmoid_loss_forward", "sl_rows");
  sl_reduce_k<<<1, 1024>>>((float *)loss->data, rowloss, B);
  LAUNCHED("sigmoid_loss_forward", "sl_reduce");
}

extern "C" void vlm_cuda_sigmoid_loss_backward(vlm_tensor *dlogits, const vlm_tensor *dloss, const vlm_tensor *logits,
                                               int64_t off) {
  const int64_t B = logits->shape[0], N = logits->shape[1];
  if (B == 0 || N == 0) return;
  sl_bwd_k<<<vlm_blocks(B * N, 256), 256>>>((float *)dlogits->data, (const float *)logits->data,
                                            (const float *)dloss->data, B, N, off);
  LAUNCHED("sigmoid_loss_backward", "sl_bwd");
}
