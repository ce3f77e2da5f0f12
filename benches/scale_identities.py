#!/usr/bin/env python3
"""A FEBRL-format CSV of N records for linkage at scale: originals with FEBRL's own field
values (names, streets, suburbs, postcodes, states drawn from the FEBRL sets' columns, so
frequencies are realistic), plus duplicates (a third of originals get 1-3) with FEBRL-like
corruption: a typo in a name or street, a missing field, given/surname swapped, a date of birth
digit slip. rec_id follows FEBRL (rec-<n>-org, rec-<n>-dup-<k>) so truth is in the ids.

  scale_identities.py N OUT.csv [--seed S] [--febrl DIR]
"""
import argparse, csv, os, random

ap = argparse.ArgumentParser()
ap.add_argument("n", type=int)
ap.add_argument("out")
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--febrl", default=os.path.join(os.path.dirname(__file__), "..", ".data", "febrl"))
a = ap.parse_args()
rng = random.Random(a.seed)
cols = ["given_name", "surname", "street_number", "address_1", "address_2", "suburb", "postcode", "state"]
pools = {c: [] for c in cols}
for f in ("dataset1.csv", "dataset2.csv", "dataset3.csv", "dataset4a.csv"):
    for r in csv.DictReader(open(os.path.join(a.febrl, f), newline=""), skipinitialspace=True):
        r = {k.strip(): (v or "").strip() for k, v in r.items()}
        if r["rec_id"].endswith("-org"):
            for c in cols:
                if r[c]:
                    pools[c].append(r[c])

def typo(s):
    if len(s) < 3:
        return s
    i = rng.randrange(1, len(s))
    op = rng.randrange(4)
    ch = chr(97 + rng.randrange(26))
    if op == 0:
        return s[:i] + ch + s[i + 1:]
    if op == 1:
        return s[:i] + ch + s[i:]
    if op == 2:
        return s[:i] + s[i + 1:]
    return s[:i - 1] + s[i] + s[i - 1] + s[i + 1:] if i < len(s) else s

header = ["rec_id", "given_name", "surname", "street_number", "address_1", "address_2", "suburb",
          "postcode", "state", "date_of_birth", "soc_sec_id"]
written = 0
person = 0
with open(a.out, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(header)
    while written < a.n:
        org = {c: rng.choice(pools[c]) for c in cols}
        org["date_of_birth"] = f"{rng.randrange(1920, 2005)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
        org["soc_sec_id"] = f"{rng.randrange(1_000_000, 9_999_999)}"
        w.writerow([f"rec-{person}-org"] + [org[c] for c in header[1:]])
        written += 1
        dups = rng.choice([1, 2, 3]) if rng.random() < 1 / 3 else 0
        for k in range(dups):
            if written >= a.n:
                break
            d = dict(org)
            for _ in range(rng.choice([1, 1, 2, 3])):
                kind = rng.randrange(6)
                if kind == 0:
                    c = rng.choice(["given_name", "surname", "address_1", "suburb"])
                    d[c] = typo(d[c])
                elif kind == 1:
                    d[rng.choice(["given_name", "surname", "street_number", "address_1", "postcode", "date_of_birth", "soc_sec_id"])] = ""
                elif kind == 2:
                    d["given_name"], d["surname"] = d["surname"], d["given_name"]
                elif kind == 3 and d["date_of_birth"]:
                    dob = list(d["date_of_birth"])
                    i = rng.randrange(2, 8)
                    dob[i] = str(rng.randrange(10))
                    d["date_of_birth"] = "".join(dob)
                elif kind == 4:
                    d["postcode"] = typo(d["postcode"])
                else:
                    d["soc_sec_id"] = typo(d["soc_sec_id"])
            w.writerow([f"rec-{person}-dup-{k}"] + [d[c] for c in header[1:]])
            written += 1
        person += 1
print({"records": written, "people": person, "out": a.out})
