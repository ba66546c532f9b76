/* Arenas: one allocation, tensors carved from it in order, 64-byte aligned. */
#include "core/core.h"
#include "core/cpu/cpu.h"

#include <stdint.h>
#include <string.h>

void vlm_arena_measure(vlm_arena *a, vlm_device dev) {
  memset(a, 0, sizeof *a);
  a->device = dev;
  a->measuring = 1;
}

vlm_status vlm_arena_init(vlm_arena *a, size_t bytes, vlm_device dev) {
  memset(a, 0, sizeof *a);
  a->device = dev;
  if (bytes == 0) return VLM_OK;
  if (bytes == SIZE_MAX) return vlm_error(VLM_ERR_OOM, "could not allocate an arena: its size overflows 64 bits");
  a->base = vlm_device_alloc(dev, bytes);
  if (!a->base)
    return vlm_error(VLM_ERR_OOM, "could not allocate an arena of %.1f MB on %s", bytes / 1e6,
                     dev == VLM_CPU ? "the CPU" : "the GPU");
  a->capacity = bytes;
  return VLM_OK;
}

/* The tensor's bytes, or SIZE_MAX when its shape's product overflows. */
static size_t checked_bytes(vlm_dtype dt, int ndim, const int64_t *shape) {
  size_t n = vlm_dtype_size(dt);
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0) return SIZE_MAX;
    if (__builtin_mul_overflow(n, (size_t)shape[i], &n)) return SIZE_MAX;
  }
  return n;
}

vlm_tensor vlm_arena_tensor(vlm_arena *a, vlm_dtype dt, int ndim, const int64_t *shape) {
  /* A measuring arena saturates at SIZE_MAX when the sizes overflow (a hostile
   * config), so that vlm_arena_init then fails with an error. */
  size_t bytes = checked_bytes(dt, ndim, shape);
  if (bytes > SIZE_MAX - VLM_ARENA_ALIGN || a->used > SIZE_MAX - VLM_ARENA_ALIGN - bytes) {
    VLM_CHECK(a->measuring, "arena: a tensor's size overflows 64 bits");
    a->used = SIZE_MAX;
    return vlm_tensor_make(NULL, dt, a->device, ndim, shape);
  }
  vlm_tensor t = vlm_tensor_make(NULL, dt, a->device, ndim, shape);
  size_t start = (a->used + VLM_ARENA_ALIGN - 1) & ~(size_t)(VLM_ARENA_ALIGN - 1);
  if (!a->measuring) {
    VLM_CHECK(start + bytes <= a->capacity, "arena overflow: %zu + %zu bytes > capacity %zu", start,
              bytes, a->capacity);
    t.data = a->base + start;
  }
  a->used = start + bytes;
  return t;
}

vlm_tensor vlm_arena_tensor1(vlm_arena *a, vlm_dtype dt, int64_t n0) {
  int64_t s[1] = {n0};
  return vlm_arena_tensor(a, dt, 1, s);
}
vlm_tensor vlm_arena_tensor2(vlm_arena *a, vlm_dtype dt, int64_t n0, int64_t n1) {
  int64_t s[2] = {n0, n1};
  return vlm_arena_tensor(a, dt, 2, s);
}
vlm_tensor vlm_arena_tensor3(vlm_arena *a, vlm_dtype dt, int64_t n0, int64_t n1, int64_t n2) {
  int64_t s[3] = {n0, n1, n2};
  return vlm_arena_tensor(a, dt, 3, s);
}
vlm_tensor vlm_arena_tensor4(vlm_arena *a, vlm_dtype dt, int64_t n0, int64_t n1, int64_t n2, int64_t n3) {
  int64_t s[4] = {n0, n1, n2, n3};
  return vlm_arena_tensor(a, dt, 4, s);
}

void vlm_arena_reset(vlm_arena *a) { a->used = 0; }

void vlm_arena_free(vlm_arena *a) {
  /* Packed copies of weights in this memory (vlm_matmul_pack) go with it. */
  if (a->base && a->device == VLM_CPU) vlm_cpu_matmul_unpack_range(a->base, a->capacity);
  if (a->base) vlm_device_free(a->device, a->base);
  memset(a, 0, sizeof *a);
}
