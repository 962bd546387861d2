//! Listening sockets: one per worker per bind address, with SO_REUSEPORT so
//! the kernel spreads connections over the workers, and IP_FREEBIND /
//! IPV6_FREEBIND so a VRRP backup can listen on the virtual IP before it
//! holds it; TCP_NODELAY, which every accepted connection inherits (one
//! setsockopt per listener instead of one per connection). Nothing else.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

const BACKLOG: i32 = 4096;

pub(crate) fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let domain = Domain::for_address(addr);
    let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    if addr.is_ipv6() {
        // `[::]:80` is IPv6 only; list `0.0.0.0:80` too for IPv4.
        s.set_only_v6(true)?;
        s.set_freebind_ipv6(true)?;
    } else {
        s.set_freebind(true)?;
    }
    // Heads and small bodies go out in one write; Nagle would only delay
    // them. Linux copies the option to every accepted socket.
    s.set_nodelay(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    Ok(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_connections_inherit_nodelay() {
        // The accept paths set no option of their own: this is what makes
        // client connections TCP_NODELAY on both drivers.
        let l = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let _c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        l.set_nonblocking(false).unwrap();
        let (s, _) = l.accept().unwrap();
        assert!(s.nodelay().unwrap());
    }
}
