/* libFuzzer target: the COCO captions source on arbitrary bytes (the annotations
 * JSON). Opening either fails naming the file or indexes the captions; then every
 * sample is read (the images point into an empty folder, so reads fail cleanly),
 * each failure naming the file, and a read caption is NUL-terminated text. */
#define _POSIX_C_SOURCE 200809L
#include "source_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char dir[64], imgs[96], path[128];
  if (!dir[0]) {
    fuzz_make_dir(dir, sizeof dir, "coco");
    snprintf(imgs, sizeof imgs, "%s/images", dir);
    mkdir(imgs, 0700);
    snprintf(path, sizeof path, "%s/captions.json", dir);
  }
  if (!fuzz_write_file(path, data, size)) return 0;
  vlm_source_opts o;
  vlm_source_opts_default(&o);
  o.type = VLM_DS_COCO;
  o.coco_images = imgs;
  fuzz_source_run(path, &o, "captions.json", imgs);
  return 0;
}
