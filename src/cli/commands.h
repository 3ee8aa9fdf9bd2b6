/*
 * commands.h - the `fleetvault` subcommands. Each takes the arguments after its own name
 * (argv[0] is the subcommand name), prints its result or a clear error, and returns the
 * process exit status (0 success, 1 failure, 2 bad usage).
 */
#ifndef FV_CLI_COMMANDS_H
#define FV_CLI_COMMANDS_H

#define FV_VERSION "0.1.0" /* the one place the version is set */

int fv_cmd_serve(int argc, char **argv);     /* cli/cmd_serve.c */
int fv_cmd_certs(int argc, char **argv);     /* cli/cmd_certs.c */
int fv_cmd_simulate(int argc, char **argv);  /* cli/cmd_simulate.c */
int fv_cmd_inspect(int argc, char **argv);   /* cli/cmd_inspect.c */
int fv_cmd_send(int argc, char **argv);      /* cli/cmd_send.c */
int fv_cmd_keys(int argc, char **argv);      /* cli/cmd_keys.c */
int fv_cmd_query(int argc, char **argv);     /* cli/cmd_query.c */
int fv_cmd_principal(int argc, char **argv); /* cli/cmd_principal.c */
int fv_cmd_subject(int argc, char **argv);   /* cli/cmd_subject.c */
int fv_cmd_privacy(int argc, char **argv);   /* cli/cmd_privacy.c */
int fv_cmd_vpp(int argc, char **argv);       /* cli/cmd_vpp.c */
int fv_cmd_mcap(int argc, char **argv);      /* cli/cmd_mcap.c */

/* `fleetvault simulate --clips N ...` (cli/cmd_simclips.c): clip uploads. */
int fv_cmd_simulate_clips(int argc, char **argv);

/* `fleetvault vpp openadr ...` (cli/cmd_openadr.c); argv[0] is "openadr". */
int fv_cmd_vpp_openadr(int argc, char **argv);

/* One request to the running server's HTTP API (cli/cmd_query.c): GET or POST endpoint with
 * the query parameters pn[i]=pv[i] (NULL values left out), the principal's token read from
 * token_file; the answer is streamed to stdout. Returns the process exit code. */
int fv_cli_api(const char *prog, const char *method, const char *api, const char *endpoint,
               const char *const *pn, const char *const *pv, size_t np, const char *token_file);
/* The same request, its answer appended to into (NULL: standard output) and nothing printed:
 * *status is the HTTP status (0: no answer), err says what failed. Returns 0, 1 (failed) or 2
 * (no token file). */
struct fv_buf;
int fv_cli_api_fetch(const char *method, const char *api, const char *endpoint,
                     const char *const *pn, const char *const *pv, size_t np,
                     const char *token_file, struct fv_buf *into, long *status, char *err,
                     size_t errlen);
/* fv_cli_api as a POST whose body is the JSON text body. */
int fv_cli_api_post_json(const char *prog, const char *api, const char *endpoint,
                         const char *const *pn, const char *const *pv, size_t np,
                         const char *token_file, const char *body);
/* fv_cli_api_fetch as a POST whose body is the JSON text body. */
int fv_cli_api_post_fetch(const char *api, const char *endpoint, const char *const *pn,
                          const char *const *pv, size_t np, const char *token_file,
                          const char *body, struct fv_buf *into, long *status, char *err,
                          size_t errlen);
/* The options of an API client command (cli/cmd_query.c): argv[start..] as "NAME VALUE" for
 * each names[i] (vals[i] = VALUE), flags[i] alone (set[i] = 1), and at most one positional
 * argument (*pos, which is left as it was when none). Returns 0, or -1 for anything else (an
 * unknown option, a name without its value, a second positional argument). */
int fv_cli_parse_opts(int argc, char **argv, int start, const char *const *names, size_t n,
                      const char **vals, const char *const *flags, size_t nflags, int *set,
                      const char **pos);
int fv_cmd_audit(int argc, char **argv);    /* cli/cmd_audit.c */
int fv_cmd_dataset(int argc, char **argv);  /* cli/cmd_dataset.c */
int fv_cmd_campaign(int argc, char **argv); /* cli/cmd_campaign.c */
int fv_cmd_label(int argc, char **argv);    /* cli/cmd_label.c */
int fv_cmd_cluster(int argc, char **argv);  /* cli/cmd_cluster.c */

#endif
