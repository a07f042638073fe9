"""Device and node identity: normalization tables, cloud detection, labels.

Pure functions over the data tables in identity/data/; the resolver combines them for one
node. Nothing here reads NVML or the network.
"""

from .gpu import resolve_gpu
from .labels import write_nfd_features
from .node import resolve_node
from .records import Conflict, GpuRecord, NodeRecord
from .resolver import IdentityResolver, IdentityView

__all__ = ["resolve_gpu", "resolve_node", "write_nfd_features", "GpuRecord", "NodeRecord",
           "Conflict", "IdentityResolver", "IdentityView"]
