//! Philips nomenclature: object classes, attribute ids and actions the data-export client
//! uses, and the tables from physiological identifiers (partition SCADA) to IEEE 11073 MDC
//! codes and from unit codes (partition DIM) to UCUM.
//!
//! Philips SCADA ids below 0xF000 are the IEEE 11073-10101 terms themselves, so the MDC code
//! is 2 × 65536 + id. Ids from 0xF000 up are Philips-private; the few with a standard
//! equivalent are mapped to it in the table.

use std::borrow::Cow;

use crate::protocol::device::DeviceCode;

/// Nomenclature partitions.
pub mod partition {
    /// Object-oriented elements (classes, attributes, actions).
    pub const OBJ: u16 = 1;
    /// Physiological measurements.
    pub const SCADA: u16 = 2;
    /// Alert events.
    pub const EVT: u16 = 3;
    /// Units of measurement.
    pub const DIM: u16 = 4;
}

/// Managed object classes.
pub mod class {
    /// Numeric.
    pub const NOM_MOC_VMO_METRIC_NU: u16 = 6;
    /// Real-time sample array (wave).
    pub const NOM_MOC_VMO_METRIC_SA_RT: u16 = 9;
    /// The medical device system (the top object the client talks to).
    pub const NOM_MOC_VMS_MDS: u16 = 33;
    /// Patient demographics.
    pub const NOM_MOC_PT_DEMOG: u16 = 42;
    /// Alert monitor.
    pub const NOM_MOC_VMO_AL_MON: u16 = 54;
}

/// Event and action types.
pub mod action {
    /// MDS Create notification (the monitor's first event after association).
    pub const NOM_NOTI_MDS_CREAT: u16 = 0x0D06;
    /// Single poll.
    pub const NOM_ACT_POLL_MDIB_DATA: u16 = 0x0C16;
    /// Extended poll.
    pub const NOM_ACT_POLL_MDIB_DATA_EXT: u16 = 0xF13B;
}

/// Attribute ids and attribute groups.
pub mod attr {
    pub const NOM_ATTR_AL_MON_P_AL_LIST: u16 = 0x0902;
    pub const NOM_ATTR_AL_MON_T_AL_LIST: u16 = 0x0904;
    pub const NOM_ATTR_DEV_AL_COND: u16 = 0x0916;
    pub const NOM_ATTR_ID_ASSOC_NO: u16 = 0x091D;
    pub const NOM_ATTR_ID_BED_LABEL: u16 = 0x091E;
    pub const NOM_ATTR_ID_HANDLE: u16 = 0x0921;
    pub const NOM_ATTR_ID_LABEL: u16 = 0x0924;
    pub const NOM_ATTR_ID_LABEL_STRING: u16 = 0x0927;
    pub const NOM_ATTR_ID_MODEL: u16 = 0x0928;
    pub const NOM_ATTR_ID_PROD_SPECN: u16 = 0x092D;
    pub const NOM_ATTR_ID_TYPE: u16 = 0x092F;
    pub const NOM_ATTR_MODE_OP: u16 = 0x0946;
    pub const NOM_ATTR_NOM_VERS: u16 = 0x0948;
    pub const NOM_ATTR_NU_CMPD_VAL_OBS: u16 = 0x094B;
    pub const NOM_ATTR_NU_VAL_OBS: u16 = 0x0950;
    pub const NOM_ATTR_SYS_ID: u16 = 0x0984;
    pub const NOM_ATTR_SYS_TYPE: u16 = 0x0986;
    pub const NOM_ATTR_TIME_ABS: u16 = 0x0987;
    pub const NOM_ATTR_TIME_REL: u16 = 0x098F;
    pub const NOM_ATTR_TIME_STAMP_ABS: u16 = 0x0990;
    pub const NOM_ATTR_TIME_STAMP_REL: u16 = 0x0991;
    pub const NOM_ATTR_VMS_MDS_STAT: u16 = 0x09A7;
    /// Time for periodic polling (extended poll request option).
    pub const NOM_ATTR_TIME_PD_POLL: u16 = 0xF13E;
    /// Poll Profile Support (an application profile in the association user info).
    pub const NOM_POLL_PROFILE_SUPPORT: u16 = 0x0001;
    /// Poll Profile Extensions (an optional package of the poll profile).
    pub const NOM_ATTR_POLL_PROFILE_EXT: u16 = 0xF001;

