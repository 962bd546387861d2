//! Unknown keys: walks the parsed document along the shape of the raw
//! structs and reports every key they do not read, with a suggestion.
//!
//! serde silently skips unknown keys (and `deny_unknown_fields` would stop
//! at the first), so this walk is how every misspelled key gets reported.
//! Values of the wrong type are not judged here; `raw::Field` does that.

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::diag::{did_you_mean, Diag};
use super::raw::{
    keys_of, RawConfig, RawGlobal, RawHealth, RawLimits, RawProxy, RawServer, RawSyncGroup,
    RawTimeouts, RawTrack, RawTrackScript, RawVrrp,
};

/// Report every unknown key in the document.
pub fn check_keys(root: &DeTable<'_>, diag: &mut Diag) {
    check_table(root, keys_of::<RawConfig>(), "the top level", diag);
    if let Some(global) = table(root, "global") {
        check_table(global, keys_of::<RawGlobal>(), "[global]", diag);
    }
    if let Some(admin) = table(root, "admin") {
        let known = keys_of::<super::admin::RawAdmin>();
        check_table(admin, known, "[admin]", diag);
    }
    for (name, vrrp) in named_tables(root, "vrrp") {
        let here = format!("[vrrp.{name}]");
        check_table(vrrp, keys_of::<RawVrrp>(), &here, diag);
        for track in array_tables(vrrp, "track") {
            check_table(track, keys_of::<RawTrack>(), "a track entry", diag);
        }
    }
    for (name, group) in named_tables(root, "vrrp_sync_group") {
        let here = format!("[vrrp_sync_group.{name}]");
        check_table(group, keys_of::<RawSyncGroup>(), &here, diag);
    }
    for (name, a) in named_tables(root, "anycast") {
        let here = format!("[anycast.{name}]");
        check_table(a, keys_of::<super::anycast::RawAnycast>(), &here, diag);
        for track in array_tables(a, "track") {
            check_table(track, keys_of::<RawTrack>(), "a track entry", diag);
        }
    }
    for (name, script) in named_tables(root, "track_script") {
        let here = format!("[track_script.{name}]");
        check_table(script, keys_of::<RawTrackScript>(), &here, diag);
    }
    for (name, l4) in named_tables(root, "l4") {
        let here = format!("[l4.{name}]");
        check_table(l4, keys_of::<super::l4::RawL4>(), &here, diag);
        for server in array_tables(l4, "servers") {
            check_table(
                server,
                keys_of::<super::l4::RawL4Server>(),
                "a server entry",
                diag,
            );
        }
        if let Some(t) = table(l4, "health") {
            check_table(
                t,
                keys_of::<RawHealth>(),
                &format!("[l4.{name}.health]"),
                diag,
            );
            if let Some(tls) = table(t, "tls") {
                let known = keys_of::<super::upstream_tls::RawUpstreamTls>();
                check_table(tls, known, &format!("[l4.{name}.health.tls]"), diag);
            }
        }
    }
    for (name, proxy) in named_tables(root, "proxy") {
        let here = format!("[proxy.{name}]");
        check_table(proxy, keys_of::<RawProxy>(), &here, diag);
        for server in array_tables(proxy, "servers") {
            check_table(server, keys_of::<RawServer>(), "a server entry", diag);
            if let Some(tls) = table(server, "tls") {
                let known = keys_of::<super::upstream_tls::RawUpstreamTls>();
                check_table(tls, known, "a server's `tls`", diag);
            }
        }
        for bind in array_tables(proxy, "bind") {
            check_table(bind, keys_of::<super::tls::RawBind>(), "a bind entry", diag);
            if let Some(tls) = table(bind, "tls") {
                check_table(tls, keys_of::<super::tls::RawTls>(), "`tls`", diag);
                for cert in array_tables(tls, "certificates") {
                    let known = keys_of::<super::tls::RawCert>();
                    check_table(cert, known, "a certificate entry", diag);
                }
            }
        }
        let sub = [
            ("timeouts", keys_of::<RawTimeouts>()),
            ("limits", keys_of::<RawLimits>()),
            ("health", keys_of::<RawHealth>()),
        ];
        for (key, known) in sub {
            if let Some(t) = table(proxy, key) {
                check_table(t, known, &format!("[proxy.{name}.{key}]"), diag);
            }
        }
        if let Some(tls) = table(proxy, "health").and_then(|h| table(h, "tls")) {
            let known = keys_of::<super::upstream_tls::RawUpstreamTls>();
            check_table(tls, known, &format!("[proxy.{name}.health.tls]"), diag);
        }
    }
}

fn check_table(t: &DeTable<'_>, known: &[&str], here: &str, diag: &mut Diag) {
    for key in t.keys() {
        if !known.contains(&key.get_ref().as_ref()) {
            let hint = did_you_mean(key.get_ref(), known);
            diag.error(
                &key.span(),
                format!("unknown key `{}` in {here}{hint}", key.get_ref()),
            );
        }
    }
}

fn get<'t, 'i>(t: &'t DeTable<'i>, key: &str) -> Option<&'t Spanned<DeValue<'i>>> {
    t.iter().find(|(k, _)| k.get_ref() == key).map(|(_, v)| v)
}

fn table<'t, 'i>(t: &'t DeTable<'i>, key: &str) -> Option<&'t DeTable<'i>> {
    get(t, key).and_then(|v| v.get_ref().as_table())
}

/// `[vrrp.NAME]` tables: (NAME, table) for each entry that is a table.
fn named_tables<'t, 'i>(
    t: &'t DeTable<'i>,
    key: &str,
) -> impl Iterator<Item = (&'t str, &'t DeTable<'i>)> {
    table(t, key).into_iter().flat_map(|named| {
        named
            .iter()
            .filter_map(|(k, v)| Some((k.get_ref().as_ref(), v.get_ref().as_table()?)))
    })
}

/// The tables inside an array such as `servers = [{...}, {...}]`.
fn array_tables<'t, 'i>(t: &'t DeTable<'i>, key: &str) -> impl Iterator<Item = &'t DeTable<'i>> {
    get(t, key)
        .and_then(|v| v.get_ref().as_array())
        .into_iter()
        .flat_map(|a| a.iter().filter_map(|v| v.get_ref().as_table()))
}
