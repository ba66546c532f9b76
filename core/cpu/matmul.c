/* Fast CPU matmul through oneDNN (Debian's libdnnl 2.6, OpenMP runtime).
 *
 * Forward GEMMs and all bf16 GEMMs are oneDNN matmul primitives: src [M,K] @
 * weights [K,N] -> dst [M,N] (row-major, ldc), with transposes expressed as
 * strides in the memory descriptors (no copies), the bias through the bias
 * descriptor and the bf16 backward's "+=" through a sum post-op (scale 1), so
 * gradients accumulate in place. Primitives cost ~ms to create; they are
 * cached, keyed by shape, strides, dtype, bias and accumulation, in a
 * mutex-protected table that is never evicted (the model runs a fixed set of
 * shapes). The fp32 backward GEMMs run through dnnl_sgemm with beta = 1 (same
 * in-place accumulation): in 2.6 the f32 matmul primitive runs some backward
 * layouts at half speed, dnnl_sgemm runs them all at full speed (measured;
 * docs/PERFORMANCE.md).
 *
 * bf16: oneDNN 2.6's fpmath_mode(bf16) on f32 tensors still runs the f32
 * kernel here (brg:avx512_core, f32 speed; measured, see docs/PERFORMANCE.md),
 * so in bf16 precision f32 inputs are rounded to bf16 (round to nearest even,
 * exactly vlm_f32_to_bf16) into per-thread scratch buffers that grow to the
 * largest size seen and are reused, and a bf16 x bf16 -> f32 matmul runs (AMX
 * or AVX512-BF16 kernels). BF16 tensors go straight in. In f32 precision a
 * BF16 operand beside an F32 one is widened to f32 (exact), so the result is
 * what the reference computes.
 *
 * Primitives are also keyed by the caller's OpenMP thread count: oneDNN fixes a primitive's
 * thread count when it is created, so one made on a 2-thread caller would start 2 workers for
 * a caller limited to 1 (the C API's options.threads on another thread).
 *
 * Thread safety: the engine is created once; each calling thread has its own
 * stream, its own conversion buffers and its own scratchpad (primitives are
 * created with a user-managed scratchpad, so one primitive can run from
 * several threads at once). Called inside an OpenMP parallel region, oneDNN
 * runs the GEMM on the calling thread alone. A thread's buffers and stream
 * are freed when it exits (a pthread key destructor), so an application's
 * short-lived threads leave nothing behind. */
#define _POSIX_C_SOURCE 200809L
#include "core/cpu/cpu.h"

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define DNNL_OK(call)                                                                   \
  do {                                                                                  \
    dnnl_status_t st_ = (call);                                                         \
    VLM_CHECK(st_ == dnnl_success, "matmul: oneDNN call %s failed with status %s", #call, \
              dnnl_status2str(st_));                                                    \
  } while (0)

/* ------------------------------------------------------------------ engine, per-thread state */
static dnnl_engine_t g_engine;
static pthread_once_t g_engine_once = PTHREAD_ONCE_INIT;
static void engine_init(void) { DNNL_OK(dnnl_engine_create(&g_engine, dnnl_cpu, 0)); }
static dnnl_engine_t engine(void) {
  pthread_once(&g_engine_once, engine_init);
  return g_engine;
}

typedef struct {
  void *p;
  size_t cap;
} scratch_buf;

/* One calling thread's state; each part counted in vlm_scratch_live while it exists. */
typedef struct {
  dnnl_stream_t stream;
  scratch_buf scratchpad;   /* oneDNN's scratchpad */
  scratch_buf conv[3];      /* converted operands: dout/a, b, a */
  scratch_buf out;          /* f32 result before a bf16 store (unfused epilogue) */
  scratch_buf wide[2];      /* bf16 operands widened to f32 (no bf16 GEMM on this CPU) */
} thread_state;
static _Thread_local thread_state tl;

static void buf_free(scratch_buf *b) {
  if (b->p) vlm_scratch_count(-1);
  free(b->p);
  b->p = NULL;
  b->cap = 0;
}

/* The key's destructor: the thread is exiting. */
static void thread_exit(void *p) {
  thread_state *t = p;
  if (t->stream) {
    DNNL_OK(dnnl_stream_destroy(t->stream));
    t->stream = NULL;
    vlm_scratch_count(-1);
  }
  buf_free(&t->scratchpad);
  for (int i = 0; i < 3; i++) buf_free(&t->conv[i]);
  buf_free(&t->out);
  for (int i = 0; i < 2; i++) buf_free(&t->wide[i]);
}

static pthread_key_t g_tl_key;
static pthread_once_t g_tl_key_once = PTHREAD_ONCE_INIT;
static void tl_key_init(void) {
  VLM_CHECK(pthread_key_create(&g_tl_key, thread_exit) == 0, "matmul: pthread_key_create failed");
}

/* Called before this thread acquires a buffer or a stream: they are freed at its exit. */
static void register_thread(void) {
  pthread_once(&g_tl_key_once, tl_key_init);
  if (!pthread_getspecific(g_tl_key))
    VLM_CHECK(pthread_setspecific(g_tl_key, &tl) == 0, "matmul: pthread_setspecific failed");
}

static dnnl_stream_t stream(void) {
  if (!tl.stream) {
    register_thread();
    DNNL_OK(dnnl_stream_create(&tl.stream, engine(), dnnl_stream_default_flags));
    vlm_scratch_count(1);
  }
  return tl.stream;
}

