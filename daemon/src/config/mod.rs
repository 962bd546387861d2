//! Configuration: `halo.toml` text -> raw serde structs -> validated [`Config`].
//!
//! Owned by the config work; see `types.rs` for the contract other modules use.

mod types;
pub use types::*;

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
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.col, self.message)
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
    let _ = text;
    Err(ConfigErrors(vec![ConfigError {
        file: name.to_string(),
        line: 1,
        col: 1,
        message: "config parsing not implemented yet".into(),
    }]))
}

/// A one-screen human summary of what a config sets up (for `halo check`).
pub fn summary(cfg: &Config) -> String {
    format!("{} VRRP instance(s), {} proxy service(s)", cfg.vrrp.len(), cfg.proxy.len())
}
