//! HTTP basic auth for the admin listener, checked against a SHA-512 crypt
//! hash from the config (`mkpasswd -m sha-512`).
//!
//! Hashing costs thousands of SHA-512 rounds, so it is split from the
//! cheap part: [`Auth::quick`] decodes the header, refuses a wrong user or
//! a malformed header at once, and accepts the credentials that last
//! passed (compared as SHA-256 digests in constant time) so a page polling
//! every second is not hashed every second. [`Auth::verify`] does the
//! expensive check; the listener runs it off the event loop.
//!
//! There is no default password: without `basic_auth_*` in the config
//! there is no `Auth` and the listener is open (loopback in the example).

use std::sync::Mutex;

use base64ct::{Base64, Encoding};
use sha2::{Digest, Sha256};

use crate::config::{crypt_parts, BasicAuth};

/// What the cheap check decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Quick {
    Accept,
    Refuse,
    /// The user matches; the password needs the slow check.
    Verify(String),
}

pub struct Auth {
    user: String,
    salt: String,
    rounds: usize,
    /// The hash part of the crypt string, as crypt's base64.
    expected: String,
    /// SHA-256 of the Authorization value that last passed.
    remembered: Mutex<Option<[u8; 32]>>,
}

impl Auth {
    pub fn new(cfg: &BasicAuth) -> Result<Auth, String> {
        let parts = crypt_parts(&cfg.hash)?;
        Ok(Auth {
            user: cfg.user.clone(),
            salt: parts.salt.to_string(),
            rounds: parts
                .rounds
                .map_or(sha_crypt::ROUNDS_DEFAULT, |r| r as usize),
            expected: parts.hash.to_string(),
            remembered: Mutex::new(None),
        })
    }

    pub fn quick(&self, header: Option<&str>) -> Quick {
        let Some(header) = header else {
            return Quick::Refuse;
        };
        let digest: [u8; 32] = Sha256::digest(header.as_bytes()).into();
        if let Some(known) = *self.remembered.lock().unwrap_or_else(|e| e.into_inner()) {
            if ct_eq(&known, &digest) {
                return Quick::Accept;
            }
        }
        let Some((user, password)) = decode(header) else {
            return Quick::Refuse;
        };
        if !ct_eq(user.as_bytes(), self.user.as_bytes()) {
            return Quick::Refuse;
        }
        Quick::Verify(password)
    }

    /// The slow check of a password from [`Auth::quick`]; on success the
    /// header is remembered.
    pub fn verify(&self, header: &str, password: &str) -> bool {
        let Ok(params) = sha_crypt::Sha512Params::new(self.rounds) else {
            return false;
        };
        let Ok(got) =
            sha_crypt::sha512_crypt_b64(password.as_bytes(), self.salt.as_bytes(), &params)
        else {
            return false;
        };
        let ok = ct_eq(got.as_bytes(), self.expected.as_bytes());
        if ok {
            let digest: [u8; 32] = Sha256::digest(header.as_bytes()).into();
            *self.remembered.lock().unwrap_or_else(|e| e.into_inner()) = Some(digest);
        }
        ok
    }
}

/// `Basic BASE64(user:password)` -> (user, password).
pub fn decode(header: &str) -> Option<(String, String)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = Base64::decode_vec(rest.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Equal contents, in time that depends only on the lengths.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `mkpasswd -m sha-512 -S saltsalt secret` and `-R 10000`.
    const HASH: &str = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
    const HASH_R: &str = "$6$rounds=10000$saltsalt$WowrPBpEDVlCoruBosYlrZycTCx3//TyDHYqEhX9DUHHt0XTztUqzQDDUuvUGRA8aUe9p55hcAxeGcu58sm3u.";

    fn header(user: &str, pw: &str) -> String {
        format!(
            "Basic {}",
            Base64::encode_string(format!("{user}:{pw}").as_bytes())
        )
    }

    fn check(auth: &Auth, h: Option<&str>) -> bool {
        match auth.quick(h) {
            Quick::Accept => true,
            Quick::Refuse => false,
            Quick::Verify(pw) => auth.verify(h.unwrap_or_default(), &pw),
        }
    }

    #[test]
    fn mkpasswd_hashes_verify() {
        for hash in [HASH, HASH_R] {
            let auth = Auth::new(&BasicAuth {
                user: "ops".into(),
                hash: hash.into(),
            })
            .expect("valid hash");
            assert!(check(&auth, Some(&header("ops", "secret"))), "{hash}");
            assert!(!check(&auth, Some(&header("ops", "Secret"))));
            assert!(!check(&auth, Some(&header("op", "secret"))));
            assert!(!check(&auth, Some(&header("ops", ""))));
            assert!(!check(&auth, None));
            assert!(!check(&auth, Some("Bearer abc")));
            assert!(!check(&auth, Some("Basic !!!")));
            assert!(!check(&auth, Some("Basic")));
        }
    }

    #[test]
    fn the_last_good_header_skips_hashing() {
        let auth = Auth::new(&BasicAuth {
            user: "ops".into(),
            hash: HASH.into(),
        })
        .expect("valid hash");
        let good = header("ops", "secret");
        assert_eq!(auth.quick(Some(&good)), Quick::Verify("secret".into()));
        assert!(auth.verify(&good, "secret"));
        assert_eq!(auth.quick(Some(&good)), Quick::Accept);
        // A wrong password is never remembered.
        let bad = header("ops", "nope");
        assert!(!auth.verify(&bad, "nope"));
        assert_eq!(auth.quick(Some(&bad)), Quick::Verify("nope".into()));
    }

    #[test]
    fn passwords_may_hold_colons() {
        assert_eq!(
            decode(&header("u", "a:b")),
            Some(("u".to_string(), "a:b".to_string()))
        );
        assert_eq!(decode("basic   dTpw"), Some(("u".into(), "p".into())));
    }
}
