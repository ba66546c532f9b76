/* Helpers shared by the subcommands. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/apps.h"

int vlm_app_is_help(const char *arg) { return !strcmp(arg, "-h") || !strcmp(arg, "--help"); }

int vlm_app_parse_int(const char *cmd, const char *flag, const char *s, long long lo, long long hi, long long *out) {
  char *end = NULL;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || !end || *end || end == s || v < lo || v > hi) {
    fprintf(stderr, "%s: %s expects an integer in [%lld, %lld], got '%s'\n", cmd, flag, lo, hi, s);
    return 0;
  }
  *out = v;
  return 1;
}
