/* store_migrate.c -- schema versioning for the state store.
 *
 * The schema is the sequence of schemas/NNN_*.sql files, embedded at build
 * time into coil_store__migrations[] (store_schema.c, made by
 * schemas/sql2c.sh).  PRAGMA user_version records how many have been
 * applied.  Opening a file applies the missing ones, oldest first, in one
 * BEGIN IMMEDIATE transaction (so two processes opening a new file at once
 * migrate it exactly once); a file newer than this build is refused before
 * anything is written to it.
 */
#include "store_internal.h"

#include <stdio.h>

int coil_store_schema_version(void)
{
    return (int)coil_store__n_migrations;
}

static int read_version(coil_store_t *st, int *version, coil_err_t *err)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &s, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            *version = sqlite3_column_int(s, 0);
            rc = SQLITE_OK;
        }
    }
    if (rc != SQLITE_OK) {
        coil_store__fail(st, err, rc, "reading PRAGMA user_version");
        sqlite3_finalize(s);
        return err ? err->code : COIL_EDB;
    }
    sqlite3_finalize(s);
    return 0;
}

static int too_new(coil_store_t *st, int version, coil_err_t *err)
{
    return coil_err_set(err, COIL_EVERSION,
                        "%s: schema version %d is newer than this build knows (%d); "
                        "use a newer coil",
                        st->path, version, (int)coil_store__n_migrations);
}

int coil_store__version_check(coil_store_t *st, int *version, coil_err_t *err)
{
    int rc = read_version(st, version, err);
    if (rc)
        return rc;
    if (*version < 0 || (size_t)*version > coil_store__n_migrations)
        return too_new(st, *version, err);
    return 0;
}

int coil_store__migrate(coil_store_t *st, coil_err_t *err)
{
    int version, rc;

    if ((rc = coil_store__version_check(st, &version, err)) != 0)
        return rc;
    if ((size_t)version == coil_store__n_migrations)
        return 0;
    if ((rc = coil_store__begin(st, err)) != 0)
        return rc;
    /* Another process may have migrated between the check and the lock. */
    if ((rc = coil_store__version_check(st, &version, err)) != 0)
        goto fail;
    for (size_t i = (size_t)version; i < coil_store__n_migrations; i++) {
        const coil_store__migration_t *m = &coil_store__migrations[i];
        char op[96];
        int src = sqlite3_exec(st->db, m->sql, NULL, NULL, NULL);
        if (src != SQLITE_OK) {
            snprintf(op, sizeof op, "applying migration %s", m->name);
            rc = coil_store__fail(st, err, src, op);
            goto fail;
        }
    }
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", (int)coil_store__n_migrations);
    int src = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
    if (src != SQLITE_OK) {
        rc = coil_store__fail(st, err, src, "setting PRAGMA user_version");
        goto fail;
    }
    return coil_store__commit(st, err);
fail:
    coil_store__rollback(st);
    return rc;
}
