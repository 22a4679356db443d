//! Accounts and scoped API tokens.
//!
//! A token is an opaque random string shown once; the database keeps only its SHA-256, so a leaked
//! database does not leak usable tokens. Each token carries scopes (`images:write`, `stream:read`,
//! …, `admin`) and belongs to one account; management routes name the account in the path and
//! [`Caller::require`] checks both.

mod extract;
mod store;

pub use extract::Caller;
pub use store::{
    bootstrap, create_account, create_token, default_account, list_tokens, lookup_token,
    revoke_token, Bootstrap, TokenInfo,
};

use std::{fmt, str::FromStr};

/// What a token may do. `Write` implies `Read` of the same product; `Admin` implies everything,
/// including managing tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    CallsRead,
    CallsWrite,
    StreamRead,
    StreamWrite,
    ImagesRead,
    ImagesWrite,
    BillingRead,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 8] = [
        Scope::CallsRead,
        Scope::CallsWrite,
        Scope::StreamRead,
        Scope::StreamWrite,
        Scope::ImagesRead,
        Scope::ImagesWrite,
        Scope::BillingRead,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::CallsRead => "calls:read",
            Scope::CallsWrite => "calls:write",
            Scope::StreamRead => "stream:read",
            Scope::StreamWrite => "stream:write",
            Scope::ImagesRead => "images:read",
            Scope::ImagesWrite => "images:write",
            Scope::BillingRead => "billing:read",
            Scope::Admin => "admin",
        }
    }

    /// True if a token holding `self` may act where `needed` is required.
    pub fn grants(self, needed: Scope) -> bool {
        self == needed
            || self == Scope::Admin
            || matches!(
                (self, needed),
                (Scope::CallsWrite, Scope::CallsRead)
                    | (Scope::StreamWrite, Scope::StreamRead)
                    | (Scope::ImagesWrite, Scope::ImagesRead)
            )
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown scope {s:?} (known: {})",
                    Scope::ALL.map(Scope::as_str).join(", ")
                )
            })
    }
}

pub fn parse_scopes(text: &str) -> Result<Vec<Scope>, String> {
    let mut scopes = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(Scope::from_str)
        .collect::<Result<Vec<_>, _>>()?;
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() {
        return Err("at least one scope is required".into());
    }
    Ok(scopes)
}

pub fn format_scopes(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_implies_read_of_same_product_only() {
        assert!(Scope::ImagesWrite.grants(Scope::ImagesRead));
        assert!(!Scope::ImagesWrite.grants(Scope::StreamRead));
        assert!(!Scope::ImagesRead.grants(Scope::ImagesWrite));
        assert!(Scope::Admin.grants(Scope::BillingRead));
    }

    #[test]
    fn scopes_parse_and_format() {
        assert_eq!(
            parse_scopes("images:write, stream:read").unwrap(),
            vec![Scope::StreamRead, Scope::ImagesWrite]
        );
        assert!(parse_scopes("images:delete").is_err());
        assert!(parse_scopes("").is_err());
        assert_eq!(
            format_scopes(&[Scope::CallsRead, Scope::Admin]),
            "calls:read,admin"
        );
    }
}
