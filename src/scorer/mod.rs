//! Pure scoring: per-patient rolling state and the scores computed from it.
//!
//! Owns qSOFA, rolling SOFA and its rise, NEWS2, shock index and septic shock, with every
//! threshold loaded from `scoring/*.toml` ([`ScoringTables`]). Nothing here reads a clock or
//! does I/O beyond loading the tables: `now` is always an argument, so replay and tests run on
//! virtual time. The task that feeds it from the bus lives next to it.

pub mod news2;
pub mod qsofa;
pub mod risk;
pub mod risk_features;
pub mod shock;
pub mod sofa;
pub mod state;
pub mod tables;
pub mod task;

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::{
    CensusEvent, CensusKind, Component, IngestRecord, Observation, ScoreSet, Timestamp,
    SCORE_SCHEMA,
};

pub use state::{Footprint, PatientState, Sample, StateCounts};
pub use tables::{
    Band, Bands, Bound, DoseInRow, GridAnchor, Mentation, ScoringTables, TableError, TABLE_FILES,
};

/// A component backed by one sample.
pub(crate) fn component(name: &str, points: f64, s: Option<&Sample>, unit: &str) -> Component {
    Component {
        name: name.to_string(),
        points,
        value: s.map(|s| s.value),
        unit: Some(unit.to_string()),
        observation: s.map(|s| s.id.to_string()),
        time: s.map(|s| s.time),
        estimated: false,
        note: None,
    }
}

/// A component whose input was absent or stale: 0 points, no value.
pub(crate) fn missing_component(name: &str) -> Component {
    Component {
        name: name.to_string(),
        points: 0.0,
        value: None,
        unit: None,
        observation: None,
        time: None,
        estimated: false,
        note: Some("missing".into()),
    }
}

/// All patients' states and the tables they are scored with.
#[derive(Debug)]
pub struct Scorer {
    tables: ScoringTables,
    patients: HashMap<String, PatientState>,
    /// The fitted model behind `sepsis_risk` (the built-in one unless replaced).
    risk_model: Option<Arc<risk::RiskModel>>,
}

impl Scorer {
    pub fn new(tables: ScoringTables) -> Self {
        Scorer {
            tables,
            patients: HashMap::new(),
            risk_model: risk::RiskModel::builtin(),
        }
    }

    /// Replaces the fitted model behind `sepsis_risk` (`None`: the score is not computed).
    pub fn set_risk_model(&mut self, model: Option<Arc<risk::RiskModel>>) {
        self.risk_model = model;
    }

    pub fn risk_model(&self) -> Option<&risk::RiskModel> {
        self.risk_model.as_deref()
    }

    /// The risk models' feature vector for a patient at `now`, given the scores of the
    /// evaluation at that time (what `sepsis_risk` read).
    pub fn risk_features(&self, patient: &str, now: Timestamp, set: &ScoreSet) -> Option<Vec<f64>> {
        let st = self.patients.get(patient)?;
        Some(risk::features(st, now, &set.scores))
    }

    pub fn tables(&self) -> &ScoringTables {
        &self.tables
    }

    /// Swaps the tables (a reload); the states keep their history.
    pub fn set_tables(&mut self, tables: ScoringTables) {
        self.tables = tables;
    }

    /// Census: updates the state (discharge and cancelled admit drop it) and returns `None`.
    /// Observation with a patient: ingests it and returns the scores at
    /// `now = obs.receive_time`, or `None` when it was a repeat of a reading already seen.
    /// Observation without a patient: `None`.
    pub fn handle(&mut self, rec: &IngestRecord) -> Option<ScoreSet> {
        match rec {
            IngestRecord::Census(ev) => {
                self.on_census(ev);
                None
            }
            IngestRecord::Observation(obs) => self.on_observation(obs),
        }
    }

    fn on_observation(&mut self, obs: &Observation) -> Option<ScoreSet> {
        let patient = obs.patient()?;
        let st = self
            .patients
            .entry(patient.to_string())
            .or_insert_with(|| PatientState::new(patient));
        let before = st.counts().duplicates;
        st.on_observation(obs, &self.tables);
        if st.counts().duplicates != before {
            return None;
        }
        Some(Self::score_set(
            st,
            obs.receive_time,
            &self.tables,
            self.risk_model.as_deref(),
        ))
    }

    /// Scores one patient at `now` (e.g. on a timer, so stale values age out without input).
    pub fn evaluate(&mut self, patient: &str, now: Timestamp) -> Option<ScoreSet> {
        let st = self.patients.get_mut(patient)?;
        Some(Self::score_set(
            st,
            now,
            &self.tables,
            self.risk_model.as_deref(),
        ))
    }

    fn score_set(
        st: &mut PatientState,
        now: Timestamp,
        tables: &ScoringTables,
        model: Option<&risk::RiskModel>,
    ) -> ScoreSet {
        let mut scores = st.evaluate(now, tables);
        risk::extend(st, now, tables, model, &mut scores);
        ScoreSet {
            schema: SCORE_SCHEMA,
            patient: st.patient().to_string(),
            unit: st.unit().map(str::to_string),
            bed: st.bed().map(str::to_string),
            at: now,
            scores,
        }
    }

    fn on_census(&mut self, ev: &CensusEvent) {
        match ev.kind {
            CensusKind::Discharge | CensusKind::CancelAdmit => {
                self.patients.remove(&ev.patient);
            }
            CensusKind::Merge => {
                // The surviving encounter keeps its own history; the merged one's is used only
                // when the survivor has none.
                let prior = ev
                    .prior_patient
                    .as_ref()
                    .and_then(|p| self.patients.remove(p));
                let st = self.patients.entry(ev.patient.clone()).or_insert_with(|| {
                    let mut s = prior.unwrap_or_else(|| PatientState::new(&ev.patient));
                    s.patient.clone_from(&ev.patient);
                    s
                });
                st.on_census_with(ev, &self.tables);
            }
            _ => self
                .patients
                .entry(ev.patient.clone())
                .or_insert_with(|| PatientState::new(&ev.patient))
                .on_census_with(ev, &self.tables),
        }
    }

    pub fn patients(&self) -> usize {
        self.patients.len()
    }

    /// Drops a patient's state (their partition moved to another scorer).
    pub fn forget(&mut self, patient: &str) {
        self.patients.remove(patient);
    }

    pub fn state(&self, patient: &str) -> Option<&PatientState> {
        self.patients.get(patient)
    }

    /// Scores NEWS2 SpO2 on Scale 2 for this patient (an API flag besides the bed table).
    pub fn set_hypercapnic(&mut self, patient: &str, on: bool) -> bool {
        match self.patients.get_mut(patient) {
            Some(s) => {
                s.set_hypercapnic(on);
                true
            }
            None => false,
        }
    }

    /// Drops patients with no observation received for `idle_ms` (a missed discharge must not
    /// keep state forever). Returns how many were dropped.
    pub fn evict_idle(&mut self, now: Timestamp, idle_ms: i64) -> usize {
        let before = self.patients.len();
        self.patients
            .retain(|_, s| s.last_activity().is_none_or(|t| now.since(t) <= idle_ms));
        before - self.patients.len()
    }
}

#[cfg(test)]
mod tests;
