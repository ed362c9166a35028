//! HL7 v2 over MLLP/TCP: the listener source (`source`) and its config (`config`).

pub mod client;
pub mod config;
pub mod loadgen;
pub mod source;

pub use config::{AckCompatConfig, MllpSourceConfig, MllpTlsConfig};
pub use source::{MllpContext, MllpSource, MllpSourceError};
