//! Atomic multi-file commits. In: files written into `<lake>/.staging/` under their final
//! relative paths. Out: all of them in place, or none. Protocol: write and fsync every staged
//! file, then write `.staging/JOURNAL.json` (the commit point), then rename each file into the
//! lake (`manifest.json` last), then remove the staging folder. [`recover`] runs on every open:
//! with a journal it rolls the commit forward; without one it discards the staging folder.

use super::{LakeError, io};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

const STAGING: &str = ".staging";
const JOURNAL: &str = "JOURNAL.json";

/// A commit in progress.
pub struct Transaction {
    root: PathBuf,
    staging: PathBuf,
    files: Vec<String>,
}

impl Transaction {
    pub fn begin(root: &Path) -> Result<Transaction, LakeError> {
        recover(root)?;
        let staging = root.join(STAGING);
        std::fs::create_dir_all(&staging).map_err(io(&staging))?;
        Ok(Transaction {
            root: root.to_path_buf(),
            staging,
            files: Vec::new(),
        })
    }

    /// Path to write a staged file at (parents created); `rel` is its final path in the lake.
    pub fn path(&mut self, rel: &str) -> Result<PathBuf, LakeError> {
        let p = self.staging.join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).map_err(io(d))?;
        }
        if !self.files.iter().any(|f| f == rel) {
            self.files.push(rel.to_string());
        }
        Ok(p)
    }

    /// A scratch folder inside staging that is never renamed into the lake.
    pub fn scratch(&self) -> Result<PathBuf, LakeError> {
        let p = self.staging.join("scratch");
        std::fs::create_dir_all(&p).map_err(io(&p))?;
        Ok(p)
    }

    /// Stage a small file from bytes.
    pub fn put(&mut self, rel: &str, bytes: &[u8]) -> Result<(), LakeError> {
        let p = self.path(rel)?;
        let mut f = File::create(&p).map_err(io(&p))?;
        f.write_all(bytes).map_err(io(&p))?;
        Ok(())
    }

    /// Make the staged files the lake. `manifest.json` is moved last.
    pub fn commit(mut self) -> Result<(), LakeError> {
        for rel in &self.files {
            let p = self.staging.join(rel);
            File::open(&p).and_then(|f| f.sync_all()).map_err(io(&p))?;
        }
        self.files.sort_by_key(|f| f == "manifest.json");
        let jp = self.staging.join(JOURNAL);
        let tmp = self.staging.join("JOURNAL.tmp");
        {
            let mut f = File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(
                serde_json::to_string(&self.files)
                    .expect("strings serialise")
                    .as_bytes(),
            )
            .map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &jp).map_err(io(&jp))?;
        sync_dir(&self.staging);
        roll_forward(&self.root)
    }
}

fn sync_dir(d: &Path) {
    if let Ok(f) = File::open(d) {
        let _ = f.sync_all();
    }
}

fn roll_forward(root: &Path) -> Result<(), LakeError> {
    let staging = root.join(STAGING);
    let jp = staging.join(JOURNAL);
    let text = std::fs::read_to_string(&jp).map_err(io(&jp))?;
    let files: Vec<String> = serde_json::from_str(&text).map_err(|e| LakeError::Corrupt {
        path: jp.clone(),
        message: format!("unreadable journal: {e}"),
    })?;
    for rel in &files {
        let from = staging.join(rel);
        let to = root.join(rel);
        if from.exists() {
            if let Some(d) = to.parent() {
                std::fs::create_dir_all(d).map_err(io(d))?;
                if rel.starts_with("identity/") {
                    // The identity store's folder is its owner's alone.
                    super::write::owner_only(d)?;
                }
            }
            std::fs::rename(&from, &to).map_err(io(&to))?;
        }
    }
    sync_dir(root);
    std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    Ok(())
}

/// Finish (journal present) or discard (no journal) an interrupted commit.
pub fn recover(root: &Path) -> Result<(), LakeError> {
    let staging = root.join(STAGING);
    if !staging.exists() {
        return Ok(());
    }
    if staging.join(JOURNAL).exists() {
        tracing::warn!("finishing an interrupted commit");
        roll_forward(root)
    } else {
        tracing::warn!("discarding the staging area of an interrupted run");
        std::fs::remove_dir_all(&staging).map_err(io(&staging))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncommitted_staging_is_discarded_and_journal_rolls_forward() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::write(root.join("manifest.json"), "old").unwrap();
        // Killed before the journal: nothing changes.
        let mut t = Transaction::begin(root).unwrap();
        t.put("manifest.json", b"new").unwrap();
        t.put("data/a.parquet", b"x").unwrap();
        drop(t);
        recover(root).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("manifest.json")).unwrap(),
            "old"
        );
        assert!(!root.join("data/a.parquet").exists());
        // Killed after the journal, midway through renames: the next open finishes it.
        let mut t = Transaction::begin(root).unwrap();
        t.put("data/a.parquet", b"x").unwrap();
        t.put("manifest.json", b"new").unwrap();
        std::fs::write(
            root.join(".staging/JOURNAL.json"),
            r#"["data/a.parquet","manifest.json"]"#,
        )
        .unwrap();
        std::fs::rename(
            root.join(".staging/data/a.parquet"),
            root.join("a-moved-early"),
        )
        .unwrap();
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::rename(root.join("a-moved-early"), root.join("data/a.parquet")).unwrap();
        drop(t);
        recover(root).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("manifest.json")).unwrap(),
            "new"
        );
        assert!(root.join("data/a.parquet").exists());
        assert!(!root.join(".staging").exists());
    }
}
