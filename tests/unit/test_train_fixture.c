/* The training step against open_clip's own trajectory (a training-trajectory
 * fixture directory: config.json, init/batches/final/optimizer_final.safetensors,
 * trajectory.json), and the parts the fixture does not cover: the logit_scale
 * clamp binding, open_clip's contrastive gradient accumulation against one big
 * batch, LiT tower locking and bf16 matmuls.
 *
 * Trajectory fixtures of CLIP (train-tiny-clip) and CoCa (train-tiny-coca: the
 * config has a multimodal_cfg; the loss parts are checked too).
 *
 * argv[1]: a fixture directory (trajectory only), or the ../shared folder
 * (ctest's unit_ entry: both trajectory fixtures plus the other checks). */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gradcheck.h"
#include "model/model.h"

static cJSON *jget(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }
static double jnum(const cJSON *o, const char *k) {
  const cJSON *x = jget(o, k);
  CHECK(cJSON_IsNumber(x), "trajectory.json: no number '%s'", k);
  return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

static float *read_entry(const vlm_safetensors *st, const char *name, int64_t n) {
  const vlm_st_entry *e = vlm_st_find(st, name);
  CHECK(e != NULL, "%s: no tensor %s", st->path, name);
  if (!e) return NULL;
  float *x = vt_alloc(n);
  vlm_status s = vlm_st_read_f32(st, e, x, n);
  CHECK(s == VLM_OK, "%s", vlm_last_error());
  return x;
}

static double max_abs(const float *x, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
  return m;
}

/* kind 0: final weights (1e-5 + 1e-4 * max|ref|), 1: moments (1e-4 * max|ref|); times scale. */
static double compare_tensor(const char *what, const char *name, const float *got, const float *ref, int64_t n,
                             int kind, double scale) {
  double worst = vt_max_abs(got, ref, n), m = max_abs(ref, n);
  double tol = scale * (kind == 0 ? 1e-5 + 1e-4 * m : 1e-4 * m);
  CHECK(worst <= tol && !isnan(worst), "%s: %s: max abs error %.3g > %.3g", what, name, worst, tol);
  return m > 0 ? worst / m : worst;
}

/* open_clip's trajectory with the trainer on dev (the CPU, or a GPU: parameters,
 * optimizer state and activations there, the batches uploaded by the trainer).
 * On a GPU the tolerances are tol_scale times the CPU's (other summation orders;
 * the errors reached are printed). */
static void run_fixture(const char *dir, vlm_device dev) {
  char path[4096];
  const double tol = dev == VLM_CPU ? 1.0 : 10.0;
  printf("trajectory fixture %s on the %s\n", dir, dev == VLM_CPU ? "CPU" : "GPU");
  snprintf(path, sizeof path, "%s/trajectory.json", dir);
  char *txt = NULL;
  if (vlm_read_text_file(path, &txt) != VLM_OK) {
    CHECK(0, "%s", vlm_last_error());
    return;
  }
  cJSON *tj = cJSON_Parse(txt);
  free(txt);
  CHECK(tj != NULL, "%s: not JSON", path);
  if (!tj) return;
  const cJSON *hp = jget(tj, "hyperparameters"), *steps = jget(tj, "steps");
  CHECK(hp && cJSON_IsArray(steps), "%s: hyperparameters / steps missing", path);
  if (!hp || !cJSON_IsArray(steps)) return;
  const int n_steps = cJSON_GetArraySize(steps);

  vlm_clip_config c;
  vlm_coca_config cc;
  snprintf(path, sizeof path, "%s/config.json", dir);
  const int coca = vlm_model_is_coca(path) == 1;
  vlm_status s = coca ? vlm_coca_config_load(&cc, path) : vlm_clip_config_load(&c, path, NULL);
  CHECK(s == VLM_OK, "%s", vlm_last_error());
  if (s != VLM_OK) return;
  vlm_train_config t;
  vlm_train_config_default(&t);
  t.lr = (float)jnum(hp, "lr");
  t.wd = (float)jnum(hp, "weight_decay");
  t.beta1 = (float)jnum(hp, "beta1");
  t.beta2 = (float)jnum(hp, "beta2");
  t.eps = (float)jnum(hp, "eps");
  t.warmup = (int64_t)jnum(hp, "warmup_steps");
  t.total_steps = (int64_t)jnum(hp, "total_steps");
  t.grad_clip_norm = jnum(hp, "grad_clip_norm");
  t.accum_freq = (int)jnum(hp, "accum_freq");
  t.batch_size = (int)jnum(hp, "batch_size");
  t.scheduler = VLM_SCHED_COSINE;
  t.device = dev;

  vlm_trainer tr;
  if (coca) {
    const cJSON *cw = jget(hp, "caption_loss_weight"), *lw = jget(hp, "clip_loss_weight");
    if (cJSON_IsNumber(cw)) cc.caption_loss_weight = (float)cw->valuedouble;
    if (cJSON_IsNumber(lw)) cc.clip_loss_weight = (float)lw->valuedouble;
    s = vlm_trainer_init_coca(&tr, &cc, &t);
  } else {
    s = vlm_trainer_init(&tr, &c, &t);
  }
  CHECK(s == VLM_OK, "%s", vlm_last_error());
  if (s != VLM_OK) return;
  snprintf(path, sizeof path, "%s/init.safetensors", dir);
  s = coca ? vlm_coca_load_safetensors(vlm_trainer_host_coca(&tr), &cc, path)
           : vlm_clip_load_safetensors(vlm_trainer_host_params(&tr), &c, path, VLM_CKPT_OPENCLIP);
  CHECK(s == VLM_OK, "%s", vlm_last_error());
  vlm_trainer_upload_params(&tr);

  /* The parameter groups: every name the fixture decays, and no other. */
  const cJSON *pg = jget(tj, "parameter_groups");
  const cJSON *wd = pg ? jget(pg, "with_weight_decay") : NULL, *nwd = pg ? jget(pg, "without_weight_decay") : NULL;
  CHECK(cJSON_IsArray(wd) && cJSON_IsArray(nwd), "trajectory.json: parameter_groups lists missing");
  int decayed = 0, grouped = 0;
  for (int i = 0; i < tr.n_slots; i++) {
    const vlm_param_slot *sl = &tr.slots[i];
    int in_wd = 0, in_nwd = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, wd) if (cJSON_IsString(x) && !strcmp(x->valuestring, sl->name)) in_wd = 1;
    cJSON_ArrayForEach(x, nwd) if (cJSON_IsString(x) && !strcmp(x->valuestring, sl->name)) in_nwd = 1;
    CHECK(in_wd + in_nwd == 1 && in_wd == sl->decay, "parameter group of %s: decay %d here, fixture %s", sl->name,
          sl->decay, in_wd ? "decays it" : in_nwd ? "does not" : "does not list it");
    decayed += sl->decay;
    grouped += in_wd + in_nwd;
  }
  CHECK(grouped == cJSON_GetArraySize(wd) + cJSON_GetArraySize(nwd), "fixture lists parameters the model lacks");

  vlm_safetensors bt;
  snprintf(path, sizeof path, "%s/batches.safetensors", dir);
  s = vlm_st_open(&bt, path);
  CHECK(s == VLM_OK, "%s", vlm_last_error());
  if (s != VLM_OK) return;
  double worst_loss = 0, worst_gn = 0, worst_lr = 0, worst_ls = 0;
  for (int k = 0; k < n_steps; k++) {
    const cJSON *sj = cJSON_GetArrayItem(steps, k);
    char ni[64], nt[64];
    snprintf(ni, sizeof ni, "images_%d", k);
    snprintf(nt, sizeof nt, "text_%d", k);
    const vlm_st_entry *ei = vlm_st_find(&bt, ni), *et = vlm_st_find(&bt, nt);
    CHECK(ei && et, "%s: batch %d missing", path, k);
    if (!ei || !et) break;
    vlm_tensor images = vlm_st_tensor(ei), ids = vlm_st_tensor(et);
    float lr_expect = (float)jnum(sj, "lr");
    float lr = vlm_trainer_lr(&tr.cfg, tr.step);
    float loss = vlm_trainer_step(&tr, &images, &ids);
    double e_lr = fabs(lr - lr_expect) / fabs(lr_expect);
    double e_loss = fabs(loss - jnum(jget(sj, "loss"), "total")) / fabs(jnum(jget(sj, "loss"), "total"));
    double e_gn = fabs(tr.last_grad_norm - jnum(sj, "grad_norm")) / jnum(sj, "grad_norm");
    const float ls = vlm_get_f32(tr.logit_scale, 0);
    double e_ls = fabs(ls - jnum(sj, "logit_scale"));
    if (coca) { /* the unweighted parts (the weighted ones follow from the weights) */
      const cJSON *lj = jget(sj, "loss");
      double rc = jnum(lj, "clip_loss_unweighted"), rp = jnum(lj, "caption_loss_unweighted");
      double e_c = fabs(tr.last_clip_loss - rc) / fabs(rc), e_p = fabs(tr.last_caption_loss - rp) / fabs(rp);
      CHECK(e_c <= 1e-5 * tol, "step %d: clip loss %.9g, open_clip %.9g (rel %.3g)", k, tr.last_clip_loss, rc, e_c);
      CHECK(e_p <= 1e-5 * tol, "step %d: caption loss %.9g, open_clip %.9g (rel %.3g)", k, tr.last_caption_loss, rp, e_p);
      worst_loss = fmax(worst_loss, fmax(e_c, e_p));
    }
    CHECK(e_lr <= 1e-6 && tr.last_lr == lr, "step %d: lr %.9g, open_clip %.9g", k, lr, lr_expect);
    CHECK(e_loss <= 1e-5 * tol, "step %d: loss %.9g, open_clip %.9g (rel %.3g)", k, loss, jnum(jget(sj, "loss"), "total"),
          e_loss);
    CHECK(e_gn <= 1e-5 * tol, "step %d: grad_norm %.9g, open_clip %.9g (rel %.3g)", k, tr.last_grad_norm,
          jnum(sj, "grad_norm"), e_gn);
    CHECK(e_ls <= 1e-6 * tol, "step %d: logit_scale %.9g, open_clip %.9g", k, ls, jnum(sj, "logit_scale"));
    worst_lr = fmax(worst_lr, e_lr);
    worst_loss = fmax(worst_loss, e_loss);
    worst_gn = fmax(worst_gn, e_gn);
    worst_ls = fmax(worst_ls, e_ls);
  }
  vlm_st_close(&bt);

  vlm_safetensors fin, opt;
  snprintf(path, sizeof path, "%s/final.safetensors", dir);
  s = vlm_st_open(&fin, path);
  CHECK(s == VLM_OK, "%s", vlm_last_error());
  snprintf(path, sizeof path, "%s/optimizer_final.safetensors", dir);
  vlm_status s2 = vlm_st_open(&opt, path);
  CHECK(s2 == VLM_OK, "%s", vlm_last_error());
  double worst_w = 0, worst_m = 0, worst_v = 0;
  if (s == VLM_OK && s2 == VLM_OK) {
    for (int i = 0; i < tr.n_slots; i++) {
      const vlm_param_slot *sl = &tr.slots[i];
      int64_t n = vlm_numel(sl->param);
      /* the weight, then AdamW's two moments, against open_clip's after the last step */
      const struct { const vlm_safetensors *st; const char *suffix; const vlm_tensor *t; int kind; double *worst; } part[3] = {
          {&fin, "", sl->param, 0, &worst_w}, {&opt, ".exp_avg", sl->m, 1, &worst_m},
          {&opt, ".exp_avg_sq", sl->v, 1, &worst_v}};
      for (int k = 0; k < 3; k++) {
        char name[512];
        snprintf(name, sizeof name, "%s%s", sl->name, part[k].suffix);
        float *r = read_entry(part[k].st, name, n), *h = vt_host_f32(part[k].t);
        const char *what = k == 0 ? "final weights" : part[k].suffix + 1;
        if (r) *part[k].worst = fmax(*part[k].worst, compare_tensor(what, sl->name, h, r, n, part[k].kind, tol));
        free(r);
        free(h);
      }
    }
  }
  if (s == VLM_OK) vlm_st_close(&fin);
  if (s2 == VLM_OK) vlm_st_close(&opt);
  printf("  %d steps, %d of %d tensors decayed; worst: lr rel %.2g, loss rel %.2g, grad_norm rel %.2g, "
         "logit_scale abs %.2g;\n  final weights %.2g, exp_avg %.2g, exp_avg_sq %.2g (abs error / tensor max)\n",
         n_steps, decayed, tr.n_slots, worst_lr, worst_loss, worst_gn, worst_ls, worst_w, worst_m, worst_v);
  vlm_trainer_free(&tr);
  cJSON_Delete(tj);
}

