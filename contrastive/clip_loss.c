/* CLIP's symmetric InfoNCE loss over the core ops. */
#include <math.h>
#include <stdlib.h>

#include "contrastive/contrastive.h"

#define L2_EPS 1e-12f

void vlm_clip_loss_layout_local(vlm_clip_loss_acts *s, vlm_arena *a, int64_t B, int64_t N, int64_t off, int64_t E) {
  VLM_CHECK(B >= 1 && off >= 0 && off + B <= N, "clip loss: rows [%lld, %lld) of %lld", (long long)off,
            (long long)(off + B), (long long)N);
  s->B = B;
  s->N = N;
  s->off = off;
  s->E = E;
  s->img = vlm_arena_tensor2(a, VLM_F32, N, E);
  s->txt = vlm_arena_tensor2(a, VLM_F32, N, E);
  s->img_norm = vlm_arena_tensor1(a, VLM_F32, N);
  s->txt_norm = vlm_arena_tensor1(a, VLM_F32, N);
  s->logits_per_image = vlm_arena_tensor2(a, VLM_F32, B, N);
  s->logits_per_text = vlm_arena_tensor2(a, VLM_F32, B, N);
  s->probs_i = vlm_arena_tensor2(a, VLM_F32, B, N);
  s->probs_t = vlm_arena_tensor2(a, VLM_F32, B, N);
  s->targets = vlm_arena_tensor1(a, VLM_I64, B);
  s->loss_i = vlm_arena_tensor1(a, VLM_F32, 1);
  s->loss_t = vlm_arena_tensor1(a, VLM_F32, 1);
  s->loss = vlm_arena_tensor1(a, VLM_F32, 1);
  s->scale = vlm_arena_tensor1(a, VLM_F32, 1);
  s->d_lpi = vlm_arena_tensor2(a, VLM_F32, B, N);
  s->d_lpt = vlm_arena_tensor2(a, VLM_F32, B, N);
  s->d_img = vlm_arena_tensor2(a, VLM_F32, N, E);
  s->d_txt = vlm_arena_tensor2(a, VLM_F32, N, E);
  s->d_half = vlm_arena_tensor1(a, VLM_F32, 1);
}

void vlm_clip_loss_layout(vlm_clip_loss_acts *s, vlm_arena *a, int64_t B, int64_t E) {
  vlm_clip_loss_layout_local(s, a, B, B, 0, E);
}

/* targets = off + arange(B), written from the host (the tensor may live on a GPU). */
static void set_targets(vlm_tensor *t, int64_t B, int64_t off) {
  int64_t *tg = vlm_host_stage(t, sizeof(int64_t) * (size_t)B);
  for (int64_t i = 0; i < B; i++) tg[i] = off + i;
  vlm_host_commit(t, tg, sizeof(int64_t) * (size_t)B);
}

void vlm_clip_loss_forward(vlm_clip_loss_acts *s, const vlm_tensor *image_features,
                           const vlm_tensor *text_features, const vlm_tensor *logit_scale) {
  VLM_CHECK(vlm_numel(logit_scale) == 1, "clip loss: logit_scale must have one element");
  set_targets(&s->targets, s->B, s->off);
  float scale = expf(vlm_get_f32(logit_scale, 0));
  vlm_set_f32(&s->scale, 0, scale);
  vlm_l2norm_forward(&s->img, &s->img_norm, image_features, L2_EPS);
  vlm_l2norm_forward(&s->txt, &s->txt_norm, text_features, L2_EPS);
  /* this rank's rows (all of them in one process) against every row */
  vlm_tensor img_b = vlm_narrow(&s->img, 0, s->off, s->B), txt_b = vlm_narrow(&s->txt, 0, s->off, s->B);
  vlm_matmul_forward(&s->logits_per_image, &img_b, &s->txt, NULL, 0, 1);
  vlm_matmul_forward(&s->logits_per_text, &txt_b, &s->img, NULL, 0, 1);
  vlm_scale(&s->logits_per_image, scale);
  vlm_scale(&s->logits_per_text, scale);
  vlm_cross_entropy_forward(&s->loss_i, &s->probs_i, &s->logits_per_image, &s->targets, -100);
  vlm_cross_entropy_forward(&s->loss_t, &s->probs_t, &s->logits_per_text, &s->targets, -100);
  vlm_set_f32(&s->loss, 0, 0.5f * (vlm_get_f32(&s->loss_i, 0) + vlm_get_f32(&s->loss_t, 0)));
}

void vlm_clip_loss_backward(vlm_clip_loss_acts *s, float dloss, const vlm_tensor *image_features,
                            const vlm_tensor *text_features, vlm_tensor *d_image_features,
                            vlm_tensor *d_text_features, vlm_tensor *d_logit_scale) {
  vlm_set_f32(&s->d_half, 0, 0.5f * dloss);
  vlm_zero(&s->d_lpi);
  vlm_zero(&s->d_lpt);
  vlm_cross_entropy_backward(&s->d_lpi, &s->d_half, &s->probs_i, &s->targets, -100);
  vlm_cross_entropy_backward(&s->d_lpt, &s->d_half, &s->probs_t, &s->targets, -100);
  float scale = vlm_get_f32(&s->scale, 0);
  if (d_logit_scale) {
    /* logits = s * S with s = exp(raw): d raw = s * sum(dlogits * S) = sum(dlogits * logits). */
    double acc = vlm_dot(&s->d_lpi, &s->logits_per_image) + vlm_dot(&s->d_lpt, &s->logits_per_text);
    vlm_set_f32(d_logit_scale, 0, vlm_get_f32(d_logit_scale, 0) + (float)acc);
  }
  if (!d_image_features && !d_text_features) return;
  vlm_scale(&s->d_lpi, scale);
  vlm_scale(&s->d_lpt, scale);
  vlm_zero(&s->d_img);
  vlm_zero(&s->d_txt);
  vlm_tensor img_b = vlm_narrow(&s->img, 0, s->off, s->B), txt_b = vlm_narrow(&s->txt, 0, s->off, s->B);
  vlm_tensor d_img_b = vlm_narrow(&s->d_img, 0, s->off, s->B), d_txt_b = vlm_narrow(&s->d_txt, 0, s->off, s->B);
  vlm_matmul_backward(&d_img_b, &s->d_txt, NULL, &s->d_lpi, &img_b, &s->txt, 0, 1);
  vlm_matmul_backward(&d_txt_b, &s->d_img, NULL, &s->d_lpt, &txt_b, &s->img, 0, 1);
  if (d_image_features) vlm_l2norm_backward(d_image_features, &s->d_img, image_features, &s->img_norm, L2_EPS);
  if (d_text_features) vlm_l2norm_backward(d_text_features, &s->d_txt, text_features, &s->txt_norm, L2_EPS);
}

void vlm_clip_logit_scale_clamp(vlm_tensor *logit_scale) {
  float v = vlm_get_f32(logit_scale, 0);
  if (v < 0.0f) v = 0.0f;
  if (v > VLM_CLIP_LOGIT_SCALE_MAX) v = VLM_CLIP_LOGIT_SCALE_MAX;
  vlm_set_f32(logit_scale, 0, v);
}
