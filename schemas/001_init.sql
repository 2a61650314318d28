-- 001_init.sql -- coil's state store, schema version 1.
--
-- Applied by src/store_migrate.c inside one BEGIN IMMEDIATE transaction,
-- which then sets PRAGMA user_version = 1.  Never edit a released
-- migration: add schemas/NNN_<what>.sql with the next number instead.
--
-- Conventions: times are unix seconds; 64-bit hashes and fingerprints are
-- stored as the signed INTEGER with the same bit pattern; token ids are
-- little-endian int32 blobs; positions count tokens from the start of a
-- document (sessions continue that count).

-- One row per model the store has seen (weights identified by fingerprint).
CREATE TABLE models (
    id          INTEGER PRIMARY KEY,
    fingerprint INTEGER NOT NULL UNIQUE,
    path        TEXT    NOT NULL,
    dims        TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(dims)),
    created     INTEGER NOT NULL DEFAULT (CAST(strftime('%s', 'now') AS INTEGER))
);

-- A document streamed through a model, chunk by chunk.
CREATE TABLE documents (
    id           INTEGER PRIMARY KEY AUTOINCREMENT, -- ids of replaced documents never come back
    name         TEXT    NOT NULL UNIQUE,
    model_id     INTEGER NOT NULL REFERENCES models(id),
    source_hash  INTEGER NOT NULL,
    byte_len     INTEGER NOT NULL DEFAULT 0 CHECK (byte_len >= 0),
    token_len    INTEGER NOT NULL DEFAULT 0 CHECK (token_len >= 0),
    status       TEXT    NOT NULL DEFAULT 'ingesting'
                         CHECK (status IN ('ingesting', 'complete', 'failed')),
    chunk_tokens INTEGER NOT NULL CHECK (chunk_tokens > 0),
    error        TEXT,
    created      INTEGER NOT NULL DEFAULT (CAST(strftime('%s', 'now') AS INTEGER)),
    updated      INTEGER NOT NULL DEFAULT (CAST(strftime('%s', 'now') AS INTEGER))
);

-- The chunk grid of a document: contiguous, seq 0..n-1, token and byte
-- ranges half-open and abutting.  tokens holds the chunk's ids (int32 LE).
CREATE TABLE chunks (
    id          INTEGER PRIMARY KEY,
    doc_id      INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL CHECK (seq >= 0),
    token_start INTEGER NOT NULL CHECK (token_start >= 0),
    token_end   INTEGER NOT NULL CHECK (token_end >= token_start),
    byte_start  INTEGER NOT NULL CHECK (byte_start >= 0),
    byte_end    INTEGER NOT NULL CHECK (byte_end >= byte_start),
    text        TEXT    NOT NULL,
    tokens      BLOB    NOT NULL CHECK (length(tokens) = 4 * (token_end - token_start)),
    UNIQUE (doc_id, seq)
);
CREATE INDEX chunks_doc_end ON chunks(doc_id, token_end);

-- Keyword search over chunk text (external content: the text lives once,
-- in chunks; the triggers keep the index in step).
CREATE VIRTUAL TABLE chunks_fts USING fts5(
    text, content = 'chunks', content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER chunks_fts_ai AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER chunks_fts_ad AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER chunks_fts_au AFTER UPDATE OF text ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);
END;

-- A conversation-like continuation of a document.  Its timeline is the
-- parent's (or, for a root session, the document's) timeline on
-- [0, base) followed by its own appended tokens on [base, head).  Sessions
-- are append-only, so a child can share its ancestors' history forever.
CREATE TABLE sessions (
    id        TEXT    PRIMARY KEY CHECK (length(id) = 16),
    parent_id TEXT    REFERENCES sessions(id) ON DELETE RESTRICT,
    doc_id    INTEGER NOT NULL REFERENCES documents(id) ON DELETE RESTRICT,
    base      INTEGER NOT NULL CHECK (base >= 0),
    head      INTEGER NOT NULL CHECK (head >= base),
    created   INTEGER NOT NULL DEFAULT (CAST(strftime('%s', 'now') AS INTEGER)),
    updated   INTEGER NOT NULL DEFAULT (CAST(strftime('%s', 'now') AS INTEGER))
);
CREATE INDEX sessions_parent ON sessions(parent_id);
CREATE INDEX sessions_doc ON sessions(doc_id);

-- A session's own tokens, one row per append: positions [pos_start, pos_end).
CREATE TABLE session_tokens (
    session_id TEXT    NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    pos_start  INTEGER NOT NULL CHECK (pos_start >= 0),
    pos_end    INTEGER NOT NULL CHECK (pos_end > pos_start),
    tokens     BLOB    NOT NULL CHECK (length(tokens) = 4 * (pos_end - pos_start)),
    PRIMARY KEY (session_id, pos_start)
) WITHOUT ROWID;

-- Recurrent-state checkpoints: the engine's opaque state blob after
-- `position` tokens of a document or a session.  The blob is the last
-- column so that metadata reads never touch its overflow pages.
CREATE TABLE checkpoints (
    id          INTEGER PRIMARY KEY,
    doc_id      INTEGER REFERENCES documents(id) ON DELETE CASCADE,
    session_id  TEXT    REFERENCES sessions(id) ON DELETE CASCADE,
    position    INTEGER NOT NULL CHECK (position >= 0),
    fingerprint INTEGER NOT NULL,
    checksum    INTEGER NOT NULL,
    size        INTEGER NOT NULL CHECK (size >= 0),
    created     INTEGER NOT NULL DEFAULT (CAST(strftime('%s', 'now') AS INTEGER)),
    state       BLOB    NOT NULL,
    CHECK ((doc_id IS NULL) <> (session_id IS NULL))
);
CREATE UNIQUE INDEX checkpoints_doc ON checkpoints(doc_id, position)
    WHERE doc_id IS NOT NULL;
CREATE UNIQUE INDEX checkpoints_session ON checkpoints(session_id, position)
    WHERE session_id IS NOT NULL;
