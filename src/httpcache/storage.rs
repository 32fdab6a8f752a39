//! The HTTP cache's directory: one file per request fingerprint, written
//! whole to a temporary file and renamed into place, checksummed, and
//! bounded in total size by evicting the oldest entries.
//!
//! Every function here blocks on the file system: the cache calls them on
//! tokio's blocking pool, never on an actor's thread.
//!
//! # On-disk format
//!
//! `<dir>/<first two hex digits>/<32 hex digits of the fingerprint>`, each
//! file a 20-byte header and a payload, integers little-endian:
//!
//! ```text
//! ["SPHC"][version u8 = 1][0 u8 × 3][payload length u64][crc32 u32 of payload]
//! payload: [meta length u32][meta: JSON][body]
//! ```
//!
//! The meta holds the status, URL, headers and the times of the exchange.
//!
//! # Crash safety
//!
//! An entry is written to `<name>.tmp-<pid>-<n>` and renamed over the
//! entry, so a reader sees the old file or the new one, whole. Nothing is
//! synced: a crash (even a power loss) can leave a file short or zeroed,
//! and the length and checksum in its header then make it read as
//! [`Loaded::Corrupt`], which the cache counts, logs, removes and treats
//! as a miss; it never serves a damaged body. Temporary files a crash left
//! behind are removed when the directory is opened.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use awc::http::header::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::fingerprint::Fingerprint;

/// The first bytes of every entry.
const MAGIC: &[u8; 4] = b"SPHC";

/// The format's version, after the magic.
const VERSION: u8 = 1;

/// Bytes before the payload.
const HEADER: usize = 20;

/// A stored answer.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// Its status.
    pub status: u16,
    /// The URL it came from.
    pub url: Url,
    /// Its headers, as received (or as a `304` updated them).
    pub headers: HeaderMap,
    /// Its (decoded) body.
    pub body: Bytes,
    /// When its request was sent (for the age, RFC 9111 §4.2.3).
    pub requested: SystemTime,
    /// When it was received: the time stored.
    pub received: SystemTime,
}

/// An entry's meta as written: the entry but its body.
#[derive(Serialize, Deserialize)]
struct Meta {
    /// [`Entry::status`].
    status: u16,
    /// [`Entry::url`].
    url: String,
    /// [`Entry::headers`], in order, values as text or, when not text,
    /// as bytes.
    headers: Vec<(String, HeaderText)>,
    /// [`Entry::requested`], in milliseconds since the Unix epoch.
    requested_ms: u64,
    /// [`Entry::received`], in milliseconds since the Unix epoch.
    received_ms: u64,
}

/// A header value: text when it is, bytes otherwise, so that any value
/// comes back as it was.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum HeaderText {
    /// Visible ASCII.
    Text(String),
    /// Anything else.
    Bytes(Vec<u8>),
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn from_millis(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// `entry` as the bytes of its file.
pub(crate) fn encode(entry: &Entry) -> Vec<u8> {
    let headers = entry
        .headers
        .iter()
        .map(|(name, value)| {
            let text = match value.to_str() {
                Ok(t) => HeaderText::Text(t.to_string()),
                Err(_) => HeaderText::Bytes(value.as_bytes().to_vec()),
            };
            (name.as_str().to_string(), text)
        })
        .collect();
    let meta = Meta {
        status: entry.status,
        url: entry.url.to_string(),
        headers,
        requested_ms: millis(entry.requested),
        received_ms: millis(entry.received),
    };
    let meta = serde_json::to_vec(&meta).expect("the meta serialises");
    let mut payload = Vec::with_capacity(4 + meta.len() + entry.body.len());
    payload.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    payload.extend_from_slice(&meta);
    payload.extend_from_slice(&entry.body);
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[VERSION, 0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// The entry in `data`, or why `data` is not a whole, undamaged entry.
pub(crate) fn decode(data: &[u8]) -> Result<Entry, &'static str> {
    if data.len() < HEADER || &data[..4] != MAGIC {
        return Err("not an entry (no header)");
    }
    if data[4] != VERSION {
        return Err("unknown format version");
    }
    let len = u64::from_le_bytes(data[8..16].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(data[16..20].try_into().expect("4 bytes"));
    let payload = &data[HEADER..];
    if payload.len() as u64 != len {
        return Err("cut short or overlong");
    }
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch");
    }
    let meta_len = u32::from_le_bytes(payload[..4].try_into().map_err(|_| "no meta")?) as usize;
    let meta = payload.get(4..4 + meta_len).ok_or("meta cut short")?;
    let meta: Meta = serde_json::from_slice(meta).map_err(|_| "unreadable meta")?;
    let mut headers = HeaderMap::new();
    for (name, value) in meta.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| "bad header name")?;
        let value = match value {
            HeaderText::Text(t) => HeaderValue::from_str(&t),
            HeaderText::Bytes(b) => HeaderValue::from_bytes(&b),
        };
        headers.append(name, value.map_err(|_| "bad header value")?);
    }
    Ok(Entry {
        status: meta.status,
        url: Url::parse(&meta.url).map_err(|_| "bad URL")?,
        headers,
        body: Bytes::copy_from_slice(&payload[4 + meta_len..]),
        requested: from_millis(meta.requested_ms),
        received: from_millis(meta.received_ms),
    })
}

