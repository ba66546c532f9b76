/* The pre-LN transformer block shared by the vision and text towers
 * (open_clip's ResidualAttentionBlock), written once over the op set. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/block_stack.h"
#include "core/core.h"
#include "core/cpu/cpu.h"
#include "core/cuda/cuda.h"

void vlm_block_params_layout(vlm_block_params *p, vlm_arena *a, const vlm_block_config *c) {
  int64_t W = c->width, M = c->mlp_width;
  p->ln_1_w = vlm_arena_tensor1(a, VLM_F32, W);
  p->ln_1_b = vlm_arena_tensor1(a, VLM_F32, W);
  p->in_proj_w = vlm_arena_tensor2(a, VLM_F32, 3 * W, W);
  p->in_proj_b = vlm_arena_tensor1(a, VLM_F32, 3 * W);
  p->out_proj_w = vlm_arena_tensor2(a, VLM_F32, W, W);
  p->out_proj_b = vlm_arena_tensor1(a, VLM_F32, W);
  p->ln_2_w = vlm_arena_tensor1(a, VLM_F32, W);
  p->ln_2_b = vlm_arena_tensor1(a, VLM_F32, W);
  p->fc_w = vlm_arena_tensor2(a, VLM_F32, M, W);
  p->fc_b = vlm_arena_tensor1(a, VLM_F32, M);
  p->proj_w = vlm_arena_tensor2(a, VLM_F32, W, M);
  p->proj_b = vlm_arena_tensor1(a, VLM_F32, W);
}

void vlm_block_params_visit(vlm_block_params *p, vlm_param_visit_fn fn, void *ctx) {
  fn(ctx, "ln_1.weight", &p->ln_1_w);
  fn(ctx, "ln_1.bias", &p->ln_1_b);
  fn(ctx, "attn.in_proj_weight", &p->in_proj_w);
  fn(ctx, "attn.in_proj_bias", &p->in_proj_b);
  fn(ctx, "attn.out_proj.weight", &p->out_proj_w);
  fn(ctx, "attn.out_proj.bias", &p->out_proj_b);
  fn(ctx, "ln_2.weight", &p->ln_2_w);
  fn(ctx, "ln_2.bias", &p->ln_2_b);
  fn(ctx, "mlp.c_fc.weight", &p->fc_w);
  fn(ctx, "mlp.c_fc.bias", &p->fc_b);
  fn(ctx, "mlp.c_proj.weight", &p->proj_w);
  fn(ctx, "mlp.c_proj.bias", &p->proj_b);
}

typedef struct {
  vlm_param_visit_fn fn;
  void *ctx;
  const char *prefix;
} prefixed_visit;

static void visit_prefixed(void *ctx, const char *name, vlm_tensor *t) {
  prefixed_visit *p = ctx;
  char full[512];
  snprintf(full, sizeof full, "%s%s", p->prefix, name);
  p->fn(p->ctx, full, t);
}

void vlm_block_params_visit_prefixed(vlm_block_params *p, const char *prefix, vlm_param_visit_fn fn, void *ctx) {
  prefixed_visit pv = {fn, ctx, prefix};
  vlm_block_params_visit(p, visit_prefixed, &pv);
}

void *vlm_layers_calloc(int64_t layers, size_t size) { return calloc((size_t)(layers > 0 ? layers : 1), size); }

void vlm_param_visit_named(vlm_param_visit_fn fn, void *ctx, const char *prefix, const char *suffix, vlm_tensor *t) {
  char name[256];
  snprintf(name, sizeof name, "%s%s", prefix, suffix);
  fn(ctx, name, t);
}

void vlm_block_stack_params_visit(vlm_block_params *p, int64_t layers, const char *prefix, vlm_param_visit_fn fn,
                                  void *ctx) {
  for (int64_t i = 0; i < layers; i++) {
    char pre[200];
    snprintf(pre, sizeof pre, "%stransformer.resblocks.%lld.", prefix, (long long)i);
    vlm_block_params_visit_prefixed(&p[i], pre, fn, ctx);
  }
}

void vlm_block_stack_acts_layout(vlm_block_acts *s, vlm_arena *a, const vlm_block_config *c, int64_t layers,
                                 int64_t B, int64_t L, int with_backward) {
  for (int64_t i = 0; i < layers; i++) {
    if (with_backward || i == 0) {
      vlm_block_acts_layout(&s[i], a, c, B, L);
      s[i].forward_only = !with_backward;
    }
    else s[i] = s[0];
  }
}

void vlm_block_acts_layout(vlm_block_acts *s, vlm_arena *a, const vlm_block_config *c, int64_t B, int64_t L) {
  int64_t W = c->width, M = c->mlp_width, H = c->heads;
  s->ln_1 = vlm_arena_tensor3(a, VLM_F32, B, L, W);
  s->ln_1_mean = vlm_arena_tensor1(a, VLM_F32, B * L);
  s->ln_1_rstd = vlm_arena_tensor1(a, VLM_F32, B * L);
  s->qkv = vlm_arena_tensor3(a, VLM_F32, B, L, 3 * W);
  s->probs = vlm_arena_tensor4(a, VLM_F32, B, H, L, L);
  s->attn = vlm_arena_tensor3(a, VLM_F32, B, L, W);
  s->x1 = vlm_arena_tensor3(a, VLM_F32, B, L, W);
  s->ln_2 = vlm_arena_tensor3(a, VLM_F32, B, L, W);
  s->ln_2_mean = vlm_arena_tensor1(a, VLM_F32, B * L);
  s->ln_2_rstd = vlm_arena_tensor1(a, VLM_F32, B * L);
  s->fc = vlm_arena_tensor3(a, VLM_F32, B, L, M);
  s->act = vlm_arena_tensor3(a, VLM_F32, B, L, M);
  s->forward_only = 0;
}

void vlm_block_scratch_layout(vlm_block_scratch *s, vlm_arena *a, const vlm_block_config *c, int64_t B, int64_t L) {
  int64_t W = c->width, M = c->mlp_width;
  s->d_ln = vlm_arena_tensor3(a, VLM_F32, B, L, W);
  s->d_attn = vlm_arena_tensor3(a, VLM_F32, B, L, W);
  s->d_x1 = vlm_arena_tensor3(a, VLM_F32, B, L, W);
  s->d_qkv = vlm_arena_tensor3(a, VLM_F32, B, L, 3 * W);
  s->d_act = vlm_arena_tensor3(a, VLM_F32, B, L, M);
  s->d_fc = vlm_arena_tensor3(a, VLM_F32, B, L, M);
}

static float attn_scale(const vlm_block_config *c) { return 1.0f / sqrtf((float)(c->width / c->heads)); }

/* Activations may have been laid out for a larger batch or length than this
 * call uses: view the leading B*L rows with the call's shape. */
