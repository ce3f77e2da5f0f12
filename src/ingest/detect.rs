//! Input discovery: each PATH given to `ingest` is a file or a folder; this finds which format
//! it is (or takes `--format`), and lists the files to read in dependency order (people before
//! the rows that refer to them). Folders that hold a known export (MEDS, MIMIC, OMOP, Synthea)
//! are taken whole; other folders are walked and their FHIR files collected; files that are no
//! input format are listed as skipped, so the report says what was not read.

use super::IngestError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Fhir,
    Synthea,
    Omop,
    Mimic,
    /// MIMIC-III 1.4 (upper-case tables, `DOB`, ICD-9 only).
    Mimic3,
    Meds,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Format::Fhir => "fhir",
            Format::Synthea => "synthea",
            Format::Omop => "omop",
            Format::Mimic => "mimic",
            Format::Mimic3 => "mimic3",
            Format::Meds => "meds",
        };
        f.write_str(s)
    }
}

/// One file to read, and what it is.
#[derive(Debug, Clone)]
pub struct InputFile {
    pub path: PathBuf,
    pub format: Format,
    /// Table name (lower case) for tabular formats, resource type or "document" for FHIR.
    pub table: String,
    /// People tables are read before everything else.
    pub people: bool,
}

/// A set of files from one export (a folder export, or FHIR files).
#[derive(Debug, Clone)]
pub struct InputSet {
    pub root: PathBuf,
    pub format: Format,
    pub files: Vec<InputFile>,
}

/// What discovery found.
#[derive(Debug, Default)]
pub struct Plan {
    pub sets: Vec<InputSet>,
    /// Files that were found but are no input format (with the reason).
    pub ignored: Vec<(PathBuf, String)>,
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, IngestError> {
    let rd = std::fs::read_dir(dir).map_err(|err| IngestError::Io {
        path: dir.to_path_buf(),
        err,
    })?;
    let mut v: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    v.sort();
    Ok(v)
}

fn file_name_lower(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

/// `patients.csv.gz` -> `patients`
fn table_name(p: &Path) -> String {
    let n = file_name_lower(p);
    n.trim_end_matches(".gz")
        .trim_end_matches(".csv")
        .to_string()
}

pub(crate) fn find_table(dir: &Path, name: &str) -> Option<PathBuf> {
    list_dir(dir).ok()?.into_iter().find(|p| {
        let n = file_name_lower(p);
        n == format!("{name}.csv") || n == format!("{name}.csv.gz")
    })
}

fn is_fhir_file(p: &Path) -> bool {
    let n = file_name_lower(p);
    [".ndjson", ".ndjson.gz", ".json", ".json.gz", ".jsonl"]
        .iter()
        .any(|s| n.ends_with(s))
}

/// Guess the folder format from its marker files.
fn folder_format(dir: &Path) -> Option<Format> {
    if dir.join("metadata/dataset.json").exists() && dir.join("data").is_dir() {
        return Some(Format::Meds);
    }
    if let Some(p) = find_table(dir, "patients")
        && let Ok(h) = super::tabular::read_header(&p)
        && h.has("subject_id")
        && h.has("dob")
    {
        return Some(Format::Mimic3);
    }
    if find_table(&dir.join("hosp"), "patients").is_some()
        || find_table(dir, "admissions").is_some()
    {
        return Some(Format::Mimic);
    }
    if find_table(dir, "person").is_some() {
        return Some(Format::Omop);
    }
    if let Some(p) = find_table(dir, "patients")
        && let Ok(h) = super::tabular::read_header(&p)
        && h.has("id")
        && h.has("birthdate")
    {
        return Some(Format::Synthea);
    }
    None
}

/// The resource type a FHIR file name promises (`Patient.000.ndjson`, `Patient-x.json`).
fn fhir_type_from_name(p: &Path) -> String {
    let n = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let head: String = n.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    if head.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
        head
    } else {
        "document".into()
    }
}

fn tabular_set(dir: &Path, format: Format) -> Result<InputSet, IngestError> {
    let base = if format == Format::Mimic && dir.join("hosp").is_dir() {
        dir.join("hosp")
    } else {
        dir.to_path_buf()
    };
    let (order, people): (Vec<&str>, &str) = match format {
        Format::Synthea => (
            super::synthea::TABLES.iter().map(|t| t.0).collect(),
            "patients",
        ),
        Format::Mimic => (
            super::mimic::TABLES.iter().map(|t| t.0).collect(),
            "patients",
        ),
        Format::Mimic3 => (super::mimic3::TABLES.to_vec(), "patients"),
        Format::Omop => (
            ["person", "visit_occurrence", "death"]
                .into_iter()
                .chain(super::omop::EVENT_TABLES.iter().map(|t| t.name))
                .collect(),
            "person",
        ),
        _ => unreachable!(),
    };
    let mut files = Vec::new();
    for t in order {
        if let Some(p) = find_table(&base, t) {
            files.push(InputFile {
                path: p,
                format,
                table: t.to_string(),
                people: t == people,
            });
        } else if t == people {
            return Err(IngestError::Schema {
                path: dir.to_path_buf(),
                message: format!(
                    "a {format} export needs a {people} table ({people}.csv or {people}.csv.gz)"
                ),
            });
        }
    }
    Ok(InputSet {
        root: dir.to_path_buf(),
        format,
        files,
    })
}

/// Dictionaries an export's readers load as lookups (read, but not as rows).
fn lookup_tables(format: Format) -> &'static [&'static str] {
    match format {
        Format::Omop => &["concept", "concept_ancestor"],
        Format::Mimic | Format::Mimic3 => &["d_icd_diagnoses", "d_labitems"],
        _ => &[],
    }
}

