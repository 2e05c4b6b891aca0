//! Neighbor maintenance: who to dial, whom to admit, whom to prune, and the bookkeeping behind
//! those decisions (referrals, link utility). Everything here is pure decision logic; the node
//! carries the decisions out.

mod admission;
mod maintainer;
mod prefix;
mod referrals;
mod utility;

pub use admission::{admit, keep_on_duplicate, Admission, DuplicateChoice, ExistingLink};
pub use maintainer::{least_useful, Maintainer, Plan, ResolvePurpose};
pub use prefix::neighbor_prefix;
pub use referrals::{choose_referrals, is_dialable, ReferralCache};
pub use utility::{ImplausibleReport, LinkUtility, UTILITY_WINDOW};
