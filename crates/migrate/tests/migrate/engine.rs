//! The engine against real PostgreSQL: a fresh database per test in this process's sandbox cluster.

use std::time::Duration;

use ecomind_migrate::{
    migrate, status, Catalog, Error, MigrateOptions, Observer, ObserverError, Problem, RunOptions,
    ScriptRun, StatementRun, Target,
};
use ecomind_testkit::{database, TestDb};

use crate::common;
use crate::common::{actor, applied_versions, catalog, options, repo_catalog, table_exists};

fn run(db: &TestDb, catalog: &Catalog) -> Result<ecomind_migrate::Report, Error> {
    let actor = actor();
    migrate(&mut db.client(), catalog, &options(&actor), &mut |_| {})
}

/// Columns, constraints, indexes and sequences of the public schema, one line each, in a stable order.
/// NOT NULL is read from the columns: PostgreSQL 18 also lists it as constraints (contype `n`).
fn describe_schema(db: &TestDb) -> String {
    let mut client = db.client();
    let mut out = String::new();
    let columns = client
        .query(
            "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                    coalesce(pg_get_expr(d.adbin, d.adrelid), '') \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped \
               AND c.relname NOT IN ('refinery_schema_history', 'ecomind_migration_events') \
             ORDER BY c.relname, a.attnum",
            &[],
        )
        .expect("columns");
    for r in columns {
        let (table, column, ty, not_null, default): (String, String, String, bool, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        out.push_str(&format!("column {table}.{column} {ty}"));
        if not_null {
            out.push_str(" not null");
        }
        if !default.is_empty() {
            out.push_str(&format!(" default {default}"));
        }
        out.push('\n');
    }
    let constraints = client
        .query(
            "SELECT c.relname::text, k.conname::text, pg_get_constraintdef(k.oid) \
             FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND k.contype <> 'n' \
               AND c.relname NOT IN ('refinery_schema_history', 'ecomind_migration_events') \
             ORDER BY 1, 2",
            &[],
        )
        .expect("constraints");
    for r in constraints {
        out.push_str(&format!(
            "constraint {}.{} {}\n",
            r.get::<_, String>(0),
            r.get::<_, String>(1),
            r.get::<_, String>(2)
        ));
    }
    let indexes = client
        .query(
            "SELECT indexname::text, indexdef FROM pg_indexes WHERE schemaname = 'public' \
               AND tablename NOT IN ('refinery_schema_history', 'ecomind_migration_events') \
             ORDER BY 1",
            &[],
        )
        .expect("indexes");
    for r in indexes {
        out.push_str(&format!("index {}\n", r.get::<_, String>(1)));
    }
    let sequences = client
        .query(
            "SELECT s.relname::text, coalesce(t.relname::text || '.' || a.attname::text, 'not owned') \
             FROM pg_class s JOIN pg_namespace n ON n.oid = s.relnamespace \
             LEFT JOIN pg_depend d ON d.objid = s.oid AND d.deptype IN ('a', 'i') AND d.classid = 'pg_class'::regclass \
             LEFT JOIN pg_class t ON t.oid = d.refobjid \
             LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
             WHERE s.relkind = 'S' AND n.nspname = 'public' \
               AND s.relname <> 'ecomind_migration_events_id_seq' \
             ORDER BY 1",
            &[],
        )
        .expect("sequences");
    for r in sequences {
        out.push_str(&format!(
            "sequence {} owned by {}\n",
            r.get::<_, String>(0),
            r.get::<_, String>(1)
        ));
    }
    out
}

/// Compares line by line and shows what is missing and what is extra.
fn assert_same_lines(expected: &str, got: &str) {
    let exp: Vec<&str> = expected
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let got_lines: Vec<&str> = got
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if exp != got_lines {
        let missing: Vec<&&str> = exp.iter().filter(|l| !got_lines.contains(l)).collect();
        let extra: Vec<&&str> = got_lines.iter().filter(|l| !exp.contains(l)).collect();
        panic!(
            "schema differs\nmissing (expected, not found):\n  {}\nextra (found, not expected):\n  {}\n\nfull schema found:\n{got}",
            missing.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("\n  "),
            extra.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("\n  "),
        );
    }
}

/// The schema production has today, written from SCHEMA.md's table (not from V1).
const SCHEMA_V1: &str = r#"
column audit_logs.id bigint not null default nextval('audit_logs_id_seq'::regclass)
column audit_logs.org_id character varying(255)
column audit_logs.user_id character varying(255)
column audit_logs.action character varying(100) not null
column audit_logs.resource_type character varying(100)
column audit_logs.resource_id character varying(255)
column audit_logs.metadata jsonb
column audit_logs.ip_address character varying(50)
column audit_logs.timestamp timestamp with time zone default now()
column daily_model_agg.date date not null
column daily_model_agg.org_id character varying(255) not null
column daily_model_agg.provider character varying(50) not null
column daily_model_agg.model character varying(100) not null
column daily_model_agg.call_count integer default 0
column daily_model_agg.kwh double precision default 0.0
column daily_model_agg.water_l double precision default 0.0
column daily_model_agg.co2_kg double precision default 0.0
column daily_org_agg.date date not null
column daily_org_agg.org_id character varying(255) not null
column daily_org_agg.call_count integer default 0
column daily_org_agg.kwh double precision default 0.0
column daily_org_agg.water_l double precision default 0.0
column daily_org_agg.co2_kg double precision default 0.0
column daily_provider_agg.date date not null
column daily_provider_agg.org_id character varying(255) not null
column daily_provider_agg.provider character varying(50) not null
column daily_provider_agg.call_count integer default 0
column daily_provider_agg.kwh double precision default 0.0
column daily_provider_agg.water_l double precision default 0.0
column daily_provider_agg.co2_kg double precision default 0.0
column daily_user_agg.date date not null
column daily_user_agg.org_id character varying(255) not null
column daily_user_agg.user_id character varying(255) not null
column daily_user_agg.call_count integer default 0
column daily_user_agg.kwh double precision default 0.0
column daily_user_agg.water_l double precision default 0.0
column daily_user_agg.co2_kg double precision default 0.0
column events_enriched.id text not null
column events_enriched.org_id character varying(255) not null
column events_enriched.user_id character varying(255) not null
column events_enriched.provider character varying(50) not null
column events_enriched.model character varying(100)
column events_enriched.tokens_in integer default 0
column events_enriched.tokens_out integer default 0
column events_enriched.node_type character varying(50)
column events_enriched.region character varying(100)
column events_enriched.kwh double precision not null
column events_enriched.water_l double precision not null
column events_enriched.co2_kg double precision not null
column events_enriched.ts timestamp with time zone not null
column events_enriched.source character varying(50)
column events_enriched.metadata jsonb
column events_enriched.created_at timestamp with time zone default now()
column organizations.org_id character varying(255) not null
column organizations.name character varying(255) not null
column organizations.plan_type character varying(50) default 'free'::character varying
column organizations.created_at timestamp with time zone default now()
column organizations.updated_at timestamp with time zone default now()
column users.user_id character varying(255) not null
column users.org_id character varying(255)
column users.email character varying(255)
column users.role character varying(50) default 'viewer'::character varying
column users.created_at timestamp with time zone default now()
column users.updated_at timestamp with time zone default now()
constraint audit_logs.audit_logs_pkey PRIMARY KEY (id)
constraint daily_model_agg.daily_model_agg_pkey PRIMARY KEY (date, org_id, provider, model)
constraint daily_org_agg.daily_org_agg_pkey PRIMARY KEY (date, org_id)
constraint daily_provider_agg.daily_provider_agg_pkey PRIMARY KEY (date, org_id, provider)
constraint daily_user_agg.daily_user_agg_pkey PRIMARY KEY (date, org_id, user_id)
constraint events_enriched.events_enriched_pkey PRIMARY KEY (id)
constraint organizations.organizations_pkey PRIMARY KEY (org_id)
constraint users.users_email_key UNIQUE (email)
constraint users.users_org_id_fkey FOREIGN KEY (org_id) REFERENCES organizations(org_id) ON DELETE CASCADE
constraint users.users_pkey PRIMARY KEY (user_id)
index CREATE UNIQUE INDEX audit_logs_pkey ON public.audit_logs USING btree (id)
index CREATE UNIQUE INDEX daily_model_agg_pkey ON public.daily_model_agg USING btree (date, org_id, provider, model)
index CREATE UNIQUE INDEX daily_org_agg_pkey ON public.daily_org_agg USING btree (date, org_id)
index CREATE UNIQUE INDEX daily_provider_agg_pkey ON public.daily_provider_agg USING btree (date, org_id, provider)
index CREATE UNIQUE INDEX daily_user_agg_pkey ON public.daily_user_agg USING btree (date, org_id, user_id)
index CREATE UNIQUE INDEX events_enriched_pkey ON public.events_enriched USING btree (id)
index CREATE INDEX idx_audit_logs_org_id ON public.audit_logs USING btree (org_id)
index CREATE INDEX idx_audit_logs_timestamp ON public.audit_logs USING btree ("timestamp")
index CREATE INDEX idx_daily_model_agg_date ON public.daily_model_agg USING btree (date)
index CREATE INDEX idx_daily_org_agg_date ON public.daily_org_agg USING btree (date)
index CREATE INDEX idx_daily_provider_agg_date ON public.daily_provider_agg USING btree (date)
index CREATE INDEX idx_daily_user_agg_date ON public.daily_user_agg USING btree (date)
index CREATE INDEX idx_daily_user_agg_org_id ON public.daily_user_agg USING btree (org_id)
index CREATE INDEX idx_events_org_id ON public.events_enriched USING btree (org_id)
index CREATE INDEX idx_events_provider ON public.events_enriched USING btree (provider)
index CREATE INDEX idx_events_ts ON public.events_enriched USING btree (ts)
index CREATE INDEX idx_users_email ON public.users USING btree (email)
index CREATE INDEX idx_users_org_id ON public.users USING btree (org_id)
index CREATE UNIQUE INDEX organizations_pkey ON public.organizations USING btree (org_id)
index CREATE UNIQUE INDEX users_email_key ON public.users USING btree (email)
index CREATE UNIQUE INDEX users_pkey ON public.users USING btree (user_id)
sequence audit_logs_id_seq owned by audit_logs.id
"#;

#[test]
fn v1_reproduces_the_production_schema_exactly() {
    let db = database();
    let actor = actor();
    let opts = MigrateOptions {
        target: Target::UpTo(1),
        ..options(&actor)
    };
    migrate(&mut db.client(), &repo_catalog(), &opts, &mut |_| {}).expect("V1 applies");
    assert_eq!(applied_versions(&db), vec![1]);
    assert_same_lines(SCHEMA_V1, &describe_schema(&db));
}

#[test]
fn v2_to_v4_add_what_schema_md_plans() {
    let db = database();
    let report = run(&db, &repo_catalog()).expect("V1..V4 apply");
    assert_eq!(report.head, Some(4));
    assert_eq!(applied_versions(&db), vec![1, 2, 3, 4]);
    let schema = describe_schema(&db);
    let expected_lines = [
        // V2: the API's time-range indexes, built concurrently.
        "index CREATE INDEX idx_events_org_id_ts ON public.events_enriched USING btree (org_id, ts)",
        "index CREATE INDEX idx_daily_user_agg_org_id_date ON public.daily_user_agg USING btree (org_id, date)",
        "index CREATE INDEX idx_audit_logs_org_id_timestamp ON public.audit_logs USING btree (org_id, \"timestamp\")",
        // V3: what authentication needs.
        "column users.password_hash",
        "column users.failed_login_count integer not null default 0",
        "column users.locked_until timestamp with time zone",
        // V4: api keys and refresh tokens.
        "REFERENCES organizations(org_id) ON DELETE CASCADE",
        "REFERENCES users(user_id) ON DELETE CASCADE",
        "column api_keys.key_hash",
        "column refresh_tokens.token_hash",
    ];
    for line in expected_lines {
        assert!(schema.contains(line), "missing `{line}` in\n{schema}");
    }
    let v1_lines_kept = SCHEMA_V1
        .lines()
        .filter(|l| !l.trim().is_empty())
        .all(|l| schema.contains(l.trim()));
    assert!(v1_lines_kept, "V2..V4 changed V1's objects:\n{schema}");
    let unique_hashes = db
        .client()
        .query(
            "SELECT conname::text FROM pg_constraint WHERE contype = 'u' \
             AND conrelid IN ('api_keys'::regclass, 'refresh_tokens'::regclass) ORDER BY 1",
            &[],
        )
        .expect("constraints")
        .len();
    assert_eq!(unique_hashes, 2, "key_hash and token_hash are unique");
}

#[test]
fn a_second_run_applies_nothing_and_status_is_clean() {
    let db = database();
    run(&db, &repo_catalog()).expect("first run");
    let again = run(&db, &repo_catalog()).expect("second run");
    assert!(again.steps.is_empty());
    assert_eq!(again.head, Some(4));
    let st = status(&mut db.client(), &repo_catalog()).expect("status");
    assert!(st.pending.is_empty() && !st.needs_attention());
    assert_eq!(st.applied.len(), 4);
}

#[test]
fn history_is_readable_by_refinery_and_event_log_records_each_migration() {
    let db = database();
    run(&db, &repo_catalog()).expect("migrate");
    let cat = repo_catalog();
    let mut client = db.client();
    for row in client
        .query(
            "SELECT version, name, applied_on, checksum FROM refinery_schema_history ORDER BY version",
            &[],
        )
        .expect("history")
    {
        let version: i32 = row.get(0);
        let m = cat.get(version).expect("known version");
        assert_eq!(row.get::<_, String>(1), m.name());
        assert_eq!(row.get::<_, String>(3), m.checksum().to_string());
        let applied_on: String = row.get(2);
        assert!(
            applied_on.ends_with('Z') && applied_on.contains('T'),
            "RFC 3339 like refinery writes it: {applied_on}"
        );
    }
    // Each attempt is a `started` row, committed before the migration runs, and the row that
    // ends it (committed with the migration) naming it.
    let events = client
        .query(
            "SELECT e.version, e.direction, e.outcome, e.os_user, e.client_host, e.tool_version, e.database_user, \
                    e.finished_at >= e.started_at, e.duration_ms >= 0, \
                    s.outcome, s.version, s.os_user, s.backend_pid IS NOT NULL, s.statements_total, s.transactional \
             FROM ecomind_migration_events e JOIN ecomind_migration_events s ON s.id = e.attempt \
             ORDER BY e.id",
            &[],
        )
        .expect("events");
    assert_eq!(events.len(), 4);
    for (i, e) in events.iter().enumerate() {
        let version = i as i32 + 1;
        let m = cat.get(version).expect("known version");
        assert_eq!(e.get::<_, i32>(0), version);
        assert_eq!(e.get::<_, &str>(1), "up");
        assert_eq!(e.get::<_, &str>(2), "applied");
        assert_eq!(e.get::<_, &str>(3), "tester");
        assert_eq!(e.get::<_, &str>(4), "testhost");
        assert_eq!(e.get::<_, &str>(5), "test");
        assert!(!e.get::<_, &str>(6).is_empty());
        assert!(e.get::<_, bool>(7) && e.get::<_, bool>(8));
        assert_eq!(e.get::<_, &str>(9), "started");
        assert_eq!(e.get::<_, i32>(10), version);
        assert_eq!(e.get::<_, &str>(11), "tester");
        assert!(e.get::<_, bool>(12));
        let statements = ecomind_migrate::split::statements(m.up_sql())
            .expect("splits")
            .len();
        assert_eq!(e.get::<_, i32>(13), statements as i32);
        assert_eq!(e.get::<_, bool>(14), m.is_transactional());
    }
    let total: i64 = client
        .query_one("SELECT count(*) FROM ecomind_migration_events", &[])
        .expect("count")
        .get(0);
    assert_eq!(total, 8, "one start and one end per migration");
}

#[test]
fn a_migration_failing_halfway_leaves_nothing_of_itself_and_the_fixed_file_converges() {
    let db = database();
    let v1 = ("V1__a.sql", "CREATE TABLE a (id int);");
    let v1d = ("V1__a.down.sql", "DROP TABLE a;");
    let v2 = ("V2__b.sql", "CREATE TABLE b (id int);");
    let v2d = ("V2__b.down.sql", "DROP TABLE b;");
    let v3_broken = (
        "V3__c.sql",
        "CREATE TABLE c (id int);\n\n-- the second statement is wrong\nALTER TABLE c ADD COLUMN note text REFERENCES nowhere (id);\n",
    );
    let v3d = ("V3__c.down.sql", "DROP TABLE c;");
    let err = run(&db, &catalog(&[v1, v1d, v2, v2d, v3_broken, v3d])).expect_err("V3 fails");
    let message = err.to_string();
    assert!(matches!(err, Error::MigrationFailed { .. }), "{message}");
    assert!(message.contains("V3__c.sql"), "{message}");
    assert!(message.contains("statement 2 of 2"), "{message}");
    assert!(message.contains("line 4"), "{message}");
    assert!(
        message.contains("ALTER TABLE c ADD COLUMN note"),
        "{message}"
    );
    assert!(message.contains("nowhere"), "{message}");
    let partial = err.partial_report().expect("report of what applied");
    assert_eq!(partial.steps.len(), 2);
    assert_eq!(applied_versions(&db), vec![1, 2]);
    assert!(table_exists(&db, "a") && table_exists(&db, "b"));
    assert!(!table_exists(&db, "c"), "nothing of V3 stays");
    let failed: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FROM ecomind_migration_events WHERE version = 3 AND outcome = 'failed' AND error LIKE '%nowhere%'",
            &[],
        )
        .expect("events")
        .get(0);
    assert_eq!(failed, 1, "the failed attempt is in the event log");

    let v3_fixed = (
        "V3__c.sql",
        "CREATE TABLE c (id int);\nALTER TABLE c ADD COLUMN note text;\n",
    );
    let report = run(&db, &catalog(&[v1, v1d, v2, v2d, v3_fixed, v3d])).expect("fixed V3 applies");
    assert_eq!(report.steps.len(), 1);
    assert_eq!(applied_versions(&db), vec![1, 2, 3]);
}

