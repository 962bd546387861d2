//! Configuration: `halo.toml` text -> raw serde structs -> validated [`Config`].
//!
//! The pipeline, each step collecting every problem it finds:
//! 1. `toml` parses the text into a spanned document (syntax errors stop here);
//! 2. `schema` walks it and reports unknown keys, with suggestions;
//! 3. serde fills the `raw` structs, keeping type errors in place;
//! 4. `validate` (with `vrrp` and `proxy`) checks ranges and cross-field
//!    rules and builds the typed values of `types.rs`, the contract the rest
//!    of halo codes against.
//!
//! Errors are located as `FILE:LINE:COL`. Nothing here touches the network:
//! whether an interface exists or an address is local is the daemon's
//! business at start-up, not `halo check`'s.

mod admin;
mod anycast;
mod diag;
mod duration;
mod l4;
mod proxy;
mod raw;
mod schema;
mod scripts;
mod summary;
mod sync_group;
mod tls;
mod types;
mod upstream_tls;
mod validate;
mod vrrp;

#[cfg(test)]
mod tests;

pub use admin::{crypt_parts, Admin, BasicAuth, CryptParts};
pub use duration::{format as format_duration, parse as parse_duration};
pub use l4::{L4Forward, L4Protocol, L4Scheduler, L4Server, L4Service};
pub use summary::summary;
pub use types::*;
pub use upstream_tls::HealthTls;
pub use validate::DEFAULT_CONTROL_SOCKET;

use serde::Deserialize;

use std::fmt;
use std::path::Path;

/// One problem in a config file, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

/// Every problem found in a file (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Read and validate a file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse_str(&name, &text),
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            file: name,
            line: 0,
            col: 0,
            message: format!("cannot read: {e}"),
        }])),
    }
}

/// Validate config text; `name` is used in error locations.
pub fn parse_str(name: &str, text: &str) -> Result<Config, ConfigErrors> {
    let mut diag = diag::Diag::new(name, text);
    let (doc, syntax) = toml::de::DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        // A recovered document may be missing whole tables; checking it
        // would report errors that are only echoes of the syntax error.
        for e in syntax {
            diag.error(&e.span().unwrap_or(0..0), e.message().trim());
        }
        return Err(ConfigErrors(diag.finish().err().unwrap_or_default()));
    }
    schema::check_keys(doc.get_ref(), &mut diag);
    let raw = match raw::RawConfig::deserialize(toml::de::Deserializer::from(doc)) {
        Ok(raw) => raw,
        // Every field catches its own type errors; this is a safety net.
        Err(e) => {
            diag.error(&e.span().unwrap_or(0..0), e.message().trim());
            raw::RawConfig::default()
        }
    };
    let cfg = validate::config(&mut diag, raw);
    match diag.finish() {
        Ok(warnings) => Ok(Config { warnings, ..cfg }),
        Err(errors) => Err(ConfigErrors(errors)),
    }
}
