//! Where the flasher reads images from.
//!
//! A folder or a `.zip` is read at random. A `.tgz` is decompressed once, on its own thread,
//! in archive order, and feeds every phone being flashed: an image that a phone needs next goes
//! straight through a bounded channel (memory stays bounded: a few MiB per phone); an image
//! needed later than the archive delivers it is spilled to a private temporary file, deleted
//! when the flash ends. Nothing is extracted to disk first. Small files the verified package
//! already holds in memory (the CRC lists Xiaomi scripts flash first, though they come last
//! in the archive) are served from there, so they do not hold the images up.

use crate::rom::package::{Package, SourceKind};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Chunk size of the decompressed stream.
const CHUNK: usize = 1 << 20;
/// Chunks in flight per phone: with CHUNK, 8 MiB of buffer per phone.
const DEPTH: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("cannot read {image} from the package: {message}")]
    Read { image: String, message: String },
    #[error("cannot spill {image} to {dir}: {message} (free some disk space, or set TMPDIR to a disk with room)")]
    Spill { image: String, dir: PathBuf, message: String },
    #[error("{image} is not in the package")]
    Missing { image: String },
}

/// One phone's source of images, opened in plan order.
pub trait ImageFeed: Send {
    fn open(&mut self, image: &str) -> Result<Box<dyn Read + Send + '_>, FeedError>;

    /// Opens an image again from its start, to send it (or some of its pieces) once more after
    /// the link failed. A random-access package simply opens it again.
    fn reopen(&mut self, image: &str) -> Result<Box<dyn Read + Send + '_>, FeedError> {
        self.open(image)
    }
}

/// Random access: folders and `.zip` packages.
pub struct PackageFeed {
    package: Arc<Package>,
}

impl PackageFeed {
    pub fn new(package: Arc<Package>) -> PackageFeed {
        PackageFeed { package }
    }
}

impl ImageFeed for PackageFeed {
    fn open(&mut self, image: &str) -> Result<Box<dyn Read + Send + '_>, FeedError> {
        self.package
            .open_file(image)
            .map(|r| Box::new(std::io::BufReader::with_capacity(CHUNK, r)) as Box<dyn Read + Send>)
            .map_err(|e| FeedError::Read { image: image.to_string(), message: e.to_string() })
    }
}

/// Whether a package is read at random (folder, zip) or streamed once (tar, tgz).
pub fn is_streamed(package: &Package) -> bool {
    matches!(package.kind(), SourceKind::Tgz | SourceKind::Tar)
}

type Chunk = Arc<Vec<u8>>;

#[derive(Default)]
struct State {
    /// Wanted small files, as the verified package holds them.
    memory: HashMap<String, Chunk>,
    /// Images written whole to the spill folder.
    spilled: HashMap<String, PathBuf>,
    /// Per phone: images being streamed to it, waiting to be opened.
    streams: Vec<HashMap<String, Receiver<Chunk>>>,
    /// Phones that stopped (failed or finished early): never wait for them.
    gone: Vec<bool>,
    done: bool,
    error: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The decompressing thread and its spill folder.
pub struct ArchiveStream {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    spill: Arc<tempfile::TempDir>,
}

/// One phone's view of an [`ArchiveStream`].
pub struct StreamFeed {
    id: usize,
    shared: Arc<Shared>,
    /// For [`ImageFeed::reopen`]: an image the stream already delivered is read again from
    /// the archive (or from the spill folder if it was spilled).
    package: Arc<Package>,
    _spill: Arc<tempfile::TempDir>,
}

/// A private folder for spilled images (0700 on Unix), removed when dropped. The mode is
/// asked for at creation: the default follows the umask (often 0755, readable by everyone).
fn spill_dir() -> std::io::Result<tempfile::TempDir> {
    let mut b = tempfile::Builder::new();
    b.prefix("mi-flash-spill-");
    #[cfg(unix)]
    b.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700));
    b.tempdir()
}

impl ArchiveStream {
    /// Starts decompressing `package` for phones whose images are wanted in the given order
    /// (one list per phone: the images of the steps it will run, in plan order).
    pub fn start(package: Arc<Package>, wants: Vec<Vec<String>>) -> Result<(ArchiveStream, Vec<StreamFeed>), FeedError> {
        let spill = Arc::new(spill_dir().map_err(|e| FeedError::Spill {
            image: "(any)".into(),
            dir: std::env::temp_dir(),
            message: e.to_string(),
        })?);
        let n = wants.len();
        let memory = in_memory(&package, &wants).into_iter().map(|(k, v)| (k, Arc::new(v.to_vec()))).collect();
        let shared = Arc::new(Shared {
            state: Mutex::new(State { memory, streams: (0..n).map(|_| HashMap::new()).collect(), gone: vec![false; n], ..Default::default() }),
            changed: Condvar::new(),
        });
        let feeds = (0..n).map(|id| StreamFeed { id, shared: shared.clone(), package: package.clone(), _spill: spill.clone() }).collect();
        let (sh, dir) = (shared.clone(), spill.path().to_path_buf());
        let thread = std::thread::Builder::new()
            .name("mi-flash-decompress".into())
            .spawn(move || {
                let result = produce(&package, &wants, &sh, &dir);
                let mut st = sh.lock();
                st.done = true;
                if let Err(e) = result {
                    st.error = Some(e);
                }
                // Unopened streams end here; their readers see the end of data.
                drop(st);
                sh.changed.notify_all();
            })
            .map_err(|e| FeedError::Read { image: "(package)".into(), message: e.to_string() })?;
        Ok((ArchiveStream { shared, thread: Some(thread), spill }, feeds))
    }

