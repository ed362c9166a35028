use super::*;
use crate::model::{HOUR_MS, MINUTE_MS};

fn t0() -> Timestamp {
    Timestamp::parse_rfc3339("2026-01-05T08:00:00Z").unwrap()
}

fn norm() -> Normalizer {
    Normalizer::new(
        NormalizeTables::builtin().unwrap(),
        NormalizeSettings::default(),
    )
}

fn admit(n: &mut Normalizer, visit: &str, mrn: &str, bed: &str, weight: &str) {
    let msg = format!(
        "MSH|^~\\&|ADT|HOSP|VIGIL|ICU|20260105075500||ADT^A01^ADT_A01|A{visit}|P|2.5\rEVN|A01|20260105075500\rPID|||{mrn}^^^HOSP^MR||Doe^Jane\rPV1||I|ICU-A^^{bed}||||||||||||||||{visit}\rOBX|1|NM|29463-7^Body weight^LN||{weight}|kg|||||F\r"
    );
    let out = n
        .hl7("adt", msg.as_bytes(), t0().minus_ms(5 * MINUTE_MS))
        .unwrap();
    assert!(matches!(out.records[0], IngestRecord::Census(_)));
}

fn observations(out: &Normalized) -> Vec<&Observation> {
    out.records
        .iter()
        .filter_map(|r| match r {
            IngestRecord::Observation(o) => Some(o),
            _ => None,
        })
        .collect()
}

fn find<'a>(obs: &[&'a Observation], p: Param) -> &'a Observation {
    obs.iter()
        .find(|o| o.param == Some(p))
        .copied()
        .unwrap_or_else(|| panic!("no {p}"))
}

const MONITOR: &str = "MSH|^~\\&|GW^0011^EUI-64|ICU|||20260105080000+0000||ORU^R01^ORU_R01|M1|P|2.6|||AL|NE\rPID|||\rPV1||I|ICU-A^^BED03\rOBR|1||F1|69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|||20260105080000+0000\rOBX|1||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X|||||||MON3^Monitor\rOBX|2|NM|147842^MDC_ECG_HEART_RATE^MDC|1.2.1.1|112|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R|||20260105075955+0000||||MON3\rOBX|3|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.3.1.1|-999|262688^MDC_DIM_PERCENT^MDC|||||R|||20260105075955+0000\rOBX|4|NM|150344^MDC_TEMP^MDC|1.4.1.1|101.3|266560^MDC_DIM_FAHR^MDC|||||R|||20260105075955+0000\rOBX|5|NM|150033^MDC_PRESS_BLD_ART_SYS^MDC|1.5.1.1|300|266016^MDC_DIM_MMHG^MDC|||||R|||20260105075955+0000\rOBX|6|NM|150034^MDC_PRESS_BLD_ART_DIA^MDC|1.5.1.2|300|266016^MDC_DIM_MMHG^MDC|||||R|||20260105075955+0000\rOBX|7|NM|150035^MDC_PRESS_BLD_ART_MEAN^MDC|1.5.1.3|300|266016^MDC_DIM_MMHG^MDC|||||R|||20260105075955+0000\rOBX|8|NM|151562^MDC_RESP_RATE^MDC|1.2.1.2|95|264928^MDC_DIM_RESP_PER_MIN^MDC|||||R|||20260105075955+0000\rOBX|9|NM|147232^MDC_ECG_TIME_PD_QT_GL^MDC|1.2.1.14|360|264338^MDC_DIM_MILLI_SEC^MDC|||||R\r";

#[test]
fn device_data_gets_its_patient_from_the_bed_and_is_converted_and_flagged() {
    let mut n = norm();
    admit(&mut n, "V3", "MRN3", "BED03", "80");
    let out = n
        .hl7("monitors", MONITOR.as_bytes(), t0().plus_ms(1500))
        .unwrap();
    assert_eq!(out.message_type, "ORU^R01");
    assert_eq!(out.unassociated, 0);
    let obs = observations(&out);
    assert_eq!(obs.len(), 8, "device row skipped, every reading kept");
    let hr = find(&obs, Param::HeartRate);
    assert_eq!(hr.patient(), Some("V3"));
    assert_eq!(hr.bed(), Some("BED03"));
    assert_eq!(hr.value, Value::Num(112.0));
    assert_eq!(hr.ucum, "/min");
    assert_eq!(&*hr.device().id, "MON3");
    assert!(hr.is_usable());
    // Device clock within tolerance: the OBX-14 time stands.
    assert_eq!(
        hr.corrected_time,
        Timestamp::parse_rfc3339("2026-01-05T07:59:55Z").unwrap()
    );
    let temp = find(&obs, Param::Temp);
    assert_eq!(temp.value, Value::Num(38.5));
    assert_eq!(temp.ucum, "Cel");
    let spo2 = find(&obs, Param::SpO2);
    assert_eq!(spo2.quality, vec![Quality::Sentinel]);
    let rr = find(&obs, Param::RespRate);
    assert_eq!(rr.quality, vec![Quality::OutOfRange]);
    for p in [Param::SbpArt, Param::DbpArt, Param::MapArt] {
        assert!(
            find(&obs, p).quality.contains(&Quality::Artifact),
            "{p} flush"
        );
    }
    let qt = obs.iter().find(|o| o.code.code == "147232").unwrap();
    assert_eq!(
        (qt.param, &*qt.ucum),
        (None, "ms"),
        "unknown codes are kept"
    );
}

