/* Host and device memory behind one interface. */
#define _DEFAULT_SOURCE   /* MAP_ANONYMOUS */
#include "core/core.h"
#include "core/cuda/cuda.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Host blocks are anonymous mappings: zero-filled by the kernel on first touch,
 * so an arena costs no memset pass up front (for coca_ViT-B-32's 1 GB of
 * parameters that pass was ~1 s of page faults before loading even began). One
 * page in front of the block holds the mapping's size. Transparent huge pages
 * are not asked for: on this project's VMs they made cached decoding ~12%
 * faster (fewer TLB misses) but their first touch cost 0.1-2.5 s per GB
 * (docs/PERFORMANCE.md), more than a one-image caption gains. */
#define HOST_HEADER 4096

void *vlm_device_alloc(vlm_device dev, size_t bytes) {
  if (dev == VLM_CUDA) return vlm_cuda_alloc(bytes);
  size_t rounded = (bytes + VLM_ARENA_ALIGN - 1) & ~(size_t)(VLM_ARENA_ALIGN - 1);
  if (rounded > SIZE_MAX - HOST_HEADER) return NULL;
  size_t total = HOST_HEADER + (rounded ? rounded : VLM_ARENA_ALIGN);
  void *m = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return NULL;
  memcpy(m, &total, sizeof total);
  return (char *)m + HOST_HEADER;
}

void vlm_device_free(vlm_device dev, void *p) {
  if (!p) return;
  if (dev == VLM_CUDA) {
    vlm_cuda_free(p);
    return;
  }
  char *m = (char *)p - HOST_HEADER;
  size_t total;
  memcpy(&total, m, sizeof total);
  munmap(m, total);
}

void vlm_memcpy(void *dst, vlm_device ddev, const void *src, vlm_device sdev, size_t bytes) {
  if (!bytes || dst == src) return;
  if (ddev == VLM_CPU && sdev == VLM_CPU) memmove(dst, src, bytes);
  else vlm_cuda_memcpy(dst, ddev == VLM_CUDA, src, sdev == VLM_CUDA, bytes);
}

int vlm_host_pin(void *p, size_t bytes) { return vlm_cuda_available() ? vlm_cuda_host_pin(p, bytes) : 0; }
void vlm_host_unpin(void *p) { vlm_cuda_host_unpin(p); }

void vlm_host_release(const void *p, size_t bytes) {
  long page = sysconf(_SC_PAGESIZE);
  if (!p || page <= 0 || bytes == 0) return;
  uintptr_t lo = ((uintptr_t)p + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
  uintptr_t hi = ((uintptr_t)p + bytes) & ~((uintptr_t)page - 1);
  if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
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

/* n blocks of per rows from row0, step apart, lie within rows (no overflow). */
static int rows_fit(int64_t rows, int64_t row0, int64_t step, int64_t n, int64_t per) {
  if (row0 < 0 || step < 0 || row0 > rows || per > rows - row0) return 0;
  return step == 0 || n - 1 <= (rows - row0 - per) / step;
}

void vlm_copy_rows(vlm_tensor *dst, int64_t dst_row0, int64_t dst_step, const vlm_tensor *src, int64_t src_row0,
                   int64_t src_step, int64_t n, int64_t rows_per_copy) {
  need_f32("vlm_copy_rows", dst);
  need_f32("vlm_copy_rows", src);
  int64_t W = vlm_cols(dst);
  VLM_CHECK(W > 0 && vlm_cols(src) == W, "vlm_copy_rows: rows of %lld and %lld floats", (long long)W,
            (long long)vlm_cols(src));
  if (n <= 0 || rows_per_copy <= 0) return;
  VLM_CHECK(rows_fit(vlm_numel(dst) / W, dst_row0, dst_step, n, rows_per_copy) &&
                rows_fit(vlm_numel(src) / W, src_row0, src_step, n, rows_per_copy),
            "vlm_copy_rows: %lld blocks of %lld rows (destination row %lld step %lld of %lld, source row %lld step "
            "%lld of %lld) overrun a tensor",
            (long long)n, (long long)rows_per_copy, (long long)dst_row0, (long long)dst_step,
            (long long)(vlm_numel(dst) / W), (long long)src_row0, (long long)src_step, (long long)(vlm_numel(src) / W));
  float *d = dst->data;
  const float *s = src->data;
  if (dst->device == VLM_CUDA && src->device == VLM_CUDA) {
    vlm_cuda_copy_rows(d, dst_row0, dst_step, s, src_row0, src_step, n, rows_per_copy, W);
    return;
  }
  for (int64_t i = 0; i < n; i++)
    vlm_memcpy(d + (dst_row0 + i * dst_step) * W, dst->device, s + (src_row0 + i * src_step) * W, src->device,
               (size_t)(rows_per_copy * W) * sizeof(float));
}

/* ------------------------------------------------------------------ host access */
vlm_tensor vlm_host_view(const vlm_tensor *t, void **owned) {
  vlm_tensor h = *t;
  *owned = NULL;
  if (t->device == VLM_CPU) return h;
  VLM_CHECK(vlm_is_contiguous(t), "vlm_host_view: the tensor must be contiguous");
  size_t n = vlm_nbytes(t);
  *owned = malloc(n ? n : 1);
  VLM_CHECK(*owned, "vlm_host_view: out of memory (%zu bytes)", n);
  vlm_memcpy(*owned, VLM_CPU, t->data, t->device, n);
  h.data = *owned;
  h.device = VLM_CPU;
  return h;
}

void *vlm_host_stage(const vlm_tensor *t, size_t bytes) {
  VLM_CHECK(bytes <= vlm_nbytes(t) && vlm_is_contiguous(t), "vlm_host_stage: %zu bytes of a %zu-byte tensor", bytes,
            vlm_nbytes(t));
  if (t->device == VLM_CPU) return t->data;
  void *h = malloc(bytes ? bytes : 1);
  VLM_CHECK(h, "vlm_host_stage: out of memory (%zu bytes)", bytes);
  return h;
}

void vlm_host_commit(vlm_tensor *t, void *staged, size_t bytes) {
  if (t->device == VLM_CPU) return;
  vlm_memcpy(t->data, t->device, staged, VLM_CPU, bytes);
  free(staged);
}
