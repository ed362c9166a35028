//! Risk models computed live from the rolling state (CLINICAL.md §3, decision 6).
//!
//! Owns two scores: `shock_risk`, a transparent points baseline built from the shock predictors
//! CLINICAL.md §3 lists (shock index, sustained shock index, MAP, lactate, vasopressor,
//! hyperthermia, anaemia), and `sepsis_risk`, the probability from the fitted model in
//! `scoring/sepsis-risk.json` (logistic regression on [`super::risk_features`], trained by
//! `vigil train physionet`). Both read only the patient's state at `now`.

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use crate::model::{Component, Score, ScoreKind, Timestamp, HOUR_MS, SCORE_SCHEMA};

use super::risk_features::{feature_names, RuleInputs};
use super::sofa::running_doses;
use super::state::PatientState;
use super::tables::ScoringTables;

/// The built-in fitted model (`vigil train physionet` writes it).
pub const BUILTIN_MODEL: &str = include_str!("../../scoring/sepsis-risk.json");

/// Probabilities are kept strictly inside (0, 1) (VALIDATION.md: the official AUROC code
/// mishandles exact 0 and 1).
pub const P_MIN: f64 = 1e-6;
pub const P_MAX: f64 = 1.0 - 1e-6;

/// The points of the shock-transition baseline; the maximum is [`SHOCK_POINTS_MAX`].
pub const SHOCK_POINTS_MAX: f64 = 11.0;

/// A fitted logistic model over standardised features (and squares of some of them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RiskModel {
    pub schema: u32,
    pub name: String,
    /// What the label was and where the data came from.
    pub label: String,
    /// Feature names; must equal [`feature_names`] in order.
    pub features: Vec<String>,
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
    /// Standardised values are clipped to ±`clip`.
    pub clip: f64,
    pub intercept: f64,
    pub weights: Vec<f64>,
    /// Indices of features that also enter squared (after standardising and clipping).
    pub quadratic: Vec<usize>,
    pub quadratic_weights: Vec<f64>,
    /// Alert threshold on the probability, chosen for the utility on cross-validation.
    pub threshold: f64,
    /// Free-form training summary (data, folds, cross-validated figures).
    #[serde(default)]
    pub training: serde_json::Value,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RiskModelError {
    #[error("{origin}: not a risk model: {reason}")]
    Parse { origin: String, reason: String },
    #[error("{origin}: feature {index} is {found:?}, the scorer computes {expected:?}")]
    Feature {
        origin: String,
        index: usize,
        found: String,
        expected: String,
    },
    #[error("{origin}: {what} has {found} entries, expected {expected}")]
    Length {
        origin: String,
        what: &'static str,
        found: usize,
        expected: usize,
    },
}

impl RiskModel {
    /// Parses and checks a model against the features the scorer computes.
    pub fn from_json(origin: &str, text: &str) -> Result<Self, RiskModelError> {
        let m: RiskModel = serde_json::from_str(text).map_err(|e| RiskModelError::Parse {
            origin: origin.into(),
            reason: e.to_string(),
        })?;
        m.check(origin)?;
        Ok(m)
    }

    pub fn check(&self, origin: &str) -> Result<(), RiskModelError> {
        let names = feature_names();
        let len = |what, found: usize, expected: usize| {
            if found == expected {
                Ok(())
            } else {
                Err(RiskModelError::Length {
                    origin: origin.into(),
                    what,
                    found,
                    expected,
                })
            }
        };
        len("features", self.features.len(), names.len())?;
        len("mean", self.mean.len(), names.len())?;
        len("scale", self.scale.len(), names.len())?;
        len("weights", self.weights.len(), names.len())?;
        len(
            "quadratic_weights",
            self.quadratic_weights.len(),
            self.quadratic.len(),
        )?;
        for (index, (found, expected)) in self.features.iter().zip(&names).enumerate() {
            if found != expected {
                return Err(RiskModelError::Feature {
                    origin: origin.into(),
                    index,
                    found: found.clone(),
                    expected: expected.clone(),
                });
            }
        }
        if let Some(&i) = self.quadratic.iter().find(|i| **i >= names.len()) {
            return Err(RiskModelError::Feature {
                origin: origin.into(),
                index: i,
                found: "quadratic index".into(),
                expected: format!("< {}", names.len()),
            });
        }
        Ok(())
    }

