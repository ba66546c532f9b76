/* The ViT tower: parameter layout, forward and backward over the core ops. */
#include <stdlib.h>
#include <string.h>

#include "core/block_stack.h"
#include "core/cuda/cuda.h"
#include "vision/vision.h"

vlm_block_config vlm_vit_block_config(const vlm_vit_config *c) {
  vlm_block_config b = {c->width, c->heads, c->mlp_width, c->act, c->ln_eps};
  return b;
}

void vlm_vit_image_norm(const vlm_vit_config *c, double mean[3], double std[3], int *resize_mode) {
  static const double m0[3] = {0.48145466, 0.4578275, 0.40821073}, s0[3] = {0.26862954, 0.26130258, 0.27577711};
  const int set = c->image_std[0] > 0 && c->image_std[1] > 0 && c->image_std[2] > 0;
  for (int i = 0; i < 3; i++) {
    mean[i] = set ? c->image_mean[i] : m0[i];
    std[i] = set ? c->image_std[i] : s0[i];
  }
  *resize_mode = c->resize_mode >= 0 && c->resize_mode <= 2 ? c->resize_mode : 0;
}

vlm_status vlm_vit_params_alloc(vlm_vit_params *p, const vlm_vit_config *c) {
  memset(p, 0, sizeof *p);
  p->blocks = vlm_layers_calloc(c->layers, sizeof *p->blocks);
  return p->blocks ? VLM_OK : vlm_error(VLM_ERR_OOM, "vit: out of memory");
}

void vlm_vit_params_free(vlm_vit_params *p) {
  free(p->blocks);
  p->blocks = NULL;
}

void vlm_vit_params_layout(vlm_vit_params *p, vlm_arena *a, const vlm_vit_config *c) {
  int64_t W = c->width, P = c->patch_size;
  vlm_block_config bc = vlm_vit_block_config(c);
  p->conv1_w = vlm_arena_tensor4(a, VLM_F32, W, 3, P, P);
  p->class_emb = vlm_arena_tensor1(a, VLM_F32, W);
  p->pos_emb = vlm_arena_tensor2(a, VLM_F32, vlm_vit_tokens(c), W);
  p->ln_pre_w = vlm_arena_tensor1(a, VLM_F32, W);
  p->ln_pre_b = vlm_arena_tensor1(a, VLM_F32, W);
  for (int64_t i = 0; i < c->layers; i++) vlm_block_params_layout(&p->blocks[i], a, &bc);
  int64_t PD = c->attentional_pool ? c->embed_dim : W;   /* CoCa: ln_post/proj after the pooler */
  p->ln_post_w = vlm_arena_tensor1(a, VLM_F32, PD);
  p->ln_post_b = vlm_arena_tensor1(a, VLM_F32, PD);
  p->proj = vlm_arena_tensor2(a, VLM_F32, PD, c->embed_dim);
}

void vlm_vit_params_visit(vlm_vit_params *p, const vlm_vit_config *c, const char *prefix,
                          vlm_param_visit_fn fn, void *ctx) {
#define V(suffix, t) vlm_param_visit_named(fn, ctx, prefix, suffix, t)
  V("conv1.weight", &p->conv1_w);
  V("class_embedding", &p->class_emb);
  V("positional_embedding", &p->pos_emb);
  V("ln_pre.weight", &p->ln_pre_w);
  V("ln_pre.bias", &p->ln_pre_b);
  vlm_block_stack_params_visit(p->blocks, c->layers, prefix, fn, ctx);
  V("ln_post.weight", &p->ln_post_w);
  V("ln_post.bias", &p->ln_post_b);
  V("proj", &p->proj);
#undef V
}

vlm_status vlm_vit_acts_alloc(vlm_vit_acts *s, const vlm_vit_config *c) {
  memset(s, 0, sizeof *s);
  s->xs = calloc((size_t)c->layers + 1, sizeof *s->xs);
  s->blocks = vlm_layers_calloc(c->layers, sizeof *s->blocks);
  if (!s->xs || !s->blocks) {
    vlm_vit_acts_free(s);
    return vlm_error(VLM_ERR_OOM, "vit: out of memory");
  }
  return VLM_OK;
}

