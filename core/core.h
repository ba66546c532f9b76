/* core: the runtime every other layer of vlm is built on.
 *
 *   tensors (views over memory owned by an arena or a mapped file), arenas,
 *   errors and logging, a seedable RNG, thread control, safetensors I/O,
 *   the op set (forward + backward, dispatched on the tensor's device),
 *   the pre-LN transformer block, AdamW, gradient clipping, LR schedules.
 *
 * Conventions
 *   - Functions that can fail on user input return vlm_status and set a message
 *     (vlm_last_error) naming the file, the record and the problem.
 *   - Ops check their shapes with VLM_CHECK: a mismatch there is a bug in the
 *     calling code, never a user error, and aborts with a message.
 *   - Every backward ACCUMULATES (+=) into the gradient tensors it is given;
 *     a NULL gradient tensor means "not needed". Callers zero gradients once
 *     per step.
 *   - Tensors are contiguous unless a function says it accepts strided views.
 */
#ifndef VLM_CORE_H
#define VLM_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ errors */
typedef enum {
  VLM_OK = 0,
  VLM_ERR_IO,          /* a file could not be opened, read, written or renamed */
  VLM_ERR_FORMAT,      /* a file's content is malformed */
  VLM_ERR_ARG,         /* a bad argument or option from the user */
  VLM_ERR_OOM,         /* out of memory */
  VLM_ERR_UNSUPPORTED, /* valid but not supported (a dtype, a device) */
  VLM_ERR_INTERNAL
} vlm_status;

/* Set the thread's last error message (printf-style) and return code. The message is
 * kept whole up to VLM_ERR_MAX bytes (a checkpoint's list of every mismatched tensor
 * can run to tens of kilobytes); beyond that, or when memory runs out, its first
 * VLM_ERR_LEN - 1 bytes. Fixed buffers that copy a message use VLM_ERR_LEN. */
#define VLM_ERR_LEN 2048
#define VLM_ERR_MAX ((size_t)1 << 20)
/* Growable per-thread strings freed when the thread ends: slot 0 is the last error's;
 * vlm_msg_slot_copy(slot >= 1, s) stores a copy of s (up to VLM_ERR_MAX bytes) in that slot,
 * freeing the slot's previous copy, and returns it (NULL: too long or out of memory).
 * Slot 1: the C API's last error (api/vlm_api.c). */
