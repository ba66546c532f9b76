// Attention forward through cuDNN's fused scaled-dot-product attention (the
// backend API's SDPA_FWD operation, from C): taken for inference, where no
// probabilities are saved, at VLM_PREC_BF16 with a BF16 output, no causal mask
// and no key padding, 16 or more queries (the vision tower's blocks in bf16
// inference, whose attention writes bf16). Everything else, and every backward, runs
// the own kernels (attention_tc.cu, attention.cu), which also stand in wherever
// cuDNN cannot:
//   - the SDPA_FWD operation takes no causal mask and no per-key mask before
//     cuDNN 9.21, and training needs the probabilities the own backward reads;
//   - cuDNN is opened with dlopen on first use (as cuBLAS: linked, it would cost
//     every process of a CUDA build resident memory); a missing library, or a
//     handle that cannot be made, leaves the own kernels, with one line at
//     VLM_LOG=debug; so does a shape no engine takes (remembered per shape);
//   - the first run of each shape is checked against the own kernel on the same
//     inputs: a disagreement above CUDNN_CHECK_BOUND of the output's max turns
//     cuDNN off with a warning, so a wrong layout can never go unnoticed; then
//     both are timed (3 calls each) and the faster runs that shape from then on.
// Q, K, V are bf16 [B, H, L, D] in cuDNN's logical order with the views' own
// strides (the packed qkv rows: BSHD); f32 views are first rounded to bf16 into
// scratch (the rounding the tensor-core kernel applies too). VLM_CUDA_ATTN_CUDNN=0
// turns the path off, =1 takes cuDNN wherever it applies, whichever is faster.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cuda/common.cuh"

#ifdef VLM_HAVE_CUDNN
#include <cudnn_graph.h>
#include <dlfcn.h>
#if CUDNN_VERSION < 91900  // the SDPA_FWD operation as built here was checked against 9.19's headers
#undef VLM_HAVE_CUDNN
#define VLM_CUDNN_TOO_OLD 1
#endif
#endif

#ifdef VLM_HAVE_CUDNN

// The agreement bound of the first-run check, relative to the own output's max:
// both sides round q, k, v and the output to bf16 (~4e-3 each); a layout or
// scale mistake is O(1).
#define CUDNN_CHECK_BOUND 5e-2

#define VLM_DNN_FUNCS(X)                                                                                \
  X(cudnnCreate) X(cudnnGetVersion) X(cudnnGetErrorString) X(cudnnBackendCreateDescriptor)              \
  X(cudnnBackendDestroyDescriptor) X(cudnnBackendSetAttribute) X(cudnnBackendGetAttribute)              \
  X(cudnnBackendFinalize) X(cudnnBackendExecute)
typedef struct {
#define X(f) decltype(&f) p_##f;
  VLM_DNN_FUNCS(X)
#undef X
} dnn_api;
static dnn_api g_dnn;
static cudnnHandle_t g_handle;
static int g_lib = -1;    // the library: -1 not tried yet, 0 unusable, 1 loaded
static int g_on = -1;     // -1: read VLM_CUDA_ATTN_CUDNN first; 0 off; 1 the faster per shape; 2 always
static long long g_runs;  // forwards cuDNN ran (for tests)

static void turn_off(vlm_log_level lvl, const char *why) {
  vlm_log(lvl, "cuDNN attention off, the own kernels run: %s", why);
  g_on = 0;
}

static void unusable(const char *why) {
  vlm_log(VLM_LOG_DEBUG, "cuDNN attention unavailable, the own kernels run: %s", why);
}

static char g_lib_why[160];  // why the library is unusable
static size_t g_version;

