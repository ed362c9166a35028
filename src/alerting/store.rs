//! The alert store: every episode's latest state, its history of transitions, and the audit
//! trail of what people did (who, what, when, from where).
//!
//! SQLite by default (`<storage dir>/alerts.sqlite`, WAL), PostgreSQL for shared deployments
//! (`[alerting.store] kind = "postgres"`). Both keep the same three tables; times are
//! milliseconds since the epoch, the API shows them as RFC 3339.

use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::lifecycle::{AlertView, Transition};
use crate::model::Timestamp;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("alert store (sqlite {path}): {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("alert store (postgres): {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("alert store: a stored record does not decode: {0}")]
    Decode(String),
}

/// One entry of the audit trail.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: Timestamp,
    pub user: String,
    pub role: String,
    pub action: String,
    pub alert_id: String,
    /// The state before.
    pub from: String,
    /// The state after.
    pub to: String,
    pub note: Option<String>,
    /// The client's address (None for the system's own timers).
    pub peer: Option<String>,
}

/// One transition in an episode's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: Timestamp,
    pub transition: Transition,
    pub state: String,
    pub severity: String,
    pub rule: String,
    pub by: String,
    pub explanation: String,
}

/// A filter on the alert list.
#[derive(Clone, Debug, Default)]
pub struct AlertFilter {
    pub state: Option<String>,
    pub patient: Option<String>,
    pub bed: Option<String>,
    pub limit: usize,
}

pub enum AlertStore {
    Sqlite {
        path: String,
        conn: Mutex<rusqlite::Connection>,
    },
    Postgres(tokio_postgres::Client),
}

const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    patient TEXT NOT NULL,
    state TEXT NOT NULL,
    bed TEXT,
    updated_at INTEGER NOT NULL,
    view TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts(state);
CREATE TABLE IF NOT EXISTS alert_history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    entry TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_history_id ON alert_history(alert_id);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    user_name TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    note TEXT,
    peer TEXT
);
CREATE INDEX IF NOT EXISTS audit_alert ON audit(alert_id);
";

const PG_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    patient TEXT NOT NULL,
    state TEXT NOT NULL,
    bed TEXT,
    updated_at BIGINT NOT NULL,
    view TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts(state);
CREATE TABLE IF NOT EXISTS alert_history (
    seq BIGSERIAL PRIMARY KEY,
    alert_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    entry TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_history_id ON alert_history(alert_id);
CREATE TABLE IF NOT EXISTS audit (
    seq BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    user_name TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    note TEXT,
    peer TEXT
);
CREATE INDEX IF NOT EXISTS audit_alert ON audit(alert_id);
";

fn decode<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Decode(e.to_string()))
}

fn encode<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Decode(e.to_string()))
}

fn history_of(v: &AlertView) -> HistoryEntry {
    HistoryEntry {
        at: v.updated_at,
        transition: v.transition,
        state: v.state.as_str().into(),
        severity: v.severity.as_str().into(),
        rule: v.rule.clone(),
        by: v.by.clone(),
        explanation: v.explanation.clone(),
    }
}

fn limit_of(limit: usize) -> i64 {
    i64::try_from(if limit == 0 { 200 } else { limit.min(10_000) }).unwrap_or(200)
}