/* ------------------------------------------------------------ synthetic checks on the tiny config */
typedef struct {
  float *images;
  int64_t *ids;
  vlm_tensor ti, tt;
} batch;

static void make_batch(batch *b, const vlm_clip_config *c, int64_t n, uint64_t seed) {
  int64_t S = c->vision.image_size, L = c->text.context_length, V = c->text.vocab_size;
  b->images = vt_alloc(n * 3 * S * S);
  vt_fill_normal(b->images, n * 3 * S * S, seed, 1.0f);
  b->ids = calloc((size_t)(n * L), sizeof(int64_t));
  vlm_rng r;
  vlm_rng_seed(&r, seed + 1);
  for (int64_t i = 0; i < n; i++) {
    int64_t len = 2 + (int64_t)vlm_rng_below(&r, (uint64_t)(L - 3));
    b->ids[i * L] = V - 2;
    for (int64_t l = 1; l < len; l++) b->ids[i * L + l] = 1 + (int64_t)vlm_rng_below(&r, (uint64_t)(V - 3));
    b->ids[i * L + len] = V - 1;
  }
  int64_t is[4] = {n, 3, S, S}, ts[2] = {n, L};
  b->ti = vlm_tensor_cpu_f32(b->images, 4, is);
  b->tt = vlm_tensor_make(b->ids, VLM_I64, VLM_CPU, 2, ts);
}
static void free_batch(batch *b) {
  free(b->images);
  free(b->ids);
}

