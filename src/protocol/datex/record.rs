//! Datex-Ohmeda records (the unescaped frame contents), all little-endian.
//!
//! ```text
//! header (40 bytes)
//!   0  r_len      i16  whole record incl. header
//!   2  r_nbr      u8   record number
//!   3  dri_level  u8   interface revision level
//!   4  plug_id    u16
//!   6  r_time     u32  unix time, seconds
//!  10  reserved   4 bytes
//!  14  r_maintype i16  0 = physiological database (DRI_MT_PHDB), 1 = waveforms, 4 = alarms
//!  16  8 × { sr_offset i16 (from the end of the header), sr_type u8 }, sr_type 0xFF ends the list
//! data (up to 1450 bytes): the subrecords
//! ```
//!
//! A physiological subrecord (`dri_phdb`, 278 bytes) is `time u32`, one 270-byte class
//! (basic, ext1, ext2 or ext3), `marker u8`, `reserved u8`, `cl_drilvl_subt u16` whose bits
//! 8..11 name the class. A class is a row of groups; a group is `status u32` (bit 0 the module
//! exists, bit 1 it is active, the rest per group), `label u16`, then 16-bit values.
//!
//! A request (host → monitor) is a record of main type 0 whose subrecords (type 0) are
//! `phdb_rcrd_type u8` (1 displayed values, 2 10 s trend, 3 60 s trend), `tx_interval i16`
//! (seconds; 0 stops), `phdb_class_bf u32` (bit 0 denies basic, bits 1..3 ask for ext1..3),
//! `reserved i16`.
//!
//! Parsing never trusts an offset or length: everything is read through checked slices.

use thiserror::Error;

use super::codes::{DatexParam, PressField};

/// Bytes in a record header.
pub const HEADER_LEN: usize = 40;
/// The largest record of the interface (header + 1450 data bytes).
pub const MAX_RECORD_LEN: usize = 1490;
/// Subrecord descriptors in a header.
pub const MAX_SUBRECORDS: usize = 8;
/// Subrecord type that ends the descriptor list.
pub const DRI_EOL_SUBR_LIST: u8 = 0xFF;

/// Main type: physiological data and its transmission requests.
pub const DRI_MT_PHDB: i16 = 0;
/// Main type: waveform data.
pub const DRI_MT_WAVE: i16 = 1;
/// Main type: alarms.
pub const DRI_MT_ALARM: i16 = 4;

/// PHDB subrecord type: a transmission request (host → monitor).
pub const DRI_PH_XMIT_REQ: u8 = 0;
/// PHDB subrecord type: displayed values.
pub const DRI_PH_DISPL: u8 = 1;
/// PHDB subrecord type: 10 s trended values.
pub const DRI_PH_10S_TREND: u8 = 2;
/// PHDB subrecord type: 60 s trended values.
pub const DRI_PH_60S_TREND: u8 = 3;
/// PHDB subrecord type: auxiliary information (not decoded).
pub const DRI_PH_AUX_INFO: u8 = 4;

/// Bytes of one physiological class.
pub const PHDB_CLASS_LEN: usize = 270;
/// Bytes of one physiological subrecord.
pub const PHDB_SUBRECORD_LEN: usize = 278;
/// Bytes of one transmission request subrecord.
pub const PHDB_REQUEST_LEN: usize = 9;
/// At most this many physiological subrecords fit one record.
pub const MAX_PHDB_SUBRECORDS: usize = 5;

/// `phdb_class_bf`: do not send the basic class.
pub const DRI_PHDBCL_DENY_BASIC: u32 = 0x0001;
/// `phdb_class_bf`: send the ext1 class.
pub const DRI_PHDBCL_REQ_EXT1: u32 = 0x0002;
/// `phdb_class_bf`: send the ext2 class.
pub const DRI_PHDBCL_REQ_EXT2: u32 = 0x0004;
/// `phdb_class_bf`: send the ext3 class.
pub const DRI_PHDBCL_REQ_EXT3: u32 = 0x0008;

/// Group status bit 0: the measurement module exists.
pub const STATUS_EXISTS: u32 = 1 << 0;
/// Group status bit 1: the measurement is active.
pub const STATUS_ACTIVE: u32 = 1 << 1;