// The library and its entry points (no GPU needed); 1, or 0 with g_lib_why.
static int load_lib(void) {
  void *h = vlm_cuda_open_lib("libcudnn.so." VLM_STR(CUDNN_MAJOR), "libcudnn.so");
#ifdef VLM_CUDNN_LIBDIR
  if (!h) h = dlopen(VLM_CUDNN_LIBDIR "/libcudnn.so." VLM_STR(CUDNN_MAJOR), RTLD_NOW | RTLD_LOCAL);
#endif
  if (!h) {
    snprintf(g_lib_why, sizeof g_lib_why, "libcudnn.so." VLM_STR(CUDNN_MAJOR) " not found");
    return 0;
  }
#define X(f)                                                                  \
  g_dnn.p_##f = (decltype(g_dnn.p_##f))dlsym(h, #f);                          \
  if (!g_dnn.p_##f) {                                                         \
    snprintf(g_lib_why, sizeof g_lib_why, "libcudnn.so has no " #f);          \
    return 0;                                                                 \
  }
  VLM_DNN_FUNCS(X)
#undef X
  g_version = g_dnn.p_cudnnGetVersion();
  if (g_version < 90000) {
    snprintf(g_lib_why, sizeof g_lib_why, "cuDNN %zu is older than 9.0", g_version);
    return 0;
  }
  return 1;
}

static int g_loaded = -1;  // load_lib's result, once
static int lib_ok(void) {
  if (g_loaded < 0) g_loaded = load_lib();
  return g_loaded;
}

// The library and a handle on the current device.
static int load_dnn(void) {
  if (!lib_ok()) {
    unusable(g_lib_why);
    return 0;
  }
  cudnnStatus_t s = g_dnn.p_cudnnCreate(&g_handle);
  if (s != CUDNN_STATUS_SUCCESS) {
    char m[160];
    snprintf(m, sizeof m, "cudnnCreate failed: %s", g_dnn.p_cudnnGetErrorString(s));
    unusable(m);
    return 0;
  }
  vlm_log(VLM_LOG_DEBUG, "cuDNN %zu loaded for attention", g_version);
  return 1;
}

static int enabled(void) {
  if (g_on < 0) {
    const char *e = getenv("VLM_CUDA_ATTN_CUDNN");
    g_on = !e || !e[0] ? 1 : e[0] == '0' ? 0 : e[0] == '1' ? 2 : 1;
  }
  if (!g_on) return 0;
  if (g_lib < 0) g_lib = load_dnn();
  return g_lib == 1;
}

// ------------------------------------------------------------------ descriptors
// Every call's status is kept in *st; after the first failure the rest are skipped,
// so a build reads as a straight sequence and reports the first failing step.
typedef struct {
  cudnnStatus_t st;
  const char *where;
} dnn_ctx;

static void step(dnn_ctx *c, cudnnStatus_t s, const char *where) {
  if (c->st == CUDNN_STATUS_SUCCESS && s != CUDNN_STATUS_SUCCESS) c->st = s, c->where = where;
}

static cudnnBackendDescriptor_t make(dnn_ctx *c, cudnnBackendDescriptorType_t t, const char *where) {
  cudnnBackendDescriptor_t d = NULL;
  if (c->st == CUDNN_STATUS_SUCCESS) step(c, g_dnn.p_cudnnBackendCreateDescriptor(t, &d), where);
  return c->st == CUDNN_STATUS_SUCCESS ? d : NULL;
}

static void set(dnn_ctx *c, cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t t,
                int64_t n, const void *v, const char *where) {
  if (c->st == CUDNN_STATUS_SUCCESS) step(c, g_dnn.p_cudnnBackendSetAttribute(d, a, t, n, v), where);
}

static void fin(dnn_ctx *c, cudnnBackendDescriptor_t d, const char *where) {
  if (c->st == CUDNN_STATUS_SUCCESS) step(c, g_dnn.p_cudnnBackendFinalize(d), where);
}

static void drop(cudnnBackendDescriptor_t d) {
  if (d) g_dnn.p_cudnnBackendDestroyDescriptor(d);
}

// A [B, H, L, D] tensor: dims and strides in that logical order.
static cudnnBackendDescriptor_t tensor(dnn_ctx *c, int64_t uid, cudnnDataType_t dt, const int64_t dims[4],
                                       const int64_t strides[4], int by_value) {
  cudnnBackendDescriptor_t d = make(c, CUDNN_BACKEND_TENSOR_DESCRIPTOR, "tensor descriptor");
  int64_t align = 16;
  set(c, d, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt, "tensor data type");
  set(c, d, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims, "tensor dims");
  set(c, d, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides, "tensor strides");
  set(c, d, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid, "tensor uid");
  set(c, d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align, "tensor alignment");
  if (by_value) {
    bool yes = true;
    set(c, d, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &yes, "tensor by value");
  }
  fin(c, d, "tensor finalize");
  return d;
}

// ------------------------------------------------------------------ plans
// One plan per shape and set of strides (element units; the order of the key).
enum { K_B, K_H, K_LQ, K_LK, K_D, K_QS0, K_QS1, K_KS0, K_KS1, K_VS0, K_VS1, K_OS0, K_OS1, K_IN16, K_N };
enum { UID_Q = 1, UID_K, UID_V, UID_O, UID_SCALE };
typedef struct {
  int64_t key[K_N];
  cudnnBackendDescriptor_t plan;
  int64_t workspace;
  int checked;  // the first run was compared with the own kernel, and both timed
  int use;      // cuDNN was the faster (else the own kernel runs this shape)
} dnn_plan;
#define MAX_PLANS 32
static dnn_plan g_plans[MAX_PLANS];
static int g_nplans;

static void key_dims(const int64_t *k, int64_t L, int64_t dims[4]) {
  dims[0] = k[K_B], dims[1] = k[K_H], dims[2] = L, dims[3] = k[K_D];
}

// The first execution plan an engine finalizes among the heuristics' configs for
// graph in one mode; NULL (the reason in why) when none does.
static cudnnBackendDescriptor_t plan_for(cudnnBackendDescriptor_t graph, cudnnBackendHeurMode_t mode,
                                         int64_t *workspace, char *why, size_t why_n) {
  dnn_ctx c = {CUDNN_STATUS_SUCCESS, NULL};
  cudnnBackendDescriptor_t heur = make(&c, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, "heuristics");
  set(&c, heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph, "heuristics graph");
  set(&c, heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode, "heuristics mode");
  fin(&c, heur, "heuristics finalize");
  enum { MAX_CFG = 8 };
  cudnnBackendDescriptor_t cfg[MAX_CFG] = {0};
  int64_t ncfg = 0;
  for (int i = 0; i < MAX_CFG; i++) cfg[i] = make(&c, CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, "engine config");
  if (c.st == CUDNN_STATUS_SUCCESS)
    step(&c, g_dnn.p_cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, MAX_CFG,
                                            &ncfg, cfg),
         "heuristics results");
  cudnnBackendDescriptor_t plan = NULL;
  dnn_ctx last = {CUDNN_STATUS_NOT_SUPPORTED, "no engine config"};
  for (int64_t i = 0; c.st == CUDNN_STATUS_SUCCESS && i < ncfg && i < MAX_CFG && !plan; i++) {
    dnn_ctx pc = {CUDNN_STATUS_SUCCESS, NULL};
    cudnnBackendDescriptor_t p = make(&pc, CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, "plan");
    set(&pc, p, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &g_handle, "plan handle");
    set(&pc, p, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfg[i], "plan config");
    fin(&pc, p, "plan finalize");
    int64_t ws = 0, got = 0;
    if (pc.st == CUDNN_STATUS_SUCCESS)
      step(&pc, g_dnn.p_cudnnBackendGetAttribute(p, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &got,
                                               &ws),
           "plan workspace");
    if (pc.st == CUDNN_STATUS_SUCCESS) {
      plan = p;
      *workspace = ws;
    } else {
      last = pc;
      drop(p);
    }
  }
  if (!plan) {
    if (c.st != CUDNN_STATUS_SUCCESS) snprintf(why, why_n, "%s: %s", c.where, g_dnn.p_cudnnGetErrorString(c.st));
    else
      snprintf(why, why_n, "%lld engine configs, none finalized a plan (last: %s: %s)", (long long)ncfg, last.where,
               g_dnn.p_cudnnGetErrorString(last.st));
  }
  if (!plan) {  // a plan refers to its config, engine and graph: those stay while it lives
    for (int i = 0; i < MAX_CFG; i++) drop(cfg[i]);
    drop(heur);
  }
  return plan;
}

