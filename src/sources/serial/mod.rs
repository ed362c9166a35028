//! Serial device sources: open the port, run the driver's session (association, polls,
//! keep-alives), normalize what it decodes, and reopen with backoff when the cable is pulled,
//! the device is switched off or it stops answering.
//!
//! The session is generic over any byte stream, so the same code runs on a real port, a
//! pseudo-terminal and, for simulators, the device side of either.

pub mod config;
pub mod decode;
pub mod drivers;
pub mod sim;

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

pub use config::{FlowControlConfig, ParityConfig, SerialLine, SerialSourceConfig};

use crate::bus::{IngestBatch, Publisher};
use crate::model::{IngestRecord, ObsId, Timestamp};
use crate::normalize::{DeviceOrigin, Normalized, Normalizer};
use crate::protocol::device::{DeviceDriver, DeviceEvent, FrameStats};
use crate::sources::replay::format::{
    RecordedProtocol, RecordedSource, RecordingEntry, RecordingHeader, RecordingWriter,
};
use crate::sources::replay::source::{batch_key, count_normalized};
use crate::telemetry::Metrics;

/// Makes a fresh driver for each session (a reopened port starts a new association).
pub type DriverFactory = Arc<dyn Fn() -> Box<dyn DeviceDriver> + Send + Sync>;

/// A serial source ready to run: its config, the resolved line settings and its driver.
#[derive(Clone)]
pub struct SerialPlan {
    pub cfg: SerialSourceConfig,
    pub line: SerialLine,
    /// `intellivue`, `medibus`, `datex`, `profile:<name>`.
    pub protocol: String,
    pub factory: DriverFactory,
}

impl std::fmt::Debug for SerialPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialPlan")
            .field("cfg", &self.cfg)
            .field("line", &self.line)
            .field("protocol", &self.protocol)
            .finish()
    }
}

/// What every device source shares with the pipeline.
#[derive(Clone)]
pub struct DeviceContext {
    pub normalizer: Arc<Mutex<Normalizer>>,
    pub out: Publisher<IngestBatch>,
    pub metrics: Arc<Metrics>,
    pub stop: CancellationToken,
}

/// Opens a port with the given line settings.
pub fn open_port(path: &Path, line: &SerialLine) -> io::Result<tokio_serial::SerialStream> {
    use tokio_serial::{DataBits, FlowControl, Parity, SerialPortBuilderExt, StopBits};
    let data_bits = match line.data_bits {
        5 => DataBits::Five,
        6 => DataBits::Six,
        7 => DataBits::Seven,
        _ => DataBits::Eight,
    };
    let parity = match line.parity {
        ParityConfig::None => Parity::None,
        ParityConfig::Even => Parity::Even,
        ParityConfig::Odd => Parity::Odd,
    };
    let stop_bits = if line.stop_bits == 2 {
        StopBits::Two
    } else {
        StopBits::One
    };
    let flow = match line.flow_control {
        FlowControlConfig::None => FlowControl::None,
        FlowControlConfig::RtsCts => FlowControl::Hardware,
        FlowControlConfig::XonXoff => FlowControl::Software,
    };
    tokio_serial::new(path.to_string_lossy(), line.baud)
        .data_bits(data_bits)
        .parity(parity)
        .stop_bits(stop_bits)
        .flow_control(flow)
        .open_native_async()
        .map_err(io::Error::from)
}

/// Turns a driver's events into normalized records for one device: keeps the device's identity
/// and the frame counters between calls. Shared by live ports, replayed captures and
/// `vigil decode`.
#[derive(Debug)]
pub struct DeviceFeed {
    source: String,
    origin: DeviceOrigin,
    /// The device id came from the config and is not replaced by what the device reports.
    fixed_id: bool,
    seq: u64,
    counted: FrameStats,
    /// The last observation id sent per code: a reading the device repeats unchanged in every
    /// poll (a NIBP measurement until the next cuff cycle) is sent once.
    last_ids: HashMap<String, ObsId>,
    /// Readings dropped as repeats.
    pub repeats: u64,
}

