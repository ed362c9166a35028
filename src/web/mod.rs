//! HTTP endpoints: `/metrics` (Prometheus text), `/healthz` (the process is up), `/readyz`
//! (every stage is running; degraded alert sinks listed), and the JSON API under `/api`
//! (login, alerts, audit, burden, beds, patient scores, the event stream), where every route
//! checks the caller's role, and the dashboard pages at `/`.

pub mod api;
pub mod auth;
pub mod dashboard;
pub mod live;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::alerting::AlertService;
use crate::telemetry::Metrics;
pub use auth::{AuthStore, Principal, Role};
pub use live::LiveView;

/// What every handler may reach.
#[derive(Clone)]
pub struct WebState {
    pub metrics: Arc<Metrics>,
    pub auth: Arc<AuthStore>,
    /// Absent in a process that raises no alerts (gateway, scorer): the alert API answers 503.
    pub alerts: Option<Arc<AlertService>>,
    /// The beds' latest scores and vitals for the dashboard (alerter role); absent: the bed
    /// routes answer 503.
    pub live: Option<Arc<LiveView>>,
}

impl WebState {
    /// Metrics only: no users, no alerts (every `/api` route answers 401).
    pub fn metrics_only(metrics: Arc<Metrics>) -> Self {
        WebState {
            metrics,
            auth: Arc::new(AuthStore::empty()),
            alerts: None,
            live: None,
        }
    }
}

impl FromRef<WebState> for Arc<AuthStore> {
    fn from_ref(s: &WebState) -> Self {
        s.auth.clone()
    }
}

impl FromRef<WebState> for Arc<Metrics> {
    fn from_ref(s: &WebState) -> Self {
        s.metrics.clone()
    }
}

pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready_handler))
        .route("/api/login", post(auth::login_handler))
        .route("/api/logout", post(auth::logout_handler))
        .route("/api/me", get(auth::me_handler))
        .merge(api::routes())
        .merge(dashboard::routes())
        .with_state(state)
}

async fn metrics_handler(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.render(),
    )
}

/// 200 `ready` once every stage runs, with one line per degraded alert sink (still 200: the
/// pipeline runs and holds the deliveries); 503 before.
async fn ready_handler(State(s): State<WebState>) -> impl IntoResponse {
    if s.metrics.ready.get() != 1 {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting\n".to_string());
    }
    let mut body = String::from("ready\n");
    if let Some(a) = &s.alerts {
        for line in a.sink_health().degraded_lines() {
            body.push_str(&line);
            body.push('\n');
        }
    }
    (StatusCode::OK, body)
}

/// Binds `addr` and serves until `shutdown` fires. Binding errors are returned before serving.
pub async fn serve(
    addr: SocketAddr,
    state: WebState,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    // Long-lived responses (the event stream) end when `shutdown` fires.
    let app = router(state)
        .layer(axum::Extension(shutdown.clone()))
        .into_make_service_with_connect_info::<SocketAddr>();
    let handle = tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    tracing::info!(%local, "serving the dashboard, /metrics /healthz /readyz /api");
    Ok((local, handle))
}
