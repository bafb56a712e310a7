//! Owning wrappers over the few libavcodec / libswscale / libavutil objects the ladder uses.
//! Every `unsafe` block of the workspace is in this file; each one says why it is sound.
//!
//! Ownership rule: each wrapper owns exactly one FFmpeg object, frees it in `Drop`, and hands
//! out raw pointers only to the FFmpeg calls made here. Frames share their pixel buffers by
//! reference counting (`av_frame_ref`), which FFmpeg makes thread-safe with atomics, so one
//! decoded picture can go to every rung's thread without a copy.

use std::ffi::{CStr, CString};
use std::fmt;
use std::os::raw::c_int;
use std::ptr;

use ffmpeg_sys_next as ff;

/// An FFmpeg error code with the call that returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvError {
    /// The call.
    pub call: &'static str,
    /// The negative error code.
    pub code: i32,
}

impl AvError {
    fn new(call: &'static str, code: c_int) -> Self {
        AvError { call, code }
    }

    fn is_again(&self) -> bool {
        self.code == ff::AVERROR(libc::EAGAIN)
    }

    fn is_eof(&self) -> bool {
        self.code == ff::AVERROR_EOF
    }
}

impl fmt::Display for AvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0 as std::os::raw::c_char; 128];
        // SAFETY: `buf` is a writable buffer of the length passed; av_strerror always
        // NUL-terminates within it (it truncates longer messages).
        unsafe { ff::av_strerror(self.code, buf.as_mut_ptr(), buf.len()) };
        // SAFETY: NUL-terminated by av_strerror above, and `buf` outlives the borrow.
        let msg = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy();
        write!(f, "{}: {msg}", self.call)
    }
}

impl std::error::Error for AvError {}

fn check(call: &'static str, code: c_int) -> Result<c_int, AvError> {
    if code < 0 {
        Err(AvError::new(call, code))
    } else {
        Ok(code)
    }
}

/// Quiets FFmpeg's own logging to errors only (the ladder reports through `tracing`).
pub(crate) fn quiet_logs() {
    set_log_level(ff::AV_LOG_ERROR);
}

/// Silences FFmpeg's logging while probing devices (the probe reports why a device failed;
/// FFmpeg's own lines about missing drivers would only repeat it on stderr).
pub(crate) fn silence_logs() {
    set_log_level(ff::AV_LOG_QUIET);
}

fn set_log_level(level: i32) {
    // SAFETY: sets a global integer; FFmpeg reads it without further requirements.
    unsafe { ff::av_log_set_level(level) };
}

/// Video codecs the ladder decodes or encodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoCodec {
    /// H.264 / AVC.
    H264,
    /// H.265 / HEVC.
    Hevc,
    /// AV1.
    Av1,
}

impl VideoCodec {
    fn id(self) -> ff::AVCodecID {
        match self {
            VideoCodec::H264 => ff::AVCodecID::AV_CODEC_ID_H264,
            VideoCodec::Hevc => ff::AVCodecID::AV_CODEC_ID_HEVC,
            VideoCodec::Av1 => ff::AVCodecID::AV_CODEC_ID_AV1,
        }
    }
}

/// Pixel formats the ladder uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PixFmt {
    Yuv420p,
    Nv12,
}

impl PixFmt {
    fn raw(self) -> ff::AVPixelFormat {
        match self {
            PixFmt::Yuv420p => ff::AVPixelFormat::AV_PIX_FMT_YUV420P,
            PixFmt::Nv12 => ff::AVPixelFormat::AV_PIX_FMT_NV12,
        }
    }
}

/// A video frame; pixel buffers shared by reference count.
pub(crate) struct Frame(*mut ff::AVFrame);

// SAFETY: an AVFrame is a plain struct owned by this wrapper alone; its buffers are
// AVBufferRefs whose reference counts are atomic, so moving the owner to another thread
// (and sharing buffers through `share`) is what FFmpeg supports.
unsafe impl Send for Frame {}

