//! The messages inside a frame's user data, big-endian, as far as a data-export client needs
//! them: association control (request, result, refuse, release, abort) and the Data Export
//! remote operations (MDS Create Event and its result, single and extended polls and their
//! results, linked results, errors), with the attribute values a poll result carries.
//!
//! Decoding borrows the user data and checks every length before it reads: any input gives
//! a message or an error, never a panic. Encoding builds the same layouts for the driver's
//! requests and the simulator's replies.

use thiserror::Error;

use super::nomenclature::{action, attr, class, partition};

/// First byte of each association-control message (the session header type).
pub mod spdu {
    /// Connect: Association Request.
    pub const CN: u8 = 0x0D;
    /// Accept: Association Result.
    pub const AC: u8 = 0x0E;
    /// Refuse.
    pub const RF: u8 = 0x0C;
    /// Finish: Release Request.
    pub const FN: u8 = 0x09;
    /// Disconnect: Release Result.
    pub const DN: u8 = 0x0A;
    /// Abort.
    pub const AB: u8 = 0x19;
}

/// Session id that starts every Data Export message.
pub const SESSION_ID: u16 = 0xE100;
/// Presentation context of Data Export messages (as negotiated by the standard association
/// request).
pub const P_CONTEXT_ID: u16 = 2;

/// Remote operation types.
pub mod ro {
    /// Invoke.
    pub const ROIV: u16 = 1;
    /// Result.
    pub const RORS: u16 = 2;
    /// Error.
    pub const ROER: u16 = 3;
    /// Linked result (one part of a result too large for one message).
    pub const ROLRS: u16 = 5;
}

/// Command types.
pub mod cmd {
    pub const EVENT_REPORT: u16 = 0;
    pub const CONFIRMED_EVENT_REPORT: u16 = 1;
    pub const GET: u16 = 3;
    pub const SET: u16 = 4;
    pub const CONFIRMED_SET: u16 = 5;
    pub const CONFIRMED_ACTION: u16 = 7;
}

/// Linked-result states.
pub mod rorls {
    pub const FIRST: u8 = 1;
    pub const NOT_FIRST_NOT_LAST: u8 = 2;
    /// The last linked part; one plain result follows.
    pub const LAST: u8 = 3;
}

/// MDSEUserInfoStd constants.
pub mod user_info {
    pub const MDDL_VERSION1: u32 = 0x8000_0000;
    pub const NOMEN_VERSION: u32 = 0x4000_0000;
    pub const SYST_CLIENT: u32 = 0x8000_0000;
    pub const SYST_SERVER: u32 = 0x0080_0000;
    pub const HOT_START: u32 = 0x8000_0000;
    pub const WARM_START: u32 = 0x4000_0000;
    pub const COLD_START: u32 = 0x2000_0000;
    pub const POLL_PROFILE_REV_0: u32 = 0x8000_0000;
    pub const P_OPT_DYN_CREATE_OBJECTS: u32 = 0x4000_0000;
    pub const P_OPT_DYN_DELETE_OBJECTS: u32 = 0x2000_0000;
    /// Poll profile extension: real-time (1 s) numerics.
    pub const POLL_EXT_PERIOD_NU_1SEC: u32 = 0x8000_0000;
    /// Poll profile extension: waves.
    pub const POLL_EXT_PERIOD_RTSA: u32 = 0x0800_0000;
}

/// A decoding fault. Offsets are into the frame's user data.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PduError {
    /// A field runs past the end of its enclosing structure.
    #[error("truncated: {need} bytes needed at offset {at}, {have} left")]
    Truncated { at: usize, need: usize, have: usize },
    /// The first byte is neither a session header nor the Data Export session id.
    #[error("unknown message type {0:#04x}")]
    UnknownSession(u8),
    /// A list's byte length disagrees with its entries.
    #[error("list at offset {at} declares {declared} bytes but its {count} entries take {used}")]
    ListLength {
        at: usize,
        declared: usize,
        used: usize,
        count: u16,
    },
    /// A value has the wrong size for its type.
    #[error("attribute value of {len} bytes where {expected} are needed")]
    ValueSize { len: usize, expected: usize },
}

type Result<T> = std::result::Result<T, PduError>;

/// A bounds-checked big-endian reader over a slice.
#[derive(Clone, Copy, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf` in the whole message, for error positions.
    base: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            base: 0,
        }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Offset in the whole message.
    pub fn offset(&self) -> usize {
        self.base + self.pos
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n);
        match end.and_then(|e| self.buf.get(self.pos..e)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(PduError::Truncated {
                at: self.offset(),
                need: n,
                have: self.remaining(),
            }),
        }
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.bytes(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// A reader over the next `n` bytes; this one moves past them.
    pub fn sub(&mut self, n: usize) -> Result<Reader<'a>> {
        let base = self.offset();
        let buf = self.bytes(n)?;
        Ok(Reader { buf, pos: 0, base })
    }

    /// A reader over the next `u16`-length-prefixed structure.
    pub fn sub_len16(&mut self) -> Result<Reader<'a>> {
        let n = usize::from(self.u16()?);
        self.sub(n)
    }

    /// What is left.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = self.buf.get(self.pos..).unwrap_or_default();
        self.pos = self.buf.len();
        s
    }
}

/// A big-endian writer with nested 16-bit length fields.
#[derive(Clone, Debug, Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }
    /// Writes a u16 length, then what `f` writes; the length is that byte count (saturated:
    /// the frame encoder refuses anything that large anyway).
    pub fn with_len(&mut self, f: impl FnOnce(&mut Writer)) -> &mut Self {
        let at = self.buf.len();
        self.u16(0);
        f(self);
        let n = u16::try_from(self.buf.len() - at - 2).unwrap_or(u16::MAX);
        if let Some(slot) = self.buf.get_mut(at..at + 2) {
            slot.copy_from_slice(&n.to_be_bytes());
        }
        self
    }
    /// An AttributeList: count, byte length, then (id, length, value) entries.
    pub fn attr_list(&mut self, attrs: &[(u16, Vec<u8>)]) -> &mut Self {
        self.u16(u16::try_from(attrs.len()).unwrap_or(u16::MAX));
        self.with_len(|w| {
            for (id, v) in attrs {
                w.u16(*id);
                w.with_len(|w| {
                    w.bytes(v);
                });
            }
        })
    }
    pub fn managed_object(&mut self, m: ManagedObjectId) -> &mut Self {
        self.u16(m.class).u16(m.context).u16(m.handle)
    }
}

/// An object class with its global handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManagedObjectId {
    pub class: u16,
    pub context: u16,
    pub handle: u16,
}

/// The MDS object every client request is addressed to.
pub const MDS_OBJECT: ManagedObjectId = ManagedObjectId {
    class: class::NOM_MOC_VMS_MDS,
    context: 0,
    handle: 0,
};

impl ManagedObjectId {
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(ManagedObjectId {
            class: r.u16()?,
            context: r.u16()?,
            handle: r.u16()?,
        })
    }
}

/// A checked AttributeList borrowed from the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttrList<'a> {
    count: u16,
    data: &'a [u8],
}

