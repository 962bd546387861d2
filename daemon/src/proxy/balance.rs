//! Pure server selection: smooth weighted round robin, least connections and
//! source-address hashing.
//!
//! What it does: given the servers' weights, which of them are eligible
//! (up and not already tried) and their active request counts, pick one.
//! What it does not do: no health tracking, no counting of connections (the
//! caller passes counts in), no clock.

use std::net::IpAddr;

use crate::config::Balance;

/// Per-worker balancing state for one service.
#[derive(Debug, Clone)]
pub struct Balancer {
    kind: Balance,
    weights: Vec<u32>,
    /// Smooth WRR: each server's current weight (nginx's `current_weight`).
    current: Vec<i64>,
    /// Leastconn: the last server picked, so ties rotate.
    cursor: usize,
}

impl Balancer {
    pub fn new(kind: Balance, weights: Vec<u32>) -> Balancer {
        let n = weights.len();
        Balancer {
            kind,
            weights,
            current: vec![0; n],
            cursor: n.saturating_sub(1),
        }
    }

    /// Pick a server among those for which `eligible(i)` holds.
    /// `active(i)` is the number of requests in flight on server `i`.
    pub fn pick(
        &mut self,
        client: IpAddr,
        eligible: impl Fn(usize) -> bool,
        active: impl Fn(usize) -> u32,
    ) -> Option<usize> {
        match self.kind {
            Balance::RoundRobin => self.pick_wrr(eligible),
            Balance::LeastConn => self.pick_leastconn(eligible, active),
            Balance::Source => pick_source(&self.weights, client, eligible),
        }
    }

