/* The threaded loader: the same batches (bit-identical images, ids, labels, groups) with 0,
 * 1, 2 and 3 workers, in training (shuffle + RandomResizedCrop) and evaluation, on the shapes
 * set, a CSV with bad rows and WebDataset shards; epochs differ; an epoch is a permutation;
 * skip_batches / start_epoch_at resume the same stream; ranks partition samples and shards;
 * mixing weights (upsampling factors, temperature, sizes) are honoured statistically; bad
 * samples are skipped, counted per reason and named (10 distinct ones, then a line saying the
 * rest are not); fewer good samples than a batch end a training epoch instead of filling
 * batches with copies; the queue bounds the work ahead. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "datasets/datasets.h"
#include "gradcheck.h"
#include "text/text.h"

static char g_dir[256];
static vlm_tokenizer *g_tok;

static const char *P(const char *name) { return vt_path(g_dir, name); }

static void write_png(const char *path, int w, int h, int v) {
  uint8_t *rgb = malloc((size_t)w * h * 3), *row = rgb;
  for (int y = 0; y < h; y++, row += (size_t)w * 3)
    for (int x = 0; x < w; x++) {
      row[x * 3] = (uint8_t)(v * 40 + x * 3);
      row[x * 3 + 1] = (uint8_t)(v * 70 + y * 5);
      row[x * 3 + 2] = (uint8_t)(v * 13 + x * y);
    }
  size_t n;
  uint8_t *png = vt_png_rgb(w, h, rgb, &n);
  vt_write_file(path, png, n);
  free(png);
  free(rgb);
}

/* Every batch of one epoch, concatenated. */
typedef struct {
  float *img;
  int32_t *ids;
  int *labels;
  int64_t *groups;
  int64_t n, nb;
  int sizes[4096];
  int64_t seq_end[4096];
  vlm_loader_stats st;
} run;

static void run_free(run *r) {
  free(r->img);
  free(r->ids);
  free(r->labels);
  free(r->groups);
  memset(r, 0, sizeof *r);
}

static void base_cfg(vlm_loader_cfg *c, const char *data, int train, int size, int batch) {
  vlm_loader_cfg_default(c);
  c->data = data;
  c->train = train;
  c->drop_last = train;
  vlm_preprocess_cfg_default(&c->pre, size);
  c->batch_size = batch;
  c->context_length = 16;
  c->tokenizer = g_tok;
  c->seed = 42;
}

static int collect(vlm_loader_cfg *c, int64_t epoch, int64_t skip, run *r) {
  memset(r, 0, sizeof *r);
  vlm_loader *l;
  if (vlm_loader_open(&l, c)) { printf("  open: %s\n", vlm_last_error()); return 0; }
  vlm_loader_start_epoch(l, epoch, skip);
  size_t in = (size_t)3 * c->pre.size * c->pre.size;
  vlm_batch b;
  while (vlm_loader_next(l, &b)) {
    r->img = realloc(r->img, (size_t)(r->n + b.n) * in * sizeof(float));
    r->ids = realloc(r->ids, (size_t)(r->n + b.n) * c->context_length * sizeof(int32_t));
    r->labels = realloc(r->labels, (size_t)(r->n + b.n) * sizeof(int));
    r->groups = realloc(r->groups, (size_t)(r->n + b.n) * sizeof(int64_t));
    memcpy(r->img + r->n * in, b.images, (size_t)b.n * in * sizeof(float));
    memcpy(r->ids + r->n * c->context_length, b.ids, (size_t)b.n * c->context_length * sizeof(int32_t));
    memcpy(r->labels + r->n, b.labels, (size_t)b.n * sizeof(int));
    memcpy(r->groups + r->n, b.groups, (size_t)b.n * sizeof(int64_t));
    if (r->nb < 4096) { r->sizes[r->nb] = b.n; r->seq_end[r->nb] = b.seq_end; }
    r->n += b.n;
    r->nb++;
  }
  vlm_loader_stats_get(l, &r->st);
  vlm_loader_close(l);
  return 1;
}

static int same_run(const run *a, const run *b, int size, int ctx) {
  size_t in = (size_t)3 * size * size;
  return a->n == b->n && a->nb == b->nb && !memcmp(a->img, b->img, (size_t)a->n * in * sizeof(float)) &&
         !memcmp(a->ids, b->ids, (size_t)a->n * ctx * sizeof(int32_t)) &&
         !memcmp(a->labels, b->labels, (size_t)a->n * sizeof(int)) &&
         !memcmp(a->groups, b->groups, (size_t)a->n * sizeof(int64_t));
}

