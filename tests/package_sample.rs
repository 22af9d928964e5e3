//! The generated sample package: reproducible, verifies clean in every container form, and
//! each kind of damage is caught by the check meant for it.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use mi_flash::rom::manifest::Manifest;
use mi_flash::rom::package::{Package, PackageFiles, SourceKind};
use mi_flash::rom::sample::{
    write_sample_folder, write_sample_package, SampleOptions, SamplePackage,
};
use mi_flash::rom::verify::{verify, CheckStatus, VerifyOptions, VerifyReport};
use mi_flash::sparse::{scan, ScanOptions};

fn sample(dir: &Path) -> SamplePackage {
    write_sample_package(dir, &SampleOptions::default()).expect("sample package")
}

/// One sample per test run (generation dominates test time in debug builds); tests that
/// change the file copy it first.
fn shared() -> &'static SamplePackage {
    static SAMPLE: OnceLock<SamplePackage> = OnceLock::new();
    SAMPLE.get_or_init(|| sample(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("package-sample")))
}

fn statuses<'a>(report: &'a VerifyReport, name: &str) -> Vec<(&'a str, CheckStatus)> {
    report
        .checks
        .iter()
        .filter(|c| c.name == name)
        .map(|c| (c.file.as_str(), c.status))
        .collect()
}

fn plan_options(s: &SamplePackage) -> VerifyOptions {
    VerifyOptions {
        plan_images: Some(s.partitions.iter().map(|p| p.image.clone()).collect()),
        partition_images: s
            .partitions
            .iter()
            .map(|p| (p.partition.clone(), p.image.clone()))
            .collect(),
        ..VerifyOptions::default()
    }
}

#[test]
fn sample_is_reproducible_byte_for_byte() {
    let b = tempfile::tempdir().unwrap();
    let pa = shared();
    let pb = sample(b.path());
    assert_eq!(pa.file_name, pb.file_name);
    assert_eq!(fs::read(&pa.path).unwrap(), fs::read(&pb.path).unwrap());
    assert!(pa
        .file_name
        .starts_with("moonstone_images_OS1.0.6.0.UMNCNXM_20240601.0000.00_14.0_cn_"));
    assert!(pa.file_name.ends_with(&format!("_{}.tgz", &pa.md5[..10])));
    // A few MiB by default.
    assert!(pa.size < 8 << 20, "{}", pa.size);
}

#[test]
fn sample_verifies_clean_in_one_pass() {
    let s = shared();
    let v = verify(&s.path, &plan_options(s)).unwrap();
    let r = &v.report;
    assert!(r.is_ok(), "{:#?}", r.failures().collect::<Vec<_>>());
    assert_eq!(r.kind, SourceKind::Tgz);
    assert_eq!(r.root, s.top_folder);
    assert_eq!(r.digest.as_ref().unwrap().md5, s.md5);
    assert_eq!(r.digest.as_ref().unwrap().sha256, s.sha256);
    assert_eq!(r.anti, Some(1));
    assert_eq!(
        statuses(r, "md5-fragment"),
        vec![(s.file_name.as_str(), CheckStatus::Ok)]
    );
    let raw_count = s.partitions.iter().filter(|p| !p.sparse).count();
    let crc = statuses(r, "crclist");
    assert_eq!(crc.len(), raw_count);
    assert!(crc.iter().all(|c| c.1 == CheckStatus::Ok));
    let sparse = statuses(r, "sparsecrclist");
    assert_eq!(sparse.len(), 4, "{sparse:?}");
    assert!(sparse.iter().all(|c| c.1 == CheckStatus::Ok));
    assert_eq!(statuses(r, "plan-image").len(), s.partitions.len());
    // The sample's lists are made for Xiaomi's 768 MiB pieces: super.img is one piece.
    let super_check = r
        .checks
        .iter()
        .find(|c| c.name == "sparsecrclist" && c.file == "images/super.img")
        .unwrap();
    assert!(
        super_check
            .detail
            .contains("1 piece CRCs match at max-download-size 768 MiB"),
        "{}",
        super_check.detail
    );
    let info = r.file("images/super.img").unwrap().sparse.as_ref().unwrap();
    assert!(info.raw_chunks >= 2 && info.fill_chunks >= 2 && info.dont_care_chunks >= 2);
    // The opened package serves the script parser.
    assert_eq!(v.package.script_names().len(), 6);
    assert!(v.package.exists("images\\super.img"));
    assert_eq!(
        v.package.read_small("images/anti_version.txt").unwrap(),
        b"1\n"
    );
    // JSON form for `verify --json`.
    let json = serde_json::to_value(r).unwrap();
    assert_eq!(json["checks"][0]["name"], "md5-fragment");
    assert_eq!(json["checks"][0]["status"], "ok");
}

