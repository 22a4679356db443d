//! The UDP listener: one datagram is one STUN message or ChannelData frame.

use std::sync::Arc;

use tokio::net::UdpSocket;

use super::{ClientSink, Shared};
use crate::core::{FiveTuple, Transport};

pub async fn serve_udp(shared: Arc<Shared>, socket: Arc<UdpSocket>) {
    let Ok(server) = socket.local_addr() else {
        return;
    };
    let mut buf = vec![0u8; 65_536];
    loop {
        let received = tokio::select! {
            _ = shared.cancel.cancelled() => break,
            received = socket.recv_from(&mut buf) => received,
        };
        let (len, client) = match received {
            Ok(received) => received,
            Err(_) => continue,
        };
        let ft = FiveTuple {
            client,
            server,
            transport: Transport::Udp,
        };
        let sink = ClientSink::Udp {
            socket: socket.clone(),
            client,
        };
        shared.on_client(ft, &buf[..len], &sink);
    }
}