    pub fn spill_path(&self) -> &Path {
        self.spill.path()
    }

    /// Waits for the decompressing thread (it ends once every phone is done or gone).
    pub fn finish(mut self) -> Option<String> {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.shared.lock().error.clone()
    }
}

impl Drop for ArchiveStream {
    fn drop(&mut self) {
        {
            let mut st = self.shared.lock();
            st.gone.iter_mut().for_each(|g| *g = true);
            st.streams.iter_mut().for_each(|s| s.clear());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The wanted images the package keeps in memory since verification.
fn in_memory<'p>(package: &'p Package, wants: &[Vec<String>]) -> HashMap<String, &'p [u8]> {
    wants.iter().flatten().filter_map(|i| package.small_file(i).map(|b| (i.clone(), b))).collect()
}

/// The decompressing thread's loop over the archive.
fn produce(package: &Package, wants: &[Vec<String>], shared: &Shared, dir: &Path) -> Result<(), String> {
    let uses: Vec<HashMap<&str, usize>> = wants
        .iter()
        .map(|w| {
            let mut m = HashMap::new();
            for i in w {
                *m.entry(i.as_str()).or_insert(0) += 1;
            }
            m
        })
        .collect();
    // Images served from memory count as delivered: they are nobody's next image to wait for.
    let mut produced: HashSet<String> = in_memory(package, wants).into_keys().collect();
    let result = package.for_each_image(|entry, data| -> Result<(), String> {
        let image = entry.path.clone();
        let wanting: Vec<usize> = {
            let st = shared.lock();
            (0..wants.len()).filter(|&c| !st.gone[c] && uses[c].contains_key(image.as_str())).collect()
        };
        if wanting.is_empty() || produced.contains(&image) {
            return Ok(());
        }
        // Straight through only if every phone that wants it wants it next, and once.
        let next_for = |c: usize| wants[c].iter().find(|i| !produced.contains(*i)).map(String::as_str);
        let direct = wanting.iter().all(|&c| next_for(c) == Some(image.as_str()) && uses[c][image.as_str()] == 1);
        produced.insert(image.clone());
        if direct {
            stream_to(shared, &wanting, &image, data)
        } else {
            spill_to(shared, dir, &image, data)
        }
    });
    match result {
        Ok(()) => Ok(()),
        Err(crate::rom::package::VisitError::Package(e)) => Err(e.to_string()),
        Err(crate::rom::package::VisitError::Visitor(e)) => Err(e),
    }
}

fn stream_to(shared: &Shared, phones: &[usize], image: &str, data: &mut dyn Read) -> Result<(), String> {
    let mut senders: Vec<Option<SyncSender<Chunk>>> = Vec::new();
    {
        let mut st = shared.lock();
        for &c in phones {
            let (tx, rx) = sync_channel(DEPTH);
            st.streams[c].insert(image.to_string(), rx);
            senders.push(Some(tx));
        }
    }
    shared.changed.notify_all();
    loop {
        let mut buf = vec![0u8; CHUNK];
        let mut filled = 0;
        while filled < CHUNK {
            match data.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("{image}: {e}")),
            }
        }
        if filled == 0 {
            return Ok(());
        }
        buf.truncate(filled);
        let chunk = Arc::new(buf);
        for s in senders.iter_mut() {
            // A phone that stopped reading (failed, or dropped its reader) is left behind.
            if let Some(tx) = s {
                if tx.send(chunk.clone()).is_err() {
                    *s = None;
                }
            }
        }
        if senders.iter().all(Option::is_none) {
            // Nobody reads any more; drain the entry so the archive can go on.
            std::io::copy(data, &mut std::io::sink()).map_err(|e| format!("{image}: {e}"))?;
            return Ok(());
        }
    }
}

fn spill_to(shared: &Shared, dir: &Path, image: &str, data: &mut dyn Read) -> Result<(), String> {
    let path = dir.join(image.replace('/', "__"));
    let mut write = || -> std::io::Result<()> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut out = BufWriter::with_capacity(CHUNK, opts.open(&path)?);
        std::io::copy(data, &mut out)?;
        out.flush()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&path);
        return Err(format!("cannot spill {image} to {}: {e} (free some disk space, or set TMPDIR to a disk with room)", dir.display()));
    }
    shared.lock().spilled.insert(image.to_string(), path);
    shared.changed.notify_all();
    Ok(())
}

