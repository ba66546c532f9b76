/* CoCa's image tower: open_clip's AttentionalPooler (learned queries
 * cross-attending to the ViT tokens) and the pooled head around it. */
#include <math.h>
#include <string.h>

#include "core/block_stack.h"
#include "vision/vision.h"

void vlm_attn_pool_params_layout(vlm_attn_pool_params *p, vlm_arena *a, const vlm_vit_config *c) {
  int64_t E = c->embed_dim, W = c->width, Q = c->pool_queries;
  p->query = vlm_arena_tensor2(a, VLM_F32, Q, E);
  p->q_w = vlm_arena_tensor2(a, VLM_F32, E, E);
  p->k_w = vlm_arena_tensor2(a, VLM_F32, E, W);
  p->v_w = vlm_arena_tensor2(a, VLM_F32, E, W);
  p->in_b = vlm_arena_tensor1(a, VLM_F32, 3 * E);
  p->out_w = vlm_arena_tensor2(a, VLM_F32, E, E);
  p->out_b = vlm_arena_tensor1(a, VLM_F32, E);
  p->ln_q_w = vlm_arena_tensor1(a, VLM_F32, E);
  p->ln_q_b = vlm_arena_tensor1(a, VLM_F32, E);
  p->ln_k_w = vlm_arena_tensor1(a, VLM_F32, W);
  p->ln_k_b = vlm_arena_tensor1(a, VLM_F32, W);
}

void vlm_attn_pool_params_visit(vlm_attn_pool_params *p, const char *prefix, vlm_param_visit_fn fn, void *ctx) {
#define V(suffix, t) vlm_param_visit_named(fn, ctx, prefix, suffix, t)
  V("query", &p->query);
  V("attn.q_proj_weight", &p->q_w);
  V("attn.k_proj_weight", &p->k_w);
  V("attn.v_proj_weight", &p->v_w);
  V("attn.in_proj_bias", &p->in_b);
  V("attn.out_proj.weight", &p->out_w);
  V("attn.out_proj.bias", &p->out_b);
  V("ln_q.weight", &p->ln_q_w);
  V("ln_q.bias", &p->ln_q_b);
  V("ln_k.weight", &p->ln_k_w);
  V("ln_k.bias", &p->ln_k_b);
#undef V
}

void vlm_attn_pool_acts_layout(vlm_attn_pool_acts *s, vlm_arena *a, const vlm_vit_config *c, int64_t B,
                               int with_backward) {
  int64_t E = c->embed_dim, W = c->width, Q = c->pool_queries, T = vlm_vit_tokens(c), H = c->pool_heads;
  s->B = B;
  s->with_backward = with_backward;
  s->xk = vlm_arena_tensor3(a, VLM_F32, B, T, W);
  s->xk_mean = vlm_arena_tensor1(a, VLM_F32, B * T);
  s->xk_rstd = vlm_arena_tensor1(a, VLM_F32, B * T);
  s->qn = vlm_arena_tensor2(a, VLM_F32, Q, E);
  s->qn_mean = vlm_arena_tensor1(a, VLM_F32, Q);
  s->qn_rstd = vlm_arena_tensor1(a, VLM_F32, Q);
  s->q1 = vlm_arena_tensor2(a, VLM_F32, Q, E);
  s->q = vlm_arena_tensor3(a, VLM_F32, B, Q, E);
  s->k = vlm_arena_tensor3(a, VLM_F32, B, T, E);
  s->v = vlm_arena_tensor3(a, VLM_F32, B, T, E);
  s->probs = vlm_arena_tensor4(a, VLM_F32, B, H, Q, T);
  s->attn = vlm_arena_tensor3(a, VLM_F32, B, Q, E);
  s->out = vlm_arena_tensor3(a, VLM_F32, B, Q, E);
  s->ln_post = vlm_arena_tensor3(a, VLM_F32, B, Q, E);
  s->ln_post_mean = vlm_arena_tensor1(a, VLM_F32, B * Q);
  s->ln_post_rstd = vlm_arena_tensor1(a, VLM_F32, B * Q);
  s->pooled = vlm_arena_tensor2(a, VLM_F32, B, E);
  s->features = vlm_arena_tensor2(a, VLM_F32, B, E);
  s->tokens = vlm_arena_tensor3(a, VLM_F32, B, Q - 1, E);
  if (!with_backward) return;
  s->d_pooled = vlm_arena_tensor2(a, VLM_F32, B, E);
  s->d_ln_post = vlm_arena_tensor3(a, VLM_F32, B, Q, E);
  s->d_out = vlm_arena_tensor3(a, VLM_F32, B, Q, E);
  s->d_attn = vlm_arena_tensor3(a, VLM_F32, B, Q, E);
  s->dq = vlm_arena_tensor3(a, VLM_F32, B, Q, E);
  s->dk = vlm_arena_tensor3(a, VLM_F32, B, T, E);
  s->dv = vlm_arena_tensor3(a, VLM_F32, B, T, E);
  s->d_q1 = vlm_arena_tensor2(a, VLM_F32, Q, E);
  s->d_qn = vlm_arena_tensor2(a, VLM_F32, Q, E);
  s->d_xk = vlm_arena_tensor3(a, VLM_F32, B, T, W);
}