/// What [`Store::load`] found.
#[derive(Debug)]
pub(crate) enum Loaded {
    /// No entry.
    Missing,
    /// A whole entry.
    Found(Box<Entry>),
    /// A damaged entry, now removed: its file and what is wrong with it.
    Corrupt(PathBuf, &'static str),
}

/// What a [`Store::save`] evicted to stay within the bound.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Evicted {
    /// Entries removed.
    pub entries: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Which entries exist, their sizes and their age order: the eviction's
/// bookkeeping, rebuilt from the directory when it is opened.
#[derive(Default)]
struct Index {
    /// Entry → (its order key, its size).
    entries: HashMap<Fingerprint, (u64, u64)>,
    /// Order key → entry, oldest first.
    by_age: BTreeMap<u64, Fingerprint>,
    /// Sum of the sizes.
    total: u64,
    /// The next order key: grows with every write, so that the oldest
    /// write has the smallest.
    next: u64,
}

impl Index {
    fn insert(&mut self, fp: Fingerprint, size: u64) {
        self.remove(fp);
        let key = self.next;
        self.next += 1;
        self.entries.insert(fp, (key, size));
        self.by_age.insert(key, fp);
        self.total += size;
    }

    fn remove(&mut self, fp: Fingerprint) -> Option<u64> {
        let (key, size) = self.entries.remove(&fp)?;
        self.by_age.remove(&key);
        self.total -= size;
        Some(size)
    }
}

/// The cache directory.
pub(crate) struct Store {
    /// Where the entries are.
    dir: PathBuf,
    /// The most bytes the entries may take together.
    max_bytes: u64,
    /// Held while an entry is renamed into place or removed, so that the
    /// index and the directory agree.
    index: Mutex<Index>,
    /// Makes temporary file names unique within this process.
    tmp_seq: AtomicU64,
}

impl Store {
    /// Opens (creating it if needed) the cache in `dir`, bounded to
    /// `max_bytes`: indexes the entries, oldest (by modification time)
    /// first, and removes temporary files a crash left behind.
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> io::Result<(Store, Evicted)> {
        fs::create_dir_all(dir)?;
        let mut found = Vec::new();
        for sub in fs::read_dir(dir)? {
            let sub = sub?;
            if !sub.file_type()?.is_dir() {
                continue;
            }
            for file in fs::read_dir(sub.path())? {
                let file = file?;
                let name = file.file_name().to_string_lossy().into_owned();
                if name.contains(".tmp-") {
                    let _ = fs::remove_file(file.path());
                    continue;
                }
                let Ok(fp) = Fingerprint::from_str_radix(&name, 16) else {
                    continue;
                };
                let meta = file.metadata()?;
                let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                found.push((modified, fp, meta.len()));
            }
        }
        found.sort();
        let mut index = Index::default();
        for (_, fp, size) in found {
            index.insert(fp, size);
        }
        let store = Store {
            dir: dir.to_path_buf(),
            max_bytes,
            index: Mutex::new(index),
            tmp_seq: AtomicU64::new(0),
        };
        let evicted = store.evict(&mut store.index.lock().expect("index lock"));
        Ok((store, evicted))
    }