impl<'a> AttrList<'a> {
    /// Reads count, length and checks that the entries fill the length exactly.
    pub fn read(r: &mut Reader<'a>) -> Result<Self> {
        let count = r.u16()?;
        let at = r.offset();
        let len = usize::from(r.u16()?);
        let mut body = r.sub(len)?;
        let data = body.rest();
        let mut check = Reader::new(data);
        for _ in 0..count {
            check.u16()?;
            check.sub_len16()?;
        }
        if check.remaining() != 0 {
            return Err(PduError::ListLength {
                at,
                declared: len,
                used: len - check.remaining(),
                count,
            });
        }
        Ok(AttrList { count, data })
    }

    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The (attribute id, value) entries.
    pub fn iter(&self) -> AttrIter<'a> {
        AttrIter {
            r: Reader::new(self.data),
            left: self.count,
        }
    }

    /// The first value of attribute `id`.
    pub fn get(&self, id: u16) -> Option<&'a [u8]> {
        self.iter().find(|&(i, _)| i == id).map(|(_, v)| v)
    }
}

/// Iterator over a checked [`AttrList`].
#[derive(Clone, Debug)]
pub struct AttrIter<'a> {
    r: Reader<'a>,
    left: u16,
}

impl<'a> Iterator for AttrIter<'a> {
    type Item = (u16, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let id = self.r.u16().ok()?;
        let len = usize::from(self.r.u16().ok()?);
        let v = self.r.bytes(len).ok()?;
        Some((id, v))
    }
}

/// The Poll Profile of the association user information.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollProfile {
    pub revision: u32,
    /// Relative time (1/8 ms ticks).
    pub min_poll_period: u32,
    pub max_mtu_rx: u32,
    pub max_mtu_tx: u32,
    pub max_bw_tx: u32,
    pub options: u32,
    /// The Poll Profile Extensions package, when present.
    pub ext_options: Option<u32>,
}

/// MDSEUserInfoStd: what each side of an association supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub protocol_version: u32,
    pub nomenclature_version: u32,
    pub functional_units: u32,
    pub system_type: u32,
    pub startup_mode: u32,
    pub poll_profile: Option<PollProfile>,
}

impl UserInfo {
    /// What the driver asks for: protocol version 1, the current nomenclature, a client,
    /// the poll profile with real-time numerics, 1000-byte messages both ways.
    pub fn client() -> Self {
        UserInfo {
            protocol_version: user_info::MDDL_VERSION1,
            nomenclature_version: user_info::NOMEN_VERSION,
            functional_units: 0,
            system_type: user_info::SYST_CLIENT,
            startup_mode: user_info::COLD_START,
            poll_profile: Some(PollProfile {
                revision: user_info::POLL_PROFILE_REV_0,
                // 2500 ticks = 312.5 ms, below the 3.3 s at which the association time-out
                // (10 s) starts to grow.
                min_poll_period: 2_500,
                max_mtu_rx: 1_000,
                max_mtu_tx: 1_000,
                max_bw_tx: 0xFFFF_FFFF,
                options: user_info::P_OPT_DYN_CREATE_OBJECTS | user_info::P_OPT_DYN_DELETE_OBJECTS,
                ext_options: Some(user_info::POLL_EXT_PERIOD_NU_1SEC),
            }),
        }
    }

