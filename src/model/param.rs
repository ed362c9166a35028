//! The clinical parameters vigil's scores read, with their canonical UCUM units.
//!
//! The normalizer maps every known MDC/LOINC code onto one of these (tables in
//! `device-profiles/codes.toml`) and converts the value into [`Param::canonical_unit`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The canonical units, one `static` each (see [`Param::canonical_unit`]).
mod units {
    pub static PER_MIN: &str = "/min";
    pub static PERCENT: &str = "%";
    pub static MM_HG: &str = "mm[Hg]";
    pub static CEL: &str = "Cel";
    pub static CM_H2O: &str = "cm[H2O]";
    pub static ML: &str = "mL";
    pub static SCORE: &str = "{score}";
    pub static MMOL_L: &str = "mmol/L";
    pub static E3_PER_UL: &str = "10*3/uL";
    pub static MG_DL: &str = "mg/dL";
    pub static KG: &str = "kg";
    pub static ML_H: &str = "mL/h";
    pub static MG_ML: &str = "mg/mL";
    pub static ONE: &str = "1";
    pub static IU_MIN: &str = "[iU]/min";
    pub static UG_KG_MIN: &str = "ug/kg/min";
}

/// Vasoactive drugs the scores know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Drug {
    Norepinephrine,
    Epinephrine,
    Dopamine,
    Dobutamine,
    Vasopressin,
    Phenylephrine,
}

impl Drug {
    pub const ALL: [Drug; 6] = [
        Drug::Norepinephrine,
        Drug::Epinephrine,
        Drug::Dopamine,
        Drug::Dobutamine,
        Drug::Vasopressin,
        Drug::Phenylephrine,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Drug::Norepinephrine => "norepinephrine",
            Drug::Epinephrine => "epinephrine",
            Drug::Dopamine => "dopamine",
            Drug::Dobutamine => "dobutamine",
            Drug::Vasopressin => "vasopressin",
            Drug::Phenylephrine => "phenylephrine",
        }
    }

    /// Recognises a drug from a pump's drug label (case-insensitive, common synonyms).
    pub fn from_label(label: &str) -> Option<Drug> {
        let l = label.trim().to_ascii_lowercase();
        let table: [(&str, Drug); 9] = [
            ("norepinephrine", Drug::Norepinephrine),
            ("noradrenaline", Drug::Norepinephrine),
            ("levophed", Drug::Norepinephrine),
            ("epinephrine", Drug::Epinephrine),
            ("adrenaline", Drug::Epinephrine),
            ("dopamine", Drug::Dopamine),
            ("dobutamine", Drug::Dobutamine),
            ("vasopressin", Drug::Vasopressin),
            ("phenylephrine", Drug::Phenylephrine),
        ];
        // Longest names first would matter only for prefixes; none of these is a prefix of another.
        table
            .iter()
            .find(|(n, _)| l.starts_with(n) || l.contains(n))
            .map(|(_, d)| *d)
    }

    /// Vasopressors (as opposed to the inotrope dobutamine).
    pub fn is_vasopressor(self) -> bool {
        !matches!(self, Drug::Dobutamine)
    }

    /// Canonical dose unit: µg/kg/min, vasopressin U/min.
    pub fn dose_unit(self) -> &'static str {
        match self {
            Drug::Vasopressin => units::IU_MIN,
            _ => units::UG_KG_MIN,
        }
    }
}

/// True when a pump's drug label names a sedative given by continuous infusion.
pub fn is_sedative_label(label: &str) -> bool {
    let l = label.trim().to_ascii_lowercase();
    [
        "propofol",
        "diprivan",
        "midazolam",
        "dexmedetomidine",
        "precedex",
        "lorazepam",
        "ketamine",
    ]
    .iter()
    .any(|n| l.contains(n))
}

