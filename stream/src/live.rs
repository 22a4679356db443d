//! Live broadcasts: one task per live input being published, owning the recording pipeline.
//!
//! A publisher (WHIP session, or any RTP source) gets a [`Publisher`] handle and feeds packets
//! through it without blocking (a full queue drops packets, which the depacketizer sees as loss
//! and answers with a keyframe request). When the publisher leaves, the broadcast waits
//! `timeoutSeconds` for it to come back; a publisher arriving in that window continues the same
//! video, otherwise the video is finalized (and deleted again if recording is off).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use platform::{time_util::now_ms, ApiError, Platform};
use tokio::sync::mpsc;

use crate::{
    ingest::RtpPacket,
    keys,
    mux::OpusConfig,
    recorder::{
        pipeline::{Pipeline, PipelineEvent, TrackKind},
        writer::SegmentWriter,
    },
    store::{self, LiveInputRow, VideoRow},
};

/// Called when the pipeline wants a keyframe from the publisher.
pub type KeyframeRequester = Arc<dyn Fn() + Send + Sync>;

const QUEUE: usize = 8192;
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);

enum Command {
    Rtp(TrackKind, RtpPacket, i64),
    SenderReport(TrackKind, u64, u32),
    Gone(u64),
    Resume {
        generation: u64,
        audio: bool,
        keyframe: KeyframeRequester,
    },
}

struct Slot {
    video_id: String,
    tx: mpsc::Sender<Command>,
    generation: u64,
    connected: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveStatus {
    pub video_id: String,
    pub connected: bool,
}

#[derive(Clone, Default)]
pub struct Broadcasts {
    slots: Arc<Mutex<HashMap<String, Slot>>>,
    /// Serializes starts so two publishers cannot both create a video for one input.
    starting: Arc<tokio::sync::Mutex<()>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Feeds one publisher's media into its broadcast. Dropping it counts as the publisher leaving.
pub struct Publisher {
    tx: mpsc::Sender<Command>,
    generation: u64,
    pub video_id: String,
    started: Instant,
}

impl Publisher {
    pub fn rtp(&self, kind: TrackKind, packet: RtpPacket) {
        let now = self.started.elapsed().as_millis() as i64;
        let _ = self.tx.try_send(Command::Rtp(kind, packet, now));
    }
    pub fn sender_report(&self, kind: TrackKind, ntp_time: u64, rtp_time: u32) {
        let _ = self
            .tx
            .try_send(Command::SenderReport(kind, ntp_time, rtp_time));
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let tx = self.tx.clone();
        let generation = self.generation;
        // The queue may be full; the goodbye must not be lost.
        tokio::spawn(async move {
            let _ = tx.send(Command::Gone(generation)).await;
        });
    }
}

pub struct BroadcastOptions {
    pub segment_ms: u64,
}

impl Broadcasts {
    pub fn status(&self, input_uid: &str) -> Option<LiveStatus> {
        lock(&self.slots).get(input_uid).map(|s| LiveStatus {
            video_id: s.video_id.clone(),
            connected: s.connected,
        })
    }

