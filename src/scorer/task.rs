//! The scorer stage: consumes the observations topic, keeps every patient's state, and
//! publishes one [`ScoreSet`] per patient per arrival.
//!
//! Readings that arrive together (one message: same patient, same receive time) are ingested
//! first and scored once, so a 20-row monitor message yields one evaluation, not twenty.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::Scorer;
use crate::bus::{Delivery, IngestBatch, Publisher, Subscriber};
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
                let patient = obs.patient()?;
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

/// Runs until the observations topic ends, then returns the scorer (for summaries). Each batch
/// (one message) is ingested whole, then every patient it touched is evaluated once, at the
/// newest arrival time among that patient's records, in order of first appearance.
pub async fn run(
    mut scorer: Scorer,
    mut input: Subscriber<IngestBatch>,
    output: Publisher<ScoreSet>,
    metrics: Arc<Metrics>,
    mut on_scores: impl FnMut(&ScoreSet) + Send,
) -> Scorer {
    let mut touched: Vec<(String, Timestamp)> = Vec::new();
    // On Kafka: which partition each patient's records come from, so a partition taken away
    // takes its patients' state with it (the new owner rebuilds it from the history).
    let mut partition_of: HashMap<String, i32> = HashMap::new();
    while let Some(delivery) = input.next_delivery().await {
        let (batch, live, partition) = match delivery {
            Delivery::Live(b, p) => (b, true, p),
            Delivery::Restore(b, p) => (b, false, Some(p)),
            Delivery::Revoked { partition } => {
                partition_of.retain(|patient, p| {
                    let keep = *p != partition;
                    if !keep {
                        scorer.forget(patient);
                    }
                    keep
                });
                metrics.patients.set(scorer.patients() as i64);
                continue;
            }
        };
        touched.clear();
        let mut census = false;
        for rec in &batch {
            match rec {
                IngestRecord::Census(_) => census = true,
                IngestRecord::Observation(o) => {
                    if let Some(p) = scorer.ingest(rec) {
                        match touched.iter_mut().find(|(q, _)| *q == p) {
                            Some((_, t)) => *t = (*t).max(o.receive_time),
                            None => touched.push((p, o.receive_time)),
                        }
                    }
                    continue;
                }
            }
            let _ = scorer.ingest(rec);
        }
        if census {
            metrics.patients.set(scorer.patients() as i64);
        }
        if let Some(p) = partition {
            for rec in &batch {
                let patient = match rec {
                    IngestRecord::Observation(o) => o.patient(),
                    IngestRecord::Census(c) => Some(c.patient.as_str()),
                };
                if let Some(patient) = patient {
                    if !partition_of.contains_key(patient) {
                        partition_of.insert(patient.to_string(), p);
                    }
                }
            }
        }
        for (patient, at) in &touched {
            let started = Instant::now();
            let set = scorer.evaluate(patient, *at);
            metrics.stage_time("score", started.elapsed());
            // Rebuilding: the evaluation updates the state (baselines, rolling worst) exactly
            // as before, but what it produced was published by the previous owner.
            if !live {
                continue;
            }
            if let Some(set) = set {
                if !publish(&set, &output, &metrics, &mut on_scores).await {
                    return scorer;
                }
            }
        }
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
    metrics.reading_latency("score", set.at);
    true
}
