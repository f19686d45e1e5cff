//! Label selectors (`matchLabels` + `matchExpressions`), compiled once and matched many times.
//!
//! A [`Selector`] is validated when compiled, so matching never fails and never allocates. This
//! module knows nothing about pods, namespaces or policies: it matches a label map, nothing else.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::cluster::Labels;

/// One compiled requirement. `matchLabels` entries become `Equals`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Requirement {
    Equals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Requirement {
    fn matches(&self, labels: &Labels) -> bool {
        match self {
            Self::Equals(key, value) => labels.get(key) == Some(value),
            Self::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
            // As upstream: a missing key satisfies NotIn.
            Self::NotIn(key, values) => labels.get(key).is_none_or(|v| !values.contains(v)),
            Self::Exists(key) => labels.contains_key(key),
            Self::DoesNotExist(key) => !labels.contains_key(key),
        }
    }
}

/// A compiled label selector: every requirement must hold (AND); no requirement selects all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

/// Why a selector could not be compiled: the field path below the selector, and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorError {
    pub field: String,
    pub problem: String,
}

impl Selector {
    /// The selector that selects everything (`{}`).
    #[must_use]
    pub fn everything() -> Self {
        Self::default()
    }

    /// Compiles an API selector; an absent selector selects everything, as the API defines.
    ///
    /// # Errors
    /// An unknown operator, or values that do not fit the operator (the API server would have
    /// rejected such a selector; it can only come from a hand-written file).
    pub fn compile(selector: Option<&LabelSelector>) -> Result<Self, SelectorError> {
        let Some(selector) = selector else {
            return Ok(Self::everything());
        };
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement::Equals(key.clone(), value.clone()));
        }
        for (index, expression) in selector.match_expressions.iter().flatten().enumerate() {
            let field = |name: &str| format!("matchExpressions[{index}].{name}");
            let key = expression.key.clone();
            let values = expression.values.clone().unwrap_or_default();
            let requirement = match expression.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(SelectorError {
                        field: field("values"),
                        problem: format!(
                            "must not be empty for operator '{}'",
                            expression.operator
                        ),
                    });
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(SelectorError {
                        field: field("values"),
                        problem: format!("must be empty for operator '{}'", expression.operator),
                    });
                }
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                other => {
                    return Err(SelectorError {
                        field: field("operator"),
                        problem: format!("'{other}' is not In, NotIn, Exists or DoesNotExist"),
                    });
                }
            };
            requirements.push(requirement);
        }
        Ok(Self { requirements })
    }

    /// Whether the labels satisfy every requirement.
    #[must_use]
    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|requirement| requirement.matches(labels))
    }

    /// Whether this selector selects everything (`{}` or absent).
    #[must_use]
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }
}

/// kubectl's notation: `app=web,tier in (a,b),!legacy`; `{}` for the empty selector.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.requirements.is_empty() {
            return f.write_str("{}");
        }
        for (index, requirement) in self.requirements.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            match requirement {
                Requirement::Equals(key, value) => write!(f, "{key}={value}")?,
                Requirement::In(key, values) => write!(f, "{key} in ({})", values.join(","))?,
                Requirement::NotIn(key, values) => {
                    write!(f, "{key} notin ({})", values.join(","))?;
                }
                Requirement::Exists(key) => f.write_str(key)?,
                Requirement::DoesNotExist(key) => write!(f, "!{key}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(yaml: &str) -> Result<Selector, SelectorError> {
        let parsed: LabelSelector = serde_yaml_ng::from_str(yaml).expect("selector YAML");
        Selector::compile(Some(&parsed))
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn an_absent_or_empty_selector_selects_everything() {
        assert!(Selector::compile(None).expect("valid selector").matches(&Labels::new()));
        assert!(selector("{}").expect("valid selector").matches(&labels(&[("a", "b")])));
        assert_eq!(selector("{}").expect("valid selector").to_string(), "{}");
    }

    #[test]
    fn match_labels_and_expressions_must_all_hold() {
        let s = selector(
            "matchLabels: {app: web}\nmatchExpressions:\n- {key: tier, operator: In, values: [a, b]}\n- {key: legacy, operator: DoesNotExist}",
        )
        .expect("valid selector");
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "a")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "c")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "a"), ("legacy", "")])));
        assert_eq!(s.to_string(), "app=web,tier in (a,b),!legacy");
    }

    #[test]
    fn not_in_is_satisfied_by_a_missing_key_and_exists_needs_the_key() {
        let s = selector("matchExpressions: [{key: env, operator: NotIn, values: [prod]}]")
            .expect("valid selector");
        assert!(s.matches(&Labels::new()));
        assert!(!s.matches(&labels(&[("env", "prod")])));
        let s =
            selector("matchExpressions: [{key: env, operator: Exists}]").expect("valid selector");
        assert!(!s.matches(&Labels::new()));
        assert!(s.matches(&labels(&[("env", "")])));
    }

    #[test]
    fn an_unknown_operator_or_misplaced_values_is_an_error_naming_the_field() {
        let error = selector("matchExpressions: [{key: a, operator: Equals, values: [x]}]");
        assert_eq!(error.expect_err("invalid selector").field, "matchExpressions[0].operator");
        let error = selector("matchExpressions: [{key: a, operator: In}]");
        assert_eq!(error.expect_err("invalid selector").field, "matchExpressions[0].values");
        let error = selector("matchExpressions: [{key: a, operator: Exists, values: [x]}]");
        assert_eq!(error.expect_err("invalid selector").field, "matchExpressions[0].values");
    }
}
