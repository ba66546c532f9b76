/* core/cuda: CUDA kernels (vlm_cuda_ prefix, same signatures as core/ref).
 * Built when nvcc is present; core/cuda/none.c stands in for CPU-only builds.
 * So far: device memory and the elementwise add (forward + backward); the CUDA
 * issue adds the rest of the op set behind the same dispatchers. */
#ifndef VLM_CORE_CUDA_H
#define VLM_CORE_CUDA_H
#include "core/core.h"

#ifdef __cplusplus
extern "C" {
#endif
/* Device memory; the public vlm_device_alloc / vlm_memcpy route here for VLM_CUDA. */
void *vlm_cuda_alloc(size_t bytes);
void vlm_cuda_free(void *p);
/* dst_dev / src_dev: 0 host, 1 device. Synchronous. */
void vlm_cuda_memcpy(void *dst, int dst_dev, const void *src, int src_dev, size_t bytes);

void vlm_cuda_add_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *b);
void vlm_cuda_add_backward(vlm_tensor *da, vlm_tensor *db, const vlm_tensor *dout);
void vlm_cuda_fill(vlm_tensor *t, float value);
#ifdef __cplusplus
}
#endif
#endif
