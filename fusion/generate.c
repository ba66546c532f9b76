/* Caption generation for CoCa: greedy, beam search, top-k / top-p sampling with
 * temperature, repetition penalty, min / max length, stop at EOT.
 *
 * Two steppers give the next-token logits of every row:
 *   cached:   the text tower's and the decoder's self-attention keys/values
 *             are kept per layer ([R, max_len, W]); the cross-attention keys
 *             and values of the image tokens are computed once; each step runs
 *             one position through the towers.
 *   uncached: the whole prefix through the text tower (with its cls) and the
 *             decoder every step, as open_clip's generate does.
 * Both are written over the core ops, so a test can demand identical tokens,
 * and run where the image tokens and the weights are (the CPU or a GPU): the
 * step's ids and mask are staged on the host and uploaded, the logits come
 * back to the host, where the processors, sampling and beam bookkeeping run. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fusion/fusion.h"

void vlm_gen_options_default(vlm_gen_options *o) {
  memset(o, 0, sizeof *o);
  o->beams = 1;
  o->temperature = 1.0f;
  o->repetition_penalty = 1.0f;
  o->length_penalty = 1.0f;
  o->min_len = 5;
  o->max_len = 30;
  o->sot_id = 49406;
  o->eot_id = 49407;
  o->pad_id = 0;
  o->seed = 0;
  o->use_cache = 1;
}

vlm_status vlm_gen_options_check(const vlm_gen_options *o, const vlm_text_config *tc, const vlm_decoder_config *dc) {
  int64_t ctx = tc->context_length < dc->context_length ? tc->context_length : dc->context_length;
  if (ctx < 2)
    return vlm_error(VLM_ERR_ARG, "the model's context length is %lld: generating needs at least 2 positions "
                     "(<|startoftext|> and a token)", (long long)ctx);
  if (o->max_len < 2 || o->max_len > ctx)
    return vlm_error(VLM_ERR_ARG, "max length %d must be in [2, %lld] (the model's context)", o->max_len,
                     (long long)ctx);
  if (o->min_len < 0 || o->min_len > o->max_len)
    return vlm_error(VLM_ERR_ARG, "min length %d must be in [0, max length %d]", o->min_len, o->max_len);
  if (o->beams < 1 || o->beams > 64) return vlm_error(VLM_ERR_ARG, "beams %d must be in [1, 64]", o->beams);
  if (o->top_k < 0) return vlm_error(VLM_ERR_ARG, "top-k %d must be >= 0", o->top_k);
  if (!(o->top_p >= 0 && o->top_p <= 1)) return vlm_error(VLM_ERR_ARG, "top-p %g must be in [0, 1]", o->top_p);
  if (!(o->temperature > 0) || !isfinite(o->temperature))
    return vlm_error(VLM_ERR_ARG, "temperature %g must be > 0", o->temperature);
  if (!(o->repetition_penalty > 0) || !isfinite(o->repetition_penalty))
    return vlm_error(VLM_ERR_ARG, "repetition penalty %g must be > 0", o->repetition_penalty);
  if (!isfinite(o->length_penalty)) return vlm_error(VLM_ERR_ARG, "length penalty must be finite");
  if (o->beams > 1 && (o->top_k > 0 || o->top_p > 0))
    return vlm_error(VLM_ERR_ARG, "beam search and sampling (top-k / top-p) are exclusive");
  int64_t V = dc->vocab_size;
  if (o->n_ids < 0 || o->n_ids > V)
    return vlm_error(VLM_ERR_ARG, "the tokenizer's %lld ids are more than the model's %lld", (long long)o->n_ids,
                     (long long)V);
  if (o->n_ids > 0 && o->eot_id >= o->n_ids)
    return vlm_error(VLM_ERR_ARG, "the end-of-text id %lld is not among the tokenizer's %lld ids", (long long)o->eot_id,
                     (long long)o->n_ids);
  if (o->sot_id < 0 || o->sot_id >= V || o->eot_id < 0 || o->eot_id >= V || o->pad_id < 0 || o->pad_id >= V)
    return vlm_error(VLM_ERR_ARG, "sot %lld / eot %lld / pad %lld ids must be in the vocabulary [0, %lld)",
                     (long long)o->sot_id, (long long)o->eot_id, (long long)o->pad_id, (long long)V);
  return VLM_OK;
}

/* ---------------------------------------------------------------- steppers */
typedef struct {
  const vlm_text_config *tc;
  const vlm_text_params *tp;
  const vlm_decoder_config *dc;
  const vlm_decoder_params *dp;
  int64_t R, maxL, N, pad_id;
  int cached;
  vlm_device dev;               /* where the arena lives: the image tokens' device */
  vlm_arena arena;
  /* cached */
  vlm_tensor *tk, *tv;          /* [text layers] of [R, maxL, W] */
  vlm_tensor *dk, *dv;          /* [decoder layers] of [R, maxL, W] */
  vlm_tensor *ckv;              /* [decoder layers] of [R, N, 2W] */
  vlm_tensor ids;               /* [R, 1] I32 */
  vlm_tensor x, h, ln, attn, q; /* [R, 1, W] */
  vlm_tensor qkv;               /* [R, 1, 3W] */
  vlm_tensor fc, act;           /* [R, 1, M] (the larger of both towers' M) */
  vlm_tensor kvn;               /* [R, N, W] */
  vlm_tensor mask;              /* [R * maxL] U8 */
  vlm_tensor logits;            /* [R, 1, V] */
  vlm_tensor *tmp_rows;         /* reorder scratch: [R, maxL, W] */
  vlm_tensor gather;            /* reorder row indices: [R * maxL] I64 */
  /* uncached */
  vlm_tensor ids_u;             /* [R, n] I32, the prefix */
  vlm_text_acts ta;
  vlm_decoder_acts da;
  const vlm_tensor *img;        /* [R, N, W] */
} stepper;

