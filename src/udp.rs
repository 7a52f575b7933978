//! UDP socket tuning shared by the server and tools that run servers (the load generator's relay), and
//! the layout of netcode's connection request, which the server checks and tests forge.

use std::net::UdpSocket;

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
