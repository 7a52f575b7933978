//! UDP socket tuning shared by the server and tools that run servers (the load generator's relay),
//! batched receiving ([`RecvBatch`]: one `recvmmsg` for up to 64 datagrams on Linux), and the layout of
//! netcode's connection request, which the server checks and tests forge.

use std::io;
use std::net::{SocketAddr, UdpSocket};

/// Asks the kernel for a receive buffer of `bytes` (it grants at most `net.core.rmem_max`); returns the
/// size it reports back.
pub fn enlarge_receive_buffer(socket: &UdpSocket, bytes: usize) -> usize {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        let fd = socket.as_raw_fd();
        let wanted = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        let mut granted: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: fd is a valid socket for the life of `socket`; the option values point to live
        // c_ints of the size passed.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&raw const wanted).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&raw mut granted).cast(),
                &mut len,
            );
        }
        // Linux reports twice what it grants, for its own bookkeeping.
        usize::try_from(granted).unwrap_or(0) / 2
    }
    #[cfg(not(unix))]
    {
        let _ = (socket, bytes);
        bytes
    }
}

/// Datagrams [`RecvBatch::recv`] reads at most in one call.
pub const BATCH: usize = 64;
/// Bytes kept of each datagram (netcode's largest packet; longer ones are cut, and then refused).
pub const DATAGRAM_BYTES: usize = 1400;

/// Buffers for receiving up to [`BATCH`] datagrams with one system call.
pub struct RecvBatch {
    buffers: Vec<[u8; DATAGRAM_BYTES]>,
    received: Vec<(usize, SocketAddr)>,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self {
            buffers: vec![[0u8; DATAGRAM_BYTES]; BATCH],
            received: Vec::with_capacity(BATCH),
        }
    }
}

impl RecvBatch {
    /// Reads what is waiting on the (non-blocking) socket, up to [`BATCH`] datagrams; `WouldBlock`
    /// when nothing is.
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.received.clear();
        self.recv_into(socket)?;
        Ok(self.received.len())
    }

    /// The datagrams the last [`RecvBatch::recv`] read, with their senders.
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> + '_ {
        self.received
            .iter()
            .zip(&self.buffers)
            .map(|(&(len, addr), buffer)| (addr, &buffer[..len]))
    }

    /// The same, writable in place (netcode decrypts in the buffer it was read into).
    pub fn datagrams_mut(&mut self) -> impl Iterator<Item = (SocketAddr, &mut [u8])> + '_ {
        self.received
            .iter()
            .zip(&mut self.buffers)
            .map(|(&(len, addr), buffer)| (addr, &mut buffer[..len]))
    }

    #[cfg(target_os = "linux")]
    fn recv_into(&mut self, socket: &UdpSocket) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: all-zero is a valid value for these plain C structs.
        let mut names: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
        let mut iovecs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut messages: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for i in 0..BATCH {
            iovecs[i] = libc::iovec {
                iov_base: self.buffers[i].as_mut_ptr().cast(),
                iov_len: DATAGRAM_BYTES,
            };
            let header = &mut messages[i].msg_hdr;
            header.msg_name = (&raw mut names[i]).cast();
            header.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_iov = &raw mut iovecs[i];
            header.msg_iovlen = 1;
        }
        // SAFETY: every header points at a live buffer and name of the sizes given, for the whole call.
        let count = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                messages.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if count < 0 {
            return Err(io::Error::last_os_error());
        }
        for (message, name) in messages.iter().zip(&names).take(count as usize) {
            if let Some(addr) = socket_addr(name) {
                let len = (message.msg_len as usize).min(DATAGRAM_BYTES);
                self.received.push((len, addr));
            }
        }
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    fn recv_into(&mut self, socket: &UdpSocket) -> io::Result<()> {
        let (len, addr) = socket.recv_from(&mut self.buffers[0])?;
        self.received.push((len.min(DATAGRAM_BYTES), addr));
        Ok(())
    }
}

/// Waits up to `timeout` for `socket` to become readable; whether it did.
#[cfg(unix)]
pub fn wait_readable(socket: &UdpSocket, timeout: std::time::Duration) -> bool {
    use std::os::fd::AsRawFd;
    let mut poll = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd for a socket that outlives the call.
    let ready = unsafe { libc::poll(&raw mut poll, 1, millis) };
    ready > 0
}

