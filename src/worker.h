/* worker.h -- the service worker: takes jobs from coild, does the model work.
 *
 * A worker loads the model once (mmap), opens its own store handle, connects
 * a DEALER socket to coild's worker endpoint and serves jobs one at a time.
 * Internal frames (worker side; coild's ROUTER adds the worker identity):
 *
 *   worker -> coild  READY   info-json
 *                    PARTIAL client-id reply-json             (generate stream)
 *                    REPLY   client-id reply-json [blob]      (final; the worker is idle again)
 *                    EVENT   topic event-json                 (progress, complete, failed)
 *                    REQUEUE client-id                        (drained mid-job: run it again)
 *                    FANOUT  client-id fanout-json            (the job goes on as sub-jobs; idle again)
 *   coild -> worker  JOB     client-id request-json meta-json [blob]
 *
 * meta-json carries what coild adds to a request: {"spool": PATH} for an
 * ingest (the document text, spooled by coild), {"key": K} for an append.
 * SIGTERM drains: the current ingest finishes its chunk and checkpoints, the
 * job is handed back with REQUEUE, and the worker exits.
 *
 * Fan-out (one job's work spread over the free workers; today a select ask's
 * candidates).  coild offers it with meta {"split": true}; a worker that
 * splits the job answers FANOUT with {"plan": P, "subs": [S0, S1, ...]}
 * (1..64 specs) instead of a REPLY.  coild puts one sub-job per spec at the
 * front of its queue, in order: JOB with the same request and meta {"sub":
 * Si}; each goes to the worker idle the longest, and its REPLY (an ordinary
 * reply, the request's id) is kept by coild, not sent to the client.  When
 * every result is in, the job runs once more (its last stage) with meta
 * {"fanout": {"plan": P, "results": [R0, R1, ...]}, "elapsed_s": T}: Ri is
 * Si's result whatever order they finished in, T the seconds since the
 * request came.  That stage answers the client (partials, REPLY).  A
 * worker that dies in a sub-job: the sub-job runs again elsewhere (given up,
 * the job answered with an error, after MAX_JOB_DEATHS); a result counts
 * once; a sub-job's error reply is the job's reply (the rest are dropped).
 * P, Si and Ri are opaque to coild: the worker's operation defines them
 * (ask, src/worker.c: Si {"kind": "ask.candidate", "index", "count",
 * "chunk", "token_start", "token_end"}, Ri {"index", "chunk", "entropy", "tokens"}, P
 * the plan as the ask result's JSON).
 */
#ifndef COIL_WORKER_H
#define COIL_WORKER_H

#include <signal.h>
#include <stdint.h>

#include "error.h"
#include "store.h"

typedef struct coil_worker_options {
    const char *endpoint;      /* coild's worker endpoint, e.g. ipc:///tmp/coild-workers */
    const char *db;            /* database file */
    const char *model;         /* model directory (config.json, safetensors, tokenizer.json) */
    const char *name;          /* worker name for logs and events; NULL = "w<pid>" */
    int threads;               /* engine threads, 0 = default */
    const char *backend;       /* engine backend (coil_engine_options_t.backend); NULL = cpu */
    int64_t chunk_tokens;      /* default ingest grid; 0 = 512 */
    const coil_store_options_t *store; /* NULL = defaults */
    const volatile sig_atomic_t *stop; /* set by SIGTERM */
} coil_worker_options_t;

/* Runs until *stop is set or coild goes away for good.  0 on a clean drain;
 * an error if the model, tokenizer or database cannot be opened. */
int coil_worker_run(const coil_worker_options_t *o, coil_err_t *err);

#endif
