"""The retrainable evaluator: a text classifier over (prompt, output) predicting P(human label = good).

Torch, transformers and sentence-transformers are imported only here, inside functions; the
Lambda functions never import its models (they launch training through boto3; the retrain function
reads the pinned requirements from evaluator/images, which imports nothing).
"""
