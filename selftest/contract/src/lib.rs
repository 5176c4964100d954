//! The marker contract: reading `selftest/markers.toml` and judging a console stream.
//!
//! [`Contract::parse`] validates the file (ids unique and in `SCREAMING_SNAKE_CASE`,
//! texts unique, at most one placeholder per text, phases non-empty and unique).
//! [`Ladder`] follows a console stream line by line: it expects the markers of a phase
//! (and of every phase before it) in order, and stops at the first failure pattern, the
//! first marker that arrives out of order, or the end of the stream.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;

/// The whole ladder.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    /// A line containing any of these fails the run.
    pub failure_patterns: Vec<String>,
    /// The phases, in order.
    #[serde(rename = "phase")]
    pub phases: Vec<Phase>,
}

/// A named group of markers.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    /// `bring-up`, `identity`, ...
    pub name: String,
    /// Its markers, in the order they must appear.
    pub markers: Vec<Marker>,
}

/// One marker.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Marker {
    /// The constant name in the generated `markers` crate.
    pub id: String,
    /// The whole console line, with at most one `{placeholder}`.
    pub text: String,
}

/// A contract file that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContractError(pub String);

impl fmt::Display for ContractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ContractError {}

/// A marker text split around its placeholder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template<'a> {
    /// Text before the placeholder (the whole text when there is none).
    pub before: &'a str,
    /// The placeholder's name, if any.
    pub placeholder: Option<&'a str>,
    /// Text after the placeholder.
    pub after: &'a str,
}

impl Marker {
    /// The text split around its placeholder.
    ///
    /// # Errors
    /// More than one placeholder, or an unclosed brace.
    pub fn template(&self) -> Result<Template<'_>, ContractError> {
        let Some(open) = self.text.find('{') else {
            return if self.text.contains('}') {
                Err(ContractError(format!(
                    "{}: stray `}}` in {:?}",
                    self.id, self.text
                )))
            } else {
                Ok(Template {
                    before: &self.text,
                    placeholder: None,
                    after: "",
                })
            };
        };
        let close = self.text[open..]
            .find('}')
            .map(|i| open + i)
            .ok_or_else(|| {
                ContractError(format!("{}: unclosed `{{` in {:?}", self.id, self.text))
            })?;
        let (before, name, after) = (
            &self.text[..open],
            &self.text[open + 1..close],
            &self.text[close + 1..],
        );
        if name.is_empty() || after.contains('{') || after.contains('}') {
            return Err(ContractError(format!(
                "{}: one named placeholder at most: {:?}",
                self.id, self.text
            )));
        }
        Ok(Template {
            before,
            placeholder: Some(name),
            after,
        })
    }

    /// The console prefix that owns this marker: the text before the first `": "`.
    pub fn owner(&self) -> Option<&str> {
        self.text.split_once(": ").map(|(owner, _)| owner)
    }

    /// Whether `line` is this marker, with placeholders filled from `values` where
    /// given, or by any non-empty word otherwise.
    pub fn matches(&self, line: &str, values: &BTreeMap<String, String>) -> bool {
        let Ok(template) = self.template() else {
            return false;
        };
        let line = line.trim_end();
        let Some(name) = template.placeholder else {
            return line == template.before;
        };
        let Some(middle) = line
            .strip_prefix(template.before)
            .and_then(|rest| rest.strip_suffix(template.after))
        else {
            return false;
        };
        match values.get(name) {
            Some(expected) => middle == expected,
            None => !middle.is_empty() && !middle.contains(char::is_whitespace),
        }
    }
}