/// Why a framed record could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RecordError {
    /// Fewer bytes than a header.
    #[error("record of {len} bytes is shorter than the {HEADER_LEN}-byte header")]
    TooShort { len: usize },
    /// `r_len` is below the header size or beyond the bytes received.
    #[error("record length field says {r_len} bytes but {len} bytes arrived")]
    BadLength { r_len: i16, len: usize },
    /// A subrecord offset points outside the data area.
    #[error("subrecord {index} at offset {offset} lies outside the {data_len} data bytes")]
    SubrecordOutOfBounds {
        index: usize,
        offset: i16,
        data_len: usize,
    },
    /// A physiological subrecord is cut short.
    #[error("physiological subrecord of {len} bytes, {PHDB_SUBRECORD_LEN} expected")]
    ShortPhdb { len: usize },
    /// `cl_drilvl_subt` names no known class.
    #[error("unknown physiological data class {class}")]
    UnknownClass { class: u8 },
    /// More subrecords or bytes than a record holds (encoding only).
    #[error("record would exceed {MAX_SUBRECORDS} subrecords or {MAX_RECORD_LEN} bytes")]
    TooLarge,
}

fn rd_u8(b: &[u8], at: usize) -> Option<u8> {
    b.get(at).copied()
}

fn rd_u16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([*s.first()?, *s.get(1)?]))
}

fn rd_i16(b: &[u8], at: usize) -> Option<i16> {
    rd_u16(b, at).map(|v| v as i16)
}

fn rd_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(s);
    Some(u32::from_le_bytes(a))
}

fn wr(b: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = at
        .checked_add(bytes.len())
        .and_then(|end| b.get_mut(at..end))
    {
        dst.copy_from_slice(bytes);
    }
}

/// One subrecord descriptor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubrecordDesc {
    /// Offset from the start of the data area (right after the header).
    pub offset: i16,
    pub sr_type: u8,
}

/// A record header with its subrecord descriptors (up to the `0xFF` end marker).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordHeader {
    pub r_len: i16,
    pub r_nbr: u8,
    /// Interface revision level of the sender.
    pub dri_level: u8,
    pub plug_id: u16,
    /// Unix time (seconds) the record was sent.
    pub r_time: u32,
    pub main_type: i16,
    descs: [SubrecordDesc; MAX_SUBRECORDS],
    count: usize,
}

impl RecordHeader {
    /// The descriptors before the end marker.
    pub fn subrecords(&self) -> &[SubrecordDesc] {
        self.descs.get(..self.count).unwrap_or_default()
    }
}

/// A parsed record borrowing the frame's bytes.
#[derive(Clone, Debug)]
pub struct Record<'a> {
    /// The header and its subrecord descriptors.
    pub header: RecordHeader,
    /// The data area (`r_len` − 40 bytes after the header).
    pub data: &'a [u8],
}

impl<'a> Record<'a> {
    /// Checks the header and the length field. Bytes after `r_len` are ignored.
    pub fn parse(bytes: &'a [u8]) -> Result<Record<'a>, RecordError> {
        let len = bytes.len();
        if len < HEADER_LEN {
            return Err(RecordError::TooShort { len });
        }
        let r_len = rd_i16(bytes, 0).ok_or(RecordError::TooShort { len })?;
        let data = usize::try_from(r_len)
            .ok()
            .filter(|&n| n >= HEADER_LEN)
            .and_then(|n| bytes.get(HEADER_LEN..n))
            .ok_or(RecordError::BadLength { r_len, len })?;
        let mut header = RecordHeader {
            r_len,
            r_nbr: rd_u8(bytes, 2).unwrap_or(0),
            dri_level: rd_u8(bytes, 3).unwrap_or(0),
            plug_id: rd_u16(bytes, 4).unwrap_or(0),
            r_time: rd_u32(bytes, 6).unwrap_or(0),
            main_type: rd_i16(bytes, 14).unwrap_or(0),
            ..RecordHeader::default()
        };
        for i in 0..MAX_SUBRECORDS {
            let at = 16 + 3 * i;
            let (Some(offset), Some(sr_type)) = (rd_i16(bytes, at), rd_u8(bytes, at + 2)) else {
                break;
            };
            if sr_type == DRI_EOL_SUBR_LIST {
                break;
            }
            if let Some(d) = header.descs.get_mut(i) {
                *d = SubrecordDesc { offset, sr_type };
                header.count = i + 1;
            }
        }
        Ok(Record { header, data })
    }

    /// Subrecord `index`: its type and the data from its offset to the end of the record. An
    /// index past the descriptors is out of bounds (offset −1).
    pub fn subrecord(&self, index: usize) -> Result<(u8, &'a [u8]), RecordError> {
        let out_of_bounds = |offset| RecordError::SubrecordOutOfBounds {
            index,
            offset,
            data_len: self.data.len(),
        };
        let desc = self
            .header
            .subrecords()
            .get(index)
            .copied()
            .ok_or(out_of_bounds(-1))?;
        usize::try_from(desc.offset)
            .ok()
            .and_then(|o| self.data.get(o..))
            .map(|d| (desc.sr_type, d))
            .ok_or(out_of_bounds(desc.offset))
    }
}

/// The header fields a sender chooses; lengths and offsets are computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordMeta {
    pub r_nbr: u8,
    pub dri_level: u8,
    pub plug_id: u16,
    pub r_time: u32,
    pub main_type: i16,
}

