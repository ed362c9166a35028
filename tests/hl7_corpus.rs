//! The HL7 parser and decoder against real messages written elsewhere (`tests/data/hl7/`, see
//! its ATTRIBUTION.md).

use std::path::{Path, PathBuf};

use vigil::protocol::hl7::{
    decode, parse, split_messages, DecodeError, DecodeOptions, Decoded, ObservationReport, ObxRow,
    ParseErrorKind,
};

const OPTS: DecodeOptions = DecodeOptions {
    default_offset_min: 0,
};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hl7")
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(data_dir().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn all_files() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(data_dir()).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "hl7") {
                let rel = f.strip_prefix(data_dir()).unwrap().display().to_string();
                out.push((rel, std::fs::read(&f).unwrap()));
            }
        }
    }
    out.sort();
    assert!(out.len() >= 80, "corpus went missing: {} files", out.len());
    out
}

fn is_bad(name: &str) -> bool {
    name.contains("invalid__") || name.contains("sample_bad_")
}

fn report(rel: &str) -> ObservationReport<'static> {
    let bytes = read(rel);
    let msg = parse(&bytes).unwrap();
    match decode(&msg, &OPTS).unwrap() {
        Decoded::Observations(r) => r.into_owned(),
        other => panic!("{rel}: expected observations, got {other:?}"),
    }
}

fn row<'r>(r: &'r ObservationReport<'_>, code: &str) -> &'r ObxRow<'r> {
    r.rows()
        .find(|x| x.code == code)
        .unwrap_or_else(|| panic!("no OBX with code {code}"))
}

/// Every message in every good file parses; bad files either parse or give a positioned error.
#[test]
fn every_file_parses_or_fails_with_a_position() {
    let mut parsed = 0;
    let mut rejected = Vec::new();
    for (name, bytes) in all_files() {
        let msgs: Vec<&[u8]> = split_messages(&bytes).collect();
        assert!(!msgs.is_empty(), "{name}: no message found");
        for m in msgs {
            match parse(m) {
                Ok(msg) => {
                    parsed += 1;
                    assert_eq!(msg.msh().name(), "MSH", "{name}");
                    assert!(!msg.message_type().0.is_empty(), "{name}: no MSH-9");
                    // Decoding never panics; it may refuse types vigil does not consume.
                    let _ = decode(&msg, &OPTS);
                }
                Err(e) => {
                    assert!(is_bad(&name), "{name}: good message rejected: {e}");
                    assert!(e.offset <= m.len(), "{name}: offset past the end: {e}");
                    rejected.push((name.clone(), e));
                }
            }
        }
    }
    assert!(parsed >= 90, "only {parsed} messages parsed");
    // The batch files without an MSH where one is due are the ones refused, each with the
    // segment that should have been MSH; the node `invalid__` file (a bad phone number) parses:
    // it is syntactically fine and only semantically wrong.
    let names: Vec<&str> = rejected.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "parser-tests-python-hl7/sample_bad_batch.hl7",
        "parser-tests-python-hl7/sample_bad_batch1.hl7",
        "parser-tests-python-hl7/sample_bad_file.hl7",
        "parser-tests-python-hl7/sample_bad_file1.hl7",
        "parser-tests-python-hl7/sample_bad_file2.hl7",
        "parser-tests-python-hl7/sample_bad_file3.hl7",
    ] {
        assert!(names.contains(&want), "{want} not rejected: {names:?}");
    }
    for (name, e) in &rejected {
        assert!(
            matches!(e.kind, ParseErrorKind::NotMsh { .. }),
            "{name}: {e}"
        );
        assert_eq!(e.segment_index, Some(1), "{name}: {e}");
        assert!(e.to_string().starts_with("byte 0 (segment 1 "), "{e}");
    }
}

