//! The ingest run: plan inputs, skip files already in the manifest (by content hash), read
//! people first, route events to subject shards with a bounded in-memory buffer (spilled to
//! Arrow IPC files in the staging area when full), then per shard merge with the existing
//! shard, sort, remove exact duplicates (keeping what was already in the lake), and commit
//! shards, metadata, quarantine, report and manifest in one atomic transaction.

use super::detect::{InputSet, plan};
use super::io::content_hash;
use super::lookups::SetLookups;
use super::read::read_file;
use super::time::TimeContext;
use super::{Chunk, Format, Identity, IngestError, InputPolicy, Quarantined, Tally};
use crate::lake::commit::Transaction;
use crate::lake::manifest::{InputRecord, RunRecord};
use crate::lake::{Lake, shard_of, split_of, write};
use crate::schema::identity::SubjectRow;
use crate::schema::{Event, event_schema, from_batch, to_batch};
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Progress callbacks; the CLI implements them with progress bars, the library stays silent.
pub trait Reporter: Sync {
    fn file_started(&self, _path: &Path, _bytes: u64) {}
    fn progress(&self, _bytes: u64) {}
    fn file_done(&self) {}
    fn stage(&self, _what: &str) {}
}

/// A reporter that says nothing.
pub struct Silent;
impl Reporter for Silent {}

/// Ingest settings, validated before the run.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub format: Option<Format>,
    pub time: TimeContext,
    /// Later events are quarantined as `future_event` (not for date-shifted MIMIC).
    pub max_event_time: i64,
    pub min_event_time: i64,
    /// Subject shards for a new lake (an existing lake keeps its own number).
    pub shards: usize,
    /// Events held in memory before the router spills to disk.
    pub buffer_events: usize,
    /// Bytes per block of NDJSON lines parsed in parallel.
    pub block_bytes: usize,
    /// The policy every input of this run is read under (recorded per input in the manifest).
    pub policy: InputPolicy,
    /// Identity resolution: every run with new identity records links them with those already
    /// in the lake (`None`: identities are joined only by identifier).
    pub link: Option<crate::link::spec::LinkSpec>,
    /// Link again even without new inputs (after clerical decisions or a new spec).
    pub relink: bool,
}

impl Default for IngestOptions {
    fn default() -> Self {
        let now = chrono::Utc::now().timestamp_micros();
        IngestOptions {
            format: None,
            time: TimeContext::default(),
            max_event_time: now + 86_400_000_000,
            min_event_time: -3_786_825_600_000_000, // 1850-01-01
            shards: 32,
            buffer_events: 250_000,
            block_bytes: 8 << 20,
            policy: InputPolicy::default(),
            link: Some(crate::link::spec::LinkSpec::default_spec()),
            relink: false,
        }
    }
}

impl IngestOptions {
    /// Hash of the settings that change what ends up in the lake.
    pub fn config_hash(&self) -> String {
        let s = format!(
            "tz={};min={};shards={};policy={:?};units={};vocab={};link={:?}",
            self.time.zone,
            self.min_event_time,
            self.shards,
            self.policy,
            crate::schema::fnv1a(include_bytes!("../../schemas/measurements.toml")),
            crate::schema::fnv1a(include_bytes!("../../schemas/vocabularies.toml")),
            self.link.as_ref().map(|l| l.hash),
        );
        hex::encode(&Sha256::digest(s.as_bytes())[..8])
    }
}

/// What happened to one input file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileReport {
    pub path: String,
    /// The input (export folder, or the file itself for FHIR) this file belongs to.
    #[serde(default)]
    pub input: String,
    pub format: String,
    pub table: String,
    /// `read` or `already_ingested`.
    pub status: String,
    pub tally: Tally,
    pub duplicates: u64,
}

/// The run's report, also written to `reports/<run_id>.json` in the lake.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IngestReport {
    pub run_id: String,
    pub files: Vec<FileReport>,
    pub ignored: Vec<(String, String)>,
    pub totals: Tally,
    pub duplicates: u64,
    pub events_written: u64,
    pub quarantined: u64,
    pub reject_rate: f64,
    pub subjects_added: u64,
    /// Events already in the lake that moved to another person because linkage joined (or a
    /// clerical decision split) their records.
    #[serde(default)]
    pub events_moved: u64,
    /// Identity resolution of this run (counts only), when it ran.
    #[serde(default)]
    pub linkage: Option<crate::link::store::LinkReport>,
    pub committed: bool,
}

