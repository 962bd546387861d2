//! The tables built for NAT and DR services: dispatch, scheduling order,
//! persistence, down servers, sorry server, reconcile of an existing table,
//! and that every command stays inside `halo_l4`.

use serde_json::{json, Value};

use super::*;
use crate::config::{self, L4Service};

fn svc(text: &str) -> L4Service {
    let full = format!("[l4.web]\n{text}");
    match config::parse_str("t.toml", &full) {
        Ok(c) => c.l4.into_iter().next().expect("one service"),
        Err(e) => panic!("{e}"),
    }
}

const NAT3: &str = r#"address = "192.0.2.100"
port = 80
servers = [
  { name = "web1", address = "192.0.2.21:80" },
  { name = "web2", address = "192.0.2.22:8080", weight = 2 },
  { name = "web3", address = "192.0.2.23" },
]
"#;

fn nat_state(s: &L4Service, usable: Vec<bool>) -> ServiceState<'_> {
    ServiceState {
        svc: s,
        macs: vec![None; s.servers.len()],
        usable,
        sorry_mac: None,
        if_mac: None,
    }
}

fn cmds(tx: &Value) -> Vec<Value> {
    tx["nftables"].as_array().expect("array").clone()
}

/// The rules added to `chain`, as their expression lists.
fn rules(tx: &Value, chain: &str) -> Vec<Value> {
    cmds(tx)
        .into_iter()
        .filter_map(|c| {
            let r = c.get("add")?.get("rule")?;
            (r["chain"] == chain).then(|| r["expr"].clone())
        })
        .collect()
}

/// The goto targets of a chain's vmap rule, in key order, and the key.
fn vmap(tx: &Value, chain: &str) -> Option<(Value, Vec<String>)> {
    rules(tx, chain).into_iter().find_map(|e| {
        let v = e[0].get("vmap")?.clone();
        let targets = v["data"]["set"]
            .as_array()?
            .iter()
            .map(|kv| kv[1]["goto"]["target"].as_str().unwrap().to_string())
            .collect();
        Some((v["key"].clone(), targets))
    })
}

#[test]
fn schedule_is_smooth_weighted_round_robin() {
    assert_eq!(schedule(&[(0, 1), (1, 1), (2, 1)]), vec![0, 1, 2]);
    assert_eq!(schedule(&[(0, 1), (1, 2)]), vec![1, 0, 1]);
    // Weights are reduced by their gcd: 2:2 is one slot each.
    assert_eq!(schedule(&[(3, 2), (5, 2)]), vec![3, 5]);
    assert_eq!(
        schedule(&[(0, 5), (1, 1), (2, 1)]),
        vec![0, 0, 1, 0, 2, 0, 0]
    );
    assert!(schedule(&[]).is_empty());
}

#[test]
fn nat_round_robin_ignores_weights_and_dnats_to_each_server() {
    let s = svc(NAT3);
    let tx = transaction(&[nat_state(&s, vec![true; 3])], &Current::default());
    let (key, targets) = vmap(&tx, "svc.web").expect("a vmap");
    assert_eq!(key, json!({"numgen": {"mode": "inc", "mod": 3}}));
    assert_eq!(targets, ["srv.web.web1", "srv.web.web2", "srv.web.web3"]);
    assert_eq!(
        rules(&tx, "srv.web.web2"),
        vec![json!([
            {"counter": "srv.web.web2"},
            {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}},
            {"dnat": {"family": "ip", "addr": "192.0.2.22", "port": 8080}}
        ])]
    );
    // A bare server address takes the service's port.
    assert_eq!(rules(&tx, "srv.web.web3")[0][2]["dnat"]["port"], 80);
    // Both the forwarded and the balancer's own traffic are dispatched.
    for chain in ["prerouting", "output"] {
        assert_eq!(
            rules(&tx, chain),
            vec![json!([
                {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "192.0.2.100"}},
                {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 80}},
                {"jump": {"target": "svc.web"}}
            ])]
        );
    }
    // snat is on by default: replies come back through the balancer.
    let post = rules(&tx, "postrouting");
    assert_eq!(post.len(), 1);
    assert_eq!(post[0][4], json!({"masquerade": null}));
}

