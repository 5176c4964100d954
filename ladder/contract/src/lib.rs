//! The marker contract: reading `ladder/markers.toml` and judging a console stream.
//!
//! [`Contract::parse`] validates the file (ids unique and in `SCREAMING_SNAKE_CASE`,
//! texts unique, placeholders named once and separated by text, phases non-empty and unique,
//! scenarios built on a known phase and forbidding known markers).
//!
//! An [`Expectation`] is what one run must show: the markers of a phase and of every
//! phase before it (or of a scenario: its base phase plus its own markers), and the
//! markers that must never appear. A [`Ladder`] follows a console stream against it.
//!
//! **Order.** Each task prints its own markers in ladder order, and the ladder checks
//! exactly that: a marker that arrives while an earlier marker *of the same owner* is
//! still missing fails the run as out of order. Markers of different tasks may
//! interleave, as concurrent tasks do; causal order between tasks is proven by the
//! tasks themselves (the selftest prints `device key pubkey ok` only after keystored
//! answered).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;

/// The failure pattern `line` shows, if it shows one where a task or the kernel puts
/// one: at the start of the line (`KERNEL: trap`), or at the start of its message, the
/// text after the console prefix and `": "` (`FAIL ...`, `panic in task ...`). Text
/// inside a message is never matched: a line that quotes bytes a network peer chose
/// (`dsoftbusd: suite mismatch: ours ..., peer FAIL,panic`) cannot fail a run.
pub fn failure_in<'p>(line: &str, patterns: &'p [String]) -> Option<&'p String> {
    let message = line.split_once(": ").map_or(line, |(_, message)| message);
    patterns
        .iter()
        .find(|p| line.starts_with(p.as_str()) || message.starts_with(p.as_str()))
}

/// The whole contract.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    /// A line that starts with one of these, or whose message (after the console
    /// prefix) does, fails the run ([`failure_in`]).
    pub failure_patterns: Vec<String>,
    /// The phases, in order.
    #[serde(rename = "phase")]
    pub phases: Vec<Phase>,
    /// Markers that only scenarios expect (fail-closed outcomes).
    #[serde(rename = "scenario_marker", default)]
    pub scenario_markers: Vec<Marker>,
    /// Runs with a different expected outcome (no entropy device, a failing source).
    #[serde(rename = "scenario", default)]
    pub scenarios: Vec<Scenario>,
}

/// A named group of markers.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    /// `bring-up`, `identity`, ...
    pub name: String,
    /// Its markers, each task's in the order that task prints them.
    pub markers: Vec<Marker>,
}

/// A run whose expected outcome differs from the normal ladder.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// `no-rng`, ...
    pub name: String,
    /// What the scenario sets up and expects.
    pub description: String,
    /// The phase whose ladder must still pass; none for an image without the
    /// selftest (the production image), whose scenario lists every marker it expects.
    #[serde(default)]
    pub base_phase: Option<String>,
    /// Ids of the markers this scenario adds after the base ladder: scenario markers,
    /// or, without a base phase, any marker.
    pub expect: Vec<String>,
    /// Ids of markers that must not appear at all.
    pub forbidden: Vec<String>,
}

/// One marker.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Marker {
    /// The constant name in the generated `markers` crate.
    pub id: String,
    /// The whole console line, with `{placeholder}`s separated by literal text.
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

/// One piece of a marker text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part<'a> {
    /// Text the line must hold as is.
    Literal(&'a str),
    /// A `{name}`: one word without spaces.
    Placeholder(&'a str),
}

/// A marker text split into literal text and named placeholders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template<'a> {
    /// The pieces, in order. Two placeholders are always separated by literal text.
    pub parts: Vec<Part<'a>>,
}

impl Template<'_> {
    /// The placeholders' names, in order.
    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Placeholder(name) => Some(*name),
            Part::Literal(_) => None,
        })
    }
}