static vlm_tensor view3_at(const vlm_tensor *t, int64_t off, int64_t B, int64_t L, int64_t C);
static vlm_tensor view3(const vlm_tensor *t, int64_t B, int64_t L, int64_t C) { return view3_at(t, 0, B, L, C); }

static vlm_tensor view1(const vlm_tensor *t, int64_t n) {
  VLM_CHECK(vlm_numel(t) >= n, "block: statistics buffer too small");
  return vlm_tensor_make(t->data, t->dtype, t->device, 1, &n);
}

/* The saved activations viewed at this call's batch and length. */
typedef struct {
  vlm_tensor ln_1, qkv, attn, x1, ln_2, fc, act, m1, r1, m2, r2, probs;
} acts_view;

static acts_view view_acts(const vlm_block_config *c, const vlm_block_acts *s, int64_t B, int64_t L) {
  int64_t W = c->width, M = c->mlp_width;
  acts_view v;
  v.ln_1 = view3(&s->ln_1, B, L, W);
  v.qkv = view3(&s->qkv, B, L, 3 * W);
  v.attn = view3(&s->attn, B, L, W);
  v.x1 = view3(&s->x1, B, L, W);
  v.ln_2 = view3(&s->ln_2, B, L, W);
  v.fc = view3(&s->fc, B, L, M);
  v.act = view3(&s->act, B, L, M);
  v.m1 = view1(&s->ln_1_mean, B * L);
  v.r1 = view1(&s->ln_1_rstd, B * L);
  v.m2 = view1(&s->ln_2_mean, B * L);
  v.r2 = view1(&s->ln_2_rstd, B * L);
  int64_t pshape[4] = {B, c->heads, L, L};
  VLM_CHECK(vlm_numel(&s->probs) >= B * c->heads * L * L, "block: probs buffer too small");
  v.probs = vlm_tensor_make(s->probs.data, VLM_F32, s->probs.device, 4, pshape);
  return v;
}

/* The same memory as t, as a BF16 tensor of t's shape (half of t's bytes). */
static vlm_tensor as_bf16(const vlm_tensor *t) {
  return vlm_tensor_make(t->data, VLM_BF16, t->device, t->ndim, t->shape);
}

/* Training in bf16 matmul precision: the LayerNorm
 * outputs and the MLP activation are stored as bf16, since the matmuls that
 * read them (forward, and dB = A^T G in backward) round them to bf16 anyway:
 * the same results bit for bit, half the bytes written and read, and no
 * conversion pass before those matmuls. The f32 tensors the backward needs
 * (x, x1, fc) stay f32. The residual adds are fused into the out_proj and
 * c_proj GEMMs there too (vlm_linear_forward; on the CPU the same roundings
 * as matmul + add). vlm_block_train_bf16_acts(0) turns both off (tests
 * compare both ways). */
static int g_train_bf16_acts = 1;

void vlm_block_train_bf16_acts(int on);
void vlm_block_train_bf16_acts(int on) { g_train_bf16_acts = on; }

