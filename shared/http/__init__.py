"""What every service's HTTP side shares: health, readiness, metrics, request ids, logs."""
