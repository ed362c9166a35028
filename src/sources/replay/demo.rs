//! The seeded, deterministic generator of the bundled demo recording (`replay-data/`).
//!
//! Owns the synthetic ICU: who lies in which bed, how each patient's physiology evolves, and
//! how that reaches vigil as raw HL7 from six sources (PCD-01 monitors, ventilators, pumps;
//! ADT; lab; nursing charting), including the artifacts and quirks the normalizer must cope
//! with. The bytes depend only on the parameters: the PRNG is written here (no crate whose
//! upgrade could change a stream), and noise uses only `+ − × ÷` (Irwin–Hall normal), never
//! libm functions whose last bits differ between platforms. The stories are documented in
//! `replay-data/README.md`; keep both in step.

use std::io::{self, Write};
use std::path::Path;

use super::format::{
    RecordedProtocol, RecordedSource, RecordingEntry, RecordingHeader, RecordingWriter,
};
use super::hl7_writer::{escape, num, ts, MessageBuilder};
use super::physionet::{physionet_to_hl7, PhysionetPatient};
use crate::model::{Timestamp, HOUR_MS, MINUTE_MS};

/// The unit every demo bed belongs to (PV1-3 point of care).
pub const UNIT: &str = "ICU-A";
/// The bed that holds the PhysioNet patient when one is given.
pub const PHYSIONET_BED: usize = 4;
/// PCD-01 profile id (MSH-21).
pub const PCD01_PROFILE: &str = "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO";
pub const MDS_MONITOR: &str = "69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC";
pub const MDS_VENT: &str = "70001^MDC_DEV_SYS_PT_VENT_MDS^MDC";
pub const MDS_PUMP: &str = "70049^MDC_DEV_PUMP_INFUS_LVP_MDS^MDC";
/// Attribution written into the header when the PhysioNet bed is included.
pub const PHYSIONET_ATTRIBUTION: &str = "Bed 4 replays one patient of the PhysioNet/Computing in Cardiology Challenge 2019 (Reyna MA et al., Early Prediction of Sepsis From Clinical Data: The PhysioNet/Computing in Cardiology Challenge 2019, Crit Care Med 48(2):210-217 (2020); data set v1.0.0, doi:10.13026/v64v-d857; Goldberger A et al., Circulation 101(23):e215-e220 (2000); Open Access). All other beds are synthetic.";

// ---------------------------------------------------------------------------------------------
// Parameters and sources
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
pub struct DemoParams {
    pub seed: u64,
    /// Beds in the unit; at least 8 are generated.
    pub beds: usize,
    /// Length of the recording; at least 24 h are generated.
    pub hours: u32,
    pub start: Timestamp,
}

impl Default for DemoParams {
    fn default() -> Self {
        DemoParams {
            seed: 2026,
            beds: 10,
            hours: 26,
            // 2026-01-05T00:00:00Z
            start: Timestamp(1_767_571_200_000),
        }
    }
}

/// The names of the recorded sources (all HL7).
#[derive(Clone, Debug, PartialEq)]
pub struct DemoSources {
    pub monitors: String,
    pub ventilators: String,
    pub pumps: String,
    pub adt: String,
    pub lab: String,
    pub charting: String,
}

impl Default for DemoSources {
    fn default() -> Self {
        DemoSources {
            monitors: "monitors".into(),
            ventilators: "ventilators".into(),
            pumps: "pumps".into(),
            adt: "adt".into(),
            lab: "lab".into(),
            charting: "charting".into(),
        }
    }
}

impl DemoSources {
    fn recorded(&self) -> Vec<RecordedSource> {
        [
            &self.monitors,
            &self.ventilators,
            &self.pumps,
            &self.adt,
            &self.lab,
            &self.charting,
        ]
        .into_iter()
        .map(|n| RecordedSource {
            name: n.clone(),
            protocol: RecordedProtocol::Hl7,
            profile: None,
            unit: None,
            bed: None,
        })
        .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// PRNG: splitmix64 seeding xoshiro256**
// ---------------------------------------------------------------------------------------------

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(GOLDEN);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256** with one independent stream per (seed, stream id), so editing one patient's
/// story leaves every other patient's bytes unchanged.
#[derive(Clone, Debug)]
pub struct DemoRng {
    s: [u64; 4],
}

impl DemoRng {
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut sm = seed;
        let base = splitmix64(&mut sm);
        let mut sm = base ^ stream.wrapping_mul(GOLDEN).rotate_left(17);
        let s = [
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
        ];
        DemoRng { s }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal by Irwin–Hall (sum of 12 uniforms − 6): only exact IEEE operations,
    /// so the same on every platform; tails are cut at ±6σ, which noise does not need.
    pub fn normal(&mut self) -> f64 {
        let mut sum = 0.0;
        for _ in 0..12 {
            sum += self.uniform();
        }
        sum - 6.0
    }

    /// Uniform integer in [lo, hi).
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        let span = (hi - lo) as u64;
        lo + (self.next_u64() % span) as i64
    }
}

// ---------------------------------------------------------------------------------------------
// Message builders shared with the PhysioNet converter
// ---------------------------------------------------------------------------------------------

/// Who a message is about, as the hospital systems know it.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    pub mrn: String,
    /// The encounter number (PV1-19); vigil's patient id.
    pub visit: String,
    pub family: String,
    pub given: String,
    /// HL7 date `YYYYMMDD`.
    pub birth: String,
    pub sex: &'static str,
    pub weight_kg: Option<f64>,
}

