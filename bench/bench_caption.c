/* bench_caption: CoCa caption generation with and without the KV cache.
 *
 *   bench_caption [--model coca_ViT-B-32] [--images B] [--tokens N] [--beams K] [--reps R]
 *                 [--precision f32|bf16]   (bf16: BF16 weight matrices converted once, bf16 matmuls)
 *
 * Random weights (open_clip's initialisation) of a built-in CoCa config, random
 * images; the image tower runs once, then N tokens are generated (EOT forbidden
 * until the last position, so every run makes exactly N) by the cached decoder
 * (one position per step through the text tower and the decoder, image
 * keys/values computed once) and by the uncached one (the whole prefix every
 * step, as open_clip's generate). Prints the median times, tokens/s and the
 * speedup of the cache, and checks both produced the same tokens. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/model.h"

/* Process CPU seconds (all threads): steadier than wall time on a shared machine. */
static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  const char *name = "coca_ViT-B-32";
  int B = 1, tokens = 30, beams = 1, reps = 3, bf16 = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--model")) name = argv[i + 1];
    else if (!strcmp(argv[i], "--images")) B = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--tokens")) tokens = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--beams")) beams = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--precision")) bf16 = !strcmp(argv[i + 1], "bf16");
    else {
      fprintf(stderr, "usage: bench_caption [--model NAME] [--images B] [--tokens N] [--beams K] [--reps R] [--precision f32|bf16]\n");
      return 2;
    }
  }
  if (B < 1 || tokens < 2 || beams < 1 || reps < 1 || reps > 99) {
    fprintf(stderr, "bench_caption: bad arguments\n");
    return 2;
  }
  int threads = vlm_threads_init(0);
  vlm_coca_config c;
  vlm_coca_params p;
  if (vlm_coca_config_builtin(&c, name) != VLM_OK || vlm_coca_params_init(&p, &c) != VLM_OK) {
    fprintf(stderr, "bench_caption: %s\n", vlm_last_error());
    return 1;
  }
  double t0 = vlm_now();
  vlm_coca_params_init_openclip(&p, &c, 1);
  printf("model %s: %lld parameters (random init %.1f s), %d threads\n", name,
         (long long)vlm_coca_params_count(&p, &c), vlm_now() - t0, threads);
  vlm_coca_params h, *w = &p;
  if (bf16) {
    vlm_set_matmul_precision(VLM_PREC_BF16);
    if (vlm_coca_params_bf16(&h, &p, &c, 1) != VLM_OK) {
      fprintf(stderr, "bench_caption: %s\n", vlm_last_error());
      return 1;
    }
    w = &h;
    printf("precision: bf16 weights and matmul inputs (f32 accumulation)\n");
  }
  int64_t S = c.vision.image_size;
  float *pix = malloc((size_t)(B * 3 * S * S) * sizeof *pix);
  vlm_rng r;
  vlm_rng_seed(&r, 7);
  vlm_rng_fill_normal(&r, pix, (size_t)(B * 3 * S * S), 0, 1);
  int64_t sh[4] = {B, 3, S, S};
  vlm_tensor images = vlm_tensor_cpu_f32(pix, 4, sh);

  /* The image tower once (timed), its tokens reused by both decoders. */
  vlm_vit_acts va;
  vlm_attn_pool_acts pa;
  vlm_arena m, a;
  vlm_vit_acts_alloc(&va, &c.vision);
  vlm_arena_measure(&m, VLM_CPU);
  vlm_vit_acts_layout(&va, &m, &c.vision, B, 0);
  vlm_attn_pool_acts_layout(&pa, &m, &c.vision, B, 0);
  if (vlm_arena_init(&a, m.used, VLM_CPU) != VLM_OK) {
    fprintf(stderr, "bench_caption: %s\n", vlm_last_error());
    return 1;
  }
  vlm_vit_acts_layout(&va, &a, &c.vision, B, 0);
  vlm_attn_pool_acts_layout(&pa, &a, &c.vision, B, 0);
  t0 = vlm_now();
  vlm_coca_vit_forward(&c.vision, &w->visual, &w->pool, &va, &pa, &images);
  double t_img = vlm_now() - t0;

  vlm_gen_options o;
  vlm_gen_options_default(&o);
  o.sot_id = c.text.vocab_size - 2;
  o.eot_id = c.text.vocab_size - 1;
  o.max_len = tokens;
  o.min_len = tokens;
  o.beams = beams;
  int32_t *out[2];
  int *lens = malloc((size_t)B * sizeof *lens);
  double t[2][100], cpu[2][100];
  for (int k = 0; k < 2; k++) out[k] = malloc((size_t)(B * tokens) * sizeof(int32_t));
  for (int rep = 0; rep < reps; rep++)
    for (int k = 0; k < 2; k++) {   /* cached first, then uncached, alternating */
      o.use_cache = k == 0;
      t0 = vlm_now();
      double c0 = cpu_now();
      if (vlm_generate(&c.text, &w->text, &c.decoder, &w->decoder, &pa.tokens, &o, out[k], lens) != VLM_OK) {
        fprintf(stderr, "bench_caption: %s\n", vlm_last_error());
        return 1;
      }
      t[k][rep] = vlm_now() - t0;
      cpu[k][rep] = cpu_now() - c0;
    }
  for (int k = 0; k < 2; k++) {
    qsort(t[k], (size_t)reps, sizeof(double), cmp_d);
    qsort(cpu[k], (size_t)reps, sizeof(double), cmp_d);
  }
  double tc = t[0][reps / 2], tu = t[1][reps / 2];
  int same = !memcmp(out[0], out[1], (size_t)(B * tokens) * sizeof(int32_t));
  printf("image tower: %.1f ms for %d image(s)\n", t_img * 1e3, B);
  printf("generate %d tokens x %d image(s), %s: cached %.1f ms (%.1f tokens/s), uncached %.1f ms (%.1f tokens/s)\n",
         tokens, B, beams > 1 ? "beam search" : "greedy", tc * 1e3, (tokens - 1) * B / tc, tu * 1e3,
         (tokens - 1) * B / tu);
  printf("CPU time (all threads): cached %.1f ms, uncached %.1f ms\n", cpu[0][reps / 2] * 1e3, cpu[1][reps / 2] * 1e3);
  printf("cache speedup: %.2fx wall, %.2fx CPU time (medians of %d; target >= 3x); tokens identical: %s\n", tu / tc,
         cpu[1][reps / 2] / cpu[0][reps / 2], reps, same ? "yes" : "NO");
  free(pix);
  free(lens);
  free(out[0]);
  free(out[1]);
  vlm_arena_free(&a);
  vlm_vit_acts_free(&va);
  if (bf16) vlm_coca_params_free(&h);
  vlm_coca_params_free(&p);
  return same ? 0 : 1;
}
