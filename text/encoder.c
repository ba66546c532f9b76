/* The causal text encoder: layout, forward and backward over the core ops. */
#include <stdlib.h>
#include <string.h>

#include "core/block_stack.h"
#include "text/text.h"

vlm_block_config vlm_text_block_config(const vlm_text_config *c) {
  vlm_block_config b = {c->width, c->heads, c->mlp_width, c->act, c->ln_eps};
  return b;
}

vlm_status vlm_text_params_alloc(vlm_text_params *p, const vlm_text_config *c) {
  memset(p, 0, sizeof *p);
  p->blocks = vlm_layers_calloc(c->layers, sizeof *p->blocks);
  return p->blocks ? VLM_OK : vlm_error(VLM_ERR_OOM, "text: out of memory");
}

void vlm_text_params_free(vlm_text_params *p) {
  free(p->blocks);
  p->blocks = NULL;
}

void vlm_text_params_layout(vlm_text_params *p, vlm_arena *a, const vlm_text_config *c) {
  int64_t W = c->width;
  vlm_block_config bc = vlm_text_block_config(c);
  p->token_emb = vlm_arena_tensor2(a, VLM_F32, c->vocab_size, W);
  p->pos_emb = vlm_arena_tensor2(a, VLM_F32, c->context_length + (c->embed_cls ? 1 : 0), W);
  if (c->embed_cls) p->cls_emb = vlm_arena_tensor1(a, VLM_F32, W);
  for (int64_t i = 0; i < c->layers; i++) vlm_block_params_layout(&p->blocks[i], a, &bc);
  p->ln_final_w = vlm_arena_tensor1(a, VLM_F32, W);
  p->ln_final_b = vlm_arena_tensor1(a, VLM_F32, W);
  p->proj = vlm_arena_tensor2(a, VLM_F32, W, c->embed_dim);
}

void vlm_text_params_visit(vlm_text_params *p, const vlm_text_config *c, const char *prefix,
                           vlm_param_visit_fn fn, void *ctx) {
#define V(suffix, t) vlm_param_visit_named(fn, ctx, prefix, suffix, t)
  if (c->embed_cls) V("cls_emb", &p->cls_emb);
  V("token_embedding.weight", &p->token_emb);
  V("positional_embedding", &p->pos_emb);
  vlm_block_stack_params_visit(p->blocks, c->layers, prefix, fn, ctx);
  V("ln_final.weight", &p->ln_final_w);
  V("ln_final.bias", &p->ln_final_b);
  V("text_projection", &p->proj);
#undef V
}

vlm_status vlm_text_acts_alloc(vlm_text_acts *s, const vlm_text_config *c, int64_t B) {
  memset(s, 0, sizeof *s);
  s->xs = calloc((size_t)c->layers + 1, sizeof *s->xs);
  s->blocks = vlm_layers_calloc(c->layers, sizeof *s->blocks);
  s->pool_idx = calloc((size_t)(B > 0 ? B : 1), sizeof *s->pool_idx);
  if (!s->xs || !s->blocks || !s->pool_idx) {
    vlm_text_acts_free(s);
    return vlm_error(VLM_ERR_OOM, "text: out of memory");
  }
  return VLM_OK;
}

void vlm_text_acts_free(vlm_text_acts *s) {
  free(s->xs);
  free(s->blocks);
  free(s->pool_idx);
  s->xs = NULL;
  s->blocks = NULL;
  s->pool_idx = NULL;
}

