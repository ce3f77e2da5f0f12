//! The event lake on disk, MEDS 0.4 layout: `data/shard-NNNN.parquet` (events, one shard per
//! subject hash bucket, each subject's rows contiguous and sorted by time with nulls first),
//! `metadata/{codes,subject_splits,subject_map}.parquet`, `metadata/dataset.json`,
//! `quarantine/<run>.parquet`, `reports/<run>.json` and `manifest.json`.
//! Writes are atomic through [`commit::Transaction`]: new files are staged, a journal is written,
//! then files are renamed into place; a run killed before the journal leaves the old lake, one
//! killed after it is rolled forward the next time the lake is opened.

pub mod commit;
pub mod manifest;
pub mod stats;
pub mod validate;
pub mod write;

use crate::schema::{Event, fnv1a, from_batch};
use manifest::Manifest;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error(
        "{path}: not a lake (no manifest.json); create one with `ehr-risk ingest --lake {path} ...`"
    )]
    NotALake { path: PathBuf },
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LakeError + '_ {
    move |err| LakeError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// An opened lake.
pub struct Lake {
    pub root: PathBuf,
    pub manifest: Manifest,
}

/// Which shard a subject lives in.
pub fn shard_of(subject_id: i64, shards: usize) -> usize {
    (fnv1a(&subject_id.to_le_bytes()) % shards as u64) as usize
}

/// Deterministic split from the subject id: 80% train, 10% tuning, 10% held_out.
pub fn split_of(subject_id: i64) -> &'static str {
    let h = fnv1a(format!("split:{subject_id}").as_bytes()) % 100;
    match h {
        0..=79 => "train",
        80..=89 => "tuning",
        _ => "held_out",
    }
}

impl Lake {
    /// Open an existing lake (finishing or rolling back an interrupted commit first).
    pub fn open(root: &Path) -> Result<Lake, LakeError> {
        commit::recover(root)?;
        let mp = root.join("manifest.json");
        if !mp.exists() {
            return Err(LakeError::NotALake {
                path: root.to_path_buf(),
            });
        }
        let text = std::fs::read_to_string(&mp).map_err(io(&mp))?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| LakeError::Corrupt {
            path: mp.clone(),
            message: e.to_string(),
        })?;
        if manifest.lake_format_version != manifest::LAKE_FORMAT_VERSION {
            return Err(LakeError::Corrupt {
                path: mp,
                message: format!(
                    "lake format version {}, this engine reads version {}; re-ingest the exports into a new lake",
                    manifest.lake_format_version,
                    manifest::LAKE_FORMAT_VERSION
                ),
            });
        }
        Ok(Lake {
            root: root.to_path_buf(),
            manifest,
        })
    }

    /// Open, or start an empty lake in memory (nothing is written until the first commit).
    pub fn open_or_new(root: &Path, shards: usize) -> Result<Lake, LakeError> {
        commit::recover(root)?;
        if root.join("manifest.json").exists() {
            return Lake::open(root);
        }
        if root.exists() {
            let non_empty = std::fs::read_dir(root).map_err(io(root))?.next().is_some();
            if non_empty {
                return Err(LakeError::Corrupt {
                    path: root.to_path_buf(),
                    message: "folder exists, is not empty and has no manifest.json; refusing to write a lake into it".into(),
                });
            }
        }
        Ok(Lake {
            root: root.to_path_buf(),
            manifest: Manifest::new(shards),
        })
    }

    /// The identity store (PHI, owner-only): identity facts of every source record.
    pub fn persons_rel() -> &'static str {
        "identity/persons.parquet"
    }

    pub fn shard_rel(i: usize) -> String {
        format!("data/shard-{i:04}.parquet")
    }

    pub fn shard_path(&self, i: usize) -> PathBuf {
        self.root.join(Lake::shard_rel(i))
    }

    /// All events of one shard: empty if the shard was never written; an error if the
    /// manifest records events in it and the file is missing or holds another number of rows.
    pub fn read_shard(&self, i: usize) -> Result<Vec<Event>, LakeError> {
        self.read_shard_as(i, Columns::All)
    }

    /// [`Lake::read_shard`] for the analytic stages (cohort, features, the point of care),
    /// which never look at `source_record_id`: it is not decoded (one string per event saved).
    pub fn read_shard_analytic(&self, i: usize) -> Result<Vec<Event>, LakeError> {
        self.read_shard_as(i, Columns::Analytic)
    }

    fn read_shard_as(&self, i: usize, columns: Columns) -> Result<Vec<Event>, LakeError> {
        let p = self.shard_path(i);
        let recorded = self.manifest.shard_rows.get(&i).copied();
        if !p.exists() {
            return match recorded {
                Some(n) if n > 0 => Err(LakeError::Corrupt {
                    path: p,
                    message: format!(
                        "missing: the manifest records {n} events in this shard (restore it from a backup, or rebuild the lake)"
                    ),
                }),
                _ => Ok(Vec::new()),
            };
        }
        let events = read_events_as(&p, columns)?;
        if let Some(n) = recorded
            && n != events.len() as u64
        {
            return Err(LakeError::Corrupt {
                path: p,
                message: format!(
                    "holds {} events, the manifest records {n}: truncated or altered outside ehr-risk",
                    events.len()
                ),
            });
        }
        Ok(events)
    }

    /// The shards that hold events (present, or recorded in the manifest), in order.
    pub fn shard_indices(&self) -> Vec<usize> {
        (0..self.manifest.shards)
            .filter(|&i| self.shard_path(i).exists() || self.manifest.shard_rows.contains_key(&i))
            .collect()
    }

    /// Shard files, in order; an error if one the manifest records is missing.
    pub fn shard_files(&self) -> Result<Vec<PathBuf>, LakeError> {
        self.shard_indices()
            .into_iter()
            .map(|i| {
                let p = self.shard_path(i);
                match (p.exists(), self.manifest.shard_rows.get(&i)) {
                    (false, Some(&n)) if n > 0 => Err(LakeError::Corrupt {
                        path: p,
                        message: format!("missing: the manifest records {n} events in this shard"),
                    }),
                    _ => Ok(p),
                }
            })
            .filter(|r| r.as_ref().map_or(true, |p| p.exists()))
            .collect()
    }
}

