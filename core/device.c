/* Host and device memory behind one interface. */
#include "core/core.h"
#include "core/cuda/cuda.h"

#include <stdlib.h>
#include <string.h>

void *vlm_device_alloc(vlm_device dev, size_t bytes) {
  if (dev == VLM_CUDA) return vlm_cuda_alloc(bytes);
  size_t rounded = (bytes + VLM_ARENA_ALIGN - 1) & ~(size_t)(VLM_ARENA_ALIGN - 1);
  void *p = aligned_alloc(VLM_ARENA_ALIGN, rounded ? rounded : VLM_ARENA_ALIGN);
  if (p) memset(p, 0, rounded);
  return p;
}

void vlm_device_free(vlm_device dev, void *p) {
  if (!p) return;
  if (dev == VLM_CUDA) vlm_cuda_free(p);
  else free(p);
}

void vlm_memcpy(void *dst, vlm_device ddev, const void *src, vlm_device sdev, size_t bytes) {
  if (!bytes || dst == src) return;
  if (ddev == VLM_CPU && sdev == VLM_CPU) memmove(dst, src, bytes);
  else vlm_cuda_memcpy(dst, ddev == VLM_CUDA, src, sdev == VLM_CUDA, bytes);
}
