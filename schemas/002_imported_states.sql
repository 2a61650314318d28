-- 002_imported_states.sql -- schema version 2: imported documents.
--
-- `coil state import` brings a recurrent state made elsewhere (another
-- database, another machine) in as a document whose history before the
-- state's position is not in this database: no chunks, one checkpoint at
-- base_position.  Ingested documents keep base_position = 0, so every
-- version-1 row means what it meant before.
--
-- Invariants with the new column (src/store.h):
--   I1  chunk 0 starts at token base_position (and byte 0);
--   I2  a document checkpoint sits at base_position or at the token_end of
--       one of its chunks;
--   I4  a complete document's token_len is its last chunk's token_end, or
--       base_position when it has no chunks.
--   An 'import' document has a checkpoint at base_position.

ALTER TABLE documents ADD COLUMN base_position INTEGER NOT NULL DEFAULT 0
    CHECK (base_position >= 0);
ALTER TABLE documents ADD COLUMN origin TEXT NOT NULL DEFAULT 'ingest'
    CHECK (origin IN ('ingest', 'import'));
