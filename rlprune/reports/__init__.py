"""What results look like: the apply report, benchmark tables and plots, latency, export."""
