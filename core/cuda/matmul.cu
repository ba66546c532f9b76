// matmul on CUDA through cuBLASLt: out[M,N] = op(a) @ op(b) (+ bias[N]) with the
// bias fused into the GEMM epilogue, and its backward (beta = 1 accumulates).
//
// Precision (as the CPU kernel): at VLM_PREC_BF16, or in a forward whose operands
// are both BF16, every F32 operand is rounded to bf16 (round to nearest even, as
// the reference does) into device scratch and the GEMM runs bf16 x bf16 with
// fp32 accumulation and an fp32 output. Otherwise an fp32 GEMM runs
// (CUBLAS_COMPUTE_32F, no TF32), a BF16 operand widened exactly to f32. dbias is a deterministic column sum of dout, never rounded.
//
// Row-major C[M,N] = A[M,K] B[K,N] is column-major C^T = B^T A^T, so cuBLASLt
// sees m = N, n = M, k = K with b as its first operand and a as its second.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cuda/common.cuh"

#include <dlfcn.h>

/* cuBLAS and cuBLASLt are opened on first use with dlopen instead of being
 * linked: loading them costs about 210 MB of resident memory each (their
 * relocations), which every CPU-only run of a CUDA build would otherwise pay
 * (`vlm --help` went from 1 to 223 MB). The calls below go through this table. */
#define VLM_BLAS_FUNCS(X)                                                                          \
  X(cublasLtCreate) X(cublasLtMatmul) X(cublasLtMatmulAlgoGetHeuristic) X(cublasLtMatmulDescCreate) \
  X(cublasLtMatmulDescDestroy) X(cublasLtMatmulDescSetAttribute) X(cublasLtMatmulPreferenceCreate)  \
  X(cublasLtMatmulPreferenceDestroy) X(cublasLtMatmulPreferenceSetAttribute)                        \
  X(cublasLtMatrixLayoutCreate) X(cublasLtMatrixLayoutDestroy) X(cublasCreate)
#define VLM_SONAME(lib, major) "lib" lib ".so." VLM_STR(major)

/* cublasGemmEx is overloaded in C++ (32- and 64-bit sizes): the 32-bit one. */
typedef cublasStatus_t (*gemm_ex_fn)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                     const void *, const void *, cudaDataType, int, const void *, cudaDataType, int,
                                     const void *, void *, cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);
typedef struct {
#define X(f) decltype(&f) p_##f;
  VLM_BLAS_FUNCS(X)
#undef X
  gemm_ex_fn p_cublasGemmEx;
} blas_api;
static blas_api g_api;

static void *open_lib(const char *soname, const char *plain) {
  void *h = vlm_cuda_open_lib(soname, plain);
  VLM_CHECK(h, "cuBLAS: cannot load %s: %s", soname, dlerror());
  return h;
}

static void load_blas_api(void) {
  void *lt = open_lib(VLM_SONAME("cublasLt", CUBLAS_VER_MAJOR), "libcublasLt.so");
  void *bl = open_lib(VLM_SONAME("cublas", CUBLAS_VER_MAJOR), "libcublas.so");
#define X(f)                                                                                    \
  {                                                                                             \
    const char *name_ = VLM_STR(f); /* the real symbol: cublasCreate is cublasCreate_v2 */     \
    void *sym_ = dlsym(!strncmp(name_, "cublasLt", 8) ? lt : bl, name_);                        \
    VLM_CHECK(sym_, "cuBLAS: %s is missing from the loaded library", name_);                   \
    g_api.p_##f = (decltype(g_api.p_##f))sym_;                                                  \
  }
  VLM_BLAS_FUNCS(X)
#undef X
  g_api.p_cublasGemmEx = (gemm_ex_fn)dlsym(bl, "cublasGemmEx");
  VLM_CHECK(g_api.p_cublasGemmEx, "cuBLAS: cublasGemmEx is missing from the loaded library");
}

