/* SigLIP's pairwise sigmoid loss over the core ops (open_clip's SigLipLoss). */
#include <math.h>

#include "contrastive/contrastive.h"

#define L2_EPS 1e-12f

void vlm_siglip_loss_layout_local(vlm_siglip_loss_acts *s, vlm_arena *a, int64_t B, int64_t N, int64_t off,
                                  int64_t E) {
  VLM_CHECK(B >= 1 && off >= 0 && off + B <= N, "siglip loss: rows [%lld, %lld) of %lld", (long long)off,
            (long long)(off + B), (long long)N);
  s->B = B;
  s->N = N;
  s->off = off;
  s->E = E;
  s->img = vlm_arena_tensor2(a, VLM_F32, N, E);
  s->txt = vlm_arena_tensor2(a, VLM_F32, N, E);
  s->img_norm = vlm_arena_tensor1(a, VLM_F32, N);
  s->txt_norm = vlm_arena_tensor1(a, VLM_F32, N);
  s->logits = vlm_arena_tensor2(a, VLM_F32, B, N);
  s->bias_row = vlm_arena_tensor1(a, VLM_F32, N);
  s->ones = vlm_arena_tensor1(a, VLM_F32, N);
  s->loss = vlm_arena_tensor1(a, VLM_F32, 1);
  s->scale = vlm_arena_tensor1(a, VLM_F32, 1);
  s->bias = vlm_arena_tensor1(a, VLM_F32, 1);
  s->dloss = vlm_arena_tensor1(a, VLM_F32, 1);
  s->d_logits = vlm_arena_tensor2(a, VLM_F32, B, N);
  s->d_bias_row = vlm_arena_tensor1(a, VLM_F32, N);
  s->d_img = vlm_arena_tensor2(a, VLM_F32, N, E);
  s->d_txt = vlm_arena_tensor2(a, VLM_F32, N, E);
}

void vlm_siglip_loss_layout(vlm_siglip_loss_acts *s, vlm_arena *a, int64_t B, int64_t E) {
  vlm_siglip_loss_layout_local(s, a, B, B, 0, E);
}

void vlm_siglip_loss_forward(vlm_siglip_loss_acts *s, const vlm_tensor *image_features,
                             const vlm_tensor *text_features, const vlm_tensor *logit_scale,
                             const vlm_tensor *logit_bias) {
  VLM_CHECK(vlm_numel(logit_scale) == 1 && vlm_numel(logit_bias) == 1,
            "siglip loss: logit_scale and logit_bias must have one element each");
  const float scale = expf(vlm_get_f32(logit_scale, 0)), bias = vlm_get_f32(logit_bias, 0);
  vlm_set_f32(&s->scale, 0, scale);
  vlm_set_f32(&s->bias, 0, bias);
  vlm_l2norm_forward(&s->img, &s->img_norm, image_features, L2_EPS);
  vlm_l2norm_forward(&s->txt, &s->txt_norm, text_features, L2_EPS);
  /* this rank's images against every text */
  vlm_tensor img_b = vlm_narrow(&s->img, 0, s->off, s->B);
  vlm_matmul_forward(&s->logits, &img_b, &s->txt, NULL, 0, 1);
  vlm_scale(&s->logits, scale);
  vlm_fill(&s->bias_row, bias);
  vlm_add_forward(&s->logits, &s->logits, &s->bias_row);
  vlm_sigmoid_loss_forward(&s->loss, &s->logits, s->off);
}

void vlm_siglip_loss_backward(vlm_siglip_loss_acts *s, float dloss, const vlm_tensor *image_features,
                              const vlm_tensor *text_features, vlm_tensor *d_image_features,
                              vlm_tensor *d_text_features, vlm_tensor *d_logit_scale, vlm_tensor *d_logit_bias) {
  vlm_set_f32(&s->dloss, 0, dloss);
  vlm_zero(&s->d_logits);
  vlm_sigmoid_loss_backward(&s->d_logits, &s->dloss, &s->logits, s->off);
  const float scale = vlm_get_f32(&s->scale, 0), bias = vlm_get_f32(&s->bias, 0);
  double d_bias = 0;
  if (d_logit_bias || d_logit_scale) {
    /* logits = s * S + b: d b = sum(dlogits), through the column sums (any device) */
    vlm_zero(&s->d_bias_row);
    vlm_add_backward(NULL, &s->d_bias_row, &s->d_logits);
    vlm_fill(&s->ones, 1.0f);
    d_bias = vlm_dot(&s->d_bias_row, &s->ones);
  }
  if (d_logit_bias) vlm_set_f32(d_logit_bias, 0, vlm_get_f32(d_logit_bias, 0) + (float)d_bias);
  if (d_logit_scale) {
    /* s = exp(raw): d raw = s * sum(dlogits * S) = sum(dlogits * (logits - b)) */
    double acc = vlm_dot(&s->d_logits, &s->logits) - (double)bias * d_bias;
    vlm_set_f32(d_logit_scale, 0, vlm_get_f32(d_logit_scale, 0) + (float)acc);
  }
  if (!d_image_features && !d_text_features) return;
  vlm_scale(&s->d_logits, scale);
  vlm_zero(&s->d_img);
  vlm_zero(&s->d_txt);
  vlm_tensor img_b = vlm_narrow(&s->img, 0, s->off, s->B), d_img_b = vlm_narrow(&s->d_img, 0, s->off, s->B);
  vlm_matmul_backward(&d_img_b, &s->d_txt, NULL, &s->d_logits, &img_b, &s->txt, 0, 1);
  if (d_image_features) vlm_l2norm_backward(d_image_features, &s->d_img, image_features, &s->img_norm, L2_EPS);
  if (d_text_features) vlm_l2norm_backward(d_text_features, &s->d_txt, text_features, &s->txt_norm, L2_EPS);
}
