//! Every migration is reversible: up, down, up again, compared by schema fingerprint, for the
//! repository's migrations and for a generated catalog of varied ones; and rollback itself.

use ecomind_migrate::fingerprint::describe;
use ecomind_migrate::{
    diff, fingerprint, migrate, Catalog, Error, Fingerprint, MigrateOptions, Report, Target,
};
use ecomind_testkit::{database, TestDb};

use crate::common;
use crate::common::{actor, applied_versions, migrate_to, repo_catalog, table_exists};

fn up_to(db: &TestDb, catalog: &Catalog, target: Option<i32>) {
    try_up_to(db, catalog, target).unwrap_or_else(|e| panic!("migrate to {target:?}: {e}"));
}

fn try_up_to(db: &TestDb, catalog: &Catalog, target: Option<i32>) -> Result<(), Error> {
    migrate_to(&mut db.client(), catalog, target)
}

fn down(db: &TestDb, catalog: &Catalog, to: Target) -> Result<Report, Error> {
    let actor = actor();
    let options = MigrateOptions {
        target: to,
        allow_out_of_order: false,
        run: common::run_options(&actor),
    };
    migrate(&mut db.client(), catalog, &options, &mut |_| {})
}

fn fp(db: &TestDb) -> Fingerprint {
    fingerprint(&mut db.client()).expect("fingerprint")
}

/// Up, down, up again for each migration in turn, on a fresh database. Err names the
/// migration and shows the fingerprint diff.
fn roundtrip(catalog: &Catalog) -> Result<usize, String> {
    let db = database();
    let mut checked = 0;
    for m in catalog.migrations() {
        let file = m.file_name();
        let before = fp(&db);
        try_up_to(&db, catalog, Some(m.version())).map_err(|e| format!("{file} up: {e}"))?;
        let first_up = fp(&db);
        // A data-only migration (its down a deliberate no-op) changes no schema.
        if first_up == before && !m.has_noop_down() {
            return Err(format!("{file}: the fingerprint does not see its change"));
        }
        let report = down(&db, catalog, Target::DownSteps(1))
            .map_err(|e| format!("{} down: {e}", m.down_file_name()))?;
        assert_eq!(report.steps.len(), 1, "{file}");
        assert_eq!(report.steps[0].transactional, m.is_down_transactional());
        let after_down = fp(&db);
        let differences = diff(&before, &after_down);
        if !differences.is_empty() {
            return Err(format!(
                "{} is not the exact inverse of {file}; the schema after it differs from the schema before {file}:\n{}",
                m.down_file_name(),
                describe(&differences)
            ));
        }
        try_up_to(&db, catalog, Some(m.version())).map_err(|e| format!("{file} second up: {e}"))?;
        let second_up = fp(&db);
        let differences = diff(&first_up, &second_up);
        if !differences.is_empty() {
            return Err(format!(
                "{file} applied a second time differs from its first time:\n{}",
                describe(&differences)
            ));
        }
        checked += 1;
    }
    Ok(checked)
}

#[test]
fn every_repository_migration_goes_down_and_up_again_exactly() {
    let catalog = repo_catalog();
    let checked = roundtrip(&catalog).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(checked, catalog.migrations().len());
    assert!(
        catalog
            .migrations()
            .iter()
            .any(|m| !m.is_down_transactional()),
        "V2's down runs outside a transaction"
    );
}

