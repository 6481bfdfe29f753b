"""The retrainable evaluator: a text classifier over (prompt, output) predicting P(human label = good).

Torch, transformers and sentence-transformers are imported only here, inside functions; the
Lambda functions never import this package (they launch training through boto3).
"""
