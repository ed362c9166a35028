//! PhysioNet/CinC Challenge 2019 patient files → recorded HL7 traffic for one bed.
//!
//! Owns parsing the challenge's `|`-separated hourly files (header row, `NaN` for missing, the
//! `SepsisLabel` column optional) and turning one patient into ADT, PCD-01 monitor and lab
//! messages on the file's own clock (ICULOS hours after `admit`). It reads no files itself.
//!
//! Data: Reyna MA et al., Crit Care Med 48(2):210-217 (2020); doi:10.13026/v64v-d857.

use std::collections::BTreeMap;

use super::demo::{
    adt_message, lab_message, pcd01_message, AdtEvent, DemoSources, Identity, LabPanel, LabResult,
    PcdDevice, PcdRow, MDS_MONITOR,
};
use super::format::RecordingEntry;
use crate::model::{Timestamp, HOUR_MS};

/// One hourly row: the values present (NaN columns are left out).
#[derive(Clone, Debug, PartialEq)]
pub struct PhysionetRow {
    /// 1-based line in the file.
    pub line: usize,
    /// Hours since ICU admission (the file's clock).
    pub iculos: u32,
    /// `None` when the file has no SepsisLabel column.
    pub sepsis_label: Option<bool>,
    pub values: BTreeMap<String, f64>,
}

