//! Who is asking: users and roles from the config, login sessions, and the [`Principal`]
//! extractor every API route takes.
//!
//! - Passwords are never in the config: `password_pbkdf2` holds a PBKDF2-HMAC-SHA256 hash
//!   (`pbkdf2-sha256$<iterations>$<salt base64>$<hash base64>`, made by
//!   `vigil hash-password`); API tokens are 256-bit random values, so `token_sha256` (the hex
//!   SHA-256 of the token) is enough.
//! - `POST /api/login` checks a password and opens a session: a random 256-bit id kept in
//!   memory with an expiry, sent back as the cookie `vigil_session` (HttpOnly, SameSite=Strict).
//! - A request proves who it is with `Authorization: Bearer <token or session id>` or the
//!   cookie. Absent or invalid: 401 with a JSON body. A role too low: 403 with a JSON body.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "vigil_session";
/// PBKDF2 iterations for new hashes (OWASP 2023 figure for PBKDF2-HMAC-SHA256).
pub const PBKDF2_ITERATIONS: u32 = 600_000;
const DEFAULT_SESSION: Duration = Duration::from_secs(12 * 3600);

/// What a user may do. Ordered: each role may do everything the one below it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Sees beds, scores, alerts and the audit log.
    Viewer,
    /// Also acknowledges, escalates and resolves alerts.
    Clinician,
    /// Everything.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Clinician => "clinician",
            Role::Admin => "admin",
        }
    }
}

/// An authenticated user, as a route handler sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Principal {
    pub user: String,
    pub role: Role,
}

impl Principal {
    /// Ok when this user has at least `role`; else a 403 to return.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "{} is a {}; this needs the {} role",
                    self.user,
                    self.role.as_str(),
                    role.as_str()
                ),
            ))
        }
    }
}

/// An API error: a status and `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

/// One `[[web.user]]` of the config.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    pub role: Role,
    /// `pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>` (`vigil hash-password`).
    #[serde(default)]
    pub password_pbkdf2: Option<String>,
    /// Hex SHA-256 of a bearer token (for programs; tokens are random 256-bit values).
    #[serde(default)]
    pub token_sha256: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuthConfigError {
    #[error("[[web.user]] {0:?}: give password_pbkdf2 or token_sha256 (or both)")]
    NoCredential(String),
    #[error("[[web.user]] {0:?}: password_pbkdf2 is not pbkdf2-sha256$<iterations>$<salt base64>$<hash base64>")]
    BadPasswordHash(String),
    #[error("[[web.user]] {0:?}: token_sha256 is not 64 hex digits")]
    BadTokenHash(String),
    #[error("[[web.user]] {0:?} is defined twice")]
    Duplicate(String),
    #[error("[[web.user]] has an empty name")]
    EmptyName,
}

struct PasswordHash {
    iterations: NonZeroU32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl PasswordHash {
    fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split('$');
        let (scheme, iter, salt, hash) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if scheme != "pbkdf2-sha256" || parts.next().is_some() {
            return None;
        }
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
        let iterations = NonZeroU32::new(iter.parse().ok()?)?;
        let salt = b64.decode(salt.trim_end_matches('=')).ok()?;
        let hash = b64.decode(hash.trim_end_matches('=')).ok()?;
        if salt.len() < 8 || hash.len() != 32 {
            return None;
        }
        Some(PasswordHash {
            iterations,
            salt,
            hash,
        })
    }

    fn verify(&self, password: &str) -> bool {
        ring::pbkdf2::verify(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            self.iterations,
            &self.salt,
            password.as_bytes(),
            &self.hash,
        )
        .is_ok()
    }
}

/// Hashes a password for `password_pbkdf2`, with a random 128-bit salt.
pub fn hash_password(password: &str) -> String {
    hash_password_with(password, PBKDF2_ITERATIONS)
}

fn hash_password_with(password: &str, iterations: u32) -> String {
    let mut salt = [0u8; 16];
    let _ = SystemRandom::new().fill(&mut salt);
    let mut out = [0u8; 32];
    let n = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        n,
        &salt,
        password.as_bytes(),
        &mut out,
    );
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
    format!(
        "pbkdf2-sha256${}${}${}",
        n,
        b64.encode(salt),
        b64.encode(out)
    )
}

/// A random 256-bit value as 64 hex digits (session ids, generated tokens and passwords).
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    let _ = SystemRandom::new().fill(&mut b);
    hex(&b)
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

/// Hex SHA-256 of a token (`token_sha256`).
pub fn sha256_hex(s: &str) -> String {
    hex(&Sha256::digest(s.as_bytes()))
}

struct User {
    role: Role,
    password: Option<PasswordHash>,
    token_sha256: Option<String>,
}