/// Without `poll`: a short sleep, then a look.
#[cfg(not(unix))]
pub fn wait_readable(_socket: &UdpSocket, _timeout: std::time::Duration) -> bool {
    std::thread::sleep(std::time::Duration::from_millis(1));
    true
}

/// Datagrams queued to go out with one system call (`sendmmsg` on Linux), up to [`BATCH`] at a time.
/// UDP is best effort: a datagram the kernel refuses is dropped, as on the wire (renet resends).
pub struct SendBatch {
    buffers: Vec<[u8; DATAGRAM_BYTES]>,
    queued: Vec<(usize, SocketAddr)>,
}

impl Default for SendBatch {
    fn default() -> Self {
        Self {
            buffers: vec![[0u8; DATAGRAM_BYTES]; BATCH],
            queued: Vec::with_capacity(BATCH),
        }
    }
}

impl SendBatch {
    /// Queues a datagram (at most [`DATAGRAM_BYTES`]); sends the batch first if it is full.
    pub fn push(&mut self, socket: &UdpSocket, addr: SocketAddr, bytes: &[u8]) {
        if self.queued.len() == BATCH {
            self.flush(socket);
        }
        let len = bytes.len().min(DATAGRAM_BYTES);
        self.buffers[self.queued.len()][..len].copy_from_slice(&bytes[..len]);
        self.queued.push((len, addr));
    }

    /// Sends what is queued; returns how many datagrams it tried (those the kernel refused are dropped).
    pub fn flush(&mut self, socket: &UdpSocket) -> usize {
        if self.queued.is_empty() {
            return 0;
        }
        let sent = self.send_queued(socket);
        self.queued.clear();
        sent
    }

    #[cfg(target_os = "linux")]
    fn send_queued(&mut self, socket: &UdpSocket) -> usize {
        use std::os::fd::AsRawFd;
        let count = self.queued.len();
        // SAFETY: all-zero is a valid value for these plain C structs.
        let mut names: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
        let mut iovecs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut messages: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (i, &(len, addr)) in self.queued.iter().enumerate() {
            let name_len = write_socket_addr(addr, &mut names[i]);
            iovecs[i] = libc::iovec {
                iov_base: self.buffers[i].as_mut_ptr().cast(),
                iov_len: len,
            };
            let header = &mut messages[i].msg_hdr;
            header.msg_name = (&raw mut names[i]).cast();
            header.msg_namelen = name_len;
            header.msg_iov = &raw mut iovecs[i];
            header.msg_iovlen = 1;
        }
        let mut sent = 0;
        while sent < count {
            // SAFETY: the headers from `sent` on point at live buffers and names of the sizes given.
            let n = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    messages[sent..].as_mut_ptr(),
                    (count - sent) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                // A full send buffer or an unreachable peer: skip that datagram, send the rest.
                sent += 1;
                continue;
            }
            sent += n as usize;
        }
        sent
    }

    #[cfg(not(target_os = "linux"))]
    fn send_queued(&mut self, socket: &UdpSocket) -> usize {
        self.queued
            .iter()
            .zip(&self.buffers)
            .filter(|((len, addr), buffer)| socket.send_to(&buffer[..*len], addr).is_ok())
            .count()
    }
}