    fn write(&self, w: &mut Writer) {
        w.u32(self.protocol_version)
            .u32(self.nomenclature_version)
            .u32(self.functional_units)
            .u32(self.system_type)
            .u32(self.startup_mode);
        // option_list: empty.
        w.attr_list(&[]);
        let mut profiles = Vec::new();
        if let Some(p) = self.poll_profile {
            let mut pw = Writer::default();
            pw.u32(p.revision)
                .u32(p.min_poll_period)
                .u32(p.max_mtu_rx)
                .u32(p.max_mtu_tx)
                .u32(p.max_bw_tx)
                .u32(p.options);
            let mut packages = Vec::new();
            if let Some(ext) = p.ext_options {
                let mut ew = Writer::default();
                ew.u32(ext).attr_list(&[]);
                packages.push((attr::NOM_ATTR_POLL_PROFILE_EXT, ew.buf));
            }
            pw.attr_list(&packages);
            profiles.push((attr::NOM_POLL_PROFILE_SUPPORT, pw.buf));
        }
        w.attr_list(&profiles);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self> {
        let protocol_version = r.u32()?;
        let nomenclature_version = r.u32()?;
        let functional_units = r.u32()?;
        let system_type = r.u32()?;
        let startup_mode = r.u32()?;
        AttrList::read(r)?;
        let profiles = AttrList::read(r)?;
        let poll_profile = match profiles.get(attr::NOM_POLL_PROFILE_SUPPORT) {
            Some(v) => {
                let mut pr = Reader::new(v);
                let mut p = PollProfile {
                    revision: pr.u32()?,
                    min_poll_period: pr.u32()?,
                    max_mtu_rx: pr.u32()?,
                    max_mtu_tx: pr.u32()?,
                    max_bw_tx: pr.u32()?,
                    options: pr.u32()?,
                    ext_options: None,
                };
                let packages = AttrList::read(&mut pr)?;
                if let Some(ext) = packages.get(attr::NOM_ATTR_POLL_PROFILE_EXT) {
                    p.ext_options = Some(Reader::new(ext).u32()?);
                }
                Some(p)
            }
            None => None,
        };
        Ok(UserInfo {
            protocol_version,
            nomenclature_version,
            functional_units,
            system_type,
            startup_mode,
            poll_profile,
        })
    }
}

/// A monitor-side answer to the client's user info: the server bit, the client's MTUs capped
/// at `max_mtu`.
pub fn server_user_info(client: Option<&UserInfo>, max_mtu: u32) -> UserInfo {
    let mut info = client.copied().unwrap_or_else(UserInfo::client);
    info.system_type = user_info::SYST_SERVER;
    info.startup_mode = user_info::WARM_START;
    if let Some(p) = info.poll_profile.as_mut() {
        p.max_mtu_rx = p.max_mtu_rx.min(max_mtu);
        p.max_mtu_tx = p.max_mtu_tx.min(max_mtu);
        p.max_bw_tx = 0xFFFF_FFFF;
    }
    info
}

// ---------------------------------------------------------------- association control

/// Session data of association request and result.
const SESSION_DATA: [u8; 14] = [
    0x05, 0x08, 0x13, 0x01, 0x00, 0x16, 0x01, 0x02, 0x80, 0x00, 0x14, 0x02, 0x00, 0x02,
];
/// Presentation-layer prefix of the user data.
const PRES_PREFIX: u8 = 0xC1;
/// The IEEE 11073 object identifier prefix (1.2.840.10004.2.1.0.0.0) the association names its
/// syntaxes and context with; two more bytes select which.
const OID_PREFIX: [u8; 10] = [0x2A, 0x86, 0x48, 0xCE, 0x14, 0x02, 0x01, 0x00, 0x00, 0x00];
/// Start of the presentation connect PDU: mode (normal), protocol version 1.
const CP_HEAD: [u8; 18] = [
    0x31, 0x80, 0xA0, 0x80, 0x80, 0x01, 0x01, 0x00, 0x00, 0xA2, 0x80, 0xA0, 0x03, 0x00, 0x00, 0x01,
    0xA4, 0x80,
];
/// User information external: `[30] { EXTERNAL { ... octet-aligned [1] ...` — the marker the
/// decoder looks for.
const USER_INFO_MARKER: [u8; 4] = [0xBE, 0x80, 0x28, 0x80];
/// End-of-contents octets closing the eight indefinite-length constructions left open.
const PRES_TRAILER: [u8; 16] = [0; 16];

fn push_oid(v: &mut Vec<u8>, a: u8, b: u8) {
    v.extend_from_slice(&[0x06, 0x0C]);
    v.extend_from_slice(&OID_PREFIX);
    v.extend_from_slice(&[a, b]);
}

/// BER definite length.
fn push_asn_len(v: &mut Vec<u8>, n: usize) {
    if n < 0x80 {
        v.push(n as u8);
    } else if n <= 0xFF {
        v.extend_from_slice(&[0x81, n as u8]);
    } else {
        v.push(0x82);
        v.extend_from_slice(&(n.min(0xFFFF) as u16).to_be_bytes());
    }
}

/// Session-header length indicator: one byte up to 254, else 0xFF and two bytes.
fn push_li(v: &mut Vec<u8>, n: usize) {
    if n <= 254 {
        v.push(n as u8);
    } else {
        v.push(0xFF);
        v.extend_from_slice(&(n.min(0xFFFF) as u16).to_be_bytes());
    }
}

fn read_li(r: &mut Reader<'_>) -> Result<usize> {
    match r.u8()? {
        0xFF => Ok(usize::from(r.u16()?)),
        n => Ok(usize::from(n)),
    }
}

fn assoc_message(session_type: u8, pres_head: &[u8], info: &UserInfo) -> Vec<u8> {
    let mut ui = Writer::default();
    info.write(&mut ui);
    let mut pres = pres_head.to_vec();
    push_asn_len(&mut pres, ui.buf.len());
    pres.extend_from_slice(&ui.buf);
    pres.extend_from_slice(&PRES_TRAILER);
    let mut body = SESSION_DATA.to_vec();
    body.push(PRES_PREFIX);
    push_li(&mut body, pres.len());
    body.extend_from_slice(&pres);
    let mut out = vec![session_type];
    push_li(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

/// Association Request (client → monitor).
pub fn encode_association_request(info: &UserInfo) -> Vec<u8> {
    let mut h = CP_HEAD.to_vec();
    // Presentation context 1: ACSE (abstract syntax 2.2.1.0.1, BER transfer syntax).
    h.extend_from_slice(&[
        0x30, 0x80, 0x02, 0x01, 0x01, 0x06, 0x04, 0x52, 0x01, 0x00, 0x01,
    ]);
    h.extend_from_slice(&[0x30, 0x80, 0x06, 0x02, 0x51, 0x01, 0x00, 0x00, 0x00, 0x00]);
    // Presentation context 2: the MDSE abstract syntax with its transfer syntax.
    h.extend_from_slice(&[0x30, 0x80, 0x02, 0x01, 0x02]);
    push_oid(&mut h, 0x01, 0x01);
    h.extend_from_slice(&[0x30, 0x80]);
    push_oid(&mut h, 0x02, 0x01);
    h.extend_from_slice(&[0x00, 0x00, 0x00, 0x00, 0x00, 0x00]);
    // User data: PDV list on context 1 carrying the AARQ with the application context name.
    h.extend_from_slice(&[
        0x61, 0x80, 0x30, 0x80, 0x02, 0x01, 0x01, 0xA0, 0x80, 0x60, 0x80, 0xA1, 0x80,
    ]);
    push_oid(&mut h, 0x03, 0x01);
    h.extend_from_slice(&[0x00, 0x00]);
    h.extend_from_slice(&USER_INFO_MARKER);
    push_oid(&mut h, 0x01, 0x01);
    // Indirect reference (context 2), then the octet-aligned user information.
    h.extend_from_slice(&[0x02, 0x01, 0x02, 0x81]);
    assoc_message(spdu::CN, &h, info)
}

/// Association Result (monitor → client), in the same presentation form.
pub fn encode_association_result(info: &UserInfo) -> Vec<u8> {
    let mut h = CP_HEAD.to_vec();
    h[16] = 0xA5; // presentation context definition result list
    h.extend_from_slice(&[
        0x30, 0x80, 0x80, 0x01, 0x00, 0x81, 0x02, 0x51, 0x01, 0x00, 0x00,
    ]);
    h.extend_from_slice(&[0x30, 0x80, 0x80, 0x01, 0x00, 0x81, 0x0C]);
    h.extend_from_slice(&OID_PREFIX);
    h.extend_from_slice(&[0x02, 0x01, 0x00, 0x00, 0x00, 0x00]);
    // AARE: application context, result accepted, diagnostic null.
    h.extend_from_slice(&[
        0x61, 0x80, 0x30, 0x80, 0x02, 0x01, 0x01, 0xA0, 0x80, 0x61, 0x80, 0xA1, 0x80,
    ]);
    push_oid(&mut h, 0x03, 0x01);
    h.extend_from_slice(&[
        0x00, 0x00, 0xA2, 0x03, 0x02, 0x01, 0x00, 0xA3, 0x05, 0xA1, 0x03, 0x02, 0x01, 0x00,
    ]);
    h.extend_from_slice(&USER_INFO_MARKER);
    h.extend_from_slice(&[0x02, 0x01, 0x02, 0x81]);
    assoc_message(spdu::AC, &h, info)
}

/// Refuse (monitor → client) with a session reason code.
pub fn encode_refuse(reason: u8) -> Vec<u8> {
    vec![spdu::RF, 0x03, 0x32, 0x01, reason]
}

fn release_message(session_type: u8, apdu: u8) -> Vec<u8> {
    let mut v = vec![session_type, 0x18, PRES_PREFIX, 0x16];
    v.extend_from_slice(&[
        0x61, 0x80, 0x30, 0x80, 0x02, 0x01, 0x01, 0xA0, 0x80, apdu, 0x80, 0x80, 0x01, 0x00,
    ]);
    v.extend_from_slice(&[0; 8]);
    v
}

/// Release Request (either side; the client sends it to end a session).
pub fn encode_release_request() -> Vec<u8> {
    release_message(spdu::FN, 0x62)
}

/// Release Result.
pub fn encode_release_result() -> Vec<u8> {
    release_message(spdu::DN, 0x63)
}

/// Abort (the monitor sends it when an association times out).
pub fn encode_abort() -> Vec<u8> {
    let mut v = vec![
        spdu::AB,
        0x2E,
        0x11,
        0x01,
        0x03,
        PRES_PREFIX,
        0x29,
        0xA0,
        0x80,
        0xA0,
        0x80,
    ];
    v.extend_from_slice(&[
        0x30, 0x80, 0x02, 0x01, 0x01, 0x06, 0x02, 0x51, 0x01, 0x00, 0x00, 0x00, 0x00,
    ]);
    v.extend_from_slice(&[
        0x61, 0x80, 0x30, 0x80, 0x02, 0x01, 0x01, 0xA0, 0x80, 0x64, 0x80, 0x80, 0x01, 0x01,
    ]);
    v.extend_from_slice(&[0; 10]);
    v
}

/// Finds the MDSEUserInfoStd in an association message's presentation data: after the user
/// information marker, skip the EXTERNAL's references up to the octet-aligned `[1]` value.
fn find_user_info(pres: &[u8]) -> Option<UserInfo> {
    let start = pres
        .windows(USER_INFO_MARKER.len())
        .position(|w| w == USER_INFO_MARKER)?;
    let mut r = Reader::new(pres.get(start + USER_INFO_MARKER.len()..)?);
    loop {
        let tag = r.u8().ok()?;
        let len = match r.u8().ok()? {
            n if n < 0x80 => usize::from(n),
            0x81 => usize::from(r.u8().ok()?),
            0x82 => usize::from(r.u16().ok()?),
            // Indefinite or over-long lengths do not occur here.
            _ => return None,
        };
        let value = r.bytes(len).ok()?;
        if tag == 0x81 {
            return UserInfo::read(&mut Reader::new(value)).ok();
        }
    }
}

// ---------------------------------------------------------------- data export

/// MDS Create Event (monitor → client): the MDS and its attributes (model, time, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MdsCreate<'a> {
    pub invoke_id: u16,
    /// Relative time of the event.
    pub event_time: u32,
    /// The object that reported the event.
    pub reporter: ManagedObjectId,
    /// The MDS created.
    pub mds: ManagedObjectId,
    pub attrs: AttrList<'a>,
}

/// Event Report Result (client → monitor): the acknowledgement of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventReportResult {
    pub invoke_id: u16,
    pub object: ManagedObjectId,
    pub current_time: u32,
    pub event_type: u16,
}

/// A poll request (client → monitor), single or extended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollRequest {
    pub invoke_id: u16,
    /// Extended (NOM_ACT_POLL_MDIB_DATA_EXT) or single (NOM_ACT_POLL_MDIB_DATA).
    pub extended: bool,
    pub poll_number: u16,
    /// Polled object class (partition OBJ): numerics, alarms, MDS...
    pub obj_class: u16,
    /// Attribute group; 0 for all.
    pub attr_group: u16,
    /// Extended only: ask for periodic results for this long (relative time).
    pub period: Option<u32>,
}