static int cmp64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

/* ------------------------------------------------------------------ */
static void test_workers_invariance(void) {
  const char *modes[2] = {"eval", "train"};
  for (int train = 0; train <= 1; train++) {
    vlm_loader_cfg c;
    base_cfg(&c, train ? "shapes:200" : "shapes:val:90", train, 48, 16);
    run ref;
    c.workers = 0;
    if (!collect(&c, 0, 0, &ref)) { CHECK(0, "collect"); return; }
    CHECK(ref.n == (train ? 192 : 90), "%s: %lld samples", modes[train], (long long)ref.n);
    for (int w = 1; w <= 3; w++) {
      run r;
      c.workers = w;
      collect(&c, 0, 0, &r);
      CHECK(same_run(&ref, &r, 48, 16), "%s: %d workers give the batches of 0 workers", modes[train], w);
      run_free(&r);
    }
    /* eval order is the source order; train is shuffled; an epoch is a permutation */
    int64_t *g = malloc((size_t)ref.n * sizeof *g);
    memcpy(g, ref.groups, (size_t)ref.n * sizeof *g);
    int inorder = 1;
    for (int64_t i = 0; i < ref.n; i++) inorder &= g[i] == i;
    CHECK(train ? !inorder : inorder, "%s order", modes[train]);
    qsort(g, (size_t)ref.n, sizeof *g, cmp64);
    int distinct = 1;
    for (int64_t i = 1; i < ref.n; i++) distinct &= g[i] != g[i - 1];
    CHECK(distinct, "%s: no sample twice in an epoch", modes[train]);
    free(g);
    if (train) {
      run e1;
      c.workers = 2;
      collect(&c, 1, 0, &e1);
      CHECK(e1.n == ref.n && memcmp(e1.groups, ref.groups, (size_t)ref.n * sizeof(int64_t)) != 0, "epoch 1 order differs");
      run_free(&e1);
      /* resume: skip 3 batches -> batches 3.. of the full epoch */
      run sk;
      collect(&c, 0, 3, &sk);
      CHECK(sk.n == ref.n - 3 * 16 && !memcmp(sk.img, ref.img + (size_t)3 * 16 * 3 * 48 * 48, (size_t)sk.n * 3 * 48 * 48 * 4) &&
                !memcmp(sk.groups, ref.groups + 48, (size_t)sk.n * 8),
            "skip_batches resumes the same stream");
      run_free(&sk);
      vlm_loader_cfg c2 = c;
      c2.seed = 43;
      run other;
      collect(&c2, 0, 0, &other);
      CHECK(memcmp(other.groups, ref.groups, (size_t)ref.n * 8) != 0, "another seed, another order");
      run_free(&other);
      /* images are augmented: the train image of a sample differs from its eval image */
    } else {
      vlm_loader *l;
      CHECK(vlm_loader_open(&l, &c) == VLM_OK, "open");
      CHECK(vlm_loader_batches_per_epoch(l) == 6, "eval: 90 / 16 -> 6 batches (last short)");
      int nc;
      CHECK(vlm_loader_classnames(l, &nc) && nc == VLM_SHAPES_CLASSES, "classnames through the loader");
      vlm_loader_close(l);
      CHECK(ref.nb == 6 && ref.sizes[5] == 90 - 5 * 16, "last eval batch short: %d", ref.sizes[5]);
      for (int64_t i = 0; i < ref.n; i++)
        if (ref.labels[i] < 0 || ref.ids[i * 16] != vlm_tokenizer_sot(g_tok)) { CHECK(0, "labels / sot"); break; }
    }
    run_free(&ref);
  }
}

static void test_ranks(void) {
  /* train: each rank floor(n / world) distinct samples, disjoint across ranks */
  int64_t all[300];
  int64_t na = 0;
  for (int rank = 0; rank < 3; rank++) {
    vlm_loader_cfg c;
    base_cfg(&c, "shapes:100", 1, 16, 11);
    c.drop_last = 0;
    c.rank = rank;
    c.world = 3;
    c.workers = 1;
    run r;
    collect(&c, 0, 0, &r);
    CHECK(r.n == 33, "rank %d: 33 samples, got %lld", rank, (long long)r.n);
    for (int64_t i = 0; i < r.n && na < 300; i++) all[na++] = r.groups[i];
    run_free(&r);
  }
  qsort(all, (size_t)na, sizeof *all, cmp64);
  int distinct = 1;
  for (int64_t i = 1; i < na; i++) distinct &= all[i] != all[i - 1];
  CHECK(na == 99 && distinct, "ranks partition the permutation");
  /* eval: ranks cover everything once */
  na = 0;
  for (int rank = 0; rank < 3; rank++) {
    vlm_loader_cfg c;
    base_cfg(&c, "shapes:val:100", 0, 16, 8);
    c.rank = rank;
    c.world = 3;
    c.workers = 0;
    run r;
    collect(&c, 0, 0, &r);
    for (int64_t i = 0; i < r.n && na < 300; i++) all[na++] = r.groups[i];
    run_free(&r);
  }
  qsort(all, (size_t)na, sizeof *all, cmp64);
  int cover = na == 100;
  for (int64_t i = 0; cover && i < na; i++) cover = all[i] == i;
  CHECK(cover, "eval ranks cover every sample once (%lld)", (long long)na);
}