    /// Alert monitor group.
    pub const NOM_ATTR_GRP_AL_MON: u16 = 0x0801;
    /// Metric observed value group (observed values and their time stamps).
    pub const NOM_ATTR_GRP_METRIC_VAL_OBS: u16 = 0x0803;
    /// System production group (used for the keep-alive MDS poll).
    pub const NOM_ATTR_GRP_SYS_PROD: u16 = 0x080C;
}

/// ProdSpecEntry spec types.
pub mod prod_spec {
    pub const SERIAL_NUMBER: u16 = 1;
    pub const PART_NUMBER: u16 = 2;
    pub const HW_REVISION: u16 = 3;
    pub const SW_REVISION: u16 = 4;
    pub const FW_REVISION: u16 = 5;
}

/// AlertType values of an alarm entry.
pub mod alert_type {
    pub const NO_ALERT: u16 = 0;
    pub const LOW_PRI_T_AL: u16 = 1;
    pub const MED_PRI_T_AL: u16 = 2;
    pub const HI_PRI_T_AL: u16 = 4;
    pub const LOW_PRI_P_AL: u16 = 256;
    pub const MED_PRI_P_AL: u16 = 512;
    pub const HI_PRI_P_AL: u16 = 1024;
}

/// Alert info appended to an alarm entry.
pub mod alert_info {
    /// AlMonGenInfo: instance, text id, priority, flags.
    pub const GEN_ALMON_INFO: u16 = 513;
    /// StrAlMonInfo: as GEN_ALMON_INFO plus the alarm string.
    pub const STR_ALMON_INFO: u16 = 516;
}

/// One known physiological identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Physio {
    /// Philips id (partition SCADA).
    pub id: u16,
    /// The Philips name.
    pub nom: &'static str,
    /// IEEE 11073 numeric code.
    pub mdc: u32,
    /// IEEE 11073 reference id.
    pub refid: &'static str,
}

const fn scada(id: u16, nom: &'static str, refid: &'static str) -> Physio {
    Physio {
        id,
        nom,
        mdc: 2 * 65_536 + id as u32,
        refid,
    }
}

const fn private(id: u16, nom: &'static str, mdc: u32, refid: &'static str) -> Physio {
    Physio {
        id,
        nom,
        mdc,
        refid,
    }
}