#define VLM_MSG_SLOTS 2
const char *vlm_msg_slot_copy(int slot, const char *s);
vlm_status vlm_error(vlm_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefix the current message with more context: "ctx: old message". */
vlm_status vlm_error_prefix(vlm_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *vlm_last_error(void);
void vlm_error_clear(void);
const char *vlm_status_name(vlm_status s);
/* A key given twice in one object anywhere in a parsed JSON tree (a cJSON *): Python's json
 * keeps the last value, cJSON finds the first, so files read both ways must not have one. An
 * error naming file, the key and where it is ("the object at annotations[3]"), or VLM_OK. */
struct cJSON;
vlm_status vlm_json_unique_keys(const struct cJSON *root, const char *file);
/* A fast 64-bit hash (not cryptographic) of byte runs, each run's length included: the model
 * identities (model/encode.c) and the zero-shot classifier files' keys are made with it. */
typedef struct { uint64_t h[4]; } vlm_hash;
void vlm_hash_init(vlm_hash *s);
void vlm_hash_bytes(vlm_hash *s, const void *data, size_t n);
uint64_t vlm_hash_final(const vlm_hash *s);
/* s as one POSIX shell word, for commands quoted in messages: s itself when it holds only
 * characters the shell leaves alone, else in single quotes (a quote as '\''), written to buf.
 * A word that does not fit in n bytes comes back unquoted. */
const char *vlm_shell_word(const char *s, char *buf, size_t n);

/* An internal invariant broke (a bug, not bad input): print and abort. */
void vlm_fatal(const char *file, int line, const char *fmt, ...) __attribute__((noreturn, format(printf, 3, 4)));
#define VLM_CHECK(cond, ...) \
  do { if (!(cond)) vlm_fatal(__FILE__, __LINE__, __VA_ARGS__); } while (0)

/* Logging to stderr; level from VLM_LOG (error|warn|info|debug), default info. */
typedef enum { VLM_LOG_ERROR = 0, VLM_LOG_WARN, VLM_LOG_INFO, VLM_LOG_DEBUG } vlm_log_level;
void vlm_log(vlm_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void vlm_log_set_level(vlm_log_level level);

/* ------------------------------------------------------------------ dtypes */
typedef enum {
  VLM_F32 = 0, VLM_BF16, VLM_F16, VLM_F64,
  VLM_I8, VLM_I16, VLM_I32, VLM_I64,
  VLM_U8, VLM_U16, VLM_U32, VLM_U64, VLM_BOOL,
  VLM_DTYPE_COUNT
} vlm_dtype;

size_t vlm_dtype_size(vlm_dtype dt);
const char *vlm_dtype_name(vlm_dtype dt);                  /* safetensors spelling: "F32", "BF16", ... */
int vlm_dtype_from_name(const char *name, vlm_dtype *out); /* 1 if known */

/* bf16 / f16 conversions (round to nearest even; NaN stays NaN). */
static inline float vlm_bf16_to_f32(uint16_t h) {
  union { uint32_t u; float f; } v; v.u = (uint32_t)h << 16; return v.f;
}
uint16_t vlm_f32_to_bf16(float f);
float vlm_f16_to_f32(uint16_t h);
uint16_t vlm_f32_to_f16(float f);
static inline float vlm_round_bf16(float f) { return vlm_bf16_to_f32(vlm_f32_to_bf16(f)); }
void vlm_f32_to_bf16_array(uint16_t *dst, const float *src, size_t n);
void vlm_bf16_to_f32_array(float *dst, const uint16_t *src, size_t n);

/* ------------------------------------------------------------------ tensors */
typedef enum { VLM_CPU = 0, VLM_CUDA = 1 } vlm_device;

#define VLM_MAX_DIMS 8
typedef struct vlm_tensor {
  void *data;                     /* NULL in a measuring arena */
  vlm_dtype dtype;
  vlm_device device;
  int ndim;
  int64_t shape[VLM_MAX_DIMS];
  int64_t stride[VLM_MAX_DIMS];   /* in elements; contiguous unless made by a view function */
} vlm_tensor;

vlm_tensor vlm_tensor_make(void *data, vlm_dtype dt, vlm_device dev, int ndim, const int64_t *shape);
/* A contiguous F32 tensor on the CPU over caller-owned memory. */
vlm_tensor vlm_tensor_cpu_f32(float *data, int ndim, const int64_t *shape);
int64_t vlm_numel(const vlm_tensor *t);
size_t vlm_nbytes(const vlm_tensor *t);           /* numel * itemsize (contiguous size) */
int vlm_is_contiguous(const vlm_tensor *t);
int vlm_same_shape(const vlm_tensor *a, const vlm_tensor *b);
/* Product of all dims but the last ("rows") and the last dim ("cols"). */
int64_t vlm_rows(const vlm_tensor *t);
int64_t vlm_cols(const vlm_tensor *t);
/* Views (no copy). narrow: dim restricted to [start, start+len). reshape: contiguous only. */
vlm_tensor vlm_narrow(const vlm_tensor *t, int dim, int64_t start, int64_t len);
vlm_tensor vlm_reshape(const vlm_tensor *t, int ndim, const int64_t *shape);
/* Pointer to element i of a contiguous f32 tensor (checks dtype). */
float *vlm_f32(const vlm_tensor *t);
/* "[2, 3, 4] F32" into buf. */
const char *vlm_shape_str(const vlm_tensor *t, char *buf, size_t n);

/* Set every element to zero / to a value (any device, contiguous). */
void vlm_zero(vlm_tensor *t);
void vlm_fill(vlm_tensor *t, float value);
/* Copy between tensors of the same shape, converting dtype (F32/BF16/F16) and
 * moving between devices as needed. */
void vlm_copy(vlm_tensor *dst, const vlm_tensor *src);
/* Element access and small arithmetic on contiguous F32 tensors of any device
 * (model code that needs a scalar: the loss, logit_scale). On a GPU a get waits
 * for the queued kernels. */
float vlm_get_f32(const vlm_tensor *t, int64_t i);
void vlm_set_f32(vlm_tensor *t, int64_t i, float v);
void vlm_scale(vlm_tensor *t, float s);                    /* t *= s */
double vlm_dot(const vlm_tensor *a, const vlm_tensor *b);  /* sum a[i] b[i], accumulated in double */
/* Host access to small device tensors (ids, masks, row indices, targets) for
 * model code that builds or reads them on the host:
 * - vlm_host_view: t itself when on the CPU, else a copy read back into a
 *   buffer returned in *owned (free() it; NULL when none). t contiguous.
 * - vlm_host_stage: a host buffer for t's first `bytes`: t's own memory on the
 *   CPU, else a staging buffer; vlm_host_commit uploads it (and frees it). */
vlm_tensor vlm_host_view(const vlm_tensor *t, void **owned);
void *vlm_host_stage(const vlm_tensor *t, size_t bytes);
void vlm_host_commit(vlm_tensor *t, void *staged, size_t bytes);
/* Row blocks between two contiguous F32 tensors viewed as [rows, W] (W the
 * last dim of both, which must match): for i < n, the rows_per_copy rows from
 * dst row dst_row0 + i*dst_step <- the same count from src row src_row0 +
 * i*src_step (a step of 0 repeats one block). Any devices; bounds checked.
 * Used to interleave token rows with cls / class rows on any device. */
void vlm_copy_rows(vlm_tensor *dst, int64_t dst_row0, int64_t dst_step, const vlm_tensor *src, int64_t src_row0,
                   int64_t src_step, int64_t n, int64_t rows_per_copy);

/* ------------------------------------------------------------------ arenas
 * One allocation per parameter set / gradient set / optimizer state /
 * activation set, sized up front. Two-pass use: run the same layout code on a
 * measuring arena (vlm_arena_measure) to learn the size, then on a real one. */
typedef struct {
  uint8_t *base;
  size_t capacity;
  size_t used;
  vlm_device device;
  int measuring;
} vlm_arena;

#define VLM_ARENA_ALIGN 64
void vlm_arena_measure(vlm_arena *a, vlm_device dev);
vlm_status vlm_arena_init(vlm_arena *a, size_t bytes, vlm_device dev); /* zeroed memory */
/* Carve a tensor; in a measuring arena data is NULL. Exceeding capacity is a bug (aborts). */
vlm_tensor vlm_arena_tensor(vlm_arena *a, vlm_dtype dt, int ndim, const int64_t *shape);
vlm_tensor vlm_arena_tensor1(vlm_arena *a, vlm_dtype dt, int64_t n0);
vlm_tensor vlm_arena_tensor2(vlm_arena *a, vlm_dtype dt, int64_t n0, int64_t n1);
vlm_tensor vlm_arena_tensor3(vlm_arena *a, vlm_dtype dt, int64_t n0, int64_t n1, int64_t n2);
vlm_tensor vlm_arena_tensor4(vlm_arena *a, vlm_dtype dt, int64_t n0, int64_t n1, int64_t n2, int64_t n3);
void vlm_arena_reset(vlm_arena *a);   /* forget all tensors, keep the memory */
void vlm_arena_free(vlm_arena *a);

/* ------------------------------------------------------------------ RNG
 * xoshiro256** seeded through splitmix64: deterministic on every platform.
 * The whole state is the struct, so it can be saved in a checkpoint. */
typedef struct { uint64_t s[4]; int has_spare; float spare; } vlm_rng;
void vlm_rng_seed(vlm_rng *r, uint64_t seed);
/* An independent stream derived from (seed, stream): for per-sample randomness
 * that does not depend on which thread draws it. */
void vlm_rng_seed_stream(vlm_rng *r, uint64_t seed, uint64_t stream);
uint64_t vlm_rng_u64(vlm_rng *r);
uint64_t vlm_rng_below(vlm_rng *r, uint64_t n);    /* uniform in [0, n), unbiased */
double vlm_rng_uniform(vlm_rng *r);                /* [0, 1) with 53 bits */
float vlm_rng_normal(vlm_rng *r);                  /* standard normal (Box-Muller) */
void vlm_rng_fill_uniform(vlm_rng *r, float *x, size_t n, float lo, float hi);
void vlm_rng_fill_normal(vlm_rng *r, float *x, size_t n, float mean, float std);
void vlm_rng_shuffle(vlm_rng *r, int64_t *x, size_t n);   /* Fisher-Yates */

/* ------------------------------------------------------------------ threads
 * requested > 0 wins; else VLM_THREADS (when a whole number in [1, VLM_MAX_THREADS]);
 * else OpenMP's default. At most VLM_MAX_THREADS. vlm_threads_init sets that count for
 * the process (and the calling thread) and returns it; vlm_threads_resolve only returns
 * it (the C API keeps a count per model and changes no global setting). */
#define VLM_MAX_THREADS 4096
int vlm_threads_init(int requested);
int vlm_threads_resolve(int requested);
int vlm_threads_get(void);

/* How long idle OpenMP threads spin before they sleep (GOMP_SPINCOUNT; the `vlm` command sets
 * it at start unless the user did). Spinning keeps a small model's many short parallel regions
 * fast on idle cores, but where more threads want the cores than there are, a spinning thread
 * holds a core that the thread it waits for needs: on 2 cores, 100 steps of the shapes model took
 * 32.1-35.2 s at 30000 spins beside one busy process against 11.4-12.3 s at 1000, and two such
 * trainings side by side 38.7-40.5 s each against 11.7-12.0 s; alone, 1000 spins cost the shapes
 * models 18-28% (docs/PERFORMANCE.md).
 * vlm_runnable_others: the tasks runnable right now besides the caller (/proc/stat's
 * procs_running less one, the least of five reads 1 ms apart: a lasting load is in every read, a
 * passing task (a shell forking, a kernel thread) in few; the largest of three reads caught one
 * in 5 of 40 starts on idle cores), -1 when unknown. vlm_omp_spin_count: VLM_SPIN_BUSY when others plus the threads about to start
 * exceed the CPUs, else (also when unknown) VLM_SPIN_IDLE. */
#define VLM_SPIN_IDLE 30000
#define VLM_SPIN_BUSY 1000
int vlm_runnable_others(void);
int vlm_omp_spin_count(int others, int threads, int cpus);

/* ------------------------------------------------------------------ collectives (core/comm.c)
 * Data-parallel training over ranks. The program registers a backend (the `vlm`
 * binary's MPI one when launched by mpirun / srun); without one, or with a world of
 * 1, every call is a no-op and rank / world are 0 / 1. Tensors may live on any
 * device (copied through the host); F32 only. */
typedef struct vlm_comm_ops {
  int rank, world;
  vlm_status (*allreduce_sum_f32)(float *buf, int64_t n);   /* in place, every rank */
  vlm_status (*allreduce_min_i64)(int64_t *v);
  vlm_status (*allgather_f32)(float *buf, int64_t n);       /* buf [world * n]: block rank -> all */
  vlm_status (*bcast)(void *buf, size_t bytes, int root);
} vlm_comm_ops;
void vlm_comm_set(const vlm_comm_ops *ops);   /* NULL: one process (the ops must outlive their use) */
int vlm_comm_rank(void);
int vlm_comm_world(void);
vlm_status vlm_comm_allreduce_sum(vlm_tensor *t);                  /* t = the sum of every rank's t */
vlm_status vlm_comm_allreduce_sum_buf(float *buf, int64_t n);     /* the same over host memory */
vlm_status vlm_comm_allreduce_min_i64(int64_t *v);
/* all [world * n, ...]: this rank's rows are block rank; the other blocks are filled from theirs */
vlm_status vlm_comm_allgather_rows(vlm_tensor *all);
vlm_status vlm_comm_bcast_bytes(void *buf, vlm_device dev, size_t bytes, int root);

/* Kernel scratch: memory private to the calling thread, slot 0..VLM_SCRATCH_SLOTS-1,
 * grown to the largest request and reused (contents undefined; 64-byte aligned).
 * A kernel must not use the same slot for two live buffers. */
#define VLM_SCRATCH_SLOTS 4
void *vlm_scratch(int slot, size_t bytes);
void vlm_scratch_release(void);   /* free this thread's slots */
/* Per-thread kernel buffers (these slots; the CPU matmul's conversion buffers,
 * scratchpad and oneDNN stream) are freed when their thread exits. A debug count
 * of those alive in all threads, for tests; vlm_scratch_count is their owners'
 * bookkeeping (+1 when one is made, -1 when it is freed). */
long vlm_scratch_live(void);
void vlm_scratch_count(long delta);

/* ------------------------------------------------------------------ timing */
double vlm_now(void);  /* monotonic seconds */

/* ------------------------------------------------------------------ kernels
 * Every op has a plain reference kernel (core/ref) and a fast one per device
 * (core/cpu, core/cuda). The reference is used when the mode says so (tests,
 * debugging) or env VLM_KERNELS=ref. */
typedef enum { VLM_KERNELS_FAST = 0, VLM_KERNELS_REF = 1 } vlm_kernel_mode;
void vlm_set_kernel_mode(vlm_kernel_mode m);
vlm_kernel_mode vlm_get_kernel_mode(void);

/* Precision of matmul inputs for F32 tensors: F32, or BF16 (inputs rounded to
 * bf16, products accumulated in f32; AMX / AVX512-BF16 on CPUs that have it).
 * A per-thread setting (F32 on every new thread): it applies to the ops the
 * calling thread runs, so code that wants a precision sets it on the thread that
 * computes and restores the previous one when done. */
typedef enum { VLM_PREC_F32 = 0, VLM_PREC_BF16 = 1 } vlm_precision;
void vlm_set_matmul_precision(vlm_precision p);
vlm_precision vlm_get_matmul_precision(void);
int vlm_cpu_has_bf16(void);   /* AVX512-BF16 or AMX-BF16 present */
/* Whether oneDNN runs bf16 GEMMs on this CPU (AVX-512: AMX, AVX512-BF16 or emulated); without
 * (AVX2) bf16 precision widens its bf16-rounded operands to f32: the same results, no speedup. */
int vlm_cpu_bf16_gemm_native(void);

/* ------------------------------------------------------------------ ops
 * Shapes are in the comments; [*] means "any leading dims". */

/* Activations (vlm_act_forward below; also fused into vlm_linear_forward). */
typedef enum { VLM_ACT_GELU = 0, VLM_ACT_QUICK_GELU = 1 } vlm_act;

/* out[M,N] = op(a) @ op(b) (+ bias[N]). Without transposes a is [M,K] and b is
 * [K,N]; trans_a means a is stored [K,M]; trans_b means b is stored [N,K] (the
 * PyTorch Linear weight layout). When !trans_a, a's leading dims flatten into M
 * (a: [*,K], out: [*,N]). a, b: F32 or BF16; out F32. */
void vlm_matmul_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *b,
                        const vlm_tensor *bias, int trans_a, int trans_b);
void vlm_matmul_backward(vlm_tensor *da, vlm_tensor *db, vlm_tensor *dbias, const vlm_tensor *dout,
                         const vlm_tensor *a, const vlm_tensor *b, int trans_a, int trans_b);

/* Inference only (no backward): out = act(a @ w^T + bias) + residual in one
 * pass, the fused form of matmul_forward (trans_b), act_forward and
 * add_forward, which training uses instead. a [*,K] F32/BF16, w [N,K]
 * F32/BF16 (the Linear layout), bias [N] F32 or NULL, act NULL for none,
 * residual [*,N] F32 (same shape as out) or NULL; out [*,N] F32 or BF16
 * (rounded once at the end). Inputs are used at the matmul precision.
 * On CUDA a bf16 product with an activation into a BF16 out (no residual) is
 * also rounded to bf16 before the bias and activation (core/cuda/matmul.cu). */
void vlm_linear_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *w, const vlm_tensor *bias,
                        const vlm_act *act, const vlm_tensor *residual);

/* Packed weights for inference: after vlm_matmul_pack(w, trans_b), forward
 * matmuls and linears on the CPU that take exactly this tensor as b (same
 * data pointer and layout) use a copy in oneDNN's blocked layout, made on
 * first use (10-30% faster GEMMs for bf16 weights). The tensor must not change
 * while packed; the packing ends with vlm_matmul_unpack(w) or when the arena
 * holding w is freed (vlm_arena_free). Ignored for other devices. */
void vlm_matmul_pack(const vlm_tensor *w, int trans_b);
void vlm_matmul_unpack(const vlm_tensor *w);

/* LayerNorm over the last dim C: x [*,C], w,b [C], mean,rstd [rows] F32 (saved
 * for backward; may be NULL in forward when no backward follows). out is F32,
 * or BF16 for inference (each value rounded once, to feed bf16 matmuls). */
void vlm_layernorm_forward(vlm_tensor *out, vlm_tensor *mean, vlm_tensor *rstd, const vlm_tensor *x,
                           const vlm_tensor *w, const vlm_tensor *b, float eps);
void vlm_layernorm_backward(vlm_tensor *dx, vlm_tensor *dw, vlm_tensor *db, const vlm_tensor *dout,
                            const vlm_tensor *x, const vlm_tensor *w, const vlm_tensor *mean,
                            const vlm_tensor *rstd);

/* Activations, elementwise on any shape. GELU is the exact erf form;
 * QuickGELU is x * sigmoid(1.702 x). */
void vlm_act_forward(vlm_act act, vlm_tensor *out, const vlm_tensor *x);
void vlm_act_backward(vlm_act act, vlm_tensor *dx, const vlm_tensor *dout, const vlm_tensor *x);

/* Softmax over the last dim. Backward uses the forward's output y. */
void vlm_softmax_forward(vlm_tensor *y, const vlm_tensor *x);
void vlm_softmax_backward(vlm_tensor *dx, const vlm_tensor *dy, const vlm_tensor *y);

/* Multi-head scaled dot-product attention.
 *   q [B,Lq,H*D], k and v [B,Lk,H*D]: 3-d views whose last dim is contiguous;
 *     stride[1] may exceed H*D (q, k, v as views into a packed [B,L,3W] qkv).
 *   out [B,Lq,H*D] contiguous. probs [B,H,Lq,Lk] F32 saved for backward (NULL: inference only).
 *   F32; without probs q, k, v may be BF16 (all three) and out BF16 (rounded once):
 *     bf16 storage for inference, the result as from F32 inputs of the same values.
 *   key_padding_mask: U8 [B,Lk], nonzero = that key is masked, or NULL.
 *   causal: query i sees keys j <= i.  scale: usually D^-0.5.
 *   A query that sees no key at all gets zero output (PyTorch gives NaN).
 * Backward: dq, dk, dv may be strided views like q, k, v (e.g. into a dqkv). */
void vlm_attention_forward(vlm_tensor *out, vlm_tensor *probs, const vlm_tensor *q,
                           const vlm_tensor *k, const vlm_tensor *v, int heads,
                           const vlm_tensor *key_padding_mask, int causal, float scale);
void vlm_attention_backward(vlm_tensor *dq, vlm_tensor *dk, vlm_tensor *dv, const vlm_tensor *dout,
                            const vlm_tensor *probs, const vlm_tensor *q, const vlm_tensor *k,
                            const vlm_tensor *v, int heads, float scale);

/* Token + position embedding: out[B,L,W] = table[ids[b,l]] + pos[l] (pos [>=L,W] or NULL).
 * ids I32 or I64 [B,L]; an id outside [0,V) is a bug in the caller (checked). */
void vlm_embedding_forward(vlm_tensor *out, const vlm_tensor *ids, const vlm_tensor *table,
                           const vlm_tensor *pos);
void vlm_embedding_backward(vlm_tensor *dtable, vlm_tensor *dpos, const vlm_tensor *dout,
                            const vlm_tensor *ids);

/* Residual / broadcast add: out = a + b where b's shape equals the trailing dims
 * of a (numel(b) divides numel(a)); out may alias a. Backward: da += dout,
 * db += dout summed over the broadcast dims. */
void vlm_add_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *b);
void vlm_add_backward(vlm_tensor *da, vlm_tensor *db, const vlm_tensor *dout);

