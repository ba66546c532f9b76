/* The threaded loader (see datasets.h).
 *
 * Order. The epoch's stream is a sequence of items numbered 0, 1, 2, ... (seq), made by one
 * planner that runs under the loader's lock, so the sequence depends only on (seed, epoch,
 * rank, world), never on the worker count:
 *   - a random-access source (CSV, COCO, folders, shapes) is read in a permutation drawn per
 *     (seed, epoch, source, pass) with Fisher-Yates (vlm_rng_shuffle); rank r takes
 *     permutation entries r, r + world, r + 2 world, ...: floor(n / world) per pass in
 *     training, all of its residue class in evaluation (no shuffle then);
 *   - a WebDataset source shuffles its shard order per (seed, epoch, source, pass), rank r
 *     reads the shards at positions r, r + world, ... of that order, and in training the
 *     samples pass through a shuffle buffer (cfg.shuffle_buffer, 1000) drawn from a stream
 *     seeded by (seed, epoch, rank, source, pass); in evaluation shards are read in order.
 * Mixing ("a::b::c"). In training each next item's source is drawn from a stream seeded by
 * (seed, epoch, rank) with probabilities p_i proportional to
 *     the upsampling factor f_i when cfg.upsampling is given, else
 *     n_i^(1/T) when cfg.temperature T > 0 (n_i = the source's size), else
 *     n_i;
 * a WebDataset source has no known size, so a mix with one needs upsampling factors.
 * A source that runs out restarts with its next pass (a new permutation / shard order).
 * In evaluation the sources are read one after the other, each once.
 * Epoch length: cfg.samples_per_epoch / world good samples when given, else in training the
 * sum of floor(n_i / world) over random-access sources (a mix with a WebDataset source ends
 * when a WebDataset source runs out), in evaluation one pass; drop_last rounds down to whole
 * batches.
 *
 * Work. Workers (pthreads) take the next seq from the planner, read, decode, augment (train:
 * RandomResizedCrop(size, scale 0.9-1, ratio 3/4-4/3) with a vlm_rng stream seeded by (seed,
 * epoch) and the item's place in the global stream, seq x world + rank, so augmentation does not
 * depend on the worker, and a random-access source's crops not on the rank count either; eval: resize
 * shortest + center crop) and tokenize (each worker has its own tokenizer clone) into the
 * slot seq % W of a ring of W slots; a worker never runs more than W items ahead of the
 * consumer, so memory is bounded (W = cfg.queue_samples, default 2 batch_size + 4 workers,
 * capped to 512 MiB of slots). vlm_loader_next takes slots in seq order: a good sample goes
 * into the batch, a bad one is counted, logged (the first 10 distinct ones of the loader's life
 * at warn level, then one line saying that the rest are not named; all at debug level) and
 * skipped, so the batch fills with the next good samples in order. Training cycles its
 * sources, so two limits stop it from filling batches with copies: once every source has
 * been read once in an epoch, fewer good samples than a batch end the epoch with an error
 * (not checked in an epoch resumed past its start, whose skipped items were not read), and
 * max(1000, 2 x the data) bad samples in a row end it (a source without a good sample would
 * otherwise loop forever). With 0 workers the
 * calling thread does the same work inline, giving the same batches bit for bit. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "datasets/source_internal.h"
#include "text/text.h"

#define MAX_SOURCES 32
#define LOG_BAD_FIRST 10

typedef struct {
  int src;
  int64_t index;         /* random access; -1 for a pre-read sample */
  int64_t pass;          /* the source's pass over its data this item comes from */
  int pre;
  vlm_sample s;          /* pre-read (stream) sample, owned */
  int bad;
  vlm_bad_reason why;
  char err[600];
} plan_item;

typedef struct {
  vlm_source *src;
  int stream;
  double weight;
  int64_t n;             /* random access size */
  int64_t *perm;         /* [n] */
  uint8_t *bad_seen;     /* [(n + 7) / 8] bits: samples found bad this epoch (random access) */
  int64_t per_rank, pos, pass;
  /* stream state */
  int64_t *shards;       /* this rank's shard indices, in order */
  int64_t n_shards, shard_pos;
  vlm_shard_reader *reader;
  plan_item *buf;
  int buf_n, buf_cap;
  vlm_rng buf_rng;
  int64_t pass_items;
  int exhausted;
  /* this epoch: good samples of the first pass consumed; set once an item of a later pass is */
  int64_t good0;
  int past0;
} lsrc;

typedef struct {
  int state;             /* 0 free, 1 in work, 2 ready */
  int ok;
  vlm_bad_reason why;
  char err[600];
  float *img;            /* [3, S, S] */
  int32_t *ids;          /* [ctx] */
  int label;
  int64_t group;
  int src;               /* the item's source, index (-1: a stream's) and pass: bad_distinct */
  int64_t index, pass;
} slot;