/// One polled object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation<'a> {
    pub context_id: u16,
    pub handle: u16,
    pub attrs: AttrList<'a>,
}

/// A poll result, single or extended, or one linked part of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollReply<'a> {
    pub extended: bool,
    pub poll_number: u16,
    /// Extended only.
    pub sequence_no: u16,
    pub rel_time: u32,
    pub abs_time: [u8; 8],
    pub obj_partition: u16,
    pub obj_class: u16,
    pub attr_group: u16,
    pub observations: Vec<Observation<'a>>,
}

/// Single result or a linked part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// A plain result (the whole answer, or the final part after linked parts).
    Single,
    /// A linked part: [`rorls`] state and its counter (from 1).
    Linked { state: u8, count: u8 },
}

/// A decoded message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    AssociationRequest(Option<UserInfo>),
    AssociationResult(Option<UserInfo>),
    Refuse,
    ReleaseRequest,
    ReleaseResult,
    Abort,
    MdsCreate(MdsCreate<'a>),
    EventReportResult(EventReportResult),
    PollRequest(PollRequest),
    PollResult {
        invoke_id: u16,
        link: Link,
        reply: PollReply<'a>,
    },
    /// Remote operation error.
    Error {
        invoke_id: u16,
        error_value: u16,
    },
    /// A well-formed Data Export message this client does not use.
    Other {
        ro_type: u16,
        command: u16,
    },
}

/// Decodes one frame's user data.
pub fn decode(user_data: &[u8]) -> Result<Message<'_>> {
    let mut r = Reader::new(user_data);
    let first = r.u8()?;
    match first {
        spdu::CN | spdu::AC | spdu::RF | spdu::FN | spdu::DN | spdu::AB => {
            let len = read_li(&mut r)?;
            let body = r.bytes(len)?;
            Ok(match first {
                spdu::CN => Message::AssociationRequest(find_user_info(body)),
                spdu::AC => Message::AssociationResult(find_user_info(body)),
                spdu::RF => Message::Refuse,
                spdu::FN => Message::ReleaseRequest,
                spdu::DN => Message::ReleaseResult,
                _ => Message::Abort,
            })
        }
        0xE1 => {
            if r.u8()? != 0x00 {
                return Err(PduError::UnknownSession(first));
            }
            let _context = r.u16()?;
            decode_ro(&mut r)
        }
        other => Err(PduError::UnknownSession(other)),
    }
}

fn decode_ro<'a>(r: &mut Reader<'a>) -> Result<Message<'a>> {
    let ro_type = r.u16()?;
    let mut ro = r.sub_len16()?;
    match ro_type {
        ro::ROIV => {
            let invoke_id = ro.u16()?;
            let command = ro.u16()?;
            let mut body = ro.sub_len16()?;
            decode_invoke(invoke_id, command, &mut body)
        }
        ro::RORS => {
            let invoke_id = ro.u16()?;
            let command = ro.u16()?;
            let mut body = ro.sub_len16()?;
            decode_result(invoke_id, command, Link::Single, &mut body)
        }
        ro::ROLRS => {
            let state = ro.u8()?;
            let count = ro.u8()?;
            let invoke_id = ro.u16()?;
            let command = ro.u16()?;
            let mut body = ro.sub_len16()?;
            decode_result(invoke_id, command, Link::Linked { state, count }, &mut body)
        }
        ro::ROER => {
            let invoke_id = ro.u16()?;
            let error_value = ro.u16()?;
            ro.sub_len16()?;
            Ok(Message::Error {
                invoke_id,
                error_value,
            })
        }
        _ => Ok(Message::Other {
            ro_type,
            command: 0xFFFF,
        }),
    }
}

fn decode_invoke<'a>(invoke_id: u16, command: u16, r: &mut Reader<'a>) -> Result<Message<'a>> {
    let other = Message::Other {
        ro_type: ro::ROIV,
        command,
    };
    match command {
        cmd::EVENT_REPORT | cmd::CONFIRMED_EVENT_REPORT => {
            let reporter = ManagedObjectId::read(r)?;
            let event_time = r.u32()?;
            let event_type = r.u16()?;
            let mut info = r.sub_len16()?;
            if event_type != action::NOM_NOTI_MDS_CREAT {
                return Ok(other);
            }
            let mds = ManagedObjectId::read(&mut info)?;
            let attrs = AttrList::read(&mut info)?;
            Ok(Message::MdsCreate(MdsCreate {
                invoke_id,
                event_time,
                reporter,
                mds,
                attrs,
            }))
        }
        cmd::CONFIRMED_ACTION => {
            let _object = ManagedObjectId::read(r)?;
            let _scope = r.u32()?;
            let action_type = r.u16()?;
            let mut a = r.sub_len16()?;
            let extended = match action_type {
                action::NOM_ACT_POLL_MDIB_DATA_EXT => true,
                action::NOM_ACT_POLL_MDIB_DATA => false,
                _ => return Ok(other),
            };
            let poll_number = a.u16()?;
            let _partition = a.u16()?;
            let obj_class = a.u16()?;
            let attr_group = a.u16()?;
            let period = if extended {
                let ext = AttrList::read(&mut a)?;
                match ext.get(attr::NOM_ATTR_TIME_PD_POLL) {
                    Some(v) => Some(Reader::new(v).u32()?),
                    None => None,
                }
            } else {
                None
            };
            Ok(Message::PollRequest(PollRequest {
                invoke_id,
                extended,
                poll_number,
                obj_class,
                attr_group,
                period,
            }))
        }
        _ => Ok(other),
    }
}