impl Frame {
    fn alloc() -> Result<Self, AvError> {
        // SAFETY: av_frame_alloc has no preconditions; null means out of memory.
        let p = unsafe { ff::av_frame_alloc() };
        if p.is_null() {
            return Err(AvError::new("av_frame_alloc", ff::AVERROR(libc::ENOMEM)));
        }
        Ok(Frame(p))
    }

    /// A new frame of `width`×`height` in `fmt` with freshly allocated buffers.
    pub(crate) fn new_video(width: u32, height: u32, fmt: PixFmt) -> Result<Self, AvError> {
        let f = Frame::alloc()?;
        // SAFETY: `f.0` is a valid, empty frame; width/height/format are set before
        // av_frame_get_buffer, which allocates planes for exactly them.
        unsafe {
            (*f.0).width = width as c_int;
            (*f.0).height = height as c_int;
            (*f.0).format = fmt.raw() as c_int;
            check("av_frame_get_buffer", ff::av_frame_get_buffer(f.0, 0))?;
        }
        Ok(f)
    }

    /// Another reference to the same picture (no pixel copy).
    pub(crate) fn share(&self) -> Result<Self, AvError> {
        let f = Frame::alloc()?;
        // SAFETY: `f.0` is empty (as av_frame_ref requires) and `self.0` a valid frame.
        check("av_frame_ref", unsafe { ff::av_frame_ref(f.0, self.0) })?;
        Ok(f)
    }

    pub(crate) fn pts(&self) -> Option<i64> {
        // SAFETY: `self.0` is a valid frame for the wrapper's lifetime.
        let f = unsafe { &*self.0 };
        let t = if f.best_effort_timestamp != ff::AV_NOPTS_VALUE {
            f.best_effort_timestamp
        } else {
            f.pts
        };
        (t != ff::AV_NOPTS_VALUE).then_some(t)
    }

    pub(crate) fn set_pts(&mut self, pts: i64) {
        // SAFETY: `self.0` is valid and exclusively ours (`&mut self`).
        unsafe { (*self.0).pts = pts };
    }

    /// Asks the encoder for a keyframe at this picture.
    pub(crate) fn force_keyframe(&mut self, on: bool) {
        // SAFETY: `self.0` is valid and exclusively ours (`&mut self`).
        unsafe {
            (*self.0).pict_type = if on {
                ff::AVPictureType::AV_PICTURE_TYPE_I
            } else {
                ff::AVPictureType::AV_PICTURE_TYPE_NONE
            };
        }
    }

    pub(crate) fn size(&self) -> (u32, u32) {
        // SAFETY: `self.0` is a valid frame.
        let f = unsafe { &*self.0 };
        (f.width.max(0) as u32, f.height.max(0) as u32)
    }

    fn format(&self) -> c_int {
        // SAFETY: `self.0` is a valid frame.
        unsafe { (*self.0).format }
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        // SAFETY: we own the frame; av_frame_free unrefs its buffers and nulls the pointer.
        unsafe { ff::av_frame_free(&mut self.0) };
    }
}

struct Packet(*mut ff::AVPacket);

// SAFETY: a packet is owned by the one codec wrapper that holds it and moves with it.
unsafe impl Send for Packet {}

impl Packet {
    fn alloc() -> Result<Self, AvError> {
        // SAFETY: no preconditions; null means out of memory.
        let p = unsafe { ff::av_packet_alloc() };
        if p.is_null() {
            return Err(AvError::new("av_packet_alloc", ff::AVERROR(libc::ENOMEM)));
        }
        Ok(Packet(p))
    }
}

impl Drop for Packet {
    fn drop(&mut self) {
        // SAFETY: we own the packet; av_packet_free unrefs its data and nulls the pointer.
        unsafe { ff::av_packet_free(&mut self.0) };
    }
}

/// An owned codec context.
struct Context(*mut ff::AVCodecContext);

// SAFETY: a codec context is used by one thread at a time (the wrapper is moved, never
// shared), which is all libavcodec requires.
unsafe impl Send for Context {}

