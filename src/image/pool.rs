//! Bounded CPU pool on dedicated OS threads (not tokio workers), and the memory budget its
//! jobs reserve from.
//!
//! Capacity = `workers + queue` jobs. A request first takes a [`Permit`] with
//! [`TransformPool::try_reserve`] (refuse with 503 when `None`, before contacting the origin),
//! holds it while fetching the source, then hands it to [`TransformPool::run`] /
//! [`TransformPool::run_blocking`]; the slot is released when the job has finished (or when an
//! unused permit is dropped). Since every job carries a permit, the queue can never overflow.
//!
//! [`MemoryBudget`]: before a job is queued it reserves its estimated peak bytes; a reservation
//! that does not fit waits (first come, first served) until running jobs end.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::image::error::{BudgetError, PoolError};

/// A job's progress, shared by the job and whoever waits for it (see `run_blocking_timeout`).
const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
/// The waiter gave up before a worker took the job: it is skipped.
const ABANDONED: u8 = 2;

type Job = Box<dyn FnOnce() + Send + 'static>;

struct Inner {
    capacity: usize,
    reserved: AtomicUsize,
    queued: AtomicUsize,
    running: AtomicUsize,
}

/// A reserved slot in the pool; dropping it releases the slot.
pub struct Permit {
    inner: Arc<Inner>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.inner.reserved.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Permit")
    }
}

pub struct TransformPool {
    inner: Arc<Inner>,
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

impl TransformPool {
    /// Starts `workers` threads (at least 1) named `imgedge-transform-N`; `queue` jobs may wait.
    pub fn new(workers: usize, queue: usize) -> TransformPool {
        let workers = workers.max(1);
        let inner = Arc::new(Inner {
            capacity: workers + queue,
            reserved: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
        });
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = (0..workers)
            .filter_map(|n| {
                let rx = Arc::clone(&rx);
                let inner = Arc::clone(&inner);
                thread::Builder::new()
                    .name(format!("imgedge-transform-{n}"))
                    .spawn(move || loop {
                        let job = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        inner.queued.fetch_sub(1, Ordering::AcqRel);
                        inner.running.fetch_add(1, Ordering::AcqRel);
                        job(); // panics are caught inside the job
                        inner.running.fetch_sub(1, Ordering::AcqRel);
                    })
                    .ok()
            })
            .collect();
        TransformPool {
            inner,
            tx: Mutex::new(Some(tx)),
            threads,
        }
    }

    /// Reserves a slot, or `None` when `workers + queue` slots are taken.
    pub fn try_reserve(&self) -> Option<Permit> {
        let cap = self.inner.capacity;
        self.inner
            .reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .ok()
            .map(|_| Permit {
                inner: Arc::clone(&self.inner),
            })
    }

