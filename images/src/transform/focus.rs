//! `gravity=face` and `gravity=auto`: where a cropping fit (`cover`, `crop`) cuts the image when the focus
//! depends on its content. Faces come from the images-faces detector (stored per source, see `crate::faces`),
//! in pixels of the source after EXIF orientation; here they are carried through trim, rotation and flips
//! into the frame the plan works in, and the crop rectangle comes from images-faces' crop geometry.

use images_faces::{auto_crop, face_crop, CropRect, Face};
use serde::{Deserialize, Serialize};

use super::{
    geometry::{Plan, RectF},
    options::{Fit, Gravity, TransformOptions},
};

/// Faces found in one source, in pixels of the source after EXIF orientation (`width`×`height`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaceInfo {
    pub width: u32,
    pub height: u32,
    pub faces: Vec<Face>,
}

/// How the frame the plan works in derives from the oriented source: the trim rectangle
/// (left, top, width, height), then `rotate` (clockwise degrees), then the flips.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    pub oriented: (u32, u32),
    pub trim: (f64, f64, f64, f64),
    pub rotate: u16,
    pub flip_h: bool,
    pub flip_v: bool,
}

/// Whether the plan cuts part of the image, so a focal point matters: `cover` or `crop` with both sides.
pub fn crops(opts: &TransformOptions, target: (Option<u32>, Option<u32>)) -> bool {
    matches!(opts.fit, Fit::Cover | Fit::Crop) && target.0.is_some() && target.1.is_some()
}

/// `info`'s faces in the frame's pixels; faces trimmed away entirely are dropped, partly trimmed ones clipped.
pub fn faces_in_frame(info: &FaceInfo, frame: &Frame) -> Vec<Face> {
    if info.width == 0 || info.height == 0 {
        return Vec::new();
    }
    let sx = frame.oriented.0 as f32 / info.width as f32;
    let sy = frame.oriented.1 as f32 / info.height as f32;
    let (left, top, tw, th) = frame.trim;
    let (left, top, tw, th) = (left as f32, top as f32, tw as f32, th as f32);
    // Rotation and flips as point maps on a tw×th frame.
    let (rw, rh) = if frame.rotate == 90 || frame.rotate == 270 {
        (th, tw)
    } else {
        (tw, th)
    };
    let map = |x: f32, y: f32| -> [f32; 2] {
        let (mut x, mut y) = match frame.rotate {
            90 => (th - y, x),
            180 => (tw - x, th - y),
            270 => (y, tw - x),
            _ => (x, y),
        };
        if frame.flip_h {
            x = rw - x;
        }
        if frame.flip_v {
            y = rh - y;
        }
        [x, y]
    };
    info.faces
        .iter()
        .filter_map(|f| {
            let x1 = (f.x1 * sx - left).clamp(0.0, tw);
            let x2 = (f.x2 * sx - left).clamp(0.0, tw);
            let y1 = (f.y1 * sy - top).clamp(0.0, th);
            let y2 = (f.y2 * sy - top).clamp(0.0, th);
            if x2 <= x1 || y2 <= y1 {
                return None;
            }
            let [ax, ay] = map(x1, y1);
            let [bx, by] = map(x2, y2);
            Some(Face {
                x1: ax.min(bx),
                y1: ay.min(by),
                x2: ax.max(bx),
                y2: ay.max(by),
                score: f.score,
                landmarks: f.landmarks.map(|[x, y]| map(x * sx - left, y * sy - top)),
            })
        })
        .collect()
}

/// Replaces the plan's crop for `gravity=face` (faces and `zoom`) or `gravity=auto` (saliency `focus`
/// blended with faces). `image` is the frame's size. `crop` never enlarges, so there the crop is grown
/// back to at least the output size (around its centre, so it still holds what it held).
pub fn refine(
    plan: &mut Plan,
    opts: &TransformOptions,
    image: (u32, u32),
    faces: &[Face],
    focus: (f32, f32),
) {
    let (iw, ih) = image;
    let (rw, rh) = plan.resize;
    let mut rect = match opts.gravity {
        Gravity::Face => face_crop(iw, ih, faces, rw, rh, opts.zoom),
        Gravity::Auto => auto_crop(iw, ih, faces, focus, rw, rh),
        Gravity::Centre | Gravity::Point(..) => return,
    };
    if opts.fit == Fit::Crop {
        rect = grow(rect, rw, rh, iw, ih);
    }
    plan.crop = RectF {
        x: rect.x as f64,
        y: rect.y as f64,
        width: rect.width.max(1) as f64,
        height: rect.height.max(1) as f64,
    };
}

