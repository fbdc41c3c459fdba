"""Calibration sessions at the bench: the runner that drives a DUT and a reference
(:mod:`.runner`), its crash-safe journal (:mod:`.journal`), the live view (:mod:`.view`) and
the customer's calibration report (:mod:`.report`). The maths is in :mod:`calibration.session`.
"""
