//! verify and baseline against real PostgreSQL: the expected schema is rehearsed on the server,
//! so drift introduced by hand is named, and a hand-made database is stamped only when exact.

use std::time::Duration;

use ecomind_migrate::fingerprint::describe;
use ecomind_migrate::{
    baseline, verify, Actor, BaselineOptions, BaselineProgress, Catalog, Error, TableRows,
    VerifyOptions, VerifyReport,
};
use ecomind_testkit::{database, TestDb};

use crate::common::{actor, applied_versions, migrate_to, repo_catalog};

fn verify_options() -> VerifyOptions {
    VerifyOptions {
        lock_wait: Duration::from_secs(30),
        lock_timeout: Some(Duration::from_secs(5)),
        statement_timeout: None,
    }
}

fn up(db: &TestDb, catalog: &Catalog) {
    migrate_to(&mut db.client(), catalog, None).expect("migrate");
}

fn check(db: &TestDb, catalog: &Catalog) -> VerifyReport {
    verify(&mut db.client(), catalog, &verify_options()).expect("verify runs")
}

#[test]
fn verify_passes_on_an_untouched_database_and_names_drift_made_by_hand() {
    let db = database();
    let catalog = repo_catalog();
    let fresh = check(&db, &catalog);
    assert!(fresh.matches(), "{}", describe(&fresh.differences));
    up(&db, &catalog);
    let clean = check(&db, &catalog);
    assert!(clean.matches(), "{}", describe(&clean.differences));
    assert_eq!(clean.versions, vec![1, 2, 3, 4]);
    assert_eq!(clean.schema, "public");
    assert!(clean.expected_objects > 100, "{}", clean.expected_objects);

    let drifts: &[(&str, &str, &[&str])] = &[
        (
            "DROP INDEX idx_events_org_id_ts",
            "CREATE INDEX CONCURRENTLY idx_events_org_id_ts ON events_enriched (org_id, ts)",
            &[
                "missing index public.idx_events_org_id_ts",
                "expected: CREATE INDEX idx_events_org_id_ts ON public.events_enriched USING btree (org_id, ts)",
            ],
        ),
        (
            "ALTER TABLE users ADD COLUMN nickname text",
            "ALTER TABLE users DROP COLUMN nickname",
            &["extra column public.users.nickname", "actual:   text"],
        ),
        (
            "ALTER TABLE organizations ALTER COLUMN plan_type SET DEFAULT 'pro'",
            "ALTER TABLE organizations ALTER COLUMN plan_type SET DEFAULT 'free'",
            &[
                "changed column public.organizations.plan_type",
                "expected: character varying(50) default 'free'::character varying",
                "actual:   character varying(50) default 'pro'::character varying",
            ],
        ),
    ];
    let mut client = db.client();
    for (drift, undo, expected) in drifts {
        client.batch_execute(drift).expect(drift);
        let report = check(&db, &catalog);
        let shown = describe(&report.differences);
        assert!(!report.matches(), "{drift}: no drift found");
        for line in *expected {
            assert!(
                shown.contains(line),
                "{drift}: expected `{line}` in:\n{shown}"
            );
        }
        client.batch_execute(undo).expect(undo);
    }
    let restored = check(&db, &catalog);
    assert!(restored.matches(), "{}", describe(&restored.differences));
}

#[test]
fn verify_refuses_a_migration_that_reaches_into_the_live_schema() {
    let db = database();
    let catalog = Catalog::from_files([
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("V1__a.down.sql", "DROP TABLE a;"),
        ("V2__b.sql", "ALTER TABLE public.a ADD COLUMN b int;"),
        ("V2__b.down.sql", "ALTER TABLE public.a DROP COLUMN b;"),
    ])
    .expect("valid");
    up(&db, &catalog);
    let err = verify(&mut db.client(), &catalog, &verify_options()).expect_err("public.a");
    let message = err.to_string();
    assert!(matches!(err, Error::Rehearsal { .. }), "{message}");
    assert!(message.contains("V2__b.sql"), "{message}");
    assert!(message.contains("public.a"), "{message}");
    let columns: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'a'",
            &[],
        )
        .expect("columns")
        .get(0);
    assert_eq!(columns, 2, "the live table is untouched");
}

