//! The scorer stage: consumes the observations topic, keeps every patient's state, and
//! publishes one [`ScoreSet`] per patient per arrival.
//!
//! Readings that arrive together (one message: same patient, same receive time) are ingested
//! first and scored once, so a 20-row monitor message yields one evaluation, not twenty.

use std::sync::Arc;
use std::time::Instant;

use super::Scorer;
use crate::bus::{Publisher, Subscriber};
use crate::model::{IngestRecord, ScoreSet, Timestamp};
use crate::telemetry::Metrics;

impl Scorer {
    /// Ingests an observation without scoring. Returns the patient when it changed state.
    pub fn ingest(&mut self, rec: &IngestRecord) -> Option<String> {
        match rec {
            IngestRecord::Census(_) => {
                let _ = self.handle(rec);
                None
            }
            IngestRecord::Observation(obs) => {
                let patient = obs.patient.as_deref()?;
                let st = self
                    .patients
                    .entry(patient.to_string())
                    .or_insert_with(|| super::PatientState::new(patient));
                st.on_observation(obs, &self.tables)
                    .then(|| patient.to_string())
            }
        }
    }
}

/// Runs until the observations topic ends, then returns the scorer (for summaries).
pub async fn run(
    mut scorer: Scorer,
    mut input: Subscriber<IngestRecord>,
    output: Publisher<ScoreSet>,
    metrics: Arc<Metrics>,
    mut on_scores: impl FnMut(&ScoreSet) + Send,
) -> Scorer {
    let mut pending: Option<(String, Timestamp)> = None;
    let flush =
        |scorer: &mut Scorer, pending: &mut Option<(String, Timestamp)>| -> Option<ScoreSet> {
            let (patient, at) = pending.take()?;
            let started = Instant::now();
            let set = scorer.evaluate(&patient, at);
            metrics.stage_time("score", started.elapsed());
            set
        };
    while let Some(rec) = input.next().await {
        let key = match &rec {
            IngestRecord::Observation(o) => o.patient.clone().map(|p| (p, o.receive_time)),
            IngestRecord::Census(_) => None,
        };
        if pending.is_some() && (key.is_none() || key != pending) {
            if let Some(set) = flush(&mut scorer, &mut pending) {
                if !publish(&set, &output, &metrics, &mut on_scores).await {
                    return scorer;
                }
            }
        }
        if scorer.ingest(&rec).is_some() {
            pending = key;
        } else if let IngestRecord::Census(_) = &rec {
            metrics.patients.set(scorer.patients() as i64);
        }
    }
    if let Some(set) = flush(&mut scorer, &mut pending) {
        publish(&set, &output, &metrics, &mut on_scores).await;
    }
    metrics.patients.set(scorer.patients() as i64);
    scorer
}

async fn publish(
    set: &ScoreSet,
    output: &Publisher<ScoreSet>,
    metrics: &Metrics,
    on_scores: &mut (impl FnMut(&ScoreSet) + Send),
) -> bool {
    for s in &set.scores {
        metrics
            .scores_computed
            .with_label_values(&[s.kind.name()])
            .inc();
    }
    on_scores(set);
    if output.publish(&set.patient, set.clone()).await.is_err() {
        tracing::error!("scores topic closed; scorer stopping");
        return false;
    }
    true
}
