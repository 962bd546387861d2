//! `[admin]`: the HTTP listener for `/metrics`, `/status.json` and the live
//! status page. Raw table, validation and the typed result.
//!
//! Only the shape of the password hash is checked here (a SHA-512 crypt
//! string, `$6$...`); verifying a password against it is the admin
//! listener's job (`admin::auth`). No `bind` means no listener, and there
//! is never a default password.

use std::net::SocketAddr;

use serde::Deserialize;

use super::diag::Diag;
use super::raw::{Field, Opt};
use super::validate::{list, no_duplicates, parse_as, take, Span};

#[derive(Debug, Deserialize)]
#[serde(expecting = "an [admin] table")]
pub struct RawAdmin {
    pub bind: Opt<Vec<Field<String>>>,
    pub basic_auth_user: Opt<String>,
    pub basic_auth_hash: Opt<String>,
}

/// `[admin]`, validated. The default is off.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Admin {
    /// Addresses to listen on; empty = no listener.
    pub bind: Vec<SocketAddr>,
    pub basic_auth: Option<BasicAuth>,
}

/// HTTP basic auth on every admin path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    pub user: String,
    /// A SHA-512 crypt string (`mkpasswd -m sha-512`), shape checked.
    pub hash: String,
}

/// The most SHA-512 crypt rounds accepted: each failed login costs this
/// many rounds of CPU (about 0.5 s at 1e6 on a Raspberry Pi 4).
pub const MAX_ROUNDS: u32 = 1_000_000;

pub fn admin(d: &mut Diag, f: Opt<RawAdmin>) -> Admin {
    let Some((at, raw)) = take(d, "admin", f) else {
        return Admin::default();
    };
    let mut bind = Vec::new();
    if let Some((_, items)) = list(d, "bind", raw.bind) {
        let mut seen = Vec::new();
        for (span, text) in items {
            let Some(addr) = parse_as::<SocketAddr>(
                d,
                "bind",
                &span,
                &text,
                "an address with a port such as \"127.0.0.1:8404\" or \"[::1]:8404\"",
            ) else {
                continue;
            };
            if addr.port() == 0 {
                d.error(
                    &span,
                    "`bind`: the admin listener needs a port other than 0",
                );
                continue;
            }
            seen.push((span, addr));
            bind.push(addr);
        }
        no_duplicates(d, "admin bind address", seen);
    }
    let user = take(d, "basic_auth_user", raw.basic_auth_user);
    let hash = take(d, "basic_auth_hash", raw.basic_auth_hash);
    let basic_auth = match (user, hash) {
        (None, None) => None,
        (Some((at, _)), None) => {
            d.error(&at, "`basic_auth_user` needs `basic_auth_hash` too");
            None
        }
        (None, Some((at, _))) => {
            d.error(&at, "`basic_auth_hash` needs `basic_auth_user` too");
            None
        }
        (Some((uat, user)), Some((hat, hash))) => {
            let user_ok = check_user(d, &uat, &user);
            let hash_ok = match check_hash(&hash) {
                Ok(()) => true,
                Err(why) => {
                    d.error(&hat, format!("`basic_auth_hash`: {why}"));
                    false
                }
            };
            (user_ok && hash_ok).then_some(BasicAuth { user, hash })
        }
    };
    // Also on loopback: every local user and process (a web app on the
    // same Pi, say) can read the page, and a port forward puts it further.
    if basic_auth.is_none() {
        if let Some(open) = bind.iter().find(|a| !a.ip().is_loopback()) {
            d.warn(
                &at,
                format!(
                    "[admin] listens on {open} without basic auth: anyone who can reach it sees the status page and metrics"
                ),
            );
        } else if let Some(local) = bind.first() {
            d.warn(
                &at,
                format!(
                    "[admin] listens on {local} without basic auth: every local user and process sees the status page and metrics (set basic_auth_user and basic_auth_hash)"
                ),
            );
        }
    }
    Admin { bind, basic_auth }
}

