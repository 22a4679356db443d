//! Turning RetinaFace's raw outputs into faces: prior-relative decoding, score threshold and NMS. Pure code.

use serde::{Deserialize, Serialize};

use crate::priors::Prior;

/// Detections below this face probability are dropped (RetinaFace's usual operating point).
pub const DEFAULT_SCORE_THRESHOLD: f32 = 0.6;
/// Overlapping detections above this IoU are merged into the higher-scoring one.
pub const DEFAULT_NMS_IOU: f32 = 0.4;
/// Box centre/size encoding variances used when the model was trained.
const VARIANCE: [f32; 2] = [0.1, 0.2];
/// Candidates kept before NMS, and faces kept after: bounds the work on pathological inputs.
const MAX_CANDIDATES: usize = 5000;
const MAX_FACES: usize = 500;

/// One detected face, in pixels of the source image (x to the right, y down).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Face {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    /// Face probability, 0..1.
    pub score: f32,
    /// Left eye, right eye, nose tip, left and right mouth corners, as `[x, y]`.
    pub landmarks: [[f32; 2]; 5],
}

impl Face {
    pub fn width(&self) -> f32 {
        self.x2 - self.x1
    }

    pub fn height(&self) -> f32 {
        self.y2 - self.y1
    }

    fn area(&self) -> f32 {
        self.width().max(0.0) * self.height().max(0.0)
    }

    /// Intersection over union of two boxes (0 when either is degenerate).
    pub fn iou(&self, other: &Face) -> f32 {
        let ix = (self.x2.min(other.x2) - self.x1.max(other.x1)).max(0.0);
        let iy = (self.y2.min(other.y2) - self.y1.max(other.y1)).max(0.0);
        let inter = ix * iy;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }
}

/// How network-input coordinates map back onto the source image.
#[derive(Debug, Clone, Copy)]
pub struct Geometry {
    /// Network input size in pixels.
    pub input_width: u32,
    pub input_height: u32,
    /// Source pixels are multiplied by these to land in the (top-left aligned) letterbox.
    pub scale_x: f32,
    pub scale_y: f32,
    /// Source image size, to clamp boxes.
    pub source_width: u32,
    pub source_height: u32,
}

/// The three output tensors of RetinaFace, flattened row-major (`[N,4]`, `[N,2]`, `[N,10]`).
pub struct RawOutputs<'a> {
    pub loc: &'a [f32],
    pub conf: &'a [f32],
    pub landmarks: &'a [f32],
}

/// Decodes every prior whose face score passes `threshold`, then suppresses overlaps above `nms_iou`.
/// Faces come back best first. Non-finite network values are skipped rather than trusted.
pub fn decode(
    raw: &RawOutputs<'_>,
    priors: &[Prior],
    geometry: &Geometry,
    threshold: f32,
    nms_iou: f32,
) -> Vec<Face> {
    let n = priors.len();
    if raw.loc.len() < n * 4 || raw.conf.len() < n * 2 || raw.landmarks.len() < n * 10 {
        return Vec::new();
    }
    let mut candidates: Vec<(usize, f32)> = (0..n)
        .map(|i| (i, raw.conf[i * 2 + 1]))
        .filter(|(_, score)| score.is_finite() && *score >= threshold)
        .collect();
    candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
    candidates.truncate(MAX_CANDIDATES);

    let (in_w, in_h) = (geometry.input_width as f32, geometry.input_height as f32);
    let to_source_x = |v: f32| v * in_w / geometry.scale_x;
    let to_source_y = |v: f32| v * in_h / geometry.scale_y;
    let (max_x, max_y) = (geometry.source_width as f32, geometry.source_height as f32);

    let mut faces: Vec<Face> = Vec::with_capacity(candidates.len());
    for (i, score) in candidates {
        let p = priors[i];
        let l = &raw.loc[i * 4..i * 4 + 4];
        let cx = p.cx + l[0] * VARIANCE[0] * p.w;
        let cy = p.cy + l[1] * VARIANCE[0] * p.h;
        let w = p.w * (l[2] * VARIANCE[1]).exp();
        let h = p.h * (l[3] * VARIANCE[1]).exp();
        let lm = &raw.landmarks[i * 10..i * 10 + 10];
        let mut landmarks = [[0.0f32; 2]; 5];
        for (k, point) in landmarks.iter_mut().enumerate() {
            let x = p.cx + lm[k * 2] * VARIANCE[0] * p.w;
            let y = p.cy + lm[k * 2 + 1] * VARIANCE[0] * p.h;
            *point = [
                to_source_x(x).clamp(0.0, max_x),
                to_source_y(y).clamp(0.0, max_y),
            ];
        }
        let face = Face {
            x1: to_source_x(cx - w / 2.0).clamp(0.0, max_x),
            y1: to_source_y(cy - h / 2.0).clamp(0.0, max_y),
            x2: to_source_x(cx + w / 2.0).clamp(0.0, max_x),
            y2: to_source_y(cy + h / 2.0).clamp(0.0, max_y),
            score,
            landmarks,
        };
        let finite = [face.x1, face.y1, face.x2, face.y2]
            .iter()
            .all(|v| v.is_finite());
        if finite && face.area() > 0.0 {
            faces.push(face);
        }
    }
    non_maximum_suppression(faces, nms_iou)
}

