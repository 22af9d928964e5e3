//! `md5sum.xml` (older packages): every listed image's MD5 is checked in the one verification
//! pass, wherever the file sits in the archive, in every container form; packages without it
//! (since about 2022) skip the per-image MD5s altogether, which is what makes their
//! verification cheap.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use mi_flash::rom::package::may_hold_md5sum_xml;
use mi_flash::rom::sample::{write_sample_folder, SampleOptions};
use mi_flash::rom::verify::{verify, CheckStatus, VerifyOptions, VerifyReport};

/// A sample folder with an `md5sum.xml` in Xiaomi's format listing every file in `images/`.
fn folder_with_md5sum(dir: &Path) -> PathBuf {
    let root = write_sample_folder(dir, &SampleOptions::default()).expect("sample folder");
    let mut names: Vec<String> = fs::read_dir(root.join("images"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut xml = String::from("<root><digests>");
    for n in &names {
        let md5 = Md5::digest(fs::read(root.join("images").join(n)).unwrap());
        let hex: String = md5.iter().map(|b| format!("{b:02x}")).collect();
        xml.push_str(&format!("<digest hash=\"md5\" name=\"{n}\">{hex}</digest>"));
    }
    xml.push_str("</digests><security-patch-level><level>PLATFORM_SECURITY_PATCH := 2021-03-01</level></security-patch-level></root>");
    fs::write(root.join("md5sum.xml"), xml).unwrap();
    root
}

/// Packs `root` as a .tgz with `md5sum.xml` first or last in the archive.
fn tgz(root: &Path, out: &Path, md5sum_first: bool) {
    let gz = flate2::write::GzEncoder::new(fs::File::create(out).unwrap(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    let top = root.file_name().unwrap().to_string_lossy().into_owned();
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in [root.to_path_buf(), root.join("images")] {
        let mut here: Vec<PathBuf> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
        here.sort();
        files.extend(here);
    }
    let (xml, mut rest): (Vec<PathBuf>, Vec<PathBuf>) = files.into_iter().partition(|p| p.ends_with("md5sum.xml"));
    if md5sum_first {
        rest.splice(0..0, xml);
    } else {
        rest.extend(xml);
    }
    for p in rest {
        let rel = p.strip_prefix(root).unwrap();
        tar.append_path_with_name(&p, Path::new(&top).join(rel)).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

fn zip(root: &Path, out: &Path) {
    let mut w = zip::ZipWriter::new(fs::File::create(out).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    for dir in ["", "images"] {
        let mut here: Vec<PathBuf> = fs::read_dir(root.join(dir)).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
        here.sort();
        for p in here {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
            w.start_file(rel, opts).unwrap();
            w.write_all(&fs::read(&p).unwrap()).unwrap();
        }
    }
    w.finish().unwrap();
}

fn md5_checks(report: &VerifyReport) -> Vec<(String, CheckStatus)> {
    report.checks.iter().filter(|c| c.name == "md5sum.xml").map(|c| (c.file.clone(), c.status)).collect()
}

/// Every image is listed and checked, none skipped.
fn assert_all_ok(report: &VerifyReport, what: &str) {
    let checks = md5_checks(report);
    assert!(checks.len() > 10, "{what}: {checks:?}");
    assert!(checks.iter().all(|(_, s)| *s == CheckStatus::Ok), "{what}: {checks:?}");
    assert!(checks.iter().any(|(f, _)| f == "images/super.img"), "{what}: {checks:?}");
}

fn corrupt(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    fs::write(path, bytes).unwrap();
}

#[test]
fn md5sum_xml_is_checked_in_folders_zips_and_tgz_in_any_order() {
    let dir = tempfile::tempdir().unwrap();
    let root = folder_with_md5sum(&dir.path().join("pkg"));
    assert!(may_hold_md5sum_xml(&root));
    assert_all_ok(&verify(&root, &VerifyOptions::default()).unwrap().report, "folder");

    let z = dir.path().join("pkg.zip");
    zip(&root, &z);
    assert!(may_hold_md5sum_xml(&z));
    assert_all_ok(&verify(&z, &VerifyOptions::default()).unwrap().report, "zip");

    for first in [true, false] {
        let t = dir.path().join(format!("pkg-{first}.tgz"));
        tgz(&root, &t, first);
        assert!(may_hold_md5sum_xml(&t), "a .tgz cannot tell before it is read");
        assert_all_ok(&verify(&t, &VerifyOptions::default()).unwrap().report, &format!("tgz, md5sum.xml first: {first}"));
    }

    // A damaged image is named by the md5sum.xml check, in each form.
    corrupt(&root.join("images/boot.img"));
    zip(&root, &z);
    let t = dir.path().join("pkg-damaged.tgz");
    tgz(&root, &t, false);
    for pkg in [&root, &z, &t] {
        let report = verify(pkg, &VerifyOptions::default()).unwrap().report;
        let failed: Vec<_> = md5_checks(&report).into_iter().filter(|(_, s)| *s == CheckStatus::Failed).collect();
        assert_eq!(failed, vec![("images/boot.img".to_string(), CheckStatus::Failed)], "{}", pkg.display());
        assert!(!report.is_ok());
    }
}

#[test]
fn without_md5sum_xml_no_image_md5_is_computed() {
    let dir = tempfile::tempdir().unwrap();
    let root = write_sample_folder(&dir.path().join("pkg"), &SampleOptions::default()).unwrap();
    assert!(!may_hold_md5sum_xml(&root));
    let z = dir.path().join("pkg.zip");
    zip(&root, &z);
    assert!(!may_hold_md5sum_xml(&z));
    for pkg in [&root, &z] {
        let verified = verify(pkg, &VerifyOptions::default()).unwrap();
        assert!(verified.report.is_ok(), "{}", pkg.display());
        assert_eq!(md5_checks(&verified.report), vec![("md5sum.xml".to_string(), CheckStatus::Skipped)]);
        assert!(verified.report.files.iter().all(|f| f.md5.is_none()), "{}", pkg.display());
        // The CRC lists still cover the images.
        assert!(verified.report.checks.iter().any(|c| c.name == "crclist" && c.status == CheckStatus::Ok));
    }
}