/// What a batch of driver events meant for the session.
#[derive(Debug, Default)]
pub struct FeedOutcome {
    pub normalized: Vec<Normalized>,
    /// Readings decoded (before normalization).
    pub readings: usize,
    pub connected: bool,
    /// The device ended the session.
    pub disconnected: Option<String>,
}

impl DeviceFeed {
    pub fn new(
        source: &str,
        protocol: &'static str,
        device_id: Option<&str>,
        unit: Option<&str>,
        bed: Option<&str>,
    ) -> Self {
        DeviceFeed {
            source: source.to_string(),
            origin: DeviceOrigin {
                protocol,
                device_id: device_id.unwrap_or(source).to_string(),
                model: None,
                unit: unit.map(str::to_string),
                bed: bed.map(str::to_string),
                patient: None,
                message: String::new(),
            },
            fixed_id: device_id.is_some(),
            seq: 0,
            counted: FrameStats::default(),
            last_ids: HashMap::new(),
            repeats: 0,
        }
    }

    pub fn origin(&self) -> &DeviceOrigin {
        &self.origin
    }

    /// Handles (and drains) `events` decoded from bytes received at `receive_time`.
    pub fn on_events(
        &mut self,
        events: &mut Vec<DeviceEvent>,
        normalizer: &Mutex<Normalizer>,
        receive_time: Timestamp,
    ) -> FeedOutcome {
        let mut out = FeedOutcome::default();
        for ev in events.drain(..) {
            match ev {
                DeviceEvent::Report(report) => {
                    if report.readings.is_empty() {
                        continue;
                    }
                    self.seq += 1;
                    self.origin.message = format!("{}#{}", self.source, self.seq);
                    out.readings += report.readings.len();
                    let Ok(mut n) = normalizer.lock() else {
                        tracing::error!(source = %self.source, "normalizer lock poisoned");
                        continue;
                    };
                    let mut normalized =
                        n.device(&self.source, &self.origin, &report, receive_time);
                    drop(n);
                    let before = normalized.records.len();
                    normalized.records.retain(|r| self.first_time_seen(r));
                    self.repeats += (before - normalized.records.len()) as u64;
                    out.normalized.push(normalized);
                }
                DeviceEvent::Identified(id) => {
                    tracing::info!(source = %self.source, model = ?id.model, serial = ?id.serial,
                        manufacturer = ?id.manufacturer, "device identified");
                    if let Some(m) = id.model.filter(|m| !m.trim().is_empty()) {
                        self.origin.model = Some(m);
                    }
                    if !self.fixed_id {
                        if let Some(s) = id.serial.filter(|s| !s.trim().is_empty()) {
                            self.origin.device_id = s;
                        }
                    }
                }
                DeviceEvent::Alarms { alarms } => {
                    for a in alarms {
                        tracing::info!(source = %self.source, code = %a.code, text = %a.text,
                            priority = a.priority, "device alarm");
                    }
                }
                DeviceEvent::Connected => out.connected = true,
                DeviceEvent::Disconnected { reason } => out.disconnected = Some(reason),
            }
        }
        out
    }

    /// False for an observation identical to the last one sent for its code.
    fn first_time_seen(&mut self, r: &IngestRecord) -> bool {
        let IngestRecord::Observation(o) = r else {
            return true;
        };
        let key = format!("{}|{}|{:?}", o.device().id, o.code.code, o.param);
        match self.last_ids.get_mut(&key) {
            Some(last) if *last == o.id => false,
            Some(last) => {
                *last = o.id;
                true
            }
            None => {
                // Bounded: a device has a few dozen codes; one that invents codes without end
                // only loses repeat suppression.
                if self.last_ids.len() < 4096 {
                    self.last_ids.insert(key, o.id);
                }
                true
            }
        }
    }

