//! systemd readiness notification (`Type=notify`): a datagram to
//! `$NOTIFY_SOCKET`. A no-op when not started by systemd.
//!
//! With `WatchdogSec=` set, [`start_watchdog`] runs the pinger: a thread of
//! its own (so a long reload on the main thread does not hold the pings
//! back) that sends `WATCHDOG=1` only while every part registered with
//! `liveness` makes progress.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Send `state` (e.g. "READY=1\nSTATUS=...") if systemd asked for it.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let addr = match path.strip_prefix('@') {
        // Abstract namespace socket.
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(&path),
    };
    let Ok(addr) = addr else { return };
    if let Ok(sock) = UnixDatagram::unbound() {
        let _ = sock.send_to_addr(state.as_bytes(), &addr);
    }
}

/// The watchdog limit (`WatchdogSec=`), if systemd set one for this process.
pub fn watchdog_interval() -> Option<std::time::Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    if usec == 0 {
        return None;
    }
    Some(std::time::Duration::from_micros(usec))
}

/// Start the watchdog pinger if systemd asked for pings; turns liveness
/// tracking on. Call before the parts start, so each registers.
pub fn start_watchdog() {
    let Some(limit) = watchdog_interval() else {
        return;
    };
    // Look four times per limit (sd_watchdog_enabled(3) asks for a ping at
    // least every half): a part stuck since the last ping stops them, and
    // systemd acts between 3/4 and one limit after that part stopped.
    let every = limit / 4;
    // Parts go round several times between two looks.
    let reg = crate::run::liveness::enable((every / 4).min(std::time::Duration::from_secs(1)));
    let spawned = std::thread::Builder::new()
        .name("halo-watchdog".into())
        .spawn(move || {
            let mut pinger = crate::run::liveness::Pinger::new();
            let mut held: Option<Vec<String>> = None;
            loop {
                match pinger.decide(&reg.sample()) {
                    crate::run::liveness::Decision::Ping => {
                        if held.take().is_some() {
                            tracing::info!("watchdog: every part makes progress again, pinging systemd");
                        }
                        notify("WATCHDOG=1");
                    }
                    crate::run::liveness::Decision::Hold { stuck } => {
                        if held.as_ref() != Some(&stuck) {
                            tracing::error!(
                                "watchdog: not pinging systemd, no progress since the last ping: {} (systemd restarts halo {}s after the last ping)",
                                stuck.join(", "),
                                limit.as_secs_f64()
                            );
                            held = Some(stuck);
                        }
                    }
                }
                std::thread::sleep(every);
            }
        });
    match spawned {
        Ok(_) => tracing::info!(
            "watchdog: systemd expects a ping every {}s; pinging while every part makes progress",
            limit.as_secs_f64()
        ),
        Err(e) => tracing::error!("watchdog: cannot start the pinger thread: {e}"),
    }
}