/// The production schema written by hand from SCHEMA.md's table (not by running V1): other
/// spellings of the same types, constraints declared apart, statements in another order.
const HAND_MADE: &str = r#"
CREATE TABLE organizations (
    org_id character varying(255) NOT NULL,
    name character varying(255) NOT NULL,
    plan_type character varying(50) DEFAULT 'free',
    created_at timestamp with time zone DEFAULT now(),
    updated_at timestamp with time zone DEFAULT now(),
    CONSTRAINT organizations_pkey PRIMARY KEY (org_id)
);
CREATE TABLE users (
    user_id varchar(255) NOT NULL,
    org_id varchar(255),
    email varchar(255),
    role varchar(50) DEFAULT 'viewer',
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now()
);
ALTER TABLE users ADD CONSTRAINT users_pkey PRIMARY KEY (user_id);
ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);
ALTER TABLE users ADD CONSTRAINT users_org_id_fkey FOREIGN KEY (org_id) REFERENCES organizations (org_id) ON DELETE CASCADE;
CREATE TABLE audit_logs (
    id bigserial PRIMARY KEY,
    org_id varchar(255),
    user_id varchar(255),
    action varchar(100) NOT NULL,
    resource_type varchar(100),
    resource_id varchar(255),
    metadata jsonb,
    ip_address varchar(50),
    "timestamp" timestamptz DEFAULT now()
);
CREATE TABLE events_enriched (
    id text PRIMARY KEY,
    org_id varchar(255) NOT NULL,
    user_id varchar(255) NOT NULL,
    provider varchar(50) NOT NULL,
    model varchar(100),
    tokens_in integer DEFAULT 0,
    tokens_out integer DEFAULT 0,
    node_type varchar(50),
    region varchar(100),
    kwh double precision NOT NULL,
    water_l double precision NOT NULL,
    co2_kg double precision NOT NULL,
    ts timestamptz NOT NULL,
    source varchar(50),
    metadata jsonb,
    created_at timestamptz DEFAULT now()
);
CREATE TABLE daily_org_agg (date date NOT NULL, org_id varchar(255) NOT NULL, call_count int DEFAULT 0,
    kwh float8 DEFAULT 0.0, water_l float8 DEFAULT 0.0, co2_kg float8 DEFAULT 0.0, PRIMARY KEY (date, org_id));
CREATE TABLE daily_user_agg (date date NOT NULL, org_id varchar(255) NOT NULL, user_id varchar(255) NOT NULL,
    call_count int DEFAULT 0, kwh float8 DEFAULT 0.0, water_l float8 DEFAULT 0.0, co2_kg float8 DEFAULT 0.0,
    PRIMARY KEY (date, org_id, user_id));
CREATE TABLE daily_provider_agg (date date NOT NULL, org_id varchar(255) NOT NULL, provider varchar(50) NOT NULL,
    call_count int DEFAULT 0, kwh float8 DEFAULT 0.0, water_l float8 DEFAULT 0.0, co2_kg float8 DEFAULT 0.0,
    PRIMARY KEY (date, org_id, provider));
CREATE TABLE daily_model_agg (date date NOT NULL, org_id varchar(255) NOT NULL, provider varchar(50) NOT NULL,
    model varchar(100) NOT NULL, call_count int DEFAULT 0, kwh float8 DEFAULT 0.0, water_l float8 DEFAULT 0.0,
    co2_kg float8 DEFAULT 0.0, PRIMARY KEY (date, org_id, provider, model));
CREATE INDEX idx_audit_logs_timestamp ON audit_logs ("timestamp");
CREATE INDEX idx_audit_logs_org_id ON audit_logs (org_id);
CREATE INDEX idx_daily_model_agg_date ON daily_model_agg (date);
CREATE INDEX idx_daily_provider_agg_date ON daily_provider_agg (date);
CREATE INDEX idx_daily_user_agg_org_id ON daily_user_agg (org_id);
CREATE INDEX idx_daily_user_agg_date ON daily_user_agg (date);
CREATE INDEX idx_daily_org_agg_date ON daily_org_agg (date);
CREATE INDEX idx_events_provider ON events_enriched (provider);
CREATE INDEX idx_events_ts ON events_enriched (ts);
CREATE INDEX idx_events_org_id ON events_enriched (org_id);
CREATE INDEX idx_users_email ON users (email);
CREATE INDEX idx_users_org_id ON users (org_id);
INSERT INTO organizations (org_id, name) VALUES ('o1', 'One'), ('o2', 'Two');
INSERT INTO users (user_id, org_id, email) VALUES ('u1', 'o1', 'a@one');
INSERT INTO audit_logs (action) SELECT 'login' FROM generate_series(1, 7);
"#;

