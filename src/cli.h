/* cli.h -- internal to the coil CLI: parsed options and shared helpers. */
#ifndef COIL_CLI_H
#define COIL_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "engine.h"
#include "error.h"
#include "model.h"
#include "state.h"
#include "tokenizer.h"

#define CLI_MAX_POS 4

typedef struct cli_opts {
    const char *model, *ids, *out, *in, *prompt, *backend, *db, *name, *file, *text, *session, *doc, *sync;
    const char *key; /* session append: request key (the append happens at most once) */
    const char *strategy, *answer; /* ask */
    int64_t evidence, candidates, budget; /* ask */
    const char *connect; /* --connect ENDPOINT: run against a coild server */
    const char *timeout; /* --timeout SECONDS with --connect (parsed by cli_remote) */
    const char *pos[CLI_MAX_POS]; /* positional arguments after the command (and sub-command) */
    int n_pos;
    int64_t chunk, n_new, at, interval, limit;
    int threads;
    double temperature, top_p;
    double progress_s; /* --progress S: seconds between progress lines in a log (0 = default) */
    uint64_t seed;
    bool replace, append, decode, cascade, quiet, skip_special, help, binary, temperature_set;
} cli_opts_t;

/* Model + engine + tokenizer (if DIR has tokenizer.json) + a zero state. */
typedef struct cli_rt {
    coil_model_t *m;
    coil_engine_t *e;
    coil_state_t *st;
    coil_tokenizer_t *tok; /* NULL when the model directory has none */
    int64_t n_valid;       /* ids that may be sampled */
} cli_rt_t;

int cli_usage(const char *msg);
int cli_fail(const coil_err_t *err);
/* Opens o->model (or the default model) with engine options from o. */
int cli_rt_open(const cli_opts_t *o, cli_rt_t *r, coil_err_t *err);
void cli_rt_free(cli_rt_t *r);
/* COIL_ENOTFOUND with a clear message when the model has no tokenizer. */
int cli_need_tokenizer(const cli_rt_t *r, coil_err_t *err);
/* Reads a whole file ("-" = stdin) up to max bytes. Caller frees. */
int cli_read_all(const char *path, size_t max, char **buf, size_t *len, coil_err_t *err);
/* Text of --text or --file (exactly one required). Caller frees. */
int cli_text_arg(const cli_opts_t *o, char **buf, size_t *len, coil_err_t *err);
/* Samples o->n_new tokens from st, printing text (or ids without a
 * tokenizer) as they come; the ids are returned in *out (caller frees). */
int cli_generate_from(const cli_opts_t *o, cli_rt_t *r, int64_t grid, int32_t **out, int64_t *n_out,
                      coil_err_t *err);
/* Writes len bytes to path atomically (temp file, fsync, rename). */
int cli_write_atomic(const char *path, const void *data, size_t len, coil_err_t *err);

/* Writes n bytes of stored or generated text to f.  On a terminal, control
 * characters other than newline and tab (C0, DEL, C1) are shown escaped as
 * \xNN (\\ for a backslash) so stored bytes can never drive the terminal;
 * elsewhere the bytes go out as they are. */
void cli_put_text(FILE *f, const char *s, size_t n);
/* One search hit, numbered k (1-based), as local and remote search print it:
 * the matched byte ranges of the snippet (marks, n_marks pairs) in bold on a
 * terminal and between \u00ab \u00bb elsewhere. */
void cli_print_hit(int k, const char *doc, int64_t chunk, int64_t token_start, int64_t token_end,
                   int64_t byte_start, int64_t byte_end, double score, const char *snippet, const int64_t *marks,
                   size_t n_marks);
/* What ask prints after the answer's text (local and remote alike): the
 * scored answer's log-probability (when scored), the strategy and why, the
 * search, the evidence, from an ask result in its protocol form. */
struct json_t;
void cli_print_ask_tail(const struct json_t *res, int scored);
/* What search prints when nothing matched. */
#define CLI_NO_MATCHES "no matches"

/* `coil --connect EP <cmd> ...`: the command against a server (cli_remote.c). */
int cli_remote(const char *cmd, const cli_opts_t *o);

int cli_cmd_ingest(const cli_opts_t *o);
int cli_cmd_docs(const cli_opts_t *o);
int cli_cmd_search(const cli_opts_t *o);
int cli_cmd_session(const cli_opts_t *o);
int cli_cmd_sessions(const cli_opts_t *o);
int cli_cmd_score(const cli_opts_t *o);
int cli_cmd_state(const cli_opts_t *o);
int cli_cmd_check(const cli_opts_t *o);
int cli_cmd_ask(const cli_opts_t *o);
/* generate --db with --session or --doc */
int cli_cmd_generate_stored(const cli_opts_t *o);

#endif
