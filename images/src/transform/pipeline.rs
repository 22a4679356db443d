//! The transform itself: bytes + options in, encoded bytes out. Synchronous and CPU-bound; the
//! service runs it on its bounded blocking pool.
//!
//! Steps: plan on header dimensions → decode (JPEG shrink-on-load via DCT scaling, picking the
//! smallest 1/8..1 factor that still leaves at least the planned output size) → EXIF orientation →
//! trim → rotate → flip → crop + resize in one pass (fast_image_resize, Lanczos3, SIMD) → pad →
//! colour adjustments → blur → sharpen → flatten onto `background` for opaque formats → encode.

use std::io::Cursor;

use fast_image_resize as fr;
use image::{codecs, DynamicImage, ImageDecoder, ImageEncoder, RgbaImage};

use super::{
    exif,
    focus::{self, FaceInfo, Frame},
    geometry::{self, Plan},
    jpeg,
    options::{Fit, FormatChoice, Gravity, MetadataMode, TransformOptions},
    probe::{self, Probe, SourceFormat},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Jpeg { progressive: bool },
    Png,
    Webp,
    Avif,
    Gif,
    Json,
}

impl OutputFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Jpeg { .. } => "image/jpeg",
            OutputFormat::Png => "image/png",
            OutputFormat::Webp => "image/webp",
            OutputFormat::Avif => "image/avif",
            OutputFormat::Gif => "image/gif",
            OutputFormat::Json => "application/json",
        }
    }
    /// Short name used in cache keys.
    pub fn key(self) -> &'static str {
        match self {
            OutputFormat::Jpeg { progressive: true } => "jpeg",
            OutputFormat::Jpeg { progressive: false } => "bjpeg",
            OutputFormat::Png => "png",
            OutputFormat::Webp => "webp",
            OutputFormat::Avif => "avif",
            OutputFormat::Gif => "gif",
            OutputFormat::Json => "json",
        }
    }
    fn is_opaque(self) -> bool {
        matches!(self, OutputFormat::Jpeg { .. })
    }
}

/// rav1e speed (1 slowest/smallest … 10 fastest). 10: without rav1e's assembly an 800×600 encode
/// still takes ~1.7 s at speed 10 and 6–7 s at 6–8 on the build machine (examples/bench_codecs.rs), for
/// files only ~7 % smaller; the result is cached like every derivative.
const AVIF_SPEED: u8 = 10;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    #[error("{0}")]
    NotSupported(String),
    #[error("the source image could not be decoded: {0}")]
    Decode(String),
    #[error("encoding failed: {0}")]
    Encode(String),
}

/// Picks the output format. `Accept` decides `format=auto`: AVIF if accepted, else WebP if
/// accepted, else the source's format (animations always stay in their own format).
pub fn choose_output(
    choice: FormatChoice,
    source: SourceFormat,
    animated_out: bool,
    accept: &str,
) -> Result<OutputFormat, TransformError> {
    let original = || match source {
        SourceFormat::Jpeg => OutputFormat::Jpeg { progressive: true },
        SourceFormat::Png => OutputFormat::Png,
        SourceFormat::Gif if animated_out => OutputFormat::Gif,
        SourceFormat::Gif => OutputFormat::Png,
        SourceFormat::Webp => OutputFormat::Webp,
    };
    Ok(match choice {
        FormatChoice::Original => original(),
        // Animations stay in their own format: our WebP and AVIF encoders write still images only.
        FormatChoice::Auto if animated_out => original(),
        FormatChoice::Auto if accept_allows(accept, "image/avif") => OutputFormat::Avif,
        FormatChoice::Auto if accept_allows(accept, "image/webp") => OutputFormat::Webp,
        FormatChoice::Auto => original(),
        FormatChoice::Avif => OutputFormat::Avif,
        FormatChoice::Webp => OutputFormat::Webp,
        FormatChoice::Jpeg => OutputFormat::Jpeg { progressive: true },
        FormatChoice::BaselineJpeg => OutputFormat::Jpeg { progressive: false },
        FormatChoice::Png => OutputFormat::Png,
        FormatChoice::Json => OutputFormat::Json,
    })
}

