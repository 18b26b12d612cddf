"""pmld: periodic limb movements in sleep from an ankle-worn accelerometer."""

from importlib.metadata import PackageNotFoundError, version

from .errors import FormatError, InputError, PmldError, UsageError
from .night import Night, Sensor

try:
    __version__ = version("pmld")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "FormatError",
    "InputError",
    "Night",
    "PmldError",
    "Sensor",
    "UsageError",
    "__version__",
]
