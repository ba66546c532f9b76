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

/* ------------------------------------------------------------------ device-aware scalars */
static void need_f32(const char *fn, const vlm_tensor *t) {
  VLM_CHECK(t && t->dtype == VLM_F32 && vlm_is_contiguous(t), "%s: a contiguous F32 tensor is required", fn);
}

float vlm_get_f32(const vlm_tensor *t, int64_t i) {
  need_f32("vlm_get_f32", t);
  VLM_CHECK(i >= 0 && i < vlm_numel(t), "vlm_get_f32: index %lld of %lld", (long long)i, (long long)vlm_numel(t));
  float v;
  vlm_memcpy(&v, VLM_CPU, (const float *)t->data + i, t->device, sizeof v);
  return v;
}

void vlm_set_f32(vlm_tensor *t, int64_t i, float v) {
  need_f32("vlm_set_f32", t);
  VLM_CHECK(i >= 0 && i < vlm_numel(t), "vlm_set_f32: index %lld of %lld", (long long)i, (long long)vlm_numel(t));
  vlm_memcpy((float *)t->data + i, t->device, &v, VLM_CPU, sizeof v);
}

void vlm_scale(vlm_tensor *t, float s) {
  need_f32("vlm_scale", t);
  if (t->device == VLM_CUDA) {
    vlm_cuda_scale(t, s);
    return;
  }
  float *p = t->data;
  int64_t n = vlm_numel(t);
  for (int64_t i = 0; i < n; i++) p[i] *= s;
}

double vlm_dot(const vlm_tensor *a, const vlm_tensor *b) {
  need_f32("vlm_dot", a);
  need_f32("vlm_dot", b);
  VLM_CHECK(vlm_numel(a) == vlm_numel(b) && a->device == b->device, "vlm_dot: sizes or devices differ");
  if (a->device == VLM_CUDA) return vlm_cuda_dot(a, b);
  const float *x = a->data, *y = b->data;
  int64_t n = vlm_numel(a);
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += (double)x[i] * y[i];
  return s;
}
