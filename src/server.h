/* server.h -- coild's routing core: client requests in, jobs out to workers,
 * replies and events back.  It never does model work and never blocks on it.
 *
 * Sockets (one thread owns them all):
 *   clients  ROUTER  requests from any number of clients (DEALER or REQ);
 *                    replies routed back by identity, sent non-blocking
 *   events   PUB     topic + JSON (ingest.progress, doc.complete, ...)
 *   workers  ROUTER  the internal protocol of worker.h
 *
 * Scheduling: a FIFO queue; each job goes to the worker idle the longest.
 * Write jobs (ingest, session new/append/fork/delete, generate with append,
 * state import) run one at a time -- a single writer, so SQLite's WAL never
 * sees two writing processes -- while reads run on the other workers.
 * A worker that dies is restarted; its job is re-queued when running it
 * again is safe (reads; ingest, which resumes from its last checkpoint) and
 * answered with an error otherwise.  A job a worker splits (FANOUT,
 * worker.h: a select ask's candidates) waits off the queue while its
 * sub-jobs go first, one to each free worker; its last stage then goes to
 * the front of the queue.
 */
#ifndef COIL_SERVER_H
#define COIL_SERVER_H

#include <signal.h>

#include "coild_config.h"
#include "error.h"

typedef struct coil_server_options {
    const coil_config_t *cfg;
    const char *worker_bin;             /* path of coil-worker; NULL = no local workers */
    const volatile sig_atomic_t *stop;  /* set by SIGTERM/SIGINT */
    int quiet;
    const char *ready_file; /* NULL, or a file to write once every socket is bound and every
                             * worker is ready: {"clients","events","workers","pid"} with the
                             * bound endpoints (a tcp port 0 or "*" resolved); removed at exit */
} coil_server_options_t;

/* Binds (a workers endpoint of ipc: + // + * is a socket in a new private
 * directory; the socket file and the directory are removed at exit),
 * starts the workers, serves until *stop.  Non-zero only when it cannot
 * start (bind failure, bad keys). */
int coil_server_run(const coil_server_options_t *o, coil_err_t *err);

#endif
