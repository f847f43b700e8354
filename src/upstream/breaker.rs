//! Per-peer circuit breaker, fed by real requests (the active health check is separate).
//!
//! ```text
//!   Closed --N consecutive failures--> Open --cooldown over, next selection--> HalfOpen
//!     ^                                  ^                                      |
//!     +----------- probe succeeds -------|-------------- probe fails -----------+
//! ```
//! While `Open` the peer is skipped by selection; in `HalfOpen` exactly one request (the probe)
//! is let through, and the peer stays skipped until the probe's outcome is known. A probe that
//! ends without a verdict (the client went away) hands the probe to the next request.

use crate::config::CircuitBreaker;
use crate::metrics::METRICS;
use parking_lot::Mutex;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
    const ALL: [State; 3] = [State::Closed, State::Open, State::HalfOpen];
}

/// Whether a request may go to the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: a normal request.
    Normal,
    /// The one request let through a half-open circuit.
    Probe,
    Refused,
}

#[derive(Debug)]
struct Inner {
    state: State,
    failures: u32,
    opened_at: Instant,
    probe_out: bool,
}

/// The state machine alone (time is passed in, so tests need no clock).
#[derive(Debug)]
pub struct Machine {
    cfg: CircuitBreaker,
    inner: Mutex<Inner>,
}

/// A state change, for the log line and the metrics.
pub type Transition = (State, State);

impl Machine {
    pub fn new(cfg: CircuitBreaker, now: Instant) -> Machine {
        Machine {
            cfg,
            inner: Mutex::new(Inner {
                state: State::Closed,
                failures: 0,
                opened_at: now,
                probe_out: false,
            }),
        }
    }

    pub fn state(&self) -> State {
        self.inner.lock().state
    }

    /// Asks to send a request now; may move Open -> HalfOpen (granting the probe).
    pub fn admit(&self, now: Instant) -> (Admission, Option<Transition>) {
        let mut s = self.inner.lock();
        match s.state {
            State::Closed => (Admission::Normal, None),
            State::Open if now.duration_since(s.opened_at) < self.cfg.cooldown => {
                (Admission::Refused, None)
            }
            State::Open => {
                s.state = State::HalfOpen;
                s.probe_out = true;
                (Admission::Probe, Some((State::Open, State::HalfOpen)))
            }
            State::HalfOpen if s.probe_out => (Admission::Refused, None),
            State::HalfOpen => {
                s.probe_out = true;
                (Admission::Probe, None)
            }
        }
    }

    /// The peer answered a whole response.
    pub fn success(&self, probe: bool) -> Option<Transition> {
        let mut s = self.inner.lock();
        match s.state {
            State::Closed => {
                s.failures = 0;
                None
            }
            State::HalfOpen if probe => {
                s.state = State::Closed;
                s.failures = 0;
                s.probe_out = false;
                Some((State::HalfOpen, State::Closed))
            }
            // A request admitted before the circuit opened: only the probe decides.
            _ => None,
        }
    }

    /// The peer failed a request (connect error, timeout, reset, invalid response).
    pub fn failure(&self, probe: bool, now: Instant) -> Option<Transition> {
        let mut s = self.inner.lock();
        match s.state {
            State::Closed => {
                s.failures = s.failures.saturating_add(1);
                if s.failures >= self.cfg.failures {
                    s.state = State::Open;
                    s.opened_at = now;
                    Some((State::Closed, State::Open))
                } else {
                    None
                }
            }
            State::HalfOpen if probe => {
                s.state = State::Open;
                s.opened_at = now;
                s.probe_out = false;
                Some((State::HalfOpen, State::Open))
            }
            _ => None,
        }
    }

    /// The probe ended without telling anything about the peer: the next request probes.
    pub fn abandon(&self, probe: bool) {
        let mut s = self.inner.lock();
        if probe && s.state == State::HalfOpen {
            s.probe_out = false;
        }
    }
}

/// A peer's breaker with its labels; publishes transitions (log line + metrics).
#[derive(Debug)]
pub struct Breaker {
    machine: Machine,
    upstream: String,
    peer: String,
}

impl Breaker {
    pub fn new(cfg: CircuitBreaker, upstream: &str, peer: &str) -> Breaker {
        let b = Breaker {
            machine: Machine::new(cfg, Instant::now()),
            upstream: upstream.to_string(),
            peer: peer.to_string(),
        };
        b.publish_state(State::Closed);
        b
    }

    pub fn state(&self) -> State {
        self.machine.state()
    }

    fn publish_state(&self, current: State) {
        for s in State::ALL {
            METRICS
                .circuit_state
                .with_label_values(&[&self.upstream, &self.peer, s.as_str()])
                .set(i64::from(s == current));
        }
    }

