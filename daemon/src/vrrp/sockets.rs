//! Raw sockets for VRRP (IP protocol 112), gratuitous ARP and unsolicited
//! neighbour advertisements. Only I/O lives here: what to send and what a
//! received packet means is decided by `packet` and `router`.
//!
//! Receiving and sending use separate sockets on purpose: a raw socket bound
//! to a source address (so the kernel sends from it) only receives packets
//! addressed to that address, which would hide the multicast adverts.

use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::garp;

pub const IPPROTO_VRRP: i32 = 112;
pub const MCAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
pub const MCAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
const ALL_NODES_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// IP TOS / IPv6 traffic class of adverts: precedence 6, "internetwork
/// control" (DSCP CS6), as keepalived and FRR send them, so switches that
/// queue by class keep them ahead of bulk traffic.
pub const TOS_INTERNETWORK_CONTROL: u32 = 0xc0;

/// One received VRRP datagram with the IP-level facts the RFC checks.
#[derive(Debug)]
pub struct Received {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// TTL (IPv4) or hop limit (IPv6); must be 255 (RFC 5798 §7.1).
    pub ttl: u8,
    /// The VRRP message, IP header removed.
    pub payload: Vec<u8>,
}

fn perm_hint(e: io::Error, what: &str, cap: &str) -> io::Error {
    if e.kind() == io::ErrorKind::PermissionDenied {
        io::Error::new(e.kind(), format!("{what}: {e} (halo needs {cap})"))
    } else {
        io::Error::new(e.kind(), format!("{what}: {e}"))
    }
}

