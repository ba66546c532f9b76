// Shared by the CUDA kernels of core/cuda: status checks that name the call,
// launch geometry, warp reductions, device scratch, the error flag that
// kernels raise on bad input (an id outside the vocabulary, ...).
#ifndef VLM_CORE_CUDA_COMMON_CUH
#define VLM_CORE_CUDA_COMMON_CUH
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "core/cuda/cuda.h"

// Every CUDA runtime call goes through this: a failure aborts naming the call.
#define CUDA_OK(call)                                                                            \
  do {                                                                                           \
    cudaError_t e_ = (call);                                                                     \
    VLM_CHECK(e_ == cudaSuccess, "CUDA: %s failed: %s (%s)", #call, cudaGetErrorString(e_),      \
              cudaGetErrorName(e_));                                                             \
  } while (0)

// After a kernel launch: checks the launch (and, with VLM_CUDA_SYNC=1, waits and
// checks the kernel itself), naming the op and the kernel.
void vlm_cuda_after_launch(const char *op, const char *kernel);
#define LAUNCHED(op, kernel) vlm_cuda_after_launch(op, kernel)

// A CUDA library opened with dlopen (RTLD_LOCAL): soname from the loader's search
// path, else plain, else soname in the toolkit's library folder found at build
// time; NULL when none loads (dlerror() says why).
void *vlm_cuda_open_lib(const char *soname, const char *plain);
#define VLM_STR2(x) #x
#define VLM_STR(x) VLM_STR2(x)

// Device scratch: slot 0..VLM_CUDA_SCRATCH_SLOTS-1, grown to the largest request
// and reused (contents undefined). One op must not use a slot twice at once.
#define VLM_CUDA_SCRATCH_SLOTS 6
void *vlm_cuda_scratch(int slot, size_t bytes);

// The device-side error flag: a kernel that meets bad input (an id outside the
// vocabulary, a target outside [0, C)) records the first one; the host reads it
// back with vlm_cuda_error_check (a synchronous copy) and aborts with the message.
struct vlm_cuda_err {
  int code;        // 0: none; 1: embedding id out of range; 2: cross-entropy target out of range
  long long a, b, c;
};
vlm_cuda_err *vlm_cuda_err_ptr(void);
void vlm_cuda_error_check(const char *op);

static inline unsigned vlm_blocks(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > 65535LL * 16) b = 65535LL * 16;
  return (unsigned)b;
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// GELU (exact erf form) and QuickGELU, their derivatives.
__device__ __forceinline__ float vlm_gelu_f(float x) { return 0.5f * x * erfcf(-x * 0.70710678118654752f); }
__device__ __forceinline__ float vlm_gelu_d(float x) {
  return 0.5f * erfcf(-x * 0.70710678118654752f) + x * expf(-0.5f * x * x) * 0.39894228040143268f;
}
__device__ __forceinline__ float vlm_sigm(float z) { return 1.0f / (1.0f + expf(-z)); }
__device__ __forceinline__ float vlm_act_f(int act, float v) {
  return act == VLM_ACT_GELU ? vlm_gelu_f(v) : v * vlm_sigm(1.702f * v);
}

// Four floats rounded to bf16 (nearest even), packed for one 8-byte store.
__device__ __forceinline__ uint2 vlm_bf16x4(float4 v) {
  __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y), hi = __floats2bfloat162_rn(v.z, v.w);
  uint2 u;
  u.x = *(const unsigned *)&lo;
  u.y = *(const unsigned *)&hi;
  return u;
}

// Elementwise kernels take float4 paths when every pointer is 16-byte aligned
// and n % 4 == 0 (arena tensors are aligned; views may not be).
static inline int vlm_vec4(int64_t n, const void *a, const void *b = 0, const void *c = 0) {
  return n % 4 == 0 && !((uintptr_t)a & 15) && !((uintptr_t)b & 15) && !((uintptr_t)c & 15);
}

#define GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

