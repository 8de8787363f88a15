"""Running the gateway as a service: systemd readiness and watchdog (notify), the Prometheus endpoint
(metrics). Both are driven by `menwei run` (edge/cli.py) and cost the door path nothing when unused."""
