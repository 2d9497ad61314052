//! Configuration problems, collected rather than returned one at a time.
//!
//! An operator who fixes one variable, restarts and meets the next error
//! loses minutes per round trip (longer in Kubernetes), so parsing goes on
//! after a problem and [`ConfigErrors`] carries all of them. Messages never
//! contain a secret value: they say what is wrong with it instead.

use std::fmt;

/// One problem with one variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    /// The full variable name, e.g. `CAMRELAY_NEST_QPM`.
    pub variable: String,
    /// What is wrong, without the variable name and never with a secret.
    pub message: String,
}

/// Every problem found in one environment, in a stable order: fixed
/// variables in [`known_variables`](crate::known_variables) order, then
/// cameras, then unknown variables by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors {
    errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// The problems, in report order.
    pub fn as_slice(&self) -> &[ConfigError] {
        &self.errors
    }

    /// Iterates over the problems.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.errors.iter()
    }

    /// Number of problems.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Whether there is no problem (never true for an error returned by
    /// [`Config::from_vars`](crate::Config::from_vars)).
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Whether some problem names `variable`.
    pub fn mentions(&self, variable: &str) -> bool {
        self.errors.iter().any(|e| e.variable == variable)
    }

    pub(crate) fn push(&mut self, variable: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            variable: variable.into(),
            message: message.into(),
        });
    }
}

impl fmt::Display for ConfigErrors {
    /// One problem per line, `CAMRELAY_X: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}