/// (name, up, down); a no-transaction up gets a no-transaction down.
const GENERATED: &[(&str, &str, &str)] = &[
    ("create_schema_reporting", "CREATE SCHEMA reporting;", "DROP SCHEMA reporting;"),
    (
        "create_org",
        "CREATE TABLE org (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name varchar(50) NOT NULL, created_at timestamptz DEFAULT now());",
        "DROP TABLE org;",
    ),
    (
        "create_member",
        "CREATE TABLE member (id serial PRIMARY KEY, org_id bigint NOT NULL REFERENCES org (id) ON DELETE CASCADE, email text UNIQUE, role varchar(20) DEFAULT 'viewer');",
        "DROP TABLE member;",
    ),
    ("index_member_org", "CREATE INDEX member_org_idx ON member (org_id);", "DROP INDEX member_org_idx;"),
    ("add_nickname", "ALTER TABLE member ADD COLUMN nickname text;", "ALTER TABLE member DROP COLUMN nickname;"),
    (
        "widen_role",
        "ALTER TABLE member ALTER COLUMN role TYPE varchar(50);",
        "ALTER TABLE member ALTER COLUMN role TYPE varchar(20);",
    ),
    (
        "role_not_null",
        "ALTER TABLE member ALTER COLUMN role SET NOT NULL;",
        "ALTER TABLE member ALTER COLUMN role DROP NOT NULL;",
    ),
    (
        "role_default_member",
        "ALTER TABLE member ALTER COLUMN role SET DEFAULT 'member';",
        "ALTER TABLE member ALTER COLUMN role SET DEFAULT 'viewer';",
    ),
    (
        "org_name_check",
        "ALTER TABLE org ADD CONSTRAINT org_name_check CHECK (length(name) > 0);",
        "ALTER TABLE org DROP CONSTRAINT org_name_check;",
    ),
    (
        "member_status_enum",
        "CREATE TYPE member_status AS ENUM ('active', 'suspended');",
        "DROP TYPE member_status;",
    ),
    (
        "member_status_column",
        "ALTER TABLE member ADD COLUMN status member_status NOT NULL DEFAULT 'active';",
        "ALTER TABLE member DROP COLUMN status;",
    ),
    (
        "rename_enum_value",
        "ALTER TYPE member_status RENAME VALUE 'suspended' TO 'blocked';",
        "ALTER TYPE member_status RENAME VALUE 'blocked' TO 'suspended';",
    ),
    (
        "active_members_view",
        "CREATE VIEW active_members AS SELECT id, email FROM member WHERE status = 'active';",
        "DROP VIEW active_members;",
    ),
    (
        "org_sizes_matview",
        "CREATE MATERIALIZED VIEW org_sizes AS SELECT org_id, count(*) AS n FROM member GROUP BY org_id;",
        "DROP MATERIALIZED VIEW org_sizes;",
    ),
    (
        "org_sizes_index",
        "CREATE UNIQUE INDEX org_sizes_org ON org_sizes (org_id);",
        "DROP INDEX org_sizes_org;",
    ),
    (
        "touch_function",
        "CREATE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n    NEW.updated_at := now();\n    RETURN NEW;\nEND\n$$;",
        "DROP FUNCTION touch_updated_at();",
    ),
    ("org_updated_at", "ALTER TABLE org ADD COLUMN updated_at timestamptz;", "ALTER TABLE org DROP COLUMN updated_at;"),
    (
        "org_touch_trigger",
        "CREATE TRIGGER org_touch BEFORE UPDATE ON org FOR EACH ROW EXECUTE FUNCTION touch_updated_at();",
        "DROP TRIGGER org_touch ON org;",
    ),
    ("comment_org", "COMMENT ON TABLE org IS 'organisations';", "COMMENT ON TABLE org IS NULL;"),
    (
        "comment_email",
        "COMMENT ON COLUMN member.email IS 'the login; unique';",
        "COMMENT ON COLUMN member.email IS NULL;",
    ),
    (
        "invoice_sequence",
        "CREATE SEQUENCE invoice_no START 1000 INCREMENT 10;",
        "DROP SEQUENCE invoice_no;",
    ),
    (
        "create_invoice",
        "CREATE TABLE invoice (no bigint PRIMARY KEY DEFAULT nextval('invoice_no'), org_id bigint REFERENCES org (id), amount numeric(12, 2) NOT NULL CHECK (amount >= 0));",
        "DROP TABLE invoice;",
    ),
    (
        "invoice_sequence_owned",
        "ALTER SEQUENCE invoice_no OWNED BY invoice.no;",
        "ALTER SEQUENCE invoice_no OWNED BY NONE;",
    ),
    (
        "invoice_org_index_concurrently",
        "-- ecomind:no-transaction\nCREATE INDEX CONCURRENTLY invoice_org_idx ON invoice (org_id);",
        "-- ecomind:no-transaction\nDROP INDEX CONCURRENTLY invoice_org_idx;",
    ),
    (
        "positive_amount_domain",
        "CREATE DOMAIN positive_amount AS numeric(12, 2) CHECK (VALUE > 0);",
        "DROP DOMAIN positive_amount;",
    ),
    ("invoice_tax", "ALTER TABLE invoice ADD COLUMN tax positive_amount;", "ALTER TABLE invoice DROP COLUMN tax;"),
    (
        "rename_nickname",
        "ALTER TABLE member RENAME COLUMN nickname TO display_name;",
        "ALTER TABLE member RENAME COLUMN display_name TO nickname;",
    ),
    ("rename_invoice", "ALTER TABLE invoice RENAME TO invoices;", "ALTER TABLE invoices RENAME TO invoice;"),
    (
        "invoice_total_generated",
        "ALTER TABLE invoices ADD COLUMN total numeric GENERATED ALWAYS AS (amount * 2) STORED;",
        "ALTER TABLE invoices DROP COLUMN total;",
    ),
    (
        "event_log_partitioned",
        "CREATE TABLE event_log (id bigint, at timestamptz NOT NULL, body jsonb) PARTITION BY RANGE (at);",
        "DROP TABLE event_log;",
    ),
    (
        "event_log_2026",
        "CREATE TABLE event_log_2026 PARTITION OF event_log FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');",
        "DROP TABLE event_log_2026;",
    ),
    ("event_log_at_index", "CREATE INDEX event_log_at ON event_log (at);", "DROP INDEX event_log_at;"),
    (
        "member_rls",
        "ALTER TABLE member ENABLE ROW LEVEL SECURITY;",
        "ALTER TABLE member DISABLE ROW LEVEL SECURITY;",
    ),
    (
        "member_policy",
        "CREATE POLICY member_self ON member USING (email = current_user);",
        "DROP POLICY member_self ON member;",
    ),
    (
        "unlogged_cache",
        "CREATE UNLOGGED TABLE cache_entry (k text PRIMARY KEY, v bytea);",
        "DROP TABLE cache_entry;",
    ),
    ("cache_logged", "ALTER TABLE cache_entry SET LOGGED;", "ALTER TABLE cache_entry SET UNLOGGED;"),
    (
        "member_count_function",
        "CREATE FUNCTION org_member_count(p_org bigint) RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(*) FROM member WHERE org_id = p_org $$;",
        "DROP FUNCTION org_member_count(bigint);",
    ),
    (
        "member_count_active_only",
        "CREATE OR REPLACE FUNCTION org_member_count(p_org bigint) RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(*) FROM member WHERE org_id = p_org AND status = 'active' $$;",
        "CREATE OR REPLACE FUNCTION org_member_count(p_org bigint) RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(*) FROM member WHERE org_id = p_org $$;",
    ),
    (
        "widen_org_name",
        "ALTER TABLE org ALTER COLUMN name TYPE varchar(100);",
        "ALTER TABLE org ALTER COLUMN name TYPE varchar(50);",
    ),
    (
        "create_tag",
        "CREATE TABLE tag (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, label text COLLATE \"C\" NOT NULL);",
        "DROP TABLE tag;",
    ),
    (
        "create_member_tag",
        "CREATE TABLE member_tag (member_id int REFERENCES member (id) ON DELETE CASCADE, tag_id int REFERENCES tag (id), PRIMARY KEY (member_id, tag_id));",
        "DROP TABLE member_tag;",
    ),
    (
        "member_tag_cascade",
        "ALTER TABLE member_tag DROP CONSTRAINT member_tag_tag_id_fkey, ADD CONSTRAINT member_tag_tag_id_fkey FOREIGN KEY (tag_id) REFERENCES tag (id) ON DELETE CASCADE;",
        "ALTER TABLE member_tag DROP CONSTRAINT member_tag_tag_id_fkey, ADD CONSTRAINT member_tag_tag_id_fkey FOREIGN KEY (tag_id) REFERENCES tag (id);",
    ),
    (
        "tag_label_lower_index",
        "CREATE INDEX tag_label_lower ON tag (lower(label)) WHERE label <> '';",
        "DROP INDEX tag_label_lower;",
    ),
    (
        "org_name_unique_deferred",
        "ALTER TABLE org ADD CONSTRAINT org_name_key UNIQUE (name) DEFERRABLE INITIALLY DEFERRED;",
        "ALTER TABLE org DROP CONSTRAINT org_name_key;",
    ),
    (
        "amount_range_type",
        "CREATE TYPE amount_range AS RANGE (subtype = numeric);",
        "DROP TYPE amount_range;",
    ),
    ("address_type", "CREATE TYPE address AS (street text, city text);", "DROP TYPE address;"),
    ("org_hq", "ALTER TABLE org ADD COLUMN hq address;", "ALTER TABLE org DROP COLUMN hq;"),
    (
        "purge_procedure",
        "CREATE PROCEDURE purge_cache() LANGUAGE sql AS $$ DELETE FROM cache_entry $$;",
        "DROP PROCEDURE purge_cache();",
    ),
    (
        "product_aggregate",
        "CREATE AGGREGATE product(numeric) (SFUNC = numeric_mul, STYPE = numeric, INITCOND = '1');",
        "DROP AGGREGATE product(numeric);",
    ),
    (
        "cache_no_delete_rule",
        "CREATE RULE cache_entry_keep AS ON DELETE TO cache_entry DO INSTEAD NOTHING;",
        "DROP RULE cache_entry_keep ON cache_entry;",
    ),
    (
        "comment_function",
        "COMMENT ON FUNCTION touch_updated_at() IS 'sets updated_at';",
        "COMMENT ON FUNCTION touch_updated_at() IS NULL;",
    ),
    (
        "comment_index",
        "COMMENT ON INDEX member_org_idx IS 'members of an organisation';",
        "COMMENT ON INDEX member_org_idx IS NULL;",
    ),
    (
        "display_name_varchar",
        "ALTER TABLE member ALTER COLUMN display_name TYPE varchar(80);",
        "ALTER TABLE member ALTER COLUMN display_name TYPE text;",
    ),
    (
        "tag_id_always",
        "ALTER TABLE tag ALTER COLUMN id SET GENERATED ALWAYS;",
        "ALTER TABLE tag ALTER COLUMN id SET GENERATED BY DEFAULT;",
    ),
    (
        "rename_member_index",
        "ALTER INDEX member_org_idx RENAME TO member_org_id_idx;",
        "ALTER INDEX member_org_id_idx RENAME TO member_org_idx;",
    ),
    (
        "reporting_daily",
        "CREATE TABLE reporting.daily (day date PRIMARY KEY, n int DEFAULT 0);",
        "DROP TABLE reporting.daily;",
    ),
    (
        "email_check_not_valid",
        "ALTER TABLE member ADD CONSTRAINT member_email_check CHECK (email LIKE '%@%') NOT VALID;",
        "ALTER TABLE member DROP CONSTRAINT member_email_check;",
    ),
    (
        "validate_email_check",
        "ALTER TABLE member VALIDATE CONSTRAINT member_email_check;",
        "ALTER TABLE member DROP CONSTRAINT member_email_check, ADD CONSTRAINT member_email_check CHECK (email LIKE '%@%') NOT VALID;",
    ),
    (
        "cache_fillfactor",
        "ALTER TABLE cache_entry SET (fillfactor = 70);",
        "ALTER TABLE cache_entry RESET (fillfactor);",
    ),
    ("disable_org_touch", "ALTER TABLE org DISABLE TRIGGER org_touch;", "ALTER TABLE org ENABLE TRIGGER org_touch;"),
    (
        "member_trigger_with_when",
        "ALTER TABLE member ADD COLUMN updated_at timestamptz;\nCREATE TRIGGER member_touch BEFORE UPDATE ON member FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION touch_updated_at();",
        "DROP TRIGGER member_touch ON member;\nALTER TABLE member DROP COLUMN updated_at;",
    ),
    (
        "comment_schema_and_sequence",
        "COMMENT ON SCHEMA reporting IS 'read models';\nCOMMENT ON SEQUENCE invoice_no IS 'invoice numbers';",
        "COMMENT ON SEQUENCE invoice_no IS NULL;\nCOMMENT ON SCHEMA reporting IS NULL;",
    ),
    (
        "add_enum_table_and_view_in_reporting",
        "CREATE TYPE reporting.period AS ENUM ('day', 'week');\nCREATE VIEW reporting.org_names AS SELECT id, name FROM public.org;",
        "DROP VIEW reporting.org_names;\nDROP TYPE reporting.period;",
    ),
];

