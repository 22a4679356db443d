//! Fitting any image into the detector's fixed square input, and RetinaFace's pixel normalisation.

use image::{imageops, RgbImage};

/// Per-channel means the model was trained with, in the network's **BGR** channel order.
const MEANS_BGR: [f32; 3] = [104.0, 117.0, 123.0];

/// A network input tensor (NCHW, `[1, 3, size, size]`, BGR, mean-subtracted, not scaled to 0..1).
pub struct Letterboxed {
    pub data: Vec<f32>,
    /// Source pixels × `scale_x`/`scale_y` = letterbox pixels. The picture sits at the top-left corner.
    pub scale_x: f32,
    pub scale_y: f32,
}

/// Scales `image` (keeping its aspect ratio) so its longer side is `size`, puts it in the top-left corner of a
/// `size`×`size` canvas and normalises it. The padding is the mean colour, i.e. zero after normalisation, so it
/// looks like nothing to the network.
pub fn letterbox(image: &RgbImage, size: u32) -> Letterboxed {
    let (w, h) = image.dimensions();
    let scale = size as f32 / w.max(h) as f32;
    let new_w = ((w as f32 * scale).round() as u32).clamp(1, size);
    let new_h = ((h as f32 * scale).round() as u32).clamp(1, size);
    // `thumbnail` averages whole source areas (fast and alias-free when shrinking big photos);
    // enlarging small images needs interpolation instead.
    let resized = if new_w == w && new_h == h {
        None
    } else if new_w <= w && new_h <= h {
        Some(imageops::thumbnail(image, new_w, new_h))
    } else {
        Some(enlarge_bilinear(image, new_w, new_h))
    };
    let pixels = resized.as_ref().unwrap_or(image);

    let plane = (size * size) as usize;
    let mut data = vec![0.0f32; plane * 3];
    for (x, y, px) in pixels.enumerate_pixels() {
        let at = (y * size + x) as usize;
        // RGB in, BGR planes out.
        data[at] = px[2] as f32 - MEANS_BGR[0];
        data[plane + at] = px[1] as f32 - MEANS_BGR[1];
        data[2 * plane + at] = px[0] as f32 - MEANS_BGR[2];
    }
    // Rounding makes the two axes' effective scales differ slightly; keep both so boxes map back exactly.
    Letterboxed {
        data,
        scale_x: new_w as f32 / w as f32,
        scale_y: new_h as f32 / h as f32,
    }
}

/// Bilinear enlargement with pixel-centre alignment and clamped edges. (`imageops::resize` with a triangle
/// filter does not reproduce flat colour when blowing up 1-pixel images.)
fn enlarge_bilinear(image: &RgbImage, new_w: u32, new_h: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    let source_coordinate = |dst: u32, src_len: u32, dst_len: u32| -> (u32, u32, f32) {
        let pos = ((dst as f32 + 0.5) * src_len as f32 / dst_len as f32 - 0.5)
            .clamp(0.0, (src_len - 1) as f32);
        let lo = pos.floor() as u32;
        (lo, (lo + 1).min(src_len - 1), pos - lo as f32)
    };
    RgbImage::from_fn(new_w, new_h, |x, y| {
        let (x0, x1, fx) = source_coordinate(x, w, new_w);
        let (y0, y1, fy) = source_coordinate(y, h, new_h);
        let (a, b, c, d) = (
            image.get_pixel(x0, y0),
            image.get_pixel(x1, y0),
            image.get_pixel(x0, y1),
            image.get_pixel(x1, y1),
        );
        image::Rgb(std::array::from_fn(|ch| {
            let top = a[ch] as f32 * (1.0 - fx) + b[ch] as f32 * fx;
            let bottom = c[ch] as f32 * (1.0 - fx) + d[ch] as f32 * fx;
            (top * (1.0 - fy) + bottom * fy).round() as u8
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn channels_are_bgr_minus_means_without_rescaling() {
        let img = RgbImage::from_pixel(4, 4, Rgb([200, 100, 50]));
        let lb = letterbox(&img, 4);
        let plane = 16;
        assert_eq!((lb.scale_x, lb.scale_y), (1.0, 1.0));
        assert_eq!(lb.data[0], 50.0 - 104.0);
        assert_eq!(lb.data[plane], 100.0 - 117.0);
        assert_eq!(lb.data[2 * plane], 200.0 - 123.0);
    }

    #[test]
    fn wide_image_is_scaled_to_fit_and_padded_below_with_zeros() {
        let img = RgbImage::from_pixel(200, 100, Rgb([255, 255, 255]));
        let lb = letterbox(&img, 64);
        assert_eq!((lb.scale_x, lb.scale_y), (64.0 / 200.0, 32.0 / 100.0));
        // Row 31 is picture (100 * 0.32 = 32 rows), row 32 is padding.
        assert_eq!(lb.data[31 * 64], 255.0 - 104.0);
        assert_eq!(lb.data[32 * 64], 0.0);
        assert_eq!(lb.data.len(), 3 * 64 * 64);
    }

    #[test]
    fn tiny_image_is_enlarged() {
        let img = RgbImage::from_pixel(
            1,
            1,
            Rgb([123, 117, 104]), /* the means, in RGB order */
        );
        let lb = letterbox(&img, 32);
        assert_eq!((lb.scale_x, lb.scale_y), (32.0, 32.0));
        assert!(lb.data.iter().all(|v| *v == 0.0));
    }

    #[test]
    fn enlargement_interpolates_between_pixels() {
        let img = RgbImage::from_fn(2, 1, |x, _| Rgb([if x == 0 { 0 } else { 200 }; 3]));
        let big = enlarge_bilinear(&img, 4, 2);
        let row: Vec<u8> = (0..4).map(|x| big.get_pixel(x, 1)[0]).collect();
        assert_eq!(row, vec![0, 50, 150, 200]);
    }
}