/// Builds a record from `(sr_type, body)` subrecords laid end to end.
pub fn build_record(meta: &RecordMeta, subrecords: &[(u8, &[u8])]) -> Result<Vec<u8>, RecordError> {
    if subrecords.len() > MAX_SUBRECORDS {
        return Err(RecordError::TooLarge);
    }
    let data_len: usize = subrecords.iter().map(|(_, b)| b.len()).sum();
    let total = HEADER_LEN + data_len;
    if total > MAX_RECORD_LEN {
        return Err(RecordError::TooLarge);
    }
    let mut rec = vec![0u8; HEADER_LEN];
    wr(&mut rec, 0, &(total as i16).to_le_bytes());
    wr(&mut rec, 2, &[meta.r_nbr, meta.dri_level]);
    wr(&mut rec, 4, &meta.plug_id.to_le_bytes());
    wr(&mut rec, 6, &meta.r_time.to_le_bytes());
    wr(&mut rec, 14, &meta.main_type.to_le_bytes());
    let mut offset = 0usize;
    for (i, (sr_type, body)) in subrecords.iter().enumerate() {
        let at = 16 + 3 * i;
        wr(&mut rec, at, &(offset as i16).to_le_bytes());
        wr(&mut rec, at + 2, &[*sr_type]);
        offset += body.len();
    }
    if subrecords.len() < MAX_SUBRECORDS {
        wr(
            &mut rec,
            16 + 3 * subrecords.len() + 2,
            &[DRI_EOL_SUBR_LIST],
        );
    }
    for (_, body) in subrecords {
        rec.extend_from_slice(body);
    }
    Ok(rec)
}

// ---------------------------------------------------------------- requests

/// One transmission request subrecord.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhdbRequest {
    /// [`DRI_PH_DISPL`], [`DRI_PH_10S_TREND`] or [`DRI_PH_60S_TREND`].
    pub record_type: u8,
    /// Seconds between records; 0 stops the transmission.
    pub interval_s: i16,
    /// Classes wanted, `DRI_PHDBCL_*` bits.
    pub class_bf: u32,
}

impl PhdbRequest {
    /// Displayed values every `interval_s` seconds, of the given classes.
    pub fn displayed(interval_s: u16, class_bf: u32) -> Self {
        PhdbRequest {
            record_type: DRI_PH_DISPL,
            interval_s: i16::try_from(interval_s).unwrap_or(i16::MAX),
            class_bf,
        }
    }

    /// A 10 s ([`DRI_PH_10S_TREND`]) or 60 s ([`DRI_PH_60S_TREND`]) trend subscription.
    pub fn trend(record_type: u8, class_bf: u32) -> Self {
        let interval_s = if record_type == DRI_PH_60S_TREND {
            60
        } else {
            10
        };
        PhdbRequest {
            record_type,
            interval_s,
            class_bf,
        }
    }

    /// Stops transmission of `record_type`.
    pub fn stop(record_type: u8) -> Self {
        PhdbRequest {
            record_type,
            interval_s: 0,
            class_bf: DRI_PHDBCL_DENY_BASIC,
        }
    }

    /// A stop: interval 0, or no class asked for.
    pub fn is_stop(&self) -> bool {
        self.interval_s == 0
            || (self.class_bf & DRI_PHDBCL_DENY_BASIC != 0
                && self.class_bf
                    & (DRI_PHDBCL_REQ_EXT1 | DRI_PHDBCL_REQ_EXT2 | DRI_PHDBCL_REQ_EXT3)
                    == 0)
    }

