//! `vigil loadgen mllp`: drives an MLLP receiver with IHE PCD-01 monitor messages over N
//! connections at a target rate and reports throughput and acknowledgement latency. Loopback
//! or the operator's own test hosts only; every run is bounded by `--duration`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::client::{MllpClient, MllpClientSettings};
use crate::protocol::hl7::ack::AckCode;

#[derive(Clone, Debug)]
pub struct LoadgenSettings {
    pub target: SocketAddr,
    pub connections: usize,
    /// Messages per second over all connections; 0 = as fast as the answers come.
    pub rate: f64,
    pub duration: Duration,
}

#[derive(Debug, Default, Clone)]
pub struct LoadgenReport {
    pub sent: u64,
    pub accepted: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Acknowledgement latencies, sorted, in microseconds.
    pub latencies_us: Vec<u64>,
}

impl LoadgenReport {
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        if self.latencies_us.is_empty() {
            return None;
        }
        let idx = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us
            .get(idx.min(self.latencies_us.len() - 1))
            .map(|us| Duration::from_micros(*us))
    }

    pub fn render(&self) -> String {
        let ms = |d: Option<Duration>| {
            d.map(|d| format!("{:.2} ms", d.as_secs_f64() * 1000.0))
                .unwrap_or_else(|| "-".into())
        };
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        format!(
            "sent {} messages in {:.2} s: {:.0} msg/s accepted ({} accepted, {} errors)\nACK latency p50 {}  p99 {}  max {}",
            self.sent,
            secs,
            self.accepted as f64 / secs,
            self.accepted,
            self.errors,
            ms(self.percentile(0.50)),
            ms(self.percentile(0.99)),
            ms(self.latencies_us.last().map(|u| Duration::from_micros(*u))),
        )
    }
}

/// A PCD-01 monitor report (13 OBX, about 1.4 KB) for one bed, observed `seq` seconds after
/// the run's start (each report is a new reading, not a repeat the scorer would ignore).
pub fn pcd01(control_id: &str, bed: usize, hr: u32, seq: u64) -> String {
    let secs = i64::try_from(seq).unwrap_or(i64::MAX);
    let t = (chrono::DateTime::<chrono::Utc>::from_timestamp(1_767_614_400, 0).unwrap_or_default()
        + chrono::Duration::seconds(secs))
    .format("%Y%m%d%H%M%S+0000")
    .to_string();
    format!(
        "MSH|^~\\&|LOADGEN^0011220000000001^EUI-64|VIGIL|||{t}||ORU^R01^ORU_R01|{control_id}|P|2.6|||AL|NE||UNICODE UTF-8|||IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO\r\
PID|||LG{bed}^^^HOSP^MR\r\
PV1||I|LOAD^^B{bed}\r\
OBR|1||{control_id}^LOADGEN|69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|||{t}\r\
OBX|1||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X|||||||MON{bed}^monitor\r\
OBX|2|NM|147842^MDC_ECG_HEART_RATE^MDC|1.2.1.1|{hr}|264864^MDC_DIM_BEAT_PER_MIN^MDC|50-120||||R|||{t}||||MON{bed}\r\
OBX|3|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.3.1.1|96|262688^MDC_DIM_PERCENT^MDC|90-100||||R|||{t}||||MON{bed}\r\
OBX|4|NM|150448^MDC_PULS_OXIM_PERF_REL^MDC|1.3.1.2|3.1|262688^MDC_DIM_PERCENT^MDC|||||R|||{t}||||MON{bed}\r\
OBX|5|NM|149530^MDC_PULS_OXIM_PULS_RATE^MDC|1.3.1.3|{hr}|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R|||{t}||||MON{bed}\r\
OBX|6|NM|151562^MDC_RESP_RATE^MDC|1.4.1.1|18|264928^MDC_DIM_RESP_PER_MIN^MDC|8-30||||R|||{t}||||MON{bed}\r\
OBX|7|NM|150033^MDC_PRESS_BLD_ART_SYS^MDC|1.5.1.1|118|266016^MDC_DIM_MMHG^MDC|||||R|||{t}||||MON{bed}\r\
OBX|8|NM|150034^MDC_PRESS_BLD_ART_DIA^MDC|1.5.1.2|64|266016^MDC_DIM_MMHG^MDC|||||R|||{t}||||MON{bed}\r\
OBX|9|NM|150035^MDC_PRESS_BLD_ART_MEAN^MDC|1.5.1.3|82|266016^MDC_DIM_MMHG^MDC|||||R|||{t}||||MON{bed}\r\
OBX|10|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC|1.6.1.1|121|266016^MDC_DIM_MMHG^MDC|||||R|||{t}||||MON{bed}\r\
OBX|11|NM|150022^MDC_PRESS_BLD_NONINV_DIA^MDC|1.6.1.2|70|266016^MDC_DIM_MMHG^MDC|||||R|||{t}||||MON{bed}\r\
OBX|12|NM|150023^MDC_PRESS_BLD_NONINV_MEAN^MDC|1.6.1.3|87|266016^MDC_DIM_MMHG^MDC|||||R|||{t}||||MON{bed}\r\
OBX|13|NM|150344^MDC_TEMP^MDC|1.7.1.1|37.2|268192^MDC_DIM_DEGC^MDC|||||R|||{t}||||MON{bed}\r"
    )
}