/// `rect` enlarged to at least `min_w`×`min_h` (within the image) around its centre, shifted inside the
/// image. A window at least as large, centred on the same point and then shifted by the overflow, still
/// contains the original rectangle.
fn grow(rect: CropRect, min_w: u32, min_h: u32, iw: u32, ih: u32) -> CropRect {
    let axis = |start: u32, len: u32, min: u32, extent: u32| -> (u32, u32) {
        let want = len.max(min).min(extent);
        if want == len {
            return (start, len);
        }
        let centre = start as f64 + len as f64 / 2.0;
        let s = (centre - want as f64 / 2.0)
            .round()
            .clamp(0.0, (extent - want) as f64);
        (s as u32, want)
    };
    let (x, width) = axis(rect.x, rect.width, min_w, iw);
    let (y, height) = axis(rect.y, rect.height, min_h, ih);
    CropRect {
        x,
        y,
        width,
        height,
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
            landmarks: [[x1, y1]; 5],
        }
    }

    fn frame(rotate: u16, flip_h: bool, flip_v: bool) -> Frame {
        Frame {
            oriented: (400, 200),
            trim: (0.0, 0.0, 400.0, 200.0),
            rotate,
            flip_h,
            flip_v,
        }
    }

    #[test]
    fn faces_follow_rotation_flips_and_trim() {
        let info = FaceInfo {
            width: 400,
            height: 200,
            faces: vec![face(10.0, 20.0, 50.0, 80.0)],
        };
        let one = |f: Frame| {
            let faces = faces_in_frame(&info, &f);
            assert_eq!(faces.len(), 1);
            let f = faces[0];
            (f.x1, f.y1, f.x2, f.y2)
        };
        assert_eq!(one(frame(0, false, false)), (10.0, 20.0, 50.0, 80.0));
        // 90° clockwise: a 200×400 frame, x' = 200 − y, y' = x.
        assert_eq!(one(frame(90, false, false)), (120.0, 10.0, 180.0, 50.0));
        assert_eq!(one(frame(180, false, false)), (350.0, 120.0, 390.0, 180.0));
        assert_eq!(one(frame(270, false, false)), (20.0, 350.0, 80.0, 390.0));
        assert_eq!(one(frame(0, true, false)), (350.0, 20.0, 390.0, 80.0));
        assert_eq!(one(frame(0, false, true)), (10.0, 120.0, 50.0, 180.0));
        // Trim 30 px off the left: the face is clipped at the new left edge.
        let trimmed = Frame {
            trim: (30.0, 0.0, 370.0, 200.0),
            ..frame(0, false, false)
        };
        assert_eq!(one(trimmed), (0.0, 20.0, 20.0, 80.0));
        // Trimmed away entirely.
        let gone = Frame {
            trim: (100.0, 0.0, 300.0, 200.0),
            ..frame(0, false, false)
        };
        assert!(faces_in_frame(&info, &gone).is_empty());
        // Detections at half size are scaled up to the oriented source.
        let half = FaceInfo {
            width: 200,
            height: 100,
            faces: vec![face(5.0, 10.0, 25.0, 40.0)],
        };
        let f = faces_in_frame(&half, &frame(0, false, false))[0];
        assert_eq!((f.x1, f.y1, f.x2, f.y2), (10.0, 20.0, 50.0, 80.0));
    }

    #[test]
    fn grow_keeps_the_original_inside() {
        let r = CropRect {
            x: 90,
            y: 0,
            width: 10,
            height: 10,
        };
        let g = grow(r, 40, 40, 100, 100);
        assert_eq!((g.width, g.height), (40, 40));
        assert!(g.x <= r.x && g.x + g.width >= r.x + r.width);
        assert!(g.y <= r.y && g.y + g.height >= r.y + r.height);
        assert_eq!(grow(r, 5, 5, 100, 100), r);
        assert_eq!(grow(r, 500, 500, 100, 100).width, 100);
    }
}