void vlm_vit_acts_free(vlm_vit_acts *s) {
  free(s->xs);
  free(s->blocks);
  s->xs = NULL;
  s->blocks = NULL;
}

void vlm_vit_acts_layout(vlm_vit_acts *s, vlm_arena *a, const vlm_vit_config *c, int64_t B, int with_backward) {
  int64_t W = c->width, P = c->patch_size, G = vlm_vit_grid(c), T = vlm_vit_tokens(c);
  vlm_block_config bc = vlm_vit_block_config(c);
  s->B = B;
  s->with_backward = with_backward;
  s->patches = vlm_arena_tensor2(a, VLM_F32, B * G * G, 3 * P * P);
  s->patch_emb = vlm_arena_tensor2(a, VLM_F32, B * G * G, W);
  s->x0 = vlm_arena_tensor3(a, VLM_F32, B, T, W);
  s->ln_pre_mean = vlm_arena_tensor1(a, VLM_F32, B * T);
  s->ln_pre_rstd = vlm_arena_tensor1(a, VLM_F32, B * T);
  for (int64_t i = 0; i <= c->layers; i++) s->xs[i] = vlm_arena_tensor3(a, VLM_F32, B, T, W);
  /* Inference reuses one set of block activations for every layer. */
  vlm_block_stack_acts_layout(s->blocks, a, &bc, c->layers, B, T, with_backward);
  s->pooled = vlm_arena_tensor2(a, VLM_F32, B, W);
  s->ln_post = vlm_arena_tensor2(a, VLM_F32, B, W);
  s->ln_post_mean = vlm_arena_tensor1(a, VLM_F32, B);
  s->ln_post_rstd = vlm_arena_tensor1(a, VLM_F32, B);
  s->features = vlm_arena_tensor2(a, VLM_F32, B, c->embed_dim);
  s->pooled_only = 1;
  s->pool_rows = vlm_arena_tensor2(a, VLM_I64, B, 1);
  if (!with_backward) return;
  vlm_block_scratch_layout(&s->scratch, a, &bc, B, T);
  s->dx_a = vlm_arena_tensor3(a, VLM_F32, B, T, W);
  s->dx_b = vlm_arena_tensor3(a, VLM_F32, B, T, W);
  s->d_pooled = vlm_arena_tensor2(a, VLM_F32, B, W);
  s->d_ln_post = vlm_arena_tensor2(a, VLM_F32, B, W);
  s->d_patch_emb = vlm_arena_tensor2(a, VLM_F32, B * G * G, W);
}

/* im2col: patches[b*G*G + gy*G + gx, (c*P + ky)*P + kx] = image[b, c, gy*P + ky, gx*P + kx] */
static void patchify(vlm_tensor *patches, const vlm_tensor *image, int64_t P) {
  if (patches->device == VLM_CUDA) {
    VLM_CHECK(image->device == VLM_CUDA, "vit: the image batch must be on the GPU with the activations");
    vlm_cuda_patchify(patches, image, P);
    return;
  }
  VLM_CHECK(image->device == VLM_CPU, "vit: the image batch must be on the CPU with the activations");
  int64_t B = image->shape[0], H = image->shape[2], G = H / P;
  const float *img = image->data;
  float *out = patches->data;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < B * G * G; r++) {
    int64_t b = r / (G * G), gy = (r / G) % G, gx = r % G;
    float *o = out + r * 3 * P * P;
    for (int64_t ch = 0; ch < 3; ch++)
      for (int64_t ky = 0; ky < P; ky++)
        memcpy(o + (ch * P + ky) * P, img + ((b * 3 + ch) * H + gy * P + ky) * H + gx * P,
               (size_t)P * sizeof(float));
  }
}

