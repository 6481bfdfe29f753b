"""feedback-loop: closes the production feedback loop for LLM applications."""

__version__ = "0.1.0"
