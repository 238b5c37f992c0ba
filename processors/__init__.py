"""Pure computation: indicators, bars, features, detectors.

No I/O, no Faust, and no imports of ``streams`` or ``sinks``.
"""
