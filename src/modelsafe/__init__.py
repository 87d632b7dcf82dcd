"""modelsafe: test deep-learning models the way an attacker would, and compress them safely."""

__version__ = "0.1.0"