void vlm_text_acts_layout(vlm_text_acts *s, vlm_arena *a, const vlm_text_config *c, int64_t B, int64_t L,
                          int with_backward) {
  int64_t W = c->width, S = L + (c->embed_cls ? 1 : 0);
  vlm_block_config bc = vlm_text_block_config(c);
  s->B = B;
  s->L = L;
  s->with_backward = with_backward;
  for (int64_t i = 0; i <= c->layers; i++) s->xs[i] = vlm_arena_tensor3(a, VLM_F32, B, S, W);
  if (c->embed_cls) {
    s->emb = vlm_arena_tensor3(a, VLM_F32, B, L, W);
    s->kpm = vlm_arena_tensor2(a, VLM_U8, B, S);
  }
  vlm_block_stack_acts_layout(s->blocks, a, &bc, c->layers, B, S, with_backward);
  s->pool_rows = vlm_arena_tensor2(a, VLM_I64, B, 1);
  s->pooled = vlm_arena_tensor2(a, VLM_F32, B, W);
  s->ln_final = vlm_arena_tensor2(a, VLM_F32, B, W);
  s->ln_mean = vlm_arena_tensor1(a, VLM_F32, B);
  s->ln_rstd = vlm_arena_tensor1(a, VLM_F32, B);
  s->features = vlm_arena_tensor2(a, VLM_F32, B, c->embed_dim);
  s->pooled_only = 1;
  s->kpm_rows = vlm_arena_tensor2(a, VLM_U8, B, S);
  s->ids_cut = vlm_arena_tensor2(a, VLM_I64, B, L);
  if (!with_backward) return;
  vlm_block_scratch_layout(&s->scratch, a, &bc, B, S);
  s->dx_a = vlm_arena_tensor3(a, VLM_F32, B, S, W);
  s->dx_b = vlm_arena_tensor3(a, VLM_F32, B, S, W);
  s->d_pooled = vlm_arena_tensor2(a, VLM_F32, B, W);
  s->d_ln = vlm_arena_tensor2(a, VLM_F32, B, W);
}

static int64_t id_at(const vlm_tensor *ids, int64_t i) {
  return ids->dtype == VLM_I64 ? ((const int64_t *)ids->data)[i] : ((const int32_t *)ids->data)[i];
}

/* ids as a host tensor (read back from a GPU: small); *back to free. */
static vlm_tensor ids_on_host(const vlm_tensor *ids, void **back) {
  VLM_CHECK(ids->dtype == VLM_I64 || ids->dtype == VLM_I32, "text: ids must be I32 or I64, got %s",
            vlm_dtype_name(ids->dtype));
  return vlm_host_view(ids, back);
}

void vlm_text_pool_index(const vlm_text_config *c, const vlm_tensor *ids, int64_t *idx) {
  if (ids->device != VLM_CPU) { /* ids on a GPU: read them back (small) and pool on the host */
    void *back;
    vlm_tensor h = ids_on_host(ids, &back);
    vlm_text_pool_index(c, &h, idx);
    free(back);
    return;
  }
  VLM_CHECK(ids->device == VLM_CPU && (ids->dtype == VLM_I64 || ids->dtype == VLM_I32) && ids->ndim == 2,
            "text: ids must be [B, L] I32/I64 on the CPU");
  int64_t B = ids->shape[0], L = ids->shape[1];
  for (int64_t b = 0; b < B; b++) {
    int64_t best = 0;
    if (c->eot_id >= 0) {
      for (int64_t l = 0; l < L; l++)
        if (id_at(ids, b * L + l) == c->eot_id) { best = l; break; }
    } else {
      for (int64_t l = 1; l < L; l++)
        if (id_at(ids, b * L + l) > id_at(ids, b * L + best)) best = l;
    }
    idx[b] = best;
  }
}

/* CoCa: xs[0] = [tok_emb[ids]; cls] + pos[:L+1], the legacy key padding mask
 * (built on the host, uploaded), pooling at the cls position. Any device. */
static void cls_embed_forward(const vlm_text_config *c, const vlm_text_params *p, vlm_text_acts *s,
                              const vlm_tensor *ids) {
  int64_t B = s->B, L = s->L, S = L + 1;
  vlm_embedding_forward(&s->emb, ids, &p->token_emb, NULL);
  vlm_copy_rows(&s->xs[0], 0, S, &s->emb, 0, L, B, L);
  vlm_copy_rows(&s->xs[0], L, S, &p->cls_emb, 0, 0, B, 1);
  void *back;
  vlm_tensor h = ids_on_host(ids, &back);
  uint8_t *m = vlm_host_stage(&s->kpm, (size_t)(B * S));
  for (int64_t b = 0; b < B; b++) {
    m[b * S] = 0;
    for (int64_t j = 1; j < S; j++) m[b * S + j] = id_at(&h, b * L + j - 1) == c->pad_id;
    s->pool_idx[b] = L;
  }
  vlm_host_commit(&s->kpm, m, (size_t)(B * S));
  free(back);
  vlm_tensor pos = vlm_narrow(&p->pos_emb, 0, 0, S);
  vlm_add_forward(&s->xs[0], &s->xs[0], &pos);
}