static vlm_tensor conv_as_matrix(const vlm_tensor *w) {
  int64_t shape[2] = {w->shape[0], w->shape[1] * w->shape[2] * w->shape[3]};
  return vlm_reshape(w, 2, shape);
}

/* Patch embedding, class token, positions, ln_pre and the first n blocks. */
static void trunk_forward(const vlm_vit_config *c, const vlm_vit_params *p, vlm_vit_acts *s, const vlm_tensor *image,
                          int64_t n) {
  int64_t B = s->B, G = vlm_vit_grid(c), T = vlm_vit_tokens(c);
  char sh[128];
  VLM_CHECK(image->ndim == 4 && image->shape[0] == B && image->shape[1] == 3 && image->shape[2] == c->image_size &&
                image->shape[3] == c->image_size && image->dtype == VLM_F32 && vlm_is_contiguous(image),
            "vit: image is %s, expected [%lld, 3, %lld, %lld] F32", vlm_shape_str(image, sh, sizeof sh),
            (long long)B, (long long)c->image_size, (long long)c->image_size);
  vlm_block_config bc = vlm_vit_block_config(c);
  patchify(&s->patches, image, c->patch_size);
  vlm_tensor w = conv_as_matrix(&p->conv1_w);
  vlm_matmul_forward(&s->patch_emb, &s->patches, &w, NULL, 0, 1);
  vlm_copy_rows(&s->x0, 0, T, &p->class_emb, 0, 0, B, 1);
  vlm_copy_rows(&s->x0, 1, T, &s->patch_emb, 0, G * G, B, G * G);
  vlm_add_forward(&s->x0, &s->x0, &p->pos_emb);
  vlm_layernorm_forward(&s->xs[0], &s->ln_pre_mean, &s->ln_pre_rstd, &s->x0, &p->ln_pre_w, &p->ln_pre_b, c->ln_eps);
  vlm_block_stack_forward(&bc, p->blocks, s->blocks, s->xs, n, NULL, 0);
}

void vlm_vit_trunk_forward(const vlm_vit_config *c, const vlm_vit_params *p, vlm_vit_acts *s, const vlm_tensor *image) {
  trunk_forward(c, p, s, image, c->layers);
}

void vlm_vit_forward(const vlm_vit_config *c, const vlm_vit_params *p, vlm_vit_acts *s, const vlm_tensor *image) {
  int64_t B = s->B, W = c->width, T = vlm_vit_tokens(c), L = c->layers;
  VLM_CHECK(!c->attentional_pool, "vit: an attentional-pool tower runs through vlm_coca_vit_forward");
  if (s->pooled_only && L > 0) {
    /* Only the class token is pooled: the last block runs for that row alone
     * (for training too, saving what vlm_vit_backward reads). */
    trunk_forward(c, p, s, image, L - 1);
    int64_t *r = vlm_host_stage(&s->pool_rows, (size_t)B * sizeof(int64_t));
    for (int64_t b = 0; b < B; b++) r[b] = b * T;
    vlm_host_commit(&s->pool_rows, r, (size_t)B * sizeof(int64_t));
    int64_t ysh[3] = {B, 1, W};
    vlm_tensor y = vlm_tensor_make(s->pooled.data, VLM_F32, s->pooled.device, 3, ysh);
    vlm_block_config bc = vlm_vit_block_config(c);
    vlm_block_forward_rows(&bc, &p->blocks[L - 1], &s->blocks[L - 1], &y, &s->xs[L - 1], &s->pool_rows, NULL);
  } else {
    vlm_vit_trunk_forward(c, p, s, image);
    vlm_copy_rows(&s->pooled, 0, 1, &s->xs[L], 0, T, B, 1);
  }
  vlm_layernorm_forward(&s->ln_post, &s->ln_post_mean, &s->ln_post_rstd, &s->pooled, &p->ln_post_w,
                        &p->ln_post_b, c->ln_eps);
  vlm_matmul_forward(&s->features, &s->ln_post, &p->proj, NULL, 0, 0);
}

