/* libFuzzer target: the COCO captions source on arbitrary bytes (the annotations
 * JSON). Opening either fails naming the file or indexes the captions; then every
 * sample is read (the images point into an empty folder, so reads fail cleanly),
 * each failure naming the file, and a read caption is NUL-terminated text. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/datasets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char dir[64], imgs[96], path[128];
  if (!dir[0]) {
    snprintf(dir, sizeof dir, "/tmp/vlm_fuzz_coco_%d", (int)getpid());
    mkdir(dir, 0700);
    snprintf(imgs, sizeof imgs, "%s/images", dir);
    mkdir(imgs, 0700);
    snprintf(path, sizeof path, "%s/captions.json", dir);
  }
  FILE *f = fopen(path, "wb");
  if (!f) return 0;
  if (size) fwrite(data, 1, size, f);
  fclose(f);
  vlm_source_opts o;
  vlm_source_opts_default(&o);
  o.type = VLM_DS_COCO;
  o.coco_images = imgs;
  vlm_source *s;
  if (vlm_source_open(&s, path, &o) != VLM_OK) {
    if (!strstr(vlm_last_error(), "captions.json")) {
      fprintf(stderr, "open error does not name the file: %s\n", vlm_last_error());
      abort();
    }
    return 0;
  }
  int64_t n = vlm_source_size(s);
  for (int64_t i = 0; i < n && i < 2000; i++) {
    vlm_sample sm;
    if (vlm_source_get(s, i, &sm) != VLM_OK && !strstr(vlm_last_error(), "captions.json") &&
        !strstr(vlm_last_error(), imgs)) {
      fprintf(stderr, "sample error names neither the file nor the image folder: %s\n", vlm_last_error());
      abort();
    }
    vlm_sample_free(&sm);
  }
  vlm_source_close(s);
  return 0;
}