fn decode_result<'a>(
    invoke_id: u16,
    command: u16,
    link: Link,
    r: &mut Reader<'a>,
) -> Result<Message<'a>> {
    let ro_type = if link == Link::Single {
        ro::RORS
    } else {
        ro::ROLRS
    };
    match command {
        cmd::CONFIRMED_EVENT_REPORT => {
            let object = ManagedObjectId::read(r)?;
            let current_time = r.u32()?;
            let event_type = r.u16()?;
            r.sub_len16()?;
            Ok(Message::EventReportResult(EventReportResult {
                invoke_id,
                object,
                current_time,
                event_type,
            }))
        }
        cmd::CONFIRMED_ACTION => {
            let _object = ManagedObjectId::read(r)?;
            let action_type = r.u16()?;
            let mut a = r.sub_len16()?;
            let extended = match action_type {
                action::NOM_ACT_POLL_MDIB_DATA_EXT => true,
                action::NOM_ACT_POLL_MDIB_DATA => false,
                _ => return Ok(Message::Other { ro_type, command }),
            };
            let reply = decode_poll_reply(extended, &mut a)?;
            Ok(Message::PollResult {
                invoke_id,
                link,
                reply,
            })
        }
        _ => Ok(Message::Other { ro_type, command }),
    }
}

fn decode_poll_reply<'a>(extended: bool, r: &mut Reader<'a>) -> Result<PollReply<'a>> {
    let poll_number = r.u16()?;
    let sequence_no = if extended { r.u16()? } else { 0 };
    let rel_time = r.u32()?;
    let abs_time = r.array::<8>()?;
    let obj_partition = r.u16()?;
    let obj_class = r.u16()?;
    let attr_group = r.u16()?;
    // PollInfoList: count, length, SingleContextPoll entries.
    let contexts = r.u16()?;
    let at = r.offset();
    let mut list = r.sub_len16()?;
    let declared = list.remaining();
    let mut observations = Vec::new();
    for _ in 0..contexts {
        let context_id = list.u16()?;
        let count = list.u16()?;
        let obs_at = list.offset();
        let mut obs = list.sub_len16()?;
        let obs_len = obs.remaining();
        for _ in 0..count {
            let handle = obs.u16()?;
            let attrs = AttrList::read(&mut obs)?;
            observations.push(Observation {
                context_id,
                handle,
                attrs,
            });
        }
        if obs.remaining() != 0 {
            return Err(PduError::ListLength {
                at: obs_at,
                declared: obs_len,
                used: obs_len - obs.remaining(),
                count,
            });
        }
    }
    if list.remaining() != 0 {
        return Err(PduError::ListLength {
            at,
            declared,
            used: declared - list.remaining(),
            count: contexts,
        });
    }
    Ok(PollReply {
        extended,
        poll_number,
        sequence_no,
        rel_time,
        abs_time,
        obj_partition,
        obj_class,
        attr_group,
        observations,
    })
}

fn data_export(w: &mut Writer, ro_type: u16, f: impl FnOnce(&mut Writer)) -> Vec<u8> {
    w.u16(SESSION_ID).u16(P_CONTEXT_ID).u16(ro_type).with_len(f);
    std::mem::take(&mut w.buf)
}

/// MDS Create Event (monitor → client) with the MDS attributes.
pub fn encode_mds_create(invoke_id: u16, event_time: u32, attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
    data_export(&mut Writer::default(), ro::ROIV, |w| {
        w.u16(invoke_id)
            .u16(cmd::CONFIRMED_EVENT_REPORT)
            .with_len(|w| {
                w.managed_object(MDS_OBJECT)
                    .u32(event_time)
                    .u16(action::NOM_NOTI_MDS_CREAT)
                    .with_len(|w| {
                        w.managed_object(MDS_OBJECT).attr_list(attrs);
                    });
            });
    })
}

/// Event Report Result (client → monitor).
pub fn encode_event_report_result(res: &EventReportResult) -> Vec<u8> {
    data_export(&mut Writer::default(), ro::RORS, |w| {
        w.u16(res.invoke_id)
            .u16(cmd::CONFIRMED_EVENT_REPORT)
            .with_len(|w| {
                w.managed_object(res.object)
                    .u32(res.current_time)
                    .u16(res.event_type)
                    .u16(0);
            });
    })
}

/// Poll request (client → monitor), addressed to the MDS.
pub fn encode_poll_request(req: &PollRequest) -> Vec<u8> {
    data_export(&mut Writer::default(), ro::ROIV, |w| {
        w.u16(req.invoke_id)
            .u16(cmd::CONFIRMED_ACTION)
            .with_len(|w| {
                let action_type = if req.extended {
                    action::NOM_ACT_POLL_MDIB_DATA_EXT
                } else {
                    action::NOM_ACT_POLL_MDIB_DATA
                };
                w.managed_object(MDS_OBJECT)
                    .u32(0)
                    .u16(action_type)
                    .with_len(|w| {
                        w.u16(req.poll_number)
                            .u16(partition::OBJ)
                            .u16(req.obj_class)
                            .u16(req.attr_group);
                        if req.extended {
                            let ext: Vec<(u16, Vec<u8>)> = req
                                .period
                                .map(|p| (attr::NOM_ATTR_TIME_PD_POLL, p.to_be_bytes().to_vec()))
                                .into_iter()
                                .collect();
                            w.attr_list(&ext);
                        }
                    });
            });
    })
}

/// One object of a poll result to encode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservationOut {
    pub handle: u16,
    pub attrs: Vec<(u16, Vec<u8>)>,
}

/// The header of a poll result to encode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollReplyHeader {
    pub extended: bool,
    pub poll_number: u16,
    pub sequence_no: u16,
    pub rel_time: u32,
    pub abs_time: [u8; 8],
    pub obj_class: u16,
    pub attr_group: u16,
    pub context_id: u16,
}

