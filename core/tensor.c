/* Tensor views: construction, shape helpers, views, fill and copy. */
#include "core/core.h"
#include "core/cuda/cuda.h"

#include <stdlib.h>
#include <string.h>

vlm_tensor vlm_tensor_make(void *data, vlm_dtype dt, vlm_device dev, int ndim, const int64_t *shape) {
  VLM_CHECK(ndim >= 0 && ndim <= VLM_MAX_DIMS, "tensor with %d dims", ndim);
  vlm_tensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.dtype = dt;
  t.device = dev;
  t.ndim = ndim;
  int64_t s = 1;
  for (int i = ndim - 1; i >= 0; i--) {
    VLM_CHECK(shape[i] >= 0, "negative dim %lld", (long long)shape[i]);
    t.shape[i] = shape[i];
    t.stride[i] = s;
    /* unsigned: a shape whose size overflows (a saturated measuring arena's) wraps, no UB */
    if (i > 0) s = (int64_t)((uint64_t)s * (uint64_t)shape[i]);
  }
  return t;
}

vlm_tensor vlm_tensor_cpu_f32(float *data, int ndim, const int64_t *shape) {
  return vlm_tensor_make(data, VLM_F32, VLM_CPU, ndim, shape);
}

int64_t vlm_numel(const vlm_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
  return n;
}

size_t vlm_nbytes(const vlm_tensor *t) { return (size_t)vlm_numel(t) * vlm_dtype_size(t->dtype); }

int vlm_is_contiguous(const vlm_tensor *t) {
  int64_t s = 1;
  for (int i = t->ndim - 1; i >= 0; i--) {
    if (t->shape[i] != 1 && t->stride[i] != s) return 0;
    s *= t->shape[i];
  }
  return 1;
}

int vlm_same_shape(const vlm_tensor *a, const vlm_tensor *b) {
  if (a->ndim != b->ndim) return 0;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i]) return 0;
  return 1;
}

int64_t vlm_cols(const vlm_tensor *t) { return t->ndim ? t->shape[t->ndim - 1] : 1; }
int64_t vlm_rows(const vlm_tensor *t) {
  int64_t c = vlm_cols(t);
  return c ? vlm_numel(t) / c : 0;
}

vlm_tensor vlm_narrow(const vlm_tensor *t, int dim, int64_t start, int64_t len) {
  VLM_CHECK(dim >= 0 && dim < t->ndim, "narrow: dim %d of a %d-d tensor", dim, t->ndim);
  VLM_CHECK(start >= 0 && len >= 0 && start + len <= t->shape[dim], "narrow: [%lld, %lld) out of %lld",
            (long long)start, (long long)(start + len), (long long)t->shape[dim]);
  vlm_tensor v = *t;
  if (v.data) v.data = (char *)v.data + (size_t)(start * t->stride[dim]) * vlm_dtype_size(t->dtype);
  v.shape[dim] = len;
  return v;
}

vlm_tensor vlm_reshape(const vlm_tensor *t, int ndim, const int64_t *shape) {
  VLM_CHECK(vlm_is_contiguous(t), "reshape of a strided view");
  vlm_tensor v = vlm_tensor_make(t->data, t->dtype, t->device, ndim, shape);
  VLM_CHECK(vlm_numel(&v) == vlm_numel(t), "reshape changes the element count");
  return v;
}

float *vlm_f32(const vlm_tensor *t) {
  VLM_CHECK(t->dtype == VLM_F32, "expected an F32 tensor, got %s", vlm_dtype_name(t->dtype));
  return (float *)t->data;
}

const char *vlm_shape_str(const vlm_tensor *t, char *buf, size_t n) {
  size_t o = 0;
  o += (size_t)snprintf(buf + o, n - o, "[");
  for (int i = 0; i < t->ndim && o < n; i++)
    o += (size_t)snprintf(buf + o, n - o, i ? ", %lld" : "%lld", (long long)t->shape[i]);
  if (o < n) snprintf(buf + o, n - o, "] %s", vlm_dtype_name(t->dtype));
  return buf;
}

