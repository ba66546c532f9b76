/* vision: the ViT image tower of CLIP (open_clip's VisionTransformer), forward
 * and backward, written once over the core op set.
 *
 *   image [B,3,H,W] -> patchify (im2col, (c, ky, kx) order) @ conv1^T
 *   -> [class token; patches] + positional embedding -> ln_pre -> blocks
 *   -> ln_post(class token) @ proj -> feature [B,E]
 *
 * Parameter names are open_clip's, relative to "visual." (vlm_vit_params_visit). */
#ifndef VLM_VISION_H
#define VLM_VISION_H
#include "core/core.h"

typedef struct {
  int64_t image_size;  /* H = W of the input */
  int64_t patch_size;  /* P; image_size % P == 0 */
  int64_t width;       /* W */
  int64_t layers;
  int64_t heads;       /* W / head_width */
  int64_t mlp_width;   /* W * mlp_ratio */
  int64_t embed_dim;   /* E */
  vlm_act act;
  float ln_eps;        /* 1e-5 */
  /* CoCa (open_clip's attentional_pool): the pooler below replaces class-token
   * pooling; ln_post is then [E] and proj [E, E]. 0 for CLIP. */
  int attentional_pool;
  int64_t pool_queries; /* attn_pooler_queries (256) */
  int64_t pool_heads;   /* attn_pooler_heads (8) */
  /* The image transform the weights expect (open_clip's preprocess_cfg, a Hugging Face
   * preprocessor_config.json): mean and std per channel and resize_mode (the vlm_resize_mode
   * values: 0 shortest side + center crop, 1 squash, 2 longest side + pad). image_std all 0
   * (a zeroed config): not given, open_clip's defaults (OpenAI's mean and std, shortest). */
  double image_mean[3], image_std[3];
  int resize_mode;
} vlm_vit_config;

/* The mean, std and resize mode of c's images, its defaults filled in. */
void vlm_vit_image_norm(const vlm_vit_config *c, double mean[3], double std[3], int *resize_mode);

static inline int64_t vlm_vit_grid(const vlm_vit_config *c) { return c->image_size / c->patch_size; }
static inline int64_t vlm_vit_tokens(const vlm_vit_config *c) { return 1 + vlm_vit_grid(c) * vlm_vit_grid(c); }
vlm_block_config vlm_vit_block_config(const vlm_vit_config *c);

typedef struct {
  vlm_tensor conv1_w;          /* [W, 3, P, P] (no bias) */
  vlm_tensor class_emb;        /* [W] */
  vlm_tensor pos_emb;          /* [T, W], T = 1 + G*G */
  vlm_tensor ln_pre_w, ln_pre_b;   /* [W] */
  vlm_block_params *blocks;    /* [layers], caller-owned array (vlm_vit_params_alloc) */
  vlm_tensor ln_post_w, ln_post_b; /* [W] */
  vlm_tensor proj;             /* [W, E] */
} vlm_vit_params;

/* Allocate / free the blocks array (tensors come from an arena via _layout). */
vlm_status vlm_vit_params_alloc(vlm_vit_params *p, const vlm_vit_config *c);
void vlm_vit_params_free(vlm_vit_params *p);
void vlm_vit_params_layout(vlm_vit_params *p, vlm_arena *a, const vlm_vit_config *c);
/* Visit every parameter with its open_clip name prefixed by `prefix` ("visual."). */
void vlm_vit_params_visit(vlm_vit_params *p, const vlm_vit_config *c, const char *prefix,
                          vlm_param_visit_fn fn, void *ctx);