// The SDPA_FWD operation for key and its five tensors (d[0..4]: Q, K, V, O, the
// scale; d[5]: the operation); the first failing step in c. No handle, no GPU.
static void build_op(dnn_ctx *c, const int64_t *k, cudnnBackendDescriptor_t d[6]) {
  int64_t dq[4], dkv[4], one[4] = {1, 1, 1, 1};
  key_dims(k, k[K_LQ], dq);
  key_dims(k, k[K_LK], dkv);
  // [B, H, L, D] strides of a [B, L, H*D] row view: batch s0, head D, row s1, element 1
  int64_t sq[4] = {k[K_QS0], k[K_D], k[K_QS1], 1}, sk[4] = {k[K_KS0], k[K_D], k[K_KS1], 1};
  int64_t sv[4] = {k[K_VS0], k[K_D], k[K_VS1], 1}, so[4] = {k[K_OS0], k[K_D], k[K_OS1], 1};
  d[0] = tensor(c, UID_Q, CUDNN_DATA_BFLOAT16, dq, sq, 0);
  d[1] = tensor(c, UID_K, CUDNN_DATA_BFLOAT16, dkv, sk, 0);
  d[2] = tensor(c, UID_V, CUDNN_DATA_BFLOAT16, dkv, sv, 0);
  d[3] = tensor(c, UID_O, CUDNN_DATA_BFLOAT16, dq, so, 0);
  d[4] = tensor(c, UID_SCALE, CUDNN_DATA_FLOAT, one, one, 1);
  cudnnBackendDescriptor_t op = d[5] = make(c, CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR, "SDPA_FWD descriptor");
  set(c, op, CUDNN_ATTR_OPERATION_SDPA_FWD_QDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &d[0], "SDPA Q");
  set(c, op, CUDNN_ATTR_OPERATION_SDPA_FWD_KDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &d[1], "SDPA K");
  set(c, op, CUDNN_ATTR_OPERATION_SDPA_FWD_VDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &d[2], "SDPA V");
  set(c, op, CUDNN_ATTR_OPERATION_SDPA_FWD_ODESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &d[3], "SDPA O");
  set(c, op, CUDNN_ATTR_OPERATION_SDPA_FWD_SCALEDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &d[4], "SDPA scale");
  fin(c, op, "SDPA_FWD finalize");
}

