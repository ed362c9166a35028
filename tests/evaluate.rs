//! `vigil evaluate physionet` and the PhysioNet importer on the committed sample
//! (tests/data/physionet: 16 patients of the PhysioNet 2019 challenge, see its README).

use std::path::{Path, PathBuf};

use vigil::evaluate::physionet::{self, ReplaySetup, ADMIT};
use vigil::evaluate::report::{self, PhysionetOptions};
use vigil::model::{IngestRecord, Param, HOUR_MS};
use vigil::normalize::{NormalizeSettings, NormalizeTables, Normalizer};
use vigil::scorer::risk::RiskModel;
use vigil::sources::replay::demo::DemoSources;
use vigil::sources::replay::physionet::{parse_physionet, physionet_to_hl7};

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/physionet")
}

fn rows_of(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
        - 1
}

fn run(input: &Path, labels: Option<&Path>, jobs: usize, dir: &Path) -> report::Report {
    std::fs::create_dir_all(dir).unwrap();
    report::run(&PhysionetOptions {
        input: input.to_path_buf(),
        predictions_out: dir.join("pred"),
        report_out: dir.join("report"),
        threshold: None,
        labels: labels.map(Path::to_path_buf),
        model: None,
        recording: Some(dir.join("cohort.vrec")),
        jobs,
        progress: false,
    })
    .unwrap()
}

#[test]
fn evaluate_writes_one_prediction_per_row_and_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(&sample(), None, 2, dir.path());
    let inputs: Vec<PathBuf> = std::fs::read_dir(sample())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "psv"))
        .collect();
    assert_eq!(inputs.len(), 16);
    assert_eq!(r.patients, 16);
    assert_eq!(r.septic_patients, 8);
    let threshold = RiskModel::builtin().unwrap().threshold;
    let mut total = 0;
    for p in &inputs {
        let out = dir.path().join("pred").join(p.file_name().unwrap());
        let text = std::fs::read_to_string(&out).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("PredictedProbability|PredictedLabel"));
        let rows: Vec<&str> = lines.collect();
        assert_eq!(rows.len(), rows_of(p), "{}", out.display());
        total += rows.len();
        for row in rows {
            let (prob, label) = row.split_once('|').unwrap();
            let prob: f64 = prob.parse().unwrap();
            assert!(prob > 0.0 && prob < 1.0, "{row}");
            assert_eq!(label == "1", prob >= threshold - 5e-7, "{row}");
        }
    }
    assert_eq!(r.rows, total);
    for f in [
        "report.json",
        "report.html",
        "roc.png",
        "calibration.png",
        "lead_time.png",
        "alert_burden.png",
    ] {
        let p = dir.path().join("report").join(f);
        assert!(std::fs::metadata(&p).unwrap().len() > 100, "{f}");
    }
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("report/report.json")).unwrap(),
    )
    .unwrap();
    let keys: Vec<&str> = json["predictors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "sepsis_risk",
            "shock_risk",
            "qsofa",
            "news2",
            "sofa_rise",
            "hours_in_unit"
        ]
    );
    for p in json["predictors"].as_array().unwrap() {
        let u = p["utility"].as_f64().unwrap();
        assert!((-10.0..=1.0).contains(&u), "{p}");
        let a = p["auroc"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&a));
    }
    let html = std::fs::read_to_string(dir.path().join("report/report.html")).unwrap();
    assert!(html.contains("<img src=\"roc.png\""));
    assert!(html.contains("qSOFA ≥ 2"));
    // The cohort recording: one admit per patient.
    let rec = std::fs::read_to_string(dir.path().join("cohort.vrec")).unwrap();
    assert!(rec.contains("doi:10.13026/v64v-d857"));
}

#[test]
fn predictions_are_byte_identical_across_runs_and_thread_counts() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    run(&sample(), None, 1, a.path());
    run(&sample(), None, 3, b.path());
    for e in std::fs::read_dir(a.path().join("pred")).unwrap() {
        let e = e.unwrap();
        let x = std::fs::read(e.path()).unwrap();
        let y = std::fs::read(b.path().join("pred").join(e.file_name())).unwrap();
        assert_eq!(x, y, "{:?}", e.file_name());
    }
}

#[test]
fn labels_from_a_directory_match_the_files_own() {
    let dir = tempfile::tempdir().unwrap();
    let unlabelled = dir.path().join("in");
    std::fs::create_dir(&unlabelled).unwrap();
    for e in std::fs::read_dir(sample()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "psv") {
            continue;
        }
        // Drop the last column (SepsisLabel).
        let text: String = std::fs::read_to_string(&p)
            .unwrap()
            .lines()
            .map(|l| format!("{}\n", l.rsplit_once('|').unwrap().0))
            .collect();
        std::fs::write(unlabelled.join(p.file_name().unwrap()), text).unwrap();
    }
    let own = physionet::read_dir(&sample(), None).unwrap();
    let none = physionet::read_dir(&unlabelled, None).unwrap();
    assert!(none.iter().all(|f| f.labels.is_none()));
    let given = physionet::read_dir(&unlabelled, Some(&sample())).unwrap();
    for (a, b) in own.iter().zip(&given) {
        assert_eq!(a.labels, b.labels, "{}", a.name);
        assert!(a.labels.is_some());
    }
    // Without labels the report still has the alert burden but no label metrics.
    let r = run(&unlabelled, None, 2, &dir.path().join("nolabels"));
    assert_eq!(r.labelled_patients, 0);
    assert!(r.predictors.iter().all(|p| p.utility.is_none()));
    let with = run(&unlabelled, Some(&sample()), 2, &dir.path().join("labels"));
    let direct = run(&sample(), None, 2, &dir.path().join("direct"));
    for (a, b) in with.predictors.iter().zip(&direct.predictors) {
        assert_eq!(a.utility, b.utility);
        assert_eq!(a.auroc, b.auroc);
    }
    // A labels file of the wrong length is an error naming it.
    let bad = dir.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    for f in &own {
        std::fs::write(bad.join(&f.name), "SepsisLabel\n0\n").unwrap();
    }
    let err = physionet::read_dir(&unlabelled, Some(&bad)).unwrap_err();
    assert!(err.to_string().contains("labels for"), "{err}");
}

