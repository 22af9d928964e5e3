//! Flash scripts from a ROM package that may have been tampered with.
//!
//! The input is a script's text. It is read as a `.sh` and as a `.bat` script (the file name
//! picks the dialect), against one of a few small in-memory packages chosen from the input's
//! length (with and without `anti_version.txt`, the security patch file and some images), so
//! that `if exist` / `[ -e ]` and the anti-rollback readers take both branches.
//! Every plan that comes out must print, and survive a JSON round trip unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mi_flash::rom::plan::{MemoryFiles, Plan};
use mi_flash::rom::script::parse_script;

const NAMES: [&str; 3] = ["flash_all", "flash_all_except_storage", "flash_all_lock"];

fuzz_target!(|data: &[u8]| {
    let files = package(data.len() % 4);
    let stem = NAMES[(data.len() / 4) % NAMES.len()];
    for ext in ["sh", "bat"] {
        let name = format!("{stem}.{ext}");
        match parse_script(&name, data, &files) {
            Ok(plan) => check_plan(&plan),
            Err(e) => {
                assert_eq!(e.file, name);
                // The message is what a user reads: it must render.
                let _ = e.to_string();
            }
        }
    }
});

fn package(variant: usize) -> MemoryFiles {
    let images = MemoryFiles::new()
        .with("images/boot.img", b"ANDROID!")
        .with("images/super.img", &[0x3a, 0xff, 0x26, 0xed])
        .with("images/crclist.txt", b"CRC-LIST\n")
        .with("images/sparsecrclist.txt", b"SPARSECRC-LIST\n")
        .with("images/abl.elf", b"\x7fELF")
        .with("images/vbmeta.img", b"AVB0");
    match variant {
        0 => MemoryFiles::new(),
        1 => images.with("images/anti_version.txt", b"3\n"),
        2 => images
            .with("images/anti_version.txt", b"not a number")
            .with("images/platform_security_patch.txt", b"2024-05-01")
            .with_folder("fuzz_images_V14.0.1.0.TMACNXM_20230101.0000.00_13.0_cn"),
        _ => images.with("images/platform_security_patch.txt", b"\xff\xfe").with_folder("x"),
    }
}

fn check_plan(plan: &Plan) {
    let _ = plan.to_string();
    let _ = plan.images();
    let _ = plan.locks();
    for step in &plan.steps {
        let _ = step.action.to_string();
    }
    let json = serde_json::to_string(plan).expect("a plan serialises");
    let back: Plan = serde_json::from_str(&json).unwrap_or_else(|e| panic!("a serialised plan reads back: {e}\n{json}"));
    assert_eq!(&back, plan, "plan changed in a JSON round trip");
}