static void train_bf16_views(const vlm_block_params *p, acts_view *a) {
  if (!g_train_bf16_acts) return;
  (void)p;
  if (vlm_get_matmul_precision() != VLM_PREC_BF16) return;
  a->ln_1 = as_bf16(&a->ln_1);
  a->ln_2 = as_bf16(&a->ln_2);
  a->act = as_bf16(&a->act);
}

/* Inference: the same math with the bias, activation and residual adds fused
 * into the matmuls (vlm_linear_forward), attention without saved
 * probabilities, and, in bf16, the LayerNorm and MLP activations stored as
 * bf16 so the next matmul reads them without a conversion pass.
 * On CUDA in bf16 matmul precision the attention output is bf16 too: the
 * out_proj GEMM rounds its input to bf16 anyway, so the values are the same,
 * with half the bytes written and read and no conversion pass. (On the CPU
 * the attention kernel writes f32. qkv stays f32 everywhere: a bf16 qkv measured
 * slower on an H200, 0.116 against 0.073 ms at ViT-B/32 batch 256, the time of
 * the f32 GEMM plus a rounding pass, as if cuBLASLt had no bf16-output kernel
 * with an f32 bias; docs/PERFORMANCE.md.) */
static void block_forward_inference(const vlm_block_config *c, const vlm_block_params *p, const acts_view *a,
                                    vlm_tensor *y, const vlm_tensor *x, const vlm_tensor *key_padding_mask,
                                    int causal) {
  int64_t W = c->width;
  int bf16 = p->in_proj_w.dtype == VLM_BF16 || vlm_get_matmul_precision() == VLM_PREC_BF16;
  int bf16_attn = x->device == VLM_CUDA && vlm_get_matmul_precision() == VLM_PREC_BF16;
  vlm_tensor ln_1 = bf16 ? as_bf16(&a->ln_1) : a->ln_1, ln_2 = bf16 ? as_bf16(&a->ln_2) : a->ln_2;
  vlm_tensor act = bf16 ? as_bf16(&a->act) : a->act;
  vlm_tensor attn = bf16_attn ? as_bf16(&a->attn) : a->attn;
  vlm_layernorm_forward(&ln_1, NULL, NULL, x, &p->ln_1_w, &p->ln_1_b, c->ln_eps);
  vlm_matmul_forward((vlm_tensor *)&a->qkv, &ln_1, &p->in_proj_w, &p->in_proj_b, 0, 1);
  vlm_tensor q = vlm_narrow(&a->qkv, 2, 0, W), k = vlm_narrow(&a->qkv, 2, W, W), v = vlm_narrow(&a->qkv, 2, 2 * W, W);
  vlm_attention_forward(&attn, NULL, &q, &k, &v, (int)c->heads, key_padding_mask, causal, attn_scale(c));
  vlm_linear_forward((vlm_tensor *)&a->x1, &attn, &p->out_proj_w, &p->out_proj_b, NULL, x);
  vlm_layernorm_forward(&ln_2, NULL, NULL, &a->x1, &p->ln_2_w, &p->ln_2_b, c->ln_eps);
  vlm_linear_forward(&act, &ln_2, &p->fc_w, &p->fc_b, &c->act, NULL);
  vlm_linear_forward(y, &act, &p->proj_w, &p->proj_b, NULL, &a->x1);
}

/* A training block's forward after attention: x1 = resid + out_proj(attn),
 * then y = x1 + MLP(LayerNorm 2(x1)), saving x1, ln_2 and its statistics, fc
 * and act. In bf16 precision the residual adds ride in the GEMMs (the residual
 * as the GEMM's C input): one pass fewer over x1 and y each; fp32 is unchanged. */
static void train_forward_tail(const vlm_block_config *c, const vlm_block_params *p, const vlm_tensor *attn,
                               const vlm_tensor *resid, vlm_tensor *x1, vlm_tensor *ln_2, vlm_tensor *m2,
                               vlm_tensor *r2, vlm_tensor *fc, vlm_tensor *act, vlm_tensor *y) {
  int fuse_residual = g_train_bf16_acts && vlm_get_matmul_precision() == VLM_PREC_BF16;
  if (fuse_residual) {
    vlm_linear_forward(x1, attn, &p->out_proj_w, &p->out_proj_b, NULL, resid);
  } else {
    vlm_matmul_forward(x1, attn, &p->out_proj_w, &p->out_proj_b, 0, 1);
    vlm_add_forward(x1, x1, resid);
  }
  vlm_layernorm_forward(ln_2, m2, r2, x1, &p->ln_2_w, &p->ln_2_b, c->ln_eps);
  vlm_matmul_forward(fc, ln_2, &p->fc_w, &p->fc_b, 0, 1);
  vlm_act_forward(c->act, act, fc);
  if (fuse_residual) {
    vlm_linear_forward(y, act, &p->proj_w, &p->proj_b, NULL, x1);
  } else {
    vlm_matmul_forward(y, act, &p->proj_w, &p->proj_b, 0, 1);
    vlm_add_forward(y, y, x1);
  }
}