#[test]
fn philips_pcd01_decodes_nibp_hr_spo2() {
    let r =
        report("device-ihe-pcd-tf-vol2-examples/00_pcd01_philips_PAT_DEVICE_PHILIPS_C_oru_r01.hl7");
    assert_eq!(r.control_id, "HP0122182658686QQ000CND119C0WS61");
    assert_eq!(r.trigger, "R01");
    assert_eq!(r.sending_app, "PAT_DEVICE_PHILIPS_C");
    assert_eq!(r.sending_facility, "Philips");
    // 2015-01-22 18:26:58 UTC.
    assert_eq!(r.message_time.unwrap().millis(), 1_421_951_218_000);
    assert_eq!(r.patient.ids[0].id, "HO2009001");
    assert_eq!(r.patient.ids[0].id_type, "MR");
    assert_eq!(
        (&*r.location.unit, &*r.location.room, &*r.location.bed),
        ("HO Surgery", "OR", "1")
    );
    assert_eq!(r.groups.len(), 1);
    let g = &r.groups[0];
    assert_eq!(g.filler_id, "201512218265601");
    assert_eq!(g.device_code.code, "69965");
    assert_eq!(g.device_code.system, "MDC");
    assert_eq!(g.rows.len(), 17);

    let sys = row(&r, "150021");
    assert_eq!((&*sys.value, &*sys.value_type), ("117", "NM"));
    assert_eq!(sys.refid, "MDC_PRESS_BLD_NONINV_SYS");
    assert_eq!(sys.unit_code, "266016");
    assert_eq!(sys.unit_refid, "MDC_DIM_MMHG");
    assert_eq!(sys.ref_range, "90-160");
    assert_eq!(sys.sub_id, "1.1.1.5");
    assert_eq!(sys.status, "X");
    // OBX-14 without a zone: the site offset (0 here) applies.
    assert_eq!(sys.time.unwrap().millis(), 1_421_927_400_000);
    assert_eq!(row(&r, "150022").value, "82");
    assert_eq!(row(&r, "150023").value, "90");
    let hr = row(&r, "147842");
    assert_eq!((&*hr.value, &*hr.unit_code), ("80", "264864"));
    assert_eq!(row(&r, "150456").value, "99");
    assert_eq!(row(&r, "150448").value, "3.9");
    assert_eq!(row(&r, "184327").value, "MDC_ECG_SINUS_RHY");

    let mds = row(&r, "69965");
    assert!(mds.is_device_row());
    assert_eq!(
        mds.equipment_id,
        "e86c094f-f751-4acf-92b2-38f11c1f6f57-Device"
    );
    assert!(!sys.is_device_row());
    assert_eq!(r.rows().filter(|x| x.is_device_row()).count(), 7);
}

#[test]
fn site_offset_applies_only_without_a_zone() {
    let bytes =
        read("device-ihe-pcd-tf-vol2-examples/00_pcd01_philips_PAT_DEVICE_PHILIPS_C_oru_r01.hl7");
    let msg = parse(&bytes).unwrap();
    let opts = DecodeOptions {
        default_offset_min: 60,
    };
    let Decoded::Observations(r) = decode(&msg, &opts).unwrap() else {
        panic!()
    };
    // MSH-7 carries +0000: unchanged. OBX-14 has no zone: read as UTC+1.
    assert_eq!(r.message_time.unwrap().millis(), 1_421_951_218_000);
    assert_eq!(
        row(&r, "150021").time.unwrap().millis(),
        1_421_927_400_000 - 3_600_000
    );
}

#[test]
fn acme_gateway_sends_ucum_units_and_equipment() {
    let r = report("device-ihe-pcd-tf-vol2-examples/01_pcd01_dec_acme_gateway_nibp_oru_r01.hl7");
    assert_eq!(r.sending_app, "ACME_Gateway");
    assert_eq!(r.location.unit, "COLWELL");
    assert_eq!(r.location.bed, "SOLAR");
    let sys = row(&r, "150021");
    assert_eq!(sys.value, "111");
    assert_eq!(sys.unit_ucum.as_deref(), Some("mm[Hg]"));
    assert_eq!(sys.status, "R");
    assert_eq!(sys.equipment_id, "080019FFFE3ED02D172.16.172.135");
    assert_eq!(sys.equipment_name, "GATEWAY_ACME");
    assert_eq!(row(&r, "149546").unit_ucum.as_deref(), Some("{beat}/min"));
    assert_eq!(r.groups[0].obs_time.unwrap().millis(), 1_306_990_722_000);
}

