"""Top areas per method: the areas ranked highest by sum, density and gain.

Areas are ranked within the method's ranking group (the true positives as in the
paper; AD without TPs); the report lays these rankings out, the claims read them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from brainlrp.analysis.beta_overlap import MEASURES
from brainlrp.analysis.regions import MethodRegions

#: Areas kept per method and measure.
TOP_AREAS = 25
#: Columns of ``analysis/top_areas.tsv``.
TOP_AREAS_COLUMNS = ("method", "group", "measure", "rank", "area", "value")


def top_areas(mr: MethodRegions, k: int = TOP_AREAS) -> pd.DataFrame:
    """The ``k`` highest areas of each measure in the ranking group.

    Ties keep the atlas order; areas with a missing value (NaN gain where the
    controls have none) rank last.

    Parameters
    ----------
    mr : MethodRegions
    k : int

    Returns
    -------
    pandas.DataFrame
        :data:`TOP_AREAS_COLUMNS`; empty when the ranking group is.
    """
    group = mr.ranking_group()
    areas = mr.group_area_means(group)
    frames = []
    for measure, col in MEASURES:
        if areas.empty:
            break
        ranked = areas.sort_values(col, ascending=False, kind="stable", na_position="last")
        ranked = ranked.head(k)
        frames.append(pd.DataFrame({"method": mr.method, "group": group, "measure": measure,
                                    "rank": np.arange(1, len(ranked) + 1),
                                    "area": ranked["region"].to_numpy(),
                                    "value": ranked[col].to_numpy(float)}))
    if not frames:
        return pd.DataFrame(columns=list(TOP_AREAS_COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(TOP_AREAS_COLUMNS)]