fn small_catalog(v2_sql: &str) -> Catalog {
    catalog(&[
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("V1__a.down.sql", "DROP TABLE a;"),
        ("V2__b.sql", v2_sql),
        ("V2__b.down.sql", "DROP TABLE b;"),
    ])
}

#[test]
fn divergence_is_refused_and_changes_nothing() {
    struct Case {
        name: &'static str,
        files: Vec<(&'static str, &'static str)>,
        expected: fn(&Problem) -> bool,
    }
    let cases = [
        Case {
            name: "checksum",
            files: vec![
                ("V1__a.sql", "CREATE TABLE a (id bigint);"),
                ("V1__a.down.sql", "DROP TABLE a;"),
                ("V2__b.sql", "CREATE TABLE b (id int);"),
                ("V2__b.down.sql", "DROP TABLE b;"),
                ("V3__c.sql", "CREATE TABLE c (id int);"),
                ("V3__c.down.sql", "DROP TABLE c;"),
            ],
            expected: |p| matches!(p, Problem::ChecksumChanged { version: 1, .. }),
        },
        Case {
            name: "missing",
            files: vec![
                ("V1__a.sql", "CREATE TABLE a (id int);"),
                ("V1__a.down.sql", "DROP TABLE a;"),
                ("V3__c.sql", "CREATE TABLE c (id int);"),
                ("V3__c.down.sql", "DROP TABLE c;"),
            ],
            expected: |p| matches!(p, Problem::MissingFile { version: 2, .. }),
        },
    ];
    for case in cases {
        let db = database();
        run(&db, &small_catalog("CREATE TABLE b (id int);")).expect("first run");
        let err = run(&db, &catalog(&case.files)).expect_err(case.name);
        assert!(err.needs_attention(), "{}: {err}", case.name);
        match &err {
            Error::Diverged(problems) => assert!(
                problems.iter().any(case.expected),
                "{}: {problems:?}",
                case.name
            ),
            other => panic!("{}: expected divergence, got {other}", case.name),
        }
        assert_eq!(applied_versions(&db), vec![1, 2], "{}", case.name);
        assert!(!table_exists(&db, "c"), "{}: V3 was not applied", case.name);
    }
}