impl Context {
    fn new(codec: *const ff::AVCodec) -> Result<Self, AvError> {
        // SAFETY: `codec` is a codec descriptor from avcodec_find_*, valid forever.
        let p = unsafe { ff::avcodec_alloc_context3(codec) };
        if p.is_null() {
            return Err(AvError::new(
                "avcodec_alloc_context3",
                ff::AVERROR(libc::ENOMEM),
            ));
        }
        Ok(Context(p))
    }

    fn set_extradata(&mut self, data: &[u8]) -> Result<(), AvError> {
        let pad = ff::AV_INPUT_BUFFER_PADDING_SIZE as usize;
        // SAFETY: av_mallocz returns a zeroed buffer of the size asked (or null); we copy
        // `data.len()` bytes into it, leaving the zero padding FFmpeg's readers rely on. The
        // context owns the buffer from here and frees it in avcodec_free_context.
        unsafe {
            let buf = ff::av_mallocz(data.len() + pad) as *mut u8;
            if buf.is_null() {
                return Err(AvError::new("av_mallocz", ff::AVERROR(libc::ENOMEM)));
            }
            ptr::copy_nonoverlapping(data.as_ptr(), buf, data.len());
            (*self.0).extradata = buf;
            (*self.0).extradata_size = data.len() as c_int;
        }
        Ok(())
    }

    fn set_option(&mut self, key: &str, value: &str) -> Result<(), AvError> {
        let (Ok(k), Ok(v)) = (CString::new(key), CString::new(value)) else {
            return Err(AvError::new("av_opt_set", ff::AVERROR(libc::EINVAL)));
        };
        // SAFETY: the context is valid; AV_OPT_SEARCH_CHILDREN looks in the context and
        // its codec's private options. Both strings are NUL-terminated and live across the call.
        check("av_opt_set", unsafe {
            ff::av_opt_set(
                self.0 as *mut _,
                k.as_ptr(),
                v.as_ptr(),
                ff::AV_OPT_SEARCH_CHILDREN as c_int,
            )
        })
        .map(drop)
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: we own the context; this closes the codec and frees extradata and
        // hw_frames_ctx references.
        unsafe { ff::avcodec_free_context(&mut self.0) };
    }
}

/// A video decoder fed with length-prefixed samples and the codec's configuration record.
pub(crate) struct Decoder {
    ctx: Context,
    packet: Packet,
}

impl Decoder {
    pub(crate) fn open(codec: VideoCodec, record: &[u8], threads: u32) -> Result<Self, AvError> {
        // SAFETY: plain lookup in FFmpeg's static codec table.
        let dec = unsafe { ff::avcodec_find_decoder(codec.id()) };
        if dec.is_null() {
            return Err(AvError::new(
                "avcodec_find_decoder",
                ff::AVERROR_DECODER_NOT_FOUND,
            ));
        }
        let mut ctx = Context::new(dec)?;
        ctx.set_extradata(record)?;
        // SAFETY: the context is valid and not opened yet, so its fields may be set; the
        // codec pointer matches the one it was allocated for.
        unsafe {
            (*ctx.0).pkt_timebase = ff::AVRational {
                num: 1,
                den: potok_media::frame::TIMEBASE as c_int,
            };
            (*ctx.0).thread_count = threads as c_int;
            // Slice threads only: frame threads would hold one picture per thread back,
            // which is latency every rung inherits.
            (*ctx.0).thread_type = ff::FF_THREAD_SLICE;
            check(
                "avcodec_open2",
                ff::avcodec_open2(ctx.0, dec, ptr::null_mut()),
            )?;
        }
        Ok(Decoder {
            ctx,
            packet: Packet::alloc()?,
        })
    }