fn admit(bed: usize) -> String {
    format!(
        "MSH|^~\\&|LOADGEN|VIGIL|||20260105115900||ADT^A01^ADT_A01|LGA{bed}|P|2.5\rEVN|A01|20260105115900\rPID|||LG{bed}^^^HOSP^MR\rPV1||I|LOAD^^B{bed}||||||||||||||||VLG{bed}\rOBX|1|NM|29463-7^Body weight^LN||75|kg|||||F\r"
    )
}

/// Runs the load; each connection is one bed, first admitted, then reporting.
pub async fn run(s: LoadgenSettings) -> LoadgenReport {
    let conns = s.connections.max(1);
    let per_conn_interval = if s.rate > 0.0 {
        Some(Duration::from_secs_f64(conns as f64 / s.rate))
    } else {
        None
    };
    let start = Instant::now();
    let deadline = start + s.duration;
    let mut tasks = Vec::new();
    for c in 0..conns {
        let target = s.target;
        tasks.push(tokio::spawn(async move {
            let mut client = MllpClient::new(
                target,
                MllpClientSettings {
                    max_attempts: 1,
                    ..Default::default()
                },
            );
            let mut r = LoadgenReport::default();
            if client.send(admit(c).as_bytes()).await.is_err() {
                r.errors += 1;
            }
            let mut next = Instant::now();
            let mut i: u64 = 0;
            while Instant::now() < deadline {
                if let Some(iv) = per_conn_interval {
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        tokio::time::sleep(wait).await;
                    }
                    next += iv;
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                let msg = pcd01(&format!("LG{c}-{i}"), c, 60 + (i % 40) as u32, i);
                i += 1;
                let t0 = Instant::now();
                r.sent += 1;
                match client.send_once(msg.as_bytes()).await {
                    Ok(acks)
                        if acks
                            .first()
                            .is_some_and(|a| matches!(a.code, AckCode::AA | AckCode::CA)) =>
                    {
                        r.accepted += 1;
                        r.latencies_us.push(t0.elapsed().as_micros() as u64);
                    }
                    _ => r.errors += 1,
                }
            }
            r
        }));
    }
    let mut total = LoadgenReport::default();
    for t in tasks {
        if let Ok(r) = t.await {
            total.sent += r.sent;
            total.accepted += r.accepted;
            total.errors += r.errors;
            total.latencies_us.extend(r.latencies_us);
        }
    }
    total.elapsed = start.elapsed();
    total.latencies_us.sort_unstable();
    total
}