#[test]
fn unassociated_beds_are_counted_and_repeats_share_ids() {
    let mut n = norm();
    let a = n.hl7("monitors", MONITOR.as_bytes(), t0()).unwrap();
    assert_eq!(a.unassociated, a.records.len());
    let b = n
        .hl7("monitors", MONITOR.as_bytes(), t0().plus_ms(900))
        .unwrap();
    let ids = |o: &Normalized| observations(o).iter().map(|o| o.id).collect::<Vec<_>>();
    assert_eq!(
        ids(&a),
        ids(&b),
        "a re-sent message yields the same observation ids"
    );
}

#[test]
fn a_device_clock_ahead_is_corrected() {
    let mut n = norm();
    admit(&mut n, "V3", "MRN3", "BED03", "80");
    // The monitor's clock is 90 s ahead of the gateway.
    let out = n
        .hl7("monitors", MONITOR.as_bytes(), t0().minus_ms(90_000))
        .unwrap();
    let hr = find(&observations(&out), Param::HeartRate);
    assert_eq!(
        hr.corrected_time,
        Timestamp::parse_rfc3339("2026-01-05T07:58:25Z").unwrap()
    );
    assert!(hr.corrected_time <= hr.receive_time);
}

#[test]
fn pump_flow_becomes_a_dose_with_the_admit_weight() {
    let mut n = norm();
    admit(&mut n, "V7", "MRN7", "BED07", "80");
    let pump = "MSH|^~\\&|PUMPGW|ICU|||20260105090000||ORU^R01^ORU_R01|P1|P|2.6\rPID|||MRN7^^^HOSP^MR\rPV1||I|ICU-A^^BED07\rOBR|1||PF1|70049^MDC_DEV_PUMP_INFUS_LVP_MDS^MDC|||20260105090000\rOBX|1|ST|184514^MDC_DRUG_NAME_LABEL^MDC|1.1.2.10|Norepinephrine||||||R\rOBX|2|NM|157784^MDC_FLOW_FLUID_PUMP^MDC|1.1.2.4|15|265266^MDC_DIM_MILLI_L_PER_HR^MDC|||||R\rOBX|3|NM|157760^MDC_CONC_DRUG^MDC|1.1.2.11|0.016|264306^MDC_DIM_MILLI_G_PER_ML^MDC|||||R\r";
    let out = n
        .hl7("pumps", pump.as_bytes(), t0().plus_ms(HOUR_MS))
        .unwrap();
    let obs = observations(&out);
    let dose = find(&obs, Param::Dose(Drug::Norepinephrine));
    assert_eq!(dose.value, Value::Num(0.05));
    assert_eq!(dose.ucum, "ug/kg/min");
    assert_eq!(dose.patient(), Some("V7"), "patient from the MRN");

    // Without a known weight no dose is guessed.
    let mut n = norm();
    let out = n.hl7("pumps", pump.as_bytes(), t0()).unwrap();
    assert!(observations(&out)
        .iter()
        .all(|o| !matches!(o.param, Some(Param::Dose(_)))));
}

