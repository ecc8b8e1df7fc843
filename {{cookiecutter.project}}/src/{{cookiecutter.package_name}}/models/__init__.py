from .classifier import Classifier
from .gpt import GPT

__all__ = ["GPT", "Classifier"]