fn baseline_options(actor: &Actor, version: i32) -> BaselineOptions<'_> {
    BaselineOptions {
        version,
        verify: verify_options(),
        actor,
    }
}

#[test]
fn baseline_stamps_a_hand_made_database_then_migrate_and_verify_take_over() {
    let db = database();
    db.client()
        .batch_execute(HAND_MADE)
        .expect("hand-made schema");
    let catalog = repo_catalog();
    let actor = actor();
    let mut counted: Vec<TableRows> = Vec::new();
    let report = baseline(
        &mut db.client(),
        &catalog,
        &baseline_options(&actor, 1),
        &mut |p| match p {
            BaselineProgress::Counted(tables) => counted = tables.to_vec(),
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.recorded.len(), 1);
    assert_eq!(report.recorded[0].version, 1);
    assert_eq!(counted, report.tables);
    let rows: Vec<(&str, i64)> = report
        .tables
        .iter()
        .map(|t| (t.table.as_str(), t.rows))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("audit_logs", 7),
            ("daily_model_agg", 0),
            ("daily_org_agg", 0),
            ("daily_provider_agg", 0),
            ("daily_user_agg", 0),
            ("events_enriched", 0),
            ("organizations", 2),
            ("users", 1),
        ]
    );
    assert_eq!(applied_versions(&db), vec![1]);
    let stamped: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FROM ecomind_migration_events WHERE version = 1 AND direction = 'baseline' AND outcome = 'applied'",
            &[],
        )
        .expect("events")
        .get(0);
    assert_eq!(stamped, 1);

    up(&db, &catalog);
    assert_eq!(applied_versions(&db), vec![1, 2, 3, 4]);
    let verified = check(&db, &catalog);
    assert!(verified.matches(), "{}", describe(&verified.differences));

    let err = baseline(
        &mut db.client(),
        &catalog,
        &baseline_options(&actor, 1),
        &mut |_| {},
    )
    .expect_err("history exists");
    assert!(
        matches!(err, Error::BaselineHasHistory { head: 4 }),
        "{err}"
    );
}

#[test]
fn baseline_refuses_a_drifted_database_and_names_the_difference() {
    let cases: &[(&str, &str, &str, &[&str])] = &[
        (
            "a missing index",
            "CREATE INDEX idx_events_ts ON events_enriched (ts);",
            "",
            &["missing index public.idx_events_ts"],
        ),
        (
            "an extra column",
            "INSERT INTO users",
            "ALTER TABLE users ADD COLUMN nickname text;\nINSERT INTO users",
            &["extra column public.users.nickname"],
        ),
        (
            "a varchar(100) where 255 is expected",
            "name character varying(255) NOT NULL,",
            "name character varying(100) NOT NULL,",
            &[
                "changed column public.organizations.name",
                "expected: character varying(255) not null",
                "actual:   character varying(100) not null",
            ],
        ),
        (
            "a missing ON DELETE CASCADE",
            "REFERENCES organizations (org_id) ON DELETE CASCADE;",
            "REFERENCES organizations (org_id);",
            &[
                "changed constraint public.users.users_org_id_fkey",
                "expected: FOREIGN KEY (org_id) REFERENCES organizations(org_id) ON DELETE CASCADE",
                "actual:   FOREIGN KEY (org_id) REFERENCES organizations(org_id)",
            ],
        ),
    ];
    let catalog = repo_catalog();
    let actor = actor();
    for (what, from, to, expected) in cases {
        assert!(HAND_MADE.contains(from), "{what}: `{from}` not in the SQL");
        let db = database();
        db.client()
            .batch_execute(&HAND_MADE.replacen(from, to, 1))
            .expect(what);
        let err = baseline(
            &mut db.client(),
            &catalog,
            &baseline_options(&actor, 1),
            &mut |_| panic!("{what}: counted rows of a drifted database"),
        )
        .expect_err(what);
        assert!(err.needs_attention(), "{what}: {err}");
        let message = err.to_string();
        let Error::BaselineMismatch { differences, .. } = &err else {
            panic!("{what}: expected a mismatch, got {message}");
        };
        // An extra column also changes its table's column list; nothing else differs.
        assert!(differences.len() <= 2, "{what}: {}", describe(differences));
        for line in *expected {
            assert!(
                message.contains(line),
                "{what}: expected `{line}` in:\n{message}"
            );
        }
        assert!(applied_versions(&db).is_empty(), "{what}: nothing recorded");
    }
}