/// Poll result (monitor → client), plain or one linked part, with the objects of one context.
pub fn encode_poll_result(
    invoke_id: u16,
    link: Link,
    h: &PollReplyHeader,
    objects: &[ObservationOut],
) -> Vec<u8> {
    let ro_type = if link == Link::Single {
        ro::RORS
    } else {
        ro::ROLRS
    };
    data_export(&mut Writer::default(), ro_type, |w| {
        if let Link::Linked { state, count } = link {
            w.u8(state).u8(count);
        }
        w.u16(invoke_id).u16(cmd::CONFIRMED_ACTION).with_len(|w| {
            let action_type = if h.extended {
                action::NOM_ACT_POLL_MDIB_DATA_EXT
            } else {
                action::NOM_ACT_POLL_MDIB_DATA
            };
            w.managed_object(MDS_OBJECT).u16(action_type).with_len(|w| {
                w.u16(h.poll_number);
                if h.extended {
                    w.u16(h.sequence_no);
                }
                w.u32(h.rel_time)
                    .bytes(&h.abs_time)
                    .u16(partition::OBJ)
                    .u16(h.obj_class)
                    .u16(h.attr_group);
                let contexts = u16::from(!objects.is_empty());
                w.u16(contexts).with_len(|w| {
                    if contexts == 0 {
                        return;
                    }
                    w.u16(h.context_id)
                        .u16(u16::try_from(objects.len()).unwrap_or(u16::MAX))
                        .with_len(|w| {
                            for o in objects {
                                w.u16(o.handle).attr_list(&o.attrs);
                            }
                        });
                });
            });
        });
    })
}

/// Remote operation error.
pub fn encode_error(invoke_id: u16, error_value: u16) -> Vec<u8> {
    data_export(&mut Writer::default(), ro::ROER, |w| {
        w.u16(invoke_id).u16(error_value).u16(0);
    })
}

// ---------------------------------------------------------------- attribute values

/// NuObsValue: one numeric with its state and unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NuObsValue {
    pub physio_id: u16,
    pub state: u16,
    pub unit_code: u16,
    /// FLOAT-Type word.
    pub value: u32,
}

impl NuObsValue {
    /// Bytes of one NuObsValue.
    pub const SIZE: usize = 10;

    fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(NuObsValue {
            physio_id: r.u16()?,
            state: r.u16()?,
            unit_code: r.u16()?,
            value: r.u32()?,
        })
    }

    /// The value of a NOM_ATTR_NU_VAL_OBS attribute.
    pub fn parse(v: &[u8]) -> Result<Self> {
        if v.len() < Self::SIZE {
            return Err(PduError::ValueSize {
                len: v.len(),
                expected: Self::SIZE,
            });
        }
        NuObsValue::read(&mut Reader::new(v))
    }

    /// The values of a NOM_ATTR_NU_CMPD_VAL_OBS attribute.
    pub fn parse_compound(v: &[u8]) -> Result<Vec<Self>> {
        let mut r = Reader::new(v);
        let count = r.u16()?;
        let mut body = r.sub_len16()?;
        let mut out = Vec::with_capacity(usize::from(count).min(64));
        for _ in 0..count {
            out.push(NuObsValue::read(&mut body)?);
        }
        Ok(out)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u16(self.physio_id)
            .u16(self.state)
            .u16(self.unit_code)
            .u32(self.value);
        w.buf
    }

    pub fn encode_compound(values: &[NuObsValue]) -> Vec<u8> {
        let mut w = Writer::default();
        w.u16(u16::try_from(values.len()).unwrap_or(u16::MAX))
            .with_len(|w| {
                for v in values {
                    w.bytes(&v.encode());
                }
            });
        w.buf
    }
}

/// An AbsoluteTime attribute value.
pub fn parse_abs_time(v: &[u8]) -> Result<[u8; 8]> {
    Reader::new(v)
        .array::<8>()
        .map_err(|_| PduError::ValueSize {
            len: v.len(),
            expected: 8,
        })
}

/// A RelativeTime attribute value.
pub fn parse_rel_time(v: &[u8]) -> Result<u32> {
    Reader::new(v).u32().map_err(|_| PduError::ValueSize {
        len: v.len(),
        expected: 4,
    })
}

fn read_label(r: &mut Reader<'_>) -> Result<String> {
    let len = usize::from(r.u16()?);
    let raw = r.bytes(len)?;
    Ok(clean_text(&String::from_utf8_lossy(raw)))
}

fn clean_text(s: &str) -> String {
    s.trim_matches(|c: char| c == '\0' || c.is_whitespace() || c == '\u{feff}')
        .to_string()
}

/// VariableLabel: length then 8-bit text, padded to an even length.
pub fn encode_label(w: &mut Writer, s: &str) {
    let mut b = s.as_bytes().to_vec();
    if b.len() % 2 == 1 {
        b.push(0);
    }
    w.u16(u16::try_from(b.len()).unwrap_or(u16::MAX)).bytes(&b);
}

/// NOM_ATTR_ID_MODEL: (manufacturer, model number).
pub fn parse_system_model(v: &[u8]) -> Result<(String, String)> {
    let mut r = Reader::new(v);
    Ok((read_label(&mut r)?, read_label(&mut r)?))
}

pub fn encode_system_model(manufacturer: &str, model: &str) -> Vec<u8> {
    let mut w = Writer::default();
    encode_label(&mut w, manufacturer);
    encode_label(&mut w, model);
    w.buf
}

/// One ProdSpecEntry: spec type, component, text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProdSpec {
    pub spec_type: u16,
    pub component: u16,
    pub text: String,
}

/// NOM_ATTR_ID_PROD_SPECN entries.
pub fn parse_prod_spec(v: &[u8]) -> Result<Vec<ProdSpec>> {
    let mut r = Reader::new(v);
    let count = r.u16()?;
    let mut body = r.sub_len16()?;
    let mut out = Vec::new();
    for _ in 0..count {
        let spec_type = body.u16()?;
        let component = body.u16()?;
        out.push(ProdSpec {
            spec_type,
            component,
            text: read_label(&mut body)?,
        });
    }
    Ok(out)
}

pub fn encode_prod_spec(entries: &[ProdSpec]) -> Vec<u8> {
    let mut w = Writer::default();
    w.u16(u16::try_from(entries.len()).unwrap_or(u16::MAX))
        .with_len(|w| {
            for e in entries {
                w.u16(e.spec_type).u16(e.component);
                encode_label(w, &e.text);
            }
        });
    w.buf
}

/// One DevAlarmEntry with its alert info.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlarmEntry {
    /// Physiological id (or object class) the alarm is about.
    pub source: u16,
    /// Event code (partition EVT).
    pub code: u16,
    /// AlertType.
    pub alert_type: u16,
    /// AlertState bits.
    pub state: u16,
    pub object: ManagedObjectId,
    /// The monitor's alarm text (STR_ALMON_INFO), when sent.
    pub text: Option<String>,
}

