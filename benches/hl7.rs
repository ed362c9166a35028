//! HL7 parse and parse+decode throughput on a realistic PCD-01 ORU^R01 (about 1.4 KB, 20 OBX).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;

use vigil::model::Timestamp;
use vigil::normalize::{NormalizeSettings, NormalizeTables, Normalizer};
use vigil::protocol::hl7::{decode, parse, DecodeOptions, Decoded};

const ADMIT: &str = "MSH|^~\\&|ADT|HOSP|VIGIL|ICU|20250301100000||ADT^A01^ADT_A01|A1|P|2.5\rEVN|A01|20250301100000\rPID|||HO2009001^^^^MR||Doe^Jane\rPV1||I|3 West ICU^3002^1||||||||||||||||V1\rOBX|1|NM|29463-7^Body weight^LN||70|kg|||||F\r";

/// A bedside monitor report shaped like the IHE PCD-01 Philips example: MDS/VMD/channel rows,
/// NIBP, ECG, SpO2, temperature and respiration metrics.
const PCD01: &str = "MSH|^~\\&|PAT_DEVICE_MON|VENDOR|||20250301101500+0000||ORU^R01^ORU_R01|MSG000000000000000001|P|2.6|||AL|NE||8859/1|EN^English^ISO639||IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO\r\
PID|||HO2009001^^^^MR||Doe^Jane^^^^^L||19610101|F\r\
PV1||I|3 West ICU^3002^1\r\
OBR|1||2025030110150001^MON^0012210000000000^EUI-64|69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|||20250301101500+0000\r\
OBX|1||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X|||||||0012210000000000^EUI-64\r\
OBX|2||70686^MDC_DEV_PRESS_BLD_NONINV_VMD^MDC|1.1.0.0|||||||X\r\
OBX|3||70675^MDC_DEV_PULS_CHAN^MDC|1.1.1.0|||||||X\r\
OBX|4|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC|1.1.1.5|117|266016^MDC_DIM_MMHG^MDC|90-160||||R|||20250301101455+0000\r\
OBX|5|NM|150022^MDC_PRESS_BLD_NONINV_DIA^MDC|1.1.1.6|82|266016^MDC_DIM_MMHG^MDC|||||R|||20250301101455+0000\r\
OBX|6|NM|150023^MDC_PRESS_BLD_NONINV_MEAN^MDC|1.1.1.7|90|266016^MDC_DIM_MMHG^MDC|||||R|||20250301101455+0000\r\
OBX|7||4262^MDC_DEV_ECG_VMD^MDC|1.2.0.0|||||||X\r\
OBX|8||4263^MDC_DEV_ECG_CHAN^MDC|1.2.1.0|||||||X\r\
OBX|9|NM|147842^MDC_ECG_CARD_BEAT_RATE^MDC|1.2.1.1|80|264864^MDC_DIM_BEAT_PER_MIN^MDC|50-120||||R|||20250301101500+0000\r\
OBX|10|NM|147232^MDC_ECG_TIME_PD_QT_GL^MDC|1.2.1.14|360|264338^MDC_DIM_MILLI_SEC^MDC|||||R\r\
OBX|11|NM|147236^MDC_ECG_TIME_PD_QTc^MDC|1.2.1.15|416|264338^MDC_DIM_MILLI_SEC^MDC|<500||||R\r\
OBX|12|NM|151562^MDC_RESP_RATE^MDC|1.2.1.19|22|264928^MDC_DIM_RESP_PER_MIN^MDC|8-45||||R|||20250301101500+0000\r\
OBX|13|ST|184327^MDC_ECG_STAT_RHY^MDC|1.2.1.21|MDC_ECG_SINUS_RHY||||||R\r\
OBX|14||69642^MDC_DEV_ANALY_SAT_O2_VMD^MDC|1.3.0.0|||||||X\r\
OBX|15||70771^MDC_DEV_ANALY_PERF_REL_CHAN^MDC|1.3.1.0|||||||X\r\
OBX|16|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.3.1.1|94|262688^MDC_DIM_PERCENT^MDC|90-100||||R|||20250301101500+0000\r\
OBX|17|NM|149530^MDC_PULS_OXIM_PULS_RATE^MDC|1.3.1.2|81|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R\r\
OBX|18|NM|150448^MDC_PULS_OXIM_PERF_REL^MDC|1.3.1.3|3.9|262656^MDC_DIM_DIMLESS^MDC|||||R\r\
OBX|19|NM|150364^MDC_TEMP_BODY^MDC|1.4.1.1|38.4|268192^MDC_DIM_DEGC^MDC|||||R|||20250301101400+0000\r\
OBX|20|NM|151708^MDC_CONC_AWAY_CO2_ET^MDC|1.5.1.1|38|266016^MDC_DIM_MMHG^MDC|||||R\r";

fn bench(c: &mut Criterion) {
    let input = PCD01.as_bytes();
    // Guard the fixture: 20 OBX, all decoded.
    let msg = parse(input).expect("fixture parses");
    let opts = DecodeOptions {
        default_offset_min: 60,
    };
    match decode(&msg, &opts).expect("fixture decodes") {
        Decoded::Observations(r) => assert_eq!(r.rows().count(), 20),
        Decoded::Adt(_) => unreachable!(),
    }

    let mut g = c.benchmark_group("hl7_pcd01");
    for (unit, tp) in [
        ("msgs", Throughput::Elements(1)),
        ("bytes", Throughput::Bytes(input.len() as u64)),
    ] {
        g.throughput(tp);
        g.bench_with_input(BenchmarkId::new("parse", unit), input, |b, i| {
            b.iter(|| parse(black_box(i)).map(|m| m.segment_count()))
        });
        g.bench_with_input(BenchmarkId::new("parse_decode", unit), input, |b, i| {
            b.iter(|| {
                let m = parse(black_box(i)).expect("parses");
                match decode(&m, &opts) {
                    Ok(Decoded::Observations(r)) => r.groups.len(),
                    _ => 0,
                }
            })
        });
    }
    // Parse + decode + normalize: codes, units, plausibility, artifacts, patient from the census.
    let mut normalizer = Normalizer::new(
        NormalizeTables::builtin().expect("built-in tables"),
        NormalizeSettings::default(),
    );
    let t = Timestamp::parse_rfc3339("2025-03-01T10:15:01Z").expect("time");
    normalizer.hl7("adt", ADMIT.as_bytes(), t).expect("admit");
    let n = normalizer
        .hl7("monitors", input, t)
        .expect("fixture normalizes");
    assert_eq!(n.unassociated, 0);
    for (unit, tp) in [
        ("msgs", Throughput::Elements(1)),
        ("bytes", Throughput::Bytes(input.len() as u64)),
    ] {
        g.throughput(tp);
        g.bench_with_input(BenchmarkId::new("parse_normalize", unit), input, |b, i| {
            b.iter(|| {
                normalizer
                    .hl7("monitors", black_box(i), t)
                    .map(|n| n.records.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
