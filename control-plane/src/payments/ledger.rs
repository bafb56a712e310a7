//! The double-entry ledger. Every money movement is one posting: entries that sum to zero,
//! written in the caller's transaction together with the change that caused it, under a
//! unique key (`donation:<id>:credit`, `refund:<provider id>`, ...) so a replayed cause
//! posts nothing the second time. An account's balance is kept beside its entries and
//! [`reconcile`] proves the two agree.
//!
//! Accounts, per currency: `donor_funds` (money taken from donors; negative), `platform_fee`,
//! `streamer:<user id>` (what the platform owes the streamer; may go negative after a
//! chargeback and is netted against later payouts), `refunds`, `chargebacks`,
//! `payouts_pending` and `payouts` (paid out).

use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;

use crate::db::Db;
use crate::error::ApiError;
use crate::model::now_ms;
use crate::secrets::new_id;

pub(crate) type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// A ledger account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Account<'a> {
    DonorFunds,
    PlatformFee,
    Streamer(&'a str),
    Refunds,
    Chargebacks,
    PayoutsPending,
    Payouts,
}

impl Account<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Account::DonorFunds => "donor_funds",
            Account::PlatformFee => "platform_fee",
            Account::Streamer(_) => "streamer",
            Account::Refunds => "refunds",
            Account::Chargebacks => "chargebacks",
            Account::PayoutsPending => "payouts_pending",
            Account::Payouts => "payouts",
        }
    }

    /// Platform-wide accounts are touched by every posting: their rows are locked last, so
    /// concurrent postings hold them only for the commit.
    fn shared(&self) -> bool {
        !matches!(self, Account::Streamer(_))
    }

    pub(crate) fn id(&self, currency: &str) -> String {
        match self {
            Account::Streamer(user) => format!("streamer:{user}:{currency}"),
            other => format!("{}:{currency}", other.kind()),
        }
    }
}

fn db_err(e: sqlx::Error) -> ApiError {
    ApiError::from(crate::db::RepoError::Db(e))
}