    /// The file of entry `fp`.
    pub(crate) fn path_of(&self, fp: Fingerprint) -> PathBuf {
        let hex = format!("{fp:032x}");
        self.dir.join(&hex[..2]).join(hex)
    }

    /// Whether the directory holds entry `fp`, as far as this process
    /// knows (from the index: no file is read).
    pub(crate) fn contains(&self, fp: Fingerprint) -> bool {
        self.index
            .lock()
            .expect("index lock")
            .entries
            .contains_key(&fp)
    }

    /// The entry `fp`; a damaged one is removed and reported.
    pub(crate) fn load(&self, fp: Fingerprint) -> io::Result<Loaded> {
        let path = self.path_of(fp);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Loaded::Missing),
            Err(e) => return Err(e),
        };
        match decode(&data) {
            Ok(entry) => Ok(Loaded::Found(Box::new(entry))),
            Err(why) => {
                let mut index = self.index.lock().expect("index lock");
                let _ = fs::remove_file(&path);
                index.remove(fp);
                Ok(Loaded::Corrupt(path, why))
            }
        }
    }

    /// Stores `entry` as `fp`, replacing any entry there, and evicts the
    /// oldest entries while the total is over the bound. An entry larger
    /// than the bound on its own is not stored, and the entry it would
    /// have replaced is removed: `Ok(None)`.
    pub(crate) fn save(&self, fp: Fingerprint, entry: &Entry) -> io::Result<Option<Evicted>> {
        let data = encode(entry);
        if data.len() as u64 > self.max_bytes {
            self.remove(fp)?;
            return Ok(None);
        }
        let path = self.path_of(fp);
        fs::create_dir_all(path.parent().expect("an entry lies in a subdirectory"))?;
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp-{}-{n}", std::process::id()));
        if let Err(e) = fs::write(&tmp, &data) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        let mut index = self.index.lock().expect("index lock");
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        index.insert(fp, data.len() as u64);
        Ok(Some(self.evict(&mut index)))
    }

    /// Removes entry `fp`, if there is one.
    pub(crate) fn remove(&self, fp: Fingerprint) -> io::Result<()> {
        let mut index = self.index.lock().expect("index lock");
        index.remove(fp);
        match fs::remove_file(self.path_of(fp)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes the oldest entries until the total is within the bound.
    fn evict(&self, index: &mut Index) -> Evicted {
        let mut evicted = Evicted::default();
        while index.total > self.max_bytes {
            let Some((_, &fp)) = index.by_age.iter().next() else {
                break;
            };
            let _ = fs::remove_file(self.path_of(fp));
            evicted.bytes += index.remove(fp).unwrap_or(0);
            evicted.entries += 1;
        }
        evicted
    }

    /// The bound on the entries' total size.
    pub(crate) fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The bytes the entries take together.
    #[cfg(test)]
    pub(crate) fn total_bytes(&self) -> u64 {
        self.index.lock().expect("index lock").total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: &str) -> Entry {
        let mut headers = HeaderMap::new();
        headers.append(
            HeaderName::from_static("content-type"),
            HeaderValue::from_static("text/html"),
        );
        headers.append(
            HeaderName::from_static("x-raw"),
            HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        );
        Entry {
            status: 200,
            url: Url::parse("http://a.example/p?q=1").unwrap(),
            headers,
            body: Bytes::from(body.to_string()),
            requested: from_millis(1_000_000),
            received: from_millis(1_000_250),
        }
    }

    /// Its fields, comparable.
    fn parts(e: &Entry) -> impl PartialEq + std::fmt::Debug {
        let headers: Vec<(String, Vec<u8>)> = e
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect();
        let mut sorted = headers;
        sorted.sort();
        (
            e.status,
            e.url.clone(),
            sorted,
            e.body.clone(),
            e.requested,
            e.received,
        )
    }

    #[test]
    fn an_entry_reads_back_as_written_headers_as_bytes_included() {
        let e = entry("<p>hello</p>");
        assert_eq!(parts(&decode(&encode(&e)).unwrap()), parts(&e));
    }

    #[test]
    fn a_short_or_damaged_entry_is_refused() {
        let data = encode(&entry("<p>hello</p>"));
        for cut in [0, 3, HEADER - 1, HEADER, data.len() - 1] {
            assert!(decode(&data[..cut]).is_err(), "cut at {cut}");
        }
        for at in [0, 4, 9, 17, HEADER + 2, data.len() - 1] {
            let mut bad = data.clone();
            bad[at] ^= 0x55;
            assert!(decode(&bad).is_err(), "byte {at} flipped");
        }
        let mut longer = data.clone();
        longer.push(b'!');
        assert!(decode(&longer).is_err());
    }

    #[test]
    fn the_oldest_entries_go_when_the_total_is_over_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let size = encode(&entry("0123456789")).len() as u64;
        let (store, _) = Store::open(dir.path(), 3 * size).unwrap();
        for fp in 1..=3u128 {
            assert_eq!(
                store.save(fp, &entry("0123456789")).unwrap(),
                Some(Evicted::default())
            );
        }
        // Rewriting 1 makes it the newest: 2 goes first.
        store.save(1, &entry("0123456789")).unwrap();
        let evicted = store.save(4, &entry("0123456789")).unwrap().unwrap();
        assert_eq!(
            evicted,
            Evicted {
                entries: 1,
                bytes: size
            }
        );
        assert!(matches!(store.load(2).unwrap(), Loaded::Missing));
        for fp in [1, 3, 4] {
            assert!(matches!(store.load(fp).unwrap(), Loaded::Found(_)), "{fp}");
        }
        assert_eq!(store.total_bytes(), 3 * size);
        // Larger than the bound on its own: not stored, and the entry it
        // would replace is gone.
        let big = "x".repeat(4 * size as usize);
        assert_eq!(store.save(5, &entry(&big)).unwrap(), None);
        assert!(matches!(store.load(5).unwrap(), Loaded::Missing));
        assert_eq!(store.save(4, &entry(&big)).unwrap(), None);
        assert!(matches!(store.load(4).unwrap(), Loaded::Missing));
        assert_eq!(store.total_bytes(), 2 * size);
    }

    #[test]
    fn reopening_indexes_entries_and_removes_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let size = encode(&entry("abc")).len() as u64;
        {
            let (store, _) = Store::open(dir.path(), 10 * size).unwrap();
            store.save(7, &entry("abc")).unwrap();
            store.save(8, &entry("abc")).unwrap();
        }
        let leftover = dir.path().join("00").join("junk.tmp-1-0");
        fs::write(&leftover, b"half").unwrap();
        // A smaller bound on reopening evicts down to it.
        let (store, evicted) = Store::open(dir.path(), size).unwrap();
        assert_eq!(
            evicted,
            Evicted {
                entries: 1,
                bytes: size
            }
        );
        assert_eq!(store.total_bytes(), size);
        assert!(!leftover.exists());
    }

    #[test]
    fn a_damaged_file_is_reported_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), 1 << 20).unwrap();
        store.save(9, &entry("abcdef")).unwrap();
        let path = store.path_of(9);
        let data = fs::read(&path).unwrap();
        fs::write(&path, &data[..data.len() - 2]).unwrap();
        let Loaded::Corrupt(at, why) = store.load(9).unwrap() else {
            panic!("a torn entry was read");
        };
        assert_eq!((at, why), (path.clone(), "cut short or overlong"));
        assert!(!path.exists());
        assert_eq!(store.total_bytes(), 0);
        assert!(matches!(store.load(9).unwrap(), Loaded::Missing));
    }
}
