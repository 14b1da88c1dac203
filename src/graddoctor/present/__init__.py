"""Present: plots, the HTML report and console text."""
