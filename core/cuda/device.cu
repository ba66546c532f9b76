// CUDA backend: device discovery, memory, scratch, the error flag, launch
// checks, fill / convert / scale, and the elementwise add op.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cuda/common.cuh"

#include <dlfcn.h>

static int g_available = -1;
static char g_desc[256];
static int g_device = 0;   // the GPU this process uses (vlm_cuda_select)

extern "C" int vlm_cuda_select(int index) {
  int n = 0;
  if (index < 0 || cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    cudaGetLastError();
    return -1;
  }
  const int d = index % n;
  if (cudaSetDevice(d) != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  g_device = d;
  g_available = -1;   // describe the chosen one
  return d;
}

extern "C" int vlm_cuda_available(void) {
  if (g_available < 0) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
      snprintf(g_desc, sizeof g_desc, "no CUDA device: %s",
               e != cudaSuccess ? cudaGetErrorString(e) : "no GPU found");
      g_available = 0;
      cudaGetLastError();
    } else {
      cudaDeviceProp p;
      if (cudaGetDeviceProperties(&p, g_device) != cudaSuccess) {
        cudaGetLastError();
        snprintf(g_desc, sizeof g_desc, "no CUDA device: cudaGetDeviceProperties failed");
        g_available = 0;
        return 0;
      }
      snprintf(g_desc, sizeof g_desc, "%.180s (sm_%d%d, %.1f GiB, %d SMs, device %d)", p.name, p.major, p.minor,
               p.totalGlobalMem / 1073741824.0, p.multiProcessorCount, g_device);
      g_available = 1;
    }
  }
  return g_available;
}

extern "C" const char *vlm_cuda_describe(void) {
  vlm_cuda_available();
  return g_desc;
}

static int sync_each(void) {
  static int v = -1;
  if (v < 0) {
    const char *e = getenv("VLM_CUDA_SYNC");
    v = e && e[0] && strcmp(e, "0") != 0;
  }
  return v;
}

void vlm_cuda_after_launch(const char *op, const char *kernel) {
  cudaError_t e = cudaGetLastError();
  VLM_CHECK(e == cudaSuccess, "CUDA %s: launching kernel %s failed: %s", op, kernel, cudaGetErrorString(e));
  if (sync_each()) {
    e = cudaDeviceSynchronize();
    VLM_CHECK(e == cudaSuccess, "CUDA %s: kernel %s failed: %s", op, kernel, cudaGetErrorString(e));
  }
}

extern "C" void vlm_cuda_sync(const char *what) {
  cudaError_t e = cudaDeviceSynchronize();
  VLM_CHECK(e == cudaSuccess, "CUDA: %s: a kernel failed: %s", what, cudaGetErrorString(e));
}

extern "C" void *vlm_cuda_alloc(size_t bytes) {
  if (!vlm_cuda_available()) return NULL;
  void *p = NULL;
  if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
    cudaGetLastError();
    return NULL;
  }
  if (cudaMemset(p, 0, bytes) != cudaSuccess) {
    cudaGetLastError();
    cudaFree(p);
    return NULL;
  }
  return p;
}

extern "C" void vlm_cuda_free(void *p) {
  if (p) CUDA_OK(cudaFree(p));
}