    /// nginx's smooth weighted round robin (ngx_http_upstream_get_peer):
    /// every eligible server gains its weight, the largest wins and pays
    /// back the total. Weights 5,1,1 give a a b a c a a, not a a a a a b c.
    fn pick_wrr(&mut self, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let mut total: i64 = 0;
        let mut best: Option<usize> = None;
        for i in 0..self.weights.len() {
            if !eligible(i) {
                continue;
            }
            let w = i64::from(self.weights[i]);
            self.current[i] += w;
            total += w;
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.current[b] -= total;
        Some(b)
    }

    /// Fewest active requests relative to weight (HAProxy's leastconn uses
    /// the same ratio); ties go round robin starting after the last pick.
    fn pick_leastconn(
        &mut self,
        eligible: impl Fn(usize) -> bool,
        active: impl Fn(usize) -> u32,
    ) -> Option<usize> {
        let n = self.weights.len();
        let mut best: Option<(usize, u64)> = None;
        for k in 1..=n {
            let i = (self.cursor + k) % n;
            if !eligible(i) {
                continue;
            }
            // active/weight compared without division: scale by the
            // product of the other weights would overflow; use a fixed
            // point with 1/256 resolution instead (weights are <= 256).
            let load = (u64::from(active(i)) << 16) / u64::from(self.weights[i].max(1));
            if best.is_none_or(|(_, l)| load < l) {
                best = Some((i, load));
            }
        }
        let (i, _) = best?;
        self.cursor = i;
        Some(i)
    }
}

/// Weighted rendezvous hashing: each server scores `hash(client, server)`,
/// the highest score wins. A client keeps its server while that server is
/// up, and when an unrelated server goes down nobody else moves.
fn pick_source(weights: &[u32], client: IpAddr, eligible: impl Fn(usize) -> bool) -> Option<usize> {
    let key = match client.to_canonical() {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    let mut best: Option<(usize, f64)> = None;
    for (i, &w) in weights.iter().enumerate() {
        if !eligible(i) {
            continue;
        }
        let h = mix(key ^ ((i as u128 + 1) << 64) ^ (i as u128).wrapping_mul(0x9e37_79b9));
        // Uniform in (0, 1]; score = -w / ln(u) (weighted rendezvous).
        let u = ((h >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let score = -f64::from(w) / u.ln();
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i)
}

/// splitmix64 over both halves: a cheap, well-mixed 64-bit hash.
fn mix(x: u128) -> u64 {
    fn sm(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    sm(sm(x as u64) ^ (x >> 64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn seq(b: &mut Balancer, n: usize, up: &[bool]) -> Vec<usize> {
        (0..n)
            .map(|_| b.pick(ip("192.0.2.1"), |i| up[i], |_| 0).unwrap())
            .collect()
    }

    #[test]
    fn wrr_smooth_order_matches_nginx() {
        let mut b = Balancer::new(Balance::RoundRobin, vec![5, 1, 1]);
        // nginx's documented sequence for weights 5,1,1.
        assert_eq!(seq(&mut b, 7, &[true; 3]), vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(seq(&mut b, 7, &[true; 3]), vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn wrr_equal_weights_rotate() {
        let mut b = Balancer::new(Balance::RoundRobin, vec![1, 1, 1]);
        assert_eq!(seq(&mut b, 6, &[true; 3]), vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn wrr_proportions() {
        let mut b = Balancer::new(Balance::RoundRobin, vec![3, 2, 1]);
        let mut count = [0; 3];
        for i in seq(&mut b, 600, &[true; 3]) {
            count[i] += 1;
        }
        assert_eq!(count, [300, 200, 100]);
    }

    #[test]
    fn wrr_skips_down_servers() {
        let mut b = Balancer::new(Balance::RoundRobin, vec![1, 1, 1]);
        let s = seq(&mut b, 4, &[true, false, true]);
        assert_eq!(s, vec![0, 2, 0, 2]);
        assert_eq!(b.pick(ip("192.0.2.1"), |_| false, |_| 0), None);
    }

    #[test]
    fn leastconn_prefers_fewest_and_rotates_ties() {
        let mut b = Balancer::new(Balance::LeastConn, vec![1, 1, 1]);
        let active = [3, 1, 1];
        let p: Vec<usize> = (0..4)
            .map(|_| b.pick(ip("192.0.2.1"), |_| true, |i| active[i]).unwrap())
            .collect();
        assert_eq!(p, vec![1, 2, 1, 2]);
        let p: Vec<usize> = (0..3)
            .map(|_| b.pick(ip("192.0.2.1"), |_| true, |_| 0).unwrap())
            .collect();
        assert_eq!(p, vec![0, 1, 2]);
        // Weighted: 4 active on weight 4 is lighter than 2 on weight 1.
        let mut b = Balancer::new(Balance::LeastConn, vec![4, 1]);
        assert_eq!(b.pick(ip("192.0.2.1"), |_| true, |i| [4, 2][i]), Some(0));
        assert_eq!(b.pick(ip("192.0.2.1"), |i| i == 1, |i| [4, 2][i]), Some(1));
    }

    #[test]
    fn source_is_sticky_and_spreads() {
        let mut b = Balancer::new(Balance::Source, vec![1, 1, 1]);
        let mut count = [0; 3];
        for n in 0..=255u8 {
            let c = IpAddr::from([198, 51, 100, n]);
            let first = b.pick(c, |_| true, |_| 0).unwrap();
            for _ in 0..3 {
                assert_eq!(b.pick(c, |_| true, |_| 0), Some(first));
            }
            count[first] += 1;
        }
        // Roughly a third each.
        assert!(count.iter().all(|&c| c > 50), "{count:?}");
    }

    #[test]
    fn source_only_moves_clients_of_a_down_server() {
        let mut b = Balancer::new(Balance::Source, vec![1, 1, 1]);
        for n in 0..=255u8 {
            let c = IpAddr::from([203, 0, 113, n]);
            let all = b.pick(c, |_| true, |_| 0).unwrap();
            let without1 = b.pick(c, |i| i != 1, |_| 0).unwrap();
            if all != 1 {
                assert_eq!(all, without1);
            } else {
                assert_ne!(without1, 1);
            }
        }
        // IPv4-mapped IPv6 hashes like the IPv4 address.
        let a = b.pick(ip("192.0.2.77"), |_| true, |_| 0);
        assert_eq!(b.pick(ip("::ffff:192.0.2.77"), |_| true, |_| 0), a);
    }
}
