/* Operand checks the op dispatchers in core/ share: each fails with a VLM_CHECK whose message
 * starts with the op's name ("layernorm: w is ...") and names the operand. */
#ifndef VLM_CORE_CHECK_H
#define VLM_CORE_CHECK_H
#include "core/core.h"

/* t is not NULL, F32, contiguous, and on the device of x (named xname in the message). */
void vlm_need_f32(const char *op, const vlm_tensor *t, const char *name, const vlm_tensor *x, const char *xname);
/* vlm_need_f32, and t has x's shape. */
void vlm_need_f32_like(const char *op, const vlm_tensor *t, const char *name, const vlm_tensor *x,
                       const char *xname);
/* vlm_need_f32, and t has n elements; note (may be "") follows the count in the message. */
void vlm_need_f32_numel(const char *op, const vlm_tensor *t, const char *name, const vlm_tensor *x, int64_t n,
                        const char *note);
#endif
