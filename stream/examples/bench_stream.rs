//! Stream bench (run by `scripts/bench-stream.sh`): prints figures, asserts nothing about speed.
//!
//! 1. WHIP offer → connected: ffmpeg 9's WHIP muxer publishes `WHIP_RUNS` times; ffmpeg's own
//!    verbose timing line gives offer→answer, ICE, DTLS and SRTP phases.
//! 2. Segment listing latency: ffmpeg sends H264+Opus RTP in real time for `BENCH_SECONDS` (the
//!    same feed the WHIP path gives the recorder); the arrival instant of every video packet is
//!    noted, and the live playlist is polled every `POLL_MS`. For each segment: time from its last
//!    frame's last packet arriving (and from the complete keyframe that cuts it) to its first
//!    appearance in the playlist.
//! 3. Clip: `clip.mp4` of `CLIP_SECONDS` from `CLIP_AT` vs Debian `ffmpeg -ss -t -c copy` of the
//!    same range, reading the HLS over HTTP and a local fMP4 copy of the recording; `RUNS` each.
//!
//! Storage is the embedded backend (SQLite + local disk). Debug profile (our crates opt-level 1,
//! dependencies opt-level 3), as every test build.

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::*;
use stream::StreamConfig;

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `(median, min, max)` of a non-empty sample.
fn summary(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn p95(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * 0.95).ceil() as usize).clamp(1, v.len()) - 1]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds: u32 = env_num("BENCH_SECONDS", 75);
    let runs: usize = env_num("RUNS", 10);
    let whip_runs: usize = env_num("WHIP_RUNS", 5);
    let poll_ms: u64 = env_num("POLL_MS", 2);
    let clip_at: f64 = env_num("CLIP_AT", 5.0);
    let clip_seconds: f64 = env_num("CLIP_SECONDS", 60.0);
    let (Some(ffmpeg), Some(ffprobe)) = (tool("ffmpeg"), tool("ffprobe")) else {
        eprintln!("Debian ffmpeg/ffprobe are needed");
        std::process::exit(1);
    };
    let tp = platform::testing::embedded().await;
    let server = serve(&tp, StreamConfig::default()).await;

    // 1. WHIP offer → connected, as ffmpeg measures it.
    match whip_ffmpeg() {
        Some(whip) => bench_whip(&server, &whip, whip_runs).await,
        None => println!("whip: skipped (no imageio-ffmpeg in MEDIAPLANE_TEST_VENV)"),
    }

    // 2. A real-time broadcast; segment listing latency.
    let input = server.create_input(automatic_input()).await;
    let input_uid = input["uid"].as_str().expect("uid").to_string();
    let (keyframe, _) = counting_keyframes();
    let publisher = server
        .service
        .begin_broadcast(&input_uid, true, keyframe)
        .await
        .expect("broadcast starts");
    let video_id = publisher.video_id.clone();
    let listed: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = tokio::spawn(poll_playlist(
        server.client.clone(),
        format!("{}/stream/{video_id}/manifest/stream.m3u8", server.base),
        listed.clone(),
        stop.clone(),
        Duration::from_millis(poll_ms),
    ));
    // Per RTP timestamp (access unit): first and last packet arrival, and whether it is an IDR.
    let mut units: HashMap<u32, (Instant, Instant, bool)> = HashMap::new();
    println!("broadcast: {seconds} s of 640x360@30 H264 (GOP 1 s) + Opus over RTP, real time");
    let packets = rtp_source::publish_ffmpeg_rtp(&publisher, &ffmpeg, seconds, 0, |p, at| {
        let unit = units.entry(p.timestamp).or_insert((at, at, false));
        unit.1 = at;
        unit.2 |= rtp_source::carries_idr(&p.payload);
    })
    .await;
    drop(publisher);
    let video = wait_ready(&server, &video_id).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = poller.await;
    println!(
        "broadcast: {} video / {} audio packets, recorded {:.2} s",
        packets[0],
        packets[1],
        video["duration"].as_f64().unwrap_or(0.0)
    );
    let listed = listed.lock().expect("lock").clone();
    segment_latency(&tp, &video_id, &units, &listed, poll_ms).await;

    // 3. clip.mp4 vs ffmpeg -c copy of the same range.
    bench_clip(
        &server,
        &ffmpeg,
        &ffprobe,
        &video_id,
        clip_at,
        clip_seconds,
        runs,
    )
    .await;
    server.stop().await;
}

