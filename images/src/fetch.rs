//! Remote image fetches (`/cdn-cgi/image/.../https://…` and upload by `url`) with an SSRF guard:
//! the host is resolved here, every address must be public (no loopback, private, link-local,
//! multicast, CGNAT, documentation or reserved ranges; loopback only when a test config allows it),
//! the connection is pinned to the checked address (no second DNS answer can sneak in), redirects
//! are followed by hand and checked the same way, and bytes and time are capped.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use bytes::Bytes;
use futures::StreamExt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("invalid source URL: {0}")]
    InvalidUrl(String),
    #[error("the origin {0} is not on the allow-list")]
    OriginNotAllowed(String),
    #[error("the source resolves to a forbidden address ({0})")]
    ForbiddenAddress(IpAddr),
    #[error("the source could not be fetched: {0}")]
    Upstream(String),
    #[error("the source is larger than {0} bytes")]
    TooLarge(u64),
    #[error("the source took too long to fetch")]
    Timeout,
}

#[derive(Debug, Clone)]
pub struct FetchPolicy {
    /// `scheme://host[:port]` origins allowed; `None` = any public origin (upload by URL).
    pub allowed_origins: Option<Vec<String>>,
    pub allow_loopback: bool,
    pub max_bytes: u64,
    pub timeout: Duration,
    pub max_redirects: usize,
}

/// The origin string (`scheme://host[:port]`, default ports omitted) used for allow-list checks.
pub fn origin_of(url: &reqwest::Url) -> Option<String> {
    let host = url.host_str()?.to_ascii_lowercase();
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    Some(match url.port() {
        Some(port) => format!("{}://{}:{}", url.scheme(), host, port),
        None => format!("{}://{}", url.scheme(), host),
    })
}

/// True for addresses a server-side fetch must never reach.
pub fn is_forbidden(ip: IpAddr, allow_loopback: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4, allow_loopback),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4, allow_loopback);
            }
            if v6.is_loopback() {
                return !allow_loopback;
            }
            let first = v6.segments()[0];
            v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
                || first == 0x2001 && v6.segments()[1] == 0x0db8 // documentation
                || first == 0x0064 && v6.segments()[1] == 0xff9b // NAT64 maps onto v4 space
                || v6 == Ipv6Addr::from([0, 0, 0, 0, 0, 0, 0, 0])
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr, allow_loopback: bool) -> bool {
    if ip.is_loopback() {
        return !allow_loopback;
    }
    let [a, b, c, _] = ip.octets();
    ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_unspecified()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // CGNAT
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240
}

/// Parses and checks a URL against the policy's scheme and origin rules (no network).
pub fn check_url(text: &str, policy: &FetchPolicy) -> Result<reqwest::Url, FetchError> {
    let url = reqwest::Url::parse(text).map_err(|e| FetchError::InvalidUrl(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FetchError::InvalidUrl(
            "only http and https sources are fetched".into(),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(FetchError::InvalidUrl(
            "credentials in source URLs are refused".into(),
        ));
    }
    let origin = origin_of(&url).ok_or_else(|| FetchError::InvalidUrl("no host".into()))?;
    if let Some(allowed) = &policy.allowed_origins {
        if !allowed.contains(&origin) {
            return Err(FetchError::OriginNotAllowed(origin));
        }
    }
    Ok(url)
}

async fn resolve_checked(
    url: &reqwest::Url,
    policy: &FetchPolicy,
) -> Result<SocketAddr, FetchError> {
    let host = url
        .host_str()
        .ok_or_else(|| FetchError::InvalidUrl("no host".into()))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| FetchError::Upstream(format!("DNS: {e}")))?
        .collect();
    // Every answer must be allowed: refusing on any bad answer defeats mixed-record tricks.
    if let Some(bad) = addrs
        .iter()
        .find(|a| is_forbidden(a.ip(), policy.allow_loopback))
    {
        return Err(FetchError::ForbiddenAddress(bad.ip()));
    }
    addrs
        .first()
        .copied()
        .ok_or_else(|| FetchError::Upstream("DNS: no addresses".into()))
}

/// Fetches `url` under `policy`. Returns the body and the final URL.
pub async fn fetch(url: &str, policy: &FetchPolicy) -> Result<(Bytes, reqwest::Url), FetchError> {
    match tokio::time::timeout(policy.timeout, fetch_inner(url, policy)).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Timeout),
    }
}

