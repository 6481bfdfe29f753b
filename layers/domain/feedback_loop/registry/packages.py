"""What a model package in the registry is, as the register function records it for the deploy
function (boto3 only: the deploy function has no numpy).

    PACKAGE#<model package ARN> / PACKAGE   {kind, project, training_job, model_data}

Only calibrators are recorded; a package without the item is a fine-tuned evaluator (as before
calibrators existed).
"""

CALIBRATOR = "calibrator"


def package_key(arn: str) -> dict[str, str]:
    return {"pk": f"PACKAGE#{arn}", "sk": "PACKAGE"}
