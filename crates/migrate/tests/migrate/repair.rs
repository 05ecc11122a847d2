//! repair against real PostgreSQL: a cancelled CREATE INDEX CONCURRENTLY, and an applied file
//! edited on purpose.

use std::time::{Duration, Instant};

use ecomind_migrate::fingerprint::describe;
use ecomind_migrate::{
    repair, status, verify, Actor, Catalog, Error, Problem, RepairOptions, VerifyOptions,
};
use ecomind_testkit::database;

use crate::common::{actor, applied_versions, migrate_to, repo_catalog};

fn repair_options(actor: &Actor, accept_checksum: Option<i32>) -> RepairOptions<'_> {
    RepairOptions {
        accept_checksum,
        lock_wait: Duration::from_secs(30),
        lock_timeout: None,
        statement_timeout: None,
        actor,
    }
}

/// Polls until `query` returns a row, for at most a minute. Between two polls the server waits
/// (`pg_sleep`), so neither this process nor the server spins.
fn wait_for_row(client: &mut postgres::Client, query: &str) -> postgres::Row {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(row) = client.query_opt(query, &[]).expect("poll") {
            return row;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {query}");
        client
            .batch_execute("SELECT pg_sleep(0.02)")
            .expect("pause between polls");
    }
}

#[test]
fn a_cancelled_concurrent_index_build_is_reported_by_status_cleared_by_repair_then_migrate_succeeds(
) {
    let db = database();
    let catalog = repo_catalog();
    migrate_to(&mut db.client(), &catalog, Some(1)).expect("V1");

    // An open writing transaction on events_enriched: CREATE INDEX CONCURRENTLY creates its
    // (invalid) index, then waits for this writer before it builds. That is where we cancel it.
    let mut writer = db.client();
    let mut open = writer.transaction().expect("begin");
    open.batch_execute(
        "INSERT INTO organizations (org_id, name) VALUES ('o1', 'One');\
         INSERT INTO events_enriched (id, org_id, user_id, provider, kwh, water_l, co2_kg, ts) \
         VALUES ('e1', 'o1', 'u1', 'p', 1, 1, 1, now())",
    )
    .expect("write");

    let config = db.config();
    let migrating = std::thread::spawn(move || {
        let mut client = config.connect(postgres::NoTls).expect("connect");
        migrate_to(&mut client, &repo_catalog(), None)
    });
    let mut watcher = db.client();
    let datname = db.name().to_owned();
    let pid: i32 = wait_for_row(
        &mut watcher,
        &format!(
            "SELECT pid FROM pg_stat_activity WHERE datname = '{datname}' \
             AND query LIKE 'CREATE INDEX CONCURRENTLY%idx_events_org_id_ts%' AND wait_event_type = 'Lock'"
        ),
    )
    .get(0);
    watcher
        .execute("SELECT pg_cancel_backend($1)", &[&pid])
        .expect("cancel the build");
    let err = migrating
        .join()
        .expect("the migrating thread")
        .expect_err("the build was cancelled");
    assert!(matches!(err, Error::HalfApplied { .. }), "{err}");
    assert!(err.to_string().contains("idx_events_org_id_ts"), "{err}");
    open.rollback().expect("end the writer");

    let st = status(&mut db.client(), &catalog).expect("status");
    assert!(st.needs_attention());
    let invalid: Vec<String> = st.invalid_indexes.iter().map(|i| i.to_string()).collect();
    assert_eq!(
        invalid,
        vec!["public.idx_events_org_id_ts on events_enriched"]
    );
    assert_eq!(applied_versions(&db), vec![1]);

    let actor = actor();
    let report = repair(&mut db.client(), &catalog, &repair_options(&actor, None)).expect("repair");
    let dropped: Vec<String> = report
        .dropped_indexes
        .iter()
        .map(|i| i.to_string())
        .collect();
    assert_eq!(dropped, invalid);
    assert!(report.still_building.is_empty() && report.accepted_checksum.is_none());
    let logged: (i32, String, String) = {
        let row = db
            .client()
            .query_one(
                "SELECT version, name, detail FROM ecomind_migration_events WHERE direction = 'repair' AND error IS NULL",
                &[],
            )
            .expect("the repair is in the event log");
        (row.get(0), row.get(1), row.get(2))
    };
    assert_eq!((logged.0, logged.1.as_str()), (2, "performance_indexes"));
    assert!(
        logged.2.contains("public.idx_events_org_id_ts"),
        "{}",
        logged.2
    );

    let st = status(&mut db.client(), &catalog).expect("status");
    assert!(!st.needs_attention(), "{:?}", st.invalid_indexes);
    migrate_to(&mut db.client(), &catalog, None).expect("migrate succeeds after the repair");
    assert_eq!(applied_versions(&db), vec![1, 2, 3, 4]);
    let options = VerifyOptions {
        lock_wait: Duration::from_secs(30),
        lock_timeout: Some(Duration::from_secs(5)),
        statement_timeout: None,
    };
    let verified = verify(&mut db.client(), &catalog, &options).expect("verify");
    assert!(verified.matches(), "{}", describe(&verified.differences));
    let again = repair(&mut db.client(), &catalog, &repair_options(&actor, None)).expect("again");
    assert!(again.is_empty(), "nothing left to repair");
}

