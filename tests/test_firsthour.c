/* test_firsthour.c -- what a new user meets in the first hour with `coil`:
 * help and --version for every command, read-only commands that never create
 * a database, re-running a finished ingest, binary input, stored text on a
 * terminal, progress in a log, damaged checkpoints, and real signals to an
 * ingest reading a pipe (SIGINT / SIGTERM, then resume with the same or a
 * different input).
 *
 * Runs $COIL_BUILDDIR/coil as child processes on real files in a temp dir.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

extern char **environ;
static char *dir;
static char out_path[4096], err_path[4096], model[4096], doc_path[4096], db[4096];

/* ---- running coil -------------------------------------------------------------- */

/* Starts the program prog of the build tree (coil, coild) with args
 * (NULL-terminated); stdin from in_fd (-1: /dev/null), stdout to out_fd (-1:
 * out_path), stderr to err_path. */
static pid_t spawn_prog(const char *prog, const char *const *args, int in_fd, int out_fd)
{
    char bin[4096];
    const char *b = getenv("COIL_BUILDDIR");
    snprintf(bin, sizeof bin, "%s/%s", b && *b ? b : ".", prog);
    char *argv[40];
    int n = 0;
    argv[n++] = bin;
    for (; args[n - 1] && n < 39; n++)
        argv[n] = (char *)args[n - 1];
    argv[n] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (in_fd >= 0)
        posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
    else
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (out_fd >= 0)
        posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    else
        posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid;
    ck_assert_int_eq(posix_spawn(&pid, bin, &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    return pid;
}

static pid_t spawn_coil(const char *const *args, int in_fd, int out_fd)
{
    return spawn_prog("coil", args, in_fd, out_fd);
}

/* Waits at most timeout_s for pid; its exit status (the test fails on a signal or a hang). */
static int wait_coil(pid_t pid, double timeout_s)
{
    int status;
    for (int i = 0; i < (int)(timeout_s * 100); i++) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        ck_assert_int_ge(r, 0);
        if (r == pid) {
            ck_assert_msg(WIFEXITED(status), "coil died by signal %d", WTERMSIG(status));
            return WEXITSTATUS(status);
        }
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    ck_abort_msg("coil did not exit within %.0f s", timeout_s);
    return -1;
}

static int run(const char *const *args) { return wait_coil(spawn_coil(args, -1, -1), 120); }

/* Runs coil with the file at in_path as standard input. */
static int run_stdin(const char *const *args, const char *in_path)
{
    int fd = open(in_path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    pid_t pid = spawn_coil(args, fd, -1);
    close(fd);
    return wait_coil(pid, 120);
}

static char *slurp(const char *p)
{
    size_t n;
    char *s = tu_read(p, &n);
    ck_assert_ptr_nonnull(s);
    char *z = realloc(s, n + 1);
    z[n] = '\0';
    return z;
}

static void expect_in(const char *path, const char *needle)
{
    char *s = slurp(path);
    ck_assert_msg(strstr(s, needle) != NULL, "%s lacks '%s':\n%s", path, needle, s);
    free(s);
}

static int exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* A document of n paragraphs (one rare phrase near the end). */
static void write_doc(const char *path, int n, const char *variant)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < n; i++)
        fprintf(f, "Paragraph %d of the %s talks about harbours and lighthouses.\n", i, variant);
    fprintf(f, "The zebra quartermaster appears exactly once.\n");
    ck_assert_int_eq(fclose(f), 0);
}

static void setup(void)
{
    dir = tu_mkdtemp();
    ck_assert_ptr_nonnull(dir);
    snprintf(out_path, sizeof out_path, "%s/stdout", dir);
    snprintf(err_path, sizeof err_path, "%s/stderr", dir);
    snprintf(model, sizeof model, "%s/model", dir);
    snprintf(doc_path, sizeof doc_path, "%s/doc.txt", dir);
    snprintf(db, sizeof db, "%s/t.db", dir);
    tu_model_shape_t sh = {.d_model = 32, .n_layer = 2, .vocab = 1232, .d_state = 8, .d_conv = 4, .expand = 2,
                           .tied = 1, .dtype = "BF16"};
    ck_assert_int_eq(tu_write_model_dir(model, &sh, 11), 0);
    write_doc(doc_path, 300, "log");
}

static void teardown(void)
{
    tu_rm_rf(dir);
    free(dir);
}

/* `coil state export` of a document into path: exit status. */
static int export_doc(const char *dbp, const char *name, const char *path)
{
    const char *a[] = {"state", "export", "--db", dbp, "--model", model, "--doc", name, "--out", path, NULL};
    return run(a);
}

static void same_file(const char *a, const char *b)
{
    size_t na, nb;
    void *x = tu_read(a, &na), *y = tu_read(b, &nb);
    ck_assert_ptr_nonnull(x);
    ck_assert_ptr_nonnull(y);
    ck_assert_uint_eq(na, nb);
    ck_assert_msg(memcmp(x, y, na) == 0, "%s and %s differ", a, b);
    free(x);
    free(y);
}

/* One value from the database (an integer query). */
static long long sql_int(const char *dbp, const char *sql)
{
    sqlite3 *h;
    sqlite3_stmt *s;
    ck_assert_int_eq(sqlite3_open_v2(dbp, &h, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(h, sql, -1, &s, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
    long long v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(h);
    return v;
}

static void sql_exec(const char *dbp, const char *sql)
{
    sqlite3 *h;
    ck_assert_int_eq(sqlite3_open_v2(dbp, &h, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    char *msg = NULL;
    ck_assert_msg(sqlite3_exec(h, sql, NULL, NULL, &msg) == SQLITE_OK, "%s: %s", sql, msg ? msg : "");
    sqlite3_close(h);
}

/* ---- help and version ------------------------------------------------------------ */

START_TEST(test_help_and_version)
{
    static const char *cmds[] = {"info",    "logits", "generate", "tokenize", "score", "ingest", "docs",
                                 "search",  "session", "sessions", "state",   "check"};
    char want[64];
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        const char *a[] = {cmds[i], "--help", NULL};
        ck_assert_int_eq(run(a), 0);
        snprintf(want, sizeof want, "usage: coil %s", cmds[i]);
        char *o = slurp(out_path), *e = slurp(err_path);
        ck_assert_msg(strncmp(o, want, strlen(want)) == 0, "coil %s --help printed: %s", cmds[i], o);
        ck_assert_str_eq(e, "");
        free(o);
        free(e);
        const char *h[] = {"help", cmds[i], NULL}; /* the same text */
        ck_assert_int_eq(run(h), 0);
        expect_in(out_path, want);
    }
    /* --help wins over missing or bad arguments */
    const char *a1[] = {"session", "--help", NULL};
    ck_assert_int_eq(run(a1), 0);
    expect_in(out_path, "coil session append ID");
    const char *a2[] = {"ingest", "--chunk", "x", "--help", NULL};
    ck_assert_int_eq(run(a2), 0);
    const char *v[] = {"--version", NULL};
    ck_assert_int_eq(run(v), 0);
    expect_in(out_path, "coil " PACKAGE_VERSION "\n");
    const char *g[] = {"--help", NULL};
    ck_assert_int_eq(run(g), 0);
    expect_in(out_path, "usage: coil <command>");
    char *o = slurp(out_path);
    ck_assert_msg(strstr(o, "ingest    --model") == NULL, "the usage shows --model as required: %s", o);
    free(o);
    const char *u[] = {"help", "frobnicate", NULL};
    ck_assert_int_eq(run(u), 2);
    expect_in(err_path, "unknown command 'frobnicate'");
    const char *m[] = {"state", NULL};
    ck_assert_int_eq(run(m), 2);
    expect_in(err_path, "missing sub-command");
    /* options for the other side of --connect are errors, never silently ignored */
    const char *cm[] = {"--connect", "tcp://127.0.0.1:9", "search", "ghost", "--model", model, NULL};
    ck_assert_int_eq(run(cm), 2);
    expect_in(err_path, "--model names a local model");
    const char *to[] = {"search", "--db", db, "ghost", "--timeout", "3", NULL};
    ck_assert_int_eq(run(to), 2);
    expect_in(err_path, "--timeout is for --connect");
}
END_TEST

/* ---- read-only commands never create a database -------------------------------------- */

START_TEST(test_readers_do_not_create)
{
    char typo[4096];
    snprintf(typo, sizeof typo, "%s/typo.db", dir);
    const char *const cases[][12] = {
        {"search", "--db", typo, "ghost", NULL},
        {"docs", "--db", typo, NULL},
        {"sessions", "--db", typo, NULL},
        {"check", "--db", typo, NULL},
        {"session", "new", "--db", typo, "--doc", "x", NULL},
        {"session", "list", "--db", typo, NULL},
        {"generate", "--db", typo, "--model", model, "--doc", "x", "-n", "2", NULL},
        {"score", "--db", typo, "--model", model, "--doc", "x", "--text", " a", NULL},
        {"state", "export", "--db", typo, "--model", model, "--doc", "x", "--out", out_path, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_msg(run(cases[i]) == 1, "coil %s on a missing database did not fail", cases[i][0]);
        expect_in(err_path, "no such database");
        ck_assert_msg(!exists(typo), "coil %s %s created the database", cases[i][0], cases[i][1]);
    }
    /* the writers do create it */
    const char *ing[] = {"ingest", "--db", typo, "--model", model, "--name", "d", "--file", doc_path, "--quiet", NULL};
    ck_assert_int_eq(run(ing), 0);
    ck_assert(exists(typo));
}
END_TEST

/* ---- running an ingest again ---------------------------------------------------------- */

START_TEST(test_reingest_is_idempotent)
{
    const char *ing[] = {"ingest", "--db", db, "--model", model, "--name", "d", "--file", doc_path,
                         "--chunk", "64", "--interval", "256", NULL};
    ck_assert_int_eq(run(ing), 0);
    expect_in(out_path, "ingested d:");
    long long ck = sql_int(db, "SELECT count(*) FROM checkpoints");
    long long upd = sql_int(db, "SELECT updated FROM documents WHERE name = 'd'");
    /* a supervisor re-running the same command: success, nothing done */
    ck_assert_int_eq(run(ing), 0);
    expect_in(out_path, "already ingested d:");
    ck_assert_int_eq(sql_int(db, "SELECT count(*) FROM checkpoints"), ck);
    ck_assert_int_eq(sql_int(db, "SELECT updated FROM documents WHERE name = 'd'"), upd);
    /* real differences are errors naming what differs */
    const char *chunk[] = {"ingest", "--db", db, "--model", model, "--name", "d", "--file", doc_path,
                           "--chunk", "128", "--interval", "256", NULL};
    ck_assert_int_eq(run(chunk), 1);
    expect_in(err_path, "chunks of 64 tokens, not 128");
    char other[4096], model2[4096];
    snprintf(other, sizeof other, "%s/other.txt", dir);
    write_doc(other, 300, "sea");
    const char *diff[] = {"ingest", "--db", db, "--model", model, "--name", "d", "--file", other,
                          "--chunk", "64", "--interval", "256", NULL};
    ck_assert_int_eq(run(diff), 1);
    expect_in(err_path, "from a different input");
    snprintf(model2, sizeof model2, "%s/model2", dir);
    tu_model_shape_t sh = {.d_model = 32, .n_layer = 2, .vocab = 1232, .d_state = 8, .d_conv = 4, .expand = 2,
                           .tied = 1, .dtype = "BF16"};
    ck_assert_int_eq(tu_write_model_dir(model2, &sh, 12), 0);
    const char *mod[] = {"ingest", "--db", db, "--model", model2, "--name", "d", "--file", doc_path,
                         "--chunk", "64", "--interval", "256", NULL};
    ck_assert_int_eq(run(mod), 1);
    expect_in(err_path, "made with another model");
    ck_assert_int_eq(sql_int(db, "SELECT count(*) FROM checkpoints"), ck); /* nothing changed */

    /* standard input: compared token by token */
    const char *in[] = {"ingest", "--db", db, "--model", model, "--name", "s", "--chunk", "64", "--interval",
                        "256", "-", NULL};
    ck_assert_int_eq(run_stdin(in, doc_path), 0);
    expect_in(out_path, "ingested s:");
    ck_assert_int_eq(run_stdin(in, doc_path), 0);
    expect_in(out_path, "already ingested s:");
    ck_assert_int_eq(run_stdin(in, other), 1);
    expect_in(err_path, "differs from the complete document at token");
    char longer[4096];
    snprintf(longer, sizeof longer, "%s/longer.txt", dir);
    write_doc(longer, 300, "log");
    FILE *f = fopen(longer, "a");
    fputs("And one more line that the stored document does not have.\n", f);
    fclose(f);
    ck_assert_int_eq(run_stdin(in, longer), 1);
    expect_in(err_path, "is complete and this input is longer");
    char shorter[4096];
    snprintf(shorter, sizeof shorter, "%s/shorter.txt", dir);
    size_t dl;
    char *dt = tu_read(doc_path, &dl);
    ck_assert_ptr_nonnull(dt);
    size_t cut = dl / 2;
    while (cut > 0 && dt[cut - 1] != '\n')
        cut--;
    ck_assert_int_eq(tu_write(shorter, dt, cut), 0); /* a prefix of the stored input, whole lines */
    free(dt);
    ck_assert_int_eq(run_stdin(in, shorter), 1);
    expect_in(err_path, "differs from it");
    long long toks = sql_int(db, "SELECT token_len FROM documents WHERE name = 's'");
    ck_assert_int_gt(toks, 0);
    ck_assert_int_eq(sql_int(db, "SELECT count(*) FROM documents WHERE status <> 'complete'"), 0);
    /* --replace still starts over */
    const char *rep[] = {"ingest", "--db", db, "--model", model, "--name", "d", "--file", other,
                         "--chunk", "64", "--interval", "256", "--replace", NULL};
    ck_assert_int_eq(run(rep), 0);
    expect_in(out_path, "ingested d:");
}
END_TEST

/* ---- binary input, control characters on a terminal ----------------------------------- */

START_TEST(test_binary_input)
{
    char bin[4096], junk[4096];
    snprintf(bin, sizeof bin, "%s/prog", dir);
    snprintf(junk, sizeof junk, "%s/junk", dir);
    /* an executable-like file: text with NULs */
    FILE *f = fopen(bin, "wb");
    fwrite("\x7f" "ELF\x02\x01\x01\0\0\0\0\0\0\0\0\0", 1, 16, f);
    for (int i = 0; i < 2000; i++)
        fprintf(f, "symbol_%d%c", i, 0);
    fclose(f);
    /* no NUL, but mostly invalid UTF-8 */
    f = fopen(junk, "wb");
    uint32_t x = 12345;
    for (int i = 0; i < 20000; i++) {
        x = x * 1103515245u + 12345u;
        unsigned char c = (unsigned char)(0x80 | (x >> 16));
        fputc(c ? c : 1, f);
    }
    fclose(f);
    const char *a1[] = {"ingest", "--db", db, "--model", model, "--name", "b", "--file", bin, NULL};
    ck_assert_int_eq(run(a1), 1);
    expect_in(err_path, "does not look like text (a NUL byte at offset 7)");
    expect_in(err_path, "--binary");
    ck_assert_int_eq(sql_int(db, "SELECT count(*) FROM documents"), 0); /* refused before any work */
    const char *a2[] = {"ingest", "--db", db, "--model", model, "--name", "j", "--file", junk, NULL};
    ck_assert_int_eq(run(a2), 1);
    expect_in(err_path, "are not valid UTF-8");
    const char *a3[] = {"ingest", "--db", db, "--model", model, "--name", "j", "-", NULL};
    ck_assert_int_eq(run_stdin(a3, junk), 1);
    expect_in(err_path, "standard input does not look like text");
    ck_assert_int_eq(sql_int(db, "SELECT count(*) FROM chunks"), 0);
    /* asked for: ingested */
    const char *a4[] = {"ingest", "--db", db, "--model", model, "--name", "b", "--file", bin, "--binary", "--quiet",
                        NULL};
    ck_assert_int_eq(run(a4), 0);
    ck_assert_int_eq(sql_int(db, "SELECT status = 'complete' FROM documents WHERE name = 'b'"), 1);
    /* UTF-8 text with accents and a tab is text */
    char utf[4096];
    snprintf(utf, sizeof utf, "%s/utf.txt", dir);
    f = fopen(utf, "w");
    for (int i = 0; i < 200; i++)
        fputs("Ça va, l'\xc3\xa9t\xc3\xa9 \xe2\x80\x94 na\xc3\xafve caf\xc3\xa9\t\xe6\x97\xa5\xe6\x9c\xac\n", f);
    fclose(f);
    const char *a5[] = {"ingest", "--db", db, "--model", model, "--name", "u", "--file", utf, "--quiet", NULL};
    ck_assert_int_eq(run(a5), 0);
}
END_TEST

/* Reads everything the child writes to the pty until it exits. */
static char *run_on_pty(const char *const *args, int *status_out)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    ck_assert_int_ge(m, 0);
    ck_assert_int_eq(grantpt(m), 0);
    ck_assert_int_eq(unlockpt(m), 0);
    int s = open(ptsname(m), O_RDWR | O_NOCTTY);
    ck_assert_int_ge(s, 0);
    pid_t pid = spawn_coil(args, -1, s);
    close(s);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (int i = 0; i < 12000; i++) { /* at most 120 s */
        struct pollfd p = {.fd = m, .events = POLLIN};
        int r = poll(&p, 1, 10);
        if (r > 0) {
            if (n + 4096 > cap)
                buf = realloc(buf, cap *= 2);
            ssize_t k = read(m, buf + n, 4096);
            if (k <= 0)
                break; /* EIO: the slave side is closed */
            n += (size_t)k;
        } else if (waitpid(pid, status_out, WNOHANG) == pid) {
            pid = 0;
            break;
        }
    }
    if (pid) {
        ck_assert_int_eq(waitpid(pid, status_out, 0), pid);
    }
    close(m);
    buf[n] = '\0';
    return buf;
}

START_TEST(test_terminal_output_escaped)
{
    /* a document with control characters (ESC sequences, BEL, backspace) */
    char ctl[4096];
    snprintf(ctl, sizeof ctl, "%s/ctl.txt", dir);
    FILE *f = fopen(ctl, "w");
    for (int i = 0; i < 40; i++)
        fprintf(f, "The ghost \x1b]0;pwned\x07 walks \x1b[2J here\b\b and \xc2\x9b" "31m there %d.\n", i);
    fclose(f);
    const char *a1[] = {"ingest", "--db", db, "--model", model, "--name", "c", "--file", ctl, "--quiet", NULL};
    ck_assert_int_eq(run(a1), 0);
    const char *a2[] = {"search", "--db", db, "ghost", "--limit", "3", NULL};
    int status;
    char *o = run_on_pty(a2, &status);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_msg(strstr(o, "ghost") != NULL, "no hit: %s", o);
    /* the only escape sequences are coil's own bold on / off */
    for (char *p = o; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == 0x1b) {
            ck_assert_msg(strncmp(p, "\x1b[1m", 4) == 0 || strncmp(p, "\x1b[22m", 5) == 0,
                          "raw escape sequence on the terminal: %.20s", p);
        } else {
            ck_assert_msg(c >= 0x20 || c == '\n' || c == '\r' || c == '\t', "raw control byte 0x%02x on the terminal",
                          c);
            ck_assert_msg(!(c == 0xc2 && (unsigned char)p[1] >= 0x80 && (unsigned char)p[1] <= 0x9f),
                          "raw C1 control on the terminal");
        }
    }
    ck_assert_msg(strstr(o, "\\x1b]0;pwned\\x07") != NULL, "escape not shown escaped: %s", o);
    ck_assert_msg(strstr(o, "\x1b[1mghost\x1b[22m") != NULL, "match not in bold: %s", o);
    free(o);
    /* into a file the highlight is \u00ab \u00bb and the bytes are the document's own */
    ck_assert_int_eq(run(a2), 0);
    expect_in(out_path, "The \xc2\xabghost\xc2\xbb \x1b]0;pwned\x07");
}
END_TEST

/* ---- progress in a log ----------------------------------------------------------------- */

START_TEST(test_progress_in_a_log)
{
    char big[4096];
    snprintf(big, sizeof big, "%s/big.txt", dir);
    write_doc(big, 3000, "log");
    const char *a[] = {"ingest", "--db", db, "--model", model, "--name", "p", "--file", big, "--progress", "0.001",
                       "--chunk", "64", NULL};
    ck_assert_int_eq(run(a), 0);
    char *e = slurp(err_path);
    int lines = 0, last_pct = -1;
    for (char *p = e; (p = strstr(p, "coil: p: ")); p++) {
        double pct;
        ck_assert_msg(sscanf(p, "coil: p: %lf%%", &pct) == 1, "progress line without a percentage: %.80s", p);
        ck_assert_msg(strstr(p, "tok/s  ETA ") != NULL, "progress line without tok/s or ETA: %.80s", p);
        ck_assert_int_ge((int)pct, last_pct);
        last_pct = (int)pct;
        lines++;
    }
    ck_assert_msg(lines >= 3, "%d progress lines in the log:\n%s", lines, e);
    ck_assert_int_eq(last_pct, 100);
    ck_assert_msg(strchr(e, '\r') == NULL, "carriage returns in a log");
    free(e);
    /* --quiet: none */
    const char *q[] = {"ingest", "--db", db, "--model", model, "--name", "q", "--file", big, "--quiet", NULL};
    ck_assert_int_eq(run(q), 0);
    char *e2 = slurp(err_path);
    ck_assert_str_eq(e2, "");
    free(e2);
}
END_TEST

/* ---- damaged checkpoints, coil check ---------------------------------------------------- */

START_TEST(test_damaged_checkpoint_not_used)
{
    char ref[4096], got[4096];
    snprintf(ref, sizeof ref, "%s/ref.state", dir);
    snprintf(got, sizeof got, "%s/got.state", dir);
    const char *ing[] = {"ingest", "--db", db, "--model", model, "--name", "d", "--file", doc_path,
                         "--chunk", "64", "--interval", "128", "--quiet", NULL};
    ck_assert_int_eq(run(ing), 0);
    ck_assert_int_ge(sql_int(db, "SELECT count(*) FROM checkpoints"), 3);
    const char *score[] = {"score", "--db", db, "--model", model, "--doc", "d", "--text", " zebra quartermaster", NULL};
    ck_assert_int_eq(run(score), 0);
    char *s_ref = slurp(out_path);
    ck_assert_int_eq(export_doc(db, "d", ref), 0);
    const char *chk[] = {"check", "--db", db, NULL};
    ck_assert_int_eq(run(chk), 0);
    expect_in(out_path, ": ok (");

    /* damage the newest checkpoint's bytes (same length, checksum left as it was) */
    sql_exec(db, "UPDATE checkpoints SET state = randomblob(length(state)) "
                 "WHERE id = (SELECT max(id) FROM checkpoints)");
    ck_assert_int_eq(run(chk), 1);
    expect_in(err_path, "checksum");
    /* queries never use it: an earlier one + replay, with a warning naming it, same bits */
    ck_assert_int_eq(run(score), 0);
    char *s_got = slurp(out_path);
    ck_assert_str_eq(s_got, s_ref);
    expect_in(err_path, "warning:");
    expect_in(err_path, "not using it");
    ck_assert_int_eq(export_doc(db, "d", got), 0);
    same_file(got, ref);
    const char *sn[] = {"session", "new", "--db", db, "--doc", "d", NULL};
    ck_assert_int_eq(run(sn), 0);
    free(s_got);
    /* every checkpoint damaged: a replay from the start, still the same state */
    sql_exec(db, "UPDATE checkpoints SET checksum = checksum + 1");
    ck_assert_int_eq(export_doc(db, "d", got), 0);
    same_file(got, ref);
    free(s_ref);
}
END_TEST

START_TEST(test_check_sees_random_bytes)
{
    const char *ing[] = {"ingest", "--db", db, "--model", model, "--name", "d", "--file", doc_path,
                         "--chunk", "64", "--quiet", NULL};
    ck_assert_int_eq(run(ing), 0);
    sql_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
    struct stat sb;
    ck_assert_int_eq(stat(db, &sb), 0);
    ck_assert_int_gt(sb.st_size, 8 * 4096);
    /* bytes over the page headers of every page in the second half of the file
     * (b-tree headers and cell pointers: the damage integrity_check sees;
     * page 1, the schema, is left alone so the file still opens) */
    int fd = open(db, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    unsigned char junk[24];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (unsigned char)(i * 37 + 11);
    for (off_t pg = sb.st_size / 4096 / 2; pg < sb.st_size / 4096; pg++)
        ck_assert_int_eq(pwrite(fd, junk, sizeof junk, pg * 4096), (ssize_t)sizeof junk);
    close(fd);
    const char *chk[] = {"check", "--db", db, NULL};
    int rc = run(chk);
    ck_assert_msg(rc == 1, "coil check on a damaged file exited %d", rc);
    char *e = slurp(err_path);
    ck_assert_msg(strstr(e, "integrity_check") || strstr(e, "malformed") || strstr(e, "corrupt") ||
                      strstr(e, "FTS5") || strstr(e, "checksum"),
                  "coil check did not name the damage: %s", e);
    free(e);
}
END_TEST

/* ---- real signals to an ingest reading a pipe ------------------------------------------------ */

/* Starts `coil ingest ... -` reading a pipe, writes the first `part` bytes of
 * the document, waits until the store holds a committed checkpoint past
 * token 0, then sends sig while coil waits for more input.  Returns the
 * status (must be 130, within 30 s). */
static int ingest_and_signal(const char *dbp, const char *text, size_t part, long long want_pos, int sig)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    const char *a[] = {"ingest", "--db", dbp, "--model", model, "--name", "s", "--chunk", "64", "--interval", "128",
                       "--progress", "0.01", "-", NULL};
    pid_t pid = spawn_coil(a, p[0], -1);
    close(p[0]);
    ck_assert_int_eq(write(p[1], text, part), (ssize_t)part);
    int committed = 0;
    for (int i = 0; i < 3000 && !committed; i++) { /* at most 30 s */
        usleep(10000);
        if (exists(dbp)) {
            sqlite3 *h;
            sqlite3_stmt *s;
            if (sqlite3_open_v2(dbp, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
                sqlite3_prepare_v2(h, "SELECT count(*) FROM checkpoints WHERE position >= ?1", -1, &s, NULL) ==
                    SQLITE_OK) {
                sqlite3_bind_int64(s, 1, want_pos);
                if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int64(s, 0) > 0)
                    committed = 1;
                sqlite3_finalize(s);
            }
            sqlite3_close(h);
        }
    }
    ck_assert_msg(committed, "no checkpoint at %lld committed within 30 s", want_pos);
    usleep(300000); /* it has read all that was written (a chunk or two to go): it waits on the pipe */
    ck_assert_int_eq(kill(pid, sig), 0);
    int rc = wait_coil(pid, 30);
    close(p[1]);
    return rc;
}

START_TEST(test_signal_then_resume)
{
    const int sig = _i == 0 ? SIGINT : SIGTERM;
    char ref_db[4096], ref[4096], got[4096], changed[4096];
    snprintf(ref_db, sizeof ref_db, "%s/ref.db", dir);
    snprintf(ref, sizeof ref, "%s/ref.state", dir);
    snprintf(got, sizeof got, "%s/got.state", dir);
    snprintf(changed, sizeof changed, "%s/changed.txt", dir);
    size_t len;
    char *text = tu_read(doc_path, &len);
    ck_assert_ptr_nonnull(text);
    /* the uninterrupted run */
    const char *a[] = {"ingest", "--db", ref_db, "--model", model, "--name", "s", "--chunk", "64", "--interval",
                       "128", "--quiet", "-", NULL};
    ck_assert_int_eq(run_stdin(a, doc_path), 0);
    ck_assert_int_eq(export_doc(ref_db, "s", ref), 0);

    /* stopped by a real signal while blocked on its input: wait for the last
     * checkpoint the first half can give (the uninterrupted run's chunks say
     * where it is; less a margin for the text the tokenizer holds back) */
    char q[160];
    snprintf(q, sizeof q, "SELECT coalesce(max(token_end), 0) / 128 * 128 FROM chunks WHERE byte_end <= %zu",
             len / 2 - 200);
    long long want = sql_int(ref_db, q);
    ck_assert_int_gt(want, 0);
    ck_assert_int_eq(ingest_and_signal(db, text, len / 2, want, sig), 130);
    expect_in(err_path, "run again to resume");
    long long stored = sql_int(db, "SELECT max(token_end) FROM chunks");
    ck_assert_int_gt(stored, 0);
    ck_assert_int_eq(sql_int(db, "SELECT status = 'ingesting' FROM documents WHERE name = 's'"), 1);

    /* resumed with a different input on stdin (no hash to compare): refused, nothing mixed in */
    char *alt = malloc(len);
    memcpy(alt, text, len);
    char *p = strstr(alt, "Paragraph 3 ");
    ck_assert_ptr_nonnull(p);
    p[10] = '8'; /* "Paragraph 8 " at the same place: a different token early on */
    ck_assert_int_eq(tu_write(changed, alt, len), 0);
    const char *r[] = {"ingest", "--db", db, "--model", model, "--name", "s", "--chunk", "64", "--interval", "128",
                       "--quiet", "-", NULL};
    ck_assert_int_eq(run_stdin(r, changed), 1);
    expect_in(err_path, "the input differs from the interrupted ingest at token");
    ck_assert_int_eq(sql_int(db, "SELECT max(token_end) FROM chunks"), stored);
    ck_assert_int_eq(sql_int(db, "SELECT status = 'ingesting' FROM documents WHERE name = 's'"), 1);

    /* the same input: resumes and ends in the uninterrupted run's bits */
    ck_assert_int_eq(run_stdin(r, doc_path), 0);
    ck_assert_int_eq(export_doc(db, "s", got), 0);
    same_file(got, ref);
    free(alt);
    free(text);
}
END_TEST

/* ---- coild with workers that cannot start ----------------------------------------- */

/* A worker that can never start (here its model directory does not exist; in
 * the field: a device it does not have, weights it cannot read) used to be
 * restarted forever, coild up and useless.  Now each worker is started at most
 * 5 times in a row, its own error shown each time, and then coild exits 1
 * saying no worker could start. */
START_TEST(test_coild_gives_up_on_workers_that_cannot_start)
{
    char cfg[4200], yaml[8400], missing[4200];
    snprintf(cfg, sizeof cfg, "%s/coild.yaml", dir);
    snprintf(missing, sizeof missing, "%s/no-such-model", dir);
    snprintf(yaml, sizeof yaml,
             "endpoints:\n  clients: \"tcp://127.0.0.1:*\"\n  events: \"tcp://127.0.0.1:*\"\n"
             "model: \"%s\"\nworkers: 2\n",
             missing);
    ck_assert_int_eq(tu_write(cfg, yaml, strlen(yaml)), 0);
    char wbin[4200];
    const char *b = getenv("COIL_BUILDDIR");
    snprintf(wbin, sizeof wbin, "%s/workers/coil-worker", b && *b ? b : ".");
    setenv("COIL_WORKER_BIN", wbin, 1);
    const char *a[] = {"--config", cfg, "--db", db, NULL};
    ck_assert_int_eq(wait_coil(spawn_prog("coild", a, -1, -1), 90), 1);
    unsetenv("COIL_WORKER_BIN");
    expect_in(err_path, "no worker could start: every worker exited with an error 5 times in a row");
    expect_in(err_path, "not starting it again");
    expect_in(err_path, "no-such-model"); /* the workers' own error, naming what is wrong */
    /* each worker was started exactly 5 times, no more */
    char *log = slurp(err_path);
    int w0 = 0, w1 = 0;
    for (const char *p = log; (p = strstr(p, "started worker ")); p++) {
        w0 += strncmp(p + 15, "w0 ", 3) == 0;
        w1 += strncmp(p + 15, "w1 ", 3) == 0;
    }
    free(log);
    ck_assert_msg(w0 == 5 && w1 == 5, "workers started %d and %d times", w0, w1);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("firsthour");
    TCase *tc = tcase_create("cli");
    tcase_set_timeout(tc, 300);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_help_and_version);
    tcase_add_test(tc, test_readers_do_not_create);
    tcase_add_test(tc, test_reingest_is_idempotent);
    tcase_add_test(tc, test_binary_input);
    tcase_add_test(tc, test_terminal_output_escaped);
    tcase_add_test(tc, test_progress_in_a_log);
    tcase_add_test(tc, test_damaged_checkpoint_not_used);
    tcase_add_test(tc, test_check_sees_random_bytes);
    tcase_add_loop_test(tc, test_signal_then_resume, 0, 2);
    tcase_add_test(tc, test_coild_gives_up_on_workers_that_cannot_start);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
