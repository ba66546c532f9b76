// AdamW over all parameter slots in one fused kernel per group of up to 64
// slots (the slots travel as a kernel parameter: no upload, no allocation),
// the global gradient norm (double accumulation, deterministic) and the
// gradient scaling of global-norm clipping. The update is the reference's
// arithmetic (torch.optim.AdamW) in fp32.
#include <cuda_runtime.h>
#include <math.h>
#include <string.h>

#include "core/cuda/common.cuh"

#define GROUP 64

struct adam_slot {
  float *p, *g, *m, *v;
  int64_t n;
  float decay;
};
struct adam_group {
  adam_slot s[GROUP];
};

__global__ void adamw_k(adam_group grp, float b1, float b2, float eps, float step_size, float bc2_sqrt) {
  const adam_slot s = grp.s[blockIdx.y];
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < s.n; i += (int64_t)gridDim.x * blockDim.x) {
    float p = s.p[i] * s.decay, g = s.g[i], m = s.m[i], v = s.v[i];
    m = m + (1.0f - b1) * (g - m);
    v = b2 * v + (1.0f - b2) * g * g;
    float denom = sqrtf(v) / bc2_sqrt + eps;
    p -= step_size * m / denom;
    s.p[i] = p;
    s.m[i] = m;
    s.v[i] = v;
  }
}

static unsigned blocks_x(int64_t maxn) {
  int64_t b = (maxn + 1023) / 1024;
  if (b < 1) b = 1;
  if (b > 512) b = 512;
  return (unsigned)b;
}

extern "C" void vlm_cuda_adamw_step(vlm_param_slot *slots, int n, const vlm_adamw_config *c, float lr, int64_t t) {
  double bc1 = 1.0 - pow(c->beta1, (double)t);
  double bc2 = 1.0 - pow(c->beta2, (double)t);
  float step_size = (float)(lr / bc1);
  float bc2_sqrt = (float)sqrt(bc2);
  for (int s0 = 0; s0 < n; s0 += GROUP) {
    adam_group grp;
    memset(&grp, 0, sizeof grp);
    int k = n - s0 < GROUP ? n - s0 : GROUP;
    int64_t maxn = 0;
    for (int j = 0; j < k; j++) {
      vlm_param_slot *sl = &slots[s0 + j];
      grp.s[j].p = (float *)sl->param->data;
      grp.s[j].g = (float *)sl->grad->data;
      grp.s[j].m = (float *)sl->m->data;
      grp.s[j].v = (float *)sl->v->data;
      grp.s[j].n = vlm_numel(sl->param);
      grp.s[j].decay = sl->decay ? 1.0f - lr * c->weight_decay : 1.0f;
      if (grp.s[j].n > maxn) maxn = grp.s[j].n;
    }
    if (maxn == 0) continue;
    dim3 grid(blocks_x(maxn), (unsigned)k);
    adamw_k<<<grid, 256>>>(grp, c->beta1, c->beta2, c->eps, step_size, bc2_sqrt);
    LAUNCHED("adamw_step", "adamw");
  }
}

struct grad_group {
  float *g[GROUP];
  int64_t n[GROUP];
};

// The grads of slots[0..k) (k <= GROUP) into grp, the rest zeroed; returns the largest count.
static int64_t fill_grad_group(grad_group *grp, const vlm_param_slot *slots, int k) {
  memset(grp, 0, sizeof *grp);
  int64_t maxn = 0;
  for (int j = 0; j < k; j++) {
    grp->g[j] = (float *)slots[j].grad->data;
    grp->n[j] = vlm_numel(slots[j].grad);
    if (grp->n[j] > maxn) maxn = grp->n[j];
  }
  return maxn;
}

