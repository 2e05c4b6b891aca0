//! Backing the simulator's heap with transparent huge pages.
//!
//! A thousand nodes' state spans tens of MiB and each event touches a few nodes' worth of it
//! at random: with 4 KiB pages most of those touches miss the TLB as well as the cache. glibc's
//! malloc (2.35 and later) asks the kernel for transparent huge pages for its heap when the
//! tunable `glibc.malloc.hugetlb=1` is set, which helps wherever THP is `madvise` or `always`
//! (`/sys/kernel/mm/transparent_hugepage/enabled`). glibc reads tunables only when a process
//! starts, so the simulator starts itself again with the tunable set, by `exec`: the same
//! process, arguments and output, before anything is printed. The run itself is unchanged
//! (same trace); only its speed differs.

/// The glibc tunable that turns huge pages on for malloc's heap.
pub const TUNABLE: &str = "glibc.malloc.hugetlb";

/// The value `GLIBC_TUNABLES` (as `tunables`) gives [`TUNABLE`], if it names it.
fn setting(tunables: &str) -> Option<&str> {
    tunables.split(':').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == TUNABLE).map(|(_, v)| v))
}

/// `GLIBC_TUNABLES` with huge pages on, given its current value, or `None` when it already
/// says something about them (the user's choice, or this process is the restarted one).
pub fn tunables_with_huge_pages(current: Option<&str>) -> Option<String> {
    match current {
        None | Some("") => Some(format!("{TUNABLE}=1")),
        Some(t) if setting(t).is_some() => None,
        Some(t) => Some(format!("{t}:{TUNABLE}=1")),
    }
}

/// Whether this process runs with huge pages asked of glibc (after the restart, or set by the
/// user).
pub fn requested() -> bool {
    std::env::var("GLIBC_TUNABLES").is_ok_and(|t| setting(&t) == Some("1"))
}

/// Restarts this process with huge pages on, unless `GLIBC_TUNABLES` already sets
/// [`TUNABLE`]. Returns only if it did not restart (then the run goes on without them).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn restart_with_huge_pages() {
    use std::os::unix::process::CommandExt;

    let current = std::env::var("GLIBC_TUNABLES").ok();
    let Some(tunables) = tunables_with_huge_pages(current.as_deref()) else { return };
    let Ok(exe) = std::env::current_exe() else { return };
    let err = std::process::Command::new(exe).args(std::env::args_os().skip(1)).env("GLIBC_TUNABLES", tunables).exec();
    // `exec` returns only when it failed.
    eprintln!("note: running without huge pages (restart failed: {err})");
}

/// Elsewhere glibc's tunable does not exist; the run goes on as it is.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn restart_with_huge_pages() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_the_tunable_once_and_keeps_the_users_other_tunables() {
        assert_eq!(tunables_with_huge_pages(None).as_deref(), Some("glibc.malloc.hugetlb=1"));
        assert_eq!(tunables_with_huge_pages(Some("")).as_deref(), Some("glibc.malloc.hugetlb=1"));
        assert_eq!(
            tunables_with_huge_pages(Some("glibc.malloc.tcache_count=0")).as_deref(),
            Some("glibc.malloc.tcache_count=0:glibc.malloc.hugetlb=1")
        );
        // Already set, by the user (off or on) or by the restart: left alone, so no loop.
        assert_eq!(tunables_with_huge_pages(Some("glibc.malloc.hugetlb=0")), None);
        assert_eq!(tunables_with_huge_pages(Some("glibc.malloc.tcache_count=0:glibc.malloc.hugetlb=1")), None);
        // A longer name that merely starts the same is another tunable.
        assert!(tunables_with_huge_pages(Some("glibc.malloc.hugetlbx=0")).is_some());
        assert_eq!(setting("glibc.malloc.tcache_count=0:glibc.malloc.hugetlb=1"), Some("1"));
        assert_eq!(setting("glibc.malloc.hugetlbx=1"), None);
    }
}