// Builds the SDPA_FWD graph for key and its plan (heuristics mode A, then the
// fallback list); NULL (the reason in why) when cuDNN takes none.
static cudnnBackendDescriptor_t build_plan(const int64_t *k, int64_t *workspace, char *why, size_t why_n) {
  dnn_ctx c = {CUDNN_STATUS_SUCCESS, NULL};
  cudnnBackendDescriptor_t d[6] = {0}, op;
  build_op(&c, k, d);
  op = d[5];
  cudnnBackendDescriptor_t graph = make(&c, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, "operation graph");
  set(&c, graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &g_handle, "graph handle");
  set(&c, graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &op, "graph ops");
  fin(&c, graph, "graph finalize");
  cudnnBackendDescriptor_t plan = NULL;
  if (c.st != CUDNN_STATUS_SUCCESS) {
    snprintf(why, why_n, "%s: %s", c.where, g_dnn.p_cudnnGetErrorString(c.st));
  } else {
    plan = plan_for(graph, CUDNN_HEUR_MODE_A, workspace, why, why_n);
    if (!plan) plan = plan_for(graph, CUDNN_HEUR_MODE_FALLBACK, workspace, why, why_n);
  }
  // A plan refers to the graph and its descriptors without owning them (the cuDNN
  // frontend keeps them alive beside it): they stay for the process, as the plan
  // does (a few dozen descriptors per shape, at most MAX_PLANS shapes).
  if (!plan) {
    drop(graph);
    for (int i = 5; i >= 0; i--) drop(d[i]);
  }
  return plan;
}

