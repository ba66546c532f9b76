/* The causal text encoder: layout, forward and backward over the core ops. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/text.h"

vlm_block_config vlm_text_block_config(const vlm_text_config *c) {
  vlm_block_config b = {c->width, c->heads, c->mlp_width, c->act, c->ln_eps};
  return b;
}

vlm_status vlm_text_params_alloc(vlm_text_params *p, const vlm_text_config *c) {
  memset(p, 0, sizeof *p);
  p->blocks = calloc((size_t)(c->layers > 0 ? c->layers : 1), sizeof *p->blocks);
  return p->blocks ? VLM_OK : vlm_error(VLM_ERR_OOM, "text: out of memory");
}

void vlm_text_params_free(vlm_text_params *p) {
  free(p->blocks);
  p->blocks = NULL;
}

void vlm_text_params_layout(vlm_text_params *p, vlm_arena *a, const vlm_text_config *c) {
  int64_t W = c->width;
  vlm_block_config bc = vlm_text_block_config(c);
  p->token_emb = vlm_arena_tensor2(a, VLM_F32, c->vocab_size, W);
  p->pos_emb = vlm_arena_tensor2(a, VLM_F32, c->context_length, W);
  for (int64_t i = 0; i < c->layers; i++) vlm_block_params_layout(&p->blocks[i], a, &bc);
  p->ln_final_w = vlm_arena_tensor1(a, VLM_F32, W);
  p->ln_final_b = vlm_arena_tensor1(a, VLM_F32, W);
  p->proj = vlm_arena_tensor2(a, VLM_F32, W, c->embed_dim);
}

void vlm_text_params_visit(vlm_text_params *p, const vlm_text_config *c, const char *prefix,
                           vlm_param_visit_fn fn, void *ctx) {
  char name[256];
#define V(suffix, t)                                     \
  do {                                                   \
    snprintf(name, sizeof name, "%s%s", prefix, suffix); \
    fn(ctx, name, t);                                    \
  } while (0)
  V("token_embedding.weight", &p->token_emb);
  V("positional_embedding", &p->pos_emb);
  for (int64_t i = 0; i < c->layers; i++) {
    char pre[200];
    snprintf(pre, sizeof pre, "%stransformer.resblocks.%lld.", prefix, (long long)i);
    vlm_block_params_visit_prefixed(&p->blocks[i], pre, fn, ctx);
  }
  V("ln_final.weight", &p->ln_final_w);
  V("ln_final.bias", &p->ln_final_b);
  V("text_projection", &p->proj);
#undef V
}

vlm_status vlm_text_acts_alloc(vlm_text_acts *s, const vlm_text_config *c, int64_t B) {
  memset(s, 0, sizeof *s);
  s->xs = calloc((size_t)c->layers + 1, sizeof *s->xs);
  s->blocks = calloc((size_t)(c->layers > 0 ? c->layers : 1), sizeof *s->blocks);
  s->pool_idx = calloc((size_t)(B > 0 ? B : 1), sizeof *s->pool_idx);
  if (!s->xs || !s->blocks || !s->pool_idx) {
    vlm_text_acts_free(s);
    return vlm_error(VLM_ERR_OOM, "text: out of memory");
  }
  return VLM_OK;
}

void vlm_text_acts_free(vlm_text_acts *s) {
  free(s->xs);
  free(s->blocks);
  free(s->pool_idx);
  s->xs = NULL;
  s->blocks = NULL;
  s->pool_idx = NULL;
}

void vlm_text_acts_layout(vlm_text_acts *s, vlm_arena *a, const vlm_text_config *c, int64_t B, int64_t L,
                          int with_backward) {
  int64_t W = c->width;
  vlm_block_config bc = vlm_text_block_config(c);
  s->B = B;
  s->L = L;
  s->with_backward = with_backward;
  for (int64_t i = 0; i <= c->layers; i++) s->xs[i] = vlm_arena_tensor3(a, VLM_F32, B, L, W);
  for (int64_t i = 0; i < c->layers; i++) {
    if (with_backward || i == 0) {
      vlm_block_acts_layout(&s->blocks[i], a, &bc, B, L);
      s->blocks[i].forward_only = !with_backward;
    }
    else s->blocks[i] = s->blocks[0];
  }
  s->pooled = vlm_arena_tensor2(a, VLM_F32, B, W);
  s->ln_final = vlm_arena_tensor2(a, VLM_F32, B, W);
  s->ln_mean = vlm_arena_tensor1(a, VLM_F32, B);
  s->ln_rstd = vlm_arena_tensor1(a, VLM_F32, B);
  s->features = vlm_arena_tensor2(a, VLM_F32, B, c->embed_dim);
  if (!with_backward) return;
  vlm_block_scratch_layout(&s->scratch, a, &bc, B, L);
  s->dx_a = vlm_arena_tensor3(a, VLM_F32, B, L, W);
  s->dx_b = vlm_arena_tensor3(a, VLM_F32, B, L, W);
  s->d_pooled = vlm_arena_tensor2(a, VLM_F32, B, W);
  s->d_ln = vlm_arena_tensor2(a, VLM_F32, B, W);
}

static int64_t id_at(const vlm_tensor *ids, int64_t i) {
  return ids->dtype == VLM_I64 ? ((const int64_t *)ids->data)[i] : ((const int32_t *)ids->data)[i];
}

void vlm_text_pool_index(const vlm_text_config *c, const vlm_tensor *ids, int64_t *idx) {
  if (ids->device == VLM_CUDA) { /* ids on a GPU: read them back (small) and pool on the host */
    vlm_tensor h = *ids;
    h.device = VLM_CPU;
    h.data = malloc(vlm_nbytes(ids) ? vlm_nbytes(ids) : 1);
    VLM_CHECK(h.data, "text: out of memory");
    VLM_CHECK(vlm_is_contiguous(ids), "text: ids must be contiguous");
    vlm_memcpy(h.data, VLM_CPU, ids->data, VLM_CUDA, vlm_nbytes(ids));
    vlm_text_pool_index(c, &h, idx);
    free(h.data);
    return;
  }
  VLM_CHECK(ids->device == VLM_CPU && (ids->dtype == VLM_I64 || ids->dtype == VLM_I32) && ids->ndim == 2,
            "text: ids must be [B, L] I32/I64 on the CPU");
  int64_t B = ids->shape[0], L = ids->shape[1];
  for (int64_t b = 0; b < B; b++) {
    int64_t best = 0;
    if (c->eot_id >= 0) {
      for (int64_t l = 0; l < L; l++)
        if (id_at(ids, b * L + l) == c->eot_id) { best = l; break; }
    } else {
      for (int64_t l = 1; l < L; l++)
        if (id_at(ids, b * L + l) > id_at(ids, b * L + best)) best = l;
    }
    idx[b] = best;
  }
}