#[test]
fn an_out_of_order_file_is_refused_unless_allowed() {
    let db = database();
    let v1 = ("V1__a.sql", "CREATE TABLE a (id int);");
    let v1d = ("V1__a.down.sql", "DROP TABLE a;");
    let v3 = ("V3__c.sql", "CREATE TABLE c (id int);");
    let v3d = ("V3__c.down.sql", "DROP TABLE c;");
    run(&db, &catalog(&[v1, v1d, v3, v3d])).expect("first run");
    let late = [
        v1,
        v1d,
        ("V2__b.sql", "CREATE TABLE b (id int);"),
        ("V2__b.down.sql", "DROP TABLE b;"),
        v3,
        v3d,
    ];
    let err = run(&db, &catalog(&late)).expect_err("V2 is older than the head");
    assert!(
        matches!(&err, Error::Diverged(p) if p.iter().any(|p| matches!(p, Problem::OutOfOrder { version: 2, head: 3, .. }))),
        "{err}"
    );
    assert!(!table_exists(&db, "b"));
    let actor = actor();
    let opts = MigrateOptions {
        allow_out_of_order: true,
        ..options(&actor)
    };
    migrate(&mut db.client(), &catalog(&late), &opts, &mut |_| {}).expect("allowed");
    assert_eq!(applied_versions(&db), vec![1, 2, 3]);
}

