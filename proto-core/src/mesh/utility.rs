use crate::time::Instant;
use crate::wire::LinkUtilityReport;

/// Floods per utility report, and the most a report may claim (the original's `AckWindow`).
pub const UTILITY_WINDOW: u32 = 32;
/// Added per first copy.
const INCREMENT: u32 = 128;
/// Ceiling of the utility value (reached with only first copies).
const MAX_UTILITY: u32 = 4096;
/// Updates before the value is trusted for pruning.
const ACCURATE_AFTER: u32 = 32;

/// How useful a link is: `U = U*31/32 + 128*useful`, capped at 4096, updated for every flood
/// received on the link and for every flood the peer reports having received from us.
#[derive(Clone, Debug)]
pub struct LinkUtility {
    value: u32,
    updates: u32,
    in_useful: u32,
    in_total: u32,
    out_unreported: u32,
    last_report: Instant,
}

/// A utility report that cannot be true: it claims more floods than were sent on the link or
/// more than one report may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImplausibleReport;

impl LinkUtility {
    /// A fresh link's bookkeeping.
    pub fn new(now: Instant) -> Self {
        LinkUtility { value: 0, updates: 0, in_useful: 0, in_total: 0, out_unreported: 0, last_report: now }
    }

    fn update(&mut self, useful: bool) {
        self.value = (self.value * 31 / 32 + if useful { INCREMENT } else { 0 }).min(MAX_UTILITY);
        self.updates = self.updates.saturating_add(1);
    }

    /// Records a flood received on the link; returns true when a report is due (window full).
    #[inline]
    pub fn on_received(&mut self, useful: bool) -> bool {
        self.in_total += 1;
        self.in_useful += u32::from(useful);
        self.update(useful);
        self.in_total >= UTILITY_WINDOW
    }

    /// Records a flood sent on the link (the peer's reports are checked against this).
    pub fn on_sent(&mut self) {
        self.out_unreported = self.out_unreported.saturating_add(1);
    }

    /// Received floods not yet reported.
    pub fn has_unreported(&self) -> bool {
        self.in_total > 0
    }

    /// When the last report was sent.
    pub fn last_report(&self) -> Instant {
        self.last_report
    }

    /// The report to send now, if anything was received since the last one.
    pub fn take_report(&mut self, now: Instant) -> Option<LinkUtilityReport> {
        if self.in_total == 0 {
            return None;
        }
        let r = LinkUtilityReport { useful: self.in_useful, total: self.in_total };
        self.in_useful = 0;
        self.in_total = 0;
        self.last_report = now;
        Some(r)
    }

    /// Applies the peer's report of how useful our floods were to it, after checking it is
    /// plausible.
    pub fn on_report(&mut self, r: LinkUtilityReport) -> Result<(), ImplausibleReport> {
        if r.total > UTILITY_WINDOW || r.useful > r.total || r.total > self.out_unreported {
            return Err(ImplausibleReport);
        }
        for _ in 0..r.useful {
            self.update(true);
        }
        for _ in r.useful..r.total {
            self.update(false);
        }
        self.out_unreported -= r.total;
        Ok(())
    }

    /// Current value, 0..=4096.
    pub fn value(&self) -> u32 {
        self.value
    }

    /// Enough updates to be compared with other links.
    pub fn is_accurate(&self) -> bool {
        self.updates >= ACCURATE_AFTER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_matches_the_original() {
        let mut u = LinkUtility::new(Instant::ZERO);
        u.on_received(true);
        assert_eq!(u.value(), 128);
        u.on_received(true);
        assert_eq!(u.value(), 128 * 31 / 32 + 128);
        u.on_received(false);
        assert_eq!(u.value(), (128 * 31 / 32 + 128) * 31 / 32);
        for _ in 0..2000 {
            u.on_received(true);
        }
        // Integer steady state of U*31/32+128 sits just under the cap.
        assert!(u.value() > 4000 && u.value() <= 4096, "{}", u.value());
        for _ in 0..2000 {
            u.on_received(false);
        }
        assert_eq!(u.value(), 0);
    }

    #[test]
    fn report_due_after_window_and_resets() {
        let mut u = LinkUtility::new(Instant::ZERO);
        for i in 1..UTILITY_WINDOW {
            assert!(!u.on_received(i % 2 == 0));
        }
        assert!(u.on_received(true));
        let r = u.take_report(Instant::from_millis(5)).unwrap();
        assert_eq!(r.total, 32);
        assert_eq!(r.useful, 16);
        assert!(u.take_report(Instant::from_millis(6)).is_none());
        assert_eq!(u.last_report(), Instant::from_millis(5));
        // 32 floods received: 32 updates, enough to be compared with other links.
        assert!(u.is_accurate());
    }

    #[test]
    fn implausible_reports_are_rejected() {
        let mut u = LinkUtility::new(Instant::ZERO);
        for _ in 0..10 {
            u.on_sent();
        }
        assert_eq!(u.on_report(LinkUtilityReport { useful: 3, total: 11 }), Err(ImplausibleReport));
        assert_eq!(u.on_report(LinkUtilityReport { useful: 4, total: 3 }), Err(ImplausibleReport));
        assert_eq!(u.on_report(LinkUtilityReport { useful: 10, total: 10 }), Ok(()));
        assert_eq!(u.on_report(LinkUtilityReport { useful: 0, total: 1 }), Err(ImplausibleReport));
        let mut big = LinkUtility::new(Instant::ZERO);
        for _ in 0..100 {
            big.on_sent();
        }
        assert_eq!(big.on_report(LinkUtilityReport { useful: 0, total: 33 }), Err(ImplausibleReport));
    }

    #[test]
    fn accuracy_needs_32_updates() {
        let mut u = LinkUtility::new(Instant::ZERO);
        for _ in 0..31 {
            u.on_received(false);
        }
        assert!(!u.is_accurate());
        u.on_received(false);
        assert!(u.is_accurate());
    }
}
