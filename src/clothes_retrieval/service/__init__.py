"""The search service: a published bundle answering street photos (no web framework here
except in :mod:`.http`, which is imported only by ``clothes-retrieval serve``).

- :mod:`.bundle`: what ``published_index`` writes (:func:`publish_bundle`) and its manifest;
- :mod:`.engine`: :class:`SearchService` (``search(image, top_k, detect, max_items)``,
  search by gallery id, gallery additions and deletions) and :class:`ServiceHolder`
  (serves the newest bundle, swapped without a restart);
- :mod:`.gallery`: the live gallery (committed changes, consistent views);
- :mod:`.batching`: groups concurrent requests into one forward pass;
- :mod:`.http`: the FastAPI app, the web page (``static/``) and ``serve``.
"""

from clothes_retrieval.service.bundle import BundleError, publish_bundle, read_bundle_manifest
from clothes_retrieval.service.config import ServeConfig, ServiceLimits
from clothes_retrieval.service.engine import (
    InputError,
    Item,
    Result,
    SearchAnswer,
    SearchService,
    ServiceHolder,
    UnknownItemError,
    decode_image,
    default_state_dir,
    validate_bundle,
)

__all__ = [
    "BundleError",
    "InputError",
    "Item",
    "Result",
    "SearchAnswer",
    "SearchService",
    "ServeConfig",
    "ServiceHolder",
    "ServiceLimits",
    "UnknownItemError",
    "decode_image",
    "default_state_dir",
    "publish_bundle",
    "read_bundle_manifest",
    "validate_bundle",
]