/// Which columns of a shard are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Columns {
    All,
    /// All but `source_record_id` (left `None`).
    Analytic,
}

/// Read a whole parquet file of events.
pub fn read_events(p: &Path) -> Result<Vec<Event>, LakeError> {
    read_events_as(p, Columns::All)
}

fn read_events_as(p: &Path, columns: Columns) -> Result<Vec<Event>, LakeError> {
    let corrupt = |m: String| LakeError::Corrupt {
        path: p.to_path_buf(),
        message: m,
    };
    let f = std::fs::File::open(p).map_err(io(p))?;
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(f)
        .map_err(|e| corrupt(e.to_string()))?
        .with_batch_size(65536);
    if columns == Columns::Analytic {
        let fields = builder.parquet_schema().root_schema().get_fields();
        let keep: Vec<usize> = (0..fields.len())
            .filter(|&i| fields[i].name() != "source_record_id")
            .collect();
        let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), keep);
        builder = builder.with_projection(mask);
    }
    let r = builder.build().map_err(|e| corrupt(e.to_string()))?;
    let mut out = Vec::new();
    for b in r {
        let b = b.map_err(|e| corrupt(e.to_string()))?;
        out.extend(from_batch(&b).map_err(|e| corrupt(e.to_string()))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analytic_reads_leave_out_source_record_ids_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("shard.parquet");
        let events: Vec<Event> = (0..3)
            .map(|i| Event {
                subject_id: 7,
                time: Some(i),
                code: format!("C//{i}"),
                numeric_value: Some(i as f32),
                source: "fhir:Observation".into(),
                source_record_id: Some(format!("obs-{i}")),
                visit_id: Some("v".into()),
                ..Default::default()
            })
            .collect();
        write::write_events(&p, &events).unwrap();
        assert_eq!(read_events(&p).unwrap(), events);
        let analytic = read_events_as(&p, Columns::Analytic).unwrap();
        let without: Vec<Event> = events
            .iter()
            .cloned()
            .map(|mut e| {
                e.source_record_id = None;
                e
            })
            .collect();
        assert_eq!(analytic, without);
    }
}