/* t's memory from element `off` on, viewed [B, L, C] (view3 is off 0; the
 * pooled-rows training path keeps its small tensors in the unused tails of the
 * full-size activation buffers). */
static vlm_tensor view3_at(const vlm_tensor *t, int64_t off, int64_t B, int64_t L, int64_t C) {
  int64_t shape[3] = {B, L, C};
  VLM_CHECK(vlm_is_contiguous(t) && vlm_numel(t) >= off + B * L * C, "block: activation buffer too small");
  return vlm_tensor_make((char *)t->data + off * (int64_t)vlm_dtype_size(t->dtype), t->dtype, t->device, 3, shape);
}

/* Where the pooled-rows training forward keeps what its backward reads: x [B,L,W] is
 * the block input, R = B chosen rows. All of it lives in s's buffers, laid out for
 * [B, L] rows: ln_1 [B,L,W] and its statistics as in the full block; k|v [B,L,2W] in
 * the first two thirds of qkv and the queries [R,1,W] after them; probs [R,H,1,L];
 * attn, x1, ln_2, fc, act at R rows; the chosen rows of x (forward only) in attn's
 * tail and their LayerNorm-1 (the queries' input) in ln_2's tail. */
typedef struct {
  vlm_tensor ln_1, m1, r1, kv, q, probs, attn, xr, lnq, x1, ln_2, m2, r2, fc, act;
} rows_view;

static rows_view view_rows(const vlm_block_config *c, const vlm_block_acts *s, int64_t B, int64_t L) {
  int64_t W = c->width, M = c->mlp_width, H = c->heads;
  rows_view v;
  v.ln_1 = view3(&s->ln_1, B, L, W);
  v.m1 = view1(&s->ln_1_mean, B * L);
  v.r1 = view1(&s->ln_1_rstd, B * L);
  v.kv = view3(&s->qkv, B, L, 2 * W);
  v.q = view3_at(&s->qkv, B * L * 2 * W, B, 1, W);
  int64_t pshape[4] = {B, H, 1, L};
  VLM_CHECK(vlm_numel(&s->probs) >= B * H * L, "block: probs buffer too small");
  v.probs = vlm_tensor_make(s->probs.data, VLM_F32, s->probs.device, 4, pshape);
  v.attn = view3(&s->attn, B, 1, W);
  v.xr = view3_at(&s->attn, B * W, B, 1, W);
  v.lnq = view3_at(&s->ln_2, B * W, B, 1, W);
  v.x1 = view3(&s->x1, B, 1, W);
  v.ln_2 = view3(&s->ln_2, B, 1, W);
  v.m2 = view1(&s->ln_2_mean, B);
  v.r2 = view1(&s->ln_2_rstd, B);
  v.fc = view3(&s->fc, B, 1, M);
  v.act = view3(&s->act, B, 1, M);
  if (g_train_bf16_acts && vlm_get_matmul_precision() == VLM_PREC_BF16) {
    v.ln_1 = as_bf16(&v.ln_1);
    v.lnq = as_bf16(&v.lnq);
    v.ln_2 = as_bf16(&v.ln_2);
    v.act = as_bf16(&v.act);
  }
  return v;
}

/* Training, the last block of a tower pooled at one row per batch entry: the
 * inference path's cut (keys and values over every row, the rest over the chosen
 * rows) with the activations its backward needs saved. Each op is the one
 * vlm_block_forward runs on those rows, so y is its rows up to the GEMMs'
 * rounding at another M. */
static void rows_forward_train(const vlm_block_config *c, const vlm_block_params *p, vlm_block_acts *s,
                               vlm_tensor *y, const vlm_tensor *x, const vlm_tensor *rows,
                               const vlm_tensor *key_padding_mask) {
  int64_t B = x->shape[0], L = x->shape[1], W = c->width;
  VLM_CHECK(L >= 2, "block: the pooled-rows training forward needs at least 2 rows per entry, got %lld",
            (long long)L);
  rows_view a = view_rows(c, s, B, L);
  vlm_layernorm_forward(&a.ln_1, &a.m1, &a.r1, x, &p->ln_1_w, &p->ln_1_b, c->ln_eps);
  vlm_tensor wkv = vlm_narrow(&p->in_proj_w, 0, W, 2 * W), bkv = vlm_narrow(&p->in_proj_b, 0, W, 2 * W);
  vlm_matmul_forward(&a.kv, &a.ln_1, &wkv, &bkv, 0, 1);
  vlm_tensor k = vlm_narrow(&a.kv, 2, 0, W), v = vlm_narrow(&a.kv, 2, W, W);

  int64_t tshape[2] = {B * L, W};
  vlm_tensor table = vlm_tensor_make(x->data, VLM_F32, x->device, 2, tshape);
  vlm_embedding_forward(&a.xr, rows, &table, NULL);
  vlm_layernorm_forward(&a.lnq, NULL, NULL, &a.xr, &p->ln_1_w, &p->ln_1_b, c->ln_eps);
  vlm_tensor wq = vlm_narrow(&p->in_proj_w, 0, 0, W), bq = vlm_narrow(&p->in_proj_b, 0, 0, W);
  vlm_matmul_forward(&a.q, &a.lnq, &wq, &bq, 0, 1);
  vlm_attention_forward(&a.attn, &a.probs, &a.q, &k, &v, (int)c->heads, key_padding_mask, 0, attn_scale(c));
  train_forward_tail(c, p, &a.attn, &a.xr, &a.x1, &a.ln_2, &a.m2, &a.r2, &a.fc, &a.act, y);
}

