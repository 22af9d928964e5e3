//! Generates a small, reproducible Xiaomi-style fastboot ROM package for tests, demos and
//! benchmarks (`mi-flash sample-rom OUT_DIR`).
//!
//! The package matches the simulator's built-in `moonstone` profile (A/B, slot-count 2,
//! anti 1, crc 1, max-download-size 16 MiB): a top folder
//! `moonstone_images_<build>_<android>` with `images/` (random raw images, Android sparse
//! images with RAW, FILL and DONT_CARE chunks — `super.img` is larger than 16 MiB so it is
//! split), `crclist.txt`, `sparsecrclist.txt` (new format, pieces for 16 MiB),
//! `anti_version.txt`, `platform_security_patch.txt`, `misc.txt`, and the six flash scripts in
//! Xiaomi's own style. It is packed as
//! `moonstone_images_<build>_<date>_<android>_cn_<md5-10>.tgz` with the correct MD5
//! fragment.
//!
//! Everything is deterministic (seeded PRNG, fixed tar metadata and order, fixed gzip header),
//! so the same options give the same bytes and the same MD5. Images are streamed, never held
//! in memory, so benchmark packages of a GiB cost no more memory than small ones.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use md5::{Digest as _, Md5};
use sha2::Sha256;

use super::package::hex;
use super::verify::py_hex;

/// Block size of the sample's sparse images.
const BLOCK: u64 = 4096;
/// Fixed modification time of every archive entry (2024-06-01 00:00:00 UTC).
const MTIME: u64 = 1_717_200_000;

/// What to generate.
#[derive(Debug, Clone)]
pub struct SampleOptions {
    pub codename: String,
    pub build: String,
    pub date: String,
    pub android: String,
    pub region: String,
    pub anti: u32,
    pub security_patch: String,
    /// PRNG seed: same seed, same bytes.
    pub seed: u64,
    /// Bytes of RAW data in `super.img` (rounded to blocks). Default 18 MiB; with a small
    /// `max_download_size` the sparse file splits into pieces.
    pub super_data: u64,
    /// `false` (default): `super.img` data is highly compressible, keeping the `.tgz` at a few
    /// MiB. `true`: random data throughout, so gzip works as hard as on a real ROM
    /// (benchmarks).
    pub incompressible: bool,
    /// gzip level 0–9.
    pub compression_level: u32,
    /// max-download-size the `sparsecrclist.txt` pieces are computed for.
    pub max_download_size: u64,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            codename: "moonstone".into(),
            build: "OS1.0.6.0.UMNCNXM".into(),
            date: "20240601.0000.00".into(),
            android: "14.0".into(),
            region: "cn".into(),
            anti: 1,
            security_patch: "2024-05-01".into(),
            seed: 0x6d69_2d66_6c61_7368,
            super_data: 18 << 20,
            incompressible: false,
            compression_level: 6,
            max_download_size: crate::sparse::NEW_SPARSE_CRC_SPLIT,
        }
    }
}

/// One partition of the sample, in flashing order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamplePartition {
    /// Name as the scripts flash it (`boot_ab`, `super`).
    pub partition: String,
    /// Image file under `images/`.
    pub image: String,
    /// Image file size in bytes.
    pub size: u64,
    pub sparse: bool,
    /// Wiped by `flash_all` but kept by `flash_all_except_storage`.
    pub user_data: bool,
}