static vlm_tensor view3(const vlm_tensor *t, int64_t a, int64_t b, int64_t c) {
  int64_t sh[3] = {a, b, c};
  return vlm_tensor_make(t->data, t->dtype, t->device, 3, sh);
}

static void cached_layout(stepper *S, vlm_arena *a) {
  int64_t R = S->R, L = S->maxL, N = S->N, W = S->dc->width, V = S->dc->vocab_size;
  int64_t M = S->tc->mlp_width > S->dc->mlp_width ? S->tc->mlp_width : S->dc->mlp_width;
  int64_t WT = S->tc->width;
  for (int64_t i = 0; i < S->tc->layers; i++) {
    S->tk[i] = vlm_arena_tensor3(a, VLM_F32, R, L, WT);
    S->tv[i] = vlm_arena_tensor3(a, VLM_F32, R, L, WT);
  }
  for (int64_t i = 0; i < S->dc->layers; i++) {
    S->dk[i] = vlm_arena_tensor3(a, VLM_F32, R, L, W);
    S->dv[i] = vlm_arena_tensor3(a, VLM_F32, R, L, W);
    S->ckv[i] = vlm_arena_tensor3(a, VLM_F32, R, N, 2 * W);
  }
  S->ids = vlm_arena_tensor2(a, VLM_I32, R, 1);
  S->x = vlm_arena_tensor3(a, VLM_F32, R, 1, W);
  S->h = vlm_arena_tensor3(a, VLM_F32, R, 1, W);
  S->ln = vlm_arena_tensor3(a, VLM_F32, R, 1, W);
  S->attn = vlm_arena_tensor3(a, VLM_F32, R, 1, W);
  S->q = vlm_arena_tensor3(a, VLM_F32, R, 1, W);
  S->qkv = vlm_arena_tensor3(a, VLM_F32, R, 1, 3 * W);
  S->fc = vlm_arena_tensor3(a, VLM_F32, R, 1, M);
  S->act = vlm_arena_tensor3(a, VLM_F32, R, 1, M);
  S->kvn = vlm_arena_tensor3(a, VLM_F32, R, N, W);
  S->mask = vlm_arena_tensor1(a, VLM_U8, R * L);
  S->logits = vlm_arena_tensor3(a, VLM_F32, R, 1, V);
  S->tmp_rows[0] = vlm_arena_tensor3(a, VLM_F32, R, L, W > WT ? W : WT);
  S->gather = vlm_arena_tensor1(a, VLM_I64, R * L);
}

static void uncached_layout(stepper *S, vlm_arena *a, int64_t L) {
  S->ids_u = vlm_arena_tensor2(a, VLM_I32, S->R, L);
  vlm_text_acts_layout(&S->ta, a, S->tc, S->R, L, 0);
  S->ta.pooled_only = 0;   /* the decoder reads the token states */
  vlm_decoder_acts_layout(&S->da, a, S->dc, S->R, L, S->N, 0);
}

static float scale_of(int64_t width, int64_t heads) { return 1.0f / sqrtf((float)(width / heads)); }

/* One position through a self-attention block with a KV cache: x [R,1,W] -> x.
 * The key/value of position pos is written into kc/vc [R, maxL, W]; mask (or NULL)
 * is [R, pos+1] U8. */