    /// The built-in model, parsed once.
    pub fn builtin() -> Option<Arc<RiskModel>> {
        static MODEL: OnceLock<Option<Arc<RiskModel>>> = OnceLock::new();
        MODEL
            .get_or_init(|| {
                RiskModel::from_json("scoring/sepsis-risk.json", BUILTIN_MODEL)
                    .ok()
                    .map(Arc::new)
            })
            .clone()
    }

    /// The model's design row: standardised, clipped features, then the squared ones.
    pub fn design(&self, x: &[f64]) -> Vec<f64> {
        design_row(x, &self.mean, &self.scale, self.clip, &self.quadratic)
    }

    /// The probability for one feature vector, inside [`P_MIN`, `P_MAX`].
    pub fn predict(&self, x: &[f64]) -> f64 {
        let z = self.design(x);
        let w = self.weights.iter().chain(&self.quadratic_weights);
        let logit = self.intercept + z.iter().zip(w).map(|(a, b)| a * b).sum::<f64>();
        sigmoid(logit).clamp(P_MIN, P_MAX)
    }
}

/// Standardises, clips and appends the squares of the `quadratic` features.
pub fn design_row(
    x: &[f64],
    mean: &[f64],
    scale: &[f64],
    clip: f64,
    quadratic: &[usize],
) -> Vec<f64> {
    let mut z: Vec<f64> = x
        .iter()
        .zip(mean.iter().zip(scale))
        .map(|(v, (m, s))| {
            let s = if *s > 0.0 { *s } else { 1.0 };
            ((v - m) / s).clamp(-clip, clip)
        })
        .collect();
    let sq: Vec<f64> = quadratic
        .iter()
        .map(|i| z.get(*i).map_or(0.0, |v| v * v))
        .collect();
    z.extend(sq);
    z
}

pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

fn value_of(scores: &[Score], kind: ScoreKind) -> f64 {
    scores
        .iter()
        .find(|s| s.kind == kind)
        .map_or(0.0, |s| s.value)
}

fn criterion(name: &str, points: f64, value: Option<f64>, unit: &str, note: String) -> Component {
    Component {
        name: name.to_string(),
        points,
        value,
        unit: Some(unit.to_string()),
        observation: None,
        time: None,
        estimated: false,
        note: Some(note),
    }
}

/// The shock-transition points baseline at `now`.
pub fn shock_points(st: &PatientState, now: Timestamp, tables: &ScoringTables) -> Score {
    let r = &st.risk;
    let mut components = Vec::new();
    let mut missing = Vec::new();
    let hr = r.last("hr", now);
    let sbp = r.last("sbp", now);
    let si = match (hr, sbp) {
        (Some(h), Some(s)) if s > 0.0 => Some(h / s),
        _ => None,
    };
    // Shock index ≥ 0.7 / ≥ 1.0 (BERGER).
    match si {
        Some(v) => {
            let p = if v >= 1.0 {
                2.0
            } else if v >= 0.7 {
                1.0
            } else {
                0.0
            };
            components.push(criterion(
                "shock_index",
                p,
                Some(v),
                "1",
                "≥ 0.7: 1, ≥ 1.0: 2".into(),
            ));
        }
        None => missing.push("shock_index".to_string()),
    }
    // Sustained: shock index > 0.8 in ≥ 80 % of the last 6 hourly buckets with both (Wira).
    let sustained = r.sustained_shock_index(now, 6, 0.8);
    if let Some(frac) = sustained {
        let p = if frac >= 0.8 { 1.0 } else { 0.0 };
        components.push(criterion(
            "sustained_shock_index",
            p,
            Some(frac),
            "1",
            "fraction of the last 6 h with HR/SBP > 0.8; ≥ 0.8: 1".into(),
        ));
    }
    // MAP below the 65 mmHg target (SSC).
    match r.last("map", now) {
        Some(m) => components.push(criterion(
            "map",
            if m < 65.0 { 2.0 } else { 0.0 },
            Some(m),
            "mm[Hg]",
            "< 65: 2".into(),
        )),
        None => missing.push("map".to_string()),
    }
    // Lactate ≥ 2 (AJEM15) / ≥ 4 (Capp 2015), within 24 h.
    match r.last_within("lactate", now, 24 * HOUR_MS) {
        Some(l) => {
            let p = if l >= 4.0 {
                2.0
            } else if l >= 2.0 {
                1.0
            } else {
                0.0
            };
            components.push(criterion(
                "lactate",
                p,
                Some(l),
                "mmol/L",
                "≥ 2: 1, ≥ 4: 2 (24 h)".into(),
            ));
        }
        None => missing.push("lactate".to_string()),
    }
    // A vasopressor running.
    let running = running_doses(st, now, tables.shock.dose_carry_max_ms)
        .into_iter()
        .any(|(d, _, _)| d.is_vasopressor());
    components.push(criterion(
        "vasopressor",
        if running { 2.0 } else { 0.0 },
        Some(if running { 1.0 } else { 0.0 }),
        "1",
        "running: 2".into(),
    ));
    // Hyperthermia, anaemia (Glickman 2010).
    match r.last_within("temp", now, 24 * HOUR_MS) {
        Some(t) => components.push(criterion(
            "hyperthermia",
            if t >= 38.3 { 1.0 } else { 0.0 },
            Some(t),
            "Cel",
            "≥ 38.3: 1".into(),
        )),
        None => missing.push("temp".to_string()),
    }
    if let Some(h) = r.last_within("hgb", now, 72 * HOUR_MS) {
        components.push(criterion(
            "anaemia",
            if h < 10.0 { 1.0 } else { 0.0 },
            Some(h),
            "g/dL",
            "< 10: 1".into(),
        ));
    }
    let value = components.iter().map(|c| c.points).sum();
    Score {
        schema: SCORE_SCHEMA,
        kind: ScoreKind::ShockRisk,
        patient: st.patient.clone(),
        bed: st.bed.clone(),
        value,
        components,
        missing,
        window_min: Some(6 * 60),
        computed_at: now,
    }
}

