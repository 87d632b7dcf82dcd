"""Datasets by name, in-memory samples, and membership splits."""

from modelsafe.data.info import Dataset, DatasetInfo, TensorData
from modelsafe.data.membership import read_indices, split_from_membership
from modelsafe.data.registry import dataset_entry, list_datasets, load_dataset, register_dataset
from modelsafe.data.split import RECIPES, MembershipSplit, SplitSpec, get_recipe

__all__ = ["RECIPES", "Dataset", "DatasetInfo", "MembershipSplit", "SplitSpec", "TensorData", "dataset_entry",
           "get_recipe", "list_datasets", "load_dataset", "read_indices", "register_dataset", "split_from_membership"]
