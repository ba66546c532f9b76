/* Stand-in for the CUDA backend in builds without nvcc: no device is ever
 * available, so none of these can be reached with a CUDA tensor; each aborts
 * with "built without CUDA" should one be called anyway. */
#include <stdio.h>

#include "core/cuda/cuda.h"

#define NO_CUDA(what) VLM_CHECK(0, "%s: this vlm was built without CUDA (nvcc was not found)", what)

int vlm_cuda_available(void) { return 0; }
int vlm_cuda_select(int index) { (void)index; return -1; }
const char *vlm_cuda_describe(void) { return "this build has no CUDA backend (nvcc was not found)"; }
void *vlm_cuda_alloc(size_t bytes) { (void)bytes; return NULL; }
void vlm_cuda_free(void *p) { (void)p; }
void vlm_cuda_memcpy(void *dst, int dd, const void *src, int sd, size_t bytes) { NO_CUDA("CUDA memcpy"); }
void vlm_cuda_sync(const char *what) { NO_CUDA("CUDA sync"); }
int vlm_cuda_host_pin(void *p, size_t bytes) { (void)p; (void)bytes; return 0; }
void vlm_cuda_host_unpin(void *p) { (void)p; }
void vlm_cuda_fill(vlm_tensor *t, float value) { NO_CUDA("CUDA fill"); }
void vlm_cuda_convert(vlm_tensor *dst, const vlm_tensor *src) { NO_CUDA("CUDA convert"); }
void vlm_cuda_scale(vlm_tensor *t, float s) { NO_CUDA("CUDA scale"); }
void vlm_cuda_matmul_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *b, const vlm_tensor *bias,
                             int trans_a, int trans_b, vlm_precision prec) { NO_CUDA("matmul_forward"); }
void vlm_cuda_matmul_backward(vlm_tensor *da, vlm_tensor *db, vlm_tensor *dbias, const vlm_tensor *dout,
                              const vlm_tensor *a, const vlm_tensor *b, int trans_a, int trans_b,
                              vlm_precision prec) { NO_CUDA("matmul_backward"); }
void vlm_cuda_matmul_backward_set(vlm_tensor *da, vlm_tensor *db, vlm_tensor *dbias, const vlm_tensor *dout,
                                  const vlm_tensor *a, const vlm_tensor *b, int trans_a, int trans_b,
                                  vlm_precision prec) { NO_CUDA("matmul_backward"); }
void vlm_cuda_act_backward_set(vlm_act act, vlm_tensor *dx, const vlm_tensor *dout, const vlm_tensor *x) {
  NO_CUDA("act_backward");
}
void vlm_cuda_layernorm_forward(vlm_tensor *out, vlm_tensor *mean, vlm_tensor *rstd, const vlm_tensor *x,
                                const vlm_tensor *w, const vlm_tensor *b, float eps) { NO_CUDA("layernorm_forward"); }
void vlm_cuda_layernorm_backward(vlm_tensor *dx, vlm_tensor *dw, vlm_tensor *db, const vlm_tensor *dout,
                                 const vlm_tensor *x, const vlm_tensor *w, const vlm_tensor *mean,
                                 const vlm_tensor *rstd) { NO_CUDA("layernorm_backward"); }
void vlm_cuda_act_forward(vlm_act act, vlm_tensor *out, const vlm_tensor *x) { NO_CUDA("act_forward"); }
void vlm_cuda_act_backward(vlm_act act, vlm_tensor *dx, const vlm_tensor *dout, const vlm_tensor *x) {
  NO_CUDA("act_backward");
}
void vlm_cuda_softmax_forward(vlm_tensor *y, const vlm_tensor *x) { NO_CUDA("softmax_forward"); }
void vlm_cuda_softmax_backward(vlm_tensor *dx, const vlm_tensor *dy, const vlm_tensor *y) { NO_CUDA("softmax_backward"); }
void vlm_cuda_attention_forward(vlm_tensor *out, vlm_tensor *probs, const vlm_tensor *q, const vlm_tensor *k,
                                const vlm_tensor *v, int heads, const vlm_tensor *key_padding_mask, int causal,
                                float scale) { NO_CUDA("attention_forward"); }
