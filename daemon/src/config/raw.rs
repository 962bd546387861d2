//! The raw serde view of `halo.toml`: every key optional, every value kept
//! with its byte span, nothing range-checked.
//!
//! A value of the wrong type does not abort deserialization: [`Field`]
//! records the type error in place and the rest of the file is still read,
//! so `halo check` can report every problem at once. Unknown keys are not
//! seen here at all (serde skips them); `schema.rs` reports them from the
//! parsed document, using the field lists of these structs.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::time::Duration;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// A present key's value with its span, or the reason it has the wrong type.
#[derive(Debug)]
pub struct Field<T> {
    pub span: Range<usize>,
    pub value: Result<T, String>,
}

/// An optional key.
pub type Opt<T> = Option<Field<T>>;

/// `[vrrp.NAME]` / `[proxy.NAME]`: the name (with its span) -> the table.
pub type Named<T> = BTreeMap<Spanned<String>, Field<T>>;

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Catch<T>>::deserialize(d)?;
        let span = spanned.span();
        Ok(Field {
            span,
            value: spanned.into_inner().0,
        })
    }
}

/// Deserializes `T` and turns its failure into a value. This is sound with
/// toml's deserializer because each value is already parsed into a tree: a
/// failed visit leaves nothing half-read behind.
struct Catch<T>(Result<T, String>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Catch<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Catch(T::deserialize(d).map_err(|e| tidy(&e.to_string()))))
    }
}

/// serde's messages name Rust types ("expected i64", "a sequence"); say it
/// in TOML words, as "expected X, found Y".
fn tidy(message: &str) -> String {
    let first = message.lines().next().unwrap_or(message).trim();
    let words = first
        .replace("i64", "an integer")
        .replace("a sequence", "an array")
        .replace("a map", "a table");
    match words
        .strip_prefix("invalid type: ")
        .and_then(|rest| rest.split_once(", expected "))
    {
        Some((found, expected)) => format!("expected {expected}, found {found}"),
        None => words,
    }
}

