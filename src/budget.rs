//! The process's memory budget: one count of the bytes that requests, queues and pages have
//! reserved, against one limit (`--memory-budget`, by default 60 % of the container's memory
//! limit).
//!
//! A consumer reserves what it may allocate, from sizes known before it allocates (a body's
//! length, a batch's rows times the model's widths, a queued record's rows), and holds the
//! [`Reservation`] while the memory is in use; dropping it gives the bytes back, on every path.
//! A reservation that does not fit is refused at once, never waited for: the caller answers 429,
//! or drops and counts. Reserving and releasing are one atomic compare-and-swap and one atomic
//! subtraction, with no lock, so the fast path pays a few nanoseconds for it.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// One process-wide budget; clones share it.
#[derive(Clone)]
pub struct Budget(Arc<Inner>);

struct Inner {
    total: usize,
    reserved: AtomicUsize,
    /// The budget this one is a share of: what is reserved here is reserved there too.
    parent: Option<Arc<Inner>>,
}

impl fmt::Debug for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Budget")
            .field("total", &self.total())
            .field("reserved", &self.reserved())
            .finish()
    }
}

/// A reservation that did not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{asked} bytes asked with {reserved} of the {total}-byte memory budget already reserved")]
pub struct OverBudget {
    pub asked: usize,
    pub reserved: usize,
    pub total: usize,
}

impl OverBudget {
    /// The budget in MiB, for messages.
    pub fn total_mib(&self) -> f64 {
        self.total as f64 / (1024.0 * 1024.0)
    }
}

impl Budget {
    /// A budget of `total` bytes.
    pub fn new(total: usize) -> Self {
        Self(Arc::new(Inner {
            total,
            reserved: AtomicUsize::new(0),
            parent: None,
        }))
    }

    /// A share of this budget of at most `total` bytes: a reservation from it counts against
    /// both, so a queue given a share can never take more than it, whatever else is free.
    pub fn share(&self, total: usize) -> Self {
        Self(Arc::new(Inner {
            total: total.min(self.total()),
            reserved: AtomicUsize::new(0),
            parent: Some(Arc::clone(&self.0)),
        }))
    }

    /// A budget nothing exceeds (commands other than `serve`, and tests that are not about it).
    pub fn unlimited() -> Self {
        Self::new(usize::MAX)
    }

    pub fn total(&self) -> usize {
        self.0.total
    }

    /// Bytes reserved now.
    pub fn reserved(&self) -> usize {
        self.0.reserved.load(Ordering::Relaxed)
    }

    /// Reserves `bytes`, or refuses without reserving anything.
    pub fn try_reserve(&self, bytes: usize) -> Result<Reservation, OverBudget> {
        self.take(bytes)?;
        Ok(Reservation {
            budget: Some(Arc::clone(&self.0)),
            bytes,
        })
    }

    fn take(&self, bytes: usize) -> Result<(), OverBudget> {
        take(&self.0, bytes)?;
        if let Some(parent) = &self.0.parent {
            if let Err(e) = take(parent, bytes) {
                self.0.reserved.fetch_sub(bytes, Ordering::Relaxed);
                return Err(e);
            }
        }
        Ok(())
    }
}