#[test]
fn pcd10_infusion_event_carries_dose_drug_concentration_weight() {
    let r = report("device-ihe-pcd-tf-vol2-examples/13_pcd10_ipec_delivery_start_oru_r42.hl7");
    assert_eq!(r.trigger, "R42");
    assert_eq!(
        (&*r.location.unit, &*r.location.room, &*r.location.bed),
        ("3 West ICU", "3002", "1")
    );
    assert_eq!(r.patient.ids[0].id, "HO2009002");
    assert_eq!(r.patient.ids[0].authority, "IHE");
    assert_eq!(r.groups[0].device_code.text, "Dopamine");
    // -0500 zone: 13:21:07 local is 18:21:07 UTC.
    assert_eq!(r.message_time.unwrap().millis(), 1_444_933_267_000);
    let dose = row(&r, "157924");
    assert_eq!(dose.refid, "MDC_RATE_DOSE");
    assert_eq!(dose.value, "5.00");
    assert_eq!(dose.unit_refid, "MDC_DIM_MICRO_G_PER_KG_PER_MIN");
    assert_eq!(dose.unit_ucum.as_deref(), Some("ug/kg/min"));
    assert_eq!(row(&r, "184514").value, "Dopamine");
    let conc = row(&r, "157760");
    assert_eq!(conc.value, "1.6");
    assert_eq!(conc.unit_ucum.as_deref(), Some("mg/mL"));
    let w = row(&r, "68063");
    assert_eq!(w.value, "82.0");
    assert_eq!(w.unit_ucum.as_deref(), Some("kg"));
    assert_eq!(
        row(&r, "68487").value,
        "197288^MDC_EVT_PUMP_DELIV_START^MDC"
    );
    assert_eq!(row(&r, "184519").value, "^pump-status-infusing");
}

#[test]
fn lab_results_carry_loinc() {
    let r = report("converter-samples-ms-fhir-converter/LRI_2.0-NG_CBC_Typ_Message.hl7");
    assert_eq!(r.rows().count(), 28);
    assert!(r.rows().all(|x| x.system == "LN"));
    let plt = row(&r, "26515-7");
    assert_eq!(plt.value, "210000");
    assert_eq!(plt.unit_ucum.as_deref(), Some("{cells}/uL"));
    assert_eq!(plt.abnormal, "N");
    assert_eq!(plt.status, "F");
    assert_eq!(r.groups[0].device_code.code, "57021-8");

    let r = report("parser-tests-node-hl7-complete/valid__nist__ORU_R01_2.5.1_SampleTestCase1.hl7");
    let lead = row(&r, "10368-9");
    assert_eq!((&*lead.value, &*lead.system), ("50", "LN"));
    assert_eq!(lead.unit_ucum.as_deref(), Some("ug/dL"));
    assert_eq!(r.patient.ids[0].authority, "MPI");
    // 200808151030-0700 → 17:30 UTC.
    assert_eq!(lead.time.unwrap().millis(), 1_218_821_400_000);

    for f in [
        "converter-samples-ms-fhir-converter/LAB-ORU-1.hl7",
        "converter-samples-ms-fhir-converter/LAB-ORU-2.hl7",
        "converter-samples-ms-fhir-converter/ORU-R01-01.hl7",
        "parser-tests-node-hl7-complete/valid__realm__realm-hepatitis-c-virus.hl7",
    ] {
        let r = report(f);
        assert!(r.rows().any(|x| x.system == "LN"), "{f}: no LOINC row");
    }
}

