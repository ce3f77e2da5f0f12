"""Validate FHIR R4 resources with the fhir.resources 6.1 models (FHIR 4.0.1).

Usage: fhir_validate.py FILE...   (NDJSON of resources, or one JSON resource such as a Bundle)
Prints "FHIR R4 OK <n> resources" and exits 0, or names the first invalid one and exits 1.
"""
import json
import sys

import fhir.resources
from fhir.resources import construct_fhir_element

assert fhir.resources.__fhir_version__ == "4.0.1", fhir.resources.__fhir_version__


def check(obj, where):
    try:
        construct_fhir_element(obj["resourceType"], obj)
    except Exception as e:  # the models say what is wrong
        print(f"{where}: invalid {obj.get('resourceType')}: {e}", file=sys.stderr)
        sys.exit(1)


n = 0
for path in sys.argv[1:]:
    text = open(path, encoding="utf-8").read()
    if path.endswith(".ndjson"):
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                check(json.loads(line), f"{path}:{i}")
                n += 1
    else:
        doc = json.loads(text)
        check(doc, path)
        n += 1 + len(doc.get("entry", []))
if n == 0:
    print("no resources to validate", file=sys.stderr)
    sys.exit(1)
print(f"FHIR R4 OK {n} resources")
