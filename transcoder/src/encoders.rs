//! Which video encoders this machine can use: the catalogue of encoders the ladder knows,
//! a probe that really opens each one (its hardware device first), and the choice `auto`
//! makes.

use std::fmt;

use crate::ffi::{self, EncoderParams, HwDevice, HwKind, VideoCodec};

/// An encoder the ladder can drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncoderInfo {
    /// FFmpeg's name for it.
    pub name: &'static str,
    /// What it produces.
    pub codec: VideoCodec,
    /// The hardware it needs.
    pub hw: Option<HwKind>,
    /// Whether frames are uploaded to hardware surfaces first (VAAPI, QSV); NVENC takes
    /// frames from system memory.
    upload: bool,
    /// Why the ladder cannot use it even when FFmpeg can open it.
    unsupported: Option<&'static str>,
}

const fn sw(name: &'static str, codec: VideoCodec) -> EncoderInfo {
    EncoderInfo {
        name,
        codec,
        hw: None,
        upload: false,
        unsupported: None,
    }
}

const fn hw(name: &'static str, codec: VideoCodec, kind: HwKind, upload: bool) -> EncoderInfo {
    EncoderInfo {
        name,
        codec,
        hw: Some(kind),
        upload,
        unsupported: None,
    }
}

const AV1_OUTPUT: &str = "AV1 rungs are not packaged yet (AV1 sources are decoded)";

/// Every encoder the ladder knows, hardware first within each codec: the order `auto`
/// tries for H.264.
pub const CATALOGUE: &[EncoderInfo] = &[
    hw("h264_nvenc", VideoCodec::H264, HwKind::Cuda, false),
    hw("h264_qsv", VideoCodec::H264, HwKind::Qsv, true),
    hw("h264_vaapi", VideoCodec::H264, HwKind::Vaapi, true),
    sw("libx264", VideoCodec::H264),
    hw("hevc_nvenc", VideoCodec::Hevc, HwKind::Cuda, false),
    hw("hevc_qsv", VideoCodec::Hevc, HwKind::Qsv, true),
    hw("hevc_vaapi", VideoCodec::Hevc, HwKind::Vaapi, true),
    sw("libx265", VideoCodec::Hevc),
    EncoderInfo {
        unsupported: Some(AV1_OUTPUT),
        ..sw("libsvtav1", VideoCodec::Av1)
    },
    EncoderInfo {
        unsupported: Some(AV1_OUTPUT),
        ..sw("libaom-av1", VideoCodec::Av1)
    },
    EncoderInfo {
        unsupported: Some(AV1_OUTPUT),
        ..hw("av1_nvenc", VideoCodec::Av1, HwKind::Cuda, false)
    },
];

/// The software encoder `auto` falls back to.
pub const FALLBACK: &str = "libx264";

/// The catalogue entry called `name`.
pub fn lookup(name: &str) -> Option<&'static EncoderInfo> {
    CATALOGUE.iter().find(|e| e.name == name)
}

/// Encoder settings shared by every rung of a ladder.
#[derive(Clone, Debug, PartialEq)]
pub struct EncoderSettings {
    /// Speed/quality preset for software encoders (x264/x265 names: `ultrafast` ...
    /// `veryslow`); hardware encoders use their own low-latency preset.
    pub preset: String,
    /// x264/x265 tune (`zerolatency` keeps frames from being held back); empty for none.
    pub tune: String,
    /// Encoder threads per rung (0: the encoder decides).
    pub threads: u32,
}

impl Default for EncoderSettings {
    fn default() -> Self {
        EncoderSettings {
            preset: "veryfast".into(),
            tune: "zerolatency".into(),
            threads: 0,
        }
    }
}

