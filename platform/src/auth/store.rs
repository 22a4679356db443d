//! Token and account rows.

use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{format_scopes, parse_scopes, Scope};
use crate::{db::DbError, ids, time_util::now_ms, Db};

#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

pub(crate) fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub async fn create_account(db: &Db, name: &str) -> Result<String, DbError> {
    let id = ids::new_uid();
    sqlx::query("INSERT INTO accounts (id, name, created_at) VALUES ($1, $2, $3)")
        .bind(&id)
        .bind(name)
        .bind(now_ms())
        .execute(db.pool())
        .await?;
    Ok(id)
}

/// Creates a token and returns `(token id, secret)`. The secret is returned only here.
/// `secret` may be supplied (bootstrap); otherwise a random one is generated.
pub async fn create_token(
    db: &Db,
    account_id: &str,
    name: &str,
    scopes: &[Scope],
    secret: Option<&str>,
) -> Result<(String, String), DbError> {
    let secret = secret
        .map(str::to_string)
        .unwrap_or_else(|| format!("mp_{}", ids::new_secret(32)));
    let id = ids::new_uid();
    sqlx::query(
        "INSERT INTO api_tokens (id, account_id, name, secret_sha256, scopes, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(account_id)
    .bind(name)
    .bind(hash_secret(&secret))
    .bind(format_scopes(scopes))
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok((id, secret))
}

/// `(token id, account id, scopes)` of a live token, or `None` for unknown or revoked ones.
pub async fn lookup_token(
    db: &Db,
    secret: &str,
) -> Result<Option<(String, String, Vec<Scope>)>, DbError> {
    let row = sqlx::query("SELECT id, account_id, scopes FROM api_tokens WHERE secret_sha256 = $1 AND revoked_at IS NULL")
        .bind(hash_secret(secret))
        .fetch_optional(db.pool())
        .await?;
    Ok(row.map(|row| {
        let scopes: String = row.get(2);
        (
            row.get(0),
            row.get(1),
            parse_scopes(&scopes).unwrap_or_default(),
        )
    }))
}

pub async fn list_tokens(db: &Db, account_id: &str) -> Result<Vec<TokenInfo>, DbError> {
    let rows = sqlx::query(
        "SELECT id, account_id, name, scopes, created_at, revoked_at FROM api_tokens WHERE account_id = $1 ORDER BY created_at, id",
    )
    .bind(account_id)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| TokenInfo {
            id: row.get(0),
            account_id: row.get(1),
            name: row.get(2),
            scopes: row
                .get::<String, _>(3)
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            created_at: row.get(4),
            revoked_at: row.get(5),
        })
        .collect())
}

/// Revokes a token of `account_id`; returns false if there was no such live token.
pub async fn revoke_token(db: &Db, account_id: &str, token_id: &str) -> Result<bool, DbError> {
    let done = sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND account_id = $3 AND revoked_at IS NULL")
        .bind(now_ms())
        .bind(token_id)
        .bind(account_id)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}

/// What the first start created.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub account_id: String,
    pub token_id: String,
    /// The token secret, to print once.
    pub token: String,
}

/// On an empty database, creates the default account and an all-scopes token. Several processes
/// starting at once on one database are safe: a unique marker row elects exactly one of them.
pub async fn bootstrap(db: &Db, token: Option<&str>) -> Result<Option<Bootstrap>, DbError> {
    let account_id = ids::new_uid();
    let mut tx = db.pool().begin().await?;
    let claimed = sqlx::query("INSERT INTO platform_meta (key, value) VALUES ('bootstrap_account', $1) ON CONFLICT (key) DO NOTHING")
        .bind(&account_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if claimed == 0 {
        tx.rollback().await?;
        return Ok(None);
    }
    sqlx::query("INSERT INTO accounts (id, name, created_at) VALUES ($1, 'default', $2)")
        .bind(&account_id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
    let secret = token
        .map(str::to_string)
        .unwrap_or_else(|| format!("mp_{}", ids::new_secret(32)));
    let token_id = ids::new_uid();
    sqlx::query(
        "INSERT INTO api_tokens (id, account_id, name, secret_sha256, scopes, created_at) VALUES ($1, $2, 'bootstrap', $3, $4, $5)",
    )
    .bind(&token_id)
    .bind(&account_id)
    .bind(hash_secret(&secret))
    .bind(format_scopes(&Scope::ALL))
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(Bootstrap {
        account_id,
        token_id,
        token: secret,
    }))
}

/// The default account created at bootstrap, if any.
pub async fn default_account(db: &Db) -> Result<Option<String>, DbError> {
    let row = sqlx::query("SELECT value FROM platform_meta WHERE key = 'bootstrap_account'")
        .fetch_optional(db.pool())
        .await?;
    Ok(row.map(|r| r.get(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(
            &format!("sqlite://{}/t.db?mode=rwc", dir.path().display()),
            4,
        )
        .await
        .unwrap();
        db.migrate().await.unwrap();
        (dir, db)
    }

    #[tokio::test]
    async fn bootstrap_runs_once_and_tokens_work_until_revoked() {
        let (_dir, db) = db().await;
        let first = bootstrap(&db, Some("given-token-123456"))
            .await
            .unwrap()
            .unwrap();
        assert!(bootstrap(&db, None).await.unwrap().is_none());
        assert_eq!(
            default_account(&db).await.unwrap().as_deref(),
            Some(first.account_id.as_str())
        );
        let (id, account, scopes) = lookup_token(&db, "given-token-123456")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (id.as_str(), account.as_str()),
            (first.token_id.as_str(), first.account_id.as_str())
        );
        assert_eq!(scopes.len(), Scope::ALL.len());

        let (tid, secret) = create_token(&db, &account, "ci", &[Scope::ImagesRead], None)
            .await
            .unwrap();
        assert!(secret.starts_with("mp_"));
        assert_eq!(
            lookup_token(&db, &secret).await.unwrap().unwrap().2,
            vec![Scope::ImagesRead]
        );
        assert!(!revoke_token(&db, "other-account", &tid).await.unwrap());
        assert!(revoke_token(&db, &account, &tid).await.unwrap());
        assert!(lookup_token(&db, &secret).await.unwrap().is_none());
        assert!(lookup_token(&db, "nonsense").await.unwrap().is_none());
        let listed = list_tokens(&db, &account).await.unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed.iter().any(|t| t.id == tid && t.revoked_at.is_some()));
    }
}