/* The last block of a tower whose output is pooled at one row per batch entry
 * (inference; with training activations, rows_forward_train above). Keys and
 * values need every row, so LayerNorm 1 and the qkv matmul run over all of x; the query, attention, out_proj, LayerNorm 2
 * and the MLP run over the B chosen rows only. Row-wise ops, so each chosen
 * row equals vlm_block_forward's row up to the GEMMs' rounding at another M.
 * Buffers: the chosen x rows in ln_1's (free after the qkv matmul), their
 * LayerNorm-1 in ln_2's, the queries in act's, then attn, x1, ln_2 and act as
 * in block_forward_inference, each at B rows. */
void vlm_block_forward_rows(const vlm_block_config *c, const vlm_block_params *p, vlm_block_acts *s,
                            vlm_tensor *y, const vlm_tensor *x, const vlm_tensor *rows,
                            const vlm_tensor *key_padding_mask) {
  char sh[128];
  VLM_CHECK(x->ndim == 3 && x->shape[2] == c->width && x->dtype == VLM_F32 && vlm_is_contiguous(x),
            "block: x is %s, expected contiguous [B, L, %lld] F32", vlm_shape_str(x, sh, sizeof sh),
            (long long)c->width);
  int64_t B = x->shape[0], L = x->shape[1], W = c->width;
  VLM_CHECK(y->ndim == 3 && y->shape[0] == B && y->shape[1] == 1 && y->shape[2] == W && y->dtype == VLM_F32 &&
                vlm_is_contiguous(y),
            "block: y is %s, expected [%lld, 1, %lld] F32", vlm_shape_str(y, sh, sizeof sh), (long long)B,
            (long long)W);
  VLM_CHECK(rows->ndim == 2 && rows->shape[0] == B && rows->shape[1] == 1, "block: rows is %s, expected [%lld, 1]",
            vlm_shape_str(rows, sh, sizeof sh), (long long)B);
  if (!s->forward_only) {
    rows_forward_train(c, p, s, y, x, rows, key_padding_mask);
    return;
  }
  acts_view a = view_acts(c, s, B, L);
  int bf16 = p->in_proj_w.dtype == VLM_BF16 || vlm_get_matmul_precision() == VLM_PREC_BF16;
  vlm_tensor ln_1 = bf16 ? as_bf16(&a.ln_1) : a.ln_1;
  vlm_layernorm_forward(&ln_1, NULL, NULL, x, &p->ln_1_w, &p->ln_1_b, c->ln_eps);
  vlm_matmul_forward(&a.qkv, &ln_1, &p->in_proj_w, &p->in_proj_b, 0, 1);
  vlm_tensor k = vlm_narrow(&a.qkv, 2, W, W), v = vlm_narrow(&a.qkv, 2, 2 * W, W);

  int64_t tshape[2] = {B * L, W};
  vlm_tensor xr = view3(&s->ln_1, B, 1, W), table = vlm_tensor_make(x->data, VLM_F32, x->device, 2, tshape);
  vlm_embedding_forward(&xr, rows, &table, NULL);
  vlm_tensor lnq = view3(&s->ln_2, B, 1, W);
  if (bf16) lnq = as_bf16(&lnq);
  vlm_layernorm_forward(&lnq, NULL, NULL, &xr, &p->ln_1_w, &p->ln_1_b, c->ln_eps);
  vlm_tensor wq = vlm_narrow(&p->in_proj_w, 0, 0, W), bq = vlm_narrow(&p->in_proj_b, 0, 0, W);
  vlm_tensor q = view3(&s->act, B, 1, W);
  vlm_matmul_forward(&q, &lnq, &wq, &bq, 0, 1);

  vlm_tensor attn = view3(&s->attn, B, 1, W), x1 = view3(&s->x1, B, 1, W);
  vlm_attention_forward(&attn, NULL, &q, &k, &v, (int)c->heads, key_padding_mask, 0, attn_scale(c));
  vlm_linear_forward(&x1, &attn, &p->out_proj_w, &p->out_proj_b, NULL, &xr);
  vlm_tensor ln_2 = view3(&s->ln_2, B, 1, W), act = view3(&s->act, B, 1, c->mlp_width);
  if (bf16) ln_2 = as_bf16(&ln_2), act = as_bf16(&act);
  vlm_layernorm_forward(&ln_2, NULL, NULL, &x1, &p->ln_2_w, &p->ln_2_b, c->ln_eps);
  vlm_linear_forward(&act, &ln_2, &p->fc_w, &p->fc_b, &c->act, NULL);
  vlm_linear_forward(y, &act, &p->proj_w, &p->proj_b, NULL, &x1);
}

