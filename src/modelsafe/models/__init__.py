"""Model zoo. Image models take [0, 1] NCHW inputs and carry their own normalisation."""

from modelsafe.models.layers import Normalize
from modelsafe.models.registry import create_model, create_model_for, list_models
from modelsafe.models.text import TextClassifier
from modelsafe.models.vision import MLP, VGG, ResNet18, SmallCNN

__all__ = ["MLP", "VGG", "Normalize", "ResNet18", "SmallCNN", "TextClassifier", "create_model",
           "create_model_for", "list_models"]
