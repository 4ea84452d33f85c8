CREATE TABLE workspaces (
    name         TEXT PRIMARY KEY,
    description  TEXT NOT NULL DEFAULT '',
    created_time TEXT NOT NULL
);

-- next_version keeps version numbers increasing after deletes, as Azure ML never reuses one.
CREATE TABLE model_names (
    workspace    TEXT NOT NULL REFERENCES workspaces(name),
    name         TEXT NOT NULL,
    next_version INTEGER NOT NULL,
    PRIMARY KEY (workspace, name)
);

CREATE TABLE models (
    workspace    TEXT NOT NULL,
    name         TEXT NOT NULL,
    version      INTEGER NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    tags         TEXT NOT NULL DEFAULT '{}',
    properties   TEXT NOT NULL DEFAULT '{}',
    created_time TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    size_bytes   BIGINT NOT NULL,
    files        TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (workspace, name, version),
    FOREIGN KEY (workspace, name) REFERENCES model_names(workspace, name)
);
CREATE INDEX models_sha256 ON models(sha256);

CREATE TABLE tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    hash         BYTEA NOT NULL,
    created_time TEXT NOT NULL
);