fn generated_catalog(files: &[(&str, &str, &str)]) -> Catalog {
    let mut out = Vec::new();
    for (i, (name, up, down)) in files.iter().enumerate() {
        let version = i + 1;
        out.push((format!("V{version}__{name}.sql"), (*up).to_owned()));
        out.push((format!("V{version}__{name}.down.sql"), (*down).to_owned()));
    }
    Catalog::from_files(out).expect("the generated catalog is valid")
}

#[test]
fn every_generated_migration_goes_down_and_up_again_exactly() {
    assert!(GENERATED.len() >= 50, "{} migrations", GENERATED.len());
    let catalog = generated_catalog(GENERATED);
    let checked = roundtrip(&catalog).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(checked, GENERATED.len());
}

#[test]
fn a_down_that_is_not_the_exact_inverse_is_caught_with_the_difference() {
    struct Case {
        up: &'static str,
        wrong_down: &'static str,
        expected: &'static [&'static str],
    }
    let cases = [
        Case {
            // The down forgets the column.
            up: "ALTER TABLE a ADD COLUMN note text;\nCREATE INDEX a_note ON a (note);",
            wrong_down: "DROP INDEX a_note;",
            expected: &["extra column public.a.note", "actual:   text"],
        },
        Case {
            // The down is an explicit no-op, but the up changed the schema.
            up: "ALTER TABLE a ADD COLUMN note text;",
            wrong_down: "-- nothing to undo\n",
            expected: &["extra column public.a.note", "actual:   text"],
        },
        Case {
            // The down restores the wrong length.
            up: "ALTER TABLE a ALTER COLUMN name TYPE varchar(100);",
            wrong_down: "ALTER TABLE a ALTER COLUMN name TYPE varchar(200);",
            expected: &[
                "changed column public.a.name",
                "expected: character varying(50)",
                "actual:   character varying(200)",
            ],
        },
        Case {
            // The down recreates the foreign key without its ON DELETE CASCADE.
            up: "ALTER TABLE b DROP CONSTRAINT b_a_id_fkey;",
            wrong_down:
                "ALTER TABLE b ADD CONSTRAINT b_a_id_fkey FOREIGN KEY (a_id) REFERENCES a (id);",
            expected: &[
                "changed constraint public.b.b_a_id_fkey",
                "expected: FOREIGN KEY (a_id) REFERENCES a(id) ON DELETE CASCADE",
                "actual:   FOREIGN KEY (a_id) REFERENCES a(id)",
            ],
        },
    ];
    for case in cases {
        let files = [
            (
                "base",
                "CREATE TABLE a (id int PRIMARY KEY, name varchar(50));\nCREATE TABLE b (a_id int REFERENCES a (id) ON DELETE CASCADE);",
                "DROP TABLE b;\nDROP TABLE a;",
            ),
            ("change", case.up, case.wrong_down),
        ];
        let err = roundtrip(&generated_catalog(&files)).expect_err(case.wrong_down);
        assert!(
            err.contains("V2__change.down.sql is not the exact inverse of V2__change.sql"),
            "{err}"
        );
        for line in case.expected {
            assert!(err.contains(line), "expected `{line}` in:\n{err}");
        }
    }
}

