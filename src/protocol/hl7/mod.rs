//! HL7 v2 without I/O: the zero-copy parser ([`parse`]), escape handling ([`escape`],
//! [`unescape`]), DTM/TS timestamps ([`parse_ts`]), batch splitting ([`split_messages`]) and the
//! decoder from a parsed message to the structs the normalizer consumes ([`decode()`]).
//!
//! It owns the HL7 wire syntax and the meaning of the segments vigil reads (MSH, EVN, PID, PV1,
//! MRG, OBR, OBX). It must not map codes or units to parameters (the normalizer's job), read a
//! clock, or touch sockets; MLLP framing lives beside it.

pub mod ack;
pub mod decode;
mod escape;
mod parse;
mod time;

pub use ack::{
    build_ack, build_unparsed_ack, encode_ack, is_ack, parse_ack, plan, plan_with, AckCode,
    AckCompat, AckErr, AckMode, AckParseError, ErrLocation, Outcome, ParsedAck,
};
pub use decode::{
    decode, decode_fields, decode_fields_with, AdtEvent, CodedValue, DecodeError, DecodeOptions,
    Decoded, Location, ObsGroup, ObservationReport, ObxFields, ObxRow, PatientIdentifier,
    PatientIds, RowBuffers,
};
pub use escape::{escape, unescape};
pub use parse::{
    parse, parse_with, Component, Delimiters, Field, Message, ParseBuffers, ParseError,
    ParseErrorKind, Pieces, Segment, Subcomponent, TextEncoding,
};
pub use time::{parse_ts, Hl7Time, TsError, TsPrecision};

/// Splits a file or stream of several messages into one slice per message.
///
/// A message starts at each segment beginning `MSH`. Batch envelope segments (FHS, BHS, BTS,
/// FTS) end the message before them and are dropped. Anything else found outside a message is
/// yielded as its own chunk, so parsing it reports the fault instead of hiding it.
pub fn split_messages(input: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut out = Vec::new();
    let mut chunk: Option<usize> = None;
    let mut line_start = 0;
    while line_start < input.len() {
        let rest = &input[line_start..];
        let line_len = memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
        let line = &rest[..line_len];
        let head = line.trim_ascii_start();
        let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
        if head.starts_with(b"MSH") {
            if let Some(s) = chunk.take() {
                out.push(&input[s..line_start]);
            }
            chunk = Some(line_start);
        } else if [&b"FHS"[..], b"BHS", b"BTS", b"FTS"]
            .iter()
            .any(|h| head.starts_with(h))
        {
            if let Some(s) = chunk.take() {
                out.push(&input[s..line_start]);
            }
        } else if chunk.is_none() && !head.is_empty() {
            chunk = Some(line_start);
        }
        line_start += line_len + 1;
    }
    if let Some(s) = chunk {
        out.push(&input[s..]);
    }
    out.into_iter()
}
