//! Parquet writers and readers for the lake's files: event shards (the lake schema from
//! `crate::schema`), quarantine, code metadata, subject splits and the identity map. Writer
//! settings are fixed (zstd, fixed `created_by`) so the same events give the same bytes.

use super::{LakeError, io};
use crate::schema::identity::{IdField, Identity, PersonRecord, SubjectRow};
use crate::schema::records::Quarantined;
use crate::schema::{Event, event_schema, to_batch};
use arrow::array::{
    Array, ArrayRef, Int64Array, ListBuilder, RecordBatch, StringArray, StringBuilder, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

fn props() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("valid level"),
        ))
        .set_created_by(format!("ehr-risk {}", env!("CARGO_PKG_VERSION")))
        .set_max_row_group_row_count(Some(256 * 1024))
        .build()
}

fn perr(p: &Path) -> impl Fn(parquet::errors::ParquetError) -> LakeError + '_ {
    move |e| LakeError::Corrupt {
        path: p.to_path_buf(),
        message: e.to_string(),
    }
}

pub fn write_batches(
    p: &Path,
    schema: Arc<Schema>,
    batches: &[RecordBatch],
) -> Result<(), LakeError> {
    let f = std::fs::File::create(p).map_err(io(p))?;
    let mut w = ArrowWriter::try_new(f, schema, Some(props())).map_err(perr(p))?;
    for b in batches {
        w.write(b).map_err(perr(p))?;
    }
    w.close().map_err(perr(p))?;
    Ok(())
}

/// Write sorted events as one shard.
pub fn write_events(p: &Path, events: &[Event]) -> Result<(), LakeError> {
    let batches: Vec<RecordBatch> = events.chunks(128 * 1024).map(to_batch).collect();
    write_batches(p, event_schema(), &batches)
}

fn read_batches(p: &Path) -> Result<Vec<RecordBatch>, LakeError> {
    let f = std::fs::File::open(p).map_err(io(p))?;
    let r = ParquetRecordBatchReaderBuilder::try_new(f)
        .map_err(perr(p))?
        .build()
        .map_err(perr(p))?;
    r.map(|b| {
        b.map_err(|e| LakeError::Corrupt {
            path: p.to_path_buf(),
            message: e.to_string(),
        })
    })
    .collect()
}

fn str_col<'a>(b: &'a RecordBatch, name: &str, p: &Path) -> Result<&'a StringArray, LakeError> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| LakeError::Corrupt {
            path: p.to_path_buf(),
            message: format!("column {name} missing or not utf8"),
        })
}

fn i64_col<'a>(b: &'a RecordBatch, name: &str, p: &Path) -> Result<&'a Int64Array, LakeError> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        .ok_or_else(|| LakeError::Corrupt {
            path: p.to_path_buf(),
            message: format!("column {name} missing or not int64"),
        })
}

pub fn quarantine_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("file", DataType::Utf8, false),
        Field::new("row", DataType::UInt64, false),
        Field::new("field", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
        Field::new("message", DataType::Utf8, false),
        Field::new("raw", DataType::Utf8, false),
    ]))
}

pub fn write_quarantine(p: &Path, q: &[Quarantined]) -> Result<(), LakeError> {
    let s = |f: fn(&Quarantined) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(q.iter().map(f)))
    };
    let cols: Vec<ArrayRef> = vec![
        s(|x| &x.file),
        Arc::new(UInt64Array::from_iter_values(q.iter().map(|x| x.row))),
        s(|x| &x.field),
        s(|x| &x.reason),
        s(|x| &x.value),
        s(|x| &x.message),
        s(|x| &x.raw),
    ];
    let b = RecordBatch::try_new(quarantine_schema(), cols).expect("schema matches");
    write_batches(p, quarantine_schema(), &[b])
}

pub fn read_quarantine(p: &Path) -> Result<Vec<Quarantined>, LakeError> {
    let mut out = Vec::new();
    for b in read_batches(p)? {
        let row = b
            .column_by_name("row")
            .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
            .ok_or_else(|| LakeError::Corrupt {
                path: p.to_path_buf(),
                message: "column row missing".into(),
            })?;
        let cols: Vec<&StringArray> = ["file", "field", "reason", "value", "message", "raw"]
            .iter()
            .map(|n| str_col(&b, n, p))
            .collect::<Result<_, _>>()?;
        for i in 0..b.num_rows() {
            out.push(Quarantined {
                file: cols[0].value(i).into(),
                row: row.value(i),
                field: cols[1].value(i).into(),
                reason: cols[2].value(i).into(),
                value: cols[3].value(i).into(),
                message: cols[4].value(i).into(),
                raw: cols[5].value(i).into(),
            });
        }
    }
    Ok(out)
}