/// The V1 tables and their content, by V1's columns only: what rollback must keep.
const V1_TABLES: &[(&str, &str)] = &[
    ("organizations", "org_id, name, plan_type, created_at, updated_at"),
    ("users", "user_id, org_id, email, role, created_at, updated_at"),
    ("events_enriched", "id, org_id, user_id, provider, model, tokens_in, tokens_out, node_type, region, kwh, water_l, co2_kg, ts, source, metadata, created_at"),
    ("daily_org_agg", "date, org_id, call_count, kwh, water_l, co2_kg"),
    ("daily_user_agg", "date, org_id, user_id, call_count, kwh, water_l, co2_kg"),
    ("daily_provider_agg", "date, org_id, provider, call_count, kwh, water_l, co2_kg"),
    ("daily_model_agg", "date, org_id, provider, model, call_count, kwh, water_l, co2_kg"),
    ("audit_logs", "id, org_id, user_id, action, resource_type, resource_id, metadata, ip_address, \"timestamp\""),
];

/// Row count and a digest of each V1 table's V1 columns.
fn v1_content(db: &TestDb) -> Vec<(String, i64, String)> {
    let mut client = db.client();
    V1_TABLES
        .iter()
        .map(|(table, columns)| {
            let row = client
                .query_one(
                    &format!(
                        "SELECT count(*), coalesce(md5(string_agg(r::text, '|' ORDER BY r::text)), '') \
                         FROM (SELECT {columns} FROM {table}) r"
                    ),
                    &[],
                )
                .unwrap_or_else(|e| panic!("{table}: {e}"));
            ((*table).to_owned(), row.get(0), row.get(1))
        })
        .collect()
}