/// Greedy NMS over faces already sorted best first.
fn non_maximum_suppression(sorted: Vec<Face>, iou_limit: f32) -> Vec<Face> {
    let mut kept: Vec<Face> = Vec::new();
    for face in sorted {
        if kept.iter().all(|k| k.iou(&face) <= iou_limit) {
            kept.push(face);
            if kept.len() == MAX_FACES {
                break;
            }
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::priors::priors;

    fn geometry(scale: f32) -> Geometry {
        Geometry {
            input_width: 64,
            input_height: 64,
            scale_x: scale,
            scale_y: scale,
            source_width: 1000,
            source_height: 1000,
        }
    }

    /// Outputs where only the listed priors carry a face, with the given raw offsets.
    fn outputs(n: usize, hits: &[(usize, f32, [f32; 4])]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut loc = vec![0.0; n * 4];
        let mut conf = vec![0.0; n * 2];
        for i in 0..n {
            conf[i * 2] = 1.0;
        }
        for (i, score, l) in hits {
            loc[i * 4..i * 4 + 4].copy_from_slice(l);
            conf[i * 2] = 1.0 - score;
            conf[i * 2 + 1] = *score;
        }
        (loc, conf, vec![0.0; n * 10])
    }

    #[test]
    fn zero_offsets_reproduce_the_prior_box_in_source_pixels() {
        let p = priors(64, 64);
        let (loc, conf, lm) = outputs(p.len(), &[(0, 0.9, [0.0; 4])]);
        let raw = RawOutputs {
            loc: &loc,
            conf: &conf,
            landmarks: &lm,
        };
        // Prior 0: centre (4,4), 16x16 input pixels; scale 0.5 means source = input * 2.
        let faces = decode(&raw, &p, &geometry(0.5), 0.6, 0.4);
        assert_eq!(faces.len(), 1);
        let f = faces[0];
        assert_eq!((f.x1, f.y1, f.x2, f.y2), (0.0, 0.0, 24.0, 24.0)); // x1 = (4-8)*2 clamps to 0
        assert_eq!(f.landmarks[0], [8.0, 8.0]);
        assert_eq!(f.score, 0.9);
    }

    #[test]
    fn offsets_use_the_variances() {
        let p = priors(64, 64);
        // Pick a prior away from the border: level 0, row 3, col 3, anchor 0 => (3*8+3)*2.
        let i = (3 * 8 + 3) * 2;
        let (loc, conf, lm) = outputs(p.len(), &[(i, 0.8, [1.0, -1.0, 0.0, (2.0f32).ln() / 0.2])]);
        let raw = RawOutputs {
            loc: &loc,
            conf: &conf,
            landmarks: &lm,
        };
        let f = decode(&raw, &p, &geometry(1.0), 0.6, 0.4)[0];
        // Centre (28,28) moves by 0.1*16 = 1.6 px; width stays 16, height doubles to 32.
        let close = |a: f32, b: f32| (a - b).abs() < 1e-3;
        assert!(close(f.x1, 29.6 - 8.0) && close(f.x2, 29.6 + 8.0), "{f:?}");
        assert!(
            close(f.y1, 26.4 - 16.0) && close(f.y2, 26.4 + 16.0),
            "{f:?}"
        );
    }

    #[test]
    fn threshold_drops_weak_scores_and_nan() {
        let p = priors(64, 64);
        let (loc, mut conf, lm) = outputs(p.len(), &[(10, 0.59, [0.0; 4]), (20, 0.61, [0.0; 4])]);
        conf[30 * 2 + 1] = f32::NAN;
        let raw = RawOutputs {
            loc: &loc,
            conf: &conf,
            landmarks: &lm,
        };
        let faces = decode(&raw, &p, &geometry(1.0), 0.6, 0.4);
        assert_eq!(faces.len(), 1);
        assert_eq!(faces[0].score, 0.61);
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes_and_separate_ones() {
        // Priors 0 and 1 share a centre (16 vs 32 px): IoU 0.25 is below 0.4, both stay. Nudging prior 1 to
        // 16 px makes them identical, so only the better one survives.
        let p = priors(64, 64);
        let shrink = (0.5f32).ln() / 0.2;
        let far = (5 * 8 + 5) * 2;
        let (loc, conf, lm) = outputs(
            p.len(),
            &[
                (0, 0.7, [0.0; 4]),
                (1, 0.95, [0.0, 0.0, shrink, shrink]),
                (far, 0.8, [0.0; 4]),
            ],
        );
        let raw = RawOutputs {
            loc: &loc,
            conf: &conf,
            landmarks: &lm,
        };
        let faces = decode(&raw, &p, &geometry(1.0), 0.6, 0.4);
        let scores: Vec<f32> = faces.iter().map(|f| f.score).collect();
        assert_eq!(scores, vec![0.95, 0.8]);
    }

    #[test]
    fn short_outputs_decode_to_nothing_instead_of_panicking() {
        let p = priors(64, 64);
        let raw = RawOutputs {
            loc: &[0.0; 4],
            conf: &[0.0, 1.0],
            landmarks: &[0.0; 10],
        };
        assert!(decode(&raw, &p, &geometry(1.0), 0.6, 0.4).is_empty());
    }

    #[test]
    fn iou_of_identical_and_disjoint_boxes() {
        let a = Face {
            x1: 0.0,
            y1: 0.0,
            x2: 10.0,
            y2: 10.0,
            score: 1.0,
            landmarks: [[0.0; 2]; 5],
        };
        let b = Face {
            x1: 20.0,
            x2: 30.0,
            ..a
        };
        let c = Face {
            x1: 5.0,
            x2: 15.0,
            ..a
        };
        assert_eq!(a.iou(&a), 1.0);
        assert_eq!(a.iou(&b), 0.0);
        assert!((a.iou(&c) - 50.0 / 150.0).abs() < 1e-6);
    }
}
