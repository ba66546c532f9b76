/* core/cuda: the CUDA backend (vlm_cuda_ prefix, same signatures as core/ref).
 * Built when nvcc is present; core/cuda/none.c stands in for CPU-only builds
 * (every function there aborts with "built without CUDA").
 *
 * The public dispatchers in core/<op>.c check shapes, dtypes and devices, then
 * route tensors whose device is VLM_CUDA here. All kernels run on the default
 * stream, in order; host reads of device memory (vlm_memcpy) synchronize.
 * Set VLM_CUDA_SYNC=1 to wait after every kernel (a failing kernel is then
 * named by the op that launched it). */
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
/* Page-lock host memory (cudaHostRegister) so uploads from it run at DMA speed;
 * 1 when done, 0 when not (the copies then stay pageable). */
int vlm_cuda_host_pin(void *p, size_t bytes);
void vlm_cuda_host_unpin(void *p);
/* Wait for every queued kernel; aborts naming `what` if one failed. */
void vlm_cuda_sync(const char *what);

void vlm_cuda_fill(vlm_tensor *t, float value);   /* F32 / BF16 / any dtype for 0 */
/* Contiguous same-numel device tensors, F32 <-> BF16 (round to nearest even). */
void vlm_cuda_convert(vlm_tensor *dst, const vlm_tensor *src);
/* t *= s, F32 contiguous. */
void vlm_cuda_scale(vlm_tensor *t, float s);
/* sum a[i] b[i] (double accumulation, deterministic); synchronizes. */
double vlm_cuda_dot(const vlm_tensor *a, const vlm_tensor *b);
/* im2col for the ViT patch embedding (image [B,3,H,H] -> patches [B*G*G, 3*P*P]):
 * patches[b*G*G + gy*G + gx, (c*P + ky)*P + kx] = image[b, c, gy*P + ky, gx*P + kx]. */
void vlm_cuda_patchify(vlm_tensor *patches, const vlm_tensor *image, int64_t P);
/* Copy n blocks of rows_per_copy rows of W floats: dst row (dst_row0 + i*dst_step)
 * <- src row (src_row0 + i*src_step), one strided copy (cudaMemcpy2D). */
void vlm_cuda_copy_rows(float *dst, int64_t dst_row0, int64_t dst_step, const float *src, int64_t src_row0,
                        int64_t src_step, int64_t n, int64_t rows_per_copy, int64_t W);

/* The op set. */
void vlm_cuda_matmul_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *b,
                             const vlm_tensor *bias, int trans_a, int trans_b, vlm_precision prec);
void vlm_cuda_matmul_backward(vlm_tensor *da, vlm_tensor *db, vlm_tensor *dbias, const vlm_tensor *dout,
                              const vlm_tensor *a, const vlm_tensor *b, int trans_a, int trans_b,
                              vlm_precision prec);
/* As vlm_cuda_matmul_backward, but da is written (=), not accumulated: its old
 * contents are never read, so the caller need not zero it (db, dbias still +=). */
void vlm_cuda_matmul_backward_set(vlm_tensor *da, vlm_tensor *db, vlm_tensor *dbias, const vlm_tensor *dout,
                                  const vlm_tensor *a, const vlm_tensor *b, int trans_a, int trans_b,
                                  vlm_precision prec);
/* out = act(a @ w^T + bias) + residual (inference; out F32 or BF16). A bf16
 * product with an activation into BF16 (no residual) is written as bf16 by the
 * GEMM, then bias + activation run in place (one more rounding than the CPU's). */
void vlm_cuda_linear_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *w, const vlm_tensor *bias,
                             const vlm_act *act, const vlm_tensor *residual, vlm_precision prec);
void vlm_cuda_layernorm_forward(vlm_tensor *out, vlm_tensor *mean, vlm_tensor *rstd, const vlm_tensor *x,
                                const vlm_tensor *w, const vlm_tensor *b, float eps);
void vlm_cuda_layernorm_backward(vlm_tensor *dx, vlm_tensor *dw, vlm_tensor *db, const vlm_tensor *dout,
                                 const vlm_tensor *x, const vlm_tensor *w, const vlm_tensor *mean,
                                 const vlm_tensor *rstd);
void vlm_cuda_act_forward(vlm_act act, vlm_tensor *out, const vlm_tensor *x);
void vlm_cuda_act_backward(vlm_act act, vlm_tensor *dx, const vlm_tensor *dout, const vlm_tensor *x);
/* dx = dout * act'(x) (written, not accumulated). */
void vlm_cuda_act_backward_set(vlm_act act, vlm_tensor *dx, const vlm_tensor *dout, const vlm_tensor *x);
/* The attention backward writing dq, dk, dv (=) instead of accumulating, where the
 * tensor-core kernel applies (all three given): 1; else 0 and nothing is written (the
 * caller zeros them and runs vlm_attention_backward). */