static void self_step(stepper *S, const vlm_block_config *bc, const vlm_block_params *p, vlm_tensor *kc,
                      vlm_tensor *vc, int64_t pos, const vlm_tensor *mask) {
  int64_t R = S->R, W = bc->width, M = bc->mlp_width;
  vlm_tensor x = view3(&S->x, R, 1, W), ln = view3(&S->ln, R, 1, W), attn = view3(&S->attn, R, 1, W);
  vlm_tensor qkv = view3(&S->qkv, R, 1, 3 * W), h = view3(&S->h, R, 1, W);
  vlm_tensor fc = view3(&S->fc, R, 1, M), act = view3(&S->act, R, 1, M);
  vlm_layernorm_forward(&ln, NULL, NULL, &x, &p->ln_1_w, &p->ln_1_b, bc->ln_eps);
  vlm_matmul_forward(&qkv, &ln, &p->in_proj_w, &p->in_proj_b, 0, 1);
  /* qkv as [3R, W] rows: row 3r+1 is row r's key, 3r+2 its value, into position pos */
  vlm_tensor qkv_rows = view3(&qkv, 1, 3 * R, W);
  vlm_copy_rows(kc, pos, S->maxL, &qkv_rows, 1, 3, R, 1);
  vlm_copy_rows(vc, pos, S->maxL, &qkv_rows, 2, 3, R, 1);
  vlm_tensor q = vlm_narrow(&qkv, 2, 0, W), k = vlm_narrow(kc, 1, 0, pos + 1), v = vlm_narrow(vc, 1, 0, pos + 1);
  vlm_attention_forward(&attn, NULL, &q, &k, &v, (int)bc->heads, mask, 0, scale_of(W, bc->heads));
  vlm_matmul_forward(&h, &attn, &p->out_proj_w, &p->out_proj_b, 0, 1);
  vlm_add_forward(&h, &h, &x);
  vlm_layernorm_forward(&ln, NULL, NULL, &h, &p->ln_2_w, &p->ln_2_b, bc->ln_eps);
  vlm_matmul_forward(&fc, &ln, &p->fc_w, &p->fc_b, 0, 1);
  vlm_act_forward(bc->act, &act, &fc);
  vlm_matmul_forward(&x, &act, &p->proj_w, &p->proj_b, 0, 1);
  vlm_add_forward(&x, &x, &h);
}

/* One position through a cross-attention block over precomputed image keys/values. */
static void cross_step(stepper *S, const vlm_block_config *bc, const vlm_cross_params *p, const vlm_tensor *kv) {
  int64_t R = S->R, W = bc->width, M = bc->mlp_width;
  vlm_tensor x = view3(&S->x, R, 1, W), ln = view3(&S->ln, R, 1, W), attn = view3(&S->attn, R, 1, W);
  vlm_tensor q = view3(&S->q, R, 1, W), h = view3(&S->h, R, 1, W);
  vlm_tensor fc = view3(&S->fc, R, 1, M), act = view3(&S->act, R, 1, M);
  vlm_layernorm_forward(&ln, NULL, NULL, &x, &p->b.ln_1_w, &p->b.ln_1_b, bc->ln_eps);
  vlm_tensor wq = vlm_narrow(&p->b.in_proj_w, 0, 0, W), bq = vlm_narrow(&p->b.in_proj_b, 0, 0, W);
  vlm_matmul_forward(&q, &ln, &wq, &bq, 0, 1);
  vlm_tensor k = vlm_narrow(kv, 2, 0, W), v = vlm_narrow(kv, 2, W, W);
  vlm_attention_forward(&attn, NULL, &q, &k, &v, (int)bc->heads, NULL, 0, scale_of(W, bc->heads));
  vlm_matmul_forward(&h, &attn, &p->b.out_proj_w, &p->b.out_proj_b, 0, 1);
  vlm_add_forward(&h, &h, &x);
  vlm_layernorm_forward(&ln, NULL, NULL, &h, &p->b.ln_2_w, &p->b.ln_2_b, bc->ln_eps);
  vlm_matmul_forward(&fc, &ln, &p->b.fc_w, &p->b.fc_b, 0, 1);
  vlm_act_forward(bc->act, &act, &fc);
  vlm_matmul_forward(&x, &act, &p->b.proj_w, &p->b.proj_b, 0, 1);
  vlm_add_forward(&x, &x, &h);
}

