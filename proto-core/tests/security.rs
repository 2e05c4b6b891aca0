//! Security through the core: password and certificate meshes, refusals with their reasons,
//! and signed floods that relays cannot alter.

mod support;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use peerchannel_core::security::{AuthFailure, Credentials, Security, SecurityMode};
use peerchannel_core::*;
use support::Net;

/// Few PBKDF2 rounds keep tests fast; the construction is the same as with the default.
fn password(pw: &str) -> Credentials {
    Credentials::password_with_iterations(&MeshId::new("test").unwrap(), pw, NonZeroU32::new(10).unwrap())
}

fn secure(mode: SecurityMode, creds: Credentials) -> Security {
    Security::new(mode, creds)
}

fn all_delivered_once(net: &mut Net, n: usize) {
    for origin in [0, n / 2, n - 1] {
        let id = net.send(origin, b"hello");
        net.run_for(Duration::from_secs(2));
        let (got, most) = net.delivery_of(id, origin);
        assert_eq!((got, most), (net.alive().len() - 1, 1), "message from {origin}");
    }
}

#[test]
fn a_password_mesh_forms_and_delivers_exactly_once() {
    let creds = password("hunter2");
    for mode in [SecurityMode::Transport, SecurityMode::TransportAndMessage] {
        let mut net = Net::new(8, 1, |c| c.security = secure(mode, creds.clone()));
        net.open_all(Duration::from_millis(50));
        net.run_for(Duration::from_secs(20));
        assert_eq!(net.components(), 1, "{mode:?}");
        all_delivered_once(&mut net, 8);
        assert!(net.observed.iter().all(|(_, e)| !matches!(e, Event::AuthenticationFailed { .. })));
    }
}
