//! MEDIBUS command codes and data-code tables: which reading each data code is, in which unit,
//! and the IEEE 11073 code vigil gives it.
//!
//! Data codes are one byte, sent as two ASCII hex characters; the same byte means different
//! things in code page 1, code page 2 and the settings table. Units are the ones Dräger's
//! MEDIBUS tables give for the Evita family; pressures stay in `mbar` as sent (the normalizer
//! converts PEEP to `cm[H2O]`, 1 mbar = 1.01972 cmH2O). Codes with no well-established MDC term
//! keep a LOCAL code (`MEDIBUS_…`); settings are always LOCAL (`MEDIBUS_SET_…`) so that a set
//! value is never taken for a measurement.

use crate::protocol::device::DeviceCode;

/// Command codes (the byte after `ESC`, echoed after `SOH`).
pub mod command {
    /// Response echo meaning "your command arrived corrupted".
    pub const CORRUPT: u8 = 0x15;
    /// Request current alarms, code page 3.
    pub const ALARMS_CP3: u8 = 0x23;
    /// Request current measured data, code page 1.
    pub const MEASURED_CP1: u8 = 0x24;
    /// Request current low alarm limits, code page 1.
    pub const LOW_LIMITS_CP1: u8 = 0x25;
    /// Request current high alarm limits, code page 1.
    pub const HIGH_LIMITS_CP1: u8 = 0x26;
    /// Request current alarms, code page 1.
    pub const ALARMS_CP1: u8 = 0x27;
    /// Request current date and time.
    pub const DATE_TIME: u8 = 0x28;
    /// Request current device settings.
    pub const SETTINGS: u8 = 0x29;
    /// Request current text messages.
    pub const TEXT_MESSAGES: u8 = 0x2A;
    /// Request current measured data, code page 2.
    pub const MEASURED_CP2: u8 = 0x2B;
    /// Request current low alarm limits, code page 2.
    pub const LOW_LIMITS_CP2: u8 = 0x2C;
    /// Request current high alarm limits, code page 2.
    pub const HIGH_LIMITS_CP2: u8 = 0x2D;
    /// Request current alarms, code page 2.
    pub const ALARMS_CP2: u8 = 0x2E;
    /// No operation: keeps the link alive.
    pub const NOP: u8 = 0x30;
    /// The sender's clock was changed (the receiver may re-read the date and time).
    pub const TIME_CHANGED: u8 = 0x49;
    /// Configure which data codes a data response carries.
    pub const CONFIGURE_RESPONSE: u8 = 0x4A;
    /// Initialize communication (ICC): must precede every other command of a session.
    pub const ICC: u8 = 0x51;
    /// Request device identification.
    pub const DEVICE_ID: u8 = 0x52;
    /// Request real-time (waveform) configuration.
    pub const REALTIME_CONFIG: u8 = 0x53;
    /// Configure real-time transmission.
    pub const CONFIGURE_REALTIME: u8 = 0x54;
    /// Stop communication.
    pub const STOP: u8 = 0x55;
    /// The real-time configuration changed.
    pub const REALTIME_CONFIG_CHANGED: u8 = 0x56;
}

/// Width of the value field of one measured-data record (after the 2-character data code).
pub const MEASURED_VALUE_WIDTH: usize = 4;
/// Width of the value field of one device-setting record.
pub const SETTING_VALUE_WIDTH: usize = 5;
/// One alarm record: priority character, 2-character alarm code, 12-character phrase.
pub const ALARM_RECORD_LEN: usize = 15;
/// Width of the alarm phrase.
pub const ALARM_PHRASE_LEN: usize = 12;

/// Which data-code table a record belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    /// Measured data, code page 1 (command `0x24`).
    MeasuredCp1,
    /// Measured data, code page 2 (command `0x2B`).
    MeasuredCp2,
    /// Current device settings (command `0x29`).
    Settings,
}

impl Table {
    /// The vendor label of a data code in this table: the code itself for code page 1 and
    /// settings (settings readings are told apart by their channel), prefixed for code page 2.
    pub fn label(self, code: u8) -> String {
        match self {
            Table::MeasuredCp1 | Table::Settings => format!("{code:02X}"),
            Table::MeasuredCp2 => format!("CP2:{code:02X}"),
        }
    }

