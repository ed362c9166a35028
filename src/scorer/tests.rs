//! Behaviour tests for the scorer: band edges from CLINICAL.md, windows, and state handling.

use super::*;
use crate::model::{
    Code, CodeSystem, Drug, ObsId, Origin, Param, Quality, Score, ScoreKind, Value, HOUR_MS,
    MINUTE_MS,
};

/// 2026-01-01T00:00:00Z.
const T0: Timestamp = Timestamp(1_767_225_600_000);

fn at_min(m: i64) -> Timestamp {
    T0.plus_ms(m * MINUTE_MS)
}

fn at_h(h: f64) -> Timestamp {
    T0.plus_ms((h * HOUR_MS as f64) as i64)
}

fn tables() -> ScoringTables {
    ScoringTables::builtin()
}

fn obs(id: &str, param: Param, value: f64, t: Timestamp) -> Observation {
    Observation {
        schema: 1,
        id: ObsId::of_text(id),
        origin: Arc::new(Origin {
            unit: Some("ICU1".into()),
            bed: Some("3".into()),
            patient: Some("P1".into()),
            ..Origin::default()
        }),
        code: Code {
            system: CodeSystem::Local,
            code: param.name().into(),
            refid: None,
        },
        param: Some(param),
        value: Value::Num(value),
        ucum: param.canonical_unit().into(),
        device_time: Some(t),
        receive_time: t,
        corrected_time: t,
        quality: Vec::new(),
    }
}

/// A state admitted at T0 with a counter for unique ids.
struct Bed {
    st: PatientState,
    t: ScoringTables,
    n: u32,
}

impl Bed {
    fn new() -> Self {
        Self::with(tables())
    }
    fn with(t: ScoringTables) -> Self {
        let mut st = PatientState::new("P1");
        st.on_census(&census(CensusKind::Admit, T0));
        Bed { st, t, n: 0 }
    }
    fn put(&mut self, p: Param, v: f64, t: Timestamp) -> &mut Self {
        self.n += 1;
        let id = format!("o{}", self.n);
        assert!(self.st.on_observation(&obs(&id, p, v, t), &self.t));
        self
    }
    fn eval(&mut self, now: Timestamp) -> Vec<Score> {
        self.st.evaluate(now, &self.t)
    }
    fn score(&mut self, kind: ScoreKind, now: Timestamp) -> Score {
        self.eval(now).into_iter().find(|s| s.kind == kind).unwrap()
    }
}

fn census(kind: CensusKind, t: Timestamp) -> CensusEvent {
    CensusEvent {
        schema: 1,
        kind,
        patient: "P1".into(),
        prior_patient: None,
        unit: Some("ICU1".into()),
        bed: Some("3".into()),
        prior_bed: None,
        weight_kg: Some(70.0),
        height_cm: None,
        time: t,
        receive_time: t,
        message: "m1".into(),
    }
}

fn comp<'a>(s: &'a Score, name: &str) -> &'a Component {
    s.components
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no component {name} in {s:?}"))
}

fn points(s: &Score, name: &str) -> f64 {
    comp(s, name).points
}

fn table_check(name: &str, f: impl Fn(f64) -> u8, cases: &[(f64, u8)]) {
    for (v, want) in cases {
        assert_eq!(f(*v), *want, "{name}({v})");
    }
}

mod bands {
    use super::*;

    #[test]
    fn qsofa_edges() {
        let t = tables();
        let q = &t.qsofa;
        table_check(
            "rr",
            |v| qsofa::score(Some(v), None, None, q).resp_rate,
            &[(21.0, 0), (22.0, 1)],
        );
        table_check(
            "sbp",
            |v| qsofa::score(None, Some(v), None, q).sbp,
            &[(100.0, 1), (101.0, 0)],
        );
        table_check(
            "gcs<15",
            |v| qsofa::score(None, None, Some(v), q).mentation,
            &[(14.0, 1), (15.0, 0)],
        );
        assert_eq!(qsofa::score(None, None, None, q).total(), 0);
        assert_eq!(
            qsofa::score(Some(30.0), Some(90.0), Some(12.0), q).total(),
            3
        );

        let files: Vec<(&str, String)> = tables::BUILTIN_SOURCES
            .iter()
            .map(|(n, s)| {
                (
                    *n,
                    s.replace("mentation = \"gcs_lt_15\"", "mentation = \"gcs_le_13\""),
                )
            })
            .collect();
        let refs: Vec<(&str, &str)> = files.iter().map(|(n, s)| (*n, s.as_str())).collect();
        let mimic = ScoringTables::from_sources(&refs).unwrap();
        table_check(
            "gcs<=13",
            |v| qsofa::score(None, None, Some(v), &mimic.qsofa).mentation,
            &[(13.0, 1), (14.0, 0)],
        );
    }

