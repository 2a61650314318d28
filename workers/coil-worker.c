/* coil-worker -- the service worker program.
 *
 *   coil-worker --connect ENDPOINT --db FILE --model DIR [--name NAME]
 *               [--threads N] [--chunk N] [--interval N] [--dense N] [--sync full|normal]
 *               [--backend cpu|cpu-portable|cuda[:f32|tf32|bf16]]   (coild: config device:)
 *
 * Started and supervised by coild (one per configured worker), or by hand
 * (e.g. on another host, with --connect tcp://HOST:PORT and a database path
 * that host can write).  SIGTERM drains: the current chunk finishes, is
 * checkpointed, the job goes back to coild, and the worker exits 0.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "worker.h"

static const char usage_line[] =
    "usage: coil-worker --connect ENDPOINT --db FILE --model DIR [--name NAME] [--threads N]\n"
    "                   [--chunk N] [--interval N] [--dense N] [--sync full|normal]\n"
    "                   [--backend cpu|cpu-portable|cuda[:f32|tf32|bf16]]\n";

static void help(void)
{
    fputs(usage_line, stdout);
    fputs("\n"
          "A coild worker: loads the model once, takes jobs from coild, does the model work.\n"
          "coild starts these itself; start one by hand for a worker on another host.  SIGTERM:\n"
          "the current chunk finishes and is checkpointed, the job goes back to coild, exit 0.\n"
          "\n"
          "  --connect ENDPOINT  coild's worker endpoint (endpoints.workers)\n"
          "  --db FILE           the database (this host's path to it)\n"
          "  --model DIR         the model directory (config.json, safetensors, tokenizer.json)\n"
          "  --name NAME         its name in logs and events (default w<pid>)\n"
          "  --threads N         compute threads (default: the usable CPUs / $COIL_WORKERS)\n"
          "  --chunk N           tokens per chunk when ingesting (default 512)\n"
          "  --interval N        a checkpoint every N tokens\n"
          "  --dense N           checkpoint intervals kept at full density (0 = never thin)\n"
          "  --sync full|normal  SQLite synchronous mode (default full)\n"
          "  --backend B         cpu (default), cpu-portable, or cuda[:f32|tf32|bf16] (CUDA builds)\n"
          "  --help, --version\n",
          stdout);
}

static volatile sig_atomic_t g_stop;

static void on_term(int sig)
{
    (void)sig;
    g_stop = 1;
}

int main(int argc, char **argv)
{
    coil_worker_options_t o = {0};
    coil_store_options_t so;
    static const struct option lo[] = {{"connect", 1, 0, 'c'}, {"db", 1, 0, 'd'},    {"model", 1, 0, 'm'},
                                       {"name", 1, 0, 'n'},    {"threads", 1, 0, 't'}, {"chunk", 1, 0, 'k'},
                                       {"sync", 1, 0, 's'},    {"interval", 1, 0, 'i'}, {"dense", 1, 0, 'D'},
                                       {"backend", 1, 0, 'b'}, {"help", 0, 0, 'h'},    {"version", 0, 0, 'V'},
                                       {0, 0, 0, 0}};
    int c;
    coil_store_options_default(&so);
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'c': o.endpoint = optarg; break;
        case 'd': o.db = optarg; break;
        case 'm': o.model = optarg; break;
        case 'n': o.name = optarg; break;
        case 't': o.threads = atoi(optarg); break;
        case 'b': o.backend = optarg; break;
        case 'k': o.chunk_tokens = atoll(optarg); break;
        case 'i':
            if ((so.policy.interval = atoll(optarg)) <= 0)
                goto usage;
            break;
        case 'D':
            if ((so.policy.dense = atoll(optarg)) < 0)
                goto usage;
            break;
        case 's':
            if (strcmp(optarg, "normal") == 0)
                so.synchronous = COIL_STORE_SYNC_NORMAL;
            else if (strcmp(optarg, "full") != 0)
                goto usage;
            break;
        case 'h': help(); return 0;
        case 'V': printf("coil-worker %s\n", PACKAGE_VERSION); return 0;
        default: goto usage;
        }
    }
    if (!o.endpoint || !o.db || !o.model || optind != argc)
        goto usage;
    struct sigaction sa = {0};
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    o.stop = &g_stop;
    o.store = &so;
    coil_err_t err = {0};
    if (coil_worker_run(&o, &err) != 0) {
        fprintf(stderr, "coil-worker: %s\n", err.msg[0] ? err.msg : coil_strerror(err.code));
        return 1;
    }
    return 0;
usage:
    fputs(usage_line, stderr);
    return 2;
}
