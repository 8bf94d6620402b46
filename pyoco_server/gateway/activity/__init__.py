"""Activity over time for the dashboard's charts: runs finished per minute by status (counted
by the run index as it applies terminal writes) and queue depth per tag (sampled)."""
