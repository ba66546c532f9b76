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
  int64_t B, E;                      /* B: the rows this process scores (the batch when N == B) */
  int64_t N, off;                    /* N: all rows (every rank's); off: this rank's first row */
  vlm_tensor img, txt;               /* [N, E] normalized features */
  vlm_tensor img_norm, txt_norm;     /* [N] */
  vlm_tensor logits_per_image;       /* [B, N]: rows off.. of img against every txt */
  vlm_tensor logits_per_text;        /* [B, N] */
  vlm_tensor probs_i, probs_t;       /* [B, N] softmax, saved for backward */
  vlm_tensor targets;                /* [B] I64: off + arange */
  vlm_tensor loss_i, loss_t;         /* [1] */
  vlm_tensor loss;                   /* [1] the ClipLoss */
  vlm_tensor scale;                  /* [1] exp(logit_scale) used by the forward */
  vlm_tensor d_lpi, d_lpt;           /* [B, N] */
  vlm_tensor d_img, d_txt;           /* [N, E] gradients w.r.t. the normalized features */
  vlm_tensor d_half;                 /* [1] = 0.5 */
} vlm_clip_loss_acts;

void vlm_clip_loss_layout(vlm_clip_loss_acts *s, vlm_arena *a, int64_t B, int64_t E);
/* open_clip's --local-loss over a global batch (--gather-with-grad): the features
 * are all N rows of every rank, and this rank's loss scores its B rows [off, off+B)
 * against all N, with targets off + arange(B). The mean of the ranks' losses is the
 * ClipLoss of the whole batch; each rank's backward gives its loss's gradient for
 * all N rows, so the sum over ranks (of dloss = 1/world) is the batch loss's. */
void vlm_clip_loss_layout_local(vlm_clip_loss_acts *s, vlm_arena *a, int64_t B, int64_t N, int64_t off, int64_t E);
/* image_features, text_features [N,E] (N = B by default); logit_scale [] or [1] (raw, before exp). */
void vlm_clip_loss_forward(vlm_clip_loss_acts *s, const vlm_tensor *image_features,
                           const vlm_tensor *text_features, const vlm_tensor *logit_scale);
/* Backward of s->loss * dloss: accumulates into d_image_features, d_text_features [N,E]
 * and d_logit_scale (any may be NULL). */
void vlm_clip_loss_backward(vlm_clip_loss_acts *s, float dloss, const vlm_tensor *image_features,
                            const vlm_tensor *text_features, vlm_tensor *d_image_features,
                            vlm_tensor *d_text_features, vlm_tensor *d_logit_scale);
/* Clamp the raw logit_scale parameter to [0, ln 100] (after each optimizer step). */
void vlm_clip_logit_scale_clamp(vlm_tensor *logit_scale);

/* ---- SigLIP's sigmoid loss (siglip_loss.c; open_clip's SigLipLoss) ----
 *   img = l2norm(image_features), txt = l2norm(text_features)   (eps 1e-12)
 *   logits = exp(logit_scale) * img[off .. off+B) @ txt^T + logit_bias     [B, N]
 *   loss = -(1/B) sum_ij log sigmoid(label_ij * logits_ij), label +1 at (i, off + i), -1 elsewhere
 * (the core op vlm_sigmoid_loss_*). Only the image->text direction: no symmetric half.
 * Across ranks (open_clip's SigLipLoss with world_size > 1, whose neighbour exchange
 * scores this rank's B images against every rank's texts, the positives being its own
 * pairs): the features are all N rows, this rank's images are rows [off, off+B); the
 * ranks' losses are not averaged by the loss (open_clip's DDP averages the gradients:
 * the trainer's dloss = 1/world with the gradients summed). N = B, off = 0: one process. */
typedef struct {
  int64_t B, N, off, E;
  vlm_tensor img, txt;               /* [N, E] normalized features */
  vlm_tensor img_norm, txt_norm;     /* [N] */
  vlm_tensor logits;                 /* [B, N] scale * img_b @ txt^T + bias */
  vlm_tensor bias_row;               /* [N] filled with the bias (a broadcast add) */
  vlm_tensor ones;                   /* [N] 1 (sums of the bias gradient) */
  vlm_tensor loss;                   /* [1] */
  vlm_tensor scale, bias;            /* [1] exp(logit_scale) and logit_bias used by the forward */
  vlm_tensor dloss;                  /* [1] */
  vlm_tensor d_logits;               /* [B, N] */
  vlm_tensor d_bias_row;             /* [N] column sums of d_logits */
  vlm_tensor d_img, d_txt;           /* [N, E] gradients w.r.t. the normalized features */
} vlm_siglip_loss_acts;

void vlm_siglip_loss_layout(vlm_siglip_loss_acts *s, vlm_arena *a, int64_t B, int64_t E);
/* This rank's rows [off, off+B) of N (see above). */
void vlm_siglip_loss_layout_local(vlm_siglip_loss_acts *s, vlm_arena *a, int64_t B, int64_t N, int64_t off,
                                  int64_t E);
