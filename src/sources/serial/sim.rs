//! Runs a device simulator on a serial port or a pseudo-terminal it creates: the device side of
//! a protocol, for tests and for trying vigil without hardware.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::{open_port, SerialLine};
use crate::model::Timestamp;
use crate::protocol::device::DeviceSimulator;

/// Where the simulated device is attached.
#[derive(Clone, Debug)]
pub enum SimPort {
    /// An existing port: one end of a `socat` pair, or a USB adapter wired to the gateway
    /// through a null-modem cable. Reopened when it disappears.
    Path(PathBuf, SerialLine),
    /// A new pseudo-terminal; its other end is linked at this path for the gateway to open.
    Pty(PathBuf),
}

/// Counters a simulator run reports when it stops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub reopens: u64,
}

/// Runs `sim` until `stop`.
pub async fn run_simulator(
    port: SimPort,
    mut sim: Box<dyn DeviceSimulator>,
    stop: CancellationToken,
) -> io::Result<SimStats> {
    let mut stats = SimStats::default();
    match port {
        SimPort::Pty(link) => {
            let (master, slave) = tokio_serial::SerialStream::pair().map_err(io::Error::from)?;
            let name = {
                use tokio_serial::SerialPort;
                slave.name().unwrap_or_default()
            };
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&name, &link)?;
            tracing::info!(pty = %name, link = %link.display(), "simulated device attached");
            // The slave stays open here so the master never reads EIO while the gateway is
            // between opens.
            let _slave = slave;
            let end = sim_session(master, sim.as_mut(), &stop, &mut stats).await;
            let _ = std::fs::remove_file(&link);
            end.map(|_| stats)
        }
        SimPort::Path(path, line) => {
            loop {
                if stop.is_cancelled() {
                    break;
                }
                match open_port(&path, &line) {
                    Ok(p) => {
                        tracing::info!(path = %path.display(), "simulated device attached");
                        if let Err(e) = sim_session(p, sim.as_mut(), &stop, &mut stats).await {
                            tracing::info!(path = %path.display(), error = %e, "port lost");
                        }
                    }
                    Err(e) => tracing::debug!(path = %path.display(), error = %e, "port not there"),
                }
                stats.reopens += 1;
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
            Ok(stats)
        }
    }
}

/// Waits until `path` exists (a pty link made by another process), up to `timeout`.
pub async fn wait_for_path(path: &Path, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if path.exists() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

async fn sim_session<S: AsyncRead + AsyncWrite + Unpin>(
    mut port: S,
    sim: &mut dyn DeviceSimulator,
    stop: &CancellationToken,
    stats: &mut SimStats,
) -> io::Result<()> {
    let mut tick = tokio::time::interval(sim.tick_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = vec![0u8; 4096];
    let mut out = Vec::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            r = port.read(&mut buf) => {
                let n = r?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "port closed"));
                }
                stats.bytes_in += n as u64;
                sim.on_bytes(buf.get(..n).unwrap_or_default(), Timestamp::now_wall(), &mut out);
            }
            _ = tick.tick() => sim.on_tick(Timestamp::now_wall(), &mut out),
        }
        if !out.is_empty() {
            port.write_all(&out).await?;
            port.flush().await?;
            stats.bytes_out += out.len() as u64;
            out.clear();
        }
    }
}

/// A simulator factory, for callers that restart simulators.
pub type SimFactory = Arc<dyn Fn() -> Box<dyn DeviceSimulator> + Send + Sync>;
