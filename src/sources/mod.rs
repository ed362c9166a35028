//! Sources own the I/O: they read bytes from the outside world, stamp receive times and hand
//! decoded records on. They are the only stage that reads a clock.

pub mod deadletter;
pub mod mllp;
pub mod mqtt;
pub mod replay;
pub mod serial;