struct Session {
    user: String,
    role: Role,
    expires: Instant,
}

/// A demo user and the password generated for it (printed by `vigil demo --listen`).
#[derive(Clone, Debug)]
pub struct DemoUser {
    pub name: String,
    pub role: Role,
    pub password: String,
}

/// Users and open sessions.
pub struct AuthStore {
    users: HashMap<String, User>,
    sessions: Mutex<HashMap<String, Session>>,
    session_ttl: Duration,
}

impl AuthStore {
    /// The users of the config's `[[web.user]]`.
    pub fn from_config(
        users: &[UserConfig],
        session_minutes: Option<u64>,
    ) -> Result<Self, Vec<AuthConfigError>> {
        let mut out = HashMap::new();
        let mut problems = Vec::new();
        for u in users {
            if u.name.trim().is_empty() {
                problems.push(AuthConfigError::EmptyName);
                continue;
            }
            if u.password_pbkdf2.is_none() && u.token_sha256.is_none() {
                problems.push(AuthConfigError::NoCredential(u.name.clone()));
            }
            let password = match &u.password_pbkdf2 {
                Some(s) => match PasswordHash::parse(s) {
                    Some(h) => Some(h),
                    None => {
                        problems.push(AuthConfigError::BadPasswordHash(u.name.clone()));
                        None
                    }
                },
                None => None,
            };
            let token_sha256 = match &u.token_sha256 {
                Some(t) if t.len() == 64 && t.bytes().all(|c| c.is_ascii_hexdigit()) => {
                    Some(t.to_ascii_lowercase())
                }
                Some(_) => {
                    problems.push(AuthConfigError::BadTokenHash(u.name.clone()));
                    None
                }
                None => None,
            };
            if out
                .insert(
                    u.name.clone(),
                    User {
                        role: u.role,
                        password,
                        token_sha256,
                    },
                )
                .is_some()
            {
                problems.push(AuthConfigError::Duplicate(u.name.clone()));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(AuthStore {
            users: out,
            sessions: Mutex::new(HashMap::new()),
            session_ttl: session_minutes
                .map(|m| Duration::from_secs(m.saturating_mul(60)))
                .unwrap_or(DEFAULT_SESSION),
        })
    }

    /// Checks `[[web.user]]` without keeping anything (for `vigil validate`).
    pub fn check_config(users: &[UserConfig]) -> Result<(), Vec<AuthConfigError>> {
        Self::from_config(users, None).map(|_| ())
    }

    /// No users: every API request gets 401 (only /metrics, /healthz, /readyz answer).
    pub fn empty() -> Self {
        AuthStore {
            users: HashMap::new(),
            sessions: Mutex::new(HashMap::new()),
            session_ttl: DEFAULT_SESSION,
        }
    }

    /// Users `viewer`, `clinician` and `admin` with random passwords, returned so they can be
    /// shown to the person running the demo.
    pub fn demo() -> (Self, Vec<DemoUser>) {
        let mut store = Self::empty();
        let mut shown = Vec::new();
        for role in [Role::Viewer, Role::Clinician, Role::Admin] {
            // 96 bits is plenty for a demo password and short enough to type.
            let password: String = random_token().chars().take(24).collect();
            let name = role.as_str().to_string();
            store.add_user(&name, role, Some(&password), None);
            shown.push(DemoUser {
                name,
                role,
                password,
            });
        }
        (store, shown)
    }

    /// Adds (or replaces) a user with a password and/or a bearer token, given in plain text
    /// and kept hashed.
    pub fn add_user(
        &mut self,
        name: &str,
        role: Role,
        password: Option<&str>,
        token: Option<&str>,
    ) {
        // Fewer iterations than a stored config hash: these live only in memory.
        let password = password.and_then(|p| PasswordHash::parse(&hash_password_with(p, 10_000)));
        self.users.insert(
            name.to_string(),
            User {
                role,
                password,
                token_sha256: token.map(sha256_hex),
            },
        );
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Checks a password; on success opens a session and returns its id with the user.
    pub fn login(&self, user: &str, password: &str) -> Option<(String, Principal)> {
        let u = self.users.get(user)?;
        if !u.password.as_ref()?.verify(password) {
            return None;
        }
        let id = random_token();
        let principal = Principal {
            user: user.to_string(),
            role: u.role,
        };
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(
            id.clone(),
            Session {
                user: user.to_string(),
                role: u.role,
                expires: now + self.session_ttl,
            },
        );
        Some((id, principal))
    }

    /// Ends a session (no-op for an unknown id).
    pub fn logout(&self, session: &str) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.remove(session);
    }

    /// The user behind a session id or an API token.
    pub fn resolve(&self, credential: &str) -> Option<Principal> {
        {
            let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = sessions.get(credential) {
                if s.expires > Instant::now() {
                    // A user removed from the config loses open sessions at restart only.
                    return Some(Principal {
                        user: s.user.clone(),
                        role: s.role,
                    });
                }
            }
        }
        let digest = sha256_hex(credential);
        self.users
            .iter()
            .find(|(_, u)| u.token_sha256.as_deref() == Some(digest.as_str()))
            .map(|(name, u)| Principal {
                user: name.clone(),
                role: u.role,
            })
    }

    /// The session ttl, for the cookie's Max-Age.
    pub fn session_ttl(&self) -> Duration {
        self.session_ttl
    }
}

/// The credential a request carries: a bearer token, else the session cookie.
pub fn credential(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
        {
            return Some(t.trim().to_string());
        }
    }
    session_cookie(headers)
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == SESSION_COOKIE).then(|| v.trim().to_string())
        })
}

