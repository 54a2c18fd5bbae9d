"""The schema of the Postgres outcome store: numbered migrations, recorded in ``schema_version``.

:meth:`store.postgres.PostgresBackend.apply_migrations` applies the ones a database lacks, in one transaction
under an advisory lock; a database migrated by a newer fusiongraph is refused.
"""

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "subtasks, outcomes and metadata",
        """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE subtasks (
    id BIGSERIAL PRIMARY KEY,
    text_hash TEXT NOT NULL UNIQUE,
    text TEXT NOT NULL,
    task_class TEXT,
    embedding BYTEA NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE outcomes (
    id BIGSERIAL PRIMARY KEY,
    subtask_id BIGINT NOT NULL REFERENCES subtasks(id),
    model TEXT NOT NULL,
    task_class TEXT,
    success DOUBLE PRECISION NOT NULL CHECK (success >= 0 AND success <= 1),
    accepted BOOLEAN NOT NULL,
    judges TEXT NOT NULL DEFAULT '{}',
    answer TEXT,
    error TEXT,
    tokens_in BIGINT NOT NULL DEFAULT 0,
    tokens_out BIGINT NOT NULL DEFAULT 0,
    cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
    latency_s DOUBLE PRECISION NOT NULL DEFAULT 0,
    source TEXT NOT NULL DEFAULT 'live',
    run_id TEXT,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX outcomes_subtask ON outcomes(subtask_id);
CREATE INDEX outcomes_source ON outcomes(source);
""",
    ),
    (
        2,
        "artifacts: derived data the workers share (the success probe's fit)",
        """
CREATE TABLE artifacts (
    name TEXT PRIMARY KEY,
    data BYTEA NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
""",
    ),
    (
        3,
        "API keys (sha256 only), their spend per period and a log of charges (fusiongraph/keys.py, store/keys_postgres.py)",
        """
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    budget_usd DOUBLE PRECISION NOT NULL CHECK (budget_usd >= 0),
    period TEXT NOT NULL CHECK (period IN ('day', 'month', 'total')),
    created_at DOUBLE PRECISION NOT NULL,
    revoked_at DOUBLE PRECISION
);
CREATE TABLE api_key_spend (
    key_id TEXT NOT NULL REFERENCES api_keys(id),
    period_start TEXT NOT NULL,
    spent_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
    runs BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, period_start)
);
CREATE TABLE api_key_charges (
    id BIGSERIAL PRIMARY KEY,
    key_id TEXT NOT NULL,
    period_start TEXT NOT NULL,
    cost_usd DOUBLE PRECISION NOT NULL,
    run_id TEXT,
    created_at DOUBLE PRECISION NOT NULL
);
""",
    ),
    (
        4,
        "a run is charged to its API key at most once (unique run ids among the charges)",
        "CREATE UNIQUE INDEX api_key_charges_run ON api_key_charges (run_id) WHERE run_id IS NOT NULL;",
    ),
    (
        5,
        "answer cache: an accepted answer per subtask and scope (API key), reused for near-identical subtasks",
        """
CREATE TABLE answer_cache (
    subtask_id BIGINT NOT NULL REFERENCES subtasks(id),
    scope TEXT NOT NULL,
    model TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    task_class TEXT,
    answer TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (subtask_id, scope)
);
""",
    ),
    (
        6,
        "erasures: one row per `store forget` (counts only), so every worker drops what was erased",
        """
CREATE TABLE erasures (
    id BIGSERIAL PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    subtasks BIGINT NOT NULL,
    outcomes BIGINT NOT NULL
);
""",
    ),
    (
        7,
        "outcomes.after_rejection: recorded after an earlier tier's answer to the subtask was rejected (older rows: no)",
        "ALTER TABLE outcomes ADD COLUMN after_rejection BOOLEAN NOT NULL DEFAULT false;",
    ),
    (
        8,
        "responses: the Responses API's stored conversations per API key, as JSON (fusiongraph/response_store.py)",
        """
CREATE TABLE responses (
    id TEXT PRIMARY KEY,
    key_id TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    messages TEXT NOT NULL
);
CREATE INDEX responses_created ON responses (created_at);
""",
    ),
]
LATEST = MIGRATIONS[-1][0]
