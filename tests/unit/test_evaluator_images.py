"""The evaluator's SageMaker images get nothing upgraded at run time.

What the training job and the endpoint pip-install (evaluator/images/*-requirements.txt) is resolved
against what the image carries (evaluator/images/*-image.txt): every requirement is pinned, none
replaces a package of the image, and every dependency of a pinned package is either carried by the
image at a version the dependency accepts or pinned in the same file. Package metadata comes from the
package index through pip (for the image's Python 3.12 on x86_64 Linux), as in the image itself.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import cache

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from feedback_loop.evaluator import images
from feedback_loop.local.template import Template

from ..conftest import ROOT

ENVIRONMENT = {"python_version": "3.12", "python_full_version": "3.12.8", "sys_platform": "linux",
               "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
               "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}
PLATFORMS = [f"manylinux_2_{v}_x86_64" for v in (35, 34, 31, 28, 27, 24, 17)] + ["manylinux2014_x86_64"]
ROOTS = {"sentence-transformers"}  # what the evaluator's code imports itself; other pins are there for it
_LINE = re.compile(r"^([A-Za-z0-9._-]+)\s*(?:(==|>=)\s*([0-9][^\s#]*))?\s*(?:#.*)?$")


def image_packages(scope: str) -> tuple[str, dict[str, tuple[str, Version] | None]]:
    """(image tag, {package: ("==" or ">=", version) or None where the version is not recorded})."""
    text = (images.FOLDER / f"{scope}-image.txt").read_text()
    tag = re.search(r"^# image: (\S+)$", text, re.MULTILINE).group(1)
    packages: dict[str, tuple[str, Version] | None] = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            match = _LINE.match(line.strip())
            assert match, f"{scope}-image.txt: cannot read {line!r}"
            name, operator, version = match.groups()
            packages[canonicalize_name(name)] = (operator, Version(version)) if operator else None
    return tag, packages


def pinned(scope: str) -> dict[str, Version]:
    found = {}
    for line in images.requirements(scope).splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            [spec] = requirement.specifier
            assert spec.operator == "==" and "*" not in spec.version, f"{line!r} is not pinned"
            found[canonicalize_name(requirement.name)] = Version(spec.version)
    return found


@cache
def dependencies(name: str, version: Version) -> list[Requirement]:
    """The package's requirements (extras off, markers for the image), from its metadata via pip."""
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed", "--quiet",
               "--report", "-", "--target", "/nonexistent", "--python-version", "3.12", "--implementation", "cp",
               "--only-binary=:all:", *[f"--platform={p}" for p in PLATFORMS], f"{name}=={version}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    [item] = json.loads(result.stdout)["install"]
    requirements = [Requirement(r) for r in item["metadata"].get("requires_dist") or []]
    return [r for r in requirements if r.marker is None or r.marker.evaluate(ENVIRONMENT)]


def accepts(requirement: Requirement, carried: tuple[str, Version] | None) -> bool:
    """Whether every version the image may carry satisfies the requirement."""
    if not requirement.specifier:
        return True
    if carried is None:  # the image's version is not recorded: only an unconstrained requirement is safe
        return False
    operator, version = carried
    if operator == "==":
        return requirement.specifier.contains(version, prereleases=True)
    # at least `version`: safe if that version is accepted and nothing above it is refused
    return requirement.specifier.contains(version, prereleases=True) and all(
        s.operator in (">=", ">", "!=") for s in requirement.specifier)


@pytest.mark.parametrize("scope", ["training", "inference"])
def test_what_the_image_installs_is_pinned_and_changes_nothing_it_carries(scope: str) -> None:
    _, carried = image_packages(scope)
    ours = pinned(scope)
    assert not set(ours) & set(carried), "a requirement would replace a package the image carries"
    problems, reached = [], set()
    for name, version in ours.items():
        for requirement in dependencies(name, version):
            dependency = canonicalize_name(requirement.name)
            reached.add(dependency)
            if dependency in ours:
                if not requirement.specifier.contains(ours[dependency], prereleases=True):
                    problems.append(f"{name} {version} needs {requirement}, the file pins {ours[dependency]}")
            elif dependency not in carried:
                problems.append(f"{name} {version} needs {requirement}: neither in the image nor pinned")
            elif not accepts(requirement, carried[dependency]):
                problems.append(f"{name} {version} needs {requirement}; the image carries {carried[dependency]}")
    assert problems == []
    assert ROOTS <= set(ours) and set(ours) - ROOTS <= reached  # nothing pinned that nothing needs