/// `metadata/codes.parquet`: code, description, parent_codes (MEDS code metadata schema).
/// `metadata/codes.parquet` (MEDS): code, description, and `parent_codes`, which here holds
/// every ancestor an export's vocabulary gave the code (OMOP `CONCEPT_ANCESTOR`'s closure), so
/// a code set that includes descendants needs no walk.
pub fn write_codes(
    p: &Path,
    codes: &BTreeMap<String, Option<String>>,
    parents: &BTreeMap<String, BTreeSet<String>>,
) -> Result<(), LakeError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, true),
        Field::new(
            "parent_codes",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
    ]));
    let code: ArrayRef = Arc::new(StringArray::from_iter_values(codes.keys()));
    let desc: ArrayRef = Arc::new(StringArray::from_iter(codes.values().map(|d| d.as_deref())));
    let mut list = ListBuilder::new(StringBuilder::new());
    for code in codes.keys() {
        match parents.get(code).filter(|p| !p.is_empty()) {
            Some(ps) => {
                for x in ps {
                    list.values().append_value(x);
                }
                list.append(true);
            }
            None => list.append_null(),
        }
    }
    let parents: ArrayRef = Arc::new(list.finish());
    let b =
        RecordBatch::try_new(schema.clone(), vec![code, desc, parents]).expect("schema matches");
    write_batches(p, schema, &[b])
}

pub fn read_codes(p: &Path) -> Result<BTreeMap<String, Option<String>>, LakeError> {
    let mut out = BTreeMap::new();
    if !p.exists() {
        return Ok(out);
    }
    for b in read_batches(p)? {
        let c = str_col(&b, "code", p)?;
        let d = str_col(&b, "description", p)?;
        for i in 0..b.num_rows() {
            out.insert(
                c.value(i).to_string(),
                (!d.is_null(i)).then(|| d.value(i).to_string()),
            );
        }
    }
    Ok(out)
}

/// The `parent_codes` of `metadata/codes.parquet`, for the codes that have any.
pub fn read_code_parents(p: &Path) -> Result<BTreeMap<String, BTreeSet<String>>, LakeError> {
    let mut out = BTreeMap::new();
    if !p.exists() {
        return Ok(out);
    }
    for b in read_batches(p)? {
        let c = str_col(&b, "code", p)?;
        let Some(col) = b.column_by_name("parent_codes") else {
            continue;
        };
        let Some(list) = col.as_any().downcast_ref::<arrow::array::ListArray>() else {
            return Err(LakeError::Corrupt {
                path: p.to_path_buf(),
                message: "parent_codes is not a list of strings".into(),
            });
        };
        for i in 0..b.num_rows() {
            if list.is_null(i) {
                continue;
            }
            let v = list.value(i);
            let Some(v) = v.as_any().downcast_ref::<StringArray>() else {
                continue;
            };
            let set: BTreeSet<String> = v.iter().flatten().map(String::from).collect();
            if !set.is_empty() {
                out.insert(c.value(i).to_string(), set);
            }
        }
    }
    Ok(out)
}

/// `metadata/subject_splits.parquet`.
pub fn write_splits(p: &Path, splits: &BTreeMap<i64, &'static str>) -> Result<(), LakeError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("subject_id", DataType::Int64, false),
        Field::new("split", DataType::Utf8, false),
    ]));
    let b = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(splits.keys().copied())),
            Arc::new(StringArray::from_iter_values(splits.values())),
        ],
    )
    .expect("schema matches");
    write_batches(p, schema, &[b])
}

/// Read splits as (subject_id, split).
pub fn read_splits(p: &Path) -> Result<Vec<(i64, String)>, LakeError> {
    let mut out = Vec::new();
    if !p.exists() {
        return Ok(out);
    }
    for b in read_batches(p)? {
        let s = i64_col(&b, "subject_id", p)?;
        let t = str_col(&b, "split", p)?;
        for i in 0..b.num_rows() {
            out.push((s.value(i), t.value(i).to_string()));
        }
    }
    Ok(out)
}

/// `metadata/subject_map.parquet`: subject_id (the person), system, value (a source
/// identity), record_subject_id (that identity's own id), link_rule and link_probability (how
/// linkage put it there; null for a person of one record).
pub fn write_subject_map(p: &Path, rows: &[SubjectRow]) -> Result<(), LakeError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("subject_id", DataType::Int64, false),
        Field::new("system", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
        Field::new("record_subject_id", DataType::Int64, false),
        Field::new("link_rule", DataType::Utf8, true),
        Field::new("link_probability", DataType::Float64, true),
    ]));
    let b = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.person))),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.identity.system.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.identity.value.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.identity.subject_id),
            )),
            Arc::new(StringArray::from_iter(
                rows.iter().map(|r| r.rule.as_deref()),
            )),
            Arc::new(arrow::array::Float64Array::from_iter(
                rows.iter().map(|r| r.probability),
            )),
        ],
    )
    .expect("schema matches");
    write_batches(p, schema, &[b])
}

