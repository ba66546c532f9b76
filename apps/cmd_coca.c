/* `vlm forward` and `vlm info` on CoCa checkpoints (called by cmd_forward.c and
 * cmd_info.c when the model's config has a multimodal_cfg). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "apps/apps.h"
#include "model/model.h"

typedef struct { int64_t visual, text, decoder, other; } tower_counts;

static void count_one(void *ctx, const char *name, vlm_tensor *t) {
  tower_counts *k = ctx;
  int64_t n = vlm_numel(t);
  if (!strncmp(name, "visual.", 7)) k->visual += n;
  else if (!strncmp(name, "text_decoder.", 13)) k->decoder += n;
  else if (!strncmp(name, "text.", 5)) k->text += n;
  else k->other += n;
}

int vlm_app_coca_info(const char *model) {
  vlm_coca_config c;
  vlm_coca_params p;
  if (vlm_coca_load(model, &c, &p) != VLM_OK) {
    fprintf(stderr, "vlm info: %s\n", vlm_last_error());
    return 1;
  }
  tower_counts k = {0, 0, 0, 0};
  vlm_coca_params_visit(&p, &c, count_one, &k);
  int64_t n = k.visual + k.text + k.decoder + k.other;
  const vlm_vit_config *v = &c.vision;
  const vlm_text_config *t = &c.text;
  const vlm_decoder_config *d = &c.decoder;
  printf("model: CoCa (open_clip checkpoint) from %s\n", model);
  char cfg[4200], weights[4200];
  if (vlm_model_paths(model, cfg, weights, sizeof cfg) == VLM_OK)
    printf("files: %s, %s (%s)\n", cfg, weights, vlm_weights_kind(weights));
  printf("embed_dim: %lld, activation: %s, logit_scale: %g (exp %g), loss: %g * clip + %g * caption\n",
         (long long)c.embed_dim, c.quick_gelu ? "quick_gelu" : "gelu", *vlm_f32(&p.logit_scale),
         expf(*vlm_f32(&p.logit_scale)), c.clip_loss_weight, c.caption_loss_weight);
  printf("vision: ViT image %lld, patch %lld (%lld tokens), width %lld, layers %lld, heads %lld, mlp %lld; "
         "attentional pooler %lld queries, %lld heads\n",
         (long long)v->image_size, (long long)v->patch_size, (long long)vlm_vit_tokens(v), (long long)v->width,
         (long long)v->layers, (long long)v->heads, (long long)v->mlp_width, (long long)v->pool_queries,
         (long long)v->pool_heads);
  printf("text: context %lld (+1 cls), vocab %lld, width %lld, layers %lld, heads %lld, mlp %lld, pad id %lld\n",
         (long long)t->context_length, (long long)t->vocab_size, (long long)t->width, (long long)t->layers,
         (long long)t->heads, (long long)t->mlp_width, (long long)t->pad_id);
  printf("decoder: context %lld, width %lld, layers %lld (self + cross attention), heads %lld, mlp %lld, vocab %lld\n",
         (long long)d->context_length, (long long)d->width, (long long)d->layers, (long long)d->heads,
         (long long)d->mlp_width, (long long)d->vocab_size);
  vlm_app_print_image_transform(v);
  printf("parameters: %lld (vision %lld, text %lld, decoder %lld, logit_scale 1)\n", (long long)n,
         (long long)k.visual, (long long)k.text, (long long)k.decoder);
  vlm_coca_params_free(&p);
  return 0;
}


static vlm_status write_outputs(const char *path, const vlm_coca_config *c, vlm_coca_acts *s,
                                vlm_atomic_file *staged) {
  vlm_st_writer *w = vlm_st_writer_new();
  if (!w) return vlm_error(VLM_ERR_OOM, "out of memory");
  vlm_status st = VLM_OK;
  struct { const char *name; vlm_tensor *t; } outs[] = {
    {"image_features_unnorm", &s->pool.features}, {"text_features_unnorm", &s->text.features},
    {"image_features", &s->loss.img}, {"text_features", &s->loss.txt},
    {"image_tokens", &s->pool.tokens}, {"text_tokens", &s->dec.xs[0]},
    {"logits_per_image", &s->loss.logits_per_image}, {"logits_per_text", &s->loss.logits_per_text},
    {"caption_logits", &s->dec.logits},
  };
  for (size_t i = 0; i < sizeof outs / sizeof outs[0] && st == VLM_OK; i++)
    st = vlm_st_writer_add_tensor(w, outs[i].name, outs[i].t);
  float losses[5] = {c->clip_loss_weight * s->clip_loss, c->caption_loss_weight * s->caption_loss, s->clip_loss,
                     s->caption_loss, s->total};
  const char *names[5] = {"clip_loss", "caption_loss", "clip_loss_unweighted", "caption_loss_unweighted", "loss"};
  float scale = vlm_get_f32(&s->loss.scale, 0);   /* the tensors above may be on a GPU: the writer reads them there */
  if (st == VLM_OK) st = vlm_st_writer_add(w, "logit_scale", VLM_F32, 0, NULL, &scale);
  for (int i = 0; i < 5 && st == VLM_OK; i++) st = vlm_st_writer_add(w, names[i], VLM_F32, 0, NULL, &losses[i]);
  if (st == VLM_OK) st = vlm_st_writer_stage(w, path, staged);
  vlm_st_writer_free(w);
  return st;
}