/// The written package.
#[derive(Debug, Clone)]
pub struct SamplePackage {
    pub path: PathBuf,
    pub file_name: String,
    /// Folder name inside the archive.
    pub top_folder: String,
    pub size: u64,
    pub md5: String,
    pub sha256: String,
    pub partitions: Vec<SamplePartition>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SampleError {
    #[error("cannot write the sample package in {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("invalid sample options: {0}")]
    Options(String),
}

/// How an image's bytes are made.
#[derive(Debug, Clone)]
enum Content {
    /// `len` random bytes.
    Random { len: u64, seed: u64 },
    /// A sparse image from chunks.
    Sparse { chunks: Vec<Chunk> },
}

#[derive(Debug, Clone, Copy)]
enum Chunk {
    Raw {
        blocks: u64,
        seed: u64,
        compressible: bool,
    },
    Fill {
        blocks: u64,
        pattern: u32,
    },
    DontCare {
        blocks: u64,
    },
}

struct ImageSpec {
    partition: &'static str,
    image: &'static str,
    content: Content,
    user_data: bool,
    /// Erased before flashing (the scripts' `erase boot_ab`, `erase metadata`).
    erase_first: bool,
}

fn image_specs(o: &SampleOptions) -> Vec<ImageSpec> {
    let seed = |n: u64| o.seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let raw = |partition, image, len, n| ImageSpec {
        partition,
        image,
        content: Content::Random { len, seed: seed(n) },
        user_data: false,
        erase_first: false,
    };
    let super_blocks = (o.super_data / BLOCK).max(1);
    let tail_blocks = super_blocks / 8 + 1;
    let mut specs = vec![
        raw("xbl_ab", "xbl.elf", 180_236, 1),
        raw("xbl_config_ab", "xbl_config.elf", 61_440, 2),
        raw("abl_ab", "abl.elf", 204_800, 3),
        raw("tz_ab", "tz.mbn", 98_304, 4),
        raw("hyp_ab", "hypvm.mbn", 40_960, 5),
        raw("devcfg_ab", "devcfg.mbn", 32_768, 6),
        raw("keymaster_ab", "km41.mbn", 36_864, 7),
        raw("modem_ab", "NON-HLOS.bin", 262_144, 8),
        raw("dsp_ab", "dspso.bin", 131_072, 9),
        raw("bluetooth_ab", "BTFM.bin", 49_152, 10),
        raw("dtbo_ab", "dtbo.img", 65_536, 11),
        raw("vbmeta_ab", "vbmeta.img", 8_192, 12),
        raw("vbmeta_system_ab", "vbmeta_system.img", 4_096, 13),
        raw("vendor_boot_ab", "vendor_boot.img", 196_608, 14),
        raw("boot_ab", "boot.img", 262_144, 15),
        ImageSpec {
            partition: "super",
            image: "super.img",
            content: Content::Sparse {
                chunks: vec![
                    Chunk::Raw {
                        blocks: super_blocks,
                        seed: seed(16),
                        compressible: !o.incompressible,
                    },
                    Chunk::DontCare { blocks: 512 },
                    Chunk::Fill {
                        blocks: 256,
                        pattern: 0,
                    },
                    Chunk::Raw {
                        blocks: tail_blocks.min(64),
                        seed: seed(17),
                        compressible: false,
                    },
                    Chunk::Fill {
                        blocks: 128,
                        pattern: 0xdead_beef,
                    },
                    Chunk::DontCare { blocks: 1024 },
                ],
            },
            user_data: false,
            erase_first: false,
        },
        ImageSpec {
            partition: "cust",
            image: "cust.img",
            content: Content::Sparse {
                chunks: vec![
                    Chunk::Raw {
                        blocks: 16,
                        seed: seed(18),
                        compressible: false,
                    },
                    Chunk::Fill {
                        blocks: 240,
                        pattern: 0,
                    },
                    Chunk::DontCare { blocks: 768 },
                ],
            },
            user_data: false,
            erase_first: false,
        },
        ImageSpec {
            partition: "metadata",
            image: "metadata.img",
            content: Content::Sparse {
                chunks: vec![
                    Chunk::Raw {
                        blocks: 2,
                        seed: seed(19),
                        compressible: false,
                    },
                    Chunk::DontCare { blocks: 4094 },
                ],
            },
            user_data: true,
            erase_first: true,
        },
        ImageSpec {
            partition: "userdata",
            image: "userdata.img",
            content: Content::Sparse {
                chunks: vec![
                    Chunk::Raw {
                        blocks: 8,
                        seed: seed(20),
                        compressible: false,
                    },
                    Chunk::Fill {
                        blocks: 8,
                        pattern: 0,
                    },
                    Chunk::DontCare { blocks: 16_368 },
                    Chunk::Raw {
                        blocks: 1,
                        seed: seed(21),
                        compressible: false,
                    },
                ],
            },
            user_data: true,
            erase_first: false,
        },
        raw("misc", "misc.img", 4_096, 22),
    ];
    specs
        .iter_mut()
        .filter(|s| s.partition == "boot_ab")
        .for_each(|s| s.erase_first = true);
    specs
}

impl Content {
    fn len(&self) -> u64 {
        match self {
            Content::Random { len, .. } => *len,
            Content::Sparse { chunks } => {
                28 + chunks
                    .iter()
                    .map(|c| match c {
                        Chunk::Raw { blocks, .. } => 12 + blocks * BLOCK,
                        Chunk::Fill { .. } => 16,
                        Chunk::DontCare { .. } => 12,
                    })
                    .sum::<u64>()
            }
        }
    }

