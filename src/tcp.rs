//! The TCP listening sockets of the server's HTTP endpoints (token mode's HTTPS, the metrics and probes
//! listener), bound so that a restarted server gets its ports back at once.

use std::net::{SocketAddr, TcpListener};

/// A listening socket on `addr` that a restarted server can bind again at once: with `SO_REUSEADDR`,
/// the connections the last run closed (waiting out TIME_WAIT) do not hold the port.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_port_whose_last_connections_wait_out_time_wait_binds_again() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        let (served, _) = listener.accept().unwrap();
        // The server closes first, as it does when it stops: its side waits out TIME_WAIT.
        drop(served);
        let _ = client.read(&mut [0; 1]);
        drop((client, listener));
        listen(addr).expect("the port binds again at once");
    }
}