    #[test]
    fn news2_edges() {
        let t = tables();
        let n = &t.news2;
        table_check(
            "rr",
            |v| news2::resp_rate_points(v, n),
            &[
                (8.0, 3),
                (9.0, 1),
                (11.0, 1),
                (12.0, 0),
                (20.0, 0),
                (21.0, 2),
                (24.0, 2),
                (25.0, 3),
            ],
        );
        table_check(
            "spo2 scale 1",
            |v| news2::spo2_points(v, false, true, n),
            &[
                (91.0, 3),
                (92.0, 2),
                (93.0, 2),
                (94.0, 1),
                (95.0, 1),
                (96.0, 0),
                (100.0, 0),
            ],
        );
        table_check(
            "spo2 scale 2 air",
            |v| news2::spo2_points(v, true, false, n),
            &[
                (83.0, 3),
                (84.0, 2),
                (85.0, 2),
                (86.0, 1),
                (87.0, 1),
                (88.0, 0),
                (93.0, 0),
                (99.0, 0),
            ],
        );
        table_check(
            "spo2 scale 2 o2",
            |v| news2::spo2_points(v, true, true, n),
            &[
                (83.0, 3),
                (84.0, 2),
                (87.0, 1),
                (88.0, 0),
                (92.0, 0),
                (93.0, 1),
                (94.0, 1),
                (95.0, 2),
                (96.0, 2),
                (97.0, 3),
            ],
        );
        table_check(
            "sbp",
            |v| news2::sbp_points(v, n),
            &[
                (90.0, 3),
                (91.0, 2),
                (100.0, 2),
                (101.0, 1),
                (110.0, 1),
                (111.0, 0),
                (219.0, 0),
                (220.0, 3),
            ],
        );
        table_check(
            "pulse",
            |v| news2::pulse_points(v, n),
            &[
                (40.0, 3),
                (41.0, 1),
                (50.0, 1),
                (51.0, 0),
                (90.0, 0),
                (91.0, 1),
                (110.0, 1),
                (111.0, 2),
                (130.0, 2),
                (131.0, 3),
            ],
        );
        table_check(
            "temp",
            |v| news2::temperature_points(v, n),
            &[
                (35.0, 3),
                (35.1, 1),
                (36.0, 1),
                (36.1, 0),
                (38.0, 0),
                (38.1, 1),
                (39.0, 1),
                (39.1, 2),
            ],
        );
        table_check(
            "avpu",
            |v| news2::consciousness_points(v, n),
            &[(15.0, 0), (14.0, 0), (13.0, 3), (3.0, 3)],
        );
        assert_eq!(news2::oxygen_points(true, n), 2);
        assert_eq!(news2::oxygen_points(false, n), 0);
    }

    #[test]
    fn sofa_respiration_edges() {
        let t = tables();
        let s = &t.sofa;
        table_check(
            "pf ventilated",
            |v| sofa::respiration_points(v, true, s),
            &[
                (400.0, 0),
                (399.0, 1),
                (300.0, 1),
                (299.0, 2),
                (200.0, 2),
                (199.0, 3),
                (100.0, 3),
                (99.0, 4),
            ],
        );
        table_check(
            "pf not ventilated",
            |v| sofa::respiration_points(v, false, s),
            &[
                (400.0, 0),
                (399.0, 1),
                (300.0, 1),
                (299.0, 2),
                (200.0, 2),
                (199.0, 2),
                (100.0, 2),
                (99.0, 2),
            ],
        );
    }