/* The synthetic checks' training config: micro-batch B, accumulation K, then tweak. */
static vlm_train_config tiny_train_config(int B, int K, void (*tweak)(vlm_train_config *)) {
  vlm_train_config t;
  vlm_train_config_default(&t);
  t.lr = 1e-3f;
  t.warmup = 2;
  t.total_steps = 10;
  t.batch_size = B;
  t.accum_freq = K;
  if (tweak) tweak(&t);
  return t;
}

/* 1: the tiny trainers below are SigLIP models (a logit_bias, the sigmoid loss) */
static int g_siglip;

static void tiny_trainer(vlm_trainer *tr, vlm_clip_config *c, int B, int K, void (*tweak)(vlm_train_config *)) {
  CHECK(vlm_clip_config_builtin(c, "tiny") == VLM_OK, "%s", vlm_last_error());
  c->has_logit_bias = g_siglip;
  c->init_logit_bias = g_siglip ? VLM_SIGLIP_INIT_LOGIT_BIAS : 0.0f;
  vlm_train_config t = tiny_train_config(B, K, tweak);
  vlm_status s = vlm_trainer_init(tr, c, &t);
  CHECK(s == VLM_OK, "%s", vlm_last_error());
  VLM_CHECK(s == VLM_OK, "tiny trainer");
  vlm_clip_params_init_openclip(&tr->p, c, 5);
}

