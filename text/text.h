/* text: the CLIP tokenizer and the causal text encoder. */
#ifndef VLM_TEXT_H
#define VLM_TEXT_H
#include "core/core.h"

/* ---- text encoder ----
 * open_clip's TextTransformer (CLIP text tower), forward and backward over the
 * core op set: token + positional embedding -> causal pre-LN blocks -> ln_final
 * at the pooled position -> @ text_projection -> feature [B,E].
 * Pooling: argmax(ids) per row (open_clip, the EOT id being the largest; ties
 * -> first max), or with eot_id >= 0 the first position whose id is eot_id
 * (Hugging Face's rule when eos_token_id != 2; 0 when a row has none).
 * Parameter names are open_clip's (vlm_text_params_visit, no prefix). */
typedef struct {
  int64_t context_length; /* ctx: positional embedding rows; ids may be shorter */
  int64_t vocab_size;     /* V */
  int64_t width;          /* W */
  int64_t heads;
  int64_t layers;
  int64_t mlp_width;      /* W * mlp_ratio */
  int64_t embed_dim;      /* E */
  vlm_act act;
  float ln_eps;           /* 1e-5 */
  int64_t eot_id;         /* -1: argmax pooling */
} vlm_text_config;

vlm_block_config vlm_text_block_config(const vlm_text_config *c);

typedef struct {
  vlm_tensor token_emb;          /* [V, W] */
  vlm_tensor pos_emb;            /* [ctx, W] */
  vlm_block_params *blocks;      /* [layers] (vlm_text_params_alloc) */
  vlm_tensor ln_final_w, ln_final_b; /* [W] */
  vlm_tensor proj;               /* [W, E] text_projection */
} vlm_text_params;

vlm_status vlm_text_params_alloc(vlm_text_params *p, const vlm_text_config *c);
void vlm_text_params_free(vlm_text_params *p);
void vlm_text_params_layout(vlm_text_params *p, vlm_arena *a, const vlm_text_config *c);
void vlm_text_params_visit(vlm_text_params *p, const vlm_text_config *c, const char *prefix,
                           vlm_param_visit_fn fn, void *ctx);

typedef struct {
  int64_t B, L;
  vlm_tensor *xs;               /* [layers+1] of [B, L, W]: xs[0] = embeddings */
  vlm_block_acts *blocks;       /* [layers] */
  int64_t *pool_idx;            /* [B] pooled position per row (heap, vlm_text_acts_alloc) */
  vlm_tensor pooled;            /* [B, W] */
  vlm_tensor ln_final;          /* [B, W] */
  vlm_tensor ln_mean, ln_rstd;  /* [B] */
  vlm_tensor features;          /* [B, E] (unnormalized) */
  vlm_block_scratch scratch;
  vlm_tensor dx_a, dx_b;        /* [B, L, W] */
  vlm_tensor d_pooled, d_ln;    /* [B, W] */
  int with_backward;
} vlm_text_acts;

vlm_status vlm_text_acts_alloc(vlm_text_acts *s, const vlm_text_config *c, int64_t B);
void vlm_text_acts_free(vlm_text_acts *s);
void vlm_text_acts_layout(vlm_text_acts *s, vlm_arena *a, const vlm_text_config *c, int64_t B, int64_t L,
                          int with_backward);

/* Pooled position of each row of ids [B,L] (I32/I64, CPU) into idx[B]. */
void vlm_text_pool_index(const vlm_text_config *c, const vlm_tensor *ids, int64_t *idx);
/* ids [B,L] I32/I64 on the CPU, B and L as laid out. Result in s->features. */
void vlm_text_forward(const vlm_text_config *c, const vlm_text_params *p, vlm_text_acts *s, const vlm_tensor *ids);
void vlm_text_backward(const vlm_text_config *c, const vlm_text_params *p, vlm_text_params *g, vlm_text_acts *s,
                       const vlm_tensor *ids, const vlm_tensor *d_features);
/* ---- end text encoder ---- */

#endif