/* Activations for batch B (forward saves, backward reads). */
typedef struct {
  int64_t B;
  vlm_tensor patches;          /* [B*G*G, 3*P*P] */
  vlm_tensor patch_emb;        /* [B*G*G, W] */
  vlm_tensor x0;               /* [B, T, W] tokens + positions, before ln_pre */
  vlm_tensor ln_pre_mean, ln_pre_rstd; /* [B*T] */
  vlm_tensor *xs;              /* [layers+1] of [B, T, W]: xs[0] = ln_pre(x0), xs[i+1] = block i */
  vlm_block_acts *blocks;      /* [layers] */
  vlm_tensor pooled;           /* [B, W] class token of xs[layers] */
  vlm_tensor ln_post;          /* [B, W] */
  vlm_tensor ln_post_mean, ln_post_rstd; /* [B] */
  vlm_tensor features;         /* [B, E] output (unnormalized) */
  /* backward scratch */
  vlm_block_scratch scratch;
  vlm_tensor dx_a, dx_b;       /* [B, T, W] */
  vlm_tensor d_pooled, d_ln_post; /* [B, W] */
  vlm_tensor d_patch_emb;      /* [B*G*G, W] */
  vlm_tensor pool_rows;        /* [B, 1] I64 b*T: the class-token rows (pooled_only) */
  int with_backward;
  /* Set by the layout: vlm_vit_forward then runs the last block for the
   * class-token rows only (vlm_block_forward_rows; in training it saves what
   * vlm_vit_backward's vlm_block_backward_rows reads), so xs[layers] is not
   * written; features and gradients are unchanged up to rounding. A caller
   * that wants the token states clears it after the layout. */
  int pooled_only;
} vlm_vit_acts;

vlm_status vlm_vit_acts_alloc(vlm_vit_acts *s, const vlm_vit_config *c);   /* arrays only */
void vlm_vit_acts_free(vlm_vit_acts *s);
/* with_backward = 0 lays out only what inference needs. */
void vlm_vit_acts_layout(vlm_vit_acts *s, vlm_arena *a, const vlm_vit_config *c, int64_t B, int with_backward);

/* image [B,3,H,W] F32 contiguous on the CPU, B = the acts' batch. Result in s->features. */
void vlm_vit_forward(const vlm_vit_config *c, const vlm_vit_params *p, vlm_vit_acts *s, const vlm_tensor *image);
/* d_features [B,E]: accumulates into g (same layout as p). The image gradient is not computed. */
void vlm_vit_backward(const vlm_vit_config *c, const vlm_vit_params *p, vlm_vit_params *g, vlm_vit_acts *s,
                      const vlm_tensor *d_features);
/* The trunk alone (patchify .. blocks): forward leaves the tokens in s->xs[layers];
 * backward reads d xs[layers] from s->dx_a (overwritten) and accumulates into g. */
void vlm_vit_trunk_forward(const vlm_vit_config *c, const vlm_vit_params *p, vlm_vit_acts *s, const vlm_tensor *image);
void vlm_vit_trunk_backward(const vlm_vit_config *c, const vlm_vit_params *p, vlm_vit_params *g, vlm_vit_acts *s);

/* ---- CoCa: open_clip's AttentionalPooler (vision/attn_pool.c) ----
 *   xk = ln_k(x) [B,T,W];  q = ln_q(query) [Q,E] (shared by the batch)
 *   out = MultiheadAttention(q, xk, xk) with separate q/k/v projections
 *   (q_proj_weight [E,E], k/v_proj_weight [E,W], in_proj_bias [3E]) -> [B,Q,E]
 * and the CoCa image tower around it (open_clip's VisionTransformer with
 * attentional_pool): trunk -> pooler -> ln_post over all Q outputs;
 * output 0 @ proj is the image feature, outputs 1..Q-1 are the image tokens.
 * Names relative to "visual.attn_pool." (vlm_attn_pool_params_visit). */
typedef struct {
  vlm_tensor query;            /* [Q, E] */
  vlm_tensor q_w;              /* [E, E] attn.q_proj_weight */
  vlm_tensor k_w, v_w;         /* [E, W] attn.k_proj_weight, attn.v_proj_weight */
  vlm_tensor in_b;             /* [3E] attn.in_proj_bias */
  vlm_tensor out_w;            /* [E, E] attn.out_proj.weight */
  vlm_tensor out_b;            /* [E] */
  vlm_tensor ln_q_w, ln_q_b;   /* [E] */
  vlm_tensor ln_k_w, ln_k_b;   /* [W] */
} vlm_attn_pool_params;