impl Identity {
    fn pid3(&self) -> String {
        format!("{}^^^HOSP^MR", escape(&self.mrn))
    }
    fn pid5(&self) -> String {
        format!("{}^{}^^^^^L", escape(&self.family), escape(&self.given))
    }
    fn pv1_19(&self) -> String {
        format!("{}^^^HOSP^VN", escape(&self.visit))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdtEvent {
    Admit,
    Transfer,
    Discharge,
}

/// ADT^A01/A02/A03 (v2.5.1). The admit carries the body weight as an OBX.
pub fn adt_message(
    event: AdtEvent,
    t: Timestamp,
    control: &str,
    who: &Identity,
    unit: &str,
    bed: &str,
    prior_bed: Option<&str>,
) -> String {
    let (code, structure) = match event {
        AdtEvent::Admit => ("A01", "ADT_A01"),
        AdtEvent::Transfer => ("A02", "ADT_A02"),
        AdtEvent::Discharge => ("A03", "ADT_A03"),
    };
    let when = ts(t);
    let msg_type = format!("ADT^{code}^{structure}");
    let mut b = MessageBuilder::msh(&[
        "ADT", "HOSP", "VIGIL", unit, &when, "", &msg_type, control, "P", "2.5.1",
    ]);
    b.segment("EVN", &[code, &when]);
    b.segment(
        "PID",
        &[
            "1",
            "",
            &who.pid3(),
            "",
            &who.pid5(),
            "",
            &who.birth,
            who.sex,
        ],
    );
    let location = format!("{unit}^^{bed}");
    let prior = prior_bed
        .map(|p| format!("{unit}^^{p}"))
        .unwrap_or_default();
    let (admit_time, discharge_time) = match event {
        AdtEvent::Admit => (when.clone(), String::new()),
        AdtEvent::Transfer => (String::new(), String::new()),
        AdtEvent::Discharge => (String::new(), when.clone()),
    };
    let visit = who.pv1_19();
    let mut pv1: Vec<&str> = vec![""; 45];
    let fields: [(usize, &str); 7] = [
        (1, "1"),
        (2, "I"),
        (3, &location),
        (6, &prior),
        (19, &visit),
        (44, &admit_time),
        (45, &discharge_time),
    ];
    for (n, v) in fields {
        if let Some(slot) = pv1.get_mut(n - 1) {
            *slot = v;
        }
    }
    b.segment("PV1", &pv1);
    if let (AdtEvent::Admit, Some(kg)) = (event, who.weight_kg) {
        let kg = num(kg, 1);
        b.weight_obx(&kg, &when);
    }
    b.finish()
}

/// A device that speaks PCD-01.
#[derive(Clone, Debug, PartialEq)]
pub struct PcdDevice {
    pub eui64: String,
    pub name: String,
    /// OBR-4 and the MDS row's OBX-3, e.g. [`MDS_MONITOR`].
    pub mds: String,
}

/// One OBX of a PCD-01 message.
#[derive(Clone, Debug, PartialEq)]
pub struct PcdRow {
    pub code: u32,
    pub refid: &'static str,
    pub containment: String,
    pub value_type: &'static str,
    pub value: String,
    pub unit: String,
    pub time: Timestamp,
}

impl PcdRow {
    pub fn nm(
        code: u32,
        refid: &'static str,
        containment: &str,
        value: &str,
        unit: &str,
        time: Timestamp,
    ) -> Self {
        PcdRow {
            code,
            refid,
            containment: containment.into(),
            value_type: "NM",
            value: value.into(),
            unit: unit.into(),
            time,
        }
    }
    pub fn st(
        code: u32,
        refid: &'static str,
        containment: &str,
        text: &str,
        time: Timestamp,
    ) -> Self {
        PcdRow {
            code,
            refid,
            containment: containment.into(),
            value_type: "ST",
            value: escape(text),
            unit: String::new(),
            time,
        }
    }
}

/// An IHE PCD-01 ORU^R01^ORU_R01 (v2.6): MSH, PID (PID-3 empty when `who` is `None`), PV1,
/// OBR, the MDS `X` row, then one `R` row per [`PcdRow`], each with OBX-18 equipment.
#[allow(clippy::too_many_arguments)]
pub fn pcd01_message(
    app: &str,
    control: &str,
    sent: Timestamp,
    who: Option<&Identity>,
    unit: &str,
    bed: &str,
    device: &PcdDevice,
    obs_time: Timestamp,
    rows: &[PcdRow],
) -> String {
    let mut b = MessageBuilder::msh(&[
        app,
        unit,
        "VIGIL",
        "",
        &ts(sent),
        "",
        "ORU^R01^ORU_R01",
        control,
        "P",
        "2.6",
        "",
        "",
        "AL",
        "NE",
        "",
        "UNICODE UTF-8",
        "en^English^ISO639",
        "",
        PCD01_PROFILE,
    ]);
    match who {
        Some(w) => b.segment(
            "PID",
            &["", "", &w.pid3(), "", &w.pid5(), "", &w.birth, w.sex],
        ),
        None => b.segment("PID", &[]),
    };
    b.segment("PV1", &["", "I", &format!("{unit}^^{bed}")]);
    let equipment = format!("{}^{}", device.eui64, escape(&device.name));
    b.segment(
        "OBR",
        &[
            "1",
            "",
            &format!("{control}^{app}"),
            &device.mds,
            "",
            "",
            &ts(obs_time),
        ],
    );
    b.segment(
        "OBX",
        &[
            "1",
            "",
            &device.mds,
            "1.0.0.0",
            "",
            "",
            "",
            "",
            "",
            "",
            "X",
            "",
            "",
            "",
            "",
            "",
            "",
            &equipment,
        ],
    );
    for (i, r) in rows.iter().enumerate() {
        let set_id = (i + 2).to_string();
        let code = format!("{}^{}^MDC", r.code, r.refid);
        let time = ts(r.time);
        b.segment(
            "OBX",
            &[
                &set_id,
                r.value_type,
                &code,
                &r.containment,
                &r.value,
                &r.unit,
                "",
                "",
                "",
                "",
                "R",
                "",
                "",
                &time,
                "",
                "",
                "",
                &equipment,
            ],
        );
    }
    b.finish()
}

#[derive(Clone, Debug, PartialEq)]
pub struct LabResult {
    pub loinc: &'static str,
    pub name: &'static str,
    pub value: String,
    pub unit: &'static str,
}

impl LabResult {
    pub fn new(loinc: &'static str, name: &'static str, value: String, unit: &'static str) -> Self {
        LabResult {
            loinc,
            name,
            value,
            unit,
        }
    }
}

/// One OBR group: an encoded OBR-4 and its results.
#[derive(Clone, Debug, PartialEq)]
pub struct LabPanel {
    pub code: &'static str,
    pub results: Vec<LabResult>,
}

/// A lab ORU^R01 (v2.5.1): PID-3 MRN, PV1-19 visit, one OBR per panel with OBR-7 collection
/// time, OBX-3 LOINC, OBX-6 UCUM, OBX-14 collection time; MSH-7 is when it was resulted.
pub fn lab_message(
    control: &str,
    sent: Timestamp,
    who: &Identity,
    unit: &str,
    bed: &str,
    collected: Timestamp,
    panels: &[LabPanel],
) -> String {
    let sent_ts = ts(sent);
    let coll = ts(collected);
    let mut b = MessageBuilder::msh(&[
        "LIS",
        "HOSP",
        "VIGIL",
        unit,
        &sent_ts,
        "",
        "ORU^R01^ORU_R01",
        control,
        "P",
        "2.5.1",
    ]);
    patient_segments(&mut b, who, unit, bed);
    for (i, p) in panels.iter().enumerate() {
        let set = (i + 1).to_string();
        let placer = format!("{control}-{set}^ICU");
        let filler = format!("{control}-{set}^LIS");
        let mut obr: Vec<&str> = vec![""; 25];
        for (n, v) in [
            (1, set.as_str()),
            (2, &placer),
            (3, &filler),
            (4, p.code),
            (7, &coll),
            (22, &sent_ts),
            (25, "F"),
        ] {
            if let Some(slot) = obr.get_mut(n - 1) {
                *slot = v;
            }
        }
        b.segment("OBR", &obr);
        for (j, r) in p.results.iter().enumerate() {
            let code = format!("{}^{}^LN", r.loinc, escape(r.name));
            b.final_nm_obx(j + 1, &code, &r.value, r.unit, &coll);
        }
    }
    b.finish()
}

fn patient_segments(b: &mut MessageBuilder, who: &Identity, unit: &str, bed: &str) {
    b.segment(
        "PID",
        &[
            "1",
            "",
            &who.pid3(),
            "",
            &who.pid5(),
            "",
            &who.birth,
            who.sex,
        ],
    );
    let location = format!("{unit}^^{bed}");
    let visit = who.pv1_19();
    let mut pv1: Vec<&str> = vec![""; 19];
    for (n, v) in [(1, "1"), (2, "I"), (3, location.as_str()), (19, &visit)] {
        if let Some(slot) = pv1.get_mut(n - 1) {
            *slot = v;
        }
    }
    b.segment("PV1", &pv1);
}

/// Nursing GCS as ORU^R01: total (9269-2) and its eye/verbal/motor parts, unit `{score}`.
fn gcs_message(
    control: &str,
    sent: Timestamp,
    who: &Identity,
    unit: &str,
    bed: &str,
    assessed: Timestamp,
    total: u8,
) -> String {
    let at = ts(assessed);
    let mut b = MessageBuilder::msh(&[
        "CHARTING",
        "HOSP",
        "VIGIL",
        unit,
        &ts(sent),
        "",
        "ORU^R01^ORU_R01",
        control,
        "P",
        "2.5.1",
    ]);
    patient_segments(&mut b, who, unit, bed);
    b.segment(
        "OBR",
        &[
            "1",
            &format!("{control}^CHARTING"),
            "",
            "9269-2^Glasgow coma score total^LN",
            "",
            "",
            &at,
        ],
    );
    let (e, v, m) = gcs_parts(total);
    let rows = [
        ("9269-2^Glasgow coma score total^LN", total),
        ("9267-6^Glasgow coma score eye opening^LN", e),
        ("9270-0^Glasgow coma score verbal^LN", v),
        ("9268-4^Glasgow coma score motor^LN", m),
    ];
    for (i, (code, value)) in rows.iter().enumerate() {
        b.segment(
            "OBX",
            &[
                &(i + 1).to_string(),
                "NM",
                code,
                "",
                &value.to_string(),
                "{score}",
                "",
                "",
                "",
                "",
                "F",
                "",
                "",
                &at,
            ],
        );
    }
    b.finish()
}

/// A plausible eye/verbal/motor split that sums to `total` (3–15).
fn gcs_parts(total: u8) -> (u8, u8, u8) {
    let t = total.clamp(3, 15);
    // Motor is lost last, eyes next, verbal first.
    let m = (t.saturating_sub(2)).clamp(1, 6);
    let rest = t - m;
    let e = rest.saturating_sub(1).clamp(1, 4);
    let v = (rest - e).clamp(1, 5);
    (e, v, m)
}

// ---------------------------------------------------------------------------------------------
// Clinical stories
// ---------------------------------------------------------------------------------------------

/// Piecewise-linear trajectory: (hour since start, value); flat outside the points.
type Kf = Vec<(f64, f64)>;

fn at(kf: &[(f64, f64)], h: f64) -> f64 {
    let Some(&(h0, v0)) = kf.first() else {
        return 0.0;
    };
    if h <= h0 {
        return v0;
    }
    for w in kf.windows(2) {
        if let [(ha, va), (hb, vb)] = w {
            if h <= *hb {
                if hb <= ha {
                    return *vb;
                }
                return va + (vb - va) * (h - ha) / (hb - ha);
            }
        }
    }
    kf.last().map_or(v0, |&(_, v)| v)
}

/// A step function's value: the last step at or before `h` (0 before the first).
fn step(steps: &[(f64, f64)], h: f64) -> f64 {
    steps
        .iter()
        .take_while(|(s, _)| *s <= h + 1e-9)
        .last()
        .map_or(0.0, |&(_, v)| v)
}

fn flat(v: f64) -> Kf {
    vec![(0.0, v)]
}

#[derive(Clone, Debug)]
struct Stay {
    bed: usize,
    from_h: f64,
    to_h: Option<f64>,
}

#[derive(Clone, Debug)]
struct Vent {
    from_h: f64,
    /// FiO2 in %.
    fio2: Kf,
    peep: Kf,
    vt: Kf,
    rate: Kf,
    /// Report FiO2 as a dimensionless fraction (the normalizer must convert).
    fio2_fraction: bool,
}

#[derive(Clone, Debug)]
struct Infusion {
    drug: &'static str,
    conc_mg_ml: f64,
    /// (hour, µg/kg/min) titration steps; the first starts the infusion.
    steps: Kf,
    stop_h: Option<f64>,
    /// `false`: the pump sends flow and concentration only (vigil converts with the weight).
    dose_row: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Artifact {
    /// Arterial line flush: SBP = DBP = MAP ≈ 300.
    Flush,
    /// Damped trace: pulse pressure collapses below 10.
    Damped,
    /// SpO2 probe drop-out with low perfusion index.
    Dropout(i64),
    /// The vendor's sentinel `-999` for SpO2.
    Sentinel,
}

#[derive(Clone, Debug, Default)]
struct LabTrack {
    lactate: Kf,
    platelets: Kf,
    creatinine: Kf,
    bilirubin: Kf,
    wbc: Kf,
    pao2: Kf,
    paco2: Kf,
    ph: Kf,
}

#[derive(Clone, Debug)]
struct Story {
    /// RNG stream and message-id tag.
    key: u64,
    who: Identity,
    stays: Vec<Stay>,
    discharged: bool,
    hr: Kf,
    sbp: Kf,
    dbp: Kf,
    rr: Kf,
    spo2: Kf,
    temp: Kf,
    pi: Kf,
    art_line: Option<(f64, f64)>,
    vent: Option<Vent>,
    infusions: Vec<Infusion>,
    labs: LabTrack,
    /// Explicit early draws, then every `lab_every` h from `lab_from`.
    lab_fixed: Vec<f64>,
    lab_from: f64,
    lab_every: f64,
    /// Index of the draw whose creatinine is reported in µmol/L (14682-9).
    creat_umol_draw: Option<usize>,
    /// Index of the draw whose bilirubin is reported in µmol/L (14631-6).
    bili_umol_draw: Option<usize>,
    gcs: Kf,
    /// GCS charted every 4 h, hourly from this hour on.
    gcs_hourly_from: Option<f64>,
    artifacts: Vec<(i64, Artifact)>,
    duplicate_minute: Option<i64>,
    malformed_minute: Option<i64>,
}

impl Story {
    fn bed_at(&self, h: f64) -> Option<usize> {
        self.stays
            .iter()
            .find(|s| h >= s.from_h && s.to_h.is_none_or(|e| h < e))
            .map(|s| s.bed)
    }
    fn admit_h(&self) -> f64 {
        self.stays.first().map_or(0.0, |s| s.from_h)
    }
    fn ventilated(&self, h: f64) -> bool {
        self.vent.as_ref().is_some_and(|v| h >= v.from_h)
    }
    fn art_line(&self, h: f64) -> bool {
        self.art_line.is_some_and(|(a, b)| h >= a && h < b)
    }
    fn lab_times(&self, hours: f64) -> Vec<f64> {
        let mut out: Vec<f64> = self
            .lab_fixed
            .iter()
            .copied()
            .filter(|h| *h < hours)
            .collect();
        let mut t = self.lab_from;
        while self.lab_every > 0.0 && t < hours {
            out.push(t);
            t += self.lab_every;
        }
        out
    }
}

/// Base for a stable patient; stories override what differs.
#[allow(clippy::too_many_arguments)]
fn base_story(
    key: u64,
    n: usize,
    birth: &str,
    sex: &'static str,
    kg: f64,
    bed: usize,
    admit_h: f64,
    vitals: (f64, f64, f64, f64, f64, f64),
) -> Story {
    let (hr, sbp, dbp, rr, spo2, temp) = vitals;
    Story {
        key,
        who: Identity {
            mrn: format!("MRN{:06}", 400_100 + n),
            visit: format!("V26{:05}", 100 + n),
            family: "Demo".into(),
            given: format!("Patient{n:02}"),
            birth: birth.into(),
            sex,
            weight_kg: Some(kg),
        },
        stays: vec![Stay {
            bed,
            from_h: admit_h,
            to_h: None,
        }],
        discharged: false,
        hr: flat(hr),
        sbp: flat(sbp),
        dbp: flat(dbp),
        rr: flat(rr),
        spo2: flat(spo2),
        temp: flat(temp),
        pi: flat(2.5),
        art_line: None,
        vent: None,
        infusions: Vec::new(),
        labs: LabTrack {
            lactate: flat(1.1),
            platelets: flat(230.0),
            creatinine: flat(0.9),
            bilirubin: flat(0.6),
            wbc: flat(8.5),
            pao2: flat(95.0),
            paco2: flat(40.0),
            ph: flat(7.40),
        },
        lab_fixed: vec![admit_h + 0.75],
        lab_from: admit_h + 8.75,
        lab_every: 8.0,
        creat_umol_draw: None,
        bili_umol_draw: None,
        gcs: flat(15.0),
        gcs_hourly_from: None,
        artifacts: Vec::new(),
        duplicate_minute: None,
        malformed_minute: None,
    }
}

fn kf(points: &[(f64, f64)]) -> Kf {
    points.to_vec()
}

/// The unit's patients. Bed numbers above `beds` drop the patients that need them.
fn stories(beds: usize, with_physionet_bed: bool) -> Vec<Story> {
    let mut out = Vec::new();

    // Bed 1: post-op (hemicolectomy) with mild tachycardia and an arterial line; stable.
    let mut s = base_story(
        1,
        1,
        "19560314",
        "M",
        84.0,
        1,
        0.0,
        (104.0, 124.0, 66.0, 18.0, 96.0, 37.6),
    );
    s.hr = kf(&[(0.0, 106.0), (12.0, 101.0), (26.0, 96.0)]);
    s.temp = kf(&[(0.0, 37.7), (26.0, 37.3)]);
    s.art_line = Some((0.0, f64::INFINITY));
    s.labs.lactate = kf(&[(0.0, 1.9), (9.0, 1.4), (26.0, 1.1)]);
    s.labs.platelets = flat(190.0);
    s.labs.creatinine = flat(1.0);
    s.labs.bilirubin = flat(0.8);
    s.labs.wbc = flat(12.0);
    s.artifacts = vec![(137, Artifact::Flush)];
    s.duplicate_minute = Some(400);
    out.push(s);

    // Bed 2: COPD exacerbation, SpO2 88–92 % (hypercapnic), NIBP only; stable.
    let mut s = base_story(
        2,
        2,
        "19490902",
        "F",
        61.0,
        2,
        0.0,
        (96.0, 138.0, 78.0, 22.0, 90.0, 37.0),
    );
    s.pi = flat(1.6);
    s.labs.lactate = flat(1.0);
    s.labs.platelets = flat(260.0);
    s.labs.creatinine = flat(0.8);
    s.labs.bilirubin = flat(0.5);
    s.labs.wbc = flat(9.0);
    s.lab_from = 12.75;
    s.lab_every = 12.0;
    s.artifacts = vec![(330, Artifact::Dropout(52)), (331, Artifact::Dropout(44))];
    s.malformed_minute = Some(600);
    out.push(s);

    // Bed 3: septic shock from ~6 h (pneumonia/urosepsis); norepinephrine from 10 h.
    let mut s = base_story(
        3,
        3,
        "19610527",
        "M",
        78.0,
        3,
        0.0,
        (88.0, 128.0, 72.0, 16.0, 97.0, 37.2),
    );
    s.hr = kf(&[
        (0.0, 88.0),
        (6.0, 92.0),
        (8.0, 112.0),
        (10.0, 124.0),
        (12.0, 132.0),
        (16.0, 128.0),
        (20.0, 118.0),
        (26.0, 110.0),
    ]);
    s.sbp = kf(&[
        (0.0, 128.0),
        (6.0, 122.0),
        (8.0, 104.0),
        (9.5, 88.0),
        (10.0, 84.0),
        (10.5, 92.0),
        (12.0, 100.0),
        (16.0, 104.0),
        (26.0, 108.0),
    ]);
    s.dbp = kf(&[
        (0.0, 72.0),
        (6.0, 68.0),
        (8.0, 56.0),
        (9.5, 46.0),
        (10.0, 44.0),
        (10.5, 50.0),
        (12.0, 54.0),
        (26.0, 58.0),
    ]);
    s.rr = kf(&[
        (0.0, 16.0),
        (6.0, 18.0),
        (9.0, 26.0),
        (12.0, 29.0),
        (18.0, 26.0),
        (26.0, 24.0),
    ]);
    s.spo2 = kf(&[
        (0.0, 97.0),
        (6.0, 96.0),
        (10.0, 92.0),
        (14.0, 91.0),
        (20.0, 93.0),
        (26.0, 94.0),
    ]);
    s.temp = kf(&[
        (0.0, 37.2),
        (6.0, 37.8),
        (9.0, 38.9),
        (12.0, 39.5),
        (15.0, 39.2),
        (20.0, 38.6),
        (26.0, 38.1),
    ]);
    s.pi = kf(&[(0.0, 2.2), (8.0, 1.2), (12.0, 0.8), (20.0, 1.0)]);
    s.art_line = Some((9.5, f64::INFINITY));
    s.infusions = vec![Infusion {
        drug: "Norepinephrine",
        conc_mg_ml: 0.064,
        steps: kf(&[
            (10.0, 0.05),
            (10.5, 0.1),
            (11.5, 0.15),
            (12.5, 0.2),
            (14.0, 0.25),
            (16.0, 0.3),
            (19.0, 0.25),
            (21.0, 0.2),
            (23.0, 0.15),
        ]),
        stop_h: None,
        dose_row: true,
    }];
    s.labs.lactate = kf(&[
        (0.0, 1.6),
        (6.0, 1.8),
        (9.0, 2.7),
        (12.0, 3.8),
        (14.0, 4.5),
        (18.0, 3.6),
        (22.0, 3.0),
        (26.0, 2.6),
    ]);
    s.labs.platelets = kf(&[
        (0.0, 210.0),
        (6.0, 200.0),
        (12.0, 140.0),
        (18.0, 100.0),
        (24.0, 85.0),
    ]);
    s.labs.creatinine = kf(&[
        (0.0, 0.9),
        (6.0, 1.0),
        (12.0, 1.6),
        (18.0, 2.1),
        (24.0, 2.4),
    ]);
    s.labs.bilirubin = kf(&[
        (0.0, 0.7),
        (6.0, 0.8),
        (12.0, 1.4),
        (18.0, 2.0),
        (24.0, 2.3),
    ]);
    s.labs.wbc = kf(&[(0.0, 11.0), (6.0, 13.0), (12.0, 18.5), (24.0, 21.0)]);
    s.lab_fixed = vec![0.75, 6.5, 9.0];
    s.lab_from = 12.0;
    s.lab_every = 3.0;
    // The 15 h draw's creatinine comes back in µmol/L.
    s.creat_umol_draw = Some(4);
    s.gcs = kf(&[
        (0.0, 15.0),
        (8.0, 15.0),
        (10.0, 14.0),
        (12.0, 13.0),
        (20.0, 13.0),
        (24.0, 14.0),
    ]);
    s.gcs_hourly_from = Some(6.0);
    s.artifacts = vec![
        (665, Artifact::Dropout(58)),
        (790, Artifact::Damped),
        (791, Artifact::Damped),
    ];
    out.push(s);

    // Bed 4: without the PhysioNet patient, a stable elective post-op patient.
    if !with_physionet_bed {
        let s = base_story(
            4,
            4,
            "19700111",
            "F",
            70.0,
            4,
            0.0,
            (78.0, 122.0, 70.0, 15.0, 97.0, 36.9),
        );
        out.push(s);
    }

    // Bed 5: chronic thrombocytopenia (~110), otherwise stable; monitor sends no PID-3.
    let mut s = base_story(
        5,
        5,
        "19580730",
        "M",
        92.0,
        5,
        0.0,
        (78.0, 118.0, 64.0, 15.0, 97.0, 36.8),
    );
    s.pi = flat(3.1);
    s.labs.platelets = flat(110.0);
    s.labs.creatinine = flat(1.1);
    s.labs.bilirubin = flat(1.0);
    s.artifacts = vec![(850, Artifact::Sentinel)];
    out.push(s);

    // Bed 6: hypoxaemic respiratory failure, intubated at 3 h; post-induction hypotension
    // treated with low-dose norepinephrine for 90 min; lactate stays normal (near-miss).
    let mut s = base_story(
        6,
        6,
        "19670219",
        "F",
        66.0,
        6,
        0.0,
        (104.0, 132.0, 74.0, 28.0, 89.0, 37.3),
    );
    s.hr = kf(&[
        (0.0, 104.0),
        (3.0, 112.0),
        (3.2, 96.0),
        (4.0, 92.0),
        (8.0, 86.0),
        (26.0, 82.0),
    ]);
    s.sbp = kf(&[
        (0.0, 132.0),
        (3.0, 138.0),
        (3.1, 92.0),
        (3.3, 86.0),
        (3.5, 94.0),
        (4.0, 104.0),
        (5.0, 114.0),
        (26.0, 118.0),
    ]);
    s.dbp = kf(&[
        (0.0, 74.0),
        (3.0, 78.0),
        (3.1, 50.0),
        (3.3, 46.0),
        (3.5, 52.0),
        (4.0, 58.0),
        (5.0, 64.0),
        (26.0, 66.0),
    ]);
    s.rr = kf(&[(0.0, 28.0), (3.0, 30.0), (3.05, 16.0), (26.0, 16.0)]);
    s.spo2 = kf(&[(0.0, 89.0), (3.0, 88.0), (3.1, 95.0), (26.0, 96.0)]);
    s.art_line = Some((3.15, f64::INFINITY));
    s.vent = Some(Vent {
        from_h: 3.0,
        fio2: kf(&[(3.0, 60.0), (6.0, 45.0), (12.0, 40.0), (26.0, 35.0)]),
        peep: kf(&[(3.0, 10.0), (12.0, 8.0)]),
        vt: flat(400.0),
        rate: flat(16.0),
        fio2_fraction: true,
    });
    s.infusions = vec![Infusion {
        drug: "Norepinephrine",
        conc_mg_ml: 0.032,
        steps: kf(&[(3.33, 0.05), (3.67, 0.08), (4.33, 0.04)]),
        stop_h: Some(4.83),
        dose_row: true,
    }];
    s.labs.lactate = kf(&[(0.0, 1.3), (3.5, 1.4), (10.0, 1.1)]);
    s.labs.pao2 = kf(&[(0.0, 58.0), (3.5, 96.0), (9.5, 108.0), (26.0, 112.0)]);
    s.labs.paco2 = kf(&[(0.0, 36.0), (3.5, 44.0), (26.0, 41.0)]);
    s.labs.ph = kf(&[(0.0, 7.44), (3.5, 7.36), (26.0, 7.40)]);
    s.lab_fixed = vec![0.75, 3.5];
    s.lab_from = 9.5;
    s.lab_every = 6.0;
    s.gcs = kf(&[(0.0, 15.0), (3.0, 15.0), (3.1, 11.0), (26.0, 11.0)]);
    out.push(s);

    // Bed 7: pneumonia on the ventilator from the start; septic shock from ~14 h, worsening
    // P/F; norepinephrine from 17 h on a pump that sends only flow and concentration.
    let mut s = base_story(
        7,
        7,
        "19530108",
        "M",
        88.0,
        7,
        0.0,
        (84.0, 122.0, 66.0, 16.0, 96.0, 37.6),
    );
    s.hr = kf(&[
        (0.0, 84.0),
        (12.0, 90.0),
        (14.0, 98.0),
        (16.0, 118.0),
        (18.0, 128.0),
        (22.0, 124.0),
        (26.0, 116.0),
    ]);
    s.sbp = kf(&[
        (0.0, 122.0),
        (14.0, 116.0),
        (16.0, 98.0),
        (17.0, 86.0),
        (17.5, 92.0),
        (19.0, 102.0),
        (26.0, 106.0),
    ]);
    s.dbp = kf(&[
        (0.0, 66.0),
        (14.0, 62.0),
        (16.0, 52.0),
        (17.0, 45.0),
        (17.5, 50.0),
        (19.0, 55.0),
        (26.0, 56.0),
    ]);
    s.rr = kf(&[(0.0, 16.0), (14.0, 20.0), (18.0, 24.0)]);
    s.spo2 = kf(&[
        (0.0, 96.0),
        (14.0, 95.0),
        (18.0, 91.0),
        (22.0, 90.0),
        (26.0, 92.0),
    ]);
    s.temp = kf(&[
        (0.0, 37.6),
        (14.0, 38.2),
        (16.0, 39.0),
        (19.0, 39.4),
        (23.0, 38.8),
        (26.0, 38.5),
    ]);
    s.pi = kf(&[(0.0, 2.0), (14.0, 1.6), (18.0, 0.9)]);
    s.art_line = Some((0.0, f64::INFINITY));
    s.vent = Some(Vent {
        from_h: 0.0,
        fio2: kf(&[
            (0.0, 40.0),
            (12.0, 40.0),
            (15.0, 50.0),
            (18.0, 60.0),
            (22.0, 70.0),
            (26.0, 65.0),
        ]),
        peep: kf(&[(0.0, 8.0), (15.0, 10.0), (18.0, 12.0)]),
        vt: kf(&[(0.0, 450.0), (18.0, 420.0)]),
        rate: kf(&[(0.0, 16.0), (14.0, 20.0), (18.0, 24.0)]),
        fio2_fraction: false,
    });
    s.infusions = vec![
        Infusion {
            drug: "Propofol",
            conc_mg_ml: 10.0,
            steps: kf(&[(0.0, 30.0), (18.0, 25.0)]),
            stop_h: None,
            dose_row: true,
        },
        Infusion {
            drug: "Norepinephrine",
            conc_mg_ml: 0.064,
            steps: kf(&[
                (17.0, 0.05),
                (17.5, 0.1),
                (18.5, 0.18),
                (20.0, 0.22),
                (23.0, 0.18),
            ]),
            stop_h: None,
            dose_row: false,
        },
    ];
    s.labs.lactate = kf(&[
        (0.0, 1.2),
        (14.0, 1.5),
        (16.0, 2.6),
        (18.0, 3.8),
        (20.0, 4.2),
        (24.0, 3.4),
        (26.0, 3.0),
    ]);
    s.labs.platelets = kf(&[(0.0, 240.0), (14.0, 220.0), (20.0, 150.0), (26.0, 110.0)]);
    s.labs.creatinine = kf(&[(0.0, 1.0), (14.0, 1.1), (20.0, 1.9), (26.0, 2.3)]);
    s.labs.bilirubin = kf(&[(0.0, 0.6), (14.0, 0.7), (20.0, 1.5), (26.0, 2.0)]);
    s.labs.wbc = kf(&[(0.0, 13.0), (14.0, 14.0), (20.0, 19.0)]);
    s.labs.pao2 = kf(&[
        (0.0, 110.0),
        (12.0, 100.0),
        (18.0, 90.0),
        (22.0, 78.0),
        (26.0, 80.0),
    ]);
    s.labs.paco2 = kf(&[(0.0, 42.0), (18.0, 48.0)]);
    s.labs.ph = kf(&[(0.0, 7.38), (16.0, 7.31), (20.0, 7.26), (26.0, 7.29)]);
    s.lab_fixed = vec![1.0, 8.0];
    s.lab_from = 13.0;
    s.lab_every = 3.0;
    // The 19 h draw's bilirubin comes back in µmol/L.
    s.bili_umol_draw = Some(4);
    s.gcs = kf(&[(0.0, 11.0), (16.0, 11.0), (18.0, 9.0)]);
    s.gcs_hourly_from = Some(14.0);
    s.artifacts = vec![(580, Artifact::Flush), (1230, Artifact::Damped)];
    out.push(s);

    // Bed 8: GI bleed under observation, discharged at 20 h; the bed is re-admitted at 21.5 h.
    let mut s = base_story(
        8,
        8,
        "19750403",
        "F",
        58.0,
        8,
        0.0,
        (88.0, 112.0, 62.0, 16.0, 98.0, 36.7),
    );
    s.stays = vec![Stay {
        bed: 8,
        from_h: 0.0,
        to_h: Some(20.0),
    }];
    s.discharged = true;
    s.labs.platelets = flat(205.0);
    out.push(s);
    let mut s = base_story(
        11,
        11,
        "19820918",
        "M",
        95.0,
        8,
        21.5,
        (76.0, 134.0, 76.0, 14.0, 97.0, 36.9),
    );
    s.lab_from = 29.5;
    out.push(s);

    // Bed 10 → 9: a stable stroke patient transferred at 8 h (bed 9's monitor sends no PID-3);
    // bed 10 then takes a mid-recording admission at 12 h (DKA, lactate 2.4 with no
    // vasopressor: not shock).
    if beds >= 10 {
        let mut s = base_story(
            10,
            10,
            "19440621",
            "M",
            74.0,
            10,
            0.0,
            (70.0, 146.0, 82.0, 14.0, 97.0, 36.6),
        );
        s.stays = vec![
            Stay {
                bed: 10,
                from_h: 0.0,
                to_h: Some(8.0),
            },
            Stay {
                bed: 9,
                from_h: 8.0,
                to_h: None,
            },
        ];
        s.gcs = flat(14.0);
        out.push(s);
        let mut s = base_story(
            12,
            12,
            "19990212",
            "F",
            55.0,
            10,
            12.0,
            (102.0, 118.0, 68.0, 22.0, 98.0, 36.9),
        );
        s.hr = kf(&[(12.0, 104.0), (20.0, 88.0)]);
        s.rr = kf(&[(12.0, 24.0), (20.0, 16.0)]);
        s.labs.lactate = kf(&[(12.0, 2.4), (20.0, 1.2)]);
        s.labs.wbc = flat(14.0);
        s.lab_from = 16.75;
        s.lab_every = 6.0;
        out.push(s);
    }

    // Beds beyond 10: stable patients with seeded variety.
    for bed in 11..=beds {
        let k = bed as u64;
        let v = (bed % 5) as f64;
        let s = base_story(
            100 + k,
            bed + 100,
            "19650101",
            if bed % 2 == 0 { "F" } else { "M" },
            60.0 + 4.0 * v,
            bed,
            0.0,
            (
                72.0 + 3.0 * v,
                116.0 + 4.0 * v,
                64.0 + 2.0 * v,
                14.0 + v,
                96.0 + v * 0.5,
                36.7,
            ),
        );
        out.push(s);
    }
    out.retain(|s| s.stays.iter().all(|st| st.bed <= beds));
    out
}

/// Per-bed monitor quirks (the device belongs to the bed, not the patient).
#[derive(Clone, Debug)]
struct BedDevice {
    bed: usize,
    ucum: bool,
    fahrenheit: bool,
    empty_pid: bool,
    perfusion: bool,
    clock_ms: i64,
    phase_ms: i64,
}

fn bed_devices(seed: u64, beds: usize) -> Vec<BedDevice> {
    (1..=beds)
        .map(|bed| {
            let mut rng = DemoRng::new(seed, 10_000 + bed as u64);
            let skew = rng.range(-4_000, 4_001);
            BedDevice {
                bed,
                ucum: bed == 2,
                fahrenheit: bed == 8,
                empty_pid: bed == 5 || bed == 9,
                perfusion: matches!(bed, 2 | 3 | 5 | 7) || bed > 10,
                // Bed 1's monitor clock runs 90 s ahead.
                clock_ms: if bed == 1 { 90_000 + skew / 4 } else { skew },
                phase_ms: (bed as i64 * 4_700) % 55_000 + rng.range(0, 400),
            }
        })
        .collect()
}

fn bed_name(bed: usize) -> String {
    format!("BED{bed:02}")
}

fn eui(kind: u8, bed: usize) -> String {
    format!("0050C2FFFE{kind:02X}{bed:04X}")
}

// ---------------------------------------------------------------------------------------------
// Generation
// ---------------------------------------------------------------------------------------------

/// Units per parameter for MDC- and UCUM-speaking monitors.
struct Units {
    bpm: &'static str,
    resp: &'static str,
    pct: &'static str,
    mmhg: &'static str,
    cel: &'static str,
}

const MDC_UNITS: Units = Units {
    bpm: "264864^MDC_DIM_BEAT_PER_MIN^MDC",
    resp: "264928^MDC_DIM_RESP_PER_MIN^MDC",
    pct: "262688^MDC_DIM_PERCENT^MDC",
    mmhg: "266016^MDC_DIM_MMHG^MDC",
    cel: "268192^MDC_DIM_DEGC^MDC",
};
const UCUM_UNITS: Units = Units {
    bpm: "/min^/min^UCUM",
    resp: "/min^/min^UCUM",
    pct: "%^%^UCUM",
    mmhg: "mm[Hg]^mm[Hg]^UCUM",
    cel: "Cel^Cel^UCUM",
};
const UNIT_FAHR: &str = "266560^MDC_DIM_FAHR^MDC^[degF]^[degF]^UCUM";

/// Slowly wandering offsets (AR(1)) that make a trajectory look alive.
#[derive(Default)]
struct Drift {
    hr: f64,
    sbp: f64,
    dbp: f64,
    rr: f64,
    spo2: f64,
    temp: f64,
    pi: f64,
}

impl Drift {
    fn advance(&mut self, rng: &mut DemoRng) {
        self.hr = 0.97 * self.hr + 0.8 * rng.normal();
        self.sbp = 0.97 * self.sbp + 1.2 * rng.normal();
        self.dbp = 0.97 * self.dbp + 0.8 * rng.normal();
        self.rr = 0.95 * self.rr + 0.4 * rng.normal();
        self.spo2 = 0.95 * self.spo2 + 0.25 * rng.normal();
        self.temp = 0.99 * self.temp + 0.01 * rng.normal();
        self.pi = 0.95 * self.pi + 0.05 * rng.normal();
    }
}

struct Gen<'a> {
    p: &'a DemoParams,
    src: &'a DemoSources,
    end_h: f64,
    out: Vec<RecordingEntry>,
}

impl Gen<'_> {
    fn t(&self, h: f64) -> Timestamp {
        self.p.start.plus_ms((h * HOUR_MS as f64).round() as i64)
    }
    fn t_min(&self, minute: i64) -> Timestamp {
        self.p.start.plus_ms(minute * MINUTE_MS)
    }
    fn push(&mut self, t: Timestamp, source: &str, text: String) {
        self.out.push(RecordingEntry::text(t, source, text));
    }
}

/// Generates the demo unit. Entries are sorted by arrival; equal times keep generation order.
pub fn generate_demo(
    params: &DemoParams,
    physionet_bed: Option<&PhysionetPatient>,
) -> (RecordingHeader, Vec<RecordingEntry>) {
    let beds = params.beds.max(8);
    let hours = params.hours.max(24);
    let sources = DemoSources::default();
    let mut g = Gen {
        p: params,
        src: &sources,
        end_h: f64::from(hours),
        out: Vec::new(),
    };
    let devices = bed_devices(params.seed, beds);
    let mut all = stories(beds, physionet_bed.is_some());
    for s in &mut all {
        // Patients present at the start are admitted in the first minutes, bed by bed; their
        // devices start sending after the admit.
        if let Some(first) = s.stays.first_mut() {
            if first.from_h <= 0.0 {
                first.from_h = initial_admit_ms(first.bed) as f64 / HOUR_MS as f64;
            }
        }
    }
    for s in &all {
        emit_story(&mut g, s, &devices);
    }
    if let Some(p) = physionet_bed {
        let admit = params.start.plus_ms(initial_admit_ms(PHYSIONET_BED));
        let end = params.start.plus_ms(i64::from(hours) * HOUR_MS);
        let entries = physionet_to_hl7(p, &bed_name(PHYSIONET_BED), UNIT, admit, &sources);
        g.out.extend(entries.into_iter().filter(|e| e.t < end));
    }
    let mut entries = g.out;
    entries.sort_by_key(|e| e.t);

    let mut header = RecordingHeader::new(
        format!(
            "vigil demo ICU: {beds} beds, {hours} h from {}, seed {}; synthetic patients, two develop septic shock (beds 3 and 7). Regenerate with `vigil recording demo --seed {}`.",
            params.start, params.seed, params.seed
        ),
        sources.recorded(),
    );
    if physionet_bed.is_some() {
        header.attribution = Some(PHYSIONET_ATTRIBUTION.into());
    }
    (header, entries)
}

/// Offset from the start of the ADT admit of a patient present at the start.
fn initial_admit_ms(bed: usize) -> i64 {
    20_000 + 25_000 * (bed as i64 - 1)
}

fn emit_story(g: &mut Gen<'_>, s: &Story, devices: &[BedDevice]) {
    let mut rng = DemoRng::new(g.p.seed, s.key);
    let tag = format!("P{:03}", s.key);
    emit_adt(g, s);
    emit_monitor(g, s, devices, &tag, &mut rng);
    emit_vent(g, s, &tag, &mut DemoRng::new(g.p.seed, 1_000 + s.key));
    emit_pumps(g, s, &tag, &mut DemoRng::new(g.p.seed, 2_000 + s.key));
    emit_labs(g, s, &tag, &mut DemoRng::new(g.p.seed, 3_000 + s.key));
    emit_gcs(g, s, &tag, &mut DemoRng::new(g.p.seed, 4_000 + s.key));
}

fn emit_adt(g: &mut Gen<'_>, s: &Story) {
    let Some(first) = s.stays.first() else {
        return;
    };
    let admit_t = g.t(first.from_h);
    let unit = UNIT;
    let msg = adt_message(
        AdtEvent::Admit,
        admit_t,
        &format!("ADT{:03}01", s.key),
        &s.who,
        unit,
        &bed_name(first.bed),
        None,
    );
    g.push(admit_t, &g.src.adt.clone(), msg);
    for (i, pair) in s.stays.windows(2).enumerate() {
        if let [a, b] = pair {
            if b.from_h >= g.end_h {
                continue;
            }
            let t = g.t(b.from_h);
            let msg = adt_message(
                AdtEvent::Transfer,
                t,
                &format!("ADT{:03}{:02}", s.key, i + 2),
                &s.who,
                unit,
                &bed_name(b.bed),
                Some(&bed_name(a.bed)),
            );
            g.push(t, &g.src.adt.clone(), msg);
        }
    }
    if s.discharged {
        if let Some(last) = s.stays.last() {
            if let Some(to) = last.to_h.filter(|h| *h < g.end_h) {
                let t = g.t(to);
                let msg = adt_message(
                    AdtEvent::Discharge,
                    t,
                    &format!("ADT{:03}99", s.key),
                    &s.who,
                    unit,
                    &bed_name(last.bed),
                    None,
                );
                g.push(t, &g.src.adt.clone(), msg);
            }
        }
    }
}

fn emit_monitor(g: &mut Gen<'_>, s: &Story, devices: &[BedDevice], tag: &str, rng: &mut DemoRng) {
    let mut drift = Drift::default();
    let first_min = (s.admit_h() * 60.0).floor() as i64 + 1;
    let end_min = (g.end_h * 60.0) as i64;
    let nibp_phase = rng.range(0, 15);
    let temp_phase = rng.range(0, 60);
    let mut count = 0u32;
    for minute in first_min..end_min {
        let h = minute as f64 / 60.0;
        // Draw every minute in a fixed order so later edits do not shift the stream.
        drift.advance(rng);
        let n: [f64; 10] = std::array::from_fn(|_| rng.normal());
        let jitter = rng.range(0, 600);
        let Some(bed) = s.bed_at(h) else {
            continue;
        };
        let Some(dev) = devices.iter().find(|d| d.bed == bed) else {
            continue;
        };
        let units = if dev.ucum { &UCUM_UNITS } else { &MDC_UNITS };
        let arrive = g.t_min(minute).plus_ms(dev.phase_ms + jitter);
        let obs = g.t_min(minute).plus_ms(dev.phase_ms - 1_000 + dev.clock_ms);

        let hr = (at(&s.hr, h) + drift.hr + 1.5 * n[0])
            .round()
            .clamp(30.0, 220.0);
        let sbp_true = at(&s.sbp, h) + drift.sbp;
        let dbp_true = at(&s.dbp, h) + drift.dbp;
        let rr = (at(&s.rr, h) + drift.rr + 0.8 * n[1])
            .round()
            .clamp(4.0, 60.0);
        let mut spo2 = (at(&s.spo2, h) + drift.spo2 + 0.6 * n[2])
            .round()
            .clamp(70.0, 100.0);
        let mut pi = (at(&s.pi, h) + drift.pi + 0.1 * n[3]).clamp(0.3, 10.0);
        let artifact = s
            .artifacts
            .iter()
            .find(|(m, _)| *m == minute)
            .map(|(_, a)| *a);

        let mut rows = vec![PcdRow::nm(
            147842,
            "MDC_ECG_HEART_RATE",
            "1.1.1.1",
            &num(hr, 0),
            units.bpm,
            obs,
        )];
        rows.push(PcdRow::nm(
            151562,
            "MDC_RESP_RATE",
            "1.1.1.2",
            &num(rr, 0),
            units.resp,
            obs,
        ));
        let mut spo2_text = num(spo2, 0);
        match artifact {
            Some(Artifact::Dropout(v)) => {
                spo2 = v as f64;
                spo2_text = num(spo2, 0);
                pi = 0.1 + 0.1 * n[4].abs().min(1.0);
            }
            Some(Artifact::Sentinel) => {
                spo2_text = "-999".into();
                pi = 0.0;
            }
            _ => {}
        }
        rows.push(PcdRow::nm(
            150456,
            "MDC_PULS_OXIM_SAT_O2",
            "1.2.1.1",
            &spo2_text,
            units.pct,
            obs,
        ));
        if dev.perfusion {
            rows.push(PcdRow::nm(
                150448,
                "MDC_PULS_OXIM_PERF_REL",
                "1.2.1.2",
                &num(pi, 1),
                units.pct,
                obs,
            ));
        }
        let art = s.art_line(h);
        let nibp_every = if art { 60 } else { 15 };
        if (minute + nibp_phase) % nibp_every == 0 {
            let t_cuff = obs.minus_ms(35_000);
            let sys = (sbp_true + 4.0 * n[5]).round();
            let dia = (dbp_true + 3.0 * n[6]).round();
            let mean = ((sbp_true + 2.0 * dbp_true) / 3.0 + 2.0 * n[7]).round();
            rows.push(PcdRow::nm(
                150021,
                "MDC_PRESS_BLD_NONINV_SYS",
                "1.3.1.1",
                &num(sys, 0),
                units.mmhg,
                t_cuff,
            ));
            rows.push(PcdRow::nm(
                150022,
                "MDC_PRESS_BLD_NONINV_DIA",
                "1.3.1.2",
                &num(dia, 0),
                units.mmhg,
                t_cuff,
            ));
            rows.push(PcdRow::nm(
                150023,
                "MDC_PRESS_BLD_NONINV_MEAN",
                "1.3.1.3",
                &num(mean, 0),
                units.mmhg,
                t_cuff,
            ));
        }
        if art {
            let (sys, dia, mean) = match artifact {
                Some(Artifact::Flush) => {
                    let v = (300.0 + n[8]).round();
                    (v, v, v)
                }
                Some(Artifact::Damped) => {
                    let m = ((sbp_true + 2.0 * dbp_true) / 3.0).round();
                    (m + 3.0, m - 3.0, m)
                }
                _ => (
                    (sbp_true + 2.0 * n[5]).round(),
                    (dbp_true + 1.5 * n[6]).round(),
                    ((sbp_true + 2.0 * dbp_true) / 3.0 + n[7]).round(),
                ),
            };
            rows.push(PcdRow::nm(
                150033,
                "MDC_PRESS_BLD_ART_SYS",
                "1.4.1.1",
                &num(sys, 0),
                units.mmhg,
                obs,
            ));
            rows.push(PcdRow::nm(
                150034,
                "MDC_PRESS_BLD_ART_DIA",
                "1.4.1.2",
                &num(dia, 0),
                units.mmhg,
                obs,
            ));
            rows.push(PcdRow::nm(
                150035,
                "MDC_PRESS_BLD_ART_MEAN",
                "1.4.1.3",
                &num(mean, 0),
                units.mmhg,
                obs,
            ));
        }
        if (minute + temp_phase) % 60 == 0 {
            let c = at(&s.temp, h) + drift.temp + 0.05 * n[9];
            let row = if dev.fahrenheit {
                PcdRow::nm(
                    150344,
                    "MDC_TEMP",
                    "1.5.1.1",
                    &num(c * 9.0 / 5.0 + 32.0, 1),
                    UNIT_FAHR,
                    obs,
                )
            } else {
                PcdRow::nm(150344, "MDC_TEMP", "1.5.1.1", &num(c, 1), units.cel, obs)
            };
            rows.push(row);
        }
        count += 1;
        let control = format!("{tag}M{count:06}");
        let bed_s = bed_name(bed);
        let device = PcdDevice {
            eui64: eui(0x3A, bed),
            name: format!("MON-{bed_s}"),
            mds: MDS_MONITOR.into(),
        };
        let who = if dev.empty_pid { None } else { Some(&s.who) };
        let msg = pcd01_message(
            "VIGIL_PCD_GW",
            &control,
            arrive,
            who,
            UNIT,
            &bed_s,
            &device,
            obs,
            &rows,
        );
        let src = g.src.monitors.clone();
        if s.malformed_minute == Some(minute) {
            // A connection reset mid-message: the gateway's first try is cut inside MSH.
            let cut: String = msg.chars().take(40).collect();
            g.push(arrive, &src, cut);
            g.push(arrive.plus_ms(2_000), &src, msg);
        } else if s.duplicate_minute == Some(minute) {
            // The gateway missed the ACK and re-sends the same message (same MSH-10).
            g.push(arrive, &src, msg.clone());
            g.push(arrive.plus_ms(3_000), &src, msg);
        } else {
            g.push(arrive, &src, msg);
        }
    }
}

fn emit_vent(g: &mut Gen<'_>, s: &Story, tag: &str, rng: &mut DemoRng) {
    let Some(v) = &s.vent else {
        return;
    };
    let from = ((v.from_h.max(s.admit_h())) * 60.0).ceil() as i64 + 1;
    let end_min = (g.end_h * 60.0) as i64;
    let phase = rng.range(0, 5);
    let mut count = 0u32;
    for minute in from..end_min {
        if (minute + phase) % 5 != 0 {
            continue;
        }
        let h = minute as f64 / 60.0;
        let n: [f64; 3] = std::array::from_fn(|_| rng.normal());
        let Some(bed) = s.bed_at(h) else {
            continue;
        };
        let arrive = g.t_min(minute).plus_ms(20_000 + rng.range(0, 800));
        let obs = arrive.minus_ms(1_500);
        let fio2 = at(&v.fio2, h).round();
        let peep = at(&v.peep, h).round();
        let vt = (at(&v.vt, h) + 12.0 * n[0]).round();
        let rate = (at(&v.rate, h) + 0.7 * n[1].abs()).round();
        let fio2_row = if v.fio2_fraction {
            PcdRow::nm(
                152196,
                "MDC_CONC_AWAY_O2_INSP",
                "1.1.1.1",
                &num(fio2 / 100.0, 2),
                "262656^MDC_DIM_DIMLESS^MDC",
                obs,
            )
        } else {
            PcdRow::nm(
                152196,
                "MDC_CONC_AWAY_O2_INSP",
                "1.1.1.1",
                &num(fio2, 0),
                "262688^MDC_DIM_PERCENT^MDC",
                obs,
            )
        };
        let rows = vec![
            fio2_row,
            PcdRow::nm(
                151976,
                "MDC_VENT_PRESS_AWAY_END_EXP_POS",
                "1.1.1.2",
                &num(peep, 0),
                "266048^MDC_DIM_CM_H2O^MDC",
                obs,
            ),
            PcdRow::nm(
                151980,
                "MDC_VENT_VOL_TIDAL",
                "1.1.1.3",
                &num(vt, 0),
                "263762^MDC_DIM_MILLI_L^MDC",
                obs,
            ),
            PcdRow::nm(
                151586,
                "MDC_VENT_RESP_RATE",
                "1.1.1.4",
                &num(rate, 0),
                "264928^MDC_DIM_RESP_PER_MIN^MDC",
                obs,
            ),
        ];
        count += 1;
        let bed_s = bed_name(bed);
        let device = PcdDevice {
            eui64: eui(0x5E, bed),
            name: format!("VENT-{bed_s}"),
            mds: MDS_VENT.into(),
        };
        let msg = pcd01_message(
            "VIGIL_VENT_GW",
            &format!("{tag}V{count:05}"),
            arrive,
            Some(&s.who),
            UNIT,
            &bed_s,
            &device,
            obs,
            &rows,
        );
        let src = g.src.ventilators.clone();
        g.push(arrive, &src, msg);
    }
}

/// mL/h for a dose, rounded as the pump displays it, and the dose the pump then reports.
fn pump_rates(dose: f64, conc_mg_ml: f64, kg: f64) -> (f64, f64) {
    if conc_mg_ml <= 0.0 || kg <= 0.0 {
        return (0.0, 0.0);
    }
    let flow = (dose * 60.0 * kg / (conc_mg_ml * 1000.0) * 10.0).round() / 10.0;
    let shown = (flow * conc_mg_ml * 1000.0 / (60.0 * kg) * 1000.0).round() / 1000.0;
    (flow, shown)
}

fn emit_pumps(g: &mut Gen<'_>, s: &Story, tag: &str, rng: &mut DemoRng) {
    let kg = s.who.weight_kg.unwrap_or(70.0);
    let end_min = (g.end_h * 60.0) as i64;
    let mut count = 0u32;
    for (chan, inf) in s.infusions.iter().enumerate() {
        let Some(&(start_h, _)) = inf.steps.first() else {
            continue;
        };
        let start_min = (start_h * 60.0).round().max((s.admit_h() * 60.0).ceil()) as i64;
        let stop_min = inf.stop_h.map(|h| (h * 60.0).round() as i64);
        let change_mins: Vec<i64> = inf
            .steps
            .iter()
            .map(|(h, _)| (h * 60.0).round() as i64)
            .collect();
        let phase_ms = 30_000 + chan as i64 * 5_000;
        for minute in start_min..end_min {
            let stopped = stop_min.is_some_and(|m| minute >= m);
            let is_stop = stop_min == Some(minute);
            let due = (minute - start_min) % 5 == 0 || change_mins.contains(&minute);
            if stopped && !is_stop {
                break;
            }
            if !(due || is_stop) {
                continue;
            }
            let h = minute as f64 / 60.0;
            let Some(bed) = s.bed_at(h) else {
                continue;
            };
            let dose = if is_stop { 0.0 } else { step(&inf.steps, h) };
            let (flow, shown) = pump_rates(dose, inf.conc_mg_ml, kg);
            let arrive = g.t_min(minute).plus_ms(phase_ms + rng.range(0, 900));
            let obs = arrive.minus_ms(800);
            let base = format!("1.1.{}", chan + 1);
            let mut rows = vec![
                PcdRow::st(
                    184514,
                    "MDC_DRUG_NAME_LABEL",
                    &format!("{base}.1"),
                    inf.drug,
                    obs,
                ),
                PcdRow::nm(
                    157760,
                    "MDC_CONC_DRUG",
                    &format!("{base}.2"),
                    &trim(inf.conc_mg_ml, 3),
                    "264306^MDC_DIM_MILLI_G_PER_ML^MDC",
                    obs,
                ),
                PcdRow::nm(
                    157784,
                    "MDC_FLOW_FLUID_PUMP",
                    &format!("{base}.3"),
                    &num(flow, 1),
                    "265266^MDC_DIM_MILLI_L_PER_HR^MDC",
                    obs,
                ),
            ];
            if inf.dose_row {
                rows.push(PcdRow::nm(
                    157924,
                    "MDC_RATE_DOSE",
                    &format!("{base}.4"),
                    &trim(shown, 3),
                    "265619^MDC_DIM_MICRO_G_PER_KG_PER_MIN^MDC",
                    obs,
                ));
            }
            count += 1;
            let bed_s = bed_name(bed);
            let device = PcdDevice {
                eui64: eui(0x70 + chan as u8, bed),
                name: format!("PUMP-{bed_s}-{}", chan + 1),
                mds: MDS_PUMP.into(),
            };
            let msg = pcd01_message(
                "VIGIL_PUMP_GW",
                &format!("{tag}I{count:05}"),
                arrive,
                Some(&s.who),
                UNIT,
                &bed_s,
                &device,
                obs,
                &rows,
            );
            let src = g.src.pumps.clone();
            g.push(arrive, &src, msg);
            if is_stop {
                break;
            }
        }
    }
}

/// A number with up to `decimals` places and no trailing zeros.
fn trim(v: f64, decimals: usize) -> String {
    let s = num(v, decimals);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn emit_labs(g: &mut Gen<'_>, s: &Story, tag: &str, rng: &mut DemoRng) {
    for (i, h) in s.lab_times(g.end_h).into_iter().enumerate() {
        let n: [f64; 8] = std::array::from_fn(|_| rng.normal());
        let delay = rng.range(30, 61);
        let Some(bed) = s.bed_at(h) else {
            continue;
        };
        let collected = g.t(h);
        let arrive = collected.plus_ms(delay * MINUTE_MS);
        if arrive >= g.t(g.end_h) {
            continue;
        }
        let l = &s.labs;
        let jit = |kf: &Kf, k: usize, rel: f64| {
            at(kf, h) * (1.0 + rel * n.get(k).copied().unwrap_or(0.0))
        };
        let lactate = jit(&l.lactate, 0, 0.04).max(0.3);
        let plt = jit(&l.platelets, 1, 0.03).max(5.0);
        let creat = jit(&l.creatinine, 2, 0.03).max(0.2);
        let bili = jit(&l.bilirubin, 3, 0.04).max(0.1);
        let wbc = jit(&l.wbc, 4, 0.04).max(0.5);
        let creat_row = if s.creat_umol_draw == Some(i) {
            LabResult::new(
                "14682-9",
                "Creatinine [Moles/volume] in Serum or Plasma",
                num(creat * 88.42, 0),
                "umol/L",
            )
        } else {
            LabResult::new(
                "2160-0",
                "Creatinine [Mass/volume] in Serum or Plasma",
                num(creat, 2),
                "mg/dL",
            )
        };
        let bili_row = if s.bili_umol_draw == Some(i) {
            LabResult::new(
                "14631-6",
                "Bilirubin.total [Moles/volume] in Serum or Plasma",
                num(bili * 17.1, 0),
                "umol/L",
            )
        } else {
            LabResult::new(
                "1975-2",
                "Bilirubin.total [Mass/volume] in Serum or Plasma",
                num(bili, 1),
                "mg/dL",
            )
        };
        let mut panels = vec![
            LabPanel {
                code: "58410-2^CBC panel - Blood by Automated count^LN",
                results: vec![
                    LabResult::new(
                        "777-3",
                        "Platelets [#/volume] in Blood by Automated count",
                        num(plt, 0),
                        "10*3/uL",
                    ),
                    LabResult::new(
                        "6690-2",
                        "Leukocytes [#/volume] in Blood by Automated count",
                        num(wbc, 1),
                        "10*3/uL",
                    ),
                ],
            },
            LabPanel {
                code: "24323-8^Comprehensive metabolic 2000 panel - Serum or Plasma^LN",
                results: vec![
                    creat_row,
                    bili_row,
                    LabResult::new(
                        "2524-7",
                        "Lactate [Moles/volume] in Serum or Plasma",
                        num(lactate, 1),
                        "mmol/L",
                    ),
                ],
            },
        ];
        if let Some(v) = s.vent.as_ref().filter(|_| s.ventilated(h)) {
            let pao2 = jit(&l.pao2, 5, 0.04);
            let paco2 = jit(&l.paco2, 6, 0.03);
            let ph = at(&l.ph, h) + 0.01 * n[7];
            panels.push(LabPanel {
                code: "24336-0^Gas panel - Arterial blood^LN",
                results: vec![
                    LabResult::new("2744-1", "pH of Arterial blood", num(ph, 2), "[pH]"),
                    LabResult::new(
                        "2019-8",
                        "Carbon dioxide [Partial pressure] in Arterial blood",
                        num(paco2, 0),
                        "mm[Hg]",
                    ),
                    LabResult::new(
                        "2703-7",
                        "Oxygen [Partial pressure] in Arterial blood",
                        num(pao2, 0),
                        "mm[Hg]",
                    ),
                    LabResult::new(
                        "3150-0",
                        "Inhaled oxygen concentration",
                        num(at(&v.fio2, h).round(), 0),
                        "%",
                    ),
                ],
            });
        }
        let control = format!("{tag}L{:03}", i + 1);
        let msg = lab_message(
            &control,
            arrive,
            &s.who,
            UNIT,
            &bed_name(bed),
            collected,
            &panels,
        );
        let src = g.src.lab.clone();
        g.push(arrive, &src, msg);
    }
}

fn emit_gcs(g: &mut Gen<'_>, s: &Story, tag: &str, rng: &mut DemoRng) {
    let hourly_from = s.gcs_hourly_from.unwrap_or(f64::INFINITY);
    let mut h = (s.admit_h() + 0.25).ceil();
    let mut count = 0u32;
    while h < g.end_h {
        let lag = rng.range(3, 11);
        if let Some(bed) = s.bed_at(h) {
            let assessed = g.t(h);
            let sent = assessed.plus_ms(lag * MINUTE_MS);
            let total = at(&s.gcs, h).round().clamp(3.0, 15.0) as u8;
            count += 1;
            let msg = gcs_message(
                &format!("{tag}G{count:04}"),
                sent,
                &s.who,
                UNIT,
                &bed_name(bed),
                assessed,
                total,
            );
            let src = g.src.charting.clone();
            g.push(sent, &src, msg);
        }
        // Every 4 h, hourly once the patient is sick.
        let mut next = h + if h >= hourly_from { 1.0 } else { 4.0 };
        if h < hourly_from && next > hourly_from {
            next = hourly_from.ceil().max(h + 1.0);
        }
        h = next;
    }
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

/// Writes a recording; gzip when `path` ends in `.gz`, with mtime 0 and no file name so the
/// bytes depend only on the content.
pub fn write_recording(
    path: &Path,
    header: &RecordingHeader,
    entries: &[RecordingEntry],
) -> io::Result<()> {
    let file = io::BufWriter::new(std::fs::File::create(path)?);
    let gz = path.extension().is_some_and(|e| e == "gz");
    if gz {
        let enc = flate2::GzBuilder::new()
            .mtime(0)
            .operating_system(255)
            .write(file, flate2::Compression::best());
        let mut w = RecordingWriter::new(enc, header)?;
        for e in entries {
            w.push(e)?;
        }
        let mut file = w.finish().finish()?;
        file.flush()
    } else {
        let mut w = RecordingWriter::new(file, header)?;
        for e in entries {
            w.push(e)?;
        }
        w.finish().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_streams_are_reproducible_and_independent() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = DemoRng::new(7, 1);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..4)
            .map({
                let mut r = DemoRng::new(7, 1);
                move |_| r.next_u64()
            })
            .collect();
        let c: Vec<u64> = (0..4)
            .map({
                let mut r = DemoRng::new(7, 2);
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut r = DemoRng::new(1, 1);
        let xs: Vec<f64> = (0..20_000).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.03, "{mean}");
        assert!((var - 1.0).abs() < 0.05, "{var}");
    }

    #[test]
    fn trajectories_interpolate_and_steps_hold() {
        let k = kf(&[(0.0, 10.0), (2.0, 20.0), (4.0, 20.0)]);
        assert_eq!(at(&k, -1.0), 10.0);
        assert_eq!(at(&k, 1.0), 15.0);
        assert_eq!(at(&k, 9.0), 20.0);
        let s = kf(&[(10.0, 0.05), (10.5, 0.1)]);
        assert_eq!(step(&s, 9.99), 0.0);
        assert_eq!(step(&s, 10.0), 0.05);
        assert_eq!(step(&s, 10.6), 0.1);
    }

    #[test]
    fn pump_flow_and_dose_agree_with_the_conversion_formula() {
        // 0.05 µg/kg/min at 0.064 mg/mL for 78 kg = 3.656… mL/h → shown as 3.7 mL/h.
        let (flow, shown) = pump_rates(0.05, 0.064, 78.0);
        assert_eq!(flow, 3.7);
        let back = flow * 0.064 * 1000.0 / (60.0 * 78.0);
        assert!((shown - back).abs() < 0.0005);
        assert!((shown - 0.05).abs() < 0.002);
        assert_eq!(pump_rates(0.0, 0.064, 78.0), (0.0, 0.0));
    }

    #[test]
    fn gcs_parts_sum_to_the_total() {
        for t in 3..=15u8 {
            let (e, v, m) = gcs_parts(t);
            assert_eq!(e + v + m, t, "{t}");
            assert!((1..=4).contains(&e) && (1..=5).contains(&v) && (1..=6).contains(&m));
        }
    }
}
