//! The live dashboard: the pages (embedded; no build step, nothing fetched from elsewhere),
//! the bed grid and patient score API, and the Server-Sent Events stream of bed updates and
//! alert changes.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Extension;
use axum::{Json, Router};
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::auth::{credential, ApiError, Principal, Role};
use super::live::{BedView, LiveView, PatientScores};
use super::WebState;
use crate::alerting::AlertView;

const LOGIN_HTML: &str = include_str!("static/login.html");
const APP_HTML: &str = include_str!("static/app.html");
const APP_CSS: &str = include_str!("static/app.css");
const APP_JS: &str = include_str!("static/app.js");
const LOGIN_JS: &str = include_str!("static/login.js");

/// How often the event stream sends the beds that changed (wall clock: a pace for the
/// screen, not a time anything is measured in).
const BED_TICK: Duration = Duration::from_millis(1000);

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/", get(index))
        .route("/login", get(|| async { page(LOGIN_HTML) }))
        .route(
            "/static/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/static/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/static/login.js",
            get(|| async { asset("text/javascript; charset=utf-8", LOGIN_JS) }),
        )
        .route("/api/beds", get(beds))
        .route("/api/patients/{id}/scores", get(patient_scores))
        .route("/api/events", get(events))
}

const CSP: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                   frame-ancestors 'none'";

fn page(html: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        html,
    )
        .into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// `/`: the dashboard for a signed-in user, else a redirect to the login page.
async fn index(State(s): State<WebState>, headers: HeaderMap) -> Response {
    match credential(&headers).and_then(|c| s.auth.resolve(&c)) {
        Some(_) => page(APP_HTML),
        None => Redirect::to("/login").into_response(),
    }
}

fn live(s: &WebState) -> Result<&Arc<LiveView>, ApiError> {
    s.live.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this process keeps no live view (no alerter role)",
        )
    })
}

/// `GET /api/beds` (viewer): one tile per bed.
async fn beds(State(s): State<WebState>, p: Principal) -> Result<Json<Vec<BedView>>, ApiError> {
    p.require(Role::Viewer)?;
    Ok(Json(live(&s)?.beds()))
}

#[derive(Deserialize, Default)]
pub struct ScoresQuery {
    pub hours: Option<u32>,
}

/// `GET /api/patients/{id}/scores?hours=24` (viewer).
async fn patient_scores(
    State(s): State<WebState>,
    p: Principal,
    Path(id): Path<String>,
    Query(q): Query<ScoresQuery>,
) -> Result<Json<PatientScores>, ApiError> {
    p.require(Role::Viewer)?;
    let hours = q.hours.unwrap_or(24);
    if hours == 0 || hours > 24 {
        return Err(ApiError::bad_request("hours must be 1 to 24"));
    }
    live(&s)?
        .patient(&id, hours)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no scores for patient {id}")))
}

/// `GET /api/events` (viewer): `bed` events (a tile, on connect for every bed and then for
/// each bed that changed, at most once a second), `alert` events (each alert change), `clock`
/// (the newest score-set time), and `resync` when alert changes were dropped for a slow reader.
///
/// The stream ends when the server shuts down (an open stream would otherwise hold the graceful
/// shutdown forever).
async fn events(
    State(s): State<WebState>,
    stop: Option<Extension<CancellationToken>>,
    p: Principal,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    p.require(Role::Viewer)?;
    let live = live(&s)?.clone();
    let alerts = s.alerts.as_ref().map(|a| a.subscribe());
    let (tx, rx) = mpsc::channel::<Event>(256);
    tracing::debug!(user = %p.user, "event stream opened");
    let stop = stop.map(|Extension(t)| t).unwrap_or_default();
    tokio::spawn(pump(live, alerts, tx, stop));
    let stream =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
        );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

async fn next_alert(
    rx: &mut Option<broadcast::Receiver<AlertView>>,
) -> Result<AlertView, broadcast::error::RecvError> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

fn json_event(name: &str, data: &impl serde::Serialize) -> Option<Event> {
    match Event::default().event(name).json_data(data) {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::error!(error = %e, event = name, "cannot encode an event");
            None
        }
    }
}

/// Feeds one client's stream until it goes away.
async fn pump(
    live: Arc<LiveView>,
    mut alerts: Option<broadcast::Receiver<AlertView>>,
    tx: mpsc::Sender<Event>,
    stop: CancellationToken,
) {
    let mut version = 0u64;
    let mut clock = None;
    let mut tick = tokio::time::interval(BED_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut out = Vec::new();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                // A client that went away while nothing changed.
                if tx.is_closed() {
                    tracing::debug!("event stream closed");
                    return;
                }
                let (changed, v) = live.changed_since(version);
                version = v;
                out.extend(changed.iter().filter_map(|b| json_event("bed", b)));
                let now = live.latest_at();
                if now != clock {
                    clock = now;
                    if let Some(t) = now {
                        out.push(Event::default().event("clock").data(t.to_rfc3339()));
                    }
                }
            }
            r = next_alert(&mut alerts) => match r {
                Ok(a) => out.extend(json_event("alert", &a)),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(dropped = n, "event stream fell behind on alert changes");
                    out.push(Event::default().event("resync").data(n.to_string()));
                }
                Err(broadcast::error::RecvError::Closed) => alerts = None,
            },
        }
        for e in out {
            if tx.send(e).await.is_err() {
                tracing::debug!("event stream closed");
                return;
            }
        }
    }
}