impl Marker {
    /// The text split into literal text and placeholders.
    ///
    /// # Errors
    /// An unclosed brace, a stray `}`, an empty or repeated name, or two placeholders
    /// with no text between them (the line could not be split).
    pub fn template(&self) -> Result<Template<'_>, ContractError> {
        let bad = |why: &str| ContractError(format!("{}: {why} in {:?}", self.id, self.text));
        let mut parts = Vec::new();
        let mut rest = self.text.as_str();
        while !rest.is_empty() {
            match rest.find('{') {
                None => {
                    if rest.contains('}') {
                        return Err(bad("stray `}`"));
                    }
                    parts.push(Part::Literal(rest));
                    break;
                }
                Some(open) => {
                    if rest[..open].contains('}') {
                        return Err(bad("stray `}`"));
                    }
                    if open > 0 {
                        parts.push(Part::Literal(&rest[..open]));
                    }
                    let close = rest[open..]
                        .find('}')
                        .map(|i| open + i)
                        .ok_or_else(|| bad("unclosed `{`"))?;
                    let name = &rest[open + 1..close];
                    if name.is_empty() || name.contains('{') {
                        return Err(bad("a placeholder needs a name"));
                    }
                    if matches!(parts.last(), Some(Part::Placeholder(_))) {
                        return Err(bad("two placeholders need text between them"));
                    }
                    if parts.contains(&Part::Placeholder(name)) {
                        return Err(bad("a placeholder name appears twice"));
                    }
                    parts.push(Part::Placeholder(name));
                    rest = &rest[close + 1..];
                }
            }
        }
        Ok(Template { parts })
    }

    /// The console prefix that owns this marker: the text before the first `": "`.
    pub fn owner(&self) -> Option<&str> {
        self.text.split_once(": ").map(|(owner, _)| owner)
    }

    /// If `line` is this marker, each placeholder's name and value (empty when there
    /// is none). Placeholders with a value in `values` must equal it; others match any
    /// non-empty word. A placeholder's value ends where the literal text after it
    /// first appears.
    pub fn capture<'l>(
        &self,
        line: &'l str,
        values: &BTreeMap<String, String>,
    ) -> Option<Vec<(&str, &'l str)>> {
        let template = self.template().ok()?;
        let mut rest = line.trim_end();
        let mut captured = Vec::new();
        let mut parts = template.parts.iter().peekable();
        while let Some(part) = parts.next() {
            match part {
                Part::Literal(text) => rest = rest.strip_prefix(text)?,
                Part::Placeholder(name) => {
                    let end = match parts.peek() {
                        Some(Part::Literal(next)) => rest.find(next)?,
                        _ => rest.len(),
                    };
                    let value = &rest[..end];
                    let fits = match values.get(*name) {
                        Some(expected) => value == expected,
                        None => !value.is_empty() && !value.contains(char::is_whitespace),
                    };
                    if !fits {
                        return None;
                    }
                    captured.push((*name, value));
                    rest = &rest[end..];
                }
            }
        }
        rest.is_empty().then_some(captured)
    }

    /// Whether `line` is this marker (see [`Marker::capture`]).
    pub fn matches(&self, line: &str, values: &BTreeMap<String, String>) -> bool {
        self.capture(line, values).is_some()
    }
}

