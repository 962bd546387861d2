//! Logging setup: journald under systemd, human-readable stderr otherwise.
//!
//! The level comes from `RUST_LOG` when set, else from the config's
//! `log_level`, else `info`.

use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

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

pub fn init(config_level: Option<&str>) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::new(v),
        _ => EnvFilter::new(config_level.unwrap_or("info")),
    };
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