#[test]
fn adt_samples_decode_trigger_and_location() {
    let bytes = read("converter-samples-ms-fhir-converter/ADT-A01-01.hl7");
    let msg = parse(&bytes).unwrap();
    let Decoded::Adt(a) = decode(&msg, &OPTS).unwrap() else {
        panic!("not ADT")
    };
    assert_eq!(a.trigger, "A01");
    assert_eq!(a.control_id, "MSG00001");
    // PL with an HD point of care: `HUH AE OMU&9.8&ISO^OMU B^Bed 03`.
    assert_eq!(a.location.unit, "HUH AE OMU");
    assert_eq!(a.location.room, "OMU B");
    assert_eq!(a.location.bed, "Bed 03");
    assert_eq!(a.prior_location.unit, "4 East, room 136, bed B 4E");
    assert_eq!(a.patient.ids[0].id, "PATID1234");
    assert_eq!(a.patient.ids[1].id_type, "SS");
    // EVN-2 20290801070624+0115.
    assert_eq!(a.event_time.unwrap().millis(), 1_880_257_884_000);

    let bytes = read("converter-samples-ms-fhir-converter/ADT-A08-01.hl7");
    let msg = parse(&bytes).unwrap();
    let Decoded::Adt(a) = decode(&msg, &OPTS).unwrap() else {
        panic!("not ADT")
    };
    assert_eq!(a.trigger, "A08");

    // Batch of two A04 messages with a BHS/BTS envelope.
    let bytes = read("parser-tests-python-hl7/sample_batch1.hl7");
    let msgs: Vec<_> = split_messages(&bytes).collect();
    assert_eq!(msgs.len(), 2);
    let ids: Vec<String> = msgs
        .iter()
        .map(|m| {
            let msg = parse(m).unwrap();
            let Decoded::Adt(a) = decode(&msg, &OPTS).unwrap() else {
                panic!()
            };
            assert_eq!(a.trigger, "A04");
            assert_eq!(a.patient.ids[0].id, "0000112234");
            a.control_id.into_owned()
        })
        .collect();
    assert_eq!(ids, ["12334456778890", "12334456778891"]);
}

#[test]
fn other_types_are_unsupported() {
    for (f, want) in [
        (
            "device-ihe-pcd-acm-draeger/PCD04_alarm.hl7",
            "ORU^R40^ORU_R40",
        ),
        (
            "converter-samples-ms-fhir-converter/VXU.hl7",
            "VXU^V04^VXU_V04",
        ),
        ("device-ihe-pcd-acm-draeger/ACK_watchdog.hl7", "ACK^R40"),
    ] {
        let bytes = read(f);
        let msg = parse(&bytes).unwrap();
        match decode(&msg, &OPTS) {
            Err(DecodeError::Unsupported { message_type }) => assert_eq!(message_type, want),
            other => panic!("{f}: {other:?}"),
        }
    }
}

#[test]
fn node_adt_example_with_spaces_for_segment_breaks_is_one_long_msh() {
    // This sample lost its CRs: every segment sits inside MSH. It parses, but has no PID.
    let bytes =
        read("parser-tests-node-hl7-complete/valid__healthcare-it-systems__adt-example.hl7");
    let msg = parse(&bytes).unwrap();
    assert_eq!(msg.segment_count(), 1);
    assert!(matches!(
        decode(&msg, &OPTS),
        Err(DecodeError::Missing {
            what: "PID segment",
            ..
        })
    ));
}

#[test]
fn hard_wrapped_field_continues_its_segment() {
    // An LF inside OBR-17 (`(608)258-` / `8866`): kept as a line break in the field.
    let bytes = read("parser-tests-node-hl7-complete/valid__catalyze-io__orm-example.hl7");
    let msg = parse(&bytes).unwrap();
    let obr = msg.segment("OBR").unwrap();
    assert_eq!(obr.field(17).as_str(), "(608)258-\n8866");
    assert_eq!(obr.field(25).as_str(), "Final");
    assert!(msg.segment("DG1").is_some());
}