extern "C" void vlm_cuda_memcpy(void *dst, int dst_dev, const void *src, int src_dev, size_t bytes) {
  cudaMemcpyKind k = dst_dev ? (src_dev ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                             : (src_dev ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
  CUDA_OK(cudaMemcpy(dst, src, bytes, k));
}

extern "C" int vlm_cuda_host_pin(void *p, size_t bytes) {
  if (!p || !bytes) return 0;
  if (cudaHostRegister(p, bytes, cudaHostRegisterDefault) != cudaSuccess) {
    (void)cudaGetLastError();   /* not fatal: the copies stay pageable */
    return 0;
  }
  return 1;
}

extern "C" void vlm_cuda_host_unpin(void *p) {
  if (p && cudaHostUnregister(p) != cudaSuccess) (void)cudaGetLastError();
}

// ------------------------------------------------------------------ libraries
void *vlm_cuda_open_lib(const char *soname, const char *plain) {
  void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
  if (!h) h = dlopen(plain, RTLD_NOW | RTLD_LOCAL);
#ifdef VLM_CUDA_LIBDIR
  if (!h) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", VLM_CUDA_LIBDIR, soname);
    h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  }
#endif
  return h;
}

// ------------------------------------------------------------------ scratch
static void *g_scratch[VLM_CUDA_SCRATCH_SLOTS];
static size_t g_scratch_cap[VLM_CUDA_SCRATCH_SLOTS];

void *vlm_cuda_scratch(int slot, size_t bytes) {
  VLM_CHECK(slot >= 0 && slot < VLM_CUDA_SCRATCH_SLOTS, "CUDA scratch slot %d", slot);
  if (bytes > g_scratch_cap[slot]) {
    size_t cap = (bytes + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1);
    if (g_scratch[slot]) CUDA_OK(cudaFree(g_scratch[slot]));  // cudaFree waits for the device
    g_scratch[slot] = NULL;
    cudaError_t e = cudaMalloc(&g_scratch[slot], cap);
    VLM_CHECK(e == cudaSuccess, "CUDA: cudaMalloc of %zu bytes of kernel scratch failed: %s", cap,
              cudaGetErrorString(e));
    g_scratch_cap[slot] = cap;
  }
  return g_scratch[slot];
}

// ------------------------------------------------------------------ error flag
static vlm_cuda_err *g_err = NULL;

vlm_cuda_err *vlm_cuda_err_ptr(void) {
  if (!g_err) {
    CUDA_OK(cudaMalloc(&g_err, sizeof *g_err));
    CUDA_OK(cudaMemset(g_err, 0, sizeof *g_err));
  }
  return g_err;
}

void vlm_cuda_error_check(const char *op) {
  vlm_cuda_err h;
  CUDA_OK(cudaMemcpy(&h, vlm_cuda_err_ptr(), sizeof h, cudaMemcpyDeviceToHost));
  if (!h.code) return;
  CUDA_OK(cudaMemset(g_err, 0, sizeof *g_err));
  if (h.code == 1)
    vlm_fatal(__FILE__, __LINE__, "%s: id %lld (token %lld) is outside the vocabulary of size %lld", op, h.a, h.b,
              h.c);
  if (h.code == 2)
    vlm_fatal(__FILE__, __LINE__,
              "%s: target %lld of row %lld is outside [0, %lld) and is not the ignore index", op, h.a, h.b, h.c);
  vlm_fatal(__FILE__, __LINE__, "%s: device error %d (%lld, %lld, %lld)", op, h.code, h.a, h.b, h.c);
}

// Block of 32 columns x VLM_COLSUM_FINAL_Y rows of threads: thread (x, y) sums
// chunks y, y + Y, ... of its column in double, then row 0 adds the Y sums in
// order: deterministic, and enough threads in flight for C of a few hundred.
__global__ void vlm_colsum_final(float *out, const float *partial, int64_t chunks, int64_t C) {
  __shared__ double s[VLM_COLSUM_FINAL_Y][33];
  const int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
  const int64_t c = (int64_t)blockIdx.x * 32 + tx;
  double acc = 0;
  if (c < C) {
#pragma unroll 4
    for (int64_t k = ty; k < chunks; k += VLM_COLSUM_FINAL_Y) acc += partial[k * C + c];
  }
  s[ty][tx] = acc;
  __syncthreads();
  if (ty == 0 && c < C) {
    double t = 0;
    for (int k = 0; k < VLM_COLSUM_FINAL_Y; k++) t += s[k][tx];
    out[c] += (float)t;
  }
}

// ------------------------------------------------------------------ fill, convert, scale
__global__ void fill_f32(float *p, int64_t n, float v) {
  GRID_STRIDE(i, n) p[i] = v;
}
__global__ void fill_u16(uint16_t *p, int64_t n, uint16_t v) {
  GRID_STRIDE(i, n) p[i] = v;
}

extern "C" void vlm_cuda_fill(vlm_tensor *t, float value) {
  int64_t n = vlm_numel(t);
  if (n == 0) return;
  if (value == 0.0f) {
    CUDA_OK(cudaMemset(t->data, 0, vlm_nbytes(t)));
    return;
  }
  if (t->dtype == VLM_F32) {
    fill_f32<<<vlm_blocks(n, 256), 256>>>((float *)t->data, n, value);
  } else if (t->dtype == VLM_BF16 || t->dtype == VLM_F16) {
    uint16_t h = t->dtype == VLM_BF16 ? vlm_f32_to_bf16(value) : vlm_f32_to_f16(value);
    fill_u16<<<vlm_blocks(n, 256), 256>>>((uint16_t *)t->data, n, h);
  } else {
    VLM_CHECK(0, "CUDA fill: dtype %s", vlm_dtype_name(t->dtype));
  }
  LAUNCHED("fill", "fill");
}

__global__ void f32_to_bf16_k(__nv_bfloat16 *d, const float *s, int64_t n) {
  GRID_STRIDE(i, n) d[i] = __float2bfloat16_rn(s[i]);
}
__global__ void bf16_to_f32_k(float *d, const __nv_bfloat16 *s, int64_t n) {
  GRID_STRIDE(i, n) d[i] = __bfloat162float(s[i]);
}

extern "C" void vlm_cuda_convert(vlm_tensor *dst, const vlm_tensor *src) {
  int64_t n = vlm_numel(src);
  VLM_CHECK(vlm_numel(dst) == n && dst->device == VLM_CUDA && src->device == VLM_CUDA,
            "CUDA convert: sizes or devices differ");
  if (n == 0) return;
  if (dst->dtype == src->dtype) {
    CUDA_OK(cudaMemcpy(dst->data, src->data, vlm_nbytes(src), cudaMemcpyDeviceToDevice));
  } else if (dst->dtype == VLM_BF16 && src->dtype == VLM_F32) {
    f32_to_bf16_k<<<vlm_blocks(n, 256), 256>>>((__nv_bfloat16 *)dst->data, (const float *)src->data, n);
    LAUNCHED("convert", "f32_to_bf16");
  } else if (dst->dtype == VLM_F32 && src->dtype == VLM_BF16) {
    bf16_to_f32_k<<<vlm_blocks(n, 256), 256>>>((float *)dst->data, (const __nv_bfloat16 *)src->data, n);
    LAUNCHED("convert", "bf16_to_f32");
  } else {
    VLM_CHECK(0, "CUDA convert: %s -> %s is not supported", vlm_dtype_name(src->dtype), vlm_dtype_name(dst->dtype));
  }
}

__global__ void scale_k(float *p, int64_t n, float s) {
  GRID_STRIDE(i, n) p[i] *= s;
}

extern "C" void vlm_cuda_scale(vlm_tensor *t, float s) {
  VLM_CHECK(t->dtype == VLM_F32 && vlm_is_contiguous(t) && t->device == VLM_CUDA, "CUDA scale: F32 CUDA tensor expected");
  int64_t n = vlm_numel(t);
  if (n == 0) return;
  scale_k<<<vlm_blocks(n, 256), 256>>>((float *)t->data, n, s);
  LAUNCHED("scale", "scale");
}

// ------------------------------------------------------------------ add
// out[i] = a[i] + b[i % nb] (b broadcast over a's leading dims)
__global__ void add_fwd(float *out, const float *a, const float *b, int64_t n, int64_t nb) {
  GRID_STRIDE(i, n) out[i] = a[i] + b[i % nb];
}

// da[i] += dout[i]
__global__ void accumulate(float *da, const float *dout, int64_t n) {
  GRID_STRIDE(i, n) da[i] += dout[i];
}

__global__ void add_fwd4(float4 *out, const float4 *a, const float4 *b, int64_t n4, int64_t nb4) {
  GRID_STRIDE(i, n4) {
    float4 x = a[i], y = b[nb4 == n4 ? i : i % nb4];
    out[i] = make_float4(x.x + y.x, x.y + y.y, x.z + y.z, x.w + y.w);
  }
}

__global__ void accumulate4(float4 *da, const float4 *dout, int64_t n4) {
  GRID_STRIDE(i, n4) {
    float4 x = da[i], y = dout[i];
    da[i] = make_float4(x.x + y.x, x.y + y.y, x.z + y.z, x.w + y.w);
  }
}

extern "C" void vlm_cuda_add_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *b) {
  int64_t n = vlm_numel(a), nb = vlm_numel(b);
  if (n == 0 || nb == 0) return;
  if (nb % 4 == 0 && vlm_vec4(n, out->data, a->data, b->data)) {
    add_fwd4<<<vlm_blocks(n / 4, 256), 256>>>((float4 *)out->data, (const float4 *)a->data, (const float4 *)b->data,
                                              n / 4, nb / 4);
    LAUNCHED("add_forward", "add_fwd4");
    return;
  }
  add_fwd<<<vlm_blocks(n, 256), 256>>>((float *)out->data, (const float *)a->data, (const float *)b->data, n, nb);
  LAUNCHED("add_forward", "add_fwd");
}

