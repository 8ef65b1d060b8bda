//! Status conditions: set ours, keep the others', and tell what changed.
//!
//! Every condition carries the generation it describes. `lastTransitionTime` only moves when
//! the status flips, so a status whose facts did not change serializes the same and its patch
//! is skipped.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// A condition as a reconciler computes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    /// Condition type (`Ready`, ...).
    pub type_: &'static str,
    /// Whether it holds (ignored when `unknown`).
    pub status: bool,
    /// Whether it cannot be told (status `Unknown`).
    pub unknown: bool,
    /// CamelCase reason.
    pub reason: String,
    /// A sentence a person can act on.
    pub message: String,
}

impl Desired {
    /// A condition that holds.
    pub fn yes(type_: &'static str, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Desired {
            type_,
            status: true,
            unknown: false,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// A condition that does not hold.
    pub fn no(type_: &'static str, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Desired {
            type_,
            status: false,
            unknown: false,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// A condition that cannot be told yet.
    pub fn unknown(
        type_: &'static str,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Desired {
            type_,
            status: false,
            unknown: true,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// The condition's status as written: `True`, `False` or `Unknown`.
    pub fn status_text(&self) -> &'static str {
        match (self.unknown, self.status) {
            (true, _) => "Unknown",
            (false, true) => "True",
            (false, false) => "False",
        }
    }
}

/// A condition whose status or reason changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The new condition.
    pub condition: Desired,
    /// Its status before (`None` when new).
    pub before: Option<bool>,
}

/// An Event to publish for the transitions of one status write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// Whether it reports a condition turning `False` (a Warning).
    pub warning: bool,
    /// The reason the conditions share.
    pub reason: String,
    /// `<type> is <status>: <message>` for each condition, `; ` between them.
    pub note: String,
}

/// The Events the transitions of one status write are worth: one per status and reason, so
/// that `Ready` turning False for the reason another condition gives (`WorkersUnavailable`)
/// is one Event naming both; a condition that first appears as `Unknown` (nothing is known
/// yet, and nothing changed from a known state) is none.
pub fn notices(transitions: &[Transition]) -> Vec<Notice> {
    let mut notices: Vec<(&'static str, Notice)> = Vec::new();
    for t in transitions {
        let c = &t.condition;
        if c.unknown && t.before.is_none() {
            continue;
        }
        let word = c.status_text();
        let line = format!("{} is {word}: {}", c.type_, c.message);
        match notices.iter_mut().find(|(w, n)| *w == word && n.reason == c.reason) {
            Some((_, notice)) => {
                notice.note.push_str("; ");
                notice.note.push_str(&line);
            }
            None => notices.push((
                word,
                Notice { warning: word == "False", reason: c.reason.clone(), note: line },
            )),
        }
    }
    notices.into_iter().map(|(_, notice)| notice).collect()
}

/// Merge desired conditions into the existing ones. Conditions of other types are kept.
pub fn merge(
    existing: &[Condition],
    desired: &[Desired],
    generation: i64,
    now: &Time,
) -> (Vec<Condition>, Vec<Transition>) {
    let mut merged: Vec<Condition> =
        existing.iter().filter(|c| !desired.iter().any(|d| d.type_ == c.type_)).cloned().collect();
    let mut transitions = Vec::new();
    for want in desired {
        let old = existing.iter().find(|c| c.type_ == want.type_);
        let status = want.status_text().to_string();
        let flipped = old.is_none_or(|c| c.status != status);
        let changed = flipped || old.is_some_and(|c| c.reason != want.reason);
        if changed {
            transitions.push(Transition {
                condition: want.clone(),
                before: old.map(|c| c.status == "True"),
            });
        }
        merged.push(Condition {
            type_: want.type_.into(),
            status,
            reason: want.reason.clone(),
            message: truncate(&want.message, 1024),
            observed_generation: Some(generation),
            last_transition_time: if flipped {
                now.clone()
            } else {
                old.map(|c| c.last_transition_time.clone()).unwrap_or_else(|| now.clone())
            },
        });
    }
    merged.sort_by(|a, b| a.type_.cmp(&b.type_));
    (merged, transitions)
}

/// Cut a message to at most `max` bytes on a character boundary.
pub fn truncate(message: &str, max: usize) -> String {
    if message.len() <= max {
        return message.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &message[..end])
}

/// Whether a condition of this type holds in a list.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions.iter().any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_per_status_and_reason_and_none_for_a_condition_born_unknown() {
        let unavailable = "0 of 1 workers available";
        let (_, transitions) = merge(
            &[],
            &[
                Desired::no("Ready", "WorkersUnavailable", unavailable),
                Desired::yes("CredentialsReady", "CredentialsReady", "all resolved"),
                Desired::no("WorkersAvailable", "WorkersUnavailable", unavailable),
                Desired::unknown("Healthy", "StatusUnavailable", "no worker answered yet"),
            ],
            1,
            &time(1),
        );
        assert_eq!(transitions.len(), 4, "every change is a transition");
        let first = notices(&transitions);
        assert_eq!(
            first,
            vec![
                Notice {
                    warning: true,
                    reason: "WorkersUnavailable".into(),
                    note: format!(
                        "Ready is False: {unavailable}; WorkersAvailable is False: {unavailable}"
                    ),
                },
                Notice {
                    warning: false,
                    reason: "CredentialsReady".into(),
                    note: "CredentialsReady is True: all resolved".into(),
                },
            ]
        );
        let (existing, _) = merge(&[], &[Desired::yes("Healthy", "Succeeding", "ok")], 1, &time(1));
        let (_, back) = merge(
            &existing,
            &[Desired::unknown("Healthy", "StatusUnavailable", "silent")],
            1,
            &time(2),
        );
        let unknown_again = notices(&back);
        assert_eq!(unknown_again.len(), 1, "Unknown after a known state is news");
        assert!(!unknown_again[0].warning);
    }

    fn time(s: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap())
    }

    #[test]
    fn transitions_move_only_when_status_flips_and_foreign_conditions_stay() {
        let foreign = Condition {
            type_: "Audited".into(),
            status: "True".into(),
            reason: "ByAuditor".into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: time(1),
        };
        let (first, t1) = merge(
            std::slice::from_ref(&foreign),
            &[Desired::no("Ready", "SecretNotFound", "no secret")],
            2,
            &time(10),
        );
        assert_eq!(t1.len(), 1);
        assert!(first.contains(&foreign));
        let ready = first.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!((ready.status.as_str(), ready.observed_generation), ("False", Some(2)));

        let (same, t2) =
            merge(&first, &[Desired::no("Ready", "SecretNotFound", "no secret")], 2, &time(20));
        assert_eq!(same, first, "nothing changed, nothing to patch");
        assert!(t2.is_empty());

        let (reasoned, t3) =
            merge(&same, &[Desired::no("Ready", "KeyMissing", "no key")], 3, &time(30));
        assert_eq!(t3.len(), 1, "a new reason is worth an Event");
        assert_eq!(
            reasoned.iter().find(|c| c.type_ == "Ready").unwrap().last_transition_time,
            time(10),
            "but not a new transition time"
        );

        let (flipped, _) = merge(&reasoned, &[Desired::yes("Ready", "Ready", "ok")], 3, &time(40));
        assert_eq!(
            flipped.iter().find(|c| c.type_ == "Ready").unwrap().last_transition_time,
            time(40)
        );
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let cut = truncate(&"é".repeat(600), 1024);
        assert!(cut.len() <= 1024 && cut.ends_with("..."));
    }
}