#[test]
fn lab_results_land_with_loinc_and_canonical_units() {
    let mut n = norm();
    admit(&mut n, "V1", "MRN1", "BED01", "70");
    let lab = "MSH|^~\\&|LIS|LAB|||20260105100000||ORU^R01^ORU_R01|L1|P|2.5.1\rPID|||MRN1^^^HOSP^MR\rPV1||I|||||||||||||||||V1\rOBR|1||S1|24331-1^Panel^LN|||20260105093000\rOBX|1|NM|2524-7^Lactate^LN||3.4|mmol/L|||||F|||20260105093000\rOBX|2|NM|14682-9^Creatinine^LN||176.84|umol/L|||||F|||20260105093000\rOBX|3|NM|777-3^Platelets^LN||95|10*3/uL|||||F|||20260105093000\rOBX|4|NM|2345-7^Glucose^LN||110|mg/dL|||||F|||20260105093000\r";
    let out = n
        .hl7("lab", lab.as_bytes(), t0().plus_ms(2 * HOUR_MS))
        .unwrap();
    let obs = observations(&out);
    assert_eq!(find(&obs, Param::Lactate).value, Value::Num(3.4));
    let cr = find(&obs, Param::Creatinine);
    assert_eq!((cr.value.clone(), &*cr.ucum), (Value::Num(2.0), "mg/dL"));
    assert_eq!(cr.code.system, CodeSystem::Loinc);
    // Collected 09:30, resulted 10:00: scoring uses the collection time.
    assert_eq!(
        cr.corrected_time,
        Timestamp::parse_rfc3339("2026-01-05T09:30:00Z").unwrap()
    );
    let glucose = obs.iter().find(|o| o.code.code == "2345-7").unwrap();
    assert_eq!((glucose.param, glucose.patient()), (None, Some("V1")));
}

#[test]
fn rejects_carry_a_reason_kind() {
    let mut n = norm();
    let e = n.hl7("x", b"PID|||1\r", t0()).unwrap_err();
    assert_eq!(e.kind(), "parse");
    let e = n
        .hl7("x", b"MSH|^~\\&|A|B|||20260105||QRY^A19|Q1|P|2.5\r", t0())
        .unwrap_err();
    assert_eq!(e.kind(), "unsupported");
    assert!(e.to_string().contains("QRY"), "{e}");
}

#[test]
fn channel_of_takes_the_first_three_levels() {
    assert_eq!(channel_of("1.1.2.5"), "1.1.2");
    assert_eq!(channel_of("1.1.2.10"), "1.1.2");
    assert_eq!(channel_of("1.1.2"), "1.1.2");
    assert_eq!(channel_of(""), "");
}

#[test]
fn spo2_with_a_weak_pulse_signal_is_an_artifact() {
    let mut n = norm();
    admit(&mut n, "V2", "MRN2", "BED02", "60");
    let msg = |spo2: &str, pi: &str| {
        format!("MSH|^~\\&|GW|ICU|||20260105080000||ORU^R01^ORU_R01|S{spo2}|P|2.6\rPID|||\rPV1||I|ICU-A^^BED02\rOBR|1||F1|69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|||20260105080000\rOBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.3.1.1|{spo2}|262688^MDC_DIM_PERCENT^MDC|||||R|||20260105080000||||MON2\rOBX|2|NM|150448^MDC_PULS_OXIM_PERF_REL^MDC|1.3.1.3|{pi}|262688^MDC_DIM_PERCENT^MDC|||||R|||20260105080000||||MON2\r")
    };
    let out = n
        .hl7("monitors", msg("52", "0.2").as_bytes(), t0())
        .unwrap();
    let obs = observations(&out);
    assert_eq!(find(&obs, Param::SpO2).quality, vec![Quality::Artifact]);
    assert!(find(&obs, Param::PerfusionIndex).is_usable());
    // At the 0.6 % limit the reading stands.
    let out = n
        .hl7("monitors", msg("88", "0.6").as_bytes(), t0())
        .unwrap();
    assert!(find(&observations(&out), Param::SpO2).is_usable());
}