/* A 64-byte aligned buffer of at least `bytes`, grown (never shrunk) as needed. */
static void *scratch(scratch_buf *b, size_t bytes) {
  if (bytes > b->cap) {
    size_t cap = bytes + bytes / 4;
    cap = (cap + 63) & ~(size_t)63;
    register_thread();
    if (!b->p) vlm_scratch_count(1);
    free(b->p);
    b->p = aligned_alloc(64, cap);
    VLM_CHECK(b->p, "matmul: out of memory for a %zu-byte scratch buffer", cap);
    b->cap = cap;
  }
  return b->p;
}

/* ------------------------------------------------------------------ dtype conversion */
/* Same rounding as vlm_f32_to_bf16 (nearest even, NaN stays NaN), vectorizable. */
static void f32_to_bf16(uint16_t *dst, const float *src, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= (1 << 16))
  for (int64_t i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, &src[i], 4);
    uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    uint32_t qnan = (u >> 16) | 0x40u;
    dst[i] = (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? qnan : rounded);
  }
}

static void bf16_to_f32(float *dst, const uint16_t *src, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= (1 << 16))
  for (int64_t i = 0; i < n; i++) {
    uint32_t u = (uint32_t)src[i] << 16;
    memcpy(&dst[i], &u, 4);
  }
}

/* The data of t as dtype want (F32 or BF16): t's own memory when it already is,
 * else a converted copy in this thread's conversion buffer `slot`. */
static const void *operand(const vlm_tensor *t, vlm_dtype want, int slot) {
  if (t->dtype == want) return t->data;
  int64_t n = vlm_numel(t);
  void *dst = scratch(&tl.conv[slot], (size_t)n * vlm_dtype_size(want));
  if (want == VLM_BF16) f32_to_bf16(dst, t->data, n);
  else bf16_to_f32(dst, t->data, n);
  return dst;
}

/* ------------------------------------------------------------------ primitive cache */
typedef struct {
  int64_t M, N, K;
  int64_t as0, as1;   /* strides of src [M,K] */
  int64_t bs0, bs1;   /* strides of weights [K,N] */
  int64_t ldc;        /* dst row stride */
  int32_t dt;         /* dnnl_data_type_t of src and weights; dst is f32 */
  int32_t bias;       /* bias [N] f32 */
  int32_t accumulate; /* dst += instead of dst = */
  int32_t act;        /* fused activation post-op: 0 none, 1 GELU (erf), 2 QuickGELU */
  int32_t residual;   /* fused dst += residual [M,N] (row stride ldc) post-op */
  int32_t dst_dt;     /* dnnl_data_type_t of dst: f32, or bf16 (forward, inference) */
  int32_t packed;     /* weights in oneDNN's own (blocked) layout: a packed copy */
  int32_t nthr;       /* OpenMP threads the caller allows: a primitive keeps the count it was made
                       * with and starts that many workers, whichever thread runs it */
} mm_key;

typedef struct {
  mm_key key;
  dnnl_primitive_t prim;
  dnnl_memory_desc_t a_md, b_md, c_md, bias_md, sp_md, res_md;
  size_t sp_size;
  int cached;
} mm_entry;

#define MM_CACHE_MAX 4096
static pthread_mutex_t g_cache_lock = PTHREAD_MUTEX_INITIALIZER;
static mm_entry **g_cache;
static int g_cache_n, g_cache_cap;
static int g_cache_full_warned;

static mm_entry *cache_find(const mm_key *k) {
  for (int i = 0; i < g_cache_n; i++)
    if (!memcmp(&g_cache[i]->key, k, sizeof *k)) return g_cache[i];
  return NULL;
}

