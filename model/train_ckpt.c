/* Training checkpoints: the open_clip weights directory plus train_state.safetensors
 * (AdamW moments, step, epoch, data position, RNG), each file written atomically;
 * named checkpoint directories swapped in by rename, "latest" a symlink replaced by
 * an atomic rename once its target is complete. */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/model.h"
#include "model/train_ops.h"

static vlm_status make_dir(const char *dir) {
  if (mkdir(dir, 0755) == 0 || errno == EEXIST) return VLM_OK;
  return vlm_error(VLM_ERR_IO, "%s: cannot create the directory: %s", dir, strerror(errno));
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *f) {
  (void)sb; (void)flag; (void)f;
  remove(path);
  return 0;
}
static void rm_tree(const char *path) { nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static int exists(const char *path) {
  struct stat sb;
  return lstat(path, &sb) == 0;
}

vlm_status vlm_trainer_save(vlm_trainer *tr, const char *dir) {
  vlm_status s = make_dir(dir);
  if (s == VLM_OK) s = tr->ops->save_dir(tr, dir);
  if (s != VLM_OK) return s;
  char path[4096], buf[160];
  snprintf(path, sizeof path, "%s/train_state.safetensors", dir);
  vlm_st_writer *w = vlm_st_writer_new();
  if (!w) return vlm_error(VLM_ERR_OOM, "%s: out of memory", path);
  for (int i = 0; i < tr->n_slots && s == VLM_OK; i++) {
    char name[600];
    snprintf(name, sizeof name, "%s.exp_avg", tr->slots[i].name);
    s = vlm_st_writer_add_tensor(w, name, tr->slots[i].m);
    snprintf(name, sizeof name, "%s.exp_avg_sq", tr->slots[i].name);
    if (s == VLM_OK) s = vlm_st_writer_add_tensor(w, name, tr->slots[i].v);
  }
#define META(k, ...)                                \
  do {                                              \
    snprintf(buf, sizeof buf, __VA_ARGS__);         \
    if (s == VLM_OK) s = vlm_st_writer_meta(w, k, buf); \
  } while (0)
  META("format", "vlm-train-state-1");
  META("step", "%" PRId64, tr->step);
  META("epoch", "%" PRId64, tr->epoch);
  META("epoch_batches", "%" PRId64, tr->epoch_batches);
  if (tr->epoch_seq >= 0 && (tr->world <= 1)) META("epoch_seq", "%" PRId64, tr->epoch_seq);   /* one rank's */
  META("rng", "%016" PRIx64 "%016" PRIx64 "%016" PRIx64 "%016" PRIx64, tr->rng.s[0], tr->rng.s[1], tr->rng.s[2],
       tr->rng.s[3]);
  union { float f; uint32_t u; } sp = {tr->rng.spare};
  META("rng_spare", "%d:%08" PRIx32, tr->rng.has_spare, sp.u);
  META("accum_freq", "%d", tr->cfg.accum_freq);
  META("batch_size", "%d", tr->cfg.batch_size);
  META("world", "%d", tr->world > 0 ? tr->world : 1);   /* ranks: batch_size is each one's */
  META("total_steps", "%" PRId64, tr->cfg.total_steps);
  /* the optimizer and schedule settings, for a resume without the flags (vlm train restores
   * each one not given again; floats with 9 digits read back to the same float) */
  META("lr", "%.9g", (double)tr->cfg.lr);
  META("beta1", "%.9g", (double)tr->cfg.beta1);
  META("beta2", "%.9g", (double)tr->cfg.beta2);
  META("eps", "%.9g", (double)tr->cfg.eps);
  META("wd", "%.9g", (double)tr->cfg.wd);
  META("warmup", "%" PRId64, tr->cfg.warmup);
  META("lr_scheduler", "%s", vlm_lr_scheduler_name(tr->cfg.scheduler));
  META("cooldown_steps", "%" PRId64, tr->cfg.cooldown_steps);
  META("cooldown_power", "%.9g", (double)tr->cfg.cooldown_power);
  META("cooldown_end_lr", "%.9g", (double)tr->cfg.cooldown_end_lr);
  META("grad_clip_norm", "%.17g", tr->cfg.grad_clip_norm);
  META("seed", "%" PRId64, tr->cfg.seed);
  if (tr->is_coca) {
    META("coca_caption_loss_weight", "%.9g", (double)tr->coca.model.caption_loss_weight);
    META("coca_contrastive_loss_weight", "%.9g", (double)tr->coca.model.clip_loss_weight);
  }
#undef META
  if (s == VLM_OK) s = vlm_st_writer_save(w, path);
  vlm_st_writer_free(w);
  return s;
}

static vlm_status meta_i64(const vlm_safetensors *st, const char *key, int64_t *out) {
  const char *v = vlm_st_meta(st, key);
  char *end = NULL;
  if (!v) return vlm_error(VLM_ERR_FORMAT, "%s: metadata '%s' missing", st->path, key);
  errno = 0;
  long long x = strtoll(v, &end, 10);
  if (errno || !end || *end || end == v || x < 0)
    return vlm_error(VLM_ERR_FORMAT, "%s: metadata '%s' = '%s' is not a count", st->path, key, v);
  *out = x;
  return VLM_OK;
}

vlm_status vlm_trainer_load(vlm_trainer *tr, const char *dir, int *had_state) {
  char path[4096];
  if (had_state) *had_state = 0;
  char cfg[4096];
  if (vlm_model_paths(dir, cfg, path, sizeof path) != VLM_OK) {   /* (its error comes from the load below) */
    snprintf(path, sizeof path, "%s/open_clip_model.safetensors", dir);
    if (!exists(path)) snprintf(path, sizeof path, "%s/model.safetensors", dir);
  }
  vlm_status s = tr->ops->load_weights(tr, path);
  if (s != VLM_OK) return s;
  snprintf(path, sizeof path, "%s/train_state.safetensors", dir);
  if (!exists(path)) return VLM_OK;
  vlm_safetensors st;
  s = vlm_st_open(&st, path);
  if (s != VLM_OK) return s;
  const char *fmt = vlm_st_meta(&st, "format");
  if (!fmt || strcmp(fmt, "vlm-train-state-1")) s = vlm_error(VLM_ERR_FORMAT, "%s: not a vlm training state", path);
  for (int i = 0; i < tr->n_slots && s == VLM_OK; i++) {
    for (int k = 0; k < 2 && s == VLM_OK; k++) {
      char name[600];
      snprintf(name, sizeof name, "%s.%s", tr->slots[i].name, k ? "exp_avg_sq" : "exp_avg");
      const vlm_st_entry *e = vlm_st_find(&st, name);
      vlm_tensor *t = k ? tr->slots[i].v : tr->slots[i].m;
      if (!e) s = vlm_error(VLM_ERR_FORMAT, "%s: no tensor %s", path, name);
      else if (t->device == VLM_CPU) s = vlm_st_read_f32(&st, e, vlm_f32(t), vlm_numel(t));
      else {  /* a moment on a GPU: through a host buffer */
        float *h = malloc((size_t)(vlm_numel(t) > 0 ? vlm_numel(t) : 1) * sizeof(float));
        s = h ? vlm_st_read_f32(&st, e, h, vlm_numel(t)) : vlm_error(VLM_ERR_OOM, "out of memory");
        if (s == VLM_OK) vlm_memcpy(t->data, t->device, h, VLM_CPU, (size_t)vlm_numel(t) * sizeof(float));
        free(h);
      }
    }
  }
  int64_t step = 0, epoch = 0, eb = 0, bs = 0, accum = 0, total = 0, world = 1, seq = -1;
  if (s == VLM_OK) s = meta_i64(&st, "step", &step);
  if (s == VLM_OK) s = meta_i64(&st, "epoch", &epoch);
  if (s == VLM_OK) s = meta_i64(&st, "epoch_batches", &eb);
  /* the sizes the data position counts in (optional: 0 when absent) */
  if (s == VLM_OK && vlm_st_meta(&st, "batch_size")) s = meta_i64(&st, "batch_size", &bs);
  if (s == VLM_OK && vlm_st_meta(&st, "accum_freq")) s = meta_i64(&st, "accum_freq", &accum);
  if (s == VLM_OK && vlm_st_meta(&st, "world")) s = meta_i64(&st, "world", &world);
  if (s == VLM_OK && vlm_st_meta(&st, "total_steps")) s = meta_i64(&st, "total_steps", &total);
  if (s == VLM_OK && vlm_st_meta(&st, "epoch_seq")) s = meta_i64(&st, "epoch_seq", &seq);
  const char *rng = vlm_st_meta(&st, "rng"), *spare = vlm_st_meta(&st, "rng_spare");
  vlm_rng r;
  memset(&r, 0, sizeof r);
  if (s == VLM_OK) {
    int ok = rng && strlen(rng) == 64;
    for (int i = 0; ok && i < 4; i++) {
      char part[17];
      memcpy(part, rng + 16 * i, 16);
      part[16] = 0;
      char *end = NULL;
      r.s[i] = strtoull(part, &end, 16);
      ok = end && !*end;
    }
    unsigned hs = 0, bits = 0;
    if (ok) ok = spare && sscanf(spare, "%u:%x", &hs, &bits) == 2;
    union { uint32_t u; float f; } u = {bits};
    r.has_spare = (int)hs;
    r.spare = u.f;
    if (!ok) s = vlm_error(VLM_ERR_FORMAT, "%s: bad RNG state in the metadata", path);
  }
  if (s == VLM_OK) {
    tr->step = step;
    tr->epoch = epoch;
    tr->epoch_batches = eb;
    tr->epoch_seq = seq;
    tr->loaded_batch_size = bs;
    tr->loaded_accum_freq = accum;
    tr->loaded_world = world > 0 ? world : 1;
    tr->loaded_total_steps = total > 0 ? total : 0;
    tr->rng = r;
    if (had_state) *had_state = 1;
  }
  vlm_st_close(&st);
  return s;
}

/* The first parameter holding a NaN, an infinity or a value of 2^64 or more (read in chunks
 * from the device), or NULL. A diverged update (a huge --lr) must not be saved: 'latest' and
 * the step_N it replaces would then hold no weights worth resuming from. 2^64: such a weight's
 * square overflows fp32 (3.4e38), so the next forward's LayerNorm variances are infinite; no
 * trained CLIP or CoCa weight comes near it. */
static int all_below(const float *p, int64_t n) {
  for (int64_t j = 0; j < n; j++)
    if (!(fabsf(p[j]) < 18446744073709551616.0f)) return 0;   /* NaN fails too */
  return 1;
}

static const char *first_nonfinite(const vlm_trainer *tr) {
  enum { CHUNK = 1 << 20 };   /* device tensors come to the host a few MB at a time */
  float *buf = NULL;
  const char *bad = NULL;
  for (int i = 0; i < tr->n_slots && !bad; i++) {
    const vlm_tensor *t = tr->slots[i].param;
    const int64_t n = vlm_numel(t);
    if (t->device == VLM_CPU) {
      if (!all_below((const float *)t->data, n)) bad = tr->slots[i].name;
      continue;
    }
    if (!buf && !(buf = malloc(CHUNK * sizeof(float)))) break;   /* no memory: not checked, saved */
    for (int64_t at = 0; at < n && !bad; at += CHUNK) {
      const int64_t k = n - at < CHUNK ? n - at : CHUNK;
      vlm_memcpy(buf, VLM_CPU, (const float *)t->data + at, t->device, (size_t)k * sizeof(float));
      if (!all_below(buf, k)) bad = tr->slots[i].name;
    }
  }
  free(buf);
  return bad;
}

vlm_status vlm_trainer_save_named(vlm_trainer *tr, const char *ck_dir, const char *name) {
  char tmp[4096], dst[4096], old[4096];
  const char *bad = first_nonfinite(tr);
  if (bad)
    return vlm_error(VLM_ERR_FORMAT, "the weights hold NaN, infinite or exploded (>= 2^64) values at step %" PRId64 " (%s, ...): the "
                     "training diverged (a smaller --lr?); %s/%s not written, the checkpoints before it kept",
                     tr->step, bad, ck_dir, name);
  vlm_status s = make_dir(ck_dir);
  if (s != VLM_OK) return s;
  snprintf(tmp, sizeof tmp, "%s/.tmp-%s-%ld", ck_dir, name, (long)getpid());
  snprintf(dst, sizeof dst, "%s/%s", ck_dir, name);
  snprintf(old, sizeof old, "%s/.old-%s-%ld", ck_dir, name, (long)getpid());
  rm_tree(tmp);
  s = vlm_trainer_save(tr, tmp);
  if (s != VLM_OK) {
    rm_tree(tmp);
    return s;
  }
  int had = exists(dst);
  if (had && rename(dst, old) != 0) {
    rm_tree(tmp);
    return vlm_error(VLM_ERR_IO, "%s: cannot move the old checkpoint aside: %s", dst, strerror(errno));
  }
  if (rename(tmp, dst) != 0) {
    int e = errno;
    if (had) rename(old, dst);
    rm_tree(tmp);
    return vlm_error(VLM_ERR_IO, "%s: cannot rename %s into place: %s", dst, tmp, strerror(e));
  }
  if (had) rm_tree(old);
  return VLM_OK;
}

vlm_status vlm_trainer_save_latest(vlm_trainer *tr, const char *ck_dir) {
  char name[64], link_tmp[4096], link[4096];
  snprintf(name, sizeof name, "step_%" PRId64, tr->step);
  snprintf(link, sizeof link, "%s/latest", ck_dir);
  char cur[256];
  ssize_t n = readlink(link, cur, sizeof cur - 1);
  if (n > 0) {
    cur[n] = 0;
    if (!strcmp(cur, name)) return VLM_OK;  /* this step is already the latest (never rewrite its target) */
  }
  vlm_status s = vlm_trainer_save_named(tr, ck_dir, name);
  if (s != VLM_OK) return s;
  snprintf(link_tmp, sizeof link_tmp, "%s/.latest-%ld", ck_dir, (long)getpid());
  remove(link_tmp);
  if (symlink(name, link_tmp) != 0)
    return vlm_error(VLM_ERR_IO, "%s: cannot create a symlink: %s", link_tmp, strerror(errno));
  if (rename(link_tmp, link) != 0) {
    int e = errno;
    remove(link_tmp);
    return vlm_error(VLM_ERR_IO, "%s: cannot switch the latest pointer: %s", link, strerror(e));
  }
  /* Older step_* directories and leftovers of interrupted writes go. */
  DIR *d = opendir(ck_dir);
  if (!d) return VLM_OK;
  struct dirent *de;
  while ((de = readdir(d))) {
    const char *n = de->d_name;
    if (!strcmp(n, name)) continue;
    if (!strncmp(n, "step_", 5) || !strncmp(n, ".tmp-", 5) || !strncmp(n, ".old-", 5) || !strncmp(n, ".latest-", 8)) {
      char p[4096];
      snprintf(p, sizeof p, "%s/%s", ck_dir, n);
      rm_tree(p);
    }
  }
  closedir(d);
  return VLM_OK;
}