extern "C" void vlm_cuda_add_backward(vlm_tensor *da, vlm_tensor *db, const vlm_tensor *dout) {
  int64_t n = vlm_numel(dout);
  if (n == 0) return;
  if (da) {
    if (vlm_vec4(n, da->data, dout->data)) {
      accumulate4<<<vlm_blocks(n / 4, 256), 256>>>((float4 *)da->data, (const float4 *)dout->data, n / 4);
      LAUNCHED("add_backward", "accumulate4");
    } else {
      accumulate<<<vlm_blocks(n, 256), 256>>>((float *)da->data, (const float *)dout->data, n);
      LAUNCHED("add_backward", "accumulate");
    }
  }
  if (db) {
    int64_t nb = vlm_numel(db);
    if (nb == 0) return;
    vlm_row_val f = {(const float *)dout->data, nb};
    vlm_cuda_colsum("add_backward", (float *)db->data, n / nb, nb, f, 0);
  }
}

// ------------------------------------------------------------------ ViT helpers
__global__ void patchify_k(float *out, const float *img, int64_t B, int64_t H, int64_t G, int64_t P) {
  const int64_t cols = 3 * P * P;
  GRID_STRIDE(i, B * G * G * cols) {
    int64_t r = i / cols, col = i % cols;
    int64_t ch = col / (P * P), ky = (col / P) % P, kx = col % P;
    int64_t b = r / (G * G), gy = (r / G) % G, gx = r % G;
    out[i] = img[((b * 3 + ch) * H + gy * P + ky) * H + gx * P + kx];
  }
}