#undef cublasCreate
#define cublasLtCreate g_api.p_cublasLtCreate
#define cublasLtMatmul g_api.p_cublasLtMatmul
#define cublasLtMatmulAlgoGetHeuristic g_api.p_cublasLtMatmulAlgoGetHeuristic
#define cublasLtMatmulDescCreate g_api.p_cublasLtMatmulDescCreate
#define cublasLtMatmulDescDestroy g_api.p_cublasLtMatmulDescDestroy
#define cublasLtMatmulDescSetAttribute g_api.p_cublasLtMatmulDescSetAttribute
#define cublasLtMatmulPreferenceCreate g_api.p_cublasLtMatmulPreferenceCreate
#define cublasLtMatmulPreferenceDestroy g_api.p_cublasLtMatmulPreferenceDestroy
#define cublasLtMatmulPreferenceSetAttribute g_api.p_cublasLtMatmulPreferenceSetAttribute
#define cublasLtMatrixLayoutCreate g_api.p_cublasLtMatrixLayoutCreate
#define cublasLtMatrixLayoutDestroy g_api.p_cublasLtMatrixLayoutDestroy
#define cublasCreate g_api.p_cublasCreate
#define cublasGemmEx g_api.p_cublasGemmEx

static const char *lt_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "CUBLAS_STATUS_?";
  }
}

#define BLAS_OK(call)                                                                                 \
  do {                                                                                                \
    cublasStatus_t s_ = (call);                                                                       \
    VLM_CHECK(s_ == CUBLAS_STATUS_SUCCESS, "cuBLAS: %s failed: %s (%d)", #call, lt_status_name(s_), \
              (int)s_);                                                                               \
  } while (0)

static cublasLtHandle_t g_lt = NULL;
static cublasHandle_t g_blas = NULL;
static void *g_workspace = NULL;
static const size_t k_workspace = (size_t)32 << 20;

static void init_handles(void) {
  if (g_lt) return;
  load_blas_api();
  BLAS_OK(cublasLtCreate(&g_lt));
  BLAS_OK(cublasCreate(&g_blas));
  CUDA_OK(cudaMalloc(&g_workspace, k_workspace));
}

// Largest power of two (<= 256) dividing the address: cuBLASLt's heuristic must
// not pick a kernel that assumes more alignment than the operands have.
static unsigned align_of(const void *p) {
  uintptr_t a = (uintptr_t)p;
  unsigned al = 256;
  while (al > 1 && (a % al)) al >>= 1;
  return al;
}

// One cached plan per distinct GEMM (shapes, layouts, types, epilogue, alignment).
#define N_CAND 8
typedef struct {
  int used;
  int64_t M, N, K;
  int ta, tb, bf16, bias, beta1;
  int outbf;  // D (and C) bf16: the GEMM rounds its f32 result once
  unsigned al_a, al_b, al_c;
  cublasLtMatmulDesc_t op;
  cublasLtMatrixLayout_t la, lb, lc;
  cublasLtMatmulAlgo_t algo;
  int has_algo;
  cublasLtMatmulAlgo_t cand[N_CAND];  // the heuristic's candidates, best guess first
  int n_cand, tuned;
} plan;

#define N_PLANS 256
static plan g_plans[N_PLANS];
static int g_next_plan = 0;

