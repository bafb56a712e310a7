//! `potok config check` on `[storage]`: stores outside Russia are warned about by field, the
//! S3 keys never printed, the old local paths refused next to S3.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

const POTOK: &str = env!("CARGO_BIN_EXE_potok");

fn check(dir: &std::path::Path, toml: &str) -> (i32, String, String) {
    let file = dir.join("potok.toml");
    std::fs::write(&file, toml).unwrap();
    let mut cmd = Command::new(POTOK);
    cmd.current_dir(dir)
        .args(["config", "check", file.to_str().unwrap()]);
    for (k, _) in std::env::vars() {
        if k.starts_with("POTOK_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn s3(endpoint: &str, region: &str) -> String {
    format!(
        "[storage]\nbackend = \"s3\"\n[storage.s3]\nendpoint = \"{endpoint}\"\nregion = \"{region}\"\n\
         bucket = \"potok-vod\"\naccess_key_id = \"AKIDsecretish\"\nsecret_access_key = \"topsecretvalue\"\n"
    )
}

#[test]
fn a_store_outside_russia_is_warned_about_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = check(
        dir.path(),
        &s3("https://s3.eu-west-1.amazonaws.com", "eu-west-1"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("storage.s3.endpoint"), "{err}");
    assert!(err.contains("storage.s3.region"), "{err}");
    assert!(!out.contains("topsecretvalue") && !err.contains("topsecretvalue"));
    assert!(!out.contains("AKIDsecretish") && !err.contains("AKIDsecretish"));

    for (endpoint, region) in [
        ("https://storage.yandexcloud.net", "ru-central1"),
        ("https://hb.ru-msk.vkcloud-storage.ru", "ru-msk"),
        ("https://s3.ru-1.storage.selcdn.ru", "ru-1"),
    ] {
        let (code, _, err) = check(dir.path(), &s3(endpoint, region));
        assert_eq!(code, 0, "{err}");
        assert!(!err.contains("storage.s3"), "{endpoint}: {err}");
    }
}

#[test]
fn the_old_archive_paths_are_refused_with_s3_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "{}[origin.archive]\npath = \"/tmp/archive\"\n",
        s3("https://storage.yandexcloud.net", "ru-central1")
    );
    let (code, _, err) = check(dir.path(), &toml);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("origin.archive.path"), "{err}");
}
