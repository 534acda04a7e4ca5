//! Proxy selection with the semantics containers tools (Go's `httpproxy`) have: `HTTPS_PROXY`
//! for https URLs, `HTTP_PROXY` for http URLs (lowercase variants too), `NO_PROXY` entries
//! (`*`, hosts, `.domain`/`domain` suffixes, `host:port`, IP addresses and CIDR ranges), and
//! loopback (`localhost`, 127.0.0.0/8, ::1) never proxied.

use std::net::IpAddr;

fn env(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}

/// The proxy URL to use for `scheme://host[:port]`, or `None` to connect directly.
pub fn proxy_for(scheme: &str, host_port: &str) -> Option<String> {
    let proxy = match scheme {
        "https" => env(&["HTTPS_PROXY", "https_proxy"]),
        _ => env(&["HTTP_PROXY", "http_proxy"]),
    }?;
    let no_proxy = env(&["NO_PROXY", "no_proxy"]).unwrap_or_default();
    if bypass(host_port, scheme, &no_proxy) {
        return None;
    }
    Some(if proxy.contains("://") {
        proxy
    } else {
        format!("http://{proxy}")
    })
}

fn split_host_port(hp: &str) -> (&str, Option<&str>) {
    if let Some(rest) = hp.strip_prefix('[') {
        if let Some((h, after)) = rest.split_once(']') {
            return (h, after.strip_prefix(':'));
        }
        return (hp, None);
    }
    match hp.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (hp, None),
    }
}

/// Whether `host_port` goes direct under `no_proxy` (loopback always does).
pub fn bypass(host_port: &str, scheme: &str, no_proxy: &str) -> bool {
    let (host, port) = split_host_port(host_port);
    let host = host.to_ascii_lowercase();
    let port = port.unwrap_or(if scheme == "https" { "443" } else { "80" });
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    let ip: Option<IpAddr> = host.parse().ok();
    if ip.is_some_and(|i| i.is_loopback()) {
        return true;
    }
    for entry in no_proxy.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if entry == "*" {
            return true;
        }
        if let Some((net, bits)) = entry.split_once('/') {
            if let (Some(ip), Ok(net), Ok(bits)) = (ip, net.parse::<IpAddr>(), bits.parse::<u32>())
                && in_cidr(ip, net, bits)
            {
                return true;
            }
            continue;
        }
        let (eh, ep) = split_host_port(entry);
        if ep.is_some_and(|p| p != port) {
            continue;
        }
        let eh = eh.to_ascii_lowercase();
        if let (Some(ip), Ok(eip)) = (ip, eh.parse::<IpAddr>()) {
            if ip == eip {
                return true;
            }
            continue;
        }
        let suffix = eh.trim_start_matches("*.").trim_start_matches('.');
        if host == suffix || host.ends_with(&format!(".{suffix}")) {
            return true;
        }
    }
    false
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u32) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            (u32::from(a) & mask) == (u32::from(n) & mask)
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            (u128::from(a) & mask) == (u128::from(n) & mask)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::bypass;

    #[test]
    fn loopback_is_never_proxied() {
        assert!(bypass("127.0.0.1:5000", "http", ""));
        assert!(bypass("127.1.2.3", "https", ""));
        assert!(bypass("[::1]:5000", "https", ""));
        assert!(bypass("localhost:5000", "http", ""));
        assert!(!bypass("10.0.0.1:5000", "http", ""));
    }

    #[test]
    fn no_proxy_forms() {
        let np = "example.com, .corp.net,10.1.0.0/16,reg.io:5000,*.wild.org";
        assert!(bypass("example.com", "https", np));
        assert!(bypass("a.example.com:443", "https", np));
        assert!(!bypass("notexample.com", "https", np));
        assert!(bypass("x.corp.net", "https", np));
        assert!(bypass("10.1.200.3:5000", "http", np));
        assert!(!bypass("10.2.0.1", "http", np));
        assert!(bypass("reg.io:5000", "https", np));
        assert!(!bypass("reg.io", "https", np));
        assert!(bypass("a.wild.org", "https", np));
        assert!(bypass("anything", "https", "*"));
    }
}