/// NOM_ATTR_AL_MON_P_AL_LIST / NOM_ATTR_AL_MON_T_AL_LIST entries.
pub fn parse_alarm_list(v: &[u8]) -> Result<Vec<AlarmEntry>> {
    use super::nomenclature::alert_info;
    let mut r = Reader::new(v);
    let count = r.u16()?;
    let mut body = r.sub_len16()?;
    let mut out = Vec::new();
    for _ in 0..count {
        let source = body.u16()?;
        let code = body.u16()?;
        let alert_type = body.u16()?;
        let state = body.u16()?;
        let object = ManagedObjectId::read(&mut body)?;
        let info_id = body.u16()?;
        let mut info = body.sub_len16()?;
        let text = if info_id == alert_info::STR_ALMON_INFO {
            // al_inst_no, al_text, priority, flags, then String (byte length, UTF-16 units).
            info.bytes(10)?;
            let len = usize::from(info.u16()?);
            let raw = info.bytes(len)?;
            let units: Vec<u16> = raw
                .chunks_exact(2)
                .filter_map(|c| <[u8; 2]>::try_from(c).ok().map(u16::from_be_bytes))
                .collect();
            Some(clean_text(&String::from_utf16_lossy(&units)))
        } else {
            None
        };
        out.push(AlarmEntry {
            source,
            code,
            alert_type,
            state,
            object,
            text,
        });
    }
    Ok(out)
}

