//! TURN keys and revocations in the platform database.

use platform::{time_util::now_ms, Db};
use sqlx::Row;

use crate::credentials::KeyRing;

#[derive(Debug, Clone)]
pub struct TurnKey {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub secret: String,
    pub created_at: i64,
    pub modified_at: i64,
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<TurnKey, sqlx::Error> {
    Ok(TurnKey {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        name: row.try_get("name")?,
        secret: row.try_get("secret")?,
        created_at: row.try_get("created_at")?,
        modified_at: row.try_get("modified_at")?,
    })
}

const COLUMNS: &str = "id, account_id, name, secret, created_at, modified_at";

pub async fn insert_key(db: &Db, key: &TurnKey) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO turn_keys (id, account_id, name, secret, created_at, modified_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&key.id)
        .bind(&key.account_id)
        .bind(&key.name)
        .bind(&key.secret)
        .bind(key.created_at)
        .bind(key.modified_at)
        .execute(db.pool())
        .await?;
    Ok(())
}

pub async fn list_keys(db: &Db, account_id: &str) -> Result<Vec<TurnKey>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM turn_keys WHERE account_id = $1 ORDER BY created_at, id"
    ))
    .bind(account_id)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// A key by id alone (the credentials API names no account).
pub async fn get_key(db: &Db, key_id: &str) -> Result<Option<TurnKey>, sqlx::Error> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM turn_keys WHERE id = $1"))
        .bind(key_id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn rename_key(
    db: &Db,
    account_id: &str,
    key_id: &str,
    name: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE turn_keys SET name = $1, modified_at = $2 WHERE id = $3 AND account_id = $4",
    )
    .bind(name)
    .bind(now_ms())
    .bind(key_id)
    .bind(account_id)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() > 0)
}

pub async fn delete_key(db: &Db, account_id: &str, key_id: &str) -> Result<bool, sqlx::Error> {
    let mut tx = db.pool().begin().await?;
    sqlx::query("DELETE FROM turn_revoked_credentials WHERE key_id = $1")
        .bind(key_id)
        .execute(&mut *tx)
        .await?;
    let done = sqlx::query("DELETE FROM turn_keys WHERE id = $1 AND account_id = $2")
        .bind(key_id)
        .bind(account_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected() > 0)
}

pub async fn revoke(
    db: &Db,
    key_id: &str,
    username: &str,
    expires_at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO turn_revoked_credentials (key_id, username, expires_at, revoked_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (key_id, username) DO NOTHING",
    )
    .bind(key_id)
    .bind(username)
    .bind(expires_at_ms)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Reads every key and every still-relevant revocation; prunes revocations of expired usernames.
pub async fn load_keyring(db: &Db) -> Result<KeyRing, sqlx::Error> {
    let now = now_ms();
    sqlx::query("DELETE FROM turn_revoked_credentials WHERE expires_at < $1")
        .bind(now)
        .execute(db.pool())
        .await?;
    let mut ring = KeyRing::new();
    for row in sqlx::query("SELECT id, account_id, secret FROM turn_keys")
        .fetch_all(db.pool())
        .await?
    {
        let (id, account_id, secret): (String, String, String) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        ring.insert_key(&id, &account_id, &secret);
    }
    for row in sqlx::query("SELECT key_id, username FROM turn_revoked_credentials")
        .fetch_all(db.pool())
        .await?
    {
        let (key_id, username): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        ring.revoke(&key_id, &username);
    }
    Ok(ring)
}