    #[test]
    fn sofa_lab_and_cns_edges() {
        let t = tables();
        let s = &t.sofa;
        table_check(
            "platelets",
            |v| sofa::coagulation_points(v, s),
            &[
                (150.0, 0),
                (149.0, 1),
                (100.0, 1),
                (99.0, 2),
                (50.0, 2),
                (49.0, 3),
                (20.0, 3),
                (19.0, 4),
            ],
        );
        table_check(
            "bilirubin",
            |v| sofa::liver_points(v, s),
            &[
                (1.19, 0),
                (1.2, 1),
                (1.9, 1),
                (1.95, 1),
                (2.0, 2),
                (5.9, 2),
                (5.95, 2),
                (6.0, 3),
                (11.9, 3),
                (11.95, 3),
                (12.0, 4),
            ],
        );
        table_check(
            "creatinine",
            |v| sofa::renal_points(Some(v), None, s),
            &[
                (1.19, 0),
                (1.2, 1),
                (1.9, 1),
                (1.95, 1),
                (2.0, 2),
                (3.4, 2),
                (3.5, 3),
                (4.9, 3),
                (4.95, 3),
                (5.0, 4),
            ],
        );
        table_check(
            "urine",
            |v| sofa::renal_points(None, Some(v), s),
            &[(500.0, 0), (499.0, 3), (200.0, 3), (199.0, 4)],
        );
        assert_eq!(sofa::renal_points(Some(2.5), Some(150.0), s), 4);
        table_check(
            "gcs",
            |v| sofa::cns_points(v, s),
            &[
                (15.0, 0),
                (14.0, 1),
                (13.0, 1),
                (12.0, 2),
                (10.0, 2),
                (9.0, 3),
                (6.0, 3),
                (5.0, 4),
                (3.0, 4),
            ],
        );
    }

    #[test]
    fn sofa_cardiovascular_edges() {
        let t = tables();
        let s = &t.sofa;
        let cv = |map: Option<f64>, d: &[(Drug, f64)]| sofa::cardiovascular_points(map, d, s);
        assert_eq!(cv(Some(70.0), &[]), 0);
        assert_eq!(cv(Some(69.9), &[]), 1);
        assert_eq!(cv(None, &[]), 0);
        let ne = Drug::Norepinephrine;
        let epi = Drug::Epinephrine;
        let dopa = Drug::Dopamine;
        for (drug, dose, want) in [
            (ne, 0.1, 3),
            (ne, 0.11, 4),
            (epi, 0.1, 3),
            (epi, 0.11, 4),
            (dopa, 5.0, 2),
            (dopa, 5.1, 3),
            (dopa, 15.0, 3),
            (dopa, 15.1, 4),
            (Drug::Dobutamine, 0.5, 2),
            (Drug::Dobutamine, 20.0, 2),
            // Not in SOFA-1.
            (Drug::Vasopressin, 0.04, 0),
            (Drug::Phenylephrine, 1.0, 0),
        ] {
            assert_eq!(cv(Some(80.0), &[(drug, dose)]), want, "{drug:?} {dose}");
        }
        assert_eq!(cv(Some(60.0), &[(dopa, 3.0), (ne, 0.05)]), 3);
        let nee = sofa::norepinephrine_equivalent(
            &[
                (ne, 0.1),
                (epi, 0.05),
                (Drug::Phenylephrine, 1.0),
                (dopa, 10.0),
                (Drug::Vasopressin, 0.04),
            ],
            s,
        );
        assert!((nee - (0.1 + 0.05 + 0.1 + 0.1 + 0.1)).abs() < 1e-9, "{nee}");
    }

    #[test]
    fn shock_index_rounds_and_refuses_zero_sbp() {
        assert_eq!(shock::shock_index(100.0, 120.0, 2), Some(0.83));
        assert_eq!(shock::shock_index(120.0, 80.0, 2), Some(1.5));
        assert_eq!(shock::shock_index(120.0, 0.0, 2), None);
    }
}

mod windows {
    use super::*;

    #[test]
    fn stale_vitals_are_missing_at_the_time_passed_in() {
        let mut b = Bed::new();
        b.put(Param::RespRate, 25.0, at_min(0));
        let q = b.score(ScoreKind::Qsofa, at_min(60));
        assert_eq!(q.value, 1.0);
        assert_eq!(comp(&q, "resp_rate").value, Some(25.0));
        let o1 = ObsId::of_text("o1").to_string();
        assert_eq!(
            comp(&q, "resp_rate").observation.as_deref(),
            Some(o1.as_str())
        );
        assert!(q.missing.contains(&"gcs".to_string()));
        let q = b.score(ScoreKind::Qsofa, at_min(61));
        assert_eq!(q.value, 0.0);
        assert!(q.missing.contains(&"resp_rate".to_string()));
    }

