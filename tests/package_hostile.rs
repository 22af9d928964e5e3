//! Hostile and damaged packages are refused when opened — before any check, plan or device
//! access — with an error that names the entry and says what to do.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use mi_flash::rom::package::{Package, PackageError};
use mi_flash::rom::verify::{verify, VerifyOptions};

const NAME: &str = "moonstone_images_OS1.0.6.0.UMNCNXM_20240601.0000.00_14.0_cn_0123456789.tgz";

/// A raw tar member; `name` is written byte for byte (the tar crate's safe setters would
/// refuse the hostile names these tests need).
fn member(
    out: &mut Vec<u8>,
    name: &[u8],
    kind: u8,
    data: &[u8],
    declared: Option<u64>,
    link: &[u8],
) {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_size(declared.unwrap_or(data.len() as u64));
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn valid_members() -> Vec<u8> {
    let mut t = Vec::new();
    member(&mut t, b"pkg/", b'5', b"", None, b"");
    member(
        &mut t,
        b"pkg/flash_all.sh",
        b'0',
        b"fastboot $* flash boot_ab `dirname $0`/images/boot.img\n",
        None,
        b"",
    );
    member(&mut t, b"pkg/images/", b'5', b"", None, b"");
    member(
        &mut t,
        b"pkg/images/boot.img",
        b'0',
        &[7u8; 3000],
        None,
        b"",
    );
    t
}

fn finish_tar(mut t: Vec<u8>) -> Vec<u8> {
    t.extend_from_slice(&[0u8; 1024]);
    t
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, bytes).unwrap();
    p
}

/// Opens a .tgz made of the valid members plus `extra`, expecting a refusal.
fn refuse_tgz(extra: impl FnOnce(&mut Vec<u8>)) -> PackageError {
    let dir = tempfile::tempdir().unwrap();
    let mut t = valid_members();
    extra(&mut t);
    let path = write(dir.path(), NAME, &gzip(&finish_tar(t)));
    // verify() refuses too, without producing a report.
    assert!(verify(&path, &VerifyOptions::default()).is_err());
    Package::open(&path).expect_err("hostile package must be refused")
}

fn assert_unsafe(e: &PackageError, entry: &str, reason: &str) {
    match e {
        PackageError::UnsafeEntry {
            entry: en,
            reason: r,
            ..
        } => {
            assert_eq!(en, entry);
            assert!(r.contains(reason), "reason {r:?} should mention {reason:?}");
            let msg = e.to_string();
            assert!(msg.contains(entry) && msg.contains("re-download"), "{msg}");
        }
        other => panic!("expected UnsafeEntry for {entry}, got {other:?}"),
    }
}

#[test]
fn the_valid_base_package_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), NAME, &gzip(&finish_tar(valid_members())));
    let p = Package::open(&path).unwrap();
    assert_eq!(p.root(), "pkg");
    assert_eq!(p.images().count(), 1);
}

#[test]
fn path_traversal_is_refused() {
    let e = refuse_tgz(|t| member(t, b"pkg/images/../../../x", b'0', b"x", None, b""));
    assert_unsafe(&e, "pkg/images/../../../x", "..");
    let e = refuse_tgz(|t| member(t, b"../x", b'0', b"x", None, b""));
    assert_unsafe(&e, "../x", "..");
}

#[test]
fn absolute_and_windows_paths_are_refused() {
    assert_unsafe(
        &refuse_tgz(|t| member(t, b"/etc/cron.d/x", b'0', b"x", None, b"")),
        "/etc/cron.d/x",
        "absolute",
    );
    assert_unsafe(
        &refuse_tgz(|t| member(t, b"pkg\\..\\x", b'0', b"x", None, b"")),
        "pkg\\..\\x",
        "backslash",
    );
    assert_unsafe(
        &refuse_tgz(|t| member(t, b"C:/x", b'0', b"x", None, b"")),
        "C:/x",
        "drive",
    );
}

#[test]
fn symlinks_are_refused_wherever_they_point() {
    let e = refuse_tgz(|t| {
        member(
            t,
            b"pkg/images/super.img",
            b'2',
            b"",
            None,
            b"../../../../etc/shadow",
        )
    });
    assert_unsafe(&e, "pkg/images/super.img", "symbolic link");
    let e = refuse_tgz(|t| member(t, b"pkg/images/alias.img", b'2', b"", None, b"boot.img"));
    assert_unsafe(&e, "pkg/images/alias.img", "symbolic link");
}

#[test]
fn hard_links_devices_and_fifos_are_refused() {
    assert_unsafe(
        &refuse_tgz(|t| {
            member(
                t,
                b"pkg/images/x.img",
                b'1',
                b"",
                None,
                b"pkg/images/boot.img",
            )
        }),
        "pkg/images/x.img",
        "hard link",
    );
    assert_unsafe(
        &refuse_tgz(|t| member(t, b"pkg/images/sda", b'4', b"", None, b"")),
        "pkg/images/sda",
        "block device",
    );
    assert_unsafe(
        &refuse_tgz(|t| member(t, b"pkg/images/tty", b'3', b"", None, b"")),
        "pkg/images/tty",
        "character device",
    );
    assert_unsafe(
        &refuse_tgz(|t| member(t, b"pkg/images/pipe", b'6', b"", None, b"")),
        "pkg/images/pipe",
        "FIFO",
    );
    assert_unsafe(
        &refuse_tgz(|t| member(t, b"pkg/images/s", b'S', b"", None, b"")),
        "pkg/images/s",
        "sparse",
    );
}