/* Logits [R, V] for the last of n tokens of each row of hist [R, maxL]. */
static void step_cached(stepper *S, const int32_t *hist, int64_t n, float *logits) {
  int64_t R = S->R, pos = n - 1, L = S->maxL, WT = S->tc->width, W = S->dc->width;
  int32_t *ids = vlm_host_stage(&S->ids, (size_t)R * sizeof(int32_t));
  for (int64_t r = 0; r < R; r++) ids[r] = hist[r * L + pos];
  vlm_host_commit(&S->ids, ids, (size_t)R * sizeof(int32_t));
  /* text tower: token + position, blocks with the legacy key padding mask */
  vlm_tensor x = view3(&S->x, R, 1, WT);
  vlm_tensor pe = vlm_narrow(&S->tp->pos_emb, 0, pos, 1);
  vlm_embedding_forward(&x, &S->ids, &S->tp->token_emb, &pe);
  uint8_t *m = vlm_host_stage(&S->mask, (size_t)(R * (pos + 1)));
  for (int64_t r = 0; r < R; r++)
    for (int64_t j = 0; j <= pos; j++) m[r * (pos + 1) + j] = j >= 1 && hist[r * L + j - 1] == S->pad_id;
  vlm_host_commit(&S->mask, m, (size_t)(R * (pos + 1)));
  int64_t msh[2] = {R, pos + 1};
  vlm_tensor mask = vlm_tensor_make(S->mask.data, VLM_U8, S->mask.device, 2, msh);
  vlm_block_config tbc = vlm_text_block_config(S->tc);
  for (int64_t i = 0; i < S->tc->layers; i++) self_step(S, &tbc, &S->tp->blocks[i], &S->tk[i], &S->tv[i], pos, &mask);
  /* decoder */
  vlm_block_config dbc = vlm_decoder_block_config(S->dc);
  for (int64_t i = 0; i < S->dc->layers; i++) {
    self_step(S, &dbc, &S->dp->self[i], &S->dk[i], &S->dv[i], pos, NULL);
    cross_step(S, &dbc, &S->dp->cross[i], &S->ckv[i]);
  }
  vlm_tensor xd = view3(&S->x, R, 1, W), ln = view3(&S->ln, R, 1, W);
  vlm_layernorm_forward(&ln, NULL, NULL, &xd, &S->dp->ln_final_w, &S->dp->ln_final_b, S->dc->ln_eps);
  vlm_matmul_forward(&S->logits, &ln, &S->dp->proj, NULL, 0, 0);
  vlm_tensor host = vlm_tensor_cpu_f32(logits, 3, S->logits.shape);
  vlm_copy(&host, &S->logits);
}

static void step_uncached(stepper *S, const int32_t *hist, int64_t n, float *logits) {
  int64_t R = S->R, L = S->maxL, V = S->dc->vocab_size;
  vlm_arena_reset(&S->arena);
  uncached_layout(S, &S->arena, n);
  int32_t *h = vlm_host_stage(&S->ids_u, (size_t)(R * n) * sizeof(int32_t));
  for (int64_t r = 0; r < R; r++) memcpy(h + r * n, hist + r * L, (size_t)n * sizeof(int32_t));
  vlm_host_commit(&S->ids_u, h, (size_t)(R * n) * sizeof(int32_t));
  vlm_text_forward(S->tc, S->tp, &S->ta, &S->ids_u);
  vlm_text_tokens(S->tc, &S->ta, &S->da.xs[0]);
  vlm_decoder_forward(S->dc, S->dp, &S->da, S->img);
  /* each row's last position's logits, to the host */
  int64_t hsh[2] = {R, V};
  vlm_tensor host = vlm_tensor_cpu_f32(logits, 2, hsh);
  vlm_copy_rows(&host, 0, 1, &S->da.logits, n - 1, n, R, 1);
}

/* Rows r <- src[r] of a cache t [R, maxL, W] (its first n positions): one
 * gather (an embedding lookup over t's rows, at the indices in S->gather) into
 * the scratch, then one copy back. */
static void reorder_rows(stepper *S, vlm_tensor *t, int64_t n) {
  int64_t R = S->R, L = t->shape[1], W = t->shape[2];
  int64_t ish[2] = {R, n}, tsh[2] = {R * L, W};
  vlm_tensor table = vlm_tensor_make(t->data, VLM_F32, t->device, 2, tsh), tmp = view3(&S->tmp_rows[0], R, n, W);
  vlm_tensor idx = vlm_tensor_make(S->gather.data, VLM_I64, S->gather.device, 2, ish);
  vlm_embedding_forward(&tmp, &idx, &table, NULL);
  vlm_copy_rows(t, 0, L, &tmp, 0, n, R, n);
}

static void stepper_reorder(stepper *S, const int *src, int64_t n) {
  if (!S->cached) return;   /* the uncached stepper reads the reordered history */
  int64_t R = S->R, L = S->maxL, moved = 0;
  for (int64_t r = 0; r < R; r++) moved += src[r] != r;
  if (!moved) return;   /* every beam kept its row */
  int64_t *g = vlm_host_stage(&S->gather, (size_t)(R * n) * sizeof(int64_t));
  for (int64_t r = 0; r < R; r++)
    for (int64_t j = 0; j < n; j++) g[r * n + j] = (int64_t)src[r] * L + j;
  vlm_host_commit(&S->gather, g, (size_t)(R * n) * sizeof(int64_t));
  for (int64_t i = 0; i < S->tc->layers; i++) {
    reorder_rows(S, &S->tk[i], n);
    reorder_rows(S, &S->tv[i], n);
  }
  for (int64_t i = 0; i < S->dc->layers; i++) {
    reorder_rows(S, &S->dk[i], n);
    reorder_rows(S, &S->dv[i], n);
  }
  /* ckv: rows are only exchanged among the beams of one image, which share it. */
}