// The plan of key, built on first sight; NULL when cuDNN takes no plan for it
// (remembered: that shape runs the own kernel without asking again).
static dnn_plan *find_plan(const int64_t *key) {
  for (int i = 0; i < g_nplans; i++)
    if (!memcmp(g_plans[i].key, key, sizeof g_plans[i].key)) return g_plans[i].plan ? &g_plans[i] : NULL;
  if (g_nplans == MAX_PLANS) return NULL;  // enough shapes: the rest run the own kernel
  char why[256] = "";
  int64_t ws = 0;
  cudnnBackendDescriptor_t p = build_plan(key, &ws, why, sizeof why);
  if (!p)
    vlm_log(VLM_LOG_DEBUG, "cuDNN attention: no plan for B %lld H %lld Lq %lld Lk %lld D %lld (the own kernel runs): %s",
            (long long)key[K_B], (long long)key[K_H], (long long)key[K_LQ], (long long)key[K_LK], (long long)key[K_D],
            why);
  dnn_plan *e = &g_plans[g_nplans++];
  memcpy(e->key, key, sizeof e->key);
  e->plan = p;
  e->workspace = ws;
  e->checked = e->use = 0;
  return p ? e : NULL;
}

static int execute(dnn_plan *p, void *q, void *k, void *v, void *o, float scale) {
  void *ws = p->workspace > 0 ? vlm_cuda_scratch(3, (size_t)p->workspace) : NULL;
  int64_t uids[5] = {UID_Q, UID_K, UID_V, UID_O, UID_SCALE};
  void *ptrs[5] = {q, k, v, o, &scale};  // the scale by value: a host pointer
  dnn_ctx c = {CUDNN_STATUS_SUCCESS, NULL};
  cudnnBackendDescriptor_t vp = make(&c, CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, "variant pack");
  set(&c, vp, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, 5, uids, "variant uids");
  set(&c, vp, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, 5, ptrs, "variant pointers");
  set(&c, vp, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &ws, "variant workspace");
  fin(&c, vp, "variant finalize");
  if (c.st == CUDNN_STATUS_SUCCESS) step(&c, g_dnn.p_cudnnBackendExecute(g_handle, p->plan, vp), "execute");
  drop(vp);
  if (c.st != CUDNN_STATUS_SUCCESS) {
    char m[256];
    snprintf(m, sizeof m, "%s: %s", c.where, g_dnn.p_cudnnGetErrorString(c.st));
    turn_off(VLM_LOG_INFO, m);
    return 0;
  }
  LAUNCHED("attention_forward", "cudnn_sdpa_fwd");
  return 1;
}

// ------------------------------------------------------------------ inputs
// A [B, L, W] f32 view rounded to a contiguous bf16 [B, L, W] (W % 4 == 0).
__global__ void round_view_k(__nv_bfloat16 *dst, const float *src, int64_t s0, int64_t s1, int64_t L, int64_t W,
                             int64_t n4) {
  GRID_STRIDE(i4, n4) {
    int64_t e = i4 * 4, c = e % W, r = e / W, b = r / L, l = r % L;
    const float *p = src + b * s0 + l * s1 + c;
    float4 x = make_float4(p[0], p[1], p[2], p[3]);
    *(uint2 *)(dst + e) = vlm_bf16x4(x);
  }
}

static void *as_bf16(const vlm_tensor *t, __nv_bfloat16 *dst) {
  if (t->dtype == VLM_BF16) return t->data;
  const int64_t B = t->shape[0], L = t->shape[1], W = t->shape[2], n4 = B * L * W / 4;
  round_view_k<<<vlm_blocks(n4, 256), 256>>>(dst, (const float *)t->data, t->stride[0], t->stride[1], L, W, n4);
  LAUNCHED("attention_forward", "round_view");
  return dst;
}

