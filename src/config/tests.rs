use super::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_example_config_is_valid_from_the_repository_root() {
    let cfg = Config::from_str("vigil.toml", EXAMPLE, &repo()).unwrap_or_else(|p| panic!("{p}"));
    assert_eq!(cfg.sources.len(), 1);
    assert_eq!(cfg.http.listen.map(|a| a.port()), Some(8080));
    assert_eq!(cfg.alerting.sink.len(), 2);
}

#[test]
fn a_broken_config_reports_every_fault_with_its_line() {
    let src = r#"
[site]
name = "x"
timezone_offset_minutes = "east"

[bus]
capacity = 0

[http]
listen = "localhost-8080"

[[source]]
kind = "replay"
name = "a"
path = "no-such-recording.jsonl"

[[source]]
kind = "serial-port"
name = "b"

[[source]]
kind = "replay"
name = "a"
path = "replay-data/demo-icu.jsonl.gz"
speedy = 3

[[alerting.sink]]
kind = "webhook"
url = "ftp://example"
max_attempts = 0
"#;
    let errs = Config::from_str("bad.toml", src, &repo()).unwrap_err();
    let shown: Vec<String> = errs.0.iter().map(|p| p.to_string()).collect();
    let expect = [
        ("bad.toml:4:", "string \"east\", expected i32"),
        ("bad.toml:10:", "[http]: invalid socket address"),
        ("bad.toml:", "capacity must be at least 1"),
        ("bad.toml:12:", "no-such-recording.jsonl"),
        ("bad.toml:17:", "serial-port"),
        ("bad.toml:21:", "speedy"),
        ("bad.toml:", "scheme \"ftp\""),
        ("bad.toml:", "max_attempts must be at least 1"),
    ];
    for (prefix, needle) in expect {
        assert!(
            shown
                .iter()
                .any(|s| s.starts_with(prefix) && s.contains(needle)),
            "missing {prefix} … {needle} in {shown:#?}"
        );
    }
    assert_eq!(shown.len(), expect.len(), "{shown:#?}");
}

#[test]
fn broken_tables_are_reported_with_the_config_faults() {
    let dir = tempfile::tempdir().unwrap();
    let profiles = dir.path().join("profiles");
    std::fs::create_dir(&profiles).unwrap();
    std::fs::write(profiles.join("codes.toml"), "mdc = [ { code = 1, refid = \"X\", param = \"nope\" } ]\ndrug_name_codes = []\nloinc = []\nmdc_units = []\nunit_aliases = []\n").unwrap();
    // plausibility.toml is missing altogether.
    let cfg = "[paths]\ndevice_profiles = \"profiles\"\n[log]\nlevel = \"info,[[[\"\n";
    std::fs::write(dir.path().join("vigil.toml"), cfg).unwrap();
    let errs = Config::load(&dir.path().join("vigil.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        errs.contains("codes.toml:1: unknown parameter \"nope\""),
        "{errs}"
    );
    assert!(errs.contains("plausibility.toml: cannot read"), "{errs}");
    assert!(errs.contains("[log]: level"), "{errs}");
}

#[test]
fn speed_parses_max_and_factors() {
    assert_eq!("max".parse::<Speed>(), Ok(Speed::Max));
    assert_eq!("60".parse::<Speed>(), Ok(Speed::Factor(60.0)));
    assert_eq!("60x".parse::<Speed>(), Ok(Speed::Factor(60.0)));
    assert!("0".parse::<Speed>().is_err());
    assert!("fast".parse::<Speed>().is_err());
}
