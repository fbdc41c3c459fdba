"""Energy accounting from energy registers: interval consumption that never invents energy
across gaps and meter replacements, and conversion to standard coal (:mod:`.accounting`)."""
