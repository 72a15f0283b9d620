//! `Secret`: a string that never prints. Secrets come from the environment or a file,
//! never from the TOML itself.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The environment variable is not set.
    #[error("environment variable {name} is not set")]
    EnvMissing {
        /// The variable.
        name: String,
    },
    /// The environment variable is set but blank.
    #[error("environment variable {name} is empty")]
    EnvEmpty {
        /// The variable.
        name: String,
    },
    /// The secret file cannot be read.
    #[error("cannot read secret file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The secret file holds nothing but blanks.
    #[error("secret file {path} is empty")]
    FileEmpty {
        /// The file.
        path: PathBuf,
    },
}

/// A secret value. `Debug` and `Display` print `**REDACTED**`; `expose()` is called only
/// where the value goes onto the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value obtained from a trusted source (env, file, simulator defaults).
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The raw value, for an HTTP header, a form field or an HMAC key.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this secret, compared in constant time (for equal lengths)
    /// so that timing does not tell how much of a guess matched.
    pub fn matches(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq;
        presented.as_bytes().ct_eq(self.0.as_bytes()).into()
    }

    /// Reads the secret from the environment variable `name`.
    pub fn from_env(name: &str) -> Result<Self, SecretError> {
        match std::env::var(name) {
            Ok(value) if !value.trim().is_empty() => Ok(Secret(value.trim().to_owned())),
            Ok(_) => Err(SecretError::EnvEmpty { name: name.to_owned() }),
            Err(_) => Err(SecretError::EnvMissing { name: name.to_owned() }),
        }
    }

    /// Reads the secret from a file, trimming one trailing newline and surrounding blanks.
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::File {
            path: path.to_owned(),
            source,
        })?;
        let value = text.trim();
        if value.is_empty() {
            return Err(SecretError::FileEmpty { path: path.to_owned() });
        }
        Ok(Secret(value.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**REDACTED**")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**REDACTED**")
    }
}

/// True when `name` can be an environment variable name. Used to catch a secret pasted
/// into a `*_env` key, without ever echoing what was pasted.
pub fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret}"), "**REDACTED**");
        assert_eq!(format!("{secret:?}"), "**REDACTED**");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn matches_only_the_whole_value() {
        let secret = Secret::new("secret");
        assert!(secret.matches("secret"));
        assert!(!secret.matches("secreT"));
        assert!(!secret.matches("secret2"));
        assert!(!secret.matches("secre"));
        assert!(!secret.matches(""));
        assert!(Secret::new("").matches(""));
    }

    #[test]
    fn recognises_env_var_names() {
        assert!(is_env_var_name("CXONE_CLIENT_SECRET"));
        assert!(is_env_var_name("_X1"));
        assert!(!is_env_var_name("s3cr3t-value!"));
        assert!(!is_env_var_name("1ABC"));
        assert!(!is_env_var_name(""));
    }
}