fn setsockopt_int(sock: &Socket, level: i32, name: i32, val: i32) -> io::Result<()> {
    // SAFETY: passing a valid pointer to an int of the declared size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            &val as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Register a socket with the tokio reactor for readability.
fn register(sock: Socket) -> io::Result<AsyncFd<Socket>> {
    // SAFETY: the Socket owns its fd and AsyncFd owns the Socket, so the fd
    // stays open for exactly as long as it is registered.
    unsafe { AsyncFd::register_with_interest(sock, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

/// Sockets of one VRRP instance on one interface and address family.
pub struct VrrpSockets {
    recv: AsyncFd<Socket>,
    send: Socket,
    v6: bool,
    ifindex: u32,
}

impl VrrpSockets {
    /// Open for IPv4: receive everything with protocol 112 on `ifname`
    /// (multicast group joined), send from `src` with TTL 255.
    pub fn open_v4(ifname: &str, ifindex: u32, src: Ipv4Addr) -> io::Result<VrrpSockets> {
        let proto = Some(Protocol::from(IPPROTO_VRRP));
        let recv = Socket::new(Domain::IPV4, Type::RAW, proto)
            .map_err(|e| perm_hint(e, "opening a raw VRRP socket", "CAP_NET_RAW"))?;
        recv.bind_device(Some(ifname.as_bytes()))
            .map_err(|e| perm_hint(e, "binding to the interface", "CAP_NET_RAW"))?;
        recv.join_multicast_v4_n(&MCAST_V4, &socket2::InterfaceIndexOrAddress::Index(ifindex))?;
        recv.set_nonblocking(true)?;

        let send = Socket::new(Domain::IPV4, Type::RAW, proto)
            .map_err(|e| perm_hint(e, "opening a raw VRRP socket", "CAP_NET_RAW"))?;
        send.bind_device(Some(ifname.as_bytes()))?;
        send.set_ttl(255)?;
        send.set_multicast_ttl_v4(255)?;
        send.set_multicast_loop_v4(false)?;
        send.set_tos(TOS_INTERNETWORK_CONTROL)?;
        send.bind(&SockAddr::from(SocketAddr::new(IpAddr::V4(src), 0)))
            .map_err(|e| io::Error::new(e.kind(), format!("binding VRRP source {src}: {e}")))?;
        send.set_nonblocking(true)?;
        Ok(VrrpSockets {
            recv: register(recv)?,
            send,
            v6: false,
            ifindex,
        })
    }

    /// Open for IPv6: hop limit 255, adverts sent from the link-local `src`.
    pub fn open_v6(ifname: &str, ifindex: u32, src: Ipv6Addr) -> io::Result<VrrpSockets> {
        let proto = Some(Protocol::from(IPPROTO_VRRP));
        let recv = Socket::new(Domain::IPV6, Type::RAW, proto)
            .map_err(|e| perm_hint(e, "opening a raw VRRP socket", "CAP_NET_RAW"))?;
        recv.bind_device(Some(ifname.as_bytes()))?;
        recv.join_multicast_v6(&MCAST_V6, ifindex)?;
        setsockopt_int(&recv, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)?;
        setsockopt_int(&recv, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
        recv.set_nonblocking(true)?;

        let send = Socket::new(Domain::IPV6, Type::RAW, proto)?;
        send.bind_device(Some(ifname.as_bytes()))?;
        send.set_unicast_hops_v6(255)?;
        send.set_multicast_hops_v6(255)?;
        send.set_multicast_if_v6(ifindex)?;
        send.set_multicast_loop_v6(false)?;
        setsockopt_int(
            &send,
            libc::IPPROTO_IPV6,
            libc::IPV6_TCLASS,
            TOS_INTERNETWORK_CONTROL as i32,
        )?;
        send.bind(&SockAddr::from(SocketAddrV6::new(src, 0, 0, ifindex)))
            .map_err(|e| io::Error::new(e.kind(), format!("binding VRRP source {src}: {e}")))?;
        send.set_nonblocking(true)?;
        Ok(VrrpSockets {
            recv: register(recv)?,
            send,
            v6: true,
            ifindex,
        })
    }

    pub async fn recv(&self) -> io::Result<Received> {
        loop {
            let mut guard = self.recv.readable().await?;
            match guard.try_io(|s| {
                if self.v6 {
                    recv_v6(s.get_ref())
                } else {
                    recv_v4(s.get_ref())
                }
            }) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    /// A datagram already queued in the socket, without waiting: `None`
    /// when there is none (the socket is non-blocking). A stale readiness
    /// this leaves behind in tokio costs `recv` one empty read.
    pub fn try_recv(&self) -> io::Result<Option<Received>> {
        let s = self.recv.get_ref();
        let r = if self.v6 { recv_v6(s) } else { recv_v4(s) };
        match r {
            Ok(pkt) => Ok(Some(pkt)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Send one VRRP message to `dst` (the group or a unicast peer).
    pub fn send(&self, dst: IpAddr, payload: &[u8]) -> io::Result<()> {
        let to = match dst {
            IpAddr::V6(a) if a.is_unicast_link_local() || a.is_multicast() => {
                SocketAddr::V6(SocketAddrV6::new(a, 0, 0, self.ifindex))
            }
            a => SocketAddr::new(a, 0),
        };
        self.send.send_to(payload, &SockAddr::from(to)).map(|_| ())
    }
}

fn recv_v4(sock: &Socket) -> io::Result<Received> {
    let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
    let (n, _from) = sock.recv_from(&mut buf)?;
    // SAFETY: recv_from initialised the first n bytes.
    let data: Vec<u8> = buf[..n]
        .iter()
        .map(|b| unsafe { b.assume_init() })
        .collect();
    let (meta, payload) = super::packet::strip_ipv4_header(&data)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{e:?}")))?;
    Ok(Received {
        src: IpAddr::V4(meta.src),
        dst: IpAddr::V4(meta.dst),
        ttl: meta.ttl,
        payload: payload.to_vec(),
    })
}

/// recvmsg with IPV6_HOPLIMIT and IPV6_PKTINFO ancillary data: the kernel
/// strips the IPv6 header from raw sockets, so the hop limit and
/// destination only come this way.
fn recv_v6(sock: &Socket) -> io::Result<Received> {
    let mut buf = vec![0u8; 2048];
    // cmsghdr needs the alignment of size_t: a u64 array provides it.
    let mut ctrl = [0u64; 16];
    // SAFETY: zeroed sockaddr_in6 and msghdr are valid initial values.
    let mut from: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = &mut from as *mut _ as *mut libc::c_void;
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as u32;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctrl.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = std::mem::size_of_val(&ctrl);
    // SAFETY: msg points at live buffers sized as declared.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    let mut ttl = 0u8;
    let mut dst = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    // SAFETY: walking the control buffer the kernel filled, with libc's macros.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let h = &*c;
            if h.cmsg_level == libc::IPPROTO_IPV6 && h.cmsg_type == libc::IPV6_HOPLIMIT {
                ttl = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const i32) as u8;
            } else if h.cmsg_level == libc::IPPROTO_IPV6 && h.cmsg_type == libc::IPV6_PKTINFO {
                let pi = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::in6_pktinfo);
                dst = IpAddr::V6(Ipv6Addr::from(pi.ipi6_addr.s6_addr));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(Received {
        src: IpAddr::V6(Ipv6Addr::from(from.sin6_addr.s6_addr)),
        dst,
        ttl,
        payload: buf,
    })
}

/// Sends gratuitous ARP and unsolicited NA for the VIPs of one interface.
pub struct Announcer {
    arp: Option<Socket>,
    icmp6: Option<Socket>,
    ifindex: u32,
    mac: [u8; 6],
}

impl Announcer {
    pub fn open(ifname: &str, ifindex: u32, mac: [u8; 6], v4: bool, v6: bool) -> io::Result<Self> {
        let arp = if v4 {
            let s = Socket::new(
                Domain::PACKET,
                Type::RAW,
                Some(Protocol::from(i32::from(garp::ETH_P_ARP.to_be()))),
            )
            .map_err(|e| perm_hint(e, "opening a packet socket for ARP", "CAP_NET_RAW"))?;
            s.set_nonblocking(true)?;
            Some(s)
        } else {
            None
        };
        let icmp6 = if v6 {
            let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
                .map_err(|e| perm_hint(e, "opening an ICMPv6 socket", "CAP_NET_RAW"))?;
            s.bind_device(Some(ifname.as_bytes()))?;
            s.set_multicast_hops_v6(255)?;
            s.set_unicast_hops_v6(255)?;
            s.set_multicast_if_v6(ifindex)?;
            s.set_nonblocking(true)?;
            Some(s)
        } else {
            None
        };
        Ok(Announcer {
            arp,
            icmp6,
            ifindex,
            mac,
        })
    }

    pub fn announce(&self, vip: IpAddr) -> io::Result<()> {
        match vip {
            IpAddr::V4(ip) => {
                let Some(s) = &self.arp else { return Ok(()) };
                let frame = garp::garp_frame(self.mac, ip);
                // SAFETY: sockaddr_ll is plain data; zeroed then filled.
                let mut ll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                ll.sll_family = libc::AF_PACKET as u16;
                ll.sll_protocol = garp::ETH_P_ARP.to_be();
                ll.sll_ifindex = self.ifindex as i32;
                ll.sll_halen = 6;
                ll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
                // SAFETY: frame and ll are live for the call.
                let rc = unsafe {
                    libc::sendto(
                        s.as_raw_fd(),
                        frame.as_ptr() as *const libc::c_void,
                        frame.len(),
                        0,
                        &ll as *const libc::sockaddr_ll as *const libc::sockaddr,
                        std::mem::size_of::<libc::sockaddr_ll>() as u32,
                    )
                };
                if rc < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            }
            IpAddr::V6(ip) => {
                let Some(s) = &self.icmp6 else { return Ok(()) };
                let msg = garp::unsolicited_na(self.mac, ip);
                let to = SocketAddr::V6(SocketAddrV6::new(ALL_NODES_V6, 0, 0, self.ifindex));
                s.send_to(&msg, &SockAddr::from(to)).map(|_| ())
            }
        }
    }
}

/// Which of the two capabilities VRRP needs are missing from the effective
/// set, read from /proc (no libcap dependency for two bits).
pub fn missing_capabilities() -> Vec<&'static str> {
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_NET_RAW: u32 = 13;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return vec![];
    };
    let Some(eff) = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    else {
        return vec![];
    };
    let mut out = vec![];
    if eff & (1 << CAP_NET_ADMIN) == 0 {
        out.push("CAP_NET_ADMIN");
    }
    if eff & (1 << CAP_NET_RAW) == 0 {
        out.push("CAP_NET_RAW");
    }
    out
}