static void test_bad_samples(void) {
  mkdir(P("img"), 0777);
  for (int i = 0; i < 5; i++) {
    char nm[64];
    snprintf(nm, sizeof nm, "img/%d.png", i);
    write_png(P(nm), 20 + i, 17 + 2 * i, i);
  }
  vt_write_file(P("img/corrupt.png"), "\x89PNG\r\n\x1a\nxxxxxxxxxxxxxxxxxxxxxxxx", 32);
  FILE *f = fopen(P("data.tsv"), "wb");
  fprintf(f, "filepath\ttitle\n");
  int good = 0, bad_read = 0, bad_dec = 0, bad_cap = 0;
  for (int i = 0; i < 60; i++) {
    if (i % 10 == 3) { fprintf(f, "img/missing%d.png\tno file\n", i); bad_read++; }
    else if (i % 10 == 6) { fprintf(f, "img/corrupt.png\tcorrupt\n"); bad_dec++; }
    else if (i % 10 == 8) { fprintf(f, "img/1.png\t \n"); bad_cap++; }
    else { fprintf(f, "img/%d.png\tcaption number %d\n", i % 5, i); good++; }
  }
  fclose(f);
  for (int train = 0; train <= 1; train++) {
    vlm_loader_cfg c;
    base_cfg(&c, P("data.tsv"), train, 24, 5);
    c.drop_last = 0;
    c.workers = 0;
    run ref;
    collect(&c, 0, 0, &ref);
    /* eval: one pass, the good ones; train: an epoch is 60 good samples, bad ones replaced
     * from the next pass */
    CHECK(ref.n == (train ? 60 : good), "%d good samples delivered, got %lld", train ? 60 : good, (long long)ref.n);
    if (!train)
      CHECK(ref.st.bad == bad_read + bad_dec + bad_cap && ref.st.bad_read == bad_read && ref.st.bad_decode == bad_dec &&
                ref.st.bad_caption == bad_cap,
            "bad counts %lld (read %lld decode %lld caption %lld)", (long long)ref.st.bad, (long long)ref.st.bad_read,
            (long long)ref.st.bad_decode, (long long)ref.st.bad_caption);
    else
      CHECK(ref.st.bad >= 18 && ref.st.bad_read >= 6 && ref.st.bad_decode >= 6 && ref.st.bad_caption >= 6,
            "train bad counts %lld", (long long)ref.st.bad);
    /* training re-reads the bad rows in its second pass: they are the same 18 samples */
    CHECK(ref.st.bad_distinct == bad_read + bad_dec + bad_cap && (train ? ref.st.bad > ref.st.bad_distinct : 1),
          "distinct bad samples %lld of %lld skipped (train %d)", (long long)ref.st.bad_distinct, (long long)ref.st.bad,
          train);
    CHECK(strstr(ref.st.last_error, "data.tsv") != NULL, "last error names the file: %s", ref.st.last_error);
    int full = 1;
    for (int64_t b = 0; b + 1 < ref.nb; b++) full &= ref.sizes[b] == 5;
    CHECK(full, "batches are filled with the next good samples");
    for (int w = 1; w <= 3; w += 2) {
      run r;
      c.workers = w;
      collect(&c, 0, 0, &r);
      CHECK(same_run(&ref, &r, 24, 16), "bad samples: %d workers = 0 workers (train %d)", w, train);
      run_free(&r);
    }
    if (train) {
      /* exact resume with seq_end even with bad samples skipped */
      vlm_loader *l;
      vlm_loader_open(&l, &c);
      vlm_loader_start_epoch_at(l, 0, 4, ref.seq_end[3]);
      vlm_batch b;
      int ok = vlm_loader_next(l, &b) == 1 && b.index == 4 && !memcmp(b.groups, ref.groups + 20, (size_t)b.n * 8);
      CHECK(ok, "start_epoch_at(seq_end) resumes exactly");
      vlm_loader_close(l);
    }
    run_free(&ref);
  }
}