#[test]
fn migrate_to_a_version_stops_there_and_refuses_to_go_down() {
    let db = database();
    let actor = actor();
    let to2 = MigrateOptions {
        target: Target::UpTo(2),
        ..options(&actor)
    };
    migrate(&mut db.client(), &repo_catalog(), &to2, &mut |_| {}).expect("to 2");
    assert_eq!(applied_versions(&db), vec![1, 2]);
    run(&db, &repo_catalog()).expect("to the head");
    let err = migrate(&mut db.client(), &repo_catalog(), &to2, &mut |_| {}).expect_err("down");
    assert!(err.to_string().contains("rollback --to 2"), "{err}");
    let missing = MigrateOptions {
        target: Target::UpTo(99),
        ..options(&actor)
    };
    let err = migrate(&mut db.client(), &repo_catalog(), &missing, &mut |_| {}).expect_err("99");
    assert!(matches!(err, Error::UnknownTarget(99)), "{err}");
}

#[test]
fn a_failed_concurrent_index_is_reported_as_half_applied_and_blocks_until_dropped() {
    let db = database();
    let files = [
        (
            "V1__t.sql",
            "CREATE TABLE t (x int);\nINSERT INTO t VALUES (1), (1);",
        ),
        ("V1__t.down.sql", "DROP TABLE t;"),
        (
            "V2__unique_x.sql",
            "-- ecomind:no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY t_x_key ON t (x);\n",
        ),
        (
            "V2__unique_x.down.sql",
            "-- ecomind:no-transaction\nDROP INDEX CONCURRENTLY t_x_key;\n",
        ),
    ];
    let cat = catalog(&files);
    let err = run(&db, &cat).expect_err("duplicates break the unique index");
    assert!(err.needs_attention(), "{err}");
    let message = err.to_string();
    assert!(matches!(err, Error::HalfApplied { .. }), "{message}");
    assert!(message.contains("V2__unique_x.sql"), "{message}");
    assert!(message.contains("public.t_x_key"), "{message}");
    assert_eq!(applied_versions(&db), vec![1], "V2 is not recorded");

    let st = status(&mut db.client(), &cat).expect("status");
    assert!(st.needs_attention());
    assert_eq!(st.invalid_indexes.len(), 1);

    let err = run(&db, &cat).expect_err("the invalid index blocks a rerun");
    assert!(matches!(err, Error::InvalidIndexes(_)), "{err}");

    let mut client = db.client();
    client
        .batch_execute("DROP INDEX CONCURRENTLY t_x_key")
        .expect("drop the invalid index");
    client
        .batch_execute("DELETE FROM t WHERE ctid = (SELECT max(ctid) FROM t)")
        .expect("remove the duplicate");
    run(&db, &cat).expect("converges");
    assert_eq!(applied_versions(&db), vec![1, 2]);
    let valid: bool = db
        .client()
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_x_key'::regclass",
            &[],
        )
        .expect("index")
        .get(0);
    assert!(valid);
}

#[test]
fn a_held_lock_times_out_naming_its_holder() {
    let db = database();
    let mut holder = connect_as(&db.conninfo(), "lock-holder-test");
    let key = i64::from_be_bytes(*b"ecomind-");
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&key])
        .expect("hold the migration lock");
    let actor = actor();
    let opts = MigrateOptions {
        run: RunOptions {
            lock_wait: Duration::from_millis(300),
            ..common::run_options(&actor)
        },
        ..options(&actor)
    };
    let err =
        migrate(&mut db.client(), &repo_catalog(), &opts, &mut |_| {}).expect_err("lock held");
    let message = err.to_string();
    assert!(matches!(err, Error::LockTimeout { .. }), "{message}");
    assert!(message.contains("lock-holder-test"), "{message}");
    let pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .expect("pid")
        .get(0);
    assert!(message.contains(&format!("pid {pid}")), "{message}");
    assert!(!table_exists(&db, "organizations"), "nothing ran");
}

