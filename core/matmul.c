/* matmul: out[M,N] = op(a) @ op(b) (+ bias[N]) and its backward. Checks the
 * shapes, dtypes and devices, then runs the reference or the fast CPU kernel
 * at the calling thread's matmul precision (vlm_get_matmul_precision). */
#include "core/core.h"
#include "core/cpu/cpu.h"
#include "core/cuda/cuda.h"
#include "core/ref/ref.h"

/* Rows of a [*,K] tensor: the product of its leading dims (also when K = 0). */
static int64_t lead_rows(const vlm_tensor *t) {
  int64_t r = 1;
  for (int i = 0; i + 1 < t->ndim; i++) r *= t->shape[i];
  return r;
}

static int is_float_input(const vlm_tensor *t) { return t->dtype == VLM_F32 || t->dtype == VLM_BF16; }

/* Checks a and b and returns M, N, K. */
static void check_inputs(const char *what, const vlm_tensor *a, const vlm_tensor *b, int trans_a,
                         int trans_b, int64_t *M, int64_t *N, int64_t *K) {
  char s1[96], s2[96];
  VLM_CHECK(a && b, "%s: a and b are required", what);
  VLM_CHECK(is_float_input(a) && is_float_input(b), "%s: a %s, b %s: inputs must be F32 or BF16",
            what, vlm_shape_str(a, s1, sizeof s1), vlm_shape_str(b, s2, sizeof s2));
  VLM_CHECK(vlm_is_contiguous(a) && vlm_is_contiguous(b), "%s: inputs must be contiguous", what);
  VLM_CHECK(b->ndim == 2, "%s: b %s must be 2-d", what, vlm_shape_str(b, s2, sizeof s2));
  if (trans_a) {
    VLM_CHECK(a->ndim == 2, "%s: with trans_a, a %s must be 2-d [K,M]", what, vlm_shape_str(a, s1, sizeof s1));
    *K = a->shape[0];
    *M = a->shape[1];
  } else {
    VLM_CHECK(a->ndim >= 1, "%s: a must have at least one dim", what);
    *K = vlm_cols(a);
    *M = lead_rows(a);
  }
  int64_t bk = trans_b ? b->shape[1] : b->shape[0];
  *N = trans_b ? b->shape[0] : b->shape[1];
  VLM_CHECK(bk == *K, "%s: inner dims differ: a %s%s, b %s%s", what, vlm_shape_str(a, s1, sizeof s1),
            trans_a ? " (transposed)" : "", vlm_shape_str(b, s2, sizeof s2), trans_b ? " (transposed)" : "");
}

/* t is a contiguous F32 tensor on dev with `rows` rows of `cols` (any leading dims). */
static void check_f32(const char *what, const char *name, const vlm_tensor *t, vlm_device dev,
                      int64_t rows, int64_t cols) {
  char s[96];
  VLM_CHECK(t->dtype == VLM_F32, "%s: %s %s must be F32", what, name, vlm_shape_str(t, s, sizeof s));
  VLM_CHECK(t->device == dev, "%s: %s is on another device than the inputs", what, name);
  VLM_CHECK(vlm_is_contiguous(t), "%s: %s must be contiguous", what, name);
  VLM_CHECK(t->ndim >= 1 && vlm_cols(t) == cols && lead_rows(t) == rows,
            "%s: %s %s, expected %lld rows of %lld", what, name, vlm_shape_str(t, s, sizeof s),
            (long long)rows, (long long)cols);
}

static void check_bias(const char *what, const char *name, const vlm_tensor *t, vlm_device dev, int64_t N) {
  char s[96];
  check_f32(what, name, t, dev, 1, N);
  VLM_CHECK(t->ndim == 1, "%s: %s %s must be [%lld]", what, name, vlm_shape_str(t, s, sizeof s), (long long)N);
}

/* A gradient has the shape of its input (same dims), F32. */
static void check_grad(const char *what, const char *name, const vlm_tensor *g, const vlm_tensor *x) {
  char s1[96], s2[96];
  check_f32(what, name, g, x->device, lead_rows(x), vlm_cols(x));
  VLM_CHECK(vlm_same_shape(g, x), "%s: %s %s differs from its input %s", what, name,
            vlm_shape_str(g, s1, sizeof s1), vlm_shape_str(x, s2, sizeof s2));
}

