/* The whole CLIP model: both towers and the contrastive loss. */
#include <string.h>

#include "model/model.h"

static void layout(vlm_clip_acts *s, vlm_arena *a, const vlm_clip_config *c, int64_t B, int64_t L, int bw) {
  vlm_vit_acts_layout(&s->visual, a, &c->vision, B, bw);
  vlm_text_acts_layout(&s->text, a, &c->text, B, L, bw);
  vlm_clip_loss_layout(&s->loss, a, B, c->embed_dim);
  if (c->has_logit_bias) vlm_siglip_loss_layout(&s->siglip, a, B, c->embed_dim);
  s->d_img_feat = vlm_arena_tensor2(a, VLM_F32, B, c->embed_dim);
  s->d_txt_feat = vlm_arena_tensor2(a, VLM_F32, B, c->embed_dim);
}

vlm_status vlm_clip_acts_init(vlm_clip_acts *s, const vlm_clip_config *c, int64_t B, int64_t L, int with_backward) {
  return vlm_clip_acts_init_on(s, c, B, L, with_backward, VLM_CPU);
}

vlm_status vlm_clip_acts_init_on(vlm_clip_acts *s, const vlm_clip_config *c, int64_t B, int64_t L, int with_backward,
                                 vlm_device dev) {
  memset(s, 0, sizeof *s);
  if (B < 1 || L < 1 || L > c->text.context_length)
    return vlm_error(VLM_ERR_ARG, "CLIP: batch %lld and text length %lld (context %lld) are not usable", (long long)B,
                     (long long)L, (long long)c->text.context_length);
  vlm_status st = vlm_vit_acts_alloc(&s->visual, &c->vision);
  if (st == VLM_OK) st = vlm_text_acts_alloc(&s->text, &c->text, B);
  if (st != VLM_OK) {
    vlm_clip_acts_free(s);
    return st;
  }
  vlm_arena m;
  vlm_arena_measure(&m, dev);
  layout(s, &m, c, B, L, with_backward);
  st = vlm_arena_init(&s->arena, m.used, dev);
  if (st != VLM_OK) {
    vlm_clip_acts_free(s);
    return vlm_error_prefix(st, "CLIP activations (%zu bytes)", m.used);
  }
  layout(s, &s->arena, c, B, L, with_backward);
  return VLM_OK;
}

void vlm_clip_acts_free(vlm_clip_acts *s) {
  vlm_vit_acts_free(&s->visual);
  vlm_text_acts_free(&s->text);
  vlm_arena_free(&s->arena);
  memset(s, 0, sizeof *s);
}

float vlm_clip_forward(const vlm_clip_config *c, const vlm_clip_params *p, vlm_clip_acts *s,
                       const vlm_tensor *images, const vlm_tensor *ids) {
  vlm_vit_forward(&c->vision, &p->visual, &s->visual, images);
  vlm_text_forward(&c->text, &p->text, &s->text, ids);
  vlm_clip_loss_forward(&s->loss, &s->visual.features, &s->text.features, &p->logit_scale);
  if (!c->has_logit_bias) return vlm_get_f32(&s->loss.loss, 0);
  /* a SigLIP model: its loss is the sigmoid loss (the ClipLoss's features and logits stay in s->loss) */
  vlm_siglip_loss_forward(&s->siglip, &s->visual.features, &s->text.features, &p->logit_scale, &p->logit_bias);
  return vlm_get_f32(&s->siglip.loss, 0);
}

void vlm_clip_backward(const vlm_clip_config *c, const vlm_clip_params *p, vlm_clip_params *g, vlm_clip_acts *s,
                       const vlm_tensor *ids) {
  vlm_zero(&s->d_img_feat);
  vlm_zero(&s->d_txt_feat);
  if (c->has_logit_bias)
    vlm_siglip_loss_backward(&s->siglip, 1.0f, &s->visual.features, &s->text.features, &s->d_img_feat,
                             &s->d_txt_feat, &g->logit_scale, &g->logit_bias);
  else
    vlm_clip_loss_backward(&s->loss, 1.0f, &s->visual.features, &s->text.features, &s->d_img_feat, &s->d_txt_feat,
                           &g->logit_scale);
  vlm_text_backward(&c->text, &p->text, &g->text, &s->text, ids, &s->d_txt_feat);
  vlm_vit_backward(&c->vision, &p->visual, &g->visual, &s->visual, &s->d_img_feat);
}
