//! End-to-end detection on real photos: the committed model, tract, decoding and crop geometry together.

use std::sync::{Arc, OnceLock};

use image::{imageops, Rgb, RgbImage};
use images_faces::{face_crop, CropRect, Face, FaceDetector, DEFAULT_INPUT_SIZE, DEFAULT_MODEL};
use sha2::{Digest, Sha256};

/// Where RetinaFace puts the astronaut's face (x1, y1, x2, y2) in the 512×512 photo.
const ASTRONAUT_FACE: [f32; 4] = [178.0, 57.0, 273.0, 177.0];

fn astronaut() -> RgbImage {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/astronaut.png");
    image::open(path).expect("astronaut.png decodes").to_rgb8()
}

fn detector() -> &'static FaceDetector {
    static DETECTOR: OnceLock<FaceDetector> = OnceLock::new();
    DETECTOR.get_or_init(|| FaceDetector::load_default(DEFAULT_INPUT_SIZE).expect("model loads"))
}

fn assert_box_near(face: &Face, expected: [f32; 4], tolerance: f32) {
    let got = [face.x1, face.y1, face.x2, face.y2];
    for (g, e) in got.iter().zip(expected) {
        assert!(
            (g - e).abs() <= tolerance,
            "box {got:?} vs expected {expected:?} (±{tolerance})"
        );
    }
}

#[test]
fn model_file_hash_is_pinned() {
    let on_disk = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/retinaface_mv1_0.25.onnx"
    ))
    .expect("model file present");
    let expected = "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5";
    assert_eq!(hex::encode(Sha256::digest(&on_disk)), expected);
    assert_eq!(hex::encode(Sha256::digest(DEFAULT_MODEL)), expected);
    assert_eq!(images_faces::DEFAULT_MODEL_SHA256, expected);
}

#[test]
fn finds_the_astronauts_face() {
    let faces = detector().detect(&astronaut()).unwrap();
    assert_eq!(faces.len(), 1, "{faces:?}");
    let face = faces[0];
    assert!(face.score > 0.9, "{face:?}");
    assert_box_near(&face, ASTRONAUT_FACE, 5.0);
    // Eyes above the nose, nose above the mouth, left eye left of the right eye, all inside the box.
    let [left_eye, right_eye, nose, mouth_left, mouth_right] = face.landmarks;
    assert!(
        left_eye[0] < right_eye[0] && left_eye[1] < nose[1] && nose[1] < mouth_left[1],
        "{face:?}"
    );
    for p in face.landmarks {
        assert!(
            p[0] > face.x1 && p[0] < face.x2 && p[1] > face.y1 && p[1] < face.y2,
            "{face:?}"
        );
    }
    assert!(mouth_left[0] < mouth_right[0]);
}

/// A textured background with copies of the astronaut's head pasted at known places and scales. Returns the
/// canvas and where each face should be.
fn group_canvas() -> (RgbImage, Vec<[f32; 4]>) {
    let photo = astronaut();
    // The head with some margin, so the detector sees hair, chin and neck.
    let (hx, hy, hw, hh) = (140u32, 20u32, 170u32, 200u32);
    let head = imageops::crop_imm(&photo, hx, hy, hw, hh).to_image();
    let mut canvas = RgbImage::from_fn(1280, 800, |x, y| {
        // Soft gradient plus a faint deterministic pattern: not a blank page, nothing face-like.
        let ripple = (((x * 7 + y * 13) % 17) as u8) * 2;
        Rgb([
            60 + (x / 10) as u8 / 2 + ripple,
            90 + (y / 10) as u8 / 2,
            110 + ripple,
        ])
    });
    let placements: [(u32, u32, f32); 4] = [
        (60, 60, 1.0),
        (900, 90, 1.2),
        (420, 420, 0.8),
        (1010, 520, 1.0),
    ];
    let mut expected = Vec::new();
    for (px, py, scale) in placements {
        let (w, h) = (
            (hw as f32 * scale).round() as u32,
            (hh as f32 * scale).round() as u32,
        );
        let copy = imageops::resize(&head, w, h, imageops::FilterType::CatmullRom);
        imageops::replace(&mut canvas, &copy, px as i64, py as i64);
        let sx = w as f32 / hw as f32;
        let sy = h as f32 / hh as f32;
        expected.push([
            px as f32 + (ASTRONAUT_FACE[0] - hx as f32) * sx,
            py as f32 + (ASTRONAUT_FACE[1] - hy as f32) * sy,
            px as f32 + (ASTRONAUT_FACE[2] - hx as f32) * sx,
            py as f32 + (ASTRONAUT_FACE[3] - hy as f32) * sy,
        ]);
    }
    (canvas, expected)
}

