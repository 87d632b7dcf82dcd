"""The one registry helper (modelsafe.registry.Registry) and the package registries built on it."""

from dataclasses import dataclass

import pytest

from modelsafe.adversarial import list_attacks
from modelsafe.adversarial.presets import PRESETS
from modelsafe.compress import list_methods
from modelsafe.compress.methods import METHODS
from modelsafe.compress.safety import SAFETY_TESTS, list_safety_tests
from modelsafe.data import dataset_entry, list_datasets, load_dataset, register_dataset
from modelsafe.data.registry import DATASETS
from modelsafe.errors import ModelsafeError, UnknownNameError
from modelsafe.models import list_models
from modelsafe.models.registry import MODELS
from modelsafe.privacy import list_mias
from modelsafe.privacy.registry import MIAS
from modelsafe.registry import Registry
from modelsafe.sparse.rules import GROW_RULES, PRUNE_RULES


@dataclass(frozen=True)
class Row:
    name: str
    value: int


def fruit() -> Registry[Row]:
    registry: Registry[Row] = Registry("fruit")
    for row in (Row("pear", 1), Row("apple", 2), Row("apricot", 3)):
        registry.register(row.name, row)
    return registry


def test_data_rows_are_listed_sorted_and_kept_in_registration_order():
    registry = fruit()
    assert registry.names() == ["apple", "apricot", "pear"]
    assert [r.name for r in registry.entries()] == ["pear", "apple", "apricot"]
    assert registry.get("apple") == Row("apple", 2) and "pear" in registry and "plum" not in registry


def test_names_take_a_shell_style_pattern():
    registry = fruit()
    assert registry.names("ap*") == ["apple", "apricot"]
    assert registry.names("*r") == ["pear"]
    assert registry.names("?pple") == ["apple"]
    assert registry.names("AP*") == []  # case-sensitive
    assert registry.names("plum") == []


def test_duplicates_are_refused_for_rows_and_decorators():
    registry = fruit()
    with pytest.raises(ModelsafeError, match="fruit 'pear' is already registered"):
        registry.register("pear", Row("pear", 9))
    with pytest.raises(ModelsafeError, match="already registered"):
        registry.register("apple")  # refused before anything is decorated
    assert registry.get("pear").value == 1


def test_unknown_names_raise_one_message_listing_the_valid_names_and_hints():
    registry: Registry[Row] = Registry("fruit", hints=["seed:<name>"])
    registry.register("pear", Row("pear", 1))
    registry.register("apple", Row("apple", 2))
    with pytest.raises(UnknownNameError) as info:
        registry.get("plum")
    assert str(info.value) == "unknown fruit 'plum'; valid names: apple, pear, seed:<name>"
    assert info.value.kind == "fruit" and info.value.name == "plum"
    assert isinstance(info.value, KeyError) and isinstance(info.value, ModelsafeError)


def test_the_decorator_registers_the_object_or_its_wrapped_entry_and_returns_it_unchanged():
    plain: Registry = Registry("rule")

    @plain.register("double")
    def double(x):
        return 2 * x

    assert plain.get("double") is double and double(2) == 4
    rows: Registry[Row] = Registry("fruit")

    @rows.register("kiwi", wrap=lambda fn: Row("kiwi", fn()))
    def kiwi():
        return 7

    assert rows.get("kiwi") == Row("kiwi", 7) and kiwi() == 7
    with pytest.raises(ModelsafeError, match="already registered"):
        rows.register("kiwi")(kiwi)


def test_unregister_removes_an_entry():
    registry = fruit()
    assert registry.unregister("pear") == Row("pear", 1)
    assert registry.names() == ["apple", "apricot"]
    with pytest.raises(UnknownNameError, match="unknown fruit 'pear'"):
        registry.unregister("pear")


@pytest.mark.parametrize("registry", [MODELS, DATASETS, MIAS, METHODS, SAFETY_TESTS, PRESETS, PRUNE_RULES,
                                      GROW_RULES])
def test_every_package_registry_is_the_helper(registry):
    assert isinstance(registry, Registry)
    assert registry.names() and registry.names() == sorted(registry.names())


@pytest.mark.parametrize("listing", [list_models, list_datasets, list_mias, list_methods, list_safety_tests,
                                     list_attacks])
def test_every_public_listing_returns_sorted_names(listing):
    names = listing()
    assert names and all(isinstance(n, str) for n in names) and names == sorted(set(names))
    first = names[0]
    assert listing(first) == [first]
    assert listing("*") == names
    assert listing("no-such-*") == []


def test_listings_filter_by_pattern():
    assert list_attacks("*-ct") == ["mi-fgsm-ct", "ni-fgsm-ct", "smi-fgrm-ct", "sni-fgrm-ct"]
    assert list_datasets("cifar*") == ["cifar10", "cifar100"]
    assert list_models("vgg*") == ["vgg-c", "vgg11", "vgg16"]
    assert "rigl" in list_methods("*i*") and "dense" not in list_methods("*i*")


def test_attack_presets_keep_their_table_order():
    assert [p.name for p in PRESETS.entries()][:4] == ["fgsm", "i-fgsm", "mi-fgsm", "ni-fgsm"]


def test_dataset_rows_carry_descriptions_and_loaders_may_be_added():
    assert "Fashion-MNIST" in dataset_entry("fashion-mnist").description
    with pytest.raises(UnknownNameError, match="unknown dataset 'nope'; valid names: .*digits"):
        dataset_entry("nope")

    @register_dataset("test-rows", "a loader added by a test")
    def loader(root, download, **options):
        return root, download, options

    try:
        assert load_dataset("test-rows", "here", True, extra=1) == ("here", True, {"extra": 1})
        assert dataset_entry("test-rows").description == "a loader added by a test"
        with pytest.raises(ModelsafeError, match="already registered"):
            register_dataset("digits", "again")
    finally:
        DATASETS.unregister("test-rows")
