/* vlm: vision-language models in C. Dispatches to the subcommands. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apps/apps.h"
#include "core/core.h"

typedef struct {
  const char *name;
  int (*fn)(int argc, char **argv);
  const char *summary;
} command;

static const command k_commands[] = {
  {"version", vlm_cmd_version, "print the version, the CPU features and the GPU backend"},
  {"info", vlm_cmd_info, "show a CLIP or CoCa checkpoint's config, parameter counts and format"},
  {"forward", vlm_cmd_forward, "run a CLIP or CoCa model on a batch; write outputs (and gradients)"},
  {"convert", vlm_cmd_convert, "write a CLIP or CoCa checkpoint (open_clip layout; CLIP: also Hugging Face)"},
  {"preprocess", vlm_cmd_preprocess, "decode images and apply CLIP preprocessing (PIL-exact) to safetensors"},
  {"tokenize", vlm_cmd_tokenize, "captions -> CLIP BPE token ids (JSON lines)"},
  {"bpe-train", vlm_cmd_bpe_train, "learn a BPE vocabulary (vocab.json + merges.txt) from captions"},
  {"shapes", vlm_cmd_shapes, "write the synthetic shapes set (PNG files + captions.tsv)"},
  {"caption", vlm_cmd_caption, "caption images with a CoCa model (greedy, beam search, top-k/top-p)"},
  {"zeroshot", vlm_cmd_zeroshot, "zero-shot classify images (or --eval an ImageFolder) with class prompts"},
  {"index", vlm_cmd_index, "embed a folder of images (or captions) into a searchable index"},
  {"search", vlm_cmd_search, "nearest items of an index for a text or an image query"},
  {"eval", vlm_cmd_eval, "retrieval recall@K / ranks and zero-shot accuracy of a model on held-out data"},
  {"train", vlm_cmd_train, "train a CLIP or CoCa model (open_clip flags; --train-data shapes: the demo)"},
};
#define N_COMMANDS (int)(sizeof k_commands / sizeof k_commands[0])

/* libgomp's default barriers spin 300,000 times before sleeping: a large
 * handicap whenever anything else wants the cores (the loader's decoding
 * threads in training, `vlm index` and `vlm eval`; other processes). Fully
 * passive ones (a futex sleep and wake between every two small ops) cost a
 * third of a small model's training step. So every command runs with
 * OMP_WAIT_POLICY=PASSIVE and a short spin before the sleep, unless the user set
 * either variable: GOMP_SPINCOUNT=30000 when the cores are free, 1000 when other
 * tasks are running and they with this command's threads outnumber the CPUs
 * (vlm_omp_spin_count in core/core.h). A spinning thread holds a core that the thread
 * it waits for may need: on 2 cores, 100 steps of the shapes model took 32.1-35.2 s
 * with 30000 spins beside one busy process against 11.4-12.3 s with 1000, and two
 * such trainings side by side 38.7-40.5 s each against 11.7-12.0 s. Alone, 1000
 * spins cost a small model's training 18-28% (the shapes CLIP and CoCa, medians of
 * 5 runs: 8.0 s against 6.8 s, 15.1 s against 11.8 s). libgomp reads the variables
 * when it loads, so vlm re-executes itself once with them set (and goes on as it is
 * if it cannot). */
