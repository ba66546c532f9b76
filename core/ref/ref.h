/* core/ref: plain reference kernels, one per op, written to read like the math.
 * Same signatures as the public ops in core/core.h with the vlm_ref_ prefix.
 * CPU tensors only; shapes are checked by the dispatcher (core/<op>.c) before
 * these are called. The fast kernels (core/cpu, core/cuda) are tested against
 * these. */
#ifndef VLM_CORE_REF_H
#define VLM_CORE_REF_H
#include "core/core.h"

void vlm_ref_matmul_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *b,
                            const vlm_tensor *bias, int trans_a, int trans_b, vlm_precision prec);
void vlm_ref_linear_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *w, const vlm_tensor *bias,
                            const vlm_act *act, const vlm_tensor *residual, vlm_precision prec);
void vlm_ref_matmul_backward(vlm_tensor *da, vlm_tensor *db, vlm_tensor *dbias, const vlm_tensor *dout,
                             const vlm_tensor *a, const vlm_tensor *b, int trans_a, int trans_b,
                             vlm_precision prec);
void vlm_ref_layernorm_forward(vlm_tensor *out, vlm_tensor *mean, vlm_tensor *rstd, const vlm_tensor *x,
                               const vlm_tensor *w, const vlm_tensor *b, float eps);
void vlm_ref_layernorm_backward(vlm_tensor *dx, vlm_tensor *dw, vlm_tensor *db, const vlm_tensor *dout,
                                const vlm_tensor *x, const vlm_tensor *w, const vlm_tensor *mean,
                                const vlm_tensor *rstd);
void vlm_ref_act_forward(vlm_act act, vlm_tensor *out, const vlm_tensor *x);
void vlm_ref_act_backward(vlm_act act, vlm_tensor *dx, const vlm_tensor *dout, const vlm_tensor *x);
void vlm_ref_softmax_forward(vlm_tensor *y, const vlm_tensor *x);
void vlm_ref_softmax_backward(vlm_tensor *dx, const vlm_tensor *dy, const vlm_tensor *y);
void vlm_ref_attention_forward(vlm_tensor *out, vlm_tensor *probs, const vlm_tensor *q,
                               const vlm_tensor *k, const vlm_tensor *v, int heads,
                               const vlm_tensor *key_padding_mask, int causal, float scale);
void vlm_ref_attention_backward(vlm_tensor *dq, vlm_tensor *dk, vlm_tensor *dv, const vlm_tensor *dout,
                                const vlm_tensor *probs, const vlm_tensor *q, const vlm_tensor *k,
                                const vlm_tensor *v, int heads, float scale);
void vlm_ref_embedding_forward(vlm_tensor *out, const vlm_tensor *ids, const vlm_tensor *table,
                               const vlm_tensor *pos);
void vlm_ref_embedding_backward(vlm_tensor *dtable, vlm_tensor *dpos, const vlm_tensor *dout,
                                const vlm_tensor *ids);
void vlm_ref_add_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *b);
void vlm_ref_add_backward(vlm_tensor *da, vlm_tensor *db, const vlm_tensor *dout);
void vlm_ref_l2norm_forward(vlm_tensor *y, vlm_tensor *norm, const vlm_tensor *x, float eps);
void vlm_ref_l2norm_backward(vlm_tensor *dx, const vlm_tensor *dy, const vlm_tensor *x,
                             const vlm_tensor *norm, float eps);
void vlm_ref_cross_entropy_forward(vlm_tensor *loss, vlm_tensor *probs, const vlm_tensor *logits,
                                   const vlm_tensor *targets, int64_t ignore_index);
void vlm_ref_cross_entropy_backward(vlm_tensor *dlogits, const vlm_tensor *dloss, const vlm_tensor *probs,
                                    const vlm_tensor *targets, int64_t ignore_index);
void vlm_ref_sigmoid_loss_forward(vlm_tensor *loss, const vlm_tensor *logits, int64_t off);
void vlm_ref_sigmoid_loss_backward(vlm_tensor *dlogits, const vlm_tensor *dloss, const vlm_tensor *logits,
                                   int64_t off);
void vlm_ref_adamw_step(vlm_param_slot *slots, int n, const vlm_adamw_config *c, float lr, int64_t t);

/* Element access helpers shared by the reference kernels. */
int64_t vlm_ref_id_at(const vlm_tensor *ids, int64_t i);        /* I32 or I64, contiguous */
float vlm_ref_load(const vlm_tensor *t, int64_t i);               /* F32 or BF16, contiguous */
#endif
