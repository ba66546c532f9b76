/* vlm version */
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>

#include "apps/apps.h"
#include "core/core.h"
#include "core/cuda/cuda.h"

int vlm_cmd_version(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (vlm_app_is_help(argv[i])) {
      printf("usage: vlm version\n\nPrints vlm's version, the CPU threads and features in use, oneDNN's version,\n"
             "whether a CUDA GPU is available, whether cuDNN's fused attention can be used (found and\n"
             "building without a GPU), and whether vlm train can run across MPI ranks.\n\nExample:\n"
             "  vlm --threads 2 version\n");
      return 0;
    }
  }
  if (argc > 1) return vlm_app_bad_arg("vlm version", argv[1]);
  const dnnl_version_t *v = dnnl_version();
  printf("vlm 0.1.0\n");
  printf("cpu: %d threads, AVX512-BF16/AMX: %s, oneDNN %d.%d.%d, bf16 GEMMs: %s\n", vlm_threads_get(),
         vlm_cpu_has_bf16() ? "yes" : "no", v->major, v->minor, v->patch,
         vlm_cpu_bf16_gemm_native() ? "oneDNN"
                                        : "none (--precision bf16 rounds the matmul inputs to bf16, then multiplies in "
                                          "f32: bf16's results, close to but not those of f32, and no speedup)");
  printf("gpu: %s\n", vlm_cuda_describe());
  char dnn[256];
  vlm_cuda_cudnn_probe(dnn, sizeof dnn);
  printf("cudnn: %s\n", dnn);
#ifdef VLM_HAVE_MPI
  printf("ranks: MPI (vlm train under mpirun / srun)\n");
#else
  printf("ranks: none (a build without MPI: vlm train runs in one process)\n");
#endif
  return 0;
}