static int aligned(const void *p) { return ((uintptr_t)p & 15) == 0; }

// The first run of a plan: the own kernel on the same (bf16) inputs, compared on the host.
static int agrees(const vlm_tensor *out, const vlm_tensor *q, const vlm_tensor *k, const vlm_tensor *v, int heads,
                  float scale, double *err) {
  const int64_t B = out->shape[0], L = out->shape[1], W = out->shape[2], n = B * L * W;
  void *mine = vlm_cuda_alloc(sizeof(uint16_t) * (size_t)n);
  int64_t shape[3] = {B, L, W};
  vlm_tensor ref = vlm_tensor_make(mine, VLM_BF16, VLM_CUDA, 3, shape);
  int on = g_on;
  g_on = 0;  // the own kernels for this one call
  vlm_cuda_attention_forward(&ref, NULL, q, k, v, heads, NULL, 0, scale);
  g_on = on;
  uint16_t *a = (uint16_t *)malloc(sizeof(uint16_t) * (size_t)n), *b = (uint16_t *)malloc(sizeof(uint16_t) * (size_t)n);
  VLM_CHECK(a && b, "out of memory (attention check, %lld values)", (long long)n);
  CUDA_OK(cudaMemcpy(b, mine, sizeof(uint16_t) * (size_t)n, cudaMemcpyDeviceToHost));
  for (int64_t bi = 0; bi < B; bi++)  // out may be a strided view: one 2-D copy per batch row
    CUDA_OK(cudaMemcpy2D(a + bi * L * W, sizeof(uint16_t) * (size_t)W,
                         (const uint16_t *)out->data + bi * out->stride[0], sizeof(uint16_t) * (size_t)out->stride[1],
                         sizeof(uint16_t) * (size_t)W, (size_t)L, cudaMemcpyDeviceToHost));
  vlm_cuda_free(mine);
  double mx = 0, d = 0;
  for (int64_t i = 0; i < n; i++) {
    float x = vlm_bf16_to_f32(a[i]), y = vlm_bf16_to_f32(b[i]);
    if (!(fabs(x - y) <= d)) d = isnan(x - y) ? INFINITY : fabs(x - y);
    if (fabs(y) > mx) mx = fabs(y);
  }
  free(a), free(b);
  *err = mx > 0 ? d / mx : d;
  return *err <= CUDNN_CHECK_BOUND;
}

// q, k, v rounded to bf16 where they are f32 (into scratch slot 2: slot 3 holds
// cuDNN's workspace, the own kernel of the first-run check may use 5), then cuDNN.
typedef struct {
  void *q, *k, *v;
} bf16_in;

static int run_dnn(dnn_plan *p, vlm_tensor *out, const vlm_tensor *q, const vlm_tensor *k, const vlm_tensor *v,
                   float scale, bf16_in *in) {
  const int64_t B = q->shape[0], Lq = q->shape[1], Lk = k->shape[1], W = q->shape[2];
  __nv_bfloat16 *sc = NULL;
  if (q->dtype != VLM_BF16)
    sc = (__nv_bfloat16 *)vlm_cuda_scratch(2, sizeof(__nv_bfloat16) * (size_t)(B * (Lq + 2 * Lk) * W));
  in->q = as_bf16(q, sc);
  in->k = as_bf16(k, sc ? sc + B * Lq * W : NULL);
  in->v = as_bf16(v, sc ? sc + B * (Lq + Lk) * W : NULL);
  return execute(p, in->q, in->k, in->v, out->data, scale);
}

