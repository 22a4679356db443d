//! Accuracy vs time of the letterbox size: how many faces of a given size RetinaFace finds at each input size.
//!
//! `cargo run -p images-faces --example size_sweep -- [sizes...]` (default 256 320 384 480 512 640).
//! The test picture is a 1600×1000 canvas with 12 copies of the astronaut's head whose faces are 25 to 250 px
//! tall (1.6 % to 25 % of the picture height); a face counts as found when a detection overlaps it with
//! IoU ≥ 0.5.

use std::time::Instant;

use image::{imageops, Rgb, RgbImage};
use images_faces::{Face, FaceDetector};

const ASTRONAUT_FACE: [f32; 4] = [178.0, 57.0, 273.0, 177.0];

fn canvas() -> (RgbImage, Vec<Face>) {
    let photo = image::open(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/astronaut.png"
    ))
    .expect("astronaut.png")
    .to_rgb8();
    let (hx, hy, hw, hh) = (140u32, 20u32, 170u32, 200u32);
    let head = imageops::crop_imm(&photo, hx, hy, hw, hh).to_image();
    let mut canvas = RgbImage::from_fn(1600, 1000, |x, y| {
        let ripple = (((x * 7 + y * 13) % 17) as u8) * 2;
        Rgb([
            60 + (x / 16) as u8 / 2 + ripple,
            90 + (y / 10) as u8 / 2,
            110 + ripple,
        ])
    });
    let face_heights = [
        25.0f32, 30.0, 35.0, 40.0, 50.0, 60.0, 80.0, 100.0, 130.0, 160.0, 200.0, 250.0,
    ];
    let mut expected = Vec::new();
    let (mut x, mut y, mut row_h) = (10u32, 10u32, 0u32);
    for fh in face_heights {
        let scale = fh / (ASTRONAUT_FACE[3] - ASTRONAUT_FACE[1]);
        let (w, h) = (
            (hw as f32 * scale).round() as u32,
            (hh as f32 * scale).round() as u32,
        );
        if x + w > 1590 {
            x = 10;
            y += row_h + 10;
            row_h = 0;
        }
        let copy = imageops::resize(&head, w, h, imageops::FilterType::CatmullRom);
        imageops::replace(&mut canvas, &copy, x as i64, y as i64);
        let (sx, sy) = (w as f32 / hw as f32, h as f32 / hh as f32);
        expected.push(Face {
            x1: x as f32 + (ASTRONAUT_FACE[0] - hx as f32) * sx,
            y1: y as f32 + (ASTRONAUT_FACE[1] - hy as f32) * sy,
            x2: x as f32 + (ASTRONAUT_FACE[2] - hx as f32) * sx,
            y2: y as f32 + (ASTRONAUT_FACE[3] - hy as f32) * sy,
            score: 1.0,
            landmarks: [[0.0; 2]; 5],
        });
        x += w + 10;
        row_h = row_h.max(h);
    }
    (canvas, expected)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut sizes: Vec<u32> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    if sizes.is_empty() {
        sizes = vec![256, 320, 384, 480, 512, 640];
    }
    let (canvas, expected) = canvas();
    println!(
        "face heights (px): {:?}",
        expected
            .iter()
            .map(|f| f.height().round())
            .collect::<Vec<_>>()
    );
    for size in sizes {
        let detector = FaceDetector::load_default(size)?;
        detector.detect(&canvas)?;
        let mut times = Vec::new();
        let mut faces = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            faces = detector.detect(&canvas)?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        let found: Vec<bool> = expected
            .iter()
            .map(|e| faces.iter().any(|f| f.iou(e) >= 0.5))
            .collect();
        let false_positives = faces
            .iter()
            .filter(|f| expected.iter().all(|e| f.iou(e) < 0.5))
            .count();
        let smallest = expected
            .iter()
            .zip(&found)
            .filter(|(_, ok)| **ok)
            .map(|(e, _)| e.height())
            .fold(f32::MAX, f32::min);
        println!(
            "size={size} found={}/{} smallest_found_face_px={:.0} false_positives={} detect_median_ms={:.1} map={}",
            found.iter().filter(|f| **f).count(),
            expected.len(),
            smallest,
            false_positives,
            times[2],
            found.iter().map(|f| if *f { '#' } else { '.' }).collect::<String>()
        );
    }
    Ok(())
}
