/* Per-thread kernel buffers are freed when their thread exits: many short-lived
 * threads, each running fast CPU matmuls (oneDNN stream, scratchpad, bf16
 * conversion buffers) and taking every vlm_scratch slot, leave the count of live
 * buffers (vlm_scratch_live) where it was before them. An application that calls
 * libvlm from threads it starts and joins used to grow by each thread's buffers. */
#define _POSIX_C_SOURCE 200809L   /* nanosleep */
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/cpu/cpu.h"
#include "gradcheck.h"

enum { M = 48, N = 40, K = 72, THREADS = 64 };
static float g_a[M * K], g_b[N * K], g_bias[N], g_dout[M * N];

typedef struct {
  float out_f32[M * N], out_bf16[M * N], da[M * K], db[N * K];
  long live_during;   /* vlm_scratch_live() while the thread still holds its buffers */
} work;

static void *run_work(void *arg) {
  work *w = arg;
  omp_set_num_threads(2);   /* this thread's own setting: the main thread's count, the same results */
  int64_t sa[2] = {M, K}, sb[2] = {N, K}, sbias[1] = {N}, so[2] = {M, N};
  vlm_tensor a = vlm_tensor_cpu_f32(g_a, 2, sa), b = vlm_tensor_cpu_f32(g_b, 2, sb);
  vlm_tensor bias = vlm_tensor_cpu_f32(g_bias, 1, sbias), dout = vlm_tensor_cpu_f32(g_dout, 2, so);
  vlm_tensor of = vlm_tensor_cpu_f32(w->out_f32, 2, so), ob = vlm_tensor_cpu_f32(w->out_bf16, 2, so);
  vlm_tensor da = vlm_tensor_cpu_f32(w->da, 2, sa), db = vlm_tensor_cpu_f32(w->db, 2, sb);
  vlm_cpu_matmul_forward(&of, &a, &b, &bias, 0, 1, VLM_PREC_F32);
  vlm_cpu_matmul_forward(&ob, &a, &b, &bias, 0, 1, VLM_PREC_BF16);   /* conversion buffers */
  memset(w->da, 0, sizeof w->da);
  memset(w->db, 0, sizeof w->db);
  vlm_cpu_matmul_backward(&da, &db, NULL, &dout, &a, &b, 0, 1, VLM_PREC_BF16);
  for (int s = 0; s < VLM_SCRATCH_SLOTS; s++) memset(vlm_scratch(s, (size_t)(s + 1) << 12), s, 64);
  w->live_during = vlm_scratch_live();
  return NULL;
}

/* The count settles a moment after a join: OpenMP's workers of a finished thread's team
 * exit (and free what they held) after that thread does. */
static long settled_live(long want) {
  long live = vlm_scratch_live();
  for (int i = 0; i < 500 && live != want; i++) {
    nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    live = vlm_scratch_live();
  }
  return live;
}

int main(void) {
  vlm_threads_init(2);
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  vt_fill_normal(g_a, M * K, 1, 1.0f);
  vt_fill_normal(g_b, N * K, 2, 1.0f);
  vt_fill_normal(g_bias, N, 3, 1.0f);
  vt_fill_normal(g_dout, M * N, 4, 1.0f);
  /* The main thread's own buffers: made once, kept for the process (the baseline). */
  static work first, w;
  run_work(&first);
  long base = vlm_scratch_live();
  CHECK(base >= VLM_SCRATCH_SLOTS + 3, "the main thread holds its scratch slots, a stream and buffers (%ld)", base);

  int same = 1, held = 1;
  for (int t = 0; t < THREADS; t++) {
    pthread_t th;
    CHECK(pthread_create(&th, NULL, run_work, &w) == 0, "pthread_create");
    pthread_join(th, NULL);
    held &= w.live_during >= base + VLM_SCRATCH_SLOTS + 3;
    same &= !memcmp(w.out_f32, first.out_f32, sizeof w.out_f32) &&
            !memcmp(w.out_bf16, first.out_bf16, sizeof w.out_bf16) && !memcmp(w.da, first.da, sizeof w.da) &&
            !memcmp(w.db, first.db, sizeof w.db);
  }
  CHECK(held, "each thread held its own buffers while it ran");
  CHECK(same, "every thread computed what the main thread did");
  long after = settled_live(base);
  CHECK(after == base, "%d threads came and went: %ld live kernel buffers, %ld before them (%ld leaked per thread)",
        THREADS, after, base, (after - base) / THREADS);

  /* Several threads at once, too. */
  enum { P = 8 };
  static work ws[P];
  pthread_t ths[P];
  for (int t = 0; t < P; t++) CHECK(pthread_create(&ths[t], NULL, run_work, &ws[t]) == 0, "pthread_create");
  for (int t = 0; t < P; t++) pthread_join(ths[t], NULL);
  after = settled_live(base);
  CHECK(after == base, "%d concurrent threads: %ld live kernel buffers, %ld before them", P, after, base);

  /* vlm_scratch_release frees the calling thread's slots (and counts them). */
  vlm_scratch_release();
  CHECK(vlm_scratch_live() == base - VLM_SCRATCH_SLOTS, "release frees this thread's %d slots", VLM_SCRATCH_SLOTS);
  return vt_finish();
}