/// Writes `addr` as a C socket address; returns its length.
#[cfg(target_os = "linux")]
fn write_socket_addr(addr: SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any socket address.
            let out = unsafe {
                &mut *(storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            out.sin_family = libc::AF_INET as libc::sa_family_t;
            out.sin_port = v4.port().to_be();
            out.sin_addr = libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            };
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above.
            let out = unsafe {
                &mut *(storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            out.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            out.sin6_port = v6.port().to_be();
            out.sin6_flowinfo = v6.flowinfo();
            out.sin6_addr = libc::in6_addr {
                s6_addr: v6.ip().octets(),
            };
            out.sin6_scope_id = v6.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// The address in a `sockaddr_storage` the kernel filled in.
#[cfg(target_os = "linux")]
fn socket_addr(name: &libc::sockaddr_storage) -> Option<SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    match i32::from(name.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large enough for.
            let v4 =
                unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddrV4::new(ip, u16::from_be(v4.sin_port)).into())
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let v6 =
                unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(v6.sin6_addr.s6_addr);
            let port = u16::from_be(v6.sin6_port);
            Some(SocketAddrV6::new(ip, port, v6.sin6_flowinfo, v6.sin6_scope_id).into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_reads_every_waiting_datagram_with_its_sender() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_nonblocking(true).unwrap();
        let (a, b) = (
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
        );
        let to = server.local_addr().unwrap();
        a.send_to(b"one", to).unwrap();
        b.send_to(&[7u8; 1200], to).unwrap();
        a.send_to(b"three", to).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut batch = RecvBatch::default();
        let mut got = Vec::new();
        while let Ok(n) = batch.recv(&server) {
            assert!(n > 0);
            got.extend(
                batch
                    .datagrams()
                    .map(|(addr, bytes)| (addr, bytes.to_vec())),
            );
        }
        let (a, b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        assert_eq!(
            got,
            vec![
                (a, b"one".to_vec()),
                (b, vec![7u8; 1200]),
                (a, b"three".to_vec())
            ]
        );
    }

    #[test]
    fn a_send_batch_delivers_every_datagram_to_its_address() {
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (a, b) = (
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
        );
        let mut batch = SendBatch::default();
        for i in 0..100u8 {
            let to = if i % 2 == 0 { &a } else { &b };
            batch.push(&sender, to.local_addr().unwrap(), &[i; 10]);
        }
        batch.flush(&sender);
        for (socket, first) in [(&a, 0u8), (&b, 1u8)] {
            socket
                .set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            let mut buffer = [0u8; 64];
            for i in (first..100).step_by(2) {
                let (len, _) = socket.recv_from(&mut buffer).unwrap();
                assert_eq!(&buffer[..len], &[i; 10]);
            }
        }
    }
}

/// The one netcode packet anyone can read before decrypting: a connection request. The server's packet
/// gate checks these fields; tests and the load generator forge look-alikes from the same layout.
pub mod connection_request {
    use std::ops::{Range, RangeFrom};
    use std::time::SystemTime;

    /// netcode's version string (renetcode keeps its copy private).
    pub const VERSION_INFO: &[u8; 13] = b"NETCODE 1.02\0";
    /// Its length: prefix byte, version, protocol id, expiry, nonce, sealed connect token.
    pub const BYTES: usize = 1 + 13 + 8 + 8 + 24 + 1024;
    pub const VERSION: Range<usize> = 1..14;
    pub const PROTOCOL_ID: Range<usize> = 14..22;
    /// Seconds since the Unix epoch, little-endian.
    pub const EXPIRY: Range<usize> = 22..30;
    /// The nonce and the sealed token: only decryption can tell them from noise.
    pub const SEALED: RangeFrom<usize> = 30..;
    /// The nonce the token is sealed with (XChaCha20-Poly1305).
    pub const NONCE: Range<usize> = 30..54;
    /// The sealed token, its 16-byte tag last.
    pub const TOKEN: Range<usize> = 54..BYTES;
    /// How far ahead netcode's unsecure client sets the expiry.
    pub const CLIENT_EXPIRY_SECS: u64 = 300;

    /// What a connect token's private part is sealed with beside its key (the AEAD's additional
    /// data): the version, the protocol id and the expiry (little-endian seconds), as netcode seals it.
    pub fn additional_data(protocol_id: u64, expiry: [u8; 8]) -> [u8; 29] {
        let mut additional = [0u8; 29];
        additional[..13].copy_from_slice(VERSION_INFO);
        additional[13..21].copy_from_slice(&protocol_id.to_le_bytes());
        additional[21..].copy_from_slice(&expiry);
        additional
    }

    /// Seconds since the Unix epoch (0 if the clock is before it).
    pub fn unix_secs() -> u64 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// A request for `protocol_id` with the expiry a real client would set and a zeroed nonce and token:
    /// fill `SEALED` with noise and it passes every check but decryption (to play an attacker).
    pub fn lookalike(protocol_id: u64) -> Vec<u8> {
        let mut bytes = vec![0u8; BYTES];
        bytes[VERSION].copy_from_slice(VERSION_INFO);
        bytes[PROTOCOL_ID].copy_from_slice(&protocol_id.to_le_bytes());
        bytes[EXPIRY].copy_from_slice(&(unix_secs() + CLIENT_EXPIRY_SECS).to_le_bytes());
        bytes
    }
}
