#!/usr/bin/env python3
"""Make a large OMOP CDM CSV export by replicating ../shared/data/eunomia-synthea27nj-omop54 K times.

Replica k shifts every person_id by k * (max person_id + 1), suffixes person_source_value with
"-k", and shifts the tables' own *_occurrence_id / measurement_id / ... primary keys the same way,
so replicas are distinct people. Only the tables ehr-risk reads are written (plus CONCEPT.csv once).
Same arguments, same bytes. Usage: scale_omop.py --target-mb 500 --out DIR
"""
import argparse
import csv
import os
from pathlib import Path

SEED = Path(__file__).resolve().parents[1] / "../shared/data/eunomia-synthea27nj-omop54"
TABLES = ["PERSON", "VISIT_OCCURRENCE", "CONDITION_OCCURRENCE", "MEASUREMENT", "OBSERVATION",
          "DRUG_EXPOSURE", "PROCEDURE_OCCURRENCE", "DEATH"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", default=str(SEED))
    ap.add_argument("--target-mb", type=float, default=500)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    seed, out = Path(a.seed), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for t in TABLES:
        with open(seed / f"{t}.csv", newline="") as fh:
            r = list(csv.reader(fh))
        rows[t] = (r[0], r[1:])
    size = sum((seed / f"{t}.csv").stat().st_size for t in TABLES)
    k = max(1, int(a.target_mb * 1e6 / size))
    pid_span = max(int(r[0]) for r in rows["PERSON"][1]) + 1
    for t in TABLES:
        header, body = rows[t]
        low = [h.lower() for h in header]
        pid = low.index("person_id")
        psv = low.index("person_source_value") if "person_source_value" in low else None
        pk = 0 if low[0].endswith("_id") and low[0] != "person_id" else None
        span = max([int(float(r[pk])) for r in body if r[pk]] or [0]) + 1 if pk is not None else 0
        with open(out / f"{t}.csv", "w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(header)
            for i in range(k):
                for r in body:
                    r = list(r)
                    r[pid] = str(int(r[pid]) + i * pid_span)
                    if psv is not None and r[psv]:
                        r[psv] = f"{r[psv]}-{i}"
                    if pk is not None and r[pk]:
                        r[pk] = str(int(float(r[pk])) + i * span)
                    w.writerow(r)
    os.link(seed / "CONCEPT.csv", out / "CONCEPT.csv") if not (out / "CONCEPT.csv").exists() else None
    total = sum((out / f"{t}.csv").stat().st_size for t in TABLES)
    print(f'{{"replicas": {k}, "bytes": {total}, "persons": {k * len(rows["PERSON"][1])}}}')


if __name__ == "__main__":
    main()
