/* The device-placement API of the CLIP model, on the CPU (runs everywhere):
 * vlm_clip_params_to_device / _copy / _init_on, vlm_clip_acts_init_on,
 * vlm_clip_batch_init_on / _upload, and the device-aware scalar helpers
 * (vlm_get_f32, vlm_set_f32, vlm_scale, vlm_dot): a forward + backward through
 * them equals the plain path bit for bit, and bad arguments are refused.
 * argv[1]: the shared folder (tiny-clip fixture). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "model/model.h"

static void scalar_helpers(void) {
  float a[5] = {1, -2, 3, 0.5f, 4}, b[5] = {2, 2, -1, 4, 0.25f};
  int64_t n = 5;
  vlm_tensor ta = vlm_tensor_cpu_f32(a, 1, &n), tb = vlm_tensor_cpu_f32(b, 1, &n);
  CHECK(vlm_get_f32(&ta, 2) == 3.0f, "vlm_get_f32");
  vlm_set_f32(&ta, 3, 7.0f);
  CHECK(a[3] == 7.0f, "vlm_set_f32");
  CHECK(vlm_dot(&ta, &tb) == 2.0 - 4.0 - 3.0 + 28.0 + 1.0, "vlm_dot: %g", vlm_dot(&ta, &tb));
  vlm_scale(&ta, 0.5f);
  CHECK(a[0] == 0.5f && a[1] == -1.0f && a[4] == 2.0f, "vlm_scale");
}

int main(int argc, char **argv) {
  scalar_helpers();
  const char *shared = vt_shared_dir(argc, argv);
  if (!shared) vt_skip("no shared folder (argv[1] or VLM_SHARED_DIR)");
  char dir[3000], path[3200];
  snprintf(dir, sizeof dir, "%s/fixtures/tiny-clip", shared);
  vlm_safetensors in;
  snprintf(path, sizeof path, "%s/inputs.safetensors", dir);
  if (vlm_st_open(&in, path) != VLM_OK) {
    CHECK(0, "%s", vlm_last_error());
    return vt_finish();
  }
  vlm_clip_config c;
  vlm_clip_params p;
  vlm_ckpt_format fmt;
  snprintf(path, sizeof path, "%s/config.json", dir);
  CHECK(vlm_clip_load(path, &c, &p, &fmt) == VLM_OK, "%s", vlm_last_error());
  vlm_tensor images = vlm_st_tensor(vlm_st_find(&in, "images")), text = vlm_st_tensor(vlm_st_find(&in, "text"));
  int64_t B = images.shape[0], L = text.shape[1];

  /* the plain path */
  vlm_clip_acts s1;
  vlm_clip_params g1;
  CHECK(vlm_clip_acts_init(&s1, &c, B, L, 1) == VLM_OK && vlm_clip_params_init(&g1, &c) == VLM_OK, "%s",
        vlm_last_error());
  float l1 = vlm_clip_forward(&c, &p, &s1, &images, &text);
  vlm_clip_backward(&c, &p, &g1, &s1, &text);

  /* through the placement API (device = CPU) */
  vlm_clip_params p2, g2;
  vlm_clip_acts s2;
  vlm_clip_batch bt;
  CHECK(vlm_clip_params_to_device(&p2, &p, &c, VLM_CPU) == VLM_OK, "%s", vlm_last_error());
  CHECK(p2.arena.base != p.arena.base && !memcmp(p2.arena.base, p.arena.base, p.arena.used), "params copied");
  CHECK(vlm_clip_params_init_on(&g2, &c, VLM_CPU) == VLM_OK, "%s", vlm_last_error());
  CHECK(vlm_clip_acts_init_on(&s2, &c, B, L, 1, VLM_CPU) == VLM_OK, "%s", vlm_last_error());
  CHECK(vlm_clip_batch_init_on(&bt, &c, B, L, VLM_I64, VLM_CPU) == VLM_OK, "%s", vlm_last_error());
  vlm_clip_batch_upload(&bt, &images, &text);
  CHECK(!memcmp(bt.images.data, images.data, vlm_nbytes(&images)) && !memcmp(bt.ids.data, text.data, vlm_nbytes(&text)),
        "batch uploaded");
  vlm_fill(&g2.logit_scale, 5.0f);
  vlm_clip_params_zero(&g2);
  CHECK(vlm_get_f32(&g2.logit_scale, 0) == 0.0f, "vlm_clip_params_zero");
  float l2 = vlm_clip_forward(&c, &p2, &s2, &bt.images, &bt.ids);
  vlm_clip_backward(&c, &p2, &g2, &s2, &bt.ids);
  CHECK(l1 == l2, "loss through the placement API %.9g, plain %.9g", l2, l1);
  CHECK(!memcmp(g1.arena.base, g2.arena.base, g1.arena.used), "gradients through the placement API differ");
  vlm_clip_params back;
  CHECK(vlm_clip_params_init(&back, &c) == VLM_OK, "%s", vlm_last_error());
  vlm_clip_params_copy(&back, &g2);
  CHECK(!memcmp(back.arena.base, g1.arena.base, g1.arena.used), "vlm_clip_params_copy");

  /* bad arguments */
  vlm_clip_batch bad;
  CHECK(vlm_clip_batch_init_on(&bad, &c, 0, L, VLM_I64, VLM_CPU) != VLM_OK && strstr(vlm_last_error(), "batch"),
        "batch of 0 refused: %s", vlm_last_error());
  CHECK(vlm_clip_batch_init_on(&bad, &c, B, L, VLM_F32, VLM_CPU) != VLM_OK, "F32 ids refused");
  vlm_clip_acts s3;
  vlm_status st3 = vlm_clip_acts_init_on(&s3, &c, B, c.text.context_length + 1, 1, VLM_CPU);
  CHECK(st3 != VLM_OK, "over-long text refused");
  if (st3 == VLM_OK) vlm_clip_acts_free(&s3);
  if (!vlm_cuda_available()) {
    vlm_clip_params pc;
    CHECK(vlm_clip_params_init_on(&pc, &c, VLM_CUDA) != VLM_OK && strstr(vlm_last_error(), "GPU"),
          "params on a missing GPU: an error, not a crash (%s)", vlm_last_error());
  }
  printf("placement API: loss %.7f equal to the plain path, gradients identical\n", l2);

  vlm_clip_params_free(&back);
  vlm_clip_batch_free(&bt);
  vlm_clip_acts_free(&s1);
  vlm_clip_acts_free(&s2);
  vlm_clip_params_free(&g1);
  vlm_clip_params_free(&p2);
  vlm_clip_params_free(&g2);
  vlm_clip_params_free(&p);
  vlm_st_close(&in);
  return vt_finish();
}