static void stepper_free(stepper *S) {
  free(S->tk);
  free(S->tv);
  free(S->dk);
  free(S->dv);
  free(S->ckv);
  free(S->tmp_rows);
  vlm_text_acts_free(&S->ta);
  vlm_decoder_acts_free(&S->da);
  vlm_arena_free(&S->arena);
}

static vlm_status stepper_init(stepper *S, const vlm_text_config *tc, const vlm_text_params *tp,
                               const vlm_decoder_config *dc, const vlm_decoder_params *dp, const vlm_tensor *img,
                               int64_t R, int64_t maxL, int cached, int64_t pad_id) {
  memset(S, 0, sizeof *S);
  S->tc = tc;
  S->tp = tp;
  S->dc = dc;
  S->dp = dp;
  S->R = R;
  S->maxL = maxL;
  S->N = img->shape[1];
  S->img = img;
  S->cached = cached;
  S->pad_id = pad_id;
  S->dev = img->device;
  size_t nt = (size_t)(tc->layers > 0 ? tc->layers : 1), nd = (size_t)(dc->layers > 0 ? dc->layers : 1);
  vlm_arena m;
  vlm_arena_measure(&m, S->dev);
  if (cached) {
    S->tk = calloc(nt, sizeof *S->tk);
    S->tv = calloc(nt, sizeof *S->tv);
    S->dk = calloc(nd, sizeof *S->dk);
    S->dv = calloc(nd, sizeof *S->dv);
    S->ckv = calloc(nd, sizeof *S->ckv);
    S->tmp_rows = calloc(1, sizeof *S->tmp_rows);
    if (!S->tk || !S->tv || !S->dk || !S->dv || !S->ckv || !S->tmp_rows) goto oom;
    cached_layout(S, &m);
  } else {
    if (vlm_text_acts_alloc(&S->ta, tc, R) != VLM_OK || vlm_decoder_acts_alloc(&S->da, dc) != VLM_OK) goto oom;
    uncached_layout(S, &m, maxL);
  }
  vlm_status st = vlm_arena_init(&S->arena, m.used, S->dev);
  if (st != VLM_OK) {
    stepper_free(S);
    return vlm_error_prefix(st, "generation buffers (%zu bytes)", m.used);
  }
  if (cached) {
    cached_layout(S, &S->arena);
    /* The image keys/values of every cross-attention layer, once. */
    vlm_block_config dbc = vlm_decoder_block_config(dc);
    for (int64_t i = 0; i < dc->layers; i++) vlm_cross_kv(&dbc, &dp->cross[i], &S->ckv[i], &S->kvn, NULL, NULL, img);
  }
  return VLM_OK;
oom:
  stepper_free(S);
  return vlm_error(VLM_ERR_OOM, "generation: out of memory");
}

static void stepper_step(stepper *S, const int32_t *hist, int64_t n, float *logits) {
  if (S->cached) step_cached(S, hist, n, logits);
  else step_uncached(S, hist, n, logits);
}

/* ---------------------------------------------------------------- logits processors */
/* open_clip's processors: MinLength (EOT forbidden while fewer than min_len ids),
 * RepetitionPenalty (Hugging Face's rule); ids the tokenizer cannot decode forbidden. */
static void process(const vlm_gen_options *o, const int32_t *row, int64_t n, float *lg, int64_t V) {
  for (int64_t i = o->n_ids > 0 ? o->n_ids : V; i < V; i++) lg[i] = -INFINITY;
  if (n < o->min_len) lg[o->eot_id] = -INFINITY;
  if (o->repetition_penalty != 1.0f) {
    /* each distinct id once */
    for (int64_t i = 0; i < n; i++) {
      int seen = 0;
      for (int64_t j = 0; j < i && !seen; j++) seen = row[j] == row[i];
      if (seen || row[i] < 0 || row[i] >= V) continue;
      float *s = &lg[row[i]];
      *s = *s < 0 ? *s * o->repetition_penalty : *s / o->repetition_penalty;
    }
  }
}

typedef struct { float v; int32_t i; } scored;

static int by_value_desc(const void *a, const void *b) {
  const scored *x = a, *y = b;
  if (x->v != y->v) return x->v > y->v ? -1 : 1;
  return x->i < y->i ? -1 : x->i > y->i;
}

