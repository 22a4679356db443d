//! `gravity=face` and `gravity=auto` over HTTP on every backend: RetinaFace detections stored once per image,
//! crops that keep every face, `zoom` from wide (0) to tight (1), faceless and degenerate images, named
//! variants, and remote sources whose detections are cached next to the fetched source.
//!
//! Test photo: scikit-image's astronaut.png (BSD, see images/faces/tests/data/LICENSE.md); RetinaFace puts the
//! face at about x 178–273, y 57–177 of the 512×512 image.

mod common;

use axum::{routing::get, Router};
use common::*;
use image::{imageops, Rgb, RgbImage};
use reqwest::Method;
use serde_json::{json, Value};

const ASTRONAUT: &[u8] = include_bytes!("../faces/tests/data/astronaut.png");
const ASTRONAUT_FACE: [f64; 4] = [178.0, 57.0, 273.0, 177.0];

/// (x, y, width, height)
type Rect = (f64, f64, f64, f64);

/// Uploads `data`; returns the `/cdn-cgi/image` source path of the image.
async fn source_of(s: &Server, data: Vec<u8>) -> String {
    let (status, body) = s.upload(data, &[]).await;
    assert_eq!(status, 200, "{body}");
    let public = body["result"]["variants"][0].as_str().unwrap();
    s.cdn_source(public)
}

fn cdn(s: &Server, source: &str, options: &str) -> String {
    format!("{}/cdn-cgi/image/{options}/{source}", s.base)
}

async fn get_ok(s: &Server, url: &str) -> Vec<u8> {
    let r = s.client.get(url).send().await.unwrap();
    let status = r.status();
    let body = r.bytes().await.unwrap().to_vec();
    assert_eq!(
        status,
        200,
        "{}: {url}: {}",
        s.label,
        String::from_utf8_lossy(&body)
    );
    body
}

async fn info(s: &Server, source: &str, options: &str) -> Value {
    let body = get_ok(s, &cdn(s, source, &format!("{options},format=json"))).await;
    serde_json::from_slice(&body).unwrap()
}

fn crop_of(v: &Value) -> Rect {
    let c = &v["crop"];
    let n = |k: &str| c[k].as_f64().unwrap_or_else(|| panic!("crop.{k} in {v}"));
    (n("x"), n("y"), n("width"), n("height"))
}

fn faces_of(v: &Value) -> Vec<[f64; 4]> {
    v["faces"]
        .as_array()
        .unwrap_or_else(|| panic!("faces in {v}"))
        .iter()
        .map(|f| {
            let n = |k: &str| f[k].as_f64().unwrap();
            [n("x1"), n("y1"), n("x2"), n("y2")]
        })
        .collect()
}

fn holds(crop: Rect, face: [f64; 4]) -> bool {
    let (x, y, w, h) = crop;
    face[0].floor() >= x
        && face[1].floor() >= y
        && face[2].ceil() <= x + w
        && face[3].ceil() <= y + h
}

fn assert_near(got: [f64; 4], want: [f64; 4], tolerance: f64) {
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= tolerance,
            "{got:?} vs {want:?} ±{tolerance}"
        );
    }
}

/// Mean absolute difference per channel of two equally sized RGB images.
fn mean_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let total: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y) as u64)
        .sum();
    total as f64 / a.as_raw().len() as f64
}

/// `photo` cut at `crop` and resized to `w`×`h`: what a correct delivery must look like.
fn reference(photo: &RgbImage, crop: Rect, w: u32, h: u32) -> RgbImage {
    let (x, y, cw, ch) = crop;
    let cut = imageops::crop_imm(photo, x as u32, y as u32, cw as u32, ch as u32).to_image();
    imageops::resize(&cut, w, h, imageops::FilterType::Lanczos3)
}

