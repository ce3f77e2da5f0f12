//! Shared helpers: locating ../shared/data (skipping visibly when it is absent), ingesting into
//! temporary lakes, and reading a lake back for assertions.

#![allow(dead_code)]

use ehr_risk::ingest::driver::{IngestOptions, IngestReport, Silent};
use ehr_risk::ingest::{Identity, Quarantined};
use ehr_risk::lake::{Lake, read_events, write};
use ehr_risk::schema::Event;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The `ehr-risk` binary this test run built.
pub fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_ehr-risk"))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A test that cannot run here: in a user's clone it skips, saying why; in CI (`CI=true`)
/// nothing may be missing, so it fails instead of passing silently.
pub fn skip(why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and {why}: in CI a test must not skip");
    }
    eprintln!("SKIP: {why}");
}

/// A folder of ../shared/data, or None with a visible message (a user's clone has no ../shared).
pub fn shared(name: &str) -> Option<PathBuf> {
    let p = repo().join("../shared/data").join(name);
    if p.exists() {
        Some(p)
    } else {
        skip(&format!(
            "{} not found (tests on public data need ../shared/data; CI has it)",
            p.display()
        ));
        None
    }
}

pub fn demo() -> PathBuf {
    repo().join("tests/data/mini")
}

pub fn opts() -> IngestOptions {
    IngestOptions {
        shards: 4,
        ..Default::default()
    }
}

pub fn ingest(lake: &Path, paths: &[PathBuf]) -> IngestReport {
    ingest_with(lake, paths, &opts())
}

pub fn ingest_with(lake: &Path, paths: &[PathBuf], o: &IngestOptions) -> IngestReport {
    ehr_risk::ingest::run(lake, paths, o, &Silent)
        .expect("ingest runs")
        .report
}

pub struct LakeView {
    pub events: Vec<Event>,
    pub identities: Vec<Identity>,
    pub quarantine: Vec<Quarantined>,
}

impl LakeView {
    pub fn load(dir: &Path) -> LakeView {
        let lake = Lake::open(dir).expect("lake opens");
        let mut events = Vec::new();
        for p in lake.shard_files().expect("shards present") {
            events.extend(read_events(&p).expect("shard reads"));
        }
        let identities =
            write::read_subject_map(&dir.join("metadata/subject_map.parquet")).unwrap();
        let mut quarantine = Vec::new();
        if let Ok(rd) = std::fs::read_dir(dir.join("quarantine")) {
            for e in rd.flatten() {
                quarantine.extend(write::read_quarantine(&e.path()).unwrap());
            }
        }
        LakeView {
            events,
            identities,
            quarantine,
        }
    }

    /// Source identity value (e.g. a MIMIC subject_id) -> lake subject id.
    pub fn subject_of(&self, value: &str) -> Option<i64> {
        self.identities
            .iter()
            .find(|i| i.value == value)
            .map(|i| i.subject_id)
    }

    pub fn value_of(&self) -> HashMap<i64, String> {
        self.identities
            .iter()
            .map(|i| (i.subject_id, i.value.clone()))
            .collect()
    }

    pub fn subjects_with(&self, pred: impl Fn(&str) -> bool) -> std::collections::BTreeSet<i64> {
        self.events
            .iter()
            .filter(|e| pred(&e.code))
            .map(|e| e.subject_id)
            .collect()
    }

    pub fn reasons(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for q in &self.quarantine {
            *m.entry(q.reason.clone()).or_default() += 1;
        }
        m
    }
}

/// The lake passes `lake validate`.
pub fn valid(lake: &Path) {
    let v = ehr_risk::lake::validate::validate(&Lake::open(lake).unwrap()).unwrap();
    assert!(v.ok(), "{:?}", v.problems);
}

/// Every file's rows add up.
pub fn assert_balanced(r: &IngestReport) {
    for f in &r.files {
        assert!(f.tally.balanced(), "{}: {:?}", f.path, f.tally);
    }
    assert!(r.totals.balanced());
    assert_eq!(
        r.totals.events,
        r.events_written + r.duplicates,
        "events produced = written + duplicates"
    );
}

/// Hash every file of a lake (relative path -> sha256), for byte-identity checks.
pub fn lake_bytes(dir: &Path) -> std::collections::BTreeMap<String, String> {
    use sha2::{Digest, Sha256};
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, hex::encode(Sha256::digest(std::fs::read(&p).unwrap())));
            }
        }
    }
    out
}
