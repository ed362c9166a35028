//! The `vigil` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use vigil::app::{self, ReplayInput, RunOptions, SourcePlan};
use vigil::config::{Config, LogFormat, Speed};
use vigil::protocol::profile::ProfileSet;
use vigil::sources::serial::decode::{decode_capture, open_capture};
use vigil::sources::serial::drivers::DriverSpec;
use vigil::sources::serial::sim::{run_simulator, SimPort};
use vigil::sources::serial::DeviceFeed;
use vigil::telemetry::{self, Metrics};

/// The bundled demo recording (10 beds, 26 h), built into the binary so `vigil demo` runs
/// anywhere.
static DEMO_RECORDING: &[u8] = include_bytes!("../replay-data/demo-icu.jsonl.gz");

#[derive(Parser)]
#[command(
    name = "vigil",
    version,
    about = "Real-time ICU bedside-monitoring ingest and early-warning daemon",
    long_about = "vigil reads bedside monitors, ventilators, infusion pumps, ADT and lab feeds, \
normalizes every reading, scores each patient continuously (qSOFA, rolling SOFA, NEWS2, shock \
index, Sepsis-3 septic shock) and alerts the rapid-response team with the values behind every \
alert.\n\nStart with `vigil demo`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay the bundled 10-bed, 26-hour ICU recording through the whole pipeline, printing
    /// alerts as they fire and a per-bed summary. Needs no servers and opens no port unless
    /// --listen is given.
    Demo {
        /// Replay pace: `max` (as fast as possible) or a factor of real time (60 = 1 h/min).
        #[arg(long, default_value = "max")]
        speed: Speed,
        /// Serve the live dashboard (at /, with demo accounts printed on start), the API,
        /// /metrics, /healthz and /readyz here (e.g. 127.0.0.1:8080); kept up after the replay
        /// until Ctrl-C.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Also write every alert transition to this JSON-lines file.
        #[arg(long)]
        alerts: Option<PathBuf>,
        /// Also print resolutions and quiet re-openings, not only new alerts and escalations.
        #[arg(long)]
        transitions: bool,
    },
    /// Replay any recording in the vigil replay format (docs/replay-format.md) through the
    /// pipeline on virtual time. Same recording, same output files, byte for byte.
    Replay {
        /// The recording (`.jsonl` or `.jsonl.gz`).
        recording: PathBuf,
        /// `max` or a factor of real time.
        #[arg(long, default_value = "max")]
        speed: Speed,
        /// Write every alert transition as JSON lines.
        #[arg(long)]
        alerts: Option<PathBuf>,
        /// Write every score set as JSON lines.
        #[arg(long)]
        scores: Option<PathBuf>,
        /// Keep rejected messages (raw bytes, reason) in a dead-letter store in this directory;
        /// list them with `vigil deadletters --dir DIR`.
        #[arg(long)]
        dead_letters: Option<PathBuf>,
        /// Config for tables, site settings and sinks (its sources are ignored).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Do not print alerts on the console.
        #[arg(long)]
        no_console: bool,
    },
    /// Run the daemon: the sources, the in-process bus, the scorer, alerting and the HTTP
    /// endpoints from one config file. Stops cleanly on SIGINT/SIGTERM.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// The gateway role: the config's sources and the normalizer, publishing observations to
    /// Kafka (`[kafka]`). Returns when its sources end (replays), else runs until SIGTERM.
    Gateway {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// The scorer role: consumes observations from Kafka in the scorer consumer group (run
    /// several to share the partitions) and publishes score sets. Runs until SIGTERM.
    Scorer {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// The alerter role: consumes score sets from Kafka, raises and delivers alerts (the
    /// config's sinks) and publishes them to the alerts topic. Runs until SIGTERM.
    Alerter {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a config file, every device-profile table and every scoring table it references;
    /// list every problem with its file and line. Exit status 1 if there is any.
    Validate {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print a commented example config to standard output.
    GenerateConfig,
    /// Hash a password for `[[web.user]] password_pbkdf2` (read from standard input, one line),
    /// or with --token make a random API token and its `token_sha256`.
    HashPassword {
        #[arg(long)]
        token: bool,
    },
    /// List rejected messages kept in the dead-letter store: time, source, peer, reason, and
    /// the raw message.
    Deadletters {
        /// The store of this config's `[storage] dir`.
        #[arg(long, short, conflicts_with = "dir")]
        config: Option<PathBuf>,
        /// A dead-letter directory (e.g. one given to `vigil replay --dead-letters`).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Show at most the newest N.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print each record as one JSON line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Decode a serial capture offline with a built-in driver or a device profile: one JSON
    /// observation per line on stdout, frame statistics (frames, checksum failures, resyncs)
    /// on stderr. The input is raw device bytes or a recording a serial source's `capture`
    /// wrote.
    Decode {
        /// `intellivue`, `medibus`, `datex` or `profile:NAME`.
        #[arg(long)]
        protocol: String,
        #[arg(long)]
        input: PathBuf,
        /// A device-profiles directory (its `devices/` profiles join the built-in ones).
        #[arg(long)]
        profiles: Option<PathBuf>,
        /// Raw captures: when the first byte arrived (RFC 3339). Default: the file's
        /// modification time. Bytes are timed from it at the line rate.
        #[arg(long)]
        start: Option<String>,
        /// Raw captures: the line rate used to time the bytes (default: the driver's).
        #[arg(long)]
        baud: Option<u32>,
        /// Attribute the readings to this bed, as UNIT/BED.
        #[arg(long)]
        bed: Option<String>,
        /// Recordings with several serial sources: the one to decode.
        #[arg(long)]
        source: Option<String>,
        /// Print only the statistics.
        #[arg(long)]
        quiet: bool,
    },
    /// Run a simulated device: the device side of a protocol, written from its specification,
    /// on a pseudo-terminal it creates (--pty LINK) or an existing port (--port PATH), or write
    /// what it would send to a capture file (--capture FILE).
    SimulateDevice {
        /// `intellivue`, `medibus`, `datex` or `profile:NAME`.
        #[arg(long)]
        protocol: String,
        /// Create a pseudo-terminal and link its gateway end at this path; point a serial
        /// source's `path` at it.
        #[arg(long, conflicts_with_all = ["port", "capture"])]
        pty: Option<PathBuf>,
        /// Attach to an existing port (one end of a socat pair, a USB adapter on a null-modem
        /// cable); reattaches when it disappears.
        #[arg(long, conflicts_with = "capture")]
        port: Option<PathBuf>,
        /// Write SECONDS of the device's side of a session, made in memory, to this file (a
        /// raw capture for `vigil decode`).
        #[arg(long)]
        capture: Option<PathBuf>,
        /// With --capture: how many seconds; with --pty/--port: stop after this many
        /// (default: run until SIGINT/SIGTERM).
        #[arg(long)]
        seconds: Option<u32>,
        #[arg(long)]
        profiles: Option<PathBuf>,
    },
    /// Send HL7 v2 messages from files over MLLP and print each acknowledgement (an ADT admit
    /// to a running `vigil run`, a test message to any MLLP receiver). Exit status 1 unless
    /// every message got AA or CA.
    Send {
        /// The receiver.
        #[arg(long, default_value = "127.0.0.1:2575")]
        target: std::net::SocketAddr,
        /// Files of HL7 messages (segments separated by CR, LF or CRLF; several messages per
        /// file, each starting with MSH).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Load generators for measuring end-to-end throughput and latency.
    #[command(subcommand)]
    Loadgen(LoadgenCommand),
    /// Make recordings: the seeded demo generator.
    #[command(subcommand)]
    Recording(RecordingCommand),
    /// Evaluate vigil against reference results on public data.
    #[command(subcommand)]
    Evaluate(EvaluateCommand),
    /// Fit vigil's risk model on public data (docs/validation.md).
    #[command(subcommand)]
    Train(TrainCommand),
}

#[derive(Subcommand)]
enum TrainCommand {
    /// Fit `sepsis_risk` on PhysioNet 2019 files with patient-level cross-validation and write
    /// the model artifact (scoring/sepsis-risk.json).
    Physionet {
        /// Directory of challenge files (*.psv) with a SepsisLabel column.
        #[arg(long)]
        input: PathBuf,
        /// Labels from same-named files here instead.
        #[arg(long)]
        labels: Option<PathBuf>,
        #[arg(long, default_value = "scoring/sepsis-risk.json")]
        out: PathBuf,
        #[arg(long, default_value_t = 5)]
        folds: usize,
        /// L2 penalty on the standardised weights.
        #[arg(long, default_value_t = 10.0)]
        l2: f64,
        #[arg(long, default_value_t = 2019)]
        seed: u64,
        /// Worker threads (0: one per core).
        #[arg(long, default_value_t = 0)]
        jobs: usize,
    },
}

#[derive(Subcommand)]
enum EvaluateCommand {
    /// Replay the MIMIC-IV demo through the pipeline and compare the hourly SOFA with
    /// mimic-code's (docs/sofa-agreement.md).
    MimicSofa {
        /// The demo directory (icu/, hosp/, sofa_reference.csv).
        #[arg(long)]
        input: PathBuf,
        /// Write vigil's hourly SOFA here, in the reference's columns.
        #[arg(long)]
        out: PathBuf,
        /// Score like mimic-code where vigil deliberately differs.
        #[arg(long)]
        mimic_compatible: bool,
        /// The reference table (default: INPUT/sofa_reference.csv).
        #[arg(long)]
        reference: Option<PathBuf>,
        /// Also write the imported recording (replayable with `vigil replay`).
        #[arg(long)]
        recording: Option<PathBuf>,
        /// Differences listed per component.
        #[arg(long, default_value_t = 10)]
        show: usize,
    },
    /// Replay PhysioNet 2019 files through the pipeline: one prediction file per input file
    /// and a report comparing vigil's model with the rule baselines (docs/validation.md).
    Physionet {
        /// Directory of challenge files (*.psv); a SepsisLabel column is optional.
        #[arg(long)]
        input: PathBuf,
        /// Write `PredictedProbability|PredictedLabel` files here, one per input file.
        #[arg(long)]
        predictions_out: PathBuf,
        /// Write report.json, report.html and the PNG plots here.
        #[arg(long)]
        report_out: PathBuf,
        /// Alert threshold on sepsis_risk (default: the model's).
        #[arg(long)]
        threshold: Option<f64>,
        /// Labels from same-named files here (their SepsisLabel column).
        #[arg(long)]
        labels: Option<PathBuf>,
        /// A model artifact instead of the built-in scoring/sepsis-risk.json.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Also write the cohort as one recording (one bed per patient).
        #[arg(long)]
        recording: Option<PathBuf>,
        /// Worker threads (0: one per core).
        #[arg(long, default_value_t = 0)]
        jobs: usize,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
}

#[derive(Subcommand)]
enum LoadgenCommand {
    /// Send IHE PCD-01 monitor messages over MLLP (one bed per connection, admitted first) and
    /// report throughput and ACK latency p50/p99/max.
    Mllp {
        /// The receiver, e.g. a `vigil run` MLLP source.
        #[arg(long, default_value = "127.0.0.1:2575")]
        target: std::net::SocketAddr,
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Messages per second over all connections; 0 = as fast as the ACKs come back.
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Seconds to run.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
    },
}

#[derive(Subcommand)]
enum RecordingCommand {
    /// Generate the demo recording deterministically (same seed, same bytes).
    Demo {
        #[arg(long, default_value_t = 2026)]
        seed: u64,
        #[arg(long, default_value_t = 10)]
        beds: usize,
        #[arg(long, default_value_t = 26)]
        hours: u32,
        /// A PhysioNet-2019 patient file (`|`-separated hourly rows) to add as one more bed.
        #[arg(long)]
        physionet: Option<PathBuf>,
        /// Output path; `.gz` compresses.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn load_config(path: &std::path::Path) -> anyhow::Result<Config> {
    Config::load(path)
        .map_err(|p| anyhow::anyhow!("{} has {} problem(s):\n{p}", path.display(), p.0.len()))
}

/// Cancels `token` on SIGINT or SIGTERM.
fn stop_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot watch SIGTERM");
                        let _ = ctrl_c.await;
                        token.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown requested: stopping sources, draining stages");
        token.cancel();
    });
}

fn load_profiles(dir: Option<&std::path::Path>) -> anyhow::Result<ProfileSet> {
    match dir {
        None => Ok(ProfileSet::builtin()),
        Some(d) => {
            let devices = if d.join("devices").is_dir() {
                d.join("devices")
            } else {
                d.to_path_buf()
            };
            ProfileSet::load_dir(&devices).map_err(|p| {
                anyhow::anyhow!("{}:\n{}", devices.display(), vigil::config::Problems(p))
            })
        }
    }
}

#[allow(clippy::too_many_arguments)] // one per command-line option
fn decode_command(
    protocol: &str,
    input: &std::path::Path,
    profiles: Option<&std::path::Path>,
    start: Option<&str>,
    baud: Option<u32>,
    bed: Option<&str>,
    source: Option<String>,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let profiles = load_profiles(profiles)?;
    let spec = DriverSpec::parse(protocol, &profiles).map_err(|e| anyhow::anyhow!(e))?;
    let start = match start {
        Some(s) => vigil::model::Timestamp::parse_rfc3339(s).map_err(|e| anyhow::anyhow!(e))?,
        None => {
            let modified = std::fs::metadata(input)
                .and_then(|m| m.modified())
                .with_context(|| format!("{}", input.display()))?;
            let ms = modified
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            vigil::model::Timestamp::from_millis(ms)
        }
    };
    let baud = baud.unwrap_or(spec.line_defaults().baud);
    let capture =
        open_capture(input, source, start, baud).with_context(|| format!("{}", input.display()))?;
    let (unit, bed) = match bed.map(|b| b.split_once('/').unwrap_or(("", b))) {
        Some((u, b)) => (Some(u).filter(|u| !u.is_empty()), Some(b)),
        None => (None, None),
    };
    let normalizer = std::sync::Mutex::new(vigil::normalize::Normalizer::new(
        vigil::normalize::NormalizeTables::builtin()
            .map_err(|p| anyhow::anyhow!("built-in tables: {}", vigil::config::Problems(p)))?,
        vigil::normalize::NormalizeSettings::default(),
    ));
    let name = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "capture".into());
    let mut feed = DeviceFeed::new(&name, "serial", None, unit, bed);
    let mut driver = spec.driver();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let summary = decode_capture(driver.as_mut(), capture, &normalizer, &mut feed, |o| {
        if quiet {
            return Ok(());
        }
        serde_json::to_writer(&mut out, o).map_err(std::io::Error::other)?;
        out.write_all(b"\n")
    })?;
    out.flush()?;
    let f = summary.frames;
    eprintln!(
        "{}: {} bytes, {} frames, {} checksum failures, {} resyncs ({} bytes discarded), {} bytes skipped by design, {} undecodable frames; {} readings, {} observations",
        spec.name(), summary.bytes, f.frames, f.checksum_failures, f.resyncs, f.discarded_bytes,
        f.skipped_bytes, f.decode_errors, summary.readings, summary.observations
    );
    Ok(if f.frames == 0 {
        eprintln!("no frame decoded: is this a {} capture?", spec.name());
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn simulate_command(
    protocol: &str,
    pty: Option<PathBuf>,
    port: Option<PathBuf>,
    capture: Option<PathBuf>,
    seconds: Option<u32>,
    profiles: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let profiles = load_profiles(profiles)?;
    let spec = DriverSpec::parse(protocol, &profiles).map_err(|e| anyhow::anyhow!(e))?;
    if let Some(path) = capture {
        let secs = seconds.unwrap_or(60);
        let bytes = spec
            .capture(secs, vigil::model::Timestamp::now_wall())
            .map_err(|e| anyhow::anyhow!(e))?;
        std::fs::write(&path, &bytes).with_context(|| format!("{}", path.display()))?;
        eprintln!(
            "wrote {} bytes: {secs} s of a simulated {} session (device to host) to {}",
            bytes.len(),
            spec.name(),
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let target = match (pty, port) {
        (Some(link), _) => SimPort::Pty(link),
        (None, Some(p)) => SimPort::Path(p, spec.line_defaults()),
        (None, None) => anyhow::bail!(
            "say where the device is attached: --pty LINK, --port PATH or --capture FILE"
        ),
    };
    telemetry::init_logging("info", false);
    let sim = spec.simulator().map_err(|e| anyhow::anyhow!(e))?;
    let rt = runtime()?;
    rt.block_on(async move {
        let stop = CancellationToken::new();
        stop_on_signals(stop.clone());
        if let Some(s) = seconds {
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_secs(u64::from(s))).await;
                stop.cancel();
            });
        }
        eprintln!("simulating a {} device; SIGINT stops it", spec.name());
        let stats = run_simulator(target, sim, stop).await?;
        eprintln!(
            "simulator stopped: {} bytes in, {} bytes out",
            stats.bytes_in, stats.bytes_out
        );
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}

fn send_command(target: std::net::SocketAddr, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    use vigil::protocol::hl7::ack::AckCode;
    use vigil::sources::mllp::client::{MllpClient, MllpClientSettings};
    let rt = runtime()?;
    rt.block_on(async move {
        let mut client = MllpClient::new(target, MllpClientSettings::default());
        let (mut sent, mut accepted) = (0usize, 0usize);
        for f in files {
            let bytes = std::fs::read(f).with_context(|| format!("{}", f.display()))?;
            for msg in vigil::protocol::hl7::split_messages(&bytes) {
                // Segments end in CR on the wire, whatever the file used.
                let text = String::from_utf8_lossy(msg);
                let wire: String = text
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| format!("{l}\r"))
                    .collect();
                sent += 1;
                let acks = client
                    .send(wire.as_bytes())
                    .await
                    .with_context(|| format!("{}: sending to {target}", f.display()))?;
                for a in &acks {
                    let ok = matches!(a.code, AckCode::AA | AckCode::CA);
                    println!(
                        "{} {} {}{}",
                        f.display(),
                        a.control_id,
                        a.code.as_str(),
                        a.error_text
                            .as_deref()
                            .map(|t| format!(" {t}"))
                            .unwrap_or_default()
                    );
                    if ok && acks.last().is_some_and(|l| std::ptr::eq(l, a)) {
                        accepted += 1;
                    }
                }
            }
        }
        eprintln!("{sent} message(s) sent, {accepted} accepted");
        Ok(if sent > 0 && sent == accepted {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Send { target, files } => send_command(target, &files),
        Command::Decode {
            protocol,
            input,
            profiles,
            start,
            baud,
            bed,
            source,
            quiet,
        } => decode_command(
            &protocol,
            &input,
            profiles.as_deref(),
            start.as_deref(),
            baud,
            bed.as_deref(),
            source,
            quiet,
        ),
        Command::SimulateDevice {
            protocol,
            pty,
            port,
            capture,
            seconds,
            profiles,
        } => simulate_command(&protocol, pty, port, capture, seconds, profiles.as_deref()),
        Command::Deadletters {
            config,
            dir,
            limit,
            json,
        } => {
            let dir = match (config, dir) {
                (Some(c), _) => load_config(&c)?.storage.deadletter_dir(),
                (None, Some(d)) => d,
                (None, None) => anyhow::bail!("give --config FILE or --dir DIR"),
            };
            let all = vigil::sources::deadletter::list(&dir)?;
            let shown = &all[all.len().saturating_sub(limit)..];
            if json {
                for d in shown {
                    println!("{}", serde_json::to_string(d)?);
                }
            } else {
                println!(
                    "{} dead letter(s) in {}; newest {}:",
                    all.len(),
                    dir.display(),
                    shown.len()
                );
                for d in shown {
                    let raw = String::from_utf8_lossy(&d.raw()).replace('\r', "\n    ");
                    println!(
                        "\n{}  {}  {}  [{}] {}\n    {}",
                        d.time,
                        d.source,
                        d.peer.as_deref().unwrap_or("-"),
                        d.kind,
                        d.reason,
                        raw.trim_end()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Loadgen(LoadgenCommand::Mllp {
            target,
            connections,
            rate,
            duration,
        }) => {
            if !(duration > 0.0 && duration <= 3600.0) {
                anyhow::bail!("--duration must be between 0 and 3600 seconds");
            }
            let rt = runtime()?;
            let report = rt.block_on(vigil::sources::mllp::loadgen::run(
                vigil::sources::mllp::loadgen::LoadgenSettings {
                    target,
                    connections,
                    rate,
                    duration: std::time::Duration::from_secs_f64(duration),
                },
            ));
            println!("{}", report.render());
            Ok(if report.accepted > 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::HashPassword { token } => {
            if token {
                let t = vigil::web::auth::random_token();
                println!("token        = {t}");
                println!("token_sha256 = {:?}", vigil::web::auth::sha256_hex(&t));
            } else {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .context("reading the password from standard input")?;
                let pw = line.trim_end_matches(['\r', '\n']);
                if pw.is_empty() {
                    anyhow::bail!("empty password on standard input");
                }
                println!(
                    "password_pbkdf2 = {:?}",
                    vigil::web::auth::hash_password(pw)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::GenerateConfig => {
            print!("{}", vigil::config::EXAMPLE);
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { config } => match Config::load(&config) {
            Ok(cfg) => {
                println!(
                    "{}: ok ({} source(s), {} sink(s), {} alert rule(s))",
                    config.display(),
                    cfg.sources.len(),
                    cfg.alerting.sink.len(),
                    cfg.alert_rules.rules.len()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(p) => {
                eprintln!("{}: {} problem(s)", config.display(), p.0.len());
                for problem in &p.0 {
                    eprintln!("  {problem}");
                }
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Recording(RecordingCommand::Demo {
            seed,
            beds,
            hours,
            physionet,
            out,
        }) => {
            use vigil::sources::replay::{demo, physionet as pn};
            let patient = match &physionet {
                Some(p) => {
                    let text =
                        std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?;
                    let id = p
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    Some(
                        pn::parse_physionet(&id, &text)
                            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
                    )
                }
                None => None,
            };
            let params = demo::DemoParams {
                seed,
                beds,
                hours,
                ..Default::default()
            };
            let (header, entries) = demo::generate_demo(&params, patient.as_ref());
            demo::write_recording(&out, &header, &entries)
                .with_context(|| format!("{}", out.display()))?;
            println!("wrote {} entries to {}", entries.len(), out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Evaluate(EvaluateCommand::MimicSofa {
            input,
            out,
            mimic_compatible,
            reference,
            recording,
            show,
        }) => {
            vigil::evaluate::mimic_sofa::run(&vigil::evaluate::mimic_sofa::MimicSofaOptions {
                input,
                out,
                mimic_compatible,
                reference,
                recording,
                stays: Default::default(),
                show,
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Evaluate(EvaluateCommand::Physionet {
            input,
            predictions_out,
            report_out,
            threshold,
            labels,
            model,
            recording,
            jobs,
            quiet,
        }) => {
            use vigil::evaluate::report;
            let r = report::run(&report::PhysionetOptions {
                input,
                predictions_out,
                report_out: report_out.clone(),
                threshold,
                labels,
                model,
                recording,
                jobs,
                progress: !quiet,
            })?;
            print!("{}", report::summary(&r));
            println!("report: {}", report_out.join("report.html").display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Train(TrainCommand::Physionet {
            input,
            labels,
            out,
            folds,
            l2,
            seed,
            jobs,
        }) => {
            use vigil::evaluate::train;
            let started = std::time::Instant::now();
            let (_, cv) = train::run(&train::TrainOptions {
                input,
                labels,
                out: out.clone(),
                folds,
                l2,
                seed,
                jobs,
                progress: true,
            })?;
            println!("{}", serde_json::to_string_pretty(&cv)?);
            println!(
                "wrote {} in {:.1} s",
                out.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            speed,
            listen,
            alerts,
            transitions,
        } => {
            telemetry::init_logging("warn", false);
            let mut cfg =
                app::demo_config().map_err(|p| anyhow::anyhow!("built-in tables: {p}"))?;
            cfg.alerting.sink.push(vigil::config::SinkConfig::Console {
                show_transitions: transitions,
            });
            cfg.http.listen = listen;
            let plan = vec![SourcePlan::replay(
                "demo",
                ReplayInput::Bytes(DEMO_RECORDING),
                speed,
            )];
            let (auth, users) = match listen {
                Some(_) => vigil::web::AuthStore::demo(),
                None => (vigil::web::AuthStore::empty(), Vec::new()),
            };
            replay_and_report(
                cfg,
                plan,
                RunOptions {
                    alerts_out: alerts,
                    ..Default::default()
                },
                true,
                auth,
                users,
            )
        }
        Command::Replay {
            recording,
            speed,
            alerts,
            scores,
            dead_letters,
            config,
            no_console,
        } => {
            telemetry::init_logging("warn", false);
            let mut cfg = match &config {
                Some(p) => load_config(p)?,
                None => Config::embedded().map_err(|p| anyhow::anyhow!("built-in tables: {p}"))?,
            };
            cfg.sources.clear();
            cfg.http.listen = None;
            if !no_console
                && !cfg
                    .alerting
                    .sink
                    .iter()
                    .any(|s| matches!(s, vigil::config::SinkConfig::Console { .. }))
            {
                cfg.alerting.sink.push(vigil::config::SinkConfig::Console {
                    show_transitions: false,
                });
            }
            if !recording.exists() {
                anyhow::bail!("recording {} does not exist", recording.display());
            }
            let plan = vec![SourcePlan::replay(
                "replay",
                ReplayInput::File(recording),
                speed,
            )];
            replay_and_report(
                cfg,
                plan,
                RunOptions {
                    alerts_out: alerts,
                    scores_out: scores,
                    dead_letters,
                    ..Default::default()
                },
                !no_console,
                vigil::web::AuthStore::empty(),
                Vec::new(),
            )
        }
        Command::Run { config } => run_daemon(&config, app::Roles::ALL),
        Command::Gateway { config } => run_daemon(&config, app::Roles::GATEWAY),
        Command::Scorer { config } => run_daemon(&config, app::Roles::SCORER),
        Command::Alerter { config } => run_daemon(&config, app::Roles::ALERTER),
    }
}

type HttpServer = (std::net::SocketAddr, tokio::task::JoinHandle<()>);

/// What a process runs besides its pipeline.
struct Process {
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    http: Option<HttpServer>,
    /// The alert service the alerter feeds and the API serves (alerter role only).
    alerts: Option<Arc<vigil::alerting::AlertService>>,
    /// What the dashboard shows (alerter role only).
    live: Option<Arc<vigil::web::LiveView>>,
}

/// Metrics, a stop token cancelled by SIGINT/SIGTERM, the alert service (alerter role; kept in
/// memory when `memory_store`), and the HTTP endpoints if configured, with the users of
/// `auth`.
async fn start_process(
    cfg: &Config,
    alerter: bool,
    memory_store: bool,
    auth: vigil::web::AuthStore,
) -> anyhow::Result<Process> {
    let metrics = Arc::new(Metrics::new());
    let stop = CancellationToken::new();
    stop_on_signals(stop.clone());
    let alerts = match alerter {
        true => Some(app::alert_service(cfg, &metrics, memory_store).await?),
        false => None,
    };
    let live = alerter.then(|| Arc::new(vigil::web::LiveView::new()));
    let http = match cfg.http.listen {
        Some(addr) => {
            let state = vigil::web::WebState {
                metrics: metrics.clone(),
                auth: Arc::new(auth),
                alerts: alerts.clone(),
                live: live.clone(),
            };
            Some(
                vigil::web::serve(addr, state, stop.clone())
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?,
            )
        }
        None => None,
    };
    Ok(Process {
        metrics,
        stop,
        http,
        alerts,
        live,
    })
}

/// The users of the config's `[[web.user]]`.
fn config_users(cfg: &Config) -> anyhow::Result<vigil::web::AuthStore> {
    vigil::web::AuthStore::from_config(&cfg.web.user, cfg.web.session_minutes).map_err(|errs| {
        anyhow::anyhow!(
            "[[web.user]]: {}",
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        )
    })
}

fn run_daemon(config: &std::path::Path, roles: app::Roles) -> anyhow::Result<ExitCode> {
    // Every problem is reported before anything starts or any port opens.
    let cfg = load_config(config)?;
    telemetry::init_logging(&cfg.log.level, cfg.log.format == LogFormat::Json);
    let rt = runtime()?;
    rt.block_on(async move {
        let Process {
            metrics,
            stop,
            http,
            alerts,
            live,
        } = start_process(&cfg, roles.alerter, false, config_users(&cfg)?).await?;
        tracing::info!(sources = cfg.sources.len(), "vigil running");
        let opts = RunOptions {
            dead_letters: Some(cfg.storage.deadletter_dir()),
            census_journal: Some(cfg.storage.census_journal()),
            alerts,
            live,
            ..RunOptions::default()
        };
        let plan = app::plan_sources(&cfg);
        let report = app::run_roles(&cfg, roles, plan, opts, metrics, stop.clone()).await?;
        tracing::info!(
            alerts = report.alerts_active,
            score_sets = report.score_sets,
            "sources ended; pipeline drained"
        );
        if !stop.is_cancelled() {
            // Sources have ended (replays): keep serving until asked to stop.
            if http.is_some() {
                tracing::info!("all sources finished; serving until SIGINT/SIGTERM");
                stop.cancelled().await;
            }
        }
        stop.cancel();
        if let Some((_, h)) = http {
            let _ = h.await;
        }
        tracing::info!("stopped");
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}

fn replay_and_report(
    cfg: Config,
    plan: Vec<SourcePlan>,
    mut opts: RunOptions,
    print_summary: bool,
    auth: vigil::web::AuthStore,
    users: Vec<vigil::web::auth::DemoUser>,
) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    rt.block_on(async move {
        let Process {
            metrics,
            stop,
            http,
            alerts,
            live,
        } = start_process(&cfg, true, true, auth).await?;
        opts.alerts = alerts;
        opts.live = live;
        if let Some((addr, _)) = &http {
            eprintln!("dashboard: http://{addr}/  (API under /api; /metrics, /healthz, /readyz)");
            if !users.is_empty() {
                eprintln!("demo accounts (passwords are new on every start):");
            }
            for u in &users {
                eprintln!(
                    "  {:<9} password {}  ({})",
                    u.name,
                    u.password,
                    match u.role {
                        vigil::web::Role::Viewer => "sees beds and alerts",
                        _ => "also acknowledges and escalates alerts",
                    }
                );
            }
        }
        let started = std::time::Instant::now();
        let report = app::run_pipeline(&cfg, plan, opts, metrics, stop.clone()).await?;
        let elapsed = started.elapsed();
        if print_summary {
            let entries: u64 = report.replay.iter().map(|r| r.entries).sum();
            let rejected: u64 = report.replay.iter().map(|r| r.rejected).sum();
            let records: u64 = report.replay.iter().map(|r| r.records).sum();
            println!();
            if let Some((a, b)) = report.span {
                println!(
                    "replayed {} messages ({} rejected), {} records, {} score sets; virtual {} → {} ({:.1} h) in {:.2} s",
                    entries, rejected, records, report.score_sets, a, b,
                    b.since(a) as f64 / 3_600_000.0, elapsed.as_secs_f64()
                );
            }
            println!("{} alert(s) raised", report.alerts_active);
            if let Some(b) = &report.burden {
                print!("{}", b.summary());
            }
            println!();
            print!("{}", app::summary_table(&report));
        }
        if let Some((addr, h)) = http {
            // The replay is over; the dashboard stays up so its final state can be looked at.
            if !stop.is_cancelled() {
                eprintln!("replay finished; still serving http://{addr}/ until Ctrl-C");
                stop.cancelled().await;
            }
            stop.cancel();
            let _ = h.await;
        }
        stop.cancel();
        Ok(ExitCode::SUCCESS)
    })
}
