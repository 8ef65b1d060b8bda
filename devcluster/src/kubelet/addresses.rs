//! Pod IPs: one loopback address per Pod, from `127.1.0.1` to `127.95.255.254`.
//!
//! Linux routes all of `127.0.0.0/8` to the loopback interface, so each Pod can bind its
//! ports on its own address and two Pods listening on 8080 never collide. The allocator
//! starts at a random place (several clusters on one machine rarely meet), skips addresses in
//! use by this cluster, and checks that the Pod's declared ports can be bound on a candidate
//! before handing it out (another cluster, or a process left by someone else, may hold them).

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::sync::Mutex;

const FIRST: u32 = u32::from_be_bytes([127, 1, 0, 1]);
const LAST: u32 = u32::from_be_bytes([127, 95, 255, 254]);

/// The Pod IP allocator of one cluster.
pub struct Addresses {
    state: Mutex<State>,
}

struct State {
    used: HashSet<Ipv4Addr>,
    next: u32,
}

impl Default for Addresses {
    fn default() -> Self {
        let span = LAST - FIRST;
        let start = FIRST
            + u32::from_le_bytes(
                uuid::Uuid::new_v4().as_bytes()[..4].try_into().unwrap_or_default(),
            ) % span;
        Addresses { state: Mutex::new(State { used: HashSet::new(), next: start }) }
    }
}

impl Addresses {
    /// An unused address on which every port in `ports` can be bound.
    pub fn allocate(&self, ports: &[u16]) -> Ipv4Addr {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let n = state.next;
            state.next = if n >= LAST { FIRST } else { n + 1 };
            let ip = Ipv4Addr::from(n);
            let last = ip.octets()[3];
            if last == 0 || last == 255 || state.used.contains(&ip) {
                continue;
            }
            if ports.iter().all(|p| TcpListener::bind(SocketAddrV4::new(ip, *p)).is_ok()) {
                state.used.insert(ip);
                return ip;
            }
        }
    }

    /// Returns an address once its Pod's processes are gone.
    pub fn release(&self, ip: Ipv4Addr) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).used.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_distinct_loopback_and_reusable_after_release() {
        let a = Addresses::default();
        let x = a.allocate(&[]);
        let y = a.allocate(&[]);
        assert_ne!(x, y);
        for ip in [x, y] {
            assert!(ip.is_loopback());
            assert_ne!(ip.octets()[1], 0, "pods never get 127.0.x.x");
            assert!(ip.octets()[1] <= 95);
        }
        a.release(x);
        assert!(!a.state.lock().unwrap().used.contains(&x));
    }

    #[test]
    fn an_address_whose_port_is_taken_is_skipped() {
        let a = Addresses::default();
        let first = a.allocate(&[]);
        a.release(first);
        // Hold a port on the next candidate: the allocator must move past it.
        let next = Ipv4Addr::from(u32::from(first) + 1);
        let _held = TcpListener::bind(SocketAddrV4::new(next, 18080)).expect("a free test port");
        a.state.lock().unwrap().next = u32::from(next);
        assert_ne!(a.allocate(&[18080]), next);
    }
}
