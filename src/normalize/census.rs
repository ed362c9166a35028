//! The census: which patient (encounter) is in which bed, built from ADT.
//!
//! Device data often carries only a location; the census gives it a patient. Identifiers:
//! the encounter id (PV1-19) is the patient key everywhere downstream; the medical record
//! number (PID-3) maps onto the current encounter so lab results that carry only an MRN land.

use rustc_hash::FxHashMap as HashMap;

use crate::model::{CensusEvent, CensusKind, Timestamp};

/// One admitted patient.
#[derive(Clone, Debug, PartialEq)]
pub struct Occupant {
    pub patient: String,
    pub mrn: Option<String>,
    pub unit: Option<String>,
    pub bed: Option<String>,
    pub weight_kg: Option<f64>,
    pub height_cm: Option<f64>,
    pub since: Timestamp,
}

/// The bed ↔ patient association, keyed by `(unit, bed)`. Looked up for every device message,
/// so hashed as the normalizer's other maps are (FxHash), not with SipHash.
#[derive(Debug, Default)]
pub struct Census {
    beds: HashMap<(String, String), String>,
    patients: HashMap<String, Occupant>,
    by_mrn: HashMap<String, String>,
    /// Last known place of a discharged patient, so a cancelled discharge can restore it.
    discharged: HashMap<String, Occupant>,
}

fn bed_key(unit: Option<&str>, bed: Option<&str>) -> Option<(String, String)> {
    bed.filter(|b| !b.is_empty())
        .map(|b| (unit.unwrap_or("").to_string(), b.to_string()))
}

impl Census {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies an ADT change. `mrn` is the medical record number the message carried.
    pub fn apply(&mut self, ev: &CensusEvent, mrn: Option<&str>) {
        match ev.kind {
            CensusKind::Admit
            | CensusKind::Transfer
            | CensusKind::CancelTransfer
            | CensusKind::CancelDischarge => {
                if let Some(old) = self.patients.get(&ev.patient) {
                    if let Some(k) = bed_key(old.unit.as_deref(), old.bed.as_deref()) {
                        if self.beds.get(&k) == Some(&ev.patient) {
                            self.beds.remove(&k);
                        }
                    }
                }
                let restored = self.discharged.remove(&ev.patient);
                let prev = self.patients.get(&ev.patient).cloned().or(restored);
                let occ = Occupant {
                    patient: ev.patient.clone(),
                    mrn: mrn
                        .map(str::to_string)
                        .or_else(|| prev.as_ref().and_then(|p| p.mrn.clone())),
                    unit: ev
                        .unit
                        .clone()
                        .or_else(|| prev.as_ref().and_then(|p| p.unit.clone())),
                    bed: ev
                        .bed
                        .clone()
                        .or_else(|| prev.as_ref().and_then(|p| p.bed.clone())),
                    weight_kg: ev
                        .weight_kg
                        .or_else(|| prev.as_ref().and_then(|p| p.weight_kg)),
                    height_cm: ev
                        .height_cm
                        .or_else(|| prev.as_ref().and_then(|p| p.height_cm)),
                    since: prev.as_ref().map(|p| p.since).unwrap_or(ev.time),
                };
                if let Some(k) = bed_key(occ.unit.as_deref(), occ.bed.as_deref()) {
                    // A new occupant displaces whoever the census still had in the bed.
                    if let Some(previous) = self.beds.insert(k, ev.patient.clone()) {
                        if previous != ev.patient {
                            if let Some(p) = self.patients.get_mut(&previous) {
                                p.bed = None;
                            }
                        }
                    }
                }
                if let Some(m) = &occ.mrn {
                    self.by_mrn.insert(m.clone(), ev.patient.clone());
                }
                self.patients.insert(ev.patient.clone(), occ);
            }
            CensusKind::Update => {
                if let Some(p) = self.patients.get_mut(&ev.patient) {
                    if ev.weight_kg.is_some() {
                        p.weight_kg = ev.weight_kg;
                    }
                    if ev.height_cm.is_some() {
                        p.height_cm = ev.height_cm;
                    }
                }
            }
            CensusKind::Discharge | CensusKind::CancelAdmit => {
                if let Some(p) = self.patients.remove(&ev.patient) {
                    if let Some(k) = bed_key(p.unit.as_deref(), p.bed.as_deref()) {
                        if self.beds.get(&k) == Some(&ev.patient) {
                            self.beds.remove(&k);
                        }
                    }
                    if let Some(m) = &p.mrn {
                        if self.by_mrn.get(m) == Some(&ev.patient) {
                            self.by_mrn.remove(m);
                        }
                    }
                    if ev.kind == CensusKind::Discharge {
                        self.discharged.insert(ev.patient.clone(), p);
                    }
                }
            }
            CensusKind::Merge => {
                if let Some(old) = ev.prior_patient.as_ref() {
                    if let Some(mut p) = self.patients.remove(old) {
                        p.patient = ev.patient.clone();
                        if let Some(k) = bed_key(p.unit.as_deref(), p.bed.as_deref()) {
                            self.beds.insert(k, ev.patient.clone());
                        }
                        for v in self.by_mrn.values_mut() {
                            if v == old {
                                *v = ev.patient.clone();
                            }
                        }
                        self.patients.entry(ev.patient.clone()).or_insert(p);
                    }
                }
            }
        }
    }