pub struct IngestOutcome {
    pub report: IngestReport,
}

/// A spill file and the indices of one shard's record batches in it.
/// A spill file, the indexes of one shard's record batches in it, and their events.
type SpillRef = (PathBuf, Vec<usize>, usize);

/// Routes events to shard buffers, spilling to Arrow IPC files when the buffer is full.
struct Router {
    shards: usize,
    buf: Vec<Vec<Event>>,
    buffered: usize,
    limit: usize,
    /// Per shard: where its spilled events are.
    spills: Vec<Vec<SpillRef>>,
    scratch: PathBuf,
    nspill: usize,
}

impl Router {
    fn new(shards: usize, limit: usize, scratch: PathBuf) -> Router {
        Router {
            shards,
            buf: vec![Vec::new(); shards],
            buffered: 0,
            limit,
            spills: vec![Vec::new(); shards],
            scratch,
            nspill: 0,
        }
    }

    fn push(&mut self, events: Vec<Event>) -> Result<(), IngestError> {
        self.buffered += events.len();
        for e in events {
            let s = shard_of(e.subject_id, self.shards);
            self.buf[s].push(e);
        }
        if self.buffered > self.limit {
            self.spill()?;
        }
        Ok(())
    }

    /// Write every buffered shard into one Arrow IPC file (one or more record batches per
    /// shard) and remember, per shard, which batches of which file are its own: a spill is one
    /// file whatever the number of shards.
    fn spill(&mut self) -> Result<(), IngestError> {
        let p = self.scratch.join(format!("spill-{:05}.arrow", self.nspill));
        let perr = |e: &dyn std::fmt::Display| IngestError::Parquet {
            path: p.clone(),
            err: e.to_string(),
        };
        let batches: Vec<(usize, Vec<arrow::array::RecordBatch>)> = self
            .buf
            .par_iter_mut()
            .enumerate()
            .filter(|(_, b)| !b.is_empty())
            .map(|(i, b)| {
                let out = b.chunks(64 * 1024).map(to_batch).collect();
                b.clear();
                b.shrink_to_fit();
                (i, out)
            })
            .collect();
        let f = std::fs::File::create(&p).map_err(|err| IngestError::Io {
            path: p.clone(),
            err,
        })?;
        // LZ4-compressed: the spills of a large export are many bytes per event.
        let options = arrow::ipc::writer::IpcWriteOptions::default()
            .try_with_compression(Some(arrow::ipc::CompressionType::LZ4_FRAME))
            .map_err(|e| perr(&e))?;
        let mut w = arrow::ipc::writer::FileWriter::try_new_with_options(
            std::io::BufWriter::new(f),
            &event_schema(),
            options,
        )
        .map_err(|e| perr(&e))?;
        let mut index = 0;
        for (i, bs) in batches {
            let mut mine = Vec::with_capacity(bs.len());
            let mut rows = 0;
            for b in bs {
                w.write(&b).map_err(|e| perr(&e))?;
                rows += b.num_rows();
                mine.push(index);
                index += 1;
            }
            self.spills[i].push((p.clone(), mine, rows));
        }
        w.finish().map_err(|e| perr(&e))?;
        self.nspill += 1;
        self.buffered = 0;
        Ok(())
    }

    /// Give every routed event to its person (`person` maps a source record's id to its
    /// person's where they differ), re-routing to the person's shard: one pass over the
    /// buffers and spills, a shard at a time.
    fn assign_persons(&mut self, person: &FxHashMap<i64, i64>) -> Result<(), IngestError> {
        let bufs = std::mem::replace(&mut self.buf, vec![Vec::new(); self.shards]);
        let spills = std::mem::replace(&mut self.spills, vec![Vec::new(); self.shards]);
        self.buffered = 0;
        for (buf, sp) in bufs.into_iter().zip(spills) {
            let mut events = buf;
            events.reserve(spill_rows(&sp));
            read_spills(&sp, &mut events)?;
            for e in events.iter_mut() {
                if let Some(&p) = person.get(&e.record_subject()) {
                    e.assign_person(p);
                }
            }
            self.push(events)?;
        }
        Ok(())
    }

