//! One `[anycast.NAME]` address as a sans-IO state machine: tracked items'
//! states, operator withdrawals and timeouts go in with a `now`; actions
//! (add or remove the address, add or remove the drain route) and the next
//! deadline come out. It never reads the clock or touches the system.
//!
//! The address is what FRR announces (`redistribute connected`). Taking it
//! away withdraws the route, but the router keeps sending to this host
//! until it has heard the withdrawal, and connections it sent before stay
//! here. So a withdrawal first adds a *drain route* (a local route for the
//! address in the kernel's local table, which makes the host still accept
//! and answer for it, but is no connected route, so FRR does not announce
//! it), then removes the address; the drain route goes after `drain`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Where an address stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Neither the address nor the drain route is held.
    Withdrawn,
    /// The address is on the interface: FRR announces it.
    Announced,
    /// The address is gone (the route withdrawn) but the drain route keeps
    /// it answering until `until`.
    Draining { until: Instant },
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Withdrawn => "withdrawn",
            State::Announced => "announced",
            State::Draining { .. } => "draining",
        }
    }
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    AddAddress,
    DelAddress,
    AddDrainRoute,
    DelDrainRoute,
    StateChanged {
        from: &'static str,
        to: &'static str,
        why: String,
    },
}

#[derive(Debug)]
pub struct Announcer {
    state: State,
    drain: Duration,
    /// Tracked items that are down, as sentences; empty: all up.
    down: Vec<String>,
    /// `halo anycast withdraw`, until `announce`.
    withdrawn_by_hand: bool,
    stopped: bool,
    actions: VecDeque<Action>,
}

pub const BY_HAND: &str = "withdrawn by `halo anycast withdraw`";

impl Announcer {
    /// Starts withdrawn with nothing known: the first [`Announcer::set_down`]
    /// decides.
    pub fn new(drain: Duration) -> Announcer {
        Announcer {
            state: State::Withdrawn,
            drain,
            down: vec!["starting".into()],
            withdrawn_by_hand: false,
            stopped: false,
            actions: VecDeque::new(),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn withdrawn_by_hand(&self) -> bool {
        self.withdrawn_by_hand
    }

    /// Why the address is held or not, in one sentence.
    pub fn reason(&self) -> String {
        if self.stopped {
            "halo is stopping".into()
        } else if self.withdrawn_by_hand {
            BY_HAND.into()
        } else if self.down.is_empty() {
            "every tracked item is up".into()
        } else {
            self.down.join("; ")
        }
    }

    /// The tracked items that are down now (empty: all up).
    pub fn set_down(&mut self, now: Instant, down: Vec<String>) {
        self.down = down;
        self.update(now);
    }

    pub fn withdraw(&mut self, now: Instant) {
        self.withdrawn_by_hand = true;
        self.update(now);
    }

    pub fn announce(&mut self, now: Instant) {
        self.withdrawn_by_hand = false;
        self.update(now);
    }

    /// A reload changed `drain`: applies from the next withdrawal on.
    pub fn set_drain(&mut self, drain: Duration) {
        self.drain = drain;
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let State::Draining { until } = self.state {
            if now >= until {
                self.actions.push_back(Action::DelDrainRoute);
                self.change(State::Withdrawn, "drain time over".into());
            }
        }
    }

    /// halo stops: remove everything now (the proxy behind the address is
    /// stopping too, so there is nothing left to drain to).
    pub fn shutdown(&mut self) {
        self.stopped = true;
        match self.state {
            State::Announced => self.actions.push_back(Action::DelAddress),
            State::Draining { .. } => self.actions.push_back(Action::DelDrainRoute),
            State::Withdrawn => return,
        }
        self.change(State::Withdrawn, "halo is stopping".into());
    }

    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Draining { until } => Some(until),
            _ => None,
        }
    }

    fn wanted(&self) -> bool {
        !self.stopped && !self.withdrawn_by_hand && self.down.is_empty()
    }

    fn update(&mut self, now: Instant) {
        let want = self.wanted();
        match (self.state, want) {
            (State::Withdrawn, true) => {
                self.actions.push_back(Action::AddAddress);
                self.change(State::Announced, self.reason());
            }
            (State::Draining { .. }, true) => {
                // The address first: there is no moment without either.
                self.actions.push_back(Action::AddAddress);
                self.actions.push_back(Action::DelDrainRoute);
                self.change(State::Announced, self.reason());
            }
            (State::Announced, false) if self.drain.is_zero() => {
                self.actions.push_back(Action::DelAddress);
                self.change(State::Withdrawn, self.reason());
            }
            (State::Announced, false) => {
                // The drain route first: the address must keep answering
                // after the announcement is gone.
                self.actions.push_back(Action::AddDrainRoute);
                self.actions.push_back(Action::DelAddress);
                let until = now + self.drain;
                self.change(State::Draining { until }, self.reason());
            }
            _ => {}
        }
    }