impl<S> FromRequestParts<S> for Principal
where
    Arc<AuthStore>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let store = Arc::<AuthStore>::from_ref(state);
        let cred = credential(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized("log in first (POST /api/login) or send a bearer token")
        })?;
        store.resolve(&cred).ok_or_else(|| {
            ApiError::unauthorized("the session has expired or the token is unknown")
        })
    }
}

#[derive(Deserialize)]
pub struct LoginRequest {
    pub user: String,
    pub password: String,
}

/// `POST /api/login`.
pub async fn login_handler(
    State(store): State<Arc<AuthStore>>,
    Json(req): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    // PBKDF2 is slow on purpose: off the async workers.
    let s = store.clone();
    let result = tokio::task::spawn_blocking(move || s.login(&req.user, &req.password))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "login check failed"))?;
    let Some((id, principal)) = result else {
        tracing::warn!("failed login");
        return Err(ApiError::unauthorized("unknown user or wrong password"));
    };
    tracing::info!(user = %principal.user, role = principal.role.as_str(), "login");
    let cookie = format!(
        "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        store.session_ttl().as_secs()
    );
    let mut resp = Json(principal).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

/// `POST /api/logout`: ends the cookie's (or bearer) session and clears the cookie.
pub async fn logout_handler(State(store): State<Arc<AuthStore>>, headers: HeaderMap) -> Response {
    if let Some(c) = credential(&headers) {
        store.logout(&c);
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("vigil_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    resp
}

/// `GET /api/me`.
pub async fn me_handler(p: Principal) -> Json<Principal> {
    Json(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Clinician && Role::Clinician < Role::Admin);
        let v = Principal {
            user: "v".into(),
            role: Role::Viewer,
        };
        assert_eq!(
            v.require(Role::Clinician).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        assert!(v.require(Role::Viewer).is_ok());
    }

    #[test]
    fn passwords_and_tokens_check_and_sessions_end() {
        let hash = hash_password_with("s3cret", 1000);
        let token = random_token();
        let users = vec![
            UserConfig {
                name: "ann".into(),
                role: Role::Clinician,
                password_pbkdf2: Some(hash),
                token_sha256: None,
            },
            UserConfig {
                name: "bot".into(),
                role: Role::Viewer,
                password_pbkdf2: None,
                token_sha256: Some(sha256_hex(&token)),
            },
        ];
        let store = AuthStore::from_config(&users, None).unwrap();
        assert!(store.login("ann", "wrong").is_none());
        assert!(store.login("nobody", "s3cret").is_none());
        assert!(store.login("bot", "").is_none());
        let (id, p) = store.login("ann", "s3cret").unwrap();
        assert_eq!(p.role, Role::Clinician);
        assert_eq!(store.resolve(&id), Some(p));
        store.logout(&id);
        assert_eq!(store.resolve(&id), None);
        assert_eq!(store.resolve(&token).map(|p| p.user), Some("bot".into()));
        assert_eq!(store.resolve("nope"), None);
    }

    #[test]
    fn config_faults_are_all_reported() {
        let users = vec![
            UserConfig {
                name: "a".into(),
                role: Role::Admin,
                password_pbkdf2: Some("plaintext".into()),
                token_sha256: None,
            },
            UserConfig {
                name: "b".into(),
                role: Role::Admin,
                password_pbkdf2: None,
                token_sha256: None,
            },
        ];
        let errs = AuthStore::from_config(&users, None).err().unwrap();
        assert_eq!(
            errs,
            [
                AuthConfigError::BadPasswordHash("a".into()),
                AuthConfigError::NoCredential("b".into())
            ]
        );
    }

    #[test]
    fn cookie_and_bearer_are_read() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; vigil_session=abc; b=2"),
        );
        assert_eq!(credential(&h).as_deref(), Some("abc"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer tok"),
        );
        assert_eq!(credential(&h).as_deref(), Some("tok"));
    }
}
