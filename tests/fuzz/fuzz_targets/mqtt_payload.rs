//! Arbitrary bytes through both MQTT payload decoders: never panics; what decodes keeps the
//! contract (no unavailable readings emitted, finite numbers, SenML readings always timed, one
//! report per JSON payload, SenML reports one per device).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::model::Timestamp;
use vigil::protocol::device::{ReadingStatus, ReadingValue};
use vigil::protocol::mqtt_payload::{decode_json, decode_senml, PayloadReport};

fn check(reports: &[PayloadReport]) {
    for r in reports {
        for reading in &r.report.readings {
            assert_ne!(reading.status, ReadingStatus::Unavailable);
            if let ReadingValue::Num(v) = reading.value {
                assert!(v.is_finite());
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let now = Timestamp::from_millis(1_800_000_000_000);
    if let Ok(r) = decode_json(data) {
        check(std::slice::from_ref(&r));
    }
    if let Ok(reports) = decode_senml(data, now) {
        check(&reports);
        for (i, r) in reports.iter().enumerate() {
            assert!(r.report.readings.iter().all(|x| x.time.is_some()));
            assert!(reports.iter().skip(i + 1).all(|o| o.device != r.device));
        }
    }
});
