//! UDP socket tuning shared by the server and tools that run servers (the load generator's relay).

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
