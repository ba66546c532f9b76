/* libFuzzer target: the CSV/TSV source on arbitrary bytes. The first byte picks the
 * separator (odd: ',', even: tab); the rest is the file. Opening either fails naming the
 * file or indexes it; then every record is read (image paths point into an empty folder, so
 * reads fail cleanly), each failure naming the file. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/datasets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char dir[64], path[128];
  if (!dir[0]) {
    snprintf(dir, sizeof dir, "/tmp/vlm_fuzz_csv_%d", (int)getpid());
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/f.csv", dir);
  }
  if (size == 0) return 0;
  FILE *f = fopen(path, "wb");
  if (!f) return 0;
  fwrite(data + 1, 1, size - 1, f);
  fclose(f);
  vlm_source_opts o;
  vlm_source_opts_default(&o);
  o.type = VLM_DS_CSV;
  o.csv_separator = (data[0] & 1) ? ',' : '\t';
  o.csv_img_key = "i";
  o.csv_caption_key = "c";
  vlm_source *s;
  if (vlm_source_open(&s, path, &o) != VLM_OK) {
    if (!strstr(vlm_last_error(), "f.csv")) {
      fprintf(stderr, "open error does not name the file: %s\n", vlm_last_error());
      abort();
    }
    return 0;
  }
  int64_t n = vlm_source_size(s);
  for (int64_t i = 0; i < n && i < 2000; i++) {
    vlm_sample sm;
    if (vlm_source_get(s, i, &sm) != VLM_OK && !strstr(vlm_last_error(), "f.csv")) {
      fprintf(stderr, "record error does not name the file: %s\n", vlm_last_error());
      abort();
    }
    vlm_sample_free(&sm);
  }
  vlm_source_close(s);
  return 0;
}
