//! ROM package files (.tgz / .zip / .tar) that may be damaged or hostile.
//!
//! The input is written to a file named after the format its first bytes announce (`x.tgz`,
//! `x.zip`, anything else `x.tar`) in a temporary folder, then opened with `Package::open`,
//! every file is streamed (`for_each_file`) and must yield exactly the size the listing gave,
//! the package's scripts are read into plans with the package as their file view, and the
//! package is verified. Opening and verifying must agree on whether the package is readable.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mi_flash::rom::package::Package;
use mi_flash::rom::script::parse_script;
use mi_flash::rom::verify::{verify, VerifyOptions};
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::OnceLock;

/// One folder for the whole run: each input overwrites the previous file.
fn workdir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary folder for the fuzz inputs"))
}

fuzz_target!(|data: &[u8]| {
    let name = if data.starts_with(&[0x1f, 0x8b]) {
        "x.tgz"
    } else if data.starts_with(b"PK") {
        "x.zip"
    } else {
        "x.tar"
    };
    let path: PathBuf = workdir().path().join(name);
    std::fs::write(&path, data).expect("writing the fuzz input to a temporary file");

    let opened = Package::open(&path);
    let mut options = VerifyOptions::default();
    if data.len() % 2 == 1 {
        // A small max-download-size makes the per-piece CRC checks split the images.
        options.max_download_size = Some(64 * 1024);
    }
    let verified = verify(&path, &options);
    assert_eq!(opened.is_ok(), verified.is_ok(), "open: {:?}\nverify: {:?}", opened.as_ref().err(), verified.as_ref().err());

    let Ok(package) = opened else { return };
    let _ = package.for_each_file(|entry, reader: &mut dyn Read| -> io::Result<()> {
        let n = io::copy(reader, &mut io::sink())?;
        assert_eq!(n, entry.size, "{} streamed {n} bytes, the listing says {}", entry.path, entry.size);
        Ok(())
    });
    for script in package.script_names() {
        if let Some(text) = package.small_file(&script) {
            let _ = parse_script(&script, text, &package).map(|plan| plan.images().len());
        }
    }
    if let Ok(v) = verified {
        let _ = serde_json::to_string(&v.report).expect("a verify report serialises");
    }
});
