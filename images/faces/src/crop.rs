//! Crop geometry for `gravity=face`, `gravity=auto` and focal points. Pure arithmetic on sizes and boxes.
//!
//! All crops have the requested aspect ratio (to within a pixel of rounding) and lie inside the image. The
//! caller resizes the crop to the target size afterwards.

use serde::{Deserialize, Serialize};

use crate::decode::Face;

/// A rectangle in source pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CropRect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl CropRect {
    /// Whether the face's box lies fully inside this rectangle (fractional edges rounded outwards).
    pub fn contains_face(&self, face: &Face) -> bool {
        face.x1.floor() >= self.x as f32
            && face.y1.floor() >= self.y as f32
            && face.x2.ceil() <= (self.x + self.width) as f32
            && face.y2.ceil() <= (self.y + self.height) as f32
    }
}

/// Axis-aligned extent in source pixels, `f64` so huge images stay exact.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: f64,
    end: f64,
}

impl Span {
    fn len(&self) -> f64 {
        self.end - self.start
    }

    fn centre(&self) -> f64 {
        (self.start + self.end) / 2.0
    }
}

/// The smallest box around all faces, clamped to the image; `None` without (non-degenerate) faces.
fn faces_box(img_w: u32, img_h: u32, faces: &[Face]) -> Option<(Span, Span)> {
    let valid = faces.iter().filter(|f| {
        [f.x1, f.y1, f.x2, f.y2].iter().all(|v| v.is_finite()) && f.x2 > f.x1 && f.y2 > f.y1
    });
    let mut out: Option<(Span, Span)> = None;
    for f in valid {
        let x = Span {
            start: f.x1.floor() as f64,
            end: f.x2.ceil() as f64,
        };
        let y = Span {
            start: f.y1.floor() as f64,
            end: f.y2.ceil() as f64,
        };
        out = Some(match out {
            None => (x, y),
            Some((ox, oy)) => (
                Span {
                    start: ox.start.min(x.start),
                    end: ox.end.max(x.end),
                },
                Span {
                    start: oy.start.min(y.start),
                    end: oy.end.max(y.end),
                },
            ),
        });
    }
    let (x, y) = out?;
    let clamp = |s: Span, max: u32| Span {
        start: s.start.clamp(0.0, max as f64),
        end: s.end.clamp(0.0, max as f64),
    };
    let (x, y) = (clamp(x, img_w), clamp(y, img_h));
    (x.len() > 0.0 && y.len() > 0.0).then_some((x, y))
}

/// Requested aspect ratio (width / height); `None` when the target has no usable shape.
fn aspect(target_w: u32, target_h: u32) -> Option<f64> {
    (target_w > 0 && target_h > 0).then(|| target_w as f64 / target_h as f64)
}

/// The largest `aspect` rectangle that fits in the image.
fn largest_size(img_w: u32, img_h: u32, aspect: f64) -> (u32, u32) {
    if img_w as f64 / img_h as f64 > aspect {
        (
            ((img_h as f64 * aspect).round() as u32).clamp(1, img_w),
            img_h,
        )
    } else {
        (
            img_w,
            ((img_w as f64 / aspect).round() as u32).clamp(1, img_h),
        )
    }
}

/// Start of a `size` window centred on `centre` as far as `[0, extent]` allows.
fn place(centre: f64, size: u32, extent: u32) -> u32 {
    let start = (centre - size as f64 / 2.0).round();
    start.clamp(0.0, (extent - size) as f64) as u32
}

/// Moves a window placed by [`place`] so it covers `span` when it is large enough to.
fn cover(start: u32, size: u32, span: Span) -> u32 {
    if (size as f64) < span.len() {
        return start;
    }
    let mut start = start as f64;
    if start > span.start {
        start = span.start;
    }
    if start + (size as f64) < span.end {
        start = span.end - size as f64;
    }
    start as u32
}

fn whole_image(img_w: u32, img_h: u32) -> CropRect {
    CropRect {
        x: 0,
        y: 0,
        width: img_w,
        height: img_h,
    }
}

/// Crop for `gravity=face`. The focus is the smallest box around all faces. `zoom` 0 gives the largest crop of
/// the target aspect (as much background as possible), positioned to contain the faces and centred on them as
/// far as the borders allow; `zoom` 1 gives the tightest crop of that aspect around the faces, never cutting a
/// face that fits; values between interpolate the crop size linearly. Without faces: a centre crop.
pub fn face_crop(
    img_w: u32,
    img_h: u32,
    faces: &[Face],
    target_w: u32,
    target_h: u32,
    zoom: f32,
) -> CropRect {
    if img_w == 0 || img_h == 0 {
        return whole_image(img_w, img_h);
    }
    let Some(aspect) = aspect(target_w, target_h) else {
        return whole_image(img_w, img_h);
    };
    let (max_w, max_h) = largest_size(img_w, img_h, aspect);
    let Some((fx, fy)) = faces_box(img_w, img_h, faces) else {
        return focus_crop(img_w, img_h, (0.5, 0.5), target_w, target_h);
    };
    let zoom = if zoom.is_finite() {
        zoom.clamp(0.0, 1.0) as f64
    } else {
        0.0
    };

    // The tightest crop of this aspect around the faces, capped at the largest one (then faces get cut).
    let tight_w = fx.len().max(fy.len() * aspect).min(max_w as f64);
    let width_f = max_w as f64 + (tight_w - max_w as f64) * zoom;
    // Round outwards so a crop sized to the faces still holds them.
    let width = (width_f.ceil() as u32).clamp(1, max_w);
    let height = ((width_f / aspect).ceil() as u32).clamp(1, max_h);

    let x = cover(place(fx.centre(), width, img_w), width, fx);
    let y = cover(place(fy.centre(), height, img_h), height, fy);
    CropRect {
        x,
        y,
        width,
        height,
    }
}