    /// Jobs submitted and not yet started.
    pub fn queue_depth(&self) -> usize {
        self.inner.queued.load(Ordering::Acquire)
    }
    /// Jobs running now.
    pub fn in_flight(&self) -> usize {
        self.inner.running.load(Ordering::Acquire)
    }
    /// Slots held by permits (reserved, queued or running).
    pub fn reserved(&self) -> usize {
        self.inner.reserved.load(Ordering::Acquire)
    }
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    fn submit<F, T>(
        &self,
        permit: Permit,
        f: F,
        state: Arc<AtomicU8>,
        done: impl FnOnce(Result<T, PoolError>) + Send + 'static,
    ) -> Result<(), PoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let job: Job = Box::new(move || {
            let start =
                state.compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Acquire);
            if start.is_err() {
                // Nobody waits for it any more: free its slot (and whatever `f` holds) unrun.
                drop(permit);
                return;
            }
            let r = catch_unwind(AssertUnwindSafe(f))
                .map_err(|p| PoolError::Panicked(panic_message(p)));
            drop(permit); // free the slot before waking the waiter
            done(r);
        });
        let guard = self.tx.lock().map_err(|_| PoolError::Shutdown)?;
        let tx = guard.as_ref().ok_or(PoolError::Shutdown)?;
        self.inner.queued.fetch_add(1, Ordering::AcqRel);
        tx.send(job).map_err(|_| {
            self.inner.queued.fetch_sub(1, Ordering::AcqRel);
            PoolError::Shutdown
        })
    }

    /// Runs `f` on a pool thread and awaits its result. A panic in `f` becomes
    /// `PoolError::Panicked`. If the future is dropped, the job still runs to completion and
    /// keeps its slot until then.
    pub async fn run<F, T>(&self, permit: Permit, f: F) -> Result<T, PoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let state = Arc::new(AtomicU8::new(QUEUED));
        self.submit(permit, f, state, move |r| {
            let _ = tx.send(r);
        })?;
        rx.await.map_err(|_| PoolError::Shutdown)?
    }

    /// Blocking variant for synchronous callers (inside tokio wrap it in
    /// `tokio::task::block_in_place`).
    pub fn run_blocking<F, T>(&self, permit: Permit, f: F) -> Result<T, PoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let state = Arc::new(AtomicU8::new(QUEUED));
        self.submit_sync(permit, f, state)?
            .recv()
            .map_err(|_| PoolError::Shutdown)?
    }

    /// Like [`Self::run_blocking`], giving up waiting after `timeout` (queue wait included).
    /// A job still queued then is skipped (`PoolError::Expired`: it never ran). A running job
    /// cannot be interrupted (`PoolError::TimedOut`): it runs on and keeps its slot until it
    /// ends, so the pool never holds more than its capacity.
    pub fn run_blocking_timeout<F, T>(
        &self,
        permit: Permit,
        f: F,
        timeout: Duration,
    ) -> Result<T, PoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let state = Arc::new(AtomicU8::new(QUEUED));
        let rx = self.submit_sync(permit, f, Arc::clone(&state))?;
        match rx.recv_timeout(timeout) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let abandon =
                    state.compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire);
                match abandon {
                    Ok(_) => Err(PoolError::Expired(timeout)),
                    // It may have finished just now.
                    Err(_) => rx.try_recv().unwrap_or(Err(PoolError::TimedOut(timeout))),
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(PoolError::Shutdown),
        }
    }

    /// Queues `f`; its result arrives on the returned channel.
    #[allow(clippy::type_complexity)]
    fn submit_sync<F, T>(
        &self,
        permit: Permit,
        f: F,
        state: Arc<AtomicU8>,
    ) -> Result<mpsc::Receiver<Result<T, PoolError>>, PoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(permit, f, state, move |r| {
            let _ = tx.send(r);
        })?;
        Ok(rx)
    }
}

impl Drop for TransformPool {
    /// Stops accepting jobs; workers finish the queued ones and exit (not joined).
    fn drop(&mut self) {
        if let Ok(mut g) = self.tx.lock() {
            g.take();
        }
        self.threads.clear();
    }
}

/// Bytes that transforms in flight may hold together (`transform.max_memory_bytes`).
pub struct MemoryBudget {
    inner: Arc<Budget>,
}

struct Budget {
    limit: u64,
    state: Mutex<BudgetState>,
    changed: Condvar,
}

#[derive(Default)]
struct BudgetState {
    reserved: u64,
    /// Tickets of the reservations waiting, oldest first: only the oldest may take what is freed,
    /// so a large job is not starved by a stream of small ones.
    waiting: VecDeque<u64>,
    next_ticket: u64,
}

/// Bytes reserved from a [`MemoryBudget`]; dropping it gives them back.
pub struct MemoryGrant {
    inner: Arc<Budget>,
    bytes: u64,
    /// Whether the reservation had to wait for others to end.
    pub waited: bool,
}

impl Drop for MemoryGrant {
    fn drop(&mut self) {
        let mut s = self.inner.lock();
        s.reserved = s.reserved.saturating_sub(self.bytes);
        drop(s);
        self.inner.changed.notify_all();
    }
}

