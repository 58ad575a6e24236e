"""What reports/ says: the reader of metrics.json (results), the reading, the figures (and prepare's cohort
figure), the paper's table, the failure analysis, the reporting checklist and the deploy records (report).
No train stage imports this package."""
