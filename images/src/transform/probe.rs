//! Upload validation: what format is this, how big will it be once decoded, is it animated.
//! Decides from the headers alone, so a decompression bomb is refused before any pixel buffer is
//! allocated; [`verify_decodes`] then decodes the whole file (JPEG at 1/8 scale, which still reads
//! every entropy-coded byte) to catch truncated or corrupt bodies.

use std::io::Cursor;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    Jpeg,
    Png,
    Gif,
    Webp,
}

impl SourceFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceFormat::Jpeg => "jpeg",
            SourceFormat::Png => "png",
            SourceFormat::Gif => "gif",
            SourceFormat::Webp => "webp",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "jpeg" => SourceFormat::Jpeg,
            "png" => SourceFormat::Png,
            "gif" => SourceFormat::Gif,
            "webp" => SourceFormat::Webp,
            _ => return None,
        })
    }
    pub fn mime(self) -> &'static str {
        match self {
            SourceFormat::Jpeg => "image/jpeg",
            SourceFormat::Png => "image/png",
            SourceFormat::Gif => "image/gif",
            SourceFormat::Webp => "image/webp",
        }
    }
    pub fn image_format(self) -> image::ImageFormat {
        match self {
            SourceFormat::Jpeg => image::ImageFormat::Jpeg,
            SourceFormat::Png => image::ImageFormat::Png,
            SourceFormat::Gif => image::ImageFormat::Gif,
            SourceFormat::Webp => image::ImageFormat::WebP,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct SourceLimits {
    pub max_bytes: u64,
    pub max_pixels: u64,
    pub max_side: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub format: SourceFormat,
    pub width: u32,
    pub height: u32,
    pub animated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("the file is {size} bytes; the limit is {limit}")]
    TooLarge { size: u64, limit: u64 },
    #[error("unsupported image type ({0}); accepted: JPEG, PNG, GIF, WebP")]
    Unsupported(&'static str),
    #[error("the image could not be decoded: {0}")]
    Corrupt(String),
    #[error("the image is {width}x{height}; the limits are {max_side} px per side and {max_megapixels} megapixels")]
    Dimensions {
        width: u32,
        height: u32,
        max_side: u32,
        max_megapixels: u64,
    },
}

/// The format by magic bytes; AVIF and HEIF are recognised only to refuse them clearly.
pub fn sniff(data: &[u8]) -> Result<SourceFormat, ProbeError> {
    if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Ok(SourceFormat::Jpeg)
    } else if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Ok(SourceFormat::Png)
    } else if data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a") {
        Ok(SourceFormat::Gif)
    } else if data.len() >= 12 && &data[0..4] == b"RIFF" && &data[8..12] == b"WEBP" {
        Ok(SourceFormat::Webp)
    } else if data.len() >= 12
        && &data[4..8] == b"ftyp"
        && matches!(
            &data[8..12],
            b"avif" | b"avis" | b"heic" | b"heix" | b"mif1"
        )
    {
        Err(ProbeError::Unsupported(
            "AVIF/HEIF decoding is not available in this build",
        ))
    } else {
        Err(ProbeError::Unsupported("not a recognised image"))
    }
}

pub fn probe(data: &[u8], limits: &SourceLimits) -> Result<Probe, ProbeError> {
    if data.len() as u64 > limits.max_bytes {
        return Err(ProbeError::TooLarge {
            size: data.len() as u64,
            limit: limits.max_bytes,
        });
    }
    let format = sniff(data)?;
    let (width, height) = image::ImageReader::with_format(Cursor::new(data), format.image_format())
        .into_dimensions()
        .map_err(|e| ProbeError::Corrupt(e.to_string()))?;
    if width == 0 || height == 0 {
        return Err(ProbeError::Corrupt("zero width or height".into()));
    }
    let max_megapixels = limits.max_pixels / 1_000_000;
    if width > limits.max_side
        || height > limits.max_side
        || width as u64 * height as u64 > limits.max_pixels
    {
        return Err(ProbeError::Dimensions {
            width,
            height,
            max_side: limits.max_side,
            max_megapixels,
        });
    }
    let animated = match format {
        SourceFormat::Gif => gif_frame_count(data, 2) > 1,
        SourceFormat::Webp => webp_is_animated(data),
        SourceFormat::Png => png_is_animated(data),
        SourceFormat::Jpeg => false,
    };
    Ok(Probe {
        format,
        width,
        height,
        animated,
    })
}

/// Decodes everything once so corrupt bodies are refused at upload, not at first delivery.
pub fn verify_decodes(data: &[u8], probe: &Probe) -> Result<(), ProbeError> {
    let corrupt = |e: &dyn std::fmt::Display| ProbeError::Corrupt(e.to_string());
    match probe.format {
        SourceFormat::Jpeg => match super::jpeg::decode_rgb(data, probe.width, probe.height, 1) {
            Ok(_) => Ok(()),
            Err(super::jpeg::JpegError::ColourSpace(_)) => image_decode(data, probe),
            Err(e) => Err(corrupt(&e)),
        },
        _ => image_decode(data, probe),
    }
}

