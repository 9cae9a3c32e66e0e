//! Checks of a command's paths made before any work starts: a mistyped path fails at once with a
//! message naming the flag and the path, not after an hour-long run (nor after the GPU driver's
//! start-up messages).

use std::path::Path;

/// `path` (given as `flag`) exists.
pub fn input(path: &Path, flag: &str) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("{flag} {}: {e}", path.display())),
    }
}

/// A file can be written at `path` (given as `flag`): its folder exists and it is not a folder
/// itself. Nothing is created.
pub fn output_file(path: &Path, flag: &str) -> Result<(), String> {
    if path.is_dir() {
        return Err(format!("{flag} {}: is a folder, expected a file name", path.display()));
    }
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        return Err(format!(
            "{flag} {}: the folder {} does not exist",
            path.display(),
            folder.display()
        ));
    }
    Ok(())
}

/// The output folder `path` (given as `flag`) exists, created now if needed.
pub fn output_folder(path: &Path, flag: &str) -> Result<(), String> {
    std::fs::create_dir_all(path).map_err(|e| format!("{flag} {}: cannot create it: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_checked_without_creating_anything() {
        let dir = std::env::temp_dir().join(format!("polycnn-validate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(output_file(&dir.join("report.json"), "--json").is_ok());
        assert!(
            output_file(Path::new("report.json"), "--json").is_ok(),
            "the current folder"
        );
        let missing = dir.join("no/such/folder/report.json");
        let err = output_file(&missing, "--json").unwrap_err();
        assert!(err.contains("--json") && err.contains("does not exist"), "{err}");
        assert!(!dir.join("no").exists());
        assert!(output_file(&dir, "--json").unwrap_err().contains("is a folder"));
        assert!(input(&missing, "--weights").unwrap_err().contains("--weights"));
        output_folder(&dir.join("a/b"), "--out").unwrap();
        assert!(dir.join("a/b").is_dir());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