/// Pairs every expected box with the detection whose centre is closest.
fn matched<'a>(faces: &'a [Face], expected: &[[f32; 4]]) -> Vec<&'a Face> {
    expected
        .iter()
        .map(|e| {
            let (cx, cy) = ((e[0] + e[2]) / 2.0, (e[1] + e[3]) / 2.0);
            faces
                .iter()
                .min_by(|a, b| {
                    let d = |f: &Face| {
                        ((f.x1 + f.x2) / 2.0 - cx).powi(2) + ((f.y1 + f.y2) / 2.0 - cy).powi(2)
                    };
                    d(a).total_cmp(&d(b))
                })
                .expect("at least one face")
        })
        .collect()
}

#[test]
fn finds_every_face_on_a_composed_canvas() {
    let (canvas, expected) = group_canvas();
    let faces = detector().detect(&canvas).unwrap();
    assert_eq!(faces.len(), expected.len(), "{faces:?}");
    for (face, want) in matched(&faces, &expected).into_iter().zip(&expected) {
        // At 480 px one network pixel is 2.7 canvas pixels here; with the photo's surroundings replaced the
        // model places the brow line up to ~4 network pixels differently, hence 12 px.
        assert_box_near(face, *want, 12.0);
    }
}

#[test]
fn crops_of_the_canvas_contain_every_face_and_zoom_controls_tightness() {
    let (canvas, _) = group_canvas();
    let (w, h) = canvas.dimensions();
    let faces = detector().detect(&canvas).unwrap();
    assert_eq!(faces.len(), 4);
    let union = faces
        .iter()
        .fold([f32::MAX, f32::MAX, 0.0f32, 0.0f32], |u, f| {
            [
                u[0].min(f.x1),
                u[1].min(f.y1),
                u[2].max(f.x2),
                u[3].max(f.y2),
            ]
        });
    for (tw, th) in [(16, 9), (4, 3), (3, 2)] {
        let wide = face_crop(w, h, &faces, tw, th, 0.0);
        let tight = face_crop(w, h, &faces, tw, th, 1.0);
        for crop in [wide, tight, face_crop(w, h, &faces, tw, th, 0.5)] {
            assert!(
                faces.iter().all(|f| crop.contains_face(f)),
                "{tw}:{th} {crop:?}"
            );
            assert!(crop.x + crop.width <= w && crop.y + crop.height <= h);
        }
        // zoom=0 is as wide as the aspect allows, zoom=1 hugs the faces on the limiting side.
        assert!(wide.width == w || wide.height == h, "{wide:?}");
        let slack_x = tight.width as f32 - (union[2] - union[0]);
        let slack_y = tight.height as f32 - (union[3] - union[1]);
        assert!(
            slack_x.min(slack_y) <= 2.0,
            "{tw}:{th} tight {tight:?} around {union:?}"
        );
    }
}