static float pool_scale(const vlm_vit_config *c) { return 1.0f / sqrtf((float)(c->embed_dim / c->pool_heads)); }

void vlm_attn_pool_forward(const vlm_vit_config *c, const vlm_attn_pool_params *p, vlm_attn_pool_acts *s,
                           const vlm_tensor *x) {
  int64_t E = c->embed_dim, Q = c->pool_queries, B = s->B;
  VLM_CHECK(x->ndim == 3 && x->shape[0] == B && x->shape[2] == c->width, "attn_pool: x must be [B, T, W]");
  VLM_CHECK(E % c->pool_heads == 0, "attn_pool: %lld heads do not divide %lld", (long long)c->pool_heads,
            (long long)E);
  vlm_layernorm_forward(&s->xk, &s->xk_mean, &s->xk_rstd, x, &p->ln_k_w, &p->ln_k_b, c->ln_eps);
  vlm_layernorm_forward(&s->qn, &s->qn_mean, &s->qn_rstd, &p->query, &p->ln_q_w, &p->ln_q_b, c->ln_eps);
  vlm_tensor bq = vlm_narrow(&p->in_b, 0, 0, E), bk = vlm_narrow(&p->in_b, 0, E, E),
             bv = vlm_narrow(&p->in_b, 0, 2 * E, E);
  vlm_matmul_forward(&s->q1, &s->qn, &p->q_w, &bq, 0, 1);
  vlm_copy_rows(&s->q, 0, Q, &s->q1, 0, 0, B, Q);   /* the queries, once per image */
  vlm_matmul_forward(&s->k, &s->xk, &p->k_w, &bk, 0, 1);
  vlm_matmul_forward(&s->v, &s->xk, &p->v_w, &bv, 0, 1);
  vlm_attention_forward(&s->attn, s->with_backward ? &s->probs : NULL, &s->q, &s->k, &s->v, (int)c->pool_heads,
                        NULL, 0, pool_scale(c));
  vlm_matmul_forward(&s->out, &s->attn, &p->out_w, &p->out_b, 0, 1);
}

