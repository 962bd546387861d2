//! CPU priority of the VRRP thread over the proxy and the health checks.
//!
//! With 10 ms adverts a backup declares the master dead after some 36 ms;
//! on a Pi with the proxy at full load on every core, a VRRP thread that
//! waits its turn behind the proxy workers misses adverts and causes a
//! spurious failover. The main thread (VRRP instances, control socket,
//! reloads) therefore asks for nice -10 at start; each proxy worker and the
//! health checker go back to the nice value the process started with (a
//! thread inherits its creator's, and raising one's nice value needs no
//! privilege). The raise needs CAP_SYS_NICE or an RLIMIT_NICE of 30 (the
//! unit's `LimitNICE=-10`); without either it fails, one line says so, and
//! everything runs at the start value as before. Linux's nice value is per
//! thread (setpriority with PRIO_PROCESS and 0 is the calling thread).
//! SCHED_FIFO is not used: a real-time thread that spins would take a
//! whole core from everything else.

use std::sync::atomic::{AtomicI32, Ordering};

/// The nice value the VRRP thread asks for.
pub const VRRP_NICE: i32 = -10;

/// The nice value of the process at start; `i32::MIN` until `raise_main`.
static START: AtomicI32 = AtomicI32::new(i32::MIN);

fn nice() -> i32 {
    // SAFETY: plain syscall; -1 is also a valid value, hence errno.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
}

fn set_nice(v: i32) -> std::io::Result<()> {
    // SAFETY: plain syscall on the calling thread.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, v) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// On the main thread, before any other thread starts: raise its priority
/// (never lower it). Returns whether the thread now runs at `VRRP_NICE`.
pub fn raise_main() -> bool {
    let start = nice();
    START.store(start, Ordering::Relaxed);
    if start <= VRRP_NICE {
        return true;
    }
    match set_nice(VRRP_NICE) {
        Ok(()) => true,
        Err(e) => {
            tracing::info!(
                "VRRP thread stays at nice {start} ({e}; needs CAP_SYS_NICE or LimitNICE=-10): \
                 under CPU load adverts may be late"
            );
            false
        }
    }
}

/// At the start of a proxy worker or the health checker: back to the
/// process's start value (only ever lowers the priority).
pub fn normal() {
    let start = START.load(Ordering::Relaxed);
    if start != i32::MIN && nice() < start {
        let _ = set_nice(start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn main_thread_raised_where_permitted_and_workers_back_to_start() {
        // In a thread of its own: the nice value is per thread.
        std::thread::spawn(|| {
            let start = nice();
            let raised = raise_main();
            if raised {
                assert_eq!(nice(), VRRP_NICE.min(start));
            } else {
                assert_eq!(nice(), start);
            }
            // A thread spawned now inherits the raise and drops it.
            std::thread::spawn(move || {
                normal();
                assert_eq!(nice(), start);
            })
            .join()
            .unwrap();
        })
        .join()
        .unwrap();
    }
}
