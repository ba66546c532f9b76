/* What the C API tests share (they see only include/vlm.h and libc): the check macro with
 * its failure count, and the thread count of the process. */
#ifndef VLM_TESTS_CAPI_CHECK_H
#define VLM_TESTS_CAPI_CHECK_H
#include <dirent.h>
#include <stdio.h>

static int g_fail = 0;
#define CHECK(c, ...) do { if (!(c)) { g_fail++; printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)

/* Threads of this process (Linux: /proc/self/task), -1 when unknown. */
static inline int process_threads(void) {
  DIR *d = opendir("/proc/self/task");
  if (!d) return -1;
  int n = 0;
  for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}
#endif
