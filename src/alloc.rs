//! The process's memory allocator, and the memory figures `/metrics` reports.
//!
//! jemalloc rather than glibc malloc: imgedge frees buffers of very different sizes on many
//! threads (decoded frames of megabytes, 100 KB bodies, small header maps). glibc keeps
//! per-thread arenas whose freed space it seldom returns, so RSS crept up for minutes in the
//! soak (README "Soak"); jemalloc returns unused pages after a decay (10 s by default) and
//! keeps RSS close to what is live. Off with `--no-default-features` (the fuzz crate, so that
//! AddressSanitizer sees every allocation).

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The allocator's own view of the heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocatorFigures {
    /// Bytes the program holds (live allocations).
    pub allocated: u64,
    /// Bytes of physical pages the allocator has mapped (live data, its metadata and pages not
    /// yet returned to the kernel).
    pub resident: u64,
}

/// The allocator's figures, refreshed now; `None` when built without jemalloc (or if it will
/// not say).
pub fn allocator_figures() -> Option<AllocatorFigures> {
    #[cfg(feature = "jemalloc")]
    {
        use tikv_jemalloc_ctl::{epoch, stats};
        // jemalloc caches its statistics until the epoch is advanced.
        epoch::advance().ok()?;
        Some(AllocatorFigures {
            allocated: stats::allocated::read().ok()? as u64,
            resident: stats::resident::read().ok()? as u64,
        })
    }
    #[cfg(not(feature = "jemalloc"))]
    None
}

/// Resident set size of this process (what `ps` and the soak script report), from
/// `/proc/self/statm`; `None` where that file does not exist.
pub fn process_resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages = parse_statm_resident(&statm)?;
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(page).ok().map(|p| p * pages)
}

/// Second field of `/proc/<pid>/statm`: resident pages.
fn parse_statm_resident(statm: &str) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statm_resident_is_the_second_field() {
        assert_eq!(
            parse_statm_resident("6149 1024 512 1 0 900 0\n"),
            Some(1024)
        );
        assert_eq!(parse_statm_resident("6149"), None);
        assert_eq!(parse_statm_resident(""), None);
        assert_eq!(parse_statm_resident("1 x 3"), None);
    }

    #[test]
    fn process_rss_is_reported_on_linux() {
        let rss = process_resident_bytes().expect("linux has /proc/self/statm");
        assert!(rss > 0);
    }

    #[cfg(feature = "jemalloc")]
    #[test]
    fn jemalloc_is_the_allocator_and_reports_figures() {
        // This thread's own running total: other test threads cannot disturb it.
        let mine = tikv_jemalloc_ctl::thread::allocatedp::read().expect("jemalloc is linked");
        let before = mine.get();
        let buf = std::hint::black_box(vec![1u8; 8 << 20]);
        let after = mine.get();
        assert_eq!(buf.len(), 8 << 20);
        assert!(
            after >= before + (8 << 20),
            "before {before}, after {after}"
        );
        let f = allocator_figures().expect("jemalloc is the allocator");
        assert!(f.allocated > 0 && f.allocated <= f.resident, "{f:?}");
    }
}
