//! What `mlops up` does when a service exits, kept free of processes so it is tested with made-up
//! times: the restart policy (a delay doubling from one second to a cap, back to the start after
//! a run that lasted; a crash loop left stopped) and the lines that report it.
//! [`crate::stack::Stack::supervise`] applies both to the real processes.
//!
//! Every line is `supervisor: SERVICE EVENT key=value…`, then at most a note in parentheses:
//!
//! | event | keys | when |
//! |---|---|---|
//! | `exited` | `pid`, `code` or `signal`, `uptime` | the process ended, whatever the reason |
//! | `restarting` | `in`, `restart` (how many so far, 1 first) | a restart is due after the delay |
//! | `started` | `pid`, `restart` | the new process was spawned |
//! | `spawn_failed` | `restart` | it could not be spawned; counts as an exit |
//! | `gave_up` | `exits`, `window` | more exits within the window than restarts allowed |

use std::collections::VecDeque;
use std::fmt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// When to restart a service that exited, and when to stop trying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// The delay before the first restart; each further one doubles it.
    pub first_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
    /// A run at least this long puts the delay back to `first_delay`.
    pub reset_after: Duration,
    /// Restarts allowed within `window`; one more exit than that is a crash loop (0: never restart).
    pub max_restarts: u32,
    /// The span over which exits are counted.
    pub window: Duration,
}

impl Default for RestartPolicy {
    /// One second doubling to thirty; five restarts within two minutes. A service that crashes at
    /// once is given up after about 31 s of delays; one that runs half a minute between crashes
    /// is restarted after a second each time, for ever.
    fn default() -> Self {
        Self {
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            reset_after: Duration::from_secs(30),
            max_restarts: 5,
            window: Duration::from_secs(120),
        }
    }
}

/// What to do about a process that exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start it again after `after`; this is restart number `restart` of the service.
    Restart { after: Duration, restart: u32 },
    /// Leave it stopped: it exited `exits` times within the policy's window.
    GiveUp { exits: usize },
}

/// One service's restart history under a [`RestartPolicy`].
#[derive(Debug, Clone)]
pub struct Restarts {
    policy: RestartPolicy,
    next_delay: Duration,
    /// Exit times within the window, oldest first.
    exits: VecDeque<Instant>,
    total: u32,
}

impl Restarts {
    /// No exits yet.
    pub fn new(policy: RestartPolicy) -> Self {
        Self { policy, next_delay: policy.first_delay, exits: VecDeque::new(), total: 0 }
    }

    /// Records that the process started at `started` exited at `exited`, and decides.
    pub fn on_exit(&mut self, started: Instant, exited: Instant) -> Decision {
        if exited.saturating_duration_since(started) >= self.policy.reset_after {
            self.next_delay = self.policy.first_delay;
        }
        self.exits.push_back(exited);
        while self.exits.front().is_some_and(|first| exited.saturating_duration_since(*first) > self.policy.window) {
            self.exits.pop_front();
        }
        if self.exits.len() > self.policy.max_restarts as usize {
            return Decision::GiveUp { exits: self.exits.len() };
        }
        let after = self.next_delay;
        self.next_delay = after.saturating_mul(2).min(self.policy.max_delay);
        self.total += 1;
        Decision::Restart { after, restart: self.total }
    }

    /// How many restarts were decided so far.
    pub fn total(&self) -> u32 {
        self.total
    }
}

/// How a process ended: its exit code, or the signal that killed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The exit of `status`.
    pub fn of(status: ExitStatus) -> Self {
        #[cfg(unix)]
        if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&status) {
            return Self::Signal(signal);
        }
        // Neither a code nor a signal cannot happen on Unix; elsewhere say -1.
        Self::Code(status.code().unwrap_or(-1))
    }
}

/// The usual name of signal `n` on Linux, for the signals a service is likely to die of.
fn signal_name(n: i32) -> Option<&'static str> {
    Some(match n {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        _ => return None,
    })
}

