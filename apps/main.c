/* vlm: vision-language models in C. Dispatches to the subcommands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/apps.h"
#include "core/core.h"

typedef struct {
  const char *name;
  int (*fn)(int argc, char **argv);
  const char *summary;
} command;

static const command k_commands[] = {
  {"version", vlm_cmd_version, "print the version, the CPU features and the GPU backend"},
  {"info", vlm_cmd_info, "show a CLIP checkpoint's config, parameter counts and format"},
  {"forward", vlm_cmd_forward, "run a CLIP model on a batch; write outputs (and gradients)"},
  {"convert", vlm_cmd_convert, "write a CLIP checkpoint in open_clip or Hugging Face layout"},
  {"preprocess", vlm_cmd_preprocess, "decode images and apply CLIP preprocessing (PIL-exact) to safetensors"},
  {"tokenize", vlm_cmd_tokenize, "captions -> CLIP BPE token ids (JSON lines)"},
  {"bpe-train", vlm_cmd_bpe_train, "learn a BPE vocabulary (vocab.json + merges.txt) from captions"},
  {"shapes", vlm_cmd_shapes, "write the synthetic shapes set (PNG files + captions.tsv)"},
  {"train", vlm_cmd_train, "train a CLIP model (open_clip flags; --train-data shapes: the demo)"},
};
#define N_COMMANDS (int)(sizeof k_commands / sizeof k_commands[0])

static void usage(FILE *f) {
  fprintf(f,
          "usage: vlm [--threads N] COMMAND [ARGS...]\n"
          "\n"
          "Vision-language models (CLIP, CoCa) in C. Commands:\n");
  for (int i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-12s %s\n", k_commands[i].name, k_commands[i].summary);
  fprintf(f,
          "\n"
          "Run 'vlm COMMAND --help' for a command's options.\n"
          "Environment: VLM_THREADS (CPU threads), VLM_LOG (error|warn|info|debug),\n"
          "VLM_KERNELS=ref (plain reference kernels, for debugging).\n");
}

int main(int argc, char **argv) {
  int i = 1;
  long long threads = 0;
  while (i < argc && argv[i][0] == '-') {
    if (vlm_app_is_help(argv[i])) {
      usage(stdout);
      return 0;
    }
    if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
      if (!vlm_app_parse_int("vlm", "--threads", argv[i + 1], 1, 4096, &threads)) return 2;
      i += 2;
      continue;
    }
    if (!strcmp(argv[i], "--version")) return vlm_cmd_version(1, argv);
    fprintf(stderr, "vlm: unknown option '%s'\n", argv[i]);
    usage(stderr);
    return 2;
  }
  if (i >= argc) {
    usage(stderr);
    return 2;
  }
  vlm_threads_init((int)threads);
  for (int c = 0; c < N_COMMANDS; c++)
    if (!strcmp(argv[i], k_commands[c].name)) return k_commands[c].fn(argc - i, argv + i);
  fprintf(stderr, "vlm: unknown command '%s' (see 'vlm --help')\n", argv[i]);
  return 2;
}