#[test]
fn a_no_op_takes_no_migration_lock_but_waits_for_a_run_in_progress() {
    let db = database();
    let actor = actor();
    let v1 = [
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("V1__a.down.sql", "DROP TABLE a;"),
    ];
    let first = catalog(&v1);
    migrate(&mut db.client(), &first, &options(&actor), &mut |_| {}).expect("first run");
    let events = |db: &TestDb| -> i64 {
        db.client()
            .query_one("SELECT count(*) FROM ecomind_migration_events", &[])
            .expect("count")
            .get(0)
    };
    let before = events(&db);
    let opts = MigrateOptions {
        run: RunOptions {
            lock_wait: Duration::ZERO,
            ..common::run_options(&actor)
        },
        ..options(&actor)
    };
    let key = i64::from_be_bytes(*b"ecomind-");
    // A shared hold on the migration key blocks every run that takes the lock: a no-op is not
    // held up by it, because it takes none.
    let mut holder = connect_as(&db.conninfo(), "lock-holder-test");
    holder
        .execute("SELECT pg_advisory_lock_shared($1)", &[&key])
        .expect("hold the key shared");
    let report = migrate(&mut db.client(), &first, &opts, &mut |_| {}).expect("no-op");
    assert!(report.steps.is_empty());
    assert_eq!(report.head, Some(1));
    assert_eq!(events(&db), before, "a no-op writes nothing");
    // With a migration pending, the run needs the lock, and cannot have it.
    let longer = catalog(&[
        v1[0],
        v1[1],
        ("V2__more.sql", "CREATE TABLE more (id int);"),
        ("V2__more.down.sql", "DROP TABLE more;"),
    ]);
    let err = migrate(&mut db.client(), &longer, &opts, &mut |_| {}).expect_err("lock held");
    assert!(matches!(err, Error::LockTimeout { .. }), "{err}");
    assert!(!table_exists(&db, "more"), "nothing ran");
    // A run in progress elsewhere (here: a rollback that has removed V1's history row but not
    // committed yet) holds the lock: the no-op does not report "up to date" from what it reads
    // then, it waits for the lock like any run.
    holder
        .batch_execute(&format!(
            "SELECT pg_advisory_unlock_shared({key}); SELECT pg_advisory_lock({key}); \
             BEGIN; DELETE FROM refinery_schema_history WHERE version = 1"
        ))
        .expect("a rollback in progress");
    let err = migrate(&mut db.client(), &first, &opts, &mut |_| {}).expect_err("run in progress");
    assert!(matches!(err, Error::LockTimeout { .. }), "{err}");
    holder
        .batch_execute("ROLLBACK")
        .expect("the rollback gives up");
}

#[test]
fn a_database_migrated_by_an_older_version_reads_and_upgrades_its_event_log() {
    let db = database();
    let actor = actor();
    let catalog = repo_catalog();
    migrate(&mut db.client(), &catalog, &options(&actor), &mut |_| {}).expect("first run");
    // The event log as versions before the attempt rows left it.
    db.client()
        .batch_execute(
            "ALTER TABLE ecomind_migration_events DROP COLUMN statements_done, \
             DROP COLUMN statements_total, DROP COLUMN transactional",
        )
        .expect("an older event log");
    let status = ecomind_migrate::status(&mut db.client(), &catalog).expect("status");
    assert!(status.pending.is_empty() && status.problems.is_empty());
    assert_eq!(status.applied.len(), 4);
    assert!(status.unfinished.is_empty() && status.invalid_indexes.is_empty());
    // Nothing is pending, but the event log lacks columns this version writes: the run takes
    // the lock and adds them, so the next real migration can record its attempt.
    let report = migrate(&mut db.client(), &catalog, &options(&actor), &mut |_| {}).expect("run");
    assert!(report.steps.is_empty());
    let columns: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'ecomind_migration_events'::regclass \
             AND attname IN ('statements_done', 'statements_total', 'transactional') AND NOT attisdropped",
            &[],
        )
        .expect("columns")
        .get(0);
    assert_eq!(columns, 3);
}

