//! Waiting for a server to accept connections: the retry loop behind `wait`, next to the
//! connection it retries.

use std::time::{Duration, Instant};

use crate::{ConnectError, Server};

/// Why a server was not ready in time.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// It kept failing in a way that may pass (not up yet, not reachable) until the time ran out.
    #[error("{server} did not accept connections within {secs}s")]
    TimedOut {
        /// The server, described without secrets.
        server: String,
        /// How long we waited, in whole seconds as asked.
        secs: u64,
        /// The last attempt's error.
        #[source]
        last: ConnectError,
    },
    /// It answered but refused us (wrong password, unknown database, ...): waiting will not help.
    #[error("{server} answered but refused us")]
    Refused {
        /// The server, described without secrets.
        server: String,
        /// Why.
        #[source]
        error: ConnectError,
    },
}

/// How long a waiting caller sleeps between two attempts.
const RETRY_EVERY: Duration = Duration::from_millis(250);

impl Server {
    /// Polls until the server accepts a connection, or `timeout` passes; returns how long it
    /// took. No single attempt outlasts the time left (a black-holed host would otherwise hold
    /// one attempt for the whole `connect_timeout`, or forever when that is 0).
    /// `on_first_retry` is told once why the first attempt failed, so a caller can say what it
    /// is waiting for.
    pub fn wait_until_ready(
        &self,
        application_name: &str,
        timeout: Duration,
        on_first_retry: &mut dyn FnMut(&ConnectError),
    ) -> Result<Duration, WaitError> {
        let started = Instant::now();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let left = timeout
                .saturating_sub(started.elapsed())
                .max(Duration::from_millis(100));
            let mut attempt = self.clone();
            if attempt.connect_timeout.is_zero() || attempt.connect_timeout > left {
                attempt.connect_timeout = left;
            }
            match attempt.connect(application_name) {
                Ok(_) => return Ok(started.elapsed()),
                Err(e) if e.retryable() && started.elapsed() < timeout => {
                    if attempts == 1 {
                        on_first_retry(&e);
                    }
                    std::thread::sleep(RETRY_EVERY.min(timeout.saturating_sub(started.elapsed())));
                }
                Err(last) if last.retryable() => {
                    return Err(WaitError::TimedOut {
                        server: self.describe(),
                        secs: timeout.as_secs(),
                        last,
                    })
                }
                Err(error) => {
                    return Err(WaitError::Refused {
                        server: self.describe(),
                        error,
                    })
                }
            }
        }
    }
}