impl EncoderInfo {
    /// The private options this encoder is opened with.
    pub(crate) fn options(&self, s: &EncoderSettings, profile: &str) -> Vec<(String, String)> {
        let mut o: Vec<(String, String)> = Vec::new();
        let mut set = |k: &str, v: &str| {
            if !v.is_empty() {
                o.push((k.to_owned(), v.to_owned()));
            }
        };
        match self.name {
            "libx264" => {
                set("preset", &s.preset);
                set("tune", &s.tune);
                set("profile", profile);
                set("forced-idr", "1");
                // Keyframes only where the source has them (see the ladder's module doc).
                set("x264-params", "scenecut=0");
            }
            "libx265" => {
                set("preset", &s.preset);
                set("tune", &s.tune);
                set("forced-idr", "1");
                set("x265-params", "scenecut=0:bframes=0:log-level=error");
            }
            n if n.ends_with("_nvenc") => {
                set("preset", "p2");
                set("tune", "ll");
                set("zerolatency", "1");
                set("forced-idr", "1");
                set("no-scenecut", "1");
                if self.codec == VideoCodec::H264 {
                    set("profile", profile);
                }
            }
            n if n.ends_with("_qsv") => {
                set("preset", "veryfast");
                set("forced_idr", "1");
            }
            _ => {}
        }
        o
    }

    /// Opens the hardware device this encoder needs (nothing for software encoders).
    pub(crate) fn device(&self) -> Result<Option<HwDevice>, String> {
        match self.hw {
            None => Ok(None),
            Some(kind) => HwDevice::open(kind)
                .map(Some)
                .map_err(|e| format!("no usable {kind:?} device ({e}){}", device_hint(kind))),
        }
    }

    pub(crate) fn params(&self, s: &EncoderSettings, profile: &str, t: Target) -> EncoderParams {
        EncoderParams {
            name: self.name.to_owned(),
            width: t.size.0,
            height: t.size.1,
            fps: t.fps,
            bitrate: t.bitrate,
            max_bitrate: t.max_bitrate,
            gop: t.gop,
            threads: s.threads,
            upload: self.upload.then_some(self.hw).flatten(),
            options: self.options(s, profile),
        }
    }
}

/// What the device nodes say when opening a device failed.
fn device_hint(kind: HwKind) -> &'static str {
    let render_node = std::fs::read_dir("/dev/dri").is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("renderD"))
    });
    match kind {
        HwKind::Cuda if !std::path::Path::new("/dev/nvidiactl").exists() => {
            ": no NVIDIA device (/dev/nvidiactl missing)"
        }
        HwKind::Vaapi | HwKind::Qsv if !render_node => ": no GPU render node in /dev/dri",
        _ => "",
    }
}

/// What one encoder instance is asked to produce.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target {
    pub(crate) size: (u32, u32),
    pub(crate) fps: f64,
    pub(crate) bitrate: u64,
    pub(crate) max_bitrate: u64,
    pub(crate) gop: u32,
}

/// Whether an encoder can be used here, and why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// The encoder.
    pub name: &'static str,
    /// What it produces.
    pub codec: VideoCodec,
    /// `Ok` when it opened; otherwise the reason.
    pub result: Result<(), String>,
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let codec = match self.codec {
            VideoCodec::H264 => "H.264",
            VideoCodec::Hevc => "H.265",
            VideoCodec::Av1 => "AV1",
        };
        match &self.result {
            Ok(()) => write!(f, "{:<12} {codec:<6} available", self.name),
            Err(why) => write!(f, "{:<12} {codec:<6} unavailable: {why}", self.name),
        }
    }
}

/// Opens `info` for real on a small picture: the device, then the encoder.
pub fn probe(info: &EncoderInfo, settings: &EncoderSettings) -> Probe {
    ffi::silence_logs();
    let result = (|| {
        if let Some(why) = info.unsupported {
            return Err(why.to_owned());
        }
        if !ffi::has_encoder(info.name) {
            return Err("not built into this FFmpeg".to_owned());
        }
        let device = info.device()?;
        let profile = if info.codec == VideoCodec::H264 {
            "main"
        } else {
            ""
        };
        let params = info.params(
            settings,
            profile,
            Target {
                size: (640, 360),
                fps: 30.0,
                bitrate: 800_000,
                max_bitrate: 1_000_000,
                gop: 60,
            },
        );
        ffi::Encoder::open(&params, device)
            .map(drop)
            .map_err(|e| format!("cannot open the encoder ({e})"))
    })();
    ffi::quiet_logs();
    Probe {
        name: info.name,
        codec: info.codec,
        result,
    }
}

