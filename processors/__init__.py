"""Pure computation: indicators, bars, features, detectors. No I/O, no Faust, no imports of streams or sinks."""