static mm_entry *entry_create(const mm_key *k) {
  mm_entry *e = calloc(1, sizeof *e);
  VLM_CHECK(e, "matmul: out of memory");
  e->key = *k;
  dnnl_data_type_t dt = (dnnl_data_type_t)k->dt;
  dnnl_dims_t ad = {k->M, k->K}, as = {k->as0, k->as1};
  dnnl_dims_t bd = {k->K, k->N}, bs = {k->bs0, k->bs1};
  dnnl_dims_t cd = {k->M, k->N}, cs = {k->ldc, 1};
  dnnl_dims_t biasd = {1, k->N}, biass = {k->N, 1};
  DNNL_OK(dnnl_memory_desc_init_by_strides(&e->a_md, 2, ad, dt, as));
  if (k->packed) DNNL_OK(dnnl_memory_desc_init_by_tag(&e->b_md, 2, bd, dt, dnnl_format_tag_any));
  else DNNL_OK(dnnl_memory_desc_init_by_strides(&e->b_md, 2, bd, dt, bs));
  DNNL_OK(dnnl_memory_desc_init_by_strides(&e->c_md, 2, cd, (dnnl_data_type_t)k->dst_dt, cs));
  if (k->bias) DNNL_OK(dnnl_memory_desc_init_by_strides(&e->bias_md, 2, biasd, dnnl_f32, biass));
  dnnl_matmul_desc_t desc;
  DNNL_OK(dnnl_matmul_desc_init(&desc, &e->a_md, &e->b_md, k->bias ? &e->bias_md : NULL, &e->c_md));
  dnnl_primitive_attr_t attr;
  DNNL_OK(dnnl_primitive_attr_create(&attr));
  DNNL_OK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
  if (k->accumulate || k->act || k->residual) {
    dnnl_post_ops_t po;
    DNNL_OK(dnnl_post_ops_create(&po));
    if (k->accumulate) DNNL_OK(dnnl_post_ops_append_sum(po, 1.0f));
    /* GELU: the erf form; QuickGELU x * sigmoid(1.702 x) is oneDNN's swish with alpha 1.702. */
    if (k->act == 1) DNNL_OK(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_gelu_erf, 0.0f, 0.0f));
    if (k->act == 2) DNNL_OK(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_swish, 1.702f, 0.0f));
    if (k->residual) {
      dnnl_dims_t rs = {k->N, 1};
      DNNL_OK(dnnl_memory_desc_init_by_strides(&e->res_md, 2, cd, dnnl_f32, rs));
      DNNL_OK(dnnl_post_ops_append_binary(po, dnnl_binary_add, &e->res_md));
    }
    DNNL_OK(dnnl_primitive_attr_set_post_ops(attr, po));
    DNNL_OK(dnnl_post_ops_destroy(po));
  }
  dnnl_primitive_desc_t pd;
  dnnl_status_t st = dnnl_primitive_desc_create(&pd, &desc, attr, engine(), NULL);
  DNNL_OK(dnnl_primitive_attr_destroy(attr));
  if (st == dnnl_unimplemented && (k->act || k->residual || k->dst_dt != dnnl_f32 || k->dt == dnnl_bf16)) {
    /* e.g. an f32 GEMM with a bf16 dst, or any bf16 GEMM on a CPU without AVX-512 (oneDNN 2.6
     * has bf16 kernels for AVX-512 only): gemm_ex runs it in steps instead. */
    vlm_log(VLM_LOG_DEBUG, "matmul: no fused primitive for M=%lld N=%lld K=%lld; running the epilogue apart",
            (long long)k->M, (long long)k->N, (long long)k->K);
    return e;
  }
  DNNL_OK(st);
  if (k->packed) e->b_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
  const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  if (sp) {
    e->sp_md = *sp;
    e->sp_size = dnnl_memory_desc_get_size(sp);
  }
  const char *impl = "?";
  DNNL_OK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
  vlm_log(VLM_LOG_DEBUG, "matmul: new primitive M=%lld N=%lld K=%lld %s%s%s%s%s%s%s: %s", (long long)k->M,
          (long long)k->N, (long long)k->K, k->dt == dnnl_bf16 ? "bf16" : "f32", k->bias ? " +bias" : "",
          k->accumulate ? " +=" : "", k->act == 1 ? " gelu" : k->act == 2 ? " quickgelu" : "",
          k->residual ? " +residual" : "", k->dst_dt == dnnl_bf16 ? " ->bf16" : "", k->packed ? " packed" : "",
          impl);
  DNNL_OK(dnnl_primitive_create(&e->prim, pd));
  DNNL_OK(dnnl_primitive_desc_destroy(pd));
  return e;
}

static void entry_destroy(mm_entry *e) {
  if (e->prim) DNNL_OK(dnnl_primitive_destroy(e->prim));
  free(e);
}

/* The cached primitive for k, created on first use. Creation runs outside the
 * lock; when two threads race, the first insert wins and the other is dropped. */
static mm_entry *cache_get(const mm_key *k) {
  pthread_mutex_lock(&g_cache_lock);
  mm_entry *e = cache_find(k);
  pthread_mutex_unlock(&g_cache_lock);
  if (e) return e;
  mm_entry *fresh = entry_create(k);
  pthread_mutex_lock(&g_cache_lock);
  e = cache_find(k);
  if (!e && g_cache_n < MM_CACHE_MAX) {
    if (g_cache_n == g_cache_cap) {
      int cap = g_cache_cap ? 2 * g_cache_cap : 64;
      mm_entry **grown = realloc(g_cache, sizeof *grown * (size_t)cap);
      VLM_CHECK(grown, "matmul: out of memory");
      g_cache = grown;
      g_cache_cap = cap;
    }
    fresh->cached = 1;
    g_cache[g_cache_n++] = fresh;
    e = fresh;
  } else if (!e && !g_cache_full_warned) {
    g_cache_full_warned = 1;
    vlm_log(VLM_LOG_WARN, "matmul: %d GEMM shapes cached; further ones are created per call (slow)",
            MM_CACHE_MAX);
  }
  pthread_mutex_unlock(&g_cache_lock);
  if (e && e != fresh) entry_destroy(fresh);
  return e ? e : fresh;  /* fresh and uncached when the table is full */
}

/* ------------------------------------------------------------------ one GEMM */
typedef struct {
  const void *p;
  int64_t s0, s1;  /* element strides of the logical [rows, cols] matrix */
} operand_view;

/* A view as BLAS sees it: 'N' with leading dim ld (row-major [rows, cols]) or
 * 'T' (stored [cols, rows]). Size-1 dims accept either. */
static void blas_layout(operand_view v, int64_t rows, int64_t cols, char *trans, int64_t *ld) {
  if (v.s1 == 1 && (rows <= 1 || v.s0 >= cols)) {
    *trans = 'N';
    *ld = rows <= 1 ? (cols > 1 ? cols : 1) : v.s0;
  } else {
    VLM_CHECK(v.s0 == 1 && (cols <= 1 || v.s1 >= rows), "matmul: strides (%lld, %lld) are not a BLAS layout",
              (long long)v.s0, (long long)v.s1);
    *trans = 'T';
    *ld = cols <= 1 ? (rows > 1 ? rows : 1) : v.s1;
  }
}

/* ------------------------------------------------------------------ packed weights
 * A weight matrix registered with vlm_cpu_matmul_pack is reordered, on first
 * use by a forward GEMM, into the blocked layout that GEMM's primitive asks
 * for (format_tag_any), and the copy is used from then on: oneDNN then skips
 * re-laying out B on every call, worth 10-30% for bf16 at the ViT's shapes
 * (docs/PERFORMANCE.md). The layout can depend on M, so each weight keeps up
 * to two copies; a third layout falls back to the plain matrix. Entries are
 * keyed by the plain data pointer and layout, and dropped by
 * vlm_cpu_matmul_unpack_range (vlm_arena_free calls it). */