#[test]
fn a_script_that_resets_the_session_still_ends_its_attempt_in_the_event_log() {
    let db = database();
    let actor = actor();
    let catalog = catalog(&[
        (
            "V1__outside.sql",
            "-- ecomind:no-transaction\nCREATE TABLE nt (id int);\nRESET ALL;\nCREATE INDEX CONCURRENTLY nt_id ON nt (id);\n",
        ),
        ("V1__outside.down.sql", "DROP TABLE nt;"),
        ("V2__inside.sql", "CREATE TABLE t2 (id int);\nRESET ALL;\nCREATE INDEX t2_id ON t2 (id);\n"),
        ("V2__inside.down.sql", "DROP TABLE t2;"),
        ("V3__after.sql", "CREATE TABLE t3 (id int);"),
        ("V3__after.down.sql", "DROP TABLE t3;"),
    ]);
    migrate(&mut db.client(), &catalog, &options(&actor), &mut |_| {}).expect("migrate");
    let rows = db
        .client()
        .query(
            "SELECT s.version, s.statements_done, s.backend_pid IS NOT NULL AND s.backend_start IS NOT NULL, \
                    (SELECT count(*) FROM ecomind_migration_events e \
                     WHERE e.attempt = s.id AND e.outcome = 'applied') \
             FROM ecomind_migration_events s WHERE s.outcome = 'started' ORDER BY s.version",
            &[],
        )
        .expect("event log");
    let seen: Vec<(i32, Option<i32>, bool, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    // Every attempt names its backend and is ended by exactly one `applied` row; the
    // statements of the one outside a transaction are all counted.
    assert_eq!(
        seen,
        vec![
            (1, Some(3), true, 1),
            (2, Some(0), true, 1),
            (3, Some(0), true, 1)
        ]
    );
    let status = ecomind_migrate::status(&mut db.client(), &catalog).expect("status");
    assert!(status.unfinished.is_empty(), "{:?}", status.unfinished);
}

/// Deletes a version's history row from another session while the down script runs.
struct HistoryThief {
    conninfo: String,
    version: i32,
}

impl Observer for HistoryThief {
    fn statement_done(
        &self,
        _client: &mut postgres::Client,
        _script: &ScriptRun<'_>,
        _statement: &StatementRun<'_>,
    ) -> Result<(), ObserverError> {
        let mut other = connect_as(&self.conninfo, "history-thief");
        other
            .execute(
                "DELETE FROM refinery_schema_history WHERE version = $1",
                &[&self.version],
            )
            .expect("delete the history row");
        Ok(())
    }
}

#[test]
fn a_history_row_removed_behind_the_runs_back_rolls_the_down_back() {
    let db = database();
    let actor = actor();
    let catalog = catalog(&[
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("V1__a.down.sql", "DROP TABLE a;"),
    ]);
    migrate(&mut db.client(), &catalog, &options(&actor), &mut |_| {}).expect("up");
    let thief = HistoryThief {
        conninfo: db.conninfo(),
        version: 1,
    };
    let opts = MigrateOptions {
        target: Target::DownTo(0),
        run: RunOptions {
            observer: Some(&thief),
            ..common::run_options(&actor)
        },
        ..options(&actor)
    };
    let err = migrate(&mut db.client(), &catalog, &opts, &mut |_| {}).expect_err("row gone");
    let message = err.to_string();
    assert!(
        message.contains("history row of version 1 disappeared"),
        "{message}"
    );
    assert!(
        table_exists(&db, "a"),
        "the down was rolled back with the failed removal"
    );
}

/// Connects with an application_name of our choosing.
fn connect_as(conninfo: &str, app: &str) -> postgres::Client {
    let mut config: postgres::Config = conninfo.parse().expect("conninfo parses");
    config.application_name(app);
    config.connect(postgres::NoTls).expect("connect")
}

#[test]
fn the_catalog_refuses_bad_folders_before_connecting() {
    fn check(files: &[(&str, &str)], expected: &str) {
        let err = Catalog::from_files(files.iter().copied()).expect_err(expected);
        let message = err.to_string();
        assert!(
            message.contains(expected),
            "expected `{expected}` in `{message}`"
        );
    }
    let ok_down = ("V1__a.down.sql", "DROP TABLE a;");
    check(
        &[("V1_a.sql", "SELECT 1;")],
        "V1_a.sql is invalid: its name is not",
    );
    check(&[("v1__a.sql", "SELECT 1;")], "v1__a.sql is invalid");
    check(&[("V01__a.sql", "SELECT 1;")], "V01__a.sql is invalid");
    check(&[("V1__A.sql", "SELECT 1;")], "V1__A.sql is invalid");
    check(&[("V1__a.txt", "SELECT 1;")], "V1__a.txt is invalid");
    check(&[("V0__a.sql", "SELECT 1;")], "versions start at 1");
    check(
        &[("V1__a.sql", "CREATE TABLE a ();")],
        "it has no down file; write V1__a.down.sql",
    );
    check(
        &[("V1__a.sql", "  \n-- only a comment\n"), ok_down],
        "V1__a.sql is invalid: it has no SQL statement",
    );
    check(
        &[
            ("V1__a.sql", "CREATE TABLE a ();"),
            ok_down,
            ("V1__b.sql", "SELECT 1;"),
            ("V1__b.down.sql", "SELECT 1;"),
        ],
        "migration files V1__a.sql and V1__b.sql both have version 1",
    );
    check(
        &[("V2__b.down.sql", "SELECT 1;")],
        "V2__b.down.sql is invalid: it has no up file",
    );
    check(
        &[
            ("V1__a.sql", "-- ecomind:no-transactoin\nSELECT 1;"),
            ok_down,
        ],
        "unknown directive `-- ecomind:no-transactoin`",
    );
    check(
        &[("V1__a.sql", "SELECT 'unterminated;"), ok_down],
        "unterminated",
    );
    check(
        &[
            (
                "V1__a.sql",
                "CREATE TABLE a ();\nCOMMIT;\nCREATE TABLE b ();",
            ),
            ok_down,
        ],
        "V1__a.sql is invalid: line 2 controls the transaction (`COMMIT`)",
    );
    check(
        &[("V1__a.sql", "begin;\nCREATE TABLE a ();"), ok_down],
        "line 1 controls the transaction",
    );
    check(
        &[
            ("V1__a.sql", "CREATE TABLE a ();"),
            ("V1__a.down.sql", "START TRANSACTION;\nDROP TABLE a;"),
        ],
        "V1__a.down.sql is invalid: line 1 controls the transaction",
    );

    let ok = Catalog::from_files([("V1__a.sql", "-- ecomind:irreversible\nDROP TABLE old;")])
        .expect("irreversible needs no down");
    assert!(ok.get(1).expect("V1").down_sql().is_none());
    let v2 = Catalog::from_files([
        (
            "V2__idx.sql",
            "-- ecomind:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (x);",
        ),
        (
            "V2__idx.down.sql",
            "-- ecomind:no-transaction\nDROP INDEX CONCURRENTLY i;",
        ),
    ])
    .expect("valid");
    assert!(!v2.get(2).expect("V2").is_transactional());
}

#[test]
fn checksums_match_refinery() {
    let cat = repo_catalog();
    for m in cat.migrations() {
        let theirs = refinery_core::Migration::unapplied(
            &format!("V{}__{}", m.version(), m.name()),
            m.up_sql(),
        )
        .expect("refinery parses our names")
        .checksum();
        assert_eq!(theirs, m.checksum(), "{}", m.file_name());
    }
}

#[test]
fn an_up_to_date_database_needs_no_ownership_of_the_history_tables() {
    let db = database();
    run(&db, &repo_catalog()).expect("migrate as the owner");
    // A deploy role that may read and write the tables but owns none of them: a no-op run must
    // not need DDL (CREATE, COMMENT or ALTER on the history tables need ownership).
    let role = format!("deployer_{}", db.name());
    db.client()
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}; \
             GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}"
        ))
        .expect("deploy role");
    let mut config = db.config();
    config.user(&role);
    let mut deployer = config
        .connect(postgres::NoTls)
        .expect("connect as the deploy role");
    let actor = actor();
    let report = migrate(
        &mut deployer,
        &repo_catalog(),
        &options(&actor),
        &mut |_| {},
    )
    .expect("a no-op run as a non-owner");
    assert!(report.steps.is_empty());
    assert_eq!(report.head, Some(4));
}

#[test]
fn what_one_migration_sets_for_the_session_does_not_leak_into_the_next() {
    let db = database();
    let cat = catalog(&[
        (
            "V1__app_schema.sql",
            "CREATE SCHEMA app;\nSET search_path = app, public;\nCREATE TABLE a (id int);\nSET statement_timeout = 100;",
        ),
        ("V1__app_schema.down.sql", "DROP SCHEMA app CASCADE;"),
        // Would be cancelled by V1's 100 ms statement_timeout if that leaked.
        ("V2__b.sql", "CREATE TABLE b (id int);\nSELECT pg_sleep(0.3);"),
        ("V2__b.down.sql", "DROP TABLE b;"),
    ]);
    run(&db, &cat).expect("both apply in one run");
    let schema: String = db
        .client()
        .query_one(
            "SELECT n.nspname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = 'b'",
            &[],
        )
        .expect("b exists")
        .get(0);
    assert_eq!(
        schema, "public",
        "V2 runs with the session's own search_path, not V1's"
    );
    assert_eq!(applied_versions(&db), vec![1, 2]);
}

/// Polls a condition until it holds, failing after a generous deadline.
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A table, then a concurrently built index on it.
fn concurrent_index_catalog() -> Catalog {
    catalog(&[
        ("V1__t.sql", "CREATE TABLE t (x int);"),
        ("V1__t.down.sql", "DROP TABLE t;"),
        (
            "V2__t_x.sql",
            "-- ecomind:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS t_x ON t (x);",
        ),
        (
            "V2__t_x.down.sql",
            "-- ecomind:no-transaction\nDROP INDEX CONCURRENTLY IF EXISTS t_x;",
        ),
    ])
}

