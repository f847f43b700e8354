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
//!
//! What counts as evidence that the peer is down: a failed connect counts every time (it says
//! nothing about any URL), but a failure after connecting (reset, garbage, timeout) counts once
//! per URL in a run of failures. An origin that mishandles one URL then fails that URL, not the
//! whole peer, however often it is asked for; five different URLs failing in a row still open the
//! circuit. When every peer of a pool is open, selection lets requests through anyway
//! ([`Breaker::force`]): a success through an open circuit closes it.

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
    /// Let through an open circuit because every peer of the pool is open.
    Forced,
    Refused,
}

/// What a failure says about the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// The peer could not be reached (connect, TLS handshake): counts every time.
    Unreachable,
    /// The peer was reached but failed the response for the URL with this hash: counts once
    /// per URL in a run of consecutive failures.
    Response(u64),
}

#[derive(Debug)]
struct Inner {
    state: State,
    failures: u32,
    /// URLs already counted in the current run of failures (at most `failures` entries).
    failed_urls: Vec<u64>,
    opened_at: Instant,
    probe_out: bool,
}

impl Inner {
    fn close(&mut self) {
        self.state = State::Closed;
        self.failures = 0;
        self.failed_urls.clear();
        self.probe_out = false;
    }

    fn open(&mut self, now: Instant) {
        self.state = State::Open;
        self.opened_at = now;
        self.failures = 0;
        self.failed_urls.clear();
        self.probe_out = false;
    }
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
                failed_urls: Vec::new(),
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
    pub fn success(&self, admission: Admission) -> Option<Transition> {
        let mut s = self.inner.lock();
        match (s.state, admission) {
            (State::Closed, _) => {
                s.failures = 0;
                s.failed_urls.clear();
                None
            }
            // The probe, or a request let through because every circuit was open: either way
            // the peer works.
            (from @ State::HalfOpen, Admission::Probe) | (from, Admission::Forced) => {
                s.close();
                Some((from, State::Closed))
            }
            // A request admitted before the circuit opened: only the probe decides.
            _ => None,
        }
    }

    /// The peer failed a request (connect error, timeout, reset, invalid response).
    pub fn failure(
        &self,
        admission: Admission,
        evidence: Evidence,
        now: Instant,
    ) -> Option<Transition> {
        let mut s = self.inner.lock();
        match s.state {
            State::Closed => {
                if let Evidence::Response(url) = evidence {
                    // The same URL failing again says nothing new about the peer.
                    if s.failed_urls.contains(&url) {
                        return None;
                    }
                    s.failed_urls.push(url);
                }
                s.failures = s.failures.saturating_add(1);
                if s.failures >= self.cfg.failures {
                    s.open(now);
                    Some((State::Closed, State::Open))
                } else {
                    None
                }
            }
            State::HalfOpen if admission == Admission::Probe => {
                s.open(now);
                Some((State::HalfOpen, State::Open))
            }
            _ => None,
        }
    }

    /// The probe ended without telling anything about the peer: the next request probes.
    pub fn abandon(&self, admission: Admission) {
        let mut s = self.inner.lock();
        if admission == Admission::Probe && s.state == State::HalfOpen {
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
        (a != Admission::Refused).then_some(Ticket {
            breaker: self,
            admission: a,
            done: false,
        })
    }

    /// Lets a request through whatever the state: every peer of the pool is refused, and a
    /// pool never refuses every request only because of its breakers.
    pub fn force(&'static self) -> Ticket {
        Ticket {
            breaker: self,
            admission: if self.state() == State::Closed {
                Admission::Normal
            } else {
                Admission::Forced
            },
            done: false,
        }
    }
}

/// One admitted request's obligation to report back. Dropped without a verdict: abandoned.
#[derive(Debug)]
pub struct Ticket {
    breaker: &'static Breaker,
    admission: Admission,
    done: bool,
}

impl Ticket {
    pub fn is_probe(&self) -> bool {
        self.admission == Admission::Probe
    }

    /// Let through an open circuit because every peer of the pool was open.
    pub fn is_forced(&self) -> bool {
        self.admission == Admission::Forced
    }

    pub fn success(mut self) {
        self.done = true;
        let t = self.breaker.machine.success(self.admission);
        let why = match self.admission {
            Admission::Forced => "a request let through while every peer was open succeeded",
            _ => "probe request succeeded",
        };
        self.breaker.transition(t, why);
    }