    /// Adds the counters' growth since the last call to the metrics.
    pub fn count_frames(&mut self, metrics: &Metrics, now: FrameStats) {
        let delta = |a: u64, b: u64| a.saturating_sub(b);
        let c = &self.counted;
        for (result, d) in [
            ("ok", delta(now.frames, c.frames)),
            (
                "checksum",
                delta(now.checksum_failures, c.checksum_failures),
            ),
            ("resync", delta(now.resyncs, c.resyncs)),
            ("decode_error", delta(now.decode_errors, c.decode_errors)),
        ] {
            if d > 0 {
                metrics
                    .device_frames
                    .with_label_values(&[&self.source, result])
                    .inc_by(d);
            }
        }
        self.counted = now;
    }

    /// A new session starts a new driver with its own counters.
    pub fn reset_counters(&mut self) {
        self.counted = FrameStats::default();
    }
}

/// Why a session ended.
#[derive(Debug)]
enum SessionEnd {
    Stopped,
    /// End of stream: the other side of a pseudo-terminal went away.
    Closed,
    Io(io::Error),
    /// The driver gave up (silence, refused association, device released it).
    Session(String),
    /// The pipeline is shutting down.
    BusClosed,
}

impl SessionEnd {
    fn reason(&self) -> &'static str {
        match self {
            SessionEnd::Stopped | SessionEnd::BusClosed => "stopped",
            SessionEnd::Closed => "closed",
            SessionEnd::Io(_) => "read_error",
            SessionEnd::Session(_) => "session",
        }
    }
}

/// Appends device bytes to a replay recording.
struct Capture {
    source: String,
    writer: RecordingWriter<io::BufWriter<std::fs::File>>,
}

impl Capture {
    fn create(plan: &SerialPlan, path: &Path) -> io::Result<Self> {
        let file = std::fs::File::create(path)?;
        let header = RecordingHeader::new(
            format!("capture of serial source {}", plan.cfg.name),
            vec![RecordedSource {
                name: plan.cfg.name.clone(),
                protocol: RecordedProtocol::Serial,
                profile: Some(plan.protocol.clone()),
                unit: plan.cfg.unit.clone(),
                bed: plan.cfg.bed.clone(),
            }],
        );
        Ok(Capture {
            source: plan.cfg.name.clone(),
            writer: RecordingWriter::new(io::BufWriter::new(file), &header)?,
        })
    }

    fn push(&mut self, t: Timestamp, bytes: &[u8]) {
        let entry = RecordingEntry::bytes(t, self.source.as_str(), bytes);
        if let Err(e) = self.writer.push(&entry) {
            tracing::warn!(source = %self.source, error = %e, "capture write failed");
        }
    }
}

/// Runs a serial source until `ctx.stop`: opens the port, runs sessions, reopens with capped
/// exponential backoff.
pub async fn run(plan: SerialPlan, ctx: DeviceContext) {
    let name = plan.cfg.name.clone();
    let protocol: &'static str = "serial";
    let mut feed = DeviceFeed::new(
        &name,
        protocol,
        plan.cfg.device_id.as_deref(),
        plan.cfg.unit.as_deref(),
        plan.cfg.bed.as_deref(),
    );
    let mut capture = match &plan.cfg.capture {
        Some(p) => match Capture::create(&plan, p) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(source = %name, path = %p.display(), error = %e,
                    "cannot create the capture file; running without it");
                None
            }
        },
        None => None,
    };
    let initial = Duration::from_millis(plan.cfg.reconnect_initial_ms.max(1));
    let max = Duration::from_millis(plan.cfg.reconnect_max_ms.max(plan.cfg.reconnect_initial_ms));
    let mut backoff = initial;
    let connected = ctx
        .metrics
        .device_connected
        .with_label_values(&[&name, &plan.protocol]);
    tracing::info!(source = %name, path = %plan.cfg.path.display(), line = %plan.line,
        driver = %plan.protocol, "serial source starting");
    let mut first = true;
    loop {
        if ctx.stop.is_cancelled() {
            break;
        }
        match open_port(&plan.cfg.path, &plan.line) {
            Err(e) => {
                if first {
                    tracing::warn!(source = %name, path = %plan.cfg.path.display(), error = %e,
                        retry_ms = backoff.as_millis() as u64, "cannot open the port; will retry");
                } else {
                    tracing::debug!(source = %name, error = %e, "port still unavailable");
                }
                ctx.metrics
                    .device_reconnects
                    .with_label_values(&[&name, "open_failed"])
                    .inc();
            }
            Ok(port) => {
                tracing::info!(source = %name, path = %plan.cfg.path.display(), "port open");
                let mut driver = (plan.factory)();
                feed.reset_counters();
                let end = session(
                    port,
                    driver.as_mut(),
                    &mut feed,
                    &ctx,
                    capture.as_mut(),
                    &mut backoff,
                    initial,
                )
                .await;
                connected.set(0);
                match &end {
                    SessionEnd::Stopped | SessionEnd::BusClosed => break,
                    SessionEnd::Io(e) => {
                        tracing::warn!(source = %name, error = %e, "port lost; reopening")
                    }
                    SessionEnd::Closed => tracing::warn!(source = %name, "port closed; reopening"),
                    SessionEnd::Session(r) => {
                        tracing::warn!(source = %name, reason = %r, "device session ended; reopening")
                    }
                }
                ctx.metrics
                    .device_reconnects
                    .with_label_values(&[&name, end.reason()])
                    .inc();
            }
        }
        first = false;
        tokio::select! {
            _ = ctx.stop.cancelled() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(max);
    }
    connected.set(0);
    tracing::info!(source = %name, "serial source stopped");
}

