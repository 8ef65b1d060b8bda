//! The SSRF guard: which addresses outbound calls may connect to (RELIABILITY O1).
//!
//! ```text
//!  endpoint host ──▶ IP literal? ──yes──▶ check ──▶ connect
//!                        │no
//!                        ▼
//!                 GuardedResolver (the HTTP client's only resolver)
//!                   resolve → drop refused addresses → connect to what is left
//! ```
//!
//! Refused unless an entry of [`EgressConfig::allow_cidrs`] contains the address: loopback,
//! private (RFC 1918), carrier-grade NAT, link-local (cloud metadata 169.254.169.254),
//! unspecified, broadcast, multicast and reserved ranges, unique-local `fc00::/7`,
//! link-local `fe80::/10`, and IPv6 forms that embed a refused IPv4 address (IPv4-mapped,
//! IPv4-compatible, NAT64, 6to4).
//!
//! The HTTP client connects to exactly the addresses the resolver returned, so there is no
//! window between the check and the connect for a DNS answer to change (no rebinding gap).
//! Redirects are never followed (see `delivery`), so a redirect cannot lead past the guard.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

use crate::config::EgressConfig;

/// Why an address or name may not be connected to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// The address is in a refused range and not allow-listed.
    #[error(
        "egress to {host} refused: {address} is a {range} address (allow it with egress.allowCidrs)"
    )]
    Refused {
        /// Host as written in the endpoint.
        host: String,
        /// The refused address.
        address: IpAddr,
        /// Name of the range.
        range: &'static str,
    },
    /// Every resolved address was refused (or none was found).
    #[error("egress to {host} refused: it resolves to no allowed address ({detail})")]
    NoAllowedAddress {
        /// Host name.
        host: String,
        /// What was found.
        detail: String,
    },
    /// Name resolution failed.
    #[error("could not resolve {host}: {reason}")]
    Resolve {
        /// Host name.
        host: String,
        /// Resolver message.
        reason: String,
    },
    /// An allow-list entry is not a CIDR or address.
    #[error("egress.allowCidrs entry {entry:?} is not an IP address or CIDR")]
    InvalidCidr {
        /// The entry.
        entry: String,
    },
}

impl EgressError {
    /// Short category for metrics and Events.
    pub fn category(&self) -> &'static str {
        match self {
            EgressError::Resolve { .. } => "dns",
            _ => "egress",
        }
    }
}

/// The egress policy of one worker.
#[derive(Clone, Debug, Default)]
pub struct EgressPolicy {
    allow: Vec<IpNet>,
}

impl EgressPolicy {
    /// Build from the worker config's allow-list (CIDRs or single addresses).
    pub fn new(config: &EgressConfig) -> Result<EgressPolicy, EgressError> {
        let allow = config
            .allow_cidrs
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| EgressError::InvalidCidr { entry: entry.to_string() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EgressPolicy { allow })
    }

    /// Whether `host` (for messages) may be reached at `address`.
    pub fn check(&self, host: &str, address: IpAddr) -> Result<(), EgressError> {
        let Some(range) = refused_range(address) else {
            return Ok(());
        };
        if self.is_allow_listed(address) {
            return Ok(());
        }
        Err(EgressError::Refused { host: host.to_string(), address, range })
    }

    /// For a URL whose host is an IP literal, whether it may be reached; `None` for a name
    /// (names are checked when they are resolved).
    pub fn check_literal(&self, url: &url::Url) -> Option<Result<(), EgressError>> {
        let host = url.host_str().unwrap_or_default();
        let address = match url.host()? {
            url::Host::Ipv4(ip) => IpAddr::V4(ip),
            url::Host::Ipv6(ip) => IpAddr::V6(ip),
            url::Host::Domain(_) => return None,
        };
        Some(self.check(host, address))
    }

    /// Whether a URL's host may be reached: IP literals are checked, names resolved and their
    /// addresses filtered, exactly as a request would be (without connecting).
    pub async fn check_url(&self, url: &url::Url) -> Result<(), EgressError> {
        if let Some(checked) = self.check_literal(url) {
            return checked;
        }
        let host = url.host_str().unwrap_or_default().to_string();
        let found =
            tokio::net::lookup_host((host.as_str(), url.port_or_known_default().unwrap_or(0)))
                .await
                .map_err(|e| EgressError::Resolve { host: host.clone(), reason: e.to_string() })?;
        self.filter(&host, found).map(|_| ())
    }

    fn is_allow_listed(&self, address: IpAddr) -> bool {
        let canonical = canonical(address);
        self.allow.iter().any(|net| net.contains(&address) || net.contains(&canonical))
    }

    /// Keep the allowed addresses of a resolution of `host`; an error if none is left.
    pub fn filter(
        &self,
        host: &str,
        addresses: impl IntoIterator<Item = SocketAddr>,
    ) -> Result<Vec<SocketAddr>, EgressError> {
        let mut allowed = Vec::new();
        let mut refused = Vec::new();
        for address in addresses {
            match self.check(host, address.ip()) {
                Ok(()) => allowed.push(address),
                Err(EgressError::Refused { address, range, .. }) => {
                    refused.push(format!("{address} ({range})"))
                }
                Err(other) => return Err(other),
            }
        }
        if allowed.is_empty() {
            let detail = if refused.is_empty() {
                "no address".to_string()
            } else {
                format!("refused {}", refused.join(", "))
            };
            return Err(EgressError::NoAllowedAddress { host: host.to_string(), detail });
        }
        Ok(allowed)
    }
}

/// The IPv4 address an IPv6 address stands for, if it embeds one (mapped, compatible, NAT64,
/// 6to4); the address itself otherwise.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => embedded_ipv4(v6).map(IpAddr::V4).unwrap_or(address),
    }
}