#[test]
fn folder_and_zip_forms_verify_clean_too() {
    let dir = tempfile::tempdir().unwrap();
    let s = SampleOptions::default();
    let folder = write_sample_folder(dir.path(), &s).unwrap();
    // Giving the parent folder works as well: the root is found by its images/ folder.
    let v = verify(dir.path(), &VerifyOptions::default()).unwrap();
    assert!(
        v.report.is_ok(),
        "{:#?}",
        v.report.failures().collect::<Vec<_>>()
    );
    assert_eq!(v.report.kind, SourceKind::Dir);
    assert_eq!(
        statuses(&v.report, "md5-fragment")[0].1,
        CheckStatus::Skipped
    );
    assert_eq!(v.report.name.as_ref().unwrap().device, "moonstone");

    let zip_path = dir.path().join("sample.zip");
    zip_folder(&folder, &zip_path);
    let v = verify(&zip_path, &VerifyOptions::default()).unwrap();
    assert!(
        v.report.is_ok(),
        "{:#?}",
        v.report.failures().collect::<Vec<_>>()
    );
    assert_eq!(v.report.kind, SourceKind::Zip);
    let mut boot = Vec::new();
    v.package
        .open_file("images/boot.img")
        .unwrap()
        .read_to_end(&mut boot)
        .unwrap();
    assert_eq!(boot, fs::read(folder.join("images/boot.img")).unwrap());
}

fn zip_folder(folder: &Path, out: &Path) {
    let mut w = zip::ZipWriter::new(fs::File::create(out).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let top = folder.file_name().unwrap().to_string_lossy().into_owned();
    let mut stack = vec![(folder.to_path_buf(), top)];
    while let Some((dir, rel)) = stack.pop() {
        w.add_directory(format!("{rel}/"), opts).unwrap();
        let mut names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let r = format!("{rel}/{}", p.file_name().unwrap().to_string_lossy());
            if p.is_dir() {
                stack.push((p, r));
            } else {
                w.start_file(r, opts).unwrap();
                w.write_all(&fs::read(&p).unwrap()).unwrap();
            }
        }
    }
    w.finish().unwrap();
}

#[test]
fn tgz_images_stream_in_archive_order_and_open_individually() {
    let s = shared();
    let package = Package::open(&s.path).unwrap();
    let mut seen = Vec::new();
    package
        .for_each_image(|entry, data| -> std::io::Result<()> {
            let mut n = 0u64;
            let mut buf = vec![0u8; 65536];
            loop {
                let k = data.read(&mut buf)?;
                if k == 0 {
                    break;
                }
                n += k as u64;
            }
            assert_eq!(n, entry.size);
            seen.push(entry.path.clone());
            Ok(())
        })
        .unwrap();
    let expected: Vec<String> = package.images().map(|e| e.path.clone()).collect();
    assert_eq!(seen, expected);
    assert!(
        seen.iter().position(|p| p == "images/xbl.elf")
            < seen.iter().position(|p| p == "images/super.img")
    );
    let mut misc = Vec::new();
    package
        .open_file("images/misc.img")
        .unwrap()
        .read_to_end(&mut misc)
        .unwrap();
    assert_eq!(misc.len(), 4096);
    assert!(package.open_file("images/../../etc/passwd").is_err());
}

