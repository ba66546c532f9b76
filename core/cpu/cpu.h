/* core/cpu: fast CPU kernels (OpenMP, AVX-512 through the compiler, oneDNN for
 * matmul). Same signatures as the reference kernels in core/ref/ref.h with the
 * vlm_cpu_ prefix; each is tested against its reference. */
#ifndef VLM_CORE_CPU_H
#define VLM_CORE_CPU_H
#include "core/core.h"

/* glibc >= 2.35 ships SIMD variants of expf/erff/erfcf (libmvec), but math.h
 * declares them only under -ffast-math; declaring them `omp declare simd` lets
 * `#pragma omp simd` loops call the vector versions. With AVX-512, SIMDLEN16
 * asks for 16 lanes (GCC prefers 256-bit vectors here; libmvec's 16-lane
 * variants are ~1.4x faster per element). */
#if defined(__x86_64__) && defined(__GLIBC__) && \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
#pragma omp declare simd notinbranch
extern float expf(float);
#pragma omp declare simd notinbranch
extern float erff(float);
#pragma omp declare simd notinbranch
extern float erfcf(float);
#endif
#if defined(__AVX512F__)
#define SIMDLEN16 simdlen(16)
#else
#define SIMDLEN16
#endif

void vlm_cpu_matmul_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *b,
                            const vlm_tensor *bias, int trans_a, int trans_b, vlm_precision prec);
void vlm_cpu_matmul_backward(vlm_tensor *da, vlm_tensor *db, vlm_tensor *dbias, const vlm_tensor *dout,
                             const vlm_tensor *a, const vlm_tensor *b, int trans_a, int trans_b,
                             vlm_precision prec);
/* As vlm_cpu_matmul_backward, but da is written (=), not accumulated: its old
 * contents are never read, so the caller need not zero it (db, dbias still +=). */
void vlm_cpu_matmul_backward_set(vlm_tensor *da, vlm_tensor *db, vlm_tensor *dbias, const vlm_tensor *dout,
                                 const vlm_tensor *a, const vlm_tensor *b, int trans_a, int trans_b,
                                 vlm_precision prec);
void vlm_cpu_linear_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *w, const vlm_tensor *bias,
                            const vlm_act *act, const vlm_tensor *residual, vlm_precision prec);
/* fp32 out [M,N] = a [M,K] @ b^T (+ bias) for M = 1 (with AVX-512: 1 to 8) and b stored
 * [N,K] (trans_b), (gemv.c); returns 0 without touching out when it does not take the shape
 * (more rows, fewer than 65536 weights, or b stored [K,N]). */
int vlm_cpu_gemv_forward(int64_t M, int64_t N, int64_t K, const float *a, const float *b, int trans_b,
                         const float *bias, float *out);
/* The same in bf16 precision: b BF16, stored [N,K] (trans_b) or [K,N]; a F32 (rounded to
 * bf16) or BF16 (a_bf16); M = 1, K <= 16384, at least 65536 weights, else returns 0. */
int vlm_cpu_gemv_bf16_forward(int64_t M, int64_t N, int64_t K, const void *a, int a_bf16, const uint16_t *b,
                              int trans_b, const float *bias, float *out);
/* Packed weights (see core/cpu/matmul.c): register the plain matrix at p, as a
 * GEMM's B [K,N] with element strides (bs0, bs1); drop every registration whose
 * pointer lies in [p, p + bytes); how many are registered. */
void vlm_cpu_matmul_pack(const void *p, int64_t K, int64_t N, int64_t bs0, int64_t bs1, vlm_dtype dt);
void vlm_cpu_matmul_unpack_range(const void *p, size_t bytes);
int vlm_cpu_matmul_packed_count(void);
/* Raw GEMM used by other fast kernels (attention): C[M,N] = alpha * op(A) @ op(B) + beta * C,
 * row-major, leading dimensions in elements. */
void vlm_cpu_sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                   float *C, int64_t ldc);
void vlm_cpu_layernorm_forward(vlm_tensor *out, vlm_tensor *mean, vlm_tensor *rstd, const vlm_tensor *x,
                               const vlm_tensor *w, const vlm_tensor *b, float eps);
void vlm_cpu_layernorm_backward(vlm_tensor *dx, vlm_tensor *dw, vlm_tensor *db, const vlm_tensor *dout,
                                const vlm_tensor *x, const vlm_tensor *w, const vlm_tensor *mean,
                                const vlm_tensor *rstd);
void vlm_cpu_act_forward(vlm_act act, vlm_tensor *out, const vlm_tensor *x);
void vlm_cpu_act_backward(vlm_act act, vlm_tensor *dx, const vlm_tensor *dout, const vlm_tensor *x);
/* dx = dout * act'(x) (written, not accumulated). */
void vlm_cpu_act_backward_set(vlm_act act, vlm_tensor *dx, const vlm_tensor *dout, const vlm_tensor *x);
void vlm_cpu_softmax_forward(vlm_tensor *y, const vlm_tensor *x);
void vlm_cpu_softmax_backward(vlm_tensor *dx, const vlm_tensor *dy, const vlm_tensor *y);
void vlm_cpu_attention_forward(vlm_tensor *out, vlm_tensor *probs, const vlm_tensor *q,
                               const vlm_tensor *k, const vlm_tensor *v, int heads,
                               const vlm_tensor *key_padding_mask, int causal, float scale);
void vlm_cpu_attention_backward(vlm_tensor *dq, vlm_tensor *dk, vlm_tensor *dv, const vlm_tensor *dout,
                                const vlm_tensor *probs, const vlm_tensor *q, const vlm_tensor *k,
                                const vlm_tensor *v, int heads, float scale);
void vlm_cpu_embedding_forward(vlm_tensor *out, const vlm_tensor *ids, const vlm_tensor *table,
                               const vlm_tensor *pos);
void vlm_cpu_embedding_backward(vlm_tensor *dtable, vlm_tensor *dpos, const vlm_tensor *dout,
                                const vlm_tensor *ids);
void vlm_cpu_add_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *b);
void vlm_cpu_add_backward(vlm_tensor *da, vlm_tensor *db, const vlm_tensor *dout);
void vlm_cpu_l2norm_forward(vlm_tensor *y, vlm_tensor *norm, const vlm_tensor *x, float eps);
void vlm_cpu_l2norm_backward(vlm_tensor *dx, const vlm_tensor *dy, const vlm_tensor *x,
                             const vlm_tensor *norm, float eps);
void vlm_cpu_cross_entropy_forward(vlm_tensor *loss, vlm_tensor *probs, const vlm_tensor *logits,
                                   const vlm_tensor *targets, int64_t ignore_index);
void vlm_cpu_cross_entropy_backward(vlm_tensor *dlogits, const vlm_tensor *dloss, const vlm_tensor *probs,
                                    const vlm_tensor *targets, int64_t ignore_index);
void vlm_cpu_sigmoid_loss_forward(vlm_tensor *loss, const vlm_tensor *logits, int64_t off);
void vlm_cpu_sigmoid_loss_backward(vlm_tensor *dlogits, const vlm_tensor *dloss, const vlm_tensor *logits,
                                   int64_t off);
void vlm_cpu_adamw_step(vlm_param_slot *slots, int n, const vlm_adamw_config *c, float lr, int64_t t);
#endif