#[test]
fn earlier_predictions_do_not_change_when_later_rows_do() {
    let text = std::fs::read_to_string(sample().join("p100013.psv")).unwrap();
    let p = parse_physionet("p100013", &text).unwrap();
    let setup = ReplaySetup::builtin(RiskModel::builtin(), false).unwrap();
    let base = physionet::replay_patient(&p, "PN00001", &setup).unwrap();
    assert_eq!(base.len(), p.rows.len());
    let cut = 40;
    let mut q = p.clone();
    for r in q.rows.iter_mut().skip(cut + 1) {
        for (k, v) in r.values.iter_mut() {
            *v = match k.as_str() {
                "HR" => 150.0,
                "SBP" => 70.0,
                "MAP" => 50.0,
                "Temp" => 39.5,
                "Lactate" => 8.0,
                _ => *v * 1.3,
            };
        }
        r.values.insert("Lactate".into(), 8.0);
        r.values.insert("WBC".into(), 25.0);
    }
    let moved = physionet::replay_patient(&q, "PN00001", &setup).unwrap();
    for (i, (a, b)) in base.iter().zip(&moved).enumerate() {
        if i <= cut {
            assert_eq!(a, b, "row {i} changed");
        }
    }
    assert!(
        base.iter()
            .zip(&moved)
            .skip(cut + 1)
            .any(|(a, b)| a.risk != b.risk),
        "the perturbation must reach the later predictions"
    );
}

#[test]
fn importer_round_trips_values_through_the_normalizer() {
    let text = std::fs::read_to_string(sample().join("p100047.psv")).unwrap();
    let p = parse_physionet("p100047", &text).unwrap();
    let entries = physionet_to_hl7(
        &p,
        "PN00001",
        physionet::UNIT,
        ADMIT,
        &DemoSources::default(),
    );
    let mut n = Normalizer::new(
        NormalizeTables::builtin().unwrap(),
        NormalizeSettings::default(),
    );
    let mut obs = Vec::new();
    for e in &entries {
        let out = n.hl7(&e.source, &e.payload().unwrap(), e.t).unwrap();
        for r in out.records {
            if let IngestRecord::Observation(o) = r {
                obs.push(o);
            }
        }
    }
    let first = p.rows[0].iculos;
    let vitals = [
        ("HR", Param::HeartRate),
        ("O2Sat", Param::SpO2),
        ("Temp", Param::Temp),
        ("SBP", Param::SbpNibp),
        ("MAP", Param::MapNibp),
        ("DBP", Param::DbpNibp),
        ("Resp", Param::RespRate),
    ];
    let labs = [
        ("Lactate", "2524-7"),
        ("WBC", "6690-2"),
        ("BUN", "3094-0"),
        ("Creatinine", "2160-0"),
    ];
    let mut checked = 0;
    for row in &p.rows {
        let hour_start = ADMIT.plus_ms(i64::from(row.iculos - first) * HOUR_MS);
        let in_hour = |t: vigil::model::Timestamp| t >= hour_start && t.since(hour_start) < HOUR_MS;
        for (col, param) in vitals {
            let Some(v) = row.get(col) else { continue };
            let found = obs.iter().any(|o| {
                o.param == Some(param)
                    && in_hour(o.corrected_time)
                    && (o.numeric().unwrap() - v).abs() < 0.006
            });
            assert!(found, "row {} {col} {v}", row.line);
            checked += 1;
        }
        for (col, loinc) in labs {
            let Some(v) = row.get(col) else { continue };
            let found = obs.iter().any(|o| {
                o.code.code == loinc
                    && in_hour(o.corrected_time)
                    && (o.numeric().unwrap() - v).abs() < 0.06
            });
            assert!(found, "row {} {col} {v}", row.line);
            checked += 1;
        }
        if let Some(f) = row.get("FiO2") {
            let pct = if f <= 1.0 { f * 100.0 } else { f };
            assert!(obs.iter().any(|o| o.param == Some(Param::FiO2)
                && in_hour(o.corrected_time)
                && (o.numeric().unwrap() - pct).abs() < 0.6));
            checked += 1;
        }
    }
    assert!(checked > 100, "{checked}");
    // Every observation belongs to the admitted patient.
    assert!(obs.iter().all(|o| o.patient().is_some()));
}

#[test]
fn training_writes_the_same_artifact_whatever_the_thread_count() {
    use vigil::evaluate::train::{self, TrainOptions};
    let dir = tempfile::tempdir().unwrap();
    let artifact = |jobs: usize| {
        let out = dir.path().join(format!("model-{jobs}.json"));
        train::run(&TrainOptions {
            input: sample(),
            out: out.clone(),
            folds: 2,
            jobs,
            ..TrainOptions::default()
        })
        .expect("training on the sample");
        std::fs::read(&out).unwrap()
    };
    let one = artifact(1);
    let three = artifact(3);
    assert!(
        one == three,
        "the artifact differs between 1 and 3 threads (summation order must not depend on them)"
    );
    // What was written is a model the scorer loads.
    let model: RiskModel = serde_json::from_slice(&one).expect("the artifact parses");
    assert!(model.weights.iter().all(|w| w.is_finite()));
}