/// A duration string ("1.5s"); see `duration.rs`.
#[derive(Debug, Clone, Copy)]
pub struct RawDuration(pub Duration);

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration string such as \"2s\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawDuration, E> {
                super::duration::parse(s)
                    .map(RawDuration)
                    .map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<RawDuration, E> {
                Err(E::custom(format!(
                    "a duration needs a unit: write \"{n}s\" (units: ms, s, m, h)"
                )))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<RawDuration, E> {
                Err(E::custom(format!(
                    "a duration needs a unit: write \"{n}s\" (units: ms, s, m, h)"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// `expect_status`: 200, [200, 301] or "200-399".
#[derive(Debug, Clone)]
pub enum RawExpect {
    Code(i64),
    Codes(Vec<i64>),
    Range(String),
}

impl<'de> Deserialize<'de> for RawExpect {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawExpect;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a status code (200), a list ([200, 301]) or a range (\"200-399\")")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<RawExpect, E> {
                Ok(RawExpect::Code(n))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawExpect, E> {
                Ok(RawExpect::Range(s.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawExpect, A::Error> {
                let mut codes = Vec::new();
                while let Some(code) = seq.next_element::<i64>()? {
                    codes.push(code);
                }
                Ok(RawExpect::Codes(codes))
            }
        }
        d.deserialize_any(V)
    }
}

// === the document ===

#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    pub global: Opt<RawGlobal>,
    pub admin: Opt<super::admin::RawAdmin>,
    pub vrrp: Opt<Named<RawVrrp>>,
    pub proxy: Opt<Named<RawProxy>>,
    pub track_script: Opt<Named<RawTrackScript>>,
    pub l4: Opt<Named<super::l4::RawL4>>,
    pub vrrp_sync_group: Opt<Named<RawSyncGroup>>,
    pub anycast: Opt<Named<super::anycast::RawAnycast>>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a [vrrp_sync_group.NAME] table")]
pub struct RawSyncGroup {
    pub instances: Opt<Vec<Field<String>>>,
    pub notify_master: Opt<Vec<Field<String>>>,
    pub notify_backup: Opt<Vec<Field<String>>>,
    pub notify_fault: Opt<Vec<Field<String>>>,
    pub notify: Opt<Vec<Field<String>>>,
    pub script_user: Opt<String>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a [global] table")]
pub struct RawGlobal {
    pub log_level: Opt<String>,
    pub control_socket: Opt<String>,
    pub pid_file: Opt<String>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a [vrrp.NAME] table")]
pub struct RawVrrp {
    pub interface: Opt<String>,
    pub vrid: Opt<i64>,
    pub version: Opt<i64>,
    pub priority: Opt<i64>,
    pub advert_interval: Opt<RawDuration>,
    pub virtual_ips: Opt<Vec<Field<String>>>,
    pub nopreempt: Opt<bool>,
    pub preempt_delay: Opt<RawDuration>,
    pub unicast_peers: Opt<Vec<Field<String>>>,
    pub unicast_src: Opt<String>,
    pub auth_pass: Opt<String>,
    pub v3_checksum_as_v2: Opt<bool>,
    pub garp_repeat: Opt<i64>,
    pub garp_interval: Opt<RawDuration>,
    pub garp_refresh: Opt<RawDuration>,
    pub track: Opt<Vec<Field<RawTrack>>>,
    pub notify_master: Opt<Vec<Field<String>>>,
    pub notify_backup: Opt<Vec<Field<String>>>,
    pub notify_fault: Opt<Vec<Field<String>>>,
    pub notify_stop: Opt<Vec<Field<String>>>,
    pub notify: Opt<Vec<Field<String>>>,
    pub script_user: Opt<String>,
    pub script_timeout: Opt<RawDuration>,
    pub notify_retries: Opt<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a table such as { proxy = \"web\", weight = -50 }")]
pub struct RawTrack {
    pub interface: Opt<String>,
    pub proxy: Opt<String>,
    pub script: Opt<String>,
    pub l4: Opt<String>,
    pub weight: Opt<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a [track_script.NAME] table")]
pub struct RawTrackScript {
    pub command: Opt<Vec<Field<String>>>,
    pub interval: Opt<RawDuration>,
    pub timeout: Opt<RawDuration>,
    pub rise: Opt<i64>,
    pub fall: Opt<i64>,
    pub weight: Opt<i64>,
    pub user: Opt<String>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a [proxy.NAME] table")]
pub struct RawProxy {
    pub mode: Opt<String>,
    pub send_proxy: Opt<String>,
    pub bind: Opt<Vec<Field<super::tls::StrOr<super::tls::RawBind>>>>,
    pub hsts: Opt<String>,
    pub balance: Opt<String>,
    pub servers: Opt<Vec<Field<RawServer>>>,
    pub retries: Opt<i64>,
    pub maxconn: Opt<i64>,
    pub queue: Opt<i64>,
    pub forwardfor: Opt<bool>,
    pub forwardfor_except: Opt<Vec<Field<String>>>,
    pub io: Opt<String>,
    pub workers: Opt<i64>,
    pub dontlognull: Opt<bool>,
    pub timeouts: Opt<RawTimeouts>,
    pub limits: Opt<RawLimits>,
    pub health: Opt<RawHealth>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a table such as { name = \"web1\", address = \"192.0.2.21:80\" }")]
pub struct RawServer {
    pub name: Opt<String>,
    pub address: Opt<String>,
    pub weight: Opt<i64>,
    pub maxconn: Opt<i64>,
    pub send_proxy: Opt<String>,
    pub tls: Opt<super::upstream_tls::RawUpstreamTls>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a [proxy.NAME.timeouts] table")]
pub struct RawTimeouts {
    pub connect: Opt<RawDuration>,
    pub client: Opt<RawDuration>,
    pub server: Opt<RawDuration>,
    pub http_request: Opt<RawDuration>,
    pub keep_alive: Opt<RawDuration>,
    pub queue: Opt<RawDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a [proxy.NAME.limits] table")]
pub struct RawLimits {
    pub max_head_bytes: Opt<i64>,
    pub max_headers: Opt<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a [proxy.NAME.health] table")]
pub struct RawHealth {
    #[serde(rename = "type")]
    pub kind: Opt<String>,
    pub method: Opt<String>,
    pub path: Opt<String>,
    pub host: Opt<String>,
    pub expect_status: Opt<RawExpect>,
    pub expect_body_digest: Opt<String>,
    pub interval: Opt<RawDuration>,
    pub fast_interval: Opt<RawDuration>,
    pub timeout: Opt<RawDuration>,
    pub rise: Opt<i64>,
    pub fall: Opt<i64>,
    pub initial: Opt<String>,
    pub observe: Opt<Vec<Field<String>>>,
    pub tls: Opt<super::upstream_tls::BoolOr<super::upstream_tls::RawUpstreamTls>>,
}

// === field lists, for the unknown-key walk ===

/// The TOML keys a raw struct reads, taken from its serde derive so that the
/// unknown-key check can never drift from the structs above.
pub fn keys_of<T: de::DeserializeOwned>() -> &'static [&'static str] {
    let grab = KeyGrab(Cell::new(&[]));
    let _ = T::deserialize(&grab);
    grab.0.get()
}

/// A deserializer that only answers `deserialize_struct`, to read `fields`.
struct KeyGrab(Cell<&'static [&'static str]>);

impl<'de> Deserializer<'de> for &KeyGrab {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("field list only"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.set(fields);
        Err(de::Error::custom("field list only"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_reads_the_derive() {
        assert_eq!(keys_of::<RawLimits>(), ["max_head_bytes", "max_headers"]);
        assert!(keys_of::<RawHealth>().contains(&"type"));
    }

    #[test]
    fn tidy_speaks_toml() {
        assert_eq!(
            tidy("invalid type: string \"x\", expected i64\n"),
            "expected an integer, found string \"x\""
        );
        assert_eq!(
            tidy("invalid type: integer `1`, expected a sequence"),
            "expected an array, found integer `1`"
        );
    }
}