/* L2 normalize over the last dim: y = x / max(||x||, eps); norm [rows] saved. */
void vlm_l2norm_forward(vlm_tensor *y, vlm_tensor *norm, const vlm_tensor *x, float eps);
void vlm_l2norm_backward(vlm_tensor *dx, const vlm_tensor *dy, const vlm_tensor *x,
                         const vlm_tensor *norm, float eps);

/* Cross-entropy with an ignore index, mean over the rows whose target is not
 * ignore_index (0 when there are none): logits [N,C] F32, targets [N] I32/I64,
 * loss [1] F32, probs [N,C] F32 (the softmax, saved for backward).
 * Backward: dlogits += dloss[0] * (probs - onehot) / count. A target outside
 * [0,C) that is not ignore_index is a bug in the caller (checked). */
void vlm_cross_entropy_forward(vlm_tensor *loss, vlm_tensor *probs, const vlm_tensor *logits,
                               const vlm_tensor *targets, int64_t ignore_index);
void vlm_cross_entropy_backward(vlm_tensor *dlogits, const vlm_tensor *dloss,
                                const vlm_tensor *probs, const vlm_tensor *targets,
                                int64_t ignore_index);

/* SigLIP's pairwise sigmoid loss (Zhai et al. 2023; open_clip's SigLipLoss) over
 * logits [B,N] F32: row i's positive is column off + i (label +1), every other
 * column a negative (label -1); 0 <= off, off + B <= N.
 *   loss[0] = -(1/B) sum_ij log sigmoid(label_ij * logits_ij)
 * with log sigmoid(z) = min(z, 0) - log1p(exp(-|z|)) (no overflow for any z).
 * Backward: dlogits_ij += dloss[0] / B * (-label_ij) * sigmoid(-label_ij * logits_ij).
 * loss and dloss [1] F32. */
