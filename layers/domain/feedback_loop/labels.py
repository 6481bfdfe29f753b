"""When a human score makes a binary label (docs/ARCHITECTURE.md, "Definitions the analysis uses"):
good at or above GOOD_AT, bad at or below BAD_AT, neither between. Dependency-free, so that the
calibrator's training job (the scikit-learn image, docs/RETRAINING.md) can read it."""

GOOD_AT = 0.75
BAD_AT = 0.25