static void cls_embed_backward(const vlm_text_config *c, vlm_text_params *g, vlm_text_acts *s, const vlm_tensor *ids,
                               const vlm_tensor *dx) {
  int64_t B = s->B, L = s->L, S = L + 1, W = c->width;
  vlm_tensor gpos = vlm_narrow(&g->pos_emb, 0, 0, S);
  vlm_add_backward(NULL, &gpos, dx);
  /* the token rows into the other buffer (free), the cls rows into d_pooled (used up) */
  const vlm_tensor *other = s->dx_a.data == dx->data ? &s->dx_b : &s->dx_a;
  int64_t sh[3] = {B, L, W};
  vlm_tensor demb = vlm_tensor_make(other->data, VLM_F32, other->device, 3, sh);
  vlm_copy_rows(&demb, 0, L, dx, 0, S, B, L);
  vlm_copy_rows(&s->d_pooled, 0, 1, dx, L, S, B, 1);
  vlm_add_backward(NULL, &g->cls_emb, &s->d_pooled);
  vlm_embedding_backward(&g->token_emb, NULL, &demb, ids);
}

/* s->pool_rows[b] = b*S + pool_idx[b]: one upload when the acts are on a GPU. */
static void set_pool_rows(vlm_text_acts *s, int64_t B, int64_t S) {
  int64_t *rows = vlm_host_stage(&s->pool_rows, (size_t)B * 8);
  for (int64_t b = 0; b < B; b++) rows[b] = b * S + s->pool_idx[b];
  vlm_host_commit(&s->pool_rows, rows, (size_t)B * 8);
}

/* t's first R*W floats as [R, W], and as [R, 1, W]. */
static vlm_tensor rows_view(const vlm_tensor *t, int64_t R, int64_t W) {
  int64_t sh[2] = {R, W};
  VLM_CHECK(vlm_is_contiguous(t) && vlm_numel(t) >= R * W, "text: buffer too small");
  return vlm_tensor_make(t->data, t->dtype, t->device, 2, sh);
}
static vlm_tensor rows3_view(const vlm_tensor *t, int64_t R, int64_t W) {
  int64_t sh[3] = {R, 1, W};
  VLM_CHECK(vlm_is_contiguous(t) && vlm_numel(t) >= R * W, "text: buffer too small");
  return vlm_tensor_make(t->data, t->dtype, t->device, 3, sh);
}

/* s->xs[i] viewed as [B, n, W] (its leading rows). */
static vlm_tensor xs_view(const vlm_tensor *t, int64_t B, int64_t n, int64_t W) {
  int64_t sh[3] = {B, n, W};
  return vlm_tensor_make(t->data, t->dtype, t->device, 3, sh);
}

/* The pooled_only forward (see text.h), on n <= L token positions, then the
 * last block for the pooled row of each batch entry alone.
 * - Causal text pooled at its EOT: n covers every pooled position; nothing
 *   after it reaches one. The last block's causal mask becomes a key padding
 *   mask over the keys after the row's EOT.
 * - CoCa's cls (embed_cls): the cls sees key 0, token key j iff ids[j-1] is
 *   not the pad id (open_clip's legacy mask), and itself iff ids[L-1] is not.
 *   So n = the last non-pad position + 2 covers every key it can see; it sits
 *   at sequence index n with position embedding L, as in the full layout.
 * n is rounded up to a multiple of 8 (the extra keys are hidden from the
 * pooled rows either way), so a few matmul shapes serve every batch. The cut
 * ids and the masks are built on the host (ids on a GPU are read back once)
 * and uploaded when the activations are not on the CPU. */
