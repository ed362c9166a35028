//! The MLLP client against a scripted receiver on loopback: a lost answer is retried with the
//! same MSH-10, answers to other messages are skipped, timeouts are reported.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use vigil::protocol::hl7::ack::AckCode;
use vigil::protocol::mllp::{encode_frame, MllpDecoder};
use vigil::sources::mllp::client::{MllpClient, MllpClientError, MllpClientSettings};

const MSG: &[u8] = b"MSH|^~\\&|A|B|C|D|20260101||ORU^R01^ORU_R01|CTRL-1|P|2.6\rPID|||1\rOBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.3.1.1|97|262688^MDC_DIM_PERCENT^MDC|||||R\r";

fn ack(id: &str, code: &str) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(
        format!("MSH|^~\\&|C|D|A|B|20260101||ACK^R01^ACK|X{id}|P|2.6\rMSA|{code}|{id}\r")
            .as_bytes(),
        &mut out,
    );
    out
}

/// Reads one framed message from the socket and returns its MSH-10.
async fn read_control_id(s: &mut tokio::net::TcpStream) -> Option<String> {
    let mut dec = MllpDecoder::new(1 << 20);
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        dec.feed(&buf[..n]);
        if let Ok(Some(f)) = dec.next_frame() {
            let m = vigil::protocol::hl7::parse(f.payload()).ok()?;
            return Some(m.control_id().to_string());
        }
    }
}

fn settings(attempts: u32, ack_timeout_ms: u64) -> MllpClientSettings {
    MllpClientSettings {
        connect_timeout: Duration::from_secs(2),
        ack_timeout: Duration::from_millis(ack_timeout_ms),
        max_frame: 1 << 20,
        max_attempts: attempts,
        backoff: Duration::from_millis(10),
    }
}

#[tokio::test]
async fn a_lost_answer_is_retried_with_the_same_control_id() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let mut seen = Vec::new();
        // First connection: read the message, then drop it unanswered.
        let (mut s, _) = listener.accept().await.unwrap();
        seen.push(read_control_id(&mut s).await.unwrap());
        drop(s);
        // Second: an answer to some other message first, then the right one.
        let (mut s, _) = listener.accept().await.unwrap();
        seen.push(read_control_id(&mut s).await.unwrap());
        s.write_all(&ack("OTHER-9", "AA")).await.unwrap();
        s.write_all(&ack("CTRL-1", "AA")).await.unwrap();
        let mut rest = [0u8; 16];
        let _ = s.read(&mut rest).await;
        seen
    });
    let mut c = MllpClient::new(addr, settings(3, 2000));
    let acks = c.send(MSG).await.unwrap();
    assert_eq!(acks.len(), 1);
    assert_eq!(
        (acks[0].code, acks[0].control_id.as_str()),
        (AckCode::AA, "CTRL-1")
    );
    drop(c);
    assert_eq!(
        server.await.unwrap(),
        ["CTRL-1", "CTRL-1"],
        "resent, never renumbered"
    );
}

#[tokio::test]
async fn a_silent_receiver_times_out_and_the_client_gives_up() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s); // accept, never answer
        }
    });
    let mut c = MllpClient::new(addr, settings(2, 100));
    match c.send(MSG).await {
        Err(MllpClientError::GaveUp { attempts: 2, last }) => {
            assert!(last.contains("no acknowledgement"), "{last}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut c = MllpClient::new(addr, settings(1, 100));
    let e = c.send(MSG).await.unwrap_err().to_string();
    assert!(e.contains("connect to"), "{e}");
}