static void test_mixing(void) {
  FILE *a = fopen(P("alpha.tsv"), "wb"), *b = fopen(P("beta.tsv"), "wb");
  fprintf(a, "filepath\ttitle\n");
  fprintf(b, "filepath\ttitle\n");
  for (int i = 0; i < 400; i++) fprintf(a, "img/0.png\talpha\n");
  for (int i = 0; i < 100; i++) fprintf(b, "img/1.png\tbeta\n");
  fclose(a);
  fclose(b);
  char spec[2200];
  snprintf(spec, sizeof spec, "%s::%s", P("alpha.tsv"), P("beta.tsv"));
  int32_t *ids = NULL;
  size_t n = 0;
  vlm_tokenizer_encode(g_tok, "alpha", 5, &ids, &n);
  int32_t alpha_id = n ? ids[0] : -1;
  free(ids);
  double up[2] = {3, 1};
  struct { const double *up; double T; double want; const char *what; } cases[] = {
      {up, 0, 0.75, "upsampling 3:1"}, {NULL, 2, 2.0 / 3.0, "temperature 2 (sqrt sizes)"}, {NULL, 0, 0.8, "by size"}};
  for (int k = 0; k < 3; k++) {
    vlm_loader_cfg c;
    base_cfg(&c, spec, 1, 8, 100);
    c.upsampling = cases[k].up;
    c.n_upsampling = cases[k].up ? 2 : 0;
    c.temperature = cases[k].T;
    c.samples_per_epoch = 3000;
    c.workers = 2;
    run r;
    collect(&c, 0, 0, &r);
    int64_t na = 0;
    for (int64_t i = 0; i < r.n; i++) na += r.ids[i * 16 + 1] == alpha_id;
    double frac = r.n ? (double)na / r.n : 0;
    /* 3000 draws: sd ~ 0.008 */
    CHECK(r.n == 3000 && fabs(frac - cases[k].want) < 0.035, "%s: alpha fraction %.3f, want %.3f", cases[k].what, frac,
          cases[k].want);
    run_free(&r);
  }
  vlm_loader_cfg c;
  base_cfg(&c, spec, 0, 8, 64);
  run r;
  collect(&c, 0, 0, &r);
  CHECK(r.n == 500 && r.ids[1] == alpha_id && r.ids[499 * 16 + 1] != alpha_id, "eval reads the sources one after the other");
  run_free(&r);
  /* one factor for two sources: said so, not a weight read past the array */
  double one[2] = {1, NAN};
  base_cfg(&c, spec, 1, 8, 100);
  c.upsampling = one;
  c.n_upsampling = 1;
  vlm_loader *l = NULL;
  CHECK(vlm_loader_open(&l, &c) != VLM_OK && strstr(vlm_last_error(), "2 sources but 1 upsampling factor"),
        "factor count checked: %s", vlm_last_error());
  vlm_loader_close(l);
  /* a header-only CSV: the file named, not "the mixing weights sum to 0" */
  FILE *h = fopen(P("header_only.tsv"), "w");
  fputs("filepath\ttitle\n", h);
  fclose(h);
  base_cfg(&c, P("header_only.tsv"), 0, 8, 4);
  CHECK(vlm_loader_open(&l, &c) != VLM_OK && strstr(vlm_last_error(), "header_only.tsv") &&
            strstr(vlm_last_error(), "no records") && !strstr(vlm_last_error(), "sum to 0"),
        "header-only CSV: %s", vlm_last_error());
  vlm_loader_close(l);
}

