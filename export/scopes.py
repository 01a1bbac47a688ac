"""Which exported ops belong to which module of the model: the one place quantizer scopes are matched.

Every quantizing exporter keeps chosen modules in float (`QuantOptions.keep_float`, dotted paths below the
exported model, e.g. "backbone.features.0") and the ops after the model (temperature, sigmoid) in float.
Each converter names ops its own way; the helpers here turn those names into module paths below
`export.common.WRAPPED`, the wrapper's attribute that holds the model, so that no rule depends on the
model's class or attribute names.

    within("head.0", ["head"])                                   # True
    in_module(["backbone", "features", "0", "1"], "backbone.features.0")   # True
"""

from __future__ import annotations


def within(path: str, prefixes: tuple[str, ...] | list[str]) -> bool:
    """Whether dotted module `path` is one of `prefixes` or lies below one of them."""
    return any(path == p or path.startswith(p + ".") for p in prefixes)


def _aligns(components: list[str], segments: list[str]) -> bool:
    """Whether scope `components` name the module at `segments`, allowing the exporter to have dropped
    named parents (a module reached through a parent's method, as EfficientNet-Lite's extract_features,
    loses that parent's scope) but never a numeric index."""
    if not components or components[0] != segments[0] or components[-1] != segments[-1]:
        return False
    i = 0
    for seg in segments:
        if i < len(components) and components[i] == seg:
            i += 1
        elif seg.isdigit():
            return False
    return i == len(components)


def in_module(components: list[str], path: str) -> bool:
    """Whether an op whose scope is `components` (module attribute names below the FusionModel) lies in
    the module at dotted `path` or below it."""
    segments = path.split(".")
    return any(_aligns(components[:k], segments) for k in range(1, len(components) + 1))