fn check_user(d: &mut Diag, at: &Span, user: &str) -> bool {
    let why = if user.is_empty() {
        "must not be empty"
    } else if user.contains(':') {
        "must not contain `:` (basic auth splits user and password there)"
    } else if user.chars().any(char::is_control) {
        "must not contain control characters"
    } else {
        return true;
    };
    d.error(at, format!("`basic_auth_user` {why}"));
    false
}

/// Characters of crypt's base64 (salt and hash).
fn crypt64(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == '/'
}

/// The parts of a SHA-512 crypt string: `$6$[rounds=N$]SALT$HASH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptParts<'a> {
    /// None: the default of 5000.
    pub rounds: Option<u32>,
    pub salt: &'a str,
    pub hash: &'a str,
}

/// Split a SHA-512 crypt string, checking its shape; the reason if bad.
pub fn crypt_parts(s: &str) -> Result<CryptParts<'_>, String> {
    let hint =
        "expected a SHA-512 crypt hash such as `mkpasswd -m sha-512` prints (\"$6$salt$...\")";
    let Some(rest) = s.strip_prefix("$6$") else {
        return Err(
            if s.starts_with("$2") || s.starts_with("$y$") || s.starts_with("$5$") {
                format!("this hash type is not supported; {hint}")
            } else {
                hint.to_string()
            },
        );
    };
    let mut parts: Vec<&str> = rest.split('$').collect();
    let rounds = match parts.first().and_then(|p| p.strip_prefix("rounds=")) {
        Some(n) => {
            let n: u32 = n
                .parse()
                .map_err(|_| format!("rounds=\"{n}\" is not a number"))?;
            if !(1000..=MAX_ROUNDS).contains(&n) {
                return Err(format!("rounds must be 1000..={MAX_ROUNDS}, got {n}"));
            }
            parts.remove(0);
            Some(n)
        }
        None => None,
    };
    let [salt, hash] = parts[..] else {
        return Err(hint.to_string());
    };
    if salt.is_empty() || salt.len() > 16 || !salt.chars().all(crypt64) {
        return Err(format!(
            "the salt must be 1 to 16 characters of [./0-9A-Za-z]; {hint}"
        ));
    }
    if hash.len() != 86 || !hash.chars().all(crypt64) {
        return Err(format!(
            "the hash part must be 86 characters of [./0-9A-Za-z]; {hint}"
        ));
    }
    Ok(CryptParts { rounds, salt, hash })
}