#[test]
fn accept_checksum_re_records_a_deliberately_edited_file_and_refuses_anything_else() {
    let db = database();
    let original = Catalog::from_files([
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("V1__a.down.sql", "DROP TABLE a;"),
    ])
    .expect("valid");
    migrate_to(&mut db.client(), &original, None).expect("V1");
    let edited_files = [
        (
            "V1__a.sql",
            "-- Creates a; edited after it was applied, the schema is the same.\nCREATE TABLE a (id int);",
        ),
        ("V1__a.down.sql", "DROP TABLE a;"),
        ("V2__b.sql", "CREATE TABLE b (id int);"),
        ("V2__b.down.sql", "DROP TABLE b;"),
    ];
    let edited = Catalog::from_files(edited_files).expect("valid");
    let st = status(&mut db.client(), &edited).expect("status");
    assert!(matches!(
        st.problems.as_slice(),
        [Problem::ChecksumChanged { version: 1, .. }]
    ));
    let actor = actor();

    for (version, reason) in [(2, "it is not applied"), (7, "it is not applied")] {
        let err = repair(
            &mut db.client(),
            &edited,
            &repair_options(&actor, Some(version)),
        )
        .expect_err("refused");
        assert!(
            err.to_string().contains(&format!(
                "cannot accept the checksum of version {version}: {reason}"
            )),
            "{err}"
        );
    }
    let err = repair(
        &mut db.client(),
        &original,
        &repair_options(&actor, Some(1)),
    )
    .expect_err("unchanged");
    assert!(err.to_string().contains("unchanged"), "{err}");

    let report =
        repair(&mut db.client(), &edited, &repair_options(&actor, Some(1))).expect("accepted");
    let accepted = report.accepted_checksum.expect("re-recorded");
    assert_eq!(
        accepted.checksum,
        edited.get(1).expect("V1").checksum().to_string()
    );
    assert_eq!(
        accepted.previous_checksum,
        original.get(1).expect("V1").checksum().to_string()
    );
    let st = status(&mut db.client(), &edited).expect("status");
    assert!(st.problems.is_empty(), "{:?}", st.problems);
    migrate_to(&mut db.client(), &edited, None).expect("migrate goes on");
    assert_eq!(applied_versions(&db), vec![1, 2]);
    let logged: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FROM ecomind_migration_events \
             WHERE direction = 'repair' AND version = 1 AND detail LIKE 'accepted the edited file%'",
            &[],
        )
        .expect("events")
        .get(0);
    assert_eq!(logged, 1);
}