    /// The classes this request asks for.
    pub fn classes(&self) -> impl Iterator<Item = PhdbClass> + '_ {
        PhdbClass::ALL.into_iter().filter(|c| match c {
            PhdbClass::Basic => self.class_bf & DRI_PHDBCL_DENY_BASIC == 0,
            PhdbClass::Ext1 => self.class_bf & DRI_PHDBCL_REQ_EXT1 != 0,
            PhdbClass::Ext2 => self.class_bf & DRI_PHDBCL_REQ_EXT2 != 0,
            PhdbClass::Ext3 => self.class_bf & DRI_PHDBCL_REQ_EXT3 != 0,
        })
    }

    /// The 9-byte request subrecord.
    pub fn encode(&self) -> [u8; PHDB_REQUEST_LEN] {
        let mut b = [0u8; PHDB_REQUEST_LEN];
        wr(&mut b, 0, &[self.record_type]);
        wr(&mut b, 1, &self.interval_s.to_le_bytes());
        wr(&mut b, 3, &self.class_bf.to_le_bytes());
        b
    }

    /// Reads a request subrecord (`None` if shorter than its fields).
    pub fn parse(b: &[u8]) -> Option<Self> {
        Some(PhdbRequest {
            record_type: rd_u8(b, 0)?,
            interval_s: rd_i16(b, 1)?,
            class_bf: rd_u32(b, 3)?,
        })
    }
}

/// A request record (49 bytes for one request) at interface level `level`.
pub fn request_record(level: u8, requests: &[PhdbRequest]) -> Result<Vec<u8>, RecordError> {
    let bodies: Vec<[u8; PHDB_REQUEST_LEN]> = requests.iter().map(PhdbRequest::encode).collect();
    let subs: Vec<(u8, &[u8])> = bodies
        .iter()
        .map(|b| (DRI_PH_XMIT_REQ, b.as_slice()))
        .collect();
    let meta = RecordMeta {
        dri_level: level,
        main_type: DRI_MT_PHDB,
        ..RecordMeta::default()
    };
    build_record(&meta, &subs)
}

/// The transmission requests in a PHDB record (none if it is not one).
pub fn parse_requests(rec: &Record<'_>) -> Vec<PhdbRequest> {
    if rec.header.main_type != DRI_MT_PHDB {
        return Vec::new();
    }
    (0..rec.header.subrecords().len())
        .filter_map(|i| rec.subrecord(i).ok())
        .filter(|(t, _)| *t == DRI_PH_XMIT_REQ)
        .filter_map(|(_, b)| PhdbRequest::parse(b))
        .collect()
}

// ---------------------------------------------------------------- physiological data

/// The four classes of the physiological database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhdbClass {
    /// ECG, invasive pressures 1..6, NIBP, temperatures 1..4, SpO2, gases, spirometry, C.O.,
    /// NMT, SvO2.
    Basic,
    /// Arrhythmia and 12-lead ST, invasive pressures 7..8, second SpO2, temperatures 5..6.
    Ext1,
    /// NMT, EEG, BIS, entropy, SPI.
    Ext2,
    /// Gas exchange, more spirometry, balance gas, tonometry, PiCCO, …
    Ext3,
}

impl PhdbClass {
    /// Every class, in code order.
    pub const ALL: [PhdbClass; 4] = [
        PhdbClass::Basic,
        PhdbClass::Ext1,
        PhdbClass::Ext2,
        PhdbClass::Ext3,
    ];

    /// The class number in `cl_drilvl_subt` bits 8..11.
    pub fn code(self) -> u8 {
        match self {
            PhdbClass::Basic => 0,
            PhdbClass::Ext1 => 1,
            PhdbClass::Ext2 => 2,
            PhdbClass::Ext3 => 3,
        }
    }

    /// The class with number `c`.
    pub fn from_code(c: u8) -> Option<Self> {
        PhdbClass::ALL.into_iter().find(|k| k.code() == c)
    }
}

/// Group and value offsets inside each 270-byte class (values follow the 6-byte group header,
/// 2 bytes each).
pub mod layout {
    /// Bytes of a group header (`status u32`, `label u16`).
    pub const GROUP_HDR: usize = 6;