    /// Sends one sample; `None` drains the decoder at the end.
    pub(crate) fn send(&mut self, sample: Option<(&[u8], i64, i64, bool)>) -> Result<(), AvError> {
        let Some((data, pts, dts, key)) = sample else {
            // SAFETY: a null packet starts draining; the context is open.
            let r = unsafe { ff::avcodec_send_packet(self.ctx.0, ptr::null()) };
            return match check("avcodec_send_packet", r) {
                Err(e) if e.is_eof() => Ok(()),
                other => other.map(drop),
            };
        };
        // SAFETY: av_new_packet allocates `len` bytes plus zeroed padding into our empty
        // packet; we fill exactly `len` bytes, send it (the decoder takes its own reference
        // or copy), and unref our packet before returning so it is empty for the next call.
        unsafe {
            check(
                "av_new_packet",
                ff::av_new_packet(self.packet.0, data.len() as c_int),
            )?;
            ptr::copy_nonoverlapping(data.as_ptr(), (*self.packet.0).data, data.len());
            (*self.packet.0).pts = pts;
            (*self.packet.0).dts = dts;
            if key {
                (*self.packet.0).flags |= ff::AV_PKT_FLAG_KEY as c_int;
            }
            let r = ff::avcodec_send_packet(self.ctx.0, self.packet.0);
            ff::av_packet_unref(self.packet.0);
            check("avcodec_send_packet", r).map(drop)
        }
    }

    /// The next decoded picture, if one is ready.
    pub(crate) fn receive(&mut self) -> Result<Option<Frame>, AvError> {
        let f = Frame::alloc()?;
        // SAFETY: the context is open and `f.0` an empty frame the decoder may fill.
        let r = unsafe { ff::avcodec_receive_frame(self.ctx.0, f.0) };
        match check("avcodec_receive_frame", r) {
            Ok(_) => Ok(Some(f)),
            Err(e) if e.is_again() || e.is_eof() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The frame rate the bitstream declares, if any.
    pub(crate) fn frame_rate(&self) -> Option<f64> {
        // SAFETY: the context is valid; reading a plain field.
        let r = unsafe { (*self.ctx.0).framerate };
        (r.num > 0 && r.den > 0).then(|| f64::from(r.num) / f64::from(r.den))
    }
}

/// Converts pictures to one output size and format (bicubic).
pub(crate) struct Scaler {
    ctx: *mut ff::SwsContext,
    out: (u32, u32),
    fmt: PixFmt,
}

// SAFETY: a SwsContext is used by the one thread that owns the wrapper.
unsafe impl Send for Scaler {}

impl Scaler {
    pub(crate) fn new(width: u32, height: u32, fmt: PixFmt) -> Self {
        Scaler {
            ctx: ptr::null_mut(),
            out: (width, height),
            fmt,
        }
    }

    pub(crate) fn scale(&mut self, src: &Frame) -> Result<Frame, AvError> {
        let (sw, sh) = src.size();
        // SAFETY: sws_getCachedContext reuses `self.ctx` when the parameters match and
        // otherwise frees it and returns a new one (null on failure). The source format
        // is the decoder's, a valid AVPixelFormat value.
        self.ctx = unsafe {
            ff::sws_getCachedContext(
                self.ctx,
                sw as c_int,
                sh as c_int,
                std::mem::transmute::<c_int, ff::AVPixelFormat>(src.format()),
                self.out.0 as c_int,
                self.out.1 as c_int,
                self.fmt.raw(),
                ff::SWS_BICUBIC as c_int,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null(),
            )
        };
        if self.ctx.is_null() {
            return Err(AvError::new(
                "sws_getCachedContext",
                ff::AVERROR(libc::EINVAL),
            ));
        }
        let dst = Frame::new_video(self.out.0, self.out.1, self.fmt)?;
        // SAFETY: both frames are valid with allocated planes of the sizes and formats the
        // context was made for; the plane/stride arrays are read for the formats' planes.
        unsafe {
            check(
                "sws_scale",
                ff::sws_scale(
                    self.ctx,
                    (*src.0).data.as_ptr() as *const *const u8,
                    (*src.0).linesize.as_ptr(),
                    0,
                    sh as c_int,
                    (*dst.0).data.as_ptr(),
                    (*dst.0).linesize.as_ptr(),
                ),
            )?;
            ff::av_frame_copy_props(dst.0, src.0);
        }
        Ok(dst)
    }
}

impl Drop for Scaler {
    fn drop(&mut self) {
        if !self.ctx.is_null() {
            // SAFETY: we own the context.
            unsafe { ff::sws_freeContext(self.ctx) };
        }
    }
}

/// A hardware device (VAAPI, QSV, CUDA).
pub(crate) struct HwDevice(*mut ff::AVBufferRef);

// SAFETY: AVBufferRef reference counting is atomic and hw device contexts are meant to be
// shared between codec contexts on different threads.
unsafe impl Send for HwDevice {}

/// Hardware device kinds encoders need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HwKind {
    /// NVIDIA (NVENC).
    Cuda,
    /// VA-API (Intel/AMD on Linux).
    Vaapi,
    /// Intel Quick Sync.
    Qsv,
}

impl HwKind {
    fn device_type(self) -> ff::AVHWDeviceType {
        match self {
            HwKind::Cuda => ff::AVHWDeviceType::AV_HWDEVICE_TYPE_CUDA,
            HwKind::Vaapi => ff::AVHWDeviceType::AV_HWDEVICE_TYPE_VAAPI,
            HwKind::Qsv => ff::AVHWDeviceType::AV_HWDEVICE_TYPE_QSV,
        }
    }

