"""Calibration: fit each hardware family's named step-time parameters to published
measurements, report in-sample and held-out errors, write values and bands back to the specs.

data.py (points, families, parameters) -> fit.py (prediction, least squares, reports) -> run.py
(a run's fits, full and held out, as tasks on a process pool) -> write.py (spec files)."""
from planner.calibration.data import (COLUMNS, FAMILIES, Family, Point, current_value, family_of,  # noqa: F401
                                      parse_row, read_points, with_params)
from planner.calibration.fit import FamilyFit, Prediction, markdown, predict, summary  # noqa: F401
from planner.calibration.run import fit  # noqa: F401
from planner.calibration.write import write_back  # noqa: F401