#[test]
fn weighted_and_source_hash_use_the_weights() {
    let s = svc(&format!("scheduler = \"wrr\"\n{NAT3}"));
    let tx = transaction(&[nat_state(&s, vec![true; 3])], &Current::default());
    let (_, targets) = vmap(&tx, "svc.web").unwrap();
    assert_eq!(
        targets,
        [
            "srv.web.web2",
            "srv.web.web1",
            "srv.web.web3",
            "srv.web.web2"
        ]
    );
    let s = svc(&format!("scheduler = \"sh\"\n{NAT3}"));
    let tx = transaction(&[nat_state(&s, vec![true; 3])], &Current::default());
    let (key, targets) = vmap(&tx, "svc.web").unwrap();
    assert_eq!(key["jhash"]["mod"], 4);
    assert_eq!(
        key["jhash"]["expr"],
        json!({"payload": {"protocol": "ip", "field": "saddr"}})
    );
    assert_eq!(targets.len(), 4);
}

#[test]
fn a_down_server_leaves_the_map() {
    let s = svc(NAT3);
    let tx = transaction(
        &[nat_state(&s, vec![true, false, true])],
        &Current::default(),
    );
    let (key, targets) = vmap(&tx, "svc.web").unwrap();
    assert_eq!(key["numgen"]["mod"], 2);
    assert_eq!(targets, ["srv.web.web1", "srv.web.web3"]);
    // Its chain stays, with its counter, for status.
    assert_eq!(rules(&tx, "srv.web.web2").len(), 1);
}

#[test]
fn no_server_up_goes_to_the_sorry_server_or_drops() {
    let s = svc(&format!("sorry = \"192.0.2.30:8080\"\n{NAT3}"));
    let tx = transaction(&[nat_state(&s, vec![false; 3])], &Current::default());
    assert!(vmap(&tx, "svc.web").is_none());
    assert_eq!(
        rules(&tx, "svc.web")[1],
        json!([{"goto": {"target": "sorry.web"}}])
    );
    assert_eq!(
        rules(&tx, "sorry.web")[0][2]["dnat"],
        json!({"family": "ip", "addr": "192.0.2.30", "port": 8080})
    );
    // With some server up, the sorry server takes nothing.
    let tx = transaction(
        &[nat_state(&s, vec![false, true, false])],
        &Current::default(),
    );
    assert!(rules(&tx, "sorry.web").is_empty());

    let s = svc(NAT3);
    let tx = transaction(&[nat_state(&s, vec![false; 3])], &Current::default());
    assert_eq!(
        rules(&tx, "svc.web").last().unwrap(),
        &json!([{"drop": null}])
    );
}

#[test]
fn persistence_keeps_a_client_on_its_server_and_forgets_down_ones() {
    let s = svc(&format!("persistence = \"5m\"\n{NAT3}"));
    let tx = transaction(
        &[nat_state(&s, vec![true, false, true])],
        &Current::default(),
    );
    let sets: Vec<Value> = cmds(&tx)
        .into_iter()
        .filter_map(|c| c.get("add")?.get("set").cloned())
        .collect();
    assert_eq!(sets.len(), 3);
    assert_eq!(sets[0]["name"], "p4.web.web1.300");
    assert_eq!(sets[0]["type"], "ipv4_addr");
    assert_eq!(sets[0]["timeout"], 300);
    let saddr = json!({"payload": {"protocol": "ip", "field": "saddr"}});
    let svc_rules = rules(&tx, "svc.web");
    // counter, then a lookup per usable server, then the scheduler.
    assert_eq!(
        svc_rules[1],
        json!([
            {"match": {"op": "==", "left": saddr, "right": "@p4.web.web1.300"}},
            {"goto": {"target": "srv.web.web1"}}
        ])
    );
    assert_eq!(svc_rules[2][1]["goto"]["target"], "srv.web.web3");
    assert!(svc_rules[3][0].get("vmap").is_some());
    assert_eq!(
        rules(&tx, "srv.web.web1")[0][0],
        json!({"set": {"op": "update", "elem": saddr, "set": "@p4.web.web1.300"}})
    );
    // The down server's clients are scheduled again.
    assert!(cmds(&tx).contains(&json!({"flush": {"set": {
        "family": "inet", "table": "halo_l4", "name": "p4.web.web2.300"}}})));
}