void vlm_sigmoid_loss_forward(vlm_tensor *loss, const vlm_tensor *logits, int64_t off);
void vlm_sigmoid_loss_backward(vlm_tensor *dlogits, const vlm_tensor *dloss, const vlm_tensor *logits, int64_t off);

/* ------------------------------------------------------------------ transformer block
 * Pre-LN residual block as in open_clip's ResidualAttentionBlock:
 *   x1 = x + out_proj(attn(ln_1(x)));  y = x1 + c_proj(act(c_fc(ln_2(x1)))).
 * Parameter names (open_clip): ln_1.{weight,bias}, attn.in_proj_{weight,bias},
 * attn.out_proj.{weight,bias}, ln_2.*, mlp.c_fc.*, mlp.c_proj.* */
typedef struct {
  int64_t width;      /* W */
  int64_t heads;      /* H; head_dim = W / H */
  int64_t mlp_width;  /* M */
  vlm_act act;
  float ln_eps;       /* 1e-5 */
} vlm_block_config;

typedef struct {
  vlm_tensor ln_1_w, ln_1_b;   /* [W] */
  vlm_tensor in_proj_w;        /* [3W, W] */
  vlm_tensor in_proj_b;        /* [3W] */
  vlm_tensor out_proj_w;       /* [W, W] */
  vlm_tensor out_proj_b;       /* [W] */
  vlm_tensor ln_2_w, ln_2_b;   /* [W] */
  vlm_tensor fc_w;             /* [M, W] */
  vlm_tensor fc_b;             /* [M] */
  vlm_tensor proj_w;           /* [W, M] */
  vlm_tensor proj_b;           /* [W] */
} vlm_block_params;