void vlm_cuda_attention_backward(vlm_tensor *dq, vlm_tensor *dk, vlm_tensor *dv, const vlm_tensor *dout,
                                 const vlm_tensor *probs, const vlm_tensor *q, const vlm_tensor *k,
                                 const vlm_tensor *v, int heads, float scale) { NO_CUDA("attention_backward"); }
void vlm_cuda_embedding_forward(vlm_tensor *out, const vlm_tensor *ids, const vlm_tensor *table,
                                const vlm_tensor *pos) { NO_CUDA("embedding_forward"); }
void vlm_cuda_embedding_backward(vlm_tensor *dtable, vlm_tensor *dpos, const vlm_tensor *dout,
                                 const vlm_tensor *ids) { NO_CUDA("embedding_backward"); }
void vlm_cuda_add_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *b) { NO_CUDA("add_forward"); }
void vlm_cuda_add_backward(vlm_tensor *da, vlm_tensor *db, const vlm_tensor *dout) { NO_CUDA("add_backward"); }
void vlm_cuda_l2norm_forward(vlm_tensor *y, vlm_tensor *norm, const vlm_tensor *x, float eps) {
  NO_CUDA("l2norm_forward");
}
void vlm_cuda_l2norm_backward(vlm_tensor *dx, const vlm_tensor *dy, const vlm_tensor *x, const vlm_tensor *norm,
                              float eps) { NO_CUDA("l2norm_backward"); }
void vlm_cuda_cross_entropy_forward(vlm_tensor *loss, vlm_tensor *probs, const vlm_tensor *logits,
                                    const vlm_tensor *targets, int64_t ignore_index) {
  NO_CUDA("cross_entropy_forward");
}
void vlm_cuda_cross_entropy_backward(vlm_tensor *dlogits, const vlm_tensor *dloss, const vlm_tensor *probs,
                                     const vlm_tensor *targets, int64_t ignore_index) {
  NO_CUDA("cross_entropy_backward");
}
void vlm_cuda_sigmoid_loss_forward(vlm_tensor *loss, const vlm_tensor *logits, int64_t off) {
  NO_CUDA("sigmoid_loss_forward");
}
void vlm_cuda_sigmoid_loss_backward(vlm_tensor *dlogits, const vlm_tensor *dloss, const vlm_tensor *logits,
                                    int64_t off) {
  NO_CUDA("sigmoid_loss_backward");
}
void vlm_cuda_adamw_step(vlm_param_slot *slots, int n, const vlm_adamw_config *c, float lr, int64_t t) {
  NO_CUDA("adamw_step");
}
double vlm_cuda_grad_sumsq(vlm_param_slot *slots, int n) { NO_CUDA("grad_norm"); return 0.0; }
void vlm_cuda_grad_scale(vlm_param_slot *slots, int n, float k) { NO_CUDA("grad_clip"); }
double vlm_cuda_dot(const vlm_tensor *a, const vlm_tensor *b) { NO_CUDA("dot"); return 0.0; }
void vlm_cuda_patchify(vlm_tensor *patches, const vlm_tensor *image, int64_t P) { NO_CUDA("patchify"); }
void vlm_cuda_copy_rows(float *dst, int64_t dst_row0, int64_t dst_step, const float *src, int64_t src_row0,
                        int64_t src_step, int64_t n, int64_t rows_per_copy, int64_t W) { NO_CUDA("copy_rows"); }
void vlm_cuda_attention_set_tiling(int on) { (void)on; }
void vlm_cuda_attention_set_cudnn(int mode) { (void)mode; }
int vlm_cuda_attention_backward_set(vlm_tensor *dq, vlm_tensor *dk, vlm_tensor *dv, const vlm_tensor *dout,
                                    const vlm_tensor *probs, const vlm_tensor *q, const vlm_tensor *k,
                                    const vlm_tensor *v, int heads, float scale) {
  (void)dq, (void)dk, (void)dv, (void)dout, (void)probs, (void)q, (void)k, (void)v, (void)heads, (void)scale;
  return 0; /* the caller zeros, then accumulates */
}
long long vlm_cuda_attention_cudnn_runs(void) { return 0; }
int vlm_cuda_cudnn_probe(char *msg, size_t n) {
  snprintf(msg, n, "built without CUDA");
  return -1;
}
void vlm_cuda_linear_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *w, const vlm_tensor *bias,
                             const vlm_act *act, const vlm_tensor *residual, vlm_precision prec) {
  NO_CUDA("linear_forward");
}
