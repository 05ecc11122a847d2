//! Ctrl-C and SIGTERM while a database command runs (a deploy job cancelled, a pod evicted):
//! the first signal asks PostgreSQL to cancel the running statement and lets the engine roll
//! back, record the attempt as interrupted and release the lock, for a bounded time; a second
//! signal, or that time running out, exits at once. The exit code is 128 + the signal's number
//! (130 for SIGINT, 143 for SIGTERM), as a shell reports a process killed by it.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicI32, Ordering},
        Arc, Condvar, Mutex, OnceLock,
    },
    thread,
    time::Duration,
};

use signal_hook::{
    consts::{SIGINT, SIGTERM},
    iterator::Signals,
};

/// How long the engine gets, after the cancel request, to roll back and release the lock.
const ROLLBACK_WAIT: Duration = Duration::from_secs(5);

type Cancel = Box<dyn Fn() + Send>;

/// Set once the handlers are installed.
static STATE: OnceLock<Interrupt> = OnceLock::new();

/// The number of the first signal received, if the handlers are installed and one arrived.
pub fn received() -> Option<u8> {
    STATE
        .get()
        .and_then(Interrupt::exit_code)
        .and_then(|code| u8::try_from(code - 128).ok())
}

/// The process-wide interrupt state.
pub struct Interrupt {
    /// The first signal received, 0 while none.
    signal: AtomicI32,
    /// Set with the first signal; the engine polls it between statements and migrations.
    requested: Arc<AtomicBool>,
    /// Sends PostgreSQL a cancel request for the running statement.
    cancel: Mutex<Option<Cancel>>,
    /// Set when the command has finished cleaning up.
    finished: (Mutex<bool>, Condvar),
}

impl Interrupt {
    /// Installs the handlers once (later calls return the same state). Until then SIGINT and
    /// SIGTERM keep their default action.
    pub fn install() -> &'static Interrupt {
        let mut fresh = false;
        let state = STATE.get_or_init(|| {
            fresh = true;
            Interrupt {
                signal: AtomicI32::new(0),
                requested: Arc::new(AtomicBool::new(false)),
                cancel: Mutex::new(None),
                finished: (Mutex::new(false), Condvar::new()),
            }
        });
        if fresh {
            match Signals::new([SIGINT, SIGTERM]) {
                Ok(mut signals) => {
                    let spawned = thread::Builder::new()
                        .name("ecomind-db-signals".to_owned())
                        .spawn(move || {
                            for signal in signals.forever() {
                                state.on_signal(signal);
                            }
                        });
                    if let Err(err) = spawned {
                        eprintln!("warning: cannot watch for Ctrl-C and SIGTERM: {err}");
                    }
                }
                Err(err) => eprintln!("warning: cannot watch for Ctrl-C and SIGTERM: {err}"),
            }
        }
        state
    }

    /// The flag the engine polls: true once a signal arrived.
    pub fn flag(&self) -> &AtomicBool {
        &self.requested
    }

    /// Sets what cancels the running statement (replacing any earlier one).
    pub fn on_cancel(&self, cancel: impl Fn() + Send + 'static) {
        if let Ok(mut slot) = self.cancel.lock() {
            *slot = Some(Box::new(cancel));
        }
    }

    /// The exit code for the signal received, if one was: 130 for SIGINT, 143 for SIGTERM.
    pub fn exit_code(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            signal => Some(128 + signal),
        }
    }

    /// The name of the signal received, if one was.
    pub fn signal_name(&self) -> Option<&'static str> {
        match self.signal.load(Ordering::SeqCst) {
            SIGINT => Some("SIGINT"),
            SIGTERM => Some("SIGTERM"),
            _ => None,
        }
    }

    /// Tells the signal thread that the command has cleaned up, so it need not exit for it.
    pub fn finished(&self) {
        let (done, wake) = &self.finished;
        if let Ok(mut done) = done.lock() {
            *done = true;
            wake.notify_all();
        }
    }

    fn on_signal(&'static self, signal: i32) {
        if self
            .signal
            .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            eprintln!("second interrupt: exiting at once");
            std::process::exit(self.exit_code().unwrap_or(128 + signal));
        }
        self.requested.store(true, Ordering::SeqCst);
        let name = self.signal_name().unwrap_or("signal");
        eprintln!(
            "{name} received: cancelling the running statement and rolling back (up to {}s); interrupt again to exit at once",
            ROLLBACK_WAIT.as_secs()
        );
        if let Ok(cancel) = self.cancel.lock() {
            if let Some(cancel) = cancel.as_ref() {
                cancel();
            }
        }
        // Bounded wait for the command to roll back and release its lock.
        let (done, wake) = &self.finished;
        let Ok(guard) = done.lock() else { return };
        let (guard, _) = wake
            .wait_timeout_while(guard, ROLLBACK_WAIT, |done| !*done)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !*guard {
            eprintln!(
                "the rollback did not finish within {}s: exiting; the server rolls back what was not committed when the connection closes",
                ROLLBACK_WAIT.as_secs()
            );
            std::process::exit(self.exit_code().unwrap_or(128 + signal));
        }
    }
}
