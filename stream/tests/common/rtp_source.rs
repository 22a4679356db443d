//! ffmpeg as a raw RTP source (H264 baseline + Opus over loopback UDP), fed into a broadcast
//! exactly as the WHIP path feeds tapped packets. Used by `live_hls.rs` and the bench.

use std::{path::Path, process::Stdio, time::Instant};

use bytes::Bytes;
use stream::{
    ingest::{
        rtp::{parse_rtp, parse_sender_report, ParsedRtp},
        RtpPacket,
    },
    Publisher, TrackKind,
};
use tokio::net::UdpSocket;

/// Binds an even RTP port with the RTCP port (+1) next to it, as ffmpeg expects.
async fn rtp_pair() -> (UdpSocket, UdpSocket, u16) {
    loop {
        let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = rtp.local_addr().unwrap().port();
        if port % 2 != 0 || port == u16::MAX {
            continue;
        }
        if let Ok(rtcp) = UdpSocket::bind(("127.0.0.1", port + 1)).await {
            return (rtp, rtcp, port);
        }
    }
}

/// Runs ffmpeg in real time (`-re`) for `seconds` of testsrc2 640x360@30 (GOP 30) + 440 Hz sine,
/// feeding every packet to `publisher`. `video_ts_shift` is added to video RTP times (and their
/// sender reports). `on_video` sees each video packet with its arrival instant. Returns the
/// number of video and audio packets fed; panics if ffmpeg fails.
pub async fn publish_ffmpeg_rtp(
    publisher: &Publisher,
    ffmpeg: &Path,
    seconds: u32,
    video_ts_shift: u32,
    on_video: impl FnMut(&ParsedRtp, Instant),
) -> [usize; 2] {
    publish_ffmpeg_rtp_gop(publisher, ffmpeg, seconds, 30, video_ts_shift, on_video).await
}

/// [`publish_ffmpeg_rtp`] with a keyframe every `gop` frames (and none elsewhere: no scene cuts).
pub async fn publish_ffmpeg_rtp_gop(
    publisher: &Publisher,
    ffmpeg: &Path,
    seconds: u32,
    gop: u32,
    video_ts_shift: u32,
    mut on_video: impl FnMut(&ParsedRtp, Instant),
) -> [usize; 2] {
    let (video_rtp, video_rtcp, video_port) = rtp_pair().await;
    let (audio_rtp, audio_rtcp, audio_port) = rtp_pair().await;
    let mut child = tokio::process::Command::new(ffmpeg)
        .args(["-hide_banner", "-v", "error", "-re"])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size=640x360:rate=30:duration={seconds}"),
            "-f",
            "lavfi",
            "-i",
            &format!("sine=frequency=440:sample_rate=48000:duration={seconds}"),
        ])
        .args([
            "-map",
            "0:v",
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-g",
            &gop.to_string(),
            "-sc_threshold",
            "0",
            "-bf",
            "0",
            "-pix_fmt",
            "yuv420p",
            "-bsf:v",
            "dump_extra=freq=keyframe",
            "-payload_type",
            "96",
            "-f",
            "rtp",
        ])
        .arg(format!("rtp://127.0.0.1:{video_port}?pkt_size=1200"))
        .args([
            "-map",
            "1:a",
            "-c:a",
            "libopus",
            "-ar",
            "48000",
            "-ac",
            "2",
            "-b:a",
            "64k",
            "-payload_type",
            "111",
            "-f",
            "rtp",
        ])
        .arg(format!("rtp://127.0.0.1:{audio_port}?pkt_size=1200"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg starts");
    let mut bufs = [
        vec![0u8; 2048],
        vec![0u8; 2048],
        vec![0u8; 2048],
        vec![0u8; 2048],
    ];
    let mut packets = [0usize; 2];
    let mut exited = false;
    loop {
        let [b0, b1, b2, b3] = &mut bufs;
        tokio::select! {
            r = video_rtp.recv(b0) => {
                let n = r.unwrap();
                let at = Instant::now();
                if let Some(p) = parse_rtp(&Bytes::copy_from_slice(&b0[..n])) {
                    packets[0] += 1;
                    on_video(&p, at);
                    publisher.rtp(TrackKind::Video, RtpPacket { seq: p.seq, timestamp: p.timestamp.wrapping_add(video_ts_shift), marker: p.marker, payload: p.payload });
                }
            }
            r = audio_rtp.recv(b1) => {
                let n = r.unwrap();
                if let Some(p) = parse_rtp(&Bytes::copy_from_slice(&b1[..n])) {
                    packets[1] += 1;
                    publisher.rtp(TrackKind::Audio, RtpPacket { seq: p.seq, timestamp: p.timestamp, marker: p.marker, payload: p.payload });
                }
            }
            r = video_rtcp.recv(b2) => {
                let n = r.unwrap();
                if let Some(sr) = parse_sender_report(&b2[..n]) {
                    publisher.sender_report(TrackKind::Video, sr.ntp_time, sr.rtp_time.wrapping_add(video_ts_shift));
                }
            }
            r = audio_rtcp.recv(b3) => {
                let n = r.unwrap();
                if let Some(sr) = parse_sender_report(&b3[..n]) {
                    publisher.sender_report(TrackKind::Audio, sr.ntp_time, sr.rtp_time);
                }
            }
            status = child.wait(), if !exited => {
                assert!(status.unwrap().success(), "ffmpeg failed");
                exited = true;
            }
            _ = tokio::time::sleep(std::time::Duration::from_millis(500)), if exited => break,
        }
    }
    packets
}

/// Whether an H264 RTP payload (RFC 6184) carries (part of) an IDR slice.
pub fn carries_idr(payload: &[u8]) -> bool {
    let Some(&header) = payload.first() else {
        return false;
    };
    match header & 0x1f {
        5 => true,
        24 => {
            // STAP-A: 16-bit size-prefixed NAL units after the header.
            let mut rest = &payload[1..];
            while rest.len() > 2 {
                let size = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                if rest.get(2).is_some_and(|nal| nal & 0x1f == 5) {
                    return true;
                }
                rest = rest.get(2 + size..).unwrap_or(&[]);
            }
            false
        }
        28 => payload.get(1).is_some_and(|fu| fu & 0x1f == 5),
        _ => false,
    }
}