/// Reads a streamed image from its channel.
struct ChannelReader {
    rx: Receiver<Chunk>,
    chunk: Option<Chunk>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(c) = &self.chunk {
                if self.pos < c.len() {
                    let n = buf.len().min(c.len() - self.pos);
                    buf[..n].copy_from_slice(&c[self.pos..self.pos + n]);
                    self.pos += n;
                    return Ok(n);
                }
            }
            match self.rx.recv() {
                Ok(c) => {
                    self.chunk = Some(c);
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
    }
}

impl ImageFeed for StreamFeed {
    fn open(&mut self, image: &str) -> Result<Box<dyn Read + Send + '_>, FeedError> {
        let mut st = self.shared.lock();
        if let Some(bytes) = st.memory.get(image) {
            return Ok(Box::new(std::io::Cursor::new(bytes.to_vec())));
        }
        loop {
            if let Some(rx) = st.streams[self.id].remove(image) {
                return Ok(Box::new(ChannelReader { rx, chunk: None, pos: 0 }));
            }
            if let Some(p) = st.spilled.get(image) {
                let f = File::open(p).map_err(|e| FeedError::Read { image: image.to_string(), message: e.to_string() })?;
                return Ok(Box::new(std::io::BufReader::with_capacity(CHUNK, f)));
            }
            if st.done {
                return Err(match &st.error {
                    Some(e) => FeedError::Read { image: image.to_string(), message: e.clone() },
                    None => FeedError::Missing { image: image.to_string() },
                });
            }
            st = self.shared.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn reopen(&mut self, image: &str) -> Result<Box<dyn Read + Send + '_>, FeedError> {
        self.read_again(image)
    }
}

impl StreamFeed {
    /// A second read of an image the stream already delivered (or is delivering): its spilled
    /// copy, else the archive decompressed again up to it. Rare (a retry after the link failed),
    /// so it does not keep copies of streamed images around.
    fn read_again(&self, image: &str) -> Result<Box<dyn Read + Send>, FeedError> {
        let read_err = |message: String| FeedError::Read { image: image.to_string(), message };
        let spilled = self.shared.lock().spilled.get(image).cloned();
        if let Some(p) = spilled {
            let f = File::open(p).map_err(|e| read_err(e.to_string()))?;
            return Ok(Box::new(std::io::BufReader::with_capacity(CHUNK, f)));
        }
        let r = self.package.open_file(image).map_err(|e| read_err(e.to_string()))?;
        Ok(Box::new(std::io::BufReader::with_capacity(CHUNK, r)))
    }
}

impl Drop for StreamFeed {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.gone[self.id] = true;
        st.streams[self.id].clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rom::sample::{write_sample_package, SampleOptions};
    use crate::rom::verify::{verify, VerifyOptions};

    /// The sample's CRC lists come last in its archive but are flashed first: they are served
    /// from memory, and every image then arrives in the order the phone wants it, so nothing
    /// is spilled to disk.
    #[test]
    fn crc_lists_come_from_memory_and_images_stream_without_spilling() {
        let dir = tempfile::tempdir().unwrap();
        let sample = write_sample_package(dir.path(), &SampleOptions::default()).unwrap();
        let package = Arc::new(verify(&sample.path, &VerifyOptions::default()).unwrap().package);
        let mut wants = vec!["images/crclist.txt".to_string(), "images/sparsecrclist.txt".to_string()];
        wants.extend(sample.partitions.iter().map(|p| p.image.clone()));
        let mut expected = HashMap::new();
        package
            .for_each_image(|e, data| -> Result<(), std::io::Error> {
                let mut v = Vec::new();
                data.read_to_end(&mut v)?;
                expected.insert(e.path.clone(), v);
                Ok(())
            })
            .unwrap();
        let order: Vec<&str> = package.images().map(|e| e.path.as_str()).collect();
        let at = |name: &str| order.iter().position(|p| *p == name);
        assert!(at("images/crclist.txt") > at("images/super.img"), "the sample no longer puts its CRC lists last: {order:?}");

        let (stream, mut feeds) = ArchiveStream::start(package.clone(), vec![wants.clone()]).unwrap();
        for image in &wants {
            let mut got = Vec::new();
            feeds[0].open(image).unwrap().read_to_end(&mut got).unwrap();
            assert_eq!(&got, &expected[image], "{image}");
        }
        assert_eq!(std::fs::read_dir(stream.spill_path()).unwrap().count(), 0, "images were spilled to disk");
        drop(feeds);
        assert_eq!(stream.finish(), None);
    }
}

#[cfg(all(test, unix))]
mod private_spill_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn spilled_images_are_private_and_removed_with_their_folder() {
        let dir = spill_dir().unwrap();
        let path = dir.path().to_path_buf();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o700);
        let shared = Shared { state: Mutex::new(State::default()), changed: Condvar::new() };
        spill_to(&shared, &path, "images/super.img", &mut &b"data"[..]).unwrap();
        let file = shared.lock().spilled["images/super.img"].clone();
        assert!(file.starts_with(&path));
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&file).unwrap(), b"data");
        drop(dir);
        assert!(!path.exists(), "the spill folder outlived its flash");
    }
}
