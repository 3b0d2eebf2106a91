"""ClinicaDL's own networks, built from the class a ClinicaDL MAPS names.

ClinicaDL 1.x keeps its networks in ``clinicadl.utils.network`` (``Conv5_FC3``,
``Conv4_FC3``, ``Stride_Conv5_FC3``, ``ResNet3D``, ...) and builds the one a MAPS's
``maps.json`` names by calling the class with the constructor arguments ``maps.json``
holds: ``input_size`` (channels first, e.g. ``[1, 169, 208, 179]``), ``gpu``,
``output_size``, ``dropout``. :func:`clinicadl_network` does the same on the CPU, so
the MAPS's state dict loads unchanged (keys such as ``convolutions.0.weight`` and
``fc.2.weight``); only its ReLUs are made not in place (same numbers), as for the
MONAI networks.

ClinicaDL is optional and imported inside the factory. ClinicaDL 1.x pins numpy < 2,
pandas < 2, torchio < 0.19 and nilearn < 0.10, which brainlrp's own requirements rule
out, so it is installed without its pins (:data:`INSTALL`); its networks need only
torch, numpy and ``toml`` (which ``brainlrp[clinicadl]`` brings).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from typing import Any

from torch import nn

from brainlrp.errors import BrainLRPError
from brainlrp.models.monai_nets import _check_shape, _not_in_place

#: Where ClinicaDL's network classes live (ClinicaDL 1.0-1.6 first).
NETWORK_MODULES = ("clinicadl.utils.network", "clinicadl.network")
#: How to install ClinicaDL 1.x next to brainlrp (one line, for error messages).
INSTALL = "pip install 'brainlrp[clinicadl]' && pip install --no-deps 'clinicadl>=1,<2'"


def clinicadl_version() -> str | None:
    """The installed ClinicaDL's version, ``None`` when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("clinicadl")
    except PackageNotFoundError:
        return None


def clinicadl_class(network: str) -> type[nn.Module]:
    """ClinicaDL's network class ``network`` (e.g. ``"Conv5_FC3"``).

    Raises
    ------
    BrainLRPError
        When ClinicaDL is not installed or cannot be imported (naming :data:`INSTALL`),
        or has no network of that name.
    """
    errors = []
    for name in NETWORK_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            errors.append(exc)
            continue
        except Exception as exc:  # ClinicaDL is there but its import fails
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:160]
            raise BrainLRPError(f"ClinicaDL is installed but cannot be imported ({reason})",
                                INSTALL) from None
        found = getattr(module, network, None)
        if not (isinstance(found, type) and issubclass(found, nn.Module)):
            raise BrainLRPError(f"ClinicaDL {clinicadl_version() or ''} has no network "
                                f"{network!r} in {name}".replace("  ", " "),
                                "check maps.json's architecture, or install the ClinicaDL "
                                "version that trained the MAPS (its environment.txt)")
        return found
    missing = next((e.name for e in errors if e.name and e.name != "clinicadl"
                    and not e.name.startswith("clinicadl.")), None)
    what = (f"ClinicaDL cannot be imported (it needs {missing!r})" if missing
            else "ClinicaDL is not installed")
    raise BrainLRPError(f"the network {network!r} is ClinicaDL's and {what}", INSTALL)


def clinicadl_arguments(cls: type, input_shape: Sequence[int], output_size: int = 2,
                        dropout: float = 0.0, **options) -> dict[str, Any]:
    """The constructor arguments ClinicaDL would give ``cls``: each parameter of its
    ``__init__`` that it knows (``input_size`` from ``input_shape`` with one channel,
    ``gpu=False``, ``output_size``, ``dropout``, then ``options``); parameters it does
    not know keep their defaults."""
    known = {"input_size": [1, *(int(s) for s in input_shape)], "gpu": False,
             "output_size": int(output_size), "dropout": float(dropout), **options}
    params = inspect.signature(cls.__init__).parameters
    return {name: known[name] for name in params if name != "self" and name in known}


def clinicadl_network(input_shape: Sequence[int], network: str, output_size: int = 2,
                      dropout: float = 0.0, **options) -> nn.Module:
    """ClinicaDL's network class ``network`` built for ``input_shape`` on the CPU.

    Parameters
    ----------
    input_shape : sequence of int
        The grid (three sizes); the input has one channel.
    network : str
        The class name, as ``maps.json``'s ``architecture`` gives it.
    output_size, dropout
        As in ``maps.json``.
    **options
        Further constructor arguments from ``maps.json`` (other networks' own).

    Returns
    -------
    torch.nn.Module
        On the meta device when built under ``torch.device("meta")``
        (:func:`brainlrp.models.check_grid_fits`): ClinicaDL's constructors run a
        forward pass on real zeros and move the network to their device, so it is built
        on the CPU and moved.
    """
    import torch

    _check_shape(input_shape)
    cls = clinicadl_class(network)
    ambient = torch.empty(0).device
    with torch.device("cpu"):
        model = cls(**clinicadl_arguments(cls, input_shape, output_size, dropout, **options))
    model = _not_in_place(model)
    return model.to(ambient) if ambient.type == "meta" else model


__all__ = ["INSTALL", "NETWORK_MODULES", "clinicadl_arguments", "clinicadl_class",
           "clinicadl_network", "clinicadl_version"]