static void test_clamp(void) {
  vlm_clip_config c;
  vlm_trainer tr;
  tiny_trainer(&tr, &c, 4, 1, NULL);
  batch b;
  make_batch(&b, &c, 4, 11);
  float *ls = vlm_f32(&tr.p.logit_scale);
  *ls = 4.7f;  /* past ln 100: Adam's first move is ~lr = 1e-3, so the step leaves it > ln 100 */
  vlm_trainer_step(&tr, &b.ti, &b.tt);
  CHECK(*ls == VLM_CLIP_LOGIT_SCALE_MAX, "logit_scale %.9g after a step from 4.7, expected ln 100 = %.9g", *ls,
        VLM_CLIP_LOGIT_SCALE_MAX);
  *ls = -0.5f;
  vlm_trainer_step(&tr, &b.ti, &b.tt);
  CHECK(*ls == 0.0f, "logit_scale %.9g after a step from -0.5, expected 0", *ls);
  /* Several steps that push it up (the first moment of logit_scale set as if a
   * long run had kept raising it, lr large): it must sit exactly at the bound. */
  *ls = 4.6f;
  *vlm_f32(&tr.m.logit_scale) = -1000.0f;
  *vlm_f32(&tr.v.logit_scale) = 1e6f;
  tr.cfg.lr = 0.05f;
  tr.cfg.scheduler = VLM_SCHED_CONST;
  tr.cfg.warmup = 0;
  int at_bound = 0;
  for (int i = 0; i < 4; i++) {
    vlm_trainer_step(&tr, &b.ti, &b.tt);
    at_bound += *ls == VLM_CLIP_LOGIT_SCALE_MAX;
    CHECK(*ls <= VLM_CLIP_LOGIT_SCALE_MAX && *ls >= 0, "logit_scale %.9g outside [0, ln 100]", *ls);
  }
  CHECK(at_bound == 4, "the clamp bound in %d of 4 pushing steps from 4.6", at_bound);
  printf("clamp: bound in %d of 4 large-lr steps\n", at_bound);
  free_batch(&b);
  vlm_trainer_free(&tr);
}