    /// LOCAL code for a data code this table does not know.
    pub fn unknown_code(self, code: u8) -> DeviceCode {
        let prefix = match self {
            Table::MeasuredCp1 => "MEDIBUS_CP1",
            Table::MeasuredCp2 => "MEDIBUS_CP2",
            Table::Settings => "MEDIBUS_SET",
        };
        DeviceCode::Local {
            code: format!("{prefix}_{code:02X}"),
        }
    }
}

/// How vigil reports a data code.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DataCode {
    pub code: u8,
    /// What the device calls it.
    pub name: &'static str,
    /// UCUM unit of the reported value (after `scale`).
    pub unit: &'static str,
    /// IEEE 11073 code and reference id, when one fits.
    pub mdc: Option<(u32, &'static str)>,
    /// LOCAL code used when `mdc` is `None`.
    pub local: &'static str,
    /// Factor from the device's unit to `unit`.
    pub scale: f64,
}

impl DataCode {
    /// The reading's code: MDC when known, else the LOCAL code.
    pub fn device_code(&self) -> DeviceCode {
        match self.mdc {
            Some((code, refid)) => DeviceCode::mdc(code, refid),
            None => DeviceCode::Local {
                code: self.local.to_string(),
            },
        }
    }
}

const fn mdc(
    code: u8,
    name: &'static str,
    unit: &'static str,
    mdc: u32,
    refid: &'static str,
) -> DataCode {
    DataCode {
        code,
        name,
        unit,
        mdc: Some((mdc, refid)),
        local: "",
        scale: 1.0,
    }
}

const fn local(code: u8, name: &'static str, unit: &'static str, local: &'static str) -> DataCode {
    DataCode {
        code,
        name,
        unit,
        mdc: None,
        local,
        scale: 1.0,
    }
}

/// Measured data, code page 1.
pub const MEASURED_CP1: &[DataCode] = &[
    local(0x05, "Breathing pressure", "mbar", "MEDIBUS_PAW"),
    mdc(0x06, "Compliance", "mL/mbar", 151_688, "MDC_COMPL_LUNG"),
    mdc(0x07, "Compliance", "L/bar", 151_688, "MDC_COMPL_LUNG"),
    mdc(0x08, "Resistance", "mbar.s/L", 151_840, "MDC_RES_AWAY"),
    local(0x09, "CO2 production", "mL/min", "MEDIBUS_VCO2"),
    local(0x6B, "Ambient pressure", "mbar", "MEDIBUS_PAMB"),
    local(0x71, "Minimal airway pressure", "mbar", "MEDIBUS_PMIN"),
    mdc(
        0x73,
        "Mean airway pressure",
        "mbar",
        151_819,
        "MDC_PRESS_AWAY_INSP_MEAN",
    ),
    mdc(
        0x74,
        "Plateau pressure",
        "mbar",
        151_784,
        "MDC_PRESS_RESP_PLAT",
    ),
    mdc(
        0x78,
        "PEEP",
        "mbar",
        151_976,
        "MDC_VENT_PRESS_AWAY_END_EXP_POS",
    ),
    local(0x79, "Intrinsic PEEP", "mbar", "MEDIBUS_PEEPI"),
    mdc(
        0x7D,
        "Peak airway pressure",
        "mbar",
        151_817,
        "MDC_PRESS_AWAY_INSP_PEAK",
    ),
    mdc(0x88, "Tidal volume", "mL", 151_980, "MDC_VENT_VOL_TIDAL"),
    local(0xB2, "Leakage", "mL/min", "MEDIBUS_LEAK"),
    local(
        0xB4,
        "Respiratory rate (pressure)",
        "/min",
        "MEDIBUS_RR_PRESS",
    ),
    local(
        0xB5,
        "Spontaneous respiratory rate",
        "/min",
        "MEDIBUS_RR_SPONT",
    ),
    mdc(
        0xB9,
        "Minute volume",
        "L/min",
        151_880,
        "MDC_VOL_MINUTE_AWAY",
    ),
    local(0xBD, "Apnea duration", "s", "MEDIBUS_APNEA_TIME"),
    mdc(
        0xD5,
        "Respiratory rate (CO2)",
        "/min",
        151_594,
        "MDC_CO2_RESP_RATE",
    ),
    mdc(
        0xD6,
        "Respiratory rate",
        "/min",
        151_586,
        "MDC_VENT_RESP_RATE",
    ),
    local(0xDA, "Inspiratory CO2", "%", "MEDIBUS_CO2_INSP_PCT"),
    mdc(0xDB, "End-tidal CO2", "%", 151_708, "MDC_CONC_AWAY_CO2_ET"),
    mdc(
        0xE1,
        "Pulse rate (oximeter)",
        "/min",
        149_530,
        "MDC_PULS_OXIM_PULS_RATE",
    ),
    mdc(
        0xE3,
        "End-tidal CO2",
        "kPa",
        151_708,
        "MDC_CONC_AWAY_CO2_ET",
    ),
    local(0xE5, "Inspiratory CO2", "mm[Hg]", "MEDIBUS_CO2_INSP_MMHG"),
    mdc(
        0xE6,
        "End-tidal CO2",
        "mm[Hg]",
        151_708,
        "MDC_CONC_AWAY_CO2_ET",
    ),
    mdc(0xEB, "O2 saturation", "%", 150_456, "MDC_PULS_OXIM_SAT_O2"),
    local(0xEF, "Expiratory O2", "%", "MEDIBUS_O2_EXP"),
    mdc(
        0xF0,
        "Inspiratory O2",
        "%",
        152_196,
        "MDC_CONC_AWAY_O2_INSP",
    ),
    local(0xFB, "Inspiratory N2O", "%", "MEDIBUS_N2O_INSP"),
    local(0xFC, "Expiratory N2O", "%", "MEDIBUS_N2O_EXP"),
    local(0xFF, "Inspiratory CO2", "kPa", "MEDIBUS_CO2_INSP_KPA"),
];