impl PhysionetRow {
    pub fn get(&self, column: &str) -> Option<f64> {
        self.values.get(column).copied()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct PhysionetPatient {
    pub id: String,
    pub rows: Vec<PhysionetRow>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PhysionetError {
    #[error("{id}: the file is empty (no header row)")]
    Empty { id: String },
    #[error("{id}: line 1: missing column {column:?}")]
    MissingColumn { id: String, column: &'static str },
    #[error("{id}: line {line}: {found} fields, the header has {expected}")]
    FieldCount {
        id: String,
        line: usize,
        expected: usize,
        found: usize,
    },
    #[error("{id}: line {line}, column {column} ({name}): {text:?} is not a number")]
    Number {
        id: String,
        line: usize,
        column: usize,
        name: String,
        text: String,
    },
    #[error(
        "{id}: line {line}, column {column} (ICULOS): {text:?} is not a whole number of hours"
    )]
    Iculos {
        id: String,
        line: usize,
        column: usize,
        text: String,
    },
    #[error("{id}: line {line}: ICULOS {iculos} does not increase (previous {previous})")]
    Order {
        id: String,
        line: usize,
        iculos: u32,
        previous: u32,
    },
}

/// Parses one challenge file. Column order is taken from the header row.
pub fn parse_physionet(id: &str, text: &str) -> Result<PhysionetPatient, PhysionetError> {
    let mut lines = text.lines().enumerate();
    let header: Vec<&str> = loop {
        match lines.next() {
            Some((_, l)) if l.trim().is_empty() => continue,
            Some((_, l)) => break l.trim_end_matches('\r').split('|').map(str::trim).collect(),
            None => return Err(PhysionetError::Empty { id: id.into() }),
        }
    };
    let iculos_col = header.iter().position(|h| *h == "ICULOS").ok_or_else(|| {
        PhysionetError::MissingColumn {
            id: id.into(),
            column: "ICULOS",
        }
    })?;
    let label_col = header.iter().position(|h| *h == "SepsisLabel");

    let mut rows: Vec<PhysionetRow> = Vec::new();
    for (i, raw) in lines {
        let line = i + 1;
        let raw = raw.trim_end_matches('\r');
        if raw.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = raw.split('|').map(str::trim).collect();
        if fields.len() != header.len() {
            return Err(PhysionetError::FieldCount {
                id: id.into(),
                line,
                expected: header.len(),
                found: fields.len(),
            });
        }
        let mut values = BTreeMap::new();
        let mut iculos = None;
        let mut sepsis_label = None;
        for (col, (name, text)) in header.iter().zip(&fields).enumerate() {
            let v = parse_value(text).ok_or_else(|| PhysionetError::Number {
                id: id.into(),
                line,
                column: col + 1,
                name: (*name).to_string(),
                text: (*text).to_string(),
            })?;
            if col == iculos_col {
                iculos = v
                    .filter(|h| *h >= 0.0 && h.fract() == 0.0 && *h <= f64::from(u32::MAX))
                    .map(|h| h as u32);
                if iculos.is_none() {
                    return Err(PhysionetError::Iculos {
                        id: id.into(),
                        line,
                        column: col + 1,
                        text: (*text).to_string(),
                    });
                }
            } else if Some(col) == label_col {
                sepsis_label = v.map(|x| x >= 0.5);
            } else if let Some(v) = v {
                values.insert((*name).to_string(), v);
            }
        }
        let iculos = iculos.unwrap_or_default();
        if let Some(prev) = rows.last() {
            if iculos <= prev.iculos {
                return Err(PhysionetError::Order {
                    id: id.into(),
                    line,
                    iculos,
                    previous: prev.iculos,
                });
            }
        }
        rows.push(PhysionetRow {
            line,
            iculos,
            sepsis_label,
            values,
        });
    }
    Ok(PhysionetPatient {
        id: id.into(),
        rows,
    })
}

/// `Some(None)` for NaN/empty (missing), `None` for text that is not a number.
fn parse_value(text: &str) -> Option<Option<f64>> {
    if text.is_empty() || text.eq_ignore_ascii_case("nan") {
        return Some(None);
    }
    text.parse::<f64>().ok().filter(|v| v.is_finite()).map(Some)
}

/// Vital-sign columns → (MDC code, REFID, MDC unit, containment).
const VITALS: [(&str, u32, &str, &str, &str); 8] = [
    ("HR", 147842, "MDC_ECG_HEART_RATE", UNIT_BPM, "1.1.1.1"),
    ("Resp", 151562, "MDC_RESP_RATE", UNIT_RESP, "1.1.1.2"),
    ("O2Sat", 150456, "MDC_PULS_OXIM_SAT_O2", UNIT_PCT, "1.2.1.1"),
    (
        "SBP",
        150021,
        "MDC_PRESS_BLD_NONINV_SYS",
        UNIT_MMHG,
        "1.3.1.1",
    ),
    (
        "DBP",
        150022,
        "MDC_PRESS_BLD_NONINV_DIA",
        UNIT_MMHG,
        "1.3.1.2",
    ),
    (
        "MAP",
        150023,
        "MDC_PRESS_BLD_NONINV_MEAN",
        UNIT_MMHG,
        "1.3.1.3",
    ),
    ("Temp", 150344, "MDC_TEMP", UNIT_CEL, "1.5.1.1"),
    (
        "EtCO2",
        151708,
        "MDC_CONC_AWAY_CO2_ET",
        UNIT_MMHG,
        "1.6.1.1",
    ),
];
const UNIT_BPM: &str = "264864^MDC_DIM_BEAT_PER_MIN^MDC";
const UNIT_RESP: &str = "264928^MDC_DIM_RESP_PER_MIN^MDC";
const UNIT_PCT: &str = "262688^MDC_DIM_PERCENT^MDC";
const UNIT_MMHG: &str = "266016^MDC_DIM_MMHG^MDC";
const UNIT_CEL: &str = "268192^MDC_DIM_DEGC^MDC";

/// Lab columns → (LOINC, name, UCUM unit, decimals). FiO2 is special-cased (fraction → %).
const LABS: [(&str, &str, &str, &str, usize); 25] = [
    (
        "Lactate",
        "2524-7",
        "Lactate [Moles/volume] in Serum or Plasma",
        "mmol/L",
        2,
    ),
    (
        "Platelets",
        "777-3",
        "Platelets [#/volume] in Blood",
        "10*3/uL",
        0,
    ),
    (
        "Bilirubin_total",
        "1975-2",
        "Bilirubin.total [Mass/volume] in Serum or Plasma",
        "mg/dL",
        2,
    ),
    (
        "Bilirubin_direct",
        "1968-7",
        "Bilirubin.direct [Mass/volume] in Serum or Plasma",
        "mg/dL",
        2,
    ),
    (
        "Creatinine",
        "2160-0",
        "Creatinine [Mass/volume] in Serum or Plasma",
        "mg/dL",
        2,
    ),
    (
        "WBC",
        "6690-2",
        "Leukocytes [#/volume] in Blood",
        "10*3/uL",
        1,
    ),
    ("pH", "2744-1", "pH of Arterial blood", "[pH]", 2),
    (
        "PaCO2",
        "2019-8",
        "Carbon dioxide [Partial pressure] in Arterial blood",
        "mm[Hg]",
        1,
    ),
    (
        "SaO2",
        "2708-6",
        "Oxygen saturation in Arterial blood",
        "%",
        1,
    ),
    (
        "HCO3",
        "1963-8",
        "Bicarbonate [Moles/volume] in Serum or Plasma",
        "mmol/L",
        1,
    ),
    (
        "BaseExcess",
        "1925-7",
        "Base excess in Arterial blood",
        "mmol/L",
        1,
    ),
    (
        "AST",
        "1920-8",
        "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
        "U/L",
        0,
    ),
    (
        "BUN",
        "3094-0",
        "Urea nitrogen [Mass/volume] in Serum or Plasma",
        "mg/dL",
        0,
    ),
    (
        "Alkalinephos",
        "6768-6",
        "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma",
        "U/L",
        0,
    ),
    (
        "Calcium",
        "17861-6",
        "Calcium [Mass/volume] in Serum or Plasma",
        "mg/dL",
        1,
    ),
    (
        "Chloride",
        "2075-0",
        "Chloride [Moles/volume] in Serum or Plasma",
        "mmol/L",
        0,
    ),
    (
        "Glucose",
        "2345-7",
        "Glucose [Mass/volume] in Serum or Plasma",
        "mg/dL",
        0,
    ),
    (
        "Magnesium",
        "19123-9",
        "Magnesium [Mass/volume] in Serum or Plasma",
        "mg/dL",
        1,
    ),
    (
        "Phosphate",
        "2777-1",
        "Phosphate [Mass/volume] in Serum or Plasma",
        "mg/dL",
        1,
    ),
    (
        "Potassium",
        "2823-3",
        "Potassium [Moles/volume] in Serum or Plasma",
        "mmol/L",
        1,
    ),
    (
        "TroponinI",
        "10839-9",
        "Troponin I.cardiac [Mass/volume] in Serum or Plasma",
        "ng/mL",
        2,
    ),
    (
        "Hct",
        "4544-3",
        "Hematocrit [Volume Fraction] of Blood by Automated count",
        "%",
        1,
    ),
    (
        "Hgb",
        "718-7",
        "Hemoglobin [Mass/volume] in Blood",
        "g/dL",
        1,
    ),
    (
        "PTT",
        "3173-2",
        "aPTT in Blood by Coagulation assay",
        "s",
        1,
    ),
    (
        "Fibrinogen",
        "3255-7",
        "Fibrinogen [Mass/volume] in Platelet poor plasma by Coagulation assay",
        "mg/dL",
        0,
    ),
];

/// Minutes after the row's hour at which a row's lab results arrive.
const LAB_DELAY_MIN: i64 = 40;

/// The identity vigil sees for a PhysioNet patient (no real identifiers exist in the data).
pub fn physionet_identity(p: &PhysionetPatient, admit: Timestamp) -> Identity {
    let first = p.rows.first();
    let age = first
        .and_then(|r| r.get("Age"))
        .unwrap_or(60.0)
        .clamp(0.0, 110.0);
    // Challenge coding: Gender 1 = male, 0 = female.
    let sex = match first.and_then(|r| r.get("Gender")) {
        Some(g) if g >= 0.5 => "M",
        Some(_) => "F",
        None => "U",
    };
    let birth = admit.minus_ms((age * 365.25 * 24.0) as i64 * HOUR_MS);
    let digits: String = p.id.chars().filter(char::is_ascii_alphanumeric).collect();
    Identity {
        mrn: format!("PN{}", digits.to_ascii_uppercase()),
        visit: format!("VPN{}", digits.to_ascii_uppercase()),
        family: "Physionet".into(),
        given: digits.to_ascii_uppercase(),
        birth: super::hl7_writer::date(birth),
        sex,
        // The challenge data has no weight; vigil must not guess one.
        weight_kg: None,
    }
}

/// One patient's traffic: the ADT admit at row 0's time, then for each row an hourly monitor
/// message (vitals present in the row) and, when the row has labs, one lab message that
/// arrives [`LAB_DELAY_MIN`] minutes after the row's hour. Row `r` is at
/// `admit + (r.iculos − rows[0].iculos) h`. Entries are sorted by arrival.
pub fn physionet_to_hl7(
    p: &PhysionetPatient,
    bed: &str,
    unit: &str,
    admit: Timestamp,
    sources: &DemoSources,
) -> Vec<RecordingEntry> {
    let who = physionet_identity(p, admit);
    let mut out = Vec::new();
    let Some(first) = p.rows.first() else {
        return out;
    };
    let tag = who.mrn.clone();
    out.push(RecordingEntry::text(
        admit,
        &sources.adt,
        adt_message(
            AdtEvent::Admit,
            admit,
            &format!("{tag}-ADT"),
            &who,
            unit,
            bed,
            None,
        ),
    ));
    let device = PcdDevice {
        eui64: "0050C2FFFE4E0004".into(),
        name: format!("MON-{bed}"),
        mds: MDS_MONITOR.into(),
    };
    for (n, row) in p.rows.iter().enumerate() {
        let hour = i64::from(row.iculos.saturating_sub(first.iculos));
        // Hourly rows summarise the hour; send them a little after it so the admit comes first.
        let t = admit.plus_ms(hour * HOUR_MS + 30_000);
        let mut rows = Vec::new();
        for (col, code, refid, unit_code, cont) in VITALS {
            if let Some(v) = row.get(col) {
                rows.push(PcdRow::nm(code, refid, cont, &trim_num(v), unit_code, t));
            }
        }
        if !rows.is_empty() {
            out.push(RecordingEntry::text(
                t,
                &sources.monitors,
                pcd01_message(
                    "PHYSIONET_GW",
                    &format!("{tag}-M{n:04}"),
                    t,
                    Some(&who),
                    unit,
                    bed,
                    &device,
                    t,
                    &rows,
                ),
            ));
        }
        let collected = admit.plus_ms(hour * HOUR_MS);
        let mut results = Vec::new();
        for (col, loinc, name, ucum, decimals) in LABS {
            if let Some(v) = row.get(col) {
                results.push(LabResult::new(
                    loinc,
                    name,
                    super::hl7_writer::num(v, decimals),
                    ucum,
                ));
            }
        }
        if let Some(f) = row.get("FiO2") {
            // The challenge stores FiO2 as a fraction; LOINC 3150-0 is in %.
            let pct = if f <= 1.0 { f * 100.0 } else { f };
            results.push(LabResult::new(
                "3150-0",
                "Inhaled oxygen concentration",
                super::hl7_writer::num(pct, 0),
                "%",
            ));
        }
        if !results.is_empty() {
            let arrive = collected.plus_ms(LAB_DELAY_MIN * 60_000);
            out.push(RecordingEntry::text(
                arrive,
                &sources.lab,
                lab_message(
                    &format!("{tag}-L{n:04}"),
                    arrive,
                    &who,
                    unit,
                    bed,
                    collected,
                    &[LabPanel {
                        code: "PHYSIONET^Challenge 2019 hourly labs^L",
                        results,
                    }],
                ),
            ));
        }
    }
    out.sort_by_key(|e| e.t);
    out
}

/// Up to two decimals, without trailing zeros (the challenge mixes integers and means).
fn trim_num(v: f64) -> String {
    let s = super::hl7_writer::num(v, 2);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WITH_LABEL: &str = "HR|O2Sat|Temp|FiO2|Lactate|Age|Gender|ICULOS|SepsisLabel\n\
        NaN|NaN|NaN|NaN|NaN|73|0|1|0\n\
        106|91|NaN|1|6.45|73|0|2|0\n\
        92.5|96|37.5|0.6|NaN|73|0|3|1\n";

    #[test]
    fn parses_nan_as_missing_and_keeps_the_label() {
        let p = parse_physionet("p1", WITH_LABEL).unwrap();
        assert_eq!(p.rows.len(), 3);
        assert!(p.rows[0].get("HR").is_none());
        assert_eq!(p.rows[1].get("Lactate"), Some(6.45));
        assert_eq!(p.rows[2].iculos, 3);
        assert_eq!(p.rows[2].sepsis_label, Some(true));
        assert_eq!(p.rows[2].line, 4);
    }

    #[test]
    fn missing_sepsis_label_column_is_fine() {
        let text = "HR|MAP|ICULOS\n80|70|1\nNaN|65|2\n";
        let p = parse_physionet("p2", text).unwrap();
        assert_eq!(p.rows[1].sepsis_label, None);
        assert_eq!(p.rows[1].get("MAP"), Some(65.0));
    }

    #[test]
    fn bad_number_is_a_positioned_error() {
        let text = "HR|MAP|ICULOS\n80|70|1\n80|7O|2\n";
        let err = parse_physionet("p3", text).unwrap_err();
        assert_eq!(
            err,
            PhysionetError::Number {
                id: "p3".into(),
                line: 3,
                column: 2,
                name: "MAP".into(),
                text: "7O".into()
            }
        );
        assert!(err.to_string().contains("line 3, column 2 (MAP)"));
    }

    #[test]
    fn structural_errors() {
        assert!(matches!(
            parse_physionet("p", "HR|MAP\n1|2\n"),
            Err(PhysionetError::MissingColumn {
                column: "ICULOS",
                ..
            })
        ));
        assert!(matches!(
            parse_physionet("p", "HR|ICULOS\n1|2|3\n"),
            Err(PhysionetError::FieldCount { line: 2, .. })
        ));
        assert!(matches!(
            parse_physionet("p", "HR|ICULOS\n1|2.5\n"),
            Err(PhysionetError::Iculos {
                line: 2,
                column: 2,
                ..
            })
        ));
        assert!(matches!(
            parse_physionet("p", "HR|ICULOS\n1|2\n1|2\n"),
            Err(PhysionetError::Order { line: 3, .. })
        ));
        assert!(matches!(
            parse_physionet("p", ""),
            Err(PhysionetError::Empty { .. })
        ));
    }

    #[test]
    fn converts_rows_on_the_file_clock_with_fio2_in_percent() {
        let p = parse_physionet("p000009", WITH_LABEL).unwrap();
        let admit = Timestamp::parse_rfc3339("2026-01-05T00:00:00Z").unwrap();
        let e = physionet_to_hl7(&p, "BED04", "ICU-A", admit, &DemoSources::default());
        // ADT, monitor rows for ICULOS 2 and 3, labs for ICULOS 2 and 3.
        assert_eq!(e.len(), 5);
        assert!(e[0].text.as_deref().unwrap().contains("ADT^A01^ADT_A01"));
        let lab2 = e
            .iter()
            .find(|x| x.source == "lab" && x.text.as_deref().unwrap().contains("2524-7"))
            .unwrap();
        assert_eq!(lab2.t, admit.plus_ms(HOUR_MS + 40 * 60_000));
        let text = lab2.text.as_deref().unwrap();
        assert!(
            text.contains("|NM|3150-0^Inhaled oxygen concentration^LN||100|%|"),
            "{text}"
        );
        assert!(text.contains("|6.45|mmol/L|"), "{text}");
        let mon3 = e.iter().filter(|x| x.source == "monitors").nth(1).unwrap();
        assert_eq!(mon3.t, admit.plus_ms(2 * HOUR_MS + 30_000));
        assert!(mon3
            .text
            .as_deref()
            .unwrap()
            .contains("|92.5|264864^MDC_DIM_BEAT_PER_MIN^MDC|"));
    }
}