// Milliseconds per call of the own kernel (dnn 0) or cuDNN (dnn 1), 3 calls after one.
static float time_ms(int dnn, dnn_plan *p, vlm_tensor *out, const vlm_tensor *q, const vlm_tensor *k,
                     const vlm_tensor *v, int heads, float scale) {
  cudaEvent_t e0, e1;
  CUDA_OK(cudaEventCreate(&e0));
  CUDA_OK(cudaEventCreate(&e1));
  bf16_in in;
  int on = g_on, ok = 1;
  for (int r = 0; r < 4 && ok; r++) {
    if (r == 1) CUDA_OK(cudaEventRecord(e0));
    if (dnn) {
      ok = run_dnn(p, out, q, k, v, scale, &in);  // a failure turns cuDNN off (g_on 0)
    } else {
      g_on = 0;  // the own kernels
      vlm_cuda_attention_forward(out, NULL, q, k, v, heads, NULL, 0, scale);
      g_on = on;
    }
  }
  CUDA_OK(cudaEventRecord(e1));
  CUDA_OK(cudaEventSynchronize(e1));
  float ms = INFINITY;
  if (ok) CUDA_OK(cudaEventElapsedTime(&ms, e0, e1));
  CUDA_OK(cudaEventDestroy(e0));
  CUDA_OK(cudaEventDestroy(e1));
  return ok ? ms / 3 : INFINITY;
}

int vlm_cuda_attention_cudnn_forward(vlm_tensor *out, const vlm_tensor *probs, const vlm_tensor *q,
                                     const vlm_tensor *k, const vlm_tensor *v, int heads,
                                     const vlm_tensor *key_padding_mask, int causal, float scale) {
  if (probs || causal || key_padding_mask || out->dtype != VLM_BF16) return 0;
  if (vlm_get_matmul_precision() != VLM_PREC_BF16 || !enabled()) return 0;
  const int64_t B = q->shape[0], Lq = q->shape[1], Lk = k->shape[1], W = q->shape[2], D = W / heads;
  // Lq >= 16: a cached decoding step (one query, one more key each time) would need
  // a plan per key length; those stay on the own kernel
  if (D % 8 || D > 128 || B < 1 || Lq < 16 || Lk < 1) return 0;
  if (q->dtype != k->dtype || q->dtype != v->dtype) return 0;
  // bf16 views are used in place: 16-byte aligned rows; f32 ones are rounded into scratch
  const int in16 = q->dtype == VLM_BF16;
  const vlm_tensor *in[3] = {q, k, v};
  int64_t st[3][2];
  for (int i = 0; i < 3; i++) {
    if (in16) {
      if (!aligned(in[i]->data) || in[i]->stride[0] % 8 || in[i]->stride[1] % 8) return 0;
      st[i][0] = in[i]->stride[0], st[i][1] = in[i]->stride[1];
    } else {
      st[i][0] = in[i]->shape[1] * W, st[i][1] = W;
    }
  }
  if (!aligned(out->data) || out->stride[0] % 8 || out->stride[1] % 8) return 0;
  // the input dtype is part of the key: f32 inputs pay the rounding pass, so the
  // faster side can differ from bf16 inputs of the same strides
  int64_t key[K_N] = {B, heads, Lq, Lk, D, st[0][0], st[0][1], st[1][0], st[1][1], st[2][0], st[2][1],
                      out->stride[0], out->stride[1], in16};
  dnn_plan *p = find_plan(key);
  if (!p) return 0;
  if (p->checked && !p->use && g_on != 2) return 0;  // the own kernel was faster for this shape
  bf16_in b16;
  if (!run_dnn(p, out, q, k, v, scale, &b16)) return 0;
  if (!p->checked) {
    // the own kernel reads the same bf16 values cuDNN did
    int64_t sq[3] = {B, Lq, W}, skv[3] = {B, Lk, W};
    vlm_tensor q16 = in16 ? *q : vlm_tensor_make(b16.q, VLM_BF16, VLM_CUDA, 3, sq);
    vlm_tensor k16 = in16 ? *k : vlm_tensor_make(b16.k, VLM_BF16, VLM_CUDA, 3, skv);
    vlm_tensor v16 = in16 ? *v : vlm_tensor_make(b16.v, VLM_BF16, VLM_CUDA, 3, skv);
    double err = 0;
    if (!agrees(out, &q16, &k16, &v16, heads, scale, &err)) {
      char m[200];
      snprintf(m, sizeof m, "its output differs from the own kernel's by %.3g of the max (bound %g) at B %lld H %d "
               "Lq %lld Lk %lld D %lld", err, CUDNN_CHECK_BOUND, (long long)B, heads, (long long)Lq, (long long)Lk,
               (long long)D);
      turn_off(VLM_LOG_WARN, m);
      return 0;  // the caller runs the own kernel into out
    }
    // the faster of the two for this shape (cuDNN last: out holds its result)
    float own = time_ms(0, p, out, q, k, v, heads, scale), dnn = time_ms(1, p, out, q, k, v, heads, scale);
    if (!g_on) return 0;  // cuDNN failed while timed (said why): the caller runs the own kernel into out
    p->use = dnn <= own;
    p->checked = 1;
    vlm_log(VLM_LOG_DEBUG, "cuDNN attention B %lld H %d Lq %lld Lk %lld D %lld %s in: agrees with the own kernel "
            "(%.3g of the max); %.4f ms against the own kernel's %.4f: %s", (long long)B, heads, (long long)Lq,
            (long long)Lk, (long long)D, in16 ? "bf16" : "f32", err, dnn, own, p->use ? "cuDNN" : "the own kernel");
  }
  g_runs++;
  return 1;
}

