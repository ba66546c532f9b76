/* `vlm train` across processes: the MPI backend of core's collectives (core.h).
 * A process started by mpirun / mpiexec / srun (seen in the launcher's environment)
 * joins MPI_COMM_WORLD; one started alone stays a single process. A build without
 * MPI refuses to run as one of several ranks rather than train alone and overwrite
 * the others' run directory. Only the main thread calls MPI (MPI_THREAD_FUNNELED). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/apps.h"
#include "core/core.h"
#ifdef VLM_HAVE_MPI
#include <mpi.h>
#endif

/* The world size the launcher announced (1 when none did). */
static int launcher_world(void) {
  static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};
  int w = 1;
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
    const char *e = getenv(vars[i]);
    if (e && atoi(e) > w) w = atoi(e);
  }
  /* srun sets SLURM_STEP_ID for the tasks it starts; a batch script's own shell has none */
  const char *nt = getenv("SLURM_NTASKS");
  if (nt && getenv("SLURM_STEP_ID") && getenv("SLURM_PROCID") && atoi(nt) > w) w = atoi(nt);
  return w;
}

#ifdef VLM_HAVE_MPI
static vlm_comm_ops g_ops;
static int g_active = 0, g_local = 1, g_local_rank = 0;

static vlm_status mpi_status(int rc, const char *what) {
  if (rc == MPI_SUCCESS) return VLM_OK;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  return vlm_error(VLM_ERR_IO, "MPI %s (rank %d of %d): %.*s", what, g_ops.rank, g_ops.world, len, msg);
}

enum { CHUNK = 1 << 28 };   /* MPI counts are int: large buffers go in pieces */

static vlm_status allreduce_sum_f32(float *buf, int64_t n) {
  for (int64_t i = 0; i < n; i += CHUNK) {
    int c = (int)(n - i < CHUNK ? n - i : CHUNK);
    vlm_status st = mpi_status(MPI_Allreduce(MPI_IN_PLACE, buf + i, c, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD), "allreduce");
    if (st != VLM_OK) return st;
  }
  return VLM_OK;
}

static vlm_status allreduce_min_i64(int64_t *v) {
  long long x = (long long)*v;
  vlm_status st = mpi_status(MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_LONG_LONG, MPI_MIN, MPI_COMM_WORLD), "allreduce");
  *v = (int64_t)x;
  return st;
}

static vlm_status allgather_f32(float *buf, int64_t n) {
  if (n > INT_MAX) return vlm_error(VLM_ERR_ARG, "MPI allgather: %lld values a rank", (long long)n);
  return mpi_status(MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, (int)n, MPI_FLOAT, MPI_COMM_WORLD),
                    "allgather");
}

static vlm_status bcast(void *buf, size_t bytes, int root) {
  for (size_t i = 0; i < bytes; i += CHUNK) {
    int c = (int)(bytes - i < CHUNK ? bytes - i : CHUNK);
    vlm_status st = mpi_status(MPI_Bcast((char *)buf + i, c, MPI_BYTE, root, MPI_COMM_WORLD), "broadcast");
    if (st != VLM_OK) return st;
  }
  return VLM_OK;
}
#endif

int vlm_app_ranks_start(const char *cmd) {
  const int w = launcher_world();
  if (w <= 1) return 0;
#ifndef VLM_HAVE_MPI
  fprintf(stderr, "%s: started as one of %d processes (mpirun / srun), but this vlm was built without MPI: install "
          "libopenmpi-dev and rebuild (scripts/setup.sh), or run a single process\n", cmd, w);
  return 2;
#else
  int provided = 0;
  if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    fprintf(stderr, "%s: MPI_Init failed\n", cmd);
    return 1;
  }
  g_active = 1;
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_ops.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_ops.world);
  MPI_Comm node;
  if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
    MPI_Comm_size(node, &g_local);
    MPI_Comm_rank(node, &g_local_rank);
    MPI_Comm_free(&node);
  }
  g_ops.allreduce_sum_f32 = allreduce_sum_f32;
  g_ops.allreduce_min_i64 = allreduce_min_i64;
  g_ops.allgather_f32 = allgather_f32;
  g_ops.bcast = bcast;
  vlm_comm_set(&g_ops);
  return 0;
#endif
}

int vlm_app_ranks_local(void) {
#ifdef VLM_HAVE_MPI
  return g_active ? g_local : 1;
#else
  return 1;
#endif
}

int vlm_app_ranks_local_rank(void) {
#ifdef VLM_HAVE_MPI
  return g_active ? g_local_rank : 0;
#else
  return 0;
#endif
}

void vlm_app_ranks_stop(int rc) {
#ifdef VLM_HAVE_MPI
  if (!g_active) return;
  vlm_comm_set(NULL);
  g_active = 0;
  /* a rank that failed takes the others down with it: they would wait forever in the
   * next collective */
  if (rc != 0 && g_ops.world > 1) MPI_Abort(MPI_COMM_WORLD, rc);
  MPI_Finalize();
#else
  (void)rc;
#endif
}
