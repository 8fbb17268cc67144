"""Observing the gateway: Prometheus metrics (``metrics``), OpenTelemetry traces (``tracing``) and
the JSON access log (``accesslog``). Each is fed by the http stage; none decides anything."""
