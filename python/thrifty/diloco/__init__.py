"""thrifty.diloco: low-communication training over thrifty.collective or torch.distributed.

(Exports are filled in as the modules land.)
"""

from __future__ import annotations