    #[test]
    fn qsofa_takes_the_newer_of_arterial_and_cuff_pressure() {
        let mut b = Bed::new();
        b.put(Param::SbpArt, 95.0, at_min(0));
        b.put(Param::SbpNibp, 120.0, at_min(5));
        assert_eq!(points(&b.score(ScoreKind::Qsofa, at_min(6)), "sbp"), 0.0);
        b.put(Param::SbpArt, 98.0, at_min(7));
        assert_eq!(points(&b.score(ScoreKind::Qsofa, at_min(8)), "sbp"), 1.0);
    }

    #[test]
    fn a_bad_value_23_h_ago_counts_and_25_h_ago_does_not() {
        let mut b = Bed::new();
        b.put(Param::Platelets, 40.0, at_h(5.0))
            .put(Param::Platelets, 90.0, at_h(7.0));
        b.put(Param::Platelets, 200.0, at_h(29.5));
        // now = admit + 30 h: 90 (23 h ago) counts, 40 (25 h ago) does not.
        let s = b.score(ScoreKind::Sofa, at_h(30.0));
        assert_eq!(points(&s, "coagulation"), 2.0);
        assert_eq!(comp(&s, "coagulation").value, Some(90.0));
        // An hour earlier the 40 is still inside.
        let mut b2 = Bed::new();
        b2.put(Param::Platelets, 40.0, at_h(5.0));
        assert_eq!(
            points(&b2.score(ScoreKind::Sofa, at_h(28.0)), "coagulation"),
            3.0
        );
        // Once every value has aged out the component is missing.
        let s = b2.score(ScoreKind::Sofa, at_h(31.0));
        assert!(s.missing.contains(&"coagulation".to_string()), "{s:?}");
    }

    #[test]
    fn sofa_missing_components_score_zero_and_are_listed() {
        let mut b = Bed::new();
        b.put(Param::Bilirubin, 2.5, at_min(10));
        let s = b.score(ScoreKind::Sofa, at_min(20));
        assert_eq!(s.value, 2.0);
        assert_eq!(s.window_min, Some(24 * 60));
        assert_eq!(
            s.missing,
            vec![
                "respiration",
                "coagulation",
                "cardiovascular",
                "cns",
                "renal"
            ]
        );
    }

    #[test]
    fn pf_pairs_with_fio2_charted_within_4_h_before() {
        let mut b = Bed::new();
        b.put(Param::FiO2, 50.0, at_min(0));
        b.put(Param::PaO2, 90.0, at_min(240));
        let s = b.score(ScoreKind::Sofa, at_min(241));
        let r = comp(&s, "respiration");
        assert_eq!(r.value, Some(180.0));
        assert_eq!(r.points, 2.0, "not ventilated: < 200 scores 2");
        assert!(!r.estimated);

        let mut b = Bed::new();
        b.put(Param::FiO2, 50.0, at_min(0));
        b.put(Param::PaO2, 90.0, at_min(241));
        let s = b.score(ScoreKind::Sofa, at_min(242));
        assert!(s.missing.contains(&"respiration".to_string()), "{s:?}");
    }

    #[test]
    fn ventilation_unlocks_3_and_4() {
        let mut b = Bed::new();
        b.put(Param::Peep, 8.0, at_min(0));
        b.put(Param::FiO2, 60.0, at_min(10));
        b.put(Param::PaO2, 54.0, at_min(20)); // P/F 90
        let s = b.score(ScoreKind::Sofa, at_min(21));
        assert_eq!(points(&s, "respiration"), 4.0);
        // PEEP last seen 121 min before the gas: not ventilated any more.
        let mut b = Bed::new();
        b.put(Param::Peep, 8.0, at_min(0));
        b.put(Param::FiO2, 60.0, at_min(100));
        b.put(Param::PaO2, 54.0, at_min(121));
        assert_eq!(
            points(&b.score(ScoreKind::Sofa, at_min(122)), "respiration"),
            2.0
        );
    }

