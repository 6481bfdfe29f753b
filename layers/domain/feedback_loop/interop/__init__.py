"""Feedback and evaluator scores in the formats other tools use: importers from Langfuse, MLflow and
Phoenix exports (`tools`, `mapping`), exporters of human feedback as OpenTelemetry
`gen_ai.evaluation.result` events and OpenInference span annotations (`export`)."""
