//! The MLLP listener: accepts HL7 v2 senders, frames their bytes, hands each message to the
//! normalizer and the bus, and answers with the right acknowledgement.
//!
//! Per connection, frames are handled in arrival order, so a pipelining sender gets its ACKs in
//! order. A message is acknowledged positively only after every record it produced has been
//! accepted by the bus; bad messages are answered AE/AR with the reason, counted and kept in
//! the dead-letter store. A permit is taken before `accept`, so at most `max_connections` are
//! served at once. Nothing on this path panics or buffers beyond `max_frame_bytes` plus one read.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::config::{AckCompatConfig, MllpSourceConfig};
use crate::model::Timestamp;
use crate::normalize::NormalizeError;
use crate::protocol::hl7::ack::{
    build_ack, build_unparsed_ack, encode_ack, is_ack, plan_with, AckCompat, AckErr, ErrLocation,
    Outcome,
};
use crate::protocol::hl7::{self, DecodeError};
use crate::protocol::mllp::{encode_frame, FrameKind, MllpDecoder, MllpError};
use crate::sources::deadletter::{keep, DeadLetter};
use crate::sources::replay::source::{batch_key, count_normalized};

/// What every connection of one listener shares.
pub type MllpContext = crate::sources::SourceContext;

#[derive(Debug, thiserror::Error)]
pub enum MllpSourceError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS for {name}: {reason}")]
    Tls { name: String, reason: String },
}