def test_the_images_described_are_the_ones_the_template_maps_in_every_region() -> None:
    template = Template(ROOT / "template.yaml")
    regions = template.body["Mappings"]["EvaluatorImages"]
    assert len(regions) >= 20 and {"us-east-1", "eu-west-1", "ap-southeast-2"} <= set(regions)
    training, inference = image_packages("training")[0], image_packages("inference")[0]
    gpu_inference = inference.replace("-cpu-py312-", "-gpu-py312-").rsplit("-ubuntu", 1)[0]
    for region, columns in regions.items():
        for column, uri in columns.items():
            host = uri.split("/")[0]
            # the image in its own region's registry
            assert re.fullmatch(rf"\d{{12}}\.dkr\.ecr\.{re.escape(region)}\.[a-z0-9.]+", host), uri
        assert columns["Training"].endswith(f"/{training}")
        assert columns["Inference"].endswith(f"/{inference}")
        assert columns["InferenceGpu"].split("/", 1)[1].startswith(gpu_inference)


def test_the_functions_get_the_mapped_images_unless_the_parameters_name_others() -> None:
    mapped = Template(ROOT / "template.yaml")
    environment = {f.logical_id: f.environment for f in mapped.functions()}
    us_east_1 = mapped.body["Mappings"]["EvaluatorImages"]["us-east-1"]
    assert environment["RetrainFunction"]["TRAINING_IMAGE_URI"] == us_east_1["Training"]
    assert environment["RegisterFunction"]["INFERENCE_IMAGE_URI"] == us_east_1["Inference"]
    assert environment["RegisterFunction"]["INFERENCE_GPU_IMAGE_URI"] == us_east_1["InferenceGpu"]
    chosen = Template(ROOT / "template.yaml", parameters={"TrainingImageUri": "1.dkr/train:1",
                                                            "InferenceImageUri": "1.dkr/serve:1"})
    environment = {f.logical_id: f.environment for f in chosen.functions()}
    assert environment["RetrainFunction"]["TRAINING_IMAGE_URI"] == "1.dkr/train:1"
    assert environment["RegisterFunction"]["INFERENCE_GPU_IMAGE_URI"] == "1.dkr/serve:1"


@pytest.mark.parametrize("instance_type, image", [
    ("ml.m5.large", "cpu"), ("ml.c7i.xlarge", "cpu"), ("ml.g5.xlarge", "gpu"), ("ml.p4d.24xlarge", "gpu"),
    ("ml.inf2.xlarge", "cpu"),
])
def test_the_endpoint_image_matches_its_instances(monkeypatch, instance_type: str, image: str) -> None:
    from feedback_loop.settings import RegisterFunctionSettings

    monkeypatch.setenv("TABLE_NAME", "t")
    monkeypatch.setenv("EVENT_BUS_NAME", "b")
    monkeypatch.setenv("INFERENCE_IMAGE_URI", "cpu")
    monkeypatch.setenv("INFERENCE_GPU_IMAGE_URI", "gpu")
    monkeypatch.setenv("ENDPOINT_INSTANCE_TYPE", instance_type)
    assert RegisterFunctionSettings().inference_image == image


def test_the_training_job_gets_the_pinned_requirements_and_the_files_the_endpoint_needs() -> None:
    import io
    import tarfile

    from feedback_loop.retraining.launch import source_bundle

    class Bucket:
        def put_object(self, Bucket: str, Key: str, Body: bytes) -> None:  # noqa: N803  boto3's names
            self.body = Body

    bucket = Bucket()
    source_bundle(bucket, "b")
    with tarfile.open(fileobj=io.BytesIO(bucket.body)) as tar:
        files = {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers()}
    assert files["requirements.txt"] == images.requirements("training")
    # train.py writes the model's code/requirements.txt from the package it runs
    assert files["feedback_loop/evaluator/images/inference-requirements.txt"] == images.requirements("inference")
