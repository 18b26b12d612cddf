"""pmld: periodic limb movements in sleep from an ankle-worn accelerometer.

The main entry points::

    import pmld
    night = pmld.read_raw("night.h5")            # or pmld.simulate_night("moderate")
    result = pmld.analyze(night, rules="wasm2016", onset_ratio=4.0)
    result.summary()                              # headline indices
    result.events                                 # one row per scored leg movement
    result.to_hdf5("night.plm.h5")                # the nightly summary file

The stages are also usable on their own: :func:`detect_leg_movements` (acceleration
-> leg movements) and :func:`score_leg_movements` (leg movements from any sensor ->
candidate LMs, IMIs and PLM series by the WASM 2016 or AASM rules).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pmld")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

from .errors import FormatError, InputError, PmldError, UsageError  # noqa: E402
from .night import Night, Sensor  # noqa: E402

_LAZY = {
    "analyze": ("pmld.pipeline", "analyze"),
    "NightAnalysis": ("pmld.pipeline", "NightAnalysis"),
    "DetectionParams": ("pmld.detect", "DetectionParams"),
    "detect_leg_movements": ("pmld.detect", "detect_leg_movements"),
    "ScoringRules": ("pmld.score", "ScoringRules"),
    "rules_preset": ("pmld.score", "rules_preset"),
    "score_leg_movements": ("pmld.score", "score_leg_movements"),
    "simulate_night": ("pmld.simulate", "simulate_night"),
    "truth_table": ("pmld.simulate", "truth_table"),
    "read_raw": ("pmld.io.raw", "read_raw"),
    "write_raw": ("pmld.io.raw", "write_raw"),
    "read_summary": ("pmld.io.summary", "read_summary"),
    "read_accel_csv": ("pmld.io.csvimport", "read_accel_csv"),
}


def __getattr__(name: str):
    # Imported on first use, so that `pmld --help` does not load SciPy and h5py.
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pmld' has no attribute {name!r}")


__all__ = [
    "FormatError",
    "InputError",
    "Night",
    "PmldError",
    "Sensor",
    "UsageError",
    "__version__",
    *_LAZY,
]
