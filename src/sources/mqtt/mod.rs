//! MQTT 3.1.1 subscriber: the source (`source`), its config (`config`) and topic filters and
//! maps (`topic`). Payload decoding is sans-I/O in `crate::protocol::mqtt_payload`.

pub mod config;
pub mod source;
pub mod topic;

pub use config::{MqttSourceConfig, MqttSubscription, MqttTlsConfig};
pub use source::{MqttContext, MqttSource, MqttSourceError};
