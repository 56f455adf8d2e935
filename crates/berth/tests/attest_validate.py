"""Validates a build's provenance with the in-toto attestation framework's reference library
(in-toto-attestation): the document must parse, with no unknown field, as an in-toto v1
Statement and pass its validation, and its predicate must parse as SLSA provenance v1 with the
fields SLSA requires (buildDefinition.buildType and externalParameters, runDetails.builder.id).
Usage: attest_validate.py STATEMENT.json"""

import json
import sys

from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement

doc = json.load(open(sys.argv[1]))
pb = json_format.ParseDict(doc, statement_pb2.Statement())
Statement.copy_from_pb(pb).validate()
if pb.predicate_type != "https://slsa.dev/provenance/v1":
    raise SystemExit(f"predicate type {pb.predicate_type}")
prov = json_format.ParseDict(doc["predicate"], provenance_pb2.Provenance())
bd, rd = prov.build_definition, prov.run_details
if not bd.build_type or not bd.HasField("external_parameters"):
    raise SystemExit("buildDefinition.buildType and externalParameters are required")
if not rd.builder.id:
    raise SystemExit("runDetails.builder.id is required")
for dep in bd.resolved_dependencies:
    if not (dep.uri or dep.digest or dep.name):
        raise SystemExit(f"a resolved dependency names nothing: {dep}")
print("OK")