#[test]
fn baseline_at_a_later_version_rehearses_every_migration_up_to_it() {
    let source = database();
    let catalog = repo_catalog();
    up(&source, &catalog);
    // A database built by hand to V3's shape: V1 by hand, then V2 and V3's SQL by hand.
    let db = database();
    let mut client = db.client();
    client.batch_execute(HAND_MADE).expect("V1 by hand");
    for v in [2, 3] {
        for statement in
            ecomind_migrate::split::statements(catalog.get(v).expect("V").up_sql()).expect("splits")
        {
            client.batch_execute(statement.sql).expect("by hand");
        }
    }
    let actor = actor();
    let report = baseline(
        &mut db.client(),
        &catalog,
        &baseline_options(&actor, 3),
        &mut |_| {},
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        report
            .recorded
            .iter()
            .map(|p| p.version)
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    up(&db, &catalog);
    assert_eq!(applied_versions(&db), vec![1, 2, 3, 4]);
    assert!(check(&db, &catalog).matches());
    let err = baseline(
        &mut database().client(),
        &catalog,
        &baseline_options(&actor, 9),
        &mut |_| {},
    )
    .expect_err("no V9");
    assert!(matches!(err, Error::UnknownTarget(9)), "{err}");
}

/// A history that uses extensions in `public` and in a schema of their own, an enum value added
/// by one migration and used by the next, and a view over an extension type.
fn extension_catalog() -> Catalog {
    Catalog::from_files([
        (
            "V1__extensions.sql",
            "CREATE EXTENSION IF NOT EXISTS ltree;\n\
             CREATE EXTENSION pg_trgm;\n\
             CREATE SCHEMA IF NOT EXISTS extensions;\n\
             CREATE EXTENSION IF NOT EXISTS citext SCHEMA extensions;\n\
             CREATE EXTENSION pgcrypto WITH SCHEMA extensions;",
        ),
        (
            "V1__extensions.down.sql",
            "DROP EXTENSION pgcrypto;\nDROP EXTENSION citext;\nDROP SCHEMA extensions;\n\
             DROP EXTENSION pg_trgm;\nDROP EXTENSION ltree;",
        ),
        (
            "V2__nodes.sql",
            "CREATE TABLE nodes (\n\
               id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n\
               path ltree NOT NULL,\n\
               name text NOT NULL,\n\
               email extensions.citext UNIQUE,\n\
               token bytea NOT NULL DEFAULT extensions.gen_random_bytes(16)\n\
             );\n\
             CREATE INDEX nodes_path ON nodes USING gist (path);\n\
             CREATE INDEX nodes_name_trgm ON nodes USING gin (name gin_trgm_ops);",
        ),
        ("V2__nodes.down.sql", "DROP TABLE nodes;"),
        (
            "V3__mood.sql",
            "CREATE TYPE \"Mood\" AS ENUM ('happy', 'sad');",
        ),
        ("V3__mood.down.sql", "DROP TYPE \"Mood\";"),
        (
            "V4__meh.sql",
            "ALTER TYPE \"Mood\" ADD VALUE 'meh' BEFORE 'sad';\n\
             ALTER TYPE \"Mood\" ADD VALUE IF NOT EXISTS 'o''k';",
        ),
        // PostgreSQL cannot drop an enum value; the down recreates the type.
        (
            "V4__meh.down.sql",
            "DROP TYPE \"Mood\";\nCREATE TYPE \"Mood\" AS ENUM ('happy', 'sad');",
        ),
        (
            "V5__use_meh.sql",
            "ALTER TABLE nodes ADD COLUMN mood \"Mood\" NOT NULL DEFAULT 'meh';\n\
             CREATE VIEW deep_nodes AS\n\
               SELECT id, path, subpath(path, 0, 1) AS top FROM nodes\n\
               WHERE nlevel(path) > 2 AND mood <> 'o''k' AND name % 'x';",
        ),
        (
            "V5__use_meh.down.sql",
            "DROP VIEW deep_nodes;\nALTER TABLE nodes DROP COLUMN mood;",
        ),
    ])
    .expect("valid")
}

#[test]
fn verify_and_baseline_rehearse_extensions_and_enum_values_added_then_used() {
    let db = database();
    let catalog = extension_catalog();
    up(&db, &catalog);
    let clean = check(&db, &catalog);
    assert!(clean.matches(), "{}", describe(&clean.differences));

    // Drift in a column of an extension type and in the enum is still found.
    db.client()
        .batch_execute("ALTER TYPE \"Mood\" ADD VALUE 'angry'; DROP INDEX nodes_name_trgm;")
        .expect("drift");
    let drifted = check(&db, &catalog);
    let described = describe(&drifted.differences);
    assert!(described.contains("nodes_name_trgm"), "{described}");
    assert!(described.contains("angry"), "{described}");
    db.client()
        .batch_execute(
            "CREATE INDEX nodes_name_trgm ON nodes USING gin (name gin_trgm_ops);\n\
             DROP VIEW deep_nodes; ALTER TABLE nodes DROP COLUMN mood; DROP TYPE \"Mood\";\n\
             CREATE TYPE \"Mood\" AS ENUM ('happy', 'meh', 'sad', 'o''k');\n\
             ALTER TABLE nodes ADD COLUMN mood \"Mood\" NOT NULL DEFAULT 'meh';\n\
             CREATE VIEW deep_nodes AS SELECT id, path, subpath(path, 0, 1) AS top FROM nodes\n\
               WHERE nlevel(path) > 2 AND mood <> 'o''k' AND name % 'x';",
        )
        .expect("undo the drift by hand");
    let repaired = check(&db, &catalog);
    assert!(repaired.matches(), "{}", describe(&repaired.differences));

    // Baseline rehearses the same history on a database whose history is gone.
    db.client()
        .batch_execute("DROP TABLE refinery_schema_history")
        .expect("forget the history");
    let actor = actor();
    let report = baseline(
        &mut db.client(),
        &catalog,
        &baseline_options(&actor, 5),
        &mut |_| {},
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.recorded.len(), 5);
}

#[test]
fn a_role_without_createdb_rehearses_extensions_and_nothing_stays_visible() {
    let db = database();
    let catalog = extension_catalog();
    up(&db, &catalog);
    let role = format!("verifier_{}", db.name());
    db.client()
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN NOCREATEDB NOSUPERUSER NOCREATEROLE;\n\
             GRANT CREATE ON DATABASE {db} TO {role};\n\
             GRANT USAGE ON SCHEMA public, extensions TO {role};\n\
             GRANT SELECT ON refinery_schema_history TO {role};",
            db = db.name()
        ))
        .expect("a verifying role");
    let mut config = db.config();
    config.user(&role);
    let mut client = config
        .connect(postgres::NoTls)
        .expect("connect as the role");
    let schemas_before: i64 = db
        .client()
        .query_one("SELECT count(*) FROM pg_namespace", &[])
        .expect("schemas")
        .get(0);
    let report = verify(&mut client, &catalog, &verify_options()).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.matches(), "{}", describe(&report.differences));
    let schemas_after: i64 = db
        .client()
        .query_one("SELECT count(*) FROM pg_namespace", &[])
        .expect("schemas")
        .get(0);
    assert_eq!(
        schemas_before, schemas_after,
        "the scratch schema never commits"
    );
    drop(client);
    db.client()
        .batch_execute(&format!(
            "REVOKE ALL ON refinery_schema_history FROM {role};\n\
             REVOKE ALL ON SCHEMA public, extensions FROM {role};\n\
             REVOKE ALL ON DATABASE {db} FROM {role}; DROP ROLE {role};",
            db = db.name()
        ))
        .expect("drop the role");
}