void vlm_attn_pool_backward(const vlm_vit_config *c, const vlm_attn_pool_params *p, vlm_attn_pool_params *g,
                            vlm_attn_pool_acts *s, const vlm_tensor *x, const vlm_tensor *d_out, vlm_tensor *dx) {
  VLM_CHECK(s->with_backward, "attn_pool: activations were laid out for inference only");
  int64_t E = c->embed_dim;
  vlm_zero(&s->d_attn);
  vlm_matmul_backward(&s->d_attn, &g->out_w, &g->out_b, d_out, &s->attn, &p->out_w, 0, 1);
  vlm_zero(&s->dq);
  vlm_zero(&s->dk);
  vlm_zero(&s->dv);
  vlm_attention_backward(&s->dq, &s->dk, &s->dv, &s->d_attn, &s->probs, &s->q, &s->k, &s->v, (int)c->pool_heads,
                         pool_scale(c));
  vlm_tensor gbq = vlm_narrow(&g->in_b, 0, 0, E), gbk = vlm_narrow(&g->in_b, 0, E, E),
             gbv = vlm_narrow(&g->in_b, 0, 2 * E, E);
  vlm_zero(&s->d_xk);
  vlm_matmul_backward(&s->d_xk, &g->k_w, &gbk, &s->dk, &s->xk, &p->k_w, 0, 1);
  vlm_matmul_backward(&s->d_xk, &g->v_w, &gbv, &s->dv, &s->xk, &p->v_w, 0, 1);
  vlm_layernorm_backward(dx, &g->ln_k_w, &g->ln_k_b, &s->d_xk, x, &p->ln_k_w, &s->xk_mean, &s->xk_rstd);
  /* The queries are shared by the batch: their gradient is the sum over images. */
  vlm_zero(&s->d_q1);
  vlm_add_backward(NULL, &s->d_q1, &s->dq);
  vlm_zero(&s->d_qn);
  vlm_matmul_backward(&s->d_qn, &g->q_w, &gbq, &s->d_q1, &s->qn, &p->q_w, 0, 1);
  vlm_layernorm_backward(&g->query, &g->ln_q_w, &g->ln_q_b, &s->d_qn, &p->query, &p->ln_q_w, &s->qn_mean,
                         &s->qn_rstd);
}

void vlm_coca_vit_forward(const vlm_vit_config *c, const vlm_vit_params *p, const vlm_attn_pool_params *pp,
                          vlm_vit_acts *s, vlm_attn_pool_acts *ps, const vlm_tensor *image) {
  VLM_CHECK(c->attentional_pool && c->pool_queries >= 2, "coca vit: needs the attentional pooler (>= 2 queries)");
  int64_t B = ps->B, Q = c->pool_queries;
  vlm_vit_trunk_forward(c, p, s, image);
  vlm_attn_pool_forward(c, pp, ps, &s->xs[c->layers]);
  vlm_layernorm_forward(&ps->ln_post, &ps->ln_post_mean, &ps->ln_post_rstd, &ps->out, &p->ln_post_w, &p->ln_post_b,
                        c->ln_eps);
  vlm_copy_rows(&ps->pooled, 0, 1, &ps->ln_post, 0, Q, B, 1);             /* query 0: the pooled row */
  vlm_copy_rows(&ps->tokens, 0, Q - 1, &ps->ln_post, 1, Q, B, Q - 1);     /* the others: the image tokens */
  vlm_matmul_forward(&ps->features, &ps->pooled, &p->proj, NULL, 0, 0);
}

void vlm_coca_vit_backward(const vlm_vit_config *c, const vlm_vit_params *p, const vlm_attn_pool_params *pp,
                           vlm_vit_params *g, vlm_attn_pool_params *gp, vlm_vit_acts *s, vlm_attn_pool_acts *ps,
                           const vlm_tensor *d_features, const vlm_tensor *d_tokens) {
  VLM_CHECK(ps->with_backward && s->with_backward, "coca vit: activations were laid out for inference only");
  int64_t B = ps->B, Q = c->pool_queries;
  vlm_zero(&ps->d_pooled);
  if (d_features) vlm_matmul_backward(&ps->d_pooled, &g->proj, NULL, d_features, &ps->pooled, &p->proj, 0, 0);
  vlm_zero(&ps->d_ln_post);
  vlm_copy_rows(&ps->d_ln_post, 0, Q, &ps->d_pooled, 0, 1, B, 1);
  if (d_tokens) vlm_copy_rows(&ps->d_ln_post, 1, Q, d_tokens, 0, Q - 1, B, Q - 1);
  vlm_zero(&ps->d_out);
  vlm_layernorm_backward(&ps->d_out, &g->ln_post_w, &g->ln_post_b, &ps->d_ln_post, &ps->out, &p->ln_post_w,
                         &ps->ln_post_mean, &ps->ln_post_rstd);
  vlm_zero(&s->dx_a);
  vlm_attn_pool_backward(c, pp, gp, ps, &s->xs[c->layers], &ps->d_out, &s->dx_a);
  vlm_vit_trunk_backward(c, p, g, s);
}
