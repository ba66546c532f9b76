/* The CoCa multimodal text decoder (open_clip's MultimodalTransformer):
 * per layer a causal self-attention block then a cross-attention block over
 * the image tokens; ln_final; @ text_projection -> vocabulary logits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/block_stack.h"
#include "fusion/fusion.h"

vlm_block_config vlm_decoder_block_config(const vlm_decoder_config *c) {
  vlm_block_config b = {c->width, c->heads, c->mlp_width, c->act, c->ln_eps};
  return b;
}

vlm_status vlm_decoder_params_alloc(vlm_decoder_params *p, const vlm_decoder_config *c) {
  memset(p, 0, sizeof *p);
  size_t n = (size_t)(c->layers > 0 ? c->layers : 1);
  p->self = calloc(n, sizeof *p->self);
  p->cross = calloc(n, sizeof *p->cross);
  if (!p->self || !p->cross) {
    vlm_decoder_params_free(p);
    return vlm_error(VLM_ERR_OOM, "decoder: out of memory");
  }
  return VLM_OK;
}

void vlm_decoder_params_free(vlm_decoder_params *p) {
  free(p->self);
  free(p->cross);
  p->self = NULL;
  p->cross = NULL;
}

void vlm_decoder_params_layout(vlm_decoder_params *p, vlm_arena *a, const vlm_decoder_config *c) {
  vlm_block_config bc = vlm_decoder_block_config(c);
  for (int64_t i = 0; i < c->layers; i++) vlm_block_params_layout(&p->self[i], a, &bc);
  for (int64_t i = 0; i < c->layers; i++) vlm_cross_params_layout(&p->cross[i], a, &bc);
  p->ln_final_w = vlm_arena_tensor1(a, VLM_F32, c->width);
  p->ln_final_b = vlm_arena_tensor1(a, VLM_F32, c->width);
  p->proj = vlm_arena_tensor2(a, VLM_F32, c->width, c->vocab_size);
}

void vlm_decoder_params_visit(vlm_decoder_params *p, const vlm_decoder_config *c, const char *prefix,
                              vlm_param_visit_fn fn, void *ctx) {
  char name[256];
  for (int64_t i = 0; i < c->layers; i++) {
    snprintf(name, sizeof name, "%sresblocks.%lld.", prefix, (long long)i);
    vlm_block_params_visit_prefixed(&p->self[i], name, fn, ctx);
  }
  for (int64_t i = 0; i < c->layers; i++) {
    snprintf(name, sizeof name, "%scross_attn.%lld.", prefix, (long long)i);
    vlm_cross_params_visit_prefixed(&p->cross[i], name, fn, ctx);
  }
  vlm_param_visit_named(fn, ctx, prefix, "ln_final.weight", &p->ln_final_w);
  vlm_param_visit_named(fn, ctx, prefix, "ln_final.bias", &p->ln_final_b);
  vlm_param_visit_named(fn, ctx, prefix, "text_projection", &p->proj);
}

vlm_status vlm_decoder_acts_alloc(vlm_decoder_acts *s, const vlm_decoder_config *c) {
  memset(s, 0, sizeof *s);
  size_t n = (size_t)(c->layers > 0 ? c->layers : 1);
  s->xs = calloc(2 * n + 1, sizeof *s->xs);
  s->self = calloc(n, sizeof *s->self);
  s->cross = calloc(n, sizeof *s->cross);
  if (!s->xs || !s->self || !s->cross) {
    vlm_decoder_acts_free(s);
    return vlm_error(VLM_ERR_OOM, "decoder: out of memory");
  }
  return VLM_OK;
}

void vlm_decoder_acts_free(vlm_decoder_acts *s) {
  free(s->xs);
  free(s->self);
  free(s->cross);
  s->xs = NULL;
  s->self = NULL;
  s->cross = NULL;
}

void vlm_decoder_acts_layout(vlm_decoder_acts *s, vlm_arena *a, const vlm_decoder_config *c, int64_t B, int64_t L,
                             int64_t N, int with_backward) {
  int64_t W = c->width;
  vlm_block_config bc = vlm_decoder_block_config(c);
  s->B = B;
  s->L = L;
  s->N = N;
  s->with_backward = with_backward;
  /* Inference keeps the input and two residual buffers, one set of block activations. */
  for (int64_t i = 0; i <= 2 * c->layers; i++) {
    if (with_backward || i < 3) s->xs[i] = vlm_arena_tensor3(a, VLM_F32, B, L, W);
    else s->xs[i] = s->xs[i % 2 ? 1 : 2];
  }
  for (int64_t i = 0; i < c->layers; i++) {
    if (with_backward || i == 0) {
      vlm_block_acts_layout(&s->self[i], a, &bc, B, L);
      vlm_cross_acts_layout(&s->cross[i], a, &bc, B, L, N, with_backward);
    } else {
      s->self[i] = s->self[0];
      s->cross[i] = s->cross[0];
    }
  }
  s->ln_final = vlm_arena_tensor3(a, VLM_F32, B, L, W);
  s->ln_mean = vlm_arena_tensor1(a, VLM_F32, B * L);
  s->ln_rstd = vlm_arena_tensor1(a, VLM_F32, B * L);
  s->logits = vlm_arena_tensor3(a, VLM_F32, B, L, c->vocab_size);
  if (!with_backward) return;
  vlm_block_scratch_layout(&s->bscr, a, &bc, B, L);
  vlm_cross_scratch_layout(&s->cscr, a, &bc, B, L, N);
  s->dx_a = vlm_arena_tensor3(a, VLM_F32, B, L, W);
  s->dx_b = vlm_arena_tensor3(a, VLM_F32, B, L, W);
  s->d_ln = vlm_arena_tensor3(a, VLM_F32, B, L, W);
}

