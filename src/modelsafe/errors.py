"""Exceptions raised by modelsafe. All derive from ``ValueError`` so plain ``except ValueError`` still works."""


class ModelsafeError(ValueError):
    """Bad input to a modelsafe entry point: the message names the problem and, where useful, the fix."""


class UnknownNameError(ModelsafeError, KeyError):
    """A registry lookup (dataset, model, attack, method, ...) got a name it does not know."""

    def __init__(self, kind: str, name: str, valid: list[str]):
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        super().__init__(f"unknown {kind} {name!r}; valid names: {', '.join(self.valid)}")

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.args[0]


class DataNotFoundError(ModelsafeError, FileNotFoundError):
    """A dataset's files are missing. The message lists where modelsafe looked and how to get them."""

    def __str__(self) -> str:
        return self.args[0]
