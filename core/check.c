/* Operand checks shared by the op dispatchers (core/check.h). */
#include "core/check.h"

void vlm_need_f32(const char *op, const vlm_tensor *t, const char *name, const vlm_tensor *x, const char *xname) {
  char s[128];
  VLM_CHECK(t != NULL, "%s: %s is NULL", op, name);
  VLM_CHECK(t->dtype == VLM_F32, "%s: %s must be F32, got %s", op, name, vlm_shape_str(t, s, sizeof s));
  VLM_CHECK(vlm_is_contiguous(t), "%s: %s must be contiguous", op, name);
  VLM_CHECK(t->device == x->device, "%s: %s is on another device than %s", op, name, xname);
}

void vlm_need_f32_like(const char *op, const vlm_tensor *t, const char *name, const vlm_tensor *x,
                       const char *xname) {
  char s[128], sx[128];
  vlm_need_f32(op, t, name, x, xname);
  VLM_CHECK(vlm_same_shape(t, x), "%s: %s is %s, %s is %s", op, name, vlm_shape_str(t, s, sizeof s), xname,
            vlm_shape_str(x, sx, sizeof sx));
}

void vlm_need_f32_numel(const char *op, const vlm_tensor *t, const char *name, const vlm_tensor *x, int64_t n,
                        const char *note) {
  char s[128];
  vlm_need_f32(op, t, name, x, "x");
  VLM_CHECK(vlm_numel(t) == n, "%s: %s is %s, expected %lld elements%s", op, name, vlm_shape_str(t, s, sizeof s),
            (long long)n, note);
}