#[test]
fn duplicate_and_colliding_entries_are_refused() {
    let e = refuse_tgz(|t| member(t, b"pkg/images/boot.img", b'0', &[8u8; 3000], None, b""));
    assert_unsafe(&e, "pkg/images/boot.img", "twice");
    let e = refuse_tgz(|t| member(t, b"pkg/images/BOOT.img", b'0', b"x", None, b""));
    assert_unsafe(&e, "pkg/images/BOOT.img", "letter case");
    let e = refuse_tgz(|t| member(t, b"pkg/images/boot.img/x", b'0', b"x", None, b""));
    assert_unsafe(&e, "pkg/images/boot.img/x", "is a file");
}

#[test]
fn absurd_declared_sizes_are_refused_before_reading_data() {
    let e = refuse_tgz(|t| member(t, b"pkg/images/super.img", b'0', b"", Some(1 << 40), b""));
    match e {
        PackageError::ImpossibleSize {
            entry,
            declared,
            limit,
            ..
        } => {
            assert_eq!(entry, "pkg/images/super.img");
            assert_eq!(declared, 1 << 40);
            assert!(limit < 1 << 30);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_member_longer_than_the_archive_is_an_incomplete_download() {
    // Plausible size, but the tar stream (inside a valid gzip) ends first.
    let dir = tempfile::tempdir().unwrap();
    let mut t = valid_members();
    member(
        &mut t,
        b"pkg/images/super.img",
        b'0',
        &[1u8; 1024],
        Some(4096),
        b"",
    );
    let path = write(dir.path(), NAME, &gzip(&t));
    let e = Package::open(&path).unwrap_err();
    assert!(matches!(e, PackageError::Damaged { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("incomplete or damaged") && msg.contains("re-download"),
        "{msg}"
    );
}

#[test]
fn truncated_or_corrupted_gzip_is_an_incomplete_download() {
    let dir = tempfile::tempdir().unwrap();
    // Incompressible content so a cut lands inside deflate data.
    let mut t = valid_members();
    let noise: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    member(&mut t, b"pkg/images/modem.bin", b'0', &noise, None, b"");
    let good = gzip(&finish_tar(t));
    for cut in [good.len() / 2, good.len() - 4, good.len() - 1, 20] {
        let path = write(dir.path(), NAME, &good[..cut]);
        let e = Package::open(&path).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, PackageError::Damaged { .. }),
            "cut {cut}: {e:?}"
        );
        assert!(
            msg.contains("the download is incomplete or damaged") && msg.contains("re-download"),
            "{msg}"
        );
    }
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x55;
    let path = write(dir.path(), NAME, &flipped);
    assert!(matches!(
        Package::open(&path),
        Err(PackageError::Damaged { .. })
    ));
}

#[test]
fn archives_without_a_package_root_are_not_packages() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Vec::new();
    member(&mut t, b"recovery/boot.img", b'0', b"x", None, b"");
    let path = write(dir.path(), NAME, &gzip(&finish_tar(t)));
    let e = Package::open(&path).unwrap_err();
    assert!(matches!(e, PackageError::NoPackageRoot { .. }), "{e:?}");
    let path = write(dir.path(), "notes.tgz", b"plain text, not an archive");
    assert!(matches!(
        Package::open(&path),
        Err(PackageError::UnknownFormat { .. })
    ));
}

fn zip_with(f: impl FnOnce(&mut zip::ZipWriter<fs::File>)) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pkg.zip");
    let mut w = zip::ZipWriter::new(fs::File::create(&path).unwrap());
    let o = zip::write::SimpleFileOptions::default();
    w.start_file("pkg/flash_all.sh", o).unwrap();
    w.write_all(b"fastboot $* reboot\n").unwrap();
    w.start_file("pkg/images/boot.img", o).unwrap();
    w.write_all(&[3u8; 5000]).unwrap();
    f(&mut w);
    w.finish().unwrap();
    (dir, path)
}

#[test]
fn zip_traversal_and_symlinks_are_refused() {
    let (_d, path) = zip_with(|w| {
        w.start_file(
            "pkg/../../evil.sh",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        w.write_all(b"x").unwrap();
    });
    assert_unsafe(
        &Package::open(&path).unwrap_err(),
        "pkg/../../evil.sh",
        "..",
    );
    let (_d, path) = zip_with(|w| {
        w.add_symlink(
            "pkg/images/super.img",
            "/dev/sda",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
    });
    assert_unsafe(
        &Package::open(&path).unwrap_err(),
        "pkg/images/super.img",
        "symbolic link",
    );
}

#[test]
fn zip_sizes_and_contents_must_match_the_directory() {
    let (_d, path) = zip_with(|_| {});
    assert!(Package::open(&path).is_ok());
    let good = fs::read(&path).unwrap();
    // Central directory entry of boot.img: claim 4 GiB uncompressed.
    let mut bomb = good.clone();
    let cd = bomb.windows(4).rposition(|w| w == b"PK\x01\x02").unwrap();
    bomb[cd + 24..cd + 28].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    fs::write(&path, &bomb).unwrap();
    match Package::open(&path) {
        Err(PackageError::ImpossibleSize { entry, .. }) => assert_eq!(entry, "pkg/images/boot.img"),
        other => panic!("{other:?}"),
    }
    // Damaged data inside a member: caught by the CRC check while streaming.
    let mut damaged = good;
    let at = damaged
        .windows(19)
        .position(|w| w == b"pkg/images/boot.img")
        .unwrap()
        + 19
        + 10;
    damaged[at] ^= 0xff;
    fs::write(&path, &damaged).unwrap();
    let e = Package::open(&path).unwrap_err();
    assert!(matches!(e, PackageError::Damaged { .. }), "{e:?}");
}

#[test]
fn a_changed_script_or_small_file_in_a_zip_is_caught_by_its_crc() {
    // The files mi-flash reads whole (scripts, anti_version.txt, CRC lists) are checked against
    // the zip directory's CRC-32 like the images: a changed byte in a stored (uncompressed)
    // member must not become a different plan.
    for (name, content, from, to) in [
        ("pkg/flash_all.sh", &b"fastboot $* flash misc `dirname $0`/images/boot.img\n"[..], &b"flash misc "[..], &b"flash abl  "[..]),
        ("pkg/images/anti_version.txt", &b"1\n"[..], &b"1\n"[..], &b"3\n"[..]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pkg.zip");
        let mut w = zip::ZipWriter::new(fs::File::create(&path).unwrap());
        let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        if name != "pkg/flash_all.sh" {
            w.start_file("pkg/flash_all.sh", stored).unwrap();
            w.write_all(b"fastboot $* flash misc `dirname $0`/images/boot.img\n").unwrap();
        }
        w.start_file(name, stored).unwrap();
        w.write_all(content).unwrap();
        w.start_file("pkg/images/boot.img", stored).unwrap();
        w.write_all(&[3u8; 5000]).unwrap();
        w.finish().unwrap();
        assert!(Package::open(&path).is_ok(), "{name}");
        let mut bytes = fs::read(&path).unwrap();
        let header = bytes.windows(name.len()).position(|w| w == name.as_bytes()).unwrap();
        let at = header + name.len() + bytes[header + name.len()..].windows(from.len()).position(|w| w == from).unwrap();
        bytes[at..at + to.len()].copy_from_slice(to);
        fs::write(&path, &bytes).unwrap();
        match Package::open(&path) {
            Err(PackageError::Damaged { detail, .. }) => {
                assert!(detail.contains(&format!("`{name}`")) && detail.contains("CRC-32"), "{detail}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn a_name_listed_twice_in_a_zip_directory_is_refused() {
    // The zip writer refuses a second copy of a name, so the copy is made by renaming
    // `flash_all.sX` (same length) in the finished archive.
    let (_d, path) = zip_with(|w| {
        w.start_file("pkg/flash_all.sX", zip::write::SimpleFileOptions::default()).unwrap();
        w.write_all(b"fastboot $* flash abl `dirname $0`/images/boot.img\n").unwrap();
    });
    let bytes = fs::read(&path).unwrap();
    let mut renamed = bytes.clone();
    let mut at = 0;
    while let Some(p) = renamed[at..].windows(16).position(|w| w == b"pkg/flash_all.sX") {
        renamed[at + p + 15] = b'h';
        at += p + 16;
    }
    assert_ne!(renamed, bytes);
    fs::write(&path, &renamed).unwrap();
    assert_unsafe(&Package::open(&path).unwrap_err(), "pkg/flash_all.sh", "appears twice");
}

#[cfg(unix)]
#[test]
fn folder_symlinks_must_stay_inside_and_special_files_are_refused() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pkg");
    fs::create_dir_all(root.join("images")).unwrap();
    fs::write(root.join("flash_all.sh"), "fastboot $* reboot\n").unwrap();
    fs::write(root.join("images/boot.img"), [1u8; 100]).unwrap();
    // A link to an image inside the package is followed.
    symlink("boot.img", root.join("images/recovery.img")).unwrap();
    let p = Package::open(&root).unwrap();
    assert_eq!(p.entry("images/recovery.img").unwrap().size, 100);
    // A link leaving it is not.
    symlink("/etc/hostname", root.join("images/super.img")).unwrap();
    assert_unsafe(
        &Package::open(&root).unwrap_err(),
        "images/super.img",
        "outside",
    );
    fs::remove_file(root.join("images/super.img")).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(root.join("images/pipe"))
        .status();
    if status.is_ok_and(|s| s.success()) {
        assert_unsafe(&Package::open(&root).unwrap_err(), "images/pipe", "FIFO");
    }
}