fn embedded_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let o = v6.octets();
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    // IPv4-compatible ::a.b.c.d (deprecated, still routed by some stacks); not :: and ::1.
    if s[..6] == [0, 0, 0, 0, 0, 0] && (s[6] != 0 || s[7] > 1) {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    // NAT64 well-known prefix 64:ff9b::/96 and local-use 64:ff9b:1::/48.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    // 6to4 2002:AABB:CCDD::/48.
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
}

/// The refused range an address falls in, or `None` for a public address.
pub fn refused_range(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_ipv4(v6) {
                return refused_v4(v4).map(|_| "IPv4-embedding IPv6 of a refused");
            }
            let s = v6.segments();
            if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_loopback() {
                Some("loopback")
            } else if s[0] & 0xfe00 == 0xfc00 {
                Some("unique-local")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if s[0] & 0xffc0 == 0xfec0 {
                Some("site-local")
            } else if s[0] & 0xff00 == 0xff00 {
                Some("multicast")
            } else if s[..4] == [0x100, 0, 0, 0] {
                Some("discard-only")
            } else if s[0] == 0x2001 && s[1] == 0x0db8 {
                Some("documentation")
            } else {
                None
            }
        }
    }
}

fn refused_v4(v4: Ipv4Addr) -> Option<&'static str> {
    let o = v4.octets();
    if o[0] == 0 {
        Some("unspecified (0.0.0.0/8)")
    } else if v4.is_loopback() {
        Some("loopback")
    } else if v4.is_private() {
        Some("private (RFC 1918)")
    } else if v4.is_link_local() {
        Some("link-local (cloud metadata)")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("carrier-grade NAT")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        Some("IETF protocol assignment")
    } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
        Some("benchmarking")
    } else if v4.is_documentation() {
        Some("documentation")
    } else if v4.is_multicast() {
        Some("multicast")
    } else if o[0] >= 240 {
        Some("reserved or broadcast")
    } else {
        None
    }
}

/// The HTTP client's resolver: system resolution, then the policy's filter.
#[derive(Clone, Debug)]
pub(crate) struct GuardedResolver {
    pub(crate) policy: Arc<EgressPolicy>,
}

impl GuardedResolver {
    /// The addresses `host` resolves to that the policy allows.
    async fn allowed(
        policy: Arc<EgressPolicy>,
        host: String,
    ) -> Result<Vec<SocketAddr>, EgressError> {
        let found = tokio::net::lookup_host((host.as_str(), 0))
            .await
            .map_err(|e| EgressError::Resolve { host: host.clone(), reason: e.to_string() })?;
        policy.filter(&host, found)
    }
}

/// For the reqwest client of OAuth2 token requests.
impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolved = Self::allowed(self.policy.clone(), name.as_str().to_string());
        Box::pin(async move {
            let addrs: reqwest::dns::Addrs = Box::new(resolved.await?.into_iter());
            Ok(addrs)
        })
    }
}

/// For the delivery client's connector.
impl tower::Service<hyper_util::client::legacy::connect::dns::Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = EgressError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, EgressError>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), EgressError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: hyper_util::client::legacy::connect::dns::Name) -> Self::Future {
        let resolved = Self::allowed(self.policy.clone(), name.as_str().to_string());
        Box::pin(async move { resolved.await.map(Vec::into_iter) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str]) -> EgressPolicy {
        EgressPolicy::new(&EgressConfig {
            allow_cidrs: allow.iter().map(|s| s.to_string()).collect(),
        })
        .unwrap()
    }

    #[test]
    fn refuses_internal_ranges() {
        let p = policy(&[]);
        for bad in [
            "127.0.0.1",
            "127.9.9.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "::127.0.0.1",
        ] {
            let ip: IpAddr = bad.parse().unwrap();
            assert!(p.check("h", ip).is_err(), "{bad} should be refused");
        }
        for good in ["93.184.215.14", "1.1.1.1", "2606:4700::1111", "::ffff:93.184.215.14"] {
            let ip: IpAddr = good.parse().unwrap();
            assert_eq!(p.check("h", ip), Ok(()), "{good} should be allowed");
        }
    }

    #[test]
    fn allow_list_admits_named_ranges_only() {
        let p = policy(&["127.0.0.1/32", "10.0.0.0/8", "fd00::5"]);
        assert_eq!(p.check("h", "127.0.0.1".parse().unwrap()), Ok(()));
        assert_eq!(p.check("h", "::ffff:127.0.0.1".parse().unwrap()), Ok(()));
        assert_eq!(p.check("h", "10.200.0.1".parse().unwrap()), Ok(()));
        assert_eq!(p.check("h", "fd00::5".parse().unwrap()), Ok(()));
        assert!(p.check("h", "127.0.0.2".parse().unwrap()).is_err());
        assert!(p.check("h", "169.254.169.254".parse().unwrap()).is_err());
        assert!(EgressPolicy::new(&EgressConfig { allow_cidrs: vec!["nope".into()] }).is_err());
    }

    #[test]
    fn filter_keeps_allowed_addresses_only() {
        let p = policy(&[]);
        let addrs: Vec<SocketAddr> =
            vec!["169.254.169.254:80".parse().unwrap(), "93.184.215.14:80".parse().unwrap()];
        assert_eq!(p.filter("h", addrs).unwrap(), vec!["93.184.215.14:80".parse().unwrap()]);
        assert!(matches!(
            p.filter("h", vec!["127.0.0.1:80".parse().unwrap()]),
            Err(EgressError::NoAllowedAddress { .. })
        ));
    }
}