fn png_of(image: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

#[tokio::test]
async fn face_gravity_crops_to_the_astronaut_with_zoom() {
    let photo = image::load_from_memory(ASTRONAUT).unwrap().to_rgb8();
    for s in servers(test_config).await {
        let src = source_of(&s, ASTRONAUT.to_vec()).await;

        // Detected once and listed in format=json, in source pixels.
        let tight = info(&s, &src, "w=200,h=100,fit=cover,gravity=face,zoom=1").await;
        let faces = faces_of(&tight);
        assert_eq!(faces.len(), 1, "{}: {tight}", s.label);
        assert_near(faces[0], ASTRONAUT_FACE, 6.0);
        let face = faces[0];

        // zoom=1: the tightest 2:1 crop around the face (height = face height, width = 2 × that).
        let c = crop_of(&tight);
        assert!(holds(c, face), "{c:?} {face:?}");
        let face_h = face[3].ceil() - face[1].floor();
        assert!((c.3 - face_h).abs() <= 2.0, "{c:?} {face:?}");
        assert!((c.2 - 2.0 * c.3).abs() <= 2.0, "{c:?}");

        // zoom=0: the widest 2:1 crop (512×256), still holding the face.
        let wide = crop_of(&info(&s, &src, "w=200,h=100,fit=cover,gravity=face,zoom=0").await);
        assert_eq!((wide.2, wide.3), (512.0, 256.0));
        assert!(holds(wide, face), "{wide:?}");
        // In between: in between, and still holding the face.
        let half = crop_of(&info(&s, &src, "w=200,h=100,fit=cover,gravity=face,zoom=0.5").await);
        assert!(half.2 < wide.2 && half.2 > c.2, "{half:?}");
        assert!(holds(half, face));

        // The delivered pixels are that crop: close to a reference cut of the photo, far from a centre cut.
        let png = get_ok(
            &s,
            &cdn(&s, &src, "w=200,h=100,fit=cover,gravity=face,zoom=1"),
        )
        .await;
        let got = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(got.dimensions(), (200, 100));
        let at_face = mean_diff(&got, &reference(&photo, c, 200, 100));
        let centred = (256.0 - c.2 / 2.0, 256.0 - c.3 / 2.0, c.2, c.3);
        let at_centre = mean_diff(&got, &reference(&photo, centred, 200, 100));
        assert!(
            at_face < 6.0 && at_centre > 3.0 * at_face,
            "face {at_face}, centre {at_centre}"
        );

        // fit=crop never enlarges: a 200×100 box from a 512 px source keeps ≥ 200×100 source pixels.
        let cropped = info(&s, &src, "w=200,h=100,fit=crop,gravity=face,zoom=1").await;
        let cc = crop_of(&cropped);
        assert!(holds(cc, face) && cc.2 >= 200.0 && cc.3 >= 100.0, "{cc:?}");
        assert_eq!(
            (cropped["width"].as_u64(), cropped["height"].as_u64()),
            (Some(200), Some(100))
        );

        // gravity=auto keeps the face too (saliency blended with faces).
        let auto = crop_of(&info(&s, &src, "w=300,h=100,fit=cover,gravity=auto").await);
        assert!(holds(auto, face), "{auto:?}");
        let r = s
            .client
            .get(cdn(&s, &src, "w=300,h=100,fit=cover,gravity=auto"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(dims(&r.bytes().await.unwrap()), (300, 100));

        // Faces are stored with the image: one row however many transforms used them.
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM image_faces")
            .fetch_one(s.platform.db.pool())
            .await
            .unwrap();
        assert_eq!(rows, 1, "{}", s.label);
    }
}

#[tokio::test]
async fn named_variants_and_rotation_use_the_faces() {
    for s in servers(test_config).await {
        let src = source_of(&s, ASTRONAUT.to_vec()).await;
        let (status, body) = s
            .send_json(
                Method::POST,
                &s.api("/v1/variants"),
                json!({"id": "face", "options": {"fit": "cover", "width": 120, "height": 60, "gravity": "face", "zoom": 1}}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = s
            .send_json(
                Method::POST,
                &s.api("/v1/variants"),
                json!({"id": "bad", "options": {"gravity": "sideways"}}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        let via_variant = get_ok(&s, &format!("{}/{}/face", s.base, src)).await;
        let via_options = get_ok(
            &s,
            &cdn(&s, &src, "w=120,h=60,fit=cover,gravity=face,zoom=1"),
        )
        .await;
        let a = image::load_from_memory(&via_variant).unwrap().to_rgb8();
        let b = image::load_from_memory(&via_options).unwrap().to_rgb8();
        assert_eq!(a.dimensions(), (120, 60));
        assert!(mean_diff(&a, &b) < 1.0, "variant and options crop alike");

        // Rotated 90° clockwise the face moves to x 512−177..512−57, y 178..273 of the rotated frame.
        let rotated = info(
            &s,
            &src,
            "w=100,h=100,fit=cover,gravity=face,zoom=1,rotate=90",
        )
        .await;
        let c = crop_of(&rotated);
        assert!(
            holds(c, [335.0 + 6.0, 178.0 + 6.0, 455.0 - 6.0, 273.0 - 6.0]),
            "{c:?}"
        );
    }
}

/// A textured background with copies of the astronaut's head at known places (as in images/faces' tests).
fn group_photo() -> (RgbImage, Vec<[f64; 4]>) {
    let photo = image::load_from_memory(ASTRONAUT).unwrap().to_rgb8();
    let (hx, hy, hw, hh) = (140u32, 20u32, 170u32, 200u32);
    let head = imageops::crop_imm(&photo, hx, hy, hw, hh).to_image();
    let mut canvas = RgbImage::from_fn(1280, 800, |x, y| {
        let ripple = (((x * 7 + y * 13) % 17) as u8) * 2;
        Rgb([
            60 + (x / 10) as u8 / 2 + ripple,
            90 + (y / 10) as u8 / 2,
            110 + ripple,
        ])
    });
    let mut expected = Vec::new();
    for (px, py, scale) in [
        (60u32, 60u32, 1.0f64),
        (900, 90, 1.2),
        (420, 420, 0.8),
        (1010, 520, 1.0),
    ] {
        let (w, h) = (
            (hw as f64 * scale).round() as u32,
            (hh as f64 * scale).round() as u32,
        );
        let copy = imageops::resize(&head, w, h, imageops::FilterType::CatmullRom);
        imageops::replace(&mut canvas, &copy, px as i64, py as i64);
        let (sx, sy) = (w as f64 / hw as f64, h as f64 / hh as f64);
        expected.push([
            px as f64 + (ASTRONAUT_FACE[0] - hx as f64) * sx,
            py as f64 + (ASTRONAUT_FACE[1] - hy as f64) * sy,
            px as f64 + (ASTRONAUT_FACE[2] - hx as f64) * sx,
            py as f64 + (ASTRONAUT_FACE[3] - hy as f64) * sy,
        ]);
    }
    (canvas, expected)
}

#[tokio::test]
async fn group_photo_crops_hold_every_face() {
    let (canvas, expected) = group_photo();
    for s in servers(test_config).await {
        let src = source_of(&s, png_of(&canvas)).await;
        let base = info(&s, &src, "w=160,h=90,fit=cover,gravity=face").await;
        let faces = faces_of(&base);
        assert_eq!(faces.len(), expected.len(), "{base}");
        for want in &expected {
            let (cx, cy) = ((want[0] + want[2]) / 2.0, (want[1] + want[3]) / 2.0);
            let nearest = faces
                .iter()
                .min_by(|a, b| {
                    let d = |f: &[f64; 4]| {
                        ((f[0] + f[2]) / 2.0 - cx).powi(2) + ((f[1] + f[3]) / 2.0 - cy).powi(2)
                    };
                    d(a).total_cmp(&d(b))
                })
                .unwrap();
            // The detector sees a 960 px preview letterboxed to 480: one network pixel is 2.7 canvas pixels,
            // and the brow line of a pasted head moves by a few of them (images/faces allows 12 px on the
            // canvas itself; the preview's extra resampling costs a little more).
            assert_near(*nearest, *want, 16.0);
        }
        let union = faces.iter().fold([f64::MAX, f64::MAX, 0.0, 0.0], |u, f| {
            [
                u[0].min(f[0]),
                u[1].min(f[1]),
                u[2].max(f[2]),
                u[3].max(f[3]),
            ]
        });
        // Aspects whose widest crop can hold all faces: every zoom keeps them all.
        for (w, h) in [(160u32, 90u32), (150, 100), (200, 100)] {
            for zoom in ["0", "0.5", "1"] {
                for fit in ["cover", "crop"] {
                    let v = info(
                        &s,
                        &src,
                        &format!("w={w},h={h},fit={fit},gravity=face,zoom={zoom}"),
                    )
                    .await;
                    let c = crop_of(&v);
                    for f in &faces {
                        assert!(
                            holds(c, *f),
                            "{w}x{h} zoom={zoom} fit={fit}: {c:?} cuts {f:?}"
                        );
                    }
                    assert_eq!(
                        (v["width"].as_u64(), v["height"].as_u64()),
                        (Some(w as u64), Some(h as u64))
                    );
                    let aspect = w as f64 / h as f64;
                    if fit == "cover" && zoom == "1" {
                        // Tight: as small as the faces' union allows in this aspect.
                        let tight_w = (union[2] - union[0]).max((union[3] - union[1]) * aspect);
                        assert!((c.2 - tight_w).abs() <= 3.0, "{w}x{h}: {c:?} vs {tight_w}");
                    }
                    if fit == "cover" && zoom == "0" {
                        // Wide: the largest crop of this aspect.
                        let widest = (1280.0f64).min(800.0 * aspect);
                        assert!((c.2 - widest).abs() <= 1.0, "{w}x{h}: {c:?}");
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn faceless_tiny_and_huge_images() {
    for s in servers(test_config).await {
        // No face: a centre crop.
        let src = source_of(&s, jpeg(1200, 600)).await;
        let v = info(&s, &src, "w=300,h=300,fit=cover,gravity=face,zoom=1").await;
        assert_eq!(faces_of(&v).len(), 0, "{v}");
        assert_eq!(crop_of(&v), (300.0, 0.0, 600.0, 600.0));
        let v = info(&s, &src, "w=300,h=300,fit=cover,gravity=auto").await;
        assert_eq!(crop_of(&v).2, 600.0);

        // 1×1: detection runs and finds nothing; the transform still answers.
        let src = source_of(&s, png(1, 1)).await;
        let v = info(&s, &src, "w=10,h=10,fit=cover,gravity=face").await;
        assert_eq!(faces_of(&v).len(), 0);
        let out = get_ok(&s, &cdn(&s, &src, "w=10,h=10,fit=cover,gravity=face")).await;
        assert_eq!(dims(&out), (10, 10));
        let out = get_ok(&s, &cdn(&s, &src, "w=10,h=10,fit=cover,gravity=auto")).await;
        assert_eq!(dims(&out), (10, 10));

        // 24 MP: detection decodes a shrunk copy; the astronaut pasted at a known place is found there.
        let photo = image::load_from_memory(ASTRONAUT).unwrap().to_rgb8();
        let mut big = RgbImage::from_pixel(6000, 4000, Rgb([90, 110, 120]));
        let scaled = imageops::resize(&photo, 2048, 2048, imageops::FilterType::Triangle);
        imageops::replace(&mut big, &scaled, 3500, 1000);
        let mut data = Vec::new();
        jpeg_encoder::Encoder::new(&mut data, 85)
            .encode(big.as_raw(), 6000, 4000, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        let src = source_of(&s, data).await;
        let v = info(&s, &src, "w=200,h=200,fit=cover,gravity=face,zoom=1").await;
        let faces = faces_of(&v);
        assert_eq!(faces.len(), 1, "{v}");
        let want = ASTRONAUT_FACE.map(|c| c * 4.0);
        assert_near(
            faces[0],
            [
                want[0] + 3500.0,
                want[1] + 1000.0,
                want[2] + 3500.0,
                want[3] + 1000.0,
            ],
            40.0,
        );
        assert!(holds(crop_of(&v), faces[0]));
        let out = get_ok(
            &s,
            &cdn(&s, &src, "w=200,h=200,fit=cover,gravity=face,zoom=1"),
        )
        .await;
        assert_eq!(dims(&out), (200, 200));
    }
}

#[tokio::test]
async fn remote_sources_cache_their_detections() {
    let app = Router::new().route(
        "/astronaut.png",
        get(|| async { ([("content-type", "image/png")], ASTRONAUT) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let allow = origin.clone();
    for s in servers(move || {
        let mut c = test_config();
        c.remote_origins = vec![allow.clone()];
        c.remote_allow_loopback = true;
        c
    })
    .await
    {
        let url = format!("{origin}/astronaut.png");
        let v = info(&s, &url, "w=200,h=100,fit=cover,gravity=face,zoom=1").await;
        let faces = faces_of(&v);
        assert_eq!(faces.len(), 1, "{v}");
        assert_near(faces[0], ASTRONAUT_FACE, 6.0);
        assert!(holds(crop_of(&v), faces[0]));
        let remote = platform::ObjectKey::new(&["images-remote"]).unwrap();
        let keys = s.platform.storage.list(&remote).await.unwrap();
        assert_eq!(
            keys.iter()
                .filter(|k| k.as_str().ends_with("/faces.json"))
                .count(),
            1,
            "{keys:?}"
        );
        let out = get_ok(
            &s,
            &cdn(&s, &url, "w=200,h=100,fit=cover,gravity=face,zoom=0.5"),
        )
        .await;
        assert_eq!(dims(&out), (200, 100));
    }
    task.abort();
}

/// With `--images-onnxruntime-library`, detection runs on onnxruntime: the same faces, the same crops.
#[tokio::test]
async fn onnxruntime_engine_finds_the_same_face_over_http() {
    let Some(library) = std::env::var_os("MEDIAPLANE_TEST_ONNXRUNTIME_LIBRARY") else {
        skip_or_fail("onnxruntime (MEDIAPLANE_TEST_ONNXRUNTIME_LIBRARY)");
        return;
    };
    let library = library.to_string_lossy().into_owned();
    let config = move || {
        let mut c = test_config();
        c.onnxruntime_library = library.clone();
        c
    };
    for s in servers(config).await {
        let src = source_of(&s, ASTRONAUT.to_vec()).await;
        let tight = info(&s, &src, "w=200,h=100,fit=cover,gravity=face,zoom=1").await;
        let faces = faces_of(&tight);
        assert_eq!(faces.len(), 1, "{}: {tight}", s.label);
        assert_near(faces[0], ASTRONAUT_FACE, 6.0);
        assert!(holds(crop_of(&tight), faces[0]), "{tight}");
    }
}

/// A library path that is not a file stops start-up with a message naming the setting.
#[tokio::test]
async fn a_missing_onnxruntime_library_fails_start_up() {
    let tp = platform::testing::embedded().await;
    let mut config = test_config();
    config.onnxruntime_library = "/nonexistent/libonnxruntime.so".into();
    let Err(e) = images::ImagesService::start(tp.platform.clone(), config).await else {
        panic!("start-up accepted a missing onnxruntime library");
    };
    let message = e.to_string();
    assert!(
        message.contains("onnxruntime library") && message.contains("/nonexistent"),
        "{message}"
    );
}
