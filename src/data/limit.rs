//! How many blocks upload at once: between a floor and `--max-uploads`,
//! set by the latency the uploads see, with TCP Vegas's rule.
//!
//! More uploads at once help only while the server has room: a store far
//! away with bandwidth to spare answers each upload in about the same time
//! however many are in flight, and the limit grows to `--max-uploads`; a
//! server that is already busy answers each later the more there are, and
//! every block waiting in its queue is 4 MiB of this process's memory for
//! no gain. From the base latency (per MiB: the smallest seen, or that of
//! the last upload that had the store to itself) and the latency now,
//! `limit * (1 - base / now)` estimates the uploads waiting in the
//! server's queue; the limit grows by one while fewer than [`GROW_BELOW`]
//! wait and shrinks by one while more than [`SHRINK_ABOVE`] do, once per
//! round (as many uploads as the limit). It does not double at first: on
//! the test server that took it to 8 and more uploads before the first
//! queue showed, 16 blocks of memory with the writers' own (`jfs bench -p
//! 4`); from 4 to 20 is 16 rounds, about as many round trips.
//!
//! The base is not the smallest of a recent window: a server kept busy
//! never shows its unloaded latency again, the window's smallest becomes
//! the loaded one, and the limit would creep back up to the maximum.
//!
//! Measured on the test S3 server (moto, on the same two cores): 20 at once
//! kept about 96 MiB of blocks in flight for the same throughput as 4.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limit starts here (or at `--max-uploads` if lower) and never goes
/// below it.
const FLOOR: usize = 4;
/// Estimated uploads queued at the server below which the limit grows.
/// With 2 (and shrinking above 4) the limit went to 5-7 on the test
/// server with four writers, for the same throughput as 4 (`jfs bench -p
/// 4` on a dev mount, three runs each: 335-362 against 318-375 MiB/s)
/// and 12 MiB more of blocks in flight.
const GROW_BELOW: f64 = 1.0;
/// Estimated uploads queued above which the limit shrinks.
const SHRINK_ABOVE: f64 = 2.0;
/// Uploads smaller than half a block say little about the server's queue
/// (their latency is mostly the request's own overhead) and are not
/// counted; the size of a block is the volume's (64 KiB to 16 MiB).
fn sample_bytes(block_size: usize) -> usize {
    block_size / 2
}

pub(crate) struct UploadLimit {
    permits: Arc<Semaphore>,
    /// Uploads at least this big are counted.
    sample_bytes: usize,
    /// Permits out now.
    active: std::sync::atomic::AtomicUsize,
    max: usize,
    floor: usize,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    limit: usize,
    /// Permits to drop when they come back: the limit shrank while they
    /// were out.
    owed: usize,
    /// Latency per MiB of an upload that met no queue of ours.
    base: Option<Duration>,
    /// Latencies since the limit last changed.
    round_total: Duration,
    round_samples: usize,
}

/// Leave to upload one object; give it back with [`UploadPermit::done`]
/// (or drop it: the upload is then not counted).
pub(crate) struct UploadPermit {
    permit: Option<OwnedSemaphorePermit>,
    limit: Arc<UploadLimit>,
    /// No other upload was out when this one was allowed.
    alone: bool,
}

/// What one round of uploads says to do with the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Grow,
    Shrink,
    Keep,
}