void vlm_zero(vlm_tensor *t) {
  VLM_CHECK(vlm_is_contiguous(t), "zero of a strided view");
  if (t->device == VLM_CUDA) { vlm_cuda_fill(t, 0.0f); return; }
  memset(t->data, 0, vlm_nbytes(t));
}

void vlm_fill(vlm_tensor *t, float value) {
  VLM_CHECK(vlm_is_contiguous(t), "fill of a strided view");
  if (t->device == VLM_CUDA) { vlm_cuda_fill(t, value); return; }
  int64_t n = vlm_numel(t);
  switch (t->dtype) {
    case VLM_F32: { float *p = t->data; for (int64_t i = 0; i < n; i++) p[i] = value; break; }
    case VLM_BF16: { uint16_t *p = t->data, h = vlm_f32_to_bf16(value); for (int64_t i = 0; i < n; i++) p[i] = h; break; }
    case VLM_F16: { uint16_t *p = t->data, h = vlm_f32_to_f16(value); for (int64_t i = 0; i < n; i++) p[i] = h; break; }
    default: VLM_CHECK(0, "fill: dtype %s", vlm_dtype_name(t->dtype));
  }
}

static float load_float(const vlm_tensor *t, int64_t i) {
  switch (t->dtype) {
    case VLM_F32: return ((const float *)t->data)[i];
    case VLM_BF16: return vlm_bf16_to_f32(((const uint16_t *)t->data)[i]);
    case VLM_F16: return vlm_f16_to_f32(((const uint16_t *)t->data)[i]);
    case VLM_F64: return (float)((const double *)t->data)[i];
    default: VLM_CHECK(0, "copy: dtype %s is not a float type", vlm_dtype_name(t->dtype));
  }
  return 0;
}

static void store_float(vlm_tensor *t, int64_t i, float v) {
  switch (t->dtype) {
    case VLM_F32: ((float *)t->data)[i] = v; break;
    case VLM_BF16: ((uint16_t *)t->data)[i] = vlm_f32_to_bf16(v); break;
    case VLM_F16: ((uint16_t *)t->data)[i] = vlm_f32_to_f16(v); break;
    case VLM_F64: ((double *)t->data)[i] = v; break;
    default: VLM_CHECK(0, "copy: dtype %s is not a float type", vlm_dtype_name(t->dtype));
  }
}

void vlm_copy(vlm_tensor *dst, const vlm_tensor *src) {
  VLM_CHECK(vlm_numel(dst) == vlm_numel(src), "copy: element counts differ");
  VLM_CHECK(vlm_is_contiguous(dst) && vlm_is_contiguous(src), "copy of a strided view");
  if (dst->dtype == src->dtype) {
    vlm_memcpy(dst->data, dst->device, src->data, src->device, vlm_nbytes(src));
    return;
  }
  if (dst->device == VLM_CUDA && src->device == VLM_CUDA) {
    vlm_cuda_convert(dst, src);
    return;
  }
  VLM_CHECK(dst->device == VLM_CPU && src->device == VLM_CPU,
            "copy with dtype conversion across devices (%s -> %s)", vlm_dtype_name(src->dtype),
            vlm_dtype_name(dst->dtype));
  int64_t n = vlm_numel(src);
  if (dst->dtype == VLM_BF16 && src->dtype == VLM_F32) {
    vlm_f32_to_bf16_array(dst->data, src->data, (size_t)n);
    return;
  }
  if (dst->dtype == VLM_F32 && src->dtype == VLM_BF16) {
    vlm_bf16_to_f32_array(dst->data, src->data, (size_t)n);
    return;
  }
  for (int64_t i = 0; i < n; i++) store_float(dst, i, load_float(src, i));
}