/* open_clip's accumulation: K micro-batches of B give the tower gradients of one
 * K*B batch, K times its logit_scale gradient, and the K*B batch's loss. */
static void no_clip(vlm_train_config *t) { t->grad_clip_norm = 0; }

/* acc's gradients (K micro-batches) against big's (one batch): every tensor within 1e-5 of
 * its max, logit_scale's K times; the worst error, and how many tensors were compared. */
static double accum_grads_check(const vlm_trainer *big, const vlm_trainer *acc, int K, const char *what,
                                int *checked) {
  double worst = 0;
  *checked = 0;
  for (int i = 0; i < big->n_slots; i++) {
    int64_t n = vlm_numel(big->slots[i].grad);
    const float *g1 = vlm_f32(big->slots[i].grad), *g2 = vlm_f32(acc->slots[i].grad);
    if (!strcmp(big->slots[i].name, "logit_scale") || !strcmp(big->slots[i].name, "logit_bias")) {
      /* one gradient per micro-batch, each the K*B batch's (open_clip's accumulation) */
      CHECK(fabs(g2[0] - K * g1[0]) <= 1e-5 * fabs(K * g1[0]) + 1e-7, "%s %s grad %.9g vs K * %.9g", what,
            big->slots[i].name, g2[0], g1[0]);
      continue;
    }
    double e = vt_max_rel(g2, g1, n, 1e-30);
    CHECK(e <= 1e-5, "%s accum gradient of %s: %.3g of its max", what, big->slots[i].name, e);
    worst = fmax(worst, e);
    (*checked)++;
  }
  return worst;
}
static void test_accum(void) {
  const int B = 3, K = 3;
  vlm_clip_config c;
  vlm_trainer big, acc;
  tiny_trainer(&big, &c, B * K, 1, no_clip);
  tiny_trainer(&acc, &c, B, K, no_clip);
  batch b;
  make_batch(&b, &c, B * K, 21);
  float l1 = vlm_trainer_step(&big, &b.ti, &b.tt);
  float l2 = vlm_trainer_step(&acc, &b.ti, &b.tt);
  CHECK(fabsf(l1 - l2) <= 1e-5f * fabsf(l1), "accum loss %.9g vs batch %.9g", l2, l1);
  int checked = 0;
  double worst = accum_grads_check(&big, &acc, K, g_siglip ? "SigLIP" : "CLIP", &checked);
  printf("%saccum-freq %d x %d vs batch %d: %d tensors, worst gradient error %.2g of the tensor max\n",
         g_siglip ? "SigLIP: " : "", K, B, K * B, checked, worst);
  free_batch(&b);
  vlm_trainer_free(&big);
  vlm_trainer_free(&acc);
}