/// Re-packs the sample's tar stream after `edit` (on the uncompressed tar bytes) and names it
/// with its real MD5 fragment, so only the damage itself can be reported.
fn repack(s: &SamplePackage, out_dir: &Path, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut tar_bytes = Vec::new();
    flate2::read::GzDecoder::new(fs::File::open(&s.path).unwrap())
        .read_to_end(&mut tar_bytes)
        .unwrap();
    edit(&mut tar_bytes);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar_bytes).unwrap();
    let bytes = gz.finish().unwrap();
    let md5 = format!("{:x}", md5::Md5::digest(&bytes));
    let stem = s.file_name.rsplit_once('_').unwrap().0;
    let path = out_dir.join(format!("{stem}_{}.tgz", &md5[..10]));
    fs::write(&path, bytes).unwrap();
    path
}

use md5::Digest as _;

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap()
}

#[test]
fn a_corrupted_byte_inside_an_image_fails_crclist() {
    let s = shared();
    let out = tempfile::tempdir().unwrap();
    let path = repack(s, out.path(), |tar| {
        let header = find(tar, b"/images/boot.img\0");
        let data = header - header % 512 + 512;
        tar[data + 1000] ^= 0x40;
    });
    let r = verify(&path, &plan_options(s)).unwrap().report;
    let failures: Vec<_> = r.failures().collect();
    assert_eq!(failures.len(), 1, "{failures:#?}");
    assert_eq!(failures[0].name, "crclist");
    assert_eq!(failures[0].file, "images/boot.img");
    assert!(failures[0].detail.contains("re-download"));
    assert_ne!(failures[0].expected, failures[0].actual);
}

#[test]
fn a_corrupted_byte_inside_a_sparse_image_fails_sparsecrclist() {
    let s = shared();
    let out = tempfile::tempdir().unwrap();
    let path = repack(s, out.path(), |tar| {
        let header = find(tar, b"/images/super.img\0");
        let data = header - header % 512 + 512;
        // Past the sparse and first chunk headers, inside RAW data.
        tar[data + 5000] ^= 1;
    });
    let r = verify(&path, &VerifyOptions::default()).unwrap().report;
    let failures: Vec<_> = r.failures().collect();
    assert_eq!(failures.len(), 1, "{failures:#?}");
    assert_eq!(
        (failures[0].name.as_str(), failures[0].file.as_str()),
        ("sparsecrclist", "images/super.img")
    );
}

#[test]
fn a_wrong_md5_fragment_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let s = shared();
    let wrong = dir
        .path()
        .join(s.file_name.replace(&s.md5[..10], "0123456789"));
    fs::copy(&s.path, &wrong).unwrap();
    let r = verify(&wrong, &VerifyOptions::default()).unwrap().report;
    let failures: Vec<_> = r.failures().collect();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].name, "md5-fragment");
    assert_eq!(failures[0].expected.as_deref(), Some("0123456789"));
    assert_eq!(failures[0].actual.as_deref(), Some(&s.md5[..10]));
}

#[test]
fn a_missing_image_fails_the_plan_and_crclist_checks() {
    let dir = tempfile::tempdir().unwrap();
    let s = shared();
    let folder = write_sample_folder(&dir.path().join("f"), &SampleOptions::default()).unwrap();
    fs::remove_file(folder.join("images/dtbo.img")).unwrap();
    fs::write(folder.join("images/vbmeta_system.img"), b"").unwrap();
    let r = verify(&folder, &plan_options(s)).unwrap().report;
    let failed: Vec<(&str, &str)> = r
        .failures()
        .map(|c| (c.name.as_str(), c.file.as_str()))
        .collect();
    assert!(
        failed.contains(&("plan-image", "images/dtbo.img")),
        "{failed:?}"
    );
    assert!(
        failed.contains(&("plan-image", "images/vbmeta_system.img")),
        "{failed:?}"
    );
    assert!(failed.iter().any(|(n, _)| *n == "crclist"), "{failed:?}");
}