#[test]
fn reconcile_keeps_sets_replaces_chains_and_stays_in_its_table() {
    let s = svc(&format!("persistence = \"5m\"\n{NAT3}"));
    let current = Current {
        inet: Some(Existing {
            chains: vec!["prerouting".into(), "svc.old".into()],
            sets: vec!["p4.web.web1.300".into(), "p4.web.web1.60".into()],
            counters: vec![],
        }),
        netdev: Some(Existing::default()),
    };
    let tx = transaction(&[nat_state(&s, vec![true; 3])], &current);
    let c = cmds(&tx);
    let table = json!({"family": "inet", "name": "halo_l4"});
    assert_eq!(c[0], json!({"add": {"table": table}}));
    assert_eq!(c[1], json!({"flush": {"table": table}}));
    let deleted: Vec<Value> = c.iter().filter_map(|x| x.get("delete").cloned()).collect();
    assert!(deleted
        .contains(&json!({"chain": {"family": "inet", "table": "halo_l4", "name": "svc.old"}})));
    assert!(deleted.contains(
        &json!({"set": {"family": "inet", "table": "halo_l4", "name": "p4.web.web1.60"}})
    ));
    assert!(!deleted
        .iter()
        .any(|d| d["set"]["name"] == "p4.web.web1.300"));
    // Kept sets are not added again (that would fail once the kernel has
    // marked them dynamic); the new ones are.
    let added: Vec<Value> = c
        .iter()
        .filter_map(|x| Some(x.get("add")?.get("set")?["name"].clone()))
        .collect();
    assert_eq!(added, ["p4.web.web2.300", "p4.web.web3.300"]);
    // No DR service any more: the netdev table goes.
    assert!(deleted.contains(&json!({"table": {"family": "netdev", "name": "halo_l4"}})));
    // Every command names halo's table and nothing else.
    for cmd in &c {
        let (_, body) = cmd.as_object().unwrap().iter().next().unwrap();
        let (kind, obj) = body.as_object().unwrap().iter().next().unwrap();
        let name = if kind == "table" {
            &obj["name"]
        } else {
            &obj["table"]
        };
        assert_eq!(name, "halo_l4", "{cmd}");
    }
}

#[test]
fn teardown_deletes_only_what_exists() {
    assert_eq!(teardown(&Current::default()), json!({"nftables": []}));
    let c = Current {
        inet: None,
        netdev: Some(Existing::default()),
    };
    assert_eq!(
        teardown(&c),
        json!({"nftables": [{"delete": {"table": {"family": "netdev", "name": "halo_l4"}}}]})
    );
}

const DR2: &str = r#"address = "192.0.2.100"
port = 80
forward = "dr"
interface = "eth0"
servers = [
  { name = "web1", address = "192.0.2.21" },
  { name = "web2", address = "192.0.2.22:80" },
]
"#;