/// The feature vector the fitted model reads at `now`, given the rule scores of the same
/// evaluation (`scores` must hold `shock_risk`).
pub fn features(st: &PatientState, now: Timestamp, scores: &[Score]) -> Vec<f64> {
    let rules = RuleInputs {
        qsofa: value_of(scores, ScoreKind::Qsofa),
        news2: value_of(scores, ScoreKind::News2),
        sofa: value_of(scores, ScoreKind::Sofa),
        sofa_rise: value_of(scores, ScoreKind::SofaRise),
        shock_points: value_of(scores, ScoreKind::ShockRisk),
    };
    st.risk.features(now, st.anchor, rules)
}

/// The fitted model's probability at `now`.
pub fn sepsis_risk(
    st: &PatientState,
    now: Timestamp,
    scores: &[Score],
    model: &RiskModel,
) -> Score {
    let x = features(st, now, scores);
    let p = model.predict(&x);
    Score {
        schema: SCORE_SCHEMA,
        kind: ScoreKind::SepsisRisk,
        patient: st.patient.clone(),
        bed: st.bed.clone(),
        value: p,
        components: vec![Component {
            name: "model".into(),
            points: p,
            value: Some(p),
            unit: Some("1".into()),
            observation: None,
            time: None,
            estimated: false,
            note: Some(format!(
                "{} (alert threshold {})",
                model.name, model.threshold
            )),
        }],
        missing: Vec::new(),
        window_min: Some(24 * 60),
        computed_at: now,
    }
}

/// Appends `shock_risk` and, with a model, `sepsis_risk` to an evaluation's scores.
pub fn extend(
    st: &PatientState,
    now: Timestamp,
    tables: &ScoringTables,
    model: Option<&RiskModel>,
    scores: &mut Vec<Score>,
) {
    scores.push(shock_points(st, now, tables));
    if let Some(m) = model {
        let s = sepsis_risk(st, now, scores, m);
        scores.push(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_model_matches_the_features_and_predicts_inside_the_open_interval() {
        let m = RiskModel::builtin().expect("scoring/sepsis-risk.json loads");
        assert!(m.threshold > 0.0 && m.threshold < 1.0);
        let x = vec![0.0; feature_names().len()];
        let p = m.predict(&x);
        assert!(p > 0.0 && p < 1.0);
        let mut bad = (*m).clone();
        bad.features.swap(0, 1);
        assert!(matches!(
            bad.check("t"),
            Err(RiskModelError::Feature { index: 0, .. })
        ));
    }
}
