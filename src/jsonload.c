/* jsonload.c -- jansson loads that notice allocation failures (see jsonload.h). */
#include "jsonload.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local int failed;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void *counting_malloc(size_t n)
{
    void *p = malloc(n);
    if (!p)
        failed = 1;
    return p;
}

static void install(void)
{
    json_set_alloc_funcs(counting_malloc, free);
}

static json_t *finish(json_t *root, json_error_t *je, int *nomem)
{
    int oom = failed;
    failed = 0;
    if (nomem)
        *nomem = oom;
    if (!oom)
        return root;
    json_decref(root);
    if (je) {
        memset(je, 0, sizeof *je);
        je->line = je->column = je->position = -1;
        snprintf(je->text, sizeof je->text, "out of memory");
    }
    return NULL;
}

json_t *coil_jsonload_buf(const char *buf, size_t len, size_t flags, json_error_t *je, int *nomem)
{
    pthread_once(&once, install);
    failed = 0;
    return finish(json_loadb(buf, len, flags, je), je, nomem);
}

json_t *coil_jsonload_file(FILE *f, size_t flags, json_error_t *je, int *nomem)
{
    pthread_once(&once, install);
    failed = 0;
    return finish(json_loadf(f, flags, je), je, nomem);
}