void vlm_matmul_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *b,
                        const vlm_tensor *bias, int trans_a, int trans_b) {
  const char *what = "matmul_forward";
  int64_t M, N, K;
  check_inputs(what, a, b, trans_a, trans_b, &M, &N, &K);
  VLM_CHECK(b->device == a->device, "%s: a and b are on different devices", what);
  VLM_CHECK(out, "%s: out is required", what);
  check_f32(what, "out", out, a->device, M, N);
  if (bias) check_bias(what, "bias", bias, a->device, N);
  VLM_CHECK(!out->data || (out->data != a->data && out->data != b->data),
            "%s: out must not alias an input", what);
  if (a->device == VLM_CUDA)
    vlm_cuda_matmul_forward(out, a, b, bias, trans_a, trans_b, vlm_get_matmul_precision());
  else if (vlm_get_kernel_mode() == VLM_KERNELS_REF)
    vlm_ref_matmul_forward(out, a, b, bias, trans_a, trans_b, vlm_get_matmul_precision());
  else
    vlm_cpu_matmul_forward(out, a, b, bias, trans_a, trans_b, vlm_get_matmul_precision());
}

void vlm_matmul_backward(vlm_tensor *da, vlm_tensor *db, vlm_tensor *dbias, const vlm_tensor *dout,
                         const vlm_tensor *a, const vlm_tensor *b, int trans_a, int trans_b) {
  const char *what = "matmul_backward";
  int64_t M, N, K;
  check_inputs(what, a, b, trans_a, trans_b, &M, &N, &K);
  VLM_CHECK(b->device == a->device, "%s: a and b are on different devices", what);
  VLM_CHECK(dout, "%s: dout is required", what);
  check_f32(what, "dout", dout, a->device, M, N);
  if (da) check_grad(what, "da", da, a);
  if (db) check_grad(what, "db", db, b);
  if (dbias) check_bias(what, "dbias", dbias, a->device, N);
  if (!da && !db && !dbias) return;
  if (a->device == VLM_CUDA)
    vlm_cuda_matmul_backward(da, db, dbias, dout, a, b, trans_a, trans_b, vlm_get_matmul_precision());
  else if (vlm_get_kernel_mode() == VLM_KERNELS_REF)
    vlm_ref_matmul_backward(da, db, dbias, dout, a, b, trans_a, trans_b, vlm_get_matmul_precision());
  else
    vlm_cpu_matmul_backward(da, db, dbias, dout, a, b, trans_a, trans_b, vlm_get_matmul_precision());
}

void vlm_linear_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *w, const vlm_tensor *bias,
                        const vlm_act *act, const vlm_tensor *residual) {
  const char *what = "linear_forward";
  int64_t M, N, K;
  char s[96];
  check_inputs(what, a, w, 0, 1, &M, &N, &K);
  VLM_CHECK(w->device == a->device, "%s: a and w are on different devices", what);
  VLM_CHECK(out, "%s: out is required", what);
  VLM_CHECK(out->dtype == VLM_F32 || out->dtype == VLM_BF16, "%s: out %s must be F32 or BF16", what,
            vlm_shape_str(out, s, sizeof s));
  VLM_CHECK(out->device == a->device && vlm_is_contiguous(out) && out->ndim >= 1 && vlm_cols(out) == N &&
                lead_rows(out) == M,
            "%s: out %s, expected %lld rows of %lld", what, vlm_shape_str(out, s, sizeof s), (long long)M,
            (long long)N);
  if (bias) check_bias(what, "bias", bias, a->device, N);
  if (residual) check_f32(what, "residual", residual, a->device, M, N);
  VLM_CHECK(!act || *act == VLM_ACT_GELU || *act == VLM_ACT_QUICK_GELU, "%s: unknown activation", what);
  VLM_CHECK(out->data != a->data && out->data != w->data, "%s: out must not alias an input", what);
  if (a->device == VLM_CUDA)
    vlm_cuda_linear_forward(out, a, w, bias, act, residual, vlm_get_matmul_precision());
  else if (vlm_get_kernel_mode() == VLM_KERNELS_REF)
    vlm_ref_linear_forward(out, a, w, bias, act, residual, vlm_get_matmul_precision());
  else
    vlm_cpu_linear_forward(out, a, w, bias, act, residual, vlm_get_matmul_precision());
}

/* b as the forward GEMM sees it: [K,N] with strides (N,1), or (1,K) when stored [N,K]. */
void vlm_matmul_pack(const vlm_tensor *w, int trans_b) {
  VLM_CHECK(w && w->ndim == 2 && vlm_is_contiguous(w) && (w->dtype == VLM_F32 || w->dtype == VLM_BF16),
            "matmul_pack: w must be a contiguous 2-d F32 or BF16 tensor");
  if (w->device != VLM_CPU) return;
  int64_t K = trans_b ? w->shape[1] : w->shape[0], N = trans_b ? w->shape[0] : w->shape[1];
  vlm_cpu_matmul_pack(w->data, K, N, trans_b ? 1 : N, trans_b ? K : 1, w->dtype);
}

void vlm_matmul_unpack(const vlm_tensor *w) {
  if (w && w->device == VLM_CPU && w->data) vlm_cpu_matmul_unpack_range(w->data, 1);
}
