//! External commands in the config: `[track_script.NAME]` sections and the
//! `notify*` hook keys of `[vrrp.NAME]` -> [`TrackScript`]s and [`Hooks`].
//!
//! Only the text is judged here (argv shape, ranges, defaults). Whether the
//! user exists or the program can be executed is found out by the daemon at
//! start and at run time (`hooks`, `track_script`), not by `halo check`.

use std::collections::BTreeMap;
use std::time::Duration;

use toml::Spanned;

use super::diag::Diag;
use super::raw::{Field, Opt, RawTrackScript, RawVrrp};
use super::validate::{at_most, int, int_at, list, positive, required_list, take, Span};
use super::{Hooks, TrackScript, DEFAULT_SCRIPT_USER};

const DEFAULT_SCRIPT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_TRACK_INTERVAL: Duration = Duration::from_secs(2);
const DEFAULT_TRACK_TIMEOUT: Duration = Duration::from_secs(2);
/// A hook or check running longer than this is a mistake, not a plan.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// Retries of `notify_master`; more than this is a loop, not a retry.
const MAX_RETRIES: i64 = 100;

/// Every `[track_script.*]` in file order, and each name with its weight
/// (none when the weight itself was bad) for the tracks that name it.
pub fn track_scripts(
    d: &mut Diag,
    raw: Vec<(Spanned<String>, RawTrackScript)>,
) -> (Vec<TrackScript>, BTreeMap<String, Option<i16>>) {
    let mut out = Vec::new();
    let mut names = BTreeMap::new();
    for (name, r) in raw {
        let here = format!("[track_script.{}]", name.get_ref());
        let table = name.span();
        let command = required_list(d, "command", r.command, &table, &here)
            .and_then(|(at, items)| argv(d, "command", at, items));
        let (iat, interval) = positive(d, "interval", r.interval, DEFAULT_TRACK_INTERVAL);
        at_most(d, "interval", &iat, interval, MAX_INTERVAL);
        let (tat, timeout) = positive(d, "timeout", r.timeout, DEFAULT_TRACK_TIMEOUT);
        at_most(d, "timeout", &tat, timeout, MAX_TIMEOUT);
        let rise = int(d, "rise", r.rise, 1..=100, 2) as u32;
        let fall = int(d, "fall", r.fall, 1..=100, 2) as u32;
        let weight = match r.weight {
            None => {
                d.error(&table, format!("{here} needs `weight` (-254..=254, added to the priority while the script fails; tracks naming it may give their own)"));
                None
            }
            some => weight(d, some),
        };
        let user = user(d, "user", r.user);
        names.insert(name.get_ref().clone(), weight);
        if let (Some(command), Some(weight)) = (command, weight) {
            out.push(TrackScript {
                name: name.get_ref().clone(),
                command,
                interval,
                timeout,
                rise,
                fall,
                weight,
                user,
            });
        }
    }
    (out, names)
}

/// A track weight: -254..=254 and not 0.
pub fn weight(d: &mut Diag, f: Opt<i64>) -> Option<i16> {
    int_at(d, "weight", f, -254..=254).and_then(|(at, w)| {
        if w == 0 {
            d.error(
                &at,
                "track `weight` 0 would never change the priority: use -254..=-1 (or 1..=254)",
            );
            None
        } else {
            Some(w as i16)
        }
    })
}

/// The hook keys of one `[vrrp.NAME]`; they are taken out of `r`.
pub fn hooks(d: &mut Diag, r: &mut RawVrrp) -> Hooks {
    let mut hook = |key: &str, f: &mut Opt<Vec<Field<String>>>| {
        list(d, key, f.take()).and_then(|(at, items)| argv(d, key, at, items))
    };
    let master = hook("notify_master", &mut r.notify_master);
    let backup = hook("notify_backup", &mut r.notify_backup);
    let fault = hook("notify_fault", &mut r.notify_fault);
    let stop = hook("notify_stop", &mut r.notify_stop);
    let notify = hook("notify", &mut r.notify);
    let user = user(d, "script_user", r.script_user.take());
    let (tat, timeout) = positive(
        d,
        "script_timeout",
        r.script_timeout.take(),
        DEFAULT_SCRIPT_TIMEOUT,
    );
    at_most(d, "script_timeout", &tat, timeout, MAX_TIMEOUT);
    let retries_f: Opt<i64> = r.notify_retries.take();
    let retries_at = retries_f.as_ref().map(|f| f.span.clone());
    let retries = int(d, "notify_retries", retries_f, 0..=MAX_RETRIES, 0) as u32;
    if let (Some(at), true, None) = (retries_at, retries > 0, &master) {
        d.error(
            &at,
            "`notify_retries` retries `notify_master`, which is not set",
        );
    }
    Hooks {
        master,
        backup,
        fault,
        stop,
        notify,
        user,
        timeout,
        retries,
    }
}