/* Saved activations of one block at batch B, length L. */
typedef struct {
  vlm_tensor ln_1;             /* [B, L, W] */
  vlm_tensor ln_1_mean, ln_1_rstd; /* [B*L] */
  vlm_tensor qkv;              /* [B, L, 3W] */
  vlm_tensor probs;            /* [B, H, L, L] */
  vlm_tensor attn;             /* [B, L, W] attention output before out_proj */
  vlm_tensor x1;               /* [B, L, W] residual stream after attention */
  vlm_tensor ln_2;             /* [B, L, W] */
  vlm_tensor ln_2_mean, ln_2_rstd; /* [B*L] */
  vlm_tensor fc;               /* [B, L, M] before the activation */
  vlm_tensor act;              /* [B, L, M] */
  /* Set by the towers for inference (no backward will follow): the block then
   * runs its fused forward (vlm_linear_forward epilogues, no saved attention
   * probabilities; LayerNorm and MLP activations in BF16 when the weights are
   * BF16 or the matmul precision is) and leaves only y meaningful. */
  int forward_only;
} vlm_block_acts;

/* Gradient scratch shared by all blocks of a tower (same B, L, W, M). */
typedef struct {
  vlm_tensor d_ln;             /* [B, L, W] */
  vlm_tensor d_attn;           /* [B, L, W] */
  vlm_tensor d_x1;             /* [B, L, W] */
  vlm_tensor d_qkv;            /* [B, L, 3W] */
  vlm_tensor d_act;            /* [B, L, M] */
  vlm_tensor d_fc;             /* [B, L, M] */
} vlm_block_scratch;

void vlm_block_params_layout(vlm_block_params *p, vlm_arena *a, const vlm_block_config *c);
void vlm_block_acts_layout(vlm_block_acts *s, vlm_arena *a, const vlm_block_config *c, int64_t B, int64_t L);
void vlm_block_scratch_layout(vlm_block_scratch *s, vlm_arena *a, const vlm_block_config *c, int64_t B, int64_t L);
/* Visit every parameter tensor with its open_clip suffix ("ln_1.weight", ...). */
typedef void (*vlm_param_visit_fn)(void *ctx, const char *name, vlm_tensor *t);
void vlm_block_params_visit(vlm_block_params *p, vlm_param_visit_fn fn, void *ctx);
/* The same with prefix prepended to every name ("transformer.resblocks.3." ...). */
void vlm_block_params_visit_prefixed(vlm_block_params *p, const char *prefix, vlm_param_visit_fn fn, void *ctx);

/* y [B,L,W] from x [B,L,W]; y must not alias x. mask as for attention. */
void vlm_block_forward(const vlm_block_config *c, const vlm_block_params *p, vlm_block_acts *s,
                       vlm_tensor *y, const vlm_tensor *x, const vlm_tensor *key_padding_mask, int causal);
/* The last block of a tower pooled at one row per batch entry:
 * y [B,1,W] = rows of vlm_block_forward(x) at the flat indices rows [B,1] I64
 * (b*L + position, on x's device), with keys masked by key_padding_mask [B,L]
 * (may be NULL; no causal mask: pass one hiding the keys after the row).
 * Only the chosen rows' queries, out_proj and MLP run. With inference
 * activations (s->forward_only) nothing is saved; with training activations
 * (L >= 2) what vlm_block_backward_rows reads is saved in s. */
void vlm_block_forward_rows(const vlm_block_config *c, const vlm_block_params *p, vlm_block_acts *s,
                            vlm_tensor *y, const vlm_tensor *x, const vlm_tensor *rows,
                            const vlm_tensor *key_padding_mask);