/* image_features, text_features [N,E]; logit_scale (raw, before exp) and logit_bias [] or [1]. */
void vlm_siglip_loss_forward(vlm_siglip_loss_acts *s, const vlm_tensor *image_features,
                             const vlm_tensor *text_features, const vlm_tensor *logit_scale,
                             const vlm_tensor *logit_bias);
/* Backward of s->loss * dloss: accumulates into d_image_features, d_text_features [N,E],
 * d_logit_scale and d_logit_bias (any may be NULL). */
void vlm_siglip_loss_backward(vlm_siglip_loss_acts *s, float dloss, const vlm_tensor *image_features,
                              const vlm_tensor *text_features, vlm_tensor *d_image_features,
                              vlm_tensor *d_text_features, vlm_tensor *d_logit_scale, vlm_tensor *d_logit_bias);
/* open_clip's --siglip initial values: logit_scale ln 10, logit_bias -10. */
#define VLM_SIGLIP_INIT_LOGIT_SCALE 2.302585092994046f /* ln 10 */
#define VLM_SIGLIP_INIT_LOGIT_BIAS (-10.0f)
/* ---- zero-shot classification (zeroshot.c) and nearest-neighbour search (knn.c) ----
 * open_clip's zero-shot classifier (zero_shot_classifier.py): for each class, the
 * text embeddings of every template filled with the class name, each L2-normalized,
 * averaged, renormalized; logits = 100 * cos(image, class). Templates hold "{}" or
 * "{c}" where the class name goes. */
#define VLM_ZEROSHOT_LOGIT_SCALE 100.0f
/* Built-in template sets: "openai" (open_clip's OPENAI_IMAGENET_TEMPLATES, 80),
 * "simple" (SIMPLE_IMAGENET_TEMPLATES, 7) and "shapes" (6 short prompts for the
 * synthetic shapes set, "a photo of {a} {}"). Returns the count and sets *out, or 0
 * if unknown. */
int vlm_zeroshot_templates_builtin(const char *name, const char *const **out);
/* Templates from a file, one per non-empty line, each holding "{}" or "{c}"
 * (errors name the file and line; a UTF-8 BOM at its start is skipped). *out is a malloc'd array of malloc'd strings:
 * free with vlm_zeroshot_strings_free. */
vlm_status vlm_zeroshot_templates_load(const char *path, char ***out, int *n);
void vlm_zeroshot_strings_free(char **s, int n);
/* 1 if tmpl (not NULL) holds "{}" or "{c}" for the class name: the rule every
 * template source follows (a templates file, the C API's templates[]). */
int vlm_zeroshot_template_ok(const char *tmpl);
/* The template with every "{}" / "{c}" replaced by classname and every "{a}" by its
 * indefinite article ("an" before a vowel, else "a"); malloc'd, NULL on OOM. */
char *vlm_zeroshot_fill(const char *tmpl, const char *classname);

/* Encode n texts into out[n, E] (any scale: the classifier normalizes). Returns VLM_OK
 * or an error status with its message set. */
typedef vlm_status (*vlm_text_encode_fn)(void *ctx, const char *const *texts, int n, float *out);
/* The classifier W [n_classes, E] (unit rows). Texts are passed to encode in batches
 * of at most batch (<= 0: all templates of one class per call). */
vlm_status vlm_zeroshot_classifier(vlm_text_encode_fn encode, void *ctx, const char *const *classnames,
                                   int n_classes, const char *const *templates, int n_templates, int64_t E,
                                   int batch, float *W);
/* logits[N, C] = 100 * img[N, E] @ W[C, E]^T (img rows L2-normalized by the caller). */
void vlm_zeroshot_logits(const float *img, int64_t N, const float *W, int64_t C, int64_t E, float *logits);
/* In-place softmax of a row of n logits. */
void vlm_softmax_row(float *x, int64_t n);
/* The k largest of x[n] in descending order (ties: lower index first) into idx[k]
 * (and val[k] when not NULL); k is clamped to n, the count is returned. */
int vlm_topk(const float *x, int64_t n, int k, int64_t *idx, float *val);
/* Zero-shot accuracy (open_clip's definition: a sample counts for top-k when its
 * label is among the k largest logits; ties: the lower class index first). Samples
 * whose label is outside [0, C) are not counted; subset[i] != 0 (subset may be NULL)
 * marks samples reported apart as well (the shapes set's unseen colour-shape
 * combinations). */
typedef struct {
  int64_t n;                 /* samples counted */
  double top1, top5;         /* fractions */
  int64_t n_subset;          /* counted samples with subset[i] != 0 */
  double subset_top1, subset_top5;
} vlm_zeroshot_result;
/* From logits [N, C]. */
void vlm_zeroshot_accuracy(const float *logits, int64_t N, int64_t C, const int *labels, const uint8_t *subset,
                           vlm_zeroshot_result *out);
