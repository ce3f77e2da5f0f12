//! `ehr-risk ingest`: resolve options, run the ingest, print the summary (stderr) or the JSON
//! report (stdout), and decide the exit status from `--max-reject-rate`.

use super::ExitStatus;
use super::progress::Bars;
use crate::cli::ingest::IngestArgs;
use crate::ingest::driver::{IngestOptions, IngestReport};
use crate::ingest::time::TimeContext;
use anyhow::{Context, bail};

pub fn options(a: &IngestArgs) -> anyhow::Result<IngestOptions> {
    let zone: chrono_tz::Tz =
        a.tz.parse()
            .map_err(|e| anyhow::anyhow!("--tz {:?}: not an IANA time zone ({e})", a.tz))?;
    let mut o = IngestOptions {
        format: a.format,
        time: TimeContext { zone },
        shards: a.shards,
        buffer_events: a.buffer_events,
        policy: crate::ingest::InputPolicy {
            dates_shifted: a.dates_shifted,
            source_vocabulary: a.source_vocabulary,
        },
        link: if a.no_link {
            None
        } else {
            Some(crate::link::spec::LinkSpec::load(a.link_spec.as_deref())?)
        },
        ..Default::default()
    };
    if !(1..=4096).contains(&a.shards) {
        bail!("--shards {}: must be between 1 and 4096", a.shards);
    }
    if !(0.0..=1.0).contains(&a.max_reject_rate) {
        bail!(
            "--max-reject-rate {}: must be a fraction between 0 and 1",
            a.max_reject_rate
        );
    }
    if let Some(t) = &a.max_event_time {
        o.max_event_time = TimeContext::default()
            .parse(t)
            .map_err(|e| anyhow::anyhow!("--max-event-time {t:?}: expected {e}"))?;
    }
    Ok(o)
}

/// Human summary of a report, for stderr. Counts only.
pub fn summary(r: &IngestReport) -> String {
    let mut s = String::new();
    let t = &r.totals;
    s.push_str(&format!(
        "ingest {}: {} files read, {} already ingested\n  rows: {} read = {} accepted + {} rejected + {} skipped\n  events: {} produced, {} duplicates removed, {} written; {} source identities added; {} quarantined\n",
        r.run_id,
        r.files.iter().filter(|f| f.status == "read").count(),
        r.files.iter().filter(|f| f.status == "already_ingested").count(),
        t.rows_read,
        t.rows_accepted,
        t.rows_rejected,
        t.rows_skipped,
        t.events,
        r.duplicates,
        r.events_written,
        r.subjects_added,
        r.quarantined,
    ));
    if let Some(l) = &r.linkage {
        s.push_str(&format!(
            "  identities: {} records -> {} persons ({} linked pairs, {} by identifier; {} for review: ehr-risk link review); {} events moved\n",
            l.identities, l.persons, l.linked_pairs, l.identifier_links, l.review_pairs, r.events_moved
        ));
    }
    if !t.rejected_by_reason.is_empty() {
        s.push_str("  rejected by reason:");
        for (k, v) in &t.rejected_by_reason {
            s.push_str(&format!(" {k}={v}"));
        }
        s.push('\n');
    }
    if !t.interpreted.is_empty() {
        s.push_str("  read under the input policy:");
        for (k, v) in &t.interpreted {
            s.push_str(&format!(" {k}={v}"));
        }
        s.push('\n');
    }
    if !r.ignored.is_empty() {
        const SHOWN: usize = 8;
        s.push_str(&format!("  files not read: {}\n", r.ignored.len()));
        for (p, why) in r.ignored.iter().take(SHOWN) {
            s.push_str(&format!("    {p}: {why}\n"));
        }
        if r.ignored.len() > SHOWN {
            s.push_str(&format!(
                "    ... and {} more (--json lists them all)\n",
                r.ignored.len() - SHOWN
            ));
        }
    }
    if !t.skipped_by_reason.is_empty() {
        s.push_str("  skipped by reason:");
        for (k, v) in &t.skipped_by_reason {
            s.push_str(&format!(" [{k}]={v}"));
        }
        s.push('\n');
    }
    s
}

pub fn run(a: IngestArgs, quiet: bool) -> anyhow::Result<ExitStatus> {
    let opts = options(&a)?;
    if a.show_config {
        println!("{opts:#?}\nconfig_hash = {}", opts.config_hash());
        return Ok(ExitStatus::Success);
    }
    let bars = Bars::new(quiet);
    let out = crate::ingest::run(&a.lake, &a.paths, &opts, &bars)
        .with_context(|| format!("ingest into {}", a.lake.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out.report)?);
    }
    if !quiet {
        eprint!("{}", summary(&out.report));
    }
    let findings = crate::ingest::verdict::assess(&out.report, a.max_reject_rate);
    for f in &findings {
        eprintln!("error: {f}");
    }
    if !findings.is_empty() {
        eprintln!(
            "error: {} input(s) failed (reject rate {:.4} overall); the accepted rows were committed, the rejected ones are in quarantine/",
            findings.len(),
            out.report.reject_rate
        );
        return Ok(ExitStatus::Threshold);
    }
    Ok(ExitStatus::Success)
}