    fn change(&mut self, to: State, why: String) {
        let from = self.state.name();
        self.state = to;
        self.actions.push_back(Action::StateChanged {
            from,
            to: to.name(),
            why,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;

    fn drain(a: &mut Announcer) -> Vec<Action> {
        std::iter::from_fn(|| a.poll_action())
            .filter(|x| !matches!(x, StateChanged { .. }))
            .collect()
    }

    #[test]
    fn held_while_every_tracked_item_is_up() {
        let t0 = Instant::now();
        let mut a = Announcer::new(Duration::from_secs(5));
        assert_eq!(a.state(), State::Withdrawn);
        a.set_down(t0, vec!["track web: no healthy server".into()]);
        assert_eq!(drain(&mut a), []);
        a.set_down(t0, vec![]);
        assert_eq!(drain(&mut a), [AddAddress]);
        assert_eq!(a.state(), State::Announced);
        // Nothing changes: nothing to do.
        a.set_down(t0, vec![]);
        assert_eq!(drain(&mut a), []);
        assert_eq!(a.poll_timeout(), None);
    }

    #[test]
    fn a_failure_withdraws_then_drains_then_removes() {
        let t0 = Instant::now();
        let mut a = Announcer::new(Duration::from_secs(5));
        a.set_down(t0, vec![]);
        let _ = drain(&mut a);
        let t1 = t0 + Duration::from_secs(1);
        a.set_down(t1, vec!["track web: no healthy server".into()]);
        // The drain route before the address goes: never a moment when
        // packets the router still sends here find nothing.
        assert_eq!(drain(&mut a), [AddDrainRoute, DelAddress]);
        let until = t1 + Duration::from_secs(5);
        assert_eq!(a.state(), State::Draining { until });
        assert_eq!(a.poll_timeout(), Some(until));
        assert_eq!(a.reason(), "track web: no healthy server");
        a.handle_timeout(until - Duration::from_millis(1));
        assert_eq!(drain(&mut a), []);
        a.handle_timeout(until);
        assert_eq!(drain(&mut a), [DelDrainRoute]);
        assert_eq!(a.state(), State::Withdrawn);
        assert_eq!(a.poll_timeout(), None);
    }

    #[test]
    fn recovery_during_the_drain_puts_the_address_back_first() {
        let t0 = Instant::now();
        let mut a = Announcer::new(Duration::from_secs(5));
        a.set_down(t0, vec![]);
        a.set_down(t0, vec!["x".into()]);
        let _ = drain(&mut a);
        a.set_down(t0 + Duration::from_secs(1), vec![]);
        assert_eq!(drain(&mut a), [AddAddress, DelDrainRoute]);
        assert_eq!(a.state(), State::Announced);
        // The old deadline is gone with the drain.
        a.handle_timeout(t0 + Duration::from_secs(10));
        assert_eq!(drain(&mut a), []);
    }

    #[test]
    fn no_drain_removes_at_once() {
        let t0 = Instant::now();
        let mut a = Announcer::new(Duration::ZERO);
        a.set_down(t0, vec![]);
        let _ = drain(&mut a);
        a.set_down(t0, vec!["x".into()]);
        assert_eq!(drain(&mut a), [DelAddress]);
        assert_eq!(a.state(), State::Withdrawn);
    }

    #[test]
    fn a_withdrawal_by_hand_holds_until_announce() {
        let t0 = Instant::now();
        let mut a = Announcer::new(Duration::from_secs(2));
        a.set_down(t0, vec![]);
        let _ = drain(&mut a);
        a.withdraw(t0);
        assert_eq!(drain(&mut a), [AddDrainRoute, DelAddress]);
        assert_eq!(a.reason(), BY_HAND);
        // Health coming and going does not bring it back.
        a.set_down(t0, vec!["x".into()]);
        a.set_down(t0, vec![]);
        a.handle_timeout(t0 + Duration::from_secs(2));
        assert_eq!(drain(&mut a), [DelDrainRoute]);
        assert!(a.withdrawn_by_hand());
        // announce while a tracked item is down: still withdrawn.
        a.set_down(t0, vec!["x".into()]);
        a.announce(t0);
        assert_eq!(drain(&mut a), []);
        a.set_down(t0, vec![]);
        assert_eq!(drain(&mut a), [AddAddress]);
        let changes: Vec<_> = std::iter::from_fn(|| a.poll_action()).collect();
        assert!(changes.is_empty());
    }

    #[test]
    fn state_changes_say_why() {
        let t0 = Instant::now();
        let mut a = Announcer::new(Duration::from_secs(1));
        a.set_down(t0, vec![]);
        assert_eq!(
            std::iter::from_fn(|| a.poll_action()).collect::<Vec<_>>(),
            [
                AddAddress,
                StateChanged {
                    from: "withdrawn",
                    to: "announced",
                    why: "every tracked item is up".into()
                }
            ]
        );
    }

    #[test]
    fn shutdown_removes_everything_and_stays_down() {
        let t0 = Instant::now();
        for draining in [false, true] {
            let mut a = Announcer::new(Duration::from_secs(5));
            a.set_down(t0, vec![]);
            if draining {
                a.withdraw(t0);
            }
            let _ = drain(&mut a);
            a.shutdown();
            let want = if draining { DelDrainRoute } else { DelAddress };
            assert_eq!(drain(&mut a), [want]);
            a.announce(t0);
            a.set_down(t0, vec![]);
            assert_eq!(drain(&mut a), []);
            assert_eq!(a.state(), State::Withdrawn);
        }
        // Nothing held: nothing to do.
        let mut a = Announcer::new(Duration::from_secs(5));
        a.shutdown();
        assert_eq!(drain(&mut a), []);
    }
}
