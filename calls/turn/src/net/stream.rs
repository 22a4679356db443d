//! TCP and TLS connections: STUN messages and ChannelData frames back to back on a byte stream
//! (RFC 8656 §12.5 pads ChannelData to four bytes there). One connection is one 5-tuple; its
//! allocation ends when it closes.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    sync::mpsc,
};

use super::{ClientSink, Shared};
use crate::{
    core::{FiveTuple, Transport},
    stun,
};

/// Frames queued toward a slow client before newer ones are dropped.
const WRITE_QUEUE: usize = 1024;
/// A connection that sends nothing for this long (no refresh either) is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Length of the frame at the start of `buf`: `Ok(None)` until enough bytes arrived to tell,
/// `Err(())` when the bytes are neither STUN nor ChannelData (the connection is closed).
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, ()> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if buf.len() < 4 {
        return if first & 0xC0 == 0 || stun::is_channel_data(first) {
            Ok(None)
        } else {
            Err(())
        };
    }
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if stun::is_channel_data(first) {
        Ok(Some(4 + stun::padded(len)))
    } else if first & 0xC0 == 0 {
        Ok(Some(stun::HEADER_LEN + len))
    } else {
        Err(())
    }
}

pub async fn serve_stream<S>(
    shared: Arc<Shared>,
    stream: S,
    client: SocketAddr,
    server: SocketAddr,
    transport: Transport,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let ft = FiveTuple {
        client,
        server,
        transport,
    };
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    let writer_task = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if writer.write_all(&frame).await.is_err() {
                break;
            }
            // Batch what is already queued before flushing (TLS buffers internally).
            while let Ok(frame) = rx.try_recv() {
                if writer.write_all(&frame).await.is_err() {
                    return;
                }
            }
            if writer.flush().await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    let sink = ClientSink::Stream(tx);
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 65_536];
    'read: loop {
        let read = tokio::select! {
            _ = shared.cancel.cancelled() => break,
            read = tokio::time::timeout(IDLE_TIMEOUT, reader.read(&mut chunk)) => read,
        };
        let n = match read {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut start = 0;
        loop {
            match frame_len(&buf[start..]) {
                Err(()) => {
                    tracing::debug!(%client, "closing a stream that is neither STUN nor ChannelData");
                    break 'read;
                }
                Ok(Some(len)) if buf.len() - start >= len => {
                    shared.on_client(ft, &buf[start..start + len], &sink);
                    start += len;
                }
                _ => break,
            }
        }
        buf.drain(..start);
    }
    shared.on_closed(&ft);
    drop(sink);
    let _ = writer_task.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_delimited() {
        assert_eq!(frame_len(&[]), Ok(None));
        assert_eq!(frame_len(&[0x00, 0x01]), Ok(None));
        assert_eq!(frame_len(&[0x00, 0x01, 0x00, 0x08]), Ok(Some(28)));
        assert_eq!(frame_len(&[0x40, 0x00, 0x00, 0x05]), Ok(Some(12)));
        assert_eq!(frame_len(&[0x80]), Err(()));
        assert_eq!(frame_len(&[0xC0, 0, 0, 0]), Err(()));
    }
}
