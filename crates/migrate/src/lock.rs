//! The migration lock: a session-level advisory lock that one run holds from before it reads the
//! history until it is done, so two deploys can never migrate one database at once.

use std::time::{Duration, Instant};

use postgres::Client;

use crate::Error;

/// The advisory lock key: the first eight bytes of "ecomind-db" read as a big-endian integer.
/// Advisory locks are per database, so each database has its own migration lock.
pub(crate) const KEY: i64 = i64::from_be_bytes(*b"ecomind-");

/// Runs `work` holding the migration lock: the session is prepared, the lock taken (waiting at
/// most `wait`) and released afterwards, whatever `work` returned. The first error is the one
/// reported; if the connection broke, closing it releases the lock anyway.
pub(crate) fn holding<T>(
    client: &mut Client,
    wait: Duration,
    work: impl FnOnce(&mut Client) -> Result<T, Error>,
) -> Result<T, Error> {
    let server_version_num = crate::session::prepare(client)?;
    holding_prepared(client, server_version_num, wait, work)
}

/// As [`holding`], for a caller that has read the server's version and refused a standby.
pub(crate) fn holding_prepared<T>(
    client: &mut Client,
    server_version_num: i32,
    wait: Duration,
    work: impl FnOnce(&mut Client) -> Result<T, Error>,
) -> Result<T, Error> {
    acquire(client, server_version_num, wait)?;
    let result = work(client);
    let released = release(client);
    match (result, released) {
        // A release that fails after the work succeeded loses nothing: the connection is broken
        // or about to close, and closing it releases the lock. The report must not be lost.
        (Ok(value), _) => Ok(value),
        (Err(e), _) => Err(e),
    }
}

/// The statement that tries to take the lock (a waiting run sends it again every [`POLL`]).
pub(crate) fn take_sql() -> String {
    format!("SELECT pg_try_advisory_lock({KEY})")
}

/// The statement that releases the lock.
pub(crate) fn release_sql() -> String {
    format!("SELECT pg_advisory_unlock({KEY})")
}

/// How often a waiting run asks again.
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// Waits at most `wait` for the lock; on timeout names who holds it.
///
/// Waiting polls `pg_try_advisory_lock` instead of blocking in `pg_advisory_lock`: a session
/// blocked in a statement holds a snapshot, and `CREATE INDEX CONCURRENTLY` in the lock holder's
/// session waits for every older snapshot to go away. A blocked waiter and a concurrent index build
/// would deadlock, and the server would break the deadlock by cancelling the index build, leaving
/// an invalid index behind. Between polls a waiter is idle and holds no snapshot.
///
/// The first try goes with the session's connection check, in one round trip.
fn acquire(client: &mut Client, server_version_num: i32, wait: Duration) -> Result<(), Error> {
    // A wait too long for the clock (the configuration caps it far below) waits forever.
    let deadline = Instant::now().checked_add(wait);
    let mut sql = format!(
        "{}{}",
        crate::session::connection_check(server_version_num).unwrap_or_default(),
        take_sql()
    );
    loop {
        let messages = client
            .simple_query(&sql)
            .map_err(Error::db("cannot take the migration lock"))?;
        let taken = messages.iter().any(
            |m| matches!(m, postgres::SimpleQueryMessage::Row(row) if row.get(0) == Some("t")),
        );
        sql = take_sql();
        if taken {
            return Ok(());
        }
        let now = Instant::now();
        let left = deadline.map_or(POLL, |d| d.saturating_duration_since(now));
        if left.is_zero() {
            return Err(Error::LockTimeout {
                holder: holder(client),
                waited_secs: wait.as_secs(),
            });
        }
        std::thread::sleep(POLL.min(left));
    }
}

/// Releases the lock; closing the connection releases it too.
fn release(client: &mut Client) -> Result<(), Error> {
    client
        .simple_query(&release_sql())
        .map_err(Error::db("cannot release the migration lock"))?;
    Ok(())
}

/// Who holds the lock, from pg_locks and pg_stat_activity.
fn holder(client: &mut Client) -> String {
    let key = KEY as u64;
    let (classid, objid) = ((key >> 32) as i64, (key & 0xffff_ffff) as i64);
    let row = client.query_opt(
        "SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.usename::text, ''), \
                coalesce(a.client_addr::text, 'local socket'), \
                coalesce(to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ'), '') \
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.database = \
               (SELECT oid FROM pg_database WHERE datname = current_database()) \
           AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.objsubid = 1 \
         LIMIT 1",
        &[&classid, &objid],
    );
    match row {
        Ok(Some(r)) => format!(
            "pid {}, application_name '{}', user '{}', from {}, connected since {}",
            r.get::<_, i32>(0),
            r.get::<_, String>(1),
            r.get::<_, String>(2),
            r.get::<_, String>(3),
            r.get::<_, String>(4)
        ),
        Ok(None) => "its holder has just released it".to_owned(),
        Err(_) => "its holder is not visible to this user".to_owned(),
    }
}
