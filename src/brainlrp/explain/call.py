"""One way to call a method as a run makes its heatmaps.

A method of the catalog needs more than its name to run on a run's scans: its options
(given for every method, for one method, or for a bare reference method such as
``ig-ref`` and then for each ``ig-ref@<kind>``), the grid's atlas areas when it occludes
regions, and, for ``<method>@<kind>``, the reference built from the run's training
controls (or a NIfTI file) for the very scans explained. :class:`MethodCalls` holds
that once per run; ``brainlrp explain`` (a run's scans and one new scan), ``analyze``'s
model checks (randomisation, faithfulness, costs) and the benchmark all call methods
through it, so a heatmap recomputed by a check is the heatmap explain wrote.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from brainlrp.errors import BrainLRPError
from brainlrp.run import RunDir


def resolve_methods(methods, reference: str | None = None) -> list[str]:
    """Known method names, each once; a bare reference method (``ig-ref``) gets
    ``@<reference>`` (default: the catalog's :data:`~brainlrp.catalog.DEFAULT_REFERENCE`).

    Raises :class:`~brainlrp.errors.BrainLRPError` for an empty list or an unknown name
    (with the known ones).
    """
    from brainlrp import catalog
    from brainlrp.data.reference import reference_name
    from brainlrp.explain.methods import get_method

    names = catalog.parse(methods)
    if not names:
        raise BrainLRPError("no method given", "e.g. --methods lrp-b0,gb")
    out = []
    for name in names:
        method = get_method(name)  # raises with the list of known methods
        if method.needs_reference and method.info.reference is None:
            name = catalog.with_reference(name, reference_name(reference
                                                                or catalog.DEFAULT_REFERENCE))
        out.append(name)
    return list(dict.fromkeys(out))


def run_default_methods(run: RunDir | str | os.PathLike, cohort=None
                        ) -> tuple[list[str], str | None]:
    """The catalog's default methods for a run's scans, and why some were left out:
    without training controls to build a reference from, the reference methods go."""
    from brainlrp import catalog
    from brainlrp.data.reference import training_control_paths

    run = run if isinstance(run, RunDir) else RunDir(run)
    methods = catalog.default_methods()
    if not run.card.is_file():
        return methods, None
    try:
        training_control_paths(run, cohort)
    except BrainLRPError as exc:
        kept = [m for m in methods if catalog.reference_of(m) is None]
        return kept, f"{exc.message}; explaining with {', '.join(kept)} only"
    return methods, None


def options_per_method(methods: Sequence[str], method_options: Mapping | None
                       ) -> dict[str, dict]:
    """Options per method: a method's own entry, else its bare name's (``ig-ref``'s
    options apply to ``ig-ref@knn``), else none."""
    from brainlrp import catalog

    given = method_options or {}
    return {m: dict(given.get(m, given.get(catalog.base_name(m), {}))) for m in methods}


class MethodCalls:
    """Calls of a run's methods with what each needs (see the module docstring).

    Parameters
    ----------
    run : RunDir or path-like
    prep : brainlrp.data.preprocess.Preprocessing
        The model's preprocessing: its grid places the atlas areas, and references are
        built from the training controls as the model saw them.
    target : int
        The AD output (the card's ``target_class``).
    options : dict, optional
        Options for every method.
    method_options : dict of dict, optional
        Options of single methods, by full or bare name (``{"ig": {"steps": 16}}``).
    reference : str, optional
        A NIfTI file a ``<method>@<its name>`` explains against (a kind name is a kind
        of :mod:`brainlrp.data.reference`, chosen per method by its name).
    cohort, cache_dir : path-like, optional
        Where the training controls and their preprocessed arrays are
        (:class:`~brainlrp.data.reference.References`).
    value_range : (float, float), optional
        The input's value range (the model card's :class:`~brainlrp.card.InputFormat`):
        the bounds ``low``/``high`` of the box rule, for the methods that take them.

    Examples
    --------
    >>> calls = MethodCalls(run, card.prep, card.target_class)    # doctest: +SKIP
    >>> heat = calls(model, x, "lrp-ref@knn-restore", ["sub-01"])  # doctest: +SKIP
    """

    def __init__(self, run: RunDir | str | os.PathLike, prep, target: int, *,
                 options: Mapping | None = None, method_options: Mapping | None = None,
                 reference: str | None = None, cohort: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None,
                 value_range: tuple[float, float] | None = None):
        self.run = run if isinstance(run, RunDir) else RunDir(run)
        self.value_range = value_range
        self.prep, self.target = prep, int(target)
        self.options = dict(options or {})
        self.method_options = dict(method_options or {})
        self.cohort, self.cache_dir = cohort, cache_dir
        self.files = _reference_files(reference)
        self._references = None

    @classmethod
    def recorded(cls, run: RunDir | str | os.PathLike, prep, target: int,
                 value_range: tuple[float, float] | None = None) -> MethodCalls:
        """The calls as the run's heatmaps were made: the options ``brainlrp explain``
        recorded per method (e.g. fewer IG steps)."""
        run = run if isinstance(run, RunDir) else RunDir(run)
        return cls(run, prep, target,
                   method_options=run.stage_record("explain").get("method_options") or {},
                   value_range=value_range)

    @classmethod
    def of_card(cls, run: RunDir | str | os.PathLike, card, **options) -> MethodCalls:
        """The calls for a run's model as its card describes it: its preprocessing, AD's
        output and its input's value range."""
        return cls(run, card.prep, card.target_class, value_range=card.input.value_range,
                   **options)

    @property
    def references(self):
        """The run's reference builder (made on first use)."""
        if self._references is None:
            import brainlrp.simulate.references  # noqa: F401  (registers twin, rescan)
            from brainlrp.data.reference import References

            self._references = References(self.run, self.prep, cohort=self.cohort,
                                          cache_dir=self.cache_dir)
        return self._references

    def method_kwargs(self, method: str) -> dict:
        """The options of ``method`` that do not depend on the scans: every method's,
        then its own, then the atlas areas when it occludes regions."""
        from brainlrp.atlas import area_codes
        from brainlrp.explain.methods import get_method

        opts = self.options | options_per_method([method], self.method_options)[method]
        takes = get_method(method).options
        if "areas" in takes and "areas" not in opts and self.prep is not None:
            opts["areas"] = area_codes(self.prep.grid)
        if self.value_range is not None and {"low", "high"} <= set(takes):
            opts.setdefault("low", self.value_range[0])
            opts.setdefault("high", self.value_range[1])
        return opts

    def reference(self, method: str, x, scan_ids: Sequence[str]):
        """The reference of ``method`` for the scans ``x`` (a tensor like ``x``), or
        ``None`` for a method without one."""
        import torch

        from brainlrp import catalog

        kind = catalog.lookup(method).reference
        if kind is None:
            return None
        ref = self.references.get(self.files.get(kind, kind), list(scan_ids),
                                  x.detach().cpu().numpy())
        return torch.from_numpy(np.asarray(ref)).to(x)

    def __call__(self, model, x, method: str, scan_ids: Sequence[str] = ()):
        """``method``'s relevance for the AD output of ``model`` at the scans ``x``
        (``(n, 1, X, Y, Z)``) named ``scan_ids``."""
        from brainlrp.explain import explain

        opts = self.method_kwargs(method)
        ref = self.reference(method, x, scan_ids)
        if ref is not None:
            opts["reference"] = ref
        return explain(model, x, method, target=self.target, **opts)

    def for_scans(self, scan_ids: Sequence[str]):
        """``explain_fn(model, x, method)`` for batches of exactly these scans (the
        callable the analyses take)."""
        ids = list(scan_ids)
        return lambda model, x, method: self(model, x, method, ids)


def _reference_files(reference: str | None) -> dict[str, str]:
    """``{name: path}`` when ``reference`` is a NIfTI file rather than a kind name."""
    from brainlrp.data.reference import BASE_KINDS, reference_name

    if not reference or reference_name(reference) == reference:
        return {}
    if not Path(reference).is_file():
        raise BrainLRPError(f"reference image not found: {reference}",
                            f"use --reference {', '.join(BASE_KINDS)} (or one of them "
                            "with -restore) or an existing NIfTI")
    return {reference_name(reference): reference}
