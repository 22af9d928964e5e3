//! Fuzz-like property tests: whatever bytes or lines reach the parser, it returns a plan or
//! an error — it never panics, and errors always point at a line of the input.

mod common;

use mi_flash::rom::plan::MemoryFiles;
use mi_flash::rom::script::parse_script;
use proptest::prelude::*;

fn files() -> MemoryFiles {
    MemoryFiles::new().with("images/anti_version.txt", b"1").with("images/exaid.img", b"x").with_folder("land_china_x")
}

/// The lines of the real Xiaomi scripts (under CI=true they must be there); outside CI,
/// without them, a few representative lines of both dialects.
fn fixture_lines() -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(dir) = common::fixtures() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            if let Ok(t) = std::fs::read_to_string(e.path()) {
                lines.extend(t.lines().map(str::to_string));
            }
        }
        assert!(lines.len() > 100, "only {} lines in the scripts of {}", lines.len(), dir.display());
    } else {
        println!("fuzzing from built-in lines only");
        lines = [
            "fastboot $* getvar product 2>&1 | grep \"^product: *piano\"",
            "if [ $? -ne 0 ] ; then echo \"Missmatching image and device\"; exit 1; fi",
            "CURRENT_ANTI_VER=`cat $(dirname $0)/images/anti_version.txt`",
            "ver=`fastboot $* getvar anti 2>&1 | grep -oP \"anti: \\K[0-9]+\"`",
            "fastboot %* flash abl_ab %~dp0images/abl.elf || @echo \"Flash abl error\" && exit 1",
            "if exist %~dp0images\\exaid.img (",
            ") else (",
            ")",
            "for /f \"tokens=2 delims=: \" %%i in ('fastboot %* getvar anti 2^>^&1 ^| findstr /r /c:\"anti:\"') do (set version=%%i)",
            "if %version% GTR %CURRENT_ANTI_VER% set anticheck=\"x\"",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
    }
    lines
}

fn check(name: &str, text: &[u8]) {
    let lines = text.iter().filter(|&&b| b == b'\n').count() + 1;
    match parse_script(name, text, &files()) {
        Ok(plan) => {
            for s in &plan.steps {
                assert!(s.source.line <= lines);
            }
        }
        Err(e) => assert!(e.line <= lines, "{e}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        check("flash_all.sh", &bytes);
        check("flash_all.bat", &bytes);
    }

    #[test]
    fn random_lines_of_shell_alphabet_never_panic(lines in proptest::collection::vec("[ a-z$*%~\"'`()|&;<>^=\\[\\]{}:#@/\\\\.0-9\n-]{0,60}", 0..12)) {
        let text = lines.join("\n");
        check("flash_all.sh", text.as_bytes());
        check("flash_all.bat", text.as_bytes());
    }

    #[test]
    fn shuffled_and_mutated_fixture_lines_never_panic(
        picks in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), 0u8..6, any::<char>()), 1..25),
    ) {
        let pool = fixture_lines();
        let mut out = Vec::new();
        for (line, pos, how, c) in picks {
            let mut l: Vec<char> = pool[line.index(pool.len())].chars().collect();
            let at = if l.is_empty() { 0 } else { pos.index(l.len()) };
            match how {
                0 => {}
                1 => { if !l.is_empty() { l.remove(at); } }
                2 => l.insert(at, c),
                3 => l.truncate(at),
                4 => { if !l.is_empty() { l[at] = c; } }
                _ => l.insert(at, ['(', ')', '"', '`', '%', '^', '|', '&'][at % 8]),
            }
            out.push(l.into_iter().collect::<String>());
        }
        let text = out.join("\n");
        check("flash_all.sh", text.as_bytes());
        check("flash_all.bat", text.as_bytes());
        let crlf = text.replace('\n', "\r\n");
        check("flash_all.bat", crlf.as_bytes());
    }
}
