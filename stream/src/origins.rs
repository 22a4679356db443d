//! `recording.allowedOrigins` of a live input: which sites may play its broadcasts and
//! recordings in a browser. Entries are hostnames as in Cloudflare Stream (`example.com`,
//! `*.example.com`, or `*` for any); a browser request whose `Origin` names another host is
//! refused. Requests without `Origin` (native players, ffmpeg, server-side fetches) are not
//! browsers embedding the video and pass: this guards against hotlinking, it is not access control.

const MAX_ENTRIES: usize = 50;

/// Checks and normalizes (lowercase) the entries of `allowedOrigins`.
pub fn validate(entries: &[String]) -> Result<Vec<String>, String> {
    if entries.len() > MAX_ENTRIES {
        return Err(format!(
            "recording.allowedOrigins may list at most {MAX_ENTRIES} hostnames"
        ));
    }
    entries
        .iter()
        .map(|entry| {
            let host = entry.trim().to_ascii_lowercase();
            let bare = host.strip_prefix("*.").unwrap_or(&host);
            let ok = host == "*"
                || (!bare.is_empty()
                    && bare.len() <= 253
                    && bare.split('.').all(|label| {
                        !label.is_empty()
                            && label.len() <= 63
                            && label
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    }));
            if ok {
                Ok(host)
            } else {
                Err(format!(
                    "recording.allowedOrigins: {entry:?} is not a hostname such as example.com or *.example.com"
                ))
            }
        })
        .collect()
}

/// The host of an `Origin` header value (`https://a.example.com:8443` → `a.example.com`).
fn origin_host(origin: &str) -> Option<String> {
    let (_, rest) = origin.split_once("://")?;
    let host = match rest.strip_prefix('[') {
        // IPv6 literal: keep the brackets off, drop the port.
        Some(v6) => v6.split_once(']')?.0,
        None => rest.split(':').next()?,
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// Whether a browser request with this `Origin` may play media guarded by `allowed`
/// (an empty list allows every origin). `Origin: null` (sandboxed frames, files) is refused
/// when a list is set.
pub fn allows(allowed: &[String], origin: &str) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some(host) = origin_host(origin) else {
        return false;
    };
    allowed.iter().any(|entry| {
        entry == "*"
            || *entry == host
            || entry
                .strip_prefix("*.")
                .is_some_and(|domain| host.ends_with(&format!(".{domain}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(v: &[&str]) -> Vec<String> {
        validate(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn hosts_and_wildcards_match_the_origin_host() {
        let allowed = list(&["Example.com", "*.cdn.example.org"]);
        assert!(allows(&allowed, "https://example.com"));
        assert!(allows(&allowed, "http://example.com:8080"));
        assert!(allows(&allowed, "https://a.b.cdn.example.org"));
        assert!(
            !allows(&allowed, "https://cdn.example.org"),
            "*. needs a subdomain"
        );
        assert!(!allows(&allowed, "https://evilexample.com"));
        assert!(!allows(&allowed, "https://example.com.evil.net"));
        assert!(!allows(&allowed, "null"));
        assert!(allows(&[], "https://anything.example"));
        assert!(allows(&list(&["*"]), "https://anything.example"));
        assert!(allows(&list(&["127.0.0.1"]), "http://127.0.0.1:4000"));
    }

    #[test]
    fn entries_must_be_hostnames() {
        for bad in [
            "https://example.com",
            "example.com/path",
            "",
            "*.",
            "a..b",
            "ex ample.com",
        ] {
            assert!(validate(&[bad.to_string()]).is_err(), "{bad}");
        }
        assert!(validate(&vec!["a.example".to_string(); 51]).is_err());
    }
}