async fn bench_whip(server: &Server, whip: &std::path::Path, runs: usize) {
    let mut connect = Vec::new();
    let mut phases = Vec::new();
    for _ in 0..runs {
        let input = server
            .create_input(serde_json::json!({"recording": {"mode": "off", "timeoutSeconds": 0}}))
            .await;
        let out = whip_publish(whip, &server.whip_url(&input), 2, "verbose")
            .output()
            .await
            .expect("ffmpeg runs");
        let log = String::from_utf8_lossy(&out.stderr);
        // "Muxer state=…, elapsed=…ms(init:a,offer:b,answer:c,udp:d,ice:e,dtls:f,srtp:g)":
        // each phase is the time since the previous one; b ends when the offer is ready.
        let Some(line) = log.lines().find(|l| l.contains("Muxer state=")) else {
            println!("whip: no timing line from ffmpeg:\n{log}");
            return;
        };
        let inner = line
            .rsplit_once('(')
            .and_then(|(_, r)| r.strip_suffix(')'))
            .unwrap_or("");
        let values: BTreeMap<&str, f64> = inner
            .split(',')
            .filter_map(|kv| kv.split_once(':'))
            .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
            .collect();
        let after_offer: f64 = ["answer", "udp", "ice", "dtls", "srtp"]
            .iter()
            .map(|k| values.get(k).copied().unwrap_or(f64::NAN))
            .sum();
        connect.push(after_offer);
        phases.push(
            values
                .into_iter()
                .map(|(k, v)| format!("{k} {v:.1}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        if !out.status.success() {
            println!("whip: ffmpeg exited with {}", out.status);
        }
    }
    let (median, min, max) = summary(connect);
    println!(
        "whip offer→connected (POST, answer, ICE, DTLS, SRTP; ffmpeg 9 on loopback, {runs} runs): median {median:.1} ms, min {min:.1}, max {max:.1}"
    );
    println!(
        "whip phases of the last run (ms): {}",
        phases.last().map(String::as_str).unwrap_or("")
    );
}

/// Polls the live media playlist; notes when each segment sequence number first appears.
async fn poll_playlist(
    client: reqwest::Client,
    url: String,
    listed: Arc<Mutex<HashMap<i64, Instant>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    every: Duration,
) {
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        if let Ok(response) = client.get(&url).send().await {
            let seen = Instant::now();
            if let Ok(text) = response.text().await {
                let mut listed = listed.lock().expect("lock");
                for seq in text
                    .lines()
                    .filter_map(|l| l.strip_prefix("../segments/")?.strip_suffix(".m4s"))
                    .filter_map(|n| n.parse::<i64>().ok())
                {
                    listed.entry(seq).or_insert(seen);
                }
            }
        }
        tokio::time::sleep(every).await;
    }
}

async fn segment_latency(
    tp: &platform::testing::TestPlatform,
    video_id: &str,
    units: &HashMap<u32, (Instant, Instant, bool)>,
    listed: &HashMap<i64, Instant>,
    poll_ms: u64,
) {
    // The timeline starts at the first keyframe: relative ticks of every access unit.
    let mut order: Vec<(&u32, &(Instant, Instant, bool))> = units.iter().collect();
    order.sort_by_key(|(_, (first, _, _))| *first);
    let Some(base) = order.iter().find(|(_, u)| u.2).map(|(ts, _)| **ts) else {
        println!("segments: no keyframe seen");
        return;
    };
    let by_tick: BTreeMap<i64, (Instant, Instant, bool)> = order
        .iter()
        .map(|(ts, u)| (i64::from(ts.wrapping_sub(base) as i32), **u))
        .collect();
    let segments = stream::store::list_segments(&tp.platform.db, video_id)
        .await
        .expect("segments");
    let (mut from_last_frame, mut from_cut) = (Vec::new(), Vec::new());
    for segment in &segments {
        let end = segment.end_ticks();
        // The keyframe that cut this segment (the last segment ends with the broadcast instead).
        let Some((_, cut)) = by_tick.get_key_value(&end).filter(|(_, u)| u.2) else {
            continue;
        };
        let Some((_, last)) = by_tick.range(..end).next_back() else {
            continue;
        };
        let Some(seen) = listed.get(&segment.seq) else {
            continue;
        };
        from_last_frame.push(ms(seen.saturating_duration_since(last.1)));
        from_cut.push(ms(seen.saturating_duration_since(cut.1)));
    }
    if from_last_frame.is_empty() {
        println!("segments: none matched");
        return;
    }
    let n = from_last_frame.len();
    let (m1, min1, max1) = summary(from_last_frame.clone());
    let (m2, min2, max2) = summary(from_cut.clone());
    println!(
        "segment listed after its last frame arrived ({n} segments of {}, playlist polled every {poll_ms} ms): median {m1:.1} ms, p95 {:.1}, min {min1:.1}, max {max1:.1}",
        segments.len(),
        p95(from_last_frame)
    );
    println!(
        "  of which after the cutting keyframe was complete: median {m2:.1} ms, p95 {:.1}, min {min2:.1}, max {max2:.1}",
        p95(from_cut)
    );
}

async fn wait_ready(server: &Server, video_id: &str) -> serde_json::Value {
    for _ in 0..600 {
        let (status, body) = server.get_json(&server.api(&format!("/{video_id}"))).await;
        if status == 200 && body["result"]["status"]["state"] == "ready" {
            return body["result"].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the video never became ready");
}

/// Runs a command `runs` times; wall milliseconds of each.
fn time_command(program: &std::path::Path, args: &[String], runs: usize) -> Vec<f64> {
    (0..runs)
        .map(|_| {
            let started = Instant::now();
            let out = std::process::Command::new(program)
                .args(args)
                .output()
                .expect("runs");
            assert!(
                out.status.success(),
                "{}: {}",
                program.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            ms(started.elapsed())
        })
        .collect()
}

fn probe_duration(ffprobe: &std::path::Path, file: &std::path::Path) -> String {
    let out = std::process::Command::new(ffprobe)
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn bench_clip(
    server: &Server,
    ffmpeg: &std::path::Path,
    ffprobe: &std::path::Path,
    video_id: &str,
    at: f64,
    seconds: f64,
    runs: usize,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!(
        "{}/stream/{video_id}/clip.mp4?time={at}s&duration={seconds}s",
        server.base
    );
    let mut ours = Vec::new();
    let mut body = bytes::Bytes::new();
    for _ in 0..runs {
        let started = Instant::now();
        let response = server.client.get(&url).send().await.expect("clip");
        assert_eq!(response.status(), 200, "clip.mp4");
        body = response.bytes().await.expect("clip body");
        ours.push(ms(started.elapsed()));
    }
    let ours_file = dir.path().join("ours.mp4");
    std::fs::write(&ours_file, &body).expect("write");

    // The whole recording as one local fragmented MP4 (init + every segment).
    let segments = server
        .client
        .get(format!(
            "{}/stream/{video_id}/manifest/stream.m3u8",
            server.base
        ))
        .send()
        .await
        .expect("playlist")
        .text()
        .await
        .expect("playlist");
    let mut local = server
        .client
        .get(format!(
            "{}/stream/{video_id}/segments/init-0.mp4",
            server.base
        ))
        .send()
        .await
        .expect("init")
        .bytes()
        .await
        .expect("init")
        .to_vec();
    for uri in segments.lines().filter(|l| l.ends_with(".m4s")) {
        let name = uri.trim_start_matches("../segments/");
        let part = server
            .client
            .get(format!("{}/stream/{video_id}/segments/{name}", server.base))
            .send()
            .await
            .expect("segment")
            .bytes()
            .await
            .expect("segment");
        local.extend_from_slice(&part);
    }
    let local_file = dir.path().join("recording.mp4");
    std::fs::write(&local_file, &local).expect("write");

    let copy = |input: String, out: &std::path::Path| -> Vec<String> {
        [
            "-v",
            "error",
            "-y",
            "-ss",
            &at.to_string(),
            "-i",
            &input,
            "-t",
            &seconds.to_string(),
            "-c",
            "copy",
            "-f",
            "mp4",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([out.display().to_string()])
        .collect()
    };
    let hls_out = dir.path().join("ffmpeg-hls.mp4");
    let hls = time_command(
        ffmpeg,
        &copy(
            format!("{}/stream/{video_id}/manifest/stream.m3u8", server.base),
            &hls_out,
        ),
        runs,
    );
    let file_out = dir.path().join("ffmpeg-file.mp4");
    let file = time_command(
        ffmpeg,
        &copy(local_file.display().to_string(), &file_out),
        runs,
    );

    // A baseline whose output does not hold the range is not a figure (Debian ffmpeg 5.1 with
    // `-ss` before `-i` on an fMP4 HLS playlist was seen writing an empty file).
    let valid = |file: &std::path::Path| {
        let probed: f64 = probe_duration(ffprobe, file).parse().unwrap_or(0.0);
        if probed + 0.5 >= seconds {
            ""
        } else {
            "  INVALID: output does not cover the range"
        }
    };
    let (m0, min0, _) = summary(ours);
    let (m1, min1, _) = summary(hls);
    let (m2, min2, _) = summary(file);
    println!("clip of {seconds} s from {at} s ({runs} runs each, wall):");
    println!(
        "  mediaplane clip.mp4 over HTTP          median {m0:7.1} ms  min {min0:7.1}  {} bytes, probed {} s",
        body.len(),
        probe_duration(ffprobe, &ours_file)
    );
    println!(
        "  ffmpeg -ss -t -c copy from the HLS URL median {m1:7.1} ms  min {min1:7.1}  {} bytes, probed {} s  ratio {:.1}x{}",
        std::fs::metadata(&hls_out).map(|m| m.len()).unwrap_or(0),
        probe_duration(ffprobe, &hls_out),
        m1 / m0,
        valid(&hls_out)
    );
    println!(
        "  ffmpeg -ss -t -c copy from a local file median {m2:7.1} ms  min {min2:7.1}  {} bytes, probed {} s  ratio {:.1}x{}",
        std::fs::metadata(&file_out).map(|m| m.len()).unwrap_or(0),
        probe_duration(ffprobe, &file_out),
        m2 / m0,
        valid(&file_out)
    );
    println!("  (ratio = ffmpeg median / mediaplane median; > 1 means clip.mp4 is faster)");
}
