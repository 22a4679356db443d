//! Output geometry of each `fit` mode: which part of the source is used, what size it is resized
//! to, and (for `pad`) the canvas it is placed on. Pure arithmetic on dimensions, so the semantics
//! are pinned by the table-driven tests below.
//!
//! With only one of width/height given, every mode scales proportionally to it (`scale-down` and
//! `crop` never enlarge). With both:
//! - `scale-down`: fit inside the box, never enlarge;
//! - `contain`: fit inside the box, enlarging if needed;
//! - `cover`: fill the box exactly (enlarging if needed), cutting the overflow around the gravity point;
//! - `crop`: like `cover` but never enlarge: a smaller source is cut to the box without scaling;
//! - `pad`: like `contain`, then centred on a canvas of exactly the box, filled with `background`;
//! - `squeeze`: exactly the box, aspect ratio ignored.

use super::options::Fit;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RectF {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Canvas {
    pub width: u32,
    pub height: u32,
    /// Where the resized image's top-left corner goes.
    pub x: u32,
    pub y: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// The region of the source used, in source pixels.
    pub crop: RectF,
    /// The size that region is resized to.
    pub resize: (u32, u32),
    pub canvas: Option<Canvas>,
}

impl Plan {
    /// Final output dimensions.
    pub fn output(&self) -> (u32, u32) {
        match self.canvas {
            Some(c) => (c.width, c.height),
            None => self.resize,
        }
    }

    /// Output pixels per source pixel (≤ 1 means shrinking), the larger of both axes.
    pub fn scale(&self) -> f64 {
        (self.resize.0 as f64 / self.crop.width).max(self.resize.1 as f64 / self.crop.height)
    }
}

fn px(v: f64) -> u32 {
    (v.round() as u32).max(1)
}

fn full(sw: u32, sh: u32) -> RectF {
    RectF {
        x: 0.0,
        y: 0.0,
        width: sw as f64,
        height: sh as f64,
    }
}

/// A `width`×`height` window of the source centred on `focus` (fractions), kept inside it.
fn window(sw: u32, sh: u32, width: f64, height: f64, focus: (f32, f32)) -> RectF {
    let (sw, sh) = (sw as f64, sh as f64);
    let width = width.min(sw);
    let height = height.min(sh);
    let x = (focus.0 as f64 * sw - width / 2.0).clamp(0.0, sw - width);
    let y = (focus.1 as f64 * sh - height / 2.0).clamp(0.0, sh - height);
    RectF {
        x,
        y,
        width,
        height,
    }
}

pub fn plan(
    sw: u32,
    sh: u32,
    target_w: Option<u32>,
    target_h: Option<u32>,
    fit: Fit,
    focus: (f32, f32),
) -> Plan {
    let (swf, shf) = (sw as f64, sh as f64);
    let never_enlarge = matches!(fit, Fit::ScaleDown | Fit::Crop);
    let proportional = |s: f64| {
        let s = if never_enlarge { s.min(1.0) } else { s };
        Plan {
            crop: full(sw, sh),
            resize: (px(swf * s), px(shf * s)),
            canvas: None,
        }
    };
    let (w, h) = match (target_w, target_h) {
        (None, None) => {
            return Plan {
                crop: full(sw, sh),
                resize: (sw, sh),
                canvas: None,
            }
        }
        (Some(w), None) => return proportional(w as f64 / swf),
        (None, Some(h)) => return proportional(h as f64 / shf),
        (Some(w), Some(h)) => (w, h),
    };
    let (wf, hf) = (w as f64, h as f64);
    let inside = (wf / swf).min(hf / shf);
    let filling = (wf / swf).max(hf / shf);
    match fit {
        Fit::ScaleDown => proportional(inside),
        Fit::Contain => proportional(inside),
        Fit::Squeeze => Plan {
            crop: full(sw, sh),
            resize: (w, h),
            canvas: None,
        },
        Fit::Cover => Plan {
            crop: window(sw, sh, wf / filling, hf / filling, focus),
            resize: (w, h),
            canvas: None,
        },
        Fit::Crop => {
            let s = filling.min(1.0);
            let out_w = w.min(px(swf * s));
            let out_h = h.min(px(shf * s));
            Plan {
                crop: window(sw, sh, out_w as f64 / s, out_h as f64 / s, focus),
                resize: (out_w, out_h),
                canvas: None,
            }
        }
        Fit::Pad => {
            let (rw, rh) = (px(swf * inside).min(w), px(shf * inside).min(h));
            let canvas = Canvas {
                width: w,
                height: h,
                x: (w - rw) / 2,
                y: (h - rh) / 2,
            };
            Plan {
                crop: full(sw, sh),
                resize: (rw, rh),
                canvas: Some(canvas),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: (f32, f32) = (0.5, 0.5);

    /// (source, target, fit, expected output)
    type Case = ((u32, u32), (Option<u32>, Option<u32>), Fit, (u32, u32));

    #[test]
    fn output_dimensions_per_fit_mode() {
        // (source, target, fit, expected output)
        #[rustfmt::skip]
        let table: &[Case] = &[
            // scale-down: inside the box, never larger than the source
            ((4000, 3000), (Some(800), None), Fit::ScaleDown, (800, 600)),
            ((4000, 3000), (None, Some(300)), Fit::ScaleDown, (400, 300)),
            ((4000, 3000), (Some(800), Some(800)), Fit::ScaleDown, (800, 600)),
            ((400, 300), (Some(800), Some(800)), Fit::ScaleDown, (400, 300)),
            ((400, 300), (Some(800), None), Fit::ScaleDown, (400, 300)),
            ((4000, 3000), (None, None), Fit::ScaleDown, (4000, 3000)),
            // contain: inside the box, may enlarge
            ((4000, 3000), (Some(800), Some(800)), Fit::Contain, (800, 600)),
            ((400, 300), (Some(800), Some(800)), Fit::Contain, (800, 600)),
            ((300, 400), (Some(800), Some(800)), Fit::Contain, (600, 800)),
            ((400, 300), (Some(800), None), Fit::Contain, (800, 600)),
            // cover: exactly the box, may enlarge
            ((4000, 3000), (Some(800), Some(800)), Fit::Cover, (800, 800)),
            ((400, 300), (Some(800), Some(800)), Fit::Cover, (800, 800)),
            ((4000, 3000), (Some(100), Some(500)), Fit::Cover, (100, 500)),
            ((4000, 3000), (Some(800), None), Fit::Cover, (800, 600)),
            // crop: like cover, never enlarge
            ((4000, 3000), (Some(800), Some(800)), Fit::Crop, (800, 800)),
            ((400, 300), (Some(800), Some(800)), Fit::Crop, (400, 300)),
            ((400, 300), (Some(200), Some(800)), Fit::Crop, (200, 300)),
            ((400, 300), (Some(800), None), Fit::Crop, (400, 300)),
            // pad: exactly the box, image inside it
            ((4000, 3000), (Some(800), Some(800)), Fit::Pad, (800, 800)),
            ((400, 300), (Some(800), Some(800)), Fit::Pad, (800, 800)),
            ((4000, 3000), (Some(800), None), Fit::Pad, (800, 600)),
            // squeeze: exactly the box, aspect ignored
            ((4000, 3000), (Some(800), Some(800)), Fit::Squeeze, (800, 800)),
            ((400, 300), (Some(1000), Some(100)), Fit::Squeeze, (1000, 100)),
            ((4000, 3000), (None, Some(300)), Fit::Squeeze, (400, 300)),
        ];
        for &((sw, sh), (tw, th), fit, expected) in table {
            let p = plan(sw, sh, tw, th, fit, C);
            assert_eq!(
                p.output(),
                expected,
                "{sw}x{sh} -> {tw:?}x{th:?} fit={}",
                fit.as_str()
            );
            assert!(p.crop.x >= 0.0 && p.crop.y >= 0.0);
            assert!(
                p.crop.x + p.crop.width <= sw as f64 + 1e-6
                    && p.crop.y + p.crop.height <= sh as f64 + 1e-6
            );
        }
    }

    #[test]
    fn cover_cuts_around_gravity() {
        let centre = plan(4000, 3000, Some(800), Some(800), Fit::Cover, C);
        assert_eq!(
            centre.crop,
            RectF {
                x: 500.0,
                y: 0.0,
                width: 3000.0,
                height: 3000.0
            }
        );
        let left = plan(4000, 3000, Some(800), Some(800), Fit::Cover, (0.0, 0.5));
        assert_eq!(left.crop.x, 0.0);
        let right = plan(4000, 3000, Some(800), Some(800), Fit::Cover, (1.0, 0.5));
        assert_eq!(right.crop.x, 1000.0);
        let tall = plan(3000, 4000, Some(800), Some(800), Fit::Cover, (0.5, 0.0));
        assert_eq!(tall.crop.y, 0.0);
        let point = plan(4000, 3000, Some(800), Some(800), Fit::Cover, (0.6, 0.5));
        assert!((point.crop.x - 900.0).abs() < 0.01, "{:?}", point.crop);
    }

    #[test]
    fn pad_centres_the_image() {
        let p = plan(4000, 3000, Some(800), Some(800), Fit::Pad, C);
        assert_eq!(p.resize, (800, 600));
        assert_eq!(
            p.canvas,
            Some(Canvas {
                width: 800,
                height: 800,
                x: 0,
                y: 100
            })
        );
    }

    #[test]
    fn crop_without_enlarging_cuts_source_pixels() {
        let p = plan(400, 300, Some(200), Some(800), Fit::Crop, C);
        assert_eq!(
            p.crop,
            RectF {
                x: 100.0,
                y: 0.0,
                width: 200.0,
                height: 300.0
            }
        );
        assert_eq!(p.scale(), 1.0);
    }
}
