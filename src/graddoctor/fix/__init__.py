"""Fix: the planner, repair and the remedy registry."""
