"""Videos and data sets: lazy frame access, the sources users point the suite at, and the demo data."""
