//! `NO_PROXY`: the hosts an environment proxy does not apply to, in the forms other
//! tools accept (curl, Go, Python): host names, domain suffixes with or without a leading
//! dot, IP addresses, CIDR networks, an optional `:port`, and `*` for everything.

use std::net::IpAddr;

/// One entry of a `NO_PROXY` list, as the operator wrote it plus its parsed form.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// The entry as written (trimmed), shown when it decides a route.
    text: String,
    /// What it matches.
    pattern: Pattern,
    /// Only this port, when the entry names one.
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// `*`: every host.
    Everything,
    /// A host name and every name below it: `example.com`, `.example.com` and
    /// `*.example.com` all match `example.com` and `api.example.com`.
    Domain(String),
    /// One IP address.
    Ip(IpAddr),
    /// A network: address and prefix length.
    Network(IpAddr, u8),
}

/// A parsed `NO_PROXY` list. Entries that cannot be understood are ignored, as other
/// tools do; the list itself never makes a run fail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy {
    entries: Vec<Entry>,
}

impl NoProxy {
    /// Parses a comma (or whitespace) separated list.
    pub fn parse(list: &str) -> NoProxy {
        let entries = list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|item| !item.is_empty())
            .filter_map(parse_entry)
            .collect();
        NoProxy { entries }
    }

    /// The entry (as written) that exempts `host:port` from the proxy, if one does.
    /// `host` may be a name, an IPv4 address or an IPv6 address with or without brackets.
    pub fn matching(&self, host: &str, port: u16) -> Option<&str> {
        let host = normalise(host);
        let ip = host.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
        self.entries
            .iter()
            .find(|entry| {
                entry.port.is_none_or(|p| p == port)
                    && match (&entry.pattern, ip) {
                        (Pattern::Everything, _) => true,
                        (Pattern::Ip(addr), Some(ip)) => *addr == ip,
                        (Pattern::Network(net, prefix), Some(ip)) => in_network(ip, *net, *prefix),
                        (Pattern::Domain(name), None) => in_domain(&host, name),
                        _ => false,
                    }
            })
            .map(|entry| entry.text.as_str())
    }
}

/// Lowercase, without IPv6 brackets or a trailing root dot.
pub fn normalise(host: &str) -> String {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn parse_entry(item: &str) -> Option<Entry> {
    let text = item.to_owned();
    if item == "*" {
        return Some(Entry {
            text,
            pattern: Pattern::Everything,
            port: None,
        });
    }
    if let Some((addr, prefix)) = item.split_once('/') {
        let addr = addr.parse::<IpAddr>().ok()?.to_canonical();
        let prefix: u8 = prefix.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        return (prefix <= max).then_some(Entry {
            text,
            pattern: Pattern::Network(addr, prefix),
            port: None,
        });
    }
    let (host, port) = split_port(item)?;
    let host = normalise(host);
    let pattern = match host.parse::<IpAddr>() {
        Ok(ip) => Pattern::Ip(ip.to_canonical()),
        Err(_) => {
            let name = host.trim_start_matches("*.").trim_start_matches('.');
            if name.is_empty() {
                return None;
            }
            Pattern::Domain(name.to_owned())
        }
    };
    Some(Entry { text, pattern, port })
}

/// Splits `host[:port]`, `[v6][:port]` or a bare IPv6 address; `None` for a bad port.
fn split_port(item: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = item.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(port) => Some((host, Some(port.parse().ok()?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    if item.matches(':').count() > 1 {
        // A bare IPv6 address: its colons are not a port separator.
        return Some((item, None));
    }
    match item.split_once(':') {
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((item, None)),
    }
}

/// True for `name` itself and any name below it (`api.example.com` in `example.com`).
fn in_domain(host: &str, name: &str) -> bool {
    host.strip_suffix(name)
        .is_some_and(|head| head.is_empty() || head.ends_with('.'))
}

fn in_network(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_match_themselves_and_their_subdomains_only() {
        for list in ["example.com", ".example.com", "*.example.com", "EXAMPLE.com."] {
            let no = NoProxy::parse(list);
            assert_eq!(no.matching("example.com", 443), Some(list), "{list}");
            assert!(no.matching("api.example.com", 443).is_some(), "{list}");
            assert!(no.matching("API.Example.COM.", 443).is_some(), "{list}");
            assert_eq!(no.matching("badexample.com", 443), None, "{list}");
            assert_eq!(no.matching("example.com.evil.net", 443), None, "{list}");
        }
    }

    #[test]
    fn ip_addresses_networks_and_ports() {
        let no = NoProxy::parse("10.1.2.3, 192.168.0.0/16,[::1]:8443 ,fd00::/8,hooks.corp:8080");
        assert_eq!(no.matching("10.1.2.3", 443), Some("10.1.2.3"));
        assert_eq!(no.matching("10.1.2.4", 443), None);
        assert_eq!(no.matching("192.168.44.5", 80), Some("192.168.0.0/16"));
        assert_eq!(no.matching("192.169.0.1", 80), None);
        assert_eq!(no.matching("[::1]", 8443), Some("[::1]:8443"));
        assert_eq!(no.matching("::1", 443), None, "the port must match");
        assert_eq!(no.matching("[fd12::7]", 443), Some("fd00::/8"));
        assert_eq!(no.matching("hooks.corp", 8080), Some("hooks.corp:8080"));
        assert_eq!(no.matching("hooks.corp", 443), None);
        assert_eq!(no.matching("10.1.2.3.example", 443), None, "a name is not an address");
    }

    #[test]
    fn star_matches_everything_and_junk_is_ignored() {
        assert!(NoProxy::parse("*").matching("api.nicecxone.com", 443).is_some());
        let no = NoProxy::parse(" , host:notaport, 1.2.3.0/40, [::1, .,  ok.example ");
        assert_eq!(no.entries.len(), 1, "{no:?}");
        assert!(no.matching("ok.example", 1).is_some());
        assert!(NoProxy::parse("").entries.is_empty());
    }

    #[test]
    fn a_bare_ipv6_address_is_not_split_at_its_colons() {
        let no = NoProxy::parse("2001:db8::5");
        assert_eq!(no.matching("[2001:db8::5]", 443), Some("2001:db8::5"));
    }
}
