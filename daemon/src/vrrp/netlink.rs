//! Thin netlink driver: interface lookup, link-state events, and adding or
//! removing virtual IPs, all through `rtnetlink` (never by running `ip`).
//!
//! Nothing here decides anything; the VRRP driver asks and acts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use futures::{StreamExt, TryStreamExt};
use ipnet::IpNet;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::address::{
    AddressAttribute, AddressHeaderFlag, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlag, LinkMessage};
use netlink_packet_route::route::{RouteMessage, RouteProtocol, RouteScope, RouteType};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{AsyncSocket, SocketAddr};
use rtnetlink::Handle;

/// What halo needs to know about one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    /// Administratively up and carrier present (IFF_UP && IFF_LOWER_UP).
    pub up: bool,
}

/// A link-state change seen on the multicast group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkEvent {
    pub index: u32,
    pub name: String,
    pub up: bool,
}

fn link_info(msg: &LinkMessage) -> LinkInfo {
    let mut name = String::new();
    let mut mac = None;
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => name = n.clone(),
            LinkAttribute::Address(a) if a.len() == 6 => {
                let mut m = [0u8; 6];
                m.copy_from_slice(a);
                mac = Some(m);
            }
            _ => {}
        }
    }
    let flags = &msg.header.flags;
    LinkInfo {
        index: msg.header.index,
        name,
        mac,
        up: flags.contains(&LinkFlag::Up) && flags.contains(&LinkFlag::LowerUp),
    }
}

fn addr_of(msg: &AddressMessage) -> Option<IpAddr> {
    // IFA_LOCAL is the local address on point-to-point links; IFA_ADDRESS
    // otherwise. Prefer LOCAL when present, as iproute2 does.
    let mut addr = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(a) => return Some(*a),
            AddressAttribute::Address(a) => addr = Some(*a),
            _ => {}
        }
    }
    addr
}

/// A netlink route connection driven on the current tokio runtime.
///
/// One connection is shared by every VRRP instance. The kernel runs one
/// dump at a time per netlink socket and answers a second one started
/// meanwhile with EBUSY ("Device or resource busy"): two instances
/// listing addresses at once made one of them fail at start and keep a
/// stale VIP. So every dump holds `dumps` until it has read its last
/// message, and nothing else is sent while a dump is being read.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
    dumps: Arc<tokio::sync::Mutex<()>>,
}