    fn transition(&self, t: Option<Transition>, why: &str) {
        let Some((from, to)) = t else { return };
        self.publish_state(to);
        METRICS
            .circuit_transitions
            .with_label_values(&[&self.upstream, &self.peer, to.as_str()])
            .inc();
        let level = if to == State::Open {
            log::Level::Warn
        } else {
            log::Level::Info
        };
        log::log!(
            level,
            "circuit breaker: upstream {} peer {}: {} -> {} ({why})",
            self.upstream,
            self.peer,
            from.as_str(),
            to.as_str()
        );
    }

    pub fn admit(&'static self) -> Option<Ticket> {
        let (a, t) = self.machine.admit(Instant::now());
        self.transition(t, "cooldown over: one probe request let through");
        match a {
            Admission::Refused => None,
            Admission::Normal => Some(Ticket {
                breaker: self,
                probe: false,
                done: false,
            }),
            Admission::Probe => Some(Ticket {
                breaker: self,
                probe: true,
                done: false,
            }),
        }
    }
}

/// One admitted request's obligation to report back. Dropped without a verdict: abandoned.
#[derive(Debug)]
pub struct Ticket {
    breaker: &'static Breaker,
    probe: bool,
    done: bool,
}

impl Ticket {
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    pub fn success(mut self) {
        self.done = true;
        let t = self.breaker.machine.success(self.probe);
        self.breaker.transition(t, "probe request succeeded");
    }

    pub fn failure(mut self, why: &str) {
        self.done = true;
        let t = self.breaker.machine.failure(self.probe, Instant::now());
        let why = if self.probe {
            format!("probe request failed: {why}")
        } else {
            format!(
                "{} consecutive failures, last: {why}",
                self.breaker.machine.cfg.failures
            )
        };
        self.breaker.transition(t, &why);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            self.breaker.machine.abandon(self.probe);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn machine(failures: u32) -> (Machine, Instant) {
        let now = Instant::now();
        let cfg = CircuitBreaker {
            failures,
            cooldown: Duration::from_secs(10),
        };
        (Machine::new(cfg, now), now)
    }

    #[test]
    fn opens_after_n_consecutive_failures_only() {
        let (m, t0) = machine(3);
        assert_eq!(m.failure(false, t0), None);
        assert_eq!(m.failure(false, t0), None);
        // A success in between resets the count.
        assert_eq!(m.success(false), None);
        assert_eq!(m.failure(false, t0), None);
        assert_eq!(m.failure(false, t0), None);
        assert_eq!(m.state(), State::Closed);
        assert_eq!(m.admit(t0).0, Admission::Normal);
        assert_eq!(m.failure(false, t0), Some((State::Closed, State::Open)));
        assert_eq!(m.state(), State::Open);
    }

    #[test]
    fn open_refuses_until_cooldown_then_exactly_one_probe() {
        let (m, t0) = machine(1);
        m.failure(false, t0);
        assert_eq!(m.admit(t0 + Duration::from_secs(9)).0, Admission::Refused);
        let later = t0 + Duration::from_secs(10);
        assert_eq!(
            m.admit(later),
            (Admission::Probe, Some((State::Open, State::HalfOpen)))
        );
        // The probe is out: everyone else is refused.
        for _ in 0..5 {
            assert_eq!(m.admit(later).0, Admission::Refused);
        }
        // Late results of requests admitted before opening decide nothing.
        assert_eq!(m.success(false), None);
        assert_eq!(m.failure(false, later), None);
        assert_eq!(m.state(), State::HalfOpen);
        assert_eq!(m.success(true), Some((State::HalfOpen, State::Closed)));
        assert_eq!(m.admit(later).0, Admission::Normal);
    }

    #[test]
    fn failed_probe_reopens_for_a_new_cooldown() {
        let (m, t0) = machine(2);
        m.failure(false, t0);
        m.failure(false, t0);
        let t1 = t0 + Duration::from_secs(11);
        assert_eq!(m.admit(t1).0, Admission::Probe);
        assert_eq!(m.failure(true, t1), Some((State::HalfOpen, State::Open)));
        // The cooldown counts from the failed probe.
        assert_eq!(m.admit(t1 + Duration::from_secs(5)).0, Admission::Refused);
        assert_eq!(m.admit(t1 + Duration::from_secs(10)).0, Admission::Probe);
    }

    #[test]
    fn abandoned_probe_passes_to_the_next_request() {
        let (m, t0) = machine(1);
        m.failure(false, t0);
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(m.admit(t1).0, Admission::Probe);
        assert_eq!(m.admit(t1).0, Admission::Refused);
        m.abandon(true);
        assert_eq!(m.admit(t1), (Admission::Probe, None));
        assert_eq!(m.admit(t1).0, Admission::Refused);
    }
}