    /// The patient in a bed.
    pub fn patient_in(&self, unit: Option<&str>, bed: Option<&str>) -> Option<&Occupant> {
        let k = bed_key(unit, bed)?;
        self.beds.get(&k).and_then(|p| self.patients.get(p))
    }

    pub fn patient(&self, id: &str) -> Option<&Occupant> {
        self.patients.get(id)
    }

    pub fn by_mrn(&self, mrn: &str) -> Option<&Occupant> {
        self.by_mrn.get(mrn).and_then(|p| self.patients.get(p))
    }

    pub fn occupied_beds(&self) -> usize {
        self.beds.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: CensusKind, patient: &str, bed: Option<&str>) -> CensusEvent {
        CensusEvent {
            schema: 1,
            kind,
            patient: patient.into(),
            prior_patient: None,
            unit: Some("ICU-A".into()),
            bed: bed.map(Into::into),
            prior_bed: None,
            weight_kg: Some(70.0),
            height_cm: None,
            time: Timestamp(0),
            receive_time: Timestamp(0),
            message: "1".into(),
        }
    }

    #[test]
    fn admit_transfer_discharge_and_cancel() {
        let mut c = Census::new();
        c.apply(&ev(CensusKind::Admit, "V1", Some("BED01")), Some("MRN1"));
        assert_eq!(
            c.patient_in(Some("ICU-A"), Some("BED01")).unwrap().patient,
            "V1"
        );
        assert_eq!(c.by_mrn("MRN1").unwrap().patient, "V1");
        c.apply(&ev(CensusKind::Transfer, "V1", Some("BED02")), None);
        assert!(c.patient_in(Some("ICU-A"), Some("BED01")).is_none());
        assert_eq!(
            c.patient_in(Some("ICU-A"), Some("BED02")).unwrap().patient,
            "V1"
        );
        assert_eq!(c.by_mrn("MRN1").unwrap().bed.as_deref(), Some("BED02"));
        c.apply(&ev(CensusKind::Discharge, "V1", None), None);
        assert!(c.patient_in(Some("ICU-A"), Some("BED02")).is_none());
        assert!(c.by_mrn("MRN1").is_none());
        c.apply(&ev(CensusKind::CancelDischarge, "V1", None), None);
        let back = c.patient_in(Some("ICU-A"), Some("BED02")).unwrap();
        assert_eq!(
            (back.patient.as_str(), back.mrn.as_deref()),
            ("V1", Some("MRN1"))
        );
    }

    #[test]
    fn a_new_admit_displaces_the_old_occupant_and_merge_renames() {
        let mut c = Census::new();
        c.apply(&ev(CensusKind::Admit, "V1", Some("BED01")), Some("M1"));
        c.apply(&ev(CensusKind::Admit, "V2", Some("BED01")), Some("M2"));
        assert_eq!(
            c.patient_in(Some("ICU-A"), Some("BED01")).unwrap().patient,
            "V2"
        );
        assert_eq!(c.patient("V1").unwrap().bed, None);
        let mut m = ev(CensusKind::Merge, "V9", None);
        m.prior_patient = Some("V2".into());
        c.apply(&m, None);
        assert_eq!(
            c.patient_in(Some("ICU-A"), Some("BED01")).unwrap().patient,
            "V9"
        );
        assert_eq!(c.by_mrn("M2").unwrap().patient, "V9");
    }
}