#[test]
fn manifest_add_then_verify_against_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = shared();
    let manifest_path = dir.path().join("roms-manifest.toml");
    fs::write(&manifest_path, "# known packages\n").unwrap();
    let entry = Manifest::add(&manifest_path, &s.path).unwrap();
    assert_eq!(
        (entry.codename.as_str(), entry.region.as_str(), entry.anti),
        ("moonstone", "cn", Some(1))
    );
    assert_eq!(entry.sha256, s.sha256);
    let text = fs::read_to_string(&manifest_path).unwrap();
    assert!(text.starts_with("# known packages\n"));
    assert!(Manifest::add(&manifest_path, &s.path)
        .unwrap_err()
        .to_string()
        .contains("already listed"));

    let manifest = Manifest::load(&manifest_path).unwrap();
    let opts = VerifyOptions {
        manifest: Some(manifest.clone()),
        ..VerifyOptions::default()
    };
    let r = verify(&s.path, &opts).unwrap().report;
    let m = statuses(&r, "manifest");
    assert_eq!(m.len(), 4);
    assert!(m.iter().all(|c| c.1 == CheckStatus::Ok));

    let mut changed = manifest;
    changed.packages[0].sha256 = "0".repeat(64);
    let r = verify(
        &s.path,
        &VerifyOptions {
            manifest: Some(changed),
            ..VerifyOptions::default()
        },
    )
    .unwrap()
    .report;
    assert_eq!(r.failures().filter(|c| c.name == "manifest").count(), 1);
}

#[test]
fn shipped_manifest_lists_the_sample_package() {
    let shipped = Manifest::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/roms-manifest.toml"
    )))
    .unwrap();
    let s = shared();
    let entry = shipped
        .find(&s.file_name, Some(&s.sha256))
        .expect("sample listed in roms-manifest.toml; regenerate it (docs/packages.md)");
    assert_eq!(
        (
            entry.file.as_str(),
            entry.size,
            entry.md5.as_str(),
            entry.sha256.as_str()
        ),
        (
            s.file_name.as_str(),
            s.size,
            s.md5.as_str(),
            s.sha256.as_str()
        )
    );
}

/// The per-piece CRCs must be those of the pieces AOSP libsparse really makes.
#[test]
fn sparse_pieces_match_aosp_simg2simg() {
    if Command::new("simg2simg").arg("--help").output().is_err() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("simg2simg not installed (android-sdk-libsparse-utils)");
        }
        eprintln!("skipped: simg2simg not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = shared();
    let v = verify(&s.path, &VerifyOptions::default()).unwrap();
    for image in ["images/super.img", "images/userdata.img", "images/cust.img"] {
        let img_path = dir.path().join("img");
        let mut data = Vec::new();
        v.package
            .open_file(image)
            .unwrap()
            .read_to_end(&mut data)
            .unwrap();
        fs::write(&img_path, &data).unwrap();
        for max in [16u64 << 20, 1 << 20, 300 * 1024] {
            let out = dir.path().join("piece");
            let status = Command::new("simg2simg")
                .arg(&img_path)
                .arg(&out)
                .arg(max.to_string())
                .status()
                .unwrap();
            assert!(status.success());
            let mut aosp = Vec::new();
            for i in 0.. {
                let p = PathBuf::from(format!("{}.{i}", out.display()));
                let Ok(piece) = fs::read(&p) else { break };
                fs::remove_file(&p).unwrap();
                assert!(piece.len() as u64 <= max, "{image} piece {i} too large");
                let opts = ScanOptions { data_crc: true, ..Default::default() };
                aosp.push(scan(&piece[..], &opts).unwrap().data_crc.unwrap());
            }
            // simg2simg always resparses; fastboot sends files within the limit unchanged.
            let opts = ScanOptions { piece_crcs_for: Some(max), ..Default::default() };
            let ours = scan(&data[..], &opts).unwrap().piece_crcs.unwrap().crcs;
            assert_eq!(ours, aosp, "{image} at max {max}");
        }
    }
}