static plan *get_plan(int64_t M, int64_t N, int64_t K, int ta, int tb, int bf16, const void *A, const void *B,
                      const void *C, const float *bias, int beta1, int outbf) {
  unsigned al_a = align_of(A), al_b = align_of(B), al_c = align_of(C);
  for (int i = 0; i < N_PLANS; i++) {
    plan *p = &g_plans[i];
    if (p->used && p->M == M && p->N == N && p->K == K && p->ta == ta && p->tb == tb && p->bf16 == bf16 &&
        p->bias == (bias != NULL) && p->beta1 == beta1 && p->outbf == outbf && p->al_a == al_a &&
        p->al_b == al_b && p->al_c == al_c)
      return p;
  }
  plan *p = &g_plans[g_next_plan];
  g_next_plan = (g_next_plan + 1) % N_PLANS;
  if (p->used) {
    cublasLtMatmulDescDestroy(p->op);
    cublasLtMatrixLayoutDestroy(p->la);
    cublasLtMatrixLayoutDestroy(p->lb);
    cublasLtMatrixLayoutDestroy(p->lc);
  }
  memset(p, 0, sizeof *p);
  p->M = M; p->N = N; p->K = K; p->ta = ta; p->tb = tb; p->bf16 = bf16; p->bias = bias != NULL; p->beta1 = beta1;
  p->al_a = al_a; p->al_b = al_b; p->al_c = al_c; p->outbf = outbf;
  cudaDataType_t t_in = bf16 ? CUDA_R_16BF : CUDA_R_32F;
  BLAS_OK(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  // cuBLASLt's first operand is our b, its second our a (see the top of the file).
  cublasOperation_t opA = tb ? CUBLAS_OP_T : CUBLAS_OP_N, opB = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  BLAS_OK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &opA, sizeof opA));
  BLAS_OK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &opB, sizeof opB));
  if (bias) {
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    BLAS_OK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    cudaDataType_t bt = CUDA_R_32F;
    BLAS_OK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
  }
  // first operand (our b): N x K col-major (ld N) if !tb, else K x N (ld K)
  if (!tb) BLAS_OK(cublasLtMatrixLayoutCreate(&p->la, t_in, (uint64_t)N, (uint64_t)K, N));
  else BLAS_OK(cublasLtMatrixLayoutCreate(&p->la, t_in, (uint64_t)K, (uint64_t)N, K));
  // second operand (our a): K x M (ld K) if !ta, else M x K (ld M)
  if (!ta) BLAS_OK(cublasLtMatrixLayoutCreate(&p->lb, t_in, (uint64_t)K, (uint64_t)M, K));
  else BLAS_OK(cublasLtMatrixLayoutCreate(&p->lb, t_in, (uint64_t)M, (uint64_t)K, M));
  BLAS_OK(cublasLtMatrixLayoutCreate(&p->lc, outbf ? CUDA_R_16BF : CUDA_R_32F, (uint64_t)N, (uint64_t)M, N));

  cublasLtMatmulPreference_t pref;
  BLAS_OK(cublasLtMatmulPreferenceCreate(&pref));
  BLAS_OK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &k_workspace,
                                               sizeof k_workspace));
  uint32_t a1 = al_b, a2 = al_a, a3 = al_c;  // cuBLASLt A = our b, B = our a
  BLAS_OK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &a1, sizeof a1));
  BLAS_OK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &a2, sizeof a2));
  BLAS_OK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &a3, sizeof a3));
  BLAS_OK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &a3, sizeof a3));
  cublasLtMatmulHeuristicResult_t res[N_CAND];
  int n_res = 0;
  cublasStatus_t st =
      cublasLtMatmulAlgoGetHeuristic(g_lt, p->op, p->la, p->lb, p->lc, p->lc, pref, N_CAND, res, &n_res);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st == CUBLAS_STATUS_SUCCESS && n_res > 0) {
    for (int i = 0; i < n_res; i++)
      if (res[i].state == CUBLAS_STATUS_SUCCESS) p->cand[p->n_cand++] = res[i].algo;
    if (p->n_cand > 0) {
      p->algo = p->cand[0];
      p->has_algo = 1;
    }
  }
  p->used = 1;
  return p;
}

// GEMM autotuning (on unless VLM_CUDA_GEMM_TUNE=0): the first call of each plan
// times the heuristic's candidates (up to N_CAND) on that call's own operands,
// each writing a temporary D, and keeps the fastest for the plan's later calls.
// The heuristic's first guess is often not the fastest at the towers' shapes.
static int tune_on(void) {
  static int on = -1;
  if (on < 0) {
    const char *e = getenv("VLM_CUDA_GEMM_TUNE");
    on = !(e && e[0] == '0');
  }
  return on;
}

static cublasStatus_t run_algo(plan *p, const cublasLtMatmulAlgo_t *algo, const void *A, const void *B, float beta,
                               const void *Cin, void *D) {
  const float alpha = 1.0f;
  return cublasLtMatmul(g_lt, p->op, &alpha, B, p->la, A, p->lb, &beta, Cin, p->lc, D, p->lc, algo, g_workspace,
                        k_workspace, 0);
}

