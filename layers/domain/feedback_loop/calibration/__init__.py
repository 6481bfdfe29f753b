"""The calibrator: for an evaluator that nobody can fine-tune (an LLM judge answering 1-5, 1-10 or
pass/fail), a map from its raw score and the request's segment values to the probability that users
call the answer good (`p_good`, the calibrated score of docs/ARCHITECTURE's definitions) and to the
expected human score (`expected_human`), learned from the human labels.

`calibration.curves` holds the map and applies it in plain Python (the API function imports it: no
numpy); `calibration.fit` learns it (numpy, scipy, scikit-learn: the training job and the command
line). docs/RETRAINING.md describes the methods and how one is chosen.
"""