/// Measured data, code page 2.
pub const MEASURED_CP2: &[DataCode] = &[
    local(0x00, "Spontaneous tidal volume", "mL", "MEDIBUS_VT_SPONT"),
    local(0x06, "Elastance", "mbar/L", "MEDIBUS_ELASTANCE"),
    local(0x07, "Time constant", "s", "MEDIBUS_TAU"),
    local(0x21, "Expiratory tidal volume", "mL", "MEDIBUS_VTE"),
    local(0x22, "Inspiratory tidal volume", "mL", "MEDIBUS_VTI"),
    local(0x23, "End-inspiratory pressure", "mbar", "MEDIBUS_EIP"),
    local(0x7B, "Pressure variability", "%", "MEDIBUS_PRESS_VAR"),
    local(0x7D, "Tlow max", "s", "MEDIBUS_TLOW_MAX"),
];

/// Current device settings. All LOCAL: see the module documentation.
pub const SETTINGS: &[DataCode] = &[
    local(0x01, "Oxygen (FiO2 set)", "%", "MEDIBUS_SET_FIO2"),
    local(
        0x02,
        "Max. inspiratory flow",
        "L/min",
        "MEDIBUS_SET_FLOW_MAX",
    ),
    // Sent in L; reported in mL like the VT setting 0x40.
    DataCode {
        code: 0x04,
        name: "Tidal volume (VT set)",
        unit: "mL",
        mdc: None,
        local: "MEDIBUS_SET_VT",
        scale: 1000.0,
    },
    local(0x05, "Inspiratory time", "s", "MEDIBUS_SET_TI"),
    local(0x07, "I:E, I part", "1", "MEDIBUS_SET_IE_I"),
    local(0x08, "I:E, E part", "1", "MEDIBUS_SET_IE_E"),
    local(0x09, "Frequency IMV", "/min", "MEDIBUS_SET_RR_IMV"),
    local(0x0A, "Frequency (f set)", "/min", "MEDIBUS_SET_RR"),
    local(0x0B, "PEEP (set)", "mbar", "MEDIBUS_SET_PEEP"),
    local(
        0x0C,
        "Intermittent PEEP",
        "mbar",
        "MEDIBUS_SET_PEEP_INTERMITTENT",
    ),
    local(0x0D, "BIPAP low pressure", "mbar", "MEDIBUS_SET_PLOW"),
    local(0x0E, "BIPAP high pressure", "mbar", "MEDIBUS_SET_PHIGH"),
    local(0x0F, "BIPAP low time", "s", "MEDIBUS_SET_TLOW"),
    local(0x10, "BIPAP high time", "s", "MEDIBUS_SET_THIGH"),
    local(0x11, "Apnea time", "s", "MEDIBUS_SET_APNEA_TIME"),
    local(0x12, "Pressure support", "mbar", "MEDIBUS_SET_PSUPP"),
    local(
        0x13,
        "Max. inspiratory pressure",
        "mbar",
        "MEDIBUS_SET_PMAX",
    ),
    local(
        0x15,
        "Trigger pressure",
        "mbar",
        "MEDIBUS_SET_TRIGGER_PRESS",
    ),
    local(0x16, "Tachypnea frequency", "/min", "MEDIBUS_SET_TACHY_RR"),
    local(0x17, "Tachypnea duration", "s", "MEDIBUS_SET_TACHY_TIME"),
    local(
        0x27,
        "Insp. pause / insp. time",
        "%",
        "MEDIBUS_SET_PAUSE_PCT",
    ),
    local(0x29, "Flow trigger", "L/min", "MEDIBUS_SET_FLOW_TRIGGER"),
    local(0x2E, "Ramp", "s", "MEDIBUS_SET_RAMP"),
    local(0x2F, "Fresh gas flow", "mL/min", "MEDIBUS_SET_FRESH_GAS"),
    local(0x40, "Tidal volume (VT set)", "mL", "MEDIBUS_SET_VT"),
    local(0x42, "Minimal frequency", "/min", "MEDIBUS_SET_RR_MIN"),
    local(0x45, "Inspiratory pressure", "mbar", "MEDIBUS_SET_PINSP"),
    local(0x4A, "Age", "a", "MEDIBUS_SET_AGE"),
    local(0x4B, "Weight", "kg", "MEDIBUS_SET_WEIGHT"),
];

