//! Validated configuration: the typed values the rest of halo works with.
//!
//! Nothing here parses text. `config::load` turns a `halo.toml` into these
//! values (or into a list of located errors); every other module takes them
//! as given and never re-checks ranges.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

/// The whole validated file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub global: Global,
    /// VRRP instances, in file order.
    pub vrrp: Vec<VrrpInstance>,
    /// Proxy services, in file order.
    pub proxy: Vec<ProxyService>,
    /// `[admin]`: metrics and status page listener (off by default).
    pub admin: super::Admin,
    /// `[track_script.NAME]` sections, in file order.
    pub track_scripts: Vec<TrackScript>,
    /// `[l4.NAME]` kernel-balanced services, in file order.
    pub l4: Vec<super::L4Service>,
    /// `[vrrp_sync_group.NAME]` sections, in file order.
    pub sync_groups: Vec<SyncGroup>,
    /// `[anycast.NAME]` addresses held while their tracks are up, in file order.
    pub anycast: Vec<Anycast>,
    /// Things accepted but worth telling the operator (e.g. an `auth_pass`
    /// longer than the 8 bytes VRRPv2 carries); `halo check` prints them.
    pub warnings: Vec<super::ConfigError>,
}

/// `[global]`: process-wide settings. Every path halo writes comes from here
/// (or a CLI flag), so several halos on one machine do not collide.
#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    /// `log_level`, e.g. "info" or a tracing filter; `RUST_LOG` wins.
    pub log_level: Option<String>,
    /// `control_socket`, default `/run/halo/halo.sock`.
    pub control_socket: PathBuf,
    /// `pid_file`, none by default.
    pub pid_file: Option<PathBuf>,
}

// === VRRP ===

/// Virtual router identifier, 1..=255 (RFC 5798 5.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vrid(u8);

impl Vrid {
    pub fn new(v: u8) -> Option<Vrid> {
        (v != 0).then_some(Vrid(v))
    }
    pub fn get(self) -> u8 {
        self.0
    }
}

/// Router priority. 1..=254 for a backup-capable router, 255 only for the
/// address owner; 0 is never configured (it means "master is leaving").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(u8);

impl Priority {
    pub const OWNER: Priority = Priority(255);
    pub fn new(v: u8) -> Option<Priority> {
        (v != 0).then_some(Priority(v))
    }
    pub fn get(self) -> u8 {
        self.0
    }
}

/// VRRP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VrrpVersion {
    /// RFC 3768: IPv4 only, interval in whole seconds, optional simple auth.
    V2,
    /// RFC 5798 / RFC 9568: IPv4 and IPv6, interval in centiseconds.
    V3,
}

/// Advertisement interval in centiseconds. v3: 1..=4095 (10 ms .. 40.95 s);
/// v2: a whole number of seconds, 1..=255 s (stored as centiseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AdvertInterval(u16);

impl AdvertInterval {
    pub fn from_centis(cs: u16) -> Option<AdvertInterval> {
        (1..=4095).contains(&cs).then_some(AdvertInterval(cs))
    }
    /// A VRRPv2 interval of whole seconds, 1..=255 (RFC 3768 5.3.7); above
    /// 40 s this is outside the v3 range, so only v2 code may see it.
    pub fn from_secs(s: u8) -> Option<AdvertInterval> {
        (s != 0).then_some(AdvertInterval(u16::from(s) * 100))
    }
    pub fn centis(self) -> u16 {
        self.0
    }
    pub fn as_duration(self) -> Duration {
        Duration::from_millis(u64::from(self.0) * 10)
    }
}

/// v2 simple-text password: keepalived uses only the first 8 bytes, zero padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuthPass(pub [u8; 8]);

/// Something whose failure lowers the effective priority by `weight`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    pub what: TrackTarget,
    /// Added to the priority while the target is down; negative in practice.
    pub weight: i16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackTarget {
    /// Link state of a network interface (netlink).
    Interface(String),
    /// A proxy service: down while it has no healthy server or its listener failed.
    Proxy(String),
    /// A `[track_script.NAME]`: down while its command fails.
    Script(String),
    /// An `[l4.NAME]` service: down while it has no healthy server.
    L4(String),
}