typedef struct {
  dnnl_memory_desc_t md;
  void *data;
} packed_copy;

typedef struct {
  const void *p;
  int64_t K, N, bs0, bs1;
  int32_t dt;
  packed_copy copies[2];
  int n;
} packed_weight;

static pthread_mutex_t g_pack_lock = PTHREAD_MUTEX_INITIALIZER;
static packed_weight *g_pack;
static int g_pack_n, g_pack_cap;

static packed_weight *pack_find(const void *p, int64_t K, int64_t N, int64_t bs0, int64_t bs1, int32_t dt) {
  for (int i = 0; i < g_pack_n; i++) {
    packed_weight *w = &g_pack[i];
    if (w->p == p && w->K == K && w->N == N && w->bs0 == bs0 && w->bs1 == bs1 && w->dt == dt) return w;
  }
  return NULL;
}

void vlm_cpu_matmul_pack(const void *p, int64_t K, int64_t N, int64_t bs0, int64_t bs1, vlm_dtype dt) {
  int32_t ddt = dt == VLM_BF16 ? dnnl_bf16 : dnnl_f32;
  pthread_mutex_lock(&g_pack_lock);
  if (!pack_find(p, K, N, bs0, bs1, ddt)) {
    if (g_pack_n == g_pack_cap) {
      int cap = g_pack_cap ? 2 * g_pack_cap : 64;
      packed_weight *grown = realloc(g_pack, sizeof *grown * (size_t)cap);
      VLM_CHECK(grown, "matmul: out of memory");
      g_pack = grown;
      g_pack_cap = cap;
    }
    packed_weight *w = &g_pack[g_pack_n++];
    memset(w, 0, sizeof *w);
    w->p = p, w->K = K, w->N = N, w->bs0 = bs0, w->bs1 = bs1, w->dt = ddt;
  }
  pthread_mutex_unlock(&g_pack_lock);
}

void vlm_cpu_matmul_unpack_range(const void *p, size_t bytes) {
  const char *lo = p, *hi = lo + bytes;
  pthread_mutex_lock(&g_pack_lock);
  for (int i = 0; i < g_pack_n;) {
    const char *q = g_pack[i].p;
    if (q >= lo && q < hi) {
      for (int j = 0; j < g_pack[i].n; j++) free(g_pack[i].copies[j].data);
      g_pack[i] = g_pack[--g_pack_n];
    } else {
      i++;
    }
  }
  pthread_mutex_unlock(&g_pack_lock);
}

int vlm_cpu_matmul_packed_count(void) {
  pthread_mutex_lock(&g_pack_lock);
  int n = g_pack_n;
  pthread_mutex_unlock(&g_pack_lock);
  return n;
}

/* Is B (as the GEMM sees it) a registered weight? */
static int pack_registered(const operand_view *B, int64_t K, int64_t N, int32_t dt) {
  pthread_mutex_lock(&g_pack_lock);
  int found = g_pack_n > 0 && pack_find(B->p, K, N, B->s0, B->s1, dt) != NULL;
  pthread_mutex_unlock(&g_pack_lock);
  return found;
}

/* The packed copy of B in layout md, made on first use; NULL when the weight
 * already has two other layouts (or was unregistered meanwhile). */
static const void *pack_copy(const operand_view *B, int64_t K, int64_t N, int32_t dt, const dnnl_memory_desc_t *md) {
  const void *out = NULL;
  pthread_mutex_lock(&g_pack_lock);
  packed_weight *w = pack_find(B->p, K, N, B->s0, B->s1, dt);
  if (w) {
    for (int j = 0; j < w->n && !out; j++)
      if (dnnl_memory_desc_equal(&w->copies[j].md, md)) out = w->copies[j].data;
    if (!out && w->n < 2) {
      size_t bytes = dnnl_memory_desc_get_size(md);
      void *data = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
      VLM_CHECK(data, "matmul: out of memory for a packed weight (%zu bytes)", bytes);
      dnnl_memory_desc_t plain;
      dnnl_dims_t bd = {K, N}, bs = {B->s0, B->s1};
      DNNL_OK(dnnl_memory_desc_init_by_strides(&plain, 2, bd, (dnnl_data_type_t)dt, bs));
      dnnl_primitive_desc_t rpd;
      DNNL_OK(dnnl_reorder_primitive_desc_create(&rpd, &plain, engine(), md, engine(), NULL));
      dnnl_primitive_t r;
      DNNL_OK(dnnl_primitive_create(&r, rpd));
      dnnl_memory_t from, to;
      DNNL_OK(dnnl_memory_create(&from, &plain, engine(), (void *)B->p));
      DNNL_OK(dnnl_memory_create(&to, md, engine(), data));
      dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
      dnnl_stream_t s = stream();
      DNNL_OK(dnnl_primitive_execute(r, s, 2, ra));
      DNNL_OK(dnnl_stream_wait(s));
      DNNL_OK(dnnl_memory_destroy(from));
      DNNL_OK(dnnl_memory_destroy(to));
      DNNL_OK(dnnl_primitive_destroy(r));
      DNNL_OK(dnnl_primitive_desc_destroy(rpd));
      w->copies[w->n].md = *md;
      w->copies[w->n].data = data;
      w->n++;
      out = data;
    }
  }
  pthread_mutex_unlock(&g_pack_lock);
  return out;
}

/* Whether oneDNN runs a bf16 x bf16 -> f32 matmul on this CPU: AVX-512 (AMX, AVX512-BF16, or
 * emulated on AVX512-core) in oneDNN 2.6, not AVX2. Asked once, with a small primitive. */
