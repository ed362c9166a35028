//! Scores with the values behind them.

use serde::{Deserialize, Serialize};

use super::Timestamp;

pub const SCORE_SCHEMA: u32 = 1;

/// Which score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreKind {
    Qsofa,
    /// Rolling 24 h SOFA total.
    Sofa,
    /// SOFA total minus the patient's baseline.
    SofaRise,
    News2,
    ShockIndex,
    /// 1 when the Sepsis-3 septic-shock criteria are met, else 0.
    SepticShock,
    /// Shock-transition points baseline (CLINICAL.md §3 predictors), 0–11.
    ShockRisk,
    /// Probability from the fitted model in `scoring/sepsis-risk.json`, in (0, 1).
    SepsisRisk,
}

impl ScoreKind {
    pub fn name(self) -> &'static str {
        match self {
            ScoreKind::Qsofa => "qsofa",
            ScoreKind::Sofa => "sofa",
            ScoreKind::SofaRise => "sofa_rise",
            ScoreKind::News2 => "news2",
            ScoreKind::ShockIndex => "shock_index",
            ScoreKind::SepticShock => "septic_shock",
            ScoreKind::ShockRisk => "shock_risk",
            ScoreKind::SepsisRisk => "sepsis_risk",
        }
    }
}

/// One contributor to a score: an organ system or a parameter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Component {
    /// e.g. `resp_rate`, `cardiovascular`.
    pub name: String,
    /// Points this component adds (or its value, for ratios such as the shock index).
    pub points: f64,
    /// The value the points came from, in `unit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Id of the observation that supplied the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Timestamp>,
    /// The value is an estimate (e.g. P/F from SpO2/FiO2).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub estimated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A computed score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub schema: u32,
    pub kind: ScoreKind,
    pub patient: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bed: Option<String>,
    pub value: f64,
    pub components: Vec<Component>,
    /// Inputs that were absent or stale and scored as normal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// The look-back window in minutes, where the score has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_min: Option<u32>,
    pub computed_at: Timestamp,
}

/// All scores of one evaluation of one patient, published together so the alerter sees a
/// consistent picture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreSet {
    pub schema: u32,
    pub patient: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bed: Option<String>,
    pub at: Timestamp,
    pub scores: Vec<Score>,
}

impl ScoreSet {
    pub fn get(&self, kind: ScoreKind) -> Option<&Score> {
        self.scores.iter().find(|s| s.kind == kind)
    }
}
