"""Judge: rules that turn measurements into findings (check-time and training-time)."""