void vlm_block_forward(const vlm_block_config *c, const vlm_block_params *p, vlm_block_acts *s,
                       vlm_tensor *y, const vlm_tensor *x, const vlm_tensor *key_padding_mask, int causal) {
  VLM_CHECK(x->ndim == 3 && x->shape[2] == c->width && vlm_same_shape(x, y), "block: x and y must be [B, L, W]");
  VLM_CHECK(x->data != y->data, "block: y must not alias x");
  int64_t W = c->width;
  acts_view a = view_acts(c, s, x->shape[0], x->shape[1]);
  if (s->forward_only) {
    block_forward_inference(c, p, &a, y, x, key_padding_mask, causal);
    return;
  }

  train_bf16_views(p, &a);
  vlm_layernorm_forward(&a.ln_1, &a.m1, &a.r1, x, &p->ln_1_w, &p->ln_1_b, c->ln_eps);
  vlm_matmul_forward(&a.qkv, &a.ln_1, &p->in_proj_w, &p->in_proj_b, 0, 1);
  vlm_tensor q = vlm_narrow(&a.qkv, 2, 0, W), k = vlm_narrow(&a.qkv, 2, W, W), v = vlm_narrow(&a.qkv, 2, 2 * W, W);
  vlm_attention_forward(&a.attn, &a.probs, &q, &k, &v, (int)c->heads, key_padding_mask, causal, attn_scale(c));
  train_forward_tail(c, p, &a.attn, x, &a.x1, &a.ln_2, &a.m2, &a.r2, &a.fc, &a.act, y);
}

/* Gradient scratch written by one op, not accumulated: on CUDA and with the
 * fast CPU kernels the matmul's da (GEMM beta 0) and the activation's dx are
 * written directly, so the buffer is never zeroed; with the reference kernels
 * zero, then the accumulating op. The block builds these views itself, so the
 * dispatcher's checks are repeated only where the shapes could differ.
 * Returns the backend that writes (VLM_CUDA or VLM_CPU), or -1 (zero + accumulate). */
static int set_backend(const vlm_tensor *t0, const vlm_tensor *t1, const vlm_tensor *t2, const vlm_tensor *t3) {
  vlm_device d = t0->device;
  if (t1->device != d || t2->device != d || (t3 && t3->device != d)) return -1;
  if (d == VLM_CUDA) return VLM_CUDA;
  return vlm_get_kernel_mode() == VLM_KERNELS_FAST ? VLM_CPU : -1;
}

static void matmul_backward_set(vlm_tensor *da, vlm_tensor *db, vlm_tensor *dbias, const vlm_tensor *dout,
                                const vlm_tensor *a, const vlm_tensor *b) {
  int be = set_backend(da, a, b, dout);
  if (be < 0) {
    vlm_zero(da);
    vlm_matmul_backward(da, db, dbias, dout, a, b, 0, 1);
    return;
  }
  VLM_CHECK(vlm_same_shape(da, a) && da->dtype == VLM_F32 && dout->dtype == VLM_F32 &&
                vlm_cols(dout) == b->shape[0] && vlm_cols(a) == b->shape[1],
            "block: matmul backward shapes");
  if (be == VLM_CUDA) vlm_cuda_matmul_backward_set(da, db, dbias, dout, a, b, 0, 1, vlm_get_matmul_precision());
  else vlm_cpu_matmul_backward_set(da, db, dbias, dout, a, b, 0, 1, vlm_get_matmul_precision());
}

static void act_backward_set(vlm_act act, vlm_tensor *dx, const vlm_tensor *dout, const vlm_tensor *x) {
  int be = set_backend(dx, dout, x, NULL);
  if (be < 0) {
    vlm_zero(dx);
    vlm_act_backward(act, dx, dout, x);
    return;
  }
  VLM_CHECK(vlm_same_shape(dx, x) && vlm_same_shape(dout, x), "block: act backward shapes");
  if (be == VLM_CUDA) vlm_cuda_act_backward_set(act, dx, dout, x);
  else vlm_cpu_act_backward_set(act, dx, dout, x);
}

/* dq, dk, dv (views that together cover `all`, and `all2` when not NULL) written
 * by the attention backward: on CUDA where the tensor-core kernel applies,
 * directly (no zeroing pass); else `all` (and `all2`) are zeroed and the
 * accumulating op runs. */
