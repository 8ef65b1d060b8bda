//! Ports for peer processes (Prometheus, aiosmtpd, Dovecot, PostgreSQL, a worker…) that must
//! be told where to listen. Shared by the worker's and the operator's tests (`#[path]`).
//!
//! A port the kernel hands out for `127.0.0.1:0` comes from the ephemeral range, and once the
//! probe socket closes, any outgoing connection on the machine may take it as its source port
//! before the peer binds it (CI saw exactly that: `EADDRINUSE` from a Python SMTP sink that
//! needed a second to import). So ports come from just below the ephemeral range, which the
//! kernel never picks on its own, starting at a point that depends on the process id and
//! advancing per call, so that tests running at the same time draw different ones.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};

/// How many ports below the ephemeral range the tests draw from.
const SPAN: u32 = 12_000;

/// A loopback TCP port that nothing listens on and no outgoing connection will take.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral = ephemeral_low();
    let low = ephemeral.saturating_sub(SPAN).max(1024);
    let span = ephemeral.saturating_sub(low).max(1);
    let start = std::process::id().wrapping_mul(7_919);
    for _ in 0..span {
        let offset = start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = (low + offset) as u16;
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {low}..{}", low + span)
}

/// The first port of the kernel's ephemeral range (32768 unless configured otherwise).
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
        .min(u32::from(u16::MAX))
}