impl std::fmt::Debug for MemoryGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemoryGrant({} bytes)", self.bytes)
    }
}

impl Budget {
    /// The state; a panic elsewhere while it was held leaves plain numbers, still usable.
    fn lock(&self) -> std::sync::MutexGuard<'_, BudgetState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl MemoryBudget {
    pub fn new(limit: u64) -> MemoryBudget {
        MemoryBudget {
            inner: Arc::new(Budget {
                limit,
                state: Mutex::new(BudgetState::default()),
                changed: Condvar::new(),
            }),
        }
    }

    /// Reserves `bytes`, waiting up to `timeout` for running jobs to give theirs back (behind
    /// the reservations already waiting). Blocks the calling thread. `NeverFits` at once when
    /// `bytes` is above the whole budget.
    pub fn reserve(&self, bytes: u64, timeout: Duration) -> Result<MemoryGrant, BudgetError> {
        let b = &self.inner;
        if bytes > b.limit {
            return Err(BudgetError::NeverFits {
                need: bytes,
                limit: b.limit,
            });
        }
        let grant = |waited| MemoryGrant {
            inner: Arc::clone(b),
            bytes,
            waited,
        };
        let mut s = b.lock();
        if s.waiting.is_empty() && s.reserved + bytes <= b.limit {
            s.reserved += bytes;
            return Ok(grant(false));
        }
        let ticket = s.next_ticket;
        s.next_ticket += 1;
        s.waiting.push_back(ticket);
        let deadline = Instant::now() + timeout;
        loop {
            if s.waiting.front() == Some(&ticket) && s.reserved + bytes <= b.limit {
                s.waiting.pop_front();
                s.reserved += bytes;
                drop(s);
                // The next in line may fit in what is left.
                b.changed.notify_all();
                return Ok(grant(true));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                s.waiting.retain(|t| *t != ticket);
                drop(s);
                b.changed.notify_all();
                return Err(BudgetError::Busy {
                    need: bytes,
                    waited: timeout,
                });
            }
            s = b
                .changed
                .wait_timeout(s, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// Bytes reserved now.
    pub fn reserved(&self) -> u64 {
        self.inner.lock().reserved
    }

    /// Reservations waiting now.
    pub fn waiting(&self) -> usize {
        self.inner.lock().waiting.len()
    }

    pub fn limit(&self) -> u64 {
        self.inner.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn capacity_refusal_and_release() {
        let pool = TransformPool::new(1, 1);
        let a = pool.try_reserve().expect("first");
        let b = pool.try_reserve().expect("second");
        assert!(pool.try_reserve().is_none(), "workers + queue = 2 slots");
        assert_eq!(pool.reserved(), 2);
        drop(a);
        let c = pool.try_reserve().expect("slot released by drop");
        assert!(pool.try_reserve().is_none());
        assert_eq!(pool.run_blocking(b, || 40 + 2), Ok(42));
        assert_eq!(pool.run_blocking(c, || "x"), Ok("x"));
        assert_eq!(pool.reserved(), 0);
    }

    #[test]
    fn panics_become_errors_and_pool_survives() {
        let pool = TransformPool::new(1, 0);
        let r: Result<(), _> = pool.run_blocking(pool.try_reserve().unwrap(), || panic!("boom"));
        assert_eq!(r, Err(PoolError::Panicked("boom".into())));
        assert_eq!(pool.run_blocking(pool.try_reserve().unwrap(), || 1), Ok(1));
    }

    #[test]
    fn timeout_gives_up_waiting_but_keeps_the_slot_until_the_job_ends() {
        let pool = TransformPool::new(1, 0);
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let r = pool.run_blocking_timeout(
            pool.try_reserve().unwrap(),
            move || gate_rx.recv().ok(),
            Duration::from_millis(20),
        );
        assert_eq!(r, Err(PoolError::TimedOut(Duration::from_millis(20))));
        // Still running: its slot is not handed out again.
        assert!(pool.try_reserve().is_none());
        gate_tx.send(()).unwrap();
        let mut permit = None;
        for _ in 0..500 {
            permit = pool.try_reserve();
            if permit.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let permit = permit.expect("slot released when the job ended");
        assert_eq!(
            pool.run_blocking_timeout(permit, || 7, Duration::from_secs(5)),
            Ok(7)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_run_and_metrics() {
        let pool = Arc::new(TransformPool::new(1, 2));
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let p1 = pool.try_reserve().unwrap();
        let p2 = pool.try_reserve().unwrap();
        let pool2 = Arc::clone(&pool);
        let first = tokio::spawn(async move {
            pool2
                .run(p1, move || {
                    gate_rx.recv().ok();
                    1
                })
                .await
        });
        let pool3 = Arc::clone(&pool);
        let second = tokio::spawn(async move { pool3.run(p2, || 2).await });
        // Up to 10 s: under a loaded machine the spawned tasks can take a while to queue.
        for _ in 0..2000 {
            if pool.in_flight() == 1 && pool.queue_depth() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!((pool.in_flight(), pool.queue_depth()), (1, 1));
        let _p3 = pool.try_reserve().unwrap();
        assert!(pool.try_reserve().is_none());
        gate_tx.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Ok(1));
        assert_eq!(second.await.unwrap(), Ok(2));
    }

    #[test]
    fn a_job_still_queued_at_its_timeout_is_skipped() {
        let pool = TransformPool::new(1, 1);
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let blocker = pool.try_reserve().unwrap();
        let (done_tx, done_rx) = mpsc::channel();
        let busy = std::thread::scope(|s| {
            s.spawn(|| {
                let _ = pool.run_blocking(blocker, move || gate_rx.recv().ok());
                done_tx.send(()).unwrap();
            });
            for _ in 0..500 {
                if pool.in_flight() == 1 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let ran = Arc::new(AtomicU8::new(0));
            let ran2 = Arc::clone(&ran);
            let r = pool.run_blocking_timeout(
                pool.try_reserve().unwrap(),
                move || ran2.store(1, Ordering::Release),
                Duration::from_millis(20),
            );
            gate_tx.send(()).unwrap();
            done_rx.recv().unwrap();
            (r, ran)
        });
        assert_eq!(busy.0, Err(PoolError::Expired(Duration::from_millis(20))));
        // The skipped job gives its slot back without running.
        let mut free = false;
        for _ in 0..500 {
            if pool.reserved() == 0 {
                free = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(free, "slots released");
        assert_eq!(busy.1.load(Ordering::Acquire), 0, "the job never ran");
    }

    #[test]
    fn memory_budget_refuses_waits_and_serves_in_order() {
        let budget = Arc::new(MemoryBudget::new(100));
        assert_eq!(
            budget.reserve(101, Duration::ZERO).unwrap_err(),
            BudgetError::NeverFits {
                need: 101,
                limit: 100
            }
        );
        let a = budget.reserve(60, Duration::ZERO).unwrap();
        assert!(!a.waited);
        assert_eq!(budget.reserved(), 60);
        assert!(matches!(
            budget.reserve(50, Duration::from_millis(10)),
            Err(BudgetError::Busy { need: 50, .. })
        ));
        assert_eq!(budget.reserved(), 60, "a refused reservation holds nothing");
        // A large reservation waits; a small one coming after it waits behind it.
        let big = {
            let b = Arc::clone(&budget);
            std::thread::spawn(move || b.reserve(90, Duration::from_secs(10)))
        };
        while budget.inner.lock().waiting.is_empty() {
            std::thread::yield_now();
        }
        assert!(
            budget.reserve(10, Duration::from_millis(20)).is_err(),
            "10 bytes fit, but the older reservation goes first"
        );
        drop(a);
        let big = big.join().unwrap().unwrap();
        assert!(big.waited);
        assert_eq!(budget.reserved(), 90);
        drop(big);
        assert_eq!(budget.reserved(), 0);
        assert!(budget.reserve(100, Duration::ZERO).is_ok());
    }
}
