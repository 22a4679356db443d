//! Saliency focal point for `gravity=auto`, by the spectral-residual method (Hou & Zhang, CVPR 2007).
//!
//! The log amplitude spectrum of natural images is smooth; what sticks out of it (the "residual" after a local
//! average is subtracted) belongs to the unexpected, i.e. salient, parts of the picture. Transforming the
//! residual back with the original phase gives a saliency map. Here it runs on a 64×64 grey thumbnail (the
//! method's usual scale: it picks out objects rather than texture), is blurred, and the focal point is the
//! centroid of the clearly salient area (above three times the mean saliency, the paper's object threshold).

use image::{imageops, GrayImage, RgbImage};

use crate::fft::{fft2, Complex};

const SIDE: usize = 64;
/// Gaussian blur of the map, in thumbnail pixels.
const BLUR_SIGMA: f32 = 2.5;
/// The FFT treats the thumbnail as periodic, so the jump between opposite borders reads as an edge; this many
/// thumbnail pixels along the border are faded out of the map.
const BORDER_FADE: usize = 3;

/// The image's focal point as (x, y) fractions of its width and height (0..1). A featureless image (or an
/// empty one) yields the centre.
pub fn saliency_focus(image: &RgbImage) -> (f32, f32) {
    let (w, h) = image.dimensions();
    if w == 0 || h == 0 {
        return (0.5, 0.5);
    }
    let map = saliency_map(image);
    focal_point(&map)
}

/// The blurred spectral-residual saliency map, `SIDE`×`SIDE`, row-major.
fn saliency_map(image: &RgbImage) -> Vec<f32> {
    let grey: GrayImage = imageops::grayscale(image);
    let side = SIDE as u32;
    let small = if grey.width() >= side && grey.height() >= side {
        imageops::thumbnail(&grey, side, side)
    } else {
        imageops::resize(&grey, side, side, imageops::FilterType::Triangle)
    };
    let mut spectrum: Vec<Complex> = small
        .pixels()
        .map(|p| Complex::new(p[0] as f32 / 255.0, 0.0))
        .collect();
    fft2(&mut spectrum, SIDE, false);

    let log_amplitude: Vec<f32> = spectrum.iter().map(|c| (c.norm() + 1e-6).ln()).collect();
    let smooth = box_blur_wrapping(&log_amplitude, SIDE);
    for (i, c) in spectrum.iter_mut().enumerate() {
        let residual = (log_amplitude[i] - smooth[i]).exp();
        let phase = c.arg();
        *c = Complex::new(residual * phase.cos(), residual * phase.sin());
    }
    fft2(&mut spectrum, SIDE, true);

    let mut map: Vec<f32> = spectrum.iter().map(|c| c.re * c.re + c.im * c.im).collect();
    fade_border(&mut map, SIDE);
    gaussian_blur(&map, SIDE, BLUR_SIGMA)
}

/// Centroid of the area above 3× the mean saliency; centre when there is no salient area.
fn focal_point(map: &[f32]) -> (f32, f32) {
    let mean = map.iter().sum::<f32>() / map.len() as f32;
    if !(mean.is_finite() && mean > 1e-9) {
        return (0.5, 0.5);
    }
    let max = map.iter().cloned().fold(0.0f32, f32::max);
    // A flat map (no structure) has no focal point: its max barely exceeds its mean.
    if max < mean * 1.5 {
        return (0.5, 0.5);
    }
    let threshold = (3.0 * mean).min(0.5 * max);
    let (mut sum, mut sx, mut sy) = (0.0f64, 0.0f64, 0.0f64);
    for (i, v) in map.iter().enumerate() {
        let weight = (*v - threshold).max(0.0) as f64;
        sum += weight;
        sx += weight * ((i % SIDE) as f64 + 0.5);
        sy += weight * ((i / SIDE) as f64 + 0.5);
    }
    if sum <= 0.0 {
        return (0.5, 0.5);
    }
    (
        (sx / sum / SIDE as f64) as f32,
        (sy / sum / SIDE as f64) as f32,
    )
}

/// 3×3 mean with wrap-around, matching the spectrum's periodicity.
fn box_blur_wrapping(values: &[f32], side: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for y in 0..side {
        for x in 0..side {
            let mut sum = 0.0;
            for dy in [side - 1, 0, 1] {
                for dx in [side - 1, 0, 1] {
                    sum += values[((y + dy) % side) * side + (x + dx) % side];
                }
            }
            out[y * side + x] = sum / 9.0;
        }
    }
    out
}

fn fade_border(map: &mut [f32], side: usize) {
    for y in 0..side {
        for x in 0..side {
            let edge = x.min(y).min(side - 1 - x).min(side - 1 - y);
            if edge < BORDER_FADE {
                map[y * side + x] *= edge as f32 / BORDER_FADE as f32;
            }
        }
    }
}

/// Separable Gaussian blur with clamped edges.
fn gaussian_blur(values: &[f32], side: usize, sigma: f32) -> Vec<f32> {
    let radius = (sigma * 3.0).ceil() as isize;
    let kernel: Vec<f32> = (-radius..=radius)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = kernel.iter().sum();
    let at = |i: isize| i.clamp(0, side as isize - 1) as usize;
    let mut rows = vec![0.0; values.len()];
    for y in 0..side {
        for x in 0..side {
            rows[y * side + x] = kernel
                .iter()
                .enumerate()
                .map(|(k, w)| w * values[y * side + at(x as isize + k as isize - radius)])
                .sum::<f32>()
                / total;
        }
    }
    let mut out = vec![0.0; values.len()];
    for y in 0..side {
        for x in 0..side {
            out[y * side + x] = kernel
                .iter()
                .enumerate()
                .map(|(k, w)| w * rows[at(y as isize + k as isize - radius) * side + x])
                .sum::<f32>()
                / total;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    /// Mid-grey noise-free background with one contrasting disc.
    fn disc_at(w: u32, h: u32, cx: f32, cy: f32, r: f32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let d = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt();
            if d < r {
                Rgb([230, 40, 40])
            } else {
                Rgb([120, 120, 120])
            }
        })
    }

    #[test]
    fn single_object_pulls_the_focus_onto_it() {
        let img = disc_at(400, 300, 300.0, 80.0, 25.0);
        let (fx, fy) = saliency_focus(&img);
        assert!(
            (fx - 0.75).abs() < 0.08 && (fy - 80.0 / 300.0).abs() < 0.08,
            "({fx}, {fy})"
        );
    }

    #[test]
    fn object_on_the_other_side_moves_the_focus_there() {
        let (fx, fy) = saliency_focus(&disc_at(400, 300, 70.0, 230.0, 25.0));
        assert!(
            (fx - 70.0 / 400.0).abs() < 0.08 && (fy - 230.0 / 300.0).abs() < 0.08,
            "({fx}, {fy})"
        );
    }

    #[test]
    fn flat_and_empty_images_focus_on_the_centre() {
        assert_eq!(
            saliency_focus(&RgbImage::from_pixel(300, 200, Rgb([90, 90, 90]))),
            (0.5, 0.5)
        );
        assert_eq!(saliency_focus(&RgbImage::new(0, 0)), (0.5, 0.5));
        assert_eq!(
            saliency_focus(&RgbImage::from_pixel(1, 1, Rgb([1, 2, 3]))),
            (0.5, 0.5)
        );
    }

    #[test]
    fn blur_preserves_a_constant() {
        let out = gaussian_blur(&vec![2.0; 64], 8, 1.5);
        assert!(out.iter().all(|v| (v - 2.0).abs() < 1e-5));
    }
}