    fn frame_format(self) -> ff::AVPixelFormat {
        match self {
            HwKind::Cuda => ff::AVPixelFormat::AV_PIX_FMT_CUDA,
            HwKind::Vaapi => ff::AVPixelFormat::AV_PIX_FMT_VAAPI,
            HwKind::Qsv => ff::AVPixelFormat::AV_PIX_FMT_QSV,
        }
    }
}

impl HwDevice {
    /// Opens the default device of `kind`.
    pub(crate) fn open(kind: HwKind) -> Result<Self, AvError> {
        let mut dev = ptr::null_mut();
        // SAFETY: `dev` receives a new reference on success; null device name and options
        // pick the system default device.
        check("av_hwdevice_ctx_create", unsafe {
            ff::av_hwdevice_ctx_create(
                &mut dev,
                kind.device_type(),
                ptr::null(),
                ptr::null_mut(),
                0,
            )
        })?;
        Ok(HwDevice(dev))
    }
}

impl Drop for HwDevice {
    fn drop(&mut self) {
        // SAFETY: we own one reference.
        unsafe { ff::av_buffer_unref(&mut self.0) };
    }
}

/// Everything an encoder is opened with.
#[derive(Clone, Debug)]
pub(crate) struct EncoderParams {
    pub(crate) name: String,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) fps: f64,
    pub(crate) bitrate: u64,
    pub(crate) max_bitrate: u64,
    pub(crate) gop: u32,
    pub(crate) threads: u32,
    /// Upload software frames to this device before encoding (VAAPI, QSV).
    pub(crate) upload: Option<HwKind>,
    /// Private options (preset, profile, ...), applied in order; unknown ones are errors.
    pub(crate) options: Vec<(String, String)>,
}

/// One encoded packet.
pub(crate) struct Encoded {
    pub(crate) data: Vec<u8>,
    pub(crate) pts: i64,
    pub(crate) keyframe: bool,
}

/// An opened video encoder.
pub(crate) struct Encoder {
    ctx: Context,
    packet: Packet,
    frames: Option<*mut ff::AVBufferRef>,
    _device: Option<HwDevice>,
}

// SAFETY: the context and hw frames reference are used by the one thread owning the
// encoder; hw frame pools are reference-counted with atomics.
unsafe impl Send for Encoder {}