#[test]
fn the_cli_reads_the_manifest_that_manifest_add_wrote_in_the_current_folder() {
    // `mi-flash manifest add PKG` writes ./roms-manifest.toml; `verify` run in the same folder
    // checks against it without being told (and `--manifest FILE` still adds another).
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_mi-flash");
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .args(args)
            .current_dir(dir.path())
            .env("MI_FLASH_CACHE_DIR", dir.path().join("cache"))
            .env_remove("MI_FLASH_MANIFEST")
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    // A package the built-in manifest does not list (2 MiB of super data, not the sample's 18).
    let (code, out) = cli(&["sample-rom", "pkg", "--super-mib", "2"]);
    assert_eq!(code, Some(0), "{out}");
    let pkg = fs::read_dir(dir.path().join("pkg")).unwrap().next().unwrap().unwrap().path();
    let pkg = pkg.to_str().unwrap();
    let (_, out) = cli(&["verify", "--rom", pkg]);
    assert!(out.contains("not listed in the manifest"), "{out}");
    let (code, out) = cli(&["manifest", "add", pkg]);
    assert_eq!(code, Some(0), "{out}");
    assert!(dir.path().join("roms-manifest.toml").is_file());
    let (code, out) = cli(&["verify", "--rom", pkg]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.lines().any(|l| l.starts_with("✓ manifest")), "{out}");
    // Named explicitly too: read once, still matching.
    let (code, out) = cli(&["verify", "--rom", pkg, "--manifest", "roms-manifest.toml"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.lines().any(|l| l.starts_with("✓ manifest")), "{out}");
    // MI_FLASH_MANIFEST is read by flash as by verify: a manifest whose entry disagrees with
    // the package stops the flash before anything is written.
    let text = fs::read_to_string(dir.path().join("roms-manifest.toml")).unwrap();
    let sha = text.lines().find_map(|l| l.strip_prefix("sha256 = \"")).unwrap()[..64].to_string();
    let flipped = format!("{}{}", if sha.starts_with('0') { "1" } else { "0" }, &sha[1..]);
    fs::create_dir(dir.path().join("elsewhere")).unwrap();
    fs::write(dir.path().join("elsewhere/bad.toml"), text.replace(&sha, &flipped)).unwrap();
    let out = std::process::Command::new(bin)
        .args(["-s", "sim:moonstone", "--sim-store"])
        .arg(dir.path().join("store"))
        .args(["flash", "--rom", pkg, "--yes", "--journal-dir"])
        .arg(dir.path().join("journal"))
        .current_dir(dir.path().join("elsewhere"))
        .env("MI_FLASH_MANIFEST", dir.path().join("elsewhere/bad.toml"))
        .env("MI_FLASH_CACHE_DIR", dir.path().join("cache"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(text.contains("SHA-256 differs"), "{text}");
    assert!(!fs::read_to_string(dir.path().join("store/log.jsonl")).unwrap_or_default().contains("\"download:"), "written before the refusal");
    // A download folder with one archive stands for it; with two, mi-flash does not guess.
    let (code, out) = cli(&["verify", "--rom", "pkg"]);
    assert_eq!(code, Some(0), "{out}");
    fs::copy(pkg, dir.path().join("pkg/second.tgz")).unwrap();
    let (code, out) = cli(&["verify", "--rom", "pkg"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("holds 2 package archives") && out.contains("second.tgz") && out.contains("--rom FOLDER/NAME.tgz"), "{out}");
}