impl AlertStore {
    /// Opens (creating) a SQLite store; `:memory:` for one that lives with the process.
    pub fn sqlite(path: &Path) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        let err = |source| StoreError::Sqlite {
            path: shown.clone(),
            source,
        };
        let conn = if shown == ":memory:" {
            rusqlite::Connection::open_in_memory()
        } else {
            rusqlite::Connection::open(path)
        }
        .map_err(err)?;
        // Two alerter processes may share a file; a writer waits for the other.
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.execute_batch(SQLITE_SCHEMA).map_err(err)?;
        Ok(AlertStore::Sqlite {
            path: shown,
            conn: Mutex::new(conn),
        })
    }

    /// Connects to PostgreSQL (`postgres://user@host:port/db` or `host=.. user=..`) and
    /// creates the tables.
    pub async fn postgres(url: &str, password: Option<String>) -> Result<Self, StoreError> {
        let mut cfg: tokio_postgres::Config = url.parse()?;
        if let Some(p) = password {
            cfg.password(p);
        }
        let (client, connection) = cfg.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::error!(error = %e, "alert store: PostgreSQL connection lost");
            }
        });
        client.batch_execute(PG_SCHEMA).await?;
        Ok(AlertStore::Postgres(client))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            AlertStore::Sqlite { .. } => "sqlite",
            AlertStore::Postgres(_) => "postgres",
        }
    }

    fn with_sqlite<T>(
        path: &str,
        conn: &Mutex<rusqlite::Connection>,
        f: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut c).map_err(|source| StoreError::Sqlite {
            path: path.to_string(),
            source,
        })
    }

    /// Stores an episode's new state, its history entry and (for a person's action or a timer)
    /// the audit entry, in one transaction.
    pub async fn record(
        &self,
        v: &AlertView,
        audit: Option<&AuditEntry>,
    ) -> Result<(), StoreError> {
        let view = encode(v)?;
        let hist = encode(&history_of(v))?;
        match self {
            AlertStore::Sqlite { path, conn } => Self::with_sqlite(path, conn, |c| {
                let tx = c.transaction()?;
                tx.execute(
                    "INSERT INTO alerts (id, patient, state, bed, updated_at, view) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(id) DO UPDATE SET patient = ?2, state = ?3, bed = ?4, updated_at = ?5, view = ?6",
                    rusqlite::params![v.id, v.patient, v.state.as_str(), v.bed, v.updated_at.millis(), view],
                )?;
                tx.execute(
                    "INSERT INTO alert_history (alert_id, at, entry) VALUES (?1, ?2, ?3)",
                    rusqlite::params![v.id, v.updated_at.millis(), hist],
                )?;
                if let Some(a) = audit {
                    tx.execute(
                        "INSERT INTO audit (at, user_name, role, action, alert_id, from_state, to_state, note, peer)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                        rusqlite::params![a.at.millis(), a.user, a.role, a.action, a.alert_id, a.from, a.to, a.note, a.peer],
                    )?;
                }
                tx.commit()
            }),
            AlertStore::Postgres(c) => {
                // One statement per table inside a transaction block (the client is shared).
                let ms = v.updated_at.millis();
                c.batch_execute("BEGIN").await?;
                let r = async {
                    c.execute(
                        "INSERT INTO alerts (id, patient, state, bed, updated_at, view) VALUES ($1, $2, $3, $4, $5, $6)
                         ON CONFLICT (id) DO UPDATE SET patient = $2, state = $3, bed = $4, updated_at = $5, view = $6",
                        &[&v.id, &v.patient, &v.state.as_str(), &v.bed, &ms, &view],
                    )
                    .await?;
                    c.execute(
                        "INSERT INTO alert_history (alert_id, at, entry) VALUES ($1, $2, $3)",
                        &[&v.id, &ms, &hist],
                    )
                    .await?;
                    if let Some(a) = audit {
                        c.execute(
                            "INSERT INTO audit (at, user_name, role, action, alert_id, from_state, to_state, note, peer)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                            &[&a.at.millis(), &a.user, &a.role, &a.action, &a.alert_id, &a.from, &a.to, &a.note, &a.peer],
                        )
                        .await?;
                    }
                    Ok::<_, tokio_postgres::Error>(())
                }
                .await;
                match r {
                    Ok(()) => c.batch_execute("COMMIT").await?,
                    Err(e) => {
                        let _ = c.batch_execute("ROLLBACK").await;
                        return Err(e.into());
                    }
                }
                Ok(())
            }
        }
    }

    /// Episodes not resolved (reloaded into the lifecycle at start).
    pub async fn open_alerts(&self) -> Result<Vec<AlertView>, StoreError> {
        self.list(&AlertFilter {
            limit: 100_000,
            ..Default::default()
        })
        .await
        .map(|v| v.into_iter().filter(AlertView::is_open).collect())
    }

    /// Episodes, newest change first.
    pub async fn list(&self, f: &AlertFilter) -> Result<Vec<AlertView>, StoreError> {
        let limit = limit_of(f.limit);
        let rows: Vec<String> = match self {
            AlertStore::Sqlite { path, conn } => Self::with_sqlite(path, conn, |c| {
                let mut st = c.prepare(
                    "SELECT view FROM alerts WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR patient = ?2)
                     AND (?3 IS NULL OR bed = ?3) ORDER BY updated_at DESC, id LIMIT ?4",
                )?;
                let rows = st
                    .query_map(
                        rusqlite::params![f.state, f.patient, f.bed, limit],
                        |r| r.get::<_, String>(0),
                    )?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })?,
            AlertStore::Postgres(c) => c
                .query(
                    "SELECT view FROM alerts WHERE ($1::TEXT IS NULL OR state = $1) AND ($2::TEXT IS NULL OR patient = $2)
                     AND ($3::TEXT IS NULL OR bed = $3) ORDER BY updated_at DESC, id LIMIT $4",
                    &[&f.state, &f.patient, &f.bed, &limit],
                )
                .await?
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect(),
        };
        rows.iter().map(|s| decode(s)).collect()
    }

    /// One episode and its history, oldest first.
    pub async fn get(
        &self,
        id: &str,
    ) -> Result<Option<(AlertView, Vec<HistoryEntry>)>, StoreError> {
        let (view, hist): (Option<String>, Vec<String>) = match self {
            AlertStore::Sqlite { path, conn } => Self::with_sqlite(path, conn, |c| {
                let view = c
                    .query_row("SELECT view FROM alerts WHERE id = ?1", [id], |r| {
                        r.get::<_, String>(0)
                    })
                    .map(Some)
                    .or_else(|e| match e {
                        rusqlite::Error::QueryReturnedNoRows => Ok(None),
                        e => Err(e),
                    })?;
                let mut st =
                    c.prepare("SELECT entry FROM alert_history WHERE alert_id = ?1 ORDER BY seq")?;
                let hist = st
                    .query_map([id], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((view, hist))
            })?,
            AlertStore::Postgres(c) => {
                let view = c
                    .query_opt("SELECT view FROM alerts WHERE id = $1", &[&id])
                    .await?
                    .map(|r| r.get::<_, String>(0));
                let hist = c
                    .query(
                        "SELECT entry FROM alert_history WHERE alert_id = $1 ORDER BY seq",
                        &[&id],
                    )
                    .await?
                    .iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect();
                (view, hist)
            }
        };
        let Some(view) = view else {
            return Ok(None);
        };
        let hist = hist
            .iter()
            .map(|s| decode(s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some((decode(&view)?, hist)))
    }

    /// The audit trail, newest first; for one alert when `alert` is given.
    pub async fn audit(
        &self,
        alert: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = limit_of(limit);
        type Row = (
            i64,
            String,
            String,
            String,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Row> = match self {
            AlertStore::Sqlite { path, conn } => Self::with_sqlite(path, conn, |c| {
                let mut st = c.prepare(
                    "SELECT at, user_name, role, action, alert_id, from_state, to_state, note, peer FROM audit
                     WHERE (?1 IS NULL OR alert_id = ?1) ORDER BY seq DESC LIMIT ?2",
                )?;
                let rows = st
                    .query_map(rusqlite::params![alert, limit], |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                            r.get(7)?,
                            r.get(8)?,
                        ))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })?,
            AlertStore::Postgres(c) => c
                .query(
                    "SELECT at, user_name, role, action, alert_id, from_state, to_state, note, peer FROM audit
                     WHERE ($1::TEXT IS NULL OR alert_id = $1) ORDER BY seq DESC LIMIT $2",
                    &[&alert, &limit],
                )
                .await?
                .iter()
                .map(|r| {
                    (
                        r.get(0),
                        r.get(1),
                        r.get(2),
                        r.get(3),
                        r.get(4),
                        r.get(5),
                        r.get(6),
                        r.get(7),
                        r.get(8),
                    )
                })
                .collect(),
        };
        Ok(rows
            .into_iter()
            .map(
                |(at, user, role, action, alert_id, from, to, note, peer)| AuditEntry {
                    at: Timestamp(at),
                    user,
                    role,
                    action,
                    alert_id,
                    from,
                    to,
                    note,
                    peer,
                },
            )
            .collect())
    }
}