extern "C" int vlm_cuda_cudnn_probe(char *msg, size_t n) {
  if (!lib_ok()) {
    snprintf(msg, n, "%s: attention runs the own kernels", g_lib_why);
    return 0;
  }
  // ViT-B/32's attention at batch 1 over a packed qkv: the operation must finalize
  const int64_t W = 768, L = 50;
  int64_t key[K_N] = {1, 12, L, L, 64, L * 3 * W, 3 * W, L * 3 * W, 3 * W, L * 3 * W, 3 * W, L * W, W, 1};
  dnn_ctx c = {CUDNN_STATUS_SUCCESS, NULL};
  cudnnBackendDescriptor_t d[6] = {0};
  build_op(&c, key, d);
  for (int i = 5; i >= 0; i--) drop(d[i]);
  size_t v = g_version;
  if (c.st != CUDNN_STATUS_SUCCESS) {
    snprintf(msg, n, "cuDNN %zu.%zu.%zu: the fused attention operation does not build (%s: %s): attention runs the "
             "own kernels", v / 10000, v / 100 % 100, v % 100, c.where, g_dnn.p_cudnnGetErrorString(c.st));
    // 9.19 is the version it was built and checked against; an older library may lack the operation
    return v < 91900 ? 0 : -2;
  }
  snprintf(msg, n, "cuDNN %zu.%zu.%zu: fused attention (SDPA_FWD) for inference on the GPU", v / 10000, v / 100 % 100,
           v % 100);
  return 1;
}

extern "C" long long vlm_cuda_attention_cudnn_runs(void) { return g_runs; }
extern "C" void vlm_cuda_attention_set_cudnn(int mode) { g_on = mode < 0 ? 0 : mode > 2 ? 2 : mode; }
#else
extern "C" int vlm_cuda_cudnn_probe(char *msg, size_t n) {
#ifdef VLM_CUDNN_TOO_OLD
  snprintf(msg, n, "not built (cuDNN %d.%d headers at build time, 9.19 or later needed): attention runs the own kernels",
           CUDNN_MAJOR, CUDNN_MINOR);
#else
  snprintf(msg, n, "not built (no cuDNN headers at build time): attention runs the own kernels");
#endif
  return -1;
}
int vlm_cuda_attention_cudnn_forward(vlm_tensor *, const vlm_tensor *, const vlm_tensor *, const vlm_tensor *,
                                     const vlm_tensor *, int, const vlm_tensor *, int, float) {
  return 0;
}
extern "C" long long vlm_cuda_attention_cudnn_runs(void) { return 0; }
extern "C" void vlm_cuda_attention_set_cudnn(int) {}
#endif
