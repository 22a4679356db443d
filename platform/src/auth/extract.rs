//! The axum extractor that authenticates a request by its bearer token.

use axum::{
    extract::{FromRef, FromRequestParts},
    http::{header::AUTHORIZATION, request::Parts},
};

use super::{lookup_token, Scope};
use crate::{ApiError, Platform};

/// An authenticated API caller. Extracting it fails with 401 for a missing, unknown or revoked
/// token; handlers then call [`Caller::require`] with the path's account id and the scope needed.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: String,
    pub account_id: String,
    pub scopes: Vec<Scope>,
}

impl Caller {
    /// 403 unless the token belongs to `account_id` and holds a scope granting `scope`.
    /// A token of another account gets the same answer as a missing scope, so account ids cannot
    /// be probed.
    pub fn require(&self, account_id: &str, scope: Scope) -> Result<(), ApiError> {
        if self.account_id != account_id {
            return Err(ApiError::forbidden(
                "this token may not act on that account",
            ));
        }
        self.require_scope(scope)
    }

    pub fn require_scope(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.iter().any(|held| held.grants(scope)) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this token lacks the {scope} scope"
            )))
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header, if present and well formed.
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl<S> FromRequestParts<S> for Caller
where
    Platform: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts).ok_or_else(ApiError::missing_token)?;
        let platform = Platform::from_ref(state);
        match lookup_token(&platform.db, token).await? {
            Some((token_id, account_id, scopes)) => {
                tracing::Span::current().record("account_id", account_id.as_str());
                Ok(Caller {
                    token_id,
                    account_id,
                    scopes,
                })
            }
            None => Err(ApiError::invalid_token()),
        }
    }
}
