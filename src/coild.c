/* coild -- the coil service front: ZeroMQ routing to supervised workers.
 *
 *   coild [--config FILE] [--db FILE] [--ready-file FILE] [--quiet]
 *
 * With no --config, the defaults (schemas/coild.example.yaml documents every
 * key); a --config file that does not exist is an error.  --db overrides the
 * config's database.  --ready-file: written once every socket is bound and
 * every worker is ready, with the bound endpoints (so a config may say
 * tcp://127.0.0.1:* and let the system pick free ports); removed at exit.
 * The workers are coil-worker processes found next to coild (or
 * $COIL_WORKER_BIN).  SIGTERM/SIGINT: the workers drain and checkpoint, then
 * coild exits.
 */
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "coild_config.h"
#include "model.h"
#include "server.h"

static volatile sig_atomic_t g_stop;

static const char usage_line[] = "usage: coild [--config FILE] [--db FILE] [--ready-file FILE] [--quiet]\n";

static void help(void)
{
    fputs(usage_line, stdout);
    fputs("\n"
          "The coil service: a ZeroMQ front (requests, events) for coil-worker processes it starts\n"
          "and supervises.  SIGTERM or SIGINT: the workers checkpoint and hand their jobs back, and\n"
          "coild exits 0, removing its worker socket.\n"
          "\n"
          "  --config FILE      YAML settings (every key, with its default, in\n"
          "                     schemas/coild.example.yaml); without it, the defaults; a FILE\n"
          "                     that does not exist is an error\n"
          "  --db FILE          the database, over the config's `database`\n"
          "  --ready-file FILE  written once every socket is bound and every worker is ready:\n"
          "                     {\"clients\", \"events\", \"workers\", \"pid\"} with the bound endpoints\n"
          "                     (an endpoint tcp://HOST:* lets the system pick the port); removed\n"
          "                     at exit\n"
          "  --quiet            no log lines on stderr (errors still are)\n"
          "  --help, --version\n"
          "\n"
          "Environment: COIL_WORKER_BIN (coil-worker, default: next to coild), COIL_MODEL.\n",
          stdout);
}

static void on_term(int sig)
{
    (void)sig;
    g_stop = 1;
}

int main(int argc, char **argv)
{
    const char *cfg_path = NULL, *db = NULL, *ready = NULL;
    int quiet = 0, c;
    static const struct option lo[] = {{"config", 1, 0, 'c'}, {"db", 1, 0, 'd'},   {"ready-file", 1, 0, 'r'},
                                       {"quiet", 0, 0, 'q'},  {"help", 0, 0, 'h'}, {"version", 0, 0, 'V'},
                                       {0, 0, 0, 0}};
    while ((c = getopt_long(argc, argv, "c:qh", lo, NULL)) != -1) {
        switch (c) {
        case 'c': cfg_path = optarg; break;
        case 'd': db = optarg; break;
        case 'r': ready = optarg; break;
        case 'q': quiet = 1; break;
        case 'h': help(); return 0;
        case 'V': printf("coild %s\n", PACKAGE_VERSION); return 0;
        default: fputs(usage_line, stderr); return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "coild: unexpected argument '%s'\n%s", argv[optind], usage_line);
        return 2;
    }
    const char *dflt = coil_model_default_dir();
    if (!dflt)
        dflt = "";
    coil_err_t err = {0};
    coil_config_t *cfg = cfg_path ? coil_config_load(cfg_path, dflt, &err) : coil_config_defaults(dflt, &err);
    if (!cfg) {
        fprintf(stderr, "coild: %s\n", err.msg);
        return 1;
    }
    if (db) {
        char *d = *db ? strdup(db) : NULL;
        if (!d) {
            fprintf(stderr, "coild: %s\n", *db ? "out of memory" : "--db: an empty path");
            coil_config_destroy(&cfg);
            return *db ? 1 : 2;
        }
        free(cfg->database);
        cfg->database = d;
    }
    if (!cfg->model || !*cfg->model) {
        fprintf(stderr, "coild: no model configured (set model: in the config or COIL_MODEL)\n");
        coil_config_destroy(&cfg);
        return 1;
    }
    /* coil-worker lives next to coild (build tree and install tree alike) */
    char self[PATH_MAX], bin[PATH_MAX + 32];
    const char *wb = getenv("COIL_WORKER_BIN");
    if (!wb) {
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n > 0) {
            self[n] = '\0';
            char *d = dirname(self);
            snprintf(bin, sizeof bin, "%s/coil-worker", d);
            if (access(bin, X_OK) != 0)
                snprintf(bin, sizeof bin, "%s/workers/coil-worker", d);
            wb = bin;
        }
    }
    if (!wb || access(wb, X_OK) != 0) {
        fprintf(stderr, "coild: cannot find coil-worker (set COIL_WORKER_BIN)\n");
        coil_config_destroy(&cfg);
        return 1;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    coil_server_options_t so = {.cfg = cfg, .worker_bin = wb, .stop = &g_stop, .quiet = quiet,
                               .ready_file = ready};
    int rc = coil_server_run(&so, &err);
    if (rc)
        fprintf(stderr, "coild: %s\n", err.msg);
    coil_config_destroy(&cfg);
    return rc ? 1 : 0;
}
