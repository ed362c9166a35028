//! What the numbers mean: the interface levels, the reserved "no value" codes, and each Datex
//! parameter's fixed scaling, IEEE 11073 MDC code and UCUM unit.
//!
//! Every value on the interface is a 16-bit signed integer in a fixed unit per parameter
//! (pressures in 1/100 mmHg, temperatures in 1/100 °C, gas and saturation percentages in 1/100
//! %, rates in 1/min). Values from −32001 down are not measurements but codes. A parameter
//! without a standard code becomes `DeviceCode::Local { code: "DATEX_<name>" }`.

use serde::Serialize;

use super::record::{GroupState, PhdbValue};
use crate::model::Timestamp;
use crate::protocol::device::{DeviceCode, DeviceReading, ReadingStatus, ReadingValue};

// ---------------------------------------------------------------- interface levels

/// Interface revision level 1995 (`dri_level` 2).
pub const DRI_LEVEL_95: u8 = 0x02;
/// Interface revision level 1997.
pub const DRI_LEVEL_97: u8 = 0x03;
/// Interface revision level 1998.
pub const DRI_LEVEL_98: u8 = 0x04;
/// Interface revision level 1999.
pub const DRI_LEVEL_99: u8 = 0x05;
/// Interface revision level 2000.
pub const DRI_LEVEL_2000: u8 = 0x06;
/// Interface revision level 2001, the oldest a fallback tries.
pub const DRI_LEVEL_2001: u8 = 0x07;
/// Interface revision level 2003.
pub const DRI_LEVEL_2003: u8 = 0x08;
/// Interface revision level 2005.
pub const DRI_LEVEL_2005: u8 = 0x09;
/// Interface revision level 2009.
pub const DRI_LEVEL_2009: u8 = 0x0A;
/// Interface revision level 2015, the newest a fallback tries (and tries first).
pub const DRI_LEVEL_2015: u8 = 0x0B;

/// The order a client that does not know the monitor's level requests in: newest first.
pub const FALLBACK_LEVELS: [u8; 5] = [
    DRI_LEVEL_2015,
    DRI_LEVEL_2009,
    DRI_LEVEL_2005,
    DRI_LEVEL_2003,
    DRI_LEVEL_2001,
];

/// The year an interface level is named after, for logs and documentation.
pub fn level_year(level: u8) -> Option<u16> {
    Some(match level {
        DRI_LEVEL_95 => 1995,
        DRI_LEVEL_97 => 1997,
        DRI_LEVEL_98 => 1998,
        DRI_LEVEL_99 => 1999,
        DRI_LEVEL_2000 => 2000,
        DRI_LEVEL_2001 => 2001,
        DRI_LEVEL_2003 => 2003,
        DRI_LEVEL_2005 => 2005,
        DRI_LEVEL_2009 => 2009,
        DRI_LEVEL_2015 => 2015,
        _ => return None,
    })
}

// ---------------------------------------------------------------- reserved value codes

/// Values at or below this are codes, not measurements (the smallest value is −32000).
pub const DATA_INVALID_LIMIT: i16 = -32001;
/// There is no valid data.
pub const DATA_INVALID: i16 = -32767;
/// The data is not updated.
pub const DATA_NOT_UPDATED: i16 = -32766;
/// Data discontinuity (calibration, …).
pub const DATA_DISCONT: i16 = -32765;
/// The data is below the lower valid limit.
pub const DATA_UNDER_RANGE: i16 = -32764;
/// The data is above the upper valid limit.
pub const DATA_OVER_RANGE: i16 = -32763;
/// The data is not calibrated.
pub const DATA_NOT_CALIBRATED: i16 = -32762;

/// Why a parameter the monitor has produced no reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoValue {
    Invalid,
    NotUpdated,
    Discontinuity,
    UnderRange,
    OverRange,
    NotCalibrated,
    /// Another value at or below [`DATA_INVALID_LIMIT`].
    Reserved,
    /// The measurement exists but is not active (or is switched off).
    Inactive,
}