    #[test]
    fn spo2_fio2_estimate_follows_rice_and_only_below_98() {
        let mut b = Bed::new();
        b.put(Param::Peep, 8.0, at_min(0))
            .put(Param::FiO2, 50.0, at_min(0));
        b.put(Param::SpO2, 98.0, at_min(1));
        let s = b.score(ScoreKind::Sofa, at_min(2));
        assert!(
            s.missing.contains(&"respiration".to_string()),
            "SpO2 98 → no estimate"
        );

        b.put(Param::SpO2, 90.0, at_min(3)); // S/F 180 → P/F (180−64)/0.84 = 138.1
        let s = b.score(ScoreKind::Sofa, at_min(4));
        let r = comp(&s, "respiration");
        assert!(r.estimated);
        assert_eq!(r.points, 3.0);
        assert!((r.value.unwrap() - 138.095).abs() < 0.01, "{r:?}");

        // A measured gas in the same row takes precedence over the estimate.
        b.put(Param::PaO2, 200.0, at_min(5)); // P/F 400
        let s = b.score(ScoreKind::Sofa, at_min(6));
        let r = comp(&s, "respiration");
        assert!(!r.estimated);
        assert_eq!(r.points, 0.0);
        // And within 4 h of that gas no new estimate is made.
        b.put(Param::SpO2, 85.0, at_min(70));
        let s = b.score(ScoreKind::Sofa, at_min(71));
        assert_eq!(points(&s, "respiration"), 0.0);
    }

    #[test]
    fn no_fio2_means_no_estimate_by_default() {
        let mut b = Bed::new();
        b.put(Param::SpO2, 88.0, at_min(1));
        let s = b.score(ScoreKind::Sofa, at_min(2));
        assert!(s.missing.contains(&"respiration".to_string()));

        let files: Vec<(&str, String)> = tables::BUILTIN_SOURCES
            .iter()
            .map(|(n, s)| {
                (
                    *n,
                    s.replace(
                        "assume_room_air_without_fio2 = false",
                        "assume_room_air_without_fio2 = true",
                    ),
                )
            })
            .collect();
        let refs: Vec<(&str, &str)> = files.iter().map(|(n, s)| (*n, s.as_str())).collect();
        let mut b = Bed::with(ScoringTables::from_sources(&refs).unwrap());
        b.put(Param::SpO2, 88.0, at_min(1)); // S/F 419 → P/F 422.6
        let s = b.score(ScoreKind::Sofa, at_min(2));
        assert_eq!(points(&s, "respiration"), 0.0);
        assert!(comp(&s, "respiration").estimated);
    }

    #[test]
    fn doses_count_after_60_min_of_infusion() {
        let mut b = Bed::new();
        b.put(Param::Dose(Drug::Norepinephrine), 0.2, at_min(0));
        let s = b.score(ScoreKind::Sofa, at_min(59));
        assert!(s.missing.contains(&"cardiovascular".to_string()), "{s:?}");
        let s = b.score(ScoreKind::Sofa, at_min(60));
        assert_eq!(points(&s, "cardiovascular"), 4.0);
        // The infusion stops; the counted dose stays within the window.
        b.put(Param::Dose(Drug::Norepinephrine), 0.0, at_min(90));
        assert_eq!(
            points(&b.score(ScoreKind::Sofa, at_min(600)), "cardiovascular"),
            4.0
        );
        assert_eq!(
            points(&b.score(ScoreKind::Sofa, at_min(26 * 60)), "cardiovascular"),
            0.0
        );
    }

    #[test]
    fn a_stop_restarts_the_60_min_clock() {
        let mut b = Bed::new();
        let ne = Param::Dose(Drug::Norepinephrine);
        b.put(ne, 0.05, at_min(0))
            .put(ne, 0.0, at_min(40))
            .put(ne, 0.05, at_min(50));
        b.put(Param::MapArt, 75.0, at_min(100));
        let s = b.score(ScoreKind::Sofa, at_min(105));
        assert_eq!(
            points(&s, "cardiovascular"),
            0.0,
            "only 55 min since the restart"
        );
        let s = b.score(ScoreKind::Sofa, at_min(110));
        assert_eq!(points(&s, "cardiovascular"), 3.0);
        // A rate change is not a stop.
        let mut b = Bed::new();
        b.put(ne, 0.05, at_min(0)).put(ne, 0.3, at_min(59));
        assert_eq!(
            points(&b.score(ScoreKind::Sofa, at_min(60)), "cardiovascular"),
            4.0
        );
    }