/* ------------------------------------------------------------------ WebDataset */
static void test_wds(void) {
  size_t pn;
  uint8_t *png = vt_read_file(P("img/2.png"), &pn);
  for (int s = 0; s < 4; s++) {
    char nm[64];
    snprintf(nm, sizeof nm, "sh-%02d.tar", s);
    FILE *f = fopen(P(nm), "wb");
    for (int i = 0; i < 10; i++) {
      char k[64], cap[64];
      snprintf(k, sizeof k, "s%d_%03d.png", s, i);
      vt_tar_add(f, k, png, pn);
      snprintf(k, sizeof k, "s%d_%03d.txt", s, i);
      snprintf(cap, sizeof cap, "%s", i == 4 ? "" : "a caption");
      vt_tar_add(f, k, cap, strlen(cap));
    }
    static const char zero[1024];
    fwrite(zero, 1, 1024, f);
    fclose(f);
  }
  free(png);
  char spec[1100];
  snprintf(spec, sizeof spec, "%s/sh-{00..03}.tar", g_dir);
  vlm_loader_cfg c;
  base_cfg(&c, spec, 1, 16, 6);
  c.shuffle_buffer = 7;
  c.workers = 0;
  run ref;
  collect(&c, 0, 0, &ref);
  CHECK(ref.n == 36 && ref.st.bad_caption == 4, "wds: 36 good (6 batches), 4 empty captions skipped: %lld %lld",
        (long long)ref.n, (long long)ref.st.bad_caption);
  for (int w = 1; w <= 3; w += 2) {
    run r;
    c.workers = w;
    collect(&c, 0, 0, &r);
    CHECK(same_run(&ref, &r, 16, 16), "wds: %d workers = 0 workers", w);
    run_free(&r);
  }
  int64_t *g = malloc((size_t)ref.n * 8);
  memcpy(g, ref.groups, (size_t)ref.n * 8);
  qsort(g, (size_t)ref.n, 8, cmp64);
  int distinct = 1;
  for (int64_t i = 1; i < ref.n; i++) distinct &= g[i] != g[i - 1];
  CHECK(distinct, "wds: each sample once");
  free(g);
  run e1;
  collect(&c, 1, 0, &e1);
  CHECK(e1.n == 36 && memcmp(e1.groups, ref.groups, 36 * 8) != 0, "wds: epoch 1 order differs");
  run_free(&e1);
  run_free(&ref);
  /* a WebDataset source mixed with a random-access one (upsampling factors): still the same
   * batches for any worker count, both sources present */
  {
    char mix[2300];
    snprintf(mix, sizeof mix, "%s::shapes:50", spec);
    double upf[2] = {1, 1};
    vlm_loader_cfg cm;
    base_cfg(&cm, mix, 1, 16, 8);
    cm.upsampling = upf;
    cm.n_upsampling = 2;
    cm.samples_per_epoch = 160;
    cm.shuffle_buffer = 5;
    cm.workers = 0;
    run m0, m2;
    collect(&cm, 2, 0, &m0);
    cm.workers = 2;
    collect(&cm, 2, 0, &m2);
    int64_t from_wds = 0;
    for (int64_t i = 0; i < m0.n; i++) from_wds += (m0.groups[i] >> 48) == 0;
    CHECK(m0.n == 160 && same_run(&m0, &m2, 16, 16) && from_wds > 40 && from_wds < 120,
          "wds::shapes mix: %lld samples, %lld from the shards, workers-invariant", (long long)m0.n, (long long)from_wds);
    run_free(&m0);
    run_free(&m2);
    cm.upsampling = NULL;
    vlm_loader *lm;
    CHECK(vlm_loader_open(&lm, &cm) != VLM_OK && strstr(vlm_last_error(), "upsampling"),
          "a WebDataset mix without factors is refused: %s", vlm_last_error());
  }
  /* ranks split the shards */
  int64_t seen[2][64];
  int64_t ns[2] = {0, 0};
  for (int rank = 0; rank < 2; rank++) {
    c.rank = rank;
    c.world = 2;
    c.drop_last = 0;
    run r;
    collect(&c, 0, 0, &r);
    ns[rank] = r.n;
    for (int64_t i = 0; i < r.n && i < 64; i++) seen[rank][i] = r.groups[i] >> 32;
    run_free(&r);
  }
  int disjoint = ns[0] == 18 && ns[1] == 18;
  for (int64_t i = 0; i < ns[0] && disjoint; i++)
    for (int64_t j = 0; j < ns[1]; j++) disjoint &= seen[0][i] != seen[1][j];
  CHECK(disjoint, "wds: two ranks read disjoint shards (%lld + %lld samples)", (long long)ns[0], (long long)ns[1]);
}

