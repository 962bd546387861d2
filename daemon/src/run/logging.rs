//! Logging setup: journald under systemd, human-readable stderr otherwise.
//!
//! The level comes from `RUST_LOG` when set, else from the config's
//! `log_level`, else `info`.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// True when stderr is connected to the journal or the journald socket is
/// the natural sink (systemd sets `JOURNAL_STREAM` for services).
fn under_journald() -> bool {
    if let Ok(v) = std::env::var("JOURNAL_STREAM") {
        // JOURNAL_STREAM is "dev:ino" of the stream systemd gave us; only
        // trust it while stderr still is that stream.
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = std::fs::metadata("/proc/self/fd/2") {
            let want = format!("{}:{}", meta.dev(), meta.ino());
            return v == want;
        }
    }
    false
}

/// Parse a filter such as `info` or `warn,halo::access=info`.
///
/// `Targets` (levels per target prefix) rather than `EnvFilter`: the same
/// syntax for what halo logs, without the regex engine EnvFilter carries
/// (200 KiB of a binary that must fit in 4 MiB on the Pi).
pub fn parse_filter(s: &str) -> Result<Targets, String> {
    // `Targets` would take `halo[conn]=debug` as a target literally named
    // so, which matches nothing: refuse EnvFilter's span and field
    // directives instead of ignoring them silently.
    if let Some(d) = s.split(',').find(|d| d.contains(['[', ']', '{', '}'])) {
        return Err(format!(
            "`{d}`: span and field filters (EnvFilter syntax) are not supported; use LEVEL or TARGET=LEVEL, e.g. \"info,halo::vrrp=debug\""
        ));
    }
    s.parse::<Targets>().map_err(|e| e.to_string())
}

pub fn init(config_level: Option<&str>) {
    let from_env = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let mut bad_env = None;
    let filter = match from_env.as_deref().map(parse_filter) {
        Some(Ok(f)) => f,
        other => {
            if let Some(Err(e)) = other {
                bad_env = Some(e);
            }
            parse_filter(config_level.unwrap_or("info"))
                .unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO))
        }
    };
    init_with(filter);
    if let Some(e) = bad_env {
        tracing::warn!("RUST_LOG ignored: {e}");
    }
}

fn init_with(filter: Targets) {
    if under_journald() {
        if let Ok(layer) = tracing_journald::layer() {
            // Fields become HALO_INSTANCE=VI_1, HALO_SERVICE=web, ...:
            // `journalctl -u halo HALO_INSTANCE=VI_1` filters on them.
            let layer = layer
                .with_syslog_identifier("halo".into())
                .with_field_prefix(Some("HALO".into()));
            tracing_subscriber::registry()
                .with(filter)
                .with(layer)
                .init();
            return;
        }
    }
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false);
    tracing_subscriber::registry().with(filter).with(fmt).init();
}

#[cfg(test)]
mod tests {
    use super::parse_filter;

    #[test]
    fn log_level_is_a_targets_filter_not_an_envfilter() {
        // docs/config.md describes `log_level` as this syntax: a default
        // level and `target=level` pairs.
        for ok in [
            "info",
            "warn,halo::access=info",
            "halo::vrrp=debug,info",
            "off",
        ] {
            assert!(parse_filter(ok).is_ok(), "{ok}");
        }
        // EnvFilter's span and field directives are not accepted.
        for envfilter_only in ["halo[conn]=debug", "[{client=1}]=trace"] {
            assert!(parse_filter(envfilter_only).is_err(), "{envfilter_only}");
        }
    }
}