fn check_marker(
    marker: &Marker,
    patterns: &[String],
    ids: &mut BTreeSet<String>,
    texts: &mut BTreeSet<String>,
) -> Result<(), ContractError> {
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
    if !ids.insert(marker.id.clone()) {
        return Err(ContractError(format!(
            "marker id `{}` appears twice",
            marker.id
        )));
    }
    if !texts.insert(marker.text.clone()) {
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
    if patterns.iter().any(|p| marker.text.contains(p.as_str())) {
        return Err(ContractError(format!(
            "{}: text contains a failure pattern",
            marker.id
        )));
    }
    Ok(())
}

/// What one run must show.
#[derive(Clone, Debug)]
pub struct Expectation<'c> {
    /// What is being run: a phase or a scenario name.
    pub name: String,
    /// Required markers with the phase or scenario each belongs to, in ladder order.
    pub required: Vec<(&'c str, &'c Marker)>,
    /// Markers that fail the run if they appear.
    pub forbidden: Vec<&'c Marker>,
    /// Lines containing these fail the run.
    pub failure_patterns: &'c [String],
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
                check_marker(marker, &contract.failure_patterns, &mut ids, &mut texts)?;
            }
        }
        for marker in &contract.scenario_markers {
            check_marker(marker, &contract.failure_patterns, &mut ids, &mut texts)?;
        }
        for scenario in &contract.scenarios {
            if !names.insert(scenario.name.as_str()) {
                return Err(ContractError(format!(
                    "scenario `{}` reuses a phase or scenario name",
                    scenario.name
                )));
            }
            let base = match &scenario.base_phase {
                Some(phase) => contract
                    .ladder(phase)
                    .map_err(|e| ContractError(format!("scenario `{}`: {e}", scenario.name)))?,
                None => Vec::new(),
            };
            if scenario.expect.is_empty() {
                return Err(ContractError(format!(
                    "scenario `{}` expects no marker",
                    scenario.name
                )));
            }
            for (at, id) in scenario.expect.iter().enumerate() {
                let known = if scenario.base_phase.is_some() {
                    contract.scenario_markers.iter().any(|m| &m.id == id)
                } else {
                    contract.all_markers().any(|m| &m.id == id)
                };
                if !known {
                    return Err(ContractError(format!(
                        "scenario `{}` expects `{id}`, which is not a {}",
                        scenario.name,
                        if scenario.base_phase.is_some() {
                            "scenario_marker (a scenario with a base phase adds only those)"
                        } else {
                            "marker"
                        }
                    )));
                }
                if scenario.expect[..at].contains(id) {
                    return Err(ContractError(format!(
                        "scenario `{}` expects `{id}` twice",
                        scenario.name
                    )));
                }
            }
            // A run must see each task's markers in ladder order, so a scenario that
            // lists two of one task's markers the other way round can never pass.
            // (Scenario markers have no place in the ladder: only phase markers count.)
            let phase_markers: Vec<&Marker> = contract
                .phases
                .iter()
                .flat_map(|p| p.markers.iter())
                .collect();
            let place = |id: &str| {
                phase_markers.iter().position(|m| m.id == id).map(|at| {
                    let text = &phase_markers[at].text;
                    (text.split(':').next().unwrap_or("").to_owned(), at)
                })
            };
            for (at, later) in scenario.expect.iter().enumerate() {
                for earlier in &scenario.expect[..at] {
                    if let (Some((a, pa)), Some((b, pb))) = (place(earlier), place(later))
                        && a == b
                        && pa > pb
                    {
                        return Err(ContractError(format!(
                            "scenario `{}` expects `{earlier}` before `{later}`, but the ladder has {a}'s markers the other way round",
                            scenario.name
                        )));
                    }
                }
            }
            for id in &scenario.forbidden {
                if !ids.contains(id) {
                    return Err(ContractError(format!(
                        "scenario `{}` forbids unknown marker `{id}`",
                        scenario.name
                    )));
                }
                if base.iter().any(|(_, m)| &m.id == id) || scenario.expect.contains(id) {
                    return Err(ContractError(format!(
                        "scenario `{}` both expects and forbids `{id}`",
                        scenario.name
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

    /// Every marker of every phase, then the scenario markers.
    pub fn all_markers(&self) -> impl Iterator<Item = &Marker> {
        self.phases
            .iter()
            .flat_map(|p| p.markers.iter())
            .chain(self.scenario_markers.iter())
    }

    fn marker(&self, id: &str) -> Option<&Marker> {
        self.all_markers().find(|m| m.id == id)
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

    /// What a run of `phase` must show, or of `scenario` when one is given.
    ///
    /// # Errors
    /// No such phase or scenario.
    pub fn expectation(
        &self,
        phase: &str,
        scenario: Option<&str>,
    ) -> Result<Expectation<'_>, ContractError> {
        let Some(name) = scenario else {
            return Ok(Expectation {
                name: phase.to_owned(),
                required: self.ladder(phase)?,
                forbidden: Vec::new(),
                failure_patterns: &self.failure_patterns,
            });
        };
        let scenario = self
            .scenarios
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self.scenarios.iter().map(|s| s.name.as_str()).collect();
                ContractError(format!(
                    "no scenario `{name}` (scenarios: {})",
                    known.join(", ")
                ))
            })?;
        let mut required = match &scenario.base_phase {
            Some(phase) => self.ladder(phase)?,
            None => Vec::new(),
        };
        required.extend(
            scenario
                .expect
                .iter()
                .filter_map(|id| self.marker(id))
                .map(|m| (scenario.name.as_str(), m)),
        );
        let forbidden = scenario
            .forbidden
            .iter()
            .filter_map(|id| self.marker(id))
            .collect();
        Ok(Expectation {
            name: name.to_owned(),
            required,
            forbidden,
            failure_patterns: &self.failure_patterns,
        })
    }
}

/// Where a run stands against its expectation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Still waiting for marker `next` (the first missing one, an index into the
    /// required markers).
    Waiting {
        /// Index of the first missing marker.
        next: usize,
    },
    /// Every required marker came, each task's in order.
    Passed,
    /// A line matched a failure pattern.
    FailurePattern {
        /// The pattern.
        pattern: String,
        /// The line.
        line: String,
    },
    /// A forbidden marker appeared.
    Forbidden {
        /// The line.
        line: String,
    },
    /// A marker came while an earlier marker of the same task was still missing.
    OutOfOrder {
        /// Index of the missing marker.
        expected: usize,
        /// Index of the marker that came.
        got: usize,
    },
}

/// Follows a console stream against an [`Expectation`].
pub struct Ladder<'c> {
    expectation: Expectation<'c>,
    values: BTreeMap<String, String>,
    verdict: Verdict,
    seen: Vec<bool>,
    captured: BTreeMap<String, String>,
}

impl<'c> Ladder<'c> {
    /// A ladder for `expectation`, with known placeholder values.
    pub fn new(expectation: Expectation<'c>, values: BTreeMap<String, String>) -> Self {
        let count = expectation.required.len();
        Self {
            expectation,
            values,
            verdict: Verdict::Waiting { next: 0 },
            seen: vec![false; count],
            captured: BTreeMap::new(),
        }
    }

    /// Takes one console line and returns the verdict so far. A failure is final; a
    /// pass turns into a failure only if a forbidden marker appears later (they must
    /// never appear at all).
    pub fn feed(&mut self, line: &str) -> &Verdict {
        if self.verdict == Verdict::Passed
            && self
                .expectation
                .forbidden
                .iter()
                .any(|m| m.matches(line, &self.values))
        {
            self.verdict = Verdict::Forbidden {
                line: line.to_owned(),
            };
        }
        if !matches!(self.verdict, Verdict::Waiting { .. }) {
            return &self.verdict;
        }
        if let Some(pattern) = failure_in(line, self.expectation.failure_patterns) {
            self.verdict = Verdict::FailurePattern {
                pattern: pattern.clone(),
                line: line.to_owned(),
            };
            return &self.verdict;
        }
        if self
            .expectation
            .forbidden
            .iter()
            .any(|m| m.matches(line, &self.values))
        {
            self.verdict = Verdict::Forbidden {
                line: line.to_owned(),
            };
            return &self.verdict;
        }
        let required = &self.expectation.required;
        let hit = (0..required.len())
            .filter(|&i| !self.seen[i])
            .find_map(|i| {
                required[i]
                    .1
                    .capture(line, &self.values)
                    .map(|values| (i, values))
            });
        if let Some((got, values)) = hit {
            let owner = required[got].1.owner();
            if let Some(expected) =
                (0..got).find(|&j| !self.seen[j] && required[j].1.owner() == owner)
            {
                self.verdict = Verdict::OutOfOrder { expected, got };
                return &self.verdict;
            }
            self.seen[got] = true;
            for (name, value) in values {
                self.captured.insert(name.to_owned(), value.to_owned());
            }
        }
        self.verdict = match self.seen.iter().position(|seen| !seen) {
            Some(next) => Verdict::Waiting { next },
            None => Verdict::Passed,
        };
        &self.verdict
    }

    /// The verdict so far.
    pub fn verdict(&self) -> &Verdict {
        &self.verdict
    }

    /// The label (phase or scenario) and marker at index `index`.
    pub fn marker(&self, index: usize) -> (&'c str, &'c Marker) {
        self.expectation.required[index]
    }

    /// How many markers are required.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether nothing is required (never, for a parsed contract).
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// How many required markers have been seen.
    pub fn reached(&self) -> usize {
        self.seen.iter().filter(|s| **s).count()
    }

    /// Whether every marker labelled `label` has been seen.
    pub fn label_complete(&self, label: &str) -> bool {
        self.expectation
            .required
            .iter()
            .zip(&self.seen)
            .filter(|((l, _), _)| *l == label)
            .all(|(_, seen)| *seen)
    }

    /// Placeholder values read from the markers seen, such as `pubkey`.
    pub fn captured(&self) -> &BTreeMap<String, String> {
        &self.captured
    }

    /// Explains a run that ended (stream closed or timed out) with this verdict: which
    /// phase and marker did not come, or what failed.
    pub fn explain(&self, ended_by: &str) -> String {
        let missing = || {
            self.seen.iter().position(|s| !s).map(|i| {
                let (label, marker) = self.marker(i);
                format!("{:?} of `{label}`", marker.text)
            })
        };
        match &self.verdict {
            Verdict::Passed => format!(
                "passed: all {} markers of `{}`",
                self.len(),
                self.expectation.name
            ),
            Verdict::Waiting { next } => {
                let (label, marker) = self.marker(*next);
                format!(
                    "{ended_by} while waiting for marker {:?} of `{label}`",
                    marker.text
                )
            }
            Verdict::FailurePattern { pattern, line } => format!(
                "failure pattern {pattern:?} in line {line:?}{}",
                missing().map_or(String::new(), |m| format!(" (waiting for {m})"))
            ),
            Verdict::Forbidden { line } => format!(
                "forbidden marker {line:?} in scenario `{}`",
                self.expectation.name
            ),
            Verdict::OutOfOrder { expected, got } => {
                let (label, marker) = self.marker(*expected);
                format!(
                    "marker {:?} came before {:?} of `{label}`",
                    self.marker(*got).1.text,
                    marker.text
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
            { id = "SELFTEST_IPC", text = "SELFTEST: ipc ok" },
        ]
        [[phase]]
        name = "identity"
        markers = [
            { id = "RNGD_READY", text = "rngd: ready" },
            { id = "KEY", text = "keystored: device pubkey {pubkey}" },
            { id = "SELFTEST_KEY", text = "SELFTEST: key ok" },
        ]
        [[scenario_marker]]
        id = "RNGD_NONE"
        text = "rngd: no device"
        [[scenario]]
        name = "no-rng"
        description = "no device"
        base_phase = "bring-up"
        expect = ["RNGD_NONE"]
        forbidden = ["RNGD_READY", "KEY"]
    "#;

    fn values() -> BTreeMap<String, String> {
        [("provider".to_owned(), "dalek+chacha".to_owned())].into()
    }

    fn run_with(
        phase: &str,
        scenario: Option<&str>,
        lines: &[&str],
    ) -> (Verdict, String, BTreeMap<String, String>) {
        let contract = Contract::parse(CONTRACT).unwrap();
        let mut ladder = Ladder::new(contract.expectation(phase, scenario).unwrap(), values());
        for line in lines {
            ladder.feed(line);
        }
        (
            ladder.verdict().clone(),
            ladder.explain("timeout"),
            ladder.captured().clone(),
        )
    }

    fn run(phase: &str, lines: &[&str]) -> (Verdict, String) {
        let (verdict, why, _) = run_with(phase, None, lines);
        (verdict, why)
    }

    #[test]
    fn in_order_passes_and_tasks_may_interleave() {
        let lines = [
            "OpenSBI v1.1",
            "KERNEL: provider dalek+chacha",
            "logd: ready",
            "rngd: ready",
            "SELFTEST: ipc ok",
            "keystored: device pubkey ab12",
            "SELFTEST: key ok",
        ];
        let (verdict, _, captured) = run_with("identity", None, &lines);
        assert_eq!(verdict, Verdict::Passed);
        assert_eq!(captured.get("pubkey").map(String::as_str), Some("ab12"));
        assert_eq!(
            run("bring-up", &lines).0,
            Verdict::Passed,
            "later phases' markers are ignored"
        );
    }

    #[test]
    fn out_of_order_within_a_task_fails_and_names_both_markers() {
        let (verdict, why) = run(
            "identity",
            &[
                "KERNEL: provider dalek+chacha",
                "logd: ready",
                "SELFTEST: key ok",
                "SELFTEST: ipc ok",
            ],
        );
        assert_eq!(
            verdict,
            Verdict::OutOfOrder {
                expected: 2,
                got: 5
            }
        );
        assert_eq!(
            why,
            "marker \"SELFTEST: key ok\" came before \"SELFTEST: ipc ok\" of `bring-up`"
        );
    }

    #[test]
    fn a_missing_marker_names_its_phase() {
        let (verdict, why) = run(
            "identity",
            &[
                "KERNEL: provider dalek+chacha",
                "logd: ready",
                "SELFTEST: ipc ok",
                "rngd: ready",
                "SELFTEST: key ok",
            ],
        );
        assert_eq!(verdict, Verdict::Waiting { next: 4 });
        assert_eq!(
            why,
            "timeout while waiting for marker \"keystored: device pubkey {pubkey}\" of `identity`"
        );
    }

    #[test]
    fn a_failure_pattern_stops_the_run() {
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
            why.contains("waiting for \"logd: ready\" of `bring-up`"),
            "{why}"
        );
    }

    #[test]
    fn failure_patterns_count_only_where_a_task_puts_them() {
        // Bytes a peer chose, quoted inside a message, are not a failure.
        let (verdict, _) = run(
            "bring-up",
            &[
                "KERNEL: provider dalek+chacha",
                "dsoftbusd: suite mismatch: ours Noise_XK_25519_ChaChaPoly_BLAKE2s, peer FAIL,panic",
                "dsoftbusd: session closed: peer said KERNEL: trap",
                "KERNEL: heap ready",
            ],
        );
        assert!(matches!(verdict, Verdict::Waiting { .. }), "{verdict:?}");
        // At the start of a message, or of the line, they are.
        let patterns = ["FAIL".to_owned(), "panic".into(), "KERNEL: trap".into()];
        for (line, pattern) in [
            (
                "SELFTEST: FAIL SELFTEST: rng entropy ok: short read",
                "FAIL",
            ),
            ("netstackd: FAIL the network device stopped", "FAIL"),
            ("KERNEL: panic in task rngd: boom", "panic"),
            ("rngd: panic: index out of bounds", "panic"),
            ("KERNEL: trap: load page fault at 0x0", "KERNEL: trap"),
        ] {
            assert_eq!(
                failure_in(line, &patterns).map(String::as_str),
                Some(pattern),
                "{line}"
            );
        }
        assert_eq!(failure_in("rngd: ready, no FAIL here", &patterns), None);
    }

    #[test]
    fn a_scenario_listing_one_tasks_markers_out_of_ladder_order_is_refused() {
        let scenario = |expect: &str| {
            format!(
                "{CONTRACT}
                [[scenario]]
                name = \"device\"
                description = \"no selftest\"
                expect = [{expect}]
                forbidden = []
                "
            )
        };
        Contract::parse(&scenario(
            "\"LOGD_READY\", \"KERNEL_PROVIDER\", \"RNGD_READY\"",
        ))
        .expect("another task's marker may come first");
        let err = Contract::parse(&scenario("\"KEY\", \"SELFTEST_KEY\", \"SELFTEST_IPC\""))
            .expect_err("SELFTEST's markers the other way round");
        assert!(err.0.contains("SELFTEST_KEY"), "{err}");
    }

    #[test]
    fn the_banner_must_name_the_expected_provider() {
        let (verdict, why) = run(
            "bring-up",
            &[
                "KERNEL: provider compact+chacha",
                "logd: ready",
                "SELFTEST: ipc ok",
            ],
        );
        assert_eq!(
            verdict,
            Verdict::Waiting { next: 0 },
            "wrong provider is not the banner"
        );
        assert!(why.contains("KERNEL: provider {provider}"));
    }

    #[test]
    fn scenarios_add_markers_and_forbid_others() {
        let base = [
            "KERNEL: provider dalek+chacha",
            "logd: ready",
            "rngd: no device",
            "SELFTEST: ipc ok",
        ];
        assert_eq!(run_with("full", Some("no-rng"), &base).0, Verdict::Passed);
        let mut leaked = base.to_vec();
        leaked.insert(2, "keystored: device pubkey 00");
        let (verdict, why, _) = run_with("full", Some("no-rng"), &leaked);
        assert_eq!(
            verdict,
            Verdict::Forbidden {
                line: "keystored: device pubkey 00".into()
            }
        );
        assert!(why.contains("scenario `no-rng`"), "{why}");
        let mut late = base.to_vec();
        late.push("rngd: ready");
        assert_eq!(
            run_with("full", Some("no-rng"), &late).0,
            Verdict::Forbidden {
                line: "rngd: ready".into()
            }
        );
    }

    #[test]
    fn several_placeholders_split_on_the_text_between_them() {
        let marker = Marker {
            id: "X".into(),
            text: "keystored: sealed with {sealed}, this image has {image}".into(),
        };
        let captured = marker
            .capture(
                "keystored: sealed with ChaCha20-Poly1305, this image has AES-256-GCM",
                &values(),
            )
            .unwrap();
        assert_eq!(
            captured,
            [("sealed", "ChaCha20-Poly1305"), ("image", "AES-256-GCM")]
        );
        let known = BTreeMap::from([("image".to_owned(), "AES-256-GCM".to_owned())]);
        assert!(marker.matches(
            "keystored: sealed with x, this image has AES-256-GCM",
            &known
        ));
        assert!(!marker.matches(
            "keystored: sealed with x, this image has ChaCha20-Poly1305",
            &known
        ));
        assert!(!marker.matches("keystored: sealed with x, this image has", &values()));
        assert!(!marker.matches("keystored: sealed with , this image has y", &values()));
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
    fn unknown_names_and_malformed_contracts_are_errors() {
        let contract = Contract::parse(CONTRACT).unwrap();
        assert!(
            contract
                .ladder("dsoftbus")
                .unwrap_err()
                .0
                .contains("phases: bring-up, identity")
        );
        assert!(
            contract
                .expectation("full", Some("x"))
                .unwrap_err()
                .0
                .contains("scenarios: no-rng")
        );
        let duplicate = CONTRACT.replace("RNGD_READY", "LOGD_READY");
        assert!(
            Contract::parse(&duplicate)
                .unwrap_err()
                .0
                .contains("appears twice")
        );
        let adjacent = CONTRACT.replace("device pubkey {pubkey}", "{a}{b}");
        assert!(Contract::parse(&adjacent).is_err());
        let repeated = CONTRACT.replace("device pubkey {pubkey}", "{a} {a}");
        assert!(Contract::parse(&repeated).is_err());
        let unclosed = CONTRACT.replace("device pubkey {pubkey}", "{a");
        assert!(Contract::parse(&unclosed).is_err());
        let bad_pattern = CONTRACT.replace("logd: ready", "logd: FAIL");
        assert!(
            Contract::parse(&bad_pattern)
                .unwrap_err()
                .0
                .contains("failure pattern")
        );
        let contradictory = CONTRACT.replace(
            "forbidden = [\"RNGD_READY\", \"KEY\"]",
            "forbidden = [\"LOGD_READY\"]",
        );
        assert!(
            Contract::parse(&contradictory)
                .unwrap_err()
                .0
                .contains("both expects and forbids")
        );
        let bad_expect = CONTRACT.replace("expect = [\"RNGD_NONE\"]", "expect = [\"RNGD_READY\"]");
        assert!(
            Contract::parse(&bad_expect)
                .unwrap_err()
                .0
                .contains("not a scenario_marker")
        );
        let bad_forbid = CONTRACT.replace(
            "forbidden = [\"RNGD_READY\", \"KEY\"]",
            "forbidden = [\"NOPE\"]",
        );
        assert!(
            Contract::parse(&bad_forbid)
                .unwrap_err()
                .0
                .contains("unknown marker `NOPE`")
        );
    }

    #[test]
    fn the_repository_contract_is_valid() {
        let text = include_str!("../../markers.toml");
        let contract = Contract::parse(text).unwrap();
        assert_eq!(contract.phase_names().first(), Some(&"bring-up"));
        assert_eq!(contract.phase_names().last(), Some(&"full"));
    }

    /// The production image has no selftest: its scenario has no base phase and names
    /// the phase markers it expects, in each task's order.
    #[test]
    fn a_scenario_without_a_base_phase_expects_exactly_its_own_list() {
        let text = format!(
            "{CONTRACT}
            [[scenario]]
            name = \"device\"
            description = \"no selftest\"
            expect = [\"KERNEL_PROVIDER\", \"LOGD_READY\", \"RNGD_READY\", \"KEY\"]
            forbidden = [\"SELFTEST_IPC\"]
            "
        );
        let contract = Contract::parse(&text).unwrap();
        let run = |lines: &[&str]| {
            let mut ladder = Ladder::new(
                contract.expectation("full", Some("device")).unwrap(),
                values(),
            );
            for line in lines {
                ladder.feed(line);
            }
            ladder.verdict().clone()
        };
        let device = [
            "KERNEL: provider dalek+chacha",
            "logd: ready",
            "rngd: ready",
            "keystored: device pubkey ab12",
        ];
        assert_eq!(run(&device), Verdict::Passed, "no selftest marker needed");
        assert!(matches!(run(&device[..3]), Verdict::Waiting { .. }));
        assert!(matches!(
            run(&[device[0], "SELFTEST: ipc ok"]),
            Verdict::Forbidden { .. }
        ));
        // With a base phase, a scenario may add only scenario markers.
        let wrong = CONTRACT.replace("expect = [\"RNGD_NONE\"]", "expect = [\"LOGD_READY\"]");
        assert!(
            Contract::parse(&wrong)
                .unwrap_err()
                .0
                .contains("not a scenario_marker")
        );
        let twice = text.replace("\"KEY\"]", "\"KEY\", \"KEY\"]");
        assert!(Contract::parse(&twice).unwrap_err().0.contains("twice"));
    }
}