/// Philips physiological ids this driver names, sorted by id.
pub const PHYSIO: &[Physio] = &[
    scada(0x4182, "NOM_ECG_CARD_BEAT_RATE", "MDC_ECG_HEART_RATE"),
    scada(
        0x418A,
        "NOM_ECG_CARD_BEAT_RATE_BTB",
        "MDC_ECG_CARD_BEAT_RATE_BTB",
    ),
    scada(0x4261, "NOM_ECG_V_P_C_CNT", "MDC_ECG_V_P_C_CNT"),
    scada(0x480A, "NOM_PULS_RATE", "MDC_PULS_RATE"),
    scada(0x481A, "NOM_PULS_OXIM_PULS_RATE", "MDC_PULS_OXIM_PULS_RATE"),
    scada(0x4822, "NOM_PLETH_PULS_RATE", "MDC_PLETH_PULS_RATE"),
    scada(0x4A04, "NOM_PRESS_BLD_NONINV", "MDC_PRESS_BLD_NONINV"),
    scada(
        0x4A05,
        "NOM_PRESS_BLD_NONINV_SYS",
        "MDC_PRESS_BLD_NONINV_SYS",
    ),
    scada(
        0x4A06,
        "NOM_PRESS_BLD_NONINV_DIA",
        "MDC_PRESS_BLD_NONINV_DIA",
    ),
    scada(
        0x4A07,
        "NOM_PRESS_BLD_NONINV_MEAN",
        "MDC_PRESS_BLD_NONINV_MEAN",
    ),
    scada(0x4A10, "NOM_PRESS_BLD_ART", "MDC_PRESS_BLD_ART"),
    scada(0x4A11, "NOM_PRESS_BLD_ART_SYS", "MDC_PRESS_BLD_ART_SYS"),
    scada(0x4A12, "NOM_PRESS_BLD_ART_DIA", "MDC_PRESS_BLD_ART_DIA"),
    scada(0x4A13, "NOM_PRESS_BLD_ART_MEAN", "MDC_PRESS_BLD_ART_MEAN"),
    scada(0x4A14, "NOM_PRESS_BLD_ART_ABP", "MDC_PRESS_BLD_ART_ABP"),
    scada(
        0x4A15,
        "NOM_PRESS_BLD_ART_ABP_SYS",
        "MDC_PRESS_BLD_ART_ABP_SYS",
    ),
    scada(
        0x4A16,
        "NOM_PRESS_BLD_ART_ABP_DIA",
        "MDC_PRESS_BLD_ART_ABP_DIA",
    ),
    scada(
        0x4A17,
        "NOM_PRESS_BLD_ART_ABP_MEAN",
        "MDC_PRESS_BLD_ART_ABP_MEAN",
    ),
    scada(
        0x4A1D,
        "NOM_PRESS_BLD_ART_PULM_SYS",
        "MDC_PRESS_BLD_ART_PULM_SYS",
    ),
    scada(
        0x4A1E,
        "NOM_PRESS_BLD_ART_PULM_DIA",
        "MDC_PRESS_BLD_ART_PULM_DIA",
    ),
    scada(
        0x4A1F,
        "NOM_PRESS_BLD_ART_PULM_MEAN",
        "MDC_PRESS_BLD_ART_PULM_MEAN",
    ),
    scada(
        0x4A47,
        "NOM_PRESS_BLD_VEN_CENT_MEAN",
        "MDC_PRESS_BLD_VEN_CENT_MEAN",
    ),
    scada(0x4B04, "NOM_OUTPUT_CARD", "MDC_OUTPUT_CARD"),
    scada(0x4B3C, "NOM_SAT_O2_VEN", "MDC_SAT_O2_VEN"),
    scada(0x4B48, "NOM_TEMP", "MDC_TEMP"),
    scada(0x4B60, "NOM_TEMP_CORE", "MDC_TEMP_CORE"),
    scada(0x4B64, "NOM_TEMP_ESOPH", "MDC_TEMP_ESOPH"),
    scada(0x4B6C, "NOM_TEMP_NASOPH", "MDC_TEMP_NASOPH"),
    scada(0x4B74, "NOM_TEMP_SKIN", "MDC_TEMP_SKIN"),
    scada(0x4B78, "NOM_TEMP_TYMP", "MDC_TEMP_TYMP"),
    scada(0x4BB0, "NOM_PULS_OXIM_PERF_REL", "MDC_PULS_OXIM_PERF_REL"),
    scada(0x4BB8, "NOM_PULS_OXIM_SAT_O2", "MDC_PULS_OXIM_SAT_O2"),
    scada(0x500A, "NOM_RESP_RATE", "MDC_RESP_RATE"),
    scada(0x5012, "NOM_AWAY_RESP_RATE", "MDC_AWAY_RESP_RATE"),
    scada(0x5022, "NOM_VENT_RESP_RATE", "MDC_VENT_RESP_RATE"),
    scada(0x509C, "NOM_CONC_AWAY_CO2_ET", "MDC_CONC_AWAY_CO2_ET"),
    scada(0x50B0, "NOM_AWAY_CO2_ET", "MDC_AWAY_CO2_ET"),
    scada(0x50BA, "NOM_AWAY_CO2_INSP_MIN", "MDC_AWAY_CO2_INSP_MIN"),
    scada(0x513C, "NOM_VOL_AWAY_TIDAL", "MDC_VOL_AWAY_TIDAL"),
    scada(
        0x51A8,
        "NOM_VENT_PRESS_AWAY_END_EXP_POS",
        "MDC_VENT_PRESS_AWAY_END_EXP_POS",
    ),
    scada(0x5284, "NOM_CONC_AWAY_O2_INSP", "MDC_CONC_AWAY_O2_INSP"),
    scada(0x5804, "NOM_PRESS_CEREB_PERF", "MDC_PRESS_CEREB_PERF"),
    scada(
        0x580B,
        "NOM_PRESS_INTRA_CRAN_MEAN",
        "MDC_PRESS_INTRA_CRAN_MEAN",
    ),
    scada(0x5880, "NOM_SCORE_GLAS_COMA", "MDC_SCORE_GLAS_COMA"),
    scada(
        0x5882,
        "NOM_SCORE_EYE_SUBSC_GLAS_COMA",
        "MDC_SCORE_EYE_SUBSC_GLAS_COMA",
    ),
    scada(
        0x5883,
        "NOM_SCORE_MOTOR_SUBSC_GLAS_COMA",
        "MDC_SCORE_MOTOR_SUBSC_GLAS_COMA",
    ),
    scada(
        0x5884,
        "NOM_SCORE_SUBSC_VERBAL_GLAS_COMA",
        "MDC_SCORE_SUBSC_VERBAL_GLAS_COMA",
    ),
    scada(0x6830, "NOM_VOL_URINE_COL", "MDC_VOL_URINE_COL"),
    scada(0x700C, "NOM_CONC_PO2_ART", "MDC_CONC_PO2_ART"),
    scada(0xE004, "NOM_TEMP_RECT", "MDC_TEMP_RECT"),
    scada(0xE014, "NOM_TEMP_BLD", "MDC_TEMP_BLD"),
    private(0xF10C, "NOM_TEMP_AXIL", 188_496, "MDC_TEMP_AXIL"),
];

