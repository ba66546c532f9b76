/* Shared by the dataset-source fuzz targets (fuzz_coco.c, fuzz_csv.c): a folder of the process's
 * own under /tmp, the input written to a file in it, and the run of a source over that file. */
#ifndef VLM_TESTS_SOURCE_FUZZ_H
#define VLM_TESTS_SOURCE_FUZZ_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/datasets.h"

/* dir[n] = /tmp/vlm_fuzz_TAG_PID, made. */
static void fuzz_make_dir(char *dir, size_t n, const char *tag) {
  snprintf(dir, n, "/tmp/vlm_fuzz_%s_%d", tag, (int)getpid());
  mkdir(dir, 0700);
}

/* n bytes (n may be 0) into path: 1, or 0 when the file cannot be opened. */
static int fuzz_write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return 0;
  if (n) fwrite(data, 1, n, f);
  fclose(f);
  return 1;
}

/* The source o names opened on path: a failure must name the file (`name`, a part of path);
 * then every sample (the first 2000) is read, each failure naming the file or, when not NULL,
 * `other`. Aborts with the message otherwise. */
static void fuzz_source_run(const char *path, const vlm_source_opts *o, const char *name, const char *other) {
  vlm_source *s;
  if (vlm_source_open(&s, path, o) != VLM_OK) {
    if (!strstr(vlm_last_error(), name)) {
      fprintf(stderr, "open error does not name the file: %s\n", vlm_last_error());
      abort();
    }
    return;
  }
  int64_t n = vlm_source_size(s);
  for (int64_t i = 0; i < n && i < 2000; i++) {
    vlm_sample sm;
    if (vlm_source_get(s, i, &sm) != VLM_OK && !strstr(vlm_last_error(), name) &&
        !(other && strstr(vlm_last_error(), other))) {
      if (other) fprintf(stderr, "sample error names neither the file nor %s: %s\n", other, vlm_last_error());
      else fprintf(stderr, "sample error does not name the file: %s\n", vlm_last_error());
      abort();
    }
    vlm_sample_free(&sm);
  }
  vlm_source_close(s);
}
#endif