static void attention_backward_set(vlm_tensor *all, vlm_tensor *all2, vlm_tensor *dq, vlm_tensor *dk,
                                   vlm_tensor *dv, const vlm_tensor *dout, const vlm_tensor *probs,
                                   const vlm_tensor *q, const vlm_tensor *k, const vlm_tensor *v, int heads,
                                   float scale) {
  if (set_backend(all, dout, probs, q) == VLM_CUDA && set_backend(all, k, v, all2) == VLM_CUDA &&
      vlm_cuda_attention_backward_set(dq, dk, dv, dout, probs, q, k, v, heads, scale))
    return;
  vlm_zero(all);
  if (all2) vlm_zero(all2);
  vlm_attention_backward(dq, dk, dv, dout, probs, q, k, v, heads, scale);
}

/* dx_set: dx is written (=) rather than accumulated (+=), so the caller need
 * not zero it first (the stack backward's ping-pong buffers). */
static void block_backward(const vlm_block_config *c, const vlm_block_params *p, vlm_block_params *g,
                           const vlm_block_acts *s, vlm_block_scratch *scr, vlm_tensor *dx, const vlm_tensor *dy,
                           const vlm_tensor *x, int dx_set) {
  VLM_CHECK(x->ndim == 3 && vlm_same_shape(x, dy) && vlm_same_shape(x, dx), "block backward: shapes differ");
  int64_t B = x->shape[0], L = x->shape[1], W = c->width, M = c->mlp_width;
  acts_view a = view_acts(c, s, B, L);
  train_bf16_views(p, &a);
  vlm_tensor d_ln = view3(&scr->d_ln, B, L, W), d_attn = view3(&scr->d_attn, B, L, W);
  vlm_tensor d_x1 = view3(&scr->d_x1, B, L, W), d_qkv = view3(&scr->d_qkv, B, L, 3 * W);
  vlm_tensor d_act = view3(&scr->d_act, B, L, M), d_fc = view3(&scr->d_fc, B, L, M);

  /* MLP branch: y = x1 + proj(act(fc(ln_2(x1)))) */
  matmul_backward_set(&d_act, &g->proj_w, &g->proj_b, dy, &a.act, &p->proj_w);
  act_backward_set(c->act, &d_fc, &d_act, &a.fc);
  matmul_backward_set(&d_ln, &g->fc_w, &g->fc_b, &d_fc, &a.ln_2, &p->fc_w);
  vlm_copy(&d_x1, dy);
  vlm_layernorm_backward(&d_x1, &g->ln_2_w, &g->ln_2_b, &d_ln, &a.x1, &p->ln_2_w, &a.m2, &a.r2);

  /* Attention branch: x1 = x + out_proj(attn(ln_1(x))) */
  if (dx_set) vlm_copy(dx, &d_x1); /* dx's first write: = instead of zero, then += */
  else vlm_add_backward(dx, NULL, &d_x1);
  matmul_backward_set(&d_attn, &g->out_proj_w, &g->out_proj_b, &d_x1, &a.attn, &p->out_proj_w);
  vlm_tensor q = vlm_narrow(&a.qkv, 2, 0, W), k = vlm_narrow(&a.qkv, 2, W, W), v = vlm_narrow(&a.qkv, 2, 2 * W, W);
  vlm_tensor dq = vlm_narrow(&d_qkv, 2, 0, W), dk = vlm_narrow(&d_qkv, 2, W, W), dv = vlm_narrow(&d_qkv, 2, 2 * W, W);
  attention_backward_set(&d_qkv, NULL, &dq, &dk, &dv, &d_attn, &a.probs, &q, &k, &v, (int)c->heads, attn_scale(c));
  matmul_backward_set(&d_ln, &g->in_proj_w, &g->in_proj_b, &d_qkv, &a.ln_1, &p->in_proj_w);
  vlm_layernorm_backward(dx, &g->ln_1_w, &g->ln_1_b, &d_ln, x, &p->ln_1_w, &a.m1, &a.r1);
}