impl NoValue {
    /// The reserved code `raw` stands for, if it is one.
    pub fn classify(raw: i16) -> Option<NoValue> {
        Some(match raw {
            DATA_INVALID => NoValue::Invalid,
            DATA_NOT_UPDATED => NoValue::NotUpdated,
            DATA_DISCONT => NoValue::Discontinuity,
            DATA_UNDER_RANGE => NoValue::UnderRange,
            DATA_OVER_RANGE => NoValue::OverRange,
            DATA_NOT_CALIBRATED => NoValue::NotCalibrated,
            r if r <= DATA_INVALID_LIMIT => NoValue::Reserved,
            _ => return None,
        })
    }
}

/// Unavailable values seen, by reason (counted, never emitted as readings).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UnavailableCounts {
    pub invalid: u64,
    pub not_updated: u64,
    pub discontinuity: u64,
    pub under_range: u64,
    pub over_range: u64,
    pub not_calibrated: u64,
    pub reserved: u64,
    pub inactive: u64,
}

impl UnavailableCounts {
    /// Counts one value without a reading.
    pub fn count(&mut self, why: NoValue) {
        let c = match why {
            NoValue::Invalid => &mut self.invalid,
            NoValue::NotUpdated => &mut self.not_updated,
            NoValue::Discontinuity => &mut self.discontinuity,
            NoValue::UnderRange => &mut self.under_range,
            NoValue::OverRange => &mut self.over_range,
            NoValue::NotCalibrated => &mut self.not_calibrated,
            NoValue::Reserved => &mut self.reserved,
            NoValue::Inactive => &mut self.inactive,
        };
        *c += 1;
    }

    /// All reasons together.
    pub fn total(&self) -> u64 {
        self.invalid
            + self.not_updated
            + self.discontinuity
            + self.under_range
            + self.over_range
            + self.not_calibrated
            + self.reserved
            + self.inactive
    }
}

// ---------------------------------------------------------------- parameters

/// One value of a pressure group (invasive channel or NIBP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PressField {
    Sys,
    Dia,
    Mean,
    /// The pulse rate the pressure channel counts.
    PulseRate,
}

impl PressField {
    fn name(self) -> &'static str {
        match self {
            PressField::Sys => "SYS",
            PressField::Dia => "DIA",
            PressField::Mean => "MEAN",
            PressField::PulseRate => "PR",
        }
    }
}

/// A parameter of the physiological database, with what its mapping depends on (channel
/// number and label of invasive pressures and temperatures, ambient pressure for etCO2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatexParam {
    /// Heart rate from the monitor's selected source.
    EcgHr,
    /// ST level of ECG channel 1..3, 1/100 mm.
    EcgSt(u8),
    /// Respiration rate from ECG impedance.
    EcgImpRr,
    /// Invasive pressure channel `ch` (1..8) with its `label_info`.
    Invasive {
        ch: u8,
        label: u16,
        field: PressField,
    },
    Nibp(PressField),
    /// Temperature channel `ch` (1..6) with its `label_info`.
    Temp {
        ch: u8,
        label: u16,
    },
    SpO2,
    SpO2PulseRate,
    /// Pleth modulation (IR amplitude).
    SpO2IrAmp,
    /// End-tidal CO2 (1/100 %) with the same group's ambient pressure (1/10 mmHg, raw).
    Co2Et {
        amb_raw: i16,
    },
    Co2Fi,
    Co2Rr,
    AmbPress,
    O2Et,
    O2Fi,
    N2oEt,
    N2oFi,
    AaEt,
    AaFi,
    AaMacSum,
    SpiroRr,
    Ppeak,
    Peep,
    Pplat,
    TvInsp,
    TvExp,
    Compliance,
    MvExp,
    CardiacOutput,
    Pcwp,
    SvO2,
    /// Premature ventricular contractions per minute (arrhythmia analysis).
    Pvc,
    /// The second SpO2 channel.
    SpO2Second,
    SpO2SecondPulseRate,
    Bis,
    BisSqi,
    EntropyState,
    EntropyResponse,
    Vo2,
    Vco2,
    PeepIntrinsic,
    Pmean,
}