/* The backward of vlm_block_forward_rows on training activations: dy [B,1,W]
 * at the chosen rows; dx [B,L,W] is written (=, not accumulated), gradients
 * accumulate into g. x and rows as given to the forward. */
void vlm_block_backward_rows(const vlm_block_config *c, const vlm_block_params *p, vlm_block_params *g,
                             const vlm_block_acts *s, vlm_block_scratch *scr, vlm_tensor *dx, const vlm_tensor *dy,
                             const vlm_tensor *x, const vlm_tensor *rows);
/* Accumulates into dx and into every tensor of g. dy is read-only. */
void vlm_block_backward(const vlm_block_config *c, const vlm_block_params *p, vlm_block_params *g,
                        const vlm_block_acts *s, vlm_block_scratch *scr, vlm_tensor *dx,
                        const vlm_tensor *dy, const vlm_tensor *x, int causal);

/* A stack of n blocks (a tower): xs[i+1] = block i (xs[i]) for i = 0..n-1. */
void vlm_block_stack_forward(const vlm_block_config *c, const vlm_block_params *p, vlm_block_acts *s,
                             vlm_tensor *xs, int64_t n, const vlm_tensor *key_padding_mask, int causal);
/* Back through the stack: *dy holds d xs[n] on entry; dy and tmp (same shape) are
 * used in turn and the one holding d xs[0] is returned. Gradients accumulate into g. */
vlm_tensor *vlm_block_stack_backward(const vlm_block_config *c, const vlm_block_params *p, vlm_block_params *g,
                                     const vlm_block_acts *s, vlm_block_scratch *scr, const vlm_tensor *xs,
                                     int64_t n, int causal, vlm_tensor *dy, vlm_tensor *tmp);

/* ------------------------------------------------------------------ optimizer */
typedef struct {
  float beta1, beta2, eps;   /* open_clip: 0.9, 0.98, 1e-6 */
  float weight_decay;        /* decoupled; applied to tensors whose decay flag is set */
} vlm_adamw_config;

typedef struct {
  const char *name;
  vlm_tensor *param, *grad, *m, *v;  /* same shape, F32 */
  int decay;                          /* 1: this tensor gets weight decay */
} vlm_param_slot;

/* One AdamW step t (1-based) with learning rate lr over all slots:
 *   p *= 1 - lr*wd (decay slots only); m += (1-b1)(g - m); v = b2 v + (1-b2) g^2;
 *   p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps). */
void vlm_adamw_step(vlm_param_slot *slots, int n, const vlm_adamw_config *c, float lr, int64_t t);
/* Global L2 norm of all gradients (accumulated in double). */
double vlm_grad_norm(vlm_param_slot *slots, int n);
/* Scale every gradient by min(1, max_norm / (norm + 1e-6)); returns the raw norm,
 * stores the coefficient in *coef when coef is not NULL. max_norm <= 0: no clipping. */
double vlm_grad_clip(vlm_param_slot *slots, int n, double max_norm, double *coef);

/* LR schedules (open_clip's scheduler.py semantics); step is 0-based. */
float vlm_lr_cosine(float base_lr, int64_t warmup, int64_t total, int64_t step);
float vlm_lr_const(float base_lr, int64_t warmup, int64_t step);
float vlm_lr_const_cooldown(float base_lr, int64_t warmup, int64_t total, int64_t step,
                            int64_t cooldown_steps, float cooldown_power, float cooldown_end_lr);

/* ------------------------------------------------------------------ safetensors */
typedef struct {
  char *name;
  vlm_dtype dtype;
  int ndim;
  int64_t shape[VLM_MAX_DIMS];
  uint64_t begin, end;          /* byte range within the data section */
  const void *data;             /* points into the mapping */
} vlm_st_entry;

typedef struct {
  char *path;
  void *map;                    /* whole file, read-only mmap */
  size_t map_size;
  const uint8_t *data;          /* start of the data section */
  uint64_t data_size;
  vlm_st_entry *entries;        /* sorted by name */
  int n_entries;
  char **meta_keys, **meta_values;  /* __metadata__ (string -> string) */
  int n_meta;
  /* Torch files (vlm_torch_open) only: contiguous copies of strided views (and of tensors
   * misaligned in the file), one block freed by vlm_st_close; entries whose data lies in
   * [owned, owned + owned_size) point there, all others into the mapping. NULL/0 otherwise. */
  void *owned;
  size_t owned_size;
} vlm_safetensors;

#define VLM_ST_MAX_HEADER (100u * 1024u * 1024u)
/* Map and validate the whole header; every error names the file and the problem. */
vlm_status vlm_st_open(vlm_safetensors *st, const char *path);
void vlm_st_close(vlm_safetensors *st);
const vlm_st_entry *vlm_st_find(const vlm_safetensors *st, const char *name);
const char *vlm_st_meta(const vlm_safetensors *st, const char *key);
/* Convert an entry (F32/F16/BF16/F64) into n floats; errors if numel != n or dtype not float. */
vlm_status vlm_st_read_f32(const vlm_safetensors *st, const vlm_st_entry *e, float *dst, int64_t n);
/* Entry as a CPU tensor view over the mapping (read-only data). */
vlm_tensor vlm_st_tensor(const vlm_st_entry *e);

typedef struct vlm_st_writer vlm_st_writer;
vlm_st_writer *vlm_st_writer_new(void);
/* Data is not copied: it must stay valid until save. Names must be unique. */
vlm_status vlm_st_writer_add(vlm_st_writer *w, const char *name, vlm_dtype dt, int ndim,
                             const int64_t *shape, const void *data);
vlm_status vlm_st_writer_add_tensor(vlm_st_writer *w, const char *name, const vlm_tensor *t);
vlm_status vlm_st_writer_meta(vlm_st_writer *w, const char *key, const char *value);
/* Write to a temporary file beside path, fsync, rename into place. */
vlm_status vlm_st_writer_save(vlm_st_writer *w, const char *path);
void vlm_st_writer_free(vlm_st_writer *w);

/* Atomic whole-file write used by every writer in vlm: tmp file + fsync + rename. */
vlm_status vlm_write_file_atomic(const char *path, const void *data, size_t n);
/* Open a temporary file beside path for streaming writes; commit renames it into
 * place (after fsync), abort removes it. A symbolic link is written through (the file
 * it points to is replaced); a character device or FIFO is written directly (tmp_path
 * NULL); a directory, block device or socket is refused. */
