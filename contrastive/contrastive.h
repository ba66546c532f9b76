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
/* ---- evaluation metrics (contrastive/retrieval.c) ----
 * Retrieval as open_clip's get_clip_metrics, both ways, on cosine similarity
 * (the logit scale does not change a ranking). A query's rank is 1 + the number
 * of non-matching candidates scoring strictly higher than its best matching one
 * (open_clip takes the position of the ground truth in an argsort; the two agree
 * but for exact ties). R@k = fraction of queries with rank <= k, mean rank, and
 * median rank = floor(median(rank - 1)) + 1 as open_clip computes it.
 * Matching: image i and text j match iff img_key[i] == txt_key[j]; NULL keys mean
 * key = row index (one caption per image, N == M). COCO: key = the image's id, so
 * an image query matches its 5 captions and a caption matches its image. The
 * shapes rule (synthetic captions repeat): key = an id of the caption text, so a
 * retrieved image whose caption equals the query's counts as a hit (and the
 * other way). Queries with no matching candidate are left out (counted in
 * *_skipped). */
typedef struct {
  double r1, r5, r10, mean_rank, median_rank;
  int64_t queries, skipped;
} vlm_retrieval_dir;
typedef struct {
  vlm_retrieval_dir i2t, t2i;
} vlm_retrieval_metrics;

/* img [N,E], txt [M,E] features (any norm: each row is L2-normalized here). */
vlm_status vlm_retrieval_compute(const float *img, int64_t N, const int64_t *img_key, const float *txt, int64_t M,
                                 const int64_t *txt_key, int64_t E, vlm_retrieval_metrics *out);

/* Zero-shot classification (open_clip's zero_shot_classifier / run):
 * class c's weight = normalize(mean over templates t of normalize(text_emb[c*T + t]));
 * logits = 100 * normalize(img) @ weights^T; top-1 / top-5 accuracy (a top-k hit:
 * the label is among the k largest logits; ties broken by the lower class index). */
void vlm_zeroshot_weights(const float *text_emb, int64_t C, int64_t T, int64_t E, float *weights /* [C,E] */);
typedef struct {
  int64_t n;                 /* samples */
  double top1, top5;
  int64_t n_subset;          /* samples with subset[i] != 0 (unseen combinations) */
  double subset_top1, subset_top5;
} vlm_zeroshot_result;
/* img [N,E], labels [N] in [0,C) (others are skipped), subset [N] or NULL. */
void vlm_zeroshot_eval(const float *img, const int *labels, const uint8_t *subset, int64_t N, const float *weights,
                       int64_t C, int64_t E, vlm_zeroshot_result *out);
#endif