const ROWS_IN_EVERY_TABLE: &str = "
INSERT INTO organizations (org_id, name) VALUES ('o1', 'One'), ('o2', 'Two');
INSERT INTO users (user_id, org_id, email, password_hash, failed_login_count)
    VALUES ('u1', 'o1', 'a@one', 'hash', 2), ('u2', 'o2', 'b@two', NULL, 0);
INSERT INTO events_enriched (id, org_id, user_id, provider, model, kwh, water_l, co2_kg, ts, metadata)
    SELECT gen_random_uuid()::text, 'o1', 'u1', 'openai', 'gpt', i * 0.1, i * 0.2, i * 0.3,
           '2026-01-01'::timestamptz + i * interval '1 hour', jsonb_build_object('i', i)
    FROM generate_series(1, 50) i;
INSERT INTO daily_org_agg VALUES ('2026-01-01', 'o1', 50, 1.5, 2.5, 3.5);
INSERT INTO daily_user_agg VALUES ('2026-01-01', 'o1', 'u1', 50, 1.5, 2.5, 3.5);
INSERT INTO daily_provider_agg VALUES ('2026-01-01', 'o1', 'openai', 50, 1.5, 2.5, 3.5);
INSERT INTO daily_model_agg VALUES ('2026-01-01', 'o1', 'openai', 'gpt', 50, 1.5, 2.5, 3.5);
INSERT INTO audit_logs (org_id, user_id, action, ip_address) VALUES ('o1', 'u1', 'login', '10.0.0.1'), ('o2', 'u2', 'logout', NULL);
INSERT INTO api_keys (org_id, name, key_hash, created_by) VALUES ('o1', 'ci', 'k1', 'u1');
INSERT INTO refresh_tokens (user_id, token_hash, expires_at) VALUES ('u1', 't1', now() + interval '1 day');
";