static void forward_pooled_rows(const vlm_text_config *c, const vlm_text_params *p, vlm_text_acts *s,
                                const vlm_tensor *ids) {
  int64_t B = s->B, L = s->L, W = c->width, NL = c->layers, last = -1;
  int cls = c->embed_cls;
  vlm_device dev = s->xs[0].device;
  vlm_block_config bc = vlm_text_block_config(c);
  void *back;
  vlm_tensor h = ids_on_host(ids, &back);
  if (cls) {
    for (int64_t b = 0; b < B; b++)
      for (int64_t l = L - 1; l > last; l--)
        if (id_at(&h, b * L + l) != c->pad_id) { last = l; break; }
    last += 1;  /* the key after the last non-pad token is still visible to the cls */
  } else {
    vlm_text_pool_index(c, &h, s->pool_idx);
    for (int64_t b = 0; b < B; b++) last = s->pool_idx[b] > last ? s->pool_idx[b] : last;
  }
  int64_t n = (last + 1 + 7) / 8 * 8;
  if (n > L) n = L;
  if (n < 1) n = L < 1 ? L : 1;
  int64_t S = n + cls;  /* this call's sequence: n tokens, then the cls */
  s->n_cut = n;         /* what a training backward reads */
  size_t nid = (size_t)(B * n) * sizeof(int64_t), nm = (size_t)(B * S);
  int64_t *ci = vlm_host_stage(&s->ids_cut, nid);
  uint8_t *m = vlm_host_stage(&s->kpm_rows, nm);
  for (int64_t b = 0; b < B; b++) {
    for (int64_t l = 0; l < n; l++) ci[b * n + l] = id_at(&h, b * L + l);
    if (cls) {
      for (int64_t j = 0; j < n; j++) m[b * S + j] = j >= 1 && id_at(&h, b * L + j - 1) == c->pad_id;
      m[b * S + n] = id_at(&h, b * L + L - 1) == c->pad_id;
      s->pool_idx[b] = n;
    } else {
      for (int64_t j = 0; j < n; j++) m[b * S + j] = j > s->pool_idx[b];
    }
  }
  vlm_host_commit(&s->ids_cut, ci, nid);
  vlm_host_commit(&s->kpm_rows, m, nm);
  free(back);
  int64_t ish[2] = {B, n}, msh[2] = {B, S};
  vlm_tensor cut = vlm_tensor_make(s->ids_cut.data, VLM_I64, dev, 2, ish);
  vlm_tensor kpm = vlm_tensor_make(s->kpm_rows.data, VLM_U8, dev, 2, msh);
  if (cls) {  /* xs[0] = [tok_emb[ids] + pos[:n]; cls + pos[L]], the cls row staged in pooled (unused yet) */
    vlm_tensor emb = xs_view(&s->emb, B, n, W), xs0 = xs_view(&s->xs[0], B, S, W);
    vlm_embedding_forward(&emb, &cut, &p->token_emb, &p->pos_emb);
    vlm_copy_rows(&xs0, 0, S, &emb, 0, n, B, n);
    int64_t wsh[1] = {W};
    vlm_tensor pos_l = vlm_narrow(&p->pos_emb, 0, L, 1);
    pos_l = vlm_reshape(&pos_l, 1, wsh);
    vlm_copy_rows(&s->pooled, 0, 1, &p->cls_emb, 0, 0, B, 1);
    vlm_add_forward(&s->pooled, &s->pooled, &pos_l);
    vlm_copy_rows(&xs0, n, S, &s->pooled, 0, 1, B, 1);
  } else {
    vlm_tensor x0 = xs_view(&s->xs[0], B, n, W);
    vlm_embedding_forward(&x0, &cut, &p->token_emb, &p->pos_emb);
  }
  for (int64_t i = 0; i + 1 < NL; i++) {
    vlm_tensor x = xs_view(&s->xs[i], B, S, W), y = xs_view(&s->xs[i + 1], B, S, W);
    vlm_block_forward(&bc, &p->blocks[i], &s->blocks[i], &y, &x, cls ? &kpm : NULL, 1);
  }
  set_pool_rows(s, B, S);
  vlm_tensor x = xs_view(&s->xs[NL - 1], B, S, W), y = rows3_view(&s->pooled, B, W);
  vlm_block_forward_rows(&bc, &p->blocks[NL - 1], &s->blocks[NL - 1], &y, &x, &s->pool_rows, &kpm);
}

