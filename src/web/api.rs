//! The alert API (docs/api.md). Every route takes a [`Principal`] (401 without one) and checks
//! its role: viewers read, clinicians also acknowledge, escalate and resolve.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::auth::{ApiError, Principal, Role};
use super::WebState;
use crate::alerting::delivery::SinkStatus;
use crate::alerting::service::ServiceError;
use crate::alerting::store::{AlertFilter, HistoryEntry, StoreError};
use crate::alerting::{Action, AlertService, AlertView, AuditEntry, Burden};

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/api/alerts", get(list_alerts))
        .route("/api/alerts/{id}", get(get_alert))
        .route("/api/alerts/{id}/acknowledge", post(acknowledge))
        .route("/api/alerts/{id}/escalate", post(escalate))
        .route("/api/alerts/{id}/resolve", post(resolve))
        .route("/api/audit", get(audit))
        .route("/api/burden", get(burden))
        .route("/api/sinks", get(sinks))
}

/// The client's address, when the server was started with connection info.
pub struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

fn service(s: &WebState) -> Result<&Arc<AlertService>, ApiError> {
    s.alerts.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this process raises no alerts (no alerter role)",
        )
    })
}

fn store_error(e: StoreError) -> ApiError {
    tracing::error!(error = %e, "alert store");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    pub state: Option<String>,
    pub patient: Option<String>,
    pub bed: Option<String>,
    pub limit: Option<usize>,
}

const STATES: [&str; 5] = [
    "active",
    "acknowledged",
    "escalated",
    "resolved",
    "suppressed",
];

/// `GET /api/alerts?state=&patient=&bed=&limit=` (viewer): newest change first.
async fn list_alerts(
    State(s): State<WebState>,
    p: Principal,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<AlertView>>, ApiError> {
    p.require(Role::Viewer)?;
    if let Some(st) = &q.state {
        if !STATES.contains(&st.as_str()) {
            return Err(ApiError::bad_request(format!(
                "state {st:?} is not one of {}",
                STATES.join(", ")
            )));
        }
    }
    let f = AlertFilter {
        state: q.state,
        patient: q.patient,
        bed: q.bed,
        limit: q.limit.unwrap_or(200),
    };
    service(&s)?.list(&f).await.map(Json).map_err(store_error)
}

#[derive(Serialize)]
pub struct AlertWithHistory {
    #[serde(flatten)]
    pub alert: AlertView,
    pub history: Vec<HistoryEntry>,
}

/// `GET /api/alerts/{id}` (viewer): the episode and its history, oldest first.
async fn get_alert(
    State(s): State<WebState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<AlertWithHistory>, ApiError> {
    p.require(Role::Viewer)?;
    match service(&s)?.get(&id).await.map_err(store_error)? {
        Some((alert, history)) => Ok(Json(AlertWithHistory { alert, history })),
        None => Err(ApiError::not_found(format!("no alert {id}"))),
    }
}

#[derive(Deserialize, Default)]
pub struct ActionBody {
    #[serde(default)]
    pub note: Option<String>,
}

async fn act(
    s: WebState,
    p: Principal,
    peer: Peer,
    id: String,
    body: Option<Json<ActionBody>>,
    action: Action,
) -> Result<Json<AlertView>, ApiError> {
    p.require(Role::Clinician)?;
    let note = body.and_then(|b| b.0.note);
    if note.as_ref().is_some_and(|n| n.len() > 2000) {
        return Err(ApiError::bad_request("note longer than 2000 bytes"));
    }
    match service(&s)?.act(&id, action, &p, peer.0, note).await {
        Ok(v) => Ok(Json(v)),
        Err(ServiceError::NotFound(id)) => Err(ApiError::not_found(format!("no alert {id}"))),
        Err(ServiceError::Conflict(e)) => Err(ApiError::new(StatusCode::CONFLICT, e.to_string())),
        Err(ServiceError::Store(e)) => Err(store_error(e)),
    }
}

/// `POST /api/alerts/{id}/acknowledge` (clinician).
async fn acknowledge(
    State(s): State<WebState>,
    p: Principal,
    peer: Peer,
    Path(id): Path<String>,
    body: Option<Json<ActionBody>>,
) -> Result<Json<AlertView>, ApiError> {
    act(s, p, peer, id, body, Action::Acknowledge).await
}

/// `POST /api/alerts/{id}/escalate` (clinician).
async fn escalate(
    State(s): State<WebState>,
    p: Principal,
    peer: Peer,
    Path(id): Path<String>,
    body: Option<Json<ActionBody>>,
) -> Result<Json<AlertView>, ApiError> {
    act(s, p, peer, id, body, Action::Escalate).await
}

/// `POST /api/alerts/{id}/resolve` (clinician).
async fn resolve(
    State(s): State<WebState>,
    p: Principal,
    peer: Peer,
    Path(id): Path<String>,
    body: Option<Json<ActionBody>>,
) -> Result<Json<AlertView>, ApiError> {
    act(s, p, peer, id, body, Action::Resolve).await
}

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    pub alert: Option<String>,
    pub limit: Option<usize>,
}

/// `GET /api/audit?alert=&limit=` (viewer): newest first.
async fn audit(
    State(s): State<WebState>,
    p: Principal,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    p.require(Role::Viewer)?;
    service(&s)?
        .audit(q.alert.as_deref(), q.limit.unwrap_or(200))
        .await
        .map(Json)
        .map_err(store_error)
}

/// `GET /api/burden` (viewer).
async fn burden(State(s): State<WebState>, p: Principal) -> Result<Json<Burden>, ApiError> {
    p.require(Role::Viewer)?;
    Ok(Json(service(&s)?.burden()))
}

/// `GET /api/sinks` (viewer): each delivery sink's health.
async fn sinks(
    State(s): State<WebState>,
    p: Principal,
) -> Result<Json<std::collections::BTreeMap<String, SinkStatus>>, ApiError> {
    p.require(Role::Viewer)?;
    Ok(Json(service(&s)?.sink_health().snapshot()))
}
