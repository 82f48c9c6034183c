"""What reads finished results, or plans a grid, and never changes a run: the tidy tables
(`tables`), figures, paper tables, the literature judge, the cost estimate and the
early-stopping replay. Everything here stays out of the run-cache key
(gapbench.provenance.READS_RESULTS)."""