static void test_bounded(void) {
  vlm_loader_cfg c;
  base_cfg(&c, "shapes:5000", 1, 16, 8);
  c.workers = 3;
  c.queue_samples = 20;
  vlm_loader *l;
  CHECK(vlm_loader_open(&l, &c) == VLM_OK, "open");
  vlm_batch b;
  vlm_loader_next(l, &b);
  struct timespec ts = {0, 100 * 1000 * 1000};
  nanosleep(&ts, NULL);   /* a slow consumer: workers must stop at the queue bound */
  vlm_loader_next(l, &b);
  vlm_loader_stats st;
  vlm_loader_stats_get(l, &st);
  CHECK(vlm_loader_queue_size(l) == 20 && st.ahead_max <= 20 && st.ahead_max >= 8, "work ahead bounded: %lld of 20",
        (long long)st.ahead_max);
  vlm_loader_close(l);
  /* training cycles its sources: one with no good sample must still end the epoch. Read from
   * its start, the epoch ends once the data has been read (fewer good samples than a batch);
   * resumed past its start (that check off), after the run of bad samples */
  FILE *f = fopen(P("allbad.tsv"), "wb");
  fprintf(f, "filepath\ttitle\n");
  for (int i = 0; i < 20; i++) fprintf(f, "img/none%d.png\tmissing\n", i);
  fclose(f);
  base_cfg(&c, P("allbad.tsv"), 1, 16, 4);
  c.workers = 2;
  CHECK(vlm_loader_open(&l, &c) == VLM_OK, "open allbad");
  int got = vlm_loader_next(l, &b);
  vlm_loader_stats_get(l, &st);
  CHECK(got == 0 && st.bad == 20 && st.samples == 0 && strstr(st.last_error, "none"),
        "no good sample: the epoch ends after one pass (%lld bad)", (long long)st.bad);
  vlm_loader_start_epoch(l, 0, 1);
  got = vlm_loader_next(l, &b);
  vlm_loader_stats_get(l, &st);
  CHECK(got == 0 && st.bad >= 1000 && st.samples == 0 && strstr(st.last_error, "none"),
        "no good sample, resumed epoch: the epoch ends (%lld bad)", (long long)st.bad);
  CHECK(st.bad_distinct == 20, "no good sample: %lld distinct bad samples of 20", (long long)st.bad_distinct);
  vlm_loader_close(l);
  /* bad settings */
  base_cfg(&c, "shapes:10", 1, 16, 0);
  CHECK(vlm_loader_open(&l, &c) != VLM_OK, "batch 0 refused");
  base_cfg(&c, "shapes:10::/nonexistent/x.csv", 1, 16, 4);
  CHECK(vlm_loader_open(&l, &c) != VLM_OK && strstr(vlm_last_error(), "x.csv"), "missing source named: %s", vlm_last_error());
  base_cfg(&c, "shapes:2", 1, 16, 4);
  c.world = 4;
  CHECK(vlm_loader_open(&l, &c) != VLM_OK && strstr(vlm_last_error(), "ranks"), "too few samples for the ranks: %s",
        vlm_last_error());
}

/* stderr into a file while a test runs, to read what the loader logged */
static int g_saved_err = -1;
static void capture_stderr(const char *path) {
  fflush(stderr);
  g_saved_err = dup(2);
  FILE *f = fopen(path, "w");
  if (f) { dup2(fileno(f), 2); fclose(f); }
}
static char *release_stderr(const char *path) {
  fflush(stderr);
  if (g_saved_err >= 0) { dup2(g_saved_err, 2); close(g_saved_err); g_saved_err = -1; }
  size_t n;
  char *t = (char *)vt_read_file(path, &n);
  if (!t) return strdup("");
  char *z = realloc(t, n + 1);
  if (!z) { free(t); return strdup(""); }
  z[n] = 0;
  return z;
}
static int count_str(const char *hay, const char *needle) {
  int k = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) k++;
  return k;
}

/* Fewer good samples than a batch: training used to fill its batches with copies of them and
 * count each copy ("8 samples" from 1 good row); the epoch ends with an error instead, the
 * count honest. Enough good ones (exactly a batch) still train. */
