//! End to end with real media: ffmpeg sends H264 (baseline, no B-frames) and Opus as RTP over
//! loopback UDP; the test feeds those packets into a broadcast exactly as the WHIP path does,
//! then validates the stored HLS and the clips with ffprobe/ffmpeg over HTTP.
//!
//! The video RTP timestamps are shifted so the 32-bit clock wraps two seconds into the
//! broadcast: a wrong unwrap would break the timeline and the checks below.

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use common::*;
use platform::Metric;
use serde_json::Value;
use stream::StreamConfig;

const SECONDS: u32 = 8;
/// Added to every video RTP timestamp: the clock wraps 2 s (180000 ticks) in.
const VIDEO_TS_SHIFT: u32 = u32::MAX - 180_000 + 1;

/// Publishes `seconds` of ffmpeg RTP with a keyframe every `gop` frames; returns the video id and
/// every reload of its live media playlist taken while the broadcast ran (every 250 ms).
async fn broadcast_with_ffmpeg(
    server: &Server,
    ffmpeg: &std::path::Path,
    input_uid: &str,
    seconds: u32,
    gop: u32,
) -> (String, Vec<String>) {
    let (keyframe, requests) = counting_keyframes();
    let publisher = server
        .service
        .begin_broadcast(input_uid, true, keyframe)
        .await
        .expect("broadcast starts");
    let video_id = publisher.video_id.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let poller = tokio::spawn({
        let (client, stop) = (server.client.clone(), stop.clone());
        let url = format!("{}/stream/{video_id}/manifest/stream.m3u8", server.base);
        async move {
            let mut reloads = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                if let Ok(response) = client.get(&url).send().await {
                    if response.status() == 200 {
                        reloads.push(response.text().await.unwrap_or_default());
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            reloads
        }
    });
    let packets = rtp_source::publish_ffmpeg_rtp_gop(
        &publisher,
        ffmpeg,
        seconds,
        gop,
        VIDEO_TS_SHIFT,
        |_, _| {},
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    let reloads = poller.await.expect("poller");
    assert!(
        packets[0] > 100 && packets[1] > 100,
        "RTP arrived: {packets:?}"
    );
    assert!(
        requests.load(Ordering::SeqCst) >= 1,
        "a keyframe is requested at the start"
    );
    drop(publisher);
    (video_id, reloads)
}

/// RFC 8216 §6.2.1 and §4.3.3.1: every reload of the live playlist and the final VOD one carry
/// the same EXT-X-TARGETDURATION, and every EXTINF rounded to the nearest integer is at most
/// that. Returns the value.
fn assert_constant_target_duration(live: &[String], vod: &str) -> u64 {
    let parse = |text: &String| {
        m3u8_rs::parse_media_playlist_res(text.as_bytes())
            .unwrap_or_else(|e| panic!("media playlist parses ({e:?}): {text}"))
    };
    let live: Vec<_> = live.iter().map(parse).collect();
    let sequences: std::collections::BTreeSet<u64> =
        live.iter().map(|p| p.media_sequence).collect();
    assert!(
        live.len() >= 10 && sequences.len() >= 2,
        "{} live reloads, media sequences {sequences:?}: the window slid",
        live.len()
    );
    assert!(live.iter().all(|p| !p.end_list));
    let vod = parse(&vod.to_string());
    assert!(vod.end_list);
    let target = live[0].target_duration;
    for playlist in live.iter().chain([&vod]) {
        assert_eq!(
            playlist.target_duration, target,
            "EXT-X-TARGETDURATION changed"
        );
        for segment in &playlist.segments {
            assert!(
                (segment.duration.round() as u64) <= target,
                "EXTINF {} > EXT-X-TARGETDURATION {target}",
                segment.duration
            );
        }
    }
    target
}

async fn wait_until_ready(server: &Server, video_id: &str) -> Value {
    for _ in 0..200 {
        let (status, body) = server.get_json(&server.api(&format!("/{video_id}"))).await;
        if status == 200 && body["result"]["status"]["state"] == "ready" {
            return body["result"].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the video never became ready");
}

fn run(tool: &std::path::Path, args: &[&str]) -> (String, String) {
    let out = std::process::Command::new(tool)
        .args(args)
        .output()
        .expect("tool runs");
    assert!(
        out.status.success(),
        "{} {:?} failed: {}",
        tool.display(),
        args,
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `(pts_seconds, md5)` of every decoded video frame.
fn frame_hashes(ffmpeg: &std::path::Path, input: &str) -> Vec<(f64, String)> {
    let (out, _) = run(
        ffmpeg,
        &[
            "-v", "error", "-i", input, "-map", "0:v", "-f", "framemd5", "-",
        ],
    );
    let mut timebase = 1.0 / 90_000.0;
    let mut frames = Vec::new();
    for line in out.lines() {
        if let Some(tb) = line.strip_prefix("#tb 0: ") {
            let (num, den) = tb.split_once('/').unwrap();
            timebase = num.trim().parse::<f64>().unwrap() / den.trim().parse::<f64>().unwrap();
        }
        if line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() == 6 {
            frames.push((
                fields[2].parse::<f64>().unwrap() * timebase,
                fields[5].to_string(),
            ));
        }
    }
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_rtp_broadcast_becomes_valid_hls_and_exact_clips() {
    let (Some(ffmpeg), Some(ffprobe)) = (tool("ffmpeg"), tool("ffprobe")) else {
        return;
    };
    for tp in platform::testing::all_backends().await {
        // A live window of 2 segments, so the reloads see it slide.
        let config = StreamConfig {
            live_window: 2,
            ..StreamConfig::default()
        };
        let server = serve(&tp, config).await;
        let input = server.create_input(automatic_input()).await;
        let input_uid = input["uid"].as_str().unwrap().to_string();
        let (video_id, live_reloads) =
            broadcast_with_ffmpeg(&server, &ffmpeg, &input_uid, SECONDS, 30).await;
        let video = wait_until_ready(&server, &video_id).await;
        let duration = video["duration"].as_f64().unwrap();
        assert!(
            (SECONDS as f64 - 0.5..=SECONDS as f64 + 0.1).contains(&duration),
            "{} duration {duration}",
            tp.label
        );
        assert_eq!(video["input"]["width"], 640);

        // Multivariant playlist: CODECS from the real SPS.
        let master_url = format!("{}/stream/{input_uid}/manifest/video.m3u8", server.base);
        let response = server.client.get(&master_url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["stream-media-id"], video_id.as_str());
        let master = response.text().await.unwrap();
        assert!(master.contains("CODECS=\"avc1.42c01e,opus\""), "{master}");
        let media_url = format!("{}/stream/{video_id}/manifest/stream.m3u8", server.base);
        let media = server
            .client
            .get(&media_url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let playlist =
            m3u8_rs::parse_media_playlist_res(media.as_bytes()).expect("media playlist parses");
        assert!(playlist.end_list, "VOD after the broadcast: {media}");
        assert!(media.contains("#EXT-X-MAP:URI=\"../segments/init-0.mp4\""));
        assert!(media.contains("#EXT-X-PROGRAM-DATE-TIME"));
        assert_eq!(assert_constant_target_duration(&live_reloads, &media), 2);
        assert!(media.contains("#EXT-X-INDEPENDENT-SEGMENTS"));
        // GOP of 1 s, target 2 s: segments of 2 s (the last may be shorter).
        let durations: Vec<f32> = playlist.segments.iter().map(|s| s.duration).collect();
        assert!(durations.len() >= 3, "{durations:?}");
        for d in &durations[..durations.len() - 1] {
            assert!((d - 2.0).abs() < 0.05, "segment durations {durations:?}");
        }

        // ffprobe: codecs and profile.
        let (streams, _) = run(
            &ffprobe,
            &[
                "-v",
                "error",
                "-show_entries",
                "stream=codec_name,profile,width,height,sample_rate",
                "-of",
                "compact",
                &master_url,
            ],
        );
        assert!(
            streams.contains("codec_name=h264|profile=Constrained Baseline|width=640|height=360"),
            "{streams}"
        );
        assert!(streams.contains("codec_name=opus"), "{streams}");
        // Clean full decode of the playlist over HTTP.
        let (_, errors) = run(
            &ffmpeg,
            &["-v", "error", "-i", &master_url, "-f", "null", "-"],
        );
        assert!(errors.trim().is_empty(), "decode errors: {errors}");
        // Every segment starts with a keyframe; per-stream DTS strictly increase across segments.
        let dir = tempfile::tempdir().unwrap();
        let init = server
            .client
            .get(format!(
                "{}/stream/{video_id}/segments/init-0.mp4",
                server.base
            ))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let mut joined = init.to_vec();
        for segment in &playlist.segments {
            let uri = segment.uri.trim_start_matches("../segments/");
            let data = server
                .client
                .get(format!("{}/stream/{video_id}/segments/{uri}", server.base))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let path = dir.path().join("one.mp4");
            std::fs::write(&path, [&init[..], &data[..]].concat()).unwrap();
            let (packets, _) = run(
                &ffprobe,
                &[
                    "-v",
                    "error",
                    "-select_streams",
                    "v:0",
                    "-show_entries",
                    "packet=pts_time,flags",
                    "-of",
                    "csv=p=0",
                    path.to_str().unwrap(),
                ],
            );
            let first = packets.lines().next().unwrap_or_default();
            assert!(first.contains('K'), "segment {uri} starts with {first:?}");
            joined.extend_from_slice(&data);
        }
        let all_path = dir.path().join("all.mp4");
        std::fs::write(&all_path, &joined).unwrap();
        let (packets, _) = run(
            &ffprobe,
            &[
                "-v",
                "error",
                "-show_entries",
                "packet=stream_index,dts",
                "-of",
                "csv=p=0",
                all_path.to_str().unwrap(),
            ],
        );
        let mut last = [i64::MIN; 2];
        let mut count = [0usize; 2];
        for line in packets.lines() {
            let (index, dts) = line.split_once(',').unwrap();
            let index: usize = index.parse().unwrap();
            let dts: i64 = dts.trim_end_matches(',').parse().unwrap();
            assert!(
                dts > last[index],
                "stream {index} dts {dts} after {}",
                last[index]
            );
            last[index] = dts;
            count[index] += 1;
        }
        assert!(
            count[0] >= 230 && count[1] >= 380,
            "packets per stream {count:?}"
        );

        // clip.mp4: 2 s from 3.5 s (between keyframes at 3 s and 4 s); the edit list makes the
        // first presented frame the one at 3.5 s of the recording.
        let full = frame_hashes(&ffmpeg, &all_path.to_string_lossy());
        let clip_url = format!(
            "{}/stream/{video_id}/clip.mp4?time=3.5s&duration=2s&filename=moment.mp4",
            server.base
        );
        let response = server.client.get(&clip_url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-disposition"],
            "attachment; filename=\"moment.mp4\""
        );
        let clip = response.bytes().await.unwrap();
        let clip_path = dir.path().join("clip.mp4");
        let clip_frames = check_clip(&ffmpeg, &clip_path, &clip, &full, 3.5);
        let keyframe = full.iter().find(|(t, _)| (t - 3.0).abs() < 0.001).unwrap();
        assert_ne!(clip_frames[0].1, keyframe.1);
        let (format, _) = run(
            &ffprobe,
            &[
                "-v",
                "error",
                "-show_entries",
                "format=duration:stream=codec_name",
                "-of",
                "compact",
                clip_path.to_str().unwrap(),
            ],
        );
        assert!(
            format.contains("codec_name=h264") && format.contains("codec_name=opus"),
            "{format}"
        );
        // The mp4 crate reads the progressive clip back too.
        let reader =
            mp4::Mp4Reader::read_header(std::io::Cursor::new(clip.to_vec()), clip.len() as u64)
                .expect("mp4 crate reads the clip");
        assert!(reader.tracks().values().any(|t| t.sample_count() > 60));

        // clip.m3u8: whole segments and a precise start.
        let text = server
            .client
            .get(format!(
                "{}/stream/{video_id}/manifest/clip.m3u8?time=3.5s&duration=2s",
                server.base
            ))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            text.contains("#EXT-X-START:TIME-OFFSET=1.5,PRECISE=YES"),
            "{text}"
        );
        assert!(text.contains("#EXT-X-ENDLIST"));

        // Bad ranges are 400 with a message.
        for query in [
            "time=7s&duration=5s",
            "time=1s&duration=61s",
            "time=abc&duration=2s",
            "duration=2s",
            "time=1s&duration=0s",
        ] {
            let response = server
                .client
                .get(format!(
                    "{}/stream/{video_id}/clip.mp4?{query}",
                    server.base
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 400, "{query}");
            let body: Value = response.json().await.unwrap();
            assert!(!body["errors"][0]["message"].as_str().unwrap().is_empty());
        }

        // Preview window headers.
        let response = server
            .client
            .get(format!("{master_url}?duration=30s"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["preview-start-seconds"], "0.000");
        let response = server
            .client
            .get(format!("{master_url}?duration=10s"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);

        // Metering: recorded minutes and delivered minutes.
        tp.platform.meter.flush().await.unwrap();
        let totals = tp
            .platform
            .meter
            .totals(&tp.account_id, 0, i64::MAX / 2)
            .await
            .unwrap();
        let stored = totals
            .get(&Metric::StreamMinutesStored)
            .copied()
            .unwrap_or(0.0);
        assert!(
            (stored - duration / 60.0).abs() < 0.01,
            "stored {stored} for {duration}s"
        );
        assert!(
            totals
                .get(&Metric::StreamMinutesDelivered)
                .copied()
                .unwrap_or(0.0)
                > 0.1
        );

        // Lifecycle and videos API; deleting removes rows and objects.
        let (_, lifecycle) = server
            .get_json(&format!("{}/stream/{input_uid}/lifecycle", server.base))
            .await;
        assert_eq!(lifecycle["isInput"], true);
        assert_eq!(lifecycle["live"], false);
        assert_eq!(lifecycle["videoUID"], video_id.as_str());
        let (_, videos) = server
            .get_json(&server.api(&format!("/live_inputs/{input_uid}/videos")))
            .await;
        assert_eq!(videos["result"].as_array().unwrap().len(), 1);
        let response = server
            .client
            .delete(server.api(&format!("/{video_id}")))
            .bearer_auth(&server.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let prefix = platform::ObjectKey::new(&["stream", &tp.account_id, &video_id]).unwrap();
        assert!(tp.platform.storage.list(&prefix).await.unwrap().is_empty());
        assert_eq!(
            server.client.get(&media_url).send().await.unwrap().status(),
            404
        );
        server.stop().await;
    }
}

/// Writes a 2 s `clip` to `path`, checks it decodes cleanly into 60 frames (30 fps) and that
/// its first frame is the recording's frame at `time` (from `full`'s hashes); returns its frames.
fn check_clip(
    ffmpeg: &std::path::Path,
    path: &std::path::Path,
    clip: &[u8],
    full: &[(f64, String)],
    time: f64,
) -> Vec<(f64, String)> {
    std::fs::write(path, clip).unwrap();
    let input = path.to_str().unwrap();
    let (_, errors) = run(ffmpeg, &["-v", "error", "-i", input, "-f", "null", "-"]);
    assert!(errors.trim().is_empty(), "clip decode errors: {errors}");
    let clip_frames = frame_hashes(ffmpeg, input);
    assert_eq!(clip_frames.len(), 60, "2 s at 30 fps from {time}");
    let at = full
        .iter()
        .find(|(t, _)| (t - time).abs() < 0.002)
        .unwrap_or_else(|| panic!("a frame at {time}"));
    assert_eq!(
        clip_frames[0].1, at.1,
        "the clip's first frame is the one at {time} s"
    );
    clip_frames
}

async fn get_text(server: &Server, url: &str) -> String {
    let response = server.client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.text().await.unwrap()
}

async fn get_bytes(server: &Server, url: &str) -> bytes::Bytes {
    let response = server.client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.bytes().await.unwrap()
}

/// A publisher whose keyframes come every 2.5 s (and never on request, like ffmpeg) with the
/// default 2 s target: waiting for keyframes would make 2.5 s segments (EXTINF 3 in a playlist
/// announcing 2), so the recorder cuts inside GOPs. EXT-X-TARGETDURATION stays 2 on every reload,
/// the playlist stops claiming EXT-X-INDEPENDENT-SEGMENTS, the recording still decodes cleanly,
/// and a clip starting in a segment without a keyframe is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframes_later_than_the_target_duration_do_not_change_it() {
    let (Some(ffmpeg), Some(ffprobe)) = (tool("ffmpeg"), tool("ffprobe")) else {
        return;
    };
    for tp in platform::testing::all_backends().await {
        let config = StreamConfig {
            live_window: 3,
            ..StreamConfig::default()
        };
        let server = serve(&tp, config).await;
        let input = server.create_input(automatic_input()).await;
        let input_uid = input["uid"].as_str().unwrap().to_string();
        let (video_id, live_reloads) =
            broadcast_with_ffmpeg(&server, &ffmpeg, &input_uid, 10, 75).await;
        wait_until_ready(&server, &video_id).await;
        let media_url = format!("{}/stream/{video_id}/manifest/stream.m3u8", server.base);
        let media = get_text(&server, &media_url).await;
        assert_eq!(
            assert_constant_target_duration(&live_reloads, &media),
            2,
            "{}",
            tp.label
        );
        assert!(!media.contains("#EXT-X-INDEPENDENT-SEGMENTS"), "{media}");
        let playlist = m3u8_rs::parse_media_playlist_res(media.as_bytes()).unwrap();

        // Which segments start with a keyframe, and the whole recording joined.
        let dir = tempfile::tempdir().unwrap();
        let init = get_bytes(
            &server,
            &format!("{}/stream/{video_id}/segments/init-0.mp4", server.base),
        )
        .await;
        let mut joined = init.to_vec();
        let mut starts_with_keyframe = Vec::new();
        for segment in &playlist.segments {
            let uri = segment.uri.trim_start_matches("../segments/");
            let data = get_bytes(
                &server,
                &format!("{}/stream/{video_id}/segments/{uri}", server.base),
            )
            .await;
            let path = dir.path().join("one.mp4");
            std::fs::write(&path, [&init[..], &data[..]].concat()).unwrap();
            starts_with_keyframe.push(common::starts_with_keyframe(&ffprobe, &path).0);
            joined.extend_from_slice(&data);
        }
        assert!(starts_with_keyframe[0]);
        assert!(
            starts_with_keyframe.iter().any(|k| !k),
            "some segments were cut inside a GOP: {starts_with_keyframe:?}"
        );
        let all_path = dir.path().join("all.mp4");
        std::fs::write(&all_path, &joined).unwrap();
        let (_, errors) = run(
            &ffmpeg,
            &[
                "-v",
                "error",
                "-i",
                all_path.to_str().unwrap(),
                "-f",
                "null",
                "-",
            ],
        );
        assert!(errors.trim().is_empty(), "decode errors: {errors}");
        let (_, errors) = run(
            &ffmpeg,
            &["-v", "error", "-i", &media_url, "-f", "null", "-"],
        );
        assert!(
            errors.trim().is_empty(),
            "decode errors over HTTP: {errors}"
        );

        // A clip from inside a segment that starts without a keyframe: its first frame is the
        // recording's frame at that time (decoded from the keyframe in an earlier segment).
        let full = frame_hashes(&ffmpeg, &all_path.to_string_lossy());
        let mut start = 0.0;
        let dependent = playlist
            .segments
            .iter()
            .zip(&starts_with_keyframe)
            .find_map(|(segment, keyframe)| {
                let found = (!keyframe && segment.duration > 0.3 && start > 0.0).then_some(start);
                start += f64::from(segment.duration);
                found
            })
            .expect("a segment without a keyframe, longer than 0.3 s");
        let time = ((dependent + 0.1) * 30.0).round() / 30.0;
        let clip_url = format!(
            "{}/stream/{video_id}/clip.mp4?time={time:.4}s&duration=2s",
            server.base
        );
        let clip = get_bytes(&server, &clip_url).await;
        let clip_path = dir.path().join("clip.mp4");
        check_clip(&ffmpeg, &clip_path, &clip, &full, time);
        // clip.m3u8 starts at the segment holding that frame's keyframe.
        let text = get_text(
            &server,
            &format!(
                "{}/stream/{video_id}/manifest/clip.m3u8?time={time:.4}s&duration=2s",
                server.base
            ),
        )
        .await;
        let clip_playlist = m3u8_rs::parse_media_playlist_res(text.as_bytes()).unwrap();
        assert_eq!(clip_playlist.target_duration, 2);
        let offset = clip_playlist
            .start
            .as_ref()
            .expect("EXT-X-START")
            .time_offset;
        assert!(offset > 0.1, "starts before the clip's segment: {text}");
        server.stop().await;
    }
}