fn check_hash(s: &str) -> Result<(), String> {
    crypt_parts(s).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `mkpasswd -m sha-512 -S saltsalt secret`.
    const HASH: &str = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";

    const PROXY: &str = "[proxy.web]\nbind = [\"127.0.0.1:8080\"]\nservers = [{ name = \"a\", address = \"127.0.0.1:81\" }]\n";

    fn errors(admin: &str) -> Vec<String> {
        match crate::config::parse_str("t.toml", &format!("{admin}{PROXY}")) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn off_by_default_and_parsed_when_given() {
        let cfg = crate::config::parse_str("t.toml", PROXY).expect("valid");
        assert_eq!(cfg.admin, Admin::default());
        let text = format!(
            "[admin]\nbind = [\"127.0.0.1:8404\", \"[::1]:8404\"]\nbasic_auth_user = \"ops\"\nbasic_auth_hash = \"{HASH}\"\n{PROXY}"
        );
        let cfg = crate::config::parse_str("t.toml", &text).expect("valid");
        assert_eq!(cfg.admin.bind.len(), 2);
        assert_eq!(
            cfg.admin.basic_auth,
            Some(BasicAuth {
                user: "ops".into(),
                hash: HASH.into()
            })
        );
        assert!(cfg.warnings.is_empty());
    }

    #[test]
    fn located_errors() {
        assert_eq!(
            errors("[admin]\nbind = [\"localhost:80\"]\n"),
            ["t.toml:2:9: `bind`: \"localhost:80\" is not an address with a port such as \"127.0.0.1:8404\" or \"[::1]:8404\""]
        );
        assert_eq!(
            errors("[admin]\nbind = [\"127.0.0.1:0\"]\n"),
            ["t.toml:2:9: `bind`: the admin listener needs a port other than 0"]
        );
        assert_eq!(
            errors("[admin]\nbind = [\"127.0.0.1:1\", \"127.0.0.1:1\"]\n"),
            ["t.toml:2:24: duplicate admin bind address 127.0.0.1:1 (first at 2:9)"]
        );
        assert_eq!(
            errors("[admin]\nbasic_auth_user = \"ops\"\n"),
            ["t.toml:2:19: `basic_auth_user` needs `basic_auth_hash` too"]
        );
        assert_eq!(
            errors("[admin]\nbasic_auth_hash = \"x\"\nbasic_auth_user = \"a:b\"\n"),
            [
                "t.toml:2:19: `basic_auth_hash`: expected a SHA-512 crypt hash such as `mkpasswd -m sha-512` prints (\"$6$salt$...\")",
                "t.toml:3:19: `basic_auth_user` must not contain `:` (basic auth splits user and password there)",
            ]
        );
        assert_eq!(
            errors("[admin]\nbnd = []\n"),
            ["t.toml:2:1: unknown key `bnd` in [admin]; did you mean `bind`?"]
        );
        assert_eq!(
            errors("admin = 3\n"),
            ["t.toml:1:9: `admin`: expected an [admin] table, found integer `3`"]
        );
    }

    #[test]
    fn open_listener_off_loopback_is_a_warning() {
        let text = format!("[admin]\nbind = [\"0.0.0.0:8404\"]\n{PROXY}");
        let cfg = crate::config::parse_str("t.toml", &text).expect("valid");
        assert_eq!(cfg.warnings.len(), 1);
        assert!(cfg.warnings[0].message.contains("without basic auth"));
    }

    #[test]
    fn open_listener_on_loopback_is_a_warning_too() {
        // Regression (issue 12): only non-loopback addresses warned.
        for bind in ["127.0.0.1:8404", "[::1]:8404"] {
            let text = format!("[admin]\nbind = [\"{bind}\"]\n{PROXY}");
            let cfg = crate::config::parse_str("t.toml", &text).expect("valid");
            let w: Vec<String> = cfg.warnings.iter().map(|w| w.to_string()).collect();
            assert_eq!(
                w,
                [format!("t.toml:1:1: warning: [admin] listens on {bind} without basic auth: every local user and process sees the status page and metrics (set basic_auth_user and basic_auth_hash)")]
            );
        }
        // With auth, or without a listener: no warning.
        let text = format!(
            "[admin]\nbind = [\"127.0.0.1:8404\"]\nbasic_auth_user = \"ops\"\nbasic_auth_hash = \"{HASH}\"\n{PROXY}"
        );
        assert!(crate::config::parse_str("t.toml", &text)
            .unwrap()
            .warnings
            .is_empty());
        let text = format!("[admin]\n{PROXY}");
        assert!(crate::config::parse_str("t.toml", &text)
            .unwrap()
            .warnings
            .is_empty());
    }

    #[test]
    fn crypt_shapes() {
        let p = crypt_parts(HASH).expect("good hash");
        assert_eq!((p.rounds, p.salt), (None, "saltsalt"));
        let with_rounds = HASH.replace("$6$", "$6$rounds=10000$");
        assert_eq!(crypt_parts(&with_rounds).map(|p| p.rounds), Ok(Some(10000)));
        for bad in [
            "",
            "secret",
            "$6$",
            "$6$salt",
            "$6$salt$short",
            "$6$rounds=10$salt$x",
            "$6$rounds=x$salt$x",
            "$1$abc$def",
        ] {
            assert!(crypt_parts(bad).is_err(), "{bad:?} accepted");
        }
        assert!(crypt_parts(&HASH.replace("$6$", "$6$rounds=2000000$"))
            .unwrap_err()
            .contains("rounds must be"));
        assert!(crypt_parts("$2b$05$abc")
            .unwrap_err()
            .contains("not supported"));
        assert!(crypt_parts(&format!("{HASH}$")).is_err());
        assert!(crypt_parts(&HASH.replace("saltsalt", "salt!")).is_err());
    }
}