// The sum of s over the block's N threads (blockDim.x == N, a power of 2): a tree in shared
// memory, the same order on every call; the result is read by every thread.
template <int N>
__device__ double block_sum_d(double s) {
  __shared__ double sh[N];
  sh[threadIdx.x] = s;
  __syncthreads();
  for (int o = N / 2; o > 0; o >>= 1) {
    if ((int)threadIdx.x < o) sh[threadIdx.x] += sh[threadIdx.x + o];
    __syncthreads();
  }
  return sh[0];
}

// partial[(group_base + slot) * gridDim.x + block] = sum of squares of the block's elements.
__global__ void sumsq_k(double *partial, grad_group grp) {
  const float *g = grp.g[blockIdx.y];
  int64_t n = grp.n[blockIdx.y];
  double s = 0;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    s += (double)g[i] * g[i];
  s = block_sum_d<256>(s);
  if (threadIdx.x == 0) partial[(int64_t)blockIdx.y * gridDim.x + blockIdx.x] = s;
}

__global__ void sum_d_k(double *out, const double *x, int64_t n) {
  double s = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += x[i];
  s = block_sum_d<1024>(s);
  if (threadIdx.x == 0) out[0] = s;
}

extern "C" double vlm_cuda_grad_sumsq(vlm_param_slot *slots, int n) {
  if (n <= 0) return 0.0;
  const unsigned X = 64;
  int groups = (n + GROUP - 1) / GROUP;
  double *partial = (double *)vlm_cuda_scratch(0, sizeof(double) * (size_t)groups * GROUP * X + sizeof(double));
  double *total = partial + (size_t)groups * GROUP * X;
  CUDA_OK(cudaMemsetAsync(partial, 0, sizeof(double) * (size_t)groups * GROUP * X, 0));
  for (int s0 = 0, gi = 0; s0 < n; s0 += GROUP, gi++) {
    grad_group grp;
    int k = n - s0 < GROUP ? n - s0 : GROUP;
    fill_grad_group(&grp, slots + s0, k);
    sumsq_k<<<dim3(X, (unsigned)k), 256>>>(partial + (size_t)gi * GROUP * X, grp);
    LAUNCHED("grad_norm", "sumsq");
  }
  sum_d_k<<<1, 1024>>>(total, partial, (int64_t)groups * GROUP * X);
  LAUNCHED("grad_norm", "sum");
  double h = 0;
  CUDA_OK(cudaMemcpy(&h, total, sizeof h, cudaMemcpyDeviceToHost));
  return h;
}

__global__ void gscale_k(grad_group grp, float k) {
  float *g = grp.g[blockIdx.y];
  int64_t n = grp.n[blockIdx.y];
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    g[i] *= k;
}

extern "C" void vlm_cuda_grad_scale(vlm_param_slot *slots, int n, float k) {
  for (int s0 = 0; s0 < n; s0 += GROUP) {
    grad_group grp;
    int cnt = n - s0 < GROUP ? n - s0 : GROUP;
    int64_t maxn = fill_grad_group(&grp, slots + s0, cnt);
    if (maxn == 0) continue;
    gscale_k<<<dim3(blocks_x(maxn), (unsigned)cnt), 256>>>(grp, k);
    LAUNCHED("grad_clip", "grad_scale");
  }
}

__global__ void dot_k(double *partial, const float *a, const float *b, int64_t n) {
  double s = 0;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    s += (double)a[i] * b[i];
  s = block_sum_d<256>(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

extern "C" double vlm_cuda_dot(const vlm_tensor *a, const vlm_tensor *b) {
  int64_t n = vlm_numel(a);
  if (n == 0) return 0.0;
  const unsigned X = 128;
  double *partial = (double *)vlm_cuda_scratch(0, sizeof(double) * (X + 1));
  dot_k<<<X, 256>>>(partial, (const float *)a->data, (const float *)b->data, n);
  LAUNCHED("dot", "dot");
  sum_d_k<<<1, 1024>>>(partial + X, partial, X);
  LAUNCHED("dot", "sum");
  double h = 0;
  CUDA_OK(cudaMemcpy(&h, partial + X, sizeof h, cudaMemcpyDeviceToHost));
  return h;
}
