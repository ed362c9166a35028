use super::*;

#[test]
fn shipped_profiles_parse() {
    for (file, src) in BUILTIN {
        if let Err(e) = DeviceProfile::parse(file, src) {
            panic!("{}", Problems(e));
        }
    }
}
