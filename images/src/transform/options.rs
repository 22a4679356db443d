//! The `/cdn-cgi/image` option language: `width=300,fit=cover,format=auto`.
//!
//! Parsing is pure: a string in, [`TransformOptions`] or an [`OptionError`] naming the offending
//! option out. [`TransformOptions::canonical`] renders the options in one fixed order with defaults
//! left out, so equivalent spellings (`w=300` / `width=300.0`) share one cache entry.

use std::fmt::Write as _;

/// Largest `dpr` accepted; Cloudflare caps it too (documented in docs/images.md).
pub const MAX_DPR: f32 = 4.0;
/// Largest requested output side, before `dpr`.
pub const MAX_OUTPUT_SIDE: u32 = 12_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fit {
    #[default]
    ScaleDown,
    Contain,
    Cover,
    Crop,
    Pad,
    Squeeze,
}

impl Fit {
    pub fn as_str(self) -> &'static str {
        match self {
            Fit::ScaleDown => "scale-down",
            Fit::Contain => "contain",
            Fit::Cover => "cover",
            Fit::Crop => "crop",
            Fit::Pad => "pad",
            Fit::Squeeze => "squeeze",
        }
    }

    pub fn parse(text: &str) -> Option<Fit> {
        Some(match text {
            "scale-down" => Fit::ScaleDown,
            "contain" => Fit::Contain,
            "cover" => Fit::Cover,
            "crop" => Fit::Crop,
            "pad" => Fit::Pad,
            "squeeze" => Fit::Squeeze,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Gravity {
    /// The centre, or a point given as fractions of width and height (0–1).
    #[default]
    Centre,
    Point(f32, f32),
    /// Saliency focus (needs the images-faces crate).
    Auto,
    /// The box around all faces (needs the images-faces crate).
    Face,
}

impl Gravity {
    /// The focal point as fractions of the source, when it does not depend on the pixels.
    pub fn fixed_point(self) -> Option<(f32, f32)> {
        match self {
            Gravity::Centre => Some((0.5, 0.5)),
            Gravity::Point(x, y) => Some((x, y)),
            Gravity::Auto | Gravity::Face => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FormatChoice {
    /// The source's own format.
    #[default]
    Original,
    /// Negotiated from `Accept`: avif > webp > original.
    Auto,
    Avif,
    Webp,
    Jpeg,
    BaselineJpeg,
    Png,
    Json,
}

impl FormatChoice {
    fn as_str(self) -> &'static str {
        match self {
            FormatChoice::Original => "original",
            FormatChoice::Auto => "auto",
            FormatChoice::Avif => "avif",
            FormatChoice::Webp => "webp",
            FormatChoice::Jpeg => "jpeg",
            FormatChoice::BaselineJpeg => "baseline-jpeg",
            FormatChoice::Png => "png",
            FormatChoice::Json => "json",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetadataMode {
    /// Keep only the copyright tag (Cloudflare's default for JPEG).
    #[default]
    Copyright,
    Keep,
    None,
}

/// Pixels to cut from each edge of the (oriented) source before anything else.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Trim {
    pub top: f32,
    pub right: f32,
    pub bottom: f32,
    pub left: f32,
    /// `trim.width` / `trim.height`: the size of the kept area, from `left`/`top`.
    pub width: Option<f32>,
    pub height: Option<f32>,
}

impl Trim {
    fn is_empty(&self) -> bool {
        *self == Trim::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Width {
    #[default]
    Unset,
    Px(u32),
    /// `width=auto`: from the `Sec-CH-Width`/`Width` client hint, else unchanged.
    Auto,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TransformOptions {
    pub width: Width,
    pub height: Option<u32>,
    pub dpr: f32,
    pub fit: Fit,
    pub gravity: Gravity,
    pub zoom: f32,
    pub quality: u8,
    pub format: FormatChoice,
    pub sharpen: f32,
    pub blur: f32,
    pub brightness: f32,
    pub contrast: f32,
    pub gamma: f32,
    pub saturation: f32,
    pub rotate: u16,
    pub flip_h: bool,
    pub flip_v: bool,
    pub trim: Trim,
    /// RGBA; only visible with `fit=pad` and transparent sources encoded to opaque formats.
    pub background: [u8; 4],
    pub metadata: MetadataMode,
    pub anim: bool,
    pub onerror_redirect: bool,
    pub compression_fast: bool,
}

pub const DEFAULT_QUALITY: u8 = 85;

impl Default for TransformOptions {
    fn default() -> Self {
        Self {
            width: Width::Unset,
            height: None,
            dpr: 1.0,
            fit: Fit::ScaleDown,
            gravity: Gravity::Centre,
            zoom: 0.0,
            quality: DEFAULT_QUALITY,
            format: FormatChoice::Original,
            sharpen: 0.0,
            blur: 0.0,
            brightness: 1.0,
            contrast: 1.0,
            gamma: 1.0,
            saturation: 1.0,
            rotate: 0,
            flip_h: false,
            flip_v: false,
            trim: Trim::default(),
            background: [255, 255, 255, 255],
            metadata: MetadataMode::Copyright,
            anim: true,
            onerror_redirect: false,
            compression_fast: false,
        }
    }
}

/// A bad option: `option` is the name as the client wrote it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid option {option:?}: {reason}")]
pub struct OptionError {
    pub option: String,
    pub reason: String,
}

fn bad(option: &str, reason: impl Into<String>) -> OptionError {
    OptionError {
        option: option.to_string(),
        reason: reason.into(),
    }
}

fn number(option: &str, value: &str, min: f32, max: f32) -> Result<f32, OptionError> {
    let v: f32 = value
        .parse()
        .map_err(|_| bad(option, format!("expected a number, got {value:?}")))?;
    if !v.is_finite() || v < min || v > max {
        return Err(bad(option, format!("must be between {min} and {max}")));
    }
    Ok(v)
}

fn pixels(option: &str, value: &str) -> Result<u32, OptionError> {
    let v = number(option, value, 1.0, MAX_OUTPUT_SIDE as f32)?;
    Ok(v.round().max(1.0) as u32)
}

impl TransformOptions {
    /// Parses `name=value` pairs separated by `,` (`;` inside `trim` values).
    pub fn parse(text: &str) -> Result<Self, OptionError> {
        let mut o = TransformOptions::default();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| bad(pair, "expected name=value"))?;
            let (name, value) = (name.trim(), value.trim());
            o.apply(name, value)?;
        }
        if o.rotate != 0 && !matches!(o.rotate, 90 | 180 | 270) {
            return Err(bad("rotate", "must be 90, 180 or 270"));
        }
        Ok(o)
    }

    fn apply(&mut self, name: &str, value: &str) -> Result<(), OptionError> {
        match name {
            "width" | "w" => {
                self.width = if value == "auto" {
                    Width::Auto
                } else {
                    Width::Px(pixels(name, value)?)
                };
            }
            "height" | "h" => self.height = Some(pixels(name, value)?),
            "dpr" => self.dpr = number(name, value, 0.1, MAX_DPR)?,
            "fit" => {
                self.fit = Fit::parse(value).ok_or_else(|| {
                    bad(
                        name,
                        "expected scale-down, contain, cover, crop, pad or squeeze",
                    )
                })?
            }
            "gravity" | "g" => self.gravity = parse_gravity(name, value)?,
            "zoom" => self.zoom = number(name, value, 0.0, 1.0)?,
            "quality" | "q" => {
                self.quality = match value {
                    "high" => 90,
                    "medium-high" => 80,
                    "medium-low" => 65,
                    "low" => 50,
                    _ => number(name, value, 1.0, 100.0)?.round() as u8,
                }
            }
            "format" | "f" => {
                self.format = match value {
                    "auto" => FormatChoice::Auto,
                    "avif" => FormatChoice::Avif,
                    "webp" => FormatChoice::Webp,
                    "jpeg" | "jpg" => FormatChoice::Jpeg,
                    "baseline-jpeg" => FormatChoice::BaselineJpeg,
                    "png" => FormatChoice::Png,
                    "json" => FormatChoice::Json,
                    _ => {
                        return Err(bad(
                            name,
                            "expected auto, avif, webp, jpeg, baseline-jpeg, png or json",
                        ))
                    }
                }
            }
            "sharpen" => self.sharpen = number(name, value, 0.0, 10.0)?,
            "blur" => self.blur = number(name, value, 0.0, 250.0)?,
            "brightness" => self.brightness = number(name, value, 0.0, 10.0)?,
            "contrast" => self.contrast = number(name, value, 0.0, 10.0)?,
            "gamma" => self.gamma = number(name, value, 0.01, 10.0)?,
            "saturation" => self.saturation = number(name, value, 0.0, 10.0)?,
            "rotate" => {
                let v = number(name, value, 0.0, 360.0)?;
                let deg = v.round() as u16 % 360;
                if (v - v.round()).abs() > f32::EPSILON || !deg.is_multiple_of(90) {
                    return Err(bad(name, "must be 90, 180 or 270"));
                }
                self.rotate = deg;
            }
            "flip" => {
                (self.flip_h, self.flip_v) = match value {
                    "h" => (true, false),
                    "v" => (false, true),
                    "hv" | "vh" => (true, true),
                    _ => return Err(bad(name, "expected h, v or hv")),
                }
            }
            "trim" => {
                let parts: Vec<&str> = value.split(';').collect();
                if parts.len() != 4 {
                    return Err(bad(name, "expected top;right;bottom;left"));
                }
                let side = |i: usize| number(name, parts[i], 0.0, 100_000.0);
                self.trim.top = side(0)?;
                self.trim.right = side(1)?;
                self.trim.bottom = side(2)?;
                self.trim.left = side(3)?;
            }
            "trim.top" => self.trim.top = number(name, value, 0.0, 100_000.0)?,
            "trim.left" => self.trim.left = number(name, value, 0.0, 100_000.0)?,
            "trim.right" => self.trim.right = number(name, value, 0.0, 100_000.0)?,
            "trim.bottom" => self.trim.bottom = number(name, value, 0.0, 100_000.0)?,
            "trim.width" => self.trim.width = Some(number(name, value, 1.0, 100_000.0)?),
            "trim.height" => self.trim.height = Some(number(name, value, 1.0, 100_000.0)?),
            "background" => {
                self.background = parse_css_colour(value).ok_or_else(|| {
                    bad(
                        name,
                        "expected a CSS colour (#rgb, #rrggbb, #rrggbbaa, rgb(), rgba() or a name)",
                    )
                })?
            }
            "metadata" => {
                self.metadata = match value {
                    "keep" => MetadataMode::Keep,
                    "copyright" => MetadataMode::Copyright,
                    "none" => MetadataMode::None,
                    _ => return Err(bad(name, "expected keep, copyright or none")),
                }
            }
            "anim" => {
                self.anim = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad(name, "expected true or false")),
                }
            }
            "onerror" => {
                if value != "redirect" {
                    return Err(bad(name, "expected redirect"));
                }
                self.onerror_redirect = true;
            }
            "compression" => {
                if value != "fast" {
                    return Err(bad(name, "expected fast"));
                }
                self.compression_fast = true;
            }
            _ => return Err(bad(name, "unknown option")),
        }
        Ok(())
    }

    /// The target box in output pixels (`dpr` applied), capped at [`MAX_OUTPUT_SIDE`].
    pub fn target(&self, width_hint: Option<u32>) -> (Option<u32>, Option<u32>) {
        let scale = |v: u32| ((v as f32 * self.dpr).round() as u32).clamp(1, MAX_OUTPUT_SIDE);
        let width = match self.width {
            Width::Px(w) => Some(w),
            Width::Auto => width_hint.filter(|w| *w > 0),
            Width::Unset => None,
        };
        (width.map(scale), self.height.map(scale))
    }

    /// True when the pixels pass through unchanged apart from re-encoding.
    pub fn is_identity_geometry(&self) -> bool {
        self.width == Width::Unset
            && self.height.is_none()
            && self.rotate == 0
            && !self.flip_h
            && !self.flip_v
            && self.trim.is_empty()
    }

    /// The options in a fixed order, defaults omitted: the cache and metering key. `format` is
    /// written as requested (`auto` stays `auto`): the negotiated output format is keyed separately.
    pub fn canonical(&self) -> String {
        let d = TransformOptions::default();
        let mut out = String::new();
        let mut push = |name: &str, value: String| {
            if !out.is_empty() {
                out.push(',');
            }
            let _ = write!(out, "{name}={value}");
        };
        match self.width {
            Width::Px(w) => push("width", w.to_string()),
            Width::Auto => push("width", "auto".into()),
            Width::Unset => {}
        }
        if let Some(h) = self.height {
            push("height", h.to_string());
        }
        if self.dpr != d.dpr {
            push("dpr", format!("{}", self.dpr));
        }
        if self.fit != d.fit {
            push("fit", self.fit.as_str().into());
        }
        match self.gravity {
            Gravity::Centre => {}
            Gravity::Point(x, y) => push("gravity", format!("{x}x{y}")),
            Gravity::Auto => push("gravity", "auto".into()),
            Gravity::Face => push("gravity", "face".into()),
        }
        if self.zoom != d.zoom {
            push("zoom", format!("{}", self.zoom));
        }
        if self.quality != d.quality {
            push("quality", self.quality.to_string());
        }
        if self.format != d.format {
            push("format", self.format.as_str().into());
        }
        for (name, value, default) in [
            ("sharpen", self.sharpen, d.sharpen),
            ("blur", self.blur, d.blur),
            ("brightness", self.brightness, d.brightness),
            ("contrast", self.contrast, d.contrast),
            ("gamma", self.gamma, d.gamma),
            ("saturation", self.saturation, d.saturation),
        ] {
            if value != default {
                push(name, format!("{value}"));
            }
        }
        if self.rotate != 0 {
            push("rotate", self.rotate.to_string());
        }
        if self.flip_h || self.flip_v {
            push(
                "flip",
                format!(
                    "{}{}",
                    if self.flip_h { "h" } else { "" },
                    if self.flip_v { "v" } else { "" }
                ),
            );
        }
        if !self.trim.is_empty() {
            let t = self.trim;
            push(
                "trim",
                format!("{};{};{};{}", t.top, t.right, t.bottom, t.left),
            );
            if let Some(w) = t.width {
                push("trim.width", format!("{w}"));
            }
            if let Some(h) = t.height {
                push("trim.height", format!("{h}"));
            }
        }
        if self.background != d.background {
            push("background", format!("#{}", hex::encode(self.background)));
        }
        if self.metadata != d.metadata {
            push(
                "metadata",
                if self.metadata == MetadataMode::Keep {
                    "keep".into()
                } else {
                    "none".into()
                },
            );
        }
        if !self.anim {
            push("anim", "false".into());
        }
        if self.compression_fast {
            push("compression", "fast".into());
        }
        // onerror changes only what happens on failure, not the pixels: not part of the key.
        out
    }
}

fn parse_gravity(name: &str, value: &str) -> Result<Gravity, OptionError> {
    Ok(match value {
        "auto" => Gravity::Auto,
        "face" => Gravity::Face,
        "center" | "centre" => Gravity::Centre,
        "left" => Gravity::Point(0.0, 0.5),
        "right" => Gravity::Point(1.0, 0.5),
        "top" => Gravity::Point(0.5, 0.0),
        "bottom" => Gravity::Point(0.5, 1.0),
        _ => {
            let (x, y) = value
                .split_once('x')
                .ok_or_else(|| bad(name, "expected auto, face, left, right, top, bottom or XxY"))?;
            let x = number(name, x, 0.0, 1.0)?;
            let y = number(name, y, 0.0, 1.0)?;
            Gravity::Point(x, y)
        }
    })
}

/// CSS colours: `#rgb`, `#rgba`, `#rrggbb`, `#rrggbbaa`, `rgb(r,g,b)`, `rgba(r,g,b,a)` (the
/// option list itself is comma separated, so rgb() arguments may also be separated by spaces) and
/// the common names.
pub fn parse_css_colour(text: &str) -> Option<[u8; 4]> {
    let text = text.trim().to_ascii_lowercase();
    if let Some(hex) = text.strip_prefix('#') {
        let digit = |i: usize| u8::from_str_radix(hex.get(i..i + 1)?, 16).ok();
        let pair = |i: usize| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok();
        return match hex.len() {
            3 | 4 => {
                let a = if hex.len() == 4 { digit(3)? * 17 } else { 255 };
                Some([digit(0)? * 17, digit(1)? * 17, digit(2)? * 17, a])
            }
            6 | 8 => {
                let a = if hex.len() == 8 { pair(6)? } else { 255 };
                Some([pair(0)?, pair(2)?, pair(4)?, a])
            }
            _ => None,
        };
    }
    if let Some(inner) = text
        .strip_prefix("rgba(")
        .or_else(|| text.strip_prefix("rgb("))
        .and_then(|t| t.strip_suffix(')'))
    {
        let parts: Vec<&str> = inner
            .split([',', ' ', '/'])
            .filter(|p| !p.is_empty())
            .collect();
        if parts.len() != 3 && parts.len() != 4 {
            return None;
        }
        let channel = |p: &str| {
            p.parse::<f32>()
                .ok()
                .filter(|v| (0.0..=255.0).contains(v))
                .map(|v| v.round() as u8)
        };
        let alpha = match parts.get(3) {
            Some(a) => {
                let a: f32 = a.parse().ok()?;
                if !(0.0..=1.0).contains(&a) {
                    return None;
                }
                (a * 255.0).round() as u8
            }
            None => 255,
        };
        return Some([
            channel(parts[0])?,
            channel(parts[1])?,
            channel(parts[2])?,
            alpha,
        ]);
    }
    Some(match text.as_str() {
        "white" => [255, 255, 255, 255],
        "black" => [0, 0, 0, 255],
        "red" => [255, 0, 0, 255],
        "green" => [0, 128, 0, 255],
        "lime" => [0, 255, 0, 255],
        "blue" => [0, 0, 255, 255],
        "yellow" => [255, 255, 0, 255],
        "cyan" | "aqua" => [0, 255, 255, 255],
        "magenta" | "fuchsia" => [255, 0, 255, 255],
        "gray" | "grey" => [128, 128, 128, 255],
        "silver" => [192, 192, 192, 255],
        "orange" => [255, 165, 0, 255],
        "purple" => [128, 0, 128, 255],
        "navy" => [0, 0, 128, 255],
        "transparent" => [0, 0, 0, 0],
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_option() {
        let o = TransformOptions::parse(
            "w=300,h=200,dpr=2,fit=cover,g=0.25x0.75,zoom=0.5,q=low,f=webp,sharpen=3,blur=5,brightness=1.2,contrast=0.9,\
             gamma=1.1,saturation=0,rotate=90,flip=hv,trim=1;2;3;4,background=#ff0000,metadata=keep,anim=false,onerror=redirect,compression=fast",
        )
        .unwrap();
        assert_eq!(o.width, Width::Px(300));
        assert_eq!(o.height, Some(200));
        assert_eq!(o.target(None), (Some(600), Some(400)));
        assert_eq!(o.fit, Fit::Cover);
        assert_eq!(o.gravity, Gravity::Point(0.25, 0.75));
        assert_eq!(o.quality, 50);
        assert_eq!(o.format, FormatChoice::Webp);
        assert_eq!(o.rotate, 90);
        assert!(o.flip_h && o.flip_v);
        assert_eq!(o.trim.left, 4.0);
        assert_eq!(o.background, [255, 0, 0, 255]);
        assert_eq!(o.metadata, MetadataMode::Keep);
        assert!(!o.anim && o.onerror_redirect && o.compression_fast);
    }

    #[test]
    fn bad_options_are_named() {
        for (text, option) in [
            ("width=abc", "width"),
            ("w=0", "w"),
            ("fit=stretch", "fit"),
            ("frobnicate=1", "frobnicate"),
            ("q=101", "q"),
            ("rotate=45", "rotate"),
            ("gravity=2x0", "gravity"),
            ("background=notacolour", "background"),
            ("dpr=9", "dpr"),
            ("trim=1;2", "trim"),
            ("format=tiff", "format"),
            ("blur=999", "blur"),
            ("anim=maybe", "anim"),
            ("width", "width"),
        ] {
            let err = TransformOptions::parse(text).unwrap_err();
            assert_eq!(err.option, option, "{text}");
        }
    }

    #[test]
    fn canonical_form_merges_spellings() {
        let a = TransformOptions::parse("w=300,f=auto,q=85").unwrap();
        let b = TransformOptions::parse("format=auto,width=300.0").unwrap();
        assert_eq!(a.canonical(), b.canonical());
        assert_eq!(a.canonical(), "width=300,format=auto");
        assert_ne!(
            a.canonical(),
            TransformOptions::parse("w=301,f=auto").unwrap().canonical()
        );
        assert_eq!(TransformOptions::parse("").unwrap().canonical(), "");
    }

    #[test]
    fn css_colours() {
        assert_eq!(parse_css_colour("#abc"), Some([0xaa, 0xbb, 0xcc, 255]));
        assert_eq!(
            parse_css_colour("#11223344"),
            Some([0x11, 0x22, 0x33, 0x44])
        );
        assert_eq!(parse_css_colour("rgb(1 2 3)"), Some([1, 2, 3, 255]));
        assert_eq!(parse_css_colour("rgba(1 2 3 0.5)"), Some([1, 2, 3, 128]));
        assert_eq!(parse_css_colour("transparent"), Some([0, 0, 0, 0]));
        assert_eq!(parse_css_colour("#12"), None);
        assert_eq!(parse_css_colour("rgb(300,0,0)"), None);
    }
}