impl Contract {
    /// Parses and validates the contract.
    ///
    /// # Errors
    /// TOML errors, and any violation of the rules in the crate documentation.
    pub fn parse(text: &str) -> Result<Self, ContractError> {
        let contract: Contract = toml::from_str(text).map_err(|e| ContractError(e.to_string()))?;
        let mut ids = BTreeSet::new();
        let mut texts = BTreeSet::new();
        let mut names = BTreeSet::new();
        if contract.phases.is_empty() {
            return Err(ContractError("no phase".into()));
        }
        for phase in &contract.phases {
            if !names.insert(phase.name.as_str()) {
                return Err(ContractError(format!(
                    "phase `{}` appears twice",
                    phase.name
                )));
            }
            if phase.markers.is_empty() {
                return Err(ContractError(format!(
                    "phase `{}` has no marker",
                    phase.name
                )));
            }
            for marker in &phase.markers {
                let valid_id = !marker.id.is_empty()
                    && marker
                        .id
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                if !valid_id {
                    return Err(ContractError(format!(
                        "marker id `{}` is not SCREAMING_SNAKE_CASE",
                        marker.id
                    )));
                }
                if !ids.insert(marker.id.as_str()) {
                    return Err(ContractError(format!(
                        "marker id `{}` appears twice",
                        marker.id
                    )));
                }
                if !texts.insert(marker.text.as_str()) {
                    return Err(ContractError(format!(
                        "marker text {:?} appears twice",
                        marker.text
                    )));
                }
                if marker.owner().is_none() {
                    return Err(ContractError(format!(
                        "{}: text must start with `<owner>: `",
                        marker.id
                    )));
                }
                marker.template()?;
                if contract
                    .failure_patterns
                    .iter()
                    .any(|p| marker.text.contains(p.as_str()))
                {
                    return Err(ContractError(format!(
                        "{}: text contains a failure pattern",
                        marker.id
                    )));
                }
            }
        }
        Ok(contract)
    }

    /// The names of the phases, in order.
    pub fn phase_names(&self) -> Vec<&str> {
        self.phases.iter().map(|p| p.name.as_str()).collect()
    }

    /// Every marker up to and including phase `name`, each with its phase's name.
    ///
    /// # Errors
    /// No such phase (the message lists the phases).
    pub fn ladder(&self, name: &str) -> Result<Vec<(&str, &Marker)>, ContractError> {
        let end = self
            .phases
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| {
                ContractError(format!(
                    "no phase `{name}` (phases: {})",
                    self.phase_names().join(", ")
                ))
            })?;
        Ok(self.phases[..=end]
            .iter()
            .flat_map(|phase| phase.markers.iter().map(move |m| (phase.name.as_str(), m)))
            .collect())
    }

    /// Every marker of every phase.
    pub fn all_markers(&self) -> impl Iterator<Item = &Marker> {
        self.phases.iter().flat_map(|p| p.markers.iter())
    }
}

/// Where a run stands against its ladder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Still waiting for marker `next` (an index into the ladder).
    Waiting {
        /// Index of the next expected marker.
        next: usize,
    },
    /// Every marker came, in order.
    Passed,
    /// A line matched a failure pattern.
    FailurePattern {
        /// The pattern.
        pattern: String,
        /// The line.
        line: String,
    },
    /// A later marker came while an earlier one was still expected.
    OutOfOrder {
        /// Index of the marker expected.
        expected: usize,
        /// Index of the marker that came.
        got: usize,
    },
}

/// Follows a console stream against a ladder.
pub struct Ladder<'c> {
    markers: Vec<(&'c str, &'c Marker)>,
    failure_patterns: &'c [String],
    values: BTreeMap<String, String>,
    verdict: Verdict,
    seen_at: Vec<Option<usize>>,
    lines: usize,
}

impl<'c> Ladder<'c> {
    /// A ladder for phase `phase` of `contract`, with known placeholder values.
    ///
    /// # Errors
    /// No such phase.
    pub fn new(
        contract: &'c Contract,
        phase: &str,
        values: BTreeMap<String, String>,
    ) -> Result<Self, ContractError> {
        let markers = contract.ladder(phase)?;
        let count = markers.len();
        Ok(Self {
            markers,
            failure_patterns: &contract.failure_patterns,
            values,
            verdict: Verdict::Waiting { next: 0 },
            seen_at: vec![None; count],
            lines: 0,
        })
    }