/// A clinical parameter as the scorer sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Param {
    HeartRate,
    SpO2,
    PerfusionIndex,
    RespRate,
    SbpArt,
    DbpArt,
    MapArt,
    SbpNibp,
    DbpNibp,
    MapNibp,
    Temp,
    EtCO2,
    FiO2,
    Peep,
    TidalVolume,
    Gcs,
    GcsEye,
    GcsMotor,
    GcsVerbal,
    PaO2,
    Lactate,
    Platelets,
    Bilirubin,
    Creatinine,
    UrineVolume,
    Weight,
    /// Infusion dose of a vasoactive drug, in [`Drug::dose_unit`].
    Dose(Drug),
    /// Pump flow in mL/h (converted to a dose when the drug, concentration and weight are known).
    PumpFlow,
    /// Drug concentration in mg/mL.
    DrugConc,
    /// A sedative infusion (propofol, midazolam, …): 1 while it runs, 0 once stopped. A GCS
    /// charted under sedation says little about the brain.
    Sedation,
}

impl Param {
    /// The canonical UCUM unit. Each unit is one `static`, so every call gives the very same
    /// string (a literal's address may differ between code units); tables that keep it can
    /// then be compared by address.
    pub fn canonical_unit(self) -> &'static str {
        match self {
            Param::HeartRate | Param::RespRate => units::PER_MIN,
            Param::SpO2 | Param::PerfusionIndex | Param::FiO2 => units::PERCENT,
            Param::SbpArt
            | Param::DbpArt
            | Param::MapArt
            | Param::SbpNibp
            | Param::DbpNibp
            | Param::MapNibp
            | Param::EtCO2
            | Param::PaO2 => units::MM_HG,
            Param::Temp => units::CEL,
            Param::Peep => units::CM_H2O,
            Param::TidalVolume | Param::UrineVolume => units::ML,
            Param::Gcs | Param::GcsEye | Param::GcsMotor | Param::GcsVerbal => units::SCORE,
            Param::Lactate => units::MMOL_L,
            Param::Platelets => units::E3_PER_UL,
            Param::Bilirubin | Param::Creatinine => units::MG_DL,
            Param::Weight => units::KG,
            Param::Dose(d) => d.dose_unit(),
            Param::PumpFlow => units::ML_H,
            Param::DrugConc => units::MG_ML,
            Param::Sedation => units::ONE,
        }
    }

    pub fn name(self) -> String {
        match self {
            Param::Dose(d) => format!("dose.{}", d.name()),
            other => other.simple_name().to_string(),
        }
    }

    fn simple_name(self) -> &'static str {
        match self {
            Param::HeartRate => "heart_rate",
            Param::SpO2 => "spo2",
            Param::PerfusionIndex => "perfusion_index",
            Param::RespRate => "resp_rate",
            Param::SbpArt => "sbp_art",
            Param::DbpArt => "dbp_art",
            Param::MapArt => "map_art",
            Param::SbpNibp => "sbp_nibp",
            Param::DbpNibp => "dbp_nibp",
            Param::MapNibp => "map_nibp",
            Param::Temp => "temp",
            Param::EtCO2 => "etco2",
            Param::FiO2 => "fio2",
            Param::Peep => "peep",
            Param::TidalVolume => "tidal_volume",
            Param::Gcs => "gcs",
            Param::GcsEye => "gcs_eye",
            Param::GcsMotor => "gcs_motor",
            Param::GcsVerbal => "gcs_verbal",
            Param::PaO2 => "pao2",
            Param::Lactate => "lactate",
            Param::Platelets => "platelets",
            Param::Bilirubin => "bilirubin",
            Param::Creatinine => "creatinine",
            Param::UrineVolume => "urine_volume",
            Param::Weight => "weight",
            Param::PumpFlow => "pump_flow",
            Param::DrugConc => "drug_conc",
            Param::Sedation => "sedation",
            Param::Dose(_) => "dose",
        }
    }

    /// How many parameters there are: [`Param::index`] is below it.
    pub const COUNT: usize = 29 + Drug::ALL.len();

    /// A dense number for the parameter, below [`Param::COUNT`], distinct for each: tables
    /// keyed by parameter are arrays.
    pub fn index(self) -> usize {
        match self {
            Param::HeartRate => 0,
            Param::SpO2 => 1,
            Param::PerfusionIndex => 2,
            Param::RespRate => 3,
            Param::SbpArt => 4,
            Param::DbpArt => 5,
            Param::MapArt => 6,
            Param::SbpNibp => 7,
            Param::DbpNibp => 8,
            Param::MapNibp => 9,
            Param::Temp => 10,
            Param::EtCO2 => 11,
            Param::FiO2 => 12,
            Param::Peep => 13,
            Param::TidalVolume => 14,
            Param::Gcs => 15,
            Param::GcsEye => 16,
            Param::GcsMotor => 17,
            Param::GcsVerbal => 18,
            Param::PaO2 => 19,
            Param::Lactate => 20,
            Param::Platelets => 21,
            Param::Bilirubin => 22,
            Param::Creatinine => 23,
            Param::UrineVolume => 24,
            Param::Weight => 25,
            Param::PumpFlow => 26,
            Param::DrugConc => 27,
            Param::Sedation => 28,
            Param::Dose(d) => 29 + d as usize,
        }
    }

    /// Every parameter, for tables and validation.
    pub fn all() -> Vec<Param> {
        let mut v = vec![
            Param::HeartRate,
            Param::SpO2,
            Param::PerfusionIndex,
            Param::RespRate,
            Param::SbpArt,
            Param::DbpArt,
            Param::MapArt,
            Param::SbpNibp,
            Param::DbpNibp,
            Param::MapNibp,
            Param::Temp,
            Param::EtCO2,
            Param::FiO2,
            Param::Peep,
            Param::TidalVolume,
            Param::Gcs,
            Param::GcsEye,
            Param::GcsMotor,
            Param::GcsVerbal,
            Param::PaO2,
            Param::Lactate,
            Param::Platelets,
            Param::Bilirubin,
            Param::Creatinine,
            Param::UrineVolume,
            Param::Weight,
            Param::PumpFlow,
            Param::Sedation,
            Param::DrugConc,
        ];
        v.extend(Drug::ALL.iter().map(|d| Param::Dose(*d)));
        v
    }
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for Param {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(drug) = s.strip_prefix("dose.") {
            return Drug::ALL
                .iter()
                .find(|d| d.name() == drug)
                .map(|d| Param::Dose(*d))
                .ok_or_else(|| format!("unknown drug {drug:?} in parameter {s:?}"));
        }
        Param::all()
            .into_iter()
            .find(|p| !matches!(p, Param::Dose(_)) && p.simple_name() == s)
            .ok_or_else(|| format!("unknown parameter {s:?}"))
    }
}

impl Serialize for Param {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for Param {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_indices_are_dense_and_distinct() {
        let all = Param::all();
        assert_eq!(all.len(), Param::COUNT);
        let mut seen = [false; Param::COUNT];
        for p in all {
            let i = p.index();
            assert!(i < Param::COUNT, "{p}");
            assert!(!seen[i], "{p} shares index {i}");
            seen[i] = true;
        }
    }

    #[test]
    fn every_param_name_parses_back() {
        for p in Param::all() {
            assert_eq!(p.name().parse::<Param>().unwrap(), p, "{p}");
        }
        assert!("dose.aspirin".parse::<Param>().is_err());
        assert!("pulse".parse::<Param>().is_err());
    }

    #[test]
    fn pump_labels_map_to_drugs() {
        assert_eq!(
            Drug::from_label("Norepinephrine 4mg/250mL"),
            Some(Drug::Norepinephrine)
        );
        assert_eq!(
            Drug::from_label("NORADRENALINE"),
            Some(Drug::Norepinephrine)
        );
        assert_eq!(Drug::from_label("Dopamine"), Some(Drug::Dopamine));
        assert_eq!(Drug::from_label("Saline"), None);
    }
}