/// Something the supervisor saw or did, printed as one line (the module's table).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Exited { service: String, pid: Option<u32>, exit: Exit, uptime: Duration },
    Restarting { service: String, after: Duration, restart: u32 },
    Started { service: String, pid: u32, restart: u32 },
    SpawnFailed { service: String, restart: u32, error: String },
    GaveUp { service: String, exits: usize, window: Duration, log: Option<PathBuf> },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited { service, pid, exit, uptime } => {
                write!(f, "supervisor: {service} exited")?;
                if let Some(pid) = pid {
                    write!(f, " pid={pid}")?;
                }
                match exit {
                    Exit::Code(code) => write!(f, " code={code}")?,
                    Exit::Signal(signal) => write!(f, " signal={signal}")?,
                }
                write!(f, " uptime={:.1}s", uptime.as_secs_f64())?;
                match exit {
                    Exit::Signal(signal) => write!(f, " (killed by {})", signal_name(*signal).unwrap_or("a signal")),
                    Exit::Code(0) => Ok(()),
                    Exit::Code(_) => write!(f, " (failed)"),
                }
            }
            Self::Restarting { service, after, restart } => {
                write!(f, "supervisor: {service} restarting in={}s restart={restart}", after.as_secs_f64())
            }
            Self::Started { service, pid, restart } => {
                write!(f, "supervisor: {service} started pid={pid} restart={restart}")
            }
            Self::SpawnFailed { service, restart, error } => {
                write!(f, "supervisor: {service} spawn_failed restart={restart} ({error})")
            }
            Self::GaveUp { service, exits, window, log } => {
                write!(
                    f,
                    "supervisor: {service} gave_up exits={exits} window={}s (it keeps exiting, so it is left stopped",
                    window.as_secs()
                )?;
                if let Some(log) = log {
                    write!(f, "; its log is {}", log.display())?;
                }
                write!(f, "; the other services keep running)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    /// The decisions for processes that each ran `uptime` and were restarted as decided.
    fn decisions(policy: RestartPolicy, uptimes: &[Duration]) -> Vec<Decision> {
        let mut restarts = Restarts::new(policy);
        let mut started = Instant::now();
        let mut out = Vec::new();
        for uptime in uptimes {
            let exited = started + *uptime;
            let decision = restarts.on_exit(started, exited);
            out.push(decision);
            if let Decision::Restart { after, .. } = decision {
                started = exited + after;
            }
        }
        out
    }

    fn restart(secs: u32, restart: u32) -> Decision {
        Decision::Restart { after: secs * S, restart }
    }

    #[test]
    fn delays_double_to_the_cap() {
        let policy = RestartPolicy { max_restarts: 100, window: 1000 * S, ..RestartPolicy::default() };
        let got = decisions(policy, &[Duration::ZERO; 7]);
        let want = [restart(1, 1), restart(2, 2), restart(4, 3), restart(8, 4), restart(16, 5), restart(30, 6)];
        assert_eq!(got[..6], want);
        assert_eq!(got[6], restart(30, 7), "stays at the cap");
    }

    #[test]
    fn a_run_that_lasted_resets_the_delay() {
        let policy = RestartPolicy { max_restarts: 100, window: 1000 * S, ..RestartPolicy::default() };
        let got = decisions(policy, &[Duration::ZERO, Duration::ZERO, Duration::ZERO, 30 * S, Duration::ZERO]);
        assert_eq!(got, [restart(1, 1), restart(2, 2), restart(4, 3), restart(1, 4), restart(2, 5)]);
        // Just short of reset_after is not long enough.
        let got = decisions(policy, &[Duration::ZERO, 29 * S]);
        assert_eq!(got, [restart(1, 1), restart(2, 2)]);
    }

    #[test]
    fn a_crash_loop_is_given_up_after_max_restarts_within_the_window() {
        let policy = RestartPolicy::default();
        let got = decisions(policy, &[Duration::ZERO; 6]);
        assert_eq!(got[..5], [restart(1, 1), restart(2, 2), restart(4, 3), restart(8, 4), restart(16, 5)]);
        assert_eq!(got[5], Decision::GiveUp { exits: 6 });
    }

    #[test]
    fn exits_older_than_the_window_no_longer_count() {
        // Two restarts allowed a minute; a service that dies every 40 s is restarted for ever.
        let policy = RestartPolicy { max_restarts: 2, window: 60 * S, ..RestartPolicy::default() };
        let got = decisions(policy, &[40 * S; 20]);
        assert!(got.iter().all(|d| matches!(d, Decision::Restart { after, .. } if *after == S)), "{got:?}");
        // One that dies every 10 s is not.
        let got = decisions(policy, &[10 * S; 3]);
        assert_eq!(got, [restart(1, 1), restart(2, 2), Decision::GiveUp { exits: 3 }]);
    }

    #[test]
    fn zero_restarts_means_never_restart() {
        let policy = RestartPolicy { max_restarts: 0, ..RestartPolicy::default() };
        assert_eq!(decisions(policy, &[3600 * S]), [Decision::GiveUp { exits: 1 }]);
    }

    #[test]
    fn lines_start_with_the_service_and_the_event_then_key_values() {
        let service = "deployer".to_owned();
        let lines = [
            Event::Exited { service: service.clone(), pid: Some(42), exit: Exit::Signal(9), uptime: 1500 * S / 1000 },
            Event::Exited { service: service.clone(), pid: None, exit: Exit::Code(1), uptime: Duration::ZERO },
            Event::Restarting { service: service.clone(), after: 2 * S, restart: 2 },
            Event::Started { service: service.clone(), pid: 43, restart: 2 },
            Event::SpawnFailed { service: service.clone(), restart: 3, error: "no such file".into() },
            Event::GaveUp { service, exits: 6, window: 120 * S, log: Some("logs/deployer.log".into()) },
        ]
        .map(|e| e.to_string());
        assert_eq!(
            lines,
            [
                "supervisor: deployer exited pid=42 signal=9 uptime=1.5s (killed by SIGKILL)",
                "supervisor: deployer exited code=1 uptime=0.0s (failed)",
                "supervisor: deployer restarting in=2s restart=2",
                "supervisor: deployer started pid=43 restart=2",
                "supervisor: deployer spawn_failed restart=3 (no such file)",
                "supervisor: deployer gave_up exits=6 window=120s (it keeps exiting, so it is left stopped; \
                 its log is logs/deployer.log; the other services keep running)",
            ]
        );
    }

    #[cfg(unix)]
    #[test]
    fn exits_are_read_from_real_statuses() {
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(Exit::of(ExitStatus::from_raw(9)), Exit::Signal(9));
        assert_eq!(Exit::of(ExitStatus::from_raw(3 << 8)), Exit::Code(3));
    }
}
