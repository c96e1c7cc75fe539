"""What every rules module builds with: ``rulekit`` (Alert, Record, Group, YAML rendering)
and ``promql`` (the one PromQL builder, which checks metric names against the catalog)."""
