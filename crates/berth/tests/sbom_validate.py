"""Validates berth's SBOMs with the reference libraries: a CycloneDX document against the 1.6
JSON schema (cyclonedx-python-lib's strict validator) and an SPDX document with spdx-tools'
parser and full validator. Usage: sbom_validate.py BOM.cdx.json [DOC.spdx.json]"""

import sys

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

err = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())
if err:
    raise SystemExit(f"CycloneDX 1.6: {err}")
messages = validate_full_spdx_document(parse_file(sys.argv[2])) if len(sys.argv) > 2 else []
if messages:
    raise SystemExit("SPDX 2.3: " + "; ".join(m.validation_message for m in messages[:10]))
print("OK")