/// The table entry for a physiological id.
pub fn physio(id: u16) -> Option<&'static Physio> {
    PHYSIO
        .binary_search_by_key(&id, |p| p.id)
        .ok()
        .and_then(|i| PHYSIO.get(i))
}

/// The MDC code of a physiological id: the table's, or for an unknown id 2 × 65536 + id with
/// a `NOM_0x4bb8`-style reference id.
pub fn physio_code(id: u16) -> DeviceCode {
    match physio(id) {
        Some(p) => DeviceCode::mdc(p.mdc, p.refid),
        None => DeviceCode::Mdc {
            code: 2 * 65_536 + u32::from(id),
            refid: Cow::Owned(unknown_label(id)),
        },
    }
}

/// The vendor label of a physiological id (`NOM_ECG_CARD_BEAT_RATE`, or `NOM_0x1234`).
pub fn physio_label(id: u16) -> Cow<'static, str> {
    match physio(id) {
        Some(p) => Cow::Borrowed(p.nom),
        None => Cow::Owned(unknown_label(id)),
    }
}

fn unknown_label(id: u16) -> String {
    format!("NOM_0x{id:04x}")
}

/// Philips unit codes (partition DIM) and their UCUM spelling, sorted by code.
pub const UNITS: &[(u16, &str, &str)] = &[
    (0x0000, "NOM_DIM_NOS", ""),
    (0x0200, "NOM_DIM_DIMLESS", ""),
    (0x0220, "NOM_DIM_PERCENT", "%"),
    (0x03E0, "NOM_DIM_PH", "[pH]"),
    (0x0640, "NOM_DIM_X_L", "L"),
    (0x0652, "NOM_DIM_MILLI_L", "mL"),
    (0x06C3, "NOM_DIM_KILO_G", "kg"),
    (0x0840, "NOM_DIM_X_G_PER_DL", "g/dL"),
    (0x0852, "NOM_DIM_MILLI_G_PER_DL", "mg/dL"),
    (0x0872, "NOM_DIM_MILLI_G_PER_ML", "mg/mL"),
    (0x0880, "NOM_DIM_SEC", "s"),
    (0x0892, "NOM_DIM_MILLI_SEC", "ms"),
    (0x08A0, "NOM_DIM_MIN", "min"),
    (0x09C0, "NOM_DIM_HZ", "Hz"),
    (0x09E0, "NOM_DIM_PER_MIN", "/min"),
    (0x0AA0, "NOM_DIM_BEAT_PER_MIN", "/min"),
    (0x0AC0, "NOM_DIM_PULS_PER_MIN", "/min"),
    (0x0AE0, "NOM_DIM_RESP_PER_MIN", "/min"),
    (0x0C00, "NOM_DIM_X_L_PER_MIN", "L/min"),
    (0x0C12, "NOM_DIM_MILLI_L_PER_MIN", "mL/min"),
    (0x0C32, "NOM_DIM_MILLI_L_PER_HR", "mL/h"),
    (0x0D93, "NOM_DIM_MICRO_G_PER_KG_PER_MIN", "ug/kg/min"),
    (0x0F03, "NOM_DIM_KILO_PASCAL", "kPa"),
    (0x0F20, "NOM_DIM_MMHG", "mm[Hg]"),
    (0x0F40, "NOM_DIM_CM_H2O", "cm[H2O]"),
    (0x0F72, "NOM_DIM_MILLI_BAR", "mbar"),
    (0x10B2, "NOM_DIM_MILLI_VOLT", "mV"),
    (0x1140, "NOM_DIM_FAHR", "[degF]"),
    (0x1272, "NOM_DIM_MILLI_MOLE_PER_L", "mmol/L"),
    (0x1273, "NOM_DIM_MICRO_MOLE_PER_L", "umol/L"),
    (0x17A0, "NOM_DIM_DEGC", "Cel"),
];

