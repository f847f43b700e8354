//! Bounded CPU pool on dedicated OS threads (not tokio workers).
//!
//! Capacity = `workers + queue` jobs. A request first takes a [`Permit`] with
//! [`TransformPool::try_reserve`] (refuse with 503 when `None`, before contacting the origin),
//! holds it while fetching the source, then hands it to [`TransformPool::run`] /
//! [`TransformPool::run_blocking`]; the slot is released when the job has finished (or when an
//! unused permit is dropped). Since every job carries a permit, the queue can never overflow.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use crate::image::error::PoolError;

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
        done: impl FnOnce(Result<T, PoolError>) + Send + 'static,
    ) -> Result<(), PoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let job: Job = Box::new(move || {
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
        self.submit(permit, f, move |r| {
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
        self.submit_sync(permit, f)?
            .recv()
            .map_err(|_| PoolError::Shutdown)?
    }

    /// Like [`Self::run_blocking`], giving up waiting after `timeout` (queue wait included).
    /// The job cannot be interrupted: it runs on and keeps its slot until it ends, so the pool
    /// never holds more than its capacity.
    pub fn run_blocking_timeout<F, T>(
        &self,
        permit: Permit,
        f: F,
        timeout: std::time::Duration,
    ) -> Result<T, PoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match self.submit_sync(permit, f)?.recv_timeout(timeout) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(PoolError::TimedOut(timeout)),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(PoolError::Shutdown),
        }
    }

    /// Queues `f`; its result arrives on the returned channel.
    #[allow(clippy::type_complexity)]
    fn submit_sync<F, T>(
        &self,
        permit: Permit,
        f: F,
    ) -> Result<mpsc::Receiver<Result<T, PoolError>>, PoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(permit, f, move |r| {
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
        for _ in 0..200 {
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
}
