"""Pure conversions: ONIX, sales reports, file naming, manifests. No I/O beyond the streams handed
in.
"""