extern "C" void vlm_cuda_patchify(vlm_tensor *patches, const vlm_tensor *image, int64_t P) {
  int64_t B = image->shape[0], H = image->shape[2], G = H / P;
  VLM_CHECK(patches->device == VLM_CUDA && image->device == VLM_CUDA && image->dtype == VLM_F32 &&
                patches->dtype == VLM_F32 && vlm_numel(patches) == B * G * G * 3 * P * P,
            "CUDA patchify: image and patches must be F32 CUDA tensors of matching size");
  int64_t n = B * G * G * 3 * P * P;
  if (n == 0) return;
  patchify_k<<<vlm_blocks(n, 256), 256>>>((float *)patches->data, (const float *)image->data, B, H, G, P);
  LAUNCHED("patchify", "patchify");
}

__global__ void copy_rows_k(float *dst, int64_t dst_row0, int64_t dst_step, const float *src, int64_t src_row0,
                            int64_t src_step, int64_t n, int64_t per, int64_t W) {
  GRID_STRIDE(i, n * per * W) {
    int64_t blk = i / (per * W), rem = i % (per * W);
    dst[(dst_row0 + blk * dst_step) * W + rem] = src[(src_row0 + blk * src_step) * W + rem];
  }
}

extern "C" void vlm_cuda_copy_rows(float *dst, int64_t dst_row0, int64_t dst_step, const float *src,
                                   int64_t src_row0, int64_t src_step, int64_t n, int64_t rows_per_copy, int64_t W) {
  int64_t total = n * rows_per_copy * W;
  if (total == 0) return;
  copy_rows_k<<<vlm_blocks(total, 256), 256>>>(dst, dst_row0, dst_step, src, src_row0, src_step, n, rows_per_copy, W);
  LAUNCHED("copy_rows", "copy_rows");
}