    #[test]
    fn urine_output_needs_22_h_documented() {
        let mut b = Bed::new();
        for h in 1..=23 {
            b.put(Param::UrineVolume, 15.0, at_h(f64::from(h)));
        }
        // 22 h documented (1 h → 23 h), 345 mL → 376 mL/d → 3.
        let s = b.score(ScoreKind::Sofa, at_h(23.0));
        let r = comp(&s, "renal");
        assert_eq!(r.points, 3.0, "{r:?}");
        assert!((r.value.unwrap() - 345.0 * 24.0 / 22.0).abs() < 0.01);
        let mut b = Bed::new();
        for h in 1..=10 {
            b.put(Param::UrineVolume, 5.0, at_h(f64::from(h)));
        }
        let s = b.score(ScoreKind::Sofa, at_h(10.0));
        assert!(s.missing.contains(&"renal".to_string()), "{s:?}");
    }

    #[test]
    fn gcs_total_is_built_from_parts() {
        let mut b = Bed::new();
        b.put(Param::GcsEye, 3.0, at_min(0))
            .put(Param::GcsMotor, 5.0, at_min(0));
        b.put(Param::GcsVerbal, 4.0, at_min(0));
        let s = b.score(ScoreKind::Sofa, at_min(1));
        assert_eq!(comp(&s, "cns").value, Some(12.0));
        assert_eq!(points(&s, "cns"), 2.0);
    }
}

mod rise {
    use super::*;

    #[test]
    fn baseline_needs_three_components_then_follows_the_minimum() {
        let mut b = Bed::new();
        b.put(Param::Bilirubin, 2.5, at_min(0))
            .put(Param::Platelets, 120.0, at_min(0));
        let r = b.score(ScoreKind::SofaRise, at_min(1));
        assert_eq!(r.value, 0.0);
        assert_eq!(r.missing, vec!["baseline"]);
        b.put(Param::Creatinine, 1.0, at_min(2));
        let r = b.score(ScoreKind::SofaRise, at_min(3));
        assert_eq!(r.value, 0.0);
        assert_eq!(points(&r, "baseline"), 3.0);
        b.put(Param::Creatinine, 3.6, at_min(30));
        let r = b.score(ScoreKind::SofaRise, at_min(31));
        assert_eq!(r.value, 3.0);
        assert_eq!(points(&r, "sofa"), 6.0);
        assert!(r.missing.is_empty());
    }
}

mod septic {
    use super::*;

    fn setup(lactate: f64, lactate_at: Timestamp, vaso: bool) -> Score {
        let mut b = Bed::new();
        if vaso {
            b.put(Param::Dose(Drug::Norepinephrine), 0.08, at_min(400));
        }
        b.put(Param::MapArt, 63.0, at_min(430))
            .put(Param::MapArt, 70.0, at_min(470));
        b.put(Param::Lactate, lactate, lactate_at);
        b.score(ScoreKind::SepticShock, at_min(480))
    }

    #[test]
    fn lactate_must_exceed_2_within_6_h_with_a_vasopressor_running() {
        assert_eq!(setup(2.0, at_min(300), true).value, 0.0, "2.0 is not > 2");
        let s = setup(2.1, at_min(300), true);
        assert_eq!(s.value, 1.0);
        assert_eq!(comp(&s, "lactate").value, Some(2.1));
        assert_eq!(comp(&s, "map").value, Some(63.0));
        assert_eq!(comp(&s, "vasopressor").value, Some(0.08));
        assert_eq!(comp(&s, "vasopressor").time, Some(at_min(400)));
        assert!(comp(&s, "vasopressor")
            .note
            .as_deref()
            .unwrap()
            .contains("norepinephrine"));
        assert_eq!(setup(7.0, at_min(480 - 7 * 60), true).value, 0.0, "7 h old");
        let s = setup(4.0, at_min(300), false);
        assert_eq!(s.value, 0.0, "no vasopressor");
        assert_eq!(points(&s, "vasopressor"), 0.0);
    }

    #[test]
    fn map_reported_is_the_lowest_in_the_last_hour() {
        let mut b = Bed::new();
        b.put(Param::MapArt, 50.0, at_min(0))
            .put(Param::MapNibp, 64.0, at_min(30));
        b.put(Param::MapArt, 72.0, at_min(80));
        let s = b.score(ScoreKind::SepticShock, at_min(85));
        assert_eq!(comp(&s, "map").value, Some(64.0));
        assert_eq!(points(&s, "map"), 1.0);
        assert!(s.missing.contains(&"lactate".to_string()));
    }

