/* contrastive: CLIP's symmetric InfoNCE loss with a learnable temperature.
 *
 *   img = l2norm(image_features), txt = l2norm(text_features)   (eps 1e-12)
 *   s = exp(logit_scale)
 *   logits_per_image = s * img @ txt^T, logits_per_text = its transpose
 *   loss = (CE(logits_per_image, arange) + CE(logits_per_text, arange)) / 2
 */
#ifndef VLM_CONTRASTIVE_H
#define VLM_CONTRASTIVE_H
#include "core/core.h"

#define VLM_CLIP_LOGIT_SCALE_MAX 4.605170185988091f /* ln 100 */

typedef struct {
  int64_t B, E;
  vlm_tensor img, txt;               /* [B, E] normalized features */
  vlm_tensor img_norm, txt_norm;     /* [B] */
  vlm_tensor logits_per_image;       /* [B, B] */
  vlm_tensor logits_per_text;        /* [B, B] */
  vlm_tensor probs_i, probs_t;       /* [B, B] softmax, saved for backward */
  vlm_tensor targets;                /* [B] I64 arange */
  vlm_tensor loss_i, loss_t;         /* [1] */
  vlm_tensor loss;                   /* [1] the ClipLoss */
  vlm_tensor scale;                  /* [1] exp(logit_scale) used by the forward */
  vlm_tensor d_lpi, d_lpt;           /* [B, B] */
  vlm_tensor d_img, d_txt;           /* [B, E] gradients w.r.t. the normalized features */
  vlm_tensor d_half;                 /* [1] = 0.5 */
} vlm_clip_loss_acts;

void vlm_clip_loss_layout(vlm_clip_loss_acts *s, vlm_arena *a, int64_t B, int64_t E);
/* image_features, text_features [B,E]; logit_scale [] or [1] (raw, before exp). */
void vlm_clip_loss_forward(vlm_clip_loss_acts *s, const vlm_tensor *image_features,
                           const vlm_tensor *text_features, const vlm_tensor *logit_scale);
/* Backward of s->loss * dloss: accumulates into d_image_features, d_text_features [B,E]
 * and d_logit_scale (any may be NULL). */
void vlm_clip_loss_backward(vlm_clip_loss_acts *s, float dloss, const vlm_tensor *image_features,
                            const vlm_tensor *text_features, vlm_tensor *d_image_features,
                            vlm_tensor *d_text_features, vlm_tensor *d_logit_scale);
/* Clamp the raw logit_scale parameter to [0, ln 100] (after each optimizer step). */
void vlm_clip_logit_scale_clamp(vlm_tensor *logit_scale);
#endif