#[test]
fn direct_routing_rewrites_macs_keeps_flows_and_waits_for_unknown_macs() {
    let s = svc(DR2);
    let st = ServiceState {
        svc: &s,
        usable: vec![true, true],
        macs: vec![Some([2, 0, 0, 0, 0, 0x21]), None],
        sorry_mac: None,
        if_mac: Some([2, 0, 0, 0, 0, 0x11]),
    };
    let tx = transaction(&[st], &Current::default());
    let chain = cmds(&tx)
        .into_iter()
        .find_map(|c| {
            let ch = c.get("add")?.get("chain")?.clone();
            (ch["name"] == "ingress.eth0").then_some(ch)
        })
        .expect("ingress chain");
    assert_eq!(chain["family"], "netdev");
    assert_eq!(chain["hook"], "ingress");
    assert_eq!(chain["dev"], "eth0");
    assert_eq!(
        rules(&tx, "ingress.eth0")[0][0],
        json!({"match": {"op": "==", "left": {"meta": {"key": "protocol"}}, "right": "ip"}})
    );
    // web2's MAC is unknown: it takes nothing yet.
    let (_, targets) = vmap(&tx, "svc.web").unwrap();
    assert_eq!(targets, ["srv.web.web1"]);
    let key = json!({"concat": [
        {"payload": {"protocol": "ip", "field": "saddr"}},
        {"payload": {"protocol": "tcp", "field": "sport"}}
    ]});
    assert_eq!(
        rules(&tx, "srv.web.web1")[0],
        json!([
            {"set": {"op": "update", "elem": key, "set": "@f4.web.web1.300"}},
            {"counter": "srv.web.web1"},
            {"mangle": {"key": {"payload": {"protocol": "ether", "field": "saddr"}}, "value": "02:00:00:00:00:11"}},
            {"mangle": {"key": {"payload": {"protocol": "ether", "field": "daddr"}}, "value": "02:00:00:00:00:21"}},
            {"fwd": {"dev": "eth0"}}
        ])
    );
    // Established flows stay on their server (looked up before scheduling).
    assert_eq!(
        rules(&tx, "svc.web")[1][0]["match"]["right"],
        "@f4.web.web1.300"
    );
    // Nothing in the inet family.
    assert!(!cmds(&tx).iter().any(|c| c.to_string().contains("\"inet\"")));
}

#[test]
fn listing_gives_objects_and_counter_values() {
    let listing = json!({"nftables": [
        {"metainfo": {"version": "1.0.6"}},
        {"table": {"family": "inet", "name": "halo_l4", "handle": 1}},
        {"set": {"family": "inet", "name": "p4.web.web1.300", "table": "halo_l4"}},
        {"counter": {"family": "inet", "name": "svc.web", "table": "halo_l4", "packets": 5, "bytes": 300}},
        {"chain": {"family": "inet", "table": "halo_l4", "name": "svc.web"}},
        {"rule": {"chain": "svc.web", "expr": [{"counter": "svc.web"}]}}
    ]});
    let (ex, counters) = parse_listing(&listing);
    assert_eq!(ex.chains, ["svc.web"]);
    assert_eq!(ex.sets, ["p4.web.web1.300"]);
    assert_eq!(ex.counters, ["svc.web"]);
    assert_eq!(
        counters,
        vec![(
            "svc.web".to_string(),
            Counter {
                packets: 5,
                bytes: 300
            }
        )]
    );
}

#[test]
fn counters_are_named_kept_and_pruned() {
    let s = svc(NAT3);
    let current = Current {
        inet: Some(Existing {
            chains: vec!["svc.web".into()],
            sets: vec![],
            counters: vec!["svc.web".into(), "srv.web.gone".into()],
        }),
        netdev: None,
    };
    let tx = transaction(&[nat_state(&s, vec![true; 3])], &current);
    let c = cmds(&tx);
    let obj = |n: &str| json!({"family": "inet", "table": "halo_l4", "name": n});
    assert!(c.contains(&json!({"delete": {"counter": obj("srv.web.gone")}})));
    assert!(!c.contains(&json!({"delete": {"counter": obj("svc.web")}})));
    for n in ["svc.web", "srv.web.web1", "srv.web.web2", "srv.web.web3"] {
        assert!(c.contains(&json!({"add": {"counter": obj(n)}})), "{n}");
    }
    assert_eq!(rules(&tx, "svc.web")[0], json!([{"counter": "svc.web"}]));
}
