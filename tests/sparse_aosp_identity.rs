//! Issue 3's proof: for the same images and the same max-download-size, mi-flash sends exactly
//! the pieces Debian's `fastboot` 29.0.6 sends (captured by the simulator with `--capture`),
//! every piece decodes with `simg2img`, and the simulator checks the CRC lists mi-flash
//! computes, refusing an image with one changed byte.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A sparse file written by hand, so DONT_CARE runs are included (29.0.6's img2simg has none).
enum Chunk {
    Raw(Vec<u8>),
    Fill(u32, u32),
    DontCare(u32),
}

fn sparse_file(chunks: &[Chunk]) -> Vec<u8> {
    const BS: u32 = 4096;
    let blocks: u32 = chunks
        .iter()
        .map(|c| match c {
            Chunk::Raw(d) => d.len() as u32 / BS,
            Chunk::Fill(_, n) | Chunk::DontCare(n) => *n,
        })
        .sum();
    let mut out = Vec::new();
    out.extend_from_slice(&0xed26ff3au32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&28u16.to_le_bytes());
    out.extend_from_slice(&12u16.to_le_bytes());
    for v in [BS, blocks, chunks.len() as u32, 0] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for c in chunks {
        let (ty, n, total, body): (u16, u32, u32, Vec<u8>) = match c {
            Chunk::Raw(d) => (0xCAC1, d.len() as u32 / BS, 12 + d.len() as u32, d.clone()),
            Chunk::Fill(v, n) => (0xCAC2, *n, 16, v.to_le_bytes().to_vec()),
            Chunk::DontCare(n) => (0xCAC3, *n, 12, vec![]),
        };
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&total.to_le_bytes());
        out.extend_from_slice(&body);
    }
    out
}

struct Images {
    _dir: tempfile::TempDir,
    files: Vec<(String, PathBuf)>,
}

fn images(img2simg: &Path) -> Images {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    // 1. img2simg output of a mixed image: RAW runs and FILL runs (zeros and a pattern).
    let raw = dir.path().join("system.raw");
    std::fs::write(&raw, mixed_image(9 * 1024 * 1024, 21)).unwrap();
    let sparse = dir.path().join("system.img");
    assert!(Command::new(img2simg).arg(&raw).arg(&sparse).status().unwrap().success());
    files.push(("system".to_string(), sparse));
    // 2. Hand-made: DONT_CARE runs, FILL runs and a RAW chunk of 6 MiB, larger than every
    //    split size below, so a single RAW chunk must be cut.
    let hand = sparse_file(&[
        Chunk::DontCare(100),
        Chunk::Raw(random_bytes(6 * 1024 * 1024, 5)),
        Chunk::Fill(0, 300),
        Chunk::DontCare(50),
        Chunk::Fill(0xdeadbeef, 20),
        Chunk::Raw(random_bytes(40 * 4096, 6)),
        Chunk::DontCare(1000),
        Chunk::Raw(random_bytes(700 * 4096, 7)),
    ]);
    let p = dir.path().join("super.img");
    std::fs::write(&p, hand).unwrap();
    files.push(("super".to_string(), p));
    // 3. A raw image, a multiple of 4096, larger than the split sizes: converted to pieces.
    let p = dir.path().join("vendor.img");
    std::fs::write(&p, mixed_image(5 * 1024 * 1024, 8)).unwrap();
    files.push(("vendor".to_string(), p));
    Images { _dir: dir, files }
}

fn captured(dir: &Path) -> Vec<Vec<u8>> {
    let mut names: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    names.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn profile(dir: &Path, max: u64, crc: bool) -> PathBuf {
    write_profile(dir, &format!("product = \"identity\"\nmax-download-size = {max}\ncrc = {crc}\n"))
}

#[test]
fn pieces_are_byte_identical_to_aosp_fastboot() {
    let (Some(fastboot), Some(img2simg), Some(simg2img)) =
        (require_tool("fastboot"), require_tool("img2simg"), require_tool("simg2img"))
    else {
        return;
    };
    let imgs = images(&img2simg);
    for max in [1_048_576u64, 3_145_728, 5_000_000] {
        let work = tempfile::tempdir().unwrap();
        let prof = profile(work.path(), max, false);
        let (cap_a, cap_b) = (work.path().join("cap-aosp"), work.path().join("cap-mi"));
        let aosp = Sim::start(prof.to_str().unwrap(), &work.path().join("a"), &["--capture", cap_a.to_str().unwrap()]);
        let ours = Sim::start(prof.to_str().unwrap(), &work.path().join("b"), &["--capture", cap_b.to_str().unwrap()]);
        for (part, file) in &imgs.files {
            let out = Command::new(&fastboot).args(["-s", &aosp.target(), "flash", part]).arg(file).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let out = mi_flash().args(["-s", &ours.target(), "flash", part]).arg(file).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

            // The partition equals simg2img's expansion of the original.
            let expanded = work.path().join(format!("{part}.expanded"));
            let want = if mi_flash::sparse::is_sparse(&std::fs::read(file).unwrap()[..4]) {
                assert!(Command::new(&simg2img).arg(file).arg(&expanded).status().unwrap().success());
                std::fs::read(&expanded).unwrap()
            } else {
                std::fs::read(file).unwrap()
            };
            assert_eq!(ours.partition(part), want, "{part} at max {max}");
            assert_eq!(aosp.partition(part), want, "{part} at max {max} (AOSP client)");
        }
        let (a, b) = (captured(&cap_a), captured(&cap_b));
        assert_eq!(a.len(), b.len(), "number of downloads at max {max}");
        assert!(a.len() > imgs.files.len(), "images must have been split at max {max}");
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(x.len() as u64 <= max);
            assert!(x == y, "download {} differs at max {max} ({} vs {} bytes)", i + 1, x.len(), y.len());
        }

        // Every piece mi-flash sent decodes with simg2img, and the pieces of each image
        // together rebuild it.
        let mut start = 0;
        for (part, file) in &imgs.files {
            let is_sparse = mi_flash::sparse::is_sparse(&std::fs::read(file).unwrap()[..4]);
            let n = count_pieces(&b[start..]);
            let dir = work.path().join(format!("pieces-{part}"));
            std::fs::create_dir_all(&dir).unwrap();
            let mut args = Vec::new();
            for (k, piece) in b[start..start + n].iter().enumerate() {
                let p = dir.join(format!("{k}.simg"));
                std::fs::write(&p, piece).unwrap();
                args.push(p);
            }
            let rebuilt = dir.join("rebuilt");
            let st = Command::new(&simg2img).args(&args).arg(&rebuilt).status().unwrap();
            assert!(st.success(), "simg2img rejected pieces of {part}");
            let want = if is_sparse { std::fs::read(work.path().join(format!("{part}.expanded"))).unwrap() } else { std::fs::read(file).unwrap() };
            assert_eq!(std::fs::read(&rebuilt).unwrap(), want, "{part} rebuilt by simg2img at max {max}");
            start += n;
        }
        assert_eq!(start, b.len());
    }
}

