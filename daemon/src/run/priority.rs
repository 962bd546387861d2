//! CPU priority of the VRRP thread over the proxy and the health checks.
//!
//! With 10 ms adverts a backup declares the master dead after some 36 ms;
//! on a Pi with the proxy at full load on every core, a VRRP thread that
//! waits its turn behind the proxy workers misses adverts and causes a
//! spurious failover. The main thread (VRRP instances, control socket,
//! reloads) therefore asks at start for the real-time policy SCHED_RR at
//! a low priority (`VRRP_RT_PRIORITY`), and failing that for nice -10.
//!
//! Why real time and not only nice: a nice value orders threads inside
//! one scheduling group, and Linux's autogroups (on by default) put the
//! whole halo process, proxy workers included, into one group that shares
//! the CPU with every other group (session). With the proxy busy, that
//! group is behind, and a nice -10 VRRP thread inside it waited up to
//! 50-100 ms (docs/benchmarks.md, the soak). SCHED_RR threads run ahead
//! of every normal thread, groups or not.
//!
//! Bounds: the thread blocks between events (it never spins: an async
//! loop); the kernel keeps 5 % of each CPU for normal threads whatever a
//! real-time thread does (`sched_rt_runtime_us`, 950000 of 1000000 by
//! default), and the systemd watchdog notices a loop that stops turning.
//! SCHED_RESET_ON_FORK: every thread and process the main thread creates
//! (proxy workers, the health checker, tokio's blocking pool, hooks and
//! track scripts) starts as a normal thread. The priority stays below the
//! kernel's threaded interrupt handlers (50), so the NIC's interrupts
//! still run first.
//!
//! Permission: CAP_SYS_NICE, or an RLIMIT_RTPRIO of at least
//! `VRRP_RT_PRIORITY` (the unit's `LimitRTPRIO=10`); for the nice
//! fallback CAP_SYS_NICE or an RLIMIT_NICE of 30 (`LimitNICE=-10`).
//! Without either one line says so and everything runs at the start value.
//! Linux's policy and nice value are per thread (pid 0 is the caller).

use std::sync::atomic::{AtomicI32, Ordering};

/// The nice value the VRRP thread asks for when real time is refused.
pub const VRRP_NICE: i32 = -10;

/// The SCHED_RR priority of the VRRP thread (1 lowest .. 99).
pub const VRRP_RT_PRIORITY: i32 = 10;

/// What `raise_main` got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Raised {
    /// SCHED_RR at `VRRP_RT_PRIORITY`.
    RealTime,
    /// Normal policy at `VRRP_NICE` (or lower, if started so).
    Nice,
    /// Neither was permitted: the start values.
    No,
}

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

fn set_round_robin(priority: i32) -> std::io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: plain syscall on the calling thread with a valid sched_param.
    let rc =
        unsafe { libc::sched_setscheduler(0, libc::SCHED_RR | libc::SCHED_RESET_ON_FORK, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The calling thread's scheduling policy (SCHED_OTHER, SCHED_RR, ...),
/// without the reset-on-fork flag.
#[cfg(test)]
fn policy() -> i32 {
    // SAFETY: plain syscall on the calling thread.
    unsafe { libc::sched_getscheduler(0) & !libc::SCHED_RESET_ON_FORK }
}

/// On the main thread, before any other thread starts: raise its priority
/// (never lower it), real time first.
pub fn raise_main() -> Raised {
    let start = nice();
    START.store(start, Ordering::Relaxed);
    let rt = match set_round_robin(VRRP_RT_PRIORITY) {
        Ok(()) => {
            tracing::info!(
                "VRRP thread runs SCHED_RR priority {VRRP_RT_PRIORITY} (proxy and checks stay normal)"
            );
            return Raised::RealTime;
        }
        Err(e) => e,
    };
    if start <= VRRP_NICE {
        return Raised::Nice;
    }
    match set_nice(VRRP_NICE) {
        Ok(()) => {
            tracing::info!(
                "VRRP thread at nice {VRRP_NICE}, not real time ({rt}; needs CAP_SYS_NICE or \
                 LimitRTPRIO={VRRP_RT_PRIORITY}): under CPU load adverts may be late"
            );
            Raised::Nice
        }
        Err(e) => {
            tracing::info!(
                "VRRP thread stays at nice {start} (real time: {rt}; nice: {e}; needs \
                 CAP_SYS_NICE, or LimitRTPRIO={VRRP_RT_PRIORITY} and LimitNICE=-10): \
                 under CPU load adverts may be late"
            );
            Raised::No
        }
    }
}

/// At the start of a proxy worker or the health checker: back to the
/// process's start value (only ever lowers the priority). The real-time
/// policy is not inherited (reset on fork); this undoes the nice value.
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
        // In a thread of its own: policy and nice value are per thread.
        std::thread::spawn(|| {
            let start = nice();
            match raise_main() {
                Raised::RealTime => {
                    assert_eq!(policy(), libc::SCHED_RR);
                    assert_eq!(nice(), start);
                }
                Raised::Nice => {
                    assert_eq!(policy(), libc::SCHED_OTHER);
                    assert_eq!(nice(), VRRP_NICE.min(start));
                }
                Raised::No => assert_eq!(nice(), start),
            }
            // A thread spawned now is a normal thread at the start value.
            std::thread::spawn(move || {
                assert_eq!(policy(), libc::SCHED_OTHER, "reset on fork");
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