/// A bound listener, ready to serve.
pub struct MllpSource {
    cfg: MllpSourceConfig,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl MllpSource {
    /// Binds the port (so a config's ports are all checked before anything is served).
    pub async fn bind(cfg: MllpSourceConfig) -> Result<Self, MllpSourceError> {
        let tls = match &cfg.tls {
            Some(t) => Some(t.acceptor().map_err(|reason| MllpSourceError::Tls {
                name: cfg.name.clone(),
                reason,
            })?),
            None => None,
        };
        let listener =
            TcpListener::bind(cfg.listen)
                .await
                .map_err(|source| MllpSourceError::Bind {
                    addr: cfg.listen,
                    source,
                })?;
        Ok(MllpSource { cfg, listener, tls })
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `ctx.stop` fires, then waits for open connections to finish the frame in
    /// hand and close.
    pub async fn run(self, ctx: MllpContext) {
        let ctx = Arc::new(ctx);
        let name = self.cfg.name.clone();
        let local = self.local_addr();
        tracing::info!(source = %name, local = ?local, tls = self.tls.is_some(), "mllp listening");
        let tls = self.tls.clone();
        let permits = Arc::new(Semaphore::new(self.cfg.max_connections.max(1)));
        let tracker = TaskTracker::new();
        let cfg = Arc::new(self.cfg);
        loop {
            // The permit comes first: at the limit, new connections wait in the backlog.
            let permit = tokio::select! {
                _ = ctx.stop.cancelled() => break,
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let accepted = tokio::select! {
                _ = ctx.stop.cancelled() => break,
                a = self.listener.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(source = %name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let ctx = ctx.clone();
            let cfg = cfg.clone();
            let tls = tls.clone();
            tracker.spawn(async move {
                let gauge = ctx.metrics.mllp_connections.with_label_values(&[&cfg.name]);
                gauge.inc();
                tracing::debug!(source = %cfg.name, %peer, "mllp connection opened");
                let why = match tls {
                    None => serve_connection(stream, peer, &cfg, &ctx).await,
                    Some(acceptor) => {
                        let hs = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await;
                        match hs {
                            Ok(Ok(s)) => serve_connection(s, peer, &cfg, &ctx).await,
                            Ok(Err(e)) => {
                                ctx.metrics.mllp_refused.with_label_values(&[&cfg.name, "tls"]).inc();
                                tracing::warn!(source = %cfg.name, %peer, error = %e, "TLS handshake failed");
                                "TLS handshake failed"
                            }
                            Err(_) => {
                                ctx.metrics.mllp_refused.with_label_values(&[&cfg.name, "tls"]).inc();
                                "TLS handshake timed out"
                            }
                        }
                    }
                };
                tracing::info!(source = %cfg.name, %peer, reason = why, "mllp connection closed");
                gauge.dec();
                drop(permit);
            });
        }
        tracker.close();
        tracker.wait().await;
        tracing::info!(source = %name, "mllp listener stopped");
    }
}

static ACK_SEQ: AtomicU64 = AtomicU64::new(0);

/// HL7 DTM for now, and a control id unique within this process.
fn ack_stamp() -> (String, String) {
    let now = chrono::Utc::now();
    let ts = now.format("%Y%m%d%H%M%S%.3f+0000").to_string();
    let seq = ACK_SEQ.fetch_add(1, Ordering::Relaxed);
    (
        ts,
        format!("VGL{}{:06}", now.format("%y%m%d%H%M%S"), seq % 1_000_000),
    )
}

/// Serves one connection; returns why it closed.
async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    cfg: &MllpSourceConfig,
    ctx: &MllpContext,
) -> &'static str {
    let idle = Duration::from_secs(cfg.idle_timeout_secs.max(1));
    let mut decoder = MllpDecoder::new(cfg.max_frame_bytes);
    let mut buf = vec![0u8; 64 * 1024];
    let peer_s = peer.to_string();
    loop {
        let read = tokio::select! {
            _ = ctx.stop.cancelled() => return "shutdown",
            r = tokio::time::timeout(idle, stream.read(&mut buf)) => r,
        };
        let n = match read {
            Err(_) => {
                ctx.metrics
                    .mllp_refused
                    .with_label_values(&[&cfg.name, "idle"])
                    .inc();
                return "idle timeout";
            }
            Ok(Err(_)) => return "read error (reset)",
            Ok(Ok(0)) => {
                if decoder.buffered() > 0 {
                    ctx.metrics
                        .mllp_refused
                        .with_label_values(&[&cfg.name, "unterminated"])
                        .inc();
                    return "closed by peer mid-frame";
                }
                return "closed by peer";
            }
            Ok(Ok(n)) => n,
        };
        decoder.feed(&buf[..n]);
        loop {
            match decoder.next_frame() {
                Ok(None) => break,
                Ok(Some(frame)) => {
                    if frame.kind() != FrameKind::Message {
                        continue; // MLLP release 2 commit ACK/NAK from the sender: nothing to answer.
                    }
                    let answer = handle_message(frame.payload(), &peer_s, cfg, ctx).await;
                    if !answer.is_empty()
                        && (stream.write_all(&answer).await.is_err()
                            || stream.flush().await.is_err())
                    {
                        return "write error";
                    }
                }
                Err(MllpError::FrameTooLarge { limit, seen, .. }) => {
                    ctx.metrics
                        .mllp_refused
                        .with_label_values(&[&cfg.name, "too_large"])
                        .inc();
                    ctx.metrics.message_rejected(
                        &cfg.name,
                        "too_large",
                        "frame over max_frame_bytes",
                    );
                    tracing::warn!(source = %cfg.name, peer = %peer_s, limit, seen,
                        "frame larger than max_frame_bytes refused; closing the connection");
                    keep_dead_letter(
                        ctx,
                        &cfg.name,
                        &peer_s,
                        "too_large",
                        &format!("frame of more than {limit} bytes refused"),
                        &[],
                    );
                    return "frame too large";
                }
                Err(e) => {
                    // A frame torn by a new start block: what was received is kept.
                    ctx.metrics
                        .mllp_refused
                        .with_label_values(&[&cfg.name, "unterminated"])
                        .inc();
                    tracing::warn!(source = %cfg.name, peer = %peer_s, error = %e, "torn MLLP frame");
                    let partial = match &e {
                        MllpError::UnterminatedFrame { partial, .. } => partial.as_slice(),
                        _ => &[],
                    };
                    keep_dead_letter(
                        ctx,
                        &cfg.name,
                        &peer_s,
                        "unterminated",
                        &e.to_string(),
                        partial,
                    );
                }
            }
        }
    }
}

fn keep_dead_letter(
    ctx: &MllpContext,
    source: &str,
    peer: &str,
    kind: &str,
    reason: &str,
    raw: &[u8],
) {
    let d = DeadLetter::new(Timestamp::now_wall(), source, Some(peer), kind, reason, raw);
    keep(ctx.dead_letters.as_deref(), &d);
}

fn reject_reason(e: &NormalizeError) -> AckErr {
    match e {
        NormalizeError::Parse(p) => AckErr::new(100, p.to_string()),
        NormalizeError::Decode(DecodeError::Unsupported { message_type }) => AckErr::new(
            200,
            format!("message type {message_type:?} is not accepted here (ORU^R01, ORU^R42, ADT^A01-A13/A40 are)"),
        )
        .at(ErrLocation::field("MSH", 1, 9)),
        NormalizeError::Decode(DecodeError::Missing { what, position }) => {
            AckErr::new(101, format!("missing {what} in {position}"))
        }
    }
}

/// Handles one framed message; returns the framed answer bytes (possibly several ACKs).
async fn handle_message(
    payload: &[u8],
    peer: &str,
    cfg: &MllpSourceConfig,
    ctx: &MllpContext,
) -> Vec<u8> {
    let receive_time = Timestamp::now_wall();
    ctx.metrics
        .messages_received
        .with_label_values(&[&cfg.name, "hl7"])
        .inc();
    let (ts, control_id) = ack_stamp();
    let mut out = Vec::new();
    let msg = match hl7::parse(payload) {
        Ok(m) => m,
        Err(pe) => {
            let reason = pe.to_string();
            ctx.metrics.message_rejected(&cfg.name, "parse", &reason);
            keep_dead_letter(ctx, &cfg.name, peer, "parse", &reason, payload);
            let ack = build_unparsed_ack(payload, &pe, &ts, &control_id);
            ctx.metrics
                .mllp_acks
                .with_label_values(&[&cfg.name, "AR"])
                .inc();
            encode_frame(ack.as_bytes(), &mut out);
            return out;
        }
    };
    if is_ack(&msg) {
        return out; // An acknowledgement is never answered.
    }
    let started = Instant::now();
    let normalized = match ctx.normalizer.lock() {
        Ok(mut n) => n.message(&cfg.name, &msg, receive_time),
        Err(p) => p.into_inner().message(&cfg.name, &msg, receive_time),
    };
    ctx.metrics.stage_time("normalize", started.elapsed());
    let outcome = match normalized {
        Err(e) => {
            let kind = e.kind();
            let err = reject_reason(&e);
            ctx.metrics.message_rejected(&cfg.name, kind, &err.text);
            keep_dead_letter(ctx, &cfg.name, peer, kind, &err.text, payload);
            Outcome::Rejected(err)
        }
        Ok(n) => {
            count_normalized(&ctx.metrics, &cfg.name, &n);
            let key = batch_key(&n.records);
            let is_census = n
                .records
                .iter()
                .any(|r| matches!(r, crate::model::IngestRecord::Census(_)));
            let journaled = match (&ctx.census_journal, is_census) {
                (Some(j), true) => match j.append(&cfg.name, receive_time, payload).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::error!(source = %cfg.name, error = %e, "census journal write failed; not acknowledged");
                        false
                    }
                },
                _ => true,
            };
            if !journaled {
                Outcome::Error(AckErr::new(
                    207,
                    "the census could not be stored; send again",
                ))
            } else if n.records.is_empty() || ctx.out.publish(&key, n.records).await.is_ok() {
                Outcome::Accepted
            } else {
                // Not handed on: no AA; the sender keeps the message and sends it again.
                Outcome::Error(AckErr::new(207, "vigil is shutting down; send again"))
            }
        }
    };
    let msh = msg.msh();
    let compat = match cfg.ack_compat {
        AckCompatConfig::Standard => AckCompat::Standard,
        AckCompatConfig::OriginalCodes => AckCompat::OriginalCodes,
    };
    for code in plan_with(
        msh.field(15).as_str(),
        msh.field(16).as_str(),
        &outcome,
        compat,
    ) {
        let (ts, control_id) = if out.is_empty() {
            (ts.clone(), control_id.clone())
        } else {
            ack_stamp()
        };
        let ack = build_ack(&msg, code, outcome.err_for(code), &ts, &control_id);
        ctx.metrics
            .mllp_acks
            .with_label_values(&[&cfg.name, code.as_str()])
            .inc();
        encode_frame(&encode_ack(&ack, &msg), &mut out);
    }
    out
}
