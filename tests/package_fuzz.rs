//! Random and mutated bytes fed to the .tgz, .tar and .zip readers never panic or hang: they
//! open, or fail with an error.

use std::fs;
use std::io::Write;
use std::sync::OnceLock;

use mi_flash::rom::package::Package;
use mi_flash::rom::verify::{verify, VerifyOptions};
use proptest::prelude::*;

/// A small valid package as tar bytes: scripts, a raw image, a sparse image and CRC lists.
fn tar_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |path: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(0);
            b.append_data(&mut h, path, data).unwrap();
        };
        add(
            "p/flash_all.sh",
            b"fastboot $* flash boot_ab `dirname $0`/images/boot.img\n",
        );
        add("p/images/boot.img", &[5u8; 1500]);
        let mut sparse = Vec::new();
        sparse.extend_from_slice(&0xed26_ff3au32.to_le_bytes());
        for v in [1u16, 0, 28, 12] {
            sparse.extend_from_slice(&v.to_le_bytes());
        }
        for v in [4096u32, 3, 3, 0] {
            sparse.extend_from_slice(&v.to_le_bytes());
        }
        let chunk = |kind: u16, blocks: u32, body: &[u8], out: &mut Vec<u8>| {
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(&blocks.to_le_bytes());
            out.extend_from_slice(&(12 + body.len() as u32).to_le_bytes());
            out.extend_from_slice(body);
        };
        chunk(0xcac1, 1, &[9u8; 4096], &mut sparse);
        chunk(0xcac2, 1, &[1, 2, 3, 4], &mut sparse);
        chunk(0xcac3, 1, &[], &mut sparse);
        add("p/images/super.img", &sparse);
        add("p/images/crclist.txt", b"CRC-LIST\nboot 0x1234\n");
        add(
            "p/images/sparsecrclist.txt",
            b"SPARSECRC-LIST\nsuper 1 0x1\n",
        );
        b.into_inner().unwrap()
    })
}

fn tgz_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(tar_bytes()).unwrap();
        gz.finish().unwrap()
    })
}

fn zip_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let o = zip::write::SimpleFileOptions::default();
        w.start_file("p/flash_all.sh", o).unwrap();
        w.write_all(b"fastboot $* reboot\n").unwrap();
        w.start_file("p/images/boot.img", o).unwrap();
        w.write_all(&[5u8; 1500]).unwrap();
        w.finish().unwrap().into_inner()
    })
}

/// How long one input may take to open and verify; a reader that loops on some input fails
/// the test with that input instead of hanging it.
const CASE_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Opens (and verifies) the bytes as a package file in a thread with a deadline; a panic or
/// a hang fails the test.
fn open(bytes: &[u8], name: &str) {
    let (bytes, name) = (bytes.to_vec(), name.to_string());
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        open_now(&bytes, &name);
        let _ = tx.send(());
    });
    match rx.recv_timeout(CASE_LIMIT) {
        Ok(()) => worker.join().unwrap(),
        // The worker panicked (its assertion message is already printed): fail with it.
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => std::panic::resume_unwind(worker.join().unwrap_err()),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("opening the input took more than {CASE_LIMIT:?}: a hang"),
    }
}

fn open_now(bytes: &[u8], name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    fs::write(&path, bytes).unwrap();
    let opened = Package::open(&path);
    let verified = verify(&path, &VerifyOptions::default());
    // Opening and verifying agree on whether the bytes are a readable package.
    assert_eq!(
        opened.is_ok(),
        verified.is_ok(),
        "{:?} / {:?}",
        opened.err(),
        verified.err()
    );
}

fn mutate(base: &[u8], edits: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    let mut b = base.to_vec();
    for &(at, v) in edits {
        let i = at % b.len();
        b[i] ^= v | 1;
    }
    if let Some(c) = cut {
        b.truncate(c % (b.len() + 1));
    }
    b
}

#[test]
fn the_unmutated_inputs_open() {
    for (bytes, name) in [
        (tgz_bytes(), "a.tgz"),
        (tar_bytes(), "a.tar"),
        (zip_bytes(), "a.zip"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        fs::write(&path, bytes).unwrap();
        Package::open(&path).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..4096), kind in 0u8..3) {
        match kind {
            0 => { bytes.splice(0..0, [0x1f, 0x8b, 8, 0]); open(&bytes, "r.tgz") }
            1 => { bytes.splice(0..0, *b"PK\x03\x04"); open(&bytes, "r.zip") }
            _ => open(&bytes, "r.bin"),
        }
    }

    #[test]
    fn mutated_tgz_never_panics(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in proptest::option::of(any::<usize>())) {
        open(&mutate(tgz_bytes(), &edits, cut), "m.tgz");
    }

    #[test]
    fn mutated_tar_never_panics(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in proptest::option::of(any::<usize>())) {
        open(&mutate(tar_bytes(), &edits, cut), "m.tar");
    }

    #[test]
    fn mutated_zip_never_panics(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in proptest::option::of(any::<usize>())) {
        open(&mutate(zip_bytes(), &edits, cut), "m.zip");
    }
}
