//! The PostgreSQL schema: versioned migrations the service applies itself, under an advisory
//! lock so that instances starting at once apply each exactly once.
//!
//! The tables mirror the SQLite ledger's (`ccr_prompts` is its `prompts`): times are Unix
//! milliseconds and JSON is stored as the exact text sent, so an answer is re-sent byte for
//! byte and a row reads back the same from either backend.

use tokio_postgres::Client;

/// Key of the advisory lock migrations run under (any constant unique to this service).
const MIGRATION_LOCK: i64 = 0x0cc2_5e1e_d9e2;

/// Each migration: its version and the SQL that brings the previous version to it.
/// Append only: a released migration is never edited.
pub(crate) const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "the decision ledger",
        "CREATE TABLE ccr_prompts (
        session_id    TEXT    NOT NULL,
        request_id    TEXT    NOT NULL,
        tool_use_id   TEXT,
        tool_name     TEXT    NOT NULL,
        input         TEXT    NOT NULL,
        request       TEXT    NOT NULL,
        received_at   BIGINT  NOT NULL,
        outcome       TEXT CHECK (outcome IN ('allowed', 'denied', 'cancelled', 'expired')),
        decided_by    TEXT,
        decided_at    BIGINT,
        updated_input TEXT,
        answer        TEXT,
        reason        TEXT,
        delivered_at  BIGINT,
        deliveries    BIGINT  NOT NULL DEFAULT 0,
        last_delivered_at BIGINT,
        PRIMARY KEY (session_id, request_id)
    );
    CREATE INDEX ccr_prompts_by_time ON ccr_prompts (received_at, session_id, request_id);
    CREATE INDEX ccr_prompts_by_session ON ccr_prompts (session_id, received_at, request_id);
    CREATE INDEX ccr_prompts_unfinished ON ccr_prompts (received_at, session_id, request_id)
        WHERE outcome IS NULL OR (outcome <> 'cancelled' AND delivered_at IS NULL);",
    ),
    (
        2,
        "cluster members, session leases, and the decision notification",
        // The tables of `cluster::store::SCHEMA`, and a trigger that tells the instances
        // (channel `cluster::DECIDED_CHANNEL`) when a prompt is decided, in the deciding
        // transaction: the owner delivers a decision recorded on another instance.
        "CREATE TABLE IF NOT EXISTS ccr_members (
            instance_id   text PRIMARY KEY,
            advertise_url text,
            started_at    timestamptz NOT NULL DEFAULT now(),
            heartbeat_at  timestamptz NOT NULL DEFAULT now(),
            draining      boolean NOT NULL DEFAULT false
        );
        CREATE TABLE IF NOT EXISTS ccr_leases (
            session_id  text PRIMARY KEY,
            owner       text NOT NULL,
            epoch       bigint NOT NULL,
            expires_at  timestamptz NOT NULL,
            acquired_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE FUNCTION ccr_notify_decided() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('ccr_decided', NEW.session_id || chr(10) || NEW.request_id);
            RETURN NULL;
        END $$;
        CREATE TRIGGER ccr_prompts_decided AFTER UPDATE OF outcome ON ccr_prompts
            FOR EACH ROW WHEN (OLD.outcome IS DISTINCT FROM NEW.outcome)
            EXECUTE FUNCTION ccr_notify_decided();",
    ),
    (
        3,
        "the new-prompt notification",
        // Channel `cluster::PROMPTED_CHANNEL`: the instances that do not own the session
        // publish the prompt on their own event streams.
        "CREATE FUNCTION ccr_notify_prompted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('ccr_prompted', NEW.session_id || chr(10) || NEW.request_id);
            RETURN NULL;
        END $$;
        CREATE TRIGGER ccr_prompts_prompted AFTER INSERT ON ccr_prompts
            FOR EACH ROW EXECUTE FUNCTION ccr_notify_prompted();",
    ),
    (
        4,
        "sessions added at run time, and the session-set notification",
        // `cluster::store::sessions`: a row with a `spec` is a session added with
        // `POST /v1/sessions` (the body as stored JSON: token references, never a secret);
        // a row without one is a configured session removed with `DELETE`. `revision` grows
        // at every change, so each round reads the specs of changed rows only. A trigger
        // tells the instances (channel `cluster::SESSIONS_CHANNEL`) in the changing
        // transaction. `sessions_digest`: a member's configured session ids, hashed, so that
        // a configured session is placed only on members whose config has it.
        "CREATE SEQUENCE ccr_sessions_revision;
        CREATE TABLE ccr_sessions (
            session_id text PRIMARY KEY,
            spec       text,
            revision   bigint NOT NULL DEFAULT nextval('ccr_sessions_revision'),
            added_by   text NOT NULL,
            added_on   text NOT NULL,
            added_at   timestamptz NOT NULL DEFAULT now(),
            removed_by text,
            removed_on text,
            removed_at timestamptz,
            CHECK ((spec IS NULL) = (removed_at IS NOT NULL))
        );
        CREATE FUNCTION ccr_notify_sessions() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                PERFORM pg_notify('ccr_sessions', OLD.session_id);
            ELSE
                PERFORM pg_notify('ccr_sessions', NEW.session_id);
            END IF;
            RETURN NULL;
        END $$;
        CREATE TRIGGER ccr_sessions_changed AFTER INSERT OR UPDATE OR DELETE ON ccr_sessions
            FOR EACH ROW EXECUTE FUNCTION ccr_notify_sessions();
        ALTER TABLE ccr_members ADD COLUMN sessions_digest bigint NOT NULL DEFAULT 0;",
    ),
    (
        5,
        "notifications per statement, not per row",
        // The writer records a commit's prompts (decisions, deliveries) in one statement
        // each: one `NOTIFY` per statement on the same channels, its payload a JSON array
        // of `[session_id, request_id]` pairs (`cluster::member::listen::parse`), cut
        // into several notifications where one would reach PostgreSQL's 8000-byte limit.
        // A key that alone is too long fails its statement, as it did before.
        "DROP TRIGGER ccr_prompts_decided ON ccr_prompts;
        DROP TRIGGER ccr_prompts_prompted ON ccr_prompts;
        DROP FUNCTION ccr_notify_decided();
        DROP FUNCTION ccr_notify_prompted();
        CREATE FUNCTION ccr_notify_keys(channel text, keys text[]) RETURNS void
        LANGUAGE plpgsql AS $$
        DECLARE
            chunk text := '';
            item text;
        BEGIN
            FOREACH item IN ARRAY keys LOOP
                IF chunk <> '' AND octet_length(chunk) + octet_length(item) + 3 > 7999 THEN
                    PERFORM pg_notify(channel, '[' || chunk || ']');
                    chunk := '';
                END IF;
                chunk := CASE WHEN chunk = '' THEN item ELSE chunk || ',' || item END;
            END LOOP;
            IF chunk <> '' THEN
                PERFORM pg_notify(channel, '[' || chunk || ']');
            END IF;
        END $$;
        CREATE FUNCTION ccr_notify_prompted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM ccr_notify_keys('ccr_prompted', ARRAY(
                SELECT json_build_array(session_id, request_id)::text FROM ccr_inserted));
            RETURN NULL;
        END $$;
        CREATE FUNCTION ccr_notify_decided() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            -- The rows whose outcome changed: (key, outcome) after, less those before (a
            -- set difference, linear, and NULL equals NULL in it; a join of the two
            -- transition tables is planned as a nested loop, quadratic).
            PERFORM ccr_notify_keys('ccr_decided', ARRAY(
                SELECT json_build_array(session_id, request_id)::text
                FROM (SELECT session_id, request_id, outcome FROM ccr_after
                      EXCEPT ALL SELECT session_id, request_id, outcome FROM ccr_before) d));
            RETURN NULL;
        END $$;
        CREATE TRIGGER ccr_prompts_prompted AFTER INSERT ON ccr_prompts
            REFERENCING NEW TABLE AS ccr_inserted
            FOR EACH STATEMENT EXECUTE FUNCTION ccr_notify_prompted();
        CREATE TRIGGER ccr_prompts_decided AFTER UPDATE ON ccr_prompts
            REFERENCING OLD TABLE AS ccr_before NEW TABLE AS ccr_after
            FOR EACH STATEMENT EXECUTE FUNCTION ccr_notify_decided();",
    ),
    (
        6,
        "a prompt inserted decided notifies its decision",
        // The writer inserts a prompt that a rule answered on arrival with its decision
        // (`batch::DECIDED_COLUMNS`) instead of inserting it and then updating it: the
        // insert's trigger now also sends `ccr_decided` for the rows it inserted decided,
        // after their `ccr_prompted`, as the update's trigger did.
        "CREATE OR REPLACE FUNCTION ccr_notify_prompted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM ccr_notify_keys('ccr_prompted', ARRAY(
                SELECT json_build_array(session_id, request_id)::text FROM ccr_inserted));
            PERFORM ccr_notify_keys('ccr_decided', ARRAY(
                SELECT json_build_array(session_id, request_id)::text FROM ccr_inserted
                WHERE outcome IS NOT NULL));
            RETURN NULL;
        END $$;",
    ),
    (
        7,
        "the decision notification per decided row, only for statements that set outcome",
        // The statement-level `ccr_decided` trigger (migration 5) ran for every `UPDATE` of
        // `ccr_prompts`, the writer's delivery marks included (a third of its writes), and
        // had PostgreSQL keep both transition tables of each: about a sixth of the
        // writer's backend CPU (docs/benchmarks.md). A row trigger on `UPDATE OF outcome`
        // with a `WHEN` is not even considered for a statement that does not set
        // `outcome`, and for one that does is called only for the rows it decided. The
        // payload keeps its shape: a JSON array of pairs, here of one pair. The prompts a
        // rule decided on arrival are inserted decided and notified by the insert's
        // statement trigger (migration 6), so the writer's common case still sends one
        // notification a statement.
        "DROP TRIGGER ccr_prompts_decided ON ccr_prompts;
        CREATE OR REPLACE FUNCTION ccr_notify_decided() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('ccr_decided',
                json_build_array(json_build_array(NEW.session_id, NEW.request_id))::text);
            RETURN NULL;
        END $$;
        CREATE TRIGGER ccr_prompts_decided AFTER UPDATE OF outcome ON ccr_prompts
            FOR EACH ROW WHEN (OLD.outcome IS DISTINCT FROM NEW.outcome)
            EXECUTE FUNCTION ccr_notify_decided();",
    ),
    (
        8,
        "the cluster's key for requests forwarded between instances",
        // `key::load_or_create` stores a random key here once; an instance signs with it
        // what it forwards to a session's owner on a caller's behalf (`api::grant`).
        "CREATE TABLE ccr_cluster_keys (
            name       TEXT PRIMARY KEY,
            key        BYTEA NOT NULL CHECK (octet_length(key) = 32),
            created_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );",
    ),
];