/// Every file of an export folder (two levels down, e.g. MIMIC-IV's `icu/`) that no reader
/// takes, with the reason: reported, so that a table the engine does not read is a visible
/// fact of the run rather than a silent omission.
fn unread_files(set: &InputSet) -> Result<Vec<(PathBuf, String)>, IngestError> {
    let taken: std::collections::HashSet<&Path> =
        set.files.iter().map(|f| f.path.as_path()).collect();
    let lookups = lookup_tables(set.format);
    let mut out = Vec::new();
    let mut stack = vec![(set.root.clone(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        for p in list_dir(&dir)? {
            if p.is_dir() {
                if depth < 2 {
                    stack.push((p, depth + 1));
                }
                continue;
            }
            if taken.contains(p.as_path()) {
                continue;
            }
            let n = file_name_lower(&p);
            let why = if n.ends_with(".csv") || n.ends_with(".csv.gz") {
                let t = table_name(&p);
                if lookups.contains(&t.as_str()) {
                    continue;
                }
                format!("{} table {t} is not read by this engine", set.format)
            } else {
                format!("not a table of a {} export", set.format)
            };
            out.push((p, why));
        }
    }
    out.sort();
    Ok(out)
}

/// Build the plan for the given paths.
pub fn plan(paths: &[PathBuf], forced: Option<Format>) -> Result<Plan, IngestError> {
    let mut plan = Plan::default();
    let mut fhir: Vec<InputFile> = Vec::new();
    for p in paths {
        if !p.exists() {
            return Err(IngestError::Io {
                path: p.clone(),
                err: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
            });
        }
        walk(p, forced, true, &mut plan, &mut fhir)?;
    }
    if !fhir.is_empty() {
        fhir.sort_by(|a, b| b.people.cmp(&a.people).then_with(|| a.path.cmp(&b.path)));
        plan.sets.push(InputSet {
            root: PathBuf::new(),
            format: Format::Fhir,
            files: fhir,
        });
    }
    Ok(plan)
}

fn walk(
    p: &Path,
    forced: Option<Format>,
    explicit: bool,
    plan: &mut Plan,
    fhir: &mut Vec<InputFile>,
) -> Result<(), IngestError> {
    if p.is_dir() {
        let fmt = match (forced, folder_format(p)) {
            (Some(Format::Fhir) | None, found) => found,
            // `--format mimic` names the family; the header says which release.
            (Some(Format::Mimic), Some(Format::Mimic3)) => Some(Format::Mimic3),
            (Some(f), _) => Some(f),
        };
        match fmt {
            Some(Format::Meds) => {
                let files = super::meds::shards(p)
                    .into_iter()
                    .map(|path| InputFile {
                        path,
                        format: Format::Meds,
                        table: "data".into(),
                        people: false,
                    })
                    .collect();
                plan.sets.push(InputSet {
                    root: p.to_path_buf(),
                    format: Format::Meds,
                    files,
                });
            }
            Some(f @ (Format::Mimic | Format::Mimic3 | Format::Omop | Format::Synthea)) => {
                let set = tabular_set(p, f)?;
                plan.ignored.extend(unread_files(&set)?);
                plan.sets.push(set);
            }
            _ => {
                for child in list_dir(p)? {
                    walk(&child, forced, false, plan, fhir)?;
                }
            }
        }
        return Ok(());
    }
    if is_fhir_file(p) && matches!(forced, None | Some(Format::Fhir)) {
        if !explicit && !looks_like_fhir(p) {
            plan.ignored
                .push((p.to_path_buf(), "JSON without a FHIR resourceType".into()));
            return Ok(());
        }
        let table = fhir_type_from_name(p);
        fhir.push(InputFile {
            path: p.to_path_buf(),
            format: Format::Fhir,
            people: table == "Patient",
            table,
        });
        return Ok(());
    }
    if explicit {
        if let Some(parent) = p.parent()
            && let Some(f) = forced.or_else(|| folder_format(parent))
            && f != Format::Fhir
            && f != Format::Meds
        {
            let mut set = tabular_set(parent, f)?;
            let want = table_name(p);
            set.files.retain(|x| x.table == want || x.people);
            if set.files.iter().any(|x| x.table == want) {
                plan.sets.push(set);
                return Ok(());
            }
        }
        return Err(IngestError::UnknownFormat {
            path: p.to_path_buf(),
            why: "not FHIR JSON/NDJSON, and not a table of a known export folder".into(),
        });
    }
    plan.ignored
        .push((p.to_path_buf(), "not an input format".into()));
    Ok(())
}

/// Peek at the start of a JSON file for a FHIR resourceType.
fn looks_like_fhir(p: &Path) -> bool {
    use std::io::Read;
    let Ok(mut r) = super::io::open(p) else {
        return false;
    };
    let mut buf = vec![0u8; 16 * 1024];
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => break,
        }
    }
    memchr::memmem::find(&buf[..n], b"\"resourceType\"").is_some()
}