impl Netlink {
    pub fn connect() -> Result<Netlink> {
        let (conn, handle, _) =
            rtnetlink::new_connection().context("opening a netlink route socket")?;
        tokio::spawn(conn);
        Ok(Netlink {
            handle,
            dumps: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// Every address message of the interface, read to the end.
    async fn dump_addresses(&self, index: u32) -> Result<Vec<AddressMessage>> {
        let _one_dump_at_a_time = self.dumps.lock().await;
        let mut stream = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let mut out = Vec::new();
        while let Some(msg) = stream.try_next().await? {
            out.push(msg);
        }
        Ok(out)
    }

    pub async fn link_by_name(&self, name: &str) -> Result<LinkInfo> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(Some(msg)) => Ok(link_info(&msg)),
            Ok(None) => bail!("no interface named {name:?}"),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {
                bail!("no interface named {name:?}")
            }
            Err(e) => Err(anyhow!("looking up interface {name:?}: {e}")),
        }
    }

    /// Every address on the interface, with its prefix length.
    pub async fn addresses(&self, index: u32) -> Result<Vec<(IpNet, AddressScope)>> {
        let mut out = Vec::new();
        for msg in self.dump_addresses(index).await? {
            if let Some(a) = addr_of(&msg) {
                if let Ok(net) = IpNet::new(a, msg.header.prefix_len) {
                    out.push((net, msg.header.scope));
                }
            }
        }
        Ok(out)
    }

    /// The interface's first IPv4 address that is not one of `exclude`
    /// (the VIPs): the source of VRRP adverts, as keepalived picks it.
    pub async fn primary_v4(&self, index: u32, exclude: &[IpAddr]) -> Result<Option<Ipv4Addr>> {
        Ok(self
            .addresses(index)
            .await?
            .into_iter()
            .find_map(|(n, _)| match n.addr() {
                IpAddr::V4(a) if !exclude.contains(&IpAddr::V4(a)) => Some(a),
                _ => None,
            }))
    }

    /// The interface's link-local IPv6 address (VRRPv3 over IPv6 sends
    /// from it) and whether it can be used yet.
    pub async fn link_local_v6(&self, index: u32) -> Result<LinkLocal> {
        let mut seen = LinkLocal::Missing;
        for msg in self.dump_addresses(index).await? {
            let (Some(IpAddr::V6(a)), AddressScope::Link) = (addr_of(&msg), msg.header.scope)
            else {
                continue;
            };
            let flags = address_flags(&msg);
            if flags & IFA_F_DADFAILED != 0 {
                seen = LinkLocal::DadFailed(a);
            } else if flags & IFA_F_TENTATIVE != 0 {
                if !matches!(seen, LinkLocal::DadFailed(_)) {
                    seen = LinkLocal::Tentative(a);
                }
            } else {
                return Ok(LinkLocal::Usable(a));
            }
        }
        Ok(seen)
    }

    /// Wait until the interface has an IPv4 address that is not one of
    /// `exclude` (at boot DHCP may not have given it one yet); `note` is
    /// called once if it has to wait. Subscribed before the first look,
    /// as `wait_link_local_v6`.
    pub async fn wait_primary_v4(
        &self,
        index: u32,
        exclude: &[IpAddr],
        note: impl FnOnce(),
    ) -> Result<Ipv4Addr> {
        let mut events = AddressEvents::subscribe(rtnetlink::constants::RTMGRP_IPV4_IFADDR)?;
        let mut note = Some(note);
        loop {
            if let Some(a) = self.primary_v4(index, exclude).await? {
                return Ok(a);
            }
            if let Some(n) = note.take() {
                n();
            }
            events.changed(index).await?;
        }
    }

    /// Wait until the interface has a usable link-local IPv6 address. At
    /// boot it may have none yet (no carrier: the kernel makes it when the
    /// link comes up) or one still tentative while duplicate address
    /// detection runs (about a second), and a socket cannot be bound to a
    /// tentative address. `note` hears each state on the way (to log it).
    /// Address events are subscribed to before the first look, so an
    /// address that becomes usable in between is not missed.
    pub async fn wait_link_local_v6(
        &self,
        index: u32,
        mut note: impl FnMut(&LinkLocal),
    ) -> Result<Ipv6Addr> {
        let mut events = AddressEvents::subscribe(rtnetlink::constants::RTMGRP_IPV6_IFADDR)?;
        let mut last = None;
        loop {
            let now = self.link_local_v6(index).await?;
            if let LinkLocal::Usable(a) = now {
                return Ok(a);
            }
            if last.as_ref() != Some(&now) {
                note(&now);
                last = Some(now);
            }
            events.changed(index).await?;
        }
    }

    /// Add `net` to the interface; an address already there is fine.
    ///
    /// An IPv6 VIP is added with IFA_F_NODAD, as keepalived does: with
    /// duplicate address detection (the kernel default) it would be
    /// tentative, so unusable, for a second or more after a takeover, and
    /// after a kill -9 or a split brain the old holder still answers for it,
    /// DAD fails and the VIP stays "dadfailed" for good. VRRP itself decides
    /// who holds it.
    pub async fn add_address(&self, index: u32, net: IpNet) -> Result<()> {
        let mut req = self
            .handle
            .address()
            .add(index, net.addr(), net.prefix_len());
        if net.addr().is_ipv6() {
            req.message_mut()
                .header
                .flags
                .push(AddressHeaderFlag::Nodad);
        }
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
            Err(e) => Err(anyhow!("adding {net}: {}", describe(&e))),
        }
    }

    /// Remove `net` from the interface; an address already gone is fine.
    pub async fn del_address(&self, index: u32, net: IpNet) -> Result<()> {
        for msg in self.dump_addresses(index).await? {
            if addr_of(&msg) == Some(net.addr()) && msg.header.prefix_len == net.prefix_len() {
                return match self.handle.address().del(msg).execute().await {
                    Ok(()) => Ok(()),
                    Err(rtnetlink::Error::NetlinkError(e))
                        if e.raw_code() == -libc::EADDRNOTAVAIL =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(anyhow!("removing {net}: {}", describe(&e))),
                };
            }
        }
        Ok(())
    }

    /// The route that makes `addr` local without holding it as an address:
    /// type local, in the local table, via `index`, metric 1 and protocol
    /// static so that it is never the kernel's own route for an address
    /// (metric 0, protocol kernel), which removing the address deletes.
    /// Routing daemons do not announce it (it is no connected route).
    fn local_route(&self, index: u32, addr: IpAddr) -> RouteMessage {
        let req = self
            .handle
            .route()
            .add()
            .table_id(u32::from(RT_TABLE_LOCAL))
            .kind(RouteType::Local)
            .scope(RouteScope::Host)
            .protocol(RouteProtocol::Static)
            .output_interface(index)
            .priority(1);
        match addr {
            IpAddr::V4(a) => {
                let mut r = req.v4().destination_prefix(a, 32);
                r.message_mut().clone()
            }
            IpAddr::V6(a) => {
                let mut r = req.v6().destination_prefix(a, 128);
                r.message_mut().clone()
            }
        }
    }