// Cin: C's input when beta != 0 (read, never written here). The bias pointer is set.
static void tune_plan(plan *p, const void *A, const void *B, float beta, const void *Cin) {
  p->tuned = 1;
  if (p->n_cand < 2 || !tune_on()) return;
  void *D = NULL;
  if (cudaMalloc(&D, (p->outbf ? 2 : 4) * (size_t)(p->M * p->N)) != cudaSuccess) {
    (void)cudaGetLastError();  // no memory to spare: keep the heuristic's choice
    return;
  }
  cudaEvent_t e0, e1;
  CUDA_OK(cudaEventCreate(&e0));
  CUDA_OK(cudaEventCreate(&e1));
  float best = 0.0f;
  int besti = -1;
  const void *c = beta != 0.0f ? Cin : D;
  for (int i = 0; i < p->n_cand; i++) {
    if (run_algo(p, &p->cand[i], A, B, beta, c, D) != CUBLAS_STATUS_SUCCESS) continue;  // warm-up
    int ok = 1;
    CUDA_OK(cudaEventRecord(e0, 0));
    for (int r = 0; r < 3 && ok; r++) ok = run_algo(p, &p->cand[i], A, B, beta, c, D) == CUBLAS_STATUS_SUCCESS;
    CUDA_OK(cudaEventRecord(e1, 0));
    CUDA_OK(cudaEventSynchronize(e1));
    float ms = 0.0f;
    CUDA_OK(cudaEventElapsedTime(&ms, e0, e1));
    if (ok && (besti < 0 || ms < best)) {
      best = ms;
      besti = i;
    }
  }
  if (besti >= 0) p->algo = p->cand[besti];
  CUDA_OK(cudaEventDestroy(e0));
  CUDA_OK(cudaEventDestroy(e1));
  CUDA_OK(cudaFree(D));
}

__global__ void bias_rows_k(float *C, const float *bias, int64_t M, int64_t N, float beta) {
  GRID_STRIDE(i, M * N) C[i] = beta * C[i] + (bias ? bias[i % N] : 0.0f);
}