/// Invasive pressure labels (`label_info` of a pressure group).
pub fn pressure_label(label: u16) -> Option<&'static str> {
    Some(match label {
        1 => "ART",
        2 => "CVP",
        3 => "PA",
        4 => "RAP",
        5 => "RVP",
        6 => "LAP",
        7 => "ICP",
        8 => "ABP",
        _ => return None, // 0 not defined, 9..14 the plain channel names P1..P6
    })
}

/// Temperature labels (`label_info` of a temperature group).
pub fn temp_label(label: u16) -> Option<&'static str> {
    Some(match label {
        1 => "ESO",
        2 => "NASO",
        3 => "TYMP",
        4 => "RECT",
        5 => "BLAD",
        6 => "AXIL",
        7 => "SKIN",
        8 => "AIRW",
        9 => "ROOM",
        10 => "MYO",
        15 => "CORE",
        16 => "SURF",
        _ => return None, // 0 not used, 11..14 the plain channel names T1..T4
    })
}

/// How one parameter becomes a reading: code, UCUM unit, raw divisor, vendor label, channel.
#[derive(Clone, Debug, PartialEq)]
pub struct Mapping {
    pub code: DeviceCode,
    pub unit: &'static str,
    /// value = raw / divisor.
    pub divisor: f64,
    pub label: String,
    pub channel: Option<String>,
}

fn mdc(code: u32, refid: &'static str, unit: &'static str, divisor: f64, label: &str) -> Mapping {
    Mapping {
        code: DeviceCode::mdc(code, refid),
        unit,
        divisor,
        label: label.to_string(),
        channel: None,
    }
}

fn local(name: &str, unit: &'static str, divisor: f64, label: &str) -> Mapping {
    Mapping {
        code: DeviceCode::Local {
            code: format!("DATEX_{name}"),
        },
        unit,
        divisor,
        label: label.to_string(),
        channel: None,
    }
}

fn invasive(ch: u8, label: u16, field: PressField) -> Mapping {
    let name = pressure_label(label);
    let shown = name.map_or_else(|| format!("P{ch}"), str::to_string);
    let vendor = match name {
        Some(n) => format!("P{ch} {n} {}", field.name()),
        None => format!("P{ch} {}", field.name()),
    };
    const ART: [(u32, &str); 3] = [
        (150_033, "MDC_PRESS_BLD_ART_SYS"),
        (150_034, "MDC_PRESS_BLD_ART_DIA"),
        (150_035, "MDC_PRESS_BLD_ART_MEAN"),
    ];
    const ABP: [(u32, &str); 3] = [
        (150_037, "MDC_PRESS_BLD_ART_ABP_SYS"),
        (150_038, "MDC_PRESS_BLD_ART_ABP_DIA"),
        (150_039, "MDC_PRESS_BLD_ART_ABP_MEAN"),
    ];
    const CVP: [(u32, &str); 3] = [
        (150_085, "MDC_PRESS_BLD_VEN_CENT_SYS"),
        (150_086, "MDC_PRESS_BLD_VEN_CENT_DIA"),
        (150_087, "MDC_PRESS_BLD_VEN_CENT_MEAN"),
    ];
    const PA: [(u32, &str); 3] = [
        (150_045, "MDC_PRESS_BLD_ART_PULM_SYS"),
        (150_046, "MDC_PRESS_BLD_ART_PULM_DIA"),
        (150_047, "MDC_PRESS_BLD_ART_PULM_MEAN"),
    ];
    let table = match name {
        Some("ART") => Some(&ART),
        Some("ABP") => Some(&ABP),
        Some("CVP") => Some(&CVP),
        Some("PA") => Some(&PA),
        _ => None,
    };
    let mut m = match field {
        PressField::PulseRate => match name {
            Some("ART" | "ABP") => mdc(149_522, "MDC_BLD_PULS_RATE_INV", "/min", 1.0, &vendor),
            _ => local(&format!("{shown}_PR"), "/min", 1.0, &vendor),
        },
        _ => {
            let i = match field {
                PressField::Sys => 0,
                PressField::Dia => 1,
                _ => 2,
            };
            match table.and_then(|t| t.get(i)) {
                Some(&(code, refid)) => mdc(code, refid, "mm[Hg]", 100.0, &vendor),
                None => local(
                    &format!("{shown}_{}", field.name()),
                    "mm[Hg]",
                    100.0,
                    &vendor,
                ),
            }
        }
    };
    m.channel = Some(format!("p{ch}"));
    m
}

