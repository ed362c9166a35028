//! Unit conversion into each parameter's canonical UCUM unit.
//!
//! Conversion factors are physics and chemistry, not site policy, so they live here in code:
//! creatinine 88.42 µmol/L per mg/dL, bilirubin 17.1 µmol/L per mg/dL, lactate 9.008 mg/dL per
//! mmol/L, 1 kPa = 7.50062 mmHg, °F → °C, lb → kg, FiO2 fraction → %.

use crate::model::Param;

const CREATININE_UMOL_PER_MGDL: f64 = 88.42;
const BILIRUBIN_UMOL_PER_MGDL: f64 = 17.1;
const LACTATE_MGDL_PER_MMOLL: f64 = 9.008;
const MMHG_PER_KPA: f64 = 7.500_62;
const KG_PER_LB: f64 = 0.453_592_37;

/// Why a value could not be brought into the canonical unit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot convert {param} from {from:?} to {to}")]
pub struct UnitError {
    pub param: String,
    pub from: String,
    pub to: &'static str,
}

/// Converts `value` in `from` (UCUM, already de-aliased; empty = unstated) to `param`'s
/// canonical unit. An unstated unit is taken as canonical, except FiO2 where a value ≤ 1 is a
/// fraction.
#[inline]
pub fn to_canonical(param: Param, value: f64, from: &str) -> Result<f64, UnitError> {
    let to = param.canonical_unit();
    let err = || UnitError {
        param: param.name(),
        from: from.to_string(),
        to,
    };
    // A table's canonical unit is the parameter's own string: the common case is one compare.
    if std::ptr::eq(from, to) || from == to {
        return Ok(value);
    }
    let v = match (param, from) {
        (_, "") if param != Param::FiO2 => value,
        (Param::FiO2, "" | "1" | "{ratio}") => {
            if value <= 1.0 {
                value * 100.0
            } else {
                value
            }
        }
        // Perfusion index is a percentage; monitors often label it dimensionless.
        (Param::PerfusionIndex, "1") => value,
        (Param::Temp, "[degF]") => (value - 32.0) * 5.0 / 9.0,
        (Param::Temp, "K") => value - 273.15,
        (
            Param::SbpArt
            | Param::DbpArt
            | Param::MapArt
            | Param::SbpNibp
            | Param::DbpNibp
            | Param::MapNibp
            | Param::PaO2
            | Param::EtCO2,
            "kPa",
        ) => value * MMHG_PER_KPA,
        (Param::Creatinine, "umol/L") => value / CREATININE_UMOL_PER_MGDL,
        (Param::Bilirubin, "umol/L") => value / BILIRUBIN_UMOL_PER_MGDL,
        (Param::Lactate, "mg/dL") => value / LACTATE_MGDL_PER_MMOLL,
        (Param::Platelets, "10*9/L" | "/nL") => value,
        (Param::Platelets, "/uL") => value / 1000.0,
        (Param::Weight, "[lb_av]") => value * KG_PER_LB,
        (Param::Weight, "g") => value / 1000.0,
        (Param::Peep, "mbar") => value * 1.019_72,
        (Param::TidalVolume, "L") => value * 1000.0,
        (Param::HeartRate | Param::RespRate, "/s") => value * 60.0,
        (Param::Dose(_), "ug/kg/h") => value / 60.0,
        (Param::Dose(_), "mg/kg/h") => value * 1000.0 / 60.0,
        (Param::Dose(_), "ng/kg/min") => value / 1000.0,
        _ => return Err(err()),
    };
    Ok(v)
}

/// mL/h of a drug at `conc_mg_per_ml` in a patient of `weight_kg` → µg/kg/min
/// (CLINICAL.md §4.1: µg/kg/min = mL/h × mg/mL × 1000 / (60 × kg)).
pub fn flow_to_dose(ml_per_h: f64, conc_mg_per_ml: f64, weight_kg: f64) -> Option<f64> {
    if weight_kg > 0.0 && conc_mg_per_ml > 0.0 && ml_per_h >= 0.0 && ml_per_h.is_finite() {
        Some(ml_per_h * conc_mg_per_ml * 1000.0 / (60.0 * weight_kg))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Drug;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn conversions_match_their_definitions() {
        let cases: &[(Param, f64, &str, f64)] = &[
            (Param::Creatinine, 88.42, "umol/L", 1.0),
            (Param::Creatinine, 176.84, "umol/L", 2.0),
            (Param::Creatinine, 1.2, "mg/dL", 1.2),
            (Param::Bilirubin, 17.1, "umol/L", 1.0),
            (Param::Bilirubin, 205.2, "umol/L", 12.0),
            (Param::Lactate, 18.016, "mg/dL", 2.0),
            (Param::Temp, 98.6, "[degF]", 37.0),
            (Param::Temp, 212.0, "[degF]", 100.0),
            (Param::Temp, 32.0, "[degF]", 0.0),
            (Param::PaO2, 13.3, "kPa", 99.758_246),
            (Param::MapArt, 10.0, "kPa", 75.0062),
            (Param::FiO2, 0.4, "1", 40.0),
            (Param::FiO2, 0.21, "", 21.0),
            (Param::FiO2, 1.0, "1", 100.0),
            (Param::FiO2, 40.0, "%", 40.0),
            (Param::FiO2, 60.0, "", 60.0),
            (Param::Weight, 220.0, "[lb_av]", 99.790_321_4),
            (Param::Platelets, 150.0, "10*9/L", 150.0),
            (Param::PerfusionIndex, 3.9, "1", 3.9),
            (Param::Platelets, 210_000.0, "/uL", 210.0),
            (Param::Dose(Drug::Norepinephrine), 6.0, "ug/kg/h", 0.1),
        ];
        for (p, v, from, want) in cases {
            let got = to_canonical(*p, *v, from).unwrap();
            assert!(close(got, *want), "{p} {v} {from}: got {got}, want {want}");
        }
    }

    #[test]
    fn unknown_units_are_errors_not_guesses() {
        assert!(to_canonical(Param::Lactate, 2.0, "mg").is_err());
        assert!(to_canonical(Param::HeartRate, 80.0, "mm[Hg]").is_err());
        assert!(to_canonical(Param::Dose(Drug::Norepinephrine), 5.0, "mL/h").is_err());
    }

    #[test]
    fn pump_flow_converts_with_concentration_and_weight() {
        // 4 mg in 250 mL = 0.016 mg/mL; 15 mL/h in 80 kg → 0.05 µg/kg/min.
        assert!(close(flow_to_dose(15.0, 0.016, 80.0).unwrap(), 0.05));
        // The PCD-10 sample: 15.4 mL/h dopamine at 1.6 mg/mL, 82 kg → 5.008 µg/kg/min.
        assert!(close(
            flow_to_dose(15.4, 1.6, 82.0).unwrap(),
            15.4 * 1.6 * 1000.0 / (60.0 * 82.0)
        ));
        assert_eq!(flow_to_dose(15.0, 0.016, 0.0), None);
        assert_eq!(flow_to_dose(15.0, 0.0, 80.0), None);
        assert!(close(flow_to_dose(0.0, 0.016, 80.0).unwrap(), 0.0));
    }
}