/// Posts `entries` under `key` once, in `tx`. Returns `false` (and writes nothing) when the
/// key was posted before. The entries must sum to zero.
pub(crate) async fn post(
    tx: &mut Tx,
    key: &str,
    kind: &str,
    reference: &str,
    currency: &str,
    entries: &[(Account<'_>, i64)],
) -> Result<bool, ApiError> {
    let sum: i128 = entries.iter().map(|(_, a)| i128::from(*a)).sum();
    if sum != 0 || entries.is_empty() {
        tracing::error!(key, "unbalanced posting refused");
        return Err(ApiError::new(
            crate::error::StreamingErrorCode::Internal,
            "unbalanced ledger posting",
        ));
    }
    let id = new_id();
    let now = now_ms();
    let inserted = sqlx::query(
        "INSERT INTO ledger_postings (id, posting_key, kind, reference, currency, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (posting_key) DO NOTHING",
    )
    .bind(&id)
    .bind(key)
    .bind(kind)
    .bind(reference)
    .bind(currency)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    if inserted.rows_affected() == 0 {
        return Ok(false);
    }
    // Own accounts first, shared ones last (shortest lock on the hot rows).
    let mut ordered: Vec<&(Account<'_>, i64)> = entries.iter().filter(|(_, a)| *a != 0).collect();
    ordered.sort_by_key(|(acc, _)| (acc.shared(), acc.id(currency)));
    for (account, amount) in &ordered {
        sqlx::query(
            "INSERT INTO ledger_entries (posting_id, account_id, amount) VALUES ($1, $2, $3)",
        )
        .bind(&id)
        .bind(account.id(currency))
        .bind(*amount)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    }
    for (account, amount) in ordered {
        let owner = match account {
            Account::Streamer(u) => Some(*u),
            _ => None,
        };
        sqlx::query(
            "INSERT INTO ledger_accounts (id, kind, owner_id, currency, balance, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET \
             balance = ledger_accounts.balance + $5, updated_at = $6",
        )
        .bind(account.id(currency))
        .bind(account.kind())
        .bind(owner)
        .bind(currency)
        .bind(*amount)
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    }
    Ok(true)
}

/// A streamer's balance in one currency (0 when nothing was ever posted).
pub(crate) async fn balance(
    db: &Db,
    account: &Account<'_>,
    currency: &str,
) -> Result<i64, ApiError> {
    let row = sqlx::query("SELECT balance FROM ledger_accounts WHERE id = $1")
        .bind(account.id(currency))
        .fetch_optional(db.pool())
        .await
        .map_err(db_err)?;
    Ok(row
        .map(|r| r.try_get::<i64, _>(0))
        .transpose()
        .map_err(db_err)?
        .unwrap_or(0))
}

/// The balance inside a transaction, locking the streamer's account row (PostgreSQL) so
/// two payouts cannot both spend it.
pub(crate) async fn balance_for_update(
    tx: &mut Tx,
    sqlite: bool,
    account: &Account<'_>,
    currency: &str,
) -> Result<i64, ApiError> {
    let q = if sqlite {
        "SELECT balance FROM ledger_accounts WHERE id = $1"
    } else {
        "SELECT balance FROM ledger_accounts WHERE id = $1 FOR UPDATE"
    };
    let row = sqlx::query(q)
        .bind(account.id(currency))
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err)?;
    Ok(row
        .map(|r| r.try_get::<i64, _>(0))
        .transpose()
        .map_err(db_err)?
        .unwrap_or(0))
}

/// What [`reconcile`] found.
#[derive(Clone, Debug, Default, Serialize, ToSchema)]
pub struct Reconciliation {
    /// Accounts checked.
    pub accounts: i64,
    /// Postings checked.
    pub postings: i64,
    /// Entries checked.
    pub entries: i64,
    /// Accounts whose kept balance differs from the sum of their entries.
    pub mismatched_accounts: Vec<String>,
    /// Postings whose entries do not sum to zero.
    pub unbalanced_postings: Vec<String>,
    /// Completed or refunded donations without exactly one credit posting, and refunded
    /// ones without their reversal.
    pub donations_without_postings: Vec<String>,
    /// The sum over every account (zero in a sound ledger).
    pub total: i64,
}

impl Reconciliation {
    /// Whether every check passed.
    pub fn ok(&self) -> bool {
        self.mismatched_accounts.is_empty()
            && self.unbalanced_postings.is_empty()
            && self.donations_without_postings.is_empty()
            && self.total == 0
    }
}

/// Proves every balance equals the sum of its entries, every posting sums to zero, and
/// every settled donation has its postings.
pub async fn reconcile(db: &Db) -> Result<Reconciliation, ApiError> {
    let pool = db.pool();
    let mut r = Reconciliation::default();
    let mismatched = sqlx::query(
        "SELECT a.id FROM ledger_accounts a LEFT JOIN \
         (SELECT account_id, SUM(amount) AS s FROM ledger_entries GROUP BY account_id) e \
         ON e.account_id = a.id WHERE a.balance <> COALESCE(e.s, 0) \
         UNION SELECT e.account_id FROM ledger_entries e LEFT JOIN ledger_accounts a ON a.id = e.account_id \
         WHERE a.id IS NULL",
    )
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    r.mismatched_accounts = mismatched
        .iter()
        .map(|row| row.try_get::<String, _>(0))
        .collect::<Result<_, _>>()
        .map_err(db_err)?;
    let unbalanced = sqlx::query(
        "SELECT p.posting_key FROM ledger_postings p LEFT JOIN ledger_entries e ON e.posting_id = p.id \
         GROUP BY p.id, p.posting_key HAVING COALESCE(SUM(e.amount), 0) <> 0 OR COUNT(e.account_id) < 2",
    )
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    r.unbalanced_postings = unbalanced
        .iter()
        .map(|row| row.try_get::<String, _>(0))
        .collect::<Result<_, _>>()
        .map_err(db_err)?;
    let missing = sqlx::query(
        "SELECT d.id FROM donations d WHERE \
         (d.status IN ('completed', 'refunded') AND \
          (SELECT COUNT(*) FROM ledger_postings p WHERE p.posting_key = 'donation:' || d.id || ':credit') <> 1) \
         OR (d.status = 'refunded' AND \
          (SELECT COUNT(*) FROM ledger_postings p WHERE p.reference = d.id AND p.kind IN ('refund', 'chargeback')) <> 1) \
         OR (d.status IN ('pending', 'failed') AND \
          (SELECT COUNT(*) FROM ledger_postings p WHERE p.reference = d.id) <> 0)",
    )
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    r.donations_without_postings = missing
        .iter()
        .map(|row| row.try_get::<String, _>(0))
        .collect::<Result<_, _>>()
        .map_err(db_err)?;
    let (accounts, total): (i64, Option<i64>) =
        sqlx::query_as("SELECT COUNT(*), CAST(SUM(balance) AS BIGINT) FROM ledger_accounts")
            .fetch_one(pool)
            .await
            .map_err(db_err)?;
    let (postings,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM ledger_postings")
        .fetch_one(pool)
        .await
        .map_err(db_err)?;
    let (entries,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM ledger_entries")
        .fetch_one(pool)
        .await
        .map_err(db_err)?;
    r.accounts = accounts;
    r.total = total.unwrap_or(0);
    r.postings = postings;
    r.entries = entries;
    Ok(r)
}