fn temperature(ch: u8, label: u16) -> Mapping {
    let name = temp_label(label);
    let vendor = match name {
        Some(n) => format!("T{ch} {n}"),
        None => format!("T{ch}"),
    };
    // Room, airway, skin, surface and myocardial temperatures are not body temperature: they
    // stay local so no score reads a 22 °C room as hypothermia.
    let mut m = match name {
        Some(n @ ("SKIN" | "AIRW" | "ROOM" | "MYO" | "SURF")) => {
            local(&format!("TEMP_{n}"), "Cel", 100.0, &vendor)
        }
        Some("RECT") => mdc(188_420, "MDC_TEMP_RECT", "Cel", 100.0, &vendor),
        Some("AXIL") => mdc(188_496, "MDC_TEMP_AXIL", "Cel", 100.0, &vendor),
        Some("CORE") => mdc(150_368, "MDC_TEMP_CORE", "Cel", 100.0, &vendor),
        _ => mdc(150_344, "MDC_TEMP", "Cel", 100.0, &vendor),
    };
    m.channel = Some(format!("t{ch}"));
    m
}

/// The code, unit, scaling and label of a parameter. `Co2Et` maps to its percentage form
/// here; [`to_reading`] converts it to `mm[Hg]` when the ambient pressure is known.
pub fn mapping(p: DatexParam) -> Mapping {
    use DatexParam as P;
    match p {
        P::EcgHr => mdc(147_842, "MDC_ECG_HEART_RATE", "/min", 1.0, "ECG HR"),
        P::EcgSt(n) => local(&format!("ECG_ST{n}"), "mm", 100.0, &format!("ECG ST{n}")),
        P::EcgImpRr => mdc(151_578, "MDC_TTHOR_RESP_RATE", "/min", 1.0, "ECG IMP-RR"),
        P::Invasive { ch, label, field } => invasive(ch, label, field),
        P::Nibp(field) => {
            let label = format!("NIBP {}", field.name());
            match field {
                PressField::Sys => {
                    mdc(150_021, "MDC_PRESS_BLD_NONINV_SYS", "mm[Hg]", 100.0, &label)
                }
                PressField::Dia => {
                    mdc(150_022, "MDC_PRESS_BLD_NONINV_DIA", "mm[Hg]", 100.0, &label)
                }
                PressField::Mean => mdc(
                    150_023,
                    "MDC_PRESS_BLD_NONINV_MEAN",
                    "mm[Hg]",
                    100.0,
                    &label,
                ),
                PressField::PulseRate => mdc(149_546, "MDC_PULS_RATE_NON_INV", "/min", 1.0, &label),
            }
        }
        P::Temp { ch, label } => temperature(ch, label),
        P::SpO2 => mdc(150_456, "MDC_PULS_OXIM_SAT_O2", "%", 100.0, "SpO2"),
        P::SpO2PulseRate => mdc(149_530, "MDC_PULS_OXIM_PULS_RATE", "/min", 1.0, "SpO2 PR"),
        P::SpO2IrAmp => local("SPO2_IR_AMP", "%", 1.0, "SpO2 IR-AMP"),
        P::Co2Et { .. } => local("CO2_ET", "%", 100.0, "CO2 ET"),
        P::Co2Fi => local("CO2_FI", "%", 100.0, "CO2 FI"),
        P::Co2Rr => mdc(151_594, "MDC_CO2_RESP_RATE", "/min", 1.0, "CO2 RR"),
        P::AmbPress => local("AMB_PRESS", "mm[Hg]", 10.0, "CO2 PAMB"),
        P::O2Et => local("O2_ET", "%", 100.0, "O2 ET"),
        P::O2Fi => mdc(152_196, "MDC_CONC_AWAY_O2_INSP", "%", 100.0, "O2 FI"),
        P::N2oEt => local("N2O_ET", "%", 100.0, "N2O ET"),
        P::N2oFi => local("N2O_FI", "%", 100.0, "N2O FI"),
        P::AaEt => local("AA_ET", "%", 100.0, "AA ET"),
        P::AaFi => local("AA_FI", "%", 100.0, "AA FI"),
        P::AaMacSum => local("AA_MAC_SUM", "", 100.0, "AA MAC-SUM"),
        P::SpiroRr => mdc(151_586, "MDC_VENT_RESP_RATE", "/min", 1.0, "FLOW-VOL RR"),
        P::Ppeak => local("PPEAK", "cm[H2O]", 100.0, "FLOW-VOL PPEAK"),
        P::Peep => mdc(
            151_976,
            "MDC_VENT_PRESS_AWAY_END_EXP_POS",
            "cm[H2O]",
            100.0,
            "FLOW-VOL PEEP",
        ),
        P::Pplat => local("PPLAT", "cm[H2O]", 100.0, "FLOW-VOL PPLAT"),
        P::TvInsp => local("TV_INSP", "mL", 10.0, "FLOW-VOL TV-INSP"),
        P::TvExp => mdc(151_980, "MDC_VENT_VOL_TIDAL", "mL", 10.0, "FLOW-VOL TV-EXP"),
        P::Compliance => local("COMPLIANCE", "mL/cm[H2O]", 100.0, "FLOW-VOL COMP"),
        P::MvExp => local("MV_EXP", "L/min", 100.0, "FLOW-VOL MV-EXP"),
        P::CardiacOutput => local("CO", "mL/min", 1.0, "CO-WEDGE CO"),
        P::Pcwp => local("PCWP", "mm[Hg]", 100.0, "CO-WEDGE PCWP"),
        P::SvO2 => local("SVO2", "%", 100.0, "SvO2"),
        P::Pvc => local("PVC", "/min", 1.0, "ECG-ARRH PVC"),
        P::SpO2Second => local("SPO2_2", "%", 100.0, "SpO2 (2)"),
        P::SpO2SecondPulseRate => local("SPO2_2_PR", "/min", 1.0, "SpO2 PR (2)"),
        P::Bis => local("BIS", "", 1.0, "BIS"),
        P::BisSqi => local("BIS_SQI", "", 1.0, "BIS SQI"),
        P::EntropyState => local("ENTROPY_SE", "", 1.0, "ENTROPY SE"),
        P::EntropyResponse => local("ENTROPY_RE", "", 1.0, "ENTROPY RE"),
        P::Vo2 => local("VO2", "mL/min", 10.0, "GASEX VO2"),
        P::Vco2 => local("VCO2", "mL/min", 10.0, "GASEX VCO2"),
        P::PeepIntrinsic => local("PEEP_I", "cm[H2O]", 100.0, "FLOW-VOL2 IPEEP"),
        P::Pmean => local("PMEAN", "cm[H2O]", 100.0, "FLOW-VOL2 PMEAN"),
    }
}