/// The largest crop of the target aspect, centred on `focus` (fractions of width and height) as far as the
/// borders allow. This is also `gravity=XxY`.
pub fn focus_crop(
    img_w: u32,
    img_h: u32,
    focus: (f32, f32),
    target_w: u32,
    target_h: u32,
) -> CropRect {
    if img_w == 0 || img_h == 0 {
        return whole_image(img_w, img_h);
    }
    let Some(aspect) = aspect(target_w, target_h) else {
        return whole_image(img_w, img_h);
    };
    let (width, height) = largest_size(img_w, img_h, aspect);
    let fraction = |v: f32| {
        if v.is_finite() {
            v.clamp(0.0, 1.0) as f64
        } else {
            0.5
        }
    };
    CropRect {
        x: place(fraction(focus.0) * img_w as f64, width, img_w),
        y: place(fraction(focus.1) * img_h as f64, height, img_h),
        width,
        height,
    }
}

/// Share of the focal point that comes from the faces when there are any (the rest from saliency).
const FACE_WEIGHT: f64 = 0.7;

/// Crop for `gravity=auto`: the largest crop of the target aspect around a focal point that blends the faces'
/// centre with the saliency `focus`, then shifted so that every face stays inside when they fit. Without faces
/// it is [`focus_crop`] on the saliency focus.
pub fn auto_crop(
    img_w: u32,
    img_h: u32,
    faces: &[Face],
    focus: (f32, f32),
    target_w: u32,
    target_h: u32,
) -> CropRect {
    let base = focus_crop(img_w, img_h, focus, target_w, target_h);
    let Some((fx, fy)) = faces_box(img_w, img_h, faces) else {
        return base;
    };
    let fraction = |v: f32| {
        if v.is_finite() {
            v.clamp(0.0, 1.0) as f64
        } else {
            0.5
        }
    };
    let cx = FACE_WEIGHT * fx.centre() + (1.0 - FACE_WEIGHT) * fraction(focus.0) * img_w as f64;
    let cy = FACE_WEIGHT * fy.centre() + (1.0 - FACE_WEIGHT) * fraction(focus.1) * img_h as f64;
    CropRect {
        x: cover(place(cx, base.width, img_w), base.width, fx),
        y: cover(place(cy, base.height, img_h), base.height, fy),
        ..base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x1: f32, y1: f32, x2: f32, y2: f32) -> Face {
        Face {
            x1,
            y1,
            x2,
            y2,
            score: 0.9,
            landmarks: [[0.0; 2]; 5],
        }
    }

    fn inside(c: &CropRect, w: u32, h: u32) -> bool {
        c.x + c.width <= w && c.y + c.height <= h && c.width > 0 && c.height > 0
    }

    #[test]
    fn zoom_zero_is_the_largest_crop_of_the_aspect_containing_the_face() {
        let faces = [face(700.0, 100.0, 800.0, 220.0)];
        let c = face_crop(1000, 500, &faces, 100, 100, 0.0);
        assert_eq!((c.width, c.height), (500, 500));
        // Centred on x=750 would need x=500..1000: exactly at the border.
        assert_eq!((c.x, c.y), (500, 0));
        assert!(c.contains_face(&faces[0]));
    }

    #[test]
    fn zoom_one_is_tight_around_the_faces_with_the_aspect() {
        let faces = [face(400.0, 100.0, 500.0, 220.0)];
        let c = face_crop(1000, 500, &faces, 200, 100, 1.0);
        // Face box 100x120; at 2:1 the tightest crop is 240x120.
        assert_eq!((c.width, c.height), (240, 120));
        assert_eq!((c.x, c.y), (330, 100));
        assert!(c.contains_face(&faces[0]));
    }

    #[test]
    fn zoom_half_is_halfway_in_size() {
        let faces = [face(400.0, 100.0, 500.0, 200.0)];
        let c = face_crop(1000, 1000, &faces, 1, 1, 0.5);
        assert_eq!((c.width, c.height), (550, 550));
        assert!(c.contains_face(&faces[0]));
    }

    #[test]
    fn focus_is_the_box_around_all_faces() {
        let faces = [
            face(100.0, 100.0, 150.0, 160.0),
            face(800.0, 300.0, 860.0, 370.0),
        ];
        let c = face_crop(1000, 1000, &faces, 16, 9, 1.0);
        assert!(faces.iter().all(|f| c.contains_face(f)), "{c:?}");
        // Box 760x270 at 16:9 needs 760 wide (760/16*9 = 427.5 high).
        assert_eq!((c.width, c.height), (760, 428));
        assert!(inside(&c, 1000, 1000));
    }

    #[test]
    fn faces_near_a_corner_are_kept_when_the_crop_is_clamped() {
        let faces = [face(0.0, 0.0, 30.0, 40.0)];
        for zoom in [0.0, 0.3, 1.0] {
            let c = face_crop(640, 480, &faces, 3, 4, zoom);
            assert!(
                c.contains_face(&faces[0]) && inside(&c, 640, 480),
                "{zoom}: {c:?}"
            );
            assert_eq!((c.x, c.y), (0, 0));
        }
    }

    #[test]
    fn faces_wider_than_any_crop_of_the_aspect_are_centred() {
        // Faces span 900 px, but a 1:1 crop of a 1000x300 image is 300 wide.
        let faces = [
            face(50.0, 10.0, 150.0, 110.0),
            face(850.0, 10.0, 950.0, 110.0),
        ];
        let c = face_crop(1000, 300, &faces, 1, 1, 1.0);
        assert_eq!((c.width, c.height), (300, 300));
        assert_eq!(c.x, 350);
    }

    #[test]
    fn no_faces_means_centre_crop() {
        let c = face_crop(1000, 500, &[], 1, 1, 1.0);
        assert_eq!(
            c,
            CropRect {
                x: 250,
                y: 0,
                width: 500,
                height: 500
            }
        );
        let degenerate = [face(10.0, 10.0, 10.0, 50.0), face(f32::NAN, 0.0, 5.0, 5.0)];
        assert_eq!(face_crop(1000, 500, &degenerate, 1, 1, 1.0), c);
    }

    #[test]
    fn tiny_empty_and_shapeless_inputs_do_not_panic() {
        assert_eq!(
            face_crop(1, 1, &[face(0.0, 0.0, 1.0, 1.0)], 300, 200, 1.0),
            CropRect {
                x: 0,
                y: 0,
                width: 1,
                height: 1
            }
        );
        assert_eq!(
            face_crop(0, 0, &[], 10, 10, 0.0),
            CropRect {
                x: 0,
                y: 0,
                width: 0,
                height: 0
            }
        );
        assert_eq!(
            face_crop(50, 40, &[], 0, 10, 0.0),
            CropRect {
                x: 0,
                y: 0,
                width: 50,
                height: 40
            }
        );
        assert_eq!(
            focus_crop(1, 1, (f32::NAN, 2.0), 1, 1),
            CropRect {
                x: 0,
                y: 0,
                width: 1,
                height: 1
            }
        );
        let c = face_crop(7, 3, &[face(-5.0, -5.0, 100.0, 100.0)], 1, 1, f32::NAN);
        assert!(inside(&c, 7, 3), "{c:?}");
    }

    #[test]
    fn huge_images_keep_exact_geometry() {
        let faces = [face(60_000.0, 30_000.0, 61_000.0, 31_200.0)];
        let c = face_crop(100_000, 50_000, &faces, 1, 1, 1.0);
        assert_eq!((c.width, c.height), (1200, 1200));
        assert!(c.contains_face(&faces[0]));
        let c = face_crop(100_000, 50_000, &faces, 1, 1, 0.0);
        assert_eq!((c.width, c.height), (50_000, 50_000));
        assert!(c.contains_face(&faces[0]));
    }

    #[test]
    fn focus_crop_follows_the_focal_point_within_borders() {
        assert_eq!(
            focus_crop(1000, 500, (0.0, 0.5), 1, 1),
            CropRect {
                x: 0,
                y: 0,
                width: 500,
                height: 500
            }
        );
        assert_eq!(
            focus_crop(1000, 500, (0.6, 0.5), 1, 1),
            CropRect {
                x: 350,
                y: 0,
                width: 500,
                height: 500
            }
        );
        assert_eq!(
            focus_crop(1000, 500, (1.0, 1.0), 4, 1),
            CropRect {
                x: 0,
                y: 250,
                width: 1000,
                height: 250
            }
        );
    }

    #[test]
    fn auto_crop_keeps_faces_even_when_saliency_points_elsewhere() {
        let faces = [face(800.0, 100.0, 900.0, 200.0)];
        let c = auto_crop(1000, 500, &faces, (0.0, 0.5), 1, 1);
        assert!(c.contains_face(&faces[0]), "{c:?}");
        assert_eq!(
            auto_crop(1000, 500, &[], (0.0, 0.5), 1, 1),
            focus_crop(1000, 500, (0.0, 0.5), 1, 1)
        );
    }
}
