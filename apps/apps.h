/* apps: the vlm command. main.c dispatches to one function per subcommand,
 * each in apps/cmd_NAME.c. Every subcommand takes --help, prints errors as
 * "vlm NAME: message" on stderr and returns the process exit code
 * (0 ok, 1 failure, 2 usage error). */
#ifndef VLM_APPS_H
#define VLM_APPS_H
#include <stdint.h>

#include "core/core.h"
#include "vision/vision.h"

int vlm_cmd_version(int argc, char **argv);
int vlm_cmd_info(int argc, char **argv);
int vlm_cmd_forward(int argc, char **argv);
int vlm_cmd_convert(int argc, char **argv);
int vlm_cmd_preprocess(int argc, char **argv);
int vlm_cmd_tokenize(int argc, char **argv);
int vlm_cmd_bpe_train(int argc, char **argv);
int vlm_cmd_shapes(int argc, char **argv);
int vlm_cmd_caption(int argc, char **argv);
/* CoCa checkpoints in `vlm info` / `vlm forward` (apps/cmd_coca.c). */
int vlm_app_coca_info(const char *model);
int vlm_app_coca_forward(const char *model, const char *inputs, const char *out, const char *grads, int bf16,
                         vlm_device dev);
int vlm_app_is_coca_name_or_model(const char *init_name, const char *model);
int vlm_app_coca_convert(const char *model, const char *config, const char *init, int to_hf, int torch,
                         const char *out, uint64_t seed);
/* vlm convert into OUT, about to write cfg_name + weights_name: 0 when vlm will read those
 * from OUT, or when the weights it reads first hold this same model (same(OUT, ctx) loads OUT
 * as it is now and returns 1 when config and parameters equal the ones written: LAION's
 * directories hold one model in several files); else 1 after a message naming the file that
 * would be read instead, before anything is written (apps/cmd_convert.c). */
/* vlm convert: the source model's tokenizer files staged into OUT (written whole, not yet
 * renamed; none found: n = 0), then renamed into place together once the model is written, or
 * removed when it is not. model NULL (--init): none. When the source has none but OUT holds a
 * tokenizer from before (stale), commit warns that it will be used with the new weights.
 * stage and commit return 0, or 1 after a message. */
typedef struct { vlm_atomic_file af[2]; int n; char source[4096], stale[4096]; } vlm_app_staged_tokenizer;
int vlm_app_tokenizer_stage(const char *model, const char *out, vlm_app_staged_tokenizer *t);
int vlm_app_tokenizer_commit(vlm_app_staged_tokenizer *t, const char *out);
void vlm_app_tokenizer_abort(vlm_app_staged_tokenizer *t);
int vlm_app_convert_shadow(const char *out, const char *cfg_name, const char *weights_name,
                           int (*same)(const char *dir, void *ctx), void *ctx);
int vlm_cmd_zeroshot(int argc, char **argv);
int vlm_cmd_index(int argc, char **argv);
int vlm_cmd_search(int argc, char **argv);
int vlm_cmd_train(int argc, char **argv);
int vlm_cmd_eval(int argc, char **argv);

/* Shared helpers for subcommands (apps/common.c). */
int vlm_app_is_help(const char *arg);              /* -h or --help */
/* "images: ..." for vlm info: the eval transform v's config names (size, resize mode, mean, std). */
void vlm_app_print_image_transform(const vlm_vit_config *v);
/* The option parsers' usage errors, one line on stderr each; both return 2 (the exit
 * status). cmd is "vlm NAME". vlm_app_bad_arg: arg is an option the command does not
 * have ("unknown option '--x'"), or an argument where the command takes none
 * ("unexpected argument 'x'"), with a pointer to 'vlm NAME --help' ("vlm" alone: the
 * global options). */
int vlm_app_bad_arg(const char *cmd, const char *arg);
/* argv[*i] is an option that takes a value: the value (and *i moves to it), or NULL
 * after printing "vlm NAME: --x needs a value" when it is the last argument. */
const char *vlm_app_value(const char *cmd, int argc, char **argv, int *i);
/* --precision f32|bf16 and --device cpu|cuda of the embedding commands (index,
 * zeroshot, eval, search): their vlm_encoder_open flags, or -1 after printing the
 * error (a usage error: exit 2). */
int vlm_app_encoder_flags(const char *cmd, const char *precision, const char *device);
/* Parse "--threads N" style integers; prints an error and returns 0 on failure. */
/* R,G,B or one number for all three (--mean, --image-std, ...) into v; 0 with a message
 * "CMD: FLAG expects ..." on stderr otherwise. */
int vlm_app_parse_rgb(const char *cmd, const char *flag, const char *s, double v[3]);
int vlm_app_parse_int(const char *cmd, const char *flag, const char *s, long long lo, long long hi, long long *out);
/* "./a//b/./c/" -> "a/b/c" in place (".." kept). */
void vlm_app_clean_path(char *p);
/* Whether a and b name the same file: the same inode when both exist, else the same clean path. */
int vlm_app_same_file(const char *a, const char *b);
/* `vlm forward --inputs`: read and validate `images` [B,3,S,S] (read as F32) and `text`
 * [B,L<=ctx] (I64 or I32, ids in [0, vocab)) of a safetensors file; errors are printed
 * as "vlm forward: ...". Returns 1 on success (the caller frees *images and *ids). */
int vlm_app_read_inputs(const char *path, int64_t S, int64_t ctx, int64_t vocab, float **images, void **ids,
                        vlm_dtype *ids_dt, int64_t *B, int64_t *L);
/* Ranks (apps/comm_mpi.c): join MPI when the process was started by mpirun / srun as
 * one of several (0, or an exit code after printing why not); the ranks on this node;
 * leave (a non-zero rc aborts every rank). */
int vlm_app_ranks_start(const char *cmd);
int vlm_app_ranks_local(void);
int vlm_app_ranks_local_rank(void);   /* this rank's place among them (0: alone) */
void vlm_app_ranks_stop(int rc);
/* --threads N or VLM_THREADS was given (apps/main.c): a rank keeps that count. */
extern int vlm_app_threads_explicit;
#endif
