"""Validate a lake with the `meds` package's own schemas (MEDS 0.4).

Usage: python3 tests/meds_validate.py LAKE_DIR   (PYTHONPATH must reach the `meds` package)
Checks every data shard against meds.DataSchema, the code metadata, subject splits and dataset
metadata against theirs, and that every code used is listed in metadata/codes.parquet.
"""
import glob
import json
import os
import sys

import pyarrow.parquet as pq
import meds

root = sys.argv[1]
codes_used = set()
n = 0
for f in sorted(glob.glob(os.path.join(root, meds.data_subdirectory, "*.parquet"))):
    t = pq.read_table(f)
    meds.DataSchema.validate(t)
    codes_used |= set(t.column("code").to_pylist())
    n += t.num_rows
codes = pq.read_table(os.path.join(root, meds.code_metadata_filepath))
meds.CodeMetadataSchema.validate(codes)
missing = codes_used - set(codes.column("code").to_pylist())
assert not missing, f"codes missing from metadata: {sorted(missing)[:10]}"
splits = pq.read_table(os.path.join(root, meds.subject_splits_filepath))
meds.SubjectSplitSchema.validate(splits)
with open(os.path.join(root, meds.dataset_metadata_filepath)) as fh:
    meds.DatasetMetadataSchema.validate(json.load(fh))
print(f"MEDS OK: {n} events, {codes.num_rows} codes, {splits.num_rows} subjects")
