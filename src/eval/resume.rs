//! Long runs survive interruption: after every completed batch, `eval`/`sweep` can write their
//! state (what has been counted so far and where it stopped) next to the report, and a rerun
//! with the same request continues from there and ends with the report an uninterrupted run
//! gives (timing aside).
//!
//! The state file is JSON, written atomically (a uniquely named temporary file in the same
//! folder, then a rename), so a kill at any moment leaves either the previous state or the new
//! one, never a torn file. It carries a key of everything that decides the result (request,
//! bounds, batch size): a state of another run is never continued, and says why.

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Bumped when the state layout changes (an older state is then refused, not misread).
pub const STATE_VERSION: u32 = 2;

/// Writes `bytes` to `path` atomically: a temporary file next to it (unique per process and
/// call, created exclusively so it never replaces anything), flushed to disk, then renamed over
/// `path`. On any error the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{}: not a file name", path.display()),
        )
    })?;
    let temp = dir.join(format!(
        ".{}.{}.{}.partial",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// The state of a run after `batches_done` batches: `progress` is whatever the evaluation
/// needs to continue (its counts so far).
#[derive(Debug, Serialize, Deserialize)]
pub struct ResumeState<T> {
    pub version: u32,
    /// Everything that decides the result; a state is only continued by the same run.
    pub run_key: String,
    pub batches_done: usize,
    /// Seconds spent before the interruption (added to the resumed run's time).
    pub seconds: f64,
    pub progress: T,
}

/// Where the state of a run that writes `--json REPORT` is kept: `REPORT.resume.json`.
pub fn state_path_for(report: &Path) -> PathBuf {
    let mut name = report.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".resume.json");
    report.with_file_name(name)
}

/// The state file of a run, and the key it must match.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub run_key: String,
}

impl Checkpoint {
    /// The state left by an interrupted run with this key, if any. A state of another run, of
    /// another version, or unreadable is an error naming the file (delete it to start over),
    /// never silently reused or overwritten.
    pub fn load<T: DeserializeOwned>(&self) -> Result<Option<ResumeState<T>>, String> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: cannot read the resume state: {e}", self.path.display())),
        };
        let what = self.path.display();
        let header: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{what}: not a polycnn resume state ({e}); delete it to start over"))?;
        if header.get("version").and_then(|v| v.as_u64()) != Some(u64::from(STATE_VERSION)) {
            return Err(format!(
                "{what}: resume state of another polycnn version (expected version {STATE_VERSION}); delete it to start over"
            ));
        }
        if header.get("run_key").and_then(|v| v.as_str()) != Some(self.run_key.as_str()) {
            return Err(format!(
                "{what}: the resume state belongs to a different run (model, weights, data, α, bounds or \
                 batch size differ); delete it to start over, or rerun with the same arguments"
            ));
        }
        let state = serde_json::from_value(header)
            .map_err(|e| format!("{what}: damaged resume state ({e}); delete it to start over"))?;
        Ok(Some(state))
    }

    /// Saves the state after a completed batch (atomically).
    pub fn save<T: Serialize>(&self, batches_done: usize, seconds: f64, progress: &T) -> Result<(), String> {
        let state = ResumeState {
            version: STATE_VERSION,
            run_key: self.run_key.clone(),
            batches_done,
            seconds,
            progress,
        };
        let json = serde_json::to_vec(&state).map_err(|e| format!("resume state: {e}"))?;
        write_atomic(&self.path, &json)
            .map_err(|e| format!("{}: cannot write the resume state: {e}", self.path.display()))
    }

    /// The run finished: its state is no longer needed.
    pub fn finish(&self) -> Result<(), String> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(format!("{}: cannot remove the resume state: {e}", self.path.display()))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("polycnn-resume-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn atomic_write_replaces_whole_files_and_leaves_no_temporaries() {
        let dir = scratch("atomic");
        let path = dir.join("state.json");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second, longer").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second, longer");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
        // a missing folder fails and creates nothing
        assert!(write_atomic(&dir.join("missing/state.json"), b"x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn state_round_trip_and_refusals() {
        let dir = scratch("state");
        let report = dir.join("r20.json");
        let path = state_path_for(&report);
        assert_eq!(path, dir.join("r20.json.resume.json"));
        let mine = Checkpoint {
            path: path.clone(),
            run_key: "resnet20 α=8..14".into(),
        };
        assert!(mine.load::<Vec<u64>>().unwrap().is_none());
        mine.save(3, 1.5, &vec![7u64, 9]).unwrap();
        let state = mine.load::<Vec<u64>>().unwrap().unwrap();
        assert_eq!(
            (state.batches_done, state.seconds, state.progress),
            (3, 1.5, vec![7, 9])
        );
        let other = Checkpoint {
            path: path.clone(),
            run_key: "resnet20 α=14".into(),
        };
        let err = other.load::<Vec<u64>>().unwrap_err();
        assert!(
            err.contains("different run") && err.contains("r20.json.resume.json"),
            "{err}"
        );
        std::fs::write(&path, b"{\"version\": 0}").unwrap();
        assert!(mine.load::<Vec<u64>>().unwrap_err().contains("another polycnn version"));
        std::fs::write(&path, b"garbage").unwrap();
        assert!(
            mine.load::<Vec<u64>>()
                .unwrap_err()
                .contains("not a polycnn resume state")
        );
        mine.finish().unwrap();
        assert!(!path.exists());
        mine.finish().unwrap(); // already gone: fine
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
