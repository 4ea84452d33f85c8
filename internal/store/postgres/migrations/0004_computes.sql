-- Attached compute targets; the built-in 'local' target is not stored.
CREATE TABLE computes (
    workspace          TEXT NOT NULL REFERENCES workspaces(name),
    name               TEXT NOT NULL,
    compute_type       TEXT NOT NULL,
    provisioning_state TEXT NOT NULL,
    cluster_purpose    TEXT NOT NULL DEFAULT '',
    vcpus              DOUBLE PRECISION NOT NULL DEFAULT 0,
    server             TEXT NOT NULL DEFAULT '',
    namespace          TEXT NOT NULL DEFAULT '',
    context            TEXT NOT NULL DEFAULT '',
    kubeconfig         TEXT NOT NULL DEFAULT '',
    resource_id        TEXT NOT NULL DEFAULT '',
    registry           TEXT NOT NULL DEFAULT '',
    insecure_registry  BOOLEAN NOT NULL DEFAULT FALSE,
    created_time       TEXT NOT NULL,
    PRIMARY KEY (workspace, name)
);
-- One namespace of one cluster is one target: two targets there would fight over the same router.
CREATE UNIQUE INDEX computes_cluster ON computes(server, namespace) WHERE server <> '';