impl UploadLimit {
    pub(crate) fn new(max: usize, block_size: usize) -> Arc<UploadLimit> {
        let max = max.max(1);
        let floor = FLOOR.min(max);
        Arc::new(UploadLimit {
            permits: Arc::new(Semaphore::new(floor)),
            sample_bytes: sample_bytes(block_size),
            active: std::sync::atomic::AtomicUsize::new(0),
            max,
            floor,
            state: Mutex::new(State {
                limit: floor,
                owed: 0,
                base: None,
                round_total: Duration::ZERO,
                round_samples: 0,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Uploads allowed at once now.
    pub(crate) fn current(&self) -> usize {
        self.lock().limit
    }

    /// Waits for leave to upload.
    pub(crate) async fn acquire(self: &Arc<Self>) -> UploadPermit {
        // The semaphore is never closed.
        let permit = self.permits.clone().acquire_owned().await.ok();
        let before = self
            .active
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        UploadPermit {
            permit,
            limit: self.clone(),
            alone: before == 0,
        }
    }

    /// Counts one upload of `bytes` that took `latency` (`alone`: with no
    /// other upload of ours out), and moves the limit at the end of a
    /// round.
    fn observe(&self, bytes: usize, latency: Duration, alone: bool) {
        if bytes < self.sample_bytes {
            return;
        }
        let per_mib = latency.div_f64(bytes as f64 / (1 << 20) as f64);
        let mut state = self.lock();
        let step = state.observe(per_mib, alone, self.floor, self.max);
        self.apply(&mut state, step);
    }

    /// Moves the limit and the permits with it. A permit taken back while
    /// all are out is owed, and dropped when one comes back.
    fn apply(&self, state: &mut State, step: Step) {
        match step {
            Step::Grow => {
                state.limit += 1;
                if state.owed > 0 {
                    state.owed -= 1;
                } else {
                    self.permits.add_permits(1);
                }
            }
            Step::Shrink => {
                state.limit -= 1;
                if self.permits.forget_permits(1) == 0 {
                    state.owed += 1;
                }
            }
            Step::Keep => {}
        }
    }
}

impl State {
    fn observe(&mut self, latency: Duration, alone: bool, floor: usize, max: usize) -> Step {
        // An upload alone says what the store does now with no queue of
        // ours, slower or faster than before.
        let base = match self.base {
            Some(b) if !alone => b.min(latency),
            _ => latency,
        };
        self.base = Some(base);
        self.round_total += latency;
        self.round_samples += 1;
        if self.round_samples < self.limit {
            return Step::Keep;
        }
        let now = self.round_total / self.round_samples as u32;
        self.round_total = Duration::ZERO;
        self.round_samples = 0;
        let queued = self.limit as f64 * (1.0 - base.as_secs_f64() / now.as_secs_f64().max(1e-9));
        if queued < GROW_BELOW && self.limit < max {
            Step::Grow
        } else if queued > SHRINK_ABOVE && self.limit > floor {
            Step::Shrink
        } else {
            Step::Keep
        }
    }
}

impl UploadPermit {
    /// The upload of `bytes` is over: it took `latency` from the request to
    /// the answer.
    pub(crate) fn done(self, bytes: usize, started: Instant) {
        self.limit.observe(bytes, started.elapsed(), self.alone);
    }
}

impl Drop for UploadPermit {
    fn drop(&mut self) {
        self.limit
            .active
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let Some(permit) = self.permit.take() else {
            return;
        };
        let mut state = self.limit.lock();
        if state.owed > 0 {
            state.owed -= 1;
            permit.forget();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `rounds` rounds of uploads of `bytes` on `limit` against a
    /// server whose latency for `n` uploads in flight is `latency(n)`, all
    /// slots busy; the limits chosen, round by round.
    fn rounds(
        limit: &UploadLimit,
        rounds: usize,
        bytes: usize,
        latency: impl Fn(usize) -> Duration,
    ) -> Vec<usize> {
        let mut seen = Vec::new();
        for _ in 0..rounds {
            let n = limit.current();
            for _ in 0..n {
                limit.observe(bytes, latency(n), false);
            }
            seen.push(limit.current());
        }
        seen
    }

    /// As [`rounds`], on a fresh limit of `max` with 4 MiB blocks.
    fn run(max: usize, n: usize, latency: impl Fn(usize) -> Duration) -> Vec<usize> {
        rounds(&UploadLimit::new(max, 4 << 20), n, 4 << 20, latency)
    }

    #[test]
    fn a_server_with_room_gets_every_upload_allowed() {
        let seen = run(20, 20, |_| Duration::from_millis(40));
        assert_eq!(seen[..3], [5, 6, 7], "{seen:?}");
        assert_eq!(*seen.last().unwrap(), 20);
    }

    #[test]
    fn a_busy_server_gets_few_uploads_at_once() {
        // A server that does one upload at a time: each waits for all the
        // others (15 ms each).
        let seen = run(20, 40, |n| Duration::from_millis(15 * n as u64));
        let last = *seen.last().unwrap();
        assert!((4..=8).contains(&last), "{seen:?}");
        assert!(seen.iter().all(|&l| l <= 20));
    }

    #[test]
    fn a_server_slower_with_each_upload_added_keeps_the_floor() {
        // Each upload out adds a quarter of one's time to all of them
        // (the test server sharing two cores with the client): with 4 out,
        // nearly two wait at the server, and a fifth would only wait too.
        let limit = UploadLimit::new(20, 4 << 20);
        let latency = |n: usize| Duration::from_millis(40 + 10 * (n as u64 - 1));
        limit.observe(4 << 20, latency(1), true);
        let seen = rounds(&limit, 40, 4 << 20, latency);
        assert!(seen.iter().all(|&l| l == 4), "{seen:?}");
    }

    #[test]
    fn a_server_that_slows_down_later_sheds_uploads() {
        let limit = UploadLimit::new(20, 4 << 20);
        rounds(&limit, 20, 4 << 20, |_| Duration::from_millis(40));
        assert_eq!(limit.current(), 20);
        rounds(&limit, 200, 4 << 20, |n| {
            Duration::from_millis(15 * n as u64)
        });
        assert!(limit.current() <= 8, "{}", limit.current());
    }

    #[test]
    fn an_upload_alone_tells_the_store_has_room_again() {
        let limit = UploadLimit::new(20, 4 << 20);
        rounds(&limit, 40, 4 << 20, |k| {
            Duration::from_millis(15 * k as u64)
        });
        let busy = limit.current();
        assert!(busy <= 8, "{busy}");
        // The store now answers in 100 ms however many are out: slower than
        // the base learned, so the queue looks long and nothing changes...
        rounds(&limit, 40, 4 << 20, |_| Duration::from_millis(100));
        assert!(limit.current() <= busy, "{}", limit.current());
        // ...until an upload alone shows 100 ms is the store's own time.
        limit.observe(4 << 20, Duration::from_millis(100), true);
        rounds(&limit, 40, 4 << 20, |_| Duration::from_millis(100));
        assert_eq!(limit.current(), 20);
    }

    #[test]
    fn small_objects_and_a_low_maximum_leave_the_limit_alone() {
        let limit = UploadLimit::new(20, 4 << 20);
        for _ in 0..100 {
            limit.observe(64 << 10, Duration::from_millis(1), false);
        }
        assert_eq!(limit.current(), FLOOR);
        let seen = run(2, 10, |_| Duration::from_millis(40));
        assert!(seen.iter().all(|&l| l == 2), "{seen:?}");
    }

    #[test]
    fn volumes_with_small_blocks_count_their_blocks() {
        let limit = UploadLimit::new(20, 256 << 10);
        rounds(&limit, 20, 256 << 10, |_| Duration::from_millis(5));
        assert_eq!(limit.current(), 20);
    }

    #[tokio::test]
    async fn permits_follow_the_limit_down_and_up() {
        let limit = UploadLimit::new(20, 4 << 20);
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(limit.acquire().await);
        }
        assert_eq!(limit.permits.available_permits(), 0);
        let step = |limit: &Arc<UploadLimit>, step| {
            let mut state = limit.lock();
            limit.apply(&mut state, step);
        };
        // A shrink while every permit is out is paid when one comes back.
        step(&limit, Step::Shrink);
        assert_eq!((limit.current(), limit.lock().owed), (3, 1));
        drop(held);
        assert_eq!(limit.permits.available_permits(), 3);
        step(&limit, Step::Grow);
        step(&limit, Step::Grow);
        assert_eq!(limit.permits.available_permits(), 5);
        assert_eq!(limit.current(), 5);
    }
}