#[test]
fn zoomed_crop_of_the_astronaut_is_tight_and_wide_crop_is_whole() {
    let faces = detector().detect(&astronaut()).unwrap();
    let tight = face_crop(512, 512, &faces, 1, 1, 1.0);
    assert!(tight.contains_face(&faces[0]));
    assert!(tight.width <= 125 && tight.height <= 125, "{tight:?}");
    assert_eq!(
        face_crop(512, 512, &faces, 1, 1, 0.0),
        CropRect {
            x: 0,
            y: 0,
            width: 512,
            height: 512
        }
    );
    // A portrait crop of the square photo slides sideways to the face.
    let portrait = face_crop(512, 512, &faces, 1, 2, 0.0);
    assert_eq!((portrait.width, portrait.height), (256, 512));
    assert!(portrait.contains_face(&faces[0]));
}

#[test]
fn faceless_image_has_no_faces_and_falls_back_to_the_centre() {
    let img = RgbImage::from_fn(800, 600, |x, y| Rgb([(x / 4) as u8, (y / 3) as u8, 128]));
    let faces = detector().detect(&img).unwrap();
    assert!(faces.is_empty(), "{faces:?}");
    assert_eq!(
        face_crop(800, 600, &faces, 1, 1, 1.0),
        CropRect {
            x: 100,
            y: 0,
            width: 600,
            height: 600
        }
    );
}

#[test]
fn degenerate_sizes_give_clear_answers() {
    let err = detector().detect(&RgbImage::new(0, 0)).unwrap_err();
    assert_eq!(err.code(), "image_empty");
    assert!(detector()
        .detect(&RgbImage::from_pixel(1, 1, Rgb([200, 150, 100])))
        .unwrap()
        .is_empty());
    // A 1-pixel-high strip: letterboxed into almost nothing, still fine.
    assert!(detector()
        .detect(&RgbImage::from_pixel(4000, 1, Rgb([10, 10, 10])))
        .unwrap()
        .is_empty());
}

#[test]
fn huge_image_is_downscaled_and_boxes_come_back_in_its_pixels() {
    // 6000x4000 (24 MP) with the astronaut blown up 4x in the lower right.
    let photo = imageops::resize(&astronaut(), 2048, 2048, imageops::FilterType::Triangle);
    let mut big = RgbImage::from_pixel(6000, 4000, Rgb([40, 60, 80]));
    imageops::replace(&mut big, &photo, 3500, 1800);
    let faces = detector().detect(&big).unwrap();
    assert_eq!(faces.len(), 1, "{faces:?}");
    let expected = ASTRONAUT_FACE.map(|v| v * 4.0);
    let expected = [
        expected[0] + 3500.0,
        expected[1] + 1800.0,
        expected[2] + 3500.0,
        expected[3] + 1800.0,
    ];
    // One network pixel is 12.5 source pixels at this size.
    assert_box_near(&faces[0], expected, 40.0);
}

#[test]
fn concurrent_and_multithreaded_detection_agree_with_single_threaded() {
    let photo = Arc::new(astronaut());
    let reference = detector().detect(&photo).unwrap();
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let photo = Arc::clone(&photo);
            std::thread::spawn(move || detector().detect(&photo).unwrap())
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), reference);
    }
    let parallel = FaceDetector::load_default_with_threads(DEFAULT_INPUT_SIZE, 2).unwrap();
    let faces = parallel.detect(&photo).unwrap();
    assert_eq!(faces.len(), 1);
    assert_box_near(
        &faces[0],
        [
            reference[0].x1,
            reference[0].y1,
            reference[0].x2,
            reference[0].y2,
        ],
        0.5,
    );
}

#[test]
fn other_input_sizes_work_too() {
    // Tolerance: about three network pixels.
    for (size, tolerance) in [(160, 10.0), (320, 5.0), (640, 5.0)] {
        let detector = FaceDetector::load_default(size).unwrap();
        let faces = detector.detect(&astronaut()).unwrap();
        assert_eq!(faces.len(), 1, "{size}: {faces:?}");
        assert_box_near(&faces[0], ASTRONAUT_FACE, tolerance);
    }
}