// Deterministic column sums (below): out[c] += sum over r < R of f(r, c), c < C,
// where f is a device functor. Two passes (row chunks, then the chunks in order).

template <class F>
__global__ void vlm_colsum_partial(float *partial, int64_t R, int64_t C, int64_t rows_per_chunk, F f) {
  int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (c >= C) return;
  int64_t r0 = (int64_t)blockIdx.y * rows_per_chunk, r1 = r0 + rows_per_chunk;
  if (r1 > R) r1 = R;
  float s = 0.0f;
#pragma unroll 8
  for (int64_t r = r0; r < r1; r++) s += f(r, c);
  partial[(int64_t)blockIdx.y * C + c] = s;
}

#define VLM_COLSUM_FINAL_Y 16
__global__ void vlm_colsum_final(float *out, const float *partial, int64_t chunks, int64_t C);
// out[c] += sum over k < chunks of partial[k * C + c], in a fixed order.
static inline void vlm_colsum_finish(const char *op, float *out, const float *partial, int64_t chunks, int64_t C) {
  vlm_colsum_final<<<(unsigned)((C + 31) / 32), 32 * VLM_COLSUM_FINAL_Y>>>(out, partial, chunks, C);
  LAUNCHED(op, "colsum_final");
}

// g[r * C + c]: the plain column sum of a [R, C] matrix.
struct vlm_row_val {
  const float *g;
  int64_t C;
  __device__ float operator()(int64_t r, int64_t c) const { return g[r * C + c]; }
};

// out[c] += sum_r f(r, c) for c < C, r < R; deterministic. Uses scratch slot `slot`.
template <class F>
void vlm_cuda_colsum(const char *op, float *out, int64_t R, int64_t C, F f, int slot) {
  if (C <= 0 || R <= 0) return;
  int64_t per = (R + 255) / 256;
  if (per < 16) per = 16;
  int64_t chunks = (R + per - 1) / per;
  float *partial = (float *)vlm_cuda_scratch(slot, sizeof(float) * (size_t)(chunks * C));
  dim3 grid((unsigned)((C + 127) / 128), (unsigned)chunks);
  vlm_colsum_partial<<<grid, 128>>>(partial, R, C, per, f);
  LAUNCHED(op, "colsum_partial");
  vlm_colsum_finish(op, out, partial, chunks, C);
}
 
// Tensor-core attention (attention_tc.cu): runs and returns 1 when it applies
// (bf16 matmul precision, head dim % 16 == 0 and <= 128, Lq, Lk <= 128, 16-byte
// aligned rows); else returns 0 and the caller runs the plain kernel.
int vlm_cuda_attention_tc_forward(vlm_tensor *out, vlm_tensor *probs, const vlm_tensor *q, const vlm_tensor *k,
                                  const vlm_tensor *v, int heads, const vlm_tensor *key_padding_mask, int causal,
                                  float scale);
// cuDNN's fused attention forward (attention_cudnn.cu): runs and returns 1 when it
// applies (inference: no probabilities, no causal or padding mask, a BF16 output at
// VLM_PREC_BF16, head dim % 8 == 0 and <= 128, >= 16 queries, cuDNN loaded and taking the shape,
// its first run of the shape agreeing with the own kernel); else returns 0.
int vlm_cuda_attention_cudnn_forward(vlm_tensor *out, const vlm_tensor *probs, const vlm_tensor *q,
                                     const vlm_tensor *k, const vlm_tensor *v, int heads,
                                     const vlm_tensor *key_padding_mask, int causal, float scale);
// set: dq, dk, dv written (=) instead of accumulated (+=).
int vlm_cuda_attention_tc_backward(vlm_tensor *dq, vlm_tensor *dk, vlm_tensor *dv, const vlm_tensor *dout,
                                   const vlm_tensor *probs, const vlm_tensor *q, const vlm_tensor *k,
                                   const vlm_tensor *v, int heads, float scale, int set);
#endif
