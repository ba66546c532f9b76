/* The cross-attention block (open_clip's ResidualAttentionBlock with
 * is_cross_attention): queries from the text stream, keys and values from
 * the image tokens through their own LayerNorm ln_1_kv. */
#include <math.h>
#include <stdio.h>

#include "fusion/fusion.h"

void vlm_cross_params_layout(vlm_cross_params *p, vlm_arena *a, const vlm_block_config *c) {
  vlm_block_params_layout(&p->b, a, c);
  p->ln_1_kv_w = vlm_arena_tensor1(a, VLM_F32, c->width);
  p->ln_1_kv_b = vlm_arena_tensor1(a, VLM_F32, c->width);
}

void vlm_cross_params_visit_prefixed(vlm_cross_params *p, const char *prefix, vlm_param_visit_fn fn, void *ctx) {
  vlm_block_params_visit_prefixed(&p->b, prefix, fn, ctx);
  char name[512];
  snprintf(name, sizeof name, "%sln_1_kv.weight", prefix);
  fn(ctx, name, &p->ln_1_kv_w);
  snprintf(name, sizeof name, "%sln_1_kv.bias", prefix);
  fn(ctx, name, &p->ln_1_kv_b);
}

void vlm_cross_acts_layout(vlm_cross_acts *s, vlm_arena *a, const vlm_block_config *c, int64_t B, int64_t L,
                           int64_t N, int with_probs) {
  int64_t W = c->width, M = c->mlp_width;
  s->ln_1 = vlm_arena_tensor3(a, VLM_F32, B, L, W);
  s->ln_1_mean = vlm_arena_tensor1(a, VLM_F32, B * L);
  s->ln_1_rstd = vlm_arena_tensor1(a, VLM_F32, B * L);
  s->kvn = vlm_arena_tensor3(a, VLM_F32, B, N, W);
  s->kvn_mean = vlm_arena_tensor1(a, VLM_F32, B * N);
  s->kvn_rstd = vlm_arena_tensor1(a, VLM_F32, B * N);
  s->q = vlm_arena_tensor3(a, VLM_F32, B, L, W);
  s->kv = vlm_arena_tensor3(a, VLM_F32, B, N, 2 * W);
  if (with_probs) s->probs = vlm_arena_tensor4(a, VLM_F32, B, c->heads, L, N);
  else s->probs.data = NULL;
  s->attn = vlm_arena_tensor3(a, VLM_F32, B, L, W);
  s->x1 = vlm_arena_tensor3(a, VLM_F32, B, L, W);
  s->ln_2 = vlm_arena_tensor3(a, VLM_F32, B, L, W);
  s->ln_2_mean = vlm_arena_tensor1(a, VLM_F32, B * L);
  s->ln_2_rstd = vlm_arena_tensor1(a, VLM_F32, B * L);
  s->fc = vlm_arena_tensor3(a, VLM_F32, B, L, M);
  s->act = vlm_arena_tensor3(a, VLM_F32, B, L, M);
}

void vlm_cross_scratch_layout(vlm_cross_scratch *s, vlm_arena *a, const vlm_block_config *c, int64_t B, int64_t L,
                              int64_t N) {
  int64_t W = c->width, M = c->mlp_width;
  s->d_ln = vlm_arena_tensor3(a, VLM_F32, B, L, W);
  s->d_attn = vlm_arena_tensor3(a, VLM_F32, B, L, W);
  s->d_x1 = vlm_arena_tensor3(a, VLM_F32, B, L, W);
  s->d_q = vlm_arena_tensor3(a, VLM_F32, B, L, W);
  s->d_kv = vlm_arena_tensor3(a, VLM_F32, B, N, 2 * W);
  s->d_kvn = vlm_arena_tensor3(a, VLM_F32, B, N, W);
  s->d_act = vlm_arena_tensor3(a, VLM_F32, B, L, M);
  s->d_fc = vlm_arena_tensor3(a, VLM_F32, B, L, M);
}

static float attn_scale(const vlm_block_config *c) { return 1.0f / sqrtf((float)(c->width / c->heads)); }

/* Rows [r0, r0+n) of a 2-d weight [R, C] or a 1-d bias: contiguous views. */
static vlm_tensor rows(const vlm_tensor *t, int64_t r0, int64_t n) { return vlm_narrow(t, 0, r0, n); }

void vlm_cross_kv(const vlm_block_config *c, const vlm_cross_params *p, vlm_tensor *kv, vlm_tensor *kvn,
                  vlm_tensor *mean, vlm_tensor *rstd, const vlm_tensor *img) {
  int64_t W = c->width;
  VLM_CHECK(img->ndim == 3 && img->shape[2] == W, "cross: image tokens must be [B, N, %lld]", (long long)W);
  VLM_CHECK(kvn, "cross_kv: kvn buffer required");
  vlm_layernorm_forward(kvn, mean, rstd, img, &p->ln_1_kv_w, &p->ln_1_kv_b, c->ln_eps);
  vlm_tensor wkv = rows(&p->b.in_proj_w, W, 2 * W), bkv = rows(&p->b.in_proj_b, W, 2 * W);
  vlm_matmul_forward(kv, kvn, &wkv, &bkv, 0, 1);
}