/// The newest schema version this build knows.
pub(crate) fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Bring the database to [`latest`], one transaction per migration, each under the
/// advisory lock; returns the version found before. A database newer than this build is
/// refused (an older build must not write to a schema it does not know).
pub(crate) async fn migrate(client: &mut Client) -> Result<i32, String> {
    let e = |what: &str, err: tokio_postgres::Error| format!("{what}: {}", super::describe(&err));
    let mut found = None;
    loop {
        let tx = client
            .transaction()
            .await
            .map_err(|err| e("cannot begin a migration", err))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(|err| e("cannot take the migration lock", err))?;
        // Under the lock: instances starting at once would otherwise race in the
        // catalog (`CREATE TABLE IF NOT EXISTS` is not safe against a concurrent one).
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS ccr_migrations (
                version     INTEGER PRIMARY KEY,
                description TEXT NOT NULL,
                applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(|err| e("cannot create ccr_migrations", err))?;
        let current: i32 = tx
            .query_one("SELECT COALESCE(max(version), 0) FROM ccr_migrations", &[])
            .await
            .map_err(|err| e("cannot read the schema version", err))?
            .get(0);
        found.get_or_insert(current);
        if current > latest() {
            return Err(format!(
                "the database's schema is version {current}, newer than this build's {}: run the newer build",
                latest()
            ));
        }
        let Some((version, description, sql)) = MIGRATIONS.iter().find(|m| m.0 == current + 1)
        else {
            return Ok(found.unwrap_or(current));
        };
        tx.batch_execute(sql)
            .await
            .map_err(|err| e(&format!("migration {version} ({description}) failed"), err))?;
        tx.execute(
            "INSERT INTO ccr_migrations (version, description) VALUES ($1, $2)",
            &[version, description],
        )
        .await
        .map_err(|err| e("cannot record the migration", err))?;
        tx.commit()
            .await
            .map_err(|err| e(&format!("migration {version} did not commit"), err))?;
        tracing::info!(version, description, "ledger database migrated");
    }
}