#[test]
fn a_propofol_channel_reports_sedation_and_never_becomes_a_vasopressor_dose() {
    let mut n = norm();
    admit(&mut n, "V7", "MRN7", "BED07", "80");
    let pump = "MSH|^~\\&|PUMPGW|ICU|||20260105090000||ORU^R01^ORU_R01|P2|P|2.6\rPID|||MRN7^^^HOSP^MR\rPV1||I|ICU-A^^BED07\rOBR|1||PF2|70049^MDC_DEV_PUMP_INFUS_LVP_MDS^MDC|||20260105090000\rOBX|1|ST|184514^MDC_DRUG_NAME_LABEL^MDC|1.1.1.10|Norepinephrine||||||R\rOBX|2|NM|157924^MDC_RATE_DOSE^MDC|1.1.1.5|0.1|265619^MDC_DIM_MICRO_G_PER_KG_PER_MIN^MDC|||||R\rOBX|3|ST|184514^MDC_DRUG_NAME_LABEL^MDC|1.1.2.10|Propofol 1%||||||R\rOBX|4|NM|157784^MDC_FLOW_FLUID_PUMP^MDC|1.1.2.4|12|265266^MDC_DIM_MILLI_L_PER_HR^MDC|||||R\rOBX|5|NM|157924^MDC_RATE_DOSE^MDC|1.1.2.5|25|265619^MDC_DIM_MICRO_G_PER_KG_PER_MIN^MDC|||||R\r";
    let out = n
        .hl7("pumps", pump.as_bytes(), t0().plus_ms(HOUR_MS))
        .unwrap();
    let obs = observations(&out);
    let doses: Vec<f64> = obs
        .iter()
        .filter(|o| o.param == Some(Param::Dose(Drug::Norepinephrine)))
        .filter_map(|o| o.numeric())
        .collect();
    assert_eq!(
        doses,
        [0.1],
        "propofol's 25 µg/kg/min is not norepinephrine"
    );
    let sed = find(&obs, Param::Sedation);
    assert_eq!(sed.value, Value::Num(1.0));
    assert_eq!(sed.code.refid.as_deref(), Some("Propofol 1%"));
}

fn origin(device: &str) -> DeviceOrigin {
    DeviceOrigin {
        protocol: "serial",
        device_id: device.into(),
        model: Some("Test".into()),
        unit: Some("ICU-A".into()),
        bed: Some("BED07".into()),
        patient: None,
        message: "port#1".into(),
    }
}

#[test]
fn device_reports_go_through_the_same_tables_as_hl7() {
    use crate::protocol::device::{DeviceCode, DeviceReading, DeviceReport, ReadingStatus};
    let mut n = norm();
    admit(&mut n, "V7", "MRN7", "BED07", "80");
    let mut flagged =
        DeviceReading::num(DeviceCode::mdc(150456, "MDC_PULS_OXIM_SAT_O2"), 91.0, "%");
    flagged.status = ReadingStatus::Questionable;
    let mut gone = DeviceReading::num(DeviceCode::mdc(151562, "MDC_RESP_RATE"), 0.0, "/min");
    gone.status = ReadingStatus::Unavailable;
    let report = DeviceReport {
        device_time: Some(t0()),
        readings: vec![
            DeviceReading::num(DeviceCode::mdc(147842, "MDC_ECG_HEART_RATE"), 88.0, "/min"),
            gone,
            flagged,
            DeviceReading::num(DeviceCode::mdc(150344, "MDC_TEMP"), 101.3, "[degF]"),
        ],
    };
    let out = n.device("mon-port", &origin("MON7"), &report, t0().plus_ms(300));
    let obs = observations(&out);
    assert_eq!(obs.len(), 3, "the unavailable reading is not emitted");
    let hr = find(&obs, Param::HeartRate);
    assert_eq!(hr.patient(), Some("V7"), "patient from the bed's census");
    assert_eq!(hr.device().id.as_ref(), "MON7");
    assert_eq!(&*hr.source().protocol, "serial");
    assert_eq!(hr.device_time, Some(t0()));
    assert!(hr.quality.is_empty());
    let spo2 = find(&obs, Param::SpO2);
    assert_eq!(spo2.quality, vec![Quality::DeviceFlagged]);
    let temp = find(&obs, Param::Temp);
    assert_eq!(temp.value, Value::Num(38.5), "°F converted to Cel");
}

#[test]
fn a_serial_pump_channel_gets_its_dose_computed() {
    use crate::protocol::device::{DeviceCode, DeviceReading, DeviceReport, ReadingValue};
    let mut n = norm();
    admit(&mut n, "V7", "MRN7", "BED07", "80");
    let mut name = DeviceReading::num(DeviceCode::mdc(184330, "MDC_DRUG_NAME_TYPE"), 0.0, "");
    name.value = ReadingValue::Text("norepinephrine".into());
    let report = DeviceReport {
        device_time: None,
        readings: vec![
            name.on_channel("1"),
            DeviceReading::num(DeviceCode::mdc(157784, "MDC_FLOW_FLUID_PUMP"), 15.0, "mL/h")
                .on_channel("1"),
            DeviceReading::num(DeviceCode::mdc(157760, "MDC_CONC_DRUG"), 0.016, "mg/mL")
                .on_channel("1"),
        ],
    };
    let out = n.device("pump-port", &origin("PUMP1"), &report, t0());
    let obs = observations(&out);
    let dose = find(&obs, Param::Dose(Drug::Norepinephrine));
    assert_eq!(dose.value, Value::Num(0.05));
    assert_eq!(dose.corrected_time, t0());
}

