"""What every explanation method is: one entry per method, known to every stage.

This module is the one place that knows method names. It imports neither torch
nor any other stage, so analysis and report can look methods up without loading
the explanation engine; :mod:`brainlrp.explain.methods` attaches a runner to
each entry.

An entry (:class:`MethodInfo`) says a method's family, its parameters (the
paper's beta, the LRP composite), its label in figures and tables, what its
values mean (the colour-bar quantity), which sign the analyses use by default
and where it stands in tables. Parametrised names (``lrp-b<beta>``,
``lrp-bn-merged-b<beta>``) come from families: a pattern and a factory.

Adding a method is one :func:`register` call here (plus its runner in
:mod:`brainlrp.explain.methods`)::

    register(MethodInfo("deeplift", family="attribution", label="DeepLIFT",
                        quantity="DeepLIFT attribution", relevance="positive",
                        description="DeepLIFT (rescale) from a reference"))

Names nobody registered (a heatmap folder written by hand) are still described
by :func:`describe`, as an ``"other"`` method with positive relevance, sorted last.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from brainlrp.errors import BrainLRPError

#: Families of methods. ``lrp`` runs brainlrp's own engine; ``gradient`` methods are
#: sensitivities (their sign says in which direction the intensity would have to
#: change, not whether a voxel supports AD); ``attribution`` methods give signed
#: evidence for or against the target; ``perturbation`` methods measure output drops;
#: ``floor`` methods are model-free (edges, noise): the score any method must beat.
FAMILIES = ("lrp", "gradient", "attribution", "perturbation", "floor", "other")
#: How a heatmap is turned into "relevance" before it is summed.
RELEVANCE_MODES = ("positive", "signed", "absolute")
#: What a method's map explains, at the default ``start="probability"`` (with
#: ``start="logit"`` read "the AD logit" for "p(AD)"). Every reference method (lrp-ref,
#: ig-ref, occlusion-ref) explains the same quantity, the AD probability of the scan
#: minus that of its reference, so their maps are compared as explanations of one
#: number: lrp-ref's relevance sums to it (the rescale rule through the softmax, placed
#: on the AD output), ig-ref's to it up to the path integral's error, and occlusion-ref
#: measures its drop area by area. The floors explain nothing.
EXPLAINED = {
    "probability": "p(AD) of the scan",
    "difference": "p(AD) of the scan minus p(AD) of its reference",
    "nothing": "nothing (a model-free floor)",
}


@dataclass(frozen=True)
class MethodInfo:
    """An explanation method, as every stage sees it.

    Attributes
    ----------
    name : str
        The method's name: the ``--methods`` choice and the heatmap folder.
    family : str
        One of :data:`FAMILIES`.
    label : str
        Display name in figures and tables, e.g. ``"LRP β=0"``.
    quantity : str
        What a heatmap value is, for colour-bar labels (``"relevance"``,
        ``"guided backprop"``, ...).
    relevance : str
        Default relevance mode of the analyses (:data:`RELEVANCE_MODES`): LRP,
        integrated gradients and occlusion give evidence for or against AD, so
        their positive part is kept; sensitivities (gradient, guided backprop,
        SmoothGrad) use their magnitude.
    description : str
        One line for help texts.
    composite : str or None
        The LRP engine's composite (LRP family only).
    params : tuple of (str, value)
        Fixed parameters passed to the composite or runner, e.g. ``(("beta", 0.5),)``.
    runner : str or None
        Outside the LRP family: the function of :mod:`brainlrp.explain.baselines` that
        computes the map (called with ``params``); ``None`` for LRP (``composite``).
    paper_beta : float or None
        The beta of the paper's beta rule (``lrp-b<beta>`` only): these methods are
        compared with each other (beta overlap) and with the paper's numbers.
    paper_comparison : bool
        The paper's comparison method (guided backpropagation).
    order : int
        Position group in tables (see :meth:`sort_key`).
    reference : str or None
        For ``<method>@<reference>`` names: which reference image the method
        explains against (``mean``, ``knn``, ``pca``: built from the run's training
        controls; ``twin``: the simulated patient's healthy twin, ground truth only;
        ``rescan``: that twin scanned again with fresh noise;
        ``<kind>-restore``: the scan with only its lost signal restored from ``<kind>``).
    needs_reference : bool
        The method explains the difference from a reference image (a
        healthy-looking brain) and must be given one: ``explain(...,
        reference=...)``. Its evidence for AD is then what the scan has and the
        reference has not.
    explains : str
        The one quantity the map's relevance adds up to (for methods that conserve it)
        or is measured on: see :data:`EXPLAINED`.
    """

    name: str
    family: str
    label: str
    quantity: str
    relevance: str
    description: str = ""
    composite: str | None = None
    params: tuple[tuple[str, float | str], ...] = ()
    paper_beta: float | None = None
    paper_comparison: bool = False
    order: int = 100
    needs_reference: bool = False
    reference: str | None = None
    explains: str = "probability"
    runner: str | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {self.family!r}")
        if self.relevance not in RELEVANCE_MODES:
            raise ValueError(f"relevance must be one of {', '.join(RELEVANCE_MODES)}, "
                             f"got {self.relevance!r}")

    @property
    def explained_quantity(self) -> str:
        """In words, what the map explains (:data:`EXPLAINED`)."""
        key = ("difference" if self.needs_reference and self.explains != "nothing"
               else self.explains)
        return EXPLAINED[key]

    @property
    def base_name(self) -> str:
        """The name without its ``@<reference>`` part (the runner's key)."""
        return base_name(self.name)

    @property
    def needs_twin(self) -> bool:
        """Whether the method needs a healthy twin (only simulated cohorts have one)."""
        return self.reference in TWIN_REFERENCES

    @property
    def is_lrp(self) -> bool:
        """Whether the method is a layer-wise relevance propagation variant."""
        return self.family == "lrp"

    def sort_key(self) -> tuple:
        """Table order: the paper's betas ascending, then registered methods, then others."""
        if self.paper_beta is not None:
            return (0, self.paper_beta, self.name)
        return (1, self.order, self.name)


@dataclass(frozen=True)
class _Family:
    pattern: re.Pattern[str]
    factory: Callable[[re.Match[str]], MethodInfo | None]
    example: str


_METHODS: dict[str, MethodInfo] = {}
_FAMILIES: list[_Family] = []
_LISTED: list[str] = []


def register(info: MethodInfo, listed: bool = True) -> MethodInfo:
    """Add ``info`` to the catalog under its name (``listed``: shown as a CLI choice)."""
    _METHODS[info.name] = info
    if listed and info.name not in _LISTED:
        _LISTED.append(info.name)
    return info


def register_family(pattern: str, factory: Callable[[re.Match[str]], MethodInfo | None],
                    example: str) -> None:
    """Add parametrised names: ``factory(match)`` describes the method for a full match
    (or returns ``None`` when the match names no method)."""
    _FAMILIES.append(_Family(re.compile(pattern), factory, example))


def listed() -> list[str]:
    """Listed method names, in registration order (families accept more)."""
    return list(_LISTED)


def family_examples() -> list[str]:
    """How parametrised names are written (``lrp-b<beta>``, ...), in registration order."""
    return [family.example for family in _FAMILIES]


def find(name: str) -> MethodInfo | None:
    """The catalog entry of ``name``, or ``None`` for a name the catalog does not know."""
    name = str(name)
    if name in _METHODS:
        return _METHODS[name]
    for family in _FAMILIES:
        match = family.pattern.fullmatch(name)
        info = family.factory(match) if match else None
        if info is not None:
            return info
    return None


def lookup(name: str) -> MethodInfo:
    """The catalog entry of ``name``.

    Raises
    ------
    BrainLRPError
        For an unknown name, listing the known ones.
    """
    info = find(name)
    if info is None:
        families = ", ".join(f.example for f in _FAMILIES)
        raise BrainLRPError(f"unknown explanation method {name!r}",
                            f"choose one of {', '.join(_LISTED)} (or {families})")
    return info


def describe(name: str) -> MethodInfo:
    """The entry of ``name``; an ``"other"`` entry (positive relevance) for unknown names."""
    return find(name) or MethodInfo(name, "other", label=str(name), quantity="attribution",
                                    relevance="positive", order=1000)


#: Joins a reference method and its reference in a method name (``lrp-ref@knn``).
REFERENCE_SEPARATOR = "@"


def base_name(name: str) -> str:
    """``name`` without its reference (``ig-ref@knn`` -> ``ig-ref``; others unchanged)."""
    return str(name).split(REFERENCE_SEPARATOR, 1)[0]


def reference_of(name: str) -> str | None:
    """The reference ``name`` names (``ig-ref@knn`` -> ``knn``), or ``None``."""
    parts = str(name).split(REFERENCE_SEPARATOR, 1)
    return parts[1] if len(parts) == 2 else None


def with_reference(name: str, reference: str) -> str:
    """The method ``name`` against ``reference`` (``ig-ref``, ``knn`` -> ``ig-ref@knn``)."""
    return f"{base_name(name)}{REFERENCE_SEPARATOR}{reference}"


def parse(value: str | Iterable[str] | None) -> list[str]:
    """Method names from ``"lrp-b0,gb"`` or ``["lrp-b0", "gb,ig"]``, in order, once each."""
    items = [value] if isinstance(value, str) else list(value or [])
    return list(dict.fromkeys(n.strip() for item in items for n in str(item).split(",")
                              if n.strip()))


def select(requested: str | Iterable[str] | None, available: Sequence[str], missing: str,
           fix: str) -> list[str]:
    """The requested methods (comma lists allowed) among ``available``, in table order.

    Parameters
    ----------
    requested : str or iterable of str, optional
        Method names; ``None`` or empty gives every available method.
    available : sequence of str
    missing : str
        What the error says about unavailable names, e.g. ``"no heatmaps for"``.
    fix : str
        The error's fix.

    Raises
    ------
    BrainLRPError
        Naming the unavailable methods and the available ones.
    """
    if not requested:
        return ordered(available)
    names = parse(requested)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise BrainLRPError(f"{missing} method(s) {', '.join(unknown)}; this run has "
                            f"{', '.join(ordered(available))}", fix)
    return ordered(names)


def ordered(methods: Sequence[str]) -> list[str]:
    """Methods in table order (the paper's betas ascending, then the catalog's order)."""
    return sorted(dict.fromkeys(methods), key=lambda m: describe(m).sort_key())


def paper_betas(methods: Iterable[str]) -> list[tuple[str, float]]:
    """``(name, beta)`` of the paper's beta-rule methods among ``methods``, in given order."""
    out = []
    for m in methods:
        beta = describe(m).paper_beta
        if beta is not None:
            out.append((m, beta))
    return out


def choose_main_and_comparison(methods: Sequence[str], recommended: str | None = None
                               ) -> tuple[str, str | None]:
    """The method shown in depth and the one beside it.

    With a ``recommended`` method among ``methods`` (the method benchmark's), it is
    shown in depth beside the paper's LRP (lowest beta). Without one (nothing in the run
    was scored against a ground truth), the catalog's default (:data:`DEFAULT_METHODS`'s
    first, the recommendation on the default simulated cohort) takes its place when it
    was analysed. Otherwise the paper's LRP with the lowest beta (any LRP method, else
    the first method) is shown in depth, beside the paper's comparison method (guided
    backpropagation) or, without it, the first method of another family.
    """
    methods = list(methods)
    if recommended not in methods and DEFAULT_METHODS[0] in methods:
        recommended = DEFAULT_METHODS[0]
    if recommended in methods:
        betas = sorted((b, m) for m, b in paper_betas(methods) if m != recommended)
        others = [m for m in methods if m != recommended]
        return recommended, betas[0][1] if betas else (others[0] if others else None)
    lrp = [m for m in methods if describe(m).is_lrp]
    betas = sorted((b, m) for m, b in paper_betas(lrp))
    main = betas[0][1] if betas else (lrp[0] if lrp else methods[0])
    others = [m for m in methods if m != main]
    paper = [m for m in others if describe(m).paper_comparison]
    if paper:
        return main, paper[0]
    non_lrp = [m for m in others if not describe(m).is_lrp]
    return main, (non_lrp or others or [None])[0]


#: Named method lists other modules run (every method name lives in this module):
#:
#: * ``demo``: the paper's betas and comparison (GB), the gradient, IG, SmoothGrad and
#:   VarGrad, the recommended reference method with the other references and its upper
#:   bound against the healthy twin, and the floors every method is ranked against
#:   (edges, noise, each reference's own difference from the scan); ig-ref and region
#:   occlusion are left to benchmarks/ (10-70 gradients each);
#: * ``quick-demo``: ``brainlrp demo --quick``'s smaller set;
#: * ``benchmark``: ``brainlrp benchmark``'s default: the paper's betas and comparison,
#:   the gradient methods with SmoothGrad and its relatives, the recommended reference
#:   method with the other references and the twin's upper bound, and the floors.
METHOD_SETS = {
    "demo": ("lrp-b0", "lrp-b0.25", "lrp-b0.5", "lrp-b0.75", "lrp-b1", "gb", "gradient", "ig",
             "smoothgrad", "vargrad", "lrp-epsilon-plus-flat", "lrp-ref@knn-restore",
             "lrp-ref@knn", "lrp-ref@mean", "lrp-ref@twin", "edges", "noise",
             "diff@knn-restore", "diff@knn", "diff@mean"),
    "quick-demo": ("lrp-b0", "lrp-b0.5", "lrp-b1", "gb", "gradient", "lrp-ref@knn-restore",
                   "lrp-ref@twin", "edges", "noise"),
    "benchmark": ("lrp-b0", "lrp-b0.5", "lrp-b1", "gb", "gradient", "ig", "smoothgrad",
                  "smoothgrad-sq", "vargrad", "lrp-epsilon-plus-flat", "lrp-ref@knn-restore",
                  "lrp-ref@knn", "lrp-ref@mean", "lrp-ref@pca-restore", "lrp-ref@twin",
                  "edges", "noise", "diff@knn-restore", "diff@knn", "diff@mean",
                  "diff@pca-restore"),
}
#: The method whose cost is the unit of the benchmark's cost column (one input gradient).
COST_UNIT = "gradient"
#: The model-free floors by role: an edge map of the scan, noise, and a reference's
#: difference from the scan (``diff@<reference>``).
EDGES_FLOOR, NOISE_FLOOR, DIFFERENCE_FLOOR = "edges", "noise", "diff"


def method_set(name: str) -> list[str]:
    """A named method list of :data:`METHOD_SETS`."""
    if name not in METHOD_SETS:
        raise BrainLRPError(f"unknown method set {name!r}",
                            f"use one of {', '.join(METHOD_SETS)}")
    return list(METHOD_SETS[name])


def own_difference(name: str) -> str | None:
    """The model-free floor of a reference method: its reference minus the scan
    (``lrp-ref@knn`` -> ``diff@knn``); ``None`` for a method without a reference."""
    info = find(name)
    if info is None or info.reference is None:
        return None
    return with_reference(DIFFERENCE_FLOOR, info.reference)


#: What ``brainlrp explain`` computes without ``--methods``: the method benchmark's
#: recommendation on the default simulated cohort (LRP against the scan with its lost
#: signal restored from the mean of the 5 nearest training controls; see README) beside
#: the paper's LRP.
DEFAULT_METHODS = ("lrp-ref@knn-restore", "lrp-b0")


def default_methods() -> list[str]:
    """The methods ``brainlrp explain`` computes when none are named."""
    return list(DEFAULT_METHODS)


#: What a bare reference method (``ig-ref``) explains against: ``ig-ref@mean``.
DEFAULT_REFERENCE = "mean"


def unit_label(method: str, mode: str | None = None) -> str:
    """Colour-bar label with units, e.g. ``relevance (a.u.)`` or ``|gradient| (a.u.)``."""
    info = describe(method)
    quantity = info.quantity
    if mode == "absolute":
        quantity = f"|{quantity}|"
    elif mode == "positive" and not info.is_lrp:
        quantity = f"positive {quantity}"
    return f"{quantity} (a.u.)"


# --------------------------------------------------------------------------- entries

_NUMBER = r"(\d+(?:\.\d+)?)"


def _paper_beta(beta: float) -> MethodInfo:
    return MethodInfo(f"lrp-b{beta:g}", "lrp", label=f"LRP β={beta:g}", quantity="relevance",
                      relevance="positive", description=f"LRP: the paper's beta rule, "
                      f"beta={beta:g}", composite="paper", params=(("beta", beta),),
                      paper_beta=beta)


def _merged_beta(beta: float) -> MethodInfo:
    return MethodInfo(f"lrp-bn-merged-b{beta:g}", "lrp", label=f"LRP β={beta:g} (BN merged)",
                      quantity="relevance", relevance="positive",
                      description=f"LRP: BatchNorm merged, then the beta rule, beta={beta:g}",
                      composite="paper-bn-merged", params=(("beta", beta),))


for _beta in (0.0, 0.25, 0.5, 0.75, 1.0):
    register(_paper_beta(_beta))
register(_merged_beta(0.0))
register(MethodInfo("lrp-eps", "lrp", label="LRP-ε", quantity="relevance", relevance="positive",
                    description="LRP: epsilon rule, BatchNorm merged", composite="epsilon",
                    order=1))
register(MethodInfo("lrp-epsilon-plus", "lrp", label="LRP ε-plus", quantity="relevance",
                    relevance="positive", composite="epsilon-plus",
                    description="LRP: epsilon (dense), z+ (conv), box (input layer)"))
register_family(rf"lrp-b{_NUMBER}", lambda m: _paper_beta(float(m.group(1))), "lrp-b<beta>")
register_family(rf"lrp-bn-merged-b{_NUMBER}", lambda m: _merged_beta(float(m.group(1))),
                "lrp-bn-merged-b<beta>")
register(MethodInfo("gb", "gradient", label="Guided backprop", quantity="guided backprop",
                    relevance="absolute", description="guided backpropagation",
                    paper_comparison=True, order=2,
                    runner="guided_backprop"))
register(MethodInfo("gradient", "gradient", label="Gradient", quantity="gradient",
                    relevance="absolute", description="gradient (saliency, signed)", order=3,
                    runner="gradient"))
register(MethodInfo("gxi", "attribution", label="Gradient × input", quantity="attribution",
                    relevance="positive", description="gradient x input",
                    runner="gradient_x_input"))
register(MethodInfo("ig", "attribution", label="Integrated gradients", quantity="IG attribution",
                    relevance="positive", description="integrated gradients", order=4,
                    runner="integrated_gradients"))
register(MethodInfo("smoothgrad", "gradient", label="SmoothGrad", quantity="SmoothGrad",
                    relevance="absolute", description="SmoothGrad: the gradient averaged "
                    "over 25 copies with Gaussian noise of 15 % of the scan's range",
                    order=5,
                    runner="smoothgrad", params=(("statistic", "mean"),)))
register(MethodInfo("smoothgrad-sq", "gradient", label="SmoothGrad²",
                    quantity="SmoothGrad squared", relevance="positive",
                    description="SmoothGrad squared: the squared gradient averaged over the "
                    "same noisy copies", order=5,
                    runner="smoothgrad", params=(("statistic", "mean-square"),)))
register(MethodInfo("vargrad", "gradient", label="VarGrad", quantity="VarGrad",
                    relevance="positive", description="VarGrad: the variance of the gradient "
                    "over the same noisy copies", order=5,
                    runner="smoothgrad", params=(("statistic", "variance"),)))
register(MethodInfo("occlusion", "perturbation", label="Occlusion", quantity="occlusion",
                    relevance="positive", description="3-D occlusion", order=6,
                    runner="occlusion"))

# Against a reference image. Their signed evidence for AD relative to the reference
# keeps its positive part, as LRP does: atrophy darkens tissue and brightens CSF,
# and either change moves p(AD) up from the reference, so evidence for AD at
# atrophy is positive wherever it lies.
register(MethodInfo("lrp-ref", "lrp", label="LRP (reference)", quantity="relevance",
                    relevance="positive", composite="reference", needs_reference=True,
                    description="LRP on differences from a reference image (DeepLIFT "
                    "rescale)", order=7))
register(MethodInfo("ig-ref", "attribution", label="Integrated gradients (reference)",
                    quantity="IG attribution", relevance="positive", needs_reference=True,
                    description="integrated gradients from a reference image", order=8,
                    runner="integrated_gradients_from_reference"))
register(MethodInfo("occlusion-ref", "perturbation", label="Area occlusion (reference)",
                    quantity="occlusion", relevance="positive", needs_reference=True,
                    description="atlas areas replaced by a reference image: p(AD) drop per "
                    "area", order=9,
                    runner="occlusion_from_reference"))
# Best-practice composites (Kohlbrenner et al. 2020; zennit's presets).
register(MethodInfo("lrp-epsilon-gamma-box", "lrp", label="LRP ε-γ-box", quantity="relevance",
                    relevance="positive", composite="epsilon-gamma-box", order=10,
                    description="LRP: epsilon (dense), gamma (conv), box (input layer)"))
register(MethodInfo("lrp-epsilon-plus-flat", "lrp", label="LRP ε-plus-flat",
                    quantity="relevance", relevance="positive", composite="epsilon-plus-flat",
                    order=11, description="LRP: epsilon (dense), z+ (conv), flat (input layer)"))
# Floors: model-free maps any method must beat. ("noise", not "random": the analyses
# already use "random" for their random-ranking row in faithfulness tables.)
#: Built-in references a ``<method>@<reference>`` name may name (a file's stem also works).
REFERENCE_LABELS = {"mean": "mean control", "knn": "nearest controls",
                    "pca": "pseudo-healthy (PCA of controls)", "twin": "healthy twin",
                    "rescan": "healthy twin re-scanned"}
REFERENCE_LABELS.update({f"{kind}-restore": f"{label}, tissue loss only"
                         for kind, label in list(REFERENCE_LABELS.items())})
#: References only a simulated cohort has (the healthy twin, and the twin scanned again).
TWIN_REFERENCES = frozenset({"twin", "twin-restore", "rescan", "rescan-restore"})
#: References that are the control itself when the scan is a control: a simulated
#: control is its own healthy twin, and restoring a scan from itself gives the scan, so
#: such a method explains p(AD | scan) - p(AD | scan) = 0 on every control.
SELF_REFERENCES = frozenset({"twin", "twin-restore"})


def _with_reference(match: re.Match[str]) -> MethodInfo:
    from dataclasses import replace

    base = _METHODS.get(match.group(1))
    if base is None or not base.needs_reference:
        return None
    ref = match.group(2)
    where = REFERENCE_LABELS.get(ref, ref)
    return replace(base, name=with_reference(base.name, ref), reference=ref,
                   label=f"{base.label.replace(' (reference)', '')} from {where}",
                   description=f"{base.description}; reference: {where}")


_BASE_REFERENCES = [k for k in REFERENCE_LABELS if not k.endswith("-restore")]
register_family(rf"([a-z0-9.-]+){REFERENCE_SEPARATOR}([A-Za-z0-9_.-]+)", _with_reference,
                f"<reference method>{REFERENCE_SEPARATOR}<{'|'.join(_BASE_REFERENCES)}>"
                "[-restore]")
register(MethodInfo("edges", "floor", label="Edges (floor)", quantity="edge magnitude",
                    relevance="positive", description="Sobel gradient magnitude of the scan "
                    "(model-free floor)", order=900, explains="nothing",
                    runner="edges"))
register(MethodInfo("noise", "floor", label="Noise (floor)", quantity="noise",
                    relevance="positive", description="uniform noise per voxel (model-free "
                    "floor)", order=901, explains="nothing",
                    runner="random_floor"))
register(MethodInfo("diff", "floor", label="Difference (floor)",
                    quantity="intensity difference", relevance="positive",
                    needs_reference=True, explains="nothing",
                    description="the reference minus the scan: where the scan is darker "
                    "than its healthy reference (model-free floor of the reference methods)",
                    order=902,
                    runner="reference_difference"))


__all__ = ["COST_UNIT", "DEFAULT_METHODS", "DEFAULT_REFERENCE", "DIFFERENCE_FLOOR",
           "EDGES_FLOOR", "FAMILIES", "METHOD_SETS", "NOISE_FLOOR", "REFERENCE_LABELS",
           "REFERENCE_SEPARATOR", "RELEVANCE_MODES", "SELF_REFERENCES", "TWIN_REFERENCES",
           "MethodInfo", "base_name", "choose_main_and_comparison", "default_methods",
           "describe", "family_examples", "find", "listed", "lookup", "method_set",
           "ordered", "own_difference", "paper_betas", "parse", "reference_of", "register",
           "register_family", "select", "unit_label", "with_reference"]
