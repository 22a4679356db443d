//! Which peer addresses a relay may talk to. Relaying into loopback, private or link-local ranges
//! would let any credential holder reach services behind the server, so they are denied unless
//! the operator allows them.

use std::net::IpAddr;

#[derive(Debug, Clone, Copy, Default)]
pub struct PeerPolicy {
    pub allow_loopback: bool,
    pub allow_private: bool,
}

impl PeerPolicy {
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        if ip.is_unspecified() || ip.is_multicast() {
            return false;
        }
        match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                if v4.is_broadcast() || o[0] == 0 {
                    return false;
                }
                if v4.is_loopback() {
                    return self.allow_loopback;
                }
                // 10/8, 172.16/12, 192.168/16, 169.254/16 link-local, 100.64/10 shared (CGNAT).
                let private = v4.is_private()
                    || v4.is_link_local()
                    || (o[0] == 100 && (64..128).contains(&o[1]));
                !private || self.allow_private
            }
            IpAddr::V6(v6) => {
                let seg = v6.segments();
                if v6.is_loopback() {
                    return self.allow_loopback;
                }
                // fc00::/7 unique local, fe80::/10 link-local.
                let private = (seg[0] & 0xfe00) == 0xfc00 || (seg[0] & 0xffc0) == 0xfe80;
                !private || self.allow_private
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn denies_internal_ranges_by_default() {
        let policy = PeerPolicy::default();
        for denied in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::",
        ] {
            assert!(!policy.permits(ip(denied)), "{denied} must be denied");
        }
        for allowed in ["8.8.8.8", "192.0.2.10", "2001:db8::1", "172.32.0.1"] {
            assert!(policy.permits(ip(allowed)), "{allowed} must be allowed");
        }
    }

    #[test]
    fn flags_open_their_ranges_only() {
        let loopback = PeerPolicy {
            allow_loopback: true,
            allow_private: false,
        };
        assert!(loopback.permits(ip("127.0.0.1")));
        assert!(loopback.permits(ip("::1")));
        assert!(!loopback.permits(ip("10.0.0.1")));
        let private = PeerPolicy {
            allow_loopback: false,
            allow_private: true,
        };
        assert!(private.permits(ip("10.0.0.1")));
        assert!(!private.permits(ip("127.0.0.1")));
        assert!(!private.permits(ip("0.0.0.0")));
    }
}