fn accept_allows(accept: &str, mime: &str) -> bool {
    accept.split(',').any(|part| {
        let mut fields = part.split(';');
        let name = fields.next().unwrap_or("").trim();
        let refused = fields.any(|f| matches!(f.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
        name.eq_ignore_ascii_case(mime) && !refused
    })
}

#[derive(Debug, Clone)]
pub struct Output {
    pub bytes: Vec<u8>,
    pub format: OutputFormat,
    pub width: u32,
    pub height: u32,
}

/// Dimensions after orientation, trim and rotation, in source pixels, and the trim rectangle.
struct Prepared {
    orientation: u8,
    trim: (f64, f64, f64, f64),
    width: f64,
    height: f64,
}

fn prepare(opts: &TransformOptions, raw_w: u32, raw_h: u32, orientation: u8) -> Prepared {
    let (mut w, mut h) = (raw_w as f64, raw_h as f64);
    if orientation >= 5 {
        std::mem::swap(&mut w, &mut h);
    }
    let t = opts.trim;
    let left = (t.left as f64).min(w - 1.0);
    let top = (t.top as f64).min(h - 1.0);
    let mut tw = (w - left - t.right as f64).max(1.0);
    let mut th = (h - top - t.bottom as f64).max(1.0);
    if let Some(width) = t.width {
        tw = (width as f64).min(w - left);
    }
    if let Some(height) = t.height {
        th = (height as f64).min(h - top);
    }
    let (tw, th) = (tw.floor().max(1.0), th.floor().max(1.0));
    let (pw, ph) = if opts.rotate == 90 || opts.rotate == 270 {
        (th, tw)
    } else {
        (tw, th)
    };
    Prepared {
        orientation,
        trim: (left.floor(), top.floor(), tw, th),
        width: pw,
        height: ph,
    }
}

fn plan_for(opts: &TransformOptions, prepared: &Prepared, width_hint: Option<u32>) -> Plan {
    let (tw, th) = opts.target(width_hint);
    let focus = opts.gravity.fixed_point().unwrap_or((0.5, 0.5));
    geometry::plan(
        prepared.width as u32,
        prepared.height as u32,
        tw,
        th,
        opts.fit,
        focus,
    )
}

/// Transforms `data` (already validated by [`probe::probe`]). `faces` are the source's detected faces
/// (see `crate::faces`); they are required for `gravity=face|auto` and listed in `format=json`.
pub fn transform(
    data: &[u8],
    source: &Probe,
    opts: &TransformOptions,
    out: OutputFormat,
    width_hint: Option<u32>,
    faces: Option<&FaceInfo>,
) -> Result<Output, TransformError> {
    let exif_block = match source.format {
        SourceFormat::Jpeg => exif::jpeg_exif(data).map(<[u8]>::to_vec),
        _ => None,
    };
    let orientation = source_orientation(data, source.format);
    let prepared = prepare(opts, source.width, source.height, orientation);
    let mut plan = plan_for(opts, &prepared, width_hint);
    let target = opts.target(width_hint);
    let content_focus = matches!(opts.gravity, Gravity::Face | Gravity::Auto);
    let crops = content_focus && focus::crops(opts, target);
    let frame_faces = match (content_focus, faces) {
        (false, _) => Vec::new(),
        (true, Some(info)) => focus::faces_in_frame(info, &frame(opts, source, &prepared)),
        (true, None) => {
            return Err(TransformError::NotSupported(
                "gravity=face|auto need the source's detected faces".into(),
            ))
        }
    };
    let frame_size = (prepared.width as u32, prepared.height as u32);
    // Face crops are known before decoding (and may be smaller, so they decide the shrink-on-load factor);
    // auto crops keep the largest size and only move once the pixels are known.
    if crops {
        focus::refine(&mut plan, opts, frame_size, &frame_faces, (0.5, 0.5));
    }
    // gravity=auto: the saliency focus needs the pixels (the crop size stays, so does the shrink factor).
    // Animations use the centre blended with faces.
    let mut decoded = None;
    if crops && opts.gravity == Gravity::Auto && out != OutputFormat::Gif {
        let (image, k) = decode(data, source, plan.scale())?;
        let image = orient_trim_rotate_flip(image, opts, &prepared, k);
        let salient = images_faces::saliency_focus(&image.to_rgb8());
        focus::refine(&mut plan, opts, frame_size, &frame_faces, salient);
        decoded = Some((image, k));
    }

    if out == OutputFormat::Json {
        let (w, h) = plan.output();
        let mut body = serde_json::json!({
            "width": w,
            "height": h,
            "original": { "file_size": data.len(), "width": source.width, "height": source.height, "format": source.format.mime() },
        });
        // The region used, in pixels of the source after orientation, trim and rotation.
        let c = plan.crop;
        body["crop"] = serde_json::json!({
            "x": c.x.round(), "y": c.y.round(), "width": c.width.round(), "height": c.height.round(),
        });
        if let Some(info) = faces {
            // Boxes in pixels of the original after EXIF orientation.
            body["faces"] = serde_json::json!(info.faces);
        }
        return Ok(Output {
            bytes: body.to_string().into_bytes(),
            format: out,
            width: w,
            height: h,
        });
    }
    if out == OutputFormat::Gif {
        return animated_gif(data, source, opts, &prepared, &plan);
    }

    // Shrink-on-load: the decoder may return fewer pixels than the source when the plan shrinks.
    let (image, k) = match decoded {
        Some(done) => done,
        None => {
            let (image, k) = decode(data, source, plan.scale())?;
            (orient_trim_rotate_flip(image, opts, &prepared, k), k)
        }
    };
    let image = resize(image, &plan, k, opts)?;
    let image = finish(image, &plan, opts, out);
    let metadata = match (opts.metadata, &exif_block) {
        (MetadataMode::None, _) | (_, None) => None,
        (MetadataMode::Keep, Some(block)) => Some(exif::with_orientation_reset(block)),
        (MetadataMode::Copyright, Some(block)) => {
            exif::copyright(block).map(|c| exif::copyright_only(&c))
        }
    };
    let (width, height) = (image.width(), image.height());
    let bytes = encode(&image, out, opts, metadata.as_deref())?;
    Ok(Output {
        bytes,
        format: out,
        width,
        height,
    })
}

/// The oriented source and the trim, rotation and flips that lead to the frame the plan works in.
fn frame(opts: &TransformOptions, source: &Probe, prepared: &Prepared) -> Frame {
    let oriented = if prepared.orientation >= 5 {
        (source.height, source.width)
    } else {
        (source.width, source.height)
    };
    Frame {
        oriented,
        trim: prepared.trim,
        rotate: opts.rotate,
        flip_h: opts.flip_h,
        flip_v: opts.flip_v,
    }
}

/// EXIF orientation (1–8) of the source; 1 when it has none.
fn source_orientation(data: &[u8], format: SourceFormat) -> u8 {
    match format {
        SourceFormat::Jpeg => exif::jpeg_exif(data).map(exif::orientation).unwrap_or(1),
        format => other_orientation(data, format),
    }
}

/// A source decoded for analysis (face detection): oriented, at most `max_side` pixels on its longer side.
pub struct Preview {
    pub image: image::RgbImage,
    /// The oriented source's full size, which `image` is a scaled copy of.
    pub full_width: u32,
    pub full_height: u32,
}

/// Decodes `data` for analysis, shrinking on load (JPEG) and resizing down to `max_side`.
pub fn oriented_preview(
    data: &[u8],
    source: &Probe,
    max_side: u32,
) -> Result<Preview, TransformError> {
    let opts = TransformOptions::default();
    let prepared = prepare(
        &opts,
        source.width,
        source.height,
        source_orientation(data, source.format),
    );
    let (fw, fh) = (prepared.width as u32, prepared.height as u32);
    let max_side = max_side.max(1);
    let target = if fw.max(fh) <= max_side {
        (None, None)
    } else if fw >= fh {
        (Some(max_side), None)
    } else {
        (None, Some(max_side))
    };
    let plan = geometry::plan(fw, fh, target.0, target.1, Fit::ScaleDown, (0.5, 0.5));
    let (image, k) = decode(data, source, plan.scale())?;
    let image = orient_trim_rotate_flip(image, &opts, &prepared, k);
    let image = resize(image, &plan, k, &opts)?;
    Ok(Preview {
        image: image.to_rgb8(),
        full_width: fw,
        full_height: fh,
    })
}

fn other_orientation(data: &[u8], format: SourceFormat) -> u8 {
    let reader = image::ImageReader::with_format(Cursor::new(data), format.image_format());
    reader
        .into_decoder()
        .ok()
        .and_then(|mut d| d.orientation().ok())
        .map(orientation_number)
        .unwrap_or(1)
}

fn orientation_number(o: image::metadata::Orientation) -> u8 {
    use image::metadata::Orientation as O;
    match o {
        O::NoTransforms => 1,
        O::FlipHorizontal => 2,
        O::Rotate180 => 3,
        O::FlipVertical => 4,
        O::Rotate90FlipH => 5,
        O::Rotate90 => 6,
        O::Rotate270FlipH => 7,
        O::Rotate270 => 8,
    }
}

/// Decodes, shrinking on load when `scale` < 1. Returns the image and the factor k
/// (decoded pixels per source pixel).
fn decode(data: &[u8], source: &Probe, scale: f64) -> Result<(DynamicImage, f64), TransformError> {
    if source.format == SourceFormat::Jpeg {
        // Request at least the planned size, so Lanczos has real pixels to work with.
        let want = |v: u32| ((v as f64 * scale).ceil() as u32).max(1);
        let n = jpeg::scale_for(
            source.width,
            source.height,
            want(source.width),
            want(source.height),
        );
        match jpeg::decode_rgb(data, source.width, source.height, n) {
            Ok(rgb) => {
                let k = rgb.width as f64 / source.width as f64;
                return image::RgbImage::from_raw(rgb.width, rgb.height, rgb.pixels)
                    .map(|image| (DynamicImage::ImageRgb8(image), k))
                    .ok_or_else(|| TransformError::Decode("short pixel buffer".into()));
            }
            // CMYK/YCCK JPEGs are rare: the general decoder below converts their colours (at full size).
            Err(jpeg::JpegError::ColourSpace(_)) => {}
            Err(e) => return Err(TransformError::Decode(e.to_string())),
        }
    }
    let mut reader =
        image::ImageReader::with_format(Cursor::new(data), source.format.image_format());
    reader.limits(probe::decode_limits(source.width, source.height));
    let image = reader
        .decode()
        .map_err(|e| TransformError::Decode(e.to_string()))?;
    let image = if image.color().has_alpha() {
        DynamicImage::ImageRgba8(image.to_rgba8())
    } else {
        DynamicImage::ImageRgb8(image.to_rgb8())
    };
    Ok((image, 1.0))
}

fn orient_trim_rotate_flip(
    mut image: DynamicImage,
    opts: &TransformOptions,
    prepared: &Prepared,
    k: f64,
) -> DynamicImage {
    use image::metadata::Orientation as O;
    let orientation = match prepared.orientation {
        2 => O::FlipHorizontal,
        3 => O::Rotate180,
        4 => O::FlipVertical,
        5 => O::Rotate90FlipH,
        6 => O::Rotate90,
        7 => O::Rotate270FlipH,
        8 => O::Rotate270,
        _ => O::NoTransforms,
    };
    image.apply_orientation(orientation);
    let (left, top, tw, th) = prepared.trim;
    let scaled = |v: f64| (v * k).round() as u32;
    let (x, y) = (
        scaled(left).min(image.width() - 1),
        scaled(top).min(image.height() - 1),
    );
    let (w, h) = (
        scaled(tw).clamp(1, image.width() - x),
        scaled(th).clamp(1, image.height() - y),
    );
    if (x, y, w, h) != (0, 0, image.width(), image.height()) {
        image = image.crop_imm(x, y, w, h);
    }
    image = match opts.rotate {
        90 => image.rotate90(),
        180 => image.rotate180(),
        270 => image.rotate270(),
        _ => image,
    };
    if opts.flip_h {
        image = image.fliph();
    }
    if opts.flip_v {
        image = image.flipv();
    }
    image
}

/// Crops the plan's region and resizes it to the plan's size in one SIMD pass.
fn resize(
    image: DynamicImage,
    plan: &Plan,
    k: f64,
    opts: &TransformOptions,
) -> Result<DynamicImage, TransformError> {
    let (iw, ih) = (image.width(), image.height());
    let crop = plan.crop;
    let (cx, cy) = (
        (crop.x * k).min(iw as f64 - 1.0),
        (crop.y * k).min(ih as f64 - 1.0),
    );
    let (cw, ch) = (
        (crop.width * k).min(iw as f64 - cx).max(1.0),
        (crop.height * k).min(ih as f64 - cy).max(1.0),
    );
    let (rw, rh) = plan.resize;
    if rw == iw && rh == ih && cx == 0.0 && cy == 0.0 && cw as u32 == iw && ch as u32 == ih {
        return Ok(image);
    }
    let alg = if opts.compression_fast {
        fr::ResizeAlg::Convolution(fr::FilterType::Bilinear)
    } else {
        fr::ResizeAlg::Convolution(fr::FilterType::Lanczos3)
    };
    let options = fr::ResizeOptions::new()
        .resize_alg(alg)
        .crop(cx, cy, cw, ch);
    let err = |e: &dyn std::fmt::Display| TransformError::Decode(format!("resize: {e}"));
    let mut resizer = fr::Resizer::new();
    Ok(match image {
        DynamicImage::ImageRgba8(src) => {
            let src = fr::images::Image::from_vec_u8(iw, ih, src.into_raw(), fr::PixelType::U8x4)
                .map_err(|e| err(&e))?;
            let mut dst = fr::images::Image::new(rw, rh, fr::PixelType::U8x4);
            resizer
                .resize(&src, &mut dst, &options)
                .map_err(|e| err(&e))?;
            DynamicImage::ImageRgba8(
                RgbaImage::from_raw(rw, rh, dst.into_vec()).ok_or_else(|| err(&"buffer"))?,
            )
        }
        other => {
            let src = fr::images::Image::from_vec_u8(
                iw,
                ih,
                other.into_rgb8().into_raw(),
                fr::PixelType::U8x3,
            )
            .map_err(|e| err(&e))?;
            let mut dst = fr::images::Image::new(rw, rh, fr::PixelType::U8x3);
            resizer
                .resize(&src, &mut dst, &options)
                .map_err(|e| err(&e))?;
            DynamicImage::ImageRgb8(
                image::RgbImage::from_raw(rw, rh, dst.into_vec()).ok_or_else(|| err(&"buffer"))?,
            )
        }
    })
}

/// Pad, colour adjustments, blur, sharpen, and flattening for opaque outputs.
fn finish(
    mut image: DynamicImage,
    plan: &Plan,
    opts: &TransformOptions,
    out: OutputFormat,
) -> DynamicImage {
    if let Some(canvas) = plan.canvas {
        let mut base =
            RgbaImage::from_pixel(canvas.width, canvas.height, image::Rgba(opts.background));
        image::imageops::overlay(
            &mut base,
            &image.to_rgba8(),
            canvas.x as i64,
            canvas.y as i64,
        );
        image = DynamicImage::ImageRgba8(base);
    }
    adjust_colours(&mut image, opts);
    if opts.blur > 0.0 {
        image = image.fast_blur(opts.blur / 2.0);
    }
    if opts.sharpen > 0.0 {
        image = sharpen(image, opts.sharpen);
    }
    if out.is_opaque() && image.color().has_alpha() {
        image = DynamicImage::ImageRgb8(flatten(&image.to_rgba8(), opts.background));
    } else if image.color().has_alpha() && is_fully_opaque(&image) {
        image = DynamicImage::ImageRgb8(image.to_rgb8());
    }
    image
}

fn is_fully_opaque(image: &DynamicImage) -> bool {
    image
        .as_rgba8()
        .is_some_and(|img| img.pixels().all(|p| p.0[3] == 255))
}

fn flatten(image: &RgbaImage, background: [u8; 4]) -> image::RgbImage {
    let mut out = image::RgbImage::new(image.width(), image.height());
    for (dst, src) in out.pixels_mut().zip(image.pixels()) {
        let a = src.0[3] as u32;
        for ((d, s), b) in dst.0.iter_mut().zip(&src.0[..3]).zip(&background[..3]) {
            *d = ((*s as u32 * a + *b as u32 * (255 - a) + 127) / 255) as u8;
        }
    }
    out
}

/// brightness, contrast and gamma through one lookup table; saturation per pixel.
fn adjust_colours(image: &mut DynamicImage, opts: &TransformOptions) {
    let lut_needed = opts.brightness != 1.0 || opts.contrast != 1.0 || opts.gamma != 1.0;
    if !lut_needed && opts.saturation == 1.0 {
        return;
    }
    let mut lut = [0u8; 256];
    for (i, slot) in lut.iter_mut().enumerate() {
        let mut v = i as f32 / 255.0;
        v *= opts.brightness;
        v = (v - 0.5) * opts.contrast + 0.5;
        v = v.clamp(0.0, 1.0).powf(1.0 / opts.gamma);
        *slot = (v * 255.0).round().clamp(0.0, 255.0) as u8;
    }
    let saturation = opts.saturation;
    let apply = |px: &mut [u8]| {
        if lut_needed {
            for c in px.iter_mut().take(3) {
                *c = lut[*c as usize];
            }
        }
        if saturation != 1.0 {
            let luma = 0.299 * px[0] as f32 + 0.587 * px[1] as f32 + 0.114 * px[2] as f32;
            for c in px.iter_mut().take(3) {
                *c = (luma + (*c as f32 - luma) * saturation)
                    .round()
                    .clamp(0.0, 255.0) as u8;
            }
        }
    };
    match image {
        DynamicImage::ImageRgb8(img) => img.chunks_exact_mut(3).for_each(apply),
        DynamicImage::ImageRgba8(img) => img.chunks_exact_mut(4).for_each(apply),
        other => {
            let mut rgba = other.to_rgba8();
            rgba.chunks_exact_mut(4).for_each(apply);
            *other = DynamicImage::ImageRgba8(rgba);
        }
    }
}

/// Unsharp mask: original + amount × (original − blurred).
fn sharpen(image: DynamicImage, amount: f32) -> DynamicImage {
    let blurred = image.fast_blur(1.0);
    let amount = amount / 2.0;
    let mix = |orig: &mut [u8], soft: &[u8]| {
        for (o, s) in orig.iter_mut().zip(soft) {
            let v = *o as f32 + amount * (*o as f32 - *s as f32);
            *o = v.round().clamp(0.0, 255.0) as u8;
        }
    };
    match (image, blurred) {
        (DynamicImage::ImageRgb8(mut img), DynamicImage::ImageRgb8(soft)) => {
            mix(&mut img, &soft);
            DynamicImage::ImageRgb8(img)
        }
        (img, soft) => {
            let mut img = img.to_rgba8();
            let soft = soft.to_rgba8();
            for (o, s) in img.chunks_exact_mut(4).zip(soft.chunks_exact(4)) {
                mix(&mut o[..3], &s[..3]);
            }
            DynamicImage::ImageRgba8(img)
        }
    }
}

fn encode(
    image: &DynamicImage,
    out: OutputFormat,
    opts: &TransformOptions,
    exif: Option<&[u8]>,
) -> Result<Vec<u8>, TransformError> {
    let err = |e: &dyn std::fmt::Display| TransformError::Encode(e.to_string());
    let mut bytes = Vec::new();
    match out {
        OutputFormat::Jpeg { progressive } => {
            let rgb = image.to_rgb8();
            let mut encoder = jpeg_encoder::Encoder::new(&mut bytes, opts.quality);
            encoder.set_progressive(progressive);
            if let Some(block) = exif {
                let mut segment = b"Exif\0\0".to_vec();
                segment.extend_from_slice(block);
                // A too-large EXIF block is dropped rather than failing the request.
                let _ = encoder.add_app_segment(1, segment);
            }
            let (w, h) = (rgb.width() as u16, rgb.height() as u16);
            encoder
                .encode(rgb.as_raw(), w, h, jpeg_encoder::ColorType::Rgb)
                .map_err(|e| err(&e))?;
        }
        OutputFormat::Png => {
            let compression = if opts.compression_fast {
                codecs::png::CompressionType::Fast
            } else {
                codecs::png::CompressionType::Default
            };
            let encoder = codecs::png::PngEncoder::new_with_quality(
                &mut bytes,
                compression,
                codecs::png::FilterType::Adaptive,
            );
            encoder
                .write_image(
                    image.as_bytes(),
                    image.width(),
                    image.height(),
                    image.color().into(),
                )
                .map_err(|e| err(&e))?;
        }
        OutputFormat::Webp => {
            // Lossy (libwebp) at `quality`, with alpha when the image has it.
            let rgb;
            let (layout, pixels): (webp::PixelLayout, &[u8]) = match image {
                DynamicImage::ImageRgba8(img) => (webp::PixelLayout::Rgba, img.as_raw()),
                DynamicImage::ImageRgb8(img) => (webp::PixelLayout::Rgb, img.as_raw()),
                other => {
                    rgb = other.to_rgb8();
                    (webp::PixelLayout::Rgb, rgb.as_raw())
                }
            };
            let (w, h) = (image.width(), image.height());
            let encoded = webp::Encoder::new(pixels, layout, w, h)
                .encode_simple(false, opts.quality as f32)
                .map_err(|e| err(&format!("{e:?}")))?;
            bytes.extend_from_slice(&encoded);
        }
        OutputFormat::Avif => {
            // rav1e through ravif at its fastest speed (see AVIF_SPEED and docs/images.md).
            let encoder = ravif::Encoder::new()
                .with_quality(opts.quality as f32)
                .with_alpha_quality(opts.quality as f32)
                .with_speed(AVIF_SPEED);
            let (w, h) = (image.width() as usize, image.height() as usize);
            let encoded = match image {
                DynamicImage::ImageRgba8(img) => {
                    let px: Vec<ravif::RGBA8> = img
                        .as_raw()
                        .chunks_exact(4)
                        .map(|p| ravif::RGBA8::new(p[0], p[1], p[2], p[3]))
                        .collect();
                    encoder.encode_rgba(ravif::Img::new(&px[..], w, h))
                }
                other => {
                    let rgb = other.to_rgb8();
                    let px: Vec<ravif::RGB8> = rgb
                        .as_raw()
                        .chunks_exact(3)
                        .map(|p| ravif::RGB8::new(p[0], p[1], p[2]))
                        .collect();
                    encoder.encode_rgb(ravif::Img::new(&px[..], w, h))
                }
            }
            .map_err(|e| err(&e))?;
            bytes = encoded.avif_file;
        }
        OutputFormat::Gif | OutputFormat::Json => {
            return Err(TransformError::Encode("not a still-image format".into()))
        }
    }
    Ok(bytes)
}

/// Animated GIF → animated GIF: every composited frame goes through the same geometry.
fn animated_gif(
    data: &[u8],
    source: &Probe,
    opts: &TransformOptions,
    prepared: &Prepared,
    plan: &Plan,
) -> Result<Output, TransformError> {
    use image::AnimationDecoder;
    let mut decoder = codecs::gif::GifDecoder::new(Cursor::new(data))
        .map_err(|e| TransformError::Decode(e.to_string()))?;
    decoder
        .set_limits(probe::decode_limits(source.width, source.height))
        .map_err(|e| TransformError::Decode(e.to_string()))?;
    let mut bytes = Vec::new();
    let (mut width, mut height) = plan.output();
    {
        let mut encoder = codecs::gif::GifEncoder::new_with_speed(&mut bytes, 10);
        encoder
            .set_repeat(codecs::gif::Repeat::Infinite)
            .map_err(|e| TransformError::Encode(e.to_string()))?;
        // Bounded: a GIF may not decode to more than 4× the pixel limit's worth of frames.
        let budget = 400_000_000u64;
        let mut used = 0u64;
        for frame in decoder.into_frames() {
            let frame = frame.map_err(|e| TransformError::Decode(e.to_string()))?;
            used += source.width as u64 * source.height as u64;
            if used > budget {
                return Err(TransformError::NotSupported(
                    "the animation has too many frames to transform".into(),
                ));
            }
            let delay = frame.delay();
            let image = DynamicImage::ImageRgba8(frame.into_buffer());
            let image = orient_trim_rotate_flip(image, opts, prepared, 1.0);
            let image = resize(image, plan, 1.0, opts)?;
            let image = finish(image, plan, opts, OutputFormat::Gif).to_rgba8();
            (width, height) = image.dimensions();
            encoder
                .encode_frame(image::Frame::from_parts(image, 0, 0, delay))
                .map_err(|e| TransformError::Encode(e.to_string()))?;
        }
    }
    Ok(Output {
        bytes,
        format: OutputFormat::Gif,
        width,
        height,
    })
}

/// Output dimensions for `opts` without decoding (header dimensions and orientation only).
pub fn planned_output(
    data: &[u8],
    source: &Probe,
    opts: &TransformOptions,
    width_hint: Option<u32>,
) -> (u32, u32) {
    let orientation = source_orientation(data, source.format);
    plan_for(
        opts,
        &prepare(opts, source.width, source.height, orientation),
        width_hint,
    )
    .output()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::probe::{probe, SourceLimits};

    const LIMITS: SourceLimits = SourceLimits {
        max_bytes: 50_000_000,
        max_pixels: 100_000_000,
        max_side: 12_000,
    };

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        });
        let mut out = Vec::new();
        jpeg_encoder::Encoder::new(&mut out, 90)
            .encode(
                img.as_raw(),
                width as u16,
                height as u16,
                jpeg_encoder::ColorType::Rgb,
            )
            .unwrap();
        out
    }

    fn run(data: &[u8], options: &str, out: OutputFormat) -> Output {
        let source = probe(data, &LIMITS).unwrap();
        let opts = TransformOptions::parse(options).unwrap();
        transform(data, &source, &opts, out, None, None).unwrap()
    }

    fn dims_of(bytes: &[u8]) -> (u32, u32) {
        image::load_from_memory(bytes).unwrap().dimensions_tuple()
    }

    trait Dims {
        fn dimensions_tuple(&self) -> (u32, u32);
    }
    impl Dims for DynamicImage {
        fn dimensions_tuple(&self) -> (u32, u32) {
            (self.width(), self.height())
        }
    }

    #[test]
    fn decoded_output_matches_the_plan_for_every_fit() {
        let data = jpeg(1200, 900);
        for (options, expected) in [
            ("width=300", (300, 225)),
            ("width=300,height=300,fit=cover", (300, 300)),
            ("width=300,height=300,fit=contain", (300, 225)),
            ("width=300,height=300,fit=pad", (300, 300)),
            ("width=300,height=100,fit=squeeze", (300, 100)),
            ("width=2000,height=2000,fit=scale-down", (1200, 900)),
            ("width=2000,height=500,fit=crop", (1200, 500)),
            ("width=100,dpr=2", (200, 150)),
            ("width=300,rotate=90", (300, 400)),
            ("trim=100;200;100;200", (800, 700)),
        ] {
            let out = run(&data, options, OutputFormat::Jpeg { progressive: true });
            assert_eq!((out.width, out.height), expected, "{options}");
            assert_eq!(dims_of(&out.bytes), expected, "{options}");
        }
    }

    #[test]
    fn exif_orientation_is_applied() {
        // A 40x20 JPEG tagged "rotate 90": delivered as 20x40.
        let plain = jpeg(40, 20);
        let tiff = exif::tiff_with_orientation(6, true);
        let mut data = plain[..2].to_vec();
        data.extend_from_slice(&[0xFF, 0xE1]);
        data.extend_from_slice(&((tiff.len() + 8) as u16).to_be_bytes());
        data.extend_from_slice(b"Exif\0\0");
        data.extend_from_slice(&tiff);
        data.extend_from_slice(&plain[2..]);
        let out = run(&data, "", OutputFormat::Png);
        assert_eq!(dims_of(&out.bytes), (20, 40));
        let kept = run(
            &data,
            "metadata=keep",
            OutputFormat::Jpeg { progressive: false },
        );
        let block = exif::jpeg_exif(&kept.bytes).expect("exif kept");
        assert_eq!(exif::orientation(block), 1);
        let none = run(
            &data,
            "metadata=none",
            OutputFormat::Jpeg { progressive: false },
        );
        assert!(exif::jpeg_exif(&none.bytes).is_none());
    }

    #[test]
    fn colour_options_change_pixels() {
        let data = jpeg(64, 64);
        let base = image::load_from_memory(&run(&data, "", OutputFormat::Png).bytes)
            .unwrap()
            .to_rgb8();
        let grey = image::load_from_memory(&run(&data, "saturation=0", OutputFormat::Png).bytes)
            .unwrap()
            .to_rgb8();
        let p = grey.get_pixel(10, 40).0;
        assert!(
            p[0].abs_diff(p[1]) <= 1 && p[1].abs_diff(p[2]) <= 1,
            "{p:?}"
        );
        let dark = image::load_from_memory(&run(&data, "brightness=0.5", OutputFormat::Png).bytes)
            .unwrap()
            .to_rgb8();
        assert!(dark.get_pixel(30, 30).0[2] < base.get_pixel(30, 30).0[2]);
        for options in ["blur=10", "sharpen=5", "contrast=2", "gamma=2", "flip=h"] {
            let out = image::load_from_memory(&run(&data, options, OutputFormat::Png).bytes)
                .unwrap()
                .to_rgb8();
            assert_ne!(out, base, "{options}");
        }
    }

    #[test]
    fn pad_fills_with_background() {
        let data = jpeg(200, 100);
        let out = run(
            &data,
            "width=100,height=100,fit=pad,background=red",
            OutputFormat::Png,
        );
        let img = image::load_from_memory(&out.bytes).unwrap().to_rgba8();
        assert_eq!(img.dimensions(), (100, 100));
        assert_eq!(img.get_pixel(50, 2).0, [255, 0, 0, 255]);
    }

    #[test]
    fn json_and_format_choice() {
        let data = jpeg(400, 300);
        let out = run(&data, "width=100", OutputFormat::Json);
        let v: serde_json::Value = serde_json::from_slice(&out.bytes).unwrap();
        assert_eq!(v["width"], 100);
        assert_eq!(v["original"]["width"], 400);
        assert_eq!(
            choose_output(
                FormatChoice::Auto,
                SourceFormat::Jpeg,
                false,
                "image/avif,image/webp,*/*"
            )
            .unwrap(),
            OutputFormat::Avif
        );
        assert_eq!(
            choose_output(
                FormatChoice::Auto,
                SourceFormat::Jpeg,
                false,
                "image/webp,*/*"
            )
            .unwrap(),
            OutputFormat::Webp
        );
        assert_eq!(
            choose_output(FormatChoice::Auto, SourceFormat::Gif, true, "image/avif").unwrap(),
            OutputFormat::Gif
        );
        assert_eq!(
            choose_output(FormatChoice::Auto, SourceFormat::Jpeg, false, "*/*").unwrap(),
            OutputFormat::Jpeg { progressive: true }
        );
        assert_eq!(
            choose_output(
                FormatChoice::Auto,
                SourceFormat::Jpeg,
                false,
                "image/webp;q=0"
            )
            .unwrap(),
            OutputFormat::Jpeg { progressive: true }
        );
        assert_eq!(
            choose_output(FormatChoice::Avif, SourceFormat::Png, false, "").unwrap(),
            OutputFormat::Avif
        );
        let webp = run(&data, "width=50", OutputFormat::Webp);
        assert_eq!(&webp.bytes[12..16], b"VP8 ", "lossy WebP");
        assert_eq!(dims_of(&webp.bytes), (50, 38));
        let avif = run(&data, "width=50", OutputFormat::Avif);
        assert_eq!(&avif.bytes[4..12], b"ftypavif");
    }

    #[test]
    fn grey_cmyk_and_progressive_jpegs_transform_and_broken_ones_are_errors() {
        let encode = |colour: jpeg_encoder::ColorType, channels: usize, progressive: bool| {
            let pixels: Vec<u8> = (0..160 * 120)
                .flat_map(|i| [(i % 160) as u8, 90, (i / 160) as u8, 30][..channels].to_vec())
                .collect();
            let mut out = Vec::new();
            let mut encoder = jpeg_encoder::Encoder::new(&mut out, 90);
            encoder.set_progressive(progressive);
            encoder.encode(&pixels, 160, 120, colour).unwrap();
            out
        };
        for (name, data) in [
            ("grey", encode(jpeg_encoder::ColorType::Luma, 1, false)),
            ("cmyk", encode(jpeg_encoder::ColorType::Cmyk, 4, false)),
            ("ycck", encode(jpeg_encoder::ColorType::Ycck, 4, false)),
            ("progressive", encode(jpeg_encoder::ColorType::Rgb, 3, true)),
        ] {
            let out = run(&data, "width=80", OutputFormat::Png);
            let got = image::load_from_memory(&out.bytes).unwrap().to_rgb8();
            assert_eq!(got.dimensions(), (80, 60), "{name}");
            // Colours as the image crate's own full-size decoder sees them (CMYK/YCCK take that path).
            let reference = image::imageops::thumbnail(
                &image::load_from_memory(&data).unwrap().to_rgb8(),
                80,
                60,
            );
            let (a, b) = (got.get_pixel(40, 30).0, reference.get_pixel(40, 30).0);
            assert!(
                a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 12),
                "{name}: {a:?} vs {b:?}"
            );
        }
        let data = jpeg(300, 200);
        let source = probe(&data, &LIMITS).unwrap();
        let opts = TransformOptions::parse("width=100").unwrap();
        for broken in [&data[..data.len() / 2], &data[..data.len() - 2]] {
            assert!(matches!(
                transform(broken, &source, &opts, OutputFormat::Png, None, None),
                Err(TransformError::Decode(_))
            ));
        }
    }

    #[test]
    fn face_gravity_without_faces_is_refused_not_centred() {
        let data = jpeg(100, 100);
        let source = probe(&data, &LIMITS).unwrap();
        let opts = TransformOptions::parse("width=50,height=50,fit=cover,gravity=face").unwrap();
        assert!(matches!(
            transform(&data, &source, &opts, OutputFormat::Png, None, None),
            Err(TransformError::NotSupported(_))
        ));
    }

    #[test]
    fn animated_gif_stays_animated() {
        use image::codecs::gif::GifEncoder;
        let mut data = Vec::new();
        {
            let mut enc = GifEncoder::new(&mut data);
            for i in 0..3u8 {
                enc.encode_frame(image::Frame::new(RgbaImage::from_pixel(
                    40,
                    20,
                    image::Rgba([i * 80, 0, 0, 255]),
                )))
                .unwrap();
            }
        }
        let source = probe(&data, &LIMITS).unwrap();
        let opts = TransformOptions::parse("width=20").unwrap();
        let out_format =
            choose_output(opts.format, source.format, source.animated && opts.anim, "").unwrap();
        let out = transform(&data, &source, &opts, out_format, None, None).unwrap();
        assert_eq!(out.format, OutputFormat::Gif);
        assert_eq!(probe::gif_frame_count(&out.bytes, 10), 3);
        let still = choose_output(opts.format, source.format, false, "").unwrap();
        assert_eq!(still, OutputFormat::Png);
    }
}