/// The entry for `code` in `table`.
pub fn lookup(table: Table, code: u8) -> Option<&'static DataCode> {
    let entries = match table {
        Table::MeasuredCp1 => MEASURED_CP1,
        Table::MeasuredCp2 => MEASURED_CP2,
        Table::Settings => SETTINGS,
    };
    entries.iter().find(|d| d.code == code)
}

/// A value field as a number. Blank, dashed (`---`) or otherwise non-numeric fields mean "no
/// value" and give `None`. Accepts an optional sign, digits and one decimal point, padded with
/// spaces on either side.
pub fn parse_value(field: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(field).ok()?.trim_matches(' ');
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    let mut points = 0;
    let mut any_digit = false;
    for c in digits.chars() {
        match c {
            '0'..='9' => any_digit = true,
            '.' => points += 1,
            _ => return None,
        }
    }
    if !any_digit || points > 1 {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// `value` right-aligned in `width` characters with `decimals` decimals; `None` (or a value that
/// does not fit) as blanks, the way devices send "no value".
pub fn format_value(value: Option<f64>, width: usize, decimals: usize) -> String {
    match value {
        Some(v) if v.is_finite() => {
            let s = format!("{v:>width$.decimals$}");
            if s.len() == width {
                s
            } else {
                " ".repeat(width)
            }
        }
        _ => " ".repeat(width),
    }
}

/// MEDIBUS alarm priority (1–31, 31 highest) as vigil's coarse priority. MEDIBUS does not
/// split the range into classes itself (each device's alarm table does); vigil's thirds:
/// 21–31 `high`, 11–20 `medium`, 1–10 `low`, 0 `info`.
pub fn alarm_priority(priority: u8) -> &'static str {
    match priority {
        21.. => "high",
        11..=20 => "medium",
        1..=10 => "low",
        0 => "info",
    }
}

/// Month abbreviations in date responses: German (as the devices send them) and English.
const MONTHS: &[(&str, u32)] = &[
    ("JAN", 1),
    ("FEB", 2),
    ("MAR", 3),
    ("MRZ", 3),
    ("APR", 4),
    ("MAI", 5),
    ("MAY", 5),
    ("JUN", 6),
    ("JUL", 7),
    ("AUG", 8),
    ("SEP", 9),
    ("OKT", 10),
    ("OCT", 10),
    ("NOV", 11),
    ("DEZ", 12),
    ("DEC", 12),
];

/// Month number for an abbreviation (case-insensitive).
pub fn month_number(abbrev: &str) -> Option<u32> {
    MONTHS
        .iter()
        .find(|(m, _)| m.eq_ignore_ascii_case(abbrev))
        .map(|(_, n)| *n)
}

/// The German abbreviation devices send for month `n` (1–12).
pub fn month_abbrev(n: u32) -> &'static str {
    const GERMAN: [&str; 12] = [
        "JAN", "FEB", "MAR", "APR", "MAI", "JUN", "JUL", "AUG", "SEP", "OKT", "NOV", "DEZ",
    ];
    n.checked_sub(1)
        .and_then(|i| GERMAN.get(i as usize))
        .copied()
        .unwrap_or("JAN")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_and_no_values_are_none() {
        assert_eq!(parse_value(b" 8.0"), Some(8.0));
        assert_eq!(parse_value(b"  40"), Some(40.0));
        assert_eq!(parse_value(b"-2.5"), Some(-2.5));
        assert_eq!(parse_value(b"0.450"), Some(0.45));
        assert_eq!(parse_value(b"450 "), Some(450.0));
        for none in [
            &b"    "[..],
            b"----",
            b" ---",
            b"-",
            b"1.2.3",
            b"inf ",
            b"NaN ",
            b"1e5 ",
            b"12a4",
            b"",
            b"\xff\xfe",
        ] {
            assert_eq!(parse_value(none), None, "{none:?}");
        }
    }

    #[test]
    fn values_format_to_fixed_width() {
        assert_eq!(format_value(Some(8.0), 4, 1), " 8.0");
        assert_eq!(format_value(Some(450.0), 4, 0), " 450");
        assert_eq!(format_value(Some(0.45), 5, 3), "0.450");
        assert_eq!(format_value(None, 4, 0), "    ");
        assert_eq!(format_value(Some(123_456.0), 4, 0), "    ");
        assert_eq!(
            parse_value(format_value(Some(-3.5), 4, 1).as_bytes()),
            Some(-3.5)
        );
    }

    #[test]
    fn the_brief_codes_map_as_documented() {
        let fio2 = lookup(Table::MeasuredCp1, 0xF0).map(|d| (d.device_code(), d.unit));
        assert_eq!(
            fio2,
            Some((DeviceCode::mdc(152_196, "MDC_CONC_AWAY_O2_INSP"), "%"))
        );
        let peep = lookup(Table::MeasuredCp1, 0x78).map(|d| (d.device_code(), d.unit));
        assert_eq!(
            peep,
            Some((
                DeviceCode::mdc(151_976, "MDC_VENT_PRESS_AWAY_END_EXP_POS"),
                "mbar"
            ))
        );
        let set_peep = lookup(Table::Settings, 0x0B).map(DataCode::device_code);
        assert_eq!(
            set_peep,
            Some(DeviceCode::Local {
                code: "MEDIBUS_SET_PEEP".into()
            })
        );
        // Same byte, different tables.
        assert_ne!(
            lookup(Table::MeasuredCp1, 0x7D).map(|d| d.name),
            lookup(Table::MeasuredCp2, 0x7D).map(|d| d.name)
        );
        assert_eq!(
            Table::MeasuredCp2.unknown_code(0x99),
            DeviceCode::Local {
                code: "MEDIBUS_CP2_99".into()
            }
        );
    }

    #[test]
    fn tables_have_no_duplicate_codes_and_settings_stay_local() {
        for table in [MEASURED_CP1, MEASURED_CP2, SETTINGS] {
            for (i, a) in table.iter().enumerate() {
                assert!(
                    table.iter().skip(i + 1).all(|b| b.code != a.code),
                    "duplicate {:02X}",
                    a.code
                );
                assert!(a.mdc.is_some() || a.local.starts_with("MEDIBUS_"));
            }
        }
        assert!(SETTINGS
            .iter()
            .all(|s| s.mdc.is_none() && s.local.starts_with("MEDIBUS_SET_")));
    }

    #[test]
    fn priorities_and_months() {
        assert_eq!(alarm_priority(31), "high");
        assert_eq!(alarm_priority(15), "medium");
        assert_eq!(alarm_priority(1), "low");
        assert_eq!(alarm_priority(0), "info");
        assert_eq!(month_number("mai"), Some(5));
        assert_eq!(month_number("DEZ"), Some(12));
        assert_eq!(month_number("XYZ"), None);
        assert_eq!(month_abbrev(10), "OKT");
        assert_eq!(month_abbrev(0), "JAN");
    }
}