/// The UCUM unit of a Philips unit code; `None` for a code this table does not know.
pub fn unit_ucum(code: u16) -> Option<&'static str> {
    UNITS
        .binary_search_by_key(&code, |&(c, _, _)| c)
        .ok()
        .and_then(|i| UNITS.get(i))
        .map(|&(_, _, ucum)| ucum)
}

/// Some alert event codes (partition EVT), for alarm texts when the monitor sends none.
pub const EVENTS: &[(u16, &str)] = &[
    (40, "NOM_EVT_HI"),
    (62, "NOM_EVT_LO"),
    (274, "NOM_EVT_LEADS_OFF"),
    (308, "NOM_EVT_SENSOR_DISCONN"),
    (3072, "NOM_EVT_APNEA"),
    (3076, "NOM_EVT_ECG_ASYSTOLE"),
    (3086, "NOM_EVT_ECG_BRADY_EXTREME"),
    (3122, "NOM_EVT_ECG_TACHY_EXTREME"),
    (3224, "NOM_EVT_ECG_V_TACHY"),
    (3246, "NOM_EVT_DESAT"),
    (61_830, "NOM_EVT_EXTR_HI"),
    (61_832, "NOM_EVT_EXTR_LO"),
];

/// The name of an alert event code (`NOM_EVT_HI`, or `NOM_EVT_0x1234`).
pub fn event_label(code: u16) -> Cow<'static, str> {
    match EVENTS.binary_search_by_key(&code, |&(c, _)| c) {
        Ok(i) => EVENTS
            .get(i)
            .map_or(Cow::Borrowed("NOM_EVT"), |&(_, n)| Cow::Borrowed(n)),
        Err(_) => Cow::Owned(format!("NOM_EVT_0x{code:04x}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_and_unique() {
        assert!(PHYSIO.windows(2).all(|w| w[0].id < w[1].id));
        assert!(UNITS.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(EVENTS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn scada_ids_map_to_the_mdc_codes_vigil_knows() {
        let expect = [
            (0x4182, 147_842),
            (0x4BB8, 150_456),
            (0x481A, 149_530),
            (0x500A, 151_562),
            (0x4A05, 150_021),
            (0x4A06, 150_022),
            (0x4A07, 150_023),
            (0x4A11, 150_033),
            (0x4A12, 150_034),
            (0x4A13, 150_035),
            (0x4A15, 150_037),
            (0x4A16, 150_038),
            (0x4A17, 150_039),
            (0x4B48, 150_344),
            (0x4B60, 150_368),
            (0xE014, 188_436),
            (0x50B0, 151_728),
            (0x509C, 151_708),
            (0x4BB0, 150_448),
            (0x5284, 152_196),
            (0x51A8, 151_976),
            (0x513C, 151_868),
            (0x5880, 153_728),
            (0xF10C, 188_496),
        ];
        for (id, mdc) in expect {
            match physio_code(id) {
                DeviceCode::Mdc { code, .. } => assert_eq!(code, mdc, "id {id:#06x}"),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            physio_code(0x4182),
            DeviceCode::mdc(147_842, "MDC_ECG_HEART_RATE")
        );
    }

    #[test]
    fn unknown_ids_keep_their_number() {
        assert_eq!(
            physio_code(0x4bb9),
            DeviceCode::Mdc {
                code: 2 * 65_536 + 0x4bb9,
                refid: Cow::Owned("NOM_0x4bb9".into())
            }
        );
        assert_eq!(physio_label(0x1234), "NOM_0x1234");
        assert_eq!(physio_label(0x4BB8), "NOM_PULS_OXIM_SAT_O2");
    }

    #[test]
    fn units_map_to_ucum() {
        assert_eq!(unit_ucum(0x0AA0), Some("/min"));
        assert_eq!(unit_ucum(0x0AE0), Some("/min"));
        assert_eq!(unit_ucum(0x0220), Some("%"));
        assert_eq!(unit_ucum(0x0F20), Some("mm[Hg]"));
        assert_eq!(unit_ucum(0x0F03), Some("kPa"));
        assert_eq!(unit_ucum(0x17A0), Some("Cel"));
        assert_eq!(unit_ucum(0x0200), Some(""));
        assert_eq!(unit_ucum(0x1234), None);
        assert_eq!(event_label(62), "NOM_EVT_LO");
        assert_eq!(event_label(7), "NOM_EVT_0x0007");
    }
}