static void lock_img(vlm_train_config *t) { t->lock_image = 1; }
static void lock_txt(vlm_train_config *t) { t->lock_text = 1; }
static void test_lock(int image) {
  vlm_clip_config c;
  vlm_trainer tr, ref;
  tiny_trainer(&tr, &c, 4, image ? 2 : 1, image ? lock_img : lock_txt);
  tiny_trainer(&ref, &c, 4, image ? 2 : 1, NULL);
  vlm_clip_params fresh;  /* the init, same arena layout */
  CHECK(vlm_clip_params_init(&fresh, &c) == VLM_OK, "%s", vlm_last_error());
  vlm_clip_params_init_openclip(&fresh, &c, 5);
  batch b;
  make_batch(&b, &c, image ? 8 : 4, 31);
  vlm_trainer_step(&tr, &b.ti, &b.tt);
  vlm_trainer_step(&ref, &b.ti, &b.tt);
  int frozen_ok = 1, moved = 0, same_free = 1, still = 1;
  for (int i = 0; i < tr.n_slots; i++) {
    const char *n = tr.slots[i].name;
    /* logit_scale and logit_bias belong to neither tower: trainable under either lock */
    int is_img = !strncmp(n, "visual.", 7), is_ls = !strcmp(n, "logit_scale") || !strcmp(n, "logit_bias");
    int locked = image ? is_img : (!is_img && !is_ls);
    int64_t k = vlm_numel(tr.slots[i].param);
    const float *p = vlm_f32(tr.slots[i].param);
    const float *p0 = (const float *)(fresh.arena.base + ((const uint8_t *)tr.slots[i].param->data - tr.p.arena.base));
    const float *g = vlm_f32(tr.slots[i].grad), *g0 = vlm_f32(ref.slots[i].grad);
    if (locked) {
      for (int64_t j = 0; j < k; j++) {
        if (g[j] != 0.0f) frozen_ok = 0;
        if (p[j] != p0[j]) still = 0;
      }
    } else {
      /* the trainable tower's gradients are those of the unlocked model */
      if (vt_max_rel(g, g0, k, 1e-30) > 1e-5) same_free = 0;
      for (int64_t j = 0; j < k; j++)
        if (p[j] != p0[j]) moved = 1;
    }
  }
  CHECK(still, "lock-%s: the locked tower moved", image ? "image" : "text");
  CHECK(frozen_ok, "lock-%s: the locked tower has gradients", image ? "image" : "text");
  CHECK(same_free, "lock-%s: the trainable tower's gradients differ from the unlocked model's",
        image ? "image" : "text");
  CHECK(moved, "lock-%s: the trainable tower did not move", image ? "image" : "text");
  vlm_clip_params_free(&fresh);
  free_batch(&b);
  vlm_trainer_free(&tr);
  vlm_trainer_free(&ref);
}

/* A SigLIP trainer: logit_bias is a slot, without weight decay, trainable under both locks, and
 * moves in a step; the loss is the sigmoid loss (~10 at open_clip's initial values). */
static void test_siglip_slots(void) {
  for (int lock = 0; lock < 3; lock++) {
    vlm_clip_config c;
    vlm_trainer tr;
    tiny_trainer(&tr, &c, 4, 1, lock == 1 ? lock_img : lock == 2 ? lock_txt : NULL);
    vlm_fill(&tr.p.logit_scale, VLM_SIGLIP_INIT_LOGIT_SCALE);
    batch b;
    make_batch(&b, &c, 4, 41);
    int found = 0, active = 0;
    for (int i = 0; i < tr.n_slots; i++)
      if (!strcmp(tr.slots[i].name, "logit_bias")) found = !tr.slots[i].decay && tr.slots[i].param == &tr.p.logit_bias;
    for (int i = 0; i < tr.n_active; i++) active |= !strcmp(tr.active[i].name, "logit_bias");
    CHECK(found && active, "SigLIP (lock %d): logit_bias is a trainable slot without weight decay", lock);
    float loss = vlm_trainer_step(&tr, &b.ti, &b.tt);
    float bias = vlm_get_f32(&tr.p.logit_bias, 0);
    CHECK(loss > 5.0f && loss < 30.0f, "SigLIP (lock %d): first loss %g, the sigmoid loss at bias -10", lock, loss);
    CHECK(bias != VLM_SIGLIP_INIT_LOGIT_BIAS && fabsf(bias - VLM_SIGLIP_INIT_LOGIT_BIAS) < 0.01f,
          "SigLIP (lock %d): logit_bias moved by one step: %.7g", lock, bias);
    free_batch(&b);
    vlm_trainer_free(&tr);
  }
}

/* ---- CoCa: accumulation and locking on coca-tiny */
static void tiny_coca_trainer(vlm_trainer *tr, vlm_coca_config *c, int B, int K, void (*tweak)(vlm_train_config *)) {
  CHECK(vlm_coca_config_builtin(c, "coca-tiny") == VLM_OK, "%s", vlm_last_error());
  vlm_train_config t = tiny_train_config(B, K, tweak);
  t.grad_clip_norm = 0;   /* (the default; the accumulation check needs it off) */
  vlm_status s = vlm_trainer_init_coca(tr, c, &t);
  CHECK(s == VLM_OK, "%s", vlm_last_error());
  VLM_CHECK(s == VLM_OK, "tiny CoCa trainer");
  vlm_coca_params_init_openclip(&tr->coca.p, c, 7);
}

