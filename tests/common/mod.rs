//! What the integration tests share: a real Mosquitto broker on a free port, a QoS 1
//! publisher, and socat pseudo-terminal pairs. Each test binary uses part of it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

/// Hang protection for every wait (not a speed assertion).
pub const WAIT: Duration = Duration::from_secs(30);

// ------------------------------------------------------------------------------- the broker

pub fn mosquitto_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let extra = ["/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin"].map(PathBuf::from);
    on_path
        .into_iter()
        .chain(extra)
        .map(|d| d.join("mosquitto"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "mosquitto is not installed (looked on PATH and in /usr/sbin): these tests run \
                 against a real broker; scripts/test.sh installs it (apt-get install mosquitto)"
            )
        })
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A Mosquitto process with persistence in its own directory; killed on drop.
pub struct Broker {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl Broker {
    pub async fn start(extra_conf: &str) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let d = dir.path().display();
        let mut conf = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
             persistence_location {d}/\nautosave_interval 1\nlog_dest file {d}/mosquitto.log\n\
             log_type all\n{extra_conf}\n"
        );
        if running_as_root() {
            // Otherwise Mosquitto drops to its own user, who cannot write the temp directory.
            conf.push_str("user root\n");
        }
        std::fs::write(dir.path().join("mosquitto.conf"), conf).unwrap();
        let mut b = Broker {
            dir,
            port,
            child: None,
        };
        b.spawn().await;
        b
    }

    pub async fn spawn(&mut self) {
        let child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts");
        self.child = Some(child);
        let port = self.port;
        let up = tokio::time::timeout(WAIT, async {
            while tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            up.is_ok(),
            "mosquitto did not listen on {port}: {}",
            self.log()
        );
    }

    /// SIGTERM, so Mosquitto saves its sessions and queued messages, then waits for the exit.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let exited = tokio::time::timeout(WAIT, async {
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        if exited.is_err() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mosquitto ignored SIGTERM");
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ------------------------------------------------------------------------------- a publisher

/// A QoS 1 publisher that waits for the broker's PUBACK of every message.
pub struct Publisher {
    pub client: AsyncClient,
    acks: tokio::sync::mpsc::UnboundedReceiver<u16>,
}

pub async fn publisher(port: u16, id: &str) -> Publisher {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(5));
    o.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(o, 16);
    let (tx, acks) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(a))) => {
                    if tx.send(a.pkid).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(rumqttc::ConnectionError::RequestsDone) => return,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    Publisher { client, acks }
}

impl Publisher {
    pub async fn publish(&mut self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .unwrap();
        tokio::time::timeout(WAIT, self.acks.recv())
            .await
            .expect("the broker acknowledges the publish")
            .expect("publisher running");
    }
}

/// A pseudo-terminal pair made by socat: `gw` for the gateway, `dev` for the simulator.
pub struct PtyPair {
    child: Option<Child>,
    pub gw: PathBuf,
    pub dev: PathBuf,
}

impl PtyPair {
    pub fn start(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("a directory for the pty links");
        let mut p = PtyPair {
            child: None,
            gw: dir.join("gw"),
            dev: dir.join("dev"),
        };
        p.plug();
        p
    }

    /// Creates the pair (again).
    pub fn plug(&mut self) {
        let child = Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", self.gw.display()))
            .arg(format!("pty,raw,echo=0,link={}", self.dev.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat is needed for the serial tests (scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !(self.gw.exists() && self.dev.exists()) {
            assert!(std::time::Instant::now() < deadline, "socat made no ptys");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Destroys the pair: both ends see the line go away, as with a pulled cable.
    pub fn unplug(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.gw);
        let _ = std::fs::remove_file(&self.dev);
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        self.unplug();
    }
}
