//! Test harness: a real Images router (behind the platform's layers) served on 127.0.0.1:0 for
//! every backend `platform::testing::all_backends()` provides, and a reqwest client.

#![allow(dead_code)]

use std::sync::Arc;

use images::{ImagesConfig, ImagesService};
use platform::{testing::TestPlatform, Platform};
use serde_json::Value;

pub struct Server {
    pub base: String,
    pub client: reqwest::Client,
    pub account_id: String,
    pub token: String,
    pub service: ImagesService,
    pub platform: Platform,
    pub label: &'static str,
    _test_platform: TestPlatform,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start(tp: TestPlatform, config: ImagesConfig) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut platform_config = (*tp.platform.config).clone();
    platform_config.public_url = Some(format!("http://{addr}"));
    let platform = Platform {
        config: Arc::new(platform_config),
        db: tp.platform.db.clone(),
        storage: tp.platform.storage.clone(),
        meter: tp.platform.meter.clone(),
    };
    let service = ImagesService::start(platform.clone(), config)
        .await
        .unwrap();
    let app = platform::http::apply_layers(service.router(), &platform.config);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server {
        base: format!("http://{addr}"),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        account_id: tp.account_id.clone(),
        token: tp.token.clone(),
        service,
        platform,
        label: tp.label,
        _test_platform: tp,
        task,
    }
}

/// One server per configured backend.
pub async fn servers(config: impl Fn() -> ImagesConfig) -> Vec<Server> {
    let mut out = Vec::new();
    for tp in platform::testing::all_backends().await {
        out.push(start(tp, config()).await);
    }
    out
}

impl Server {
    pub fn api(&self, path: &str) -> String {
        format!(
            "{}/client/v4/accounts/{}/images{}",
            self.base, self.account_id, path
        )
    }

    pub async fn upload(&self, data: Vec<u8>, fields: &[(&str, &str)]) -> (u16, Value) {
        let mut form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(data).file_name("photo.jpg"),
        );
        for (k, v) in fields {
            form = form.text(k.to_string(), v.to_string());
        }
        let r = self
            .client
            .post(self.api("/v1"))
            .bearer_auth(&self.token)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get_json(&self, url: &str) -> (u16, Value) {
        let r = self
            .client
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn send_json(&self, method: reqwest::Method, url: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .request(method, url)
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Number of objects stored under `images/<account>/`.
    pub async fn object_count(&self) -> usize {
        let prefix = platform::ObjectKey::new(&["images", &self.account_id]).unwrap();
        self.platform.storage.list(&prefix).await.unwrap().len()
    }

    /// Path of the delivery URL (without the base).
    pub fn path_of(&self, url: &str) -> String {
        url.strip_prefix(&self.base).unwrap_or(url).to_string()
    }

    /// The `/cdn-cgi/image/<options>/<source>` source path of an image, from its `public` delivery URL.
    pub fn cdn_source(&self, delivery_url: &str) -> String {
        self.path_of(delivery_url)
            .trim_end_matches("/public")
            .trim_start_matches('/')
            .to_string()
    }
}

pub fn error_code(v: &Value) -> i64 {
    v["errors"][0]["code"].as_i64().unwrap_or(0)
}

/// A JPEG with a gradient (so resizing has something to do).
pub fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let mut pixels = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            pixels.extend_from_slice(&[
                (x * 255 / width.max(1)) as u8,
                (y * 255 / height.max(1)) as u8,
                ((x + y) % 256) as u8,
            ]);
        }
    }
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 90)
        .encode(
            &pixels,
            width as u16,
            height as u16,
            jpeg_encoder::ColorType::Rgb,
        )
        .unwrap();
    out
}

pub fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbaImage::from_fn(width, height, |x, y| {
        image::Rgba([x as u8, y as u8, 200, 255])
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// A 1x1 PNG whose header (valid CRC) claims `width` x `height`: a decompression bomb's header.
pub fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut data = png(1, 1);
    data[16..20].copy_from_slice(&width.to_be_bytes());
    data[20..24].copy_from_slice(&height.to_be_bytes());
    let mut crc = 0xFFFF_FFFFu32;
    for &b in &data[12..29] {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    data[29..33].copy_from_slice(&(!crc).to_be_bytes());
    data
}

pub fn dims(bytes: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory(bytes).unwrap();
    (img.width(), img.height())
}

pub fn test_config() -> ImagesConfig {
    let mut c = ImagesConfig::defaults();
    c.transform_workers = 2;
    c
}

pub use platform::testing::{skip_or_fail, which};

/// `ffprobe`'s view of an encoded image: (codec name, width, height); `None` when ffprobe is missing
/// (after [`skip_or_fail`]).
pub fn ffprobe(bytes: &[u8]) -> Option<(String, u32, u32)> {
    let Some(ffprobe) = which("ffprobe") else {
        skip_or_fail("ffprobe (Debian ffmpeg)");
        return None;
    };
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    let out = std::process::Command::new(ffprobe)
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args(["stream=codec_name,width,height", "-of", "csv=p=0"])
        .arg(file.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let fields: Vec<&str> = text.split(',').collect();
    assert_eq!(
        fields.len(),
        3,
        "ffprobe: {text:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some((
        fields[0].to_string(),
        fields[1].parse().unwrap(),
        fields[2].parse().unwrap(),
    ))
}