/* K micro-batches of B against one K*B batch: the same loss and its two parts,
 * the same gradient for every tower and decoder tensor, K times logit_scale's.
 * The texts have 1 to L-2 tokens, so the micro-batches' target counts differ
 * (a plain mean of the micro-batches' caption means would not match). */
static void test_coca_accum(void) {
  const int B = 2, K = 3;
  vlm_coca_config c;
  vlm_trainer big, acc;
  tiny_coca_trainer(&big, &c, B * K, 1, NULL);
  tiny_coca_trainer(&acc, &c, B, K, NULL);
  batch b;
  make_batch(&b, &big.model, B * K, 51);
  float l1 = vlm_trainer_step(&big, &b.ti, &b.tt);
  float l2 = vlm_trainer_step(&acc, &b.ti, &b.tt);
  CHECK(fabsf(l1 - l2) <= 1e-5f * fabsf(l1), "CoCa accum loss %.9g vs batch %.9g", l2, l1);
  CHECK(fabsf(big.last_clip_loss - acc.last_clip_loss) <= 1e-5f * fabsf(big.last_clip_loss) &&
            fabsf(big.last_caption_loss - acc.last_caption_loss) <= 1e-5f * fabsf(big.last_caption_loss),
        "CoCa accum parts: clip %.9g vs %.9g, caption %.9g vs %.9g", acc.last_clip_loss, big.last_clip_loss,
        acc.last_caption_loss, big.last_caption_loss);
  int checked = 0;
  double worst = accum_grads_check(&big, &acc, K, "CoCa", &checked);
  CHECK(checked > 50, "CoCa accum: only %d tensors compared", checked);
  printf("CoCa accum-freq %d x %d vs batch %d: %d tensors, worst gradient error %.2g of the tensor max\n", K, B,
         K * B, checked, worst);
  free_batch(&b);
  vlm_trainer_free(&big);
  vlm_trainer_free(&acc);
}

/* A locked CoCa tower: its tensors get no gradient and do not move; every other
 * tensor (the decoder included) gets the unlocked model's gradient and moves.
 * With K = 2 as well, where the accumulation path runs. */
static void test_coca_lock(int image, int K) {
  vlm_coca_config c;
  vlm_trainer tr, ref;
  tiny_coca_trainer(&tr, &c, 2, K, image ? lock_img : lock_txt);
  tiny_coca_trainer(&ref, &c, 2, K, NULL);
  size_t bytes = tr.coca.p.arena.used;
  uint8_t *before = malloc(bytes);
  VLM_CHECK(before, "out of memory");
  memcpy(before, tr.coca.p.arena.base, bytes);
  batch b;
  make_batch(&b, &tr.model, 2 * K, 61);
  vlm_trainer_step(&tr, &b.ti, &b.tt);
  vlm_trainer_step(&ref, &b.ti, &b.tt);
  int frozen_ok = 1, still = 1, same_free = 1, moved_all = 1, n_locked = 0, n_free = 0;
  for (int i = 0; i < tr.n_slots; i++) {
    const char *n = tr.slots[i].name;
    int locked = image ? !strncmp(n, "visual.", 7) : !strncmp(n, "text.", 5);
    int64_t k = vlm_numel(tr.slots[i].param);
    const float *p = vlm_f32(tr.slots[i].param);
    const float *p0 = (const float *)(before + ((const uint8_t *)tr.slots[i].param->data - tr.coca.p.arena.base));
    const float *g = vlm_f32(tr.slots[i].grad), *g0 = vlm_f32(ref.slots[i].grad);
    int moved = 0;
    for (int64_t j = 0; j < k; j++) moved |= p[j] != p0[j];
    if (locked) {
      n_locked++;
      for (int64_t j = 0; j < k; j++) frozen_ok &= g[j] == 0.0f;
      still &= !moved;
    } else {
      n_free++;
      if (vt_max_rel(g, g0, k, 1e-30) > 1e-5) {
        same_free = 0;
        printf("  %s: gradient differs from the unlocked model's\n", n);
      }
      /* a tensor with a zero gradient (none here) could not move */
      if (!moved) printf("  %s did not move\n", n);
      moved_all &= moved;
    }
  }
  const char *what = image ? "image" : "text";
  CHECK(n_locked > 5 && n_free > 5, "CoCa lock-%s: %d locked, %d free tensors", what, n_locked, n_free);
  CHECK(still, "CoCa lock-%s (K %d): the locked tower moved", what, K);
  CHECK(frozen_ok, "CoCa lock-%s (K %d): the locked tower has gradients", what, K);
  CHECK(same_free, "CoCa lock-%s (K %d): trainable gradients differ from the unlocked model's", what, K);
  CHECK(moved_all, "CoCa lock-%s (K %d): a trainable tensor did not move", what, K);
  printf("CoCa lock-%s, accum %d: %d tensors locked, %d trained\n", what, K, n_locked, n_free);
  free(before);
  free_batch(&b);
  vlm_trainer_free(&tr);
  vlm_trainer_free(&ref);
}

