/* Element access helpers shared by the reference kernels (and the fast ones
 * where a per-row lookup is all they need). */
#include "core/ref/ref.h"

int64_t vlm_ref_id_at(const vlm_tensor *ids, int64_t i) {
  switch (ids->dtype) {
    case VLM_I32: return ((const int32_t *)ids->data)[i];
    case VLM_I64: return ((const int64_t *)ids->data)[i];
    default: VLM_CHECK(0, "ids: expected I32 or I64, got %s", vlm_dtype_name(ids->dtype));
  }
  return 0;
}

float vlm_ref_load(const vlm_tensor *t, int64_t i) {
  switch (t->dtype) {
    case VLM_F32: return ((const float *)t->data)[i];
    case VLM_BF16: return vlm_bf16_to_f32(((const uint16_t *)t->data)[i]);
    default: VLM_CHECK(0, "load: expected F32 or BF16, got %s", vlm_dtype_name(t->dtype));
  }
  return 0.0f;
}