static void test_few_good(void) {
  FILE *f = fopen(P("fewgood.tsv"), "wb");
  fprintf(f, "filepath\ttitle\nimg/0.png\tthe only good one\n");
  for (int i = 0; i < 9; i++) fprintf(f, "img/gone%d.png\tmissing\n", i);
  fclose(f);
  for (int w = 0; w <= 2; w += 2) {
    vlm_loader_cfg c;
    base_cfg(&c, P("fewgood.tsv"), 1, 16, 4);
    c.workers = w;
    vlm_loader *l;
    if (vlm_loader_open(&l, &c)) { CHECK(0, "open: %s", vlm_last_error()); return; }
    capture_stderr(P("fewgood.log"));
    vlm_batch b;
    int got = vlm_loader_next(l, &b);
    vlm_loader_stats st;
    vlm_loader_stats_get(l, &st);
    char *log = release_stderr(P("fewgood.log"));
    CHECK(got == 0 && st.samples == 1 && st.bad == 9 && st.bad_distinct == 9,
          "1 good sample, batch 4 (%d workers): no batch (%d), 1 sample counted (%lld), 9 bad (%lld)", w, got,
          (long long)st.samples, (long long)st.bad);
    CHECK(strstr(log, "fewgood.tsv holds only 1 good sample (9 bad), fewer than one batch of 4") != NULL,
          "the error says why (%d workers): %s", w, log);
    free(log);
    /* the next epoch ends the same way */
    vlm_loader_start_epoch(l, 1, 0);
    capture_stderr(P("fewgood.log"));
    got = vlm_loader_next(l, &b);
    vlm_loader_stats_get(l, &st);
    free(release_stderr(P("fewgood.log")));
    CHECK(got == 0 && st.samples == 1, "epoch 1 too (%lld samples)", (long long)st.samples);
    vlm_loader_close(l);
  }
  /* 4 good of 10, batch 4: a batch of four distinct pairs, then one from the next pass */
  f = fopen(P("fourgood.tsv"), "wb");
  fprintf(f, "filepath\ttitle\n");
  for (int i = 0; i < 10; i++)
    if (i % 3 == 0) fprintf(f, "img/%d.png\tgood %d\n", i % 5, i);
    else fprintf(f, "img/gone%d.png\tmissing\n", i);
  fclose(f);
  vlm_loader_cfg c;
  base_cfg(&c, P("fourgood.tsv"), 1, 16, 4);
  c.workers = 0;
  run r;
  capture_stderr(P("fourgood.log"));
  collect(&c, 0, 0, &r);
  char *log = release_stderr(P("fourgood.log"));
  int distinct = r.n == 8;
  for (int i = 0; distinct && i < 4; i++)
    for (int j = i + 1; j < 4; j++) distinct &= r.groups[i] != r.groups[j];
  CHECK(r.nb == 2 && distinct && r.st.samples == 8, "4 good of 10, batch 4: 2 batches (%lld), the first of distinct pairs",
        (long long)r.nb);
  CHECK(!strstr(log, "fewer than one batch") && strstr(log, "(4 of them read again, in a further pass)"),
        "no error; the summary says 4 were read again: %s", log);
  free(log);
  run_free(&r);
}

/* Bad samples are named at warn level up to 10 distinct ones over the loader's life (a bad file
 * is not named again in the next pass or epoch), then one line says that the rest are not. */
