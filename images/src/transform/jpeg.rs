//! JPEG decoding with libjpeg-turbo's decoder (mozjpeg's fork of it, built statically by `mozjpeg-sys`,
//! with its SIMD code when `nasm` is installed at build time) and DCT-domain shrink-on-load.
//!
//! libjpeg reports a fatal error by calling `error_exit`, which must not return. The error manager below
//! unwinds out of the C code (mozjpeg-sys compiles it with `-fexceptions` for exactly that) and
//! [`decode_rgb`] catches the unwind, so corrupt client bytes become an `Err` and never abort the
//! process. This needs `panic = "unwind"`, the default, which no profile of this workspace changes.
//!
//! libjpeg only *warns* about corrupt entropy data and truncated files (it pads with grey and goes on).
//! Those warnings are fatal here: a truncated or corrupt upload is refused, not stored half grey.

use std::panic::{self, AssertUnwindSafe};

use mozjpeg_sys as ffi;

/// Pixels from [`decode_rgb`]: RGB, `width * height * 3` bytes.
#[derive(Debug)]
pub struct Rgb {
    pub pixels: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JpegError {
    /// CMYK, YCCK or an unknown colour space: libjpeg does not convert those to RGB.
    #[error("JPEG colour space {0} is not decoded to RGB here")]
    ColourSpace(&'static str),
    #[error("{0}")]
    Corrupt(String),
}

/// The DCT scale numerator (over 8) for an output at least `want_w`×`want_h` from a `width`×`height`
/// source. Only 1/8, 1/4, 1/2 and 1/1: those have SIMD inverse DCTs in libjpeg-turbo (3/8, 5/8, … use
/// slower C ones), and a resize follows anyway.
pub fn scale_for(width: u32, height: u32, want_w: u32, want_h: u32) -> u8 {
    let scaled = |v: u32, n: u32| (v as u64 * n as u64).div_ceil(8);
    [1u8, 2, 4]
        .into_iter()
        .find(|&n| {
            scaled(width, n as u32) >= want_w as u64 && scaled(height, n as u32) >= want_h as u64
        })
        .unwrap_or(8)
}

/// Decodes `data` to RGB at `scale_num`/8 (1, 2, 4 or 8). The header must say `width`×`height`, the
/// dimensions the caller has already checked against its pixel limits, so nothing larger is allocated.
/// Greyscale sources come out as RGB too.
pub fn decode_rgb(data: &[u8], width: u32, height: u32, scale_num: u8) -> Result<Rgb, JpegError> {
    let scale_num = scale_num.clamp(1, 8);
    let run = panic::catch_unwind(AssertUnwindSafe(|| {
        decode_inner(data, width, height, scale_num)
    }));
    match run {
        Ok(result) => result,
        Err(payload) => Err(JpegError::Corrupt(match payload.downcast::<String>() {
            Ok(message) => *message,
            Err(payload) => payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .unwrap_or_else(|| "libjpeg failed".into()),
        })),
    }
}

fn decode_inner(data: &[u8], width: u32, height: u32, scale_num: u8) -> Result<Rgb, JpegError> {
    use ffi::J_COLOR_SPACE as Cs;
    let corrupt = |e: std::io::Error| JpegError::Corrupt(e.to_string());
    let mut decoder = mozjpeg::Decompress::builder()
        .with_err(error_manager())
        .from_mem(data)
        .map_err(corrupt)?;
    // The caller's limits were checked on another parser's reading of the header; a file whose frame
    // header says something else is refused before any pixel buffer exists.
    if (decoder.width(), decoder.height()) != (width as usize, height as usize) {
        return Err(JpegError::Corrupt(format!(
            "frame header says {}x{}, expected {width}x{height}",
            decoder.width(),
            decoder.height()
        )));
    }
    match decoder.color_space() {
        Cs::JCS_YCbCr | Cs::JCS_RGB | Cs::JCS_GRAYSCALE => {}
        Cs::JCS_CMYK => return Err(JpegError::ColourSpace("CMYK")),
        Cs::JCS_YCCK => return Err(JpegError::ColourSpace("YCCK")),
        _ => return Err(JpegError::ColourSpace("unknown")),
    }
    decoder.scale(scale_num);
    let mut started = decoder.rgb().map_err(corrupt)?;
    let (w, h) = (started.width(), started.height());
    let pixels: Vec<u8> = started.read_scanlines().map_err(corrupt)?;
    // Reads up to EOI, so a file cut after its last scan line is still noticed.
    started.finish().map_err(corrupt)?;
    if pixels.len() != w * h * 3 {
        return Err(JpegError::Corrupt("short read".into()));
    }
    Ok(Rgb {
        pixels,
        width: w as u32,
        height: h as u32,
    })
}

fn error_manager() -> ffi::jpeg_error_mgr {
    // SAFETY: jpeg_error_mgr is a plain C struct (integers, pointers, optional fn pointers), for which
    // all-zero is a valid value; jpeg_std_error then fills in every field.
    let mut err: ffi::jpeg_error_mgr = unsafe { std::mem::zeroed() };
    unsafe { ffi::jpeg_std_error(&mut err) };
    err.error_exit = Some(unwind_error_exit);
    err.emit_message = Some(emit_message);
    err
}

/// libjpeg's text for the current message (its own `format_message`, into a buffer we own).
fn message(cinfo: &mut ffi::jpeg_common_struct) -> String {
    let mut buffer = [0u8; 80];
    // SAFETY: `cinfo.err` is the error manager installed by `error_manager` (libjpeg keeps it set for the
    // whole life of the decompressor). The binding declares the buffer parameter as `&[u8; 80]`, but
    // format_message writes into it (it is `char *` in C): calling it through the same signature with
    // `&mut` is the same ABI (one pointer) and makes the write legal for Rust.
    unsafe {
        let Some(err) = cinfo.err.as_ref() else {
            return "libjpeg error".into();
        };
        let code = err.msg_code;
        let Some(format) = err.format_message else {
            return format!("libjpeg error {code}");
        };
        let format: unsafe extern "C-unwind" fn(&mut ffi::jpeg_common_struct, &mut [u8; 80]) =
            std::mem::transmute(format);
        format(cinfo, &mut buffer);
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}

extern "C-unwind" fn unwind_error_exit(cinfo: &mut ffi::jpeg_common_struct) {
    let text = message(cinfo);
    // resume_unwind, not panic!: no panic hook output for what is only a bad upload.
    panic::resume_unwind(Box::new(text));
}

extern "C-unwind" fn emit_message(cinfo: &mut ffi::jpeg_common_struct, level: std::os::raw::c_int) {
    // Level -1 is a warning; levels >= 0 are trace messages, ignored.
    if level != -1 {
        return;
    }
    // SAFETY: as in `message`, `cinfo.err` is our error manager.
    let code = unsafe { cinfo.err.as_ref() }.map_or(0, |e| e.msg_code);
    // Harmless: an unknown JFIF version, a strange Adobe transform flag, a broken ICC chunk, stray bytes
    // between markers. Everything else libjpeg warns about means the pixels would be wrong.
    let harmless = [
        ffi::JWRN_JFIF_MAJOR,
        ffi::JWRN_ADOBE_XFORM,
        ffi::JWRN_BOGUS_ICC,
        ffi::JWRN_EXTRANEOUS_DATA,
    ];
    if harmless.contains(&code) {
        return;
    }
    unwind_error_exit(cinfo);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(
        width: u32,
        height: u32,
        colour: jpeg_encoder::ColorType,
        progressive: bool,
    ) -> Vec<u8> {
        let channels = match colour {
            jpeg_encoder::ColorType::Luma => 1,
            jpeg_encoder::ColorType::Cmyk | jpeg_encoder::ColorType::Ycck => 4,
            _ => 3,
        };
        let pixels: Vec<u8> = (0..width * height)
            .flat_map(|i| {
                let (x, y) = (i % width, i / width);
                [
                    (x * 7 % 256) as u8,
                    (y * 5 % 256) as u8,
                    ((x + y) % 256) as u8,
                    40,
                ][..channels]
                    .to_vec()
            })
            .collect();
        let mut out = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut out, 90);
        encoder.set_progressive(progressive);
        encoder
            .encode(&pixels, width as u16, height as u16, colour)
            .unwrap();
        out
    }

    #[test]
    fn scales_by_powers_of_two_only() {
        assert_eq!(scale_for(4000, 3000, 800, 600), 2);
        assert_eq!(scale_for(4000, 3000, 1001, 1), 4);
        assert_eq!(scale_for(4000, 3000, 500, 375), 1);
        assert_eq!(scale_for(4000, 3000, 2001, 1500), 8);
        assert_eq!(scale_for(4000, 3000, 5000, 100), 8);
        // 1/8 of 9 rounds up to 2 pixels.
        assert_eq!(scale_for(9, 9, 2, 2), 1);
    }

    #[test]
    fn decodes_baseline_progressive_and_grey_at_every_scale() {
        for (colour, progressive) in [
            (jpeg_encoder::ColorType::Rgb, false),
            (jpeg_encoder::ColorType::Rgb, true),
            (jpeg_encoder::ColorType::Luma, false),
        ] {
            let data = encode(203, 101, colour, progressive);
            let full = decode_rgb(&data, 203, 101, 8).unwrap();
            assert_eq!((full.width, full.height), (203, 101));
            assert_eq!(full.pixels.len(), 203 * 101 * 3);
            // The same pixels as another decoder gives (within IDCT rounding).
            let reference = image::load_from_memory(&data).unwrap().to_rgb8();
            let worst = full
                .pixels
                .iter()
                .zip(reference.as_raw())
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap();
            assert!(worst <= 8, "{colour:?} progressive={progressive}: {worst}");
            for (n, expected) in [(4u8, (102, 51)), (2, (51, 26)), (1, (26, 13))] {
                let small = decode_rgb(&data, 203, 101, n).unwrap();
                assert_eq!((small.width, small.height), expected, "{n}/8");
                assert_eq!(small.pixels.len(), (expected.0 * expected.1 * 3) as usize);
            }
        }
    }

    #[test]
    fn cmyk_and_ycck_are_left_to_the_caller() {
        for colour in [jpeg_encoder::ColorType::Cmyk, jpeg_encoder::ColorType::Ycck] {
            let data = encode(32, 32, colour, false);
            assert!(
                matches!(decode_rgb(&data, 32, 32, 8), Err(JpegError::ColourSpace(_))),
                "{colour:?}"
            );
        }
    }

    #[test]
    fn corrupt_input_is_an_error_not_a_crash() {
        let data = encode(256, 256, jpeg_encoder::ColorType::Rgb, false);
        // Cut in the middle of the entropy-coded scan, and cut just before EOI.
        for cut in [data.len() / 2, data.len() - 2] {
            let result = decode_rgb(&data[..cut], 256, 256, 8);
            assert!(
                matches!(result, Err(JpegError::Corrupt(_))),
                "cut at {cut}: {result:?}"
            );
        }
        let progressive = encode(256, 256, jpeg_encoder::ColorType::Rgb, true);
        let result = decode_rgb(&progressive[..progressive.len() / 2], 256, 256, 2);
        assert!(matches!(result, Err(JpegError::Corrupt(_))), "{result:?}");
        // Garbage after a valid SOI/header start, and no JPEG at all.
        let mut garbage = data[..200].to_vec();
        garbage.extend((0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        assert!(matches!(
            decode_rgb(&garbage, 256, 256, 8),
            Err(JpegError::Corrupt(_))
        ));
        let result = decode_rgb(b"\xFF\xD8\xFF\xE0 hello, not a jpeg", 1, 1, 8);
        assert!(
            matches!(result, Err(JpegError::Corrupt(ref m)) if !m.is_empty()),
            "{result:?}"
        );
        assert!(matches!(
            decode_rgb(&[], 1, 1, 8),
            Err(JpegError::Corrupt(_))
        ));
        // A header that disagrees with the dimensions the limits were checked on.
        assert!(matches!(
            decode_rgb(&data, 255, 256, 8),
            Err(JpegError::Corrupt(_))
        ));
        // The decoder still works after all that unwinding.
        assert_eq!(decode_rgb(&data, 256, 256, 8).unwrap().width, 256);
    }
}