/// An argv list: a program and its arguments, no shell involved.
pub(super) fn argv(
    d: &mut Diag,
    key: &str,
    at: Span,
    items: Vec<(Span, String)>,
) -> Option<Vec<String>> {
    let Some((pat, program)) = items.first() else {
        d.error(
            &at,
            format!("`{key}` is empty: give the program and its arguments, e.g. [\"/usr/local/bin/move-ip\", \"--to\", \"me\"]"),
        );
        return None;
    };
    let mut ok = true;
    if program.is_empty() {
        d.error(pat, format!("`{key}`: the program name is empty"));
        ok = false;
    } else if !program.starts_with('/') && program.contains('/') {
        d.error(
            pat,
            format!("`{key}`: \"{program}\" is a relative path; give an absolute path (or a bare name, looked up in halo's fixed PATH)"),
        );
        ok = false;
    } else if items.len() == 1 && program.contains(char::is_whitespace) {
        // keepalived's `notify_master "/etc/keepalived/notify.sh master"`
        // is one string split by keepalived; halo does not split.
        d.error(
            pat,
            format!("`{key}`: \"{program}\" contains spaces; write each argument as its own list item, e.g. [\"/etc/keepalived/notify.sh\", \"master\"] (there is no shell unless you write [\"/bin/sh\", \"-c\", \"...\"])"),
        );
        ok = false;
    }
    for (iat, arg) in &items {
        if arg.contains('\0') {
            d.error(iat, format!("`{key}`: an argument contains a NUL byte"));
            ok = false;
        }
    }
    ok.then(|| items.into_iter().map(|(_, a)| a).collect())
}

/// A user name for scripts; `DEFAULT_SCRIPT_USER` when absent.
pub(super) fn user(d: &mut Diag, key: &str, f: Opt<String>) -> String {
    let Some((at, name)) = take(d, key, f) else {
        return DEFAULT_SCRIPT_USER.to_string();
    };
    let valid = !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '$'));
    if !valid {
        d.error(&at, format!("`{key}` \"{name}\" is not a user name"));
        return DEFAULT_SCRIPT_USER.to_string();
    }
    name
}

#[cfg(test)]
mod tests {
    use super::super::{parse_str, TrackTarget};
    use super::*;

    const VRRP: &str = "[vrrp.v]\ninterface = \"eth0\"\nvrid = 1\nvirtual_ips = [\"192.0.2.1\"]\n";

    use crate::config::tests::errors;

    #[test]
    fn hooks_and_scripts_parse_with_defaults() {
        let c = parse_str(
            "t.toml",
            &format!(
                "[track_script.chk]\ncommand = [\"/usr/bin/pgrep\", \"nginx\"]\nweight = -20\n\n{VRRP}\
                 notify_master = [\"/usr/local/bin/move-ip\", \"--to\", \"me\"]\nnotify_retries = 3\n\
                 notify = [\"logger\"]\ntrack = [{{ script = \"chk\" }}, {{ script = \"chk\", weight = -5 }}]\n"
            ),
        )
        .unwrap();
        let s = &c.track_scripts[0];
        assert_eq!(s.name, "chk");
        assert_eq!(s.command, ["/usr/bin/pgrep", "nginx"]);
        assert_eq!(
            (s.interval, s.timeout, s.rise, s.fall, s.weight),
            (Duration::from_secs(2), Duration::from_secs(2), 2, 2, -20)
        );
        assert_eq!(s.user, "halo");
        let v = &c.vrrp[0];
        assert_eq!(v.track[0].what, TrackTarget::Script("chk".into()));
        assert_eq!(v.track[0].weight, -20, "the script's weight");
        assert_eq!(v.track[1].weight, -5, "the track's own weight wins");
        let h = &v.hooks;
        assert_eq!(
            h.master.as_deref(),
            Some(
                &[
                    "/usr/local/bin/move-ip".to_string(),
                    "--to".into(),
                    "me".into()
                ][..]
            )
        );
        assert_eq!(h.notify.as_deref(), Some(&["logger".to_string()][..]));
        assert_eq!(
            (h.backup.as_ref(), h.fault.as_ref(), h.stop.as_ref()),
            (None, None, None)
        );
        assert_eq!(h.user, "halo");
        assert_eq!(h.timeout, Duration::from_secs(10));
        assert_eq!(h.retries, 3);
        assert!(h.any());
        assert!(!parse_str("t.toml", VRRP).unwrap().vrrp[0].hooks.any());
    }