/// Probes every encoder of the catalogue.
pub fn probe_all(settings: &EncoderSettings) -> Vec<Probe> {
    CATALOGUE.iter().map(|e| probe(e, settings)).collect()
}

/// The encoder a ladder uses, and how it was chosen.
#[derive(Clone, Debug)]
pub struct Choice {
    /// The chosen encoder.
    pub encoder: &'static EncoderInfo,
    /// Probes of the encoders tried before it, with why each was passed over.
    pub passed_over: Vec<Probe>,
}

/// Why no encoder could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChoiceError {
    /// The configured name is not in the catalogue.
    #[error("unknown encoder {0:?} (run `potok encoders` for the list)")]
    Unknown(String),
    /// The configured encoder does not work here.
    #[error("encoder {name} cannot be used: {why}")]
    Unusable {
        /// The encoder.
        name: String,
        /// Why.
        why: String,
    },
}

/// Chooses the encoder for `wanted` (`auto` or a catalogue name) by probing.
///
/// `auto` tries the H.264 hardware encoders in catalogue order and takes the first that
/// opens, falling back to libx264; a named encoder must open or the choice fails.
pub fn choose(wanted: &str, settings: &EncoderSettings) -> Result<Choice, ChoiceError> {
    if wanted == "auto" {
        let mut passed_over = Vec::new();
        for info in CATALOGUE.iter().filter(|e| e.codec == VideoCodec::H264) {
            let p = probe(info, settings);
            if p.result.is_ok() {
                return Ok(Choice {
                    encoder: info,
                    passed_over,
                });
            }
            passed_over.push(p);
        }
        let why = passed_over
            .last()
            .and_then(|p| p.result.clone().err())
            .unwrap_or_default();
        return Err(ChoiceError::Unusable {
            name: FALLBACK.to_owned(),
            why,
        });
    }
    let info = lookup(wanted).ok_or_else(|| ChoiceError::Unknown(wanted.to_owned()))?;
    match probe(info, settings).result {
        Ok(()) => Ok(Choice {
            encoder: info,
            passed_over: Vec::new(),
        }),
        Err(why) => Err(ChoiceError::Unusable {
            name: wanted.to_owned(),
            why,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_falls_back_to_libx264_and_says_why() {
        // This machine has no GPU: every hardware encoder must be passed over with a
        // reason, and libx264 chosen.
        let choice = choose("auto", &EncoderSettings::default()).unwrap();
        if choice.encoder.hw.is_none() {
            assert_eq!(choice.encoder.name, "libx264");
            assert_eq!(choice.passed_over.len(), 3, "{:?}", choice.passed_over);
            for p in &choice.passed_over {
                let why = p.result.as_ref().unwrap_err();
                assert!(!why.is_empty());
                assert!(
                    why.contains("device") || why.contains("not built") || why.contains("open"),
                    "{p}"
                );
            }
        }
    }

    #[test]
    fn named_encoders() {
        let s = EncoderSettings::default();
        assert!(matches!(choose("x264", &s), Err(ChoiceError::Unknown(_))));
        assert_eq!(choose("libx264", &s).unwrap().encoder.name, "libx264");
        let Err(ChoiceError::Unusable { why, .. }) = choose("libsvtav1", &s) else {
            panic!("AV1 output is refused")
        };
        assert!(why.contains("AV1"));
    }

    #[test]
    fn the_config_accepts_exactly_the_encoders_the_ladder_can_package() {
        let usable: Vec<&str> = CATALOGUE
            .iter()
            .filter(|e| e.unsupported.is_none())
            .map(|e| e.name)
            .collect();
        assert_eq!(usable, potok_config::ENCODERS);
    }

    #[test]
    fn probe_lists_every_encoder() {
        let all = probe_all(&EncoderSettings::default());
        assert_eq!(all.len(), CATALOGUE.len());
        let x264 = all.iter().find(|p| p.name == "libx264").unwrap();
        assert_eq!(x264.result, Ok(()));
        assert!(x264.to_string().contains("available"));
    }
}