/// Who hooks and track scripts run as when the file does not say:
/// never root unless the file says `"root"`.
pub const DEFAULT_SCRIPT_USER: &str = "halo";

/// The `notify*` hooks of one instance and how they are run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hooks {
    /// argv lists; no shell unless the list itself starts one.
    pub master: Option<Vec<String>>,
    pub backup: Option<Vec<String>>,
    pub fault: Option<Vec<String>>,
    pub stop: Option<Vec<String>>,
    /// Generic hook: gets `INSTANCE NAME STATE PRIORITY` appended, as
    /// keepalived's `notify` does.
    pub notify: Option<Vec<String>>,
    /// `script_user`, a user name resolved at start.
    pub user: String,
    /// `script_timeout`: a hook still running after this is killed.
    pub timeout: Duration,
    /// `notify_retries`: extra attempts of a failed `notify_master`.
    pub retries: u32,
}

impl Hooks {
    /// True when at least one hook is configured.
    pub fn any(&self) -> bool {
        self.master.is_some()
            || self.backup.is_some()
            || self.fault.is_some()
            || self.stop.is_some()
            || self.notify.is_some()
    }
}

/// `[track_script.NAME]`: a command run every `interval`; exit 0 is
/// success, anything else (including "cannot run it") is failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackScript {
    pub name: String,
    pub command: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// Used by tracks that name this script without their own weight.
    pub weight: i16,
    pub user: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VrrpInstance {
    /// The table name, e.g. `VI_1`.
    pub name: String,
    pub interface: String,
    pub vrid: Vrid,
    pub version: VrrpVersion,
    pub priority: Priority,
    pub advert_interval: AdvertInterval,
    /// Addresses with prefix length; all of one family in v3, IPv4 in v2.
    pub virtual_ips: Vec<IpNet>,
    /// Preemption (RFC 5798 `Preempt_Mode`), on unless `nopreempt = true`.
    pub preempt: bool,
    /// Wait this long after start before preempting a lower-priority master.
    pub preempt_delay: Duration,
    /// Unicast mode: send adverts to these peers instead of multicast.
    pub unicast_peers: Vec<IpAddr>,
    /// Source address for unicast adverts (default: the interface's primary).
    pub unicast_src: Option<IpAddr>,
    pub auth_pass: Option<AuthPass>,
    /// Accept/send the v3 checksum without the IPv4 pseudo-header, as
    /// keepalived's `vrrp_version 3` + `v3_checksum_as_v2` peers do.
    pub v3_checksum_as_v2: bool,
    /// Gratuitous ARP / unsolicited NA count on becoming master.
    pub garp_repeat: u32,
    /// Delay between those repeats.
    pub garp_interval: Duration,
    /// While master, refresh GARPs this often (none = off).
    pub garp_refresh: Option<Duration>,
    pub track: Vec<Track>,
    pub hooks: Hooks,
}

// === Proxy ===

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Smooth weighted round robin.
    RoundRobin,
    LeastConn,
    /// Hash of the client address.
    Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoDriver {
    Auto,
    Uring,
    Epoll,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub name: String,
    pub address: SocketAddr,
    /// 1..=256 (HAProxy's range); 0 is not allowed, use `disabled`.
    pub weight: u32,
    /// Concurrent requests to this server, 0 = unlimited.
    pub maxconn: u32,
    /// PROXY protocol header sent first on each connection to this server
    /// (`mode = "tcp"` only): the server's `send_proxy`, else the service's.
    pub send_proxy: Option<ProxyProtocol>,
    /// TLS to this server (its `tls` table); equal when the CA file's
    /// content is.
    pub tls: Option<std::sync::Arc<crate::tls::client::ClientTls>>,
}

/// PROXY protocol version (haproxy.org/download/2.9/doc/proxy-protocol.txt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocol {
    /// Human-readable line.
    V1,
    /// Binary.
    V2,
}