    #[test]
    fn dobutamine_is_not_a_vasopressor() {
        let mut b = Bed::new();
        b.put(Param::Dose(Drug::Dobutamine), 5.0, at_min(0))
            .put(Param::Lactate, 5.0, at_min(0));
        assert_eq!(b.score(ScoreKind::SepticShock, at_min(5)).value, 0.0);
    }
}

mod news2_state {
    use super::*;

    #[test]
    fn oxygen_and_scale_2_change_the_spo2_points() {
        let mut b = Bed::new();
        b.put(Param::SpO2, 95.0, at_min(0));
        let n = b.score(ScoreKind::News2, at_min(1));
        assert_eq!(points(&n, "spo2"), 1.0);
        assert_eq!(points(&n, "air_or_oxygen"), 0.0);
        assert!(n.missing.contains(&"fio2".to_string()));
        b.put(Param::FiO2, 28.0, at_min(1));
        b.st.set_hypercapnic(true);
        let n = b.score(ScoreKind::News2, at_min(2));
        assert_eq!(points(&n, "spo2"), 2.0, "scale 2 on O2: 95 → 2");
        assert_eq!(points(&n, "air_or_oxygen"), 2.0);
        assert_eq!(n.value, 4.0);
        assert!(!news2::any_single_three(&n));
    }

    #[test]
    fn any_single_three_is_visible() {
        let mut b = Bed::new();
        b.put(Param::HeartRate, 135.0, at_min(0))
            .put(Param::Temp, 37.0, at_min(0));
        let n = b.score(ScoreKind::News2, at_min(1));
        assert_eq!(n.value, 3.0);
        assert!(news2::any_single_three(&n));
        assert_eq!(
            comp(&n, news2::MAX_SINGLE).points,
            0.0,
            "not part of the total"
        );
    }

    #[test]
    fn a_gcs_charted_under_sedation_counts_as_15_and_not_after_it_stops() {
        // Sedative infusion running from 0 min; GCS 11 charted at 30 min: scored as 15.
        let mut b = Bed::new();
        b.put(Param::Sedation, 1.0, at_min(0));
        b.put(Param::Gcs, 11.0, at_min(30));
        let n = b.score(ScoreKind::News2, at_min(40));
        assert_eq!(points(&n, "consciousness"), 0.0);
        let q = b.score(ScoreKind::Qsofa, at_min(40));
        assert_eq!(q.value, 0.0);
        // Stopped at 60 min; GCS 11 at 90 min is the brain again.
        b.put(Param::Sedation, 0.0, at_min(60));
        b.put(Param::Gcs, 11.0, at_min(90));
        let n = b.score(ScoreKind::News2, at_min(100));
        assert_eq!(points(&n, "consciousness"), 3.0);
        // A sedative report older than the carry window does not count.
        let mut b = Bed::new();
        b.put(Param::Sedation, 1.0, at_min(0));
        b.put(Param::Gcs, 11.0, at_min(6 * 60 + 1));
        let n = b.score(ScoreKind::News2, at_min(6 * 60 + 5));
        assert_eq!(points(&n, "consciousness"), 3.0);
    }

    #[test]
    fn gcs_maps_to_avpu() {
        let mut b = Bed::new();
        b.put(Param::Gcs, 13.0, at_min(0));
        let n = b.score(ScoreKind::News2, at_min(600));
        assert_eq!(points(&n, "consciousness"), 3.0);
    }
}

mod handling {
    use super::*;

    #[test]
    fn duplicates_and_flagged_readings_are_ignored() {
        let t = tables();
        let mut st = PatientState::new("P1");
        let o = obs("same", Param::SbpNibp, 85.0, at_min(0));
        assert!(st.on_observation(&o, &t));
        assert!(!st.on_observation(&o, &t));
        assert_eq!(st.counts().duplicates, 1);

        let mut bad = obs("flagged", Param::RespRate, 40.0, at_min(1));
        bad.quality = vec![Quality::Artifact];
        assert!(!st.on_observation(&bad, &t));
        assert_eq!(st.flagged_count(), 1);
        let q = st
            .evaluate(at_min(2), &t)
            .into_iter()
            .find(|s| s.kind == ScoreKind::Qsofa)
            .unwrap();
        assert_eq!(q.value, 1.0, "only the SBP counts");
        assert!(q.missing.contains(&"resp_rate".to_string()));
    }

