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
                                    area_codes,
                                    region_counts,
                                    region_means,
                                    region_sums,
                                    resample_labels,
)

__all__ = ["BUILTIN_ATLASES", "DEFAULT_ATLAS", "Atlas", "RegionReducer", "area_codes",
           "atlas_summary", "builtin_names", "load_atlas", "region_counts", "region_means",
           "region_sums", "resample_labels"]