static int g_bf16_gemm = -1;
static void bf16_probe(void) {
  dnnl_memory_desc_t a, b, c;
  dnnl_dims_t d = {16, 16}, st = {16, 1};
  DNNL_OK(dnnl_memory_desc_init_by_strides(&a, 2, d, dnnl_bf16, st));
  DNNL_OK(dnnl_memory_desc_init_by_strides(&b, 2, d, dnnl_bf16, st));
  DNNL_OK(dnnl_memory_desc_init_by_strides(&c, 2, d, dnnl_f32, st));
  dnnl_matmul_desc_t desc;
  DNNL_OK(dnnl_matmul_desc_init(&desc, &a, &b, NULL, &c));
  dnnl_primitive_desc_t pd;
  dnnl_status_t r = dnnl_primitive_desc_create(&pd, &desc, NULL, engine(), NULL);
  if (r == dnnl_success) DNNL_OK(dnnl_primitive_desc_destroy(pd));
  else VLM_CHECK(r == dnnl_unimplemented, "matmul: oneDNN bf16 probe failed with status %s", dnnl_status2str(r));
  g_bf16_gemm = r == dnnl_success;
  if (!g_bf16_gemm)
    vlm_log(VLM_LOG_DEBUG, "matmul: oneDNN has no bf16 GEMM on this CPU; bf16 operands are widened to f32 (exact), "
            "the products run in f32");
}
static pthread_once_t g_bf16_once = PTHREAD_ONCE_INIT;
int vlm_cpu_bf16_gemm_native(void) {
  pthread_once(&g_bf16_once, bf16_probe);
  return g_bf16_gemm;
}

/* A bf16 view [rows, cols] widened to a dense f32 copy in buf (exact), in the view's own order:
 * row-major stays row-major, a transposed view (s0 = 1) becomes a dense column-major one, so
 * both sides are read and written in sequence. */
static operand_view widen(operand_view v, int64_t rows, int64_t cols, scratch_buf *buf) {
  float *dst = scratch(buf, (size_t)(rows * cols) * sizeof(float) + 4);
  const uint16_t *src = v.p;
  const int by_rows = v.s1 == 1 || (v.s0 != 1 && v.s0 <= v.s1);
  const int64_t outer = by_rows ? rows : cols, inner = by_rows ? cols : rows;
  const int64_t so = by_rows ? v.s0 : v.s1, si = by_rows ? v.s1 : v.s0;
#pragma omp parallel for schedule(static) if (rows * cols >= (1 << 16))
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      uint32_t u = (uint32_t)src[o * so + i * si] << 16;
      memcpy(&dst[o * inner + i], &u, 4);
    }
  return by_rows ? (operand_view){dst, cols, 1} : (operand_view){dst, 1, rows};
}

/* Fused forward epilogue (inference): out = act(A @ B + bias) + residual, stored as dst_bf16 ? bf16 : f32. */
typedef struct {
  int act;                 /* 0 none, 1 GELU, 2 QuickGELU */
  const float *residual;   /* [M,N] with row stride N, or NULL */
  int dst_bf16;
} epilogue;

/* ------------------------------------------------------------------ small products: one thread
 * A product of fewer than SERIAL_MNK multiply-adds (~8 MFLOP, ~100 us on one core here) runs on
 * the calling thread alone: split over two threads it gained nothing in a loop of calls (68x64x64:
 * 12 us either way; 128^3: 49-54 us on one thread, 44-48 on two), and in a training step each such
 * split is one more OpenMP region whose threads must all be on a core at once. The tiny CLIP's
 * step had 49 such regions and two trainings side by side on 2 cores took 83 s for 1000 steps
 * (1.9-2.3 s alone); run serially, 4.7-4.8 s (docs/PERFORMANCE.md). The choice depends on the
 * shape only, so a run's results stay the same from run to run. */
#define SERIAL_MNK (1 << 22)
static int serial_begin(int64_t M, int64_t N, int64_t K) {
  if (omp_in_parallel() || (double)M * (double)N * (double)K >= SERIAL_MNK) return 0;
  int nt = omp_get_max_threads();
  if (nt <= 1) return 0;
  omp_set_num_threads(1);
  return nt;
}
static void serial_end(int nt) {
  if (nt) omp_set_num_threads(nt);
}

/* gemm_run with small products on one thread (the key's nthr then says 1). */
static void gemm_run(int64_t M, int64_t N, int64_t K, vlm_dtype dt, operand_view A, operand_view B,
                     const float *bias, void *C, int64_t ldc, int accumulate, const epilogue *ep);
static void gemm_ex(int64_t M, int64_t N, int64_t K, vlm_dtype dt, operand_view A, operand_view B,
                    const float *bias, void *C, int64_t ldc, int accumulate, const epilogue *ep) {
  int nt = serial_begin(M, N, K);
  gemm_run(M, N, K, dt, A, B, bias, C, ldc, accumulate, ep);
  serial_end(nt);
}

/* C[M,N] (row stride ldc) = or += A[M,K] @ B[K,N] (+ bias[N]) (then the
 * epilogue); A and B of dtype dt.
 * fp32 accumulation (the backward GEMMs) goes through dnnl_sgemm with beta = 1:
 * oneDNN 2.6's f32 matmul primitive runs some of those layouts at half speed
 * (a row-major B with N = 3072: ~160 vs ~320 GFLOP/s here), dnnl_sgemm does not. */
