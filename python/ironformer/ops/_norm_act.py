"""ironformer.ops: norm_act kernels."""
from __future__ import annotations

import numpy as np

from .. import _C

__all__: list = []
