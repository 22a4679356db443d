//! Per-stage codec timings behind the choices in docs/images.md ("Codecs and speed"): JPEG decoders at
//! full size and with DCT scaling (libjpeg-turbo, which the pipeline uses, against jpeg-decoder and
//! zune-jpeg), the resizer, and the encoders, on one input. Medians of N runs, one core.
//!
//! Usage: bench_codecs <input.jpg> [runs, default 5]

use std::time::Instant;

use fast_image_resize as fr;
use image::ImageEncoder;

fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    times[times.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: bench_codecs <input.jpg> [runs]");
        std::process::exit(2);
    };
    let runs: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(5);
    let data = std::fs::read(path).expect("read input");
    let row = |name: &str, ms: f64| println!("{name:<44} {ms:>8.1} ms");

    row(
        "decode full: zune-jpeg (image's decoder)",
        median_ms(runs, || {
            zune_jpeg::JpegDecoder::new(std::io::Cursor::new(&data[..]))
                .decode()
                .expect("zune");
        }),
    );
    row(
        "decode full: jpeg-decoder",
        median_ms(runs, || {
            jpeg_decoder::Decoder::new(&data[..])
                .decode()
                .expect("jpeg-decoder");
        }),
    );
    let (width, height) = {
        let d = mozjpeg::Decompress::new_mem(&data).expect("header");
        (d.width() as u32, d.height() as u32)
    };
    let mut small = (Vec::new(), 0u32, 0u32);
    for (label, divisor) in [("1/1", 1u16), ("1/2", 2), ("1/4", 4), ("1/8", 8)] {
        row(
            &format!("decode DCT-scaled {label}: libjpeg-turbo (used)"),
            median_ms(runs, || {
                let n = (8 / divisor) as u8;
                let rgb = images::transform::jpeg::decode_rgb(&data, width, height, n)
                    .expect("libjpeg-turbo");
                if divisor == 4 {
                    small = (rgb.pixels, rgb.width, rgb.height);
                }
            }),
        );
        if divisor == 1 {
            continue;
        }
        row(
            &format!("decode DCT-scaled {label}: jpeg-decoder"),
            median_ms(runs, || {
                let mut d = jpeg_decoder::Decoder::new(&data[..]);
                d.read_info().expect("header");
                let info = d.info().expect("info");
                d.scale(info.width / divisor, info.height / divisor)
                    .expect("scale");
                d.decode().expect("decode");
            }),
        );
    }

    let (pixels, w, h) = small;
    let (tw, th) = (800u32, (800 * h as u64 / w as u64) as u32);
    let src = fr::images::Image::from_vec_u8(w, h, pixels, fr::PixelType::U8x3).expect("image");
    let mut dst = fr::images::Image::new(tw, th, fr::PixelType::U8x3);
    let mut resizer = fr::Resizer::new();
    let lanczos =
        fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Lanczos3));
    row(
        &format!("resize {w}x{h} -> {tw}x{th}: fast_image_resize L3"),
        median_ms(runs, || {
            resizer.resize(&src, &mut dst, &lanczos).expect("resize");
        }),
    );
    let out = dst.into_vec();

    for (label, progressive) in [("progressive", true), ("baseline", false)] {
        let mut size = 0;
        let ms = median_ms(runs, || {
            let mut bytes = Vec::new();
            let mut e = jpeg_encoder::Encoder::new(&mut bytes, 85);
            e.set_progressive(progressive);
            e.encode(&out, tw as u16, th as u16, jpeg_encoder::ColorType::Rgb)
                .expect("encode");
            size = bytes.len();
        });
        row(
            &format!("encode jpeg-encoder {label} q85 ({} KB)", size / 1000),
            ms,
        );
    }
    let mut size = 0;
    let ms = median_ms(runs, || {
        let mut c = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
        c.set_fastest_defaults();
        c.set_size(tw as usize, th as usize);
        c.set_quality(85.0);
        let mut c = c.start_compress(Vec::new()).expect("start");
        c.write_scanlines(&out).expect("write");
        size = c.finish().expect("finish").len();
    });
    row(
        &format!(
            "encode libjpeg-turbo fastest baseline q85 ({} KB)",
            size / 1000
        ),
        ms,
    );
    let ms = median_ms(runs, || {
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 85)
            .write_image(&out, tw, th, image::ExtendedColorType::Rgb8)
            .expect("encode");
        size = bytes.len();
    });
    row(
        &format!("encode image JpegEncoder baseline q85 ({} KB)", size / 1000),
        ms,
    );
    let ms = median_ms(runs, || {
        size = webp::Encoder::new(&out, webp::PixelLayout::Rgb, tw, th)
            .encode_simple(false, 85.0)
            .expect("webp")
            .len();
    });
    row(
        &format!("encode libwebp lossy q85 ({} KB)", size / 1000),
        ms,
    );
    let ms = median_ms(runs, || {
        let mut bytes = Vec::new();
        image::codecs::webp::WebPEncoder::new_lossless(&mut bytes)
            .write_image(&out, tw, th, image::ExtendedColorType::Rgb8)
            .expect("webp");
        size = bytes.len();
    });
    row(
        &format!("encode image-webp lossless ({} KB)", size / 1000),
        ms,
    );
    let rgb: Vec<ravif::RGB8> = out
        .chunks_exact(3)
        .map(|p| ravif::RGB8::new(p[0], p[1], p[2]))
        .collect();
    for speed in [6u8, 8, 10] {
        let ms = median_ms(runs.min(3), || {
            size = ravif::Encoder::new()
                .with_quality(85.0)
                .with_speed(speed)
                .encode_rgb(ravif::Img::new(&rgb[..], tw as usize, th as usize))
                .expect("avif")
                .avif_file
                .len();
        });
        row(
            &format!("encode ravif speed {speed} q85 ({} KB)", size / 1000),
            ms,
        );
    }
}