fn image_decode(data: &[u8], probe: &Probe) -> Result<(), ProbeError> {
    let mut reader =
        image::ImageReader::with_format(Cursor::new(data), probe.format.image_format());
    reader.limits(decode_limits(probe.width, probe.height));
    reader
        .decode()
        .map_err(|e| ProbeError::Corrupt(e.to_string()))?;
    Ok(())
}

/// Decoder limits sized to the probed dimensions, so a lying header cannot allocate more.
pub fn decode_limits(width: u32, height: u32) -> image::Limits {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    limits.max_alloc = Some((width as u64 * height as u64 * 8).max(64 * 1024 * 1024));
    limits
}

/// Counts GIF image descriptors by walking the block structure, stopping at `stop_at`.
pub fn gif_frame_count(data: &[u8], stop_at: usize) -> usize {
    let skip_sub_blocks = |mut pos: usize| -> Option<usize> {
        loop {
            let len = *data.get(pos)? as usize;
            pos += 1;
            if len == 0 {
                return Some(pos);
            }
            pos += len;
        }
    };
    let walk = || -> Option<usize> {
        let flags = *data.get(10)?;
        let mut pos = 13
            + if flags & 0x80 != 0 {
                3 * (2usize << (flags & 7))
            } else {
                0
            };
        let mut frames = 0;
        loop {
            match *data.get(pos)? {
                0x21 => pos = skip_sub_blocks(pos + 2)?,
                0x2C => {
                    frames += 1;
                    if frames >= stop_at {
                        return Some(frames);
                    }
                    let local = *data.get(pos + 9)?;
                    pos += 10
                        + if local & 0x80 != 0 {
                            3 * (2usize << (local & 7))
                        } else {
                            0
                        };
                    pos = skip_sub_blocks(pos + 1)?;
                }
                _ => return Some(frames),
            }
        }
    };
    walk().unwrap_or(0)
}

fn webp_is_animated(data: &[u8]) -> bool {
    // VP8X header: "VP8X" at 12, flags at 20; bit 1 = animation.
    data.get(12..16) == Some(b"VP8X") && data.get(20).is_some_and(|f| f & 0x02 != 0)
}

fn png_is_animated(data: &[u8]) -> bool {
    let mut pos = 8;
    while let Some(header) = data.get(pos..pos + 8) {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        match &header[4..8] {
            b"acTL" => return true,
            b"IDAT" | b"IEND" => return false,
            _ => pos = pos.saturating_add(12 + len),
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: SourceLimits = SourceLimits {
        max_bytes: 10_000_000,
        max_pixels: 100_000_000,
        max_side: 12_000,
    };

    fn png(width: u32, height: u32) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(width, height, image::Rgb([10, 20, 30]));
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    /// A 1x1 PNG whose IHDR (with a valid CRC) claims `width` x `height`.
    fn png_claiming(width: u32, height: u32) -> Vec<u8> {
        let mut data = png(1, 1);
        data[16..20].copy_from_slice(&width.to_be_bytes());
        data[20..24].copy_from_slice(&height.to_be_bytes());
        let crc = crc32(&data[12..29]);
        data[29..33].copy_from_slice(&crc.to_be_bytes());
        data
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in bytes {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn probes_a_png() {
        let p = probe(&png(30, 20), &LIMITS).unwrap();
        assert_eq!(
            (p.format, p.width, p.height, p.animated),
            (SourceFormat::Png, 30, 20, false)
        );
        verify_decodes(&png(30, 20), &p).unwrap();
    }

    #[test]
    fn refuses_bombs_from_the_header() {
        // A PNG header claiming 50,000 x 50,000: refused without decoding.
        let data = png_claiming(50_000, 50_000);
        assert!(matches!(
            probe(&data, &LIMITS),
            Err(ProbeError::Dimensions { width: 50_000, .. })
        ));
        let small = SourceLimits {
            max_pixels: 100,
            ..LIMITS
        };
        assert!(matches!(
            probe(&png(11, 10), &small),
            Err(ProbeError::Dimensions { .. })
        ));
    }

    #[test]
    fn refuses_junk_and_truncation() {
        assert!(matches!(
            probe(b"hello world, not an image", &LIMITS),
            Err(ProbeError::Unsupported(_))
        ));
        let data = png(64, 64);
        let truncated = &data[..data.len() - 30];
        let result = probe(truncated, &LIMITS).and_then(|p| verify_decodes(truncated, &p));
        assert!(matches!(result, Err(ProbeError::Corrupt(_))), "{result:?}");
        let small = SourceLimits {
            max_bytes: 10,
            ..LIMITS
        };
        assert!(matches!(
            probe(&data, &small),
            Err(ProbeError::TooLarge { .. })
        ));
    }

    #[test]
    fn counts_gif_frames() {
        use image::codecs::gif::GifEncoder;
        let mut out = Vec::new();
        {
            let mut enc = GifEncoder::new(&mut out);
            for i in 0..3u8 {
                let frame = image::RgbaImage::from_pixel(4, 4, image::Rgba([i * 50, 0, 0, 255]));
                enc.encode_frame(image::Frame::new(frame)).unwrap();
            }
        }
        assert_eq!(gif_frame_count(&out, 10), 3);
        assert!(probe(&out, &LIMITS).unwrap().animated);
    }
}