/* From image features [N, E] (normalized or not: a row's ranking of the classes does
 * not depend on its scale) and the classifier W [C, E], in chunks of rows (no [N, C]
 * matrix is allocated). */
vlm_status vlm_zeroshot_eval(const float *img, int64_t N, int64_t E, const float *W, int64_t C, const int *labels,
                             const uint8_t *subset, vlm_zeroshot_result *out);

/* Exact nearest neighbours by inner product: the k best rows of db [N, E] for query
 * q [E], descending (ties: lower index first) into idx[k], scores[k]. Blocked,
 * OpenMP over row ranges, one bounded heap per thread, merged. Returns the count. */
int vlm_knn_search(const float *db, int64_t N, int64_t E, const float *q, int k, int64_t *idx, float *scores);
/* ---- end zero-shot / search ---- */
/* ---- evaluation metrics (contrastive/retrieval.c) ----
 * Retrieval both ways between N distinct images and M captions, on cosine similarity
 * (the logit scale does not change a ranking). Text j is a caption of image txt_img[j]
 * (NULL: of image j, N == M); texts with equal txt_item are the same item (the shapes
 * rule: identical captions; NULL: every text its own item).
 *   Matches: image u and text j match iff j is a caption of u, or (items) j is the same
 *   item as one of u's captions.
 *   Image->text: each image is a query; the candidates are the distinct text items (an
 *   item scores its best row; identical captions have equal embeddings anyway), so a
 *   caption repeated 21 times is one candidate, not 21, while COCO's 5 different
 *   captions of an image stay 5 candidates (the COCO protocol: a hit at K iff one of
 *   the image's captions is among the top K captions).
 *   Text->image: each text (row) is a query; the candidates are the N images, each once
 *   (callers reduce a loader's one-row-per-caption images to one row per image: see
 *   vlm_retrieval_first_of_groups); with items, every image with an identical caption
 *   matches, and images stay separate candidates (they are different pictures).
 * A query's rank is 1 + the number of non-matching candidates scoring strictly above its
 * best matching one (open_clip takes the position of the ground truth in an argsort; the
 * two agree but for exact ties). R@k = fraction of queries with rank <= k, mean rank,
 * and median rank = floor(median(rank - 1)) + 1 as open_clip computes it. With one
 * distinct caption per image and NULL arrays this is open_clip's get_clip_metrics.
 * Queries with no match (an image without captions) are left out, counted in skipped. */
typedef struct {
  double r1, r5, r10, mean_rank, median_rank;
  int64_t queries, skipped;
} vlm_retrieval_dir;
typedef struct {
  vlm_retrieval_dir i2t, t2i;
} vlm_retrieval_metrics;

/* img [N,E], txt [M,E] features (any norm: each row is L2-normalized here). Errors:
 * txt_img NULL with N != M, or a txt_img value outside [0, N). */
vlm_status vlm_retrieval_compute(const float *img, int64_t N, const float *txt, int64_t M, const int64_t *txt_img,
                                 const int64_t *txt_item, int64_t E, vlm_retrieval_metrics *out);
/* The shapes rule's keys: key[i] = key[j] for the first j < i whose caption token ids
 * (rows of ids [n, L]) equal row i's, else base[i] (base NULL: i). Hashed, O(n L).
 * With base NULL these are vlm_retrieval_compute's txt_item. */
vlm_status vlm_retrieval_caption_keys(const int32_t *ids, int64_t n, int64_t L, const int64_t *base, int64_t *key);
/* One row per group, for evaluations whose loader yields an image once per caption
 * (COCO: 5 rows of the same image): rows[0..*U) = the first row of each distinct
 * groups[] value, in order of appearance (rows has room for n); of (NULL: not wanted)
 * [n]: of[i] = the u with rows[u] the first row of row i's group, i.e. the image row
 * of caption i (vlm_retrieval_compute's txt_img). Hashed, O(n). Left as n copies, an
 * image with 5 captions would take 5 places in a text's ranking. */
vlm_status vlm_retrieval_first_of_groups(const int64_t *groups, int64_t n, int64_t *rows, int64_t *U, int64_t *of);

/* A map from a sample's group (the image a caption belongs to) to a row index,
 * so that an evaluation encodes each image once (contrastive/group_map.c).
 * Zero-initialise; rows are >= 0. */
typedef struct {
  int64_t *key, *val;   /* val -1: empty slot */
  size_t cap, n;
} vlm_group_map;
/* Adds group -> row unless the group is there: *found = its row, else -1. */
vlm_status vlm_group_map_add(vlm_group_map *m, int64_t group, int64_t row, int64_t *found);
/* The group's row, writable in place; NULL when absent. */
int64_t *vlm_group_map_ref(vlm_group_map *m, int64_t group);
void vlm_group_map_free(vlm_group_map *m);

#endif
