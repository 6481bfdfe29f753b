"""The local SageMaker runtime: invocations of a deployed evaluator, served in process.

The emulator records endpoints but runs nothing. This serves SageMaker's runtime path,
POST /endpoints/{name}/invocations, from the local gateway: it follows the endpoint to its config,
model and model package, loads the package's model.tar.gz from the emulated S3 once, and answers with
the same inference.py handlers the SageMaker endpoint runs. boto3's sagemaker-runtime client
reaches it through AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME, the only difference from AWS.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
import threading
from pathlib import Path
from typing import Any

import boto3


class LocalEndpointRuntime:
    def __init__(self) -> None:
        self._models: dict[str, Any] = {}  # model data URL -> loaded model
        self._folders: list[tempfile.TemporaryDirectory] = []
        self._lock = threading.Lock()

    def model_data(self, endpoint: str) -> str:
        sagemaker = boto3.client("sagemaker")
        config = sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
        model = sagemaker.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"][0]["ModelName"]
        container = sagemaker.describe_model(ModelName=model)["PrimaryContainer"]
        if "ModelDataUrl" in container:
            return container["ModelDataUrl"]
        package = sagemaker.describe_model_package(ModelPackageName=container["ModelPackageName"])
        return package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]

    def _load(self, url: str) -> Any:
        from transformers.utils import logging as transformers_logging

        from feedback_loop.evaluator import inference

        transformers_logging.disable_progress_bar()  # the stack shares the terminal; no bar per model load

        with self._lock:
            if url not in self._models:
                folder = tempfile.TemporaryDirectory(prefix="endpoint-")
                self._folders.append(folder)
                archive = Path(folder.name) / "model.tar.gz"
                bucket, _, key = url.removeprefix("s3://").partition("/")
                boto3.client("s3").download_file(bucket, key, str(archive))
                with tarfile.open(archive) as tar:
                    tar.extractall(Path(folder.name) / "model", filter="data")
                self._models[url] = inference.model_fn(str(Path(folder.name) / "model"))
            return self._models[url]

    def invoke(self, endpoint: str, body: bytes, content_type: str, accept: str) -> tuple[int, str]:
        from feedback_loop.evaluator import inference

        try:
            model = self._load(self.model_data(endpoint))
        except Exception as error:
            return 400, json.dumps({"ErrorCode": "ValidationError",
                                    "Message": f"endpoint {endpoint}: {type(error).__name__}"})
        try:
            data = inference.input_fn(body, content_type or "application/json")
        except ValueError as error:
            return 400, json.dumps({"ErrorCode": "ModelError", "Message": str(error)})
        return 200, inference.output_fn(inference.predict_fn(data, model), accept or "application/json")

    def close(self) -> None:
        for folder in self._folders:
            folder.cleanup()