#[test]
fn rollback_to_v1_and_up_again_keeps_the_rows_of_v1_tables() {
    let db = database();
    let catalog = repo_catalog();
    up_to(&db, &catalog, None);
    db.client()
        .batch_execute(ROWS_IN_EVERY_TABLE)
        .expect("rows in every table");
    let before = v1_content(&db);
    assert!(before.iter().all(|(_, rows, _)| *rows > 0), "{before:?}");

    let report = down(&db, &catalog, Target::DownTo(1)).expect("rollback to V1");
    let reverted: Vec<(i32, bool)> = report
        .steps
        .iter()
        .map(|s| (s.version, s.transactional))
        .collect();
    assert_eq!(reverted, vec![(4, true), (3, true), (2, false)]);
    assert_eq!(report.head, Some(1));
    assert_eq!(applied_versions(&db), vec![1]);
    assert_eq!(v1_content(&db), before, "rollback kept V1's rows");

    up_to(&db, &catalog, None);
    assert_eq!(applied_versions(&db), vec![1, 2, 3, 4]);
    assert_eq!(v1_content(&db), before, "the second up kept V1's rows");
    let defaults: (i64, i64) = {
        let row = db
            .client()
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE failed_login_count = 0 AND password_hash IS NULL) FROM users",
                &[],
            )
            .expect("users");
        (row.get(0), row.get(1))
    };
    assert_eq!(
        defaults,
        (2, 2),
        "V3's columns came back with their defaults"
    );

    let mut client = db.client();
    let events: Vec<(i32, String, String)> = client
        .query(
            "SELECT version, direction, outcome FROM ecomind_migration_events ORDER BY id",
            &[],
        )
        .expect("events")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let downs: Vec<i32> = events
        .iter()
        .filter(|(_, d, o)| d == "down" && o == "applied")
        .map(|(v, _, _)| *v)
        .collect();
    assert_eq!(downs, vec![4, 3, 2], "{events:?}");
}

