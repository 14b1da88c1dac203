"""Check-time rules: the static audit and the judgement of the init probe."""