static void passive_openmp(int argc, char **argv) {
  if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
  long long threads = 0;   /* the count the command will use: --threads N, else VLM_THREADS / OpenMP's */
  if (argc > 2 && !strcmp(argv[1], "--threads")) threads = strtoll(argv[2], NULL, 10);
  if (threads <= 0 || threads > VLM_MAX_THREADS) threads = vlm_threads_resolve(0);
  const int others = vlm_runnable_others();
  const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  const int spin = vlm_omp_spin_count(others, (int)threads, cpus > 0 ? (int)cpus : 0);
  char spin_s[16];
  snprintf(spin_s, sizeof spin_s, "%d", spin);
  vlm_log(VLM_LOG_DEBUG, "OpenMP: OMP_WAIT_POLICY=PASSIVE GOMP_SPINCOUNT=%s (%d other tasks running, %lld threads, %ld CPUs)",
          spin_s, others, threads, cpus);
  if (setenv("OMP_WAIT_POLICY", "PASSIVE", 1) != 0 || setenv("GOMP_SPINCOUNT", spin_s, 1) != 0) return;
  execv("/proc/self/exe", argv);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: vlm [--threads N] COMMAND [ARGS...]\n"
          "       vlm --version (as 'vlm version') | --help\n"
          "\n"
          "Vision-language models (CLIP, CoCa) in C. Commands:\n");
  for (int i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-12s %s\n", k_commands[i].name, k_commands[i].summary);
  fprintf(f,
          "\n"
          "Run 'vlm COMMAND --help' for a command's options.\n"
          "Environment: VLM_THREADS (CPU threads), VLM_LOG (error|warn|info|debug),\n"
          "VLM_KERNELS=ref (plain reference kernels, for debugging), VLM_PROGRESS_EVERY=SECONDS\n"
          "(progress lines of index, zeroshot and eval in a log; default 10). Unless OMP_WAIT_POLICY or\n"
          "GOMP_SPINCOUNT is set, vlm sets OMP_WAIT_POLICY=PASSIVE and GOMP_SPINCOUNT=30000, or 1000\n"
          "when other running tasks and its threads outnumber the CPUs (idle OpenMP threads sleep\n"
          "after a short spin instead of holding the cores; VLM_LOG=debug shows the choice).\n");
}

/* What a command printed on stdout must have reached it: on a full disk (`vlm search --json >
 * out.json`) or a device that refuses it, stdio's buffered writes fail without telling the
 * command. So the buffer is flushed here, and a write that failed at any time makes a command
 * that succeeded exit 1, with a message naming stdout. A command that failed keeps its status. */
static int finish_stdout(const char *cmd, int rc) {
  errno = 0;
  int bad = fflush(stdout) != 0;
  int e = errno;
  bad |= ferror(stdout) != 0;
  if (!bad || rc != 0) return rc;
  fprintf(stderr, "%s%s: standard output: cannot write%s%s\n", cmd ? "vlm " : "vlm", cmd ? cmd : "", e ? ": " : "",
          e ? strerror(e) : "");
  return 1;
}

static int run_command(int argc, char **argv);

int main(int argc, char **argv) {
  int rc = run_command(argc, argv);
  int i = 1;   /* the command's name, for the message */
  while (i < argc && argv[i][0] == '-') i += !strcmp(argv[i], "--threads") ? 2 : 1;
  return finish_stdout(i < argc ? argv[i] : NULL, rc);
}

static int run_command(int argc, char **argv) {
  passive_openmp(argc, argv);
  /* Ctrl-C, kill, a closed terminal: no temporary file of a write in progress stays behind
   * (the target keeps its old content); the exit status is still the signal's. */
  vlm_atomic_cleanup_on_signals();
  int i = 1;
  long long threads = 0;
  while (i < argc && argv[i][0] == '-') {
    if (vlm_app_is_help(argv[i])) {
      usage(stdout);
      return 0;
    }
    if (!strcmp(argv[i], "--threads")) {
      const char *v = vlm_app_value("vlm", argc, argv, &i);
      if (!v || !vlm_app_parse_int("vlm", "--threads", v, 1, 4096, &threads)) return 2;
      i++;
      continue;
    }
    if (!strcmp(argv[i], "--version")) return vlm_cmd_version(1, argv);
    return vlm_app_bad_arg("vlm", argv[i]);
  }
  if (i >= argc) {
    usage(stderr);
    return 2;
  }
  const char *env_threads = getenv("VLM_THREADS");
  if (!threads && env_threads && *env_threads &&
      !vlm_app_parse_int("vlm", "VLM_THREADS", env_threads, 1, 4096, &threads))
    return 2;
  vlm_app_threads_explicit = threads > 0 || getenv("OMP_NUM_THREADS") != NULL;
  vlm_threads_init((int)threads);
  for (int c = 0; c < N_COMMANDS; c++)
    if (!strcmp(argv[i], k_commands[c].name)) return k_commands[c].fn(argc - i, argv + i);
  fprintf(stderr, "vlm: unknown command '%s' (see 'vlm --help')\n", argv[i]);
  return 2;
}