/// Gives `bytes` back to `inner` and the budget it is a share of.
fn give_back(inner: &Inner, bytes: usize) {
    inner.reserved.fetch_sub(bytes, Ordering::Relaxed);
    if let Some(parent) = &inner.parent {
        parent.reserved.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// Adds `bytes` to `inner`'s count if the sum stays within its total.
fn take(inner: &Inner, bytes: usize) -> Result<(), OverBudget> {
    let mut reserved = inner.reserved.load(Ordering::Relaxed);
    loop {
        let next = reserved
            .checked_add(bytes)
            .filter(|next| *next <= inner.total)
            .ok_or(OverBudget {
                asked: bytes,
                reserved,
                total: inner.total,
            })?;
        match inner.reserved.compare_exchange_weak(
            reserved,
            next,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => return Ok(()),
            Err(now) => reserved = now,
        }
    }
}

/// Bytes reserved from a [`Budget`] until this is dropped.
pub struct Reservation {
    budget: Option<Arc<Inner>>,
    bytes: usize,
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reservation({} bytes)", self.bytes)
    }
}

impl Reservation {
    /// A reservation of nothing from no budget: for values built where nothing is accounted
    /// (tests, commands other than `serve`). It never refuses to grow.
    pub fn none() -> Self {
        Self {
            budget: None,
            bytes: 0,
        }
    }

    /// The bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Reserves `more` bytes from the same budget into this reservation (which then gives back
    /// both together), or refuses, keeping what it held.
    pub fn grow(&mut self, more: usize) -> Result<(), OverBudget> {
        let Some(budget) = &self.budget else {
            // Only `Reservation::none` has no budget: it stands for "nothing to account".
            return Ok(());
        };
        Budget(Arc::clone(budget)).take(more)?;
        self.bytes += more;
        Ok(())
    }

    /// Gives back all but `keep` bytes now (what a consumer turned out not to need).
    pub fn shrink_to(&mut self, keep: usize) {
        if let (Some(budget), true) = (&self.budget, keep < self.bytes) {
            give_back(budget, self.bytes - keep);
            self.bytes = keep;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            give_back(budget, self.bytes);
        }
    }
}

/// Large allocations made or freed since start, in rounds: bumped by [`note_large_work`].
static LARGE_WORK: AtomicUsize = AtomicUsize::new(0);

/// Says that this thread made or freed large buffers (a big batch's rows or answer), so that
/// every runtime worker gives its freed memory back when it next goes idle
/// ([`release_if_large_work`]).
pub fn note_large_work() {
    LARGE_WORK.fetch_add(1, Ordering::Relaxed);
}

/// Hands the calling thread's freed memory back to the allocator, and so to the OS.
///
/// limen's binary allocates with mimalloc, which keeps a thread's freed pages, and the blocks
/// other threads freed for it, until that thread allocates again: a thread that goes idle after
/// a large batch (a runtime worker, a blocking scorer, the log writer) would hold them for good,
/// and RSS would not come back down after load. (Under another allocator, as in the library's
/// tests, it collects mimalloc's unused heap: nothing.)
pub fn release_idle_memory() {
    // SAFETY: collects the calling thread's own mimalloc heap; no pointer is passed.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// [`release_idle_memory`], if large buffers were made or freed anywhere since this thread last
/// did it: what a runtime worker calls as it goes idle. Otherwise one atomic load, so small
/// requests pay nothing for it.
pub fn release_if_large_work() {
    use std::cell::Cell;
    thread_local! {
        static SEEN: Cell<usize> = const { Cell::new(0) };
    }
    let now = LARGE_WORK.load(Ordering::Relaxed);
    if SEEN.with(|seen| seen.replace(now)) != now {
        release_idle_memory();
    }
}

/// The default budget and where it came from: 60 % of the cgroup's memory limit (v2
/// `memory.max`, else v1 `memory.limit_in_bytes`), else a quarter of the machine's memory
/// (`/proc/meminfo`), else 256 MiB. Read once, at start.
pub fn default_budget() -> (usize, String) {
    const MIB: usize = 1024 * 1024;
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let limit = read("/sys/fs/cgroup/memory.max")
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(|l| (l, "cgroup v2 memory.max"))
        .or_else(|| {
            read("/sys/fs/cgroup/memory/memory.limit_in_bytes")
                .and_then(|s| s.trim().parse::<u64>().ok())
                // v1 reports "no limit" as a number near 2^63.
                .filter(|l| *l < 1 << 60)
                .map(|l| (l, "cgroup v1 memory.limit_in_bytes"))
        });
    if let Some((limit, source)) = limit {
        let bytes = usize::try_from(limit / 10 * 6).unwrap_or(usize::MAX);
        return (bytes, format!("60% of the {} MiB {source}", limit >> 20));
    }
    let total = read("/proc/meminfo").and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
    });
    match total {
        Some(total) => (
            usize::try_from(total / 4).unwrap_or(usize::MAX),
            format!(
                "a quarter of the machine's {} MiB (no cgroup memory limit)",
                total >> 20
            ),
        ),
        None => (256 * MIB, "256 MiB (no memory limit found)".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_fit_or_are_refused_and_give_back_on_drop() {
        let budget = Budget::new(100);
        let a = budget.try_reserve(60).unwrap();
        let refused = budget.try_reserve(41).unwrap_err();
        assert_eq!(
            refused,
            OverBudget {
                asked: 41,
                reserved: 60,
                total: 100
            }
        );
        let mut b = budget.try_reserve(40).unwrap();
        assert_eq!(budget.reserved(), 100);
        assert!(b.grow(1).is_err());
        assert_eq!(b.bytes(), 40, "a refused growth keeps what was held");
        drop(a);
        b.grow(50).unwrap();
        assert_eq!((b.bytes(), budget.reserved()), (90, 90));
        b.shrink_to(10);
        assert_eq!((b.bytes(), budget.reserved()), (10, 10));
        drop(b);
        assert_eq!(budget.reserved(), 0);
        assert!(budget.try_reserve(usize::MAX).is_err(), "no overflow");
    }

    #[test]
    fn a_zero_reservation_grows_from_its_budget() {
        let budget = Budget::new(10);
        let mut r = budget.try_reserve(0).unwrap();
        r.grow(7).unwrap();
        assert_eq!(budget.reserved(), 7);
        assert!(r.grow(4).is_err());
        drop(r);
        assert_eq!(budget.reserved(), 0);
        let mut none = Reservation::none();
        none.grow(usize::MAX).unwrap();
        assert_eq!(none.bytes(), 0);
    }

    #[test]
    fn a_share_is_bounded_by_itself_and_by_the_whole() {
        let whole = Budget::new(100);
        let queue = whole.share(30);
        let a = queue.try_reserve(30).unwrap();
        assert_eq!((queue.reserved(), whole.reserved()), (30, 30));
        assert!(queue.try_reserve(1).is_err(), "the share is full");
        let b = whole.try_reserve(70).unwrap();
        drop(a);
        let filler = whole.try_reserve(30).unwrap();
        assert!(queue.try_reserve(1).is_err(), "the whole is full");
        assert_eq!(
            queue.reserved(),
            0,
            "a refusal by the whole takes nothing from the share"
        );
        drop((b, filler));
        let mut c = queue.try_reserve(10).unwrap();
        c.shrink_to(4);
        assert_eq!((queue.reserved(), whole.reserved()), (4, 4));
        drop(c);
        assert_eq!((queue.reserved(), whole.reserved()), (0, 0));
    }

    #[test]
    fn concurrent_reservations_never_pass_the_total() {
        let budget = Budget::new(1000);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..10_000 {
                        if let Ok(r) = budget.try_reserve(1 + i % 300) {
                            assert!(budget.reserved() <= 1000);
                            drop(r);
                        }
                    }
                });
            }
        });
        assert_eq!(budget.reserved(), 0);
    }

    #[test]
    fn the_default_is_positive_and_says_where_it_came_from() {
        let (bytes, source) = default_budget();
        assert!(bytes > 0 && !source.is_empty());
    }
}