static void gemm_run(int64_t M, int64_t N, int64_t K, vlm_dtype dt, operand_view A, operand_view B,
                     const float *bias, void *C, int64_t ldc, int accumulate, const epilogue *ep) {
  static const epilogue none = {0, NULL, 0};
  if (!ep) ep = &none;
  if (M == 0 || N == 0) return;
  if (ep->residual && (const void *)ep->residual == C && !ep->dst_bf16) {
    /* The residual is the output (in place). A binary post-op may read it after the GEMM has
     * stored into it (oneDNN's gemm:jit on AVX2 does), so: without an activation the product
     * is added to it (the sum post-op, made for that); with one, act(A @ B + bias) goes to
     * scratch first and is then added. */
    VLM_CHECK(!accumulate && ldc == N, "matmul: an in-place residual needs a dense, written output");
    if (!ep->act) {
      gemm_ex(M, N, K, dt, A, B, bias, C, ldc, 1, NULL);
      return;
    }
    float *tmp = scratch(&tl.out, (size_t)(M * N) * sizeof(float));
    epilogue f32ep = {ep->act, NULL, 0};
    gemm_ex(M, N, K, dt, A, B, bias, tmp, N, 0, &f32ep);
    float *Cf = C;
#pragma omp parallel for schedule(static) if (M * N >= (1 << 16))
    for (int64_t i = 0; i < M * N; i++) Cf[i] += tmp[i];
    return;
  }
  if (dt == VLM_F32 && accumulate && !bias) {
    if (K == 0) return; /* C += empty sum */
    char ta, tb;
    int64_t lda, ldb;
    blas_layout(A, M, K, &ta, &lda);
    blas_layout(B, K, N, &tb, &ldb);
    DNNL_OK(dnnl_sgemm(ta, tb, M, N, K, 1.0f, A.p, lda, B.p, ldb, 1.0f, C, ldc));
    return;
  }
  if (K == 0) {  /* empty sum: oneDNN is not asked about zero-sized dims */
    VLM_CHECK(!ep->act && !ep->residual && !ep->dst_bf16, "matmul: K = 0 with a fused epilogue");
    float *Cf = C;
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = 0; n < N; n++)
        Cf[m * ldc + n] = (accumulate ? Cf[m * ldc + n] : 0.0f) + (bias ? bias[n] : 0.0f);
    return;
  }
  mm_key k;
  memset(&k, 0, sizeof k);  /* padding too: keys are compared with memcmp */
  k.M = M, k.N = N, k.K = K;
  k.as0 = A.s0, k.as1 = A.s1, k.bs0 = B.s0, k.bs1 = B.s1, k.ldc = ldc;
  k.dt = dt == VLM_BF16 ? dnnl_bf16 : dnnl_f32;
  k.bias = bias != NULL;
  k.accumulate = accumulate != 0;
  k.act = ep->act;
  k.residual = ep->residual != NULL;
  k.dst_dt = ep->dst_bf16 ? dnnl_bf16 : dnnl_f32;
  k.nthr = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (dt == VLM_BF16 && !vlm_cpu_bf16_gemm_native()) {
    /* no bf16 kernels (AVX2): the same products from the operands widened to f32 (exact, as the
     * reference computes them), through the f32 path with the same epilogue */
    operand_view Aw = widen(A, M, K, &tl.wide[0]), Bw = widen(B, K, N, &tl.wide[1]);
    gemm_ex(M, N, K, VLM_F32, Aw, Bw, bias, C, ldc, accumulate, ep);
    return;
  }
  const void *weights = B.p;
  mm_entry *e = NULL;
  if (!accumulate && pack_registered(&B, K, N, k.dt)) {
    k.packed = 1;
    e = cache_get(&k);
    /* no primitive (oneDNN has no fused kernel for it): no layout to pack for */
    const void *pw = e->prim ? pack_copy(&B, K, N, k.dt, &e->b_md) : NULL;
    if (pw) {
      weights = pw;
    } else {
      if (!e->cached) entry_destroy(e);
      k.packed = 0;
      e = NULL;
    }
  }
  if (!e) e = cache_get(&k);
  if (!e->prim) {  /* oneDNN has no fused kernel for this combination: the same result in steps */
    if (!e->cached) entry_destroy(e);
    if (ep->dst_bf16) {
      float *tmp = scratch(&tl.out, (size_t)(M * N) * sizeof(float));
      epilogue f32ep = {ep->act, ep->residual, 0};
      gemm_ex(M, N, K, dt, A, B, bias, tmp, N, 0, &f32ep);
      for (int64_t m = 0; m < M; m++) f32_to_bf16((uint16_t *)C + m * ldc, tmp + m * N, N);
      return;
    }
    VLM_CHECK(ldc == N, "matmul: an unfused epilogue needs a dense output");
    gemm_ex(M, N, K, dt, A, B, bias, C, ldc, accumulate, NULL);
    int64_t shape[2] = {M, N};
    vlm_tensor t = vlm_tensor_make(C, VLM_F32, VLM_CPU, 2, shape);
    if (ep->act) vlm_cpu_act_forward(ep->act == 1 ? VLM_ACT_GELU : VLM_ACT_QUICK_GELU, &t, &t);
    if (ep->residual) {
      vlm_tensor r = vlm_tensor_make((void *)ep->residual, VLM_F32, VLM_CPU, 2, shape);
      vlm_cpu_add_forward(&t, &t, &r);
    }
    return;
  }

  dnnl_engine_t eng = engine();
  dnnl_memory_t mem[6];
  dnnl_exec_arg_t args[6];
  int n = 0;