impl Encoder {
    pub(crate) fn open(p: &EncoderParams, device: Option<HwDevice>) -> Result<Self, AvError> {
        let name = CString::new(p.name.as_str())
            .map_err(|_| AvError::new("avcodec_find_encoder_by_name", ff::AVERROR(libc::EINVAL)))?;
        // SAFETY: plain lookup by NUL-terminated name in FFmpeg's static codec table.
        let enc = unsafe { ff::avcodec_find_encoder_by_name(name.as_ptr()) };
        if enc.is_null() {
            return Err(AvError::new(
                "avcodec_find_encoder_by_name",
                ff::AVERROR_ENCODER_NOT_FOUND,
            ));
        }
        let ctx = Context::new(enc)?;
        let fps = rational(p.fps);
        // SAFETY: the context is valid and not opened; plain field assignments.
        unsafe {
            let c = &mut *ctx.0;
            c.width = p.width as c_int;
            c.height = p.height as c_int;
            c.time_base = ff::AVRational {
                num: 1,
                den: potok_media::frame::TIMEBASE as c_int,
            };
            c.framerate = fps;
            c.pix_fmt = PixFmt::Yuv420p.raw();
            c.bit_rate = p.bitrate as i64;
            c.rc_max_rate = p.max_bitrate as i64;
            c.rc_buffer_size = p.max_bitrate.min(i32::MAX as u64) as c_int;
            c.gop_size = p.gop as c_int;
            c.max_b_frames = 0;
            c.thread_count = p.threads as c_int;
            c.flags |= ff::AV_CODEC_FLAG_GLOBAL_HEADER as c_int;
        }
        let mut frames = None;
        if let (Some(kind), Some(dev)) = (p.upload, device.as_ref()) {
            // SAFETY: `dev.0` is a valid device reference; the frames context takes its own
            // reference; fields are set before av_hwframe_ctx_init as the API requires.
            unsafe {
                let fr = ff::av_hwframe_ctx_alloc(dev.0);
                if fr.is_null() {
                    return Err(AvError::new(
                        "av_hwframe_ctx_alloc",
                        ff::AVERROR(libc::ENOMEM),
                    ));
                }
                let fc = &mut *((*fr).data as *mut ff::AVHWFramesContext);
                fc.format = kind.frame_format();
                fc.sw_format = PixFmt::Nv12.raw();
                fc.width = p.width as c_int;
                fc.height = p.height as c_int;
                fc.initial_pool_size = 20;
                let mut fr_owned = fr;
                if let Err(e) = check("av_hwframe_ctx_init", ff::av_hwframe_ctx_init(fr)) {
                    ff::av_buffer_unref(&mut fr_owned);
                    return Err(e);
                }
                (*ctx.0).pix_fmt = kind.frame_format();
                (*ctx.0).hw_frames_ctx = ff::av_buffer_ref(fr);
                frames = Some(fr);
            }
        } else if let Some(dev) = device.as_ref() {
            // SAFETY: gives the context its own reference to the device.
            unsafe { (*ctx.0).hw_device_ctx = ff::av_buffer_ref(dev.0) };
        }
        let mut enc_wrapper = Encoder {
            ctx,
            packet: Packet::alloc()?,
            frames,
            _device: device,
        };
        for (k, v) in &p.options {
            enc_wrapper.ctx.set_option(k, v)?;
        }
        // SAFETY: the context was allocated for `enc` and is fully configured.
        check("avcodec_open2", unsafe {
            ff::avcodec_open2(enc_wrapper.ctx.0, enc, ptr::null_mut())
        })?;
        Ok(enc_wrapper)
    }

    /// Whether frames must be NV12 (they are uploaded to a hardware surface).
    pub(crate) fn wants_nv12(&self) -> bool {
        self.frames.is_some()
    }

    /// The global header (parameter sets) the encoder produced on open.
    pub(crate) fn extradata(&self) -> Vec<u8> {
        // SAFETY: after avcodec_open2 extradata is null or `extradata_size` valid bytes.
        unsafe {
            let c = &*self.ctx.0;
            if c.extradata.is_null() || c.extradata_size <= 0 {
                return Vec::new();
            }
            std::slice::from_raw_parts(c.extradata, c.extradata_size as usize).to_vec()
        }
    }