/* Training with pooled_only: forward_pooled_rows as in inference (the
 * positions up to the batch's last EOT; the last block for the pooled rows
 * alone, vlm_block_forward_rows saving what vlm_block_backward_rows reads).
 * Not for CoCa's cls text, whose token states its decoder reads. */
static int train_rows(const vlm_text_config *c, const vlm_text_acts *s) {
  return s->with_backward && s->pooled_only && c->layers > 0 && !c->embed_cls && s->L >= 2;
}

/* The backward of forward_pooled_rows on training activations (train_rows): the
 * positions it ran (s->n_cut), the last block at the pooled rows; d_pooled [B, W]
 * -> the parameters' gradients. */
static void backward_train_rows(const vlm_text_config *c, const vlm_text_params *p, vlm_text_params *g,
                                vlm_text_acts *s) {
  int64_t B = s->B, W = c->width, NL = c->layers, n = s->n_cut;
  vlm_block_config bc = vlm_text_block_config(c);
  vlm_tensor *xv = vlm_layers_calloc(NL, sizeof *xv);
  VLM_CHECK(xv, "text: out of memory");
  for (int64_t i = 0; i < NL; i++) xv[i] = xs_view(&s->xs[i], B, n, W);
  vlm_tensor da = xs_view(&s->dx_a, B, n, W), db = xs_view(&s->dx_b, B, n, W);
  vlm_tensor dp3 = rows3_view(&s->d_pooled, B, W);
  vlm_block_backward_rows(&bc, &p->blocks[NL - 1], &g->blocks[NL - 1], &s->blocks[NL - 1], &s->scratch, &da, &dp3,
                          &xv[NL - 1], &s->pool_rows);
  vlm_tensor *dy = vlm_block_stack_backward(&bc, p->blocks, g->blocks, s->blocks, &s->scratch, xv, NL - 1, 1, &da, &db);
  int64_t ish[2] = {B, n};
  vlm_tensor cut = vlm_tensor_make(s->ids_cut.data, VLM_I64, s->ids_cut.device, 2, ish);
  vlm_embedding_backward(&g->token_emb, &g->pos_emb, dy, &cut);
  free(xv);
}

void vlm_text_forward(const vlm_text_config *c, const vlm_text_params *p, vlm_text_acts *s, const vlm_tensor *ids) {
  char sh[128];
  VLM_CHECK(ids->ndim == 2 && ids->shape[0] == s->B && ids->shape[1] == s->L && s->L <= c->context_length,
            "text: ids are %s, expected [%lld, %lld]", vlm_shape_str(ids, sh, sizeof sh), (long long)s->B,
            (long long)s->L);
  int64_t B = s->B, L = s->L, W = c->width, NL = c->layers;
  vlm_block_config bc = vlm_text_block_config(c);
  int rows_only = (s->pooled_only && NL > 0 && !s->with_backward) || train_rows(c, s);
  if (rows_only) {
    forward_pooled_rows(c, p, s, ids);
  } else if (c->embed_cls) {
    cls_embed_forward(c, p, s, ids);
    vlm_block_stack_forward(&bc, p->blocks, s->blocks, s->xs, NL, &s->kpm, 1);
    L += 1;
  } else {
    vlm_embedding_forward(&s->xs[0], ids, &p->token_emb, &p->pos_emb);
    vlm_block_stack_forward(&bc, p->blocks, s->blocks, s->xs, NL, NULL, 1);
    vlm_text_pool_index(c, ids, s->pool_idx);
  }
  if (!rows_only) {
    /* ln_final is per row, so pooling before it equals open_clip's ln_final-then-pool.
     * One gather (an embedding lookup into xs[NL] viewed [B*S, W]) on any device. */
    set_pool_rows(s, B, L);
    vlm_tensor table = rows_view(&s->xs[NL], B * L, W), pooled3 = rows3_view(&s->pooled, B, W);
    vlm_embedding_forward(&pooled3, &s->pool_rows, &table, NULL);
  }
  vlm_layernorm_forward(&s->ln_final, &s->ln_mean, &s->ln_rstd, &s->pooled, &p->ln_final_w, &p->ln_final_b,
                        c->ln_eps);
  vlm_matmul_forward(&s->features, &s->ln_final, &p->proj, NULL, 0, 0);
}

