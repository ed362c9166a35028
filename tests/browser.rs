//! The dashboard in a real browser: `vigil demo --listen` replays the bundled recording and a
//! headless Chromium, driven over WebDriver (chromedriver, W3C JSON wire protocol), signs in,
//! watches the live grid, acknowledges an alert, opens a patient and checks the phone layout.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install chromium chromium-driver`;
//! scripts/test.sh installs them). Without them this test fails and says so.
//! Screenshots go to `target/browser/*.png`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

mod common;
use common::free_port;

/// Hang protection for every wait (not a speed assertion: the CI box is small and busy).
const WAIT: Duration = Duration::from_secs(120);
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// Replay pace: the 26 h recording in about a minute, slow enough to watch live updates.
const SPEED: &str = "1500";

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/bin", "/usr/lib/chromium", "/usr/local/bin"].map(PathBuf::from));
    names
        .iter()
        .flat_map(|n| dirs.iter().map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

fn shots_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser");
    std::fs::create_dir_all(&d).expect("create target/browser");
    d
}

/// A child process killed (with its process group) on drop.
struct Proc {
    child: Child,
    group: bool,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.group {
            // chromedriver's browsers are in its process group.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `vigil demo --listen`, with the accounts it printed.
struct Vigil {
    proc: Proc,
    base: String,
    accounts: HashMap<String, String>,
    log: Arc<Mutex<String>>,
}

impl Vigil {
    fn start() -> Vigil {
        let port = free_port();
        let stdout = std::fs::File::create(shots_dir().join("vigil-demo.out")).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["demo", "--speed", SPEED, "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .stdout(stdout)
            .stderr(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("start vigil demo");
        let stderr = child.stderr.take().expect("vigil stderr");
        let proc = Proc {
            child,
            group: false,
        };
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let started = Instant::now();
        loop {
            let text = log.lock().unwrap().clone();
            let accounts: HashMap<String, String> = text
                .lines()
                .filter_map(|l| {
                    let mut w = l.split_whitespace();
                    let (user, kw, pw) = (w.next()?, w.next()?, w.next()?);
                    (kw == "password").then(|| (user.to_string(), pw.to_string()))
                })
                .collect();
            let url = text
                .lines()
                .find_map(|l| l.strip_prefix("dashboard: "))
                .and_then(|r| r.split_whitespace().next())
                .map(|u| u.trim_end_matches('/').to_string());
            if let (Some(base), 3) = (url, accounts.len()) {
                assert_eq!(base, format!("http://127.0.0.1:{port}"));
                return Vigil {
                    proc,
                    base,
                    accounts,
                    log,
                };
            }
            assert!(
                started.elapsed() < WAIT,
                "vigil demo did not print the dashboard URL and three accounts; stderr:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for `text` on vigil's stderr.
    async fn wait_log(&self, text: &str) {
        let started = Instant::now();
        while !self.log.lock().unwrap().contains(text) {
            assert!(
                started.elapsed() < WAIT,
                "vigil did not print {text:?}; stderr:\n{}",
                self.log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sends SIGINT (Ctrl-C) and waits for the exit status.
    async fn interrupt(&mut self) -> std::process::ExitStatus {
        let pid = self.proc.child.id().to_string();
        let sent = Command::new("kill").args(["-INT", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -INT {pid}");
        let started = Instant::now();
        loop {
            if let Some(status) = self.proc.child.try_wait().expect("vigil status") {
                return status;
            }
            assert!(
                started.elapsed() < WAIT,
                "vigil did not stop after Ctrl-C; stderr:\n{}",
                self.log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn password(&self, user: &str) -> &str {
        self.accounts
            .get(user)
            .unwrap_or_else(|| panic!("no demo account {user}: {:?}", self.accounts.keys()))
    }

    /// A session id for `user`, usable as a bearer token.
    async fn api_login(&self, http: &reqwest::Client, user: &str) -> String {
        let r = http
            .post(format!("{}/api/login", self.base))
            .json(&json!({"user": user, "password": self.password(user)}))
            .send()
            .await
            .expect("login request");
        assert_eq!(r.status(), 200, "API login as {user}");
        let cookie = r
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .expect("login sets a cookie")
            .to_string();
        cookie
            .split(';')
            .next()
            .and_then(|kv| kv.strip_prefix("vigil_session="))
            .expect("vigil_session cookie")
            .to_string()
    }
}

/// chromedriver on a free port; killed with its browsers on drop.
struct Driver {
    _proc: Proc,
    url: String,
    http: reqwest::Client,
}

impl Driver {
    async fn start(chromedriver: &Path) -> Driver {
        use std::os::unix::process::CommandExt;
        let port = free_port();
        let log = std::fs::File::create(shots_dir().join("chromedriver.log")).expect("log file");
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let d = Driver {
            _proc: Proc { child, group: true },
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(WAIT)
                .build()
                .expect("http client"),
        };
        let started = Instant::now();
        loop {
            if let Ok(r) = d.http.get(format!("{}/status", d.url)).send().await {
                if let Ok(v) = r.json::<Value>().await {
                    if v["value"]["ready"] == json!(true) {
                        return d;
                    }
                }
            }
            assert!(
                started.elapsed() < WAIT,
                "chromedriver did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn session(&self, chromium: &Path) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1600,1000".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args}
        }}});
        let r: Value = self
            .http
            .post(format!("{}/session", self.url))
            .json(&caps)
            .send()
            .await
            .expect("new WebDriver session")
            .json()
            .await
            .expect("session JSON");
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver refused a session: {r}"))
            .to_string();
        Browser {
            http: self.http.clone(),
            url: format!("{}/session/{id}", self.url),
            _profile: profile,
        }
    }
}

/// One browser window.
struct Browser {
    http: reqwest::Client,
    url: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn cmd(&self, method: reqwest::Method, path: &str, body: Value) -> Result<Value, String> {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if !body.is_null() {
            req = req.json(&body);
        }
        let r = req.send().await.map_err(|e| e.to_string())?;
        let v: Value = r.json().await.map_err(|e| e.to_string())?;
        match v["value"].get("error") {
            Some(e) => Err(format!("{e}: {}", v["value"]["message"])),
            None => Ok(v["value"].clone()),
        }
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        self.cmd(reqwest::Method::POST, path, body).await
    }

    async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url }))
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    async fn js(&self, script: &str) -> Result<Value, String> {
        self.post("/execute/sync", json!({"script": script, "args": []}))
            .await
    }

    /// Polls `script` until it returns something truthy; returns that.
    async fn wait_js(&self, what: &str, script: &str) -> Value {
        let started = Instant::now();
        let mut last;
        loop {
            match self.js(script).await {
                Ok(v) if !(v.is_null() || v == json!(false) || v == json!("")) => return v,
                Ok(v) => last = v,
                Err(e) => last = json!(e),
            }
            if started.elapsed() > WAIT {
                let _ = self.screenshot("timeout").await;
                panic!("timed out waiting for {what} (last: {last})");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn find(&self, css: &str) -> Result<String, String> {
        let v = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await?;
        v[ELEMENT]
            .as_str()
            .map(String::from)
            .ok_or_else(|| format!("no element id in {v}"))
    }

    /// Finds and clicks `css`, retrying while the page re-renders it.
    async fn click(&self, css: &str) {
        let started = Instant::now();
        loop {
            let r = match self.find(css).await {
                Ok(el) => self.post(&format!("/element/{el}/click"), json!({})).await,
                Err(e) => Err(e),
            };
            match r {
                Ok(_) => return,
                Err(e) if started.elapsed() > WAIT => panic!("cannot click {css}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    async fn type_into(&self, css: &str, text: &str) {
        let el = self
            .find(css)
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        self.post(&format!("/element/{el}/value"), json!({ "text": text }))
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    async fn window(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({"width": width, "height": height}))
            .await
            .unwrap_or_else(|e| panic!("resize to {width}x{height}: {e}"));
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let v = self
            .cmd(reqwest::Method::GET, "/screenshot", Value::Null)
            .await
            .unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("screenshot is base64");
        assert!(
            png.starts_with(b"\x89PNG"),
            "screenshot {name} is not a PNG"
        );
        let path = shots_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Signs in through the login page (the browser was sent there from `/`).
    async fn sign_in(&self, base: &str, user: &str, password: &str) {
        self.goto(&format!("{base}/")).await;
        let at = self
            .wait_js(
                "the login page",
                "return document.getElementById('login-form') ? location.pathname : null",
            )
            .await;
        assert_eq!(at, json!("/login"), "/ without a session goes to /login");
        self.type_into("#user", user).await;
        self.type_into("#password", password).await;
        self.click("#login-submit").await;
        self.wait_js(
            "the dashboard after signing in",
            "return location.pathname === '/' && document.getElementById('who') && document.getElementById('who').textContent",
        )
        .await;
    }

    async fn no_horizontal_overflow(&self, what: &str) {
        let v = self
            .js("return [document.documentElement.scrollWidth, window.innerWidth]")
            .await
            .expect("measure the page");
        let (scroll, inner) = (v[0].as_i64().unwrap_or(0), v[1].as_i64().unwrap_or(0));
        assert!(inner > 0, "{what}: no window width ({v})");
        assert!(
            scroll <= inner,
            "{what}: the page is {scroll} px wide in a {inner} px window"
        );
    }

    async fn quit(self) {
        let _ = self.cmd(reqwest::Method::DELETE, "", Value::Null).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    let chromium = find_program(&["chromium", "chromium-browser"]).unwrap_or_else(|| {
        panic!(
            "chromium is not installed: this test drives a real headless browser. Install it \
             with `apt-get install chromium chromium-driver` (scripts/test.sh does)"
        )
    });
    let chromedriver = find_program(&["chromedriver"]).unwrap_or_else(|| {
        panic!(
            "chromedriver is not installed: this test drives Chromium over WebDriver. Install \
             it with `apt-get install chromium-driver` (scripts/test.sh does)"
        )
    });

    let mut vigil = Vigil::start();
    let base = vigil.base.clone();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(WAIT)
        .build()
        .unwrap();

    // Without a session: `/` redirects to the login page; the API and the stream answer 401.
    let r = http.get(format!("{base}/")).send().await.unwrap();
    assert!(
        r.status().is_redirection(),
        "GET / without a session: {}",
        r.status()
    );
    assert_eq!(r.headers()["location"], "/login");
    for path in ["/api/beds", "/api/events", "/api/patients/x/scores"] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} without a session");
    }

    let driver = Driver::start(&chromedriver).await;

    // ------------------------------------------------------------ the clinician, wide screen
    let b = driver.session(&chromium).await;
    b.window(1600, 1000).await;
    b.sign_in(&base, "clinician", vigil.password("clinician"))
        .await;
    b.wait_js(
        "bed tiles",
        "return document.querySelectorAll('#grid .tile').length >= 5",
    )
    .await;
    let who = b
        .js("return document.getElementById('who').textContent")
        .await
        .unwrap();
    assert_eq!(who, json!("clinician (clinician)"));

    // Live: the data clock moves on while the replay runs (Server-Sent Events, cookie auth).
    let first = b
        .wait_js(
            "the data clock",
            "var t = document.getElementById('clock').textContent; return t !== '—' && t",
        )
        .await;
    b.wait_js(
        "the data clock to advance",
        &format!(
            "var t = document.getElementById('clock').textContent; return t !== {first} && t !== '—'"
        ),
    )
    .await;
    let conn = b
        .js("return document.getElementById('conn').className")
        .await
        .unwrap();
    assert_eq!(conn, json!("conn live"));
    // Tiles carry vitals with their age and score sparklines.
    b.wait_js(
        "vitals and sparklines on a tile",
        "return document.querySelector('#grid .tile .v[data-vital=hr]') && \
         document.querySelector('#grid .tile svg.spark polyline')",
    )
    .await;

    // An alert arrives in the inbox; acknowledge it in the page.
    let id = b
        .wait_js(
            "an open alert with an Acknowledge button",
            "var b = document.querySelector('#inbox-list .alert[data-state=active] button.ack') || \
                     document.querySelector('#inbox-list .alert[data-state=escalated] button.ack'); \
             return b && b.getAttribute('data-id')",
        )
        .await;
    let id = id.as_str().expect("alert id").to_string();
    let patient = b
        .js(&format!(
            "var a = document.querySelector('.alert[data-id=\"{id}\"] a.where'); \
             return decodeURIComponent(a.getAttribute('href').replace('#/patient/', ''))"
        ))
        .await
        .expect("the alert's patient");
    let patient = patient.as_str().expect("patient id").to_string();
    let shot = b.screenshot("wide-clinician").await;
    println!("screenshot {}", shot.display());
    b.click(&format!("button.ack[data-id=\"{id}\"]")).await;
    b.wait_js(
        "the inbox to show the acknowledgement",
        &format!(
            "var a = document.querySelector('.alert[data-id=\"{id}\"]'); \
             return !a || a.textContent.indexOf('acknowledged by clinician') >= 0"
        ),
    )
    .await;

    // The API agrees: acknowledged by the clinician, and the audit trail says so.
    let token = vigil.api_login(&http, "clinician").await;
    let alert: Value = http
        .get(format!("{base}/api/alerts/{id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(alert["acknowledged_by"], json!("clinician"), "{alert}");
    let history = alert["history"].as_array().expect("history");
    let ack = history
        .iter()
        .position(|h| h["transition"] == json!("acknowledged"))
        .unwrap_or_else(|| panic!("no acknowledged transition in {alert}"));
    assert_eq!(history[ack]["by"], json!("clinician"));
    assert_eq!(history[ack]["state"], json!("acknowledged"));
    // Still acknowledged, unless the rules changed the episode since (then it says by whom).
    if ack == history.len() - 1 {
        assert_eq!(alert["state"], json!("acknowledged"), "{alert}");
    }
    let audit: Value = http
        .get(format!("{base}/api/audit?alert={id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = audit
        .as_array()
        .expect("audit list")
        .iter()
        .find(|e| e["action"] == json!("acknowledge"))
        .unwrap_or_else(|| panic!("no acknowledge in the audit log: {audit}"));
    assert_eq!(entry["user"], json!("clinician"));
    assert_eq!(entry["role"], json!("clinician"));
    assert_eq!(entry["to"], json!("acknowledged"));
    assert!(
        entry["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1")),
        "{entry}"
    );

    // Escalate an open alert from the page too: the audit trail records it under the clinician.
    let esc = b
        .wait_js(
            "an Escalate button",
            "var b = document.querySelector('#inbox-list button.esc'); return b && b.getAttribute('data-id')",
        )
        .await;
    let esc = esc.as_str().expect("alert id").to_string();
    b.click(&format!("button.esc[data-id=\"{esc}\"]")).await;
    let started = Instant::now();
    loop {
        let audit: Value = http
            .get(format!("{base}/api/audit?alert={esc}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let escalated = audit
            .as_array()
            .expect("audit list")
            .iter()
            .any(|e| e["action"] == json!("escalate") && e["user"] == json!("clinician"));
        if escalated {
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "no escalate by clinician in {audit}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The page's audit log shows both actions under the clinician, newest first.
    b.goto(&format!("{base}/#/audit")).await;
    b.wait_js(
        "the acknowledgement and the escalation in the page's audit log",
        &format!(
            "var rows = Array.from(document.querySelectorAll('#audit-rows tr')); \
             var has = function (id, action) {{ return rows.some(function (r) {{ \
               return r.getAttribute('data-alert') === id && r.querySelector('.action').textContent === action \
                 && r.querySelector('.user').textContent === 'clinician'; }}); }}; \
             return has('{id}', 'acknowledge') && has('{esc}', 'escalate');"
        ),
    )
    .await;
    let burden = b
        .wait_js(
            "the alarm-burden line",
            "return document.getElementById('burden').textContent",
        )
        .await;
    assert!(
        burden.as_str().is_some_and(|t| t.contains("episode")),
        "{burden}"
    );
    b.screenshot("audit-clinician").await;
    b.click("#nav-beds").await;
    b.wait_js(
        "the bed grid again",
        "var t = document.querySelector('.tile'); return !document.getElementById('board').hidden \
         && document.getElementById('audit').hidden && t && t.getBoundingClientRect().height > 0",
    )
    .await;

    // Bad requests get clear answers.
    let r = http
        .get(format!("{base}/api/patients/{patient}/scores?hours=0"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "hours=0");
    let r = http
        .get(format!("{base}/api/patients/no-such-patient/scores"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "an unknown patient");
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("no-such-patient")),
        "{body}"
    );

    // The patient view explains each score: components, values and when they were measured.
    // Through the patient's tile (unless a newer patient has taken the bed since).
    let tile = format!(".tile[data-patient=\"{patient}\"]");
    if b.find(&tile).await.is_ok() {
        b.click(&tile).await;
    } else {
        b.js(&format!("location.hash = '#/patient/{patient}'"))
            .await
            .unwrap();
    }
    b.wait_js(
        "the patient view",
        "return !document.getElementById('patient').hidden && \
         document.querySelectorAll('#patient .card[data-score] tbody tr').length > 5",
    )
    .await;
    let organs = b
        .js("return Array.from(document.querySelectorAll('#patient .card[data-score=sofa] tbody td:first-child')).map(function (t) { return t.firstChild.textContent; })")
        .await
        .unwrap();
    for organ in [
        "respiration",
        "coagulation",
        "liver",
        "cardiovascular",
        "cns",
        "renal",
    ] {
        assert!(
            organs.as_array().unwrap().contains(&json!(organ)),
            "SOFA card lacks {organ}: {organs}"
        );
    }
    b.wait_js(
        "trend charts",
        "return document.querySelectorAll('#patient svg.chart polyline').length >= 3",
    )
    .await;
    let vitals = b
        .js("return document.querySelectorAll('#patient .vit-table tbody tr').length")
        .await
        .unwrap();
    assert!(
        vitals.as_u64().unwrap_or(0) >= 4,
        "latest values table: {vitals} rows"
    );
    // The trend length is chosen in the page (6 h here) and the charts follow.
    b.click("#patient button[data-hours=\"6\"]").await;
    b.wait_js(
        "6 h trends",
        "return document.querySelector('#patient button[data-hours=\"6\"].on') && \
         Array.from(document.querySelectorAll('#patient .axis span:nth-child(2)')).every(function (s) { \
           return parseInt(s.textContent, 10) <= 6; })",
    )
    .await;
    b.screenshot("patient-wide").await;

    // Phone-sized: one column, nothing wider than the screen, the inbox usable.
    b.window(390, 844).await;
    b.wait_js("the narrow layout", "return window.innerWidth <= 400")
        .await;
    b.no_horizontal_overflow("patient view on a phone").await;
    b.screenshot("phone-patient").await;
    b.goto(&format!("{base}/#/")).await;
    b.wait_js(
        "tiles on the phone",
        "return document.querySelectorAll('#grid .tile').length >= 5",
    )
    .await;
    let columns = b
        .js("return new Set(Array.from(document.querySelectorAll('#grid .tile')).map(function (t) { return t.getBoundingClientRect().left; })).size")
        .await
        .unwrap();
    assert_eq!(columns, json!(1), "the grid is one column on a phone");
    b.no_horizontal_overflow("bed grid on a phone").await;
    b.screenshot("phone-grid").await;
    b.click("#nav-alerts").await;
    b.wait_js(
        "the inbox on the phone",
        "var i = document.getElementById('inbox'); return i.offsetParent !== null && \
         document.getElementById('grid').offsetParent === null && \
         document.querySelectorAll('#inbox-list .alert').length > 0",
    )
    .await;
    let button_width = b
        .js("var x = document.querySelector('#inbox-list .alert button'); return x ? x.getBoundingClientRect().right : 0")
        .await
        .unwrap();
    assert!(
        button_width.as_f64().unwrap_or(0.0) > 0.0
            && button_width.as_f64().unwrap_or(999.0) <= 390.0,
        "inbox buttons within the screen: {button_width}"
    );
    b.no_horizontal_overflow("inbox on a phone").await;
    b.screenshot("phone-alerts").await;
    b.quit().await;

    // ------------------------------------------------------------ the viewer
    let v = driver.session(&chromium).await;
    v.window(1600, 1000).await;
    v.sign_in(&base, "viewer", vigil.password("viewer")).await;
    v.wait_js(
        "alerts for the viewer",
        "return document.querySelectorAll('#inbox-list .alert').length > 0",
    )
    .await;
    v.wait_js(
        "bed tiles for the viewer",
        "return document.querySelectorAll('#grid .tile').length >= 5",
    )
    .await;
    let buttons = v
        .js("return document.querySelectorAll('button[data-act]').length")
        .await
        .unwrap();
    assert_eq!(
        buttons,
        json!(0),
        "a viewer gets no Acknowledge/Escalate buttons"
    );
    let note = v
        .js("return document.getElementById('inbox-note').textContent")
        .await
        .unwrap();
    assert_eq!(note, json!("read-only"));
    // The server refuses a viewer's action anyway, from the page's session and from the API.
    let status = v
        .js(&format!(
            "return fetch('/api/alerts/{id}/escalate', {{method: 'POST', credentials: 'same-origin', \
             headers: {{'content-type': 'application/json'}}, body: '{{}}'}}).then(function (r) {{ return r.status; }})"
        ))
        .await
        .unwrap();
    assert_eq!(status, json!(403), "a viewer's escalate from the page");
    let viewer = vigil.api_login(&http, "viewer").await;
    let r = http
        .post(format!("{base}/api/alerts/{id}/acknowledge"))
        .bearer_auth(&viewer)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a viewer's acknowledge through the API");
    // Viewers read the beds and a patient's scores.
    let beds: Value = http
        .get(format!("{base}/api/beds"))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(beds.as_array().is_some_and(|b| b.len() >= 5), "{beds}");
    let r = http
        .get(format!("{base}/api/patients/{patient}/scores?hours=6"))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let scores: Value = r.json().await.unwrap();
    assert_eq!(scores["hours"], json!(6));
    assert!(scores["latest"].as_array().is_some_and(|l| !l.is_empty()));
    v.screenshot("wide-viewer").await;

    // Later in the recording two patients slide into septic shock: their tiles turn critical
    // and the patient view says which criteria are met, with the values behind them.
    let shocked = v
        .wait_js(
            "a bed in septic shock",
            "var t = document.querySelector('#grid .tile[data-level=critical]'); \
             return t && t.getAttribute('data-patient')",
        )
        .await;
    let shocked = shocked.as_str().expect("patient id").to_string();
    v.screenshot("wide-septic-shock").await;
    v.click(&format!(".tile[data-patient=\"{shocked}\"]")).await;
    v.wait_js(
        "the septic-shock card",
        "var c = document.querySelector('#patient .card[data-score=septic_shock]'); \
         return c && c.querySelector('.val').textContent === 'met' && \
         c.querySelectorAll('tbody tr.scored').length >= 2",
    )
    .await;
    let criteria = v
        .js("return Array.from(document.querySelectorAll('#patient .card[data-score=septic_shock] tbody tr.scored td:first-child')).map(function (t) { return t.firstChild.textContent; })")
        .await
        .unwrap();
    for c in ["vasopressor", "lactate"] {
        assert!(
            criteria.as_array().unwrap().contains(&json!(c)),
            "septic shock without {c} met: {criteria}"
        );
    }
    v.screenshot("patient-septic-shock").await;
    v.quit().await;

    // The replay ends; the dashboard keeps serving, and Ctrl-C stops it even with an event
    // stream open.
    vigil.wait_log("replay finished; still serving").await;
    let r = http
        .get(format!("{base}/api/beds"))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the dashboard is served after the replay");
    let mut stream = http
        .get(format!("{base}/api/events"))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let first = stream.chunk().await.unwrap().unwrap_or_default();
    let first = String::from_utf8_lossy(&first);
    assert!(
        first.contains("event: bed"),
        "the stream starts with the beds: {first}"
    );
    let status = vigil.interrupt().await;
    assert!(status.success(), "vigil demo after Ctrl-C: {status}");
    drop(stream);

    // Nothing the browser did made the server log an error.
    let log = vigil.log.lock().unwrap().clone();
    assert!(!log.contains("ERROR"), "vigil logged errors:\n{log}");
}