static void trunk_backward(const vlm_vit_config *c, const vlm_vit_params *p, vlm_vit_params *g, vlm_vit_acts *s,
                           int64_t n);

void vlm_vit_backward(const vlm_vit_config *c, const vlm_vit_params *p, vlm_vit_params *g, vlm_vit_acts *s,
                      const vlm_tensor *d_features) {
  VLM_CHECK(s->with_backward, "vit: activations were laid out for inference only");
  int64_t B = s->B, T = vlm_vit_tokens(c);
  vlm_zero(&s->d_ln_post);
  vlm_matmul_backward(&s->d_ln_post, &g->proj, NULL, d_features, &s->ln_post, &p->proj, 0, 0);
  vlm_zero(&s->d_pooled);
  vlm_layernorm_backward(&s->d_pooled, &g->ln_post_w, &g->ln_post_b, &s->d_ln_post, &s->pooled, &p->ln_post_w,
                         &s->ln_post_mean, &s->ln_post_rstd);
  int64_t L = c->layers;
  if (s->pooled_only && L > 0) {  /* the last block ran for the class-token rows alone */
    int64_t W = c->width, dsh[3] = {B, 1, W};
    vlm_block_config bc = vlm_vit_block_config(c);
    vlm_tensor dy = vlm_tensor_make(s->d_pooled.data, VLM_F32, s->d_pooled.device, 3, dsh);
    vlm_block_backward_rows(&bc, &p->blocks[L - 1], &g->blocks[L - 1], &s->blocks[L - 1], &s->scratch, &s->dx_a,
                            &dy, &s->xs[L - 1], &s->pool_rows);
    trunk_backward(c, p, g, s, L - 1);
    return;
  }
  vlm_zero(&s->dx_a);
  vlm_copy_rows(&s->dx_a, 0, T, &s->d_pooled, 0, 1, B, 1);
  trunk_backward(c, p, g, s, L);
}

void vlm_vit_trunk_backward(const vlm_vit_config *c, const vlm_vit_params *p, vlm_vit_params *g, vlm_vit_acts *s) {
  trunk_backward(c, p, g, s, c->layers);
}

/* d xs[n] in s->dx_a (overwritten): back through blocks n-1..0, ln_pre and the patch embedding. */
static void trunk_backward(const vlm_vit_config *c, const vlm_vit_params *p, vlm_vit_params *g, vlm_vit_acts *s,
                           int64_t n) {
  VLM_CHECK(s->with_backward, "vit: activations were laid out for inference only");
  int64_t B = s->B, G = vlm_vit_grid(c), T = vlm_vit_tokens(c);
  vlm_block_config bc = vlm_vit_block_config(c);
  vlm_tensor *dy = &s->dx_a, *dx = &s->dx_b;
  dy = vlm_block_stack_backward(&bc, p->blocks, g->blocks, s->blocks, &s->scratch, s->xs, n, 0, dy, dx);
  dx = dy == &s->dx_a ? &s->dx_b : &s->dx_a;
  /* dy = d xs[0]; dx <- d x0 */
  vlm_zero(dx);
  vlm_layernorm_backward(dx, &g->ln_pre_w, &g->ln_pre_b, dy, &s->x0, &p->ln_pre_w, &s->ln_pre_mean,
                         &s->ln_pre_rstd);
  vlm_add_backward(NULL, &g->pos_emb, dx);
  vlm_copy_rows(&s->d_pooled, 0, 1, dx, 0, T, B, 1);
  vlm_add_backward(NULL, &g->class_emb, &s->d_pooled);
  vlm_copy_rows(&s->d_patch_emb, 0, G * G, dx, 1, T, B, G * G);
  vlm_tensor w = conv_as_matrix(&p->conv1_w), gw = conv_as_matrix(&g->conv1_w);
  vlm_matmul_backward(NULL, &gw, NULL, &s->d_patch_emb, &s->patches, &w, 0, 1);
}
