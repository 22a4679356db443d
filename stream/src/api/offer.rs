//! Narrowing a WHIP offer to what a recorded input can take, before the media core answers it.
//!
//! Browsers list VP8 first (Chromium's default offer is VP8, then H264 in several profiles), and
//! the media core answers with its own codec order, so a plain browser offer would be answered
//! with VP8 and a recorded input would have to refuse it. The recorder muxes H264 only, so for a
//! recorded input we hide the offer's other video codecs from the media core whenever the offer
//! also has H264 with packetization-mode 1: the answer then names H264 and the browser sends it.
//! An offer without such H264 is left alone (the caller refuses it with a message naming the codec).

/// The offer with every video section reduced to its H264 (packetization-mode 1) payload types
/// and their RTX, or `None` when nothing needs to change or a video section has no such H264.
pub fn h264_only_video(sdp: &str) -> Option<String> {
    let newline = if sdp.contains("\r\n") { "\r\n" } else { "\n" };
    let lines: Vec<&str> = sdp.lines().collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let mut changed = false;
    let mut start = 0;
    while start < lines.len() {
        // A section runs from an `m=` line (or the session start) to the next `m=` line.
        let end = lines[start + 1..]
            .iter()
            .position(|l| l.starts_with("m="))
            .map_or(lines.len(), |p| start + 1 + p);
        let section = &lines[start..end];
        if section[0].starts_with("m=video ") {
            let narrowed = narrow_video_section(section)?;
            changed |= narrowed.len() != section.len() || narrowed[0] != section[0];
            out.extend(narrowed);
        } else {
            out.extend(section.iter().map(|l| l.to_string()));
        }
        start = end;
    }
    changed.then(|| {
        let mut text = out.join(newline);
        text.push_str(newline);
        text
    })
}

/// One `m=video` section with only H264 packetization-mode 1 and its RTX; `None` when it has none.
fn narrow_video_section(section: &[&str]) -> Option<Vec<String>> {
    let mut fields = section[0].split_whitespace();
    let head: Vec<&str> = fields.by_ref().take(3).collect();
    let pts: Vec<&str> = fields.collect();
    let attribute = |name: &str, pt: &str| {
        let prefix = format!("a={name}:{pt} ");
        section
            .iter()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map(str::trim)
    };
    let is_h264_mode1 = |pt: &&str| {
        attribute("rtpmap", pt).is_some_and(|m| m.to_ascii_lowercase().starts_with("h264/"))
            && attribute("fmtp", pt).is_some_and(|f| {
                f.split(';')
                    .any(|p| p.trim().eq_ignore_ascii_case("packetization-mode=1"))
            })
    };
    let h264: Vec<&str> = pts.iter().copied().filter(is_h264_mode1).collect();
    if h264.is_empty() {
        return None;
    }
    let keep: Vec<&str> = pts
        .iter()
        .copied()
        .filter(|pt| {
            h264.contains(pt)
                || (attribute("rtpmap", pt)
                    .is_some_and(|m| m.to_ascii_lowercase().starts_with("rtx/"))
                    && attribute("fmtp", pt).is_some_and(|f| {
                        f.split(';').any(|p| {
                            p.trim()
                                .strip_prefix("apt=")
                                .is_some_and(|apt| h264.contains(&apt.trim()))
                        })
                    }))
        })
        .collect();
    let dropped: Vec<&str> = pts
        .iter()
        .copied()
        .filter(|pt| !keep.contains(pt))
        .collect();
    let names_dropped = |line: &str| {
        ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"].iter().any(|prefix| {
            line.strip_prefix(prefix)
                .and_then(|rest| rest.split_whitespace().next())
                .is_some_and(|pt| dropped.contains(&pt))
        })
    };
    let mut narrowed = vec![[head, keep].concat().join(" ")];
    narrowed.extend(
        section[1..]
            .iter()
            .filter(|l| !names_dropped(l))
            .map(|l| l.to_string()),
    );
    Some(narrowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of Chromium 156's default offer (VP8 first; H264 in three profiles, each in
    /// packetization-mode 1 and 0; AV1; RTX per codec; RED/ULPFEC), trimmed.
    const CHROMIUM: &str = "v=0\r\n\
o=- 1 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\n\
a=mid:0\r\n\
a=sendonly\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtcp-fb:111 transport-cc\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:0 PCMU/8000\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 104 106 45 118 120\r\n\
a=mid:1\r\n\
a=sendonly\r\n\
a=rtcp-fb:* goog-remb\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtcp-fb:96 nack\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n\
a=rtpmap:102 H264/90000\r\n\
a=rtcp-fb:102 nack pli\r\n\
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
a=rtpmap:103 rtx/90000\r\n\
a=fmtp:103 apt=102\r\n\
a=rtpmap:104 H264/90000\r\n\
a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f\r\n\
a=rtpmap:106 rtx/90000\r\n\
a=fmtp:106 apt=104\r\n\
a=rtpmap:45 AV1/90000\r\n\
a=fmtp:45 level-idx=5;profile=0;tier=0\r\n\
a=rtpmap:118 red/90000\r\n\
a=rtpmap:120 ulpfec/90000\r\n\
a=ssrc:1 cname:x\r\n";

    #[test]
    fn keeps_only_h264_mode_1_and_its_rtx_in_video() {
        let narrowed = h264_only_video(CHROMIUM).expect("narrowed");
        let m_video = narrowed.lines().find(|l| l.starts_with("m=video")).unwrap();
        assert_eq!(m_video, "m=video 9 UDP/TLS/RTP/SAVPF 102 103");
        for gone in [
            "a=rtpmap:96 ",
            "a=fmtp:97 ",
            "a=rtcp-fb:96 ",
            "a=rtpmap:104 ",
            "a=fmtp:45 ",
        ] {
            assert!(!narrowed.contains(gone), "{gone} still there");
        }
        for kept in [
            "a=rtpmap:102 H264/90000",
            "a=fmtp:103 apt=102",
            "a=rtcp-fb:102 nack pli",
            "a=rtcp-fb:* goog-remb",
            "a=ssrc:1 cname:x",
            "a=mid:1",
        ] {
            assert!(narrowed.contains(kept), "{kept} missing");
        }
        // Audio is untouched, line endings stay CRLF.
        assert!(narrowed.contains("m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=mid:0"));
        assert!(narrowed.ends_with("\r\n") && !narrowed.contains("\r\r"));
    }

    #[test]
    fn leaves_offers_without_h264_mode_1_or_with_nothing_to_drop() {
        let vp8_only = CHROMIUM
            .replace("packetization-mode=1", "packetization-mode=0")
            .replace("H264", "VP9");
        assert_eq!(h264_only_video(&vp8_only), None);
        let narrowed = h264_only_video(CHROMIUM).unwrap();
        assert_eq!(h264_only_video(&narrowed), None, "already H264 only");
        let audio_only = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n";
        assert_eq!(h264_only_video(audio_only), None);
    }
}
