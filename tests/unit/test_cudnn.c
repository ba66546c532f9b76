/* cuDNN's fused attention without a GPU (core/cuda/attention_cudnn.cu): where the
 * build has cuDNN's headers and the library loads, every entry point vlm uses must
 * be there and the SDPA_FWD operation for ViT-B/32's attention must build: its five
 * tensor descriptors finalize (cuDNN checks each attribute's type and the dims and
 * strides there: a 3-element stride list or an INT64 by-value flag fail) and the
 * operation takes them. cuDNN checks the operation as a whole only when a graph and
 * a plan are built, which needs a GPU: test_cuda_ops' attention section runs it
 * against the reference there.
 * Skipped (77, with the reason) in builds without CUDA or cuDNN headers, where the
 * library is not found, and where it is older than 9.19 and lacks the operation. */
#include <stdio.h>
#include <string.h>

#include "core/cuda/cuda.h"
#include "gradcheck.h"

int main(void) {
  char msg[512];
  int r = vlm_cuda_cudnn_probe(msg, sizeof msg);
  printf("cudnn probe: %d: %s\n", r, msg);
  if (r == -1 || r == 0) {
    char why[600];
    snprintf(why, sizeof why, "cuDNN fused attention not checked: %s", msg);
    vt_skip(why);
  }
  CHECK(r == 1, "the fused attention operation does not build with the cuDNN found: %s", msg);
  CHECK(strstr(msg, "cuDNN 9.") != NULL, "the probe names the version: %s", msg);
  /* a second probe gives the same answer (the library is loaded once) */
  char again[512];
  CHECK(vlm_cuda_cudnn_probe(again, sizeof again) == r && !strcmp(again, msg), "second probe: %s", again);
  return vt_finish();
}