    /// Basic class.
    pub mod basic {
        pub const ECG: usize = 0;
        /// Invasive pressure channels 1..6 (5 and 6 come after SvO2).
        pub const P: [usize; 6] = [16, 30, 44, 58, 240, 254];
        pub const NIBP: usize = 72;
        /// Temperature channels 1..4.
        pub const T: [usize; 4] = [86, 94, 102, 110];
        pub const SPO2: usize = 118;
        pub const CO2: usize = 132;
        pub const O2: usize = 146;
        pub const N2O: usize = 156;
        pub const AA: usize = 166;
        pub const FLOW_VOL: usize = 178;
        pub const CO_WEDGE: usize = 200;
        pub const NMT: usize = 214;
        /// No group header: `hr_ecg`, `hr_max`, `hr_min`.
        pub const ECG_EXTRA: usize = 226;
        pub const SVO2: usize = 232;
    }

    /// Ext1 class.
    pub mod ext1 {
        pub const ARRH_ECG: usize = 0;
        pub const ECG_12: usize = 48;
        /// Invasive pressure channels 7 and 8.
        pub const P: [usize; 2] = [78, 92];
        pub const SPO2_2: usize = 106;
        /// Temperature channels 5 and 6.
        pub const T: [usize; 2] = [120, 128];
    }

    /// Ext2 class.
    pub mod ext2 {
        pub const NMT2: usize = 0;
        pub const EEG: usize = 24;
        pub const EEG_BIS: usize = 96;
        pub const ENTROPY: usize = 112;
    }

    /// Ext3 class.
    pub mod ext3 {
        pub const GASEX: usize = 0;
        pub const FLOW_VOL2: usize = 14;
    }
}

/// ECG status: noise, artifact, learning.
const ECG_QUESTIONABLE: u32 = (1 << 7) | (1 << 8) | (1 << 9);
/// Invasive pressure status: zeroing.
const P_ZEROING: u32 = 1 << 2;
/// NIBP label bit 7: calibrating.
const NIBP_CALIBRATING: u16 = 1 << 7;
/// CO2 status: calibrating, zeroing, occlusion, air leak.
const CO2_QUESTIONABLE: u32 = (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6);
/// O2 / N2O / AA status: calibrating; bit 3 the measurement is off.
const GAS_CALIBRATING: u32 = 1 << 2;
const GAS_OFF: u32 = 1 << 3;
/// Spirometry status: disconnection, calibrating, zeroing, obstruction, leak; bit 7 off.
const FLOW_QUESTIONABLE: u32 = (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6);
const FLOW_OFF: u32 = 1 << 7;

/// How far a group's values can be trusted, from its status bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Valid,
    /// Calibrating, zeroing, artifact, noise…
    Questionable,
    /// The module exists but the measurement is not active (or is switched off).
    Inactive,
}

/// One raw value of an existing group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhdbValue {
    pub param: DatexParam,
    pub raw: i16,
    pub state: GroupState,
}

/// One physiological subrecord.
#[derive(Clone, Copy, Debug)]
pub struct PhdbSubrecord<'a> {
    /// Unix time (seconds) of the values.
    pub time: u32,
    pub class: PhdbClass,
    /// Number of the latest mark entered on the monitor.
    pub marker: u8,
    data: &'a [u8],
}

impl<'a> PhdbSubrecord<'a> {
    /// Reads the first 278 bytes of `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, RecordError> {
        let short = RecordError::ShortPhdb { len: bytes.len() };
        let data = bytes.get(4..4 + PHDB_CLASS_LEN).ok_or(short.clone())?;
        let time = rd_u32(bytes, 0).ok_or(short.clone())?;
        let marker = rd_u8(bytes, 4 + PHDB_CLASS_LEN).ok_or(short.clone())?;
        let cl = rd_u16(bytes, PHDB_SUBRECORD_LEN - 2).ok_or(short)?;
        let code = ((cl >> 8) & 0x0F) as u8;
        let class = PhdbClass::from_code(code).ok_or(RecordError::UnknownClass { class: code })?;
        Ok(PhdbSubrecord {
            time,
            class,
            marker,
            data,
        })
    }

    /// The class bytes (270).
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Appends the values of every existing group of this class.
    pub fn values(&self, out: &mut Vec<PhdbValue>) {
        let d = self.data;
        match self.class {
            PhdbClass::Basic => decode_basic(d, out),
            PhdbClass::Ext1 => decode_ext1(d, out),
            PhdbClass::Ext2 => decode_ext2(d, out),
            PhdbClass::Ext3 => decode_ext3(d, out),
        }
    }
}