    /// Hand over every touched shard's buffered events and spill files.
    fn drain_touched(&mut self, also: &BTreeSet<usize>) -> Vec<(usize, Vec<Event>, Vec<SpillRef>)> {
        let touched: Vec<usize> = (0..self.shards)
            .filter(|&i| !self.buf[i].is_empty() || !self.spills[i].is_empty() || also.contains(&i))
            .collect();
        touched
            .into_iter()
            .map(|i| {
                (
                    i,
                    std::mem::take(&mut self.buf[i]),
                    std::mem::take(&mut self.spills[i]),
                )
            })
            .collect()
    }
}

/// What merging one shard produced.
struct ShardOutcome {
    shard: usize,
    removed: HashMap<u64, u64>,
    written: u64,
    /// Events in the shard file as written.
    total: u64,
    codes: Vec<String>,
}

/// Read back a shard's record batches from the spill files (removed with the staging area).
/// Events in `spills` (the router counts them as it writes).
fn spill_rows(spills: &[SpillRef]) -> usize {
    spills.iter().map(|s| s.2).sum()
}

fn read_spills(spills: &[SpillRef], out: &mut Vec<Event>) -> Result<(), IngestError> {
    for (p, idx, _) in spills {
        let perr = |e: &dyn std::fmt::Display| IngestError::Parquet {
            path: p.clone(),
            err: e.to_string(),
        };
        let f = std::fs::File::open(p).map_err(|err| IngestError::Io {
            path: p.clone(),
            err,
        })?;
        let mut r = arrow::ipc::reader::FileReader::try_new(std::io::BufReader::new(f), None)
            .map_err(|e| perr(&e))?;
        for &k in idx {
            r.set_index(k).map_err(|e| perr(&e))?;
            let b = r
                .next()
                .ok_or_else(|| perr(&format!("batch {k} missing")))?
                .map_err(|e| perr(&e))?;
            out.extend(from_batch(&b).map_err(|e| perr(&e))?);
        }
    }
    Ok(())
}

/// Accumulates everything a run produces besides events.
#[derive(Default)]
struct Collected {
    quarantine: Vec<Quarantined>,
    identities: Vec<Identity>,
    persons: Vec<crate::schema::identity::PersonRecord>,
    descriptions: BTreeMap<String, String>,
}

impl Collected {
    fn absorb(&mut self, c: &mut Chunk, known: &mut super::SubjectSet) {
        self.quarantine.append(&mut c.quarantine);
        for id in c.identities.drain(..) {
            known.insert(id.subject_id);
            self.identities.push(id);
        }
        self.persons.append(&mut c.persons);
        for (code, d) in c.descriptions.drain() {
            match self.descriptions.get(&code) {
                Some(old) if *old <= d => {}
                _ => {
                    self.descriptions.insert(code, d);
                }
            }
        }
    }
}

fn link_err(e: crate::link::LinkError) -> IngestError {
    IngestError::Link(e.to_string())
}

/// The file id used in provenance: the first 48 bits of the content hash.
fn file_id(hash: &str) -> u64 {
    u64::from_str_radix(&hash[..12], 16).expect("content hashes are hex")
}