    /// Starts (or resumes) the broadcast of `input` for a new publisher.
    pub async fn begin(
        &self,
        platform: &Platform,
        input: &LiveInputRow,
        audio: bool,
        keyframe: KeyframeRequester,
        options: BroadcastOptions,
    ) -> Result<Publisher, ApiError> {
        let _starting = self.starting.lock().await;
        {
            let mut slots = lock(&self.slots);
            if let Some(slot) = slots.get_mut(&input.uid) {
                if slot.connected {
                    return Err(ApiError::conflict(
                        "this live input already has a publisher",
                    ));
                }
                slot.generation += 1;
                slot.connected = true;
                let generation = slot.generation;
                if slot
                    .tx
                    .try_send(Command::Resume {
                        generation,
                        audio,
                        keyframe: keyframe.clone(),
                    })
                    .is_ok()
                {
                    tracing::info!(input = %input.uid, video_id = %slot.video_id, "publisher resumed the broadcast");
                    return Ok(Publisher {
                        tx: slot.tx.clone(),
                        generation,
                        video_id: slot.video_id.clone(),
                        started: Instant::now(),
                    });
                }
                // The task already ended: start a new video below.
                slots.remove(&input.uid);
            }
        }
        let now = now_ms();
        let target_duration = crate::hls::target_duration_for(options.segment_ms);
        let video = VideoRow {
            uid: platform::ids::new_uid(),
            account_id: input.account_id.clone(),
            live_input_id: input.uid.clone(),
            recorded: input.recording_mode == "automatic",
            state: "live".into(),
            started_ms: now,
            ended_ms: None,
            duration_ticks: 0,
            size_bytes: 0,
            width: 0,
            height: 0,
            codecs: String::new(),
            created_ms: now,
            modified_ms: now,
            target_duration: i64::try_from(target_duration).unwrap_or(i64::MAX),
        };
        store::insert_video(&platform.db, &video).await?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = SegmentWriter {
            platform: platform.clone(),
            account_id: input.account_id.clone(),
            video_id: video.uid.clone(),
            recorded: video.recorded,
            audio: audio.then_some(OpusConfig { channels: 2 }),
        };
        let timeout = Duration::from_secs(u64::try_from(input.timeout_seconds).unwrap_or(0));
        let task = BroadcastTask {
            slots: self.slots.clone(),
            input_uid: input.uid.clone(),
            writer,
            pipeline: Pipeline::new(options.segment_ms, target_duration),
            keyframe,
            last_keyframe_request: None,
            generation: 0,
            timeout,
        };
        lock(&self.slots).insert(
            input.uid.clone(),
            Slot {
                video_id: video.uid.clone(),
                tx: tx.clone(),
                generation: 0,
                connected: true,
            },
        );
        tokio::spawn(task.run(rx));
        tracing::info!(input = %input.uid, video_id = %video.uid, "broadcast started");
        Ok(Publisher {
            tx,
            generation: 0,
            video_id: video.uid,
            started: Instant::now(),
        })
    }
}

struct BroadcastTask {
    slots: Arc<Mutex<HashMap<String, Slot>>>,
    input_uid: String,
    writer: SegmentWriter,
    pipeline: Pipeline,
    keyframe: KeyframeRequester,
    last_keyframe_request: Option<Instant>,
    generation: u64,
    timeout: Duration,
}

impl BroadcastTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut deadline: Option<tokio::time::Instant> = None;
        // Millisecond clock across publishers: each publisher counts from its own start.
        let mut clock_base = 0i64;
        let mut last_now = 0i64;
        loop {
            let command = match deadline {
                Some(at) => tokio::select! {
                    c = rx.recv() => c,
                    _ = tokio::time::sleep_until(at) => None,
                },
                None => rx.recv().await,
            };
            let Some(command) = command else { break };
            match command {
                Command::Rtp(kind, packet, now) => {
                    last_now = clock_base + now;
                    let mut events = Vec::new();
                    self.pipeline.push_rtp(kind, &packet, last_now, &mut events);
                    self.handle(events).await;
                }
                Command::SenderReport(kind, ntp, rtp) => {
                    self.pipeline.sender_report(kind, ntp, rtp)
                }
                Command::Gone(generation) if generation == self.generation => {
                    let mut events = Vec::new();
                    self.pipeline.finish(&mut events);
                    self.handle(events).await;
                    let mut slots = lock(&self.slots);
                    if let Some(slot) = slots.get_mut(&self.input_uid) {
                        if slot.generation == generation {
                            slot.connected = false;
                        }
                    }
                    drop(slots);
                    tracing::info!(input = %self.input_uid, video_id = %self.writer.video_id, "publisher left");
                    deadline = Some(tokio::time::Instant::now() + self.timeout);
                }
                Command::Gone(_) => {}
                Command::Resume {
                    generation,
                    audio,
                    keyframe,
                } => {
                    self.generation = generation;
                    self.keyframe = keyframe;
                    if audio && self.writer.audio.is_none() {
                        tracing::warn!(video_id = %self.writer.video_id, "resumed publisher added audio; it is not recorded");
                    }
                    self.pipeline.resume();
                    clock_base = last_now + 1;
                    deadline = None;
                }
            }
        }
        self.finalize().await;
    }

    async fn handle(&mut self, events: Vec<PipelineEvent>) {
        for event in events {
            match event {
                PipelineEvent::KeyframeNeeded => {
                    let due = self
                        .last_keyframe_request
                        .is_none_or(|t| t.elapsed() >= KEYFRAME_REQUEST_INTERVAL);
                    if due {
                        self.last_keyframe_request = Some(Instant::now());
                        (self.keyframe)();
                    }
                }
                PipelineEvent::Segment(segment) => {
                    if let Err(e) = self.writer.write(segment).await {
                        tracing::error!(video_id = %self.writer.video_id, error = %e, "storing a segment failed");
                    }
                }
            }
        }
    }

    async fn finalize(self) {
        {
            let mut slots = lock(&self.slots);
            if slots
                .get(&self.input_uid)
                .is_some_and(|s| s.video_id == self.writer.video_id)
            {
                slots.remove(&self.input_uid);
            }
        }
        let platform = &self.writer.platform;
        let video_id = &self.writer.video_id;
        if let Err(e) = store::finish_video(&platform.db, video_id, now_ms()).await {
            tracing::error!(%video_id, error = %e, "finishing the video failed");
        }
        if !self.writer.recorded {
            // Recording is off: the live segments were only for the live playlist.
            if let Err(e) = delete_video(platform, &self.writer.account_id, video_id).await {
                tracing::error!(%video_id, error = %e, "deleting the unrecorded broadcast failed");
            }
        }
        tracing::info!(input = %self.input_uid, %video_id, "broadcast ended");
    }
}

/// Deletes a video's rows first (so nothing half-deleted stays listed), then its objects.
pub async fn delete_video(
    platform: &Platform,
    account_id: &str,
    video_id: &str,
) -> Result<(), crate::StreamError> {
    store::delete_video_rows(&platform.db, video_id).await?;
    platform
        .storage
        .delete_prefix(&keys::video_prefix(account_id, video_id)?)
        .await?;
    Ok(())
}
