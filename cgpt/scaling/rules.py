"""The documented choices of the scaling library in one place (imported by the fitting code and the CLI).

Kept free of numpy/scipy so that building ``cgpt``'s argument parser stays instant.
"""

from __future__ import annotations

#: ``form="auto"`` uses the saturating law ``a·C^b + c`` from this many points on (3 parameters + 2
#: residual degrees of freedom); below it, the pure power law ``a·C^b``. Why 5, not 4: see
#: :mod:`cgpt.scaling.power_law` (measured: at 4 points the saturating interval is ~4x wider than
#: the power law's for no better prediction).
MIN_POINTS_SATURATING = 5
#: The accuracy sigmoid's floor is fitted from this many points on (3 parameters + 1 residual dof);
#: below it, the floor is held at the task's chance level.
MIN_POINTS_FREE_FLOOR = 4
#: Nominal level of the prediction intervals.
DEFAULT_LEVEL = 0.95