/// Run one ingest into `lake_dir`.
pub fn run(
    lake_dir: &Path,
    paths: &[PathBuf],
    opts: &IngestOptions,
    reporter: &dyn Reporter,
) -> Result<IngestOutcome, IngestError> {
    let mut lake = Lake::open_or_new(lake_dir, opts.shards)?;
    let is_new_lake = lake.manifest.inputs.is_empty() && !lake_dir.join("manifest.json").exists();
    let shards = lake.manifest.shards;
    let plan = plan(paths, opts.format)?;

    // Hash inputs; decide what is new.
    reporter.stage("hashing inputs");
    let mut hashed: Vec<(InputSet, Vec<(String, u64)>)> = Vec::new();
    for set in plan.sets {
        let hashes = set
            .files
            .par_iter()
            .map(|f| content_hash(&f.path))
            .collect::<Result<Vec<_>, _>>()?;
        hashed.push((set, hashes));
    }
    let mut new_hashes: Vec<String> = hashed
        .iter()
        .flat_map(|(_, h)| h.iter().map(|x| x.0.clone()))
        .filter(|h| !lake.manifest.has_hash(h))
        .collect();
    new_hashes.sort();
    new_hashes.dedup();
    let run_id = {
        let mut h = Sha256::new();
        h.update(opts.config_hash().as_bytes());
        for x in &new_hashes {
            h.update(x.as_bytes());
        }
        h.update(lake.manifest.runs.len().to_le_bytes());
        hex::encode(&h.finalize()[..8])
    };

    reporter.stage("reading");
    let existing_rows = write::read_subject_rows(&lake.root.join("metadata/subject_map.parquet"))?;
    // Readers check references against source records, not persons.
    let mut known: super::SubjectSet = existing_rows
        .iter()
        .map(|r| r.identity.subject_id)
        .collect();
    let known_before = known.len();

    let mut txn = Transaction::begin(lake_dir)?;
    let mut router = Router::new(shards, opts.buffer_events, txn.scratch()?);
    let mut collected = Collected::default();
    let mut file_reports: Vec<FileReport> = Vec::new();
    let mut records: Vec<InputRecord> = Vec::new();
    let mut seen_this_run: HashSet<String> = HashSet::new();
    let mut ancestors: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();

    for (set, hashes) in &hashed {
        let lookups = SetLookups::load(set, opts)?;
        for (code, a) in lookups.ancestors() {
            ancestors.entry(code).or_default().extend(a);
        }
        for (f, (sha, bytes)) in set.files.iter().zip(hashes) {
            let label = f.path.display().to_string();
            let input = if set.format == Format::Fhir {
                label.clone()
            } else {
                set.root.display().to_string()
            };
            if lake.manifest.has_hash(sha) || !seen_this_run.insert(sha.clone()) {
                file_reports.push(FileReport {
                    path: label,
                    input,
                    format: f.format.to_string(),
                    table: f.table.clone(),
                    status: "already_ingested".into(),
                    tally: Tally::default(),
                    duplicates: 0,
                });
                continue;
            }
            let fid = file_id(sha);
            let fid_hex = format!("{fid:012x}");
            reporter.file_started(&f.path, *bytes);
            let mut tally = Tally::default();
            {
                let snapshot = known.clone();
                // Readers parse on the pool; this thread's sibling routes their chunks to shard
                // buffers (and spills) at the same time, so neither waits for the other.
                std::thread::scope(|scope| -> Result<(), IngestError> {
                    let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(4);
                    let (collected, known, tally, router) =
                        (&mut collected, &mut known, &mut tally, &mut router);
                    let routing = scope.spawn(move || -> Result<(), IngestError> {
                        for mut c in rx {
                            collected.absorb(&mut c, known);
                            tally.add(&c.tally);
                            router.push(std::mem::take(&mut c.events))?;
                        }
                        Ok(())
                    });
                    let mut sink = |c: Chunk| -> Result<(), IngestError> {
                        // A send fails only when the routing thread stopped on an error,
                        // which its join below reports.
                        let _ = tx.send(c);
                        Ok(())
                    };
                    let read = read_file(
                        f,
                        set,
                        &lookups,
                        opts,
                        &opts.policy,
                        &snapshot,
                        fid,
                        &label,
                        reporter,
                        &mut sink,
                    );
                    drop(tx);
                    let routed = routing.join().expect("routing thread does not panic");
                    read.and(routed)
                })?;
            }
            reporter.file_done();
            tally.check(&f.path)?;
            file_reports.push(FileReport {
                path: label.clone(),
                input,
                format: f.format.to_string(),
                table: f.table.clone(),
                status: "read".into(),
                tally: tally.clone(),
                duplicates: 0,
            });
            records.push(InputRecord {
                path: label,
                blake3: sha.clone(),
                bytes: *bytes,
                format: f.format.to_string(),
                table: f.table.clone(),
                file_id: fid_hex,
                run_id: run_id.clone(),
                tally,
                duplicates: 0,
                policy: opts.policy.clone(),
            });
        }
    }

    // Identity resolution: link this run's identity records with the store's, give each
    // source record its person, and move events whose records changed person.
    let mut persons = write::read_persons(&lake.root.join(Lake::persons_rel()))?;
    let new_persons = !collected.persons.is_empty();
    persons.append(&mut collected.persons);
    persons.sort();
    persons.dedup();
    let previous: HashMap<(String, String), i64> = existing_rows
        .iter()
        .map(|r| {
            (
                (r.identity.system.clone(), r.identity.value.clone()),
                r.person,
            )
        })
        .collect();
    let resolution = match &opts.link {
        Some(spec) if !persons.is_empty() && (new_persons || opts.relink) => {
            reporter.stage("linking identities");
            let clerical = crate::link::store::read_decisions(lake_dir).map_err(link_err)?;
            let r = crate::link::resolve(spec, &persons, &clerical, &previous);
            let report = crate::link::store::LinkReport::new(spec, &persons, &r, clerical.len());
            Some((r, report))
        }
        _ => None,
    };
    // Every identity's person: as linked, else as before, else its own record.
    let mut rows: BTreeMap<(String, String), SubjectRow> = BTreeMap::new();
    for r in existing_rows {
        rows.insert((r.identity.system.clone(), r.identity.value.clone()), r);
    }
    for id in collected.identities.drain(..) {
        rows.entry((id.system.clone(), id.value.clone()))
            .or_insert(SubjectRow {
                person: id.subject_id,
                identity: id,
                rule: None,
                probability: None,
            });
    }
    if let Some((r, _)) = &resolution {
        for (i, rec) in persons.iter().enumerate() {
            if let Some(row) =
                rows.get_mut(&(rec.identity.system.clone(), rec.identity.value.clone()))
            {
                row.person = r.person[i];
                row.rule = r.evidence[i].map(|(rule, _)| rule.name().to_string());
                row.probability = r.evidence[i].map(|(_, p)| p);
            }
        }
    }
    let before: HashMap<i64, i64> = previous
        .iter()
        .filter_map(|(k, &p)| rows.get(k).map(|r| (r.identity.subject_id, p)))
        .collect();
    let person_of: FxHashMap<i64, i64> = rows
        .values()
        .filter(|r| r.person != r.identity.subject_id)
        .map(|r| (r.identity.subject_id, r.person))
        .collect();
    // Records already in the lake whose person changed: their events move.
    let changed: FxHashMap<i64, i64> = rows
        .values()
        .filter(|r| {
            before
                .get(&r.identity.subject_id)
                .is_some_and(|&p| p != r.person)
        })
        .map(|r| (r.identity.subject_id, r.person))
        .collect();
    if !person_of.is_empty() {
        router.assign_persons(&person_of)?;
    }
    let mut sources: BTreeSet<usize> = BTreeSet::new();
    for rec in changed.keys() {
        sources.insert(shard_of(before[rec], shards));
    }
    let mut events_moved = 0u64;
    for &i in &sources {
        let mut moving: Vec<Event> = lake
            .read_shard(i)?
            .into_iter()
            .filter(|e| changed.contains_key(&e.record_subject()))
            .collect();
        for e in moving.iter_mut() {
            e.assign_person(changed[&e.record_subject()]);
        }
        events_moved += moving.len() as u64;
        router.push(moving)?;
    }

    // Merge, sort, dedupe, write each touched shard.
    reporter.stage("writing shards");
    let new_ids: HashSet<u64> = records.iter().map(|r| file_id(&r.blake3)).collect();
    let mut dup_by_file: HashMap<u64, u64> = HashMap::new();
    let mut events_written = 0u64;
    let mut codes = write::read_codes(&lake.root.join("metadata/codes.parquet"))?;
    // Shards are merged in parallel (one per worker at a time: memory stays a few shards).
    let work = router.drain_touched(&sources);
    let targets = work
        .iter()
        .map(|w| txn.path(&Lake::shard_rel(w.0)))
        .collect::<Result<Vec<_>, _>>()?;
    let outcomes = work
        .into_par_iter()
        .zip(targets)
        .map(
            |((i, buffered, spills), target)| -> Result<ShardOutcome, IngestError> {
                let mut events = lake.read_shard(i)?;
                // Events that moved to another person were re-routed above.
                events.retain(|e| !changed.contains_key(&e.record_subject()));
                // One allocation for the whole shard: growing it batch by batch copied every
                // event several times (a fifth of an OMOP run's cycles, 2026-12-06).
                events.reserve(buffered.len() + spill_rows(&spills));
                events.extend(buffered);
                read_spills(&spills, &mut events)?;
                let removed = merge_dedupe(&mut events, &new_ids);
                // This run's events that made it into the lake (not duplicates).
                let written = events
                    .iter()
                    .filter(|e| new_ids.contains(&e.provenance.file))
                    .count() as u64;
                let codes: HashSet<&str> = events.iter().map(|e| e.code.as_str()).collect();
                let codes = codes.into_iter().map(String::from).collect();
                write::write_events(&target, &events)?;
                Ok(ShardOutcome {
                    shard: i,
                    removed,
                    written,
                    total: events.len() as u64,
                    codes,
                })
            },
        )
        .collect::<Vec<_>>();
    for o in outcomes {
        let o = o?;
        lake.manifest.shard_rows.insert(o.shard, o.total);
        for (fid, n) in o.removed {
            *dup_by_file.entry(fid).or_default() += n;
        }
        events_written += o.written;
        for c in o.codes {
            codes.entry(c).or_insert(None);
        }
    }
    for (code, desc) in codes.iter_mut() {
        if desc.is_none()
            && let Some(d) = collected.descriptions.get(code)
        {
            *desc = Some(d.clone());
        }
    }

    for r in records.iter_mut() {
        r.duplicates = dup_by_file.get(&file_id(&r.blake3)).copied().unwrap_or(0);
    }
    for fr in file_reports.iter_mut() {
        if let Some(r) = records
            .iter()
            .find(|r| r.path == fr.path && fr.status == "read")
        {
            fr.duplicates = r.duplicates;
        }
    }

    let mut totals = Tally::default();
    for r in &records {
        totals.add(&r.tally);
    }
    let duplicates: u64 = records.iter().map(|r| r.duplicates).sum();
    let quarantined = collected.quarantine.len() as u64;
    let reject_rate = super::verdict::reject_rate(&totals);
    let mut report = IngestReport {
        run_id: run_id.clone(),
        files: file_reports,
        ignored: plan
            .ignored
            .iter()
            .map(|(p, r)| (p.display().to_string(), r.clone()))
            .collect(),
        totals: totals.clone(),
        duplicates,
        events_written,
        quarantined,
        reject_rate,
        subjects_added: (known.len() - known_before) as u64,
        events_moved,
        linkage: resolution.as_ref().map(|(_, l)| l.clone()),
        committed: false,
    };

    if records.is_empty() && !is_new_lake && resolution.is_none() {
        // Nothing new: the lake stays byte-for-byte as it was.
        drop(txn);
        crate::lake::commit::recover(lake_dir)?;
        return Ok(IngestOutcome { report });
    }

    reporter.stage("writing metadata");
    // Subject map (every identity with its person and the evidence) and splits by person.
    let rows: Vec<SubjectRow> = rows.into_values().collect();
    let splits: BTreeMap<i64, &'static str> = rows
        .iter()
        .map(|r| (r.person, split_of(r.person)))
        .collect();
    write::write_subject_map(&txn.path("metadata/subject_map.parquet")?, &rows)?;
    write::write_splits(&txn.path("metadata/subject_splits.parquet")?, &splits)?;
    // Identity facts (the store) and, when linkage ran, its links, clusters and model.
    if new_persons {
        write::write_persons(&txn.path(Lake::persons_rel())?, &persons)?;
    }
    if let Some((r, l)) = &resolution {
        crate::link::store::stage(&mut txn, &persons, r, l).map_err(link_err)?;
    }
    // Ancestors (OMOP CONCEPT_ANCESTOR) of the codes the lake holds, with those recorded before.
    let mut parents = write::read_code_parents(&lake.root.join("metadata/codes.parquet"))?;
    for (code, a) in ancestors {
        if codes.contains_key(&code) {
            parents.entry(code).or_default().extend(a);
        }
    }
    write::write_codes(&txn.path("metadata/codes.parquet")?, &codes, &parents)?;
    let dataset = serde_json::json!({
        "dataset_name": "ehr-risk-lake",
        "dataset_version": run_id,
        "etl_name": "ehr-risk",
        "etl_version": env!("CARGO_PKG_VERSION"),
        "meds_version": "0.4.0",
        "raw_source_id_columns": ["visit_id", "provenance"],
        "code_modifier_columns": ["unit"],
        "other_extension_columns": ["end_time", "source_code", "source", "source_subject_id"],
    });
    txn.put(
        "metadata/dataset.json",
        serde_json::to_string_pretty(&dataset)
            .expect("json")
            .as_bytes(),
    )?;
    let quarantine_file = if collected.quarantine.is_empty() {
        None
    } else {
        let rel = format!("quarantine/{run_id}.parquet");
        collected
            .quarantine
            .sort_by(|a, b| (&a.file, a.row, &a.field).cmp(&(&b.file, b.row, &b.field)));
        write::write_quarantine(&txn.path(&rel)?, &collected.quarantine)?;
        Some(rel)
    };
    report.committed = true;
    txn.put(
        &format!("reports/{run_id}.json"),
        serde_json::to_string_pretty(&report)
            .expect("json")
            .as_bytes(),
    )?;
    lake.manifest.runs.push(RunRecord {
        run_id: run_id.clone(),
        engine_version: env!("CARGO_PKG_VERSION").into(),
        config_hash: opts.config_hash(),
        files_read: records.len(),
        files_already_ingested: report
            .files
            .iter()
            .filter(|f| f.status == "already_ingested")
            .count(),
        rows_read: totals.rows_read,
        rows_rejected: totals.rows_rejected,
        events_produced: totals.events,
        duplicates,
        events_written,
        quarantine_file,
    });
    lake.manifest.inputs.extend(records);
    txn.put(
        "manifest.json",
        serde_json::to_string_pretty(&lake.manifest)
            .expect("json")
            .as_bytes(),
    )?;
    reporter.stage("committing");
    txn.commit()?;
    Ok(IngestOutcome { report })
}