typedef struct { FILE *f; char *path; char *tmp_path; int pending; } vlm_atomic_file;
vlm_status vlm_atomic_open(vlm_atomic_file *af, const char *path);
vlm_status vlm_atomic_commit(vlm_atomic_file *af);
void vlm_atomic_abort(vlm_atomic_file *af);
/* Open and write n bytes (not yet committed); on failure nothing is left open. */
vlm_status vlm_atomic_stage(vlm_atomic_file *af, const char *path, const void *data, size_t n);
/* Files that belong together (a config and its weights, vocab.json and merges.txt): each is
 * flushed, synced and closed first, and only when all of them are whole on disk are they
 * renamed into place, one after the other; when any fails before that, all are removed and
 * every target keeps its old content. Every af is closed on return. */
vlm_status vlm_atomic_commit_all(vlm_atomic_file *af, int n);
/* vlm_st_writer_save up to the rename: the file is written into *staged (a temporary beside
 * path) for the caller to commit (vlm_atomic_commit, or with others vlm_atomic_commit_all) or
 * abort. On failure nothing is left open. */
vlm_status vlm_st_writer_stage(vlm_st_writer *w, const char *path, vlm_atomic_file *staged);
/* The temporary files of the atomic writes open now are listed (`pending`: a slot in a fixed
 * registry) until commit or abort. vlm_atomic_remove_pending unlinks them and is
 * async-signal-safe (for a program's own handlers); vlm_atomic_cleanup_on_signals installs
 * handlers for SIGINT, SIGTERM and SIGHUP that do so, then restore the default action and
 * raise the signal again (exit status 128 + sig). A signal found ignored or handled is left
 * as it is. For programs (the vlm command): the library never installs handlers. */
void vlm_atomic_remove_pending(void);
void vlm_atomic_cleanup_on_signals(void);

/* ------------------------------------------------------------------ torch files */
/* Open PATH (torch.save's zip archive, PyTorch >= 1.6, or a torch.jit.save TorchScript archive) and
 * list every tensor reachable from ARCHIVE/data.pkl's root object, named by its dotted path: dict keys
 * (str or int keys), list/tuple indices and object attributes (BUILD state, TorchScript module
 * attributes) joined by '.', e.g. "state_dict.module.visual.conv1.weight" or "visual.conv1.weight".
 * The result is a vlm_safetensors, so vlm_st_find / vlm_st_read_f32 / vlm_st_tensor work on it: entries
 * sorted by name, data pointing into the read-only mapping (contiguous tensors) or into owned
 * contiguous copies (strided views), freed by vlm_st_close. Metadata (vlm_st_meta): "format" ->
 * "torch" or "torchscript". Non-tensor leaves are ignored. Nothing is ever executed.
 * Details: an entry's end - begin is its byte size (begin is its offset in the file for data in the
 * mapping, 0 for a copy); data, st->data and data_size are as for safetensors with the whole file
 * as the data section. A tensor saved alone (torch.save(t)) is named "". Two names for one tensor
 * (tied weights) give two entries over the same bytes. Refused with a message naming the file:
 * tensors vlm cannot hold (complex, quantized, sparse, meta, nested, more than 8 dims), compressed
 * or encrypted records that must be read, CRC-32 mismatches of data.pkl and of every storage a
 * tensor uses, big-endian archives and the legacy pre-1.6 format (the message says how to re-save). */
vlm_status vlm_torch_open(vlm_safetensors *st, const char *path);
/* 1 when the file starts like a zip archive ("PK\3\4"); 0 otherwise or when unreadable. */
int vlm_torch_sniff(const char *path);
/* Whether a torch file is a TorchScript archive, from its zip directory alone (no pickle is run,
 * no storage read: cheap on a large file). Errors as vlm_torch_open's for the archive itself. */
vlm_status vlm_torch_kind(const char *path, int *torchscript);
/* Keep only entries whose name starts with prefix, with the prefix removed; re-sorted. An entry
 * whose name is the prefix itself is dropped; no entry matching leaves none (VLM_OK). */
vlm_status vlm_st_keep_prefix(vlm_safetensors *st, const char *prefix);
/* Save the writer's tensors as torch.save(collections.OrderedDict(name -> tensor)) does (zip archive,
 * pickle protocol 2, ARCHIVE/data.pkl + ARCHIVE/data/<i> + ARCHIVE/version, archive name = the file
 * name's stem), to a temp file renamed into place like vlm_st_writer_save; torch.load reads it and
 * open_clip's load_state_dict accepts it. Entries keep the order they were added in; metadata is
 * not written (torch has no place for it); U16/U32/U64 tensors are refused (no torch storage type). */
vlm_status vlm_st_writer_save_torch(vlm_st_writer *w, const char *path);
/* The same, written into *staged and not yet renamed into place (as vlm_st_writer_stage). */
vlm_status vlm_st_writer_stage_torch(vlm_st_writer *w, const char *path, vlm_atomic_file *staged);

/* Internals of the torch files, shared by core/crc32.c, zip_read.c, zip_write.c, pickle.c,
 * torch_read.c, torch_write.c and their tests; not for the layers above core. */
uint32_t vlm_crc32(uint32_t crc, const void *data, size_t n); /* CRC-32 (zip, IEEE); start with 0 */

typedef struct {
  char *name;
  uint64_t header;      /* offset of the local header */
  uint64_t offset;      /* offset of the data in the file */
  uint64_t size;        /* stored (compressed) size; the data lies in [offset, offset + size) */
  uint64_t usize;       /* uncompressed size */
  uint32_t crc;
  int method;           /* 0: stored */
  int flags;
} vlm_zip_entry;
typedef struct {
  const char *path;     /* for messages (not owned) */
  const uint8_t *base;  /* the whole file (not owned) */
  uint64_t size;
  vlm_zip_entry *entries;   /* central directory order */
  int *sorted;              /* entry indices sorted by name */
  int n;
} vlm_zip;
/* Parse and check the central directory of the zip archive in base[0..size): every entry's data
 * lies in the file before the central directory, no two entries overlap, names are unique, not
 * empty and safe (no NUL, backslash, leading '/' or ".." part). */