    /// Takes one console line and returns the verdict so far. Once the verdict is no
    /// longer `Waiting`, further lines do not change it.
    pub fn feed(&mut self, line: &str) -> &Verdict {
        self.lines += 1;
        let Verdict::Waiting { next } = self.verdict else {
            return &self.verdict;
        };
        if let Some(pattern) = self
            .failure_patterns
            .iter()
            .find(|p| line.contains(p.as_str()))
        {
            self.verdict = Verdict::FailurePattern {
                pattern: pattern.clone(),
                line: line.to_owned(),
            };
            return &self.verdict;
        }
        if self.markers[next].1.matches(line, &self.values) {
            self.seen_at[next] = Some(self.lines);
            self.verdict = if next + 1 == self.markers.len() {
                Verdict::Passed
            } else {
                Verdict::Waiting { next: next + 1 }
            };
        } else if let Some(got) =
            (next + 1..self.markers.len()).find(|&i| self.markers[i].1.matches(line, &self.values))
        {
            self.verdict = Verdict::OutOfOrder {
                expected: next,
                got,
            };
        }
        &self.verdict
    }

    /// The verdict so far.
    pub fn verdict(&self) -> &Verdict {
        &self.verdict
    }

    /// The phase and marker at ladder index `index`.
    pub fn marker(&self, index: usize) -> (&'c str, &'c Marker) {
        self.markers[index]
    }

    /// How many markers the ladder has.
    pub fn len(&self) -> usize {
        self.markers.len()
    }

    /// Whether the ladder is empty (never, for a parsed contract).
    pub fn is_empty(&self) -> bool {
        self.markers.is_empty()
    }

    /// How many markers have been seen, in order.
    pub fn reached(&self) -> usize {
        match self.verdict {
            Verdict::Passed => self.markers.len(),
            _ => self.seen_at.iter().take_while(|s| s.is_some()).count(),
        }
    }