fn small_catalog(v2_up: &str, v2_down: Option<&str>) -> Catalog {
    let mut files = vec![
        (
            "V1__a.sql".to_owned(),
            "CREATE TABLE a (id int);".to_owned(),
        ),
        ("V1__a.down.sql".to_owned(), "DROP TABLE a;".to_owned()),
        ("V2__b.sql".to_owned(), v2_up.to_owned()),
        (
            "V3__c.sql".to_owned(),
            "CREATE TABLE c (id int);".to_owned(),
        ),
        ("V3__c.down.sql".to_owned(), "DROP TABLE c;".to_owned()),
    ];
    if let Some(d) = v2_down {
        files.push(("V2__b.down.sql".to_owned(), d.to_owned()));
    }
    Catalog::from_files(files).expect("valid")
}

#[test]
fn rollback_refuses_to_pass_an_irreversible_migration_before_running_anything() {
    let db = database();
    let catalog = small_catalog(
        "-- ecomind:irreversible\nCREATE TABLE b (id int);\nINSERT INTO b VALUES (1);",
        None,
    );
    up_to(&db, &catalog, None);
    let err = down(&db, &catalog, Target::DownTo(1)).expect_err("V2 is irreversible");
    let message = err.to_string();
    assert!(
        matches!(err, Error::Irreversible { version: 2, .. }),
        "{message}"
    );
    assert!(
        message.contains("V2__b.sql is marked irreversible"),
        "{message}"
    );
    assert_eq!(
        applied_versions(&db),
        vec![1, 2, 3],
        "nothing was rolled back"
    );
    assert!(table_exists(&db, "c"), "V3 was not reverted either");

    let report = down(&db, &catalog, Target::DownTo(2)).expect("down to V2 is fine");
    assert_eq!(report.steps.len(), 1);
    assert_eq!(applied_versions(&db), vec![1, 2]);
    assert!(!table_exists(&db, "c"));
    let err = down(&db, &catalog, Target::DownSteps(1)).expect_err("V2 again");
    assert!(
        matches!(err, Error::Irreversible { version: 2, .. }),
        "{err}"
    );
}