fn upstream(e: reqwest::Error) -> FetchError {
    if e.is_timeout() {
        FetchError::Timeout
    } else {
        FetchError::Upstream(e.without_url().to_string())
    }
}

async fn fetch_inner(url: &str, policy: &FetchPolicy) -> Result<(Bytes, reqwest::Url), FetchError> {
    let mut url = check_url(url, policy)?;
    for _ in 0..=policy.max_redirects {
        let addr = resolve_checked(&url, policy).await?;
        let host = url
            .host_str()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .resolve(&host, addr)
            .no_proxy()
            .timeout(policy.timeout)
            .user_agent("mediaplane-images/1")
            .build()
            .map_err(|e| FetchError::Upstream(e.to_string()))?;
        let response = client.get(url.clone()).send().await.map_err(upstream)?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    FetchError::Upstream(format!("redirect {status} without Location"))
                })?;
            let next = url
                .join(location)
                .map_err(|e| FetchError::InvalidUrl(e.to_string()))?;
            url = check_url(next.as_str(), policy)?;
            continue;
        }
        if !status.is_success() {
            return Err(FetchError::Upstream(format!("origin answered {status}")));
        }
        if response
            .content_length()
            .is_some_and(|len| len > policy.max_bytes)
        {
            return Err(FetchError::TooLarge(policy.max_bytes));
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(upstream)?;
            if body.len() as u64 + chunk.len() as u64 > policy.max_bytes {
                return Err(FetchError::TooLarge(policy.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        return Ok((Bytes::from(body), url));
    }
    Err(FetchError::Upstream("too many redirects".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_ranges() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "224.0.0.1",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
            "ff02::1",
            "255.255.255.255",
        ] {
            assert!(is_forbidden(ip.parse().unwrap(), false), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
            assert!(!is_forbidden(ip.parse().unwrap(), false), "{ip}");
        }
        assert!(!is_forbidden("127.0.0.1".parse().unwrap(), true));
        assert!(
            is_forbidden("10.0.0.1".parse().unwrap(), true),
            "allowing loopback allows nothing else"
        );
    }

    #[test]
    fn origins_are_checked_before_any_network() {
        let policy = FetchPolicy {
            allowed_origins: Some(vec!["https://img.example.com".into()]),
            allow_loopback: false,
            max_bytes: 10,
            timeout: Duration::from_secs(1),
            max_redirects: 1,
        };
        assert!(check_url("https://img.example.com/a.jpg", &policy).is_ok());
        assert!(matches!(
            check_url("https://evil.example.com/a.jpg", &policy),
            Err(FetchError::OriginNotAllowed(_))
        ));
        assert!(matches!(
            check_url("https://img.example.com:8443/a.jpg", &policy),
            Err(FetchError::OriginNotAllowed(_))
        ));
        assert!(matches!(
            check_url("file:///etc/passwd", &policy),
            Err(FetchError::InvalidUrl(_))
        ));
        assert!(matches!(
            check_url("https://u:p@img.example.com/a.jpg", &policy),
            Err(FetchError::InvalidUrl(_))
        ));
    }

    #[tokio::test]
    async fn loopback_is_refused_without_connecting() {
        let policy = FetchPolicy {
            allowed_origins: None,
            allow_loopback: false,
            max_bytes: 10,
            timeout: Duration::from_secs(2),
            max_redirects: 0,
        };
        let err = fetch("http://127.0.0.1:9/x.jpg", &policy)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            FetchError::ForbiddenAddress("127.0.0.1".parse().unwrap())
        );
        let err = fetch("http://localhost:9/x.jpg", &policy)
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::ForbiddenAddress(_)), "{err:?}");
    }
}
