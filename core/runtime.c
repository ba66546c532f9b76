/* Runtime settings: threads, the OpenMP spin for the load at start, kernel mode
 * (process-wide), matmul precision (per thread), CPU features, the clock, and
 * host/device memory. */
#define _POSIX_C_SOURCE 200809L
#include "core/core.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int g_threads = 0;

int vlm_threads_resolve(int requested) {
  int n = requested;
  if (n <= 0) {   /* VLM_THREADS: a whole number in [1, VLM_MAX_THREADS], else ignored */
    const char *e = getenv("VLM_THREADS");
    char *end = NULL;
    long v = e ? strtol(e, &end, 10) : 0;
    if (e && end != e && !*end && v > 0 && v <= VLM_MAX_THREADS) n = (int)v;
  }
  if (n <= 0) n = omp_get_max_threads();
  if (n > VLM_MAX_THREADS) n = VLM_MAX_THREADS;
  return n;
}

int vlm_threads_init(int requested) {
  int n = vlm_threads_resolve(requested);
  omp_set_num_threads(n);
  g_threads = n;
  return n;
}

int vlm_threads_get(void) { return g_threads > 0 ? g_threads : omp_get_max_threads(); }

int vlm_runnable_others(void) {
  int least = -1;
  for (int sample = 0; sample < 5; sample++) {
    if (sample) nanosleep(&(struct timespec){0, 1000000}, NULL);
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    char line[256];
    long running = -1;
    while (fgets(line, sizeof line, f)) {
      if (!strncmp(line, "procs_running ", 14)) {
        running = strtol(line + 14, NULL, 10);
        break;
      }
      /* the rest of an over-long line (the "intr" one is): read on to its end */
      while (!strchr(line, '\n') && fgets(line, sizeof line, f)) {
      }
    }
    fclose(f);
    if (running < 1) return -1;
    if (least < 0 || running - 1 < least) least = (int)(running - 1);
  }
  return least;
}

int vlm_omp_spin_count(int others, int threads, int cpus) {
  if (others < 0 || cpus <= 0) return VLM_SPIN_IDLE;
  return (long)others + threads > cpus ? VLM_SPIN_BUSY : VLM_SPIN_IDLE;
}

static int g_mode = -1;
void vlm_set_kernel_mode(vlm_kernel_mode m) { g_mode = (int)m; }
vlm_kernel_mode vlm_get_kernel_mode(void) {
  if (g_mode < 0) {
    const char *e = getenv("VLM_KERNELS");
    g_mode = (e && !strcmp(e, "ref")) ? VLM_KERNELS_REF : VLM_KERNELS_FAST;
  }
  return (vlm_kernel_mode)g_mode;
}

/* Per thread: every read is in an op's dispatcher, on the thread that calls the op
 * (never inside an OpenMP region or a loader worker), so one thread's setting (a bf16
 * encoder, a bf16 training step) never changes another thread's matmuls. */
static _Thread_local vlm_precision g_prec = VLM_PREC_F32;
void vlm_set_matmul_precision(vlm_precision p) { g_prec = p; }
vlm_precision vlm_get_matmul_precision(void) { return g_prec; }

int vlm_cpu_has_bf16(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bf16");
#else
  return 0;
#endif
}

double vlm_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}