/* Hugging Face's TopK / TopP warpers (filtered to -inf), then softmax(lg / T) and a draw. */
static int32_t sample(const vlm_gen_options *o, float *lg, int64_t V, scored *tmp, vlm_rng *rng) {
  for (int64_t i = 0; i < V; i++) tmp[i] = (scored){lg[i], (int32_t)i};
  qsort(tmp, (size_t)V, sizeof *tmp, by_value_desc);
  int64_t keep = V;
  if (o->top_k > 0 && o->top_k < V) {
    float kth = tmp[o->top_k - 1].v;
    keep = o->top_k;
    while (keep < V && tmp[keep].v == kth) keep++;   /* HF keeps every value >= the k-th */
  }
  if (o->top_p > 0 && o->top_p < 1) {
    /* ascending cumulative probability; drop while cum <= 1 - top_p, never the best */
    double mx = tmp[0].v, z = 0;
    for (int64_t i = 0; i < keep; i++) z += exp((double)tmp[i].v - mx);
    double cum = 0;
    int64_t drop_from = keep;
    for (int64_t i = keep - 1; i >= 1; i--) {
      cum += exp((double)tmp[i].v - mx) / z;
      if (cum <= 1.0 - o->top_p) drop_from = i;
      else break;
    }
    keep = drop_from;
  }
  double mx = tmp[0].v / o->temperature, z = 0;
  for (int64_t i = 0; i < keep; i++) z += exp((double)tmp[i].v / o->temperature - mx);
  double u = vlm_rng_uniform(rng) * z, acc = 0;
  for (int64_t i = 0; i < keep; i++) {
    acc += exp((double)tmp[i].v / o->temperature - mx);
    if (u < acc) return tmp[i].i;
  }
  return tmp[keep - 1].i;
}

static int32_t argmax(const float *lg, int64_t V) {
  int64_t best = 0;
  for (int64_t i = 1; i < V; i++)
    if (lg[i] > lg[best]) best = i;
  return (int32_t)best;
}

/* ---------------------------------------------------------------- greedy and sampling */
static vlm_status run_simple(stepper *S, const vlm_gen_options *o, int64_t B, int64_t V, int32_t *out, int *lens) {
  int64_t L = o->max_len;
  int32_t *hist = calloc((size_t)(B * L), sizeof *hist);
  float *lg = malloc((size_t)(B * V) * sizeof *lg);
  scored *tmp = malloc((size_t)V * sizeof *tmp);
  int *done = calloc((size_t)B, sizeof *done);
  if (!hist || !lg || !tmp || !done) {
    free(hist); free(lg); free(tmp); free(done);
    return vlm_error(VLM_ERR_OOM, "generation: out of memory");
  }
  vlm_rng *rng = malloc((size_t)B * sizeof *rng);
  if (!rng) {
    free(hist); free(lg); free(tmp); free(done);
    return vlm_error(VLM_ERR_OOM, "generation: out of memory");
  }
  for (int64_t b = 0; b < B; b++) vlm_rng_seed_stream(&rng[b], o->seed, o->first_row + (uint64_t)b);
  int sampling = o->top_k > 0 || o->top_p > 0;   /* top-p 1: the whole distribution */
  for (int64_t b = 0; b < B; b++) {
    for (int64_t l = 0; l < L; l++) hist[b * L + l] = (int32_t)o->pad_id;
    hist[b * L] = (int32_t)o->sot_id;
    lens[b] = 1;
  }
  for (int64_t n = 1; n < L; n++) {
    int all = 1;
    for (int64_t b = 0; b < B; b++) all &= done[b];
    if (all) break;
    stepper_step(S, hist, n, lg);
    for (int64_t b = 0; b < B; b++) {
      if (done[b]) continue;
      float *row = lg + b * V;
      process(o, hist + b * L, n, row, V);
      int32_t t = n + 1 == L ? (int32_t)o->eot_id : sampling ? sample(o, row, V, tmp, &rng[b]) : argmax(row, V);
      hist[b * L + n] = t;
      lens[b] = (int)(n + 1);
      if (t == o->eot_id || t == o->pad_id) done[b] = 1;
    }
  }
  memcpy(out, hist, (size_t)(B * L) * sizeof *out);
  free(hist); free(lg); free(tmp); free(done); free(rng);
  return VLM_OK;
}

/* ---------------------------------------------------------------- beam search
 * Hugging Face's BeamSearchScorer (one beam group): log-softmax scores plus the
 * beam's, the best 2K candidates per image; a candidate ending in EOT (ranked
 * among the first K) becomes a finished hypothesis scored sum / len^length_penalty,
 * the others fill the K beams; an image is done when K hypotheses exist and none
 * of the live beams can beat the worst; at max_len the live beams are finalized. */
typedef struct { double score; int len; int32_t *ids; } hyp;

typedef struct { hyp *h; int n; double worst; } hyp_set;

