"""template.yaml as `sam deploy` hands it to CloudFormation: the SAM transform, run offline.

    .venv/bin/python -m tests.deployed_template > build/template.json   (what `make check-template` scans)

Code and layer folders become the s3:// URIs `sam deploy` uploads them to; a state machine's
definition file is inlined (what `sam deploy` uploads and CloudFormation reads back). The transform asks IAM
for managed policy ARNs only for policies named by their short name; the template names none, so
nothing is looked up and no AWS account is needed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import boto3
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

TEMPLATE = Path(__file__).resolve().parents[1] / "template.yaml"


def transformed(path: Path = TEMPLATE) -> dict[str, Any]:
    source = yaml_parse(path.read_text())
    for resource in source["Resources"].values():
        for uri in ("CodeUri", "ContentUri"):
            if uri in resource.get("Properties", {}):
                resource["Properties"][uri] = f"s3://packaged/{resource['Properties'][uri].strip('/')}.zip"
        definition = resource.get("Properties", {}).pop("DefinitionUri", None) if resource["Type"] == \
            "AWS::Serverless::StateMachine" else None
        if definition is not None:
            resource["Properties"]["Definition"] = json.loads((path.parent / definition).read_text())
    translator = Translator({}, Parser(), boto_session=boto3.session.Session(region_name="eu-west-1"))
    return translator.translate(source, parameter_values={"AWS::AccountId": "111122223333",
                                                          "AWS::StackName": "feedback-loop"},
                                get_managed_policy_map=lambda: {})


if __name__ == "__main__":
    json.dump(transformed(), sys.stdout, indent=1)
