/* Stand-in for the CUDA backend in builds without nvcc: no device is ever
 * available, so none of these can be reached with a CUDA tensor. */
#include "core/cuda/cuda.h"

int vlm_cuda_available(void) { return 0; }
const char *vlm_cuda_describe(void) { return "this build has no CUDA backend (nvcc was not found)"; }
void *vlm_cuda_alloc(size_t bytes) { (void)bytes; return NULL; }
void vlm_cuda_free(void *p) { (void)p; }
void vlm_cuda_memcpy(void *dst, int dd, const void *src, int sd, size_t bytes) {
  VLM_CHECK(0, "CUDA memcpy in a build without CUDA");
}
void vlm_cuda_add_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *b) {
  VLM_CHECK(0, "CUDA tensor in a build without CUDA");
}
void vlm_cuda_add_backward(vlm_tensor *da, vlm_tensor *db, const vlm_tensor *dout) {
  VLM_CHECK(0, "CUDA tensor in a build without CUDA");
}
void vlm_cuda_fill(vlm_tensor *t, float value) { VLM_CHECK(0, "CUDA tensor in a build without CUDA"); }