static void hyp_add(hyp_set *s, int K, const int32_t *ids, int len, double sum_logprobs, double lp) {
  double score = sum_logprobs / pow((double)len, lp);
  if (s->n >= K && score <= s->worst) return;
  int slot = s->n;
  if (s->n >= K) {
    for (int i = 0; i < s->n; i++)
      if (s->h[i].score == s->worst) { slot = i; break; }
  } else {
    s->n++;
  }
  memcpy(s->h[slot].ids, ids, (size_t)len * sizeof *ids);
  s->h[slot].len = len;
  s->h[slot].score = score;
  s->worst = INFINITY;
  for (int i = 0; i < s->n; i++)
    if (s->h[i].score < s->worst) s->worst = s->h[i].score;
}

static vlm_status run_beams(stepper *S, const vlm_gen_options *o, int64_t B, int64_t V, int32_t *out, int *lens) {
  int K = o->beams;
  int64_t R = B * K, L = o->max_len;
  int32_t *hist = calloc((size_t)(R * L), sizeof *hist), *next_hist = calloc((size_t)(R * L), sizeof *hist);
  int32_t *hyp_ids = calloc((size_t)(B * K * L), sizeof *hyp_ids);
  float *lg = malloc((size_t)(R * V) * sizeof *lg);
  double *bscore = calloc((size_t)R, sizeof *bscore), *nscore = calloc((size_t)R, sizeof *nscore);
  scored *cand = malloc((size_t)(2 * K) * sizeof *cand);
  hyp *hyps = calloc((size_t)(B * K), sizeof *hyps);
  hyp_set *sets = calloc((size_t)B, sizeof *sets);
  int *done = calloc((size_t)B, sizeof *done), *src = calloc((size_t)R, sizeof *src);
  if (!hist || !next_hist || !hyp_ids || !lg || !bscore || !nscore || !cand || !hyps || !sets || !done || !src) {
    free(hist); free(next_hist); free(hyp_ids); free(lg); free(bscore); free(nscore); free(cand); free(hyps);
    free(sets); free(done); free(src);
    return vlm_error(VLM_ERR_OOM, "beam search: out of memory");
  }
  for (int64_t i = 0; i < B * K; i++) hyps[i].ids = hyp_ids + i * L;
  for (int64_t b = 0; b < B; b++) {
    sets[b].h = hyps + b * K;
    sets[b].worst = INFINITY;
  }
  for (int64_t r = 0; r < R; r++) {
    for (int64_t l = 0; l < L; l++) hist[r * L + l] = (int32_t)o->pad_id;
    hist[r * L] = (int32_t)o->sot_id;
    bscore[r] = r % K == 0 ? 0.0 : -1e9;   /* only the first beam is live at the start */
  }
  int64_t n = 1;
  for (; n < L; n++) {
    stepper_step(S, hist, n, lg);
    for (int64_t r = 0; r < R; r++) {
      float *row = lg + r * V;
      /* log-softmax, then the processors, as HF's beam search */
      double mx = -INFINITY, z = 0;
      for (int64_t v = 0; v < V; v++) mx = fmax(mx, row[v]);
      for (int64_t v = 0; v < V; v++) z += exp((double)row[v] - mx);
      float lz = (float)(mx + log(z));
      for (int64_t v = 0; v < V; v++) row[v] -= lz;
      process(o, hist + r * L, n, row, V);
    }
    for (int64_t b = 0; b < B; b++) {
      if (done[b]) {
        for (int k = 0; k < K; k++) {   /* finished images keep padding */
          int64_t r = b * K + k;
          src[r] = (int)r;
          nscore[r] = 0;
          memcpy(next_hist + r * L, hist + r * L, (size_t)L * sizeof *hist);
          next_hist[r * L + n] = (int32_t)o->pad_id;
        }
        continue;
      }
      /* The best 2K of the K * V candidates (beam k, token v: id k * V + v), best first by
       * score, ties to the lower id: one pass in id order keeping a sorted list, so a later
       * candidate enters only with a strictly higher score. NaN scores never enter. */
      int64_t need = 2 * K < K * V ? 2 * K : K * V, cnt = 0;
      for (int k = 0; k < K; k++) {
        const float *row = lg + (b * K + k) * V;
        const double base = bscore[b * K + k];
        for (int64_t v = 0; v < V; v++) {
          const float val = (float)(row[v] + base);
          if (cnt == need ? !(val > cand[need - 1].v) : val != val) continue;
          int64_t at = cnt < need ? cnt++ : need - 1;
          for (; at > 0 && val > cand[at - 1].v; at--) cand[at] = cand[at - 1];
          cand[at] = (scored){val, (int32_t)(k * V + v)};
        }
      }
      need = cnt;
      int filled = 0;
      for (int64_t i = 0; i < need && filled < K; i++) {
        int beam = cand[i].i / (int32_t)V;
        int32_t tok = cand[i].i % (int32_t)V;
        int64_t from = b * K + beam;
        if (tok == o->eot_id) {
          if (i >= K) continue;
          hyp_add(&sets[b], K, hist + from * L, (int)n, cand[i].v, o->length_penalty);
          continue;
        }
        int64_t r = b * K + filled++;
        src[r] = (int)from;
        nscore[r] = cand[i].v;
        memcpy(next_hist + r * L, hist + from * L, (size_t)L * sizeof *hist);
        next_hist[r * L + n] = tok;
      }
      for (; filled < K; filled++) {   /* fewer than K live candidates (tiny vocabularies) */
        int64_t r = b * K + filled;
        src[r] = (int)(b * K);
        nscore[r] = -1e9;
        memcpy(next_hist + r * L, hist + b * K * L, (size_t)L * sizeof *hist);
        next_hist[r * L + n] = (int32_t)o->pad_id;
      }
      /* done (early_stopping=False): K hypotheses, none beaten by the best candidate score */
      if (sets[b].n >= K && (cnt == 0 || sets[b].worst >= cand[0].v / pow((double)n, o->length_penalty))) done[b] = 1;
    }
    int32_t *t = hist;
    hist = next_hist;
    next_hist = t;
    memcpy(bscore, nscore, (size_t)R * sizeof *bscore);
    stepper_reorder(S, src, n);
    int all = 1;
    for (int64_t b = 0; b < B; b++) all &= done[b];
    if (all) { n++; break; }
  }
  /* finalize: live beams of unfinished images become hypotheses */
  for (int64_t b = 0; b < B; b++) {
    if (!done[b])
      for (int k = 0; k < K; k++) {
        int64_t r = b * K + k;
        if (bscore[r] > -1e8) hyp_add(&sets[b], K, hist + r * L, (int)(n < L ? n : L), bscore[r], o->length_penalty);
      }
    int best = 0;
    for (int i = 1; i < sets[b].n; i++)
      if (sets[b].h[i].score > sets[b].h[best].score) best = i;
    int32_t *o_row = out + b * L;
    for (int64_t l = 0; l < L; l++) o_row[l] = (int32_t)o->pad_id;
    if (sets[b].n == 0) {
      o_row[0] = (int32_t)o->sot_id;
      o_row[1] = (int32_t)o->eot_id;
      lens[b] = 2;
      continue;
    }
    hyp *h = &sets[b].h[best];
    memcpy(o_row, h->ids, (size_t)h->len * sizeof *o_row);
    lens[b] = h->len;
    if (h->len < L) o_row[lens[b]++] = (int32_t)o->eot_id;
  }
  free(hist); free(next_hist); free(hyp_ids); free(lg); free(bscore); free(nscore); free(cand); free(hyps);
  free(sets); free(done); free(src);
  return VLM_OK;
}

