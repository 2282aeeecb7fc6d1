-- The PostgreSQL blob store (docs/decisions/0008-blob-stores.md): content-addressed bytes, so a
-- fleet of workers needs no shared folder. A blob's header row and all its parts are written in
-- one transaction, so a key that exists always has all of its bytes.

CREATE TABLE blobs (
    key         text PRIMARY KEY CHECK (key ~ '^[0-9a-f]{64}$'),
    size_bytes  bigint NOT NULL CHECK (size_bytes >= 0),
    parts       integer NOT NULL CHECK (parts >= 1),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Parts of at most blobs.part_bytes (1 MiB by default), so no value is huge and reads stream.
CREATE TABLE blob_parts (
    key   text NOT NULL REFERENCES blobs (key) ON DELETE CASCADE,
    part  integer NOT NULL CHECK (part >= 0),
    data  bytea NOT NULL,
    PRIMARY KEY (key, part)
);
-- Uploads are mostly compressed formats and parsed text is read back once: compressing every
-- part costs more CPU than the disk it saves.
ALTER TABLE blob_parts ALTER COLUMN data SET STORAGE EXTERNAL;