static void test_bad_named(void) {
  FILE *f = fopen(P("manybad.tsv"), "wb");
  fprintf(f, "filepath\ttitle\n");
  for (int i = 0; i < 15; i++) fprintf(f, "img/lost%02d.png\tmissing\n", i);
  for (int i = 0; i < 12; i++) fprintf(f, "img/%d.png\tgood %d\n", i % 5, i);
  fclose(f);
  vlm_log_set_level(VLM_LOG_INFO);   /* VLM_LOG=debug in the environment would name them all */
  for (int train = 0; train <= 1; train++) {
    vlm_loader_cfg c;
    base_cfg(&c, P("manybad.tsv"), train, 16, 4);
    c.workers = 2;
    vlm_loader *l;
    if (vlm_loader_open(&l, &c)) { CHECK(0, "open: %s", vlm_last_error()); return; }
    capture_stderr(P("manybad.log"));
    vlm_batch b;
    for (int e = 0; e < 2; e++) {
      vlm_loader_start_epoch(l, e, 0);
      while (vlm_loader_next(l, &b)) {
      }
    }
    vlm_loader_close(l);
    char *log = release_stderr(P("manybad.log"));
    const char *tag = "warning: loader: skipped a bad sample: ";
    int named = count_str(log, tag), distinct = 1;
    for (const char *p = log; (p = strstr(p, tag)); p += strlen(tag)) {   /* no warning line twice */
      const char *e = strchr(p, '\n');
      size_t len = e ? (size_t)(e - p) : strlen(p);
      for (const char *q = p + len; (q = strstr(q, tag));  q += strlen(tag))
        distinct &= strncmp(p, q, len) != 0 || (q[len] != '\n' && q[len] != 0);
    }
    CHECK(named == 10 && distinct, "train %d: 10 bad samples named (%d), each once", train, named);
    CHECK(count_str(log, "further bad samples are not named (10 were; VLM_LOG=debug names them all") == 1,
          "train %d: the rest are said not to be named, once: %s", train, log);
    free(log);
  }
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SLOW_BUILD 1
#else
#define SLOW_BUILD 0
#endif

/* Throughput (printed, not asserted): 2 workers, shapes at 64 px and PNG/JPEG files at 224 px.
 * Sanitizer builds run a token amount (their numbers mean nothing). */
static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void test_throughput(const char *shared) {
  double t0;
  struct timespec ts;
  vlm_loader_cfg c;
  base_cfg(&c, SLOW_BUILD ? "shapes:128" : "shapes:1024", 1, 64, 64);
  c.workers = 2;
  vlm_loader *l;
  if (vlm_loader_open(&l, &c)) return;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  t0 = ts.tv_sec + ts.tv_nsec * 1e-9;
  double c0 = cpu_s();
  vlm_batch b;
  int64_t n = 0;
  while (vlm_loader_next(l, &b)) n += b.n;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  printf("  throughput: shapes 64 px, train, 2 workers: %.0f images/s (%.0f images per CPU second)\n",
         n / (ts.tv_sec + ts.tv_nsec * 1e-9 - t0), n / (cpu_s() - c0));
  vlm_loader_close(l);
  char src[1024];
  snprintf(src, sizeof src, "%s/data/images/rocket.jpg", shared);
  size_t jn;
  FILE *f = fopen(src, "rb");
  if (!f) return;
  fclose(f);
  uint8_t *j = vt_read_file(src, &jn);
  vt_write_file(P("img/r.jpg"), j, jn);
  free(j);
  f = fopen(P("jpeg.tsv"), "wb");
  fprintf(f, "filepath\ttitle\n");
  for (int i = 0; i < (SLOW_BUILD ? 16 : 64); i++) fprintf(f, "img/r.jpg\ta rocket\n");
  fclose(f);
  base_cfg(&c, P("jpeg.tsv"), 1, 224, 16);
  c.workers = 2;
  c.decode.jpeg_reduce_min_side = 224;
  if (vlm_loader_open(&l, &c)) return;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  t0 = ts.tv_sec + ts.tv_nsec * 1e-9;
  c0 = cpu_s();
  n = 0;
  while (vlm_loader_next(l, &b)) n += b.n;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  printf("  throughput: JPEG (rocket.jpg, 640x427) 224 px, train, 2 workers: %.0f images/s (%.0f images per CPU second)\n",
         n / (ts.tv_sec + ts.tv_nsec * 1e-9 - t0), n / (cpu_s() - c0));
  vlm_loader_close(l);
}

int main(int argc, char **argv) {
  const char *shared = vt_shared_dir(argc, argv);
  snprintf(g_dir, sizeof g_dir, "/tmp/vlm_test_loader_XXXXXX");
  if (!mkdtemp(g_dir)) vt_skip("cannot make a temp dir");
  const char *texts[] = {"a red circle", "a blue square", "alpha", "beta", "caption number", "a green star on the left",
                         "a photo of a small cyan hexagon", "there is a pink cross and an orange triangle"};
  size_t lens[8];
  for (int i = 0; i < 8; i++) lens[i] = strlen(texts[i]);
  if (vlm_bpe_train(&g_tok, texts, lens, 8, 600)) { CHECK(0, "bpe: %s", vlm_last_error()); return vt_finish(); }
  /* vlm_tokenizer_clone: the same ids as the original (trained and OpenAI vocabularies) */
  vlm_tokenizer *toks[2] = {g_tok, NULL};
  char vocab[1024];
  snprintf(vocab, sizeof vocab, "%s/data/bpe_simple_vocab_16e6.txt.gz", shared);
  FILE *vf = fopen(vocab, "rb");
  if (vf) {
    fclose(vf);
    if (vlm_tokenizer_load(&toks[1], vocab)) toks[1] = NULL;
  }
  for (int k = 0; k < 2; k++) {
    if (!toks[k]) continue;
    vlm_tokenizer *cl = vlm_tokenizer_clone(toks[k]);
    const char *txt = "A photo of a small cyan hexagon, &amp; caf\xc3\xa9 \xf0\x9f\x98\x80 on the left!";
    int32_t a[24], b[24];
    int na = vlm_tokenizer_encode_ctx(toks[k], txt, strlen(txt), 24, 0, a);
    int nb = cl ? vlm_tokenizer_encode_ctx(cl, txt, strlen(txt), 24, 0, b) : -2;
    CHECK(cl && na == nb && !memcmp(a, b, sizeof a) && vlm_tokenizer_vocab_size(cl) == vlm_tokenizer_vocab_size(toks[k]),
          "tokenizer clone %d encodes like the original", k);
    vlm_tokenizer_free(cl);
  }
  vlm_tokenizer_free(toks[1]);
  test_workers_invariance();
  test_ranks();
  test_bad_samples();
  test_mixing();
  test_wds();
  test_bounded();
  test_few_good();
  test_bad_named();
  test_throughput(shared);
  vlm_tokenizer_free(g_tok);
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", g_dir);
  return vt_finish();
}
