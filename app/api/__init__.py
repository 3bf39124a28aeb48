"""HTTP layer: dependencies, one router per resource, error handlers, limits, metrics."""