struct vlm_loader {
  vlm_loader_cfg cfg;
  int nsrc;
  lsrc src[MAX_SOURCES];
  double cum[MAX_SOURCES];
  int S, ctx, B;
  size_t img_n;
  /* epoch */
  int started;
  int64_t epoch, target, delivered, batch_index;
  int64_t next_plan, next_consume, end_seq;
  int cur_src;           /* eval: the source being read */
  vlm_rng mix_rng;
  uint64_t aug_seed;
  int ended_logged;
  /* slots */
  int W;
  slot *slots;
  /* threads */
  int nth;
  pthread_t *th;
  vlm_tokenizer **toks;  /* [nth + 1]: one per worker, the last for inline work */
  pthread_mutex_t mu;
  pthread_cond_t work_cv, ready_cv;
  int quit, active, in_flight;
  /* batch */
  float *b_img;
  int32_t *b_ids;
  int *b_labels;
  int64_t *b_groups;
  vlm_loader_stats st;
  /* the bad samples named at warn level, over the loader's life (a sample bad in every epoch is
   * named once): random access by (source, index), a stream's by its message's hash */
  struct { int src; int64_t index; uint64_t hash; } bad_named[LOG_BAD_FIRST];
  int n_bad_named, bad_hidden_said;
  int check_few;                  /* this epoch started at its beginning: the first pass is seen whole */
  int64_t good_again;             /* this epoch: good samples from a source's second or later pass */
  int64_t bad_run, bad_run_max;   /* consecutive bad samples; the limit that ends the epoch */
};

static uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
static uint64_t key5(uint64_t tag, uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
  return mix64(mix64(mix64(mix64(mix64(tag) ^ a) ^ b) ^ c) ^ d);
}

