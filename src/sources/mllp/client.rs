//! An MLLP client for sending HL7 to other systems (alarm managers, the load generator): connect
//! and ACK timeouts, the answer's MSA-2 checked against the MSH-10 sent, and retries that resend
//! the same message (same MSH-10), so a receiver that saw the first copy can recognise the
//! second rather than store a duplicate.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::protocol::hl7::ack::{parse_ack, AckCode, ParsedAck};
use crate::protocol::hl7::parse;
use crate::protocol::mllp::{encode_frame, FrameKind, MllpDecoder};

#[derive(Debug, thiserror::Error)]
pub enum MllpClientError {
    #[error("connect to {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    #[error("no acknowledgement within {0:?}")]
    AckTimeout(Duration),
    #[error("connection lost: {0}")]
    Io(String),
    #[error("the message to send does not parse: {0}")]
    BadMessage(String),
    #[error("answer is not an acknowledgement: {0}")]
    BadAck(String),
    #[error("gave up after {attempts} attempts: {last}")]
    GaveUp { attempts: u32, last: String },
}

#[derive(Clone, Debug)]
pub struct MllpClientSettings {
    pub connect_timeout: Duration,
    pub ack_timeout: Duration,
    pub max_frame: usize,
    pub max_attempts: u32,
    pub backoff: Duration,
}

impl Default for MllpClientSettings {
    fn default() -> Self {
        MllpClientSettings {
            connect_timeout: Duration::from_secs(5),
            ack_timeout: Duration::from_secs(10),
            max_frame: 1 << 20,
            max_attempts: 3,
            backoff: Duration::from_millis(200),
        }
    }
}

/// A connection that sends one message at a time and waits for its acknowledgement(s).
pub struct MllpClient {
    addr: SocketAddr,
    settings: MllpClientSettings,
    stream: Option<TcpStream>,
    decoder: MllpDecoder,
    buf: Vec<u8>,
}

impl MllpClient {
    pub fn new(addr: SocketAddr, settings: MllpClientSettings) -> Self {
        let max = settings.max_frame;
        MllpClient {
            addr,
            settings,
            stream: None,
            decoder: MllpDecoder::new(max),
            buf: vec![0; 16 * 1024],
        }
    }

    async fn connect(&mut self) -> Result<(), MllpClientError> {
        if self.stream.is_some() {
            return Ok(());
        }
        let s = tokio::time::timeout(self.settings.connect_timeout, TcpStream::connect(self.addr))
            .await
            .map_err(|_| MllpClientError::Connect {
                addr: self.addr,
                reason: format!("timed out after {:?}", self.settings.connect_timeout),
            })?
            .map_err(|e| MllpClientError::Connect {
                addr: self.addr,
                reason: e.to_string(),
            })?;
        let _ = s.set_nodelay(true);
        self.stream = Some(s);
        self.decoder = MllpDecoder::new(self.settings.max_frame);
        Ok(())
    }

    /// Sends `message` once and returns its acknowledgements: one in original mode; in
    /// enhanced mode the commit answer, then the application answer when MSH-16 is `AL`.
    pub async fn send_once(&mut self, message: &[u8]) -> Result<Vec<ParsedAck>, MllpClientError> {
        let parsed = parse(message).map_err(|e| MllpClientError::BadMessage(e.to_string()))?;
        let control_id = parsed.control_id().to_string();
        let msh15 = parsed.msh().field(15).as_str().trim().to_ascii_uppercase();
        let msh16 = parsed.msh().field(16).as_str().trim().to_ascii_uppercase();
        let want_app = msh16 == "AL";
        let mut framed = Vec::with_capacity(message.len() + 3);
        encode_frame(message, &mut framed);
        self.connect().await?;
        // Enhanced mode with both conditions "never": the receiver sends nothing back.
        if msh15 == "NE" && (msh16 == "NE" || msh16.is_empty()) {
            let stream = self
                .stream
                .as_mut()
                .ok_or_else(|| MllpClientError::Io("not connected".into()))?;
            if let Err(e) = stream.write_all(&framed).await {
                self.stream = None;
                return Err(MllpClientError::Io(e.to_string()));
            }
            return Ok(Vec::new());
        }
        // Conditional answers (ER: only on error, SU: only on success) may never come.
        let conditional =
            ["ER", "SU"].contains(&msh15.as_str()) || ["ER", "SU"].contains(&msh16.as_str());
        let r = match self.exchange(&framed, &control_id, want_app).await {
            Err(MllpClientError::AckTimeout(_)) if conditional => Ok(Vec::new()),
            other => other,
        };
        if r.is_err() {
            self.stream = None; // A broken or out-of-step connection is not reused.
        }
        r
    }

    async fn exchange(
        &mut self,
        framed: &[u8],
        control_id: &str,
        want_app: bool,
    ) -> Result<Vec<ParsedAck>, MllpClientError> {
        let timeout = self.settings.ack_timeout;
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| MllpClientError::Io("not connected".into()))?;
        stream
            .write_all(framed)
            .await
            .map_err(|e| MllpClientError::Io(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut acks: Vec<ParsedAck> = Vec::new();
        loop {
            while let Some(frame) = self
                .decoder
                .next_frame()
                .map_err(|e| MllpClientError::BadAck(e.to_string()))?
            {
                if frame.kind() != FrameKind::Message {
                    continue;
                }
                let ack = parse_ack(frame.payload())
                    .map_err(|e| MllpClientError::BadAck(e.to_string()))?;
                if ack.control_id != control_id {
                    // An answer to something else (a late answer to an earlier attempt): skip.
                    continue;
                }
                let commit_accept = ack.code == AckCode::CA;
                acks.push(ack);
                if !(commit_accept && want_app) {
                    return Ok(acks);
                }
            }
            let n = tokio::time::timeout_at(deadline, stream.read(&mut self.buf))
                .await
                .map_err(|_| MllpClientError::AckTimeout(timeout))?
                .map_err(|e| MllpClientError::Io(e.to_string()))?;
            if n == 0 {
                return Err(MllpClientError::Io("closed by the receiver".into()));
            }
            self.decoder.feed(&self.buf[..n]);
        }
    }

    /// Sends with retries on connection errors and timeouts, resending the same bytes.
    pub async fn send(&mut self, message: &[u8]) -> Result<Vec<ParsedAck>, MllpClientError> {
        let mut last = String::new();
        let attempts = self.settings.max_attempts.max(1);
        for attempt in 1..=attempts {
            match self.send_once(message).await {
                Ok(a) => return Ok(a),
                Err(e @ (MllpClientError::BadMessage(_) | MllpClientError::BadAck(_))) => {
                    return Err(e)
                }
                Err(e) => {
                    last = e.to_string();
                    if attempt < attempts {
                        tokio::time::sleep(self.settings.backoff * attempt).await;
                    }
                }
            }
        }
        Err(MllpClientError::GaveUp { attempts, last })
    }
}