typedef struct {
  int64_t B;
  vlm_tensor xk;               /* [B, T, W] ln_k(x) */
  vlm_tensor xk_mean, xk_rstd; /* [B*T] */
  vlm_tensor qn;               /* [Q, E] ln_q(query) */
  vlm_tensor qn_mean, qn_rstd; /* [Q] */
  vlm_tensor q1;               /* [Q, E] projected queries */
  vlm_tensor q;                /* [B, Q, E] the same for every image */
  vlm_tensor k, v;             /* [B, T, E] */
  vlm_tensor probs;            /* [B, H, Q, T] */
  vlm_tensor attn;             /* [B, Q, E] before out_proj */
  vlm_tensor out;              /* [B, Q, E] pooler output */
  vlm_tensor ln_post;          /* [B, Q, E] */
  vlm_tensor ln_post_mean, ln_post_rstd; /* [B*Q] */
  vlm_tensor pooled;           /* [B, E] ln_post output 0 */
  vlm_tensor features;         /* [B, E] pooled @ proj */
  vlm_tensor tokens;           /* [B, Q-1, E] ln_post outputs 1..Q-1 (image tokens) */
  /* backward scratch */
  vlm_tensor d_pooled;         /* [B, E] */
  vlm_tensor d_ln_post;        /* [B, Q, E] */
  vlm_tensor d_out, d_attn;    /* [B, Q, E] */
  vlm_tensor dq;               /* [B, Q, E] */
  vlm_tensor dk, dv;           /* [B, T, E] */
  vlm_tensor d_q1, d_qn;       /* [Q, E] */
  vlm_tensor d_xk;             /* [B, T, W] */
  int with_backward;
} vlm_attn_pool_acts;

void vlm_attn_pool_params_layout(vlm_attn_pool_params *p, vlm_arena *a, const vlm_vit_config *c);
void vlm_attn_pool_params_visit(vlm_attn_pool_params *p, const char *prefix, vlm_param_visit_fn fn, void *ctx);
void vlm_attn_pool_acts_layout(vlm_attn_pool_acts *s, vlm_arena *a, const vlm_vit_config *c, int64_t B,
                               int with_backward);
/* The pooler alone: x [B,T,W] -> s->out [B,Q,E]. */
void vlm_attn_pool_forward(const vlm_vit_config *c, const vlm_attn_pool_params *p, vlm_attn_pool_acts *s,
                           const vlm_tensor *x);
/* d_out [B,Q,E] -> dx [B,T,W] (+=) and the pooler's gradients (+=). */
void vlm_attn_pool_backward(const vlm_vit_config *c, const vlm_attn_pool_params *p, vlm_attn_pool_params *g,
                            vlm_attn_pool_acts *s, const vlm_tensor *x, const vlm_tensor *d_out, vlm_tensor *dx);
/* The CoCa image tower: image -> ps->features [B,E] and ps->tokens [B,Q-1,E]. */
void vlm_coca_vit_forward(const vlm_vit_config *c, const vlm_vit_params *p, const vlm_attn_pool_params *pp,
                          vlm_vit_acts *s, vlm_attn_pool_acts *ps, const vlm_tensor *image);
/* d_features [B,E] and d_tokens [B,Q-1,E] (either may be NULL) -> gradients (+=). */
void vlm_coca_vit_backward(const vlm_vit_config *c, const vlm_vit_params *p, const vlm_attn_pool_params *pp,
                           vlm_vit_params *g, vlm_attn_pool_params *gp, vlm_vit_acts *s, vlm_attn_pool_acts *ps,
                           const vlm_tensor *d_features, const vlm_tensor *d_tokens);
#endif