#[test]
fn a_concurrent_index_build_waits_for_writers_despite_lock_timeout_and_is_not_half_done_meanwhile()
{
    let db = database();
    let cat = concurrent_index_catalog();
    let actor = actor();
    let to1 = MigrateOptions {
        target: Target::UpTo(1),
        ..options(&actor)
    };
    migrate(&mut db.client(), &cat, &to1, &mut |_| {}).expect("V1");

    // A writer keeps its transaction open: the build must wait for it.
    let mut writer = db.client();
    writer
        .batch_execute("BEGIN; INSERT INTO t VALUES (1)")
        .expect("open writer");
    let mut builder_client = db.client();
    let builder = std::thread::spawn(move || {
        let actor = common::actor();
        let opts = MigrateOptions {
            run: RunOptions {
                // Far shorter than the wait below: the build must not be subject to it.
                lock_timeout: Some(Duration::from_millis(1)),
                ..common::run_options(&actor)
            },
            ..options(&actor)
        };
        migrate(
            &mut builder_client,
            &concurrent_index_catalog(),
            &opts,
            &mut |_| {},
        )
    });
    let mut observer = db.client();
    eventually("the build to wait for the writer", || {
        observer
            .query_opt(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() \
                 AND query LIKE 'CREATE INDEX CONCURRENTLY%' AND wait_event_type = 'Lock'",
                &[],
            )
            .expect("pg_stat_activity")
            .is_some()
    });
    // Meanwhile the index exists, invalid, and is being built: not a half-done migration.
    let st = status(&mut observer, &cat).expect("status");
    assert_eq!(st.invalid_indexes.len(), 1, "{:?}", st.invalid_indexes);
    assert!(st.invalid_indexes[0].being_built);
    assert!(
        !st.needs_attention(),
        "an index being built needs no repair"
    );

    writer.batch_execute("COMMIT").expect("writer commits");
    let report = builder.join().expect("builder thread").expect("V2 applies");
    assert_eq!(report.steps.len(), 1);
    let valid: bool = observer
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_x'::regclass",
            &[],
        )
        .expect("index")
        .get(0);
    assert!(valid);
}

/// Writes down what the apply loop tells it, and what its own backend has locked after each
/// statement; fails after the statement `fail_at` (version, 0-based index) when asked.
struct Recorder {
    events: std::cell::RefCell<Vec<String>>,
    fail_at: Option<(i32, usize)>,
}

impl Recorder {
    fn new(fail_at: Option<(i32, usize)>) -> Recorder {
        Recorder {
            events: std::cell::RefCell::new(Vec::new()),
            fail_at,
        }
    }

    fn events(&self) -> Vec<String> {
        self.events.borrow().clone()
    }
}

impl Observer for Recorder {
    fn script_starting(
        &self,
        _client: &mut postgres::Client,
        script: &ScriptRun<'_>,
    ) -> Result<(), ObserverError> {
        self.events.borrow_mut().push(format!(
            "start V{} {} transactional={}",
            script.migration.version(),
            script.direction.as_str(),
            script.transactional
        ));
        Ok(())
    }

