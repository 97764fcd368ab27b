"""The commands a platform team or a developer runs from their own machine, with their own credentials
(scripts/: job-trace, bake-image, drain, runner-group-check, runner-shell, db-tunnel). Never shipped:
neither to a runner instance nor to a Lambda."""