static void bf16(vlm_train_config *t) { t->precision = VLM_PREC_BF16; }
static void test_bf16(void) {
  vlm_clip_config c;
  vlm_trainer a, h;
  tiny_trainer(&a, &c, 4, 1, NULL);
  tiny_trainer(&h, &c, 4, 1, bf16);
  batch b;
  make_batch(&b, &c, 4, 41);
  float la = 0, lh = 0;
  for (int i = 0; i < 3; i++) {
    la = vlm_trainer_step(&a, &b.ti, &b.tt);
    lh = vlm_trainer_step(&h, &b.ti, &b.tt);
  }
  CHECK(isfinite(lh) && fabsf(la - lh) <= 2e-2f * fabsf(la), "bf16 loss %.6g vs fp32 %.6g", lh, la);
  CHECK(vlm_get_matmul_precision() == VLM_PREC_F32, "the trainer left the matmul precision changed");
  CHECK(h.p.visual.conv1_w.dtype == VLM_F32, "bf16 training keeps fp32 master weights");
  printf("bf16: loss after 3 steps %.6g (fp32 %.6g)\n", lh, la);
  free_batch(&b);
  vlm_trainer_free(&a);
  vlm_trainer_free(&h);
}

int main(int argc, char **argv) {
  /* --device cuda DIR: one trajectory fixture with the trainer on the GPU
   * (skipped, 77, without one) */
  if (argc > 3 && !strcmp(argv[1], "--device") && !strcmp(argv[2], "cuda")) {
    if (!vlm_cuda_available()) {
      char why[512];
      snprintf(why, sizeof why, "no CUDA GPU: skipped (%s)", vlm_cuda_describe());
      vt_skip(why);
    }
    printf("GPU: %s\n", vlm_cuda_describe());
    run_fixture(argv[3], VLM_CUDA);
    return vt_finish();
  }
  const char *arg = argc > 1 ? argv[1] : NULL;
  char path[4096];
  struct stat sb;
  if (arg) {
    snprintf(path, sizeof path, "%s/trajectory.json", arg);
    if (stat(path, &sb) == 0) {
      run_fixture(arg, VLM_CPU);
      return vt_finish();
    }
  }
  const char *shared = vt_shared_dir(argc, argv);
  if (shared) {
    snprintf(path, sizeof path, "%s/fixtures/train-tiny-clip", shared);
    if (stat(path, &sb) == 0) run_fixture(path, VLM_CPU);
    else printf("no %s: trajectory skipped\n", path);
    snprintf(path, sizeof path, "%s/fixtures/train-tiny-coca", shared);
    if (stat(path, &sb) == 0) run_fixture(path, VLM_CPU);
    else printf("no %s: trajectory skipped\n", path);
  }
  test_clamp();
  test_accum();
  test_lock(1);
  test_lock(0);
  test_coca_accum();
  test_coca_lock(1, 1);
  test_coca_lock(0, 1);
  test_coca_lock(1, 2);
  test_coca_lock(0, 2);
  /* SigLIP (--siglip): the same accumulation, locking and clamp; logit_bias trained without decay */
  g_siglip = 1;
  test_clamp();
  test_accum();
  test_lock(1);
  test_lock(0);
  test_siglip_slots();
  g_siglip = 0;
  test_bf16();
  return vt_finish();
}