    fn statement_done(
        &self,
        client: &mut postgres::Client,
        script: &ScriptRun<'_>,
        statement: &StatementRun<'_>,
    ) -> Result<(), ObserverError> {
        // Relations of the public schema this backend holds a lock on right now: inside the
        // migration's transaction, everything the script touched so far.
        let locked: Vec<String> = client
            .query(
                "SELECT DISTINCT c.relname::text FROM pg_locks l \
                 JOIN pg_class c ON c.oid = l.relation \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE l.pid = pg_backend_pid() AND n.nspname = 'public' ORDER BY 1",
                &[],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        self.events.borrow_mut().push(format!(
            "statement V{} {} {}/{} line {} `{}` locks [{}]",
            script.migration.version(),
            script.direction.as_str(),
            statement.index + 1,
            statement.total,
            statement.line,
            statement.sql,
            locked.join(", ")
        ));
        if self.fail_at == Some((script.migration.version(), statement.index)) {
            return Err("the observer refuses".into());
        }
        Ok(())
    }

    fn script_committed(
        &self,
        _client: &mut postgres::Client,
        script: &ScriptRun<'_>,
        _elapsed: Duration,
    ) -> Result<(), ObserverError> {
        self.events.borrow_mut().push(format!(
            "committed V{} {}",
            script.migration.version(),
            script.direction.as_str()
        ));
        Ok(())
    }
}

fn observed_catalog() -> Catalog {
    catalog(&[
        (
            "V1__t.sql",
            "-- a table\nCREATE TABLE t (id int);\n\nALTER TABLE t ADD COLUMN note text;\n",
        ),
        (
            "V1__t.down.sql",
            "ALTER TABLE t DROP COLUMN note;\nDROP TABLE t;\n",
        ),
        (
            "V2__i.sql",
            "-- ecomind:no-transaction\nCREATE INDEX CONCURRENTLY t_note ON t (note);\n",
        ),
        (
            "V2__i.down.sql",
            "-- ecomind:no-transaction\nDROP INDEX CONCURRENTLY t_note;\n",
        ),
    ])
}

#[test]
fn the_observer_sees_each_statement_inside_its_transaction_in_both_directions() {
    let db = database();
    let actor = actor();
    let recorder = Recorder::new(None);
    let opts = MigrateOptions {
        run: RunOptions {
            observer: Some(&recorder),
            ..common::run_options(&actor)
        },
        ..options(&actor)
    };
    migrate(&mut db.client(), &observed_catalog(), &opts, &mut |_| {}).expect("migrate");
    let rollback_options = MigrateOptions {
        target: Target::DownTo(0),
        ..opts.clone()
    };
    migrate(
        &mut db.client(),
        &observed_catalog(),
        &rollback_options,
        &mut |_| {},
    )
    .expect("rollback");
    assert_eq!(
        recorder.events(),
        [
            "start V1 up transactional=true",
            // Inside the transaction: the new table stays locked until the commit.
            "statement V1 up 1/2 line 2 `CREATE TABLE t (id int)` locks [t]",
            "statement V1 up 2/2 line 4 `ALTER TABLE t ADD COLUMN note text` locks [t]",
            "committed V1 up",
            "start V2 up transactional=false",
            // Outside a transaction, nothing stays locked after the statement.
            "statement V2 up 1/1 line 2 `CREATE INDEX CONCURRENTLY t_note ON t (note)` locks []",
            "committed V2 up",
            "start V2 down transactional=false",
            "statement V2 down 1/1 line 2 `DROP INDEX CONCURRENTLY t_note` locks []",
            "committed V2 down",
            "start V1 down transactional=true",
            "statement V1 down 1/2 line 1 `ALTER TABLE t DROP COLUMN note` locks [t]",
            // A dropped table has no pg_class row left to name its lock.
            "statement V1 down 2/2 line 2 `DROP TABLE t` locks []",
            "committed V1 down",
        ]
    );
    assert!(applied_versions(&db).is_empty());
}

#[test]
fn an_observer_error_rolls_the_migration_back_like_a_failed_statement() {
    let db = database();
    let actor = actor();
    let recorder = Recorder::new(Some((1, 1)));
    let opts = MigrateOptions {
        run: RunOptions {
            observer: Some(&recorder),
            ..common::run_options(&actor)
        },
        ..options(&actor)
    };
    let err = migrate(&mut db.client(), &observed_catalog(), &opts, &mut |_| {})
        .expect_err("the observer stops V1");
    let message = err.to_string();
    assert!(matches!(err, Error::MigrationFailed { .. }), "{message}");
    assert!(
        message.contains("statement 2 of 2") && message.contains("the observer refuses"),
        "{message}"
    );
    assert!(!table_exists(&db, "t"), "nothing of V1 stays");
    assert!(applied_versions(&db).is_empty());
    assert!(!recorder.events().iter().any(|e| e.starts_with("committed")));
}

/// V1 makes a table, V2 needs an ACCESS EXCLUSIVE lock on it.
fn lock_retry_catalog() -> Catalog {
    catalog(&[
        ("V1__t.sql", "CREATE TABLE busy (id int);\n"),
        ("V1__t.down.sql", "DROP TABLE busy;\n"),
        ("V2__c.sql", "ALTER TABLE busy ADD COLUMN note text;\n"),
        ("V2__c.down.sql", "ALTER TABLE busy DROP COLUMN note;\n"),
    ])
}

/// The event log's rows for V2, oldest first: (outcome, error).
fn v2_events(db: &TestDb) -> Vec<(String, Option<String>)> {
    db.client()
        .query(
            "SELECT outcome, error FROM ecomind_migration_events WHERE version = 2 AND outcome <> 'started' ORDER BY id",
            &[],
        )
        .expect("event log")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn retry_options(actor: &ecomind_migrate::Actor, retries: u32) -> MigrateOptions<'_> {
    MigrateOptions {
        run: RunOptions {
            lock_timeout: Some(Duration::from_millis(200)),
            lock_retries: retries,
            lock_retry_backoff: Duration::from_millis(50),
            ..common::run_options(actor)
        },
        ..options(actor)
    }
}

#[test]
fn a_lock_held_a_little_longer_than_two_lock_timeouts_is_outlived_by_retries() {
    let db = database();
    let actor = actor();
    let catalog = lock_retry_catalog();
    common::migrate_to(&mut db.client(), &catalog, Some(1)).expect("V1");
    let mut blocker = connect_as(&db.conninfo(), "blocker-test");
    let mut transaction = blocker.transaction().expect("begin");
    transaction
        .batch_execute("LOCK TABLE busy IN ACCESS SHARE MODE")
        .expect("hold a lock that ALTER TABLE conflicts with");

    let run = std::thread::spawn({
        let conninfo = db.conninfo();
        move || {
            let actor = common::actor();
            let mut client: postgres::Client = conninfo
                .parse::<postgres::Config>()
                .expect("conninfo")
                .connect(postgres::NoTls)
                .expect("connect");
            migrate(
                &mut client,
                &lock_retry_catalog(),
                &retry_options(&actor, 5),
                &mut |_| {},
            )
        }
    });
    // Released once the server has seen two attempts fail on it: a little longer than two
    // lock timeouts.
    eventually("two failed attempts in the event log", || {
        v2_events(&db).iter().filter(|(o, _)| o == "failed").count() >= 2
    });
    transaction.commit().expect("release");
    let report = run
        .join()
        .expect("no panic")
        .expect("the retries outlive the lock");
    let step = &report.steps[0];
    assert_eq!(step.version, 2);
    assert!(step.attempts >= 3, "{}", step.attempts);
    let events = v2_events(&db);
    assert_eq!(
        events.len() as u32,
        step.attempts,
        "every attempt is in the event log: {events:?}"
    );
    for (n, (outcome, error)) in events.iter().enumerate() {
        if n + 1 < events.len() {
            assert_eq!(outcome, "failed");
            let error = error.as_deref().unwrap_or_default();
            assert!(
                error.contains("canceling statement due to lock timeout")
                    && error.contains(&format!("(attempt {} of 6)", n + 1)),
                "{error}"
            );
        } else {
            assert_eq!(outcome, "applied");
        }
    }
    let _ = &actor;
}

#[test]
fn a_lock_held_forever_fails_after_the_retries_naming_the_blocker() {
    let db = database();
    let actor = actor();
    let catalog = lock_retry_catalog();
    common::migrate_to(&mut db.client(), &catalog, Some(1)).expect("V1");
    let mut blocker = connect_as(&db.conninfo(), "blocker-test");
    let pid: i32 = blocker
        .query_one("SELECT pg_backend_pid()", &[])
        .expect("pid")
        .get(0);
    blocker
        .batch_execute("BEGIN; LOCK TABLE busy IN ACCESS SHARE MODE; SELECT count(*) FROM busy")
        .expect("hold a lock, idle in transaction");
    let mut retries = Vec::new();
    let err = migrate(
        &mut db.client(),
        &catalog,
        &retry_options(&actor, 2),
        &mut |p| {
            if let ecomind_migrate::Progress::LockRetry {
                attempt, attempts, ..
            } = p
            {
                retries.push((attempt, attempts));
            }
        },
    )
    .expect_err("the lock is never released");
    assert_eq!(retries, [(1, 3), (2, 3)]);
    let message = err.to_string();
    assert!(
        message.contains("rolled back after 3 attempt(s) (lock_retries = 2), blocked by ")
            && message.contains(&format!(
                "pid {pid} (application_name \"blocker-test\", idle in transaction, query started "
            ))
            && message.contains(
                ": BEGIN; LOCK TABLE busy IN ACCESS SHARE MODE; SELECT count(*) FROM busy)"
            )
            && message.contains("end it with pg_terminate_backend(pid)"),
        "{message}"
    );
    let events = v2_events(&db);
    assert_eq!(events.len(), 3, "{events:?}");
    for (n, (outcome, error)) in events.iter().enumerate() {
        assert_eq!(outcome, "failed");
        assert!(
            error
                .as_deref()
                .unwrap_or_default()
                .contains(&format!("(attempt {} of 3)", n + 1)),
            "{error:?}"
        );
    }
    assert_eq!(applied_versions(&db), [1], "nothing of V2 stays");
}

#[test]
fn without_retries_a_lock_timeout_fails_at_once() {
    let db = database();
    let actor = actor();
    let catalog = lock_retry_catalog();
    common::migrate_to(&mut db.client(), &catalog, Some(1)).expect("V1");
    let mut blocker = connect_as(&db.conninfo(), "blocker-test");
    blocker
        .batch_execute("BEGIN; LOCK TABLE busy IN ACCESS SHARE MODE")
        .expect("hold a lock");
    let err = migrate(
        &mut db.client(),
        &catalog,
        &retry_options(&actor, 0),
        &mut |_| {},
    )
    .expect_err("no retries");
    assert!(
        err.to_string()
            .contains("rolled back after 1 attempt(s) (lock_retries = 0), blocked by pid"),
        "{err}"
    );
    assert_eq!(v2_events(&db).len(), 1);
}