vlm_status vlm_zip_open(vlm_zip *z, const char *path, const uint8_t *base, uint64_t size);
void vlm_zip_close(vlm_zip *z);
const vlm_zip_entry *vlm_zip_find(const vlm_zip *z, const char *name);
/* The entry's bytes for reading: refuses compressed or encrypted entries and checks the CRC-32. */
vlm_status vlm_zip_data(const vlm_zip *z, const vlm_zip_entry *e, const uint8_t **data);

/* Zip writer: stored entries, data aligned to 64 bytes, zip64 records when a size, an offset or
 * the entry count needs them (or always with force_zip64). Errors name path. */
typedef struct {
  FILE *f;
  const char *path;
  uint64_t pos;
  struct vlm_zip_went *e;
  int n, cap;
  int force_zip64;
} vlm_zip_writer;
void vlm_zip_writer_init(vlm_zip_writer *zw, FILE *f, const char *path);
/* n bytes at data on device dev (CPU or CUDA). */
vlm_status vlm_zip_writer_add(vlm_zip_writer *zw, const char *name, const void *data, uint64_t n,
                              vlm_device dev);
vlm_status vlm_zip_writer_finish(vlm_zip_writer *zw);   /* the central directory and end records */
void vlm_zip_writer_free(vlm_zip_writer *zw);

/* Pickle values (core/pickle.c). Strings and bytes point into the pickle (not NUL-terminated). */
typedef enum {
  VLM_PK_NONE, VLM_PK_BOOL, VLM_PK_INT, VLM_PK_BIGINT, VLM_PK_FLOAT, VLM_PK_STR, VLM_PK_BYTES,
  VLM_PK_TUPLE, VLM_PK_LIST, VLM_PK_DICT, VLM_PK_SET, VLM_PK_GLOBAL, VLM_PK_OBJ, VLM_PK_EXT
} vlm_pk_kind;
typedef struct vlm_pk vlm_pk;
struct vlm_pk {
  vlm_pk_kind kind;
  int visiting;               /* for walks over the value graph (cycles) */
  int64_t i;                  /* BOOL, INT */
  double f;                   /* FLOAT */
  const char *s, *s2;         /* STR, BYTES: s; GLOBAL: module s, name s2 */
  size_t len, len2;
  vlm_pk **items;             /* TUPLE, LIST, SET items; items APPENDed to an OBJ */
  size_t n, cap;
  vlm_pk **kv;                /* DICT: key, value pairs (2 * nkv pointers); items set on an OBJ */
  size_t nkv, capkv;
  vlm_pk *func, *args, *state;  /* OBJ: made by REDUCE/NEWOBJ/INST/OBJ; state from BUILD */
  void *ext;                  /* EXT: what a hook made */
};
typedef struct vlm_pickle vlm_pickle;
typedef struct {
  void *ctx;
  /* BINPERSID / PERSID: the value of a persistent id (required: no hook, no persistent ids). */
  vlm_status (*persistent_load)(void *ctx, vlm_pickle *p, vlm_pk *pid, vlm_pk **out);
  /* REDUCE / NEWOBJ: callable(*args); *out = NULL leaves a plain OBJ. Optional. */
  vlm_status (*reduce)(void *ctx, vlm_pickle *p, vlm_pk *callable, vlm_pk *args, vlm_pk **out);
} vlm_pickle_hooks;
/* Run the pickle in data[0..n) (protocols 0-5; nothing is imported or called: globals are names,
 * calls are OBJ values unless a hook makes them something else) into *root. what names the
 * pickle in messages ("model.pt: archive/data.pkl"). *out is set even on failure (free it). */
vlm_status vlm_pickle_load(vlm_pickle **out, vlm_pk **root, const uint8_t *data, size_t n,
                           const char *what, const vlm_pickle_hooks *hooks);
vlm_pk *vlm_pickle_new(vlm_pickle *p, vlm_pk_kind kind);   /* zeroed; NULL when out of memory */
void *vlm_pickle_alloc(vlm_pickle *p, size_t n);           /* zeroed, freed with p */
const char *vlm_pickle_what(const vlm_pickle *p);
void vlm_pickle_free(vlm_pickle *p);
int vlm_pk_is_str(const vlm_pk *v, const char *s);          /* a STR equal to s */
int vlm_pk_is_global(const vlm_pk *v, const char *module, const char *name);

/* The safetensors writer's entries for other formats (core/torch_write.c). */
typedef struct {
  const char *name;
  vlm_dtype dtype;
  vlm_device device;
  int ndim;
  const int64_t *shape;
  const void *data;
  uint64_t nbytes;
} vlm_st_went;
/* VLM_OK, or the writer's first failure (its message set, prefixed with path). */
vlm_status vlm_st__writer_check(const vlm_st_writer *w, const char *path);
int vlm_st__writer_count(const vlm_st_writer *w);
void vlm_st__writer_entry(const vlm_st_writer *w, int i, vlm_st_went *out);   /* in the order added */

/* ------------------------------------------------------------------ devices */
int vlm_cuda_available(void);              /* a usable GPU is present (0 in CPU-only builds) */
/* Use GPU index % (the visible GPUs) in this process, before any other CUDA call (ranks on one
 * node: index = the node-local rank). Returns the device chosen, or -1 (none; nothing changed). */
int vlm_cuda_select(int index);
const char *vlm_cuda_describe(void);       /* "NVIDIA H100 ... (sm_90)" or why none */
void *vlm_device_alloc(vlm_device dev, size_t bytes);   /* zeroed; NULL on failure */
void vlm_device_free(vlm_device dev, void *p);
void vlm_memcpy(void *dst, vlm_device ddev, const void *src, vlm_device sdev, size_t bytes);
/* Page-lock a host buffer that is uploaded often (a training batch) when a GPU is
 * usable: 1 when pinned (unpin before freeing it), 0 otherwise (nothing to undo). */
int vlm_host_pin(void *p, size_t bytes);
void vlm_host_unpin(void *p);
/* Give the whole pages inside [p, p + bytes) of host memory back to the system
 * (madvise MADV_DONTNEED). A file's read-only mapping reads them from the file
 * again when touched; anonymous memory (an arena) reads them as ZERO afterwards,
 * so release only what nothing will read again. Partial pages at either end stay. */
void vlm_host_release(const void *p, size_t bytes);

#ifdef __cplusplus
}
#endif
#endif