/// The pieces of one image: consecutive captured sparse files with the same total_blks whose
/// defined blocks do not overlap; a new image starts when a piece's total size differs.
fn count_pieces(rest: &[Vec<u8>]) -> usize {
    let total = |p: &Vec<u8>| u32::from_le_bytes([p[16], p[17], p[18], p[19]]);
    let first = total(&rest[0]);
    rest.iter().take_while(|p| mi_flash::sparse::is_sparse(&p[..4]) && total(p) == first).count()
}

#[test]
fn simulator_checks_the_crc_lists_mi_flash_computes() {
    let (Some(img2simg), Some(_)) = (require_tool("img2simg"), require_tool("simg2img")) else { return };
    let imgs = images(&img2simg);
    let work = tempfile::tempdir().unwrap();
    let max = 2_097_152u64;
    // boot is a small raw image listed in crclist.txt.
    let boot = work.path().join("boot.img");
    std::fs::write(&boot, random_bytes(200_000, 77)).unwrap();
    let mut args: Vec<PathBuf> = imgs.files.iter().map(|(_, f)| f.clone()).collect();
    args.push(boot.clone());
    let out = mi_flash().arg("crc").args(&args).args(["--max-download-size", &max.to_string()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let section = |header: &str| -> String {
        let mut lines = vec![header.to_string()];
        lines.extend(text.lines().skip_while(|l| *l != header).skip(1).take_while(|l| !l.starts_with('#')).map(str::to_string));
        lines.join("\n") + "\n"
    };
    let crclist = work.path().join("crclist.txt");
    let sparsecrclist = work.path().join("sparsecrclist.txt");
    std::fs::write(&crclist, section("CRC-LIST")).unwrap();
    std::fs::write(&sparsecrclist, section("SPARSECRC-LIST")).unwrap();
    assert!(std::fs::read_to_string(&sparsecrclist).unwrap().contains("super "), "{text}");
    assert!(std::fs::read_to_string(&crclist).unwrap().contains("boot 0x"), "{text}");

    let prof = profile(work.path(), max, true);
    let sim = Sim::start(prof.to_str().unwrap(), &work.path().join("s"), &[]);
    let flash = |part: &str, file: &Path| {
        let out = mi_flash().args(["-s", &sim.target(), "flash", part]).arg(file).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    assert!(flash("crclist", &crclist).0);
    assert!(flash("sparsecrclist", &sparsecrclist).0);
    for (part, file) in &imgs.files {
        let (ok, err) = flash(part, file);
        assert!(ok, "{part}: {err}");
    }
    assert!(flash("boot", &boot).0);

    // One changed byte in the RAW data of the third piece of super, and in boot.
    let mut bad = std::fs::read(&imgs.files[1].1).unwrap();
    let at = bad.len() - 5000;
    bad[at] ^= 0x01;
    let bad_super = work.path().join("bad-super.img");
    std::fs::write(&bad_super, bad).unwrap();
    let (ok, err) = flash("super", &bad_super);
    assert!(!ok);
    assert!(err.contains("CRC mismatch: super piece"), "{err}");
    let mut b = std::fs::read(&boot).unwrap();
    b[10] ^= 0x80;
    let bad_boot = work.path().join("bad-boot.img");
    std::fs::write(&bad_boot, b).unwrap();
    let (ok, err) = flash("boot", &bad_boot);
    assert!(!ok);
    assert!(err.contains("CRC mismatch: boot"), "{err}");
    assert_eq!(sim.partition("boot"), std::fs::read(&boot).unwrap(), "the refused image must not be written");
}
