//! Where a request may stream its body (`Request::stream_to`).
//!
//! A request is plain data that can come back from a job directory or a
//! shared Redis, so its `stream_to` is not trusted: whoever can write
//! there could otherwise make a worker write any file it can. The crawl's
//! builder names the directories bodies may be streamed into
//! (`CrawlerBuilder::stream_dir`), and every request is held to them, from
//! wherever it came, just before it is sent.
//!
//! A path is judged by where it really leads: it is made absolute, its
//! deepest existing ancestor is resolved (`..` and symlinks), and what is
//! left must be plain names. A file that is already a symlink is refused,
//! since creating it would write wherever the link points.
//!
//! The path is checked before the request is sent, and again when the
//! file is opened (once the answer's header is in), since the directory
//! may have changed meanwhile: the file is opened without following a
//! symlink in its last name (`O_NOFOLLOW`) and without truncating it, and
//! is only truncated and written once the opened file is found to be the
//! one the checked path leads to, inside a stream directory. Both run on
//! tokio's blocking threads, not the downloader's.

use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, ErrorKind, Stage};

/// The directories bodies may be streamed into, resolved.
#[derive(Clone, Debug, Default)]
pub(crate) struct StreamDirs(Arc<[PathBuf]>);

/// The builder's directories (`CrawlerBuilder::stream_dir`), created if
/// missing and resolved; a [`ErrorKind::Config`] error names one that
/// cannot be.
pub(crate) fn resolve(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
    dirs.iter()
        .map(|dir| {
            std::fs::create_dir_all(dir)
                .and_then(|()| dir.canonicalize())
                .map_err(|e| {
                    let msg = format!("stream directory {}: {e}", dir.display());
                    Error::new(Stage::Setup, ErrorKind::Config(msg))
                })
        })
        .collect()
}

impl StreamDirs {
    /// Over directories already [`resolve`]d.
    pub(crate) fn new(resolved: &[PathBuf]) -> Self {
        StreamDirs(resolved.into())
    }

    /// `Ok` if a body may be streamed to `path`, else the
    /// [`ErrorKind::StreamToRefused`] saying why. Blocking.
    pub(crate) fn check(&self, path: &Path) -> Result<(), ErrorKind> {
        self.inside(path).map(drop)
    }

    /// Where `path` leads, if a body may be streamed there.
    fn inside(&self, path: &Path) -> Result<PathBuf, ErrorKind> {
        let refused = |reason: String| refused(path, reason);
        if self.0.is_empty() {
            return Err(refused(
                "no stream directory is allowed (CrawlerBuilder::stream_dir)".into(),
            ));
        }
        let real = real_path(path).map_err(|e| refused(e.to_string()))?;
        if !self.0.iter().any(|dir| real.starts_with(dir)) {
            return Err(refused(format!(
                "it leads to {}, outside every stream directory",
                real.display()
            )));
        }
        match std::fs::symlink_metadata(&real) {
            Ok(meta) if meta.file_type().is_symlink() => {
                Err(refused("the file is a symlink".into()))
            }
            Ok(meta) if meta.is_dir() => Err(refused("it is a directory".into())),
            _ => Ok(real),
        }
    }

    /// Opens `path` to stream a body into, checked again: not through a
    /// symlink as its last name, and only truncated once the opened file
    /// is found to be where the checked path leads. Blocking.
    pub(crate) fn open(&self, path: &Path) -> Result<std::fs::File, ErrorKind> {
        self.inside(path)?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.custom_flags(libc::O_NOFOLLOW);
        }
        let file = options.open(path).map_err(|e| match e.raw_os_error() {
            #[cfg(unix)]
            Some(libc::ELOOP) => refused(path, "the file is a symlink".into()),
            _ => write_error(path, e),
        })?;
        // The directories on the way may have changed since the check.
        let real = self.inside(path)?;
        if !same_file(&file, &real) {
            return Err(refused(path, "it changed while it was opened".into()));
        }
        file.set_len(0).map_err(|e| write_error(path, e))?;
        Ok(file)
    }
}

/// Whether `file` is the file at `path`.
#[cfg(unix)]
fn same_file(file: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Whether `file` is the file at `path` (here: that one is a plain file).
#[cfg(not(unix))]
fn same_file(_: &std::fs::File, path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
}

fn refused(path: &Path, reason: String) -> ErrorKind {
    ErrorKind::StreamToRefused {
        path: path.to_path_buf(),
        reason,
    }
}

fn write_error(path: &Path, e: io::Error) -> ErrorKind {
    ErrorKind::BodyWrite {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Where `path` leads: its deepest existing ancestor resolved, then the
/// names below it, which must be plain (no `..` past what exists).
fn real_path(path: &Path) -> io::Result<PathBuf> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidInput, m.to_string());
    let absolute = std::path::absolute(path)?;
    let mut rest = Vec::new();
    let mut at = absolute.as_path();
    loop {
        match at.canonicalize() {
            Ok(mut real) => {
                for name in rest.iter().rev() {
                    real.push(name);
                }
                return Ok(real);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match at.components().next_back() {
                    Some(Component::Normal(name)) => rest.push(name.to_os_string()),
                    _ => return Err(bad("'..' below a directory that does not exist")),
                }
                at = at.parent().ok_or_else(|| bad("no existing ancestor"))?;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_that_lead_inside_a_stream_directory_pass() {
        let root = tempfile::tempdir().unwrap();
        let ok = root.path().join("ok");
        let other = root.path().join("other");
        std::fs::create_dir(&other).unwrap();
        let dirs = StreamDirs::new(&resolve(std::slice::from_ref(&ok)).unwrap());
        assert!(ok.is_dir(), "created");

        let pass = |p: PathBuf| dirs.check(&p).map_err(|e| e.to_string());
        assert_eq!(pass(ok.join("a.bin")), Ok(()));
        assert_eq!(pass(ok.join("new/sub/a.bin")), Ok(()), "not yet made");
        std::fs::create_dir(ok.join("x")).unwrap();
        assert_eq!(
            pass(ok.join("x/../a.bin")),
            Ok(()),
            "'..' that stays inside"
        );
        for escape in [
            ok.join("../other/a.bin"),
            ok.join("../../../../../../etc/x"),
            ok.join("new/../../other/a.bin"),
            PathBuf::from("/etc/x"),
            other.join("a.bin"),
            ok.clone(),
        ] {
            let e = dirs.check(&escape).unwrap_err();
            assert!(
                matches!(e, ErrorKind::StreamToRefused { .. }),
                "{} passed",
                escape.display()
            );
        }
        // A symlink out of the directory, as a parent or as the file
        // (made with Unix's call; Windows needs a privilege for symlinks).
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&other, ok.join("link")).unwrap();
            assert!(dirs.check(&ok.join("link/a.bin")).is_err());
            std::os::unix::fs::symlink(other.join("f"), ok.join("file-link")).unwrap();
            assert!(dirs.check(&ok.join("file-link")).is_err());
        }
        // No directory allowed: nothing passes.
        let none = StreamDirs::default();
        assert!(none.check(&ok.join("a.bin")).is_err());
    }
}