/// A decoded value as a reading, or why it has none. etCO2 becomes `mm[Hg]` (code 151708) when
/// its group carries a valid ambient pressure: mmHg = % / 100 × ambient mmHg, to 0.1 mmHg;
/// without one it stays a local reading in %.
pub fn to_reading(v: &PhdbValue, time: Option<Timestamp>) -> Result<DeviceReading, NoValue> {
    if v.state == GroupState::Inactive {
        return Err(NoValue::Inactive);
    }
    if let Some(why) = NoValue::classify(v.raw) {
        return Err(why);
    }
    let mut m = mapping(v.param);
    let mut value = f64::from(v.raw) / m.divisor;
    if let DatexParam::Co2Et { amb_raw } = v.param {
        if amb_raw > 0 {
            let amb_mmhg = f64::from(amb_raw) / 10.0;
            value = (value / 100.0 * amb_mmhg * 10.0).round() / 10.0;
            m.code = DeviceCode::mdc(151_708, "MDC_CONC_AWAY_CO2_ET");
            m.unit = "mm[Hg]";
        }
    }
    Ok(DeviceReading {
        code: m.code,
        value: ReadingValue::Num(value),
        unit: m.unit.to_string(),
        time,
        channel: m.channel,
        label: Some(m.label),
        status: match v.state {
            GroupState::Questionable => ReadingStatus::Questionable,
            _ => ReadingStatus::Valid,
        },
    })
}