#[test]
fn rollback_checks_its_target_and_the_history_first() {
    let db = database();
    let catalog = small_catalog("CREATE TABLE b (id int);", Some("DROP TABLE b;"));
    // Nothing applied: rolling back to 0 does nothing, anything else is refused.
    let report = down(&db, &catalog, Target::DownTo(0)).expect("nothing to do");
    assert!(report.steps.is_empty() && report.head.is_none());
    up_to(&db, &catalog, None);
    let err = down(&db, &catalog, Target::DownTo(7)).expect_err("not applied");
    assert!(
        err.to_string()
            .contains("version 7 is not applied (applied: 1, 2, 3)"),
        "{err}"
    );
    let err = down(&db, &catalog, Target::DownSteps(4)).expect_err("too many");
    assert!(
        matches!(
            err,
            Error::TooManySteps {
                steps: 4,
                applied: 3
            }
        ),
        "{err}"
    );
    let changed = small_catalog("CREATE TABLE b (id bigint);", Some("DROP TABLE b;"));
    let err = down(&db, &changed, Target::DownSteps(1)).expect_err("V2's file changed");
    assert!(matches!(err, Error::Diverged(_)), "{err}");
    assert_eq!(
        applied_versions(&db),
        vec![1, 2, 3],
        "nothing was rolled back"
    );
    let report = down(&db, &catalog, Target::DownTo(3)).expect("already there");
    assert!(report.steps.is_empty());
    assert_eq!(report.head, Some(3));
    let report = down(&db, &catalog, Target::DownTo(0)).expect("everything");
    assert_eq!(report.steps.len(), 3);
    assert_eq!(report.head, None);
    assert!(applied_versions(&db).is_empty());
    assert!(!table_exists(&db, "a"));
}

#[test]
fn a_failing_down_is_undone_and_its_migration_stays_applied() {
    let db = database();
    let catalog = small_catalog(
        "CREATE TABLE b (id int);",
        Some("DROP TABLE b;\nDROP TABLE no_such_table;"),
    );
    up_to(&db, &catalog, None);
    let err = down(&db, &catalog, Target::DownTo(1)).expect_err("V2's down fails");
    let message = err.to_string();
    assert!(matches!(err, Error::MigrationFailed { .. }), "{message}");
    assert!(message.contains("V2__b.down.sql"), "{message}");
    assert!(message.contains("statement 2 of 2"), "{message}");
    assert!(message.contains("no_such_table"), "{message}");
    let partial = err.partial_report().expect("what was reverted");
    assert_eq!(partial.steps.len(), 1, "V3 was reverted first");
    assert_eq!(partial.head, Some(2));
    assert_eq!(applied_versions(&db), vec![1, 2]);
    assert!(table_exists(&db, "b"), "V2's down was undone as a whole");
    let failed: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FROM ecomind_migration_events \
             WHERE version = 2 AND direction = 'down' AND outcome = 'failed' AND error LIKE '%no_such_table%'",
            &[],
        )
        .expect("events")
        .get(0);
    assert_eq!(failed, 1);
}

#[test]
fn the_long_history_goes_down_and_up_again_exactly() {
    let catalog = Catalog::load_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/long_history"),
    )
    .expect("the long history loads");
    assert_eq!(catalog.migrations().len(), 32);
    let noop: Vec<i32> = catalog
        .migrations()
        .iter()
        .filter(|m| m.has_noop_down())
        .map(|m| m.version())
        .collect();
    assert_eq!(noop, vec![14, 28]);
    let checked = roundtrip(&catalog).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(checked, 32);
}