    #[test]
    fn scorer_handles_census_and_observations() {
        let mut sc = Scorer::new(tables());
        assert!(sc
            .handle(&IngestRecord::Census(census(CensusKind::Admit, T0)))
            .is_none());
        assert_eq!(sc.patients(), 1);
        assert_eq!(sc.state("P1").unwrap().anchor(), Some(T0));

        let o = obs("a", Param::HeartRate, 120.0, at_min(5));
        let set = sc.handle(&IngestRecord::Observation(o.clone())).unwrap();
        assert_eq!(set.at, at_min(5));
        assert_eq!(set.bed.as_deref(), Some("3"));
        let kinds: Vec<ScoreKind> = set.scores.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            vec![
                ScoreKind::Qsofa,
                ScoreKind::Sofa,
                ScoreKind::SofaRise,
                ScoreKind::News2,
                ScoreKind::ShockIndex,
                ScoreKind::SepticShock,
                ScoreKind::ShockRisk,
                ScoreKind::SepsisRisk
            ]
        );
        assert!(set
            .get(ScoreKind::ShockIndex)
            .unwrap()
            .missing
            .contains(&"sbp".to_string()));
        assert!(sc.handle(&IngestRecord::Observation(o)).is_none(), "repeat");

        let mut none = obs("b", Param::HeartRate, 80.0, at_min(6));
        none.origin = Arc::new(Origin {
            patient: None,
            ..(*none.origin).clone()
        });
        assert!(sc.handle(&IngestRecord::Observation(none)).is_none());

        let set = sc
            .handle(&IngestRecord::Observation(obs(
                "c",
                Param::SbpArt,
                100.0,
                at_min(7),
            )))
            .unwrap();
        assert_eq!(set.get(ScoreKind::ShockIndex).unwrap().value, 1.2);

        assert!(sc
            .handle(&IngestRecord::Census(census(
                CensusKind::Discharge,
                at_min(10)
            )))
            .is_none());
        assert_eq!(sc.patients(), 0);
    }

    #[test]
    fn idle_patients_are_evicted() {
        let mut sc = Scorer::new(tables());
        sc.handle(&IngestRecord::Observation(obs(
            "a",
            Param::HeartRate,
            80.0,
            at_min(0),
        )));
        assert_eq!(sc.evict_idle(at_min(60), 2 * HOUR_MS), 0);
        assert_eq!(sc.evict_idle(at_min(200), 2 * HOUR_MS), 1);
    }

    #[test]
    fn a_late_admit_re_anchors_the_grid() {
        let t = tables();
        let mut st = PatientState::new("P1");
        st.on_observation(&obs("a", Param::Platelets, 40.0, at_min(30)), &t);
        assert_eq!(st.anchor(), Some(at_min(30)));
        st.on_census(&census(CensusKind::Admit, T0));
        assert_eq!(st.anchor(), Some(T0));
        // 40 at 00:30 is in row 1 of the admit grid; at 24:10 (row 25) rows 2..25 count.
        let s = st.evaluate(at_min(24 * 60 + 10), &t);
        let sofa = s.iter().find(|s| s.kind == ScoreKind::Sofa).unwrap();
        assert!(
            sofa.missing.contains(&"coagulation".to_string()),
            "{sofa:?}"
        );
    }

    #[test]
    fn memory_stays_bounded_over_three_days_of_1_hz_heart_rate() {
        let t = tables();
        let mut st = PatientState::new("P1");
        let mut peak = Footprint::default();
        for i in 0..(3 * 24 * 3600) {
            let ts = T0.plus_ms(i64::from(i) * 1000);
            let o = obs(&format!("hr{i}"), Param::HeartRate, 80.0, ts);
            assert!(st.on_observation(&o, &t));
            if i % 3600 == 0 {
                st.evaluate(ts, &t);
            }
            let f = st.footprint();
            peak.hour_rows = peak.hour_rows.max(f.hour_rows);
            peak.minute_buckets = peak.minute_buckets.max(f.minute_buckets);
            peak.seen_ids = peak.seen_ids.max(f.seen_ids);
            peak.series = peak.series.max(f.series);
        }
        assert_eq!(peak.series, 1);
        assert!(peak.hour_rows <= 26, "{peak:?}");
        assert!(peak.minute_buckets <= 12 + 64 / 60 + 1, "{peak:?}");
        assert!(peak.seen_ids <= 512, "{peak:?}");
    }
}