#define ARG(idx, md, ptr)                                              \
  do {                                                                 \
    DNNL_OK(dnnl_memory_create(&mem[n], (md), eng, (void *)(ptr)));    \
    args[n].arg = (idx);                                               \
    args[n].memory = mem[n];                                           \
    n++;                                                               \
  } while (0)
  ARG(DNNL_ARG_SRC, &e->a_md, A.p);
  ARG(DNNL_ARG_WEIGHTS, &e->b_md, weights);
  ARG(DNNL_ARG_DST, &e->c_md, C);
  if (bias) ARG(DNNL_ARG_BIAS, &e->bias_md, bias);
  if (ep->residual) {
    int idx = (accumulate ? 1 : 0) + (ep->act ? 1 : 0);  /* the binary post-op's position in the chain */
    ARG(DNNL_ARG_ATTR_MULTIPLE_POST_OP(idx) | DNNL_ARG_SRC_1, &e->res_md, ep->residual);
  }
  if (e->sp_size) ARG(DNNL_ARG_SCRATCHPAD, &e->sp_md, scratch(&tl.scratchpad, e->sp_size));
#undef ARG
  dnnl_stream_t s = stream();
  DNNL_OK(dnnl_primitive_execute(e->prim, s, n, args));
  DNNL_OK(dnnl_stream_wait(s));
  for (int i = 0; i < n; i++) DNNL_OK(dnnl_memory_destroy(mem[i]));
  if (!e->cached) entry_destroy(e);
}

static void gemm(int64_t M, int64_t N, int64_t K, vlm_dtype dt, operand_view A, operand_view B,
                 const float *bias, float *C, int64_t ldc, int accumulate) {
  gemm_ex(M, N, K, dt, A, B, bias, C, ldc, accumulate, NULL);
}

/* ------------------------------------------------------------------ public fast kernels */
/* Rows of a [*,K] tensor: the product of its leading dims (also when K = 0). */
static int64_t lead_rows(const vlm_tensor *t) {
  int64_t r = 1;
  for (int i = 0; i + 1 < t->ndim; i++) r *= t->shape[i];
  return r;
}

static void mm_dims(const vlm_tensor *a, const vlm_tensor *b, int trans_a, int trans_b, int64_t *M,
                    int64_t *N, int64_t *K) {
  *M = trans_a ? a->shape[1] : lead_rows(a);
  *K = trans_a ? a->shape[0] : vlm_cols(a);
  *N = trans_b ? b->shape[0] : b->shape[1];
}

void vlm_cpu_matmul_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *b,
                            const vlm_tensor *bias, int trans_a, int trans_b, vlm_precision prec) {
  int64_t M, N, K;
  mm_dims(a, b, trans_a, trans_b, &M, &N, &K);
  vlm_dtype dt = (prec == VLM_PREC_BF16 || (a->dtype == VLM_BF16 && b->dtype == VLM_BF16)) ? VLM_BF16
                                                                                          : VLM_F32;
  /* 1-8 rows of fp32 (decoding a few sequences with a KV cache): memory-bound, register tiles (gemv.c) */
  if (dt == VLM_F32 && !trans_a && a->dtype == VLM_F32 && b->dtype == VLM_F32 &&
      vlm_cpu_gemv_forward(M, N, K, vlm_f32(a), vlm_f32(b), trans_b, bias ? vlm_f32(bias) : NULL, vlm_f32(out)))
    return;
  /* the same with bf16 weights in bf16 precision (decoding with `--precision bf16`) */
  if (dt == VLM_BF16 && !trans_a && b->dtype == VLM_BF16 && (a->dtype == VLM_F32 || a->dtype == VLM_BF16) &&
      vlm_is_contiguous(a) && vlm_is_contiguous(b) &&
      vlm_cpu_gemv_bf16_forward(M, N, K, a->data, a->dtype == VLM_BF16, b->data, trans_b,
                                bias ? vlm_f32(bias) : NULL, vlm_f32(out)))
    return;
  /* op(a) [M,K]: a stored [M,K] (strides K,1) or [K,M] (strides 1,M).
   * op(b) [K,N]: b stored [K,N] (strides N,1) or [N,K] (strides 1,K). */
  operand_view A = {operand(a, dt, 0), trans_a ? 1 : K, trans_a ? M : 1};
  operand_view B = {operand(b, dt, 1), trans_b ? 1 : N, trans_b ? K : 1};
  gemm(M, N, K, dt, A, B, bias ? vlm_f32(bias) : NULL, vlm_f32(out), N, 0);
}

/* out = act(a @ w^T + bias) + residual in one oneDNN primitive (post-ops). */
void vlm_cpu_linear_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *w, const vlm_tensor *bias,
                            const vlm_act *act, const vlm_tensor *residual, vlm_precision prec) {
  int64_t M, N, K;
  mm_dims(a, w, 0, 1, &M, &N, &K);
  vlm_dtype dt = (prec == VLM_PREC_BF16 || (a->dtype == VLM_BF16 && w->dtype == VLM_BF16)) ? VLM_BF16 : VLM_F32;
  operand_view A = {operand(a, dt, 0), K, 1};
  operand_view B = {operand(w, dt, 1), 1, K};
  epilogue ep = {act ? (*act == VLM_ACT_GELU ? 1 : 2) : 0, residual ? vlm_f32(residual) : NULL,
                 out->dtype == VLM_BF16};
  gemm_ex(M, N, K, dt, A, B, bias ? vlm_f32(bias) : NULL, out->data, N, 0, &ep);
}

/* Column sums of g [M,N] added into dbias [N]; blocks of columns per thread,
 * each summed in double in row order (deterministic for any thread count and
 * block width). Blocks of 32 columns without AVX-512: 64 double accumulators
 * would not fit AVX2's 16 registers, and a 64-wide layer (the small CoCa's text
 * tower) would be one block, so one thread would sum it while the other waits. */
