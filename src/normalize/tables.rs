//! Code, unit and plausibility tables, loaded from `device-profiles/` (data, not code).

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use rustc_hash::{FxHashMap, FxHashSet};

use serde::Deserialize;
use toml::Spanned;

use crate::config::problem::{line_of, Problem};
use crate::model::{Param, Term};

pub const CODES_FILE: &str = "codes.toml";
pub const PLAUSIBILITY_FILE: &str = "plausibility.toml";

const BUILTIN_CODES: &str = include_str!("../../device-profiles/codes.toml");
const BUILTIN_PLAUSIBILITY: &str = include_str!("../../device-profiles/plausibility.toml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodesFile {
    mdc: Vec<Spanned<MdcRow>>,
    drug_name_codes: Vec<u32>,
    loinc: Vec<Spanned<LoincRow>>,
    mdc_units: Vec<Spanned<MdcUnitRow>>,
    unit_aliases: Vec<Spanned<AliasRow>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MdcRow {
    code: u32,
    refid: String,
    param: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoincRow {
    code: String,
    param: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MdcUnitRow {
    code: u32,
    #[allow(dead_code)]
    refid: String,
    ucum: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasRow {
    from: String,
    ucum: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlausibilityFile {
    ranges: Vec<Spanned<RangeRow>>,
    sentinels: Vec<f64>,
    arterial_artifact: ArterialArtifact,
    spo2_low_perfusion: Spo2LowPerfusion,
}

/// SpO2 readings taken with a perfusion index below the limit are artifacts.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Spo2LowPerfusion {
    pub enabled: bool,
    pub perfusion_index_below: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeRow {
    param: String,
    min: f64,
    max: f64,
    #[allow(dead_code)]
    source: String,
}

/// ART1 arterial-line artifact thresholds (CLINICAL.md §5).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ArterialArtifact {
    pub enabled: bool,
    pub sbp_high: f64,
    pub pp_min_high: f64,
    pub sbp_mid: f64,
    pub pp_min_mid: f64,
    pub sbp_low: f64,
    pub pp_min_low: f64,
    pub pp_min_below_low: f64,
    pub sbp_or_dbp_at_most: f64,
    pub map_below: f64,
    pub map_at_least: f64,
}

/// What the `dose` code maps to before the drug is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MappedParam {
    Param(Param),
    /// MDC_RATE_DOSE: the drug comes from the channel's drug-name row.
    Dose,
}

/// One MDC code of the tables: what it maps to, and its text and (first) reference id as
/// shared terms.
#[derive(Clone, Copy, Debug)]
pub struct MdcEntry {
    pub param: MappedParam,
    pub code: &'static str,
    pub refid: &'static str,
}

/// The loaded tables.
#[derive(Clone, Debug)]
pub struct NormalizeTables {
    // FxHash: the keys are the site's own tables, not attacker-chosen, and SipHash cost more
    // than the rest of a lookup on the hot path.
    mdc: FxHashMap<u32, MdcEntry>,
    loinc: FxHashMap<String, MappedParam>,
    pub drug_name_codes: Vec<u32>,
    mdc_units: FxHashMap<u32, &'static str>,
    aliases: FxHashMap<String, &'static str>,
    /// Every code, reference id and unit the tables name, interned: observations borrow these
    /// instead of allocating their own copy.
    terms: FxHashSet<&'static str>,
    /// By [`Param::index`].
    ranges: [Option<(f64, f64)>; Param::COUNT],
    pub sentinels: Vec<f64>,
    pub arterial: ArterialArtifact,
    pub spo2_low_perfusion: Spo2LowPerfusion,
}

/// One `&'static` copy of each distinct table string for the whole process. Only strings from
/// the loaded tables come here (never message content), so the set is bounded by the tables:
/// loading the same tables again adds nothing. The canonical units are the parameters' own
/// (so a table unit that is canonical is the very string [`Param::canonical_unit`] gives).
fn intern(s: &str) -> &'static str {
    static TERMS: OnceLock<Mutex<FxHashSet<&'static str>>> = OnceLock::new();
    let set = TERMS.get_or_init(|| {
        Mutex::new(
            Param::all()
                .into_iter()
                .map(Param::canonical_unit)
                .collect(),
        )
    });
    let mut set = set.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(&t) = set.get(s) {
        return t;
    }
    let t: &'static str = Box::leak(s.to_owned().into_boxed_str());
    set.insert(t);
    t
}

/// How many message terms [`LearnedTerms`] keeps for the process, and the longest.
const LEARNED_MAX: usize = 4096;
const LEARNED_MAX_LEN: usize = 48;
static LEARNED: OnceLock<Mutex<LearnedTerms>> = OnceLock::new();

/// Codes, reference ids and units that messages carry and the tables do not name (most of a
/// monitor's rows: QT, ST, rhythm, settings), one `&'static` copy each, so a term seen again
/// costs no allocation. Bounded in number and length: past the bound a term is copied per
/// reading as before, so unexpected or hostile codes cost at most `cap` × 48 bytes.
struct LearnedTerms {
    set: FxHashSet<&'static str>,
    cap: usize,
}

impl LearnedTerms {
    fn new(cap: usize) -> Self {
        LearnedTerms {
            set: FxHashSet::default(),
            cap,
        }
    }

    fn get_or_learn(&mut self, s: &str) -> Option<&'static str> {
        if let Some(&t) = self.set.get(s) {
            return Some(t);
        }
        if s.len() > LEARNED_MAX_LEN || self.set.len() >= self.cap {
            return None;
        }
        let t: &'static str = Box::leak(s.to_owned().into_boxed_str());
        self.set.insert(t);
        Some(t)
    }
}

fn map_param(name: &str) -> Result<MappedParam, String> {
    if name == "dose" {
        Ok(MappedParam::Dose)
    } else {
        name.parse::<Param>().map(MappedParam::Param)
    }
}

impl NormalizeTables {
    /// The tables shipped with this build.
    pub fn builtin() -> Result<Self, Vec<Problem>> {
        Self::from_sources(
            (CODES_FILE, BUILTIN_CODES),
            (PLAUSIBILITY_FILE, BUILTIN_PLAUSIBILITY),
        )
    }

    /// Loads `codes.toml` and `plausibility.toml` from a device-profiles directory.
    pub fn load_dir(dir: &Path) -> Result<Self, Vec<Problem>> {
        let read = |name: &str| -> Result<(String, String), Problem> {
            let path = dir.join(name);
            let shown = path.display().to_string();
            std::fs::read_to_string(&path)
                .map(|s| (shown.clone(), s))
                .map_err(|e| Problem::new(shown, None, format!("cannot read: {e}")))
        };
        let codes = read(CODES_FILE);
        let plaus = read(PLAUSIBILITY_FILE);
        match (codes, plaus) {
            (Ok(c), Ok(p)) => Self::from_sources((&c.0, &c.1), (&p.0, &p.1)),
            // One file is unreadable: still check the other (against the built-in partner) so
            // every fault is reported at once.
            (Ok(c), Err(pe)) => {
                let mut errs = vec![pe];
                if let Err(more) =
                    Self::from_sources((&c.0, &c.1), (PLAUSIBILITY_FILE, BUILTIN_PLAUSIBILITY))
                {
                    errs.extend(more);
                }
                Err(errs)
            }
            (Err(ce), Ok(p)) => {
                let mut errs = vec![ce];
                if let Err(more) = Self::from_sources((CODES_FILE, BUILTIN_CODES), (&p.0, &p.1)) {
                    errs.extend(more);
                }
                Err(errs)
            }
            (Err(ce), Err(pe)) => Err(vec![ce, pe]),
        }
    }

    /// Parses both files, reporting every problem found in either.
    pub fn from_sources(codes: (&str, &str), plaus: (&str, &str)) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let (cf, cs) = codes;
        let (pf, ps) = plaus;
        let mut t = NormalizeTables {
            mdc: FxHashMap::default(),
            loinc: FxHashMap::default(),
            drug_name_codes: Vec::new(),
            mdc_units: FxHashMap::default(),
            aliases: FxHashMap::default(),
            terms: FxHashSet::default(),
            ranges: [None; Param::COUNT],
            sentinels: Vec::new(),
            arterial: ArterialArtifact {
                enabled: false,
                sbp_high: 0.0,
                pp_min_high: 0.0,
                sbp_mid: 0.0,
                pp_min_mid: 0.0,
                sbp_low: 0.0,
                pp_min_low: 0.0,
                pp_min_below_low: 0.0,
                sbp_or_dbp_at_most: 0.0,
                map_below: 0.0,
                map_at_least: 0.0,
            },
            spo2_low_perfusion: Spo2LowPerfusion {
                enabled: false,
                perfusion_index_below: 0.0,
            },
        };
        match toml::from_str::<CodesFile>(cs) {
            Err(e) => problems.push(Problem::from_toml(cf, cs, &e)),
            Ok(file) => {
                let mut seen_refid: HashMap<(u32, String), usize> = HashMap::new();
                for row in &file.mdc {
                    let line = line_of(cs, row.span().start);
                    let r = row.get_ref();
                    match map_param(&r.param) {
                        Err(e) => problems.push(Problem::new(cf, Some(line), e)),
                        Ok(p) => {
                            if let Some(prev) = t.mdc.get(&r.code) {
                                if prev.param != p {
                                    problems.push(Problem::new(
                                        cf,
                                        Some(line),
                                        format!(
                                            "MDC code {} maps to two different parameters",
                                            r.code
                                        ),
                                    ));
                                }
                            }
                            if let Some(first) = seen_refid.insert((r.code, r.refid.clone()), line)
                            {
                                problems.push(Problem::new(
                                    cf,
                                    Some(line),
                                    format!("MDC code {} {} repeats line {first}", r.code, r.refid),
                                ));
                            }
                            let (code, refid) = (intern(&r.code.to_string()), intern(&r.refid));
                            t.terms.insert(code);
                            t.terms.insert(refid);
                            t.mdc.entry(r.code).or_insert(MdcEntry {
                                param: p,
                                code,
                                refid,
                            });
                        }
                    }
                }
                for row in &file.loinc {
                    let line = line_of(cs, row.span().start);
                    let r = row.get_ref();
                    match map_param(&r.param) {
                        Err(e) => problems.push(Problem::new(cf, Some(line), e)),
                        Ok(p) => {
                            t.terms.insert(intern(&r.code));
                            if t.loinc.insert(r.code.clone(), p).is_some() {
                                problems.push(Problem::new(
                                    cf,
                                    Some(line),
                                    format!("LOINC code {} is listed twice", r.code),
                                ));
                            }
                        }
                    }
                }
                t.drug_name_codes = file.drug_name_codes;
                for row in &file.mdc_units {
                    let r = row.get_ref();
                    let ucum = intern(&r.ucum);
                    t.terms.insert(ucum);
                    if t.mdc_units.insert(r.code, ucum).is_some() {
                        problems.push(Problem::new(
                            cf,
                            Some(line_of(cs, row.span().start)),
                            format!("MDC unit code {} is listed twice", r.code),
                        ));
                    }
                }
                for row in &file.unit_aliases {
                    let r = row.get_ref();
                    let ucum = intern(&r.ucum);
                    t.terms.insert(ucum);
                    t.aliases.insert(r.from.clone(), ucum);
                }
            }
        }
        match toml::from_str::<PlausibilityFile>(ps) {
            Err(e) => problems.push(Problem::from_toml(pf, ps, &e)),
            Ok(file) => {
                for row in &file.ranges {
                    let line = line_of(ps, row.span().start);
                    let r = row.get_ref();
                    match r.param.parse::<Param>() {
                        Err(e) => problems.push(Problem::new(pf, Some(line), e)),
                        Ok(p) => {
                            if r.min >= r.max || r.min.is_nan() || r.max.is_nan() {
                                problems.push(Problem::new(
                                    pf,
                                    Some(line),
                                    format!(
                                        "range for {} has min {} not below max {}",
                                        r.param, r.min, r.max
                                    ),
                                ));
                            }
                            let slot = t.ranges.get_mut(p.index());
                            if slot.and_then(|s| s.replace((r.min, r.max))).is_some() {
                                problems.push(Problem::new(
                                    pf,
                                    Some(line),
                                    format!("{} has two ranges", r.param),
                                ));
                            }
                        }
                    }
                }
                t.sentinels = file.sentinels;
                let a = &file.arterial_artifact;
                if !(a.sbp_low < a.sbp_mid && a.sbp_mid < a.sbp_high) {
                    problems.push(Problem::new(
                        pf,
                        None,
                        "arterial_artifact: need sbp_low < sbp_mid < sbp_high",
                    ));
                }
                t.arterial = file.arterial_artifact;
                t.spo2_low_perfusion = file.spo2_low_perfusion;
            }
        }
        for p in Param::all() {
            t.terms.insert(p.canonical_unit());
        }
        if problems.is_empty() {
            Ok(t)
        } else {
            Err(problems)
        }
    }

    pub fn mdc(&self, code: u32) -> Option<MappedParam> {
        self.mdc.get(&code).map(|e| e.param)
    }

    pub fn mdc_entry(&self, code: u32) -> Option<&MdcEntry> {
        self.mdc.get(&code)
    }

    pub fn loinc(&self, code: &str) -> Option<MappedParam> {
        self.loinc.get(code).copied()
    }

    pub fn is_drug_name_code(&self, code: u32) -> bool {
        self.drug_name_codes.contains(&code)
    }

    /// UCUM for an MDC unit code.
    pub fn mdc_unit(&self, code: u32) -> Option<&'static str> {
        self.mdc_units.get(&code).copied()
    }

    /// UCUM for a unit string as a sender wrote it (UCUM passes through unchanged).
    pub fn ucum_alias<'a>(&self, unit: &'a str) -> &'a str {
        self.ucum_alias_of(unit).unwrap_or(unit)
    }

    /// The UCUM the alias table gives for `unit`, when it lists it.
    pub fn ucum_alias_of(&self, unit: &str) -> Option<&'static str> {
        self.aliases.get(unit).copied()
    }

    /// `s` as an observation term: the tables' own copy when they name it, else the copy
    /// learned from an earlier message (no allocation either way), else an owned copy.
    pub fn term(&self, s: &str) -> Term {
        if let Some(&t) = self.terms.get(s) {
            return Cow::Borrowed(t);
        }
        let learned = LEARNED.get_or_init(|| Mutex::new(LearnedTerms::new(LEARNED_MAX)));
        let mut learned = learned.lock().unwrap_or_else(|p| p.into_inner());
        match learned.get_or_learn(s) {
            Some(t) => Cow::Borrowed(t),
            None => Cow::Owned(s.to_owned()),
        }
    }

    /// Inclusive plausibility range.
    pub fn range(&self, p: Param) -> Option<(f64, f64)> {
        self.ranges.get(p.index()).copied().flatten()
    }

    pub fn is_sentinel(&self, v: f64) -> bool {
        self.sentinels.iter().any(|s| (s - v).abs() < 1e-9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Drug;

    #[test]
    fn builtin_tables_load_and_map_known_codes() {
        let t = NormalizeTables::builtin().unwrap();
        assert_eq!(t.mdc(150456), Some(MappedParam::Param(Param::SpO2)));
        assert_eq!(t.mdc(150324), None, "SAT_O2_ART is not SpO2");
        assert_eq!(t.mdc(157924), Some(MappedParam::Dose));
        assert_eq!(t.loinc("2524-7"), Some(MappedParam::Param(Param::Lactate)));
        assert_eq!(t.mdc_unit(266016), Some("mm[Hg]"));
        // A canonical unit in the tables is the parameter's own string.
        let mmhg = t.mdc_unit(266016).unwrap();
        assert!(std::ptr::eq(mmhg, Param::SbpNibp.canonical_unit()));
        assert_eq!(t.ucum_alias_of("mmHg"), Some(mmhg));
        assert_eq!(t.ucum_alias_of("mm[Hg]"), None);
        assert_eq!(t.ucum_alias("mmHg"), "mm[Hg]");
        assert_eq!(t.ucum_alias("mm[Hg]"), "mm[Hg]");
        assert_eq!(t.range(Param::Dose(Drug::Norepinephrine)), Some((0.0, 3.0)));
        assert!(t.is_sentinel(-999.0));
    }

    #[test]
    fn table_terms_are_borrowed_and_others_owned() {
        let t = NormalizeTables::builtin().unwrap();
        for known in [
            "150456",
            "MDC_PULS_OXIM_SAT_O2",
            "2524-7",
            "mm[Hg]",
            "/min",
            "%",
        ] {
            assert!(
                matches!(t.term(known), Cow::Borrowed(k) if k == known),
                "{known}"
            );
        }
        for other in ["999999", "MDC_NOT_A_TABLE_ROW", "furlong"] {
            assert_eq!(t.term(other), other);
        }
        // A second load reuses the process's copies.
        let again = NormalizeTables::builtin().unwrap();
        let (Cow::Borrowed(a), Cow::Borrowed(b)) = (t.term("150456"), again.term("150456")) else {
            panic!("not borrowed");
        };
        assert!(std::ptr::eq(a, b));
    }

    #[test]
    fn message_terms_are_learned_up_to_the_bound() {
        let mut l = LearnedTerms::new(3);
        let a = l.get_or_learn("147232").unwrap();
        assert_eq!(a, "147232");
        // Seen again: the same copy.
        assert!(std::ptr::eq(a, l.get_or_learn("147232").unwrap()));
        assert!(l.get_or_learn("MDC_ECG_TIME_PD_QT_GL").is_some());
        let long = "X".repeat(LEARNED_MAX_LEN + 1);
        assert_eq!(l.get_or_learn(&long), None, "too long to keep");
        assert!(l.get_or_learn(&long[..LEARNED_MAX_LEN]).is_some());
        // Full: new terms are not kept, known ones still are.
        assert_eq!(l.get_or_learn("184327"), None);
        assert!(std::ptr::eq(a, l.get_or_learn("147232").unwrap()));
        assert_eq!(l.set.len(), 3);
    }

    #[test]
    fn every_fault_is_reported_with_its_line() {
        let codes = "mdc = [\n  { code = 1, refid = \"A\", param = \"heart_rate\" },\n  { code = 2, refid = \"B\", param = \"pulse\" },\n]\ndrug_name_codes = []\nloinc = [\n  { code = \"1-1\", param = \"nope\" },\n]\nmdc_units = []\nunit_aliases = []\n";
        let plaus = "ranges = [\n  { param = \"spo2\", min = 100, max = 50, source = \"x\" },\n]\nsentinels = []\n[arterial_artifact]\nenabled = true\nsbp_high = 200.0\npp_min_high = 50.0\nsbp_mid = 150.0\npp_min_mid = 30.0\nsbp_low = 100.0\npp_min_low = 15.0\npp_min_below_low = 10.0\nsbp_or_dbp_at_most = 10.0\nmap_below = 0.0\nmap_at_least = 140.0\n[spo2_low_perfusion]\nenabled = true\nperfusion_index_below = 0.6\n";
        let errs =
            NormalizeTables::from_sources(("codes.toml", codes), ("plausibility.toml", plaus))
                .unwrap_err();
        let shown: Vec<String> = errs.iter().map(|p| p.to_string()).collect();
        assert_eq!(shown.len(), 3, "{shown:#?}");
        assert!(shown[0].starts_with("codes.toml:3:") && shown[0].contains("pulse"));
        assert!(shown[1].starts_with("codes.toml:7:") && shown[1].contains("nope"));
        assert!(shown[2].starts_with("plausibility.toml:2:") && shown[2].contains("min 100"));
    }
}
