//! Alert rules, loaded from `scoring/alerts.toml`.

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::config::problem::{line_of, Problem};
use crate::model::{ScoreKind, Severity};

pub const ALERTS_FILE: &str = "alerts.toml";
const BUILTIN_ALERTS: &str = include_str!("../../scoring/alerts.toml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    defaults: Defaults,
    rule: Vec<Spanned<RuleRow>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    hold_minutes: u32,
    suppress_minutes: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleRow {
    name: String,
    #[serde(default)]
    group: Option<String>,
    score: ScoreKind,
    #[serde(default)]
    raise_at: Option<f64>,
    #[serde(default)]
    clear_below: Option<f64>,
    #[serde(default)]
    condition: Option<String>,
    severity: Severity,
    #[serde(default)]
    hold_minutes: Option<u32>,
    #[serde(default)]
    suppress_minutes: Option<u32>,
}

/// When a rule's condition holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Trigger {
    /// value >= raise_at raises; value < clear_below counts toward clearing.
    Threshold { raise_at: f64, clear_below: f64 },
    /// Any single NEWS2 parameter scores 3.
    AnySingle3,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub name: String,
    pub group: String,
    pub score: ScoreKind,
    pub trigger: Trigger,
    pub severity: Severity,
    pub hold_ms: i64,
    pub suppress_ms: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AlertRules {
    pub rules: Vec<Rule>,
}

impl AlertRules {
    pub fn builtin() -> Result<Self, Vec<Problem>> {
        Self::from_source(ALERTS_FILE, BUILTIN_ALERTS)
    }

    pub fn load_dir(dir: &Path) -> Result<Self, Vec<Problem>> {
        let path = dir.join(ALERTS_FILE);
        let shown = path.display().to_string();
        let src = std::fs::read_to_string(&path)
            .map_err(|e| vec![Problem::new(&shown, None, format!("cannot read: {e}"))])?;
        Self::from_source(&shown, &src)
    }

    pub fn from_source(file: &str, src: &str) -> Result<Self, Vec<Problem>> {
        let parsed: File =
            toml::from_str(src).map_err(|e| vec![Problem::from_toml(file, src, &e)])?;
        let mut problems = Vec::new();
        let mut rules = Vec::new();
        for row in &parsed.rule {
            let line = Some(line_of(src, row.span().start));
            let r = row.get_ref();
            let trigger = match (r.condition.as_deref(), r.raise_at, r.clear_below) {
                (Some("any_single_3"), None, None) => {
                    if r.score != ScoreKind::News2 {
                        problems.push(Problem::new(
                            file,
                            line,
                            format!(
                                "rule {}: condition any_single_3 applies to score news2 only",
                                r.name
                            ),
                        ));
                    }
                    Trigger::AnySingle3
                }
                (Some(c), _, _) if c != "any_single_3" => {
                    problems.push(Problem::new(
                        file,
                        line,
                        format!(
                            "rule {}: unknown condition {c:?} (known: any_single_3)",
                            r.name
                        ),
                    ));
                    continue;
                }
                (None, Some(raise_at), Some(clear_below)) => {
                    if clear_below > raise_at {
                        problems.push(Problem::new(file, line, format!(
                            "rule {}: clear_below {clear_below} is above raise_at {raise_at}; it would never clear", r.name)));
                    }
                    Trigger::Threshold {
                        raise_at,
                        clear_below,
                    }
                }
                _ => {
                    problems.push(Problem::new(file, line, format!(
                        "rule {}: give either raise_at and clear_below, or condition (not both)", r.name)));
                    continue;
                }
            };
            if rules.iter().any(|x: &Rule| x.name == r.name) {
                problems.push(Problem::new(
                    file,
                    line,
                    format!("rule {} is defined twice", r.name),
                ));
            }
            rules.push(Rule {
                name: r.name.clone(),
                group: r.group.clone().unwrap_or_else(|| r.name.clone()),
                score: r.score,
                trigger,
                severity: r.severity,
                hold_ms: i64::from(r.hold_minutes.unwrap_or(parsed.defaults.hold_minutes)) * 60_000,
                suppress_ms: i64::from(
                    r.suppress_minutes
                        .unwrap_or(parsed.defaults.suppress_minutes),
                ) * 60_000,
            });
        }
        if problems.is_empty() {
            Ok(AlertRules { rules })
        } else {
            Err(problems)
        }
    }

    /// Groups in the order their first rule appears, each with its rules by descending severity.
    pub fn groups(&self) -> Vec<(String, Vec<&Rule>)> {
        let mut out: Vec<(String, Vec<&Rule>)> = Vec::new();
        for r in &self.rules {
            match out.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, v)) => v.push(r),
                None => out.push((r.group.clone(), vec![r])),
            }
        }
        for (_, v) in &mut out {
            v.sort_by_key(|r| std::cmp::Reverse(r.severity));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_rules_load() {
        let r = AlertRules::builtin().unwrap();
        assert_eq!(r.rules.len(), 6);
        let groups = r.groups();
        let news2 = groups.iter().find(|(g, _)| g == "news2").unwrap();
        let names: Vec<&str> = news2.1.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["news2_high", "news2_medium", "news2_single_3"]);
    }

    #[test]
    fn faults_are_all_reported_with_lines() {
        let src = "[defaults]\nhold_minutes = 1\nsuppress_minutes = 1\n\n[[rule]]\nname = \"a\"\nscore = \"qsofa\"\nraise_at = 2\nclear_below = 3\nseverity = \"high\"\n\n[[rule]]\nname = \"b\"\nscore = \"sofa\"\ncondition = \"any_single_3\"\nseverity = \"low\"\n";
        let errs = AlertRules::from_source("alerts.toml", src).unwrap_err();
        let shown: Vec<String> = errs.iter().map(|p| p.to_string()).collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(shown[0].starts_with("alerts.toml:5:") && shown[0].contains("never clear"));
        assert!(shown[1].starts_with("alerts.toml:12:") && shown[1].contains("news2 only"));
    }
}