int vlm_app_coca_forward(const char *model, const char *inputs, const char *out, const char *grads, int bf16,
                         vlm_device dev) {
  vlm_coca_config c;
  vlm_coca_params p, g, pd;
  vlm_clip_batch batch;
  memset(&pd, 0, sizeof pd);
  memset(&batch, 0, sizeof batch);
  if (vlm_coca_load(model, &c, &p) != VLM_OK) {
    fprintf(stderr, "vlm forward: %s\n", vlm_last_error());
    return 1;
  }
  int rc = 1;
  float *images = NULL;
  void *ids = NULL;
  vlm_dtype ids_dt;
  int64_t B, L;
  vlm_coca_acts s;
  memset(&s, 0, sizeof s);
  memset(&g, 0, sizeof g);
  if (!vlm_app_read_inputs(inputs, c.vision.image_size,
                           c.text.context_length < c.decoder.context_length ? c.text.context_length
                                                                            : c.decoder.context_length,
                           c.text.vocab_size, &images, &ids, &ids_dt, &B, &L))
    goto done;
  vlm_clip_config bc;   /* the batch's layout reads the image size only */
  memset(&bc, 0, sizeof bc);
  bc.vision = c.vision;
  bc.text = c.text;
  if (vlm_coca_acts_init_on(&s, &c, B, L, grads != NULL, dev) != VLM_OK ||
      (grads && vlm_coca_params_init_on(&g, &c, dev) != VLM_OK) ||
      (dev != VLM_CPU && (vlm_coca_params_init_on(&pd, &c, dev) != VLM_OK ||
                          vlm_clip_batch_init_on(&batch, &bc, B, L, ids_dt, dev) != VLM_OK))) {
    fprintf(stderr, "vlm forward: %s\n", vlm_last_error());
    goto done;
  }
  int64_t ishape[4] = {B, 3, c.vision.image_size, c.vision.image_size}, tshape[2] = {B, L};
  vlm_tensor ti = vlm_tensor_cpu_f32(images, 4, ishape);
  vlm_tensor tt = vlm_tensor_make(ids, ids_dt, VLM_CPU, 2, tshape);
  if (dev != VLM_CPU) {   /* weights and batch on the GPU; the outputs are written from there */
    vlm_coca_params_copy(&pd, &p);
    vlm_clip_batch_upload(&batch, &ti, &tt);
    ti = batch.images;
    tt = batch.ids;
  }
  const vlm_coca_params *run = dev != VLM_CPU ? &pd : &p;
  if (bf16) vlm_set_matmul_precision(VLM_PREC_BF16);
  float loss = vlm_coca_forward(&c, run, &s, &ti, &tt);
  /* --out and --grads are staged, then renamed together: a failure replaces neither */
  vlm_atomic_file af[2];
  if (write_outputs(out, &c, &s, &af[0]) != VLM_OK) {
    fprintf(stderr, "vlm forward: %s\n", vlm_last_error());
    goto done;
  }
  if (grads) {
    vlm_coca_backward(&c, run, &g, &s, &tt);
    if (vlm_coca_stage_safetensors(&g, &c, grads, &af[1]) != VLM_OK) {
      vlm_atomic_abort(&af[0]);
      fprintf(stderr, "vlm forward: %s\n", vlm_last_error());
      goto done;
    }
  }
  if (vlm_atomic_commit_all(af, grads ? 2 : 1) != VLM_OK) {
    fprintf(stderr, "vlm forward: %s\n", vlm_last_error());
    goto done;
  }
  printf("loss %.7f (clip %.7f, caption %.7f unweighted; batch %lld, text length %lld, CoCa open_clip checkpoint, "
         "%s%s)\n",
         loss, s.clip_loss, s.caption_loss, (long long)B, (long long)L, bf16 ? "bf16" : "f32",
         dev != VLM_CPU ? ", cuda" : "");
  rc = 0;
done:
  free(images);
  free(ids);
  vlm_coca_acts_free(&s);
  vlm_clip_batch_free(&batch);
  vlm_coca_params_free(&pd);
  vlm_coca_params_free(&g);
  vlm_coca_params_free(&p);
  return rc;
}