void vlm_cross_forward(const vlm_block_config *c, const vlm_cross_params *p, vlm_cross_acts *s, vlm_tensor *y,
                       const vlm_tensor *x, const vlm_tensor *img) {
  VLM_CHECK(x->ndim == 3 && x->shape[2] == c->width && vlm_same_shape(x, y), "cross: x and y must be [B, L, W]");
  VLM_CHECK(x->data != y->data, "cross: y must not alias x");
  VLM_CHECK(img->shape[0] == x->shape[0], "cross: batch of image tokens differs from the text's");
  int64_t W = c->width;
  vlm_cross_kv(c, p, &s->kv, &s->kvn, &s->kvn_mean, &s->kvn_rstd, img);
  vlm_layernorm_forward(&s->ln_1, &s->ln_1_mean, &s->ln_1_rstd, x, &p->b.ln_1_w, &p->b.ln_1_b, c->ln_eps);
  vlm_tensor wq = rows(&p->b.in_proj_w, 0, W), bq = rows(&p->b.in_proj_b, 0, W);
  vlm_matmul_forward(&s->q, &s->ln_1, &wq, &bq, 0, 1);
  vlm_tensor k = vlm_narrow(&s->kv, 2, 0, W), v = vlm_narrow(&s->kv, 2, W, W);
  vlm_attention_forward(&s->attn, s->probs.data ? &s->probs : NULL, &s->q, &k, &v, (int)c->heads, NULL, 0,
                        attn_scale(c));
  vlm_matmul_forward(&s->x1, &s->attn, &p->b.out_proj_w, &p->b.out_proj_b, 0, 1);
  vlm_add_forward(&s->x1, &s->x1, x);
  vlm_layernorm_forward(&s->ln_2, &s->ln_2_mean, &s->ln_2_rstd, &s->x1, &p->b.ln_2_w, &p->b.ln_2_b, c->ln_eps);
  vlm_matmul_forward(&s->fc, &s->ln_2, &p->b.fc_w, &p->b.fc_b, 0, 1);
  vlm_act_forward(c->act, &s->act, &s->fc);
  vlm_matmul_forward(y, &s->act, &p->b.proj_w, &p->b.proj_b, 0, 1);
  vlm_add_forward(y, y, &s->x1);
}

void vlm_cross_backward(const vlm_block_config *c, const vlm_cross_params *p, vlm_cross_params *g,
                        const vlm_cross_acts *s, vlm_cross_scratch *scr, vlm_tensor *dx, vlm_tensor *d_img,
                        const vlm_tensor *dy, const vlm_tensor *x, const vlm_tensor *img) {
  VLM_CHECK(s->probs.data, "cross backward: activations were laid out for inference only");
  VLM_CHECK(vlm_same_shape(x, dy) && vlm_same_shape(x, dx), "cross backward: shapes differ");
  int64_t W = c->width;
  /* MLP branch */
  vlm_zero(&scr->d_act);
  vlm_matmul_backward(&scr->d_act, &g->b.proj_w, &g->b.proj_b, dy, &s->act, &p->b.proj_w, 0, 1);
  vlm_zero(&scr->d_fc);
  vlm_act_backward(c->act, &scr->d_fc, &scr->d_act, &s->fc);
  vlm_zero(&scr->d_ln);
  vlm_matmul_backward(&scr->d_ln, &g->b.fc_w, &g->b.fc_b, &scr->d_fc, &s->ln_2, &p->b.fc_w, 0, 1);
  vlm_copy(&scr->d_x1, dy);
  vlm_layernorm_backward(&scr->d_x1, &g->b.ln_2_w, &g->b.ln_2_b, &scr->d_ln, &s->x1, &p->b.ln_2_w, &s->ln_2_mean,
                         &s->ln_2_rstd);
  /* Attention branch */
  vlm_add_backward(dx, NULL, &scr->d_x1);
  vlm_zero(&scr->d_attn);
  vlm_matmul_backward(&scr->d_attn, &g->b.out_proj_w, &g->b.out_proj_b, &scr->d_x1, &s->attn, &p->b.out_proj_w, 0,
                      1);
  vlm_zero(&scr->d_q);
  vlm_zero(&scr->d_kv);
  vlm_tensor k = vlm_narrow(&s->kv, 2, 0, W), v = vlm_narrow(&s->kv, 2, W, W);
  vlm_tensor dk = vlm_narrow(&scr->d_kv, 2, 0, W), dv = vlm_narrow(&scr->d_kv, 2, W, W);
  vlm_attention_backward(&scr->d_q, &dk, &dv, &scr->d_attn, &s->probs, &s->q, &k, &v, (int)c->heads,
                         attn_scale(c));
  vlm_tensor wq = rows(&p->b.in_proj_w, 0, W), gwq = rows(&g->b.in_proj_w, 0, W), gbq = rows(&g->b.in_proj_b, 0, W);
  vlm_zero(&scr->d_ln);
  vlm_matmul_backward(&scr->d_ln, &gwq, &gbq, &scr->d_q, &s->ln_1, &wq, 0, 1);
  vlm_layernorm_backward(dx, &g->b.ln_1_w, &g->b.ln_1_b, &scr->d_ln, x, &p->b.ln_1_w, &s->ln_1_mean, &s->ln_1_rstd);
  vlm_tensor wkv = rows(&p->b.in_proj_w, W, 2 * W), gwkv = rows(&g->b.in_proj_w, W, 2 * W),
             gbkv = rows(&g->b.in_proj_b, W, 2 * W);
  vlm_zero(&scr->d_kvn);
  vlm_matmul_backward(&scr->d_kvn, &gwkv, &gbkv, &scr->d_kv, &s->kvn, &wkv, 0, 1);
  vlm_layernorm_backward(d_img, &g->ln_1_kv_w, &g->ln_1_kv_b, &scr->d_kvn, img, &p->ln_1_kv_w, &s->kvn_mean,
                         &s->kvn_rstd);
}
