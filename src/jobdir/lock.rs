//! The job directory's lock: one crawl at a time per directory.
//!
//! Two crawls writing one journal interleave their records and corrupt it,
//! so a crawl takes an exclusive lock on `<dir>/lock` before it reads
//! anything there, and a second crawl on the same directory (in this
//! process or another) fails to start with [`ErrorKind::JobDirLocked`],
//! naming the directory and the holder's process id (which the holder
//! writes into the file). The lock is the operating system's (`flock` on
//! Unix, on the open file), so a crawl killed with SIGKILL leaves no stale
//! lock behind: the kernel drops it with the process. The file itself
//! stays; only the lock on it counts.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Stage};

/// The lock file's name inside the job directory.
const LOCK_NAME: &str = "lock";

/// An exclusive lock on a job directory, held until dropped.
#[derive(Debug)]
pub(crate) struct JobLock {
    /// The open lock file: the lock belongs to this open file, and closing
    /// it (on drop) releases the lock.
    file: File,
}

impl JobLock {
    /// Takes the lock on `dir` (creating the directory and the file), or
    /// fails at once with [`ErrorKind::JobDirLocked`] if a crawl holds it.
    pub(crate) fn acquire(dir: &Path) -> Result<JobLock, Error> {
        crate::journal::create_dir(dir)?;
        let path = dir.join(LOCK_NAME);
        let io_error = |e: std::io::Error| lock_error(&path, e.to_string());
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(Error::new(
                    Stage::Setup,
                    ErrorKind::JobDirLocked {
                        dir: dir.to_path_buf(),
                        holder: holder(&mut file),
                    },
                ));
            }
            Err(TryLockError::Error(e)) => return Err(io_error(e)),
        }
        // Who holds it, for the error a second crawl gets.
        file.set_len(0)
            .and_then(|()| file.write_all(format!("{}\n", std::process::id()).as_bytes()))
            .map_err(io_error)?;
        Ok(JobLock { file })
    }
}

impl Drop for JobLock {
    fn drop(&mut self) {
        // Closing the file releases the lock too; unlocking first says so
        // plainly. An error changes nothing: the close follows.
        let _ = self.file.unlock();
    }
}

/// The process id the holder wrote into the lock file, if it can be read.
fn holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// A lock file that cannot be opened or locked.
fn lock_error(path: &Path, reason: String) -> Error {
    Error::new(
        Stage::Setup,
        ErrorKind::Journal {
            path: PathBuf::from(path),
            reason,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_fails_naming_the_directory_and_holder_until_the_first_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("job");
        let first = JobLock::acquire(&dir).unwrap();
        let err = JobLock::acquire(&dir).unwrap_err();
        match err.kind() {
            ErrorKind::JobDirLocked { dir: d, holder } => {
                assert_eq!(d, &dir);
                assert_eq!(*holder, Some(std::process::id()));
            }
            other => panic!("{other:?}"),
        }
        let message = err.to_string();
        let names = format!(
            "job directory {} is in use by another crawl (process {})",
            dir.display(),
            std::process::id()
        );
        assert!(message.contains(&names), "{message}");
        drop(first);
        let again = JobLock::acquire(&dir).unwrap();
        drop(again);
    }
}