static void column_sums(float *dbias, const float *g, int64_t M, int64_t N) {
#if defined(__AVX512F__)
  enum { CB = 64 };
#else
  enum { CB = 32 };
#endif
  int64_t blocks = (N + CB - 1) / CB;
#pragma omp parallel for schedule(static) if (M * N >= (1 << 15))
  for (int64_t jb = 0; jb < blocks; jb++) {
    int64_t j0 = jb * CB, w = N - j0 < CB ? N - j0 : CB;
    double acc[CB] = {0};
    for (int64_t m = 0; m < M; m++) {
      const float *row = g + m * N + j0;
      for (int64_t j = 0; j < w; j++) acc[j] += row[j];
    }
    for (int64_t j = 0; j < w; j++) dbias[j0 + j] += (float)acc[j];
  }
}

/* With A = op(a) [M,K], B = op(b) [K,N], G = dout [M,N]:
 *   dA = G @ B^T, dB = A^T @ G, dbias = column sums of G,
 * each written in the storage layout of its input and accumulated (+=). */
/* da = (or +=, when !set) G @ B: fp32 through dnnl_sgemm with beta 0 or 1, so a
 * written da needs no zeroing first; bf16 through the matmul primitive. */
static void gemm_da(int64_t M, int64_t N, int64_t K, vlm_dtype dt, operand_view A, operand_view B, float *C,
                    int64_t ldc, int set) {
  if (!set || dt != VLM_F32 || M == 0 || N == 0 || K == 0) {
    gemm(M, N, K, dt, A, B, NULL, C, ldc, !set);
    return;
  }
  char ta, tb;
  int64_t lda, ldb;
  blas_layout(A, M, K, &ta, &lda);
  blas_layout(B, K, N, &tb, &ldb);
  int nt = serial_begin(M, N, K);
  DNNL_OK(dnnl_sgemm(ta, tb, M, N, K, 1.0f, A.p, lda, B.p, ldb, 0.0f, C, ldc));
  serial_end(nt);
}

static void matmul_backward(vlm_tensor *da, vlm_tensor *db, vlm_tensor *dbias, const vlm_tensor *dout,
                            const vlm_tensor *a, const vlm_tensor *b, int trans_a, int trans_b, vlm_precision prec,
                            int da_set) {
  int64_t M, N, K;
  mm_dims(a, b, trans_a, trans_b, &M, &N, &K);
  vlm_dtype dt = prec == VLM_PREC_BF16 ? VLM_BF16 : VLM_F32;
  const void *g = (da || db) ? operand(dout, dt, 0) : NULL;
  if (da) {
    const void *pb = operand(b, dt, 1);
    if (!trans_a) {
      /* da [M,K] += G [M,N] @ B^T [N,K];  B^T[n][k] = b[k*N+n] or b[n*K+k]. */
      operand_view G = {g, N, 1};
      operand_view Bt = {pb, trans_b ? K : 1, trans_b ? 1 : N};
      gemm_da(M, K, N, dt, G, Bt, vlm_f32(da), K, da_set);
    } else {
      /* da stored [K,M] += B [K,N] @ G^T [N,M]. */
      operand_view B = {pb, trans_b ? 1 : N, trans_b ? K : 1};
      operand_view Gt = {g, 1, N};
      gemm_da(K, M, N, dt, B, Gt, vlm_f32(da), M, da_set);
    }
  }
  if (db) {
    const void *pa = operand(a, dt, 2);
    if (!trans_b) {
      /* db [K,N] += A^T [K,M] @ G [M,N];  A^T[k][m] = a[m*K+k] or a[k*M+m]. */
      operand_view At = {pa, trans_a ? M : 1, trans_a ? 1 : K};
      operand_view G = {g, N, 1};
      gemm(K, N, M, dt, At, G, NULL, vlm_f32(db), N, 1);
    } else {
      /* db stored [N,K] += G^T [N,M] @ A [M,K]. */
      operand_view Gt = {g, 1, N};
      operand_view A = {pa, trans_a ? 1 : K, trans_a ? M : 1};
      gemm(N, K, M, dt, Gt, A, NULL, vlm_f32(db), K, 1);
    }
  }
  if (dbias) column_sums(vlm_f32(dbias), vlm_f32(dout), M, N);
}

void vlm_cpu_matmul_backward(vlm_tensor *da, vlm_tensor *db, vlm_tensor *dbias, const vlm_tensor *dout,
                             const vlm_tensor *a, const vlm_tensor *b, int trans_a, int trans_b,
                             vlm_precision prec) {
  matmul_backward(da, db, dbias, dout, a, b, trans_a, trans_b, prec, 0);
}

void vlm_cpu_matmul_backward_set(vlm_tensor *da, vlm_tensor *db, vlm_tensor *dbias, const vlm_tensor *dout,
                                 const vlm_tensor *a, const vlm_tensor *b, int trans_a, int trans_b,
                                 vlm_precision prec) {
  matmul_backward(da, db, dbias, dout, a, b, trans_a, trans_b, prec, 1);
}

/* C = alpha * op(A) @ op(B) + beta * C through oneDNN's row-major dnnl_sgemm
 * (thread-safe; inside an OpenMP parallel region it runs on the caller alone). */
void vlm_cpu_sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                   float *C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == 0.0f) {
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = 0; n < N; n++) C[m * ldc + n] = beta == 0.0f ? 0.0f : beta * C[m * ldc + n];
    return;
  }
  DNNL_OK(dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta,
                     C, ldc));
}