void vlm_block_backward_rows(const vlm_block_config *c, const vlm_block_params *p, vlm_block_params *g,
                             const vlm_block_acts *s, vlm_block_scratch *scr, vlm_tensor *dx, const vlm_tensor *dy,
                             const vlm_tensor *x, const vlm_tensor *rows) {
  char sh[128];
  VLM_CHECK(!s->forward_only, "block: these activations were laid out for inference only");
  VLM_CHECK(x->ndim == 3 && vlm_same_shape(x, dx), "block backward (rows): x and dx must be the same [B, L, W]");
  int64_t B = x->shape[0], L = x->shape[1], W = c->width, M = c->mlp_width;
  VLM_CHECK(dy->ndim == 3 && dy->shape[0] == B && dy->shape[1] == 1 && dy->shape[2] == W,
            "block backward (rows): dy is %s, expected [%lld, 1, %lld]", vlm_shape_str(dy, sh, sizeof sh),
            (long long)B, (long long)W);
  rows_view a = view_rows(c, s, B, L);
  vlm_tensor d_act = view3(&scr->d_act, B, 1, M), d_fc = view3(&scr->d_fc, B, 1, M);
  vlm_tensor d_ln2 = view3(&scr->d_ln, B, 1, W), d_lnq = view3_at(&scr->d_ln, B * W, B, 1, W);
  vlm_tensor d_x1 = view3(&scr->d_x1, B, 1, W), d_attn = view3(&scr->d_attn, B, 1, W);
  vlm_tensor d_kv = view3(&scr->d_qkv, B, L, 2 * W), dq = view3_at(&scr->d_qkv, B * L * 2 * W, B, 1, W);
  int64_t tshape[2] = {B * L, W};

  /* MLP branch and LayerNorm 2, at the chosen rows */
  matmul_backward_set(&d_act, &g->proj_w, &g->proj_b, dy, &a.act, &p->proj_w);
  act_backward_set(c->act, &d_fc, &d_act, &a.fc);
  matmul_backward_set(&d_ln2, &g->fc_w, &g->fc_b, &d_fc, &a.ln_2, &p->fc_w);
  vlm_copy(&d_x1, dy);
  vlm_layernorm_backward(&d_x1, &g->ln_2_w, &g->ln_2_b, &d_ln2, &a.x1, &p->ln_2_w, &a.m2, &a.r2);

  /* the residual: dx = d_x1 at the chosen rows, zero elsewhere */
  vlm_zero(dx);
  vlm_tensor dx_table = vlm_tensor_make(dx->data, VLM_F32, dx->device, 2, tshape);
  vlm_embedding_backward(&dx_table, NULL, &d_x1, rows);

  /* attention: queries at the chosen rows, keys and values over all of them */
  matmul_backward_set(&d_attn, &g->out_proj_w, &g->out_proj_b, &d_x1, &a.attn, &p->out_proj_w);
  vlm_tensor k = vlm_narrow(&a.kv, 2, 0, W), v = vlm_narrow(&a.kv, 2, W, W);
  vlm_tensor dk = vlm_narrow(&d_kv, 2, 0, W), dv = vlm_narrow(&d_kv, 2, W, W);
  attention_backward_set(&d_kv, &dq, &dq, &dk, &dv, &d_attn, &a.probs, &a.q, &k, &v, (int)c->heads,
                         attn_scale(c));
  vlm_tensor wq = vlm_narrow(&p->in_proj_w, 0, 0, W), wkv = vlm_narrow(&p->in_proj_w, 0, W, 2 * W);
  vlm_tensor gwq = vlm_narrow(&g->in_proj_w, 0, 0, W), gbq = vlm_narrow(&g->in_proj_b, 0, 0, W);
  vlm_tensor gwkv = vlm_narrow(&g->in_proj_w, 0, W, 2 * W), gbkv = vlm_narrow(&g->in_proj_b, 0, W, 2 * W);
  matmul_backward_set(&d_lnq, &gwq, &gbq, &dq, &a.lnq, &wq);
  /* d ln_1 over all rows (d_attn's buffer, free now), the queries' part added at theirs */
  vlm_tensor d_ln1 = view3(&scr->d_attn, B, L, W);
  matmul_backward_set(&d_ln1, &gwkv, &gbkv, &d_kv, &a.ln_1, &wkv);
  vlm_tensor d_ln1_table = vlm_tensor_make(d_ln1.data, VLM_F32, d_ln1.device, 2, tshape);
  vlm_embedding_backward(&d_ln1_table, NULL, &d_lnq, rows);
  vlm_layernorm_backward(dx, &g->ln_1_w, &g->ln_1_b, &d_ln1, x, &p->ln_1_w, &a.m1, &a.r1);
}

void vlm_block_backward(const vlm_block_config *c, const vlm_block_params *p, vlm_block_params *g,
                        const vlm_block_acts *s, vlm_block_scratch *scr, vlm_tensor *dx,
                        const vlm_tensor *dy, const vlm_tensor *x, int causal) {
  (void)causal; /* the mask lives in the saved probabilities */
  block_backward(c, p, g, s, scr, dx, dy, x, 0);
}

void vlm_block_stack_forward(const vlm_block_config *c, const vlm_block_params *p, vlm_block_acts *s,
                             vlm_tensor *xs, int64_t n, const vlm_tensor *key_padding_mask, int causal) {
  for (int64_t i = 0; i < n; i++) vlm_block_forward(c, &p[i], &s[i], &xs[i + 1], &xs[i], key_padding_mask, causal);
}

vlm_tensor *vlm_block_stack_backward(const vlm_block_config *c, const vlm_block_params *p, vlm_block_params *g,
                                     const vlm_block_acts *s, vlm_block_scratch *scr, const vlm_tensor *xs,
                                     int64_t n, int causal, vlm_tensor *dy, vlm_tensor *tmp) {
  (void)causal;
  for (int64_t i = n - 1; i >= 0; i--) {
    block_backward(c, &p[i], &g[i], &s[i], scr, tmp, dy, &xs[i], 1);
    vlm_tensor *t = dy;
    dy = tmp;
    tmp = t;
  }
  return dy;
}