vlm_status vlm_generate(const vlm_text_config *tc, const vlm_text_params *tp, const vlm_decoder_config *dc,
                        const vlm_decoder_params *dp, const vlm_tensor *img, const vlm_gen_options *o, int32_t *out,
                        int *lens) {
  vlm_status st = vlm_gen_options_check(o, tc, dc);
  if (st != VLM_OK) return st;
  VLM_CHECK(tc->embed_cls && tc->width == dc->width, "generate: needs CoCa's text tower (embed_cls, decoder width)");
  VLM_CHECK(img->ndim == 3 && img->shape[2] == dc->width && vlm_is_contiguous(img) && img->dtype == VLM_F32,
            "generate: image tokens must be [B, N, W] F32 contiguous");
  int64_t B = img->shape[0], N = img->shape[1], W = dc->width, V = dc->vocab_size, K = o->beams;
  /* beams: every image's tokens repeated K times (on the tokens' device) */
  vlm_arena rep;
  memset(&rep, 0, sizeof rep);
  vlm_tensor imgs = *img;
  if (K > 1) {
    int64_t sh[3] = {B * K, N, W};
    st = vlm_arena_init(&rep, (size_t)(B * K * N * W) * sizeof(float) + VLM_ARENA_ALIGN, img->device);
    if (st != VLM_OK) return vlm_error_prefix(st, "generation: the beams' image tokens");
    imgs = vlm_arena_tensor(&rep, VLM_F32, 3, sh);
    for (int64_t k = 0; k < K; k++) vlm_copy_rows(&imgs, k * N, K * N, img, 0, N, B, N);
  }
  stepper S;
  st = stepper_init(&S, tc, tp, dc, dp, &imgs, B * K, o->max_len, o->use_cache, o->pad_id);
  if (st == VLM_OK) {
    st = K > 1 ? run_beams(&S, o, B, V, out, lens) : run_simple(&S, o, B, V, out, lens);
    stepper_free(&S);
  }
  vlm_arena_free(&rep);
  return st;
}