    #[test]
    fn root_only_when_written() {
        let c = parse_str(
            "t.toml",
            &format!("{VRRP}notify_backup = [\"/bin/true\"]\nscript_user = \"root\"\nscript_timeout = \"1s\"\n"),
        )
        .unwrap();
        assert_eq!(c.vrrp[0].hooks.user, "root");
        assert_eq!(c.vrrp[0].hooks.timeout, Duration::from_secs(1));
    }

    #[test]
    fn bad_commands_are_located() {
        assert_eq!(
            errors(&format!("{VRRP}notify_master = []\n")),
            ["5:17: `notify_master` is empty: give the program and its arguments, e.g. [\"/usr/local/bin/move-ip\", \"--to\", \"me\"]"]
        );
        let e = errors(&format!(
            "{VRRP}notify_master = [\"/etc/keepalived/notify.sh master\"]\n"
        ));
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with(
                "5:18: `notify_master`: \"/etc/keepalived/notify.sh master\" contains spaces"
            ),
            "{e:?}"
        );
        let e = errors(&format!("{VRRP}notify = [\"./x.sh\"]\n"));
        assert!(
            e[0].starts_with("5:11: `notify`: \"./x.sh\" is a relative path"),
            "{e:?}"
        );
        assert_eq!(
            errors(&format!("{VRRP}notify_master = \"/bin/x\"\n")),
            ["5:17: `notify_master`: expected an array, found string \"/bin/x\""]
        );
    }

    #[test]
    fn bad_values_are_located() {
        assert_eq!(
            errors(&format!("{VRRP}notify_retries = 2\n")),
            ["5:18: `notify_retries` retries `notify_master`, which is not set"]
        );
        assert_eq!(
            errors(&format!(
                "{VRRP}notify_stop = [\"/bin/true\"]\nscript_user = \"a b\"\n"
            )),
            ["6:15: `script_user` \"a b\" is not a user name"]
        );
        assert_eq!(
            errors(&format!(
                "{VRRP}notify_stop = [\"/bin/true\"]\nscript_timeout = \"0s\"\n"
            )),
            ["6:18: `script_timeout` must be more than 0s"]
        );
        let script = "[track_script.chk]\ncommand = [\"/bin/true\"]\n";
        assert_eq!(
            errors(&format!("{script}\n{VRRP}")),
            ["1:15: [track_script.chk] needs `weight` (-254..=254, added to the priority while the script fails; tracks naming it may give their own)"]
        );
        assert_eq!(
            errors(&format!("{script}weight = 0\nrise = 0\n{VRRP}")),
            [
                "3:10: track `weight` 0 would never change the priority: use -254..=-1 (or 1..=254)",
                "4:8: `rise` must be 1..=100, got 0",
            ]
        );
        assert_eq!(
            errors(&format!(
                "[track_script.chk]\nweight = -2\nintervall = \"1s\"\n{VRRP}"
            )),
            [
                "1:15: [track_script.chk] needs `command`",
                "3:1: unknown key `intervall` in [track_script.chk]; did you mean `interval`?",
            ]
        );
    }

    #[test]
    fn tracks_must_name_a_script_that_exists() {
        let script = "[track_script.chk_nginx]\ncommand = [\"/bin/true\"]\nweight = -2\n";
        assert_eq!(
            errors(&format!("{script}{VRRP}track = [{{ script = \"chk_ngnix\" }}]\n")),
            ["8:21: track names script \"chk_ngnix\" but there is no [track_script.chk_ngnix] section; did you mean `chk_nginx`?"]
        );
        assert_eq!(
            errors(&format!(
                "{script}{VRRP}track = [{{ script = \"chk_nginx\", interface = \"eth1\" }}]\n"
            )),
            ["8:10: track entry needs exactly one of `interface`, `proxy`, `script` or `l4`"]
        );
        // A script with a bad weight: one error, at the script.
        let bad = "[track_script.chk]\ncommand = [\"/bin/true\"]\nweight = 999\n";
        assert_eq!(
            errors(&format!("{bad}{VRRP}track = [{{ script = \"chk\" }}]\n")),
            ["3:10: `weight` must be -254..=254, got 999"]
        );
    }
}