struct Group<'a> {
    d: &'a [u8],
    off: usize,
    status: u32,
    label: u16,
}

/// The group at `off`, if its module exists.
fn group(d: &[u8], off: usize) -> Option<Group<'_>> {
    let status = rd_u32(d, off)?;
    if status & STATUS_EXISTS == 0 {
        return None;
    }
    Some(Group {
        d,
        off,
        status,
        label: rd_u16(d, off + 4)?,
    })
}

impl Group<'_> {
    fn state(&self, questionable: u32, off: u32) -> GroupState {
        if self.status & STATUS_ACTIVE == 0 || self.status & off != 0 {
            GroupState::Inactive
        } else if self.status & questionable != 0 {
            GroupState::Questionable
        } else {
            GroupState::Valid
        }
    }

    fn raw(&self, index: usize) -> Option<i16> {
        rd_i16(self.d, self.off + layout::GROUP_HDR + 2 * index)
    }

    fn push(&self, out: &mut Vec<PhdbValue>, index: usize, param: DatexParam, state: GroupState) {
        if let Some(raw) = self.raw(index) {
            out.push(PhdbValue { param, raw, state });
        }
    }
}

fn pressure(d: &[u8], off: usize, ch: u8, out: &mut Vec<PhdbValue>) {
    let Some(g) = group(d, off) else { return };
    let s = g.state(P_ZEROING, 0);
    let label = g.label;
    for (i, field) in [
        PressField::Sys,
        PressField::Dia,
        PressField::Mean,
        PressField::PulseRate,
    ]
    .into_iter()
    .enumerate()
    {
        g.push(out, i, DatexParam::Invasive { ch, label, field }, s);
    }
}

fn temperature(d: &[u8], off: usize, ch: u8, out: &mut Vec<PhdbValue>) {
    let Some(g) = group(d, off) else { return };
    let s = g.state(0, 0);
    g.push(out, 0, DatexParam::Temp { ch, label: g.label }, s);
}

fn gas(d: &[u8], off: usize, params: &[DatexParam], out: &mut Vec<PhdbValue>) {
    let Some(g) = group(d, off) else { return };
    let s = g.state(GAS_CALIBRATING, GAS_OFF);
    for (i, p) in params.iter().enumerate() {
        g.push(out, i, *p, s);
    }
}

fn decode_basic(d: &[u8], out: &mut Vec<PhdbValue>) {
    use layout::basic as L;
    use DatexParam as P;
    if let Some(g) = group(d, L::ECG) {
        let s = g.state(ECG_QUESTIONABLE, 0);
        g.push(out, 0, P::EcgHr, s);
        for n in 1..=3u8 {
            g.push(out, usize::from(n), P::EcgSt(n), s);
        }
        g.push(out, 4, P::EcgImpRr, s);
    }
    for (ch, off) in (1u8..).zip(L::P) {
        pressure(d, off, ch, out);
    }
    if let Some(g) = group(d, L::NIBP) {
        let mut s = g.state(0, 0);
        if s == GroupState::Valid && g.label & NIBP_CALIBRATING != 0 {
            s = GroupState::Questionable;
        }
        for (i, f) in [
            PressField::Sys,
            PressField::Dia,
            PressField::Mean,
            PressField::PulseRate,
        ]
        .into_iter()
        .enumerate()
        {
            g.push(out, i, P::Nibp(f), s);
        }
    }
    for (ch, off) in (1u8..).zip(L::T) {
        temperature(d, off, ch, out);
    }
    if let Some(g) = group(d, L::SPO2) {
        let s = g.state(0, 0);
        g.push(out, 0, P::SpO2, s);
        g.push(out, 1, P::SpO2PulseRate, s);
        g.push(out, 2, P::SpO2IrAmp, s);
    }
    if let Some(g) = group(d, L::CO2) {
        let s = g.state(CO2_QUESTIONABLE, 0);
        let amb_raw = g.raw(3).unwrap_or(0);
        g.push(out, 0, P::Co2Et { amb_raw }, s);
        g.push(out, 1, P::Co2Fi, s);
        g.push(out, 2, P::Co2Rr, s);
        g.push(out, 3, P::AmbPress, s);
    }
    gas(d, L::O2, &[P::O2Et, P::O2Fi], out);
    gas(d, L::N2O, &[P::N2oEt, P::N2oFi], out);
    gas(d, L::AA, &[P::AaEt, P::AaFi, P::AaMacSum], out);
    if let Some(g) = group(d, L::FLOW_VOL) {
        let s = g.state(FLOW_QUESTIONABLE, FLOW_OFF);
        let params = [
            P::SpiroRr,
            P::Ppeak,
            P::Peep,
            P::Pplat,
            P::TvInsp,
            P::TvExp,
            P::Compliance,
            P::MvExp,
        ];
        for (i, p) in params.into_iter().enumerate() {
            g.push(out, i, p, s);
        }
    }
    if let Some(g) = group(d, L::CO_WEDGE) {
        let s = g.state(0, 0);
        g.push(out, 0, P::CardiacOutput, s);
        g.push(out, 3, P::Pcwp, s);
    }
    if let Some(g) = group(d, L::SVO2) {
        g.push(out, 0, P::SvO2, g.state(0, 0));
    }
}