    /// Explains a run that ended (stream closed or timed out) with this verdict: which
    /// phase and marker did not come, or what failed.
    pub fn explain(&self, ended_by: &str) -> String {
        match &self.verdict {
            Verdict::Passed => format!("passed: all {} markers, in order", self.markers.len()),
            Verdict::Waiting { next } => {
                let (phase, marker) = self.markers[*next];
                format!(
                    "{ended_by} while waiting for marker {:?} of phase `{phase}`",
                    marker.text
                )
            }
            Verdict::FailurePattern { pattern, line } => {
                let (phase, marker) = self.markers[self.reached().min(self.markers.len() - 1)];
                format!(
                    "failure pattern {pattern:?} in line {line:?} (waiting for {:?} of phase `{phase}`)",
                    marker.text
                )
            }
            Verdict::OutOfOrder { expected, got } => {
                let (phase, marker) = self.markers[*expected];
                format!(
                    "marker {:?} came before {:?} of phase `{phase}`",
                    self.markers[*got].1.text, marker.text
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTRACT: &str = r#"
        failure_patterns = ["FAIL", "panic"]
        [[phase]]
        name = "bring-up"
        markers = [
            { id = "KERNEL_PROVIDER", text = "KERNEL: provider {provider}" },
            { id = "LOGD_READY", text = "logd: ready" },
        ]
        [[phase]]
        name = "identity"
        markers = [
            { id = "RNGD_READY", text = "rngd: ready" },
            { id = "KEY", text = "keystored: device pubkey {hex}" },
        ]
    "#;

    fn values() -> BTreeMap<String, String> {
        [("provider".to_owned(), "dalek+chacha".to_owned())].into()
    }

    fn run(phase: &str, lines: &[&str]) -> (Verdict, String) {
        let contract = Contract::parse(CONTRACT).unwrap();
        let mut ladder = Ladder::new(&contract, phase, values()).unwrap();
        for line in lines {
            ladder.feed(line);
        }
        (ladder.verdict().clone(), ladder.explain("timeout"))
    }

    #[test]
    fn in_order_passes_and_noise_between_markers_is_fine() {
        let lines = [
            "OpenSBI v1.1",
            "KERNEL: provider dalek+chacha",
            "info",
            "logd: ready",
            "rngd: ready",
            "keystored: device pubkey ab12",
        ];
        assert_eq!(run("identity", &lines).0, Verdict::Passed);
        assert_eq!(
            run("bring-up", &lines[..4]).0,
            Verdict::Passed,
            "a phase needs only its own prefix"
        );
    }

    #[test]
    fn out_of_order_fails_and_names_both_markers() {
        let (verdict, why) = run(
            "identity",
            &[
                "KERNEL: provider dalek+chacha",
                "rngd: ready",
                "logd: ready",
            ],
        );
        assert_eq!(
            verdict,
            Verdict::OutOfOrder {
                expected: 1,
                got: 2
            }
        );
        assert_eq!(
            why,
            "marker \"rngd: ready\" came before \"logd: ready\" of phase `bring-up`"
        );
    }

    #[test]
    fn a_missing_marker_names_its_phase() {
        let (verdict, why) = run(
            "identity",
            &[
                "KERNEL: provider dalek+chacha",
                "logd: ready",
                "rngd: ready",
            ],
        );
        assert_eq!(verdict, Verdict::Waiting { next: 3 });
        assert_eq!(
            why,
            "timeout while waiting for marker \"keystored: device pubkey {hex}\" of phase `identity`"
        );
    }

    #[test]
    fn a_failure_pattern_stops_the_run_even_after_markers() {
        let (verdict, why) = run(
            "identity",
            &[
                "KERNEL: provider dalek+chacha",
                "KERNEL: panic in task rngd: boom",
                "logd: ready",
            ],
        );
        assert_eq!(
            verdict,
            Verdict::FailurePattern {
                pattern: "panic".into(),
                line: "KERNEL: panic in task rngd: boom".into()
            }
        );
        assert!(
            why.contains("waiting for \"logd: ready\" of phase `bring-up`"),
            "{why}"
        );
    }

    #[test]
    fn the_banner_must_name_the_expected_provider() {
        let (verdict, _) = run(
            "bring-up",
            &["KERNEL: provider compact+chacha", "logd: ready"],
        );
        assert_eq!(
            verdict,
            Verdict::OutOfOrder {
                expected: 0,
                got: 1
            },
            "wrong provider is not the banner"
        );
    }

    #[test]
    fn placeholders_without_a_value_match_one_word() {
        let contract = Contract::parse(CONTRACT).unwrap();
        let key = &contract.phases[1].markers[1];
        assert!(key.matches("keystored: device pubkey 00ff", &values()));
        assert!(!key.matches("keystored: device pubkey ", &values()));
        assert!(!key.matches("keystored: device pubkey a b", &values()));
        assert!(!key.matches("xkeystored: device pubkey 00", &values()));
    }

    #[test]
    fn unknown_phase_and_malformed_contracts_are_errors() {
        let contract = Contract::parse(CONTRACT).unwrap();
        assert!(
            contract
                .ladder("dsoftbus")
                .unwrap_err()
                .0
                .contains("phases: bring-up, identity")
        );
        let duplicate = CONTRACT.replace("RNGD_READY", "LOGD_READY");
        assert!(
            Contract::parse(&duplicate)
                .unwrap_err()
                .0
                .contains("appears twice")
        );
        let two_placeholders = CONTRACT.replace("device pubkey {hex}", "{a} {b}");
        assert!(Contract::parse(&two_placeholders).is_err());
        let bad_pattern = CONTRACT.replace("logd: ready", "logd: FAIL");
        assert!(
            Contract::parse(&bad_pattern)
                .unwrap_err()
                .0
                .contains("failure pattern")
        );
    }

    #[test]
    fn the_repository_contract_is_valid() {
        let text = include_str!("../../markers.toml");
        let contract = Contract::parse(text).unwrap();
        assert_eq!(contract.phase_names().first(), Some(&"bring-up"));
        assert_eq!(contract.phase_names().last(), Some(&"full"));
    }
}
