CREATE TABLE services (
    workspace         TEXT NOT NULL REFERENCES workspaces(name),
    name              TEXT NOT NULL,
    compute_type      TEXT NOT NULL,
    compute_target    TEXT NOT NULL,
    state             TEXT NOT NULL,
    error             TEXT NOT NULL DEFAULT '',
    models            TEXT NOT NULL DEFAULT '[]',
    inference_config  TEXT NOT NULL DEFAULT '{}',
    deployment_config TEXT NOT NULL DEFAULT '{}',
    source_sha256     TEXT NOT NULL DEFAULT '',
    primary_key       TEXT NOT NULL DEFAULT '',
    secondary_key     TEXT NOT NULL DEFAULT '',
    description       TEXT NOT NULL DEFAULT '',
    tags              TEXT NOT NULL DEFAULT '{}',
    properties        TEXT NOT NULL DEFAULT '{}',
    generation        INTEGER NOT NULL DEFAULT 1,
    replicas          INTEGER NOT NULL DEFAULT 0,
    created_time      TEXT NOT NULL,
    updated_time      TEXT NOT NULL,
    PRIMARY KEY (workspace, name)
);
CREATE INDEX services_source ON services(source_sha256);
-- Scoring URIs carry only the service name, so names are unique across workspaces.
CREATE UNIQUE INDEX services_name ON services(name);

CREATE TABLE operations (
    id           TEXT PRIMARY KEY,
    workspace    TEXT NOT NULL,
    kind         TEXT NOT NULL,
    target       TEXT NOT NULL,
    state        TEXT NOT NULL,
    error        TEXT NOT NULL DEFAULT '',
    created_time TEXT NOT NULL,
    updated_time TEXT NOT NULL
);
CREATE INDEX operations_state ON operations(state);
