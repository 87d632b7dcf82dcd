"""Compression: methods by name (:func:`compress`, :func:`register_method`) and their shared options."""

from modelsafe.compress.methods import (
    CompressOptions,
    CompressResult,
    MethodEntry,
    compress,
    get_method,
    list_methods,
    register_method,
)

__all__ = ["CompressOptions", "CompressResult", "MethodEntry", "compress", "get_method", "list_methods",
           "register_method"]

# SafeCompress configurations and the defence baselines join the registry on import.
from modelsafe.compress import safecompress_methods as _safecompress_methods  # noqa: F401, I001
from modelsafe.compress import defences as _defences  # noqa: F401
