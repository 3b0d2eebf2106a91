"""Built-in and user atlases, resampling to the model grid, region reductions."""

from brainlrp.atlas.builtin import (
                                    BUILTIN_ATLASES,
                                    DEFAULT_ATLAS,
                                    Atlas,
                                    atlas_summary,
                                    builtin_names,
                                    load_atlas,
)
from brainlrp.atlas.regions import (
                                    RegionReducer,
                                    region_counts,
                                    region_means,
                                    region_sums,
                                    resample_labels,
)

__all__ = ["BUILTIN_ATLASES", "DEFAULT_ATLAS", "Atlas", "RegionReducer", "atlas_summary",
           "builtin_names", "load_atlas", "region_counts", "region_means", "region_sums",
           "resample_labels"]