void vlm_text_backward(const vlm_text_config *c, const vlm_text_params *p, vlm_text_params *g, vlm_text_acts *s,
                       const vlm_tensor *ids, const vlm_tensor *d_features) {
  vlm_text_backward_tokens(c, p, g, s, ids, d_features, NULL);
}

void vlm_text_backward_tokens(const vlm_text_config *c, const vlm_text_params *p, vlm_text_params *g,
                              vlm_text_acts *s, const vlm_tensor *ids, const vlm_tensor *d_features,
                              const vlm_tensor *d_tokens) {
  VLM_CHECK(s->with_backward, "text: activations were laid out for inference only");
  int64_t B = s->B, L = s->L + (c->embed_cls ? 1 : 0), W = c->width, NL = c->layers;
  vlm_block_config bc = vlm_text_block_config(c);
  vlm_zero(&s->d_ln);
  vlm_matmul_backward(&s->d_ln, &g->proj, NULL, d_features, &s->ln_final, &p->proj, 0, 0);
  vlm_zero(&s->d_pooled);
  vlm_layernorm_backward(&s->d_pooled, &g->ln_final_w, &g->ln_final_b, &s->d_ln, &s->pooled, &p->ln_final_w,
                         &s->ln_mean, &s->ln_rstd);
  vlm_tensor *dy = &s->dx_a, *dx = &s->dx_b;
  if (train_rows(c, s)) {  /* the positions up to the last pooled row; the last block at those rows */
    VLM_CHECK(!d_tokens, "text: the token states were not kept (clear pooled_only after the layout)");
    backward_train_rows(c, p, g, s);
    return;
  }
  vlm_zero(dy);
  if (d_tokens) {  /* the token states' gradient (CoCa's decoder), then the pooled rows' added */
    VLM_CHECK(d_tokens->ndim == 3 && d_tokens->shape[0] == B && d_tokens->shape[1] == s->L &&
                  d_tokens->shape[2] == W && vlm_is_contiguous(d_tokens),
              "text: d_tokens must be [B, L, W] contiguous");
    vlm_copy_rows(dy, 0, L, d_tokens, 0, s->L, B, s->L);
  }
  {  /* one scatter (the gather's backward) of d_pooled into the pooled rows of dy */
    vlm_tensor table = rows_view(dy, B * L, W), dp3 = rows3_view(&s->d_pooled, B, W);
    vlm_embedding_backward(&table, NULL, &dp3, &s->pool_rows);
  }
  dy = vlm_block_stack_backward(&bc, p->blocks, g->blocks, s->blocks, &s->scratch, s->xs, NL, 1, dy, dx);
  if (c->embed_cls) cls_embed_backward(c, g, s, ids, dy);
  else vlm_embedding_backward(&g->token_emb, &g->pos_emb, dy, ids);
}

void vlm_text_tokens(const vlm_text_config *c, const vlm_text_acts *s, vlm_tensor *out) {
  int64_t B = s->B, L = s->L, S = L + (c->embed_cls ? 1 : 0), W = c->width;
  VLM_CHECK(out->ndim == 3 && out->shape[0] == B && out->shape[1] == L && out->shape[2] == W &&
                vlm_is_contiguous(out),
            "text: tokens output must be [B, L, W] contiguous");
  VLM_CHECK(!s->pooled_only, "text: the token states were not kept (clear pooled_only after the layout)");
  vlm_copy_rows(out, 0, L, &s->xs[c->layers], 0, S, B, L);
}