// C[M,N] = beta*C + opA(A) @ opB(B) (+ bias): A stored [M,K] (or [K,M] when ta),
// B stored [K,N] (or [N,K] when tb); A and B both F32 or both BF16.
// Cin: C's input when it is not C itself (D = A B + beta Cin + bias, written to C).
static void gemm_c(const char *what, float *C, const float *Cin, int64_t M, int64_t N, int64_t K, const void *A,
                   int ta, const void *B, int tb, int bf16, const float *bias, float beta) {
  if (M == 0 || N == 0) return;
  if (Cin == C || beta == 0.0f) Cin = NULL;
  if (Cin && K == 0) {  // no GEMM to fuse into: C = Cin first
    CUDA_OK(cudaMemcpyAsync(C, Cin, sizeof(float) * (size_t)(M * N), cudaMemcpyDeviceToDevice, 0));
    Cin = NULL;
  }
  if (K == 0) {
    bias_rows_k<<<vlm_blocks(M * N, 256), 256>>>(C, bias, M, N, beta);
    LAUNCHED(what, "bias_rows (K = 0)");
    return;
  }
  init_handles();
  // (the plan's C alignment: the smaller of C's and Cin's, from the OR of the addresses)
  const float *Calign = Cin ? (const float *)((uintptr_t)C | (uintptr_t)Cin) : C;
  plan *p = get_plan(M, N, K, ta, tb, bf16, A, B, Calign, bias, beta != 0.0f, 0);
  const float alpha = 1.0f;
  if (p->has_algo) {
    if (bias)
      BLAS_OK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    if (!p->tuned) tune_plan(p, A, B, beta, Cin ? Cin : C);
    cublasStatus_t st = cublasLtMatmul(g_lt, p->op, &alpha, B, p->la, A, p->lb, &beta, Cin ? Cin : C, p->lc, C, p->lc, &p->algo,
                                       g_workspace, k_workspace, 0);
    if (st == CUBLAS_STATUS_SUCCESS) {
      LAUNCHED(what, "cublasLtMatmul");
      return;
    }
    VLM_CHECK(st == CUBLAS_STATUS_NOT_SUPPORTED, "cuBLAS: %s: cublasLtMatmul (M %lld N %lld K %lld%s%s%s) failed: %s",
              what, (long long)M, (long long)N, (long long)K, ta ? " trans_a" : "", tb ? " trans_b" : "",
              bf16 ? " bf16" : " f32", lt_status_name(st));
    p->has_algo = 0;  // fall back to cublasGemmEx below from now on
  }
  // Fallback: cuBLAS's GemmEx (no fused bias: added first, then beta = 1).
  if (Cin) CUDA_OK(cudaMemcpyAsync(C, Cin, sizeof(float) * (size_t)(M * N), cudaMemcpyDeviceToDevice, 0));
  float beta2 = beta;
  if (bias) {
    bias_rows_k<<<vlm_blocks(M * N, 256), 256>>>(C, bias, M, N, beta);
    LAUNCHED(what, "bias_rows");
    beta2 = 1.0f;
  }
  cudaDataType_t t_in = bf16 ? CUDA_R_16BF : CUDA_R_32F;
  BLAS_OK(cublasGemmEx(g_blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, (int)N, (int)M, (int)K,
                       &alpha, B, t_in, (int)(tb ? K : N), A, t_in, (int)(ta ? M : K), &beta2, C, CUDA_R_32F, (int)N,
                       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  LAUNCHED(what, "cublasGemmEx");
}

// D[M,N] (bf16) = A @ B^T, A [M,K] and B [N,K] both bf16: the f32 product
// rounded once. 1 when cuBLASLt ran it; 0 when it has no kernel for it (the
// caller then goes through f32). No bias epilogue: cuBLASLt's bias must then
// be bf16 too (as we read cuBLASLt's documentation, an f32 bias with a bf16 D is
// for fp8 kernels; a bf16-output Linear with the f32 bias in the epilogue measured
// as slow as the f32 GEMM plus a rounding pass, not verified further).
static int gemm_bf16_out(const char *what, __nv_bfloat16 *D, int64_t M, int64_t N, int64_t K, const void *A,
                         const void *B) {
  if (M == 0 || N == 0) return 1;
  if (K == 0) return 0;
  init_handles();
  plan *p = get_plan(M, N, K, 0, 1, 1, A, B, D, NULL, 0, 1);
  if (!p->has_algo) return 0;
  if (!p->tuned) tune_plan(p, A, B, 0.0f, NULL);
  cublasStatus_t st = run_algo(p, &p->algo, A, B, 0.0f, D, D);
  if (st == CUBLAS_STATUS_SUCCESS) {
    LAUNCHED(what, "cublasLtMatmul (bf16 out)");
    return 1;
  }
  VLM_CHECK(st == CUBLAS_STATUS_NOT_SUPPORTED, "cuBLAS: %s: cublasLtMatmul (M %lld N %lld K %lld, bf16 out) failed: %s",
            what, (long long)M, (long long)N, (long long)K, lt_status_name(st));
  p->has_algo = 0;
  return 0;
}

static void gemm(const char *what, float *C, int64_t M, int64_t N, int64_t K, const void *A, int ta, const void *B,
                 int tb, int bf16, const float *bias, float beta) {
  gemm_c(what, C, NULL, M, N, K, A, ta, B, tb, bf16, bias, beta);
}

__global__ void round_bf16_k(__nv_bfloat16 *d, const float *s, int64_t n) {
  GRID_STRIDE(i, n) d[i] = __float2bfloat16_rn(s[i]);
}

__global__ void round_bf16_4_k(uint2 *d, const float4 *s, int64_t n4) {
  GRID_STRIDE(i, n4) d[i] = vlm_bf16x4(s[i]);
}

// g[r, c] rounded to bf16 into gh, and partial[chunk, c] = sum of g[r, c] over the
// chunk's rows (f32, in row order), c < C: dout's bf16 copy and dbias in one read.
__global__ void round_colsum_k(__nv_bfloat16 *gh, float *partial, const float *g, int64_t R, int64_t C,
                               int64_t rows_per_chunk) {
  int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (c >= C) return;
  int64_t r0 = (int64_t)blockIdx.y * rows_per_chunk, r1 = r0 + rows_per_chunk;
  if (r1 > R) r1 = R;
  float s = 0.0f;
#pragma unroll 8
  for (int64_t r = r0; r < r1; r++) {
    float v = g[r * C + c];
    gh[r * C + c] = __float2bfloat16_rn(v);
    s += v;
  }
  partial[(int64_t)blockIdx.y * C + c] = s;
}

// The operand as bf16: itself when already BF16, else a rounded copy in scratch slot `slot`.
static const void *as_bf16(const char *what, const vlm_tensor *t, int slot) {
  if (t->dtype == VLM_BF16) return t->data;
  int64_t n = vlm_numel(t);
  __nv_bfloat16 *d = (__nv_bfloat16 *)vlm_cuda_scratch(slot, sizeof(__nv_bfloat16) * (size_t)(n > 0 ? n : 1));
  if (n > 0) {
    if (vlm_vec4(n, d, t->data)) {
      round_bf16_4_k<<<vlm_blocks(n / 4, 256), 256>>>((uint2 *)d, (const float4 *)t->data, n / 4);
      LAUNCHED(what, "round_bf16_4");
    } else {
      round_bf16_k<<<vlm_blocks(n, 256), 256>>>(d, (const float *)t->data, n);
      LAUNCHED(what, "round_bf16");
    }
  }
  return d;
}

static int64_t lead_rows(const vlm_tensor *t) {
  int64_t r = 1;
  for (int i = 0; i + 1 < t->ndim; i++) r *= t->shape[i];
  return r;
}

static void dims(const vlm_tensor *a, const vlm_tensor *b, int ta, int tb, int64_t *M, int64_t *N, int64_t *K) {
  *M = ta ? a->shape[1] : lead_rows(a);
  *K = ta ? a->shape[0] : vlm_cols(a);
  *N = tb ? b->shape[0] : b->shape[1];
}

__global__ void widen_bf16_k(float *d, const __nv_bfloat16 *s, int64_t n) {
  GRID_STRIDE(i, n) d[i] = __bfloat162float(s[i]);
}

// The operand as f32: itself when F32, else a widened (exact) copy in scratch slot `slot`.
static const void *as_f32(const char *what, const vlm_tensor *t, int slot) {
  if (t->dtype == VLM_F32) return t->data;
  int64_t n = vlm_numel(t);
  float *d = (float *)vlm_cuda_scratch(slot, sizeof(float) * (size_t)(n > 0 ? n : 1));
  if (n > 0) {
    widen_bf16_k<<<vlm_blocks(n, 256), 256>>>(d, (const __nv_bfloat16 *)t->data, n);
    LAUNCHED(what, "widen_bf16");
  }
  return d;
}

static const void *operand(const char *what, const vlm_tensor *t, int bf, int slot) {
  return bf ? as_bf16(what, t, slot) : as_f32(what, t, slot);
}

extern "C" void vlm_cuda_matmul_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *b,
                                        const vlm_tensor *bias, int trans_a, int trans_b, vlm_precision prec) {
  int64_t M, N, K;
  dims(a, b, trans_a, trans_b, &M, &N, &K);
  // As the CPU kernel: bf16 GEMM in bf16 precision or when both operands are
  // BF16; otherwise a BF16 operand is widened (exactly) to f32.
  int bf = prec == VLM_PREC_BF16 || (a->dtype == VLM_BF16 && b->dtype == VLM_BF16);
  const void *A = operand("matmul_forward", a, bf, 1);
  const void *B = operand("matmul_forward", b, bf, 2);
  gemm("matmul_forward", (float *)out->data, M, N, K, A, trans_a, B, trans_b, bf,
       bias ? (const float *)bias->data : NULL, 0.0f);
}

// da_beta 1: da += ...; 0: da = ... (its old contents unread).
static void matmul_backward(vlm_tensor *da, vlm_tensor *db, vlm_tensor *dbias, const vlm_tensor *dout,
                            const vlm_tensor *a, const vlm_tensor *b, int trans_a, int trans_b, vlm_precision prec,
                            float da_beta) {
  int64_t M, N, K;
  dims(a, b, trans_a, trans_b, &M, &N, &K);
  int bf = prec == VLM_PREC_BF16;  // as the CPU kernel's backward
  const void *G = dout->data;
  int dbias_done = 0;
  if (bf && dbias && dout->dtype == VLM_F32 && M * N > 0) {
    // one pass over dout: its bf16 copy and the dbias column sums (partials per row chunk)
    int64_t per = (M + 255) / 256;
    if (per < 16) per = 16;
    int64_t chunks = (M + per - 1) / per;
    __nv_bfloat16 *gh = (__nv_bfloat16 *)vlm_cuda_scratch(3, sizeof(__nv_bfloat16) * (size_t)(M * N));
    float *partial = (float *)vlm_cuda_scratch(4, sizeof(float) * (size_t)(chunks * N));
    dim3 grid((unsigned)((N + 127) / 128), (unsigned)chunks);
    round_colsum_k<<<grid, 128>>>(gh, partial, (const float *)dout->data, M, N, per);
    LAUNCHED("matmul_backward", "round_colsum");
    vlm_colsum_finish("matmul_backward (dbias)", (float *)dbias->data, partial, chunks, N);
    G = gh;
    dbias_done = 1;
  } else if (bf) {
    G = as_bf16("matmul_backward", dout, 3);
  }
  const void *A = db ? operand("matmul_backward", a, bf, 1) : NULL;
  const void *B = da ? operand("matmul_backward", b, bf, 2) : NULL;
  float *ga = da ? (float *)da->data : NULL, *gb = db ? (float *)db->data : NULL;
  if (da) {
    if (!trans_a)  // da[M,K] += G[M,N] @ op(b)^T
      gemm("matmul_backward (da)", ga, M, K, N, G, 0, B, !trans_b, bf, NULL, da_beta);
    else           // da[K,M] += op(b)[K,N] @ G^T
      gemm("matmul_backward (da)", ga, K, M, N, B, trans_b, G, 1, bf, NULL, da_beta);
  }
  if (db) {
    if (!trans_b)  // db[K,N] += op(a)^T[K,M] @ G[M,N]
      gemm("matmul_backward (db)", gb, K, N, M, A, !trans_a, G, 0, bf, NULL, 1.0f);
    else           // db[N,K] += G^T[N,M] @ op(a)[M,K]
      gemm("matmul_backward (db)", gb, N, K, M, G, 1, A, trans_a, bf, NULL, 1.0f);
  }
  if (dbias && !dbias_done) {
    vlm_row_val f = {(const float *)dout->data, N};
    vlm_cuda_colsum("matmul_backward (dbias)", (float *)dbias->data, M, N, f, 4);
  }
}

extern "C" void vlm_cuda_matmul_backward(vlm_tensor *da, vlm_tensor *db, vlm_tensor *dbias, const vlm_tensor *dout,
                                         const vlm_tensor *a, const vlm_tensor *b, int trans_a, int trans_b,
                                         vlm_precision prec) {
  matmul_backward(da, db, dbias, dout, a, b, trans_a, trans_b, prec, 1.0f);
}

extern "C" void vlm_cuda_matmul_backward_set(vlm_tensor *da, vlm_tensor *db, vlm_tensor *dbias,
                                             const vlm_tensor *dout, const vlm_tensor *a, const vlm_tensor *b,
                                             int trans_a, int trans_b, vlm_precision prec) {
  matmul_backward(da, db, dbias, dout, a, b, trans_a, trans_b, prec, 0.0f);
}

// In place on the bf16 GEMM result: o = act(o + bias[col]) in f32, rounded once
// more. Eight elements a thread (N % 8 == 0, 16-byte aligned o and bias): one
// 16-byte load and store, the column found once per eight.
__global__ void bias_act_bf16_k(__nv_bfloat16 *o, const float *bias, int act, int64_t N, int64_t n8) {
  GRID_STRIDE(i, n8) {
    uint4 u = ((const uint4 *)o)[i];
    __nv_bfloat162 *h = (__nv_bfloat162 *)&u;
    const int64_t c = (8 * i) % N;
    float4 b0 = make_float4(0.f, 0.f, 0.f, 0.f), b1 = b0;
    if (bias) b0 = ((const float4 *)(bias + c))[0], b1 = ((const float4 *)(bias + c))[1];
    const float bb[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
      float2 v = __bfloat1622float2(h[k]);
      h[k] = __floats2bfloat162_rn(vlm_act_f(act, v.x + bb[2 * k]), vlm_act_f(act, v.y + bb[2 * k + 1]));
    }
    ((uint4 *)o)[i] = u;
  }
}

// out = act(y) + residual, y = a @ w^T + bias (f32); out F32 or BF16 (rounded once).
__device__ __forceinline__ float linear_epi_f(float v, int act, const float *res, int64_t i) {
  if (act >= 0) v = vlm_act_f(act, v);
  if (res) v = v + res[i];
  return v;
}

__global__ void linear_epi_k(float *out, __nv_bfloat16 *outh, const float *y, int act, const float *res, int64_t n) {
  GRID_STRIDE(i, n) {
    float v = linear_epi_f(y[i], act, res, i);
    if (outh) outh[i] = __float2bfloat16_rn(v);
    else out[i] = v;
  }
}

// The same, four elements a thread (n % 4 == 0, 16-byte aligned y, res and out;
// 8-byte aligned outh): one float4 load, one 8-byte bf16 store.
__global__ void linear_epi4_k(float *out, __nv_bfloat16 *outh, const float *y, int act, const float *res, int64_t n4) {
  GRID_STRIDE(i, n4) {
    float4 v = ((const float4 *)y)[i];
    v.x = linear_epi_f(v.x, act, res, 4 * i);
    v.y = linear_epi_f(v.y, act, res, 4 * i + 1);
    v.z = linear_epi_f(v.z, act, res, 4 * i + 2);
    v.w = linear_epi_f(v.w, act, res, 4 * i + 3);
    if (outh) ((uint2 *)outh)[i] = vlm_bf16x4(v);
    else ((float4 *)out)[i] = v;
  }
}

extern "C" void vlm_cuda_linear_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *w,
                                        const vlm_tensor *bias, const vlm_act *act, const vlm_tensor *residual,
                                        vlm_precision prec) {
  int64_t M, N, K;
  dims(a, w, 0, 1, &M, &N, &K);
  int bf = prec == VLM_PREC_BF16 || (a->dtype == VLM_BF16 && w->dtype == VLM_BF16);
  const void *A = operand("linear_forward", a, bf, 1);
  const void *B = operand("linear_forward", w, bf, 2);
  const float *bs = bias ? (const float *)bias->data : NULL;
  int f32_out = out->dtype == VLM_F32;
  if (f32_out && !act && !residual) {  // a plain Linear: the bias epilogue is all
    gemm("linear_forward", (float *)out->data, M, N, K, A, 0, B, 1, bf, bs, 0.0f);
    return;
  }
  if (f32_out && !act && residual->dtype == VLM_F32) {  // + residual: the GEMM's C input (beta 1)
    gemm_c("linear_forward", (float *)out->data, (const float *)residual->data, M, N, K, A, 0, B, 1, bf, bs, 1.0f);
    return;
  }
  // bf16 Linear + activation into bf16 (the MLP's fc in bf16 inference): the
  // GEMM writes the product as bf16, then bias and activation in place. The
  // product is rounded to bf16 once more than on the CPU (before the bias and
  // the exact-erf GELU, which cuBLASLt's tanh-form GELU epilogue is not), for a
  // write of half the bytes and no f32 intermediate (ViT-B/32's fc at batch 256:
  // 157 MB written and read less).
  if (!f32_out && act && !residual && bf && N % 8 == 0 && (((uintptr_t)out->data | (uintptr_t)bs) & 15) == 0 &&
      gemm_bf16_out("linear_forward", (__nv_bfloat16 *)out->data, M, N, K, A, B)) {
    if (M * N == 0) return;
    bias_act_bf16_k<<<vlm_blocks(M * N / 8, 256), 256>>>((__nv_bfloat16 *)out->data, bs, (int)*act, N, M * N / 8);
    LAUNCHED("linear_forward", "bias_act_bf16");
    return;
  }
  // The GEMM's f32 result: in out itself when out is F32 and not the residual, else in scratch.
  int in_place = f32_out && (!residual || residual->data != out->data);
  float *y = in_place ? (float *)out->data : (float *)vlm_cuda_scratch(4, sizeof(float) * (size_t)(M * N > 0 ? M * N : 1));
  gemm("linear_forward", y, M, N, K, A, 0, B, 1, bf, bs, 0.0f);
  if (M * N == 0) return;
  float *of = f32_out ? (float *)out->data : NULL;
  __nv_bfloat16 *oh = f32_out ? NULL : (__nv_bfloat16 *)out->data;
  const float *rs = residual ? (const float *)residual->data : NULL;
  int ac = act ? (int)*act : -1;
  uintptr_t al = (uintptr_t)y | (uintptr_t)rs | (uintptr_t)of;
  if ((M * N) % 4 == 0 && al % 16 == 0 && (uintptr_t)oh % 8 == 0) {
    linear_epi4_k<<<vlm_blocks(M * N / 4, 256), 256>>>(of, oh, y, ac, rs, M * N / 4);
    LAUNCHED("linear_forward", "linear_epilogue4");
  } else {
    linear_epi_k<<<vlm_blocks(M * N, 256), 256>>>(of, oh, y, ac, rs, M * N);
    LAUNCHED("linear_forward", "linear_epilogue");
  }
}
