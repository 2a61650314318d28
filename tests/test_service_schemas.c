/* test_service_schemas.c -- every reply a live coild sent in test_service
 * validates against schemas/protocol, and the replies cover what the README
 * says is checked.
 *
 * test_service records each reply it receives (the case it came from, the
 * request's op when known, the reply) in $COIL_BUILDDIR/tests/
 * test_service.replies.jsonl; this program hands that file to
 * tests/tools/check_protocol_schemas.py --replies, which checks the
 * envelope (reply.schema.json), each ok result (result.<op>), each partial
 * (partial.token / partial.progress / partial.queued), and the coverage
 * below.  A separate program so that only this check skips (exit 77)
 * without python3 + jsonschema; test_service itself always runs.  Make runs
 * test_service first (tests/test_service_schemas.log depends on its log).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef COIL_PYTHON
#define COIL_PYTHON "python3"
#endif

/* What the replies must include: every op's ok result, every kind of
 * partial, and replies from each case the README names (the 1000 malformed
 * messages, CURVE, the client limit, the worker kill, SIGTERM, the ids). */
static const char require[] =
    "{\"ok_ops\": [\"ingest\", \"doc.status\", \"doc.list\", \"search\", \"session.new\", \"session.append\","
    " \"session.fork\", \"session.delete\", \"generate\", \"score\", \"state.export\", \"state.import\","
    " \"health\", \"stats\"],"
    " \"partials\": [\"partial.token\", \"partial.progress\", \"partial.queued\"],"
    " \"cases\": {\"e2e\": 20, \"worker_kill\": 2, \"sigterm_worker\": 2, \"sigterm_coild\": 2, \"curve\": 2,"
    " \"max_clients\": 2, \"exactly_once\": 5, \"ids\": 11, \"sockets\": 1, \"uploads\": 20},"
    " \"errors\": {\"malformed\": 1000, \"ids\": 11, \"max_clients\": 1, \"sigterm_coild\": 1, \"e2e\": 2,"
    " \"uploads\": 3}}";

static int run(char *const argv[], int quiet)
{
    pid_t pid = fork();
    int st;
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (quiet) {
            FILE *f = freopen("/dev/null", "w", stdout);
            (void)f;
            f = freopen("/dev/null", "w", stderr);
            (void)f;
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

int main(void)
{
    const char *b = getenv("COIL_BUILDDIR"), *src = getenv("COIL_SRCDIR");
    char replies[4200], tool[4200], schemas[4200];
    char *probe[] = {(char *)COIL_PYTHON, (char *)"-c", (char *)"import jsonschema", NULL};
    struct stat sb;

    if (strcmp(COIL_PYTHON, "none") == 0 || run(probe, 1) != 0) {
        printf("SKIP: %s with the jsonschema module is needed (Debian: python3-jsonschema)\n", COIL_PYTHON);
        return 77;
    }
    snprintf(replies, sizeof replies, "%s/tests/test_service.replies.jsonl", b && *b ? b : ".");
    snprintf(tool, sizeof tool, "%s/tests/tools/check_protocol_schemas.py", src && *src ? src : ".");
    snprintf(schemas, sizeof schemas, "%s/schemas/protocol", src && *src ? src : ".");
    if (stat(replies, &sb) != 0 || sb.st_size == 0) {
        printf("FAIL: %s is missing or empty: run tests/test_service first (make check does)\n", replies);
        return 1;
    }
    char *argv[] = {(char *)COIL_PYTHON, tool, (char *)"--replies", schemas, replies, (char *)require, NULL};
    int rc = run(argv, 0);
    if (rc != 0) {
        printf("FAIL: the replies test_service recorded disagree with the schemas (exit %d)\n", rc);
        return 1;
    }
    printf("PASS: every recorded reply validates\n");
    return 0;
}