void vlm_loader_cfg_default(vlm_loader_cfg *c) {
  memset(c, 0, sizeof *c);
  vlm_source_opts_default(&c->src);
  c->batch_size = 64;
  c->workers = 2;
  c->world = 1;
  c->train = 1;
  vlm_preprocess_cfg_default(&c->pre, 224);
  c->decode.max_pixels = VLM_DEFAULT_MAX_PIXELS;
  c->context_length = 77;
  c->drop_last = 1;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void item_clear(plan_item *it) {
  vlm_sample_free(&it->s);
  memset(it, 0, sizeof *it);
}

/* ------------------------------------------------------------------ planner (under the lock) */
static void ra_new_pass(vlm_loader *l, int j) {
  lsrc *s = &l->src[j];
  for (int64_t i = 0; i < s->n; i++) s->perm[i] = i;
  if (l->cfg.train) {
    vlm_rng r;
    vlm_rng_seed_stream(&r, l->cfg.seed, key5(0x7065726d, (uint64_t)l->epoch, (uint64_t)j, (uint64_t)s->pass, 0));
    vlm_rng_shuffle(&r, s->perm, (size_t)s->n);
  }
  s->pos = 0;
}

static void stream_new_pass(vlm_loader *l, int j) {
  lsrc *s = &l->src[j];
  int64_t ns = vlm_source_num_shards(s->src);
  int64_t *order = malloc((size_t)(ns ? ns : 1) * sizeof *order);
  if (!order) { s->n_shards = 0; return; }
  for (int64_t i = 0; i < ns; i++) order[i] = i;
  if (l->cfg.train) {
    vlm_rng r;
    vlm_rng_seed_stream(&r, l->cfg.seed, key5(0x73686172, (uint64_t)l->epoch, (uint64_t)j, (uint64_t)s->pass, 0));
    vlm_rng_shuffle(&r, order, (size_t)ns);
  }
  int64_t k = 0;
  for (int64_t i = l->cfg.rank; i < ns; i += l->cfg.world) s->shards[k++] = order[i];
  free(order);
  s->n_shards = k;
  s->shard_pos = 0;
  if (s->reader) vlm_shard_close(s->reader);
  s->reader = NULL;
  vlm_rng_seed_stream(&s->buf_rng, l->cfg.seed,
                      key5(0x62756666, (uint64_t)l->epoch, (uint64_t)j, (uint64_t)s->pass, (uint64_t)l->cfg.rank));
  s->exhausted = 0;
  s->pass_items = 0;
}

/* One raw item from a stream source in shard order: 1, or 0 at the end of this pass. */
static int stream_read(vlm_loader *l, int j, plan_item *it) {
  lsrc *s = &l->src[j];
  for (;;) {
    if (!s->reader) {
      if (s->shard_pos >= s->n_shards) return 0;
      int64_t sh = s->shards[s->shard_pos++];
      if (vlm_shard_open(s->src, sh, &s->reader)) {
        memset(it, 0, sizeof *it);
        it->src = j;
        it->index = -1;
        it->pass = s->pass;
        it->bad = 1;
        it->why = VLM_BAD_READ;
        snprintf(it->err, sizeof it->err, "%s", vlm_last_error());
        return 1;
      }
    }
    memset(it, 0, sizeof *it);
    it->src = j;
    it->index = -1;
    it->pass = s->pass;
    int k = vlm_shard_next(s->reader, &it->s);
    if (k == 0) {
      vlm_shard_close(s->reader);
      s->reader = NULL;
      continue;
    }
    if (k < 0) {
      it->bad = 1;
      it->why = it->s.fail ? it->s.fail : VLM_BAD_READ;
      snprintf(it->err, sizeof it->err, "%s", vlm_last_error());
      vlm_sample_free(&it->s);
      return 1;
    }
    it->pre = 1;
    return 1;
  }
}

/* Next item of source j: 1, or 0 when the source is done for this epoch. */
static int source_next(vlm_loader *l, int j, plan_item *it) {
  lsrc *s = &l->src[j];
  int cycle = l->cfg.train && (l->cfg.samples_per_epoch > 0 || !s->stream);
  if (!s->stream) {
    if (s->pos >= s->per_rank) {
      if (!cycle || s->per_rank == 0) return 0;
      s->pass++;
      ra_new_pass(l, j);
    }
    memset(it, 0, sizeof *it);
    it->src = j;
    it->index = s->perm[s->pos * l->cfg.world + l->cfg.rank];
    it->pass = s->pass;
    s->pos++;
    return 1;
  }
  for (int attempt = 0; attempt < 2; attempt++) {
    if (!l->cfg.train) {
      if (stream_read(l, j, it)) return 1;
    } else {
      while (!s->exhausted && s->buf_n < s->buf_cap) {
        if (!stream_read(l, j, &s->buf[s->buf_n])) { s->exhausted = 1; break; }
        s->buf_n++;
        s->pass_items++;
      }
      if (s->buf_n > 0) {
        int k = (int)vlm_rng_below(&s->buf_rng, (uint64_t)s->buf_n);
        *it = s->buf[k];
        s->buf[k] = s->buf[--s->buf_n];
        memset(&s->buf[s->buf_n], 0, sizeof s->buf[s->buf_n]);
        return 1;
      }
    }
    if (!cycle || s->pass_items == 0) return 0;
    s->pass++;
    stream_new_pass(l, j);
  }
  return 0;
}

static int plan_next(vlm_loader *l, plan_item *it) {
  if (!l->cfg.train || l->nsrc == 1) {
    while (l->cur_src < l->nsrc) {
      if (source_next(l, l->cur_src, it)) return 1;
      if (l->cfg.train) return 0;
      l->cur_src++;
    }
    return 0;
  }
  double u = vlm_rng_uniform(&l->mix_rng) * l->cum[l->nsrc - 1];
  int j = 0;
  while (j < l->nsrc - 1 && u >= l->cum[j]) j++;
  return source_next(l, j, it);
}

/* ------------------------------------------------------------------ work (outside the lock) */
static void slot_fail(slot *sl, vlm_bad_reason why, const char *msg) {
  sl->ok = 0;
  sl->why = why ? why : VLM_BAD_READ;
  snprintf(sl->err, sizeof sl->err, "%s", msg);
}

static void process(vlm_loader *l, vlm_tokenizer *tok, plan_item *it, int64_t seq, slot *sl) {
  sl->ok = 1;
  sl->why = VLM_BAD_NONE;
  sl->err[0] = 0;
  sl->label = -1;
  sl->group = -1;
  sl->src = it->src;
  sl->index = it->pre || it->bad ? -1 : it->index;
  sl->pass = it->pass;
  if (it->bad) { slot_fail(sl, it->why, it->err); return; }
  vlm_sample smp;
  if (it->pre) {
    smp = it->s;
    memset(&it->s, 0, sizeof it->s);
  } else if (vlm_source_get(l->src[it->src].src, it->index, &smp)) {
    slot_fail(sl, smp.fail, vlm_last_error());
    vlm_sample_free(&smp);
    return;
  }
  vlm_image dec = {0}, crop = {0};
  const vlm_image *im = &smp.pixels;
  if (smp.image_bytes) {
    if (vlm_image_decode_mem(smp.image_bytes, smp.image_len, smp.name, &l->cfg.decode, &dec)) {
      slot_fail(sl, VLM_BAD_DECODE, vlm_last_error());
      goto done;
    }
    im = &dec;
  }
  if (!im->data) { slot_fail(sl, VLM_BAD_READ, "sample without an image"); goto done; }
  if (l->cfg.train) {
    /* the crop's stream: (seed, epoch) and the item's place in the global stream, seq x world
     * + rank, which is where one process would have it (rank r plans the permutation entries
     * r, r + world, ...), so ranks see the crops one process would */
    vlm_rng r;
    vlm_rng_seed_stream(&r, l->aug_seed, (uint64_t)seq * (uint64_t)l->cfg.world + (uint64_t)l->cfg.rank);
    if (vlm_random_resized_crop(im, l->S, 0.9, 1.0, 3.0 / 4.0, 4.0 / 3.0, &r, &crop)) {
      vlm_error_prefix(VLM_ERR_FORMAT, "%s", smp.name);
      slot_fail(sl, VLM_BAD_DECODE, vlm_last_error());
      goto done;
    }
    vlm_image_to_tensor(&crop, &l->cfg.pre, NULL, sl->img);
  } else if (im->mode == VLM_IMG_RGB && im->w == l->S && im->h == l->S) {
    vlm_image_to_tensor(im, &l->cfg.pre, NULL, sl->img);   /* what resize + center crop would give */
  } else if (vlm_preprocess_image(im, &l->cfg.pre, NULL, sl->img)) {
    vlm_error_prefix(VLM_ERR_FORMAT, "%s", smp.name);
    slot_fail(sl, VLM_BAD_DECODE, vlm_last_error());
    goto done;
  }
  if (tok) {
    if (vlm_tokenizer_encode_ctx(tok, smp.caption, strlen(smp.caption), l->ctx, l->cfg.pad_id, sl->ids) < 0) {
      slot_fail(sl, VLM_BAD_CAPTION, "out of memory tokenizing");
      goto done;
    }
  } else {
    for (int i = 0; i < l->ctx; i++) sl->ids[i] = l->cfg.pad_id;
  }
  sl->label = smp.label;
  /* several sources: the source number in bits 48.. keeps groups of different sources apart */
  sl->group = l->nsrc > 1 ? smp.group + ((int64_t)it->src << 48) : smp.group;
done:
  vlm_image_free(&dec);
  vlm_image_free(&crop);
  vlm_sample_free(&smp);
}

/* Under the lock: plan the next seq into its slot. 1: planned (it filled), 0: the stream ended. */
static int take_job(vlm_loader *l, plan_item *it, int64_t *seq) {
  if (!plan_next(l, it)) {
    l->end_seq = l->next_plan;
    pthread_cond_broadcast(&l->ready_cv);
    return 0;
  }
  *seq = l->next_plan++;
  if (l->next_plan - l->next_consume > l->st.ahead_max) l->st.ahead_max = l->next_plan - l->next_consume;
  l->slots[*seq % l->W].state = 1;
  l->in_flight++;
  return 1;
}

static void *worker_main(void *arg) {
  void **a = arg;
  vlm_loader *l = a[0];
  vlm_tokenizer *tok = a[1];
  free(a);
  pthread_mutex_lock(&l->mu);
  while (!l->quit) {
    if (l->active && l->end_seq < 0 && l->next_plan < l->next_consume + l->W) {
      plan_item it;
      int64_t seq;
      if (!take_job(l, &it, &seq)) continue;
      slot *sl = &l->slots[seq % l->W];
      pthread_mutex_unlock(&l->mu);
      process(l, tok, &it, seq, sl);
      item_clear(&it);
      pthread_mutex_lock(&l->mu);
      sl->state = 2;
      l->in_flight--;
      pthread_cond_broadcast(&l->ready_cv);
      if (l->in_flight == 0) pthread_cond_broadcast(&l->work_cv);
    } else {
      pthread_cond_wait(&l->work_cv, &l->mu);
    }
  }
  pthread_mutex_unlock(&l->mu);
  return NULL;
}

/* ------------------------------------------------------------------ epochs */
static void stop_work(vlm_loader *l) {
  pthread_mutex_lock(&l->mu);
  l->active = 0;
  while (l->in_flight > 0) pthread_cond_wait(&l->work_cv, &l->mu);
  pthread_mutex_unlock(&l->mu);
}

static void reset_sources(vlm_loader *l) {
  for (int j = 0; j < l->nsrc; j++) {
    lsrc *s = &l->src[j];
    s->pass = 0;
    if (s->stream) {
      for (int k = 0; k < s->buf_n; k++) item_clear(&s->buf[k]);
      s->buf_n = 0;
      stream_new_pass(l, j);
    } else {
      ra_new_pass(l, j);
    }
  }
}

/* This rank's samples in an epoch before whole batches are taken; -1 when unknown. */
static int64_t epoch_samples(const vlm_loader *l) {
  const vlm_loader_cfg *c = &l->cfg;
  int64_t n = 0;
  int any_stream = 0;
  for (int j = 0; j < l->nsrc; j++) {
    if (l->src[j].stream) any_stream = 1;
    else n += l->src[j].per_rank;
  }
  if (c->samples_per_epoch > 0) n = c->samples_per_epoch / c->world;
  else if (any_stream) n = -1;
  return n;
}

static int64_t epoch_target(const vlm_loader *l) {
  int64_t n = epoch_samples(l);
  if (n >= 0 && l->cfg.drop_last) n = n / l->B * l->B;
  return n;
}

vlm_status vlm_loader_start_epoch_at(vlm_loader *l, int64_t epoch, int64_t batch, int64_t seq) {
  if (epoch < 0 || batch < 0 || seq < 0) return vlm_error(VLM_ERR_ARG, "loader: negative epoch / batch / position");
  stop_work(l);
  pthread_mutex_lock(&l->mu);
  for (int i = 0; i < l->W; i++) l->slots[i].state = 0;
  l->epoch = epoch;
  l->started = 1;
  l->ended_logged = 0;
  l->cur_src = 0;
  l->next_plan = l->next_consume = 0;
  l->end_seq = -1;
  l->target = epoch_target(l);
  l->delivered = batch * l->B;
  l->batch_index = batch;
  vlm_rng_seed_stream(&l->mix_rng, l->cfg.seed, key5(0x6d6978, (uint64_t)epoch, (uint64_t)l->cfg.rank, 0, 0));
  l->aug_seed = key5(0x617567, l->cfg.seed, (uint64_t)epoch, 0, 0);   /* the same on every rank */
  reset_sources(l);
  memset(&l->st, 0, sizeof l->st);
  for (int j = 0; j < l->nsrc; j++)
    if (l->src[j].bad_seen) memset(l->src[j].bad_seen, 0, (size_t)(l->src[j].n + 7) / 8);
  for (int j = 0; j < l->nsrc; j++) {
    l->src[j].good0 = 0;
    l->src[j].past0 = 0;
  }
  l->check_few = seq == 0;   /* a resumed epoch did not see its skipped items' outcome */
  l->good_again = 0;
  l->bad_run = 0;
  /* skip: replay the planner without doing the work */
  for (int64_t k = 0; k < seq; k++) {
    plan_item it;
    if (!plan_next(l, &it)) { l->end_seq = l->next_plan; break; }
    item_clear(&it);
    l->next_plan++;
  }
  l->next_consume = l->next_plan;
  l->active = 1;
  pthread_cond_broadcast(&l->work_cv);
  pthread_mutex_unlock(&l->mu);
  return VLM_OK;
}

vlm_status vlm_loader_start_epoch(vlm_loader *l, int64_t epoch, int64_t skip_batches) {
  if (skip_batches < 0) return vlm_error(VLM_ERR_ARG, "loader: negative skip_batches");
  return vlm_loader_start_epoch_at(l, epoch, skip_batches, skip_batches * l->B);
}

static void log_epoch_end(vlm_loader *l) {
  if (l->ended_logged) return;
  l->ended_logged = 1;
  vlm_loader_stats *s = &l->st;
  char distinct[64] = "", again[80] = "";
  if (s->bad) snprintf(distinct, sizeof distinct, "%lld distinct; ", (long long)s->bad_distinct);
  /* the count says how many were read again (bad ones replaced from the next pass) */
  if (l->good_again) snprintf(again, sizeof again, " (%lld of them read again, in a further pass)", (long long)l->good_again);
  /* evaluation loaders run often: their clean epochs are logged at debug level */
  vlm_log(s->bad ? VLM_LOG_WARN : l->cfg.train ? VLM_LOG_INFO : VLM_LOG_DEBUG,
          "loader: epoch %lld done: %lld samples%s, %lld bad skipped (%sread %lld, decode %lld, caption %lld), "
          "waited %.2f s%s%s",
          (long long)l->epoch, (long long)s->samples, again, (long long)s->bad, distinct, (long long)s->bad_read,
          (long long)s->bad_decode, (long long)s->bad_caption, s->wait_s, s->bad ? "; last: " : "",
          s->bad ? s->last_error : "");
}

/* The slot for next_consume, ready; NULL at the end of the stream. Lock held. */
static slot *next_ready(vlm_loader *l) {
  for (;;) {
    if (l->end_seq >= 0 && l->next_consume >= l->end_seq) return NULL;
    slot *sl = &l->slots[l->next_consume % l->W];
    if (l->next_consume < l->next_plan && sl->state == 2) return sl;
    if (l->nth == 0) {
      /* inline: plan and do the next item here */
      plan_item it;
      int64_t seq;
      double t0 = now_s();
      if (!take_job(l, &it, &seq)) continue;
      process(l, l->toks[0], &it, seq, &l->slots[seq % l->W]);
      l->st.wait_s += now_s() - t0;   /* inline work is time the caller waits for data */
      item_clear(&it);
      l->slots[seq % l->W].state = 2;
      l->in_flight--;
      continue;
    }
    double t0 = now_s();
    pthread_cond_broadcast(&l->work_cv);
    pthread_cond_wait(&l->ready_cv, &l->mu);
    l->st.wait_s += now_s() - t0;
  }
}

int vlm_loader_queue_size(const vlm_loader *l) { return l->W; }

/* A bad sample's message: the first LOG_BAD_FIRST distinct ones at warn level, then one line
 * saying that the others are not named (all of them at debug level). Lock held. */
static void log_bad(vlm_loader *l, const slot *sl) {
  uint64_t h = 0;
  if (sl->index < 0) {   /* a stream's sample: known by its message */
    vlm_hash hs;
    vlm_hash_init(&hs);
    vlm_hash_bytes(&hs, sl->err, strlen(sl->err));
    h = vlm_hash_final(&hs);
  }
  for (int k = 0; k < l->n_bad_named; k++)
    if (l->bad_named[k].src == sl->src && l->bad_named[k].index == sl->index && l->bad_named[k].hash == h) {
      vlm_log(VLM_LOG_DEBUG, "loader: skipped a bad sample (again): %s", sl->err);
      return;
    }
  if (l->n_bad_named < LOG_BAD_FIRST) {
    l->bad_named[l->n_bad_named].src = sl->src;
    l->bad_named[l->n_bad_named].index = sl->index;
    l->bad_named[l->n_bad_named].hash = h;
    l->n_bad_named++;
    vlm_log(VLM_LOG_WARN, "loader: skipped a bad sample: %s", sl->err);
    return;
  }
  if (!l->bad_hidden_said) {
    l->bad_hidden_said = 1;
    vlm_log(VLM_LOG_WARN, "loader: further bad samples are not named (%d were; VLM_LOG=debug names them all; "
            "the epoch's summary counts them)", LOG_BAD_FIRST);
  }
  vlm_log(VLM_LOG_DEBUG, "loader: skipped a bad sample: %s", sl->err);
}

/* Training cycles its sources, so when the data holds fewer good samples than a batch, the
 * batches would be filled with copies of the same pairs (and counted as samples). Checked
 * when every source has been read once in this epoch (an item of a later pass comes up):
 * 1 when the good ones of those first passes are fewer than a batch (logged). Lock held. */
static int too_few_good(vlm_loader *l, const slot *sl) {
  lsrc *so = &l->src[sl->src];
  if (!l->cfg.train || !l->check_few || sl->pass == 0 || so->past0) return 0;
  so->past0 = 1;
  int64_t good = 0;
  for (int j = 0; j < l->nsrc; j++) {
    if (!l->src[j].past0) return 0;
    good += l->src[j].good0;
  }
  if (good >= l->B) return 0;
  char rank[64] = "";
  if (l->cfg.world > 1) snprintf(rank, sizeof rank, " (rank %d's share of %d)", l->cfg.rank, l->cfg.world);
  vlm_log(VLM_LOG_ERROR, "loader: %s%s holds only %lld good sample%s (%lld bad), fewer than one batch of %d: ending the "
          "epoch (its batches would repeat the same pairs)", l->nsrc == 1 ? vlm_source_spec(l->src[0].src) : "the data",
          rank, (long long)good, good == 1 ? "" : "s", (long long)l->st.bad_distinct, l->B);
  return 1;
}

int vlm_loader_next(vlm_loader *l, vlm_batch *b) {
  memset(b, 0, sizeof *b);
  if (!l->started) vlm_loader_start_epoch(l, 0, 0);
  int n = 0;
  pthread_mutex_lock(&l->mu);
  while (n < l->B) {
    if (l->target >= 0 && l->delivered >= l->target) break;
    slot *sl = next_ready(l);
    if (!sl) break;
    if (too_few_good(l, sl)) {
      l->end_seq = l->next_consume;   /* this item and the ones planned after it are not taken */
      l->target = l->delivered;
      break;
    }
    if (sl->ok) {
      l->bad_run = 0;
      if (sl->pass == 0) l->src[sl->src].good0++;
      else l->good_again++;
      memcpy(l->b_img + (size_t)n * l->img_n, sl->img, l->img_n * sizeof(float));
      memcpy(l->b_ids + (size_t)n * l->ctx, sl->ids, (size_t)l->ctx * sizeof(int32_t));
      l->b_labels[n] = sl->label;
      l->b_groups[n] = sl->group;
      n++;
      l->delivered++;
      l->st.samples++;
    } else {
      l->st.bad++;
      lsrc *so = &l->src[sl->src];
      if (sl->index >= 0 && so->bad_seen) {   /* random access: each sample counted once */
        uint8_t bit = (uint8_t)(1u << (sl->index & 7));
        if (!(so->bad_seen[sl->index >> 3] & bit)) {
          so->bad_seen[sl->index >> 3] |= bit;
          l->st.bad_distinct++;
        }
      } else if (sl->pass == 0) {           /* a stream: its first pass reads each sample once */
        l->st.bad_distinct++;
      }
      if (sl->why == VLM_BAD_DECODE) l->st.bad_decode++;
      else if (sl->why == VLM_BAD_CAPTION) l->st.bad_caption++;
      else l->st.bad_read++;
      snprintf(l->st.last_error, sizeof l->st.last_error, "%.500s", sl->err);
      log_bad(l, sl);
      if (++l->bad_run >= l->bad_run_max) {
        /* training cycles its sources: a source with no good sample would loop forever */
        vlm_log(VLM_LOG_ERROR, "loader: %lld bad samples in a row (%lld distinct), ending the epoch (last: %s)",
                (long long)l->bad_run, (long long)l->st.bad_distinct, l->st.last_error);
        l->end_seq = l->next_consume + 1;
        l->target = l->delivered;
      }
    }
    sl->state = 0;
    l->next_consume++;
    pthread_cond_broadcast(&l->work_cv);
  }
  int out = n > 0 && !(l->cfg.drop_last && n < l->B);
  if (!out) {
    log_epoch_end(l);
  } else {
    b->images = l->b_img;
    b->ids = l->b_ids;
    b->labels = l->b_labels;
    b->groups = l->b_groups;
    b->n = n;
    b->index = l->batch_index++;
    b->seq_end = l->next_consume;
  }
  pthread_mutex_unlock(&l->mu);
  return out;
}

/* ------------------------------------------------------------------ open / close */
void vlm_loader_stats_get(const vlm_loader *l, vlm_loader_stats *st) {
  pthread_mutex_lock((pthread_mutex_t *)&l->mu);
  *st = l->st;
  pthread_mutex_unlock((pthread_mutex_t *)&l->mu);
}

int64_t vlm_loader_samples_per_epoch(const vlm_loader *l) { return epoch_samples(l); }

int64_t vlm_loader_batches_per_epoch(const vlm_loader *l) {
  int64_t t = epoch_target(l);
  if (t < 0) return -1;
  return l->cfg.drop_last ? t / l->B : (t + l->B - 1) / l->B;
}

const char *const *vlm_loader_classnames(const vlm_loader *l, int *n) {
  for (int j = 0; j < l->nsrc; j++) {
    const char *const *c = vlm_source_classnames(l->src[j].src, n);
    if (c) return c;
  }
  if (n) *n = 0;
  return NULL;
}

void vlm_loader_close(vlm_loader *l) {
  if (!l) return;
  if (l->th) {
    pthread_mutex_lock(&l->mu);
    l->quit = 1;
    pthread_cond_broadcast(&l->work_cv);
    pthread_mutex_unlock(&l->mu);
    for (int i = 0; i < l->nth; i++) pthread_join(l->th[i], NULL);
    free(l->th);
  }
  pthread_mutex_destroy(&l->mu);
  pthread_cond_destroy(&l->work_cv);
  pthread_cond_destroy(&l->ready_cv);
  for (int j = 0; j < l->nsrc; j++) {
    lsrc *s = &l->src[j];
    for (int k = 0; k < s->buf_n; k++) item_clear(&s->buf[k]);
    free(s->buf);
    free(s->perm);
    free(s->bad_seen);
    free(s->shards);
    if (s->reader) vlm_shard_close(s->reader);
    vlm_source_close(s->src);
  }
  if (l->toks)
    for (int i = 0; i <= l->nth; i++) vlm_tokenizer_free(l->toks[i]);
  free(l->toks);
  if (l->slots)
    for (int i = 0; i < l->W; i++) { free(l->slots[i].img); free(l->slots[i].ids); }
  free(l->slots);
  free(l->b_img);
  free(l->b_ids);
  free(l->b_labels);
  free(l->b_groups);
  free(l);
}

vlm_status vlm_loader_open(vlm_loader **out, const vlm_loader_cfg *c) {
  *out = NULL;
  if (!c->data || !c->data[0]) return vlm_error(VLM_ERR_ARG, "loader: no data given");
  if (c->batch_size <= 0 || c->workers < 0 || c->workers > 256 || c->world <= 0 || c->rank < 0 || c->rank >= c->world ||
      c->context_length <= 0 || c->pre.size <= 0 || c->pre.size > 4096)
    return vlm_error(VLM_ERR_ARG, "loader: bad settings (batch %d, workers %d, rank %d of %d, context %d, size %d)",
                     c->batch_size, c->workers, c->rank, c->world, c->context_length, c->pre.size);
  vlm_loader *l = calloc(1, sizeof *l);
  if (!l) return vlm_error(VLM_ERR_OOM, "out of memory");
  l->cfg = *c;
  l->cfg.data = NULL;
  l->cfg.upsampling = NULL;
  l->cfg.tokenizer = NULL;
  l->B = c->batch_size;
  l->S = c->pre.size;
  l->ctx = c->context_length;
  l->img_n = (size_t)3 * l->S * l->S;
  pthread_mutex_init(&l->mu, NULL);
  pthread_cond_init(&l->work_cv, NULL);
  pthread_cond_init(&l->ready_cv, NULL);
  vlm_status st = VLM_OK;
  /* sources */
  char *spec = strdup(c->data);
  if (!spec) { vlm_loader_close(l); return vlm_error(VLM_ERR_OOM, "out of memory"); }
  vlm_source_opts so = c->src;
  if (so.shapes_size <= 0) so.shapes_size = l->S;
  if (c->train) so.csv_group_images = 0;   /* groups serve evaluation only */
  for (char *p = spec; p;) {
    char *sep = strstr(p, "::");
    if (sep) *sep = 0;
    if (l->nsrc == MAX_SOURCES) { st = vlm_error(VLM_ERR_ARG, "loader: more than %d sources", MAX_SOURCES); break; }
    lsrc *s = &l->src[l->nsrc];
    if ((st = vlm_source_open(&s->src, p, &so))) break;
    l->nsrc++;
    s->stream = vlm_source_is_stream(s->src);
    if (!s->stream) {
      s->n = vlm_source_size(s->src);
      if (s->n <= 0) { st = vlm_error(VLM_ERR_ARG, "%s: no samples", p); break; }
      s->per_rank = c->train ? s->n / c->world : (s->n - c->rank + c->world - 1) / c->world;
      if (s->per_rank <= 0 && c->train) {
        st = s->n == 0 ? vlm_error(VLM_ERR_ARG, "%s: no samples", p)
                       : vlm_error(VLM_ERR_ARG, "%s: %lld samples, fewer than the %d ranks", p, (long long)s->n, c->world);
        break;
      }
      s->perm = malloc((size_t)(s->n ? s->n : 1) * sizeof *s->perm);
      s->bad_seen = calloc((size_t)(s->n + 7) / 8, 1);
      if (!s->perm || !s->bad_seen) { st = vlm_error(VLM_ERR_OOM, "%s: out of memory for the permutation", p); break; }
    } else {
      int64_t ns = vlm_source_num_shards(s->src);
      if (ns < c->world)
        vlm_log(VLM_LOG_WARN, "%s: %lld shards for %d ranks: some ranks get none", p, (long long)ns, c->world);
      s->shards = malloc((size_t)(ns ? ns : 1) * sizeof *s->shards);
      s->buf_cap = c->shuffle_buffer > 0 ? c->shuffle_buffer : 1000;
      s->buf = calloc((size_t)s->buf_cap, sizeof *s->buf);
      if (!s->shards || !s->buf) { st = vlm_error(VLM_ERR_OOM, "out of memory"); break; }
    }
    p = sep ? sep + 2 : NULL;
  }
  free(spec);
  if (st) { vlm_loader_close(l); return st; }
  /* mixing weights (see the top of this file) */
  if (c->upsampling && c->n_upsampling != l->nsrc) {
    st = vlm_error(VLM_ERR_ARG, "loader: %d source%s but %d upsampling factor%s (--train-data-upsampling-factors)",
                   l->nsrc, l->nsrc == 1 ? "" : "s", c->n_upsampling, c->n_upsampling == 1 ? "" : "s");
    vlm_loader_close(l);   /* after the message: it reads l */
    return st;
  }
  double acc = 0;
  for (int j = 0; j < l->nsrc; j++) {
    double w;
    if (c->upsampling) w = c->upsampling[j];
    else if (l->src[j].stream) {
      if (l->nsrc > 1 && c->train) {
        vlm_loader_close(l);
        return vlm_error(VLM_ERR_ARG, "loader: mixing a WebDataset source (size unknown) needs upsampling factors "
                         "(--train-data-upsampling-factors)");
      }
      w = 1;
    } else if (c->temperature > 0) w = pow((double)l->src[j].n, 1.0 / c->temperature);
    else w = (double)l->src[j].n;
    if (!(w >= 0) || !isfinite(w)) {
      vlm_loader_close(l);
      return vlm_error(VLM_ERR_ARG, "loader: bad mixing weight %g for source %d", w, j + 1);
    }
    acc += w;
    l->cum[j] = acc;
  }
  if (!(acc > 0)) {
    vlm_loader_close(l);
    return vlm_error(VLM_ERR_ARG, "loader: the mixing weights sum to 0%s",
                     c->upsampling ? " (all upsampling factors are 0)" : "");
  }
  /* consecutive bad samples that end an epoch: twice the data, at least 1000 */
  int64_t known = 0;
  for (int j = 0; j < l->nsrc; j++) known += l->src[j].stream ? 5000 : l->src[j].n;
  l->bad_run_max = 2 * known > 1000 ? 2 * known : 1000;
  /* slots: memory bound */
  size_t slot_bytes = l->img_n * sizeof(float) + (size_t)l->ctx * sizeof(int32_t);
  int64_t W = c->queue_samples > 0 ? c->queue_samples : 2 * (int64_t)l->B + 4 * c->workers;
  if (c->queue_samples <= 0) {
    int64_t cap = (int64_t)(((size_t)512 << 20) / slot_bytes);
    if (W > cap) W = cap;
    if (W < 2 * c->workers + 2) W = 2 * c->workers + 2;
  }
  if (W < 1) W = 1;
  l->W = (int)W;
  l->slots = calloc((size_t)l->W, sizeof *l->slots);
  l->b_img = malloc((size_t)l->B * l->img_n * sizeof(float));
  l->b_ids = malloc((size_t)l->B * l->ctx * sizeof(int32_t));
  l->b_labels = malloc((size_t)l->B * sizeof(int));
  l->b_groups = malloc((size_t)l->B * sizeof(int64_t));
  if (!l->slots || !l->b_img || !l->b_ids || !l->b_labels || !l->b_groups) {
    vlm_loader_close(l);
    return vlm_error(VLM_ERR_OOM, "loader: out of memory for the queue (%d samples)", (int)W);
  }
  for (int i = 0; i < l->W; i++) {
    l->slots[i].img = malloc(l->img_n * sizeof(float));
    l->slots[i].ids = malloc((size_t)l->ctx * sizeof(int32_t));
    if (!l->slots[i].img || !l->slots[i].ids) {
      vlm_loader_close(l);
      return vlm_error(VLM_ERR_OOM, "loader: out of memory for the queue");
    }
  }
  /* tokenizers and threads */
  l->toks = calloc((size_t)c->workers + 1, sizeof *l->toks);
  if (!l->toks) { vlm_loader_close(l); return vlm_error(VLM_ERR_OOM, "out of memory"); }
  l->nth = c->workers;
  if (c->tokenizer)
    for (int i = 0; i <= c->workers; i++)
      if (!(l->toks[i] = vlm_tokenizer_clone(c->tokenizer))) {
        vlm_loader_close(l);
        return vlm_error(VLM_ERR_OOM, "out of memory cloning the tokenizer");
      }
  l->end_seq = -1;
  if (c->workers > 0) {
    l->th = calloc((size_t)c->workers, sizeof *l->th);
    if (!l->th) { l->nth = 0; vlm_loader_close(l); return vlm_error(VLM_ERR_OOM, "out of memory"); }
    for (int i = 0; i < c->workers; i++) {
      void **a = malloc(2 * sizeof *a);
      if (a) { a[0] = l; a[1] = l->toks[i]; }
      if (!a || pthread_create(&l->th[i], NULL, worker_main, a) != 0) {
        free(a);
        l->nth = i;
        vlm_loader_close(l);
        return vlm_error(VLM_ERR_INTERNAL, "loader: cannot start worker thread %d", i);
      }
    }
  }
  *out = l;
  return VLM_OK;
}