/// The subject map's rows (a map written before linkage existed: each identity its own person).
pub fn read_subject_rows(p: &Path) -> Result<Vec<SubjectRow>, LakeError> {
    let mut out = Vec::new();
    if !p.exists() {
        return Ok(out);
    }
    for b in read_batches(p)? {
        let s = i64_col(&b, "subject_id", p)?;
        let sys = str_col(&b, "system", p)?;
        let v = str_col(&b, "value", p)?;
        let rec = i64_col(&b, "record_subject_id", p).ok();
        let rule = str_col(&b, "link_rule", p).ok();
        let prob = b
            .column_by_name("link_probability")
            .and_then(|c| c.as_any().downcast_ref::<arrow::array::Float64Array>());
        for i in 0..b.num_rows() {
            out.push(SubjectRow {
                identity: Identity {
                    subject_id: rec.map_or(s.value(i), |r| r.value(i)),
                    system: sys.value(i).into(),
                    value: v.value(i).into(),
                },
                person: s.value(i),
                rule: rule
                    .filter(|c| c.is_valid(i))
                    .map(|c| c.value(i).to_string()),
                probability: prob.filter(|c| c.is_valid(i)).map(|c| c.value(i)),
            });
        }
    }
    Ok(out)
}

/// Each source identity with its person as `subject_id` (how outputs address a patient).
pub fn read_subject_map(p: &Path) -> Result<Vec<Identity>, LakeError> {
    Ok(read_subject_rows(p)?
        .into_iter()
        .map(|r| Identity {
            subject_id: r.person,
            system: r.identity.system,
            value: r.identity.value,
        })
        .collect())
}

/// Make a file readable and writable by its owner only (identity facts are PHI).
pub fn owner_only(p: &Path) -> Result<(), LakeError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if p.is_dir() { 0o700 } else { 0o600 };
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(io(p))?;
    }
    Ok(())
}

/// `identity/persons.parquet`: one row per distinct identity record (system, value, the
/// subject id, every [`IdField`] normalised, the record's other identifiers), sorted. Written
/// owner-only.
pub fn write_persons(p: &Path, persons: &[PersonRecord]) -> Result<(), LakeError> {
    let mut fields = vec![
        Field::new("system", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
        Field::new("subject_id", DataType::Int64, false),
    ];
    for f in IdField::ALL {
        fields.push(Field::new(f.name(), DataType::Utf8, true));
    }
    fields.push(Field::new(
        "identifiers",
        DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        false,
    ));
    let schema = Arc::new(Schema::new(fields));
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            persons.iter().map(|r| r.identity.system.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            persons.iter().map(|r| r.identity.value.as_str()),
        )),
        Arc::new(Int64Array::from_iter_values(
            persons.iter().map(|r| r.identity.subject_id),
        )),
    ];
    for f in IdField::ALL {
        cols.push(Arc::new(StringArray::from_iter(
            persons.iter().map(|r| r.get(f)),
        )));
    }
    let mut list = ListBuilder::new(StringBuilder::new());
    for r in persons {
        for x in &r.identifiers {
            list.values().append_value(x);
        }
        list.append(true);
    }
    cols.push(Arc::new(list.finish()));
    let b = RecordBatch::try_new(schema.clone(), cols).expect("schema matches");
    write_batches(p, schema, &[b])?;
    owner_only(p)
}

pub fn read_persons(p: &Path) -> Result<Vec<PersonRecord>, LakeError> {
    let mut out = Vec::new();
    if !p.exists() {
        return Ok(out);
    }
    for b in read_batches(p)? {
        let sys = str_col(&b, "system", p)?;
        let val = str_col(&b, "value", p)?;
        let sid = i64_col(&b, "subject_id", p)?;
        let cols = IdField::ALL
            .iter()
            .map(|f| str_col(&b, f.name(), p))
            .collect::<Result<Vec<_>, _>>()?;
        let ids = b
            .column_by_name("identifiers")
            .and_then(|c| c.as_any().downcast_ref::<arrow::array::ListArray>())
            .ok_or_else(|| LakeError::Corrupt {
                path: p.to_path_buf(),
                message: "column identifiers missing or not a list".into(),
            })?;
        for i in 0..b.num_rows() {
            let mut r = PersonRecord::new(Identity {
                subject_id: sid.value(i),
                system: sys.value(i).into(),
                value: val.value(i).into(),
            });
            for (k, c) in cols.iter().enumerate() {
                if c.is_valid(i) {
                    r.fields[k] = Some(c.value(i).to_string());
                }
            }
            let v = ids.value(i);
            let v = v
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| LakeError::Corrupt {
                    path: p.to_path_buf(),
                    message: "identifiers are not strings".into(),
                })?;
            r.identifiers = (0..v.len()).map(|k| v.value(k).to_string()).collect();
            out.push(r);
        }
    }
    Ok(out)
}
