/* The CUDA path: device memory, fill, and the add op (forward + backward)
 * against the CPU reference. Skips, visibly, where no GPU is present. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gradcheck.h"

int main(void) {
  if (!vlm_cuda_available()) {
    char why[512];
    snprintf(why, sizeof why, "no GPU here (%s)", vlm_cuda_describe());
    vt_skip(why);
  }
  printf("GPU: %s\n", vlm_cuda_describe());
  const int64_t R = 37, C = 129, n = R * C;
  float *a = vt_alloc(n), *b = vt_alloc(C), *dout = vt_alloc(n), *out = vt_alloc(n);
  float *ref_out = vt_alloc(n), *da = vt_alloc(n), *db = vt_alloc(C), *ref_da = vt_alloc(n), *ref_db = vt_alloc(C);
  vt_fill_normal(a, n, 1, 1.0f);
  vt_fill_normal(b, C, 2, 1.0f);
  vt_fill_normal(dout, n, 3, 1.0f);
  for (int64_t i = 0; i < n; i++) ref_da[i] = da[i] = 0.5f;   /* backward accumulates */
  for (int64_t j = 0; j < C; j++) ref_db[j] = db[j] = -0.25f;

  int64_t s2[2] = {R, C}, s1[1] = {C};
  vlm_tensor ha = vlm_tensor_cpu_f32(a, 2, s2), hb = vlm_tensor_cpu_f32(b, 1, s1);
  vlm_tensor hout = vlm_tensor_cpu_f32(ref_out, 2, s2), hdout = vlm_tensor_cpu_f32(dout, 2, s2);
  vlm_tensor hda = vlm_tensor_cpu_f32(ref_da, 2, s2), hdb = vlm_tensor_cpu_f32(ref_db, 1, s1);
  vlm_set_kernel_mode(VLM_KERNELS_REF);
  vlm_add_forward(&hout, &ha, &hb);
  vlm_add_backward(&hda, &hdb, &hdout);

  vlm_arena ar;
  CHECK(vlm_arena_init(&ar, 8 * (size_t)n * sizeof(float), VLM_CUDA) == VLM_OK, "cuda arena: %s", vlm_last_error());
  vlm_tensor ga = vlm_arena_tensor2(&ar, VLM_F32, R, C), gb = vlm_arena_tensor1(&ar, VLM_F32, C);
  vlm_tensor gout = vlm_arena_tensor2(&ar, VLM_F32, R, C), gdout = vlm_arena_tensor2(&ar, VLM_F32, R, C);
  vlm_tensor gda = vlm_arena_tensor2(&ar, VLM_F32, R, C), gdb = vlm_arena_tensor1(&ar, VLM_F32, C);
  vlm_copy(&ga, &ha);
  vlm_copy(&gb, &hb);
  vlm_copy(&gdout, &hdout);
  vlm_fill(&gda, 0.5f);
  vlm_fill(&gdb, -0.25f);
  vlm_add_forward(&gout, &ga, &gb);
  vlm_add_backward(&gda, &gdb, &gdout);
  vlm_tensor back = vlm_tensor_cpu_f32(out, 2, s2), back_da = vlm_tensor_cpu_f32(da, 2, s2);
  vlm_tensor back_db = vlm_tensor_cpu_f32(db, 1, s1);
  vlm_copy(&back, &gout);
  vlm_copy(&back_da, &gda);
  vlm_copy(&back_db, &gdb);
  CHECK(vt_max_abs(out, ref_out, n) == 0.0, "add forward on the GPU equals the CPU");
  CHECK(vt_max_abs(da, ref_da, n) == 0.0, "add backward da on the GPU equals the CPU");
  CHECK(vt_max_rel(db, ref_db, C, 1e-30) < 1e-5, "add backward db on the GPU: %g",
        vt_max_rel(db, ref_db, C, 1e-30));
  if (strstr(vlm_cuda_describe(), "emulated")) {
    /* The emulated GPU's point: a host read of device memory faults (in a child). */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      volatile float x = ((const float *)ga.data)[5];
      (void)x;
      _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    /* SIGSEGV, or (under AddressSanitizer, whose handler reports the fault) a failed exit */
    CHECK((WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV) || (WIFEXITED(status) && WEXITSTATUS(status) != 0),
          "emulated GPU: a host read of device memory must fault (status %d)", status);
    float v = vlm_get_f32(&ga, 5);
    CHECK(v == a[5], "emulated GPU: vlm_get_f32 reads device memory (%g vs %g)", v, a[5]);
  }
  /* a pinned host buffer uploads and unpins (cudaHostRegister on a real GPU) */
  int pinned = vlm_host_pin(a, (size_t)n * sizeof(float));
  printf("host buffer pinned: %s\n", pinned ? "yes" : "no (pageable copies)");
  vlm_copy(&ga, &ha);
  vlm_copy(&back, &ga);
  CHECK(vt_max_abs(out, a, n) == 0.0, "an upload from a pinned buffer round-trips");
  if (pinned) vlm_host_unpin(a);
  vlm_arena_free(&ar);
  free(a); free(b); free(dout); free(out); free(ref_out); free(da); free(db); free(ref_da); free(ref_db);
  return vt_finish();
}