    pub fn failure(mut self, why: &str, evidence: Evidence) {
        self.done = true;
        let t = self
            .breaker
            .machine
            .failure(self.admission, evidence, Instant::now());
        let why = if self.is_probe() {
            format!("probe request failed: {why}")
        } else {
            format!(
                "{} consecutive failures (failed connects, or failed responses to as many \
                 different URLs), last: {why}",
                self.breaker.machine.cfg.failures
            )
        };
        self.breaker.transition(t, &why);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            self.breaker.machine.abandon(self.admission);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const N: Admission = Admission::Normal;
    const P: Admission = Admission::Probe;
    const DOWN: Evidence = Evidence::Unreachable;

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
        assert_eq!(m.failure(N, DOWN, t0), None);
        assert_eq!(m.failure(N, DOWN, t0), None);
        // A success in between resets the count.
        assert_eq!(m.success(N), None);
        assert_eq!(m.failure(N, DOWN, t0), None);
        assert_eq!(m.failure(N, DOWN, t0), None);
        assert_eq!(m.state(), State::Closed);
        assert_eq!(m.admit(t0).0, Admission::Normal);
        assert_eq!(m.failure(N, DOWN, t0), Some((State::Closed, State::Open)));
        assert_eq!(m.state(), State::Open);
    }

    #[test]
    fn open_refuses_until_cooldown_then_exactly_one_probe() {
        let (m, t0) = machine(1);
        m.failure(N, DOWN, t0);
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
        assert_eq!(m.success(N), None);
        assert_eq!(m.failure(N, DOWN, later), None);
        assert_eq!(m.state(), State::HalfOpen);
        assert_eq!(m.success(P), Some((State::HalfOpen, State::Closed)));
        assert_eq!(m.admit(later).0, Admission::Normal);
    }

    #[test]
    fn failed_probe_reopens_for_a_new_cooldown() {
        let (m, t0) = machine(2);
        m.failure(N, DOWN, t0);
        m.failure(N, DOWN, t0);
        let t1 = t0 + Duration::from_secs(11);
        assert_eq!(m.admit(t1).0, Admission::Probe);
        assert_eq!(m.failure(P, DOWN, t1), Some((State::HalfOpen, State::Open)));
        // The cooldown counts from the failed probe.
        assert_eq!(m.admit(t1 + Duration::from_secs(5)).0, Admission::Refused);
        assert_eq!(m.admit(t1 + Duration::from_secs(10)).0, Admission::Probe);
    }

    #[test]
    fn abandoned_probe_passes_to_the_next_request() {
        let (m, t0) = machine(1);
        m.failure(N, DOWN, t0);
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(m.admit(t1).0, Admission::Probe);
        assert_eq!(m.admit(t1).0, Admission::Refused);
        m.abandon(P);
        assert_eq!(m.admit(t1), (Admission::Probe, None));
        assert_eq!(m.admit(t1).0, Admission::Refused);
    }

    #[test]
    fn one_url_failing_again_and_again_counts_once() {
        let (m, t0) = machine(3);
        for _ in 0..50 {
            assert_eq!(m.failure(N, Evidence::Response(7), t0), None);
        }
        assert_eq!(m.state(), State::Closed);
        // Different URLs failing in a row are evidence about the peer.
        assert_eq!(m.failure(N, Evidence::Response(8), t0), None);
        assert_eq!(
            m.failure(N, Evidence::Response(9), t0),
            Some((State::Closed, State::Open))
        );
    }

    #[test]
    fn failed_connects_count_every_time_and_mix_with_urls() {
        let (m, t0) = machine(3);
        assert_eq!(m.failure(N, Evidence::Response(7), t0), None);
        assert_eq!(m.failure(N, Evidence::Response(7), t0), None);
        assert_eq!(m.failure(N, DOWN, t0), None);
        assert_eq!(m.failure(N, DOWN, t0), Some((State::Closed, State::Open)));
        // A success clears the run, URLs included.
        let (m, t0) = machine(2);
        assert_eq!(m.failure(N, Evidence::Response(7), t0), None);
        assert_eq!(m.success(N), None);
        assert_eq!(m.failure(N, Evidence::Response(7), t0), None);
        assert_eq!(m.state(), State::Closed);
    }

    #[test]
    fn a_forced_request_that_succeeds_closes_an_open_circuit() {
        let (m, t0) = machine(1);
        m.failure(N, DOWN, t0);
        assert_eq!(m.admit(t0).0, Admission::Refused);
        // Failing through the open circuit changes nothing (no new cooldown either).
        assert_eq!(m.failure(Admission::Forced, DOWN, t0), None);
        assert_eq!(m.state(), State::Open);
        assert_eq!(
            m.success(Admission::Forced),
            Some((State::Open, State::Closed))
        );
        assert_eq!(m.admit(t0).0, Admission::Normal);
        // Half-open with the probe out: a forced success closes it too, and the probe's late
        // verdict is an ordinary one.
        m.failure(N, DOWN, t0);
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(m.admit(t1).0, Admission::Probe);
        assert_eq!(
            m.success(Admission::Forced),
            Some((State::HalfOpen, State::Closed))
        );
        assert_eq!(m.success(P), None);
        assert_eq!(m.state(), State::Closed);
    }
}
