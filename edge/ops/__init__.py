"""Running the gateway as a service: systemd readiness and watchdog (notify)."""