/// What a `[proxy.NAME]` service proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// HTTP/1.1 reverse proxy (the default).
    Http,
    /// Plain TCP relay, one server connection per client connection.
    Tcp,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExpectStatus {
    Codes(Vec<u16>),
    Range(u16, u16),
}

impl ExpectStatus {
    pub fn matches(&self, status: u16) -> bool {
        match self {
            ExpectStatus::Codes(c) => c.contains(&status),
            ExpectStatus::Range(lo, hi) => (*lo..=*hi).contains(&status),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum DigestAlg {
    Md5,
    Sha256,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    Http {
        method: String,
        path: String,
        host: Option<String>,
        expect_status: ExpectStatus,
        /// (algorithm, lowercase hex digest of the body).
        expect_body_digest: Option<(DigestAlg, String)>,
    },
    Tcp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub kind: CheckKind,
    pub interval: Duration,
    /// Interval while a server is between states (rising or falling).
    pub fast_interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// State before the first check: true = up (HAProxy starts servers up).
    pub initial_up: bool,
    /// Passive: count connect failures on real traffic toward `fall`.
    pub observe_connect_errors: bool,
    /// Passive: count 5xx responses too.
    pub observe_5xx: bool,
    /// Whether checks speak TLS (default: as each server's traffic).
    pub tls: super::HealthTls,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Timeouts {
    pub connect: Duration,
    pub client: Duration,
    pub server: Duration,
    pub http_request: Duration,
    pub keep_alive: Duration,
    pub queue: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest request or response head in bytes.
    pub max_head_bytes: usize,
    pub max_headers: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ForwardFor {
    pub enabled: bool,
    /// Clients in these networks get no X-Forwarded-For added.
    pub except: Vec<IpNet>,
}

/// What one `bind` address speaks.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BindOpts {
    /// TLS with these certificates; equal when the files' contents are.
    pub tls: Option<std::sync::Arc<crate::tls::ServerTls>>,
    /// Answer every request with a 308 to its `https://` URL.
    pub redirect_https: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProxyService {
    pub name: String,
    pub mode: ProxyMode,
    pub bind: Vec<SocketAddr>,
    /// Per `bind` address, in the same order.
    pub bind_opts: Vec<BindOpts>,
    /// Strict-Transport-Security for responses over TLS.
    pub hsts: Option<String>,
    pub balance: Balance,
    pub servers: Vec<Server>,
    pub health: Option<HealthCheck>,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub retries: u32,
    /// Concurrent client connections for the service (0 = unlimited).
    pub maxconn: u32,
    /// Requests waiting for a server slot, beyond which 503.
    pub queue_len: u32,
    pub forwardfor: ForwardFor,
    pub io: IoDriver,
    /// Worker threads; default the number of cores.
    pub workers: usize,
    pub dontlognull: bool,
}

/// `[vrrp_sync_group.NAME]`: instances that change state together
/// (`vrrp::sync_group` decides), with the group's own hooks.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncGroup {
    pub name: String,
    /// Names of `[vrrp.*]` instances, at least one, each in one group only.
    pub instances: Vec<String>,
    /// argv lists run when the group becomes MASTER, BACKUP or FAULT;
    /// `notify` gets what an instance's does, with the group's name.
    pub notify_master: Option<Vec<String>>,
    pub notify_backup: Option<Vec<String>>,
    pub notify_fault: Option<Vec<String>>,
    pub notify: Option<Vec<String>>,
    pub script_user: String,
}

/// `[anycast.NAME]`: an address held on `interface` (the loopback) while
/// every tracked item is up, for a routing daemon on the host to announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anycast {
    pub name: String,
    /// A host prefix: /32 or /128.
    pub address: IpNet,
    pub interface: String,
    /// All must be up for the address to be held (no weights).
    pub track: Vec<TrackTarget>,
    /// After a withdrawal the address still answers (a local route) this
    /// long, so connections the router sent before it heard finish.
    pub drain: Duration,
}