pub fn encode_alarm_list(entries: &[AlarmEntry]) -> Vec<u8> {
    use super::nomenclature::alert_info;
    let mut w = Writer::default();
    w.u16(u16::try_from(entries.len()).unwrap_or(u16::MAX))
        .with_len(|w| {
            for (i, e) in entries.iter().enumerate() {
                w.u16(e.source)
                    .u16(e.code)
                    .u16(e.alert_type)
                    .u16(e.state)
                    .managed_object(e.object);
                match &e.text {
                    Some(text) => {
                        w.u16(alert_info::STR_ALMON_INFO).with_len(|w| {
                            w.u16(u16::try_from(i).unwrap_or(0)).u32(0).u16(0).u16(0);
                            let units: Vec<u16> = text.encode_utf16().collect();
                            w.u16(u16::try_from(units.len() * 2).unwrap_or(u16::MAX));
                            for u in units {
                                w.u16(u);
                            }
                        });
                    }
                    None => {
                        w.u16(alert_info::GEN_ALMON_INFO).with_len(|w| {
                            w.u16(u16::try_from(i).unwrap_or(0)).u32(0).u16(0).u16(0);
                        });
                    }
                }
            }
        });
    w.buf
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The association request as the Philips guide spells it byte for byte for the poll
    /// profile with the real-time numerics extension.
    #[test]
    fn association_request_layout() {
        let mut info = UserInfo::client();
        if let Some(p) = info.poll_profile.as_mut() {
            p.min_poll_period = 0x09C4;
            p.max_mtu_rx = 0x09C4;
            p.max_mtu_tx = 0x03E8;
            p.ext_options = Some(0x8C00_0000);
        }
        let m = encode_association_request(&info);
        assert_eq!(&m[..2], &[0x0D, 0xEC]);
        assert_eq!(m.len(), 2 + 0xEC);
        assert_eq!(&m[2..16], &SESSION_DATA);
        assert_eq!(&m[16..19], &[0xC1, 0xDC, 0x31]);
        // The user information: length 0x48, then MDSEUserInfoStd.
        let ui = 16 + 2 + 131;
        assert_eq!(&m[ui - 4..ui + 1], &[0x02, 0x01, 0x02, 0x81, 0x48]);
        assert_eq!(
            &m[ui + 1..ui + 25],
            &[0x80, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            &m[ui + 25..ui + 33],
            &[0x00, 0x01, 0x00, 0x2C, 0x00, 0x01, 0x00, 0x28]
        );
        assert_eq!(&m[m.len() - 16..], &[0; 16]);
        match decode(&m).unwrap() {
            Message::AssociationRequest(Some(got)) => assert_eq!(got, info),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn association_result_round_trip() {
        let info = server_user_info(Some(&UserInfo::client()), 1000);
        let m = encode_association_result(&info);
        assert_eq!(m[0], spdu::AC);
        assert_eq!(decode(&m).unwrap(), Message::AssociationResult(Some(info)));
        // A result whose presentation data this decoder cannot follow still accepts.
        assert_eq!(
            decode(&[0x0E, 0x02, 0xC1, 0x00]).unwrap(),
            Message::AssociationResult(None)
        );
    }

    #[test]
    fn session_messages() {
        assert_eq!(
            decode(&encode_release_request()).unwrap(),
            Message::ReleaseRequest
        );
        assert_eq!(
            decode(&encode_release_result()).unwrap(),
            Message::ReleaseResult
        );
        assert_eq!(decode(&encode_abort()).unwrap(), Message::Abort);
        assert_eq!(decode(&encode_refuse(0)).unwrap(), Message::Refuse);
        assert_eq!(encode_release_request().len(), 26);
        assert_eq!(encode_abort().len(), 48);
        // A length indicator past the end.
        assert!(matches!(
            decode(&[0x19, 0x05, 0x00]),
            Err(PduError::Truncated { .. })
        ));
        assert!(matches!(
            decode(&[0x42]),
            Err(PduError::UnknownSession(0x42))
        ));
        assert!(matches!(decode(&[]), Err(PduError::Truncated { .. })));
    }

    #[test]
    fn event_report_result_matches_the_guide() {
        let m = encode_event_report_result(&EventReportResult {
            invoke_id: 1,
            object: MDS_OBJECT,
            current_time: 0x000A_BD00,
            event_type: action::NOM_NOTI_MDS_CREAT,
        });
        assert_eq!(
            m,
            [
                0xE1, 0x00, 0x00, 0x02, 0x00, 0x02, 0x00, 0x14, 0x00, 0x01, 0x00, 0x01, 0x00, 0x0E,
                0x00, 0x21, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0A, 0xBD, 0x00, 0x0D, 0x06, 0x00, 0x00
            ]
        );
    }

    #[test]
    fn extended_poll_request_matches_the_guide() {
        let req = PollRequest {
            invoke_id: 1,
            extended: true,
            poll_number: 1,
            obj_class: class::NOM_MOC_VMO_METRIC_NU,
            attr_group: 0,
            period: None,
        };
        let m = encode_poll_request(&req);
        assert_eq!(
            m,
            [
                0xE1, 0x00, 0x00, 0x02, 0x00, 0x01, 0x00, 0x20, 0x00, 0x01, 0x00, 0x07, 0x00, 0x1A,
                0x00, 0x21, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xF1, 0x3B, 0x00, 0x0C,
                0x00, 0x01, 0x00, 0x01, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00
            ]
        );
        assert_eq!(decode(&m).unwrap(), Message::PollRequest(req));
        let alarms = PollRequest {
            obj_class: class::NOM_MOC_VMO_AL_MON,
            attr_group: attr::NOM_ATTR_GRP_AL_MON,
            period: Some(0x0049_3E00),
            ..req
        };
        let m = encode_poll_request(&alarms);
        assert_eq!(
            &m[m.len() - 12..],
            &[0x00, 0x01, 0x00, 0x08, 0xF1, 0x3E, 0x00, 0x04, 0x00, 0x49, 0x3E, 0x00]
        );
        assert_eq!(decode(&m).unwrap(), Message::PollRequest(alarms));
        let single = PollRequest {
            extended: false,
            obj_class: class::NOM_MOC_VMS_MDS,
            attr_group: attr::NOM_ATTR_GRP_SYS_PROD,
            ..req
        };
        let m = encode_poll_request(&single);
        assert_eq!(
            &m[24..],
            &[0x0C, 0x16, 0x00, 0x08, 0x00, 0x01, 0x00, 0x01, 0x00, 0x21, 0x08, 0x0C]
        );
        assert_eq!(decode(&m).unwrap(), Message::PollRequest(single));
    }

    fn sample_objects() -> Vec<ObservationOut> {
        let hr = NuObsValue {
            physio_id: 0x4182,
            state: 0,
            unit_code: 0x0AA0,
            value: 72,
        };
        let sys = NuObsValue {
            physio_id: 0x4A05,
            state: 0,
            unit_code: 0x0F20,
            value: 120,
        };
        let dia = NuObsValue {
            physio_id: 0x4A06,
            ..sys
        };
        vec![
            ObservationOut {
                handle: 1,
                attrs: vec![
                    (attr::NOM_ATTR_NU_VAL_OBS, hr.encode()),
                    (attr::NOM_ATTR_TIME_STAMP_REL, 77u32.to_be_bytes().to_vec()),
                ],
            },
            ObservationOut {
                handle: 2,
                attrs: vec![(
                    attr::NOM_ATTR_NU_CMPD_VAL_OBS,
                    NuObsValue::encode_compound(&[sys, dia]),
                )],
            },
        ]
    }

    #[test]
    fn poll_result_round_trip_single_and_linked() {
        let h = PollReplyHeader {
            extended: true,
            poll_number: 9,
            sequence_no: 3,
            rel_time: 0xDEAD_BEEF,
            abs_time: [0x20, 0x26, 0x01, 0x02, 0x03, 0x04, 0x05, 0x00],
            obj_class: class::NOM_MOC_VMO_METRIC_NU,
            attr_group: attr::NOM_ATTR_GRP_METRIC_VAL_OBS,
            context_id: 0,
        };
        let objs = sample_objects();
        for link in [
            Link::Single,
            Link::Linked {
                state: rorls::FIRST,
                count: 1,
            },
        ] {
            let m = encode_poll_result(42, link, &h, &objs);
            let Message::PollResult {
                invoke_id,
                link: got_link,
                reply,
            } = decode(&m).unwrap()
            else {
                panic!("not a poll result");
            };
            assert_eq!((invoke_id, got_link), (42, link));
            assert_eq!(
                (reply.poll_number, reply.sequence_no, reply.rel_time),
                (9, 3, 0xDEAD_BEEF)
            );
            assert_eq!(reply.abs_time, h.abs_time);
            assert_eq!(reply.observations.len(), 2);
            let hr = reply.observations[0]
                .attrs
                .get(attr::NOM_ATTR_NU_VAL_OBS)
                .unwrap();
            assert_eq!(NuObsValue::parse(hr).unwrap().value, 72);
            let cmpd = reply.observations[1]
                .attrs
                .get(attr::NOM_ATTR_NU_CMPD_VAL_OBS)
                .unwrap();
            assert_eq!(NuObsValue::parse_compound(cmpd).unwrap().len(), 2);
        }
        // Every truncation of a valid message is an error or a shorter valid message, never a
        // panic.
        let m = encode_poll_result(42, Link::Single, &h, &objs);
        for n in 0..m.len() {
            let _ = decode(&m[..n]);
        }
    }

    #[test]
    fn lying_list_lengths_are_rejected() {
        let h = PollReplyHeader {
            extended: false,
            poll_number: 1,
            sequence_no: 0,
            rel_time: 0,
            abs_time: [0xFF; 8],
            obj_class: 6,
            attr_group: 0,
            context_id: 0,
        };
        let good = encode_poll_result(1, Link::Single, &h, &sample_objects());
        assert!(decode(&good).is_ok());
        // SPpdu 4 + ROapdus 4 + RORSapdu 6 + ActionResult 10 + reply header 20: the context count.
        let mut m = good.clone();
        assert_eq!(&m[44..46], &[0, 1]);
        m[45] = 2;
        assert!(decode(&m).is_err());
        // The first object's attribute count (context id, count, length, handle come first).
        let mut m = good;
        assert_eq!(&m[56..58], &[0, 2]);
        m[57] = 1;
        assert!(matches!(decode(&m), Err(PduError::ListLength { .. })));
        // Attribute lists: count beyond the entries, entries beyond the count.
        assert!(AttrList::read(&mut Reader::new(&[0, 2, 0, 6, 9, 9, 0, 2, 1, 1])).is_err());
        assert!(matches!(
            AttrList::read(&mut Reader::new(&[0, 1, 0, 8, 9, 9, 0, 0, 7, 7, 0, 0])),
            Err(PduError::ListLength {
                declared: 8,
                used: 4,
                ..
            })
        ));
    }

    #[test]
    fn mds_create_round_trip_with_identity() {
        let attrs = vec![
            (
                attr::NOM_ATTR_ID_MODEL,
                encode_system_model("Philips", "MP70"),
            ),
            (
                attr::NOM_ATTR_ID_PROD_SPECN,
                encode_prod_spec(&[ProdSpec {
                    spec_type: 1,
                    component: 0,
                    text: "DE12345678".into(),
                }]),
            ),
        ];
        let m = encode_mds_create(7, 1234, &attrs);
        let Message::MdsCreate(c) = decode(&m).unwrap() else {
            panic!()
        };
        assert_eq!((c.invoke_id, c.event_time, c.mds), (7, 1234, MDS_OBJECT));
        let (maker, model) =
            parse_system_model(c.attrs.get(attr::NOM_ATTR_ID_MODEL).unwrap()).unwrap();
        assert_eq!((maker.as_str(), model.as_str()), ("Philips", "MP70"));
        let spec = parse_prod_spec(c.attrs.get(attr::NOM_ATTR_ID_PROD_SPECN).unwrap()).unwrap();
        assert_eq!(spec[0].text, "DE12345678");
    }

    #[test]
    fn alarm_list_round_trip() {
        let entries = vec![
            AlarmEntry {
                source: 0x4BB8,
                code: 62,
                alert_type: 512,
                state: 0,
                object: ManagedObjectId {
                    class: 6,
                    context: 0,
                    handle: 2,
                },
                text: Some("**SpO2 Low".into()),
            },
            AlarmEntry {
                source: 0x4182,
                code: 40,
                alert_type: 1024,
                state: 8,
                object: MDS_OBJECT,
                text: None,
            },
        ];
        assert_eq!(
            parse_alarm_list(&encode_alarm_list(&entries)).unwrap(),
            entries
        );
    }

    #[test]
    fn remote_error_and_unknown_operations() {
        assert_eq!(
            decode(&encode_error(5, 9)).unwrap(),
            Message::Error {
                invoke_id: 5,
                error_value: 9
            }
        );
        let get = [
            0xE1, 0x00, 0x00, 0x02, 0x00, 0x01, 0x00, 0x06, 0x00, 0x01, 0x00, 0x03, 0x00, 0x00,
        ];
        assert_eq!(
            decode(&get).unwrap(),
            Message::Other {
                ro_type: ro::ROIV,
                command: cmd::GET
            }
        );
    }
}
