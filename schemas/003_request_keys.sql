-- 003_request_keys.sql -- schema version 3: session writes made at most once.
--
-- A session append may carry a request key chosen by its sender (a client,
-- or coild for a job it may have to re-run after a worker died).  The key is
-- recorded in the same transaction as the tokens and the checkpoint, so a
-- repeat of the request finds it and gets the first result back instead of
-- appending a second time.  Keys go with their session (ON DELETE CASCADE).
--
-- Invariants (src/store.h):
--   K1  a key is used by at most one append (PRIMARY KEY);
--   K2  head_after - head_before tokens were appended to session_id by it;
--   K3  result, if not NULL, is the JSON text its sender recorded as the
--       answer to give a repeat.

CREATE TABLE request_keys (
    key         TEXT    PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 128),
    session_id  TEXT    NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    head_before INTEGER NOT NULL CHECK (head_before >= 0),
    head_after  INTEGER NOT NULL CHECK (head_after >= head_before),
    result      TEXT,
    created     INTEGER NOT NULL DEFAULT (CAST(strftime('%s','now') AS INTEGER))
) WITHOUT ROWID;
CREATE INDEX request_keys_session ON request_keys(session_id);