/// Sort into lake order and drop exact duplicates, keeping an event already in the lake over a
/// new one (it absorbs what the dropped copies knew: visit link, availability), then decide
/// every event's availability ([`crate::schema::availability::resolve`]). Returns how many new events each input file lost as duplicates.
pub fn merge_dedupe(events: &mut Vec<Event>, new_ids: &HashSet<u64>) -> HashMap<u64, u64> {
    events.par_sort_unstable_by(|a, b| a.lake_cmp(b));
    let fid = |e: &Event| e.provenance.file;
    let mut removed: HashMap<u64, u64> = HashMap::new();
    let mut out: Vec<Event> = Vec::with_capacity(events.len());
    let all = std::mem::take(events);
    let mut all = all.into_iter().peekable();
    let mut group: Vec<Event> = Vec::new();
    while let Some(e) = all.next() {
        group.push(e);
        while let Some(n) = all.peek() {
            if n.same_fact(&group[0]) {
                group.push(all.next().expect("peeked"));
            } else {
                break;
            }
        }
        let keep = group
            .iter()
            .position(|e| !new_ids.contains(&fid(e)))
            .unwrap_or(0);
        // Moved out, never cloned: almost every group is one event. The others are absorbed
        // in their sorted order (the first visit id wins).
        let mut kept = group.remove(keep);
        for e in group.drain(..) {
            crate::schema::availability::absorb(&mut kept, &e);
            *removed.entry(fid(&e)).or_default() += 1;
        }
        out.push(kept);
    }
    crate::schema::availability::resolve(&mut out);
    *events = out;
    removed
}