    fn reader(&self) -> Box<dyn Read> {
        match self {
            Content::Random { len, seed } => Box::new(Prng::new(*seed, false).take(*len)),
            Content::Sparse { chunks } => {
                let total_blocks: u64 = chunks
                    .iter()
                    .map(|c| match c {
                        Chunk::Raw { blocks, .. }
                        | Chunk::Fill { blocks, .. }
                        | Chunk::DontCare { blocks } => *blocks,
                    })
                    .sum();
                let mut header = Vec::with_capacity(28);
                header.extend_from_slice(&0xed26_ff3au32.to_le_bytes());
                header.extend_from_slice(&1u16.to_le_bytes());
                header.extend_from_slice(&0u16.to_le_bytes());
                header.extend_from_slice(&28u16.to_le_bytes());
                header.extend_from_slice(&12u16.to_le_bytes());
                header.extend_from_slice(&(BLOCK as u32).to_le_bytes());
                header.extend_from_slice(&(total_blocks as u32).to_le_bytes());
                header.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
                header.extend_from_slice(&0u32.to_le_bytes());
                let mut reader: Box<dyn Read> = Box::new(io::Cursor::new(header));
                for c in chunks {
                    let (kind, blocks, body): (u16, u64, Box<dyn Read>) = match *c {
                        Chunk::Raw {
                            blocks,
                            seed,
                            compressible,
                        } => (
                            0xcac1,
                            blocks,
                            Box::new(Prng::new(seed, compressible).take(blocks * BLOCK)),
                        ),
                        Chunk::Fill { blocks, pattern } => (
                            0xcac2,
                            blocks,
                            Box::new(io::Cursor::new(pattern.to_le_bytes().to_vec())),
                        ),
                        Chunk::DontCare { blocks } => (0xcac3, blocks, Box::new(io::empty())),
                    };
                    let body_len = match c {
                        Chunk::Raw { .. } => blocks * BLOCK,
                        Chunk::Fill { .. } => 4,
                        Chunk::DontCare { .. } => 0,
                    };
                    let mut h = Vec::with_capacity(12);
                    h.extend_from_slice(&kind.to_le_bytes());
                    h.extend_from_slice(&0u16.to_le_bytes());
                    h.extend_from_slice(&(blocks as u32).to_le_bytes());
                    h.extend_from_slice(&((12 + body_len) as u32).to_le_bytes());
                    reader = Box::new(reader.chain(io::Cursor::new(h)).chain(body));
                }
                reader
            }
        }
    }
}

/// splitmix64 stream. In compressible mode each 4 KiB block repeats one 256-byte random row,
/// which gzip shrinks about 16× while every block still differs.
struct Prng {
    state: u64,
    compressible: bool,
    row: [u8; 256],
    pos: u64,
}

impl Prng {
    fn new(seed: u64, compressible: bool) -> Self {
        Prng {
            state: seed,
            compressible,
            row: [0; 256],
            pos: 0,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl Read for Prng {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len() & !7;
        if n == 0 {
            // Keep the stream aligned to 8 bytes; callers use large buffers.
            let v = self.next_u64().to_le_bytes();
            let k = buf.len();
            buf.copy_from_slice(&v[..k]);
            return Ok(k);
        }
        if !self.compressible {
            for chunk in buf[..n].chunks_exact_mut(8) {
                chunk.copy_from_slice(&self.next_u64().to_le_bytes());
            }
            return Ok(n);
        }
        for (i, b) in buf[..n].iter_mut().enumerate() {
            let p = self.pos + i as u64;
            if p % BLOCK == 0 {
                let mut row = [0u8; 256];
                for c in row.chunks_exact_mut(8) {
                    c.copy_from_slice(&self.next_u64().to_le_bytes());
                }
                self.row = row;
            }
            *b = self.row[(p % 256) as usize];
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Receives the package files in order.
trait Sink {
    fn dir(&mut self, path: &str) -> io::Result<()>;
    fn file(
        &mut self,
        path: &str,
        size: u64,
        executable: bool,
        data: &mut dyn Read,
    ) -> io::Result<()>;
}

struct TarSink<W: Write> {
    builder: tar::Builder<W>,
}

fn header(path: &str, size: u64, mode: u32, kind: tar::EntryType) -> io::Result<tar::Header> {
    let mut h = tar::Header::new_gnu();
    h.set_path(path)?;
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(MTIME);
    h.set_uid(0);
    h.set_gid(0);
    h.set_username("root")?;
    h.set_groupname("root")?;
    h.set_entry_type(kind);
    h.set_cksum();
    Ok(h)
}

impl<W: Write> Sink for TarSink<W> {
    fn dir(&mut self, path: &str) -> io::Result<()> {
        let h = header(&format!("{path}/"), 0, 0o755, tar::EntryType::Directory)?;
        self.builder.append(&h, io::empty())
    }
    fn file(
        &mut self,
        path: &str,
        size: u64,
        executable: bool,
        data: &mut dyn Read,
    ) -> io::Result<()> {
        let h = header(
            path,
            size,
            if executable { 0o755 } else { 0o644 },
            tar::EntryType::Regular,
        )?;
        self.builder.append(&h, data)
    }
}

struct DirSink {
    base: PathBuf,
}

impl Sink for DirSink {
    fn dir(&mut self, path: &str) -> io::Result<()> {
        fs::create_dir_all(self.base.join(path))
    }
    fn file(
        &mut self,
        path: &str,
        _size: u64,
        _executable: bool,
        data: &mut dyn Read,
    ) -> io::Result<()> {
        let mut f = BufWriter::new(File::create(self.base.join(path))?);
        io::copy(data, &mut f)?;
        f.flush()
    }
}

/// Passes bytes through while computing their CRC-32.
struct Measure<R> {
    inner: R,
    crc: crc32fast::Hasher,
}

impl<R: Read> Read for Measure<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
}

impl SampleOptions {
    pub fn top_folder(&self) -> String {
        format!("{}_images_{}_{}", self.codename, self.build, self.android)
    }

    /// File name without the MD5 fragment (`…_cn`).
    fn name_stem(&self) -> String {
        format!(
            "{}_images_{}_{}_{}_{}",
            self.codename, self.build, self.date, self.android, self.region
        )
    }

    fn validate(&self) -> Result<(), SampleError> {
        let fields = [
            &self.codename,
            &self.build,
            &self.date,
            &self.android,
            &self.region,
        ];
        if fields
            .iter()
            .any(|f| f.is_empty() || f.contains(['/', '\\', ' ']))
        {
            return Err(SampleError::Options(
                "name fields must be non-empty and contain no spaces or slashes".into(),
            ));
        }
        if self.compression_level > 9 {
            return Err(SampleError::Options(format!(
                "compression level {} is above 9",
                self.compression_level
            )));
        }
        if self.max_download_size < 1 << 20 {
            return Err(SampleError::Options(
                "max-download-size must be at least 1 MiB".into(),
            ));
        }
        if self.super_data / BLOCK > u64::from(u32::MAX) / 2 {
            return Err(SampleError::Options(
                "super data size too large for a sparse image".into(),
            ));
        }
        Ok(())
    }

    /// The partitions the sample flashes, in script order, with image sizes.
    pub fn partitions(&self) -> Vec<SamplePartition> {
        image_specs(self)
            .into_iter()
            .map(|s| SamplePartition {
                partition: s.partition.to_string(),
                image: format!("images/{}", s.image),
                size: s.content.len(),
                sparse: matches!(s.content, Content::Sparse { .. }),
                user_data: s.user_data,
            })
            .collect()
    }
}

/// Writes all package files (below the top folder) to `sink`.
fn emit(o: &SampleOptions, sink: &mut dyn Sink) -> io::Result<()> {
    let top = o.top_folder();
    let specs = image_specs(o);
    sink.dir(&top)?;
    for (name, text) in scripts(o, &specs) {
        sink.file(
            &format!("{top}/{name}"),
            text.len() as u64,
            name.ends_with(".sh"),
            &mut text.as_bytes(),
        )?;
    }
    let misc = format!(
        "device={c}\nbuild_number={b}\nuserdata_version={d}\nmi_os_build_version={b}\ncustom_bulid_number={c}.{r}.1.0.0006\n",
        c = o.codename,
        b = o.build,
        d = o.date,
        r = o.region
    );
    sink.file(
        &format!("{top}/misc.txt"),
        misc.len() as u64,
        false,
        &mut misc.as_bytes(),
    )?;
    sink.dir(&format!("{top}/images"))?;
    let mut crclist = String::from("CRC-LIST\n");
    let mut sparsecrclist = String::from("SPARSECRC-LIST\n");
    for spec in &specs {
        let len = spec.content.len();
        let is_sparse = matches!(spec.content, Content::Sparse { .. });
        let mut measure = Measure { inner: spec.content.reader(), crc: crc32fast::Hasher::new() };
        sink.file(&format!("{top}/images/{}", spec.image), len, false, &mut measure)?;
        let crc = measure.crc.finalize();
        let base = spec.partition.strip_suffix("_ab").unwrap_or(spec.partition);
        if is_sparse {
            // The per-piece CRCs of the split a phone with this max-download-size receives.
            let opts = crate::sparse::ScanOptions { file_crc: false, data_crc: true, piece_crcs_for: Some(o.max_download_size), check_crc_chunks: false };
            let scan = crate::sparse::scan(spec.content.reader(), &opts)
                .map_err(|e| io::Error::other(format!("sample sparse image {}: {e}", spec.image)))?;
            let pieces = scan.piece_crcs.map(|p| p.crcs).unwrap_or_default();
            let crcs: Vec<String> = pieces.iter().map(|&c| py_hex(c)).collect();
            sparsecrclist.push_str(&format!("{base} {} {}\n", pieces.len(), crcs.join(" ")));
        } else if crc != 0 {
            crclist.push_str(&format!("{base} {}\n", py_hex(crc)));
        }
    }
    let small = [
        ("crclist.txt", crclist),
        ("sparsecrclist.txt", sparsecrclist),
        ("anti_version.txt", format!("{}\n", o.anti)),
        (
            "platform_security_patch.txt",
            format!("{}\n", o.security_patch),
        ),
    ];
    for (name, text) in small {
        sink.file(
            &format!("{top}/images/{name}"),
            text.len() as u64,
            false,
            &mut text.as_bytes(),
        )?;
    }
    Ok(())
}

/// Counts and hashes what is written to the `.tgz`.
struct HashingWriter<W> {
    inner: W,
    md5: Md5,
    sha: Sha256,
    count: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.md5.update(&buf[..n]);
        self.sha.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the sample `.tgz` into `out_dir` (created if needed) and returns its description.
pub fn write_sample_package(
    out_dir: &Path,
    options: &SampleOptions,
) -> Result<SamplePackage, SampleError> {
    options.validate()?;
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SampleError::Io { path, source }
    };
    fs::create_dir_all(out_dir).map_err(io_err(out_dir))?;
    let tmp = out_dir.join(format!(".{}.tgz.partial", options.name_stem()));
    let file = File::create(&tmp).map_err(io_err(&tmp))?;
    let hashing = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        md5: Md5::new(),
        sha: Sha256::new(),
        count: 0,
    };
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(3)
        .write(hashing, flate2::Compression::new(options.compression_level));
    let mut sink = TarSink {
        builder: tar::Builder::new(gz),
    };
    let result = (|| -> io::Result<HashingWriter<BufWriter<File>>> {
        emit(options, &mut sink)?;
        let gz = sink.builder.into_inner()?;
        let mut hashing = gz.finish()?;
        hashing.flush()?;
        Ok(hashing)
    })();
    let hashing = match result {
        Ok(h) => h,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(SampleError::Io {
                path: tmp,
                source: e,
            });
        }
    };
    let md5 = hex(&hashing.md5.finalize());
    let sha256 = hex(&hashing.sha.finalize());
    let size = hashing.count;
    let file = hashing.inner.into_inner().map_err(|e| SampleError::Io {
        path: tmp.clone(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(io_err(&tmp))?;
    let file_name = format!("{}_{}.tgz", options.name_stem(), &md5[..10]);
    let path = out_dir.join(&file_name);
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    Ok(SamplePackage {
        path,
        file_name,
        top_folder: options.top_folder(),
        size,
        md5,
        sha256,
        partitions: options.partitions(),
    })
}

/// Writes the same package as an extracted folder `out_dir/<top folder>`; returns its path.
pub fn write_sample_folder(
    out_dir: &Path,
    options: &SampleOptions,
) -> Result<PathBuf, SampleError> {
    options.validate()?;
    fs::create_dir_all(out_dir).map_err(|e| SampleError::Io {
        path: out_dir.to_path_buf(),
        source: e,
    })?;
    let mut sink = DirSink {
        base: out_dir.to_path_buf(),
    };
    emit(options, &mut sink).map_err(|e| SampleError::Io {
        path: out_dir.to_path_buf(),
        source: e,
    })?;
    Ok(out_dir.join(options.top_folder()))
}

/// The six scripts in Xiaomi's style (same structure as the 2022–2025 A/B packages).
fn scripts(o: &SampleOptions, specs: &[ImageSpec]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, keep_data, lock) in [
        ("flash_all", false, false),
        ("flash_all_except_storage", true, false),
        ("flash_all_lock", false, true),
    ] {
        out.push((format!("{name}.bat"), bat_script(o, specs, keep_data, lock)));
        out.push((format!("{name}.sh"), sh_script(o, specs, keep_data, lock)));
    }
    out
}

fn label(partition: &str) -> &str {
    partition.strip_suffix("_ab").unwrap_or(partition)
}

fn sh_script(o: &SampleOptions, specs: &[ImageSpec], keep_data: bool, lock: bool) -> String {
    let mut s = format!(
        "fastboot $* getvar product 2>&1 | grep \"^product: *{}\"\n\
         if [ $? -ne 0  ] ; then echo \"Missmatching image and device\"; exit 1; fi\n\
         \n\
         #check anti_version\n\
         if [ -e $(dirname $0)/images/anti_version.txt ]; then\n\
         CURRENT_ANTI_VER=`cat $(dirname $0)/images/anti_version.txt`\n\
         fi\n\
         if [ -z \"$CURRENT_ANTI_VER\" ]; then CURRENT_ANTI_VER=0; fi\n\
         ver=`fastboot $* getvar anti 2>&1 | grep -oP \"anti: \\K[0-9]+\"`\n\
         if [ -z \"$ver\" ]; then ver=0; fi\n\
         if [ $ver -gt $CURRENT_ANTI_VER ]; then echo \"Current device antirollback version is greater than this pakcage\"; exit 1; fi\n\
         \n\
         fastboot $* getvar crc 2>&1 | grep \"^crc: 1\"\n\
         if [ $? -eq 0 ]; then\n\
         fastboot $* flash crclist       `dirname $0`/images/crclist.txt\n\
         if [ $? -ne 0 ] ; then echo \"Flash crclist error\"; exit 1; fi\n\
         fastboot $* flash sparsecrclist `dirname $0`/images/sparsecrclist.txt\n\
         if [ $? -ne 0 ] ; then echo \"Flash sparsecrclist error\"; exit 1; fi\n\
         fi\n\
         \n",
        o.codename
    );
    for spec in specs.iter().filter(|s| !(keep_data && s.user_data)) {
        let l = label(spec.partition);
        if spec.erase_first {
            s.push_str(&format!("fastboot $* erase {}\nif [ $? -ne 0 ] ; then echo \"Erase {l} error\"; exit 1; fi\n", spec.partition));
        }
        s.push_str(&format!(
            "fastboot $* flash {} `dirname $0`/images/{}\nif [ $? -ne 0 ] ; then echo \"Flash {l} error\"; exit 1; fi\n",
            spec.partition, spec.image
        ));
    }
    s.push_str("fastboot $* set_active a\nif [ $? -ne 0 ] ; then echo \"set_active a error\"; exit 1; fi\n");
    if lock {
        s.push_str(
            "fastboot $* oem lock\nif [ $? -ne 0 ] ; then echo \"Oem lock error\"; exit 1; fi\n",
        );
    } else {
        s.push_str(
            "fastboot $* reboot\nif [ $? -ne 0 ] ; then echo \"Reboot error\"; exit 1; fi\n",
        );
    }
    s
}

fn bat_script(o: &SampleOptions, specs: &[ImageSpec], keep_data: bool, lock: bool) -> String {
    let mut s = format!(
        "fastboot %* getvar product 2>&1 | findstr /r /c:\"^product: *{c}\" || echo Missmatching image and device\n\
         fastboot %* getvar product 2>&1 | findstr /r /c:\"^product: *{c}\" || exit /B 1\n\
         \n\
         ::check anti_version\n\
         if exist \"%~dp0images\\anti_version.txt\" (for /f \"usebackq\" %%a in (\"%~dp0images\\anti_version.txt\") do (set CURRENT_ANTI_VER=%%a))\n\
         if [%CURRENT_ANTI_VER%] EQU [] set CURRENT_ANTI_VER=0\n\
         for /f \"tokens=2 delims=: \" %%i in ('fastboot %* getvar anti 2^>^&1 ^| findstr /r /c:\"anti:\"') do (set version=%%i)\n\
         if [%version%] EQU [] set version=0\n\
         set anticheck=\"antirollback check pass\"\n\
         if %version% GTR %CURRENT_ANTI_VER% set anticheck=\"Current device antirollback version is greater than this pakcage\"\n\
         echo %anticheck% | findstr /r /c:\"pass\" || @echo \"Antirollback check error\" && exit /B 1\n\
         \n\
         fastboot %* getvar crc 2>&1 | findstr /r /c:\"^crc: 1\"\n\
         if %errorlevel% equ 0 (\n\
         fastboot %* flash crclist %~dp0images\\crclist.txt || @echo \"Flash crclist error\" && exit /B 1\n\
         fastboot %* flash sparsecrclist %~dp0images\\sparsecrclist.txt || @echo \"Flash sparsecrclist error\" && exit /B 1\n\
         )\n\
         \n",
        c = o.codename
    );
    for spec in specs.iter().filter(|s| !(keep_data && s.user_data)) {
        let l = label(spec.partition);
        if spec.erase_first {
            s.push_str(&format!(
                "fastboot %* erase {} || @echo \"Erase {l} error\" && exit /B 1\n",
                spec.partition
            ));
        }
        s.push_str(&format!(
            "fastboot %* flash {} %~dp0images\\{} || @echo \"Flash {l} error\" && exit /B 1\n",
            spec.partition, spec.image
        ));
    }
    s.push_str("fastboot %* set_active a || @echo \"Set active a error\" && exit /B 1\n");
    if lock {
        s.push_str("fastboot %* oem lock || @echo \"Oem lock error\" && exit /B 1\n");
    } else {
        s.push_str("fastboot %* reboot || @echo \"Reboot error\" && exit /B 1\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prng_is_deterministic_and_compressible_mode_repeats_rows() {
        let mut a = vec![0u8; 8192];
        let mut b = vec![0u8; 8192];
        Prng::new(7, false).read_exact(&mut a).unwrap();
        Prng::new(7, false).read_exact(&mut b).unwrap();
        assert_eq!(a, b);
        let mut c = vec![0u8; 8192];
        Prng::new(7, true).read_exact(&mut c).unwrap();
        assert_eq!(c[..256], c[256..512]);
        assert_ne!(c[..256], c[4096..4352]);
    }

    #[test]
    fn sparse_content_length_matches_its_reader() {
        for spec in image_specs(&SampleOptions {
            super_data: 1 << 20,
            ..SampleOptions::default()
        }) {
            let mut n = 0u64;
            let mut r = spec.content.reader();
            let mut buf = vec![0u8; 65536];
            loop {
                let k = r.read(&mut buf).unwrap();
                if k == 0 {
                    break;
                }
                n += k as u64;
            }
            assert_eq!(n, spec.content.len(), "{}", spec.image);
        }
    }

    #[test]
    fn scripts_follow_the_xiaomi_pattern() {
        let o = SampleOptions::default();
        let specs = image_specs(&o);
        let sh = sh_script(&o, &specs, false, false);
        assert!(sh.starts_with("fastboot $* getvar product 2>&1 | grep \"^product: *moonstone\"\n"));
        assert!(sh.contains("fastboot $* flash super `dirname $0`/images/super.img\n"));
        assert!(sh.contains("fastboot $* flash userdata"));
        assert!(sh.ends_with(
            "fastboot $* reboot\nif [ $? -ne 0 ] ; then echo \"Reboot error\"; exit 1; fi\n"
        ));
        let keep = sh_script(&o, &specs, true, false);
        assert!(!keep.contains("userdata") && !keep.contains("metadata"));
        let lock = bat_script(&o, &specs, false, true);
        assert!(
            lock.contains("fastboot %* set_active a ||")
                && lock.contains("fastboot %* oem lock ||")
        );
        assert!(!lock.contains("reboot"));
    }
}