int vlm_cuda_attention_backward_set(vlm_tensor *dq, vlm_tensor *dk, vlm_tensor *dv, const vlm_tensor *dout,
                                    const vlm_tensor *probs, const vlm_tensor *q, const vlm_tensor *k,
                                    const vlm_tensor *v, int heads, float scale);
void vlm_cuda_softmax_forward(vlm_tensor *y, const vlm_tensor *x);
void vlm_cuda_softmax_backward(vlm_tensor *dx, const vlm_tensor *dy, const vlm_tensor *y);
void vlm_cuda_attention_forward(vlm_tensor *out, vlm_tensor *probs, const vlm_tensor *q,
                                const vlm_tensor *k, const vlm_tensor *v, int heads,
                                const vlm_tensor *key_padding_mask, int causal, float scale);
void vlm_cuda_attention_backward(vlm_tensor *dq, vlm_tensor *dk, vlm_tensor *dv, const vlm_tensor *dout,
                                 const vlm_tensor *probs, const vlm_tensor *q, const vlm_tensor *k,
                                 const vlm_tensor *v, int heads, float scale);
void vlm_cuda_embedding_forward(vlm_tensor *out, const vlm_tensor *ids, const vlm_tensor *table,
                                const vlm_tensor *pos);
void vlm_cuda_embedding_backward(vlm_tensor *dtable, vlm_tensor *dpos, const vlm_tensor *dout,
                                 const vlm_tensor *ids);
void vlm_cuda_add_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *b);
void vlm_cuda_add_backward(vlm_tensor *da, vlm_tensor *db, const vlm_tensor *dout);
void vlm_cuda_l2norm_forward(vlm_tensor *y, vlm_tensor *norm, const vlm_tensor *x, float eps);
void vlm_cuda_l2norm_backward(vlm_tensor *dx, const vlm_tensor *dy, const vlm_tensor *x,
                              const vlm_tensor *norm, float eps);
void vlm_cuda_cross_entropy_forward(vlm_tensor *loss, vlm_tensor *probs, const vlm_tensor *logits,
                                    const vlm_tensor *targets, int64_t ignore_index);
void vlm_cuda_cross_entropy_backward(vlm_tensor *dlogits, const vlm_tensor *dloss, const vlm_tensor *probs,
                                     const vlm_tensor *targets, int64_t ignore_index);
void vlm_cuda_sigmoid_loss_forward(vlm_tensor *loss, const vlm_tensor *logits, int64_t off);
void vlm_cuda_sigmoid_loss_backward(vlm_tensor *dlogits, const vlm_tensor *dloss, const vlm_tensor *logits,
                                    int64_t off);
/* Attention's shared-memory K/V tiles: on (default) or off (the plain global-memory
 * path; env VLM_CUDA_ATTN_TILES=0 does the same). For tests. */
void vlm_cuda_attention_set_tiling(int on);
/* cuDNN's fused attention for the inference forwards it takes (core/cuda/attention_cudnn.cu):
 * mode 0 off, 1 the faster of cuDNN and the own kernel per shape (the default), 2 cuDNN
 * wherever it applies (env VLM_CUDA_ATTN_CUDNN=0 / 1 sets 0 / 2); and how many forwards it
 * has run in this process (0 without cuDNN). For tests and benchmarks. */
void vlm_cuda_attention_set_cudnn(int mode);
long long vlm_cuda_attention_cudnn_runs(void);
/* cuDNN as this process finds it, without a GPU: loads the library and builds the
 * fused attention operation for one shape. 1: usable (msg: the version); 0: no
 * library, or one older than 9.19 whose operation does not build; -1: built
 * without cuDNN headers (or without CUDA); -2: a 9.19+ library loads but the
 * operation does not build (msg: the step and status). */
int vlm_cuda_cudnn_probe(char *msg, size_t n);
/* AdamW over all slots (one fused kernel per group of up to 64 slots). */
void vlm_cuda_adamw_step(vlm_param_slot *slots, int n, const vlm_adamw_config *c, float lr, int64_t t);
/* Sum of squares of every slot's gradient (double accumulation, deterministic). */
double vlm_cuda_grad_sumsq(vlm_param_slot *slots, int n);
/* grad *= k for every slot. */
void vlm_cuda_grad_scale(vlm_param_slot *slots, int n, float k);
#ifdef __cplusplus
}
#endif
#endif