fn decode_ext1(d: &[u8], out: &mut Vec<PhdbValue>) {
    use layout::ext1 as L;
    if let Some(g) = group(d, L::ARRH_ECG) {
        g.push(out, 2, DatexParam::Pvc, g.state(0, 0));
    }
    for (ch, off) in (7u8..).zip(L::P) {
        pressure(d, off, ch, out);
    }
    if let Some(g) = group(d, L::SPO2_2) {
        let s = g.state(0, 0);
        g.push(out, 0, DatexParam::SpO2Second, s);
        g.push(out, 1, DatexParam::SpO2SecondPulseRate, s);
    }
    for (ch, off) in (5u8..).zip(L::T) {
        temperature(d, off, ch, out);
    }
}

fn decode_ext2(d: &[u8], out: &mut Vec<PhdbValue>) {
    use layout::ext2 as L;
    if let Some(g) = group(d, L::EEG_BIS) {
        let s = g.state(0, 0);
        g.push(out, 0, DatexParam::Bis, s);
        g.push(out, 1, DatexParam::BisSqi, s);
    }
    if let Some(g) = group(d, L::ENTROPY) {
        let s = g.state(0, 0);
        g.push(out, 0, DatexParam::EntropyState, s);
        g.push(out, 1, DatexParam::EntropyResponse, s);
    }
}

fn decode_ext3(d: &[u8], out: &mut Vec<PhdbValue>) {
    use layout::ext3 as L;
    if let Some(g) = group(d, L::GASEX) {
        let s = g.state(0, 0);
        g.push(out, 0, DatexParam::Vo2, s);
        g.push(out, 1, DatexParam::Vco2, s);
    }
    if let Some(g) = group(d, L::FLOW_VOL2) {
        let s = g.state(0, 0);
        g.push(out, 0, DatexParam::PeepIntrinsic, s);
        g.push(out, 1, DatexParam::Pmean, s);
    }
}

/// Writes one class for a simulator or a test: groups, labels and raw values at the
/// [`layout`] offsets.
#[derive(Clone, Debug)]
pub struct PhdbBuilder {
    class: PhdbClass,
    data: [u8; PHDB_CLASS_LEN],
}

impl PhdbBuilder {
    /// An all-zero class: no group exists.
    pub fn new(class: PhdbClass) -> Self {
        PhdbBuilder {
            class,
            data: [0u8; PHDB_CLASS_LEN],
        }
    }

    /// Sets the group header at `offset`.
    pub fn group(&mut self, offset: usize, status: u32, label: u16) -> &mut Self {
        wr(&mut self.data, offset, &status.to_le_bytes());
        wr(&mut self.data, offset + 4, &label.to_le_bytes());
        self
    }

    /// Sets value `index` of the group at `offset`.
    pub fn value(&mut self, offset: usize, index: usize, raw: i16) -> &mut Self {
        wr(
            &mut self.data,
            offset + layout::GROUP_HDR + 2 * index,
            &raw.to_le_bytes(),
        );
        self
    }

    /// The 278-byte subrecord with `time` (unix seconds).
    pub fn subrecord(&self, time: u32) -> [u8; PHDB_SUBRECORD_LEN] {
        let mut b = [0u8; PHDB_SUBRECORD_LEN];
        wr(&mut b, 0, &time.to_le_bytes());
        wr(&mut b, 4, &self.data);
        let cl = u16::from(self.class.code()) << 8;
        wr(&mut b, PHDB_SUBRECORD_LEN - 2, &cl.to_le_bytes());
        b
    }
}
