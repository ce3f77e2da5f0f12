//! `ehr-risk lake stats|validate`.

use super::ExitStatus;
use crate::cli::lake::{LakeArgs, LakeCommand};
use crate::lake::{Lake, stats, validate};

pub fn print_stats(s: &stats::Stats) {
    println!("events    {}", s.events);
    println!("subjects  {}", s.subjects);
    println!(
        "time      {} .. {}",
        s.first_time.as_deref().unwrap_or("-"),
        s.last_time.as_deref().unwrap_or("-")
    );
    println!("inputs    {} files in {} runs", s.inputs, s.runs);
    println!("by source:");
    for (k, n) in &s.by_source {
        println!("  {n:>10}  {k}");
    }
    println!("top codes:");
    for (k, n) in &s.top_codes {
        println!("  {n:>10}  {k}");
    }
    if !s.rejected_by_reason.is_empty() {
        println!("rejected rows by reason:");
        for (k, n) in &s.rejected_by_reason {
            println!("  {n:>10}  {k}");
        }
    }
}

pub fn run(a: LakeArgs) -> anyhow::Result<ExitStatus> {
    match a.command {
        LakeCommand::Stats { dir, top, json } => {
            let lake = Lake::open(&dir)?;
            let s = stats::stats(&lake, top)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print_stats(&s);
            }
            Ok(ExitStatus::Success)
        }
        LakeCommand::Validate { dir, json } => {
            let lake = Lake::open(&dir)?;
            let v = validate::validate(&lake)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{} shards, {} events, {} subjects, {} codes",
                    v.shards, v.events, v.subjects, v.codes
                );
                for p in &v.problems {
                    println!("problem: {p}");
                }
                println!("{}", if v.ok() { "valid" } else { "INVALID" });
            }
            Ok(if v.ok() {
                ExitStatus::Success
            } else {
                ExitStatus::Threshold
            })
        }
    }
}