/// Readings share what recurs (bed, patient, device, source, table codes and units) instead of
/// each owning a copy, and the values read the same as owned ones would.
#[test]
fn recurring_strings_are_shared_across_messages() {
    let mut n = norm();
    admit(&mut n, "V3", "MRN3", "BED03", "80");
    let a = n.hl7("monitors", MONITOR.as_bytes(), t0()).unwrap();
    let b = n.hl7("monitors", MONITOR.as_bytes(), t0()).unwrap();
    let (a, b) = (observations(&a), observations(&b));
    let (ha, hb) = (find(&a, Param::HeartRate), find(&b, Param::HeartRate));
    for (x, y) in [
        (&ha.origin.bed, &hb.origin.bed),
        (&ha.origin.patient, &hb.origin.patient),
        (&ha.origin.unit, &hb.origin.unit),
    ] {
        let (Some(x), Some(y)) = (x, y) else {
            panic!("bed, patient and unit are set");
        };
        assert!(Arc::ptr_eq(x, y), "{x} is one shared copy");
    }
    assert!(Arc::ptr_eq(&ha.device().id, &hb.device().id));
    assert!(Arc::ptr_eq(&ha.source().source, &hb.source().source));
    // Within a message, the readings of one device share one origin; a row naming its own
    // equipment (OBX-18) has its own.
    let (spo2, rr) = (find(&a, Param::SpO2), find(&a, Param::RespRate));
    assert!(Arc::ptr_eq(&spo2.origin, &rr.origin));
    assert_eq!(&*spo2.device().id, "F1");
    assert!(!Arc::ptr_eq(&ha.origin, &spo2.origin));
    assert_eq!(ha.origin.bed, spo2.origin.bed);
    // Mapped code, its reference id and the canonical unit come from the tables.
    assert!(matches!(ha.code.code, Cow::Borrowed("147842")));
    assert!(matches!(
        ha.code.refid,
        Some(Cow::Borrowed("MDC_ECG_HEART_RATE"))
    ));
    assert!(matches!(ha.ucum, Cow::Borrowed("/min")));
    // A code no table names is learned from the first message: the second message's reading
    // shares its copy.
    let qt = |obs: &[&Observation]| {
        obs.iter()
            .find(|o| o.code.code == "147232")
            .map(|o| (*o).clone())
            .expect("QT reading")
    };
    let (qa, qb) = (qt(&a), qt(&b));
    assert_eq!(qa.code.refid.as_deref(), Some("MDC_ECG_TIME_PD_QT_GL"));
    let (Cow::Borrowed(x), Cow::Borrowed(y)) = (&qa.code.code, &qb.code.code) else {
        panic!("a learned term is borrowed");
    };
    assert!(std::ptr::eq(*x, *y));
}

#[test]
fn message_type_names_are_code_caret_trigger() {
    for (code, trigger, want) in [
        ("ORU", "R01", "ORU^R01"),
        ("ADT", "A40", "ADT^A40"),
        ("ADT", "A99", "ADT^A99"),
        ("OR", "UR01", "OR^UR01"),
        ("ORU^", "R01", "ORU^^R01"),
        ("ORU", "", "ORU^"),
    ] {
        let name = super::message_type_name(code, trigger);
        assert_eq!(name, want);
        // The accepted types come without an allocation.
        let accepted = want == "ORU^R01" || want == "ADT^A40";
        assert_eq!(matches!(name, Cow::Borrowed(_)), accepted, "{want}");
    }
}

#[test]
fn a_code_written_with_a_sign_or_leading_zeros_keeps_its_text() {
    let mut n = norm();
    for (sent, borrowed) in [
        ("147842", true),
        ("+147842", false),
        ("0147842", false),
        ("00147842", false),
    ] {
        let msg = MONITOR.replace(
            "147842^MDC_ECG_HEART_RATE",
            &format!("{sent}^MDC_ECG_HEART_RATE"),
        );
        let out = n.hl7("monitors", msg.as_bytes(), t0()).unwrap();
        let hr = find(&observations(&out), Param::HeartRate).clone();
        // The same parameter either way; the code's text as sent, the table's own copy when
        // it is the table's text.
        assert_eq!(hr.code.code, sent);
        let table = n.tables.mdc_entry(147842).map(|e| e.code);
        let same =
            matches!((&hr.code.code, table), (Cow::Borrowed(c), Some(t)) if std::ptr::eq(*c, t));
        assert_eq!(same, borrowed, "{sent}");
    }
}