/* `vlm convert` on CoCa: a CoCa built-in name for --init, or a CoCa checkpoint. */
int vlm_app_is_coca_name_or_model(const char *init_name, const char *model) {
  if (init_name) {
    for (int i = 0; vlm_coca_builtin_name(i); i++)
      if (!strcmp(init_name, vlm_coca_builtin_name(i))) return 1;
    return 0;
  }
  return model && vlm_model_is_coca(model) == 1;
}

/* The CoCa model in dir as it is now equals the one about to be written. */
typedef struct { const vlm_coca_config *c; const vlm_coca_params *p; } coca_same_ctx;

static int coca_same(const char *dir, void *ctx) {
  const coca_same_ctx *x = ctx;
  vlm_coca_config c;
  vlm_coca_params p;
  if (vlm_model_is_coca(dir) != 1 || vlm_coca_load(dir, &c, &p) != VLM_OK) return 0;
  char *a = vlm_coca_config_to_json(&c), *b = vlm_coca_config_to_json(x->c);
  const int same = a && b && !strcmp(a, b) && p.arena.used == x->p->arena.used &&
                   !memcmp(p.arena.base, x->p->arena.base, p.arena.used);
  free(a);
  free(b);
  vlm_coca_params_free(&p);
  return same;
}

int vlm_app_coca_convert(const char *model, const char *config, const char *init, int to_hf, int torch,
                         const char *out, uint64_t seed) {
  if (to_hf) {
    fprintf(stderr, "vlm convert: Hugging Face has no CoCa layout; use --to open_clip\n");
    return 2;
  }
  vlm_coca_config c;
  vlm_coca_params p;
  if (init) {
    if (vlm_coca_config_builtin(&c, init) != VLM_OK || vlm_coca_params_init(&p, &c) != VLM_OK) {
      fprintf(stderr, "vlm convert: %s\n", vlm_last_error());
      return 1;
    }
    vlm_coca_params_init_openclip(&p, &c, seed);
  } else if (vlm_coca_load_as(model, config, &c, &p) != VLM_OK) {
    fprintf(stderr, "vlm convert: %s\n", vlm_last_error());
    return 1;
  }
  int rc = 0;
  vlm_app_staged_tokenizer tok = {0};
  if (mkdir(out, 0777) != 0 && errno != EEXIST) {
    fprintf(stderr, "vlm convert: %s: cannot create the directory: %s\n", out, strerror(errno));
    rc = 1;
  } else if (vlm_app_convert_shadow(out, "open_clip_config.json",
                                    torch ? "open_clip_pytorch_model.bin" : "open_clip_model.safetensors", coca_same,
                                    &(coca_same_ctx){&c, &p})) {
    rc = 1;
  } else if (vlm_app_tokenizer_stage(init ? NULL : model, out, &tok) != 0) {
    rc = 1;
  } else if (vlm_coca_save_dir_as(&p, &c, out, torch) != VLM_OK) {
    fprintf(stderr, "vlm convert: %s\n", vlm_last_error());
    vlm_app_tokenizer_abort(&tok);
    rc = 1;
  } else {
    printf("wrote %s (open_clip layout, CoCa, %lld parameters, %s) from %s (%s)\n", out,
           (long long)vlm_coca_params_count(&p, &c), torch ? "PyTorch checkpoint" : "safetensors",
           init ? init : model, init ? "open_clip initialisation" : "open_clip");
    rc = vlm_app_tokenizer_commit(&tok, out);
  }
  vlm_coca_params_free(&p);
  return rc;
}