/// One session on an open stream.
async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    mut port: S,
    driver: &mut dyn DeviceDriver,
    feed: &mut DeviceFeed,
    ctx: &DeviceContext,
    mut capture: Option<&mut Capture>,
    backoff: &mut Duration,
    initial: Duration,
) -> SessionEnd {
    let source = feed.source.clone();
    let gauge = ctx
        .metrics
        .device_connected
        .with_label_values(&[&source, driver.protocol()]);
    let mut out = Vec::new();
    let mut events = Vec::new();
    driver.on_connect(Timestamp::now_wall(), &mut out);
    if let Err(e) = write_out(&mut port, &mut out).await {
        return SessionEnd::Io(e);
    }
    let mut tick = tokio::time::interval(driver.tick_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = vec![0u8; 4096];
    loop {
        let now;
        tokio::select! {
            _ = ctx.stop.cancelled() => return SessionEnd::Stopped,
            r = port.read(&mut buf) => {
                now = Timestamp::now_wall();
                match r {
                    Ok(0) => return SessionEnd::Closed,
                    Err(e) => return SessionEnd::Io(e),
                    Ok(n) => {
                        let bytes = buf.get(..n).unwrap_or_default();
                        if let Some(c) = capture.as_deref_mut() {
                            c.push(now, bytes);
                        }
                        driver.on_bytes(bytes, now, &mut events, &mut out);
                    }
                }
            }
            _ = tick.tick() => {
                now = Timestamp::now_wall();
                driver.on_tick(now, &mut events, &mut out);
            }
        }
        if let Err(e) = write_out(&mut port, &mut out).await {
            return SessionEnd::Io(e);
        }
        feed.count_frames(&ctx.metrics, driver.stats());
        if events.is_empty() {
            continue;
        }
        let outcome = feed.on_events(&mut events, &ctx.normalizer, now);
        if outcome.connected {
            gauge.set(1);
            tracing::info!(source = %source, "device session up");
        }
        if outcome.readings > 0 {
            gauge.set(1);
            *backoff = initial;
        }
        for n in outcome.normalized {
            ctx.metrics
                .messages_received
                .with_label_values(&[&source, "serial"])
                .inc();
            count_normalized(&ctx.metrics, &source, &n);
            if n.records.is_empty() {
                continue;
            }
            let key = batch_key(&n.records);
            if ctx.out.publish(&key, n.records).await.is_err() {
                return SessionEnd::BusClosed;
            }
        }
        if let Some(reason) = outcome.disconnected {
            return SessionEnd::Session(reason);
        }
    }
}

async fn write_out<S: AsyncWrite + Unpin>(port: &mut S, out: &mut Vec<u8>) -> io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let r = port.write_all(out).await;
    out.clear();
    r?;
    port.flush().await
}