    /// Add the [`Netlink::local_route`] of `addr`; already there is fine.
    pub async fn add_local_route(&self, index: u32, addr: IpAddr) -> Result<()> {
        let msg = self.local_route(index, addr);
        let mut req = self.handle.route().add();
        *req.message_mut() = msg;
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
            Err(e) => Err(anyhow!("adding a local route for {addr}: {}", describe(&e))),
        }
    }

    /// Remove the [`Netlink::local_route`] of `addr`; already gone is fine.
    pub async fn del_local_route(&self, index: u32, addr: IpAddr) -> Result<()> {
        let msg = self.local_route(index, addr);
        match self.handle.route().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ESRCH => Ok(()),
            Err(e) => Err(anyhow!(
                "removing the local route for {addr}: {}",
                describe(&e)
            )),
        }
    }
}

/// The kernel's local routing table (RT_TABLE_LOCAL).
const RT_TABLE_LOCAL: u8 = 255;

const IFA_F_DADFAILED: u32 = 0x08;
const IFA_F_TENTATIVE: u32 = 0x40;

/// The address's flags: IFA_FLAGS (32 bits) when the kernel sends it, the
/// header's 8 bits otherwise.
fn address_flags(msg: &AddressMessage) -> u32 {
    for attr in &msg.attributes {
        if let AddressAttribute::Flags(f) = attr {
            return f.iter().fold(0, |acc, f| acc | u32::from(*f));
        }
    }
    msg.header
        .flags
        .iter()
        .fold(0, |acc, f| acc | u32::from(u8::from(*f)))
}

/// What an interface's link-local IPv6 address is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkLocal {
    /// None yet (at boot: no carrier, or IPv6 just enabled).
    Missing,
    /// Duplicate address detection is still running on it.
    Tentative(Ipv6Addr),
    /// Another host on the link uses it: it will not become usable.
    DadFailed(Ipv6Addr),
    Usable(Ipv6Addr),
}

/// Address changes of one family (RTMGRP_IPV4_IFADDR or
/// RTMGRP_IPV6_IFADDR) on a netlink socket of its own, for as long as the
/// value lives.
struct AddressEvents {
    rx: tokio::sync::mpsc::UnboundedReceiver<u32>,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl AddressEvents {
    fn subscribe(group: u32) -> Result<AddressEvents> {
        let (mut conn, _handle, mut messages) =
            rtnetlink::new_connection().context("opening a netlink socket for address events")?;
        conn.socket_mut()
            .socket_mut()
            .bind(&SocketAddr::new(0, group))
            .context("joining a netlink address group")?;
        let conn = tokio::spawn(conn);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let forward = tokio::spawn(async move {
            while let Some((msg, _)) = messages.next().await {
                let msg: NetlinkMessage<RouteNetlinkMessage> = msg;
                if let NetlinkPayload::InnerMessage(
                    RouteNetlinkMessage::NewAddress(a) | RouteNetlinkMessage::DelAddress(a),
                ) = &msg.payload
                {
                    if tx.send(a.header.index).is_err() {
                        break;
                    }
                }
            }
        });
        Ok(AddressEvents {
            rx,
            tasks: [conn, forward],
        })
    }

    /// Until an address of interface `index` changes.
    async fn changed(&mut self, index: u32) -> Result<()> {
        loop {
            match self.rx.recv().await {
                Some(i) if i == index => return Ok(()),
                Some(_) => {}
                None => bail!("the netlink address event socket closed"),
            }
        }
    }
}

impl Drop for AddressEvents {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn describe(e: &rtnetlink::Error) -> String {
    match e {
        rtnetlink::Error::NetlinkError(m) if m.raw_code() == -libc::EPERM => {
            "operation not permitted (halo needs CAP_NET_ADMIN)".into()
        }
        rtnetlink::Error::NetlinkError(m) => m.to_io().to_string(),
        other => other.to_string(),
    }
}

/// Subscribe to link changes. Events arrive on the returned channel until it
/// is dropped; the netlink socket lives in a task on the current runtime.
pub fn watch_links() -> Result<tokio::sync::mpsc::UnboundedReceiver<LinkEvent>> {
    let (mut conn, _handle, mut messages) =
        rtnetlink::new_connection().context("opening a netlink socket for link events")?;
    let groups = rtnetlink::constants::RTMGRP_LINK;
    conn.socket_mut()
        .socket_mut()
        .bind(&SocketAddr::new(0, groups))
        .context("joining the netlink link group")?;
    tokio::spawn(conn);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some((msg, _)) = messages.next().await {
            let msg: NetlinkMessage<RouteNetlinkMessage> = msg;
            if let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link))
            | NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) = &msg.payload
            {
                let deleted = matches!(
                    msg.payload,
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(_))
                );
                let info = link_info(link);
                let ev = LinkEvent {
                    index: info.index,
                    name: info.name,
                    up: info.up && !deleted,
                };
                if tx.send(ev).is_err() {
                    break;
                }
            }
        }
    });
    Ok(rx)
}
