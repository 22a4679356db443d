//! Just enough EXIF (TIFF) handling for delivery: find the EXIF block of a JPEG without decoding
//! it, read the orientation, keep EXIF with the orientation reset (`metadata=keep`, since we apply
//! the orientation to the pixels), or keep only the copyright (`metadata=copyright`).
//! Every read is bounds-checked: the bytes come from clients.

/// The TIFF bytes of a JPEG's `APP1 Exif` segment, found by walking markers up to the scan.
pub fn jpeg_exif(data: &[u8]) -> Option<&[u8]> {
    if data.get(0..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut pos = 2;
    loop {
        if *data.get(pos)? != 0xFF {
            return None;
        }
        let marker = *data.get(pos + 1)?;
        if marker == 0xFF {
            pos += 1;
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            return None;
        }
        let len = u16::from_be_bytes([*data.get(pos + 2)?, *data.get(pos + 3)?]) as usize;
        let body = data.get(pos + 4..pos + 2 + len)?;
        if marker == 0xE1 && body.starts_with(b"Exif\0\0") {
            return Some(&body[6..]);
        }
        pos += 2 + len;
    }
}

#[derive(Clone, Copy)]
struct Tiff<'a> {
    data: &'a [u8],
    little: bool,
}

impl<'a> Tiff<'a> {
    fn new(data: &'a [u8]) -> Option<Self> {
        let little = match data.get(0..4)? {
            [b'I', b'I', 42, 0] => true,
            [b'M', b'M', 0, 42] => false,
            _ => return None,
        };
        Some(Self { data, little })
    }
    fn u16(&self, at: usize) -> Option<u16> {
        let b = self.data.get(at..at + 2)?;
        Some(if self.little {
            u16::from_le_bytes([b[0], b[1]])
        } else {
            u16::from_be_bytes([b[0], b[1]])
        })
    }
    fn u32(&self, at: usize) -> Option<u32> {
        let b = self.data.get(at..at + 4)?;
        let a = [b[0], b[1], b[2], b[3]];
        Some(if self.little {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        })
    }
    /// Offset of the IFD0 entry with `tag`.
    fn entry(&self, tag: u16) -> Option<usize> {
        let ifd = self.u32(4)? as usize;
        let count = self.u16(ifd)? as usize;
        (0..count.min(512))
            .map(|i| ifd + 2 + i * 12)
            .find(|&e| self.u16(e) == Some(tag))
    }
}

const ORIENTATION: u16 = 0x0112;
const COPYRIGHT: u16 = 0x8298;

/// EXIF orientation 1–8 (1 when absent or malformed).
pub fn orientation(tiff: &[u8]) -> u8 {
    Tiff::new(tiff)
        .and_then(|t| {
            let e = t.entry(ORIENTATION)?;
            t.u16(e + 8)
        })
        .filter(|v| (1..=8).contains(v))
        .map(|v| v as u8)
        .unwrap_or(1)
}

/// A copy of the EXIF block with the orientation set to 1 (the pixels are already upright).
pub fn with_orientation_reset(tiff: &[u8]) -> Vec<u8> {
    let mut out = tiff.to_vec();
    if let Some(t) = Tiff::new(tiff) {
        if let Some(e) = t.entry(ORIENTATION) {
            let one = if t.little { [1, 0] } else { [0, 1] };
            if let Some(slot) = out.get_mut(e + 8..e + 10) {
                slot.copy_from_slice(&one);
            }
        }
    }
    out
}

/// The copyright string of IFD0, if any.
pub fn copyright(tiff: &[u8]) -> Option<String> {
    let t = Tiff::new(tiff)?;
    let e = t.entry(COPYRIGHT)?;
    if t.u16(e + 2)? != 2 {
        return None;
    }
    let count = t.u32(e + 4)? as usize;
    let bytes = if count <= 4 {
        t.data.get(e + 8..e + 8 + count)?
    } else {
        t.data.get(t.u32(e + 8)? as usize..)?.get(..count)?
    };
    let text = String::from_utf8_lossy(bytes)
        .trim_end_matches('\0')
        .trim()
        .to_string();
    (!text.is_empty()).then_some(text)
}

/// A minimal little-endian EXIF block holding only a copyright string.
pub fn copyright_only(text: &str) -> Vec<u8> {
    let mut value = text.as_bytes().to_vec();
    value.push(0);
    let mut out = Vec::with_capacity(26 + value.len());
    out.extend_from_slice(b"II\x2a\x00");
    out.extend_from_slice(&8u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&COPYRIGHT.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    if value.len() <= 4 {
        let mut inline = [0u8; 4];
        inline[..value.len()].copy_from_slice(&value);
        out.extend_from_slice(&inline);
        out.extend_from_slice(&0u32.to_le_bytes());
    } else {
        out.extend_from_slice(&26u32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&value);
    }
    out
}

#[cfg(test)]
pub(crate) fn tiff_with_orientation(orientation: u16, little: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let u16b = |v: u16| {
        if little {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        }
    };
    let u32b = |v: u32| {
        if little {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        }
    };
    out.extend_from_slice(if little { b"II\x2a\x00" } else { b"MM\x00\x2a" });
    out.extend_from_slice(&u32b(8));
    out.extend_from_slice(&u16b(1));
    out.extend_from_slice(&u16b(ORIENTATION));
    out.extend_from_slice(&u16b(3));
    out.extend_from_slice(&u32b(1));
    out.extend_from_slice(&u16b(orientation));
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&u32b(0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_resets_orientation_in_both_byte_orders() {
        for little in [true, false] {
            let tiff = tiff_with_orientation(6, little);
            assert_eq!(orientation(&tiff), 6);
            assert_eq!(orientation(&with_orientation_reset(&tiff)), 1);
        }
        assert_eq!(orientation(b"garbage"), 1);
        assert_eq!(orientation(&[]), 1);
    }

    #[test]
    fn copyright_round_trips() {
        let block = copyright_only("(c) Mediaplane");
        assert_eq!(copyright(&block).as_deref(), Some("(c) Mediaplane"));
        assert_eq!(copyright(&copyright_only("ab")).as_deref(), Some("ab"));
        assert_eq!(copyright(&tiff_with_orientation(1, true)), None);
    }

    #[test]
    fn finds_exif_in_jpeg_markers() {
        let tiff = tiff_with_orientation(3, true);
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE1];
        jpeg.extend_from_slice(&((tiff.len() + 8) as u16).to_be_bytes());
        jpeg.extend_from_slice(b"Exif\0\0");
        jpeg.extend_from_slice(&tiff);
        jpeg.extend_from_slice(&[0xFF, 0xDA]);
        assert_eq!(jpeg_exif(&jpeg), Some(&tiff[..]));
        assert_eq!(jpeg_exif(&jpeg[..10]), None);
        assert_eq!(jpeg_exif(b"not a jpeg"), None);
    }
}