void vlm_decoder_forward(const vlm_decoder_config *c, const vlm_decoder_params *p, vlm_decoder_acts *s,
                         const vlm_tensor *img) {
  char sh[96];
  VLM_CHECK(img->ndim == 3 && img->shape[0] == s->B && img->shape[1] == s->N && img->shape[2] == c->width,
            "decoder: image tokens are %s, expected [%lld, %lld, %lld]", vlm_shape_str(img, sh, sizeof sh),
            (long long)s->B, (long long)s->N, (long long)c->width);
  VLM_CHECK(s->L <= c->context_length, "decoder: %lld tokens exceed the context %lld", (long long)s->L,
            (long long)c->context_length);
  vlm_block_config bc = vlm_decoder_block_config(c);
  int64_t n = c->layers;
  for (int64_t i = 0; i < n; i++) {
    /* Inference aliases xs[2i+2] with xs[2] and xs[2i+1] with xs[1]; xs[0] stays the input. */
    vlm_block_forward(&bc, &p->self[i], &s->self[i], &s->xs[2 * i + 1], &s->xs[2 * i], NULL, 1);
    vlm_cross_forward(&bc, &p->cross[i], &s->cross[i], &s->xs[2 * i + 2], &s->xs[2 * i + 1], img);
  }
  vlm_layernorm_forward(&s->ln_final, &s->ln_mean, &s->ln_rstd, &s->xs[2 * n], &p->ln_final_w, &p->ln_final_b,
                        c->ln_eps);
  vlm_matmul_forward(&s->logits, &s->ln_final, &p->proj, NULL, 0, 0);
}

void vlm_decoder_backward(const vlm_decoder_config *c, const vlm_decoder_params *p, vlm_decoder_params *g,
                          vlm_decoder_acts *s, const vlm_tensor *img, const vlm_tensor *d_logits, vlm_tensor *d_text,
                          vlm_tensor *d_img) {
  VLM_CHECK(s->with_backward, "decoder: activations were laid out for inference only");
  vlm_block_config bc = vlm_decoder_block_config(c);
  int64_t n = c->layers;
  vlm_zero(&s->d_ln);
  vlm_matmul_backward(&s->d_ln, &g->proj, NULL, d_logits, &s->ln_final, &p->proj, 0, 0);
  vlm_tensor *dy = &s->dx_a, *dx = &s->dx_b;
  vlm_zero(dy);
  vlm_layernorm_backward(dy, &g->ln_final_w, &g->ln_final_b, &s->d_ln, &s->xs[2 * n], &p->ln_final_w, &s->ln_mean,
                         &s->ln_rstd);
  for (int64_t i = n - 1; i >= 0; i--) {
    vlm_zero(dx);
    vlm_cross_backward(&bc, &p->cross[i], &g->cross[i], &s->cross[i], &s->cscr, dx, d_img, dy, &s->xs[2 * i + 1],
                       img);
    vlm_zero(dy);
    vlm_block_backward(&bc, &p->self[i], &g->self[i], &s->self[i], &s->bscr, dy, dx, &s->xs[2 * i], 1);
  }
  if (d_text) vlm_add_backward(d_text, NULL, dy);
}