void vlm_text_forward(const vlm_text_config *c, const vlm_text_params *p, vlm_text_acts *s, const vlm_tensor *ids) {
  char sh[128];
  VLM_CHECK(ids->ndim == 2 && ids->shape[0] == s->B && ids->shape[1] == s->L && s->L <= c->context_length,
            "text: ids are %s, expected [%lld, %lld]", vlm_shape_str(ids, sh, sizeof sh), (long long)s->B,
            (long long)s->L);
  int64_t B = s->B, L = s->L, W = c->width, NL = c->layers;
  vlm_block_config bc = vlm_text_block_config(c);
  vlm_embedding_forward(&s->xs[0], ids, &p->token_emb, &p->pos_emb);
  vlm_block_stack_forward(&bc, p->blocks, s->blocks, s->xs, NL, NULL, 1);
  vlm_text_pool_index(c, ids, s->pool_idx);
  /* ln_final is per row, so pooling before it equals open_clip's ln_final-then-pool. */
  float *pooled = s->pooled.data;
  const float *x = s->xs[NL].data;
  for (int64_t b = 0; b < B; b++)
    vlm_memcpy(pooled + b * W, s->pooled.device, x + (b * L + s->pool_idx[b]) * W, s->xs[NL].device,
               (size_t)W * sizeof(float));
  vlm_layernorm_forward(&s->ln_final, &s->ln_mean, &s->ln_rstd, &s->pooled, &p->ln_final_w, &p->ln_final_b,
                        c->ln_eps);
  vlm_matmul_forward(&s->features, &s->ln_final, &p->proj, NULL, 0, 0);
}

void vlm_text_backward(const vlm_text_config *c, const vlm_text_params *p, vlm_text_params *g, vlm_text_acts *s,
                       const vlm_tensor *ids, const vlm_tensor *d_features) {
  VLM_CHECK(s->with_backward, "text: activations were laid out for inference only");
  int64_t B = s->B, L = s->L, W = c->width, NL = c->layers;
  vlm_block_config bc = vlm_text_block_config(c);
  vlm_zero(&s->d_ln);
  vlm_matmul_backward(&s->d_ln, &g->proj, NULL, d_features, &s->ln_final, &p->proj, 0, 0);
  vlm_zero(&s->d_pooled);
  vlm_layernorm_backward(&s->d_pooled, &g->ln_final_w, &g->ln_final_b, &s->d_ln, &s->pooled, &p->ln_final_w,
                         &s->ln_mean, &s->ln_rstd);
  vlm_tensor *dy = &s->dx_a, *dx = &s->dx_b;
  vlm_zero(dy);
  float *d = dy->data;
  const float *dp = s->d_pooled.data;
  for (int64_t b = 0; b < B; b++)
    vlm_memcpy(d + (b * L + s->pool_idx[b]) * W, dy->device, dp + b * W, s->d_pooled.device,
               (size_t)W * sizeof(float));
  dy = vlm_block_stack_backward(&bc, p->blocks, g->blocks, s->blocks, &s->scratch, s->xs, NL, 1, dy, dx);
  vlm_embedding_backward(&g->token_emb, &g->pos_emb, dy, ids);
}
