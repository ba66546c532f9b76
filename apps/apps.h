/* apps: the vlm command. main.c dispatches to one function per subcommand,
 * each in apps/cmd_NAME.c. Every subcommand takes --help, prints errors as
 * "vlm NAME: message" on stderr and returns the process exit code
 * (0 ok, 1 failure, 2 usage error). */
#ifndef VLM_APPS_H
#define VLM_APPS_H

int vlm_cmd_version(int argc, char **argv);
int vlm_cmd_info(int argc, char **argv);
int vlm_cmd_forward(int argc, char **argv);
int vlm_cmd_convert(int argc, char **argv);
int vlm_cmd_preprocess(int argc, char **argv);
int vlm_cmd_tokenize(int argc, char **argv);
int vlm_cmd_bpe_train(int argc, char **argv);
int vlm_cmd_shapes(int argc, char **argv);
int vlm_cmd_train(int argc, char **argv);

/* Shared helpers for subcommands (apps/common.c). */
int vlm_app_is_help(const char *arg);              /* -h or --help */
/* Parse "--threads N" style integers; prints an error and returns 0 on failure. */
int vlm_app_parse_int(const char *cmd, const char *flag, const char *s, long long lo, long long hi, long long *out);
#endif
