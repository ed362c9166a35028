//! Sans-I/O protocol code: no tokio, no clock, no sockets. Fuzzed, property-tested and benched
//! on its own.

pub mod datex;
pub mod device;
pub mod hl7;
pub mod intellivue;
pub mod medibus;
pub mod mllp;
pub mod mqtt_payload;
pub mod profile;
