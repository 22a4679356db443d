//! `gravity=auto` on a real photo: the spectral-residual focal point and `auto_crop` on scikit-image's
//! astronaut (Eileen Collins in an orange suit holding a black helmet bottom right, a US flag on the left
//! edge, a shuttle model top right, a grey backdrop).
//!
//! Measured: the saliency focus lands on the helmet she holds (about 399, 362), the photo's strongest
//! contrast, not on her body or face. So saliency alone is held to "on the subject, off the background";
//! gravity=auto relies on the detected face (70 % of its focal point) to frame the person.

use image::{imageops, RgbImage};
use images_faces::{auto_crop, focus_crop, saliency_focus, CropRect, FaceDetector};

fn astronaut() -> RgbImage {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/astronaut.png");
    image::open(path).expect("astronaut.png decodes").to_rgb8()
}

/// Where things are in the 512×512 photo (x1, y1, x2, y2), read off the picture.
const PERSON: [f32; 4] = [20.0, 15.0, 365.0, 512.0];
const HELMET: [f32; 4] = [280.0, 345.0, 500.0, 512.0];
const FLAG: [f32; 4] = [0.0, 0.0, 90.0, 512.0];
const SHUTTLE: [f32; 4] = [355.0, 0.0, 460.0, 280.0];

fn inside(point: (f32, f32), area: [f32; 4]) -> bool {
    point.0 >= area[0] && point.0 <= area[2] && point.1 >= area[1] && point.1 <= area[3]
}

fn contains(crop: CropRect, area: [u32; 4]) -> bool {
    crop.x <= area[0]
        && crop.y <= area[1]
        && crop.x + crop.width >= area[2]
        && crop.y + crop.height >= area[3]
}

#[test]
fn focal_point_of_the_astronaut_is_on_the_subject_not_the_background() {
    let image = astronaut();
    let (fx, fy) = saliency_focus(&image);
    let point = (fx * 512.0, fy * 512.0);
    assert!(
        inside(point, PERSON) || inside(point, HELMET),
        "focus {point:?} is off the person and her helmet"
    );
    assert!(!inside(point, FLAG), "focus {point:?} is on the flag");
    assert!(!inside(point, SHUTTLE), "focus {point:?} is on the shuttle");
}

#[test]
fn focal_point_follows_the_person_when_the_photo_is_mirrored_and_resized() {
    // The method must not depend on where the subject sits or on the photo's resolution.
    let image = astronaut();
    let (fx, fy) = saliency_focus(&image);
    let mirrored = imageops::flip_horizontal(&image);
    let (mx, my) = saliency_focus(&mirrored);
    let point = (mx * 512.0, my * 512.0);
    let mirror = |a: [f32; 4]| [512.0 - a[2], a[1], 512.0 - a[0], a[3]];
    assert!(
        inside(point, mirror(PERSON)) || inside(point, mirror(HELMET)),
        "mirrored focus {point:?}"
    );
    assert!((mx - (1.0 - fx)).abs() < 0.02 && (my - fy).abs() < 0.02);
    let large = imageops::resize(&image, 1536, 1536, imageops::FilterType::Triangle);
    let (lx, ly) = saliency_focus(&large);
    assert!(
        (lx - fx).abs() < 0.05 && (ly - fy).abs() < 0.05,
        "512 px {:?} vs 1536 px {:?}",
        (fx, fy),
        (lx, ly)
    );
}

#[test]
fn auto_crops_keep_the_face_and_saliency_crops_keep_the_focus() {
    let image = astronaut();
    let focus = saliency_focus(&image);
    let faces = FaceDetector::load_default(images_faces::DEFAULT_INPUT_SIZE)
        .expect("model loads")
        .detect(&image)
        .expect("detects");
    assert_eq!(faces.len(), 1, "{faces:?}");
    let face = [
        faces[0].x1.floor() as u32,
        faces[0].y1.floor() as u32,
        faces[0].x2.ceil() as u32,
        faces[0].y2.ceil() as u32,
    ];
    for (target_w, target_h) in [(1, 2), (9, 16), (16, 9), (3, 1)] {
        // Without faces: the crop around the saliency focus contains it.
        let crop = focus_crop(512, 512, focus, target_w, target_h);
        let point = (focus.0 * 512.0, focus.1 * 512.0);
        let area = [
            crop.x as f32,
            crop.y as f32,
            (crop.x + crop.width) as f32,
            (crop.y + crop.height) as f32,
        ];
        assert!(
            inside(point, area),
            "{target_w}:{target_h} saliency crop {crop:?} misses the focus {point:?}"
        );
        // With faces (gravity=auto): the whole face is in every crop it fits in.
        let crop = auto_crop(512, 512, &faces, focus, target_w, target_h);
        if crop.width >= face[2] - face[0] && crop.height >= face[3] - face[1] {
            assert!(
                contains(crop, face),
                "{target_w}:{target_h} auto crop {crop:?} cuts the face"
            );
        }
    }
}