    /// Sends a picture; `None` drains the encoder at the end.
    pub(crate) fn send(&mut self, frame: Option<&Frame>) -> Result<(), AvError> {
        let Some(frame) = frame else {
            // SAFETY: a null frame starts draining; the context is open.
            let r = unsafe { ff::avcodec_send_frame(self.ctx.0, ptr::null()) };
            return match check("avcodec_send_frame", r) {
                Err(e) if e.is_eof() => Ok(()),
                other => other.map(drop),
            };
        };
        if let Some(frames) = self.frames {
            let hw = Frame::alloc()?;
            // SAFETY: `frames` is our initialised hw frames context; `hw.0` is empty and gets
            // a surface from its pool; the transfer copies the NV12 software frame of the
            // same size into it; properties (pts, pict_type) are copied after.
            unsafe {
                check(
                    "av_hwframe_get_buffer",
                    ff::av_hwframe_get_buffer(frames, hw.0, 0),
                )?;
                check(
                    "av_hwframe_transfer_data",
                    ff::av_hwframe_transfer_data(hw.0, frame.0, 0),
                )?;
                ff::av_frame_copy_props(hw.0, frame.0);
                check(
                    "avcodec_send_frame",
                    ff::avcodec_send_frame(self.ctx.0, hw.0),
                )
                .map(drop)
            }
        } else {
            // SAFETY: the context is open and `frame.0` a valid frame in the format and
            // size the encoder was opened with; the encoder takes its own reference.
            check("avcodec_send_frame", unsafe {
                ff::avcodec_send_frame(self.ctx.0, frame.0)
            })
            .map(drop)
        }
    }

    /// The next encoded packet, if one is ready.
    pub(crate) fn receive(&mut self) -> Result<Option<Encoded>, AvError> {
        // SAFETY: the context is open and our packet empty; on success we copy its bytes
        // out and unref it so it is empty again.
        unsafe {
            let r = ff::avcodec_receive_packet(self.ctx.0, self.packet.0);
            match check("avcodec_receive_packet", r) {
                Ok(_) => {}
                Err(e) if e.is_again() || e.is_eof() => return Ok(None),
                Err(e) => return Err(e),
            }
            let p = &*self.packet.0;
            let data = if p.data.is_null() || p.size <= 0 {
                Vec::new()
            } else {
                std::slice::from_raw_parts(p.data, p.size as usize).to_vec()
            };
            let out = Encoded {
                data,
                pts: p.pts,
                keyframe: p.flags & ff::AV_PKT_FLAG_KEY as c_int != 0,
            };
            ff::av_packet_unref(self.packet.0);
            Ok(Some(out))
        }
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        if let Some(mut f) = self.frames.take() {
            // SAFETY: we own this one reference (the context holds its own).
            unsafe { ff::av_buffer_unref(&mut f) };
        }
    }
}

/// Whether this FFmpeg build has an encoder called `name`.
pub(crate) fn has_encoder(name: &str) -> bool {
    let Ok(name) = CString::new(name) else {
        return false;
    };
    // SAFETY: plain lookup by NUL-terminated name.
    !unsafe { ff::avcodec_find_encoder_by_name(name.as_ptr()) }.is_null()
}

/// A frame rate as a rational: whole numbers exactly, NTSC rates as N×1000/1001.
fn rational(fps: f64) -> ff::AVRational {
    let fps = if fps.is_finite() && fps > 0.0 && fps < 1000.0 {
        fps
    } else {
        30.0
    };
    let whole = fps.round();
    if (fps - whole).abs() < 0.001 {
        return ff::AVRational {
            num: whole as c_int,
            den: 1,
        };
    }
    let ntsc = (fps * 1.001).round();
    if (fps - ntsc * 1000.0 / 1001.0).abs() < 0.001 {
        return ff::AVRational {
            num: (ntsc * 1000.0) as c_int,
            den: 1001,
        };
    }
    ff::AVRational {
        num: (fps * 1000.0).round() as c_int,
        den: 1000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_like_ffmpeg() {
        let e = AvError::new("avcodec_open2", ff::AVERROR(libc::EINVAL));
        assert_eq!(e.to_string(), "avcodec_open2: Invalid argument");
    }

    #[test]
    fn frame_rates() {
        let r = rational(30.0);
        assert_eq!((r.num, r.den), (30, 1));
        let r = rational(29.97);
        assert_eq!((r.num, r.den), (30000, 1001));
        let r = rational(f64::NAN);
        assert_eq!((r.num, r.den), (30, 1));
    }
}
